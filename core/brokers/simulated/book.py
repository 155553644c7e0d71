"""The simulated broker's order book: fill models, constants, the order and holding records and small helpers."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, TypeGuard

import numpy as np
import pandas as pd

from core.kernel.domain import Order, OrderStatus, OrderType, data_price, datetime_index, stamp_of


FillModel = Literal["next-open", "same-close"]
FILL_MODELS: tuple[str, ...] = ("next-open", "same-close")

_ZERO = Decimal("0")
_WORKING = frozenset({OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED})
_OPEN = "open"
_INTRABAR = "intrabar"
_ENTRY = "entry"
_STOP_LOSS = "stop_loss"
_TAKE_PROFIT = "take_profit"


@dataclass(slots=True)
class _Record:
    """The broker's private bookkeeping for one order (the public view is ``order``)."""

    order: Order
    seq: int
    kind: OrderType  # execution style: MARKET, LIMIT or STOP (a bracket parent's entry style)
    anchor: pd.Timestamp  # the order may only fill on bars strictly after this timestamp
    limit: Decimal | None = None
    stop: Decimal | None = None
    triggered: bool = False  # a stop whose price was reached: the remainder executes as a market order
    role: str = ""  # "", "entry" (bracket parent), "stop_loss", "take_profit"
    parent: str | None = None
    children: tuple[str, str] | None = None
    bracket_stop: Decimal | None = None
    bracket_target: Decimal | None = None
    gross: Decimal = _ZERO  # Σ quantity × price over this order's fills
    commission: Decimal = _ZERO  # cumulative commission charged to this order
    fills: int = 0

    @property
    def working(self) -> bool:
        return self.order.status in _WORKING

    @property
    def remaining(self) -> int:
        return self.order.quantity - self.order.filled_quantity


@dataclass(slots=True)
class _Holding:
    quantity: int
    basis: Decimal
    opened_at: datetime
    realized: Decimal = _ZERO


@dataclass(frozen=True, slots=True)
class _Spec:
    """An intent translated into execution terms, or the reason it cannot be accepted."""

    kind: OrderType
    limit: Decimal | None = None
    stop: Decimal | None = None
    bracket_stop: Decimal | None = None
    bracket_target: Decimal | None = None
    refusal: str | None = None


class _Mark:
    """The latest visible bar of a symbol: its session, close and volume. The close is kept as the bar's float and
    turned into a price-grid ``Decimal`` on first use (most marks are replaced the next session unread)."""

    __slots__ = ("ts", "_price", "_close", "volume")

    def __init__(self, ts: pd.Timestamp, close: Decimal | float, volume: float) -> None:
        self.ts = ts
        self.volume = volume
        self._close: Decimal | None
        if isinstance(close, Decimal):
            self._price, self._close = float(close), close
        else:
            self._price, self._close = close, None

    @property
    def close(self) -> Decimal:
        close = self._close
        if close is None:
            close = self._close = data_price(self._price)
        return close


_NS_PER_UNIT = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


class _FrameView:
    """What :meth:`.SimulatedBroker.sync` reads of one bars frame (a UTC DatetimeIndex, checked before), taken once
    per frame object: the index's int64 values, unit and time zone, and the number of rows."""

    __slots__ = ("frame", "asi8", "unit", "tz", "rows")

    def __init__(self, frame: pd.DataFrame) -> None:
        index = datetime_index(frame)
        self.frame = frame
        self.asi8 = index.asi8
        self.unit: str = index.unit
        self.tz = index.tz
        self.rows = len(index)

    def stamp(self, row: int) -> pd.Timestamp:
        """``index[row]`` (memoised per value, see :func:`core.kernel.domain.stamp_of`)."""
        return stamp_of(int(self.asi8[row]), self.unit, self.tz)

    def after(self, ts: pd.Timestamp) -> int:
        """``index.searchsorted(ts, side="right")``: the first row after ``ts``. A timestamp of the index's own unit
        and time-zone awareness is looked up among the int64 values directly (the same binary search on the same
        numbers pandas does after converting it), any other through pandas."""
        factor = _NS_PER_UNIT.get(self.unit)
        if factor is not None and ts.tzinfo is not None and ts.unit == self.unit:
            try:
                key = ts.value // factor  # nanoseconds since the epoch: exact in the timestamp's own unit
            except OverflowError:  # beyond what nanoseconds hold: pandas converts it
                pass
            else:
                return int(np.searchsorted(self.asi8, key, side="right"))
        return int(datetime_index(self.frame).searchsorted(ts, side="right"))


@dataclass(frozen=True, slots=True)
class _Bar:
    ts: pd.Timestamp
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: float


def _finite_positive(value: float | None) -> TypeGuard[float]:
    return value is not None and math.isfinite(value) and value > 0


def _is_utc_index(index: pd.Index) -> bool:
    tz = getattr(index, "tz", None)
    return tz is not None and _is_utc_tz(tz)


@functools.lru_cache(maxsize=64)
def _is_utc_tz(tz: Any) -> bool:
    return all(pd.Timestamp(day, tz=tz).utcoffset() == timedelta(0) for day in ("2024-01-15", "2024-07-15"))


def _float_or_none(value: Decimal | None) -> float | None:
    return None if value is None else float(value)

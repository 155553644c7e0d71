"""Domain model: frozen, typed, UTC-aware value objects shared by every agent.

Floats are used for prices inside the pipeline (vectorised maths); money crosses into the database as
``Decimal`` (see :func:`to_money`). Every timestamp must be timezone-aware UTC: constructors refuse naive or
non-UTC datetimes so a wrong clock cannot leak into the ledger.
"""

from __future__ import annotations

import enum
import functools
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from types import MappingProxyType
from typing import Any, cast
from collections.abc import Mapping

import numpy as np
import pandas as pd
from core.errors import OperationalError

CENT = Decimal("0.01")
PRICE_QUANTUM = Decimal("0.0001")
EXACT = Decimal("0.000001")  # the money columns' scale: amounts stored without rounding to cents
BAR_COLUMNS = ("open", "high", "low", "close", "volume")
_NO_OFFSET = timedelta(0)


def ensure_utc(value: datetime, name: str = "timestamp") -> datetime:
    """Return ``value`` if it is timezone-aware UTC; raise ``ValueError`` otherwise."""
    kind = value.__class__
    if (kind is datetime or kind is pd.Timestamp) and value.tzinfo is UTC:  # the common case: no utcoffset() call
        return value
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() != _NO_OFFSET:
        raise ValueError(f"{name} must be timezone-aware UTC, got {value!r}")
    return value


def to_money(value: float | Decimal | int, quantum: Decimal = CENT) -> Decimal:
    """Convert a float/int/Decimal amount into a rounded ``Decimal`` (banker's rounding)."""
    if isinstance(value, Decimal):
        return value.quantize(quantum, rounding=ROUND_HALF_EVEN)
    return Decimal(repr(float(value))).quantize(quantum, rounding=ROUND_HALF_EVEN)


def to_price(value: float | Decimal) -> Decimal:
    return to_money(value, PRICE_QUANTUM)


def data_price(value: float) -> Decimal:
    """A price read from bars, as the exact ``Decimal`` of the float's shortest repr (``2.4131539055441316`` stays so).

    The simulated broker fills at the data's own prices: putting them on the 0.0001 grid would invent a price the data
    does not have (and make fills differ from any other backtester's on adjusted data)."""
    return Decimal(repr(float(value)))


def new_id() -> str:
    return uuid.uuid4().hex


def frozen_map(data: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(data or {}))


class Action(enum.StrEnum):
    BUY = "BUY"
    SELL = "SELL"
    HOLD = "HOLD"


class Side(enum.StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(enum.StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    BRACKET = "bracket"


class OrderStatus(enum.StrEnum):
    NEW = "new"
    SUBMITTED = "submitted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"


TERMINAL_ORDER_STATUSES = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
)

# Allowed order state transitions: one table, an illegal transition raises.
ORDER_TRANSITIONS: Mapping[OrderStatus, frozenset[OrderStatus]] = MappingProxyType(
    {
        OrderStatus.NEW: frozenset({OrderStatus.SUBMITTED, OrderStatus.REJECTED}),
        OrderStatus.SUBMITTED: frozenset(
            {
                OrderStatus.PARTIALLY_FILLED,
                OrderStatus.FILLED,
                OrderStatus.CANCELED,
                OrderStatus.REJECTED,
                OrderStatus.EXPIRED,
            }
        ),
        OrderStatus.PARTIALLY_FILLED: frozenset(
            {OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED}
        ),
        OrderStatus.FILLED: frozenset(),
        OrderStatus.CANCELED: frozenset(),
        OrderStatus.REJECTED: frozenset(),
        OrderStatus.EXPIRED: frozenset(),
    }
)


class IllegalOrderTransition(OperationalError, ValueError):
    pass


@dataclass(frozen=True, slots=True)
class SymbolBars:
    """Daily bars of one symbol as seen at a decision time.

    ``frame`` is the provider's full, immutable OHLCV frame (UTC DatetimeIndex of session dates, lowercase columns);
    ``end`` is how many of its rows are visible at the decision time. Agents must only read rows ``< end``
    (use :meth:`visible`). Vectorised, causal indicators may be computed once over ``frame`` and read at ``end - 1``;
    the no-look-ahead tests of every strategy guarantee that this equals computing on the visible rows.
    """

    symbol: str
    frame: pd.DataFrame
    end: int
    provider: str
    arrays: Mapping[str, np.ndarray] | None = None  # the frame's columns as float arrays (shared per frame)
    last_close: float = field(init=False)

    def __post_init__(self) -> None:
        arrays = self.arrays
        if arrays is None:
            arrays = bar_arrays(self.frame)
            object.__setattr__(self, "arrays", arrays)
        object.__setattr__(self, "last_close", float(arrays["close"][self.end - 1]))

    def visible(self) -> pd.DataFrame:
        return self.frame.iloc[: self.end]

    @property
    def last_timestamp(self) -> pd.Timestamp:
        return timestamp_at(datetime_index(self.frame), self.end - 1)


def bar_arrays(frame: pd.DataFrame) -> Mapping[str, np.ndarray]:
    """A bars frame's OHLCV columns as float64 numpy arrays (read-only views where pandas allows).

    A frame of exactly the five float64 columns (every provider's normalised frame) is read in one ``to_numpy``:
    one block, whose transposed rows are the columns, about 20 times cheaper than five column lookups (500 fresh
    frames per live iteration)."""
    columns = frame.columns
    if (
        len(columns) == len(BAR_COLUMNS)
        and tuple(columns) == BAR_COLUMNS
        and all(d == np.float64 for d in frame.dtypes)
    ):
        block = frame.to_numpy(dtype=float).T
        return MappingProxyType({c: block[k] for k, c in enumerate(BAR_COLUMNS)})
    return MappingProxyType({c: frame[c].to_numpy(dtype=float) for c in BAR_COLUMNS if c in frame.columns})


NOT_LISTED = "not_listed"  # no bar yet at the decision time: the symbol starts trading later
WARM_UP = "warm_up"  # listed, fewer bars than the strategies need yet
PROVIDER = "provider"  # the provider could not serve the symbol this iteration
NOT_DATA_PROBLEMS = frozenset({NOT_LISTED, WARM_UP})
BROAD_FAILURE_SYMBOLS = 2  # the data-quality breaker needs at least this many symbols with data problems


@dataclass(frozen=True, slots=True)
class BarsBatch:
    """Every symbol's bars for one iteration, plus the symbols that were excluded and why.

    ``bars``: every symbol whose positions can be managed on its bars (signals, exits, stops, trailing, marks).
    ``entry_blocked``: symbols *in* ``bars`` that open no new position this iteration, with the reason (a recent
    missing or stale bar, a bad bar in the history, a latest bar awaiting confirmation; their ``end`` stops at the
    last good bar). ``rejected``: symbols without usable bars at all (warming up, unreadable, none served), with the
    reason. ``not_listed``: symbols with no bar yet (they trade later; neither bad data nor counted anywhere).
    ``exclusions``: the reason category of every symbol in ``entry_blocked``, ``rejected`` or ``not_listed``
    (``not_listed``, ``warm_up``, ``provider`` or a validation rule's name). ``data_quality``: the share of listed,
    warmed-up symbols with no data problem (1.0 when there are none).
    """

    iteration_id: str
    as_of: datetime
    bars: Mapping[str, SymbolBars]
    rejected: Mapping[str, str] = field(default_factory=frozen_map)
    data_quality: float = 1.0
    latest_day: int | None = None  # the latest bar date any symbol shows, days since 1970-01-01 (None: not computed)
    entry_blocked: Mapping[str, str] = field(default_factory=frozen_map)
    exclusions: Mapping[str, str] = field(default_factory=frozen_map)
    not_listed: tuple[str, ...] = ()

    @property
    def data_problems(self) -> int:
        """How many symbols have a data problem this iteration (not counting not-listed and warming-up symbols)."""
        return sum(1 for category in self.exclusions.values() if category not in NOT_DATA_PROBLEMS)

    @property
    def breaker_quality(self) -> float:
        """What the data-quality breaker compares with ``DATA_QUALITY_MIN``: ``data_quality`` when at least
        ``BROAD_FAILURE_SYMBOLS`` symbols have data problems, else 1.0. One symbol's trouble is handled by that
        symbol's own exclusion; the breaker, which stops every entry, is for broad failures (so in a universe of one
        or two symbols it never blocks a symbol whose data are fine)."""
        return self.data_quality if self.data_problems >= BROAD_FAILURE_SYMBOLS else 1.0

    def session_day(self) -> date | None:
        """The date of the latest bar any symbol of the batch shows (the session the iteration decides on)."""
        if self.latest_day is not None:
            return date(1970, 1, 1) + timedelta(days=self.latest_day)
        latest = max((sb.last_timestamp for sb in self.bars.values()), default=None)
        return latest.date() if latest is not None else None

    def __post_init__(self) -> None:
        ensure_utc(self.as_of, "as_of")


@dataclass(frozen=True, slots=True)
class Signal:
    symbol: str
    strategy: str
    action: Action
    strength: float
    price: float
    as_of: datetime
    stop: float | None = None
    target: float | None = None
    indicators: Mapping[str, float] = field(default_factory=frozen_map)
    reason: str = ""

    def __post_init__(self) -> None:
        ensure_utc(self.as_of, "as_of")
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"strength must be within [0, 1], got {self.strength}")


@dataclass(frozen=True, slots=True)
class ValidatedSignal:
    signal: Signal
    confidence: float
    components: Mapping[str, float] = field(default_factory=frozen_map)
    reason: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be within [0, 1], got {self.confidence}")


@dataclass(frozen=True, slots=True)
class OrderIntent:
    symbol: str
    side: Side
    quantity: int
    order_type: OrderType
    reference_price: float
    strategy: str
    confidence: float
    reason: str
    stop_loss: float | None = None
    take_profit: float | None = None
    limit_price: float | None = None
    stop_price: float | None = None

    def __post_init__(self) -> None:
        if self.quantity <= 0:
            raise ValueError(f"order quantity must be positive, got {self.quantity}")


@dataclass(frozen=True, slots=True)
class Approval:
    intent: OrderIntent
    reason: str
    checks: Mapping[str, Any] = field(default_factory=frozen_map)


@dataclass(frozen=True, slots=True)
class Denial:
    symbol: str
    rule: str
    reason: str
    values: Mapping[str, Any] = field(default_factory=frozen_map)


@dataclass(frozen=True, slots=True)
class Order:
    client_order_id: str
    symbol: str
    side: Side
    quantity: int
    order_type: OrderType
    status: OrderStatus
    submitted_at: datetime
    strategy: str = ""
    reason: str = ""
    broker_order_id: str | None = None
    limit_price: float | None = None
    stop_price: float | None = None
    filled_quantity: int = 0
    average_fill_price: float | None = None
    updated_at: datetime | None = None

    def __post_init__(self) -> None:
        ensure_utc(self.submitted_at, "submitted_at")
        if self.updated_at is not None:
            ensure_utc(self.updated_at, "updated_at")

    def transition(self, status: OrderStatus, at: datetime, **changes: Any) -> Order:
        if status not in ORDER_TRANSITIONS[self.status]:
            raise IllegalOrderTransition(f"order {self.client_order_id}: {self.status} -> {status} is not allowed")
        from dataclasses import replace

        return replace(self, status=status, updated_at=ensure_utc(at, "at"), **changes)


@dataclass(frozen=True, slots=True)
class Fill:
    fill_id: str
    client_order_id: str
    symbol: str
    side: Side
    quantity: int
    price: Decimal
    commission: Decimal
    filled_at: datetime

    def __post_init__(self) -> None:
        ensure_utc(self.filled_at, "filled_at")
        if self.quantity <= 0:
            raise ValueError("fill quantity must be positive")


@dataclass(frozen=True, slots=True)
class Position:
    symbol: str
    quantity: int
    average_price: Decimal
    opened_at: datetime
    realized_pnl: Decimal = Decimal("0")
    last_price: Decimal | None = None

    @property
    def market_value(self) -> Decimal:
        price = self.last_price if self.last_price is not None else self.average_price
        return price * self.quantity


@dataclass(frozen=True, slots=True)
class EquitySnapshot:
    at: datetime
    cash: Decimal
    market_value: Decimal
    equity: Decimal
    positions: int

    def __post_init__(self) -> None:
        ensure_utc(self.at, "at")


@dataclass(frozen=True, slots=True)
class Decision:
    """One agent's decision about one symbol in one iteration, with its reason and inputs."""

    agent: str
    symbol: str
    action: str
    reason: str
    inputs: Mapping[str, Any] = field(default_factory=frozen_map)
    strategy: str | None = None
    confidence: float | None = None

    def __post_init__(self) -> None:
        # a vocabulary member (core.vocabulary) is kept as its plain string: reprs, pickles and the ledger stay the same
        object.__setattr__(self, "agent", str(self.agent))
        object.__setattr__(self, "action", str(self.action))


def utc_now_from(clock_value: datetime) -> datetime:
    """Identity helper kept for symmetry with ``ensure_utc`` (clock values are already UTC)."""
    return ensure_utc(clock_value)


def session_timestamp(ts: pd.Timestamp) -> datetime:
    """A daily bar's timestamp as a UTC datetime."""
    return ts.to_pydatetime().astimezone(UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECONDS_PER_UNIT = {"s": 1_000_000, "ms": 1_000, "us": 1}


@functools.lru_cache(maxsize=65_536)
def utc_from_int(value: int, unit: str) -> datetime:
    """A DatetimeIndex value (``index.asi8[i]`` in ``index.unit``) as a UTC datetime, like :func:`session_timestamp`
    of ``index[i]`` (nanoseconds truncated to microseconds). Memoised: every symbol of an iteration shares the date,
    and boxing a pandas Timestamp per symbol per iteration is a measurable share of a backtest."""
    if unit == "ns":
        return _EPOCH + timedelta(microseconds=value // 1_000)
    return _EPOCH + timedelta(microseconds=value * _MICROSECONDS_PER_UNIT[unit])


@functools.lru_cache(maxsize=65_536)
def _index_stamp(value: int, unit: str, tz: Any) -> pd.Timestamp:
    return pd.Timestamp(value, unit=unit, tz=tz)


def stamp_of(value: int, unit: str, tz: Any) -> pd.Timestamp:
    """The Timestamp of one ``index.asi8`` value of an index with ``index.unit`` and ``index.tz`` (memoised), for
    callers that keep those three per frame instead of asking pandas for them on every read."""
    return _index_stamp(value, unit, tz)


def datetime_index(data: pd.DataFrame | pd.Series) -> pd.DatetimeIndex:
    """``data.index`` as the type checker should see it: bar frames and equity lines are indexed by time (checked
    where they are built: the providers' normalisation, the simulated broker's sync); pandas' types only know ``Index``."""
    return cast(pd.DatetimeIndex, data.index)


def timestamp_at(index: pd.DatetimeIndex, i: int) -> pd.Timestamp:
    """``index[i]`` without pandas' per-call boxing cost (memoised on the value: every symbol of an iteration
    shares its last date)."""
    return _index_stamp(int(index.asi8[i]), index.unit, index.tz)

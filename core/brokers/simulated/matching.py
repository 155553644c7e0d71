"""Part of :class:`.SimulatedBroker`: matching working orders against each new bar (open, intrabar, volume cap)."""

from __future__ import annotations

import math
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from collections.abc import Mapping

import numpy as np
import pandas as pd

from core.brokers.simulated.book import _INTRABAR, _OPEN, _Bar, _FrameView, _Mark, _Record
from core.brokers.simulated.state import _BrokerState
from core.kernel.domain import OrderType, Side, data_price, datetime_index, session_timestamp, timestamp_at


class _Matching(_BrokerState):
    """Bar processing of :class:`.SimulatedBroker`: which orders fill on a bar, at what price and how many shares."""

    # ------------------------------------------------------------------ bar processing

    def _collect_bars(
        self,
        symbol: str,
        frame: pd.DataFrame,
        start: int,
        end: int,
        events: dict[pd.Timestamp, dict[str, _Bar]],
        notes: list[str],
        arrays: Mapping[str, np.ndarray] | None = None,
        view: _FrameView | None = None,
    ) -> None:
        """Rows ``start:end`` of ``frame`` as bars of ``events`` (``view``: the frame's, when the caller has it)."""
        if arrays is None:
            arrays = {c: frame[c].to_numpy(dtype=float) for c in ("open", "high", "low", "close", "volume")}
        if view is None:
            view = _FrameView(frame)
        opens, highs, lows, closes, volumes = (
            arrays[c][start:end].tolist() for c in ("open", "high", "low", "close", "volume")
        )
        for i in range(end - start):
            ts = view.stamp(start + i)
            o, h, low, c, v = float(opens[i]), float(highs[i]), float(lows[i]), float(closes[i]), float(volumes[i])
            if not (math.isfinite(o) and math.isfinite(h) and math.isfinite(low) and math.isfinite(c)):
                notes.append(f"{symbol}: bar {ts.date()} has non-finite prices; no fills on it")
                continue
            events.setdefault(ts, {})[symbol] = _Bar(
                ts, data_price(o), data_price(h), data_price(low), data_price(c), v
            )

    def _update_mark(
        self,
        symbol: str,
        frame: pd.DataFrame,
        end: int,
        notes: list[str],
        arrays: Mapping[str, np.ndarray] | None = None,
        ts: pd.Timestamp | None = None,
    ) -> None:
        if ts is None:
            ts = timestamp_at(datetime_index(frame), end - 1)
        if arrays is not None:
            close, volume = float(arrays["close"][end - 1]), float(arrays["volume"][end - 1])
        else:
            close, volume = float(frame["close"].iat[end - 1]), float(frame["volume"].iat[end - 1])  # type: ignore[arg-type]  # pandas-stubs: iat is not typed by the column's dtype
        volume = volume if math.isfinite(volume) and volume > 0 else 0.0
        previous = self._marks.get(symbol)
        if previous is not None and ts < previous.ts:
            return
        if not math.isfinite(close) or close <= 0:
            notes.append(f"{symbol}: last close on {ts.date()} is unusable ({close!r}); mark unchanged")
            return
        self._marks[symbol] = _Mark(ts, close, volume)

    def _process_bars(self, ts: pd.Timestamp, bars: Mapping[str, _Bar]) -> None:
        at = session_timestamp(ts)
        for phase in (_OPEN, _INTRABAR):
            for side in (Side.SELL, Side.BUY):
                candidates = [r for r in self._working_records() if r.order.side is side and r.order.symbol in bars]
                if phase == _INTRABAR:  # stops first: a bar touching a bracket's stop and target hits the stop
                    candidates.sort(key=lambda r: (0 if r.kind is OrderType.STOP else 1, r.seq))
                else:
                    candidates.sort(key=lambda r: r.seq)
                for record in candidates:
                    if not record.working or record.anchor >= ts:
                        continue
                    bar = bars[record.order.symbol]
                    if phase == _OPEN:
                        price = self._quote_at_open(record, bar.open)
                    else:
                        price = self._quote_intrabar(record, bar)
                    if price is not None:
                        self._execute(record, price, ts, bar.volume, at=at, child_anchor=ts)

    def _quote_at_open(self, record: _Record, level: Decimal) -> Decimal | None:
        """Fill price when the market opens (or, same-close, stands) at ``level``; ``None`` if the order waits."""
        side = record.order.side
        buy = side is Side.BUY
        if record.kind is OrderType.MARKET or (record.kind is OrderType.STOP and record.triggered):
            return self._slippage.apply(level, side)
        if record.kind is OrderType.LIMIT:
            assert record.limit is not None
            if (level <= record.limit) if buy else (level >= record.limit):
                price = self._slippage.apply(level, side)
                return min(price, record.limit) if buy else max(price, record.limit)
            return None
        assert record.stop is not None
        if (level >= record.stop) if buy else (level <= record.stop):
            record.triggered = True
            return self._slippage.apply(level, side)
        return None

    def _quote_intrabar(self, record: _Record, bar: _Bar) -> Decimal | None:
        buy = record.order.side is Side.BUY
        if record.kind is OrderType.MARKET or (record.kind is OrderType.STOP and record.triggered):
            return None  # market-style orders only execute at an open
        if record.kind is OrderType.LIMIT:
            assert record.limit is not None
            reached = bar.low <= record.limit if buy else bar.high >= record.limit
            return record.limit if reached else None
        assert record.stop is not None
        if (bar.high >= record.stop) if buy else (bar.low <= record.stop):
            record.triggered = True
            return self._slippage.apply(record.stop, record.order.side)
        return None

    def _execute(
        self,
        record: _Record,
        price: Decimal,
        ts: pd.Timestamp,
        volume: float,
        *,
        at: datetime,
        child_anchor: pd.Timestamp,
    ) -> None:
        """Fill as much of ``record`` as volume, shares held and cash allow at ``price``."""
        order = record.order
        quantity = record.remaining
        capacity = self._capacity_left(order.symbol, ts, volume)
        if capacity is not None:
            quantity = min(quantity, capacity)
        shortfall: str | None = None
        if order.side is Side.SELL:
            held = self._held(order.symbol)
            if held < quantity:
                shortfall = f"only {held} {order.symbol} held when {quantity} were to be sold (no shorting)"
                quantity = held
        else:
            affordable = self._affordable(record, quantity, price)
            if affordable < quantity:
                shortfall = (
                    f"insufficient cash at fill: {quantity} {order.symbol} @ {price} would cost "
                    f"{self._fill_cost(record, quantity, price)}, cash {self._cash}; filled {affordable}"
                )
                quantity = affordable
        if quantity > 0:
            self._consume(order.symbol, ts, quantity)
            self._fill(record, quantity, price, at, child_anchor)
            self._count_day_trade(order.symbol, order.side, ts.date())
        if shortfall is not None and record.working:
            self._terminate(record, shortfall, at)

    def _capacity_left(self, symbol: str, ts: pd.Timestamp, volume: float) -> int | None:
        if self._share is None:
            return None
        if not math.isfinite(volume) or volume <= 0:
            return 0
        total = int((Decimal(repr(volume)) * self._share).to_integral_value(rounding=ROUND_FLOOR))
        used = self._used.get(symbol)
        taken = used[1] if used is not None and used[0] == ts else 0
        return max(total - taken, 0)

    def _consume(self, symbol: str, ts: pd.Timestamp, quantity: int) -> None:
        if self._share is None:
            return
        used = self._used.get(symbol)
        taken = used[1] if used is not None and used[0] == ts else 0
        self._used[symbol] = (ts, taken + quantity)

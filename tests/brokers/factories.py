"""Hand-made bars and batches for the broker tests.

A :class:`Tape` holds one small OHLCV frame per symbol on shared session dates (business days from 2024-01-02).
``tape.batch(day)`` is the iteration run at the close of session ``day`` (0-based): rows ``0..day`` are visible and
``as_of`` is 21:00 UTC on that session's date. Rows after ``day`` exist in the frame but must never be used.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

from core.kernel.domain import BarsBatch, OrderIntent, OrderType, Side, SymbolBars

START = "2024-01-02"
DEFAULT_VOLUME = 1_000_000.0

Row = tuple[float, float, float, float] | tuple[float, float, float, float, float]


def make_frame(rows: Sequence[Row], start: str = START) -> pd.DataFrame:
    """OHLCV frame from ``(open, high, low, close[, volume])`` rows on consecutive business days (UTC midnight)."""
    index = pd.bdate_range(start, periods=len(rows), tz="UTC", name="timestamp")
    data = [tuple(map(float, row)) + ((DEFAULT_VOLUME,) if len(row) == 4 else ()) for row in rows]
    return pd.DataFrame(data, index=index, columns=["open", "high", "low", "close", "volume"], dtype="float64")


def flat_rows(n: int, price: float = 50.0, volume: float = DEFAULT_VOLUME) -> list[Row]:
    """``n`` quiet bars: open = close = price, range ±1."""
    return [(price, price + 1.0, price - 1.0, price, volume) for _ in range(n)]


def session_close(ts: pd.Timestamp) -> datetime:
    return datetime(ts.year, ts.month, ts.day, 21, 0, tzinfo=UTC)


class Tape:
    def __init__(self, **frames: pd.DataFrame) -> None:
        self.frames = frames
        self.index = max((f.index for f in frames.values()), key=len)

    def day(self, day: int) -> pd.Timestamp:
        return self.index[day]

    def now(self, day: int) -> datetime:
        return session_close(self.index[day])

    def batch(self, day: int, symbols: Iterable[str] | None = None, ends: Mapping[str, int] | None = None) -> BarsBatch:
        chosen = list(self.frames) if symbols is None else list(symbols)
        ends = ends or {}
        bars = {
            s: SymbolBars(s, self.frames[s], ends.get(s, min(day + 1, len(self.frames[s]))), "test") for s in chosen
        }
        return BarsBatch(iteration_id=f"it-{day}", as_of=self.now(day), bars=bars)


def intent(
    symbol: str = "AAA",
    side: Side = Side.BUY,
    quantity: int = 100,
    order_type: OrderType = OrderType.MARKET,
    *,
    limit_price: float | None = None,
    stop_price: float | None = None,
    stop_loss: float | None = None,
    take_profit: float | None = None,
    reference_price: float = 50.0,
) -> OrderIntent:
    return OrderIntent(
        symbol=symbol,
        side=side,
        quantity=quantity,
        order_type=order_type,
        reference_price=reference_price,
        strategy="test",
        confidence=0.5,
        reason="test intent",
        stop_loss=stop_loss,
        take_profit=take_profit,
        limit_price=limit_price,
        stop_price=stop_price,
    )


def buy(symbol: str = "AAA", quantity: int = 100, **kw) -> OrderIntent:
    return intent(symbol, Side.BUY, quantity, kw.pop("order_type", OrderType.MARKET), **kw)


def sell(symbol: str = "AAA", quantity: int = 100, **kw) -> OrderIntent:
    return intent(symbol, Side.SELL, quantity, kw.pop("order_type", OrderType.MARKET), **kw)


def bracket(symbol: str = "AAA", quantity: int = 100, *, stop_loss: float, take_profit: float, **kw) -> OrderIntent:
    return intent(symbol, Side.BUY, quantity, OrderType.BRACKET, stop_loss=stop_loss, take_profit=take_profit, **kw)


def D(value: str) -> Decimal:
    return Decimal(value)

"""Small factories for the metrics tests (no I/O, fixed UTC timestamps)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pandas as pd

from core.analytics.metrics import ClosedTrade

T0 = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)


def utc_series(values: Sequence[float], dates: Sequence[str]) -> pd.Series:
    """A float Series on a UTC DatetimeIndex built from ISO date strings."""
    return pd.Series([float(v) for v in values], index=pd.DatetimeIndex(dates, tz="UTC"), dtype=float)


def daily_series(values: Sequence[float], start: str = "2024-01-01") -> pd.Series:
    """A float Series on consecutive UTC calendar days."""
    return pd.Series(
        [float(v) for v in values], index=pd.date_range(start, periods=len(values), freq="D", tz="UTC"), dtype=float
    )


def make_trade(
    pnl: float,
    *,
    strategy: str = "momentum",
    symbol: str = "AAA",
    return_pct: float = 0.0,
    entry_confidence: float | None = None,
    index: int = 0,
) -> ClosedTrade:
    entry_at = T0 + timedelta(days=index)
    return ClosedTrade(
        symbol=symbol,
        strategy=strategy,
        entry_at=entry_at,
        exit_at=entry_at + timedelta(hours=5),
        entry_price=100.0,
        exit_price=100.0 * (1.0 + return_pct),
        quantity=10.0,
        pnl=pnl,
        entry_confidence=entry_confidence,
        return_pct=return_pct,
    )

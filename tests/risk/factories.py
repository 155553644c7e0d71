"""Factories for the risk-engine tests: small, explicit builders with hand-checkable defaults."""

from __future__ import annotations

from datetime import UTC, datetime
from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

from core.kernel.domain import Action, Signal, ValidatedSignal, frozen_map
from core.risk import Candidate, PortfolioView, PositionView

AS_OF = datetime(2024, 3, 1, 21, 0, tzinfo=UTC)


def make_signal(
    symbol: str = "AAPL",
    action: Action = Action.BUY,
    price: float = 20.0,
    stop: float | None = None,
    target: float | None = None,
    strategy: str = "test_strategy",
    strength: float = 0.8,
) -> Signal:
    return Signal(
        symbol=symbol,
        strategy=strategy,
        action=action,
        strength=strength,
        price=price,
        as_of=AS_OF,
        stop=stop,
        target=target,
    )


def make_validated(confidence: float = 1.0, **signal_kwargs) -> ValidatedSignal:
    return ValidatedSignal(signal=make_signal(**signal_kwargs), confidence=confidence)


def make_candidate(
    symbol: str = "AAPL",
    price: float = 20.0,
    atr: float = 2.0,
    confidence: float = 1.0,
    sector: str = "technology",
    avg_dollar_volume: float = 50_000_000.0,
    spread_pct: float | None = None,
    stop: float | None = None,
    target: float | None = None,
    returns: pd.Series | None = None,
    action: Action = Action.BUY,
    quote_error: str | None = None,
) -> Candidate:
    return Candidate(
        signal=make_validated(
            confidence=confidence, symbol=symbol, price=price, stop=stop, target=target, action=action
        ),
        atr=atr,
        avg_dollar_volume=avg_dollar_volume,
        spread_pct=spread_pct,
        sector=sector,
        returns=returns,
        quote_error=quote_error,
    )


def position(symbol: str, market_value: float, sector: str, price: float = 100.0) -> PositionView:
    return PositionView(symbol=symbol, quantity=market_value / price, market_value=market_value, sector=sector)


def make_portfolio(
    cash: float = 100_000.0,
    positions: Iterable[PositionView] = (),
    equity: float | None = None,
    equity_day_start: float | None = None,
    equity_week_high: float | None = None,
    returns: Mapping[str, pd.Series] | pd.DataFrame | None = None,
    realized_trade_returns: Sequence[float] = (),
) -> PortfolioView:
    """Equity defaults to cash + market value of the positions (as the broker reports it)."""
    held = {p.symbol: p for p in positions}
    if equity is None:
        equity = cash + sum(p.market_value for p in held.values())
    return PortfolioView(
        cash=cash,
        equity=equity,
        positions=frozen_map(held),
        equity_day_start=equity_day_start,
        equity_week_high=equity_week_high,
        returns=returns,
        realized_trade_returns=tuple(realized_trade_returns),
    )


def sessions(n: int) -> pd.DatetimeIndex:
    return pd.date_range("2023-01-02", periods=n, freq="B", tz="UTC")

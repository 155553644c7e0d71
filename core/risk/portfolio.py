"""The engine's view of the portfolio, built from the broker account and the run's equity history. Pure."""

from __future__ import annotations

from dataclasses import replace
from collections.abc import Callable, Mapping, Sequence

import pandas as pd

from core.brokers.base import AccountState
from core.kernel.domain import BarsBatch, SymbolBars, frozen_map
from core.risk.models import PortfolioView, PositionView
from core.risk.sectors import sector_of


def portfolio_view(
    account: AccountState,
    equity_history: Sequence[float],
    sectors: Mapping[str, str],
    realized_trade_returns: Sequence[float] = (),
) -> PortfolioView:
    """``equity_history``: the run's recent equity values, oldest first (previous iterations' closes); the last is
    the day start, the last four and the current equity give the week's high. ``returns`` is left None (see
    :func:`with_returns`: only the correlation rule of entries reads them)."""
    history = [float(x) for x in equity_history]
    equity = float(account.equity)
    week = history[-4:] + [equity]
    positions = {
        s: PositionView(
            symbol=s, quantity=float(p.quantity), market_value=float(p.market_value), sector=sector_of(s, sectors)
        )
        for s, p in account.positions.items()
        if p.quantity
    }
    return PortfolioView(
        cash=float(account.cash),
        equity=equity,
        positions=positions,
        equity_day_start=history[-1] if history else None,
        equity_week_high=max(week),
        returns=None,
        realized_trade_returns=tuple(realized_trade_returns),
        daytrade_count=account.daytrade_count,
        pattern_day_trader=account.pattern_day_trader,
    )


def with_returns(
    portfolio: PortfolioView,
    account: AccountState,
    batch: BarsBatch,
    returns_of: Callable[[SymbolBars], pd.Series],
) -> PortfolioView:
    """The view with the held positions' daily returns by symbol (for the correlation rule)."""
    columns = {s: returns_of(batch.bars[s]) for s, p in account.positions.items() if p.quantity and s in batch.bars}
    return replace(portfolio, returns=frozen_map(columns) if columns else None)

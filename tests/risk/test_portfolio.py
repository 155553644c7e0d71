"""The engine's portfolio view built from a broker account and the run's equity history."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pandas as pd

from core.brokers.base import AccountState
from core.data.files import read_bars_file
from core.kernel.domain import BarsBatch, Position, SymbolBars
from core.kernel.frame_cache import FrameCache
from core.risk import features as rf
from core.risk import portfolio_view, with_returns
from tests.conftest import BUNDLED_DAILY

AT = datetime(2021, 3, 10, 21, tzinfo=UTC)


def _account() -> AccountState:
    positions = {
        "SPY": Position("SPY", 10, Decimal("380"), AT, last_price=Decimal("390")),
        "IBM": Position("IBM", 5, Decimal("120"), AT),
        "BAC": Position("BAC", 0, Decimal("30"), AT),  # flat: not a position
    }
    return AccountState(at=AT, cash=Decimal("50000"), positions=positions, equity=Decimal("54500"))


def test_portfolio_view_then_cash_equity_held_positions_with_sectors_and_the_equity_references() -> None:
    view = portfolio_view(_account(), [50_000, 56_000, 55_000, 53_000, 54_000], {"SPY": "index"}, [0.1, -0.05])
    assert (view.cash, view.equity) == (50_000.0, 54_500.0)
    assert set(view.positions) == {"SPY", "IBM"}
    spy, ibm = view.positions["SPY"], view.positions["IBM"]
    assert (spy.quantity, spy.market_value, spy.sector) == (10.0, 3_900.0, "index")
    assert (ibm.quantity, ibm.market_value, ibm.sector) == (5.0, 600.0, "unknown")
    assert view.equity_day_start == 54_000.0  # the previous iteration's close
    assert view.equity_week_high == 56_000.0  # the last four closes and the current equity
    assert view.returns is None and view.realized_trade_returns == (0.1, -0.05)


def test_portfolio_view_without_history_then_no_day_start_and_the_week_high_is_the_equity() -> None:
    view = portfolio_view(_account(), [], {})
    assert view.equity_day_start is None and view.equity_week_high == 54_500.0
    assert view.realized_trade_returns == ()


def test_with_returns_then_the_held_symbols_with_bars_by_symbol_else_none() -> None:
    frame = read_bars_file(BUNDLED_DAILY / "SPY.csv")
    end = int(frame.index.get_loc(pd.Timestamp("2021-03-10", tz=UTC))) + 1
    batch = BarsBatch("it-1", AT, {"SPY": SymbolBars("SPY", frame, end, "files")})  # IBM held but not in the batch
    cache = FrameCache()
    view = portfolio_view(_account(), [], {})
    added = with_returns(view, _account(), batch, lambda sb: rf.returns_window(cache, sb, 60))
    assert added.returns is not None and list(added.returns) == ["SPY"]
    assert added.returns["SPY"].equals(rf.returns_window(cache, batch.bars["SPY"], 60))
    assert added.cash == view.cash and added.positions == view.positions
    empty = BarsBatch("it-1", AT, {})
    assert with_returns(view, _account(), empty, lambda sb: rf.returns_window(cache, sb, 60)).returns is None

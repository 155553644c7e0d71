"""Cross-check: the reference backtester and backtrader run the same SMA crossover on bundled bars.

backtrader is a dev-only dependency (``pip install backtrader==1.9.78.123``); without it this module is skipped
with the reason. The backtrader side is ``scripts/bench_backtrader.py``'s strategy, so the benchmark and this test
check the same code.
"""

from __future__ import annotations

from datetime import date

import pytest

pytest.importorskip("backtrader", reason="backtrader is not installed (dev-only: pip install backtrader==1.9.78.123)")

from core.backtest.reference import reference_ma_crossover  # noqa: E402
from scripts.bench_backtrader import bundled_paths, load_bars, run_backtrader, same_trades  # noqa: E402

SYMBOLS = ("IBM", "SPY")
START, END = date(2014, 1, 1), date(2019, 12, 31)
FAST, SLOW, QTY, CASH = 10, 30, 10, 100_000.0


@pytest.fixture(scope="module")
def bars() -> dict:
    return load_bars(bundled_paths(symbols=SYMBOLS), START, END)


def test_reference_and_backtrader_when_same_bars_then_same_entries_exits_and_final_equity_to_the_cent(
    bars: dict,
) -> None:
    ours = reference_ma_crossover(bars, FAST, SLOW, QTY, CASH)
    theirs = run_backtrader(bars, FAST, SLOW, QTY, CASH)

    # The comparison is only fair if backtrader never refused an order for lack of cash.
    assert theirs.rejected_orders == 0 and ours.min_cash >= 0
    assert len(ours.closed_trades) >= 20 and {t.symbol for t in ours.trades} == set(SYMBOLS)
    assert [(t.symbol, t.entry_date) for t in theirs.trades] == [(t.symbol, t.entry_date) for t in ours.trades]
    assert same_trades(theirs.trades, ours.trades)  # exits too; prices equal to 1e-12 relative
    assert round(theirs.final_equity, 2) == round(ours.final_equity, 2)


def test_backtrader_runner_when_one_bar_changes_then_the_cross_check_notices(bars: dict) -> None:
    # Guard against a comparison that cannot fail: move one SPY open that a trade fills at and the two engines,
    # fed different bars, must disagree on that trade's price.
    ours = reference_ma_crossover(bars, FAST, SLOW, QTY, CASH)
    fill_day = next(t.entry_date for t in ours.trades if t.symbol == "SPY")
    altered = {symbol: frame.copy() for symbol, frame in bars.items()}
    altered["SPY"].loc[fill_day, "open"] += 1.0

    theirs = run_backtrader(altered, FAST, SLOW, QTY, CASH)

    assert not same_trades(theirs.trades, ours.trades)
    assert round(theirs.final_equity, 2) != round(ours.final_equity, 2)

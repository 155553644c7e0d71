"""Cross-check: ``main.py backtest`` (the daemon's six agents, simulated clock and broker) against the independent
reference backtester and, when it is installed, backtrader, on the same bars with the same rules.

Same rules means: ``--strategy trend_following --param fast=10 --param slow=30`` (SMA 10/30 crossover, long-only),
``--sizing fixed-qty:10 --no-risk-limits`` (10 shares per entry, no risk gate; with the limits off the entries carry
no stop-loss/take-profit legs either, so positions exit only on the SELL crossover, as in the reference),
``--fill next-open``, ``--commission 0 --slippage 0``, and cash large enough that no order is ever short of it.

With zero slippage the simulated broker fills at the bar's own price (``core.kernel.domain.data_price``), as the reference
and backtrader do: the comparison runs on the bundled bars rounded to four decimals and on the raw bundled bars
(prices with more decimals), and both agree to the last bit of the prices and to the cent of the final equity.
``tests/backtest/test_reference_data.py`` does the same on the public reference files other backtesters test with.
"""

from __future__ import annotations

import argparse
import io
import json
import math
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from config.settings import Settings
from core.backtest.cli import add_backtest_parser, run_backtest_command
from core.backtest.reference import ReferenceTrade, reference_ma_crossover
from core.data.files import read_bars_file
from tests.conftest import BUNDLED_DAILY, SETTINGS_ENV

SYMBOLS = ("IBM", "SPY")
START, END = date(2015, 1, 1), date(2018, 12, 31)
FAST, SLOW, QTY, CASH = 10, 30, 10, 1_000_000
SAME_RULES = [
    "--strategy", "trend_following", "--param", f"fast={FAST}", "--param", f"slow={SLOW}",
    "--sizing", f"fixed-qty:{QTY}", "--no-risk-limits", "--fill", "next-open",
    "--commission", "0", "--slippage", "0", "--cash", str(CASH), "--no-shadow",
]  # fmt: skip


def _write_data(directory: Path, decimals: int | None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for symbol in SYMBOLS:
        frame = read_bars_file(BUNDLED_DAILY / f"{symbol}.csv")
        frame = frame.loc[
            (frame.index >= pd.Timestamp(START, tz=UTC)) & (frame.index <= pd.Timestamp(END, tz=UTC))
        ].copy()
        if decimals is not None:
            prices = ["open", "high", "low", "close"]
            frame[prices] = frame[prices].round(decimals)
        frame.index = frame.index.strftime("%Y-%m-%d")
        frame.index.name = "date"
        frame.to_csv(directory / f"{symbol}.csv")
    return directory


def _bars(directory: Path) -> dict[str, pd.DataFrame]:
    """The bars exactly as the pipeline's file provider reads them."""
    return {symbol: read_bars_file(directory / f"{symbol}.csv") for symbol in SYMBOLS}


def _pipeline(data_dir: Path, db: Path, *extra: str) -> dict[str, Any]:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db")
    parser = argparse.ArgumentParser()
    add_backtest_parser(parser.add_subparsers(dest="command"), [common])
    args = parser.parse_args(["backtest", "--data-dir", str(data_dir), *SAME_RULES, *extra, "--json"])
    with pytest.MonkeyPatch.context() as mp:  # module-scoped: clear the environment as the autouse fixture does
        for name in SETTINGS_ENV:
            mp.delenv(name, raising=False)
        settings = Settings(_env_file=None, database_url=f"sqlite:///{db}", log_dir=db.parent / "logs")  # type: ignore[call-arg]
        out, err = io.StringIO(), io.StringIO()
        assert run_backtest_command(args, settings, stdout=out, stderr=err) == 0, err.getvalue()
    return json.loads(out.getvalue())


def _as_reference(trades: list[dict[str, Any]]) -> list[ReferenceTrade]:
    def day(text: str | None) -> datetime | None:
        return datetime.fromisoformat(text) if text is not None else None

    return sorted(
        (
            ReferenceTrade(
                t["symbol"], day(t["entry_at"]), t["entry_price"], day(t["exit_at"]), t["exit_price"], t["quantity"]
            )
            for t in trades
        ),
        key=lambda t: (t.symbol, t.entry_date),
    )


@pytest.fixture(scope="module")
def grid_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_data(tmp_path_factory.mktemp("grid") / "daily", decimals=4)


@pytest.fixture(scope="module")
def pipeline(grid_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _pipeline(grid_data, tmp_path_factory.mktemp("db") / "cross.db")  # the rules above, nothing more


def test_pipeline_when_same_bars_and_rules_then_same_entries_exits_and_final_equity_as_the_reference(
    grid_data: Path, pipeline: dict[str, Any]
) -> None:
    reference = reference_ma_crossover(_bars(grid_data), FAST, SLOW, QTY, float(CASH))
    ours = _as_reference(pipeline["trades"])

    assert reference.min_cash >= 0  # cash never binds, so the broker's cash checks cannot have changed anything
    assert len(reference.closed_trades) >= 20 and {t.symbol for t in reference.trades} == set(SYMBOLS)
    assert [(t.symbol, t.entry_date, t.entry_price, t.qty) for t in ours] == [
        (t.symbol, t.entry_date, t.entry_price, t.qty) for t in reference.trades
    ]
    assert ours == reference.trades  # exits (dates and prices) too, open positions with exit None
    assert pipeline["final_equity"] == pytest.approx(reference.final_equity, abs=0.005)


def test_pipeline_when_same_bars_and_rules_then_same_trades_and_final_equity_as_backtrader(
    grid_data: Path, pipeline: dict[str, Any]
) -> None:
    pytest.importorskip(
        "backtrader", reason="backtrader is not installed (dev-only: pip install backtrader==1.9.78.123)"
    )
    from scripts.bench_backtrader import run_backtrader, same_trades

    theirs = run_backtrader(_bars(grid_data), FAST, SLOW, QTY, float(CASH))
    ours = _as_reference(pipeline["trades"])

    assert theirs.rejected_orders == 0
    assert len(ours) >= 20
    assert [(t.symbol, t.entry_date, t.qty) for t in ours] == [(t.symbol, t.entry_date, t.qty) for t in theirs.trades]
    assert same_trades(theirs.trades, ours)  # prices equal up to backtrader's last-bit averaging noise
    assert round(pipeline["final_equity"], 2) == round(theirs.final_equity, 2)


def test_pipeline_records_the_run_and_uses_plain_market_orders_when_no_brackets(pipeline: dict[str, Any]) -> None:
    assert pipeline["status"] == "finished"
    assert pipeline["settings"]["brackets"] is False and pipeline["settings"]["selector"] == "fixed:trend_following"
    assert {t["strategy"] for t in pipeline["trades"]} == {"trend_following"}
    assert all(t["quantity"] == QTY for t in pipeline["trades"])
    assert all(t["commissions"] == 0.0 for t in pipeline["trades"])


def test_pipeline_with_bracket_legs_then_exits_differ_from_the_reference(grid_data: Path, tmp_path: Path) -> None:
    # Guard against a comparison that cannot fail: with the strategy's targets kept, the Risk agent sends bracket
    # entries whose stop-loss/take-profit legs close positions before the SELL crossover, so the trades differ.
    with_brackets = _pipeline(grid_data, tmp_path / "brackets.db", "--brackets")
    reference = reference_ma_crossover(_bars(grid_data), FAST, SLOW, QTY, float(CASH))

    assert _as_reference(with_brackets["trades"]) != reference.trades
    assert not math.isclose(with_brackets["final_equity"], reference.final_equity, abs_tol=0.005)


def test_pipeline_on_raw_bars_off_the_grid_then_same_prices_and_final_equity_as_the_reference(tmp_path: Path) -> None:
    raw = _write_data(tmp_path / "raw", decimals=None)
    result = _pipeline(raw, tmp_path / "raw.db", "--no-brackets")
    reference = reference_ma_crossover(_bars(raw), FAST, SLOW, QTY, float(CASH))
    ours = _as_reference(result["trades"])

    assert [(t.symbol, t.entry_date, t.exit_date, t.qty) for t in ours] == [
        (t.symbol, t.entry_date, t.exit_date, t.qty) for t in reference.trades
    ]
    assert any(t.entry_price != round(t.entry_price, 4) for t in reference.trades)  # the raw bars are off the grid
    for a, b in zip(ours, reference.trades, strict=True):  # the bar's own open, not rounded to 0.0001
        assert math.isclose(a.entry_price, b.entry_price, rel_tol=1e-12)
        assert (a.exit_price is None) == (b.exit_price is None)
        assert b.exit_price is None or math.isclose(a.exit_price, b.exit_price, rel_tol=1e-12)  # type: ignore[arg-type]
    assert abs(result["final_equity"] - reference.final_equity) < 1e-6  # exact Decimal vs float arithmetic

"""Quiet sessions skipped (the default) against every session processed (``--verify``), record by record.

Each case runs the same backtest twice into two SQLite databases and compares every row the run recorded (iterations,
decisions, orders, fills, equity snapshots, reports, breaker events, positions, shadow rows, LLM calls, state) with
the run id replaced and the wall-clock columns left out, then the JSON result without the run id, the database, the
timings and the count of skipped sessions. The cases cover the bundled bars (with the risk limits, their trading-state
episodes and brackets, and under the cross-check's rules), synthetic bars and, when present, the cross-check universe.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from core.backtest.cli import add_backtest_parser, config_from_args
from core.backtest.runner import BacktestConfig, BacktestResult, run_backtest
from core.data.files import read_bars_file
from core.data.synthetic import generate_bars
from core.kernel.calendar import MarketCalendar
from scripts.ledger_fingerprint import TABLES, WALL_CLOCK  # the ledger tables, and the wall-clock columns
from tests.conftest import make_settings

UNIVERSE_STOCKS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "universe" / "stocks"
MODE_FACTS = ("run_id", "database", "elapsed_s", "timings", "timings_s")
SMA_RULES: dict[str, Any] = {
    "strategy": "trend_following",
    "params": {"fast": 10, "slow": 30},
    "sizing": "fixed-qty:10",
    "risk_limits": False,
    "commission_per_share": Decimal(0),
    "slippage_bps": Decimal(0),
    "cash": Decimal(1_000_000),
    "shadow": False,
}


def _rows(database: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(database) as con:
        (run_id,) = con.execute("SELECT id FROM runs").fetchone()
        out: dict[str, list[tuple[Any, ...]]] = {}
        for table in TABLES:
            columns = [r[1] for r in con.execute(f"PRAGMA table_info('{table}')")]
            keep = [c for c in columns if c != "id" and c not in WALL_CLOCK.get(table, ())]
            order = "id" if "id" in columns else ", ".join(keep)
            rows = con.execute(f"SELECT {', '.join(keep)} FROM {table} ORDER BY {order}").fetchall()
            out[table] = [tuple(v.replace(run_id, "RUN") if isinstance(v, str) else v for v in row) for row in rows]
    return out


def _run(
    tmp_path: Path, name: str, config: BacktestConfig, **settings_overrides: Any
) -> tuple[BacktestResult, dict[str, list[tuple[Any, ...]]]]:
    where = tmp_path / name
    where.mkdir(parents=True)
    settings = make_settings(where, database_url=f"sqlite:///{where / 'run.db'}", **settings_overrides)
    result = asyncio.run(run_backtest(settings, config))
    return result, _rows(where / "run.db")


def _comparable(result: BacktestResult) -> dict[str, Any]:
    data = result.as_json()
    for key in MODE_FACTS:
        data.pop(key, None)
    data["settings"] = {k: v for k, v in data["settings"].items() if k != "sessions_skipped"}
    return data


def _both_modes(
    tmp_path: Path, settings: dict[str, Any] | None = None, **options: Any
) -> tuple[BacktestResult, BacktestResult, dict[str, Any]]:
    """Run verify mode and skip mode; assert every record and the JSON result are the same. Returns both results and
    the verify run's rows. ``settings``: overrides of the settings of both runs."""
    full, full_rows = _run(tmp_path, "verify", BacktestConfig(verify=True, **options), **(settings or {}))
    quick, quick_rows = _run(tmp_path, "skip", BacktestConfig(**options), **(settings or {}))
    assert full.settings["sessions_skipped"] == 0
    for table in TABLES:
        assert len(quick_rows[table]) == len(full_rows[table]), table
        for n, (a, b) in enumerate(zip(full_rows[table], quick_rows[table], strict=True)):
            assert a == b, f"{table} row {n}: verify {a} != skip {b}"
    assert _comparable(quick) == _comparable(full)
    assert quick.final_equity == full.final_equity
    return full, quick, full_rows


def _write(directory: Path, frames: dict[str, pd.DataFrame]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for symbol, frame in frames.items():
        frame = frame.copy()
        frame.index = pd.DatetimeIndex(frame.index).strftime("%Y-%m-%d")
        frame.rename_axis("date").to_csv(directory / f"{symbol}.csv")
    return directory


def test_bundled_with_risk_limits_and_brackets_is_identical(tmp_path: Path, bundled_daily: Path) -> None:
    # 2006-2011: the 2008 crash takes the account through drawdown locks and releases; brackets, risk sizing
    full, quick, rows = _both_modes(
        tmp_path,
        data_dir=bundled_daily,
        symbols=("AAPL", "BAC", "IBM", "SPY"),
        start=date(2006, 1, 1),
        end=date(2011, 12, 31),
        strategy="trend_following",
        shadow=False,
    )
    assert quick.settings["sessions_skipped"] > 0
    assert rows["fills"] and rows["equity_snapshots"]
    assert quick.trading_episodes == full.trading_episodes


@pytest.mark.parametrize("bus_mode", ["async", "sync"])
def test_bundled_under_the_cross_check_rules_is_identical(tmp_path: Path, bundled_daily: Path, bus_mode: str) -> None:
    full, quick, rows = _both_modes(
        tmp_path, {"bus_mode": bus_mode}, data_dir=bundled_daily, symbols=("IBM", "SPY"), start=date(2012, 1, 1), end=date(2018, 12, 31),
        **SMA_RULES,
    )  # fmt: skip
    assert quick.settings["sessions_skipped"] > 0
    assert len(rows["fills"]) > 10


@pytest.mark.parametrize("strategy", ["mean_reversion", "breakout", "volatility_breakout"])
def test_synthetic_bars_with_other_pinned_strategies_are_identical(tmp_path: Path, strategy: str) -> None:
    index = MarketCalendar().sessions_index(date(2014, 1, 1), date(2017, 12, 31))
    frames = {f"SYN{k}": generate_bars(f"SYN{k}", index, seed=11) for k in range(5)}
    # a symbol listed later (not_listed, then warming up) and one with a hole (a data flag for a while)
    frames["LATE"] = generate_bars("LATE", index[300:], seed=12)
    frames["GAP"] = generate_bars("GAP", index, seed=13).drop(index[500:503])
    data = _write(tmp_path / "data", frames)
    full, quick, rows = _both_modes(tmp_path, data_dir=data, strategy=strategy, shadow=False, benchmark="SYN0")
    assert quick.settings["sessions_skipped"] > 0
    assert rows["fills"]
    assert full.exclusions_by_reason == quick.exclusions_by_reason


def test_cross_check_universe_is_identical(tmp_path: Path) -> None:
    files = sorted(UNIVERSE_STOCKS.glob("*.us.txt"))[:6] if UNIVERSE_STOCKS.is_dir() else []
    if len(files) < 6:
        pytest.skip(f"the cross-check universe is not at {UNIVERSE_STOCKS}")
    frames = {}
    for path in files:
        link = tmp_path / f".{path.name}.csv"
        link.symlink_to(path)
        frame = read_bars_file(link)
        frames[path.name.split(".")[0].upper()] = frame.loc[frame.index >= frame.index[-1] - pd.DateOffset(years=4)]
    data = _write(tmp_path / "data", frames)
    for name, options in (
        ("sma", SMA_RULES),
        ("risk", {"strategy": "trend_following", "shadow": False}),
    ):
        _, quick, rows = _both_modes(tmp_path / name, data_dir=data, **options)
        assert quick.settings["sessions_skipped"] > 0
        assert rows["fills"]


def test_shadow_ledger_on_then_quiet_sessions_skipped_with_the_same_ledger(tmp_path: Path, bundled_daily: Path) -> None:
    """With the shadow ledger on (the default), quiet sessions are skipped too: the Strategy agent gives their ledger
    from its cached matrices, every shadow_matrices row the same as with every session processed."""
    full, quick, rows = _both_modes(
        tmp_path, data_dir=bundled_daily, symbols=("AAPL", "BAC", "IBM", "SPY"), start=date(2012, 1, 1),
        end=date(2016, 12, 31), **{**SMA_RULES, "shadow": True},
    )  # fmt: skip
    assert quick.settings["sessions_skipped"] > 100
    assert len(rows["shadow_matrices"]) > 1000 and rows["fills"]


def test_configurations_that_are_never_skipped(tmp_path: Path, bundled_daily: Path) -> None:
    """The routine decisions and an unpinned selector record per session: nothing is skipped."""
    common = {
        "data_dir": bundled_daily,
        "symbols": ("IBM", "SPY"),
        "start": date(2016, 1, 1),
        "end": date(2016, 12, 31),
    }
    for name, options in (
        ("record_all", {"strategy": "trend_following", "shadow": False, "record_all": True}),
        ("selector", {"shadow": False}),
    ):
        _, quick, _ = _both_modes(tmp_path / name, **common, **options)
        assert quick.settings["sessions_skipped"] == 0, name


def test_verify_option_on_the_command_line() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    add_backtest_parser(sub)
    settings = make_settings(Path("."))
    assert config_from_args(parser.parse_args(["backtest", "--verify"]), settings).verify is True
    assert config_from_args(parser.parse_args(["backtest"]), settings).verify is False


def test_bus_replace_keeps_the_subscription_name_and_place() -> None:
    from core.kernel.bus import EventBus
    from core.kernel.events import IterationStarted

    bus = EventBus()
    bus.subscribe(IterationStarted, lambda e: None, "first")
    bus.subscribe(IterationStarted, lambda e: None, "second")
    bus.replace(IterationStarted, "first", lambda e: None)
    assert bus.subscribers(IterationStarted) == ["first", "second"]
    with pytest.raises(KeyError):
        bus.replace(IterationStarted, "third", lambda e: None)

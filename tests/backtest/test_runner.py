"""``main.py backtest``: the runner and its command line, through the daemon's real wiring on the bundled bars."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import math
from dataclasses import fields
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from config.settings import Settings
from core.backtest.runner import (
    BacktestConfig,
    BacktestError,
    FixedSelector,
    ProgressBar,
    RecordedSelector,
    SnapshotProvider,
    audit_batch,
    parse_param,
    run_backtest,
    shadow_ledgers,
    without_targets,
)
from core.kernel.calendar import MarketCalendar
from core.data.cache import DiskBarCache
from core.data.files import read_bars_file
from core.kernel.domain import to_price
from core.analytics.metrics import PerformanceMetrics, TradeMetrics
from core.runtime.orchestrator import IterationOutcome
from core.persistence.db import normalise_url
from core.persistence.models import DecisionRow, EquitySnapshotRow, FillRow, OrderRow, Run
from strategies.context import MarketContext
from strategies.registry import build_registry
from utils.jsonable import jsonable
from strategies.selector import DeterministicSelector
from tests.backtest.helpers import backtest_cli
from tests.conftest import BUNDLED_DAILY

METRIC_KEYS = {f.name for f in fields(PerformanceMetrics) if f.name != "trades"} | {
    f.name for f in fields(TradeMetrics)
}
TRADE_KEYS = {"symbol", "strategy", "entry_at", "entry_price", "exit_at", "exit_price", "quantity", "open_quantity",
              "commissions", "pnl", "return_pct"}  # fmt: skip
PINNED_SMA = ["--strategy", "trend_following", "--param", "fast=10", "--param", "slow=30", "--no-brackets"]


def _json(settings: Settings, *argv: str) -> dict[str, Any]:
    code, out, err = backtest_cli(settings, *argv, "--json")
    assert code == 0, err
    return json.loads(out)  # the whole of stdout is exactly one JSON object


def _session(settings: Settings) -> Session:
    return Session(create_engine(normalise_url(settings.database_url)))


def _sessions(start: date, end: date) -> list[date]:
    return MarketCalendar().sessions_between(start, end)


def _without_run_specifics(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k not in ("run_id", "elapsed_s", "timings_s")}


# ------------------------------------------------------------------------------------------------- the JSON result


def test_backtest_json_when_run_then_one_object_with_trades_metrics_bars_and_the_run_recorded(settings_factory) -> None:
    settings = settings_factory()
    result = _json(settings, "--symbols", "AAPL,SPY", "--start", "2019-01-01", "--end", "2020-06-30")

    sessions = _sessions(date(2019, 1, 1), date(2020, 6, 30))
    assert result["iterations"] == len(sessions) and result["degraded_iterations"] == 0
    assert result["bars"] == 2 * len(sessions)  # both symbols have a bar on every session
    assert (result["start"], result["end"]) == (sessions[0].isoformat(), sessions[-1].isoformat())
    assert result["symbols"] == ["AAPL", "SPY"] and result["status"] == "finished"
    assert isinstance(result["elapsed_s"], float) and result["elapsed_s"] > 0
    timings = result["timings_s"]  # elapsed_s by phase (the JSON rounds each to the millisecond)
    assert set(timings) == {"load", "setup", "sessions", "results"} and timings["sessions"] > 0  # no robustness asked
    assert sum(timings.values()) == pytest.approx(result["elapsed_s"], abs=0.01)
    assert set(result["metrics"]) == METRIC_KEYS
    trades = result["trades"]
    assert trades and all(set(t) == TRADE_KEYS for t in trades)
    closed = [t for t in trades if t["exit_at"] is not None]
    assert result["metrics"]["num_trades"] == len(closed)
    assert all(t["entry_at"] <= t["exit_at"] and t["pnl"] is not None for t in closed)
    assert all(
        t["exit_price"] is None and t["pnl"] is None and t["open_quantity"] > 0 for t in trades if t["exit_at"] is None
    )
    assert result["metrics"]["total_pnl"] == pytest.approx(sum(t["pnl"] for t in closed))
    assert result["benchmark"]["symbol"] == "SPY" and result["benchmark"]["total_return"] > 0

    with _session(settings) as s:
        run = s.get(Run, result["run_id"])
        assert run is not None and (run.kind, run.status) == ("backtest", "finished")
        snapshots = s.scalars(
            select(EquitySnapshotRow).where(EquitySnapshotRow.run_id == run.id).order_by(EquitySnapshotRow.at)
        ).all()
        agents = set(s.scalars(select(DecisionRow.agent).where(DecisionRow.run_id == run.id).distinct()))
        order_types = set(
            s.scalars(select(OrderRow.order_type).where(OrderRow.run_id == run.id, OrderRow.side == "buy"))
        )
    assert len(snapshots) == result["iterations"]
    assert float(snapshots[-1].equity) == pytest.approx(
        result["final_equity"], abs=0.005
    )  # the same equity, to the cent
    assert result["metrics"]["total_return"] == pytest.approx(float(snapshots[-1].equity / snapshots[0].equity) - 1)
    assert {"strategy", "quant", "risk", "execution"} <= agents  # signals, validations, approvals, submissions
    assert "bracket" in order_types  # by default the strategies' targets make bracket entries


def test_backtest_records_routine_decisions_only_with_record_all(settings_factory) -> None:
    """By default the HOLD/"data ok"/"skip"/"no order" rows of every symbol and session are not written; with
    --record-all they are, exactly as the daemon writes them; the trading is the same either way."""
    argv = ("--symbols", "AAPL,SPY", "--start", "2019-01-01", "--end", "2019-06-30")
    lean_settings, full_settings = settings_factory(), settings_factory()
    lean, full = _json(lean_settings, *argv), _json(full_settings, *argv, "--record-all")
    assert _without_run_specifics(lean) == _without_run_specifics(full)

    def counts(settings: Settings, run_id: str) -> dict[tuple[str, str], int]:
        with _session(settings) as s:
            rows = s.execute(
                select(DecisionRow.agent, DecisionRow.action, func.count())
                .where(DecisionRow.run_id == run_id)
                .group_by(DecisionRow.agent, DecisionRow.action)
            ).all()
        return {(agent, action): n for agent, action, n in rows}

    lean_counts, full_counts = counts(lean_settings, lean["run_id"]), counts(full_settings, full["run_id"])
    routine = {("data", "ok"), ("strategy", "HOLD"), ("quant", "skip"), ("risk", "skip"), ("execution", "none")}
    sessions = len(_sessions(date(2019, 1, 1), date(2019, 6, 30)))
    assert full_counts[("data", "ok")] == 2 * sessions  # one per symbol and session
    assert full_counts[("execution", "none")] > 0 and full_counts[("strategy", "HOLD")] > 0
    assert not routine & {k for k, n in lean_counts.items() if n and k != ("risk", "skip")}
    # every decision that carries information is in both
    informative = {k: n for k, n in full_counts.items() if k not in routine}
    assert informative and {k: lean_counts.get(k, 0) for k in informative} == informative


def test_backtest_when_run_again_and_in_sync_bus_mode_then_identical_results_but_the_run_id(settings_factory) -> None:
    argv = (
        "--symbols",
        "AAPL,IBM,SPY",
        "--start",
        "2018-06-01",
        "--end",
        "2019-12-31",
        "--monte-carlo",
        "50",
        "--walk-forward",
        "126:63",
    )
    first = _json(settings_factory(bus_mode="async"), *argv)
    again = _json(settings_factory(bus_mode="async"), *argv)
    sync = _json(settings_factory(bus_mode="sync"), *argv)

    assert len(first["trades"]) >= 5  # something to reproduce
    assert gc.get_freeze_count() == 0  # the run's objects were frozen for its sessions only: collectable again
    assert len({first["run_id"], again["run_id"], sync["run_id"]}) == 3
    assert _without_run_specifics(again) == _without_run_specifics(first)
    assert _without_run_specifics(sync) == _without_run_specifics(first)


def test_recorded_selector_when_replaying_a_runs_choices_then_same_trades_and_equity(settings_factory) -> None:
    settings = settings_factory()
    argv = ("--symbols", "AAPL,BAC,SPY", "--start", "2019-01-01", "--end", "2019-12-31")
    original = _json(settings, *argv)
    replayed = _json(settings, *argv, "--selector", f"recorded:{original['run_id']}")

    with _session(settings) as s:
        chosen = set(
            s.scalars(
                select(DecisionRow.strategy).where(
                    DecisionRow.run_id == original["run_id"], DecisionRow.agent == "strategy"
                )
            )
        )
        reasons = list(
            s.scalars(
                select(DecisionRow.reason).where(
                    DecisionRow.run_id == replayed["run_id"], DecisionRow.agent == "strategy"
                )
            )
        )
    assert len(chosen - {None}) >= 2  # the deterministic selector switched strategies: the replay has choices to follow
    assert reasons and all(f"recorded choice of run {original['run_id']}" in r for r in reasons)
    assert replayed["trades"] == original["trades"]
    assert replayed["final_equity"] == original["final_equity"]
    assert replayed["settings"]["selector"] == f"recorded:{original['run_id']}"


# ------------------------------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--param", "fast=10"], "--param needs --strategy"),
        (["--strategy", "no_such_strategy"], "unknown strategy 'no_such_strategy'"),
        (["--strategy", "trend_following", "--param", "fast=40", "--param", "slow=30"], "'trend_following'"),
        (["--strategy", "trend_following", "--param", "nope=1"], "nope"),
        (["--sizing", "fixed-qty:0"], "fixed-qty needs a positive whole number"),
        (["--sizing", "half"], "sizing must be"),
        (["--strategy", "trend_following", "--selector", "recorded:x"], "exclude each other"),
        (["--llm", "--strategy", "trend_following"], "--llm"),
        (["--selector", "random"], "selector must be"),
        (["--selector", "recorded:no-such-run"], "no run 'no-such-run'"),
        (["--symbols", "ZZZZ"], "no file for ZZZZ"),
        (["--start", "2019-02-01", "--end", "2019-01-01"], "is after --end"),
        (["--start", "2035-01-01"], "no bars between the requested dates"),
        (["--data-dir", "/nonexistent/bars"], "does not exist"),
    ],
)
def test_backtest_when_options_are_unusable_then_exit_2_naming_the_problem(
    settings_factory, argv: list[str], message: str
) -> None:
    code, out, err = backtest_cli(settings_factory(), *argv, "--json")

    assert code == 2
    assert out == ""
    assert message in err


def test_backtest_parser_when_walk_forward_is_not_train_colon_test_then_argparse_refuses(settings_factory) -> None:
    with pytest.raises(SystemExit) as exit_info:
        backtest_cli(settings_factory(), "--walk-forward", "252")
    assert exit_info.value.code == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [("fast=10", ("fast", 10)), ("k=1.5", ("k", 1.5)), ("flag=True", ("flag", True)), ("flag=false", ("flag", False)),
     ("benchmark=QQQ", ("benchmark", "QQQ")), (" slow = 30 ", ("slow", 30)), ("x=-2", ("x", -2))],
)  # fmt: skip
def test_parse_param_reads_bool_int_float_then_text(text: str, expected: tuple[str, Any]) -> None:
    key, value = parse_param(text)
    assert (key, value) == expected and type(value) is type(expected[1])


@pytest.mark.parametrize("text", ["fast", "=10", ""])
def test_parse_param_when_not_key_equals_value_then_error(text: str) -> None:
    with pytest.raises(BacktestError, match="key=value"):
        parse_param(text)


# ------------------------------------------------------------------------------------------------- broker options


def test_same_close_fills_with_costs_when_chosen_then_entries_fill_at_the_signal_close_plus_slippage_and_pay_commission(
    settings_factory,
) -> None:
    settings = settings_factory()
    result = _json(
        settings, "--symbols", "SPY", "--start", "2018-01-01", "--end", "2019-12-31", *PINNED_SMA, "--sizing", "fixed-qty:10",
        "--no-risk-limits", "--fill", "same-close", "--commission", "0.01", "--slippage", "10",
    )  # fmt: skip
    closes = read_bars_file(BUNDLED_DAILY / "SPY.csv")["close"]
    trades = result["trades"]

    assert len(trades) >= 4
    for t in trades:
        entry = datetime.fromisoformat(t["entry_at"])
        assert entry.hour != 0  # stamped at the session close, not at a later session's open
        close = closes.loc[pd.Timestamp(entry.date(), tz=UTC)]
        assert Decimal(str(t["entry_price"])) == to_price(to_price(close) * Decimal("1.001"))  # 10 bps paid on the buy
        assert t["quantity"] == 10
        assert t["commissions"] == pytest.approx(
            0.20 if t["exit_at"] else 0.10
        )  # 0.01 x 10 shares per fill, no minimum
        if t["exit_at"] is not None:
            assert t["pnl"] == pytest.approx((t["exit_price"] - t["entry_price"]) * 10 - 0.20)
    assert result["settings"]["commission"] == {
        "model": "per_share",
        "per_share": "0.01",
        "minimum": "0",
        "max_pct": "0.01",
    }  # COMMISSION_MAX_PCT caps an explicit rate too
    assert result["settings"]["slippage"] == {"model": "bps", "bps": "10"}


def test_no_brackets_when_pinned_strategy_then_every_choice_is_it_and_every_order_is_a_market_order(
    settings_factory,
) -> None:
    settings = settings_factory()
    result = _json(settings, "--symbols", "IBM,SPY", "--start", "2019-01-01", "--end", "2019-12-31", *PINNED_SMA)

    with _session(settings) as s:
        strategies = set(
            s.scalars(
                select(DecisionRow.strategy).where(
                    DecisionRow.run_id == result["run_id"], DecisionRow.agent == "strategy"
                )
            )
        )
        order_types = set(s.scalars(select(OrderRow.order_type).where(OrderRow.run_id == result["run_id"])))
        fills = s.scalar(select(func.count()).select_from(FillRow).where(FillRow.run_id == result["run_id"]))
    assert strategies == {"trend_following"}
    assert order_types == {"market"} and fills
    assert result["settings"]["params"] == {"fast": 10, "slow": 30}


# ------------------------------------------------------------------------------------------------- data sources


def test_alpaca_cache_alias_when_given_then_reads_the_bar_cache_parquet_files(settings_factory, tmp_path: Path) -> None:
    cache = DiskBarCache(tmp_path / "bars")
    for symbol in ("AAPL", "SPY"):
        frame = read_bars_file(BUNDLED_DAILY / f"{symbol}.csv")
        cache.merge(symbol, frame.loc["2018-01-01":"2019-12-31"])
    settings = settings_factory(bar_cache_dir=tmp_path / "bars")

    code, out, err = backtest_cli(settings, "--data-dir", "alpaca-cache", "--start", "2019-01-01")

    assert code == 0, err
    n = len(_sessions(date(2019, 1, 1), date(2019, 12, 31)))
    assert "Backtest backtest-" in out and f"2019-01-02 .. 2019-12-31, 2 symbols, {n} sessions, {2 * n} bars" in out
    assert "python scripts/query_trades.py trades --run backtest-" in out


@pytest.mark.parametrize(("symbols", "expected"), [(1, 250), (6, 250), (20, 125), (500, 5), (5000, 1)])
def test_audit_batch_when_not_given_then_250_iterations_capped_by_the_universe_size(
    symbols: int, expected: int
) -> None:
    assert audit_batch(BacktestConfig(), symbols) == expected
    assert audit_batch(BacktestConfig(audit_batch=7), symbols) == 7


def test_snapshot_provider_serves_the_same_frames_cut_at_the_last_session() -> None:
    frame = read_bars_file(BUNDLED_DAILY / "IBM.csv")
    provider = SnapshotProvider({"IBM": frame}, end=date(2010, 12, 31))

    first = provider.history(["IBM", "XYZ"], end=datetime(2010, 6, 1, tzinfo=UTC))
    second = provider.history(["IBM"], end=datetime(2010, 6, 2, tzinfo=UTC))
    late = provider.history(["IBM"], end=datetime(2010, 6, 2, tzinfo=UTC), start=datetime(2010, 1, 1, tzinfo=UTC))

    assert first.frames["IBM"] is second.frames["IBM"]
    assert first.frames["IBM"].index[-1] == pd.Timestamp("2010-12-31", tz=UTC)
    assert first.frames["IBM"].index[0] == frame.index[0]
    assert late.frames["IBM"].index[0] == pd.Timestamp("2010-01-04", tz=UTC)
    assert "XYZ" in first.errors and "XYZ" not in first.frames


# ------------------------------------------------------------------------------------------------- report


def test_report_when_requested_then_self_contained_html_with_every_section_and_robustness_in_the_json(
    settings_factory, tmp_path: Path
) -> None:
    report = tmp_path / "out" / "report.html"
    result = _json(
        settings_factory(), "--symbols", "AAPL,IBM,SPY", "--start", "2018-01-01", "--end", "2019-12-31",
        "--report", str(report), "--monte-carlo", "100", "--walk-forward", "126:63",
    )  # fmt: skip
    html = report.read_text(encoding="utf-8")

    for heading in ("Headline metrics", "Equity curve", "Drawdown", "Monthly returns", "Per-strategy metrics",
                    "Shadow ledgers", "Bootstrap confidence intervals", "Sub-periods of one run", "Statistical tests", "Trades"):  # fmt: skip
        assert f"{heading}" in html
    assert 'class="missing"' not in html  # every section has data
    assert "buy &amp; hold benchmark" in html and "<svg" in html
    assert "src=" not in html and "<script" not in html and "default-src 'none'" in html
    ledgers = {row["ledger"] for row in result["shadow"]}
    assert {"selector", "trend_following", "mean_reversion"} <= ledgers
    robustness = result["robustness"]
    assert robustness["bootstrap"] and all(b["runs"] == 100 for b in robustness["bootstrap"].values())
    sessions = len(_sessions(date(2018, 1, 1), date(2019, 12, 31)))
    assert len(robustness["walk_forward"]) == (sessions - 126) // 63
    assert robustness["tests"]["lags"] == 10 and robustness["tests"]["n"] == sessions - 1


def test_report_when_the_path_cannot_be_written_then_exit_1_after_printing_the_result(
    settings_factory, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")

    code, out, err = backtest_cli(
        settings_factory(),
        "--symbols",
        "SPY",
        "--start",
        "2019-01-01",
        "--end",
        "2019-03-29",
        "--report",
        str(blocker / "r.html"),
        "--json",
    )

    assert code == 1
    result = json.loads(out)
    assert f"cannot write the report to {blocker / 'r.html'}" in err and result["run_id"] in err


# ------------------------------------------------------------------------------------------------- run control


async def test_run_backtest_when_stopped_midway_then_status_interrupted_with_the_sessions_done(
    settings_factory,
) -> None:
    settings = settings_factory()
    stop = asyncio.Event()
    seen: list[int] = []

    def progress(n: int, total: int, outcome: IterationOutcome) -> None:
        seen.append(n)
        if n == 20:
            stop.set()

    result = await run_backtest(
        settings,
        BacktestConfig(symbols=("SPY",), start=date(2019, 1, 1), end=date(2019, 12, 31)),
        on_progress=progress,
        stop=stop,
    )

    assert (result.status, result.iterations) == ("interrupted", 20) and seen == list(range(1, 21))
    assert len(result.equity) == 20
    with _session(settings) as s:
        assert s.get(Run, result.run_id).status == "interrupted"


def test_progress_bar_when_asked_then_redraws_one_line_on_stderr_per_percent(settings_factory) -> None:
    code, _, err = backtest_cli(
        settings_factory(), "--symbols", "SPY", "--start", "2019-01-01", "--end", "2019-03-29", "--progress", "--json"
    )

    assert code == 0
    assert err.count("\r") <= 101 and err.endswith("100% 61/61 sessions 2019-03-29\n")


def test_progress_bar_draws_only_when_the_percentage_changes() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream, width=10, label="bt")
    outcome = IterationOutcome("it", 1, datetime(2020, 1, 2, 21, tzinfo=UTC), "ok", None, None)

    for n in range(1, 1001):
        bar(n, 1000, outcome)

    assert stream.getvalue().count("\r") == 101  # 0 % .. 100 %
    assert stream.getvalue().endswith("\rbt [##########] 100% 1000/1000 sessions 2020-01-02\n")


# ------------------------------------------------------------------------------------------------- building blocks


def _context(symbol: str, day: date) -> MarketContext:
    return MarketContext(symbol, 0.2, 30.0, 1.0, "trending_up", datetime(day.year, day.month, day.day, tzinfo=UTC))


def test_fixed_selector_always_returns_its_strategy_and_says_when_it_must_hold() -> None:
    registry = build_registry({"trend_following": {"fast": 10, "slow": 30}})
    selector = FixedSelector(registry, "trend_following")

    assert selector.choose(_context("SPY", date(2020, 1, 2)), 500)[0] == "trend_following"
    name, reason = selector.choose(_context("SPY", date(2020, 1, 2)), 12)
    assert name == "trend_following" and "holds until it has more than 30 bars (12 now)" in reason
    with pytest.raises(ValueError, match="'nope' is not registered"):
        FixedSelector(registry, "nope")


def test_recorded_selector_replays_by_symbol_and_day_and_falls_back_with_a_reason() -> None:
    registry = build_registry()
    selector = RecordedSelector("run-1", {("SPY", date(2020, 1, 2)): "breakout"}, DeterministicSelector(registry))

    assert selector.choose(_context("SPY", date(2020, 1, 2)), 500) == (
        "breakout",
        "recorded choice of run run-1 for 2020-01-02",
    )
    name, reason = selector.choose(_context("SPY", date(2020, 1, 3)), 500)
    assert name == DeterministicSelector(registry).choose(_context("SPY", date(2020, 1, 3)), 500)[0]
    assert reason.startswith("no choice recorded by run run-1 for SPY on 2020-01-03: deterministic:")
    assert selector.needs_context
    with pytest.raises(ValueError, match="by the market context's symbol and date; got None"):
        selector.choose(None, 500)


def test_without_targets_keeps_every_signal_but_drops_the_targets() -> None:
    bars = read_bars_file(BUNDLED_DAILY / "SPY.csv").iloc[:800]
    strategy = build_registry()["trend_following"]
    wrapped = without_targets({"trend_following": strategy})["trend_following"]

    plain, stripped = strategy.compute(bars), wrapped.compute(bars)

    assert plain["target"].notna().any() and stripped["target"].isna().all()
    pd.testing.assert_frame_equal(plain.drop(columns="target"), stripped.drop(columns="target"))
    assert (wrapped.name, wrapped.min_history, wrapped.needs_benchmark) == (
        strategy.name,
        strategy.min_history,
        strategy.needs_benchmark,
    )


def test_shadow_ledgers_follow_buy_to_sell_at_the_signal_closes() -> None:
    days = [datetime(2020, 1, d, 21, tzinfo=UTC) for d in (2, 3, 6, 7)]
    closes = [100.0, 110.0, 121.0, 110.0]
    a = [["BUY", 0.6], ["HOLD", 0.0], ["SELL", 0.5], ["HOLD", 0.0]]
    rows = []
    for day, close, signal in zip(days, closes, a, strict=False):
        signals = {"alpha": signal}
        if day == days[-1]:
            signals["beta"] = ["BUY", 0.7]  # beta is eligible only on the last day
        rows.append((day, "XYZ", "alpha", close, signals))

    ledgers = {row["ledger"]: row for row in shadow_ledgers(rows)}

    assert list(ledgers) == ["selector", "alpha", "beta"]
    alpha = ledgers["alpha"]
    assert alpha["total_return"] == pytest.approx(1.21 - 1)  # held over 100 -> 110 -> 121, flat for the drop
    assert (alpha["entries"], alpha["closed_trades"], alpha["win_rate"]) == (1, 1, 1.0)
    assert alpha["avg_trade_return"] == pytest.approx(0.21)
    assert alpha["max_drawdown"] == 0.0
    assert {k: v for k, v in ledgers["selector"].items() if k != "ledger"} == {
        k: v for k, v in alpha.items() if k != "ledger"
    }
    assert (
        ledgers["beta"]["total_return"] == 0.0
        and ledgers["beta"]["entries"] == 1
        and ledgers["beta"]["closed_trades"] == 0
    )


def test_jsonable_turns_times_decimals_and_non_finite_numbers_into_json_values() -> None:
    value = {"at": datetime(2020, 1, 2, 21, tzinfo=UTC), "day": date(2020, 1, 2), "cash": Decimal("1.2500"),
             "pf": math.inf, "loss": -math.inf, "nan": float("nan"), "n": np.int64(3), "x": np.float64(0.5), "t": (1, 2)}  # fmt: skip

    out = jsonable(value, decimals="float", infinities="text")  # what a backtest result's as_dict() uses

    assert out == {"at": "2020-01-02T21:00:00+00:00", "day": "2020-01-02", "cash": 1.25, "pf": "inf", "loss": "-inf",
                   "nan": None, "n": 3, "x": 0.5, "t": [1, 2]}  # fmt: skip
    json.dumps(out, allow_nan=False)


def test_auto_calendar_keeps_the_nyse_for_us_data_with_a_stray_weekend_bar_and_takes_the_data_dates_otherwise() -> None:
    from core.backtest.runner import choose_calendar
    from core.kernel.calendar import MarketCalendar
    from core.data.files import read_bars_file

    nyse = MarketCalendar()
    us = {s: read_bars_file(BUNDLED_DAILY / f"{s}.csv") for s in ("AAPL", "SPY")}
    assert choose_calendar(us, nyse)[0] == "XNYS"
    saturday = us["AAPL"].iloc[[100]].copy()
    saturday.index = saturday.index + pd.Timedelta(days=(5 - saturday.index[0].weekday()) % 7 or 7)
    stray = {**us, "AAPL": pd.concat([us["AAPL"], saturday]).sort_index()}
    name, why = choose_calendar(stray, nyse)
    assert name == "XNYS" and why.startswith("auto: 1 of ")  # a bad bar the Data agent will report, not another market
    every_day = us["SPY"].iloc[:300].copy()
    every_day.index = pd.date_range(every_day.index[0], periods=300, freq="D", tz="UTC")  # a 7-day market
    name, why = choose_calendar({"BTC": every_day}, nyse)
    assert name == "data" and "fall on days XNYS was closed" in why

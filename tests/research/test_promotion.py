"""Promotion with reversion: ``optimize --promote`` records a study's winner only on a significant out-of-sample
improvement; the daemon trades the champion version from its next iteration and reverts it when its live record
leaves the out-of-sample band."""

from __future__ import annotations

import argparse
import io
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.kernel.calendar import MarketCalendar
from core.kernel.clock import SimulatedClock
from core.persistence.db import open_database
from core.persistence.models import BreakerEventRow, EquitySnapshotRow, Iteration, Run
from core.persistence.promotions import active_versions, promotions, record_promotion
from core.research.cli import add_optimize_parser, run_optimize_command
from core.research.promotion import expectation_of, paired_test
from core.runtime.app import App, build_app
from core.runtime.profile import DAEMON
from core.runtime.promoted import live_verdict
from tests.conftest import make_settings
from tests.research.datasets import noise, planted

DAY = date(2021, 3, 30)  # within the bundled daily data
STRATEGY = "volatility_breakout"


def _expectation(mean: float = 0.001, std: float = 0.01, max_dd: float = 0.05) -> dict:
    rng = np.random.default_rng(0)
    returns = rng.normal(mean, std, 200)
    out = expectation_of(returns)
    out.update(mean=mean, std=std, max_drawdown=max_dd, drawdown_limit=1.5 * max_dd)
    return out


def _promote(engine, params: dict, study: str, at: datetime) -> int:
    row, created = record_promotion(
        engine, strategy=STRATEGY, params=params, source_study=study, expectation=_expectation(), test={"p_value": 0.01},
        at=at, reason="test",
    )  # fmt: skip
    assert created
    return row.version


def _daemon(tmp_path: Path) -> App:
    calendar = MarketCalendar()
    settings = make_settings(tmp_path, data_provider="files", broker="simulated", symbols=["AAPL", "SPY"])
    return build_app(settings, profile=DAEMON, clock=SimulatedClock(calendar.session(DAY).close_utc), calendar=calendar)


def _insert_daemon_equity(engine, start: datetime, equities: list[float]) -> None:
    """A past daemon run's equity snapshots, one a day from ``start``."""
    with Session(engine) as s, s.begin():
        s.add(
            Run(
                id="daemon-earlier", kind="daemon", broker="simulated", data_provider="files", started_at=start,
                status="finished", initial_cash=Decimal(100000), symbols={}, config={},
            )
        )  # fmt: skip
        s.flush()
        for i, equity in enumerate(equities):
            at = start + timedelta(days=i)
            s.add(
                Iteration(
                    id=f"daemon-earlier-{i:06d}", run_id="daemon-earlier", seq=i + 1, as_of=at, recorded_at=at,
                    status="ok", symbols_total=1, symbols_ok=1, data_quality=1.0,
                )
            )  # fmt: skip
            s.flush()
            s.add(
                EquitySnapshotRow(
                    run_id="daemon-earlier", iteration_id=f"daemon-earlier-{i:06d}", at=at, cash=Decimal(equity),
                    market_value=Decimal(0), equity=Decimal(str(equity)), positions=0,
                )
            )  # fmt: skip


def test_paired_test_rejects_noise_and_accepts_a_planted_edge():
    rng = np.random.default_rng(5)
    champion = rng.normal(0.0, 0.01, 250)
    assert paired_test(champion + rng.normal(0.0, 0.01, 250), champion)["p_value"] > 0.05
    assert paired_test(champion + rng.normal(0.003, 0.01, 250), champion)["p_value"] < 0.05


def test_live_verdict_reverts_below_the_band_or_beyond_the_drawdown_limit_and_waits_for_enough_sessions():
    exp = _expectation(mean=0.001, std=0.01, max_dd=0.05)
    assert live_verdict(exp, [-0.004] * 19) is None  # 7 % down but under 1.5 x 5 %; fewer than 20 sessions
    assert "below the lower bound" in live_verdict(exp, [-0.003] * 20)
    assert live_verdict(exp, [0.001, -0.0005] * 15) is None  # inside the band
    assert "drawdown" in live_verdict(exp, [-0.03, -0.03, -0.03])  # 8.7 % > 7.5 %


def test_daemon_trades_the_new_version_from_its_next_iteration_and_reverts_a_degraded_one(tmp_path: Path):
    app = _daemon(tmp_path)
    try:
        strategy_agent, quant_agent = app.agents["strategy"], app.agents["quant"]
        assert strategy_agent.registry[STRATEGY].params.k == 1.0  # no champion: the configured parameters
        promoted_at = datetime(2021, 4, 5, 20, 0, tzinfo=UTC)
        v1 = _promote(app.engine, {"k": 2.0, "length": 12}, "study-a", promoted_at)
        assert strategy_agent.registry[STRATEGY].params.k == 1.0  # the current one stays until the next iteration
        import asyncio

        asyncio.run(app.orchestrator.run_iteration())
        assert strategy_agent.registry[STRATEGY].params.k == 2.0
        assert quant_agent._registry[STRATEGY].params.length == 12  # one registry for every agent

        v2 = _promote(app.engine, {"k": 3.0, "length": 10}, "study-b", promoted_at + timedelta(days=1))
        assert [p.status for p in promotions(app.engine)] == ["retired", "champion"]
        asyncio.run(app.orchestrator.run_iteration())
        assert strategy_agent.registry[STRATEGY].params.k == 3.0

        # live record since v2: 25 sessions losing 0.3 % a day, below the band's lower bound
        _insert_daemon_equity(app.engine, promoted_at + timedelta(days=2), [100000 * 0.997**i for i in range(26)])
        asyncio.run(app.orchestrator.run_iteration())
        assert strategy_agent.registry[STRATEGY].params.k == 2.0  # the previous champion is active again
        rows = {p.version: p for p in promotions(app.engine)}
        assert rows[v2].status == "reverted" and "below the lower bound" in rows[v2].reason
        assert rows[v1].status == "champion" and active_versions(app.engine)[STRATEGY].version == v1
        with Session(app.engine) as s:
            events = s.scalars(select(BreakerEventRow).where(BreakerEventRow.name == "promotion")).all()
        assert [(e.from_state, e.to_state, e.details["event"]) for e in events] == [(f"v{v2}", f"v{v1}", "reverted")]
        assert events[0].run_id == app.run_id
    finally:
        app.close()


def _optimize_args(bars: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    common = argparse.ArgumentParser(add_help=False)
    add_optimize_parser(parser.add_subparsers(dest="command"), [common])
    argv = ["optimize", "--strategy", STRATEGY, "--param", "length=10", "--data-dir", str(bars), "--calendar", "data"]
    return parser.parse_args([*argv, "--no-prune", "--json", "--promote", *extra])


def test_promote_needs_a_walk_forward(tmp_path: Path):
    bars = planted(tmp_path / "bars", symbols=1, sessions=120)
    settings = make_settings(tmp_path, data_dir=bars)
    err = io.StringIO()
    assert run_optimize_command(_optimize_args(bars, "--trials", "2"), settings, stdout=io.StringIO(), stderr=err) == 2
    assert "--walk-forward" in err.getvalue()


def _run_promote(settings, bars: Path, *, fixed_length: bool = True) -> dict:
    args = _optimize_args(bars, "--trials", "5", "--walk-forward", "150:80", "--seed", "3")
    if not fixed_length:
        args.param = []
    out, err = io.StringIO(), io.StringIO()
    assert run_optimize_command(args, settings, stdout=out, stderr=err) == 0, err.getvalue()
    return json.loads(out.getvalue())["promotion"]


@pytest.mark.slow
def test_promotion_refused_on_pure_noise_and_nothing_recorded(tmp_path: Path):
    bars = noise(tmp_path / "bars", symbols=2, sessions=330)
    settings = make_settings(tmp_path, data_dir=bars)
    promotion = _run_promote(settings, bars, fixed_length=False)
    assert promotion["promoted"] is False and promotion["reason"].startswith("not significant")
    assert promotion["test"]["p_value"] >= 0.05 and promotion["test"]["champion"] == "configured parameters"
    engine = open_database(settings.database_url)
    try:
        assert promotions(engine) == []
    finally:
        engine.dispose()


@pytest.mark.slow
def test_promotion_accepted_on_a_planted_edge_once_and_the_rerun_changes_nothing(tmp_path: Path):
    bars = planted(tmp_path / "bars", symbols=1, sessions=330)
    settings = make_settings(tmp_path, data_dir=bars)
    first = _run_promote(settings, bars)
    assert first["promoted"] is True and first["created"] is True, first["reason"]
    assert first["test"]["p_value"] < 0.05 and first["test"]["champion"] == "configured parameters"
    assert first["expectation"]["sessions"] == 160 and first["expectation"]["mean"] > 0
    again = _run_promote(settings, bars)
    assert again["version"] == first["version"] and again["created"] is False
    engine = open_database(settings.database_url)
    try:
        rows = promotions(engine)
        assert [(r.version, r.status, r.strategy) for r in rows] == [(first["version"], "champion", STRATEGY)]
        assert 2.5 < rows[0].params["k"] < 3.5 and rows[0].params["length"] == 10  # the planted parameters
    finally:
        engine.dispose()


def test_recording_the_same_promotion_twice_keeps_one_version_and_reverting_the_first_leaves_the_configured(
    tmp_path: Path,
):
    engine = open_database(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        at = datetime(2021, 4, 5, 20, 0, tzinfo=UTC)
        v1 = _promote(engine, {"k": 2.0}, "study-a", at)
        again, created = record_promotion(
            engine, strategy=STRATEGY, params={"k": 2.0}, source_study="study-a", expectation={}, test={}, at=at,
            reason="again",
        )  # fmt: skip
        assert (again.version, created) == (v1, False) and len(promotions(engine)) == 1
        from core.persistence.promotions import revert_promotion

        assert revert_promotion(engine, v1, reason="degraded", at=at) is None  # no previous: configured parameters
        assert active_versions(engine) == {} and promotions(engine)[0].status == "reverted"
    finally:
        engine.dispose()

"""The run profiles: what the daemon, a replay and a backtest do differently, as named facts, and build_app acting on
them (real SQLite, the bundled daily data, the simulated broker)."""

from __future__ import annotations

from dataclasses import fields
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from core.brokers.simulated import SimulatedBroker
from core.kernel.calendar import MarketCalendar
from core.kernel.clock import SimulatedClock
from core.persistence.models import Run
from core.runtime.app import App, build_app
from core.runtime.profile import (
    BACKTEST,
    DAEMON,
    PIPELINE_DEFAULTS,
    REPLAY,
    OrderPrefix,
    PipelineOptions,
    RunProfile,
)
from core.vocabulary import StateKey, state_key
from sqlalchemy.orm import Session
from tests.conftest import make_settings

FACTS = [f.name for f in fields(RunProfile) if f.name != "kind"]
DAY = date(2021, 3, 30)  # within the bundled daily data


def test_for_kind_when_daemon_replay_or_backtest_then_its_profile_recorded_under_that_kind() -> None:
    assert RunProfile.for_kind("daemon") is DAEMON
    assert RunProfile.for_kind("replay") is REPLAY
    assert RunProfile.for_kind("backtest") is BACKTEST
    assert (DAEMON.kind, REPLAY.kind, BACKTEST.kind) == ("daemon", "replay", "backtest")


def test_for_kind_when_demo_then_a_replay_recorded_as_demo() -> None:
    demo = RunProfile.for_kind("demo")
    assert demo.kind == "demo"
    assert all(getattr(demo, fact) == getattr(REPLAY, fact) for fact in FACTS)


@pytest.mark.parametrize("fact", [f for f in FACTS if f != "iteration_deadline"])
def test_daemon_and_replay_when_compared_then_they_differ_on_the_fact(fact: str) -> None:
    assert getattr(DAEMON, fact) != getattr(REPLAY, fact)


def test_daemon_and_replay_when_compared_then_both_bound_their_iterations_and_a_backtest_does_not() -> None:
    assert DAEMON.iteration_deadline and REPLAY.iteration_deadline and not BACKTEST.iteration_deadline
    assert DAEMON.deadline_s(30.0) == REPLAY.deadline_s(30.0) == 30.0
    assert BACKTEST.deadline_s(30.0) is None


def test_backtest_when_compared_with_replay_then_only_the_deadline_and_the_kind_differ() -> None:
    differing = [fact for fact in FACTS if getattr(BACKTEST, fact) != getattr(REPLAY, fact)]
    assert differing == ["iteration_deadline"]


def test_profile_when_asked_for_namespace_and_order_prefix_then_shared_or_the_runs_own() -> None:
    assert DAEMON.state_namespace("replay-1") == ""
    assert REPLAY.state_namespace("replay-1") == "replay-1:"
    assert DAEMON.order_prefix is OrderPrefix.TRADING_MODE
    assert DAEMON.client_order_prefix("paper", "daemon-1") == "paper"
    assert REPLAY.client_order_prefix("paper", "replay-1") == "replay-1"
    assert DAEMON.heartbeat_key == StateKey.HEARTBEAT and REPLAY.heartbeat_key is None


def test_profile_when_changed_then_refused_because_it_is_frozen() -> None:
    with pytest.raises(AttributeError):
        DAEMON.reconcile = False  # type: ignore[misc]


def test_pipeline_options_when_defaulted_then_the_daemons_knobs() -> None:
    assert PipelineOptions() == PIPELINE_DEFAULTS
    assert (
        PIPELINE_DEFAULTS.sizing,
        PIPELINE_DEFAULTS.enforce_limits,
        PIPELINE_DEFAULTS.selector,
        PIPELINE_DEFAULTS.registry,
        PIPELINE_DEFAULTS.audit_batch,
        PIPELINE_DEFAULTS.routine_decisions,
        PIPELINE_DEFAULTS.validate_sessions,
    ) == ("risk", True, None, None, 1, True, True)


def _app(tmp_path: Path, profile: RunProfile) -> App:
    calendar = MarketCalendar()
    settings = make_settings(tmp_path, data_provider="files", broker="simulated", symbols=["AAPL", "SPY"])
    return build_app(
        settings, profile=profile, clock=SimulatedClock(calendar.session(DAY).close_utc), calendar=calendar
    )


def _keys(app: App, namespace: str) -> dict[StateKey, bool]:
    return {
        key: app.repository.get_state(state_key(key, namespace)) is not None
        for key in (
            StateKey.RISK_STATE,
            StateKey.LLM_BREAKER,
            StateKey.BROKER_BREAKER,
            StateKey.HEARTBEAT,
            StateKey.SIMULATED_BROKER,
        )
    }


async def test_build_app_when_replay_then_no_reconciler_and_state_under_the_runs_own_namespace(tmp_path: Path) -> None:
    app = _app(tmp_path, RunProfile.for_kind("demo"))
    try:
        outcome = await app.orchestrator.run_iteration()
        app.agents["audit"].flush()
        own, shared = _keys(app, f"{app.run_id}:"), _keys(app, "")
    finally:
        app.close()

    assert outcome.status == "ok"
    assert app.reconciler is None and app.kind == "demo" and app.run_id.startswith("demo-")
    assert own == {
        StateKey.RISK_STATE: True,
        StateKey.LLM_BREAKER: True,
        StateKey.BROKER_BREAKER: True,
        StateKey.HEARTBEAT: False,
        StateKey.SIMULATED_BROKER: False,
    }
    assert not any(shared.values())  # no heartbeat, no persisted simulated account, nothing under the daemon's keys
    with Session(app.engine) as s:
        assert s.get(Run, app.run_id).kind == "demo"  # type: ignore[union-attr]


async def test_build_app_when_daemon_on_the_simulated_broker_then_its_account_is_persisted_and_restored(
    tmp_path: Path,
) -> None:
    first = _app(tmp_path, DAEMON)
    try:
        outcome = await first.orchestrator.run_iteration()
        first.agents["audit"].flush()
        shared = _keys(first, "")
        snapshot = first.repository.get_state(StateKey.SIMULATED_BROKER)
        assert snapshot is not None
        # a different account than INITIAL_CASH: the next daemon must start from it
        first.repository.put_state(StateKey.SIMULATED_BROKER, {**snapshot[0], "cash": "12345.67"}, snapshot[1])
    finally:
        first.close()

    assert outcome.status == "ok"
    assert first.reconciler is not None and first.kind == "daemon"
    assert all(shared.values())  # breakers, risk state, heartbeat and the simulated account, under the shared keys

    second = _app(tmp_path, DAEMON)
    try:
        assert isinstance(second.broker, SimulatedBroker)
        cash = (await second.broker.account()).cash
    finally:
        second.close()
    assert cash == Decimal("12345.67")

"""The pure part of the control commands (core.runtime.commands.apply_command), and ``close --now`` while the market
is open: the sleeping daemon picks it and runs an exits-only iteration at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest

import main
from config.settings import BrokerName
from core.persistence.commands import Command, recent_commands
from core.runtime.commands import COMMAND_TTL, ControlState, apply_command
from core.runtime.orchestrator import run_live
from tests.conftest import make_settings
from tests.e2e.test_control_commands import _Daemon

NOW = datetime(2025, 3, 4, 15, 0, tzinfo=UTC)


def _command(kind: str, args: dict | None = None, *, at: datetime = NOW, id: int = 7) -> Command:
    return Command(id, kind, args or {}, at, "ops@box")


def _apply(state: ControlState, command: Command, *, held=None, market_open: bool = False):
    return apply_command(state, command, held=held or {}, symbols=["AAPL", "SPY"], now=NOW, market_open=market_open)


def test_pause_then_pause_again_then_resume() -> None:
    first = _apply(ControlState(), _command("pause", {"reason": "fomc"}))
    assert (first.status, first.state.paused, first.state.paused_reason) == ("done", True, "paused by ops@box: fomc")
    assert (first.event["from_state"], first.event["to_state"]) == ("running", "paused")
    again = _apply(first.state, _command("pause"))
    assert again.state == first.state and again.outcome.startswith("already paused since 2025-03-04 10:00 EST")
    resumed = _apply(again.state, _command("resume"))
    assert resumed.state == ControlState() and resumed.outcome.startswith("resumed: entries allowed again")


def test_close_when_held_then_queued_and_when_not_held_then_rejected_naming_why() -> None:
    held = {"AAPL": 10.0}
    queued = _apply(ControlState(), _command("close", {"symbols": ["aapl"]}), held=held)
    assert queued.status == "done" and set(queued.state.closes) == {"AAPL"} and not queued.immediate
    assert queued.outcome == "exit of AAPL (10 shares) queued: at the next iteration"
    not_held = _apply(ControlState(), _command("close", {"symbols": ["SPY"]}), held=held)
    assert (not_held.status, not_held.outcome) == ("rejected", "no open position in SPY; nothing closed")
    unknown = _apply(ControlState(), _command("close", {"symbols": ["XYZ"]}), held=held)
    assert unknown.outcome == "unknown symbol XYZ: not among SYMBOLS and no open position; nothing closed"
    nothing = _apply(ControlState(), _command("close", {"all": True}))
    assert (nothing.status, nothing.outcome) == ("rejected", "no open positions to close")


def test_close_now_when_the_market_is_open_then_immediate() -> None:
    applied = _apply(
        ControlState(), _command("close", {"all": True, "now": True}), held={"AAPL": 3, "SPY": 2}, market_open=True
    )
    assert applied.immediate and set(applied.state.closes) == {"AAPL", "SPY"}


def test_command_older_than_the_ttl_then_expired_and_not_applied() -> None:
    old = _command("pause", at=NOW - COMMAND_TTL - timedelta(minutes=1))
    applied = _apply(ControlState(), old)
    assert applied.status == "expired" and applied.state == ControlState()


def test_control_state_round_trips_through_its_dict() -> None:
    state = _apply(ControlState(), _command("close", {"symbols": ["AAPL"]}), held={"AAPL": 1}).state
    assert ControlState.from_dict(state.as_dict()) == state


def test_close_now_while_the_market_is_open_then_the_sleeping_daemon_runs_an_exits_only_iteration_at_once(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(tmp_path, broker=BrokerName.SIMULATED)
    daemon = _Daemon(settings, date(2020, 3, 20), date(2020, 5, 29))
    try:
        held = daemon.iterate_until_held()
        open_at = daemon.calendar.session(daemon.sessions[daemon.next].date()).open_utc + timedelta(hours=1)
        daemon.clock.advance_to(open_at)
        assert main.main(["close", held, "--now", "--db", settings.database_url]) == 0
        stop = asyncio.Event()
        [outcome] = asyncio.run(
            run_live(
                daemon.app.orchestrator,
                next_run=lambda n: n + timedelta(days=1),  # the next scheduled iteration: tomorrow
                stop=stop,
                iterations=1,
                run_first_immediately=False,
                control=daemon.control,
                poll_s=5.0,
            )
        )
        assert outcome.as_of == open_at + timedelta(seconds=5)  # at the first poll, not tomorrow
        decisions = daemon.risk_decisions(outcome.iteration_id)
        assert decisions[held][1]["checks"]["exit_rule"]["rule"] == "manual_close"
        assert all(action != "approved" or inputs["side"] == "sell" for action, inputs in decisions.values())
        command = recent_commands(daemon.app.repository, 1)[0]
        assert "now, in an exits-only iteration (the market is open)" in (command.outcome or "")
        assert daemon.app.agents["risk"].entries_paused is None  # the next scheduled iteration may enter again
    finally:
        daemon.app.close("stopped")

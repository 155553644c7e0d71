"""Control without a restart: ``main.py pause`` / ``resume`` / ``close`` / ``status`` through the CLI entry function and
in subprocesses, against a daemon built exactly as ``main.py run`` builds it (the daemon profile, the simulated broker,
the bundled bars on a simulated clock, one session per iteration) on a real SQLite database, and against the offline
daemon on PostgreSQL in another process."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import main
from config.settings import BrokerName, Settings
from core.kernel.calendar import MarketCalendar
from core.kernel.clock import SimulatedClock
from core.persistence.commands import get_command, recent_commands
from core.persistence.db import open_database
from core.persistence.models import BreakerEventRow, CommandRow, DecisionRow, OrderRow
from core.persistence.repository import Repository
from core.runtime.app import App, build_app, build_provider, replay_sessions
from core.runtime.commands import POLL_SECONDS, DaemonControl
from core.runtime.orchestrator import run_live
from core.runtime.profile import DAEMON
from core.vocabulary import AgentName
from tests.conftest import REPO_ROOT, make_settings, start_offline_daemon


class _Daemon:
    """The daemon's wiring (build_app with the daemon profile, the command handling main.py adds) on a simulated clock
    that the test moves one session close at a time."""

    def __init__(self, settings: Settings, first: date, last: date) -> None:
        self.calendar = MarketCalendar()
        self.sessions = replay_sessions(self.calendar, first, last)
        self.clock = SimulatedClock(self.sessions[0])
        self.app: App = build_app(
            settings,
            profile=DAEMON,
            clock=self.clock,
            wall_clock=self.clock,
            provider=build_provider(settings, self.calendar),
            calendar=self.calendar,
        )
        self.control = DaemonControl(
            self.app.repository,
            self.app.agents[AgentName.RISK],
            self.app.broker,
            self.calendar,
            run_id=self.app.run_id,
            symbols=settings.symbols,
            now=self.clock.now,
        )
        self.next = 0

    def iterate(self) -> str:
        """One iteration at the next session's close; its iteration id."""
        self.clock.advance_to(self.sessions[self.next])
        self.next += 1
        stop = asyncio.Event()
        [outcome] = asyncio.run(
            run_live(self.app.orchestrator, next_run=lambda n: n, stop=stop, iterations=1, control=self.control)
        )
        assert outcome.status == "ok", outcome.error
        return outcome.iteration_id

    def held(self) -> dict[str, float]:
        account = asyncio.run(self.app.broker.account())
        return {s: float(p.quantity) for s, p in account.positions.items() if p.quantity > 0}

    def iterate_until_held(self) -> str:
        while self.next < len(self.sessions):
            self.iterate()
            if self.held():
                return sorted(self.held())[0]
        raise AssertionError("no position opened in the sessions given")

    def risk_decisions(self, iteration_id: str) -> dict[str, tuple[str, dict[str, Any]]]:
        with self.app.repository.session() as s:
            rows = s.execute(
                select(DecisionRow.symbol, DecisionRow.action, DecisionRow.inputs).where(
                    DecisionRow.iteration_id == iteration_id, DecisionRow.agent == AgentName.RISK
                )
            ).all()
        return {sym: (action, inputs) for sym, action, inputs in rows}


def _cli(*args: str, url: str) -> int:
    return main.main([*args, "--db", url])


def _control_events(url: str) -> list[tuple[str, str, str]]:
    repo = Repository(open_database(url, create=False))
    with repo.session() as s:
        rows = s.execute(
            select(BreakerEventRow.from_state, BreakerEventRow.to_state, BreakerEventRow.reason)
            .where(BreakerEventRow.name == "control")
            .order_by(BreakerEventRow.id)
        ).all()
    repo.engine.dispose()
    return [tuple(r) for r in rows]  # type: ignore[misc]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, broker=BrokerName.SIMULATED)


def test_pause_when_picked_then_entries_are_denied_paused_exits_go_on_and_resume_allows_entries_again(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    url = settings.database_url
    daemon = _Daemon(settings, date(2020, 3, 2), date(2020, 3, 31))
    try:
        held = daemon.iterate_until_held()  # 2020-03-02: an entry, filled at the next session
        assert _cli("pause", "--reason", "earnings week", url=url) == 0
        assert "pending" in capsys.readouterr().out
        paused_iterations = [daemon.iterate() for _ in range(6)]  # 2020-03-04 .. 2020-03-11
        denied, exits = [], []
        for iteration_id in paused_iterations:
            for symbol, (action, inputs) in daemon.risk_decisions(iteration_id).items():
                assert not (action == "approved" and inputs["side"] == "buy"), (iteration_id, symbol)
                if action == "denied:paused":
                    denied.append(symbol)
                if action == "approved" and inputs["side"] == "sell":
                    exits.append(symbol)
        assert denied, "BUY signals while paused are recorded as denied:paused"
        # the position's protection went on while paused: it was exited (its stop, or a strategy exit)
        assert held not in daemon.held()
        with daemon.app.repository.session() as s:
            sold = s.scalars(select(OrderRow.status).where(OrderRow.symbol == held, OrderRow.side == "sell")).all()
        assert "filled" in sold
        # the pause survives a restart: it is the daemon state, not the process's memory
        daemon.app.close("stopped")
        daemon2 = _Daemon(settings, date(2020, 3, 11), date(2020, 3, 31))
        try:
            assert daemon2.app.agents[AgentName.RISK].entries_paused == "paused by " + _requester() + ": earnings week"
            assert _cli("resume", url=url) == 0
            held_after = daemon2.iterate_until_held()
            assert held_after in daemon2.held()
        finally:
            daemon2.app.close("stopped")
    finally:
        if daemon.app.lock is not None:
            daemon.app.close("stopped")
    commands = recent_commands(Repository(open_database(url, create=False)))
    assert [(c.kind, c.status) for c in reversed(commands)] == [("pause", "done"), ("resume", "done")]
    assert [c.outcome for c in reversed(commands)] == [
        "paused: no new entries; exits, stops and position management continue",
        "resumed: entries allowed again (paused since 2020-03-04 16:00 EST)",
    ]
    assert [(f, t) for f, t, _ in _control_events(url)] == [("running", "paused"), ("paused", "running")]


def _requester() -> str:
    from core.runtime.commands import requester

    return requester()


def test_close_symbol_and_close_all_when_picked_then_the_positions_are_exited_at_the_next_iteration(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    url = settings.database_url
    daemon = _Daemon(settings, date(2020, 3, 20), date(2020, 5, 29))
    try:
        held = daemon.iterate_until_held()
        assert _cli("close", held.lower(), url=url) == 0
        iteration_id = daemon.iterate()
        action, inputs = daemon.risk_decisions(iteration_id)[held]
        assert action == "approved" and inputs["side"] == "sell"
        assert inputs["checks"]["exit_rule"]["rule"] == "manual_close"
        with daemon.app.repository.session() as s:
            orders = s.execute(
                select(OrderRow.side, OrderRow.order_type, OrderRow.status).where(OrderRow.symbol == held)
            ).all()
        assert ("sell", "market", "submitted") in orders  # the exit: a market SELL, filled at the next open
        command = recent_commands(daemon.app.repository, 1)[0]
        assert command.status == "done" and command.outcome is not None
        assert command.outcome.startswith(f"exit of {held} (")
        assert (
            f"{held}: exit approved in iteration {iteration_id} (the exit order works at the broker)" in command.outcome
        )
        assert daemon.app.agents[AgentName.RISK].manual_exits == {}  # handed once, not again
        daemon.iterate()
        assert held not in daemon.held()
        with daemon.app.repository.session() as s:
            legs = s.execute(
                select(OrderRow.order_type, OrderRow.status).where(
                    OrderRow.symbol == held, OrderRow.order_type.in_(["stop", "limit"])
                )
            ).all()
        assert legs and all(status == "canceled" for _, status in legs)  # its stop and target: cancelled with the exit

        positions = daemon.held() or {daemon.iterate_until_held(): 1}
        assert _cli("close", "--all", url=url) == 0
        iteration_id = daemon.iterate()
        decisions = daemon.risk_decisions(iteration_id)
        for symbol in positions:
            assert decisions[symbol][1]["checks"]["exit_rule"]["rule"] == "manual_close"
        daemon.iterate()
        assert daemon.held() == {}
        capsys.readouterr()
        assert _cli("status", url=url) == 0
        out = capsys.readouterr().out
        assert "Daemon: running; not paused; trading state ACTIVE" in out
        assert "open positions: 0" in out and "pending commands: 0" in out
        assert f"close done: exit of {sorted(positions)[0]} (" in out
    finally:
        daemon.app.close("stopped")


def test_close_when_the_symbol_is_unknown_then_rejected_at_once_with_a_clear_message(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    url = settings.database_url
    daemon = _Daemon(settings, date(2020, 3, 2), date(2020, 3, 3))
    daemon.iterate()
    daemon.app.close("stopped")
    capsys.readouterr()
    assert _cli("close", "ZZZZ", url=url) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: command 1 close rejected: unknown symbol ZZZZ: not among SYMBOLS (AAPL, ")
    assert err.strip().endswith("and no open position recorded; nothing closed")
    command = get_command(Repository(open_database(url, create=False)), 1)
    assert command is not None and command.status == "rejected"
    assert main.main(["close", "--db", url]) == 2
    assert "give one SYMBOL or --all" in capsys.readouterr().err


def test_commands_to_a_database_with_no_daemon_are_recorded_then_picked_by_the_next_start(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    url = settings.database_url
    daemon = _Daemon(settings, date(2020, 3, 2), date(2020, 3, 3))
    daemon.iterate()
    daemon.app.close("stopped")
    capsys.readouterr()
    assert _cli("pause", url=url) == 0
    assert "no daemon runs on this database now: the next start picks it up" in capsys.readouterr().out
    assert _cli("close", "IBM", url=url) == 0  # a SYMBOL, but not held: the daemon rejects it when it picks it
    capsys.readouterr()
    assert _cli("status", "--json", url=url) == 0
    report = json.loads(capsys.readouterr().out)["daemon"]
    assert report["running"] is False and report["paused"] is False
    assert [(c["id"], c["kind"]) for c in report["pending_commands"]] == [(1, "pause"), (2, "close")]

    daemon = _Daemon(settings, date(2020, 3, 3), date(2020, 3, 4))
    try:
        iteration_id = daemon.iterate()
        repo = daemon.app.repository
        assert [(c.kind, c.status) for c in reversed(recent_commands(repo))] == [
            ("pause", "done"),
            ("close", "rejected"),
        ]
        assert get_command(repo, 2).outcome == "no open position in IBM; nothing closed"  # type: ignore[union-attr]
        assert daemon.app.agents[AgentName.RISK].entries_paused is not None
        assert iteration_id
    finally:
        daemon.app.close("stopped")
    assert [t for _, t, _ in _control_events(url)] == ["paused", "rejected"]


def test_close_now_when_the_market_is_closed_then_queued_for_the_next_iteration(settings: Settings) -> None:
    url = settings.database_url
    daemon = _Daemon(settings, date(2020, 3, 20), date(2020, 5, 29))  # the iterations run at the session close
    try:
        held = daemon.iterate_until_held()
        assert _cli("close", held, "--now", url=url) == 0
        assert asyncio.run(daemon.control.poll()) is False  # picked while sleeping; after the close: no iteration now
        command = recent_commands(daemon.app.repository, 1)[0]
        assert command.status == "done"
        assert command.outcome.endswith("queued: at the next iteration (--now: the market is closed)")  # type: ignore[union-attr]
        iteration_id = daemon.iterate()
        assert daemon.risk_decisions(iteration_id)[held][1]["checks"]["exit_rule"]["rule"] == "manual_close"
        daemon.iterate()  # the market SELL fills at the next open
        assert held not in daemon.held()
    finally:
        daemon.app.close("stopped")


# --- the daemon in another process ------------------------------------------------------------------------------------


def _wait_for(predicate, proc: subprocess.Popen[str], what: str) -> None:
    for _ in range(1200):
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the daemon exited before {what}: {proc.communicate()[1][-2000:]}")
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


def _statuses(url: str) -> list[str]:
    engine = open_database(url, create=False)
    try:
        with Repository(engine).session() as s:
            return list(s.scalars(select(CommandRow.status).order_by(CommandRow.id)).all())
    finally:
        engine.dispose()


def _main(*args: str, url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_URL")}
    env.update(LOG_DIR=str(tmp_path / "cli-logs"), DATABASE_URL=url, DATA_PROVIDER="synthetic")
    return subprocess.run(
        [sys.executable, "main.py", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.postgres
def test_commands_on_postgresql_when_the_daemon_runs_in_another_process_then_picked_while_it_sleeps(
    postgres_url: str, tmp_path: Path
) -> None:
    proc = start_offline_daemon(postgres_url, tmp_path, iterations=1000)  # an iteration every 5 s
    try:
        _wait_for(lambda: _main("status", "--json", url=postgres_url, tmp_path=tmp_path).returncode == 0
                  and "last_iteration" in json.loads(_main("status", "--json", url=postgres_url, tmp_path=tmp_path).stdout)["daemon"],
                  proc, "the first iteration")  # fmt: skip
        done = _main("pause", "--reason", "from another host", url=postgres_url, tmp_path=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "the daemon picks it up within seconds" in done.stdout
        _wait_for(lambda: _statuses(postgres_url) == ["done"], proc, "the pause to be picked")
        status = _main("status", url=postgres_url, tmp_path=tmp_path)
        assert "Daemon: running; PAUSED (paused by " in status.stdout and ": from another host)" in status.stdout
        assert "pending commands: 0" in status.stdout
        assert _main("resume", url=postgres_url, tmp_path=tmp_path).returncode == 0
        _wait_for(lambda: _statuses(postgres_url) == ["done", "done"], proc, "the resume to be picked")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert POLL_SECONDS <= 5
    assert [(f, t) for f, t, _ in _control_events(postgres_url)] == [("running", "paused"), ("paused", "running")]


def test_pick_when_the_daemon_is_killed_right_after_picking_then_the_command_is_applied_once(tmp_path: Path) -> None:
    """The failpoint kills the daemon (SIGKILL) just after the pick's transaction: the restart finds the command done
    and the pause in the daemon state, and applies nothing twice."""
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_URL")}
    env.update(LOG_DIR=str(tmp_path / "logs"), DATABASE_URL=url, DATA_PROVIDER="synthetic")
    run = [sys.executable, "main.py", "run", "--offline", "--once"]
    first = subprocess.run([*run, "--create-db"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert _main("pause", url=url, tmp_path=tmp_path).returncode == 0
    killed = subprocess.run(run, cwd=REPO_ROOT, env={**env, "AGENT_TRADER_FAILPOINT": "after_command_pick"},
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert _statuses(url) == ["done"]
    again = subprocess.run(run, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    status = json.loads(_main("status", "--json", url=url, tmp_path=tmp_path).stdout)["daemon"]
    assert status["paused"] is True and status["running"] is False
    assert [t for _, t, _ in _control_events(url)] == ["paused"]  # applied once


def test_status_when_there_is_no_database_then_says_so_and_still_shows_the_market(tmp_path: Path, capsys) -> None:
    assert main.main(["status", "--at", "2024-03-04T15:00:00", "--db", f"sqlite:///{tmp_path / 'none.db'}"]) == 0
    out = capsys.readouterr().out
    assert "market OPEN" in out
    assert [line for line in out.splitlines() if line.startswith("Daemon:")] == [
        f"Daemon: no database at {tmp_path / 'none.db'} (run `make demo`, a replay or the daemon first, or pass --db)"
    ]
    assert not (tmp_path / "none.db").exists()

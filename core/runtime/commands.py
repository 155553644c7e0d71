"""Control without a restart: the daemon's handling of ``main.py pause`` / ``resume`` / ``close``.

Commands reach the daemon through the database (:mod:`core.persistence.commands`), so they work for a SQLite daemon
on this machine and for a PostgreSQL daemon on another host. The daemon picks them at the start of every iteration
and, while it sleeps between iterations, every :data:`POLL_SECONDS`.

:func:`apply_command` is the pure part: given the control state (paused or not, the closes queued), a command, the
held positions and the time, it answers the command's final status, its outcome, the new control state and the
``control`` breaker event that records it. :class:`DaemonControl` does the I/O: it reads the pending commands, picks
each in one transaction with its effect (so a command is applied once even if the daemon dies right after), and hands
the control state to the Risk agent before each iteration: while paused, entries are refused with the rule
``paused``; a queued close becomes an exit the Risk agent approves (rule ``manual_close``) and that goes through the
normal execution path (the position's stop and target orders cancelled, a market SELL).

The control state is the daemon-state key ``control``: a pause survives restarts, and so does a close queued while
the daemon was down or between two iterations.
"""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from collections.abc import Callable, Mapping, Sequence

from loguru import logger
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from agents.risk_agent import RiskAgent
from core.brokers.base import Broker, BrokerError
from core.kernel.calendar import MarketCalendar, format_eastern
from core.errors import StorageUnavailable
from core.kernel.domain import TERMINAL_ORDER_STATUSES
from core.persistence.commands import (
    DONE,
    EXPIRED,
    PENDING,
    REJECTED,
    Command,
    approved_symbols,
    note_outcome,
    pending_commands,
    pick_command,
    recent_commands,
    submit_command,
)
from core.persistence.db import DaemonAlreadyRunning, DaemonLock
from core.persistence.models import EquitySnapshotRow, Iteration, OrderRow, PositionRow, Run
from core.persistence.repository import Repository
from core.runtime.orchestrator import IterationOutcome
from core.vocabulary import StateKey
from utils.failpoints import failpoint

KINDS = ("pause", "resume", "close")
#: how often a sleeping daemon looks for new commands
POLL_SECONDS = 5.0
#: a command not picked within this long is expired rather than applied (a close typed last week is not today's)
COMMAND_TTL = timedelta(days=3)
EVENT_NAME = "control"


@dataclass(frozen=True, slots=True)
class ControlState:
    """Paused or not (and why), and the closes queued for the next iteration (symbol -> command id, why)."""

    paused: bool = False
    paused_reason: str | None = None
    paused_at: str | None = None
    closes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "paused": self.paused,
            "paused_reason": self.paused_reason,
            "paused_at": self.paused_at,
            "closes": {s: dict(c) for s, c in sorted(self.closes.items())},
        }

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any] | None) -> ControlState:
        saved = saved or {}
        return cls(
            paused=bool(saved.get("paused", False)),
            paused_reason=saved.get("paused_reason"),
            paused_at=saved.get("paused_at"),
            closes={str(s): dict(c) for s, c in (saved.get("closes") or {}).items()},
        )


@dataclass(frozen=True, slots=True)
class Applied:
    """What a command does: its final status and outcome, the new control state, the event that records it, and
    whether it wants an iteration at once (``close --now`` while the market is open)."""

    status: str
    outcome: str
    state: ControlState
    event: dict[str, Any]
    immediate: bool = False


def _event(command: Command, from_state: str, to_state: str, outcome: str, at: datetime) -> dict[str, Any]:
    return {
        "name": EVENT_NAME,
        "from_state": from_state,
        "to_state": to_state,
        "reason": f"{command.kind} (command {command.id} by {command.requested_by}): {outcome}",
        "at": at,
    }


def _close_symbols(command: Command) -> list[str]:
    return [str(s).strip().upper() for s in command.args.get("symbols") or ()]


def apply_command(
    state: ControlState,
    command: Command,
    *,
    held: Mapping[str, float],
    symbols: Sequence[str],
    now: datetime,
    market_open: bool,
) -> Applied:
    """The effect of ``command`` on ``state`` (pure). ``held``: the open positions (symbol -> quantity) at the broker;
    ``symbols``: the daemon's SYMBOLS (to tell an unknown symbol from one merely not held)."""
    if now - command.requested_at > COMMAND_TTL:
        outcome = (
            f"expired: requested {format_eastern(command.requested_at)}, not picked within "
            f"{COMMAND_TTL.days} days; not applied"
        )
        return Applied(EXPIRED, outcome, state, _event(command, "pending", EXPIRED, outcome, now))
    by = f"{command.requested_by}" + (f": {command.args['reason']}" if command.args.get("reason") else "")
    if command.kind == "pause":
        if state.paused:
            outcome = f"already paused since {state.paused_at} ({state.paused_reason})"
            return Applied(DONE, outcome, state, _event(command, "paused", "paused", outcome, now))
        outcome = "paused: no new entries; exits, stops and position management continue"
        new = replace(state, paused=True, paused_reason=f"paused by {by}", paused_at=format_eastern(now))
        return Applied(DONE, outcome, new, _event(command, "running", "paused", outcome, now))
    if command.kind == "resume":
        if not state.paused:
            outcome = "not paused: nothing to resume"
            return Applied(DONE, outcome, state, _event(command, "running", "running", outcome, now))
        outcome = f"resumed: entries allowed again (paused since {state.paused_at})"
        new = replace(state, paused=False, paused_reason=None, paused_at=None)
        return Applied(DONE, outcome, new, _event(command, "paused", "running", outcome, now))
    if command.kind != "close":
        outcome = f"unknown command kind {command.kind!r} (known: {', '.join(KINDS)})"
        return Applied(REJECTED, outcome, state, _event(command, "pending", REJECTED, outcome, now))
    positions = {s: q for s, q in held.items() if q > 0}
    if command.args.get("all"):
        wanted = sorted(positions)
        if not wanted:
            outcome = "no open positions to close"
            return Applied(REJECTED, outcome, state, _event(command, "pending", REJECTED, outcome, now))
    else:
        wanted = _close_symbols(command)
        missing = [s for s in wanted if s not in positions]
        if not wanted or missing:
            known = set(symbols)
            why = [
                f"unknown symbol {s}: not among SYMBOLS and no open position"
                if s not in known
                else f"no open position in {s}"
                for s in missing
            ] or ["no symbol given"]
            outcome = "; ".join(why) + "; nothing closed"
            return Applied(REJECTED, outcome, state, _event(command, "pending", REJECTED, outcome, now))
    immediate = bool(command.args.get("now")) and bool(market_open)
    closes = dict(state.closes)
    for symbol in wanted:
        closes[symbol] = {"command_id": command.id, "reason": f"manual close by {by} (command {command.id})"}
    what = ", ".join(f"{s} ({positions[s]:g} shares)" for s in wanted)
    if immediate:
        when = "now, in an exits-only iteration (the market is open)"
    elif command.args.get("now"):
        when = "at the next iteration (--now: the market is closed)"
    else:
        when = "at the next iteration"
    outcome = f"exit of {what} queued: {when}"
    return Applied(
        DONE, outcome, replace(state, closes=closes), _event(command, "held", "closing", outcome, now), immediate
    )


class DaemonControl:
    """The daemon's side of the control commands (see the module docstring)."""

    def __init__(
        self,
        repository: Repository,
        risk: RiskAgent,
        broker: Broker,
        calendar: MarketCalendar,
        *,
        run_id: str,
        symbols: Sequence[str],
        now: Callable[[], datetime],
        key: str = StateKey.CONTROL,
    ) -> None:
        self._repository = repository
        self._risk = risk
        self._broker = broker
        self._calendar = calendar
        self._run_id = run_id
        self._symbols = [s.upper() for s in symbols]
        self._now = now
        self._key = str(key)
        saved = repository.get_state(self._key)
        self.state = ControlState.from_dict(saved[0] if saved is not None else None)
        self._exits_only = False  # the next iteration was asked for by close --now: exits only
        self._handed: dict[str, Mapping[str, Any]] = {}
        self._hand_over()

    def _hand_over(self) -> None:
        self._risk.entries_paused = self.state.paused_reason or "paused" if self.state.paused else None
        if self._exits_only and not self.state.paused:
            self._risk.entries_paused = "an out-of-schedule iteration for `close --now` makes exits only"
        self._risk.manual_exits = {s: str(c.get("reason", "manual close")) for s, c in self.state.closes.items()}

    async def poll(self) -> bool:
        """Pick the pending commands; True when one wants an iteration now (``close --now``, market open). A database
        that fails here is logged and the commands are picked at the next poll (the iteration itself stops the
        daemon when it cannot record)."""
        try:
            return await self._poll()
        except SQLAlchemyError as exc:
            logger.warning("could not read the commands: {}", str(exc).splitlines()[0])
            return False

    async def _poll(self) -> bool:
        commands = pending_commands(self._repository)
        if not commands:
            return False
        held: dict[str, float] | None = None
        immediate = False
        for command in commands:
            if command.kind == "close" and held is None:
                try:
                    account = await self._broker.account()
                except BrokerError as exc:  # the close stays pending: picked when the broker answers again
                    logger.warning("command {} close waits: the broker's account is unavailable ({})", command.id, exc)
                    continue
                held = {s: float(p.quantity) for s, p in account.positions.items()}
            now = self._now()
            applied = apply_command(
                self.state,
                command,
                held=held if held is not None else {},
                symbols=self._symbols,
                now=now,
                market_open=bool(self._calendar.is_open(now)),
            )
            state = (self._key, applied.state.as_dict()) if applied.state != self.state else None
            if not pick_command(
                self._repository,
                command.id,
                status=applied.status,
                outcome=applied.outcome,
                at=now,
                run_id=self._run_id,
                state=state,
                event=applied.event,
            ):
                continue  # picked by another process meanwhile
            failpoint("after_command_pick")
            self.state = applied.state
            immediate = immediate or applied.immediate
            log = logger.warning if applied.status != DONE else logger.info
            log(
                "command {} {} by {}: {} ({})",
                command.id,
                command.kind,
                command.requested_by,
                applied.status,
                applied.outcome,
            )
        if immediate:
            self._exits_only = True
        self._hand_over()
        return immediate

    async def before_iteration(self) -> None:
        """Pick what arrived since the last poll and hand the control state to the Risk agent."""
        await self.poll()
        self._handed = dict(self.state.closes)
        self._hand_over()

    async def after_iteration(self, outcome: IterationOutcome) -> None:
        """A queued close handed to this iteration is done with once the Risk agent approved its exit (recorded in
        the iteration's decisions) or the position is gone; otherwise (the iteration failed before the Risk stage, no
        bars for the symbol) it stays queued for the next iteration."""
        self._exits_only = False
        handed, self._handed = self._handed, {}
        if handed:
            try:
                approved = approved_symbols(self._repository, outcome.iteration_id, handed)
                account = await self._broker.account()
            except (BrokerError, SQLAlchemyError) as exc:  # the closes stay queued: looked at again next iteration
                logger.warning("queued closes kept for the next iteration: {}", exc)
                approved, account = set(), None
            held = {s for s, p in account.positions.items() if p.quantity > 0} if account is not None else set(handed)
            now = self._now()
            for symbol, close in handed.items():
                if symbol not in approved and symbol in held:
                    continue
                self.state = replace(self.state, closes={s: c for s, c in self.state.closes.items() if s != symbol})
                if symbol in approved:
                    note = f"{symbol}: exit approved in iteration {outcome.iteration_id}" + (
                        " (the exit order works at the broker)" if symbol in held else " (position closed)"
                    )
                else:
                    note = f"{symbol}: no position left at iteration {outcome.iteration_id} (closed meanwhile)"
                note_outcome(
                    self._repository, int(close["command_id"]), note, at=now, state=(self._key, self.state.as_dict())
                )
                logger.info("command {}: {}", close["command_id"], note)
        self._hand_over()


# --- the command line's side (main.py pause / resume / close / status) -------------------------------------------------


def requester() -> str:
    """``user@host`` of the person typing the command."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def known_positions(repository: Repository) -> dict[str, float]:
    """The daemon's open positions as of its latest recorded iteration (symbol -> quantity)."""
    beat = repository.get_state(StateKey.HEARTBEAT)
    if beat is None:
        return {}
    with repository.session() as session:
        iteration = session.get(Iteration, str(beat[0].get("iteration_id")))
        if iteration is None:
            return {}
        rows = session.execute(
            select(PositionRow.symbol, PositionRow.quantity).where(PositionRow.run_id == iteration.run_id)
        ).all()
    return {str(s): float(q) for s, q in rows if q > 0}


def submit(
    repository: Repository, kind: str, args: Mapping[str, Any], *, symbols: Sequence[str], now: datetime
) -> tuple[int, str, str]:
    """Record a command for the daemon: ``(id, status, message)``. A ``close`` of a symbol that is neither among
    ``symbols`` (SYMBOLS) nor an open position the daemon recorded is rejected at once (and recorded rejected)."""
    by = requester()
    if kind == "close" and not args.get("all"):
        held = known_positions(repository)
        unknown = [s for s in args.get("symbols") or () if s not in set(symbols) and s not in held]
        if unknown:
            outcome = (
                f"unknown symbol {', '.join(unknown)}: not among SYMBOLS ({', '.join(symbols)}) "
                "and no open position recorded; nothing closed"
            )
            command_id = submit_command(
                repository, kind, args, requested_by=by, at=now, status=REJECTED, outcome=outcome
            )
            return command_id, REJECTED, outcome
    command_id = submit_command(repository, kind, args, requested_by=by, at=now)
    return command_id, PENDING, f"recorded by {by}"


def daemon_running(engine: Engine) -> bool | None:
    """Whether a daemon holds the database's lock (None: could not tell)."""
    lock = DaemonLock(engine)
    try:
        lock.acquire()
    except DaemonAlreadyRunning:
        return True
    except (SQLAlchemyError, OSError, StorageUnavailable):
        return None
    lock.release()
    return False


def control_report(repository: Repository, *, running: bool | None, now: datetime) -> dict[str, Any]:
    """The daemon's state for ``main.py status``: running, paused, trading state, equity, positions, working orders,
    pending commands and the last iteration (times in New York)."""
    saved = repository.get_state(StateKey.CONTROL)
    control = ControlState.from_dict(saved[0] if saved is not None else None)
    risk = repository.get_state(StateKey.RISK_STATE)
    beat = repository.get_state(StateKey.HEARTBEAT)
    report: dict[str, Any] = {
        "running": running,
        "paused": control.paused,
        "paused_reason": control.paused_reason,
        "closes_queued": sorted(control.closes),
        "trading_state": str(risk[0].get("state")).upper() if risk is not None else "UNKNOWN",
        "trading_state_reason": risk[0].get("reason") if risk is not None else None,
    }
    run_id = None
    if beat is not None:
        at = datetime.fromisoformat(str(beat[0]["at"]))
        report.update(
            last_iteration=beat[0].get("iteration_id"),
            last_iteration_status=beat[0].get("status"),
            last_iteration_eastern=format_eastern(at),
            last_heartbeat_age_s=round((now - at).total_seconds()),
        )
    with repository.session() as session:
        if beat is not None:
            iteration = session.get(Iteration, str(beat[0].get("iteration_id")))
            run_id = iteration.run_id if iteration is not None else None
        if run_id is not None:
            equity = session.execute(
                select(EquitySnapshotRow.equity, EquitySnapshotRow.at)
                .where(EquitySnapshotRow.run_id == run_id)
                .order_by(EquitySnapshotRow.at.desc())
                .limit(1)
            ).first()
            report["equity"] = str(equity[0]) if equity is not None else None
            report["positions"] = [
                {"symbol": s, "quantity": str(q), "market_value": str(v)}
                for s, q, v in session.execute(
                    select(PositionRow.symbol, PositionRow.quantity, PositionRow.market_value)
                    .where(PositionRow.run_id == run_id)
                    .order_by(PositionRow.symbol)
                ).all()
            ]
            working = session.execute(
                select(OrderRow.symbol, OrderRow.side, OrderRow.order_type, OrderRow.quantity, OrderRow.status)
                .join(Run, Run.id == OrderRow.run_id)
                .where(Run.kind == "daemon", OrderRow.status.not_in([s.value for s in TERMINAL_ORDER_STATUSES]))
                .order_by(OrderRow.symbol)
            ).all()
            report["orders_working"] = [
                {"symbol": s, "side": side, "type": t, "quantity": str(q), "status": st}
                for s, side, t, q, st in working
            ]
    report["pending_commands"] = [
        {
            "id": c.id,
            "kind": c.kind,
            "args": dict(c.args),
            "requested_by": c.requested_by,
            "requested_eastern": format_eastern(c.requested_at),
        }
        for c in pending_commands(repository)
    ]
    report["recent_commands"] = [
        {"id": c.id, "kind": c.kind, "status": c.status, "outcome": c.outcome} for c in recent_commands(repository, 5)
    ]
    return report

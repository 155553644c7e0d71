"""The command store: the operator's ``pause`` / ``resume`` / ``close`` requests in the ``commands`` table.

The CLI writes a command (:func:`submit_command`) from any host that reaches the database; the daemon reads the
pending ones (:func:`pending_commands`) and picks each with :func:`pick_command`, which flips ``pending`` to its final
status, writes the daemon state the command changes and records a ``control`` breaker event, all in one transaction:
a command is applied once even when the daemon dies right after picking it, and two daemons (or a restart racing an
old process) cannot both apply it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from collections.abc import Iterable, Mapping

from sqlalchemy import select, update

from core.persistence.models import BreakerEventRow, CommandRow, DaemonStateRow, DecisionRow
from core.persistence.repository import Repository
from utils.jsonable import jsonable

PENDING, DONE, REJECTED, EXPIRED = "pending", "done", "rejected", "expired"
STATUSES = (PENDING, DONE, REJECTED, EXPIRED)


@dataclass(frozen=True, slots=True)
class Command:
    id: int
    kind: str
    args: Mapping[str, Any]
    requested_at: datetime
    requested_by: str
    status: str = PENDING
    picked_at: datetime | None = None
    done_at: datetime | None = None
    outcome: str | None = None


def _command(row: CommandRow) -> Command:
    return Command(
        row.id,
        row.kind,
        dict(row.args or {}),
        row.requested_at,
        row.requested_by,
        row.status,
        row.picked_at,
        row.done_at,
        row.outcome,
    )


def submit_command(
    repository: Repository,
    kind: str,
    args: Mapping[str, Any],
    *,
    requested_by: str,
    at: datetime,
    status: str = PENDING,
    outcome: str | None = None,
) -> int:
    """Write a command (``pending``, or already ``rejected`` by the CLI with its ``outcome``); returns its id."""
    if status not in STATUSES:
        raise ValueError(f"unknown command status {status!r}")
    with repository.session() as session, session.begin():
        row = CommandRow(
            kind=kind,
            args=jsonable(dict(args)),
            requested_at=at,
            requested_by=requested_by,
            status=status,
            picked_at=None,
            done_at=at if status != PENDING else None,
            outcome=outcome,
        )
        session.add(row)
        session.flush()
        return int(row.id)


def pending_commands(repository: Repository) -> list[Command]:
    """The commands not picked yet, oldest first."""
    with repository.session() as session:
        rows = session.scalars(select(CommandRow).where(CommandRow.status == PENDING).order_by(CommandRow.id)).all()
        return [_command(r) for r in rows]


def recent_commands(repository: Repository, limit: int = 10) -> list[Command]:
    """The latest ``limit`` commands, newest first."""
    with repository.session() as session:
        rows = session.scalars(select(CommandRow).order_by(CommandRow.id.desc()).limit(limit)).all()
        return [_command(r) for r in rows]


def get_command(repository: Repository, command_id: int) -> Command | None:
    with repository.session() as session:
        row = session.get(CommandRow, command_id)
        return _command(row) if row is not None else None


def pick_command(
    repository: Repository,
    command_id: int,
    *,
    status: str,
    outcome: str,
    at: datetime,
    run_id: str,
    state: tuple[str, Mapping[str, Any]] | None = None,
    event: Mapping[str, Any] | None = None,
) -> bool:
    """Apply a pending command once: in one transaction, flip it from ``pending`` to ``status`` with its ``outcome``,
    write ``state`` (a daemon-state key and its new value) and insert ``event`` (a breaker-event row of ``run_id``).
    False, and nothing written, when the command was no longer pending (another process picked it)."""
    if status == PENDING or status not in STATUSES:
        raise ValueError(f"a picked command ends done, rejected or expired, not {status!r}")
    with repository.session() as session, session.begin():
        flipped = session.execute(
            update(CommandRow)
            .where(CommandRow.id == command_id, CommandRow.status == PENDING)
            .values(status=status, outcome=outcome, picked_at=at, done_at=at)
        )
        if flipped.rowcount != 1:  # type: ignore[attr-defined]
            return False
        if state is not None:
            key, value = state
            session.merge(DaemonStateRow(key=str(key), value=jsonable(dict(value)), updated_at=at))
        if event is not None:
            session.add(BreakerEventRow(run_id=run_id, details=None, **dict(event)))
    return True


def note_outcome(
    repository: Repository,
    command_id: int,
    note: str,
    *,
    at: datetime,
    state: tuple[str, Mapping[str, Any]] | None = None,
) -> None:
    """Append what became of an applied command (a queued close handed to an iteration) to its ``outcome``, and write
    the daemon state that goes with it, in one transaction."""
    with repository.session() as session, session.begin():
        row = session.get(CommandRow, command_id)
        if row is not None:
            row.outcome = f"{row.outcome}; {note}" if row.outcome else note
        if state is not None:
            key, value = state
            session.merge(DaemonStateRow(key=str(key), value=jsonable(dict(value)), updated_at=at))


def approved_symbols(repository: Repository, iteration_id: str, symbols: Iterable[str]) -> set[str]:
    """Which of ``symbols`` the Risk agent approved an order for in ``iteration_id`` (its recorded decisions)."""
    wanted = list(symbols)
    if not wanted:
        return set()
    with repository.session() as session:
        found = session.scalars(
            select(DecisionRow.symbol).where(
                DecisionRow.iteration_id == iteration_id,
                DecisionRow.agent == "risk",
                DecisionRow.action == "approved",
                DecisionRow.symbol.in_(wanted),
            )
        ).all()
    return set(found)

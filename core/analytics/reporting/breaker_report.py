"""Circuit breakers: their current states and their trip/recovery history."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.persistence.models import BreakerEventRow, DaemonStateRow
from core.analytics.reporting.filters import _check_run, _window
from core.vocabulary import BREAKER_PREFIX


def breakers(
    session: Session,
    *,
    run_id: str | None = None,
    name: str | None = None,
    start: date | None = None,
    end: date | None = None,
) -> dict[str, Any]:
    """Circuit breakers: ``current`` (persisted ``breaker:*`` states, plus breakers known only from events, whose
    state is their last event's ``to_state``) and ``events`` (the trip/recovery history, oldest first).

    ``trips`` counts the events into ``open`` within the filters. ``daemon_state`` is not per run: the current
    states are the database's, whatever ``run_id``.
    """
    _check_run(session, run_id)
    stmt = _window(select(BreakerEventRow), BreakerEventRow.at, start, end).order_by(
        BreakerEventRow.at, BreakerEventRow.id
    )
    if run_id is not None:
        stmt = stmt.where(BreakerEventRow.run_id == run_id)
    if name is not None:
        stmt = stmt.where(BreakerEventRow.name == name)
    events: list[dict[str, Any]] = [
        {
            "at": e.at,
            "name": e.name,
            "from_state": e.from_state,
            "to_state": e.to_state,
            "reason": e.reason,
            "run_id": e.run_id,
        }
        for e in session.scalars(stmt)
    ]
    current: dict[str, dict[str, Any]] = {}
    prefix = BREAKER_PREFIX
    if run_id is not None and session.scalar(
        select(DaemonStateRow.key).where(DaemonStateRow.key.startswith(f"{run_id}:{BREAKER_PREFIX}")).limit(1)
    ):
        prefix = f"{run_id}:{BREAKER_PREFIX}"  # a replay's or backtest's own breakers
    state_rows = session.scalars(
        select(DaemonStateRow).where(DaemonStateRow.key.startswith(prefix)).order_by(DaemonStateRow.key)
    )
    for row in state_rows:
        breaker = row.key[len(prefix) :]
        if name is not None and breaker != name:
            continue
        value = dict(row.value)
        current[breaker] = {
            "name": breaker,
            "state": str(value.get("state", "unknown")),
            "reason": value.get("reason") or "",
            "changed_at": value.get("changed_at"),
            "updated_at": row.updated_at,
            "source": "daemon_state",
            "snapshot": value,
        }
    for e in events:
        if e["name"] not in current:
            current[e["name"]] = {
                "name": e["name"],
                "state": "unknown",
                "reason": "",
                "changed_at": None,
                "updated_at": None,
                "source": "events",
                "snapshot": {},
            }
        entry = current[e["name"]]
        if entry["source"] == "events":  # no persisted state: the last event tells the state
            entry.update(state=e["to_state"], reason=e["reason"], changed_at=e["at"])
    for breaker, entry in current.items():
        trips = [e for e in events if e["name"] == breaker and e["to_state"] == "open"]
        entry["trips"] = len(trips)
        entry["last_trip_at"] = trips[-1]["at"] if trips else None
    return {"current": [current[k] for k in sorted(current)], "events": events}

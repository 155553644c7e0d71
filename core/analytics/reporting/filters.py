"""Shared filters and run look-ups of the reports: the date window (inclusive UTC calendar dates), the symbol
normalisation, the "latest run" query, the run listing and the run checks (see :mod:`core.analytics.reporting`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session

from core.persistence.models import Iteration, Run

_ZERO = Decimal("0")
_CHUNK = 500  # bound on the size of an IN (...) list


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _window[S: Select[*tuple[Any, ...]]](stmt: S, column: Any, start: date | None, end: date | None) -> S:
    """``stmt`` within the window (a filtered statement keeps its row type)."""
    if start is not None:
        stmt = stmt.where(column >= _day_start(start))
    if end is not None:
        stmt = stmt.where(column < _day_start(end + timedelta(days=1)))
    return stmt


def _in_window(at: datetime, start: date | None, end: date | None) -> bool:
    day = at.astimezone(UTC).date()
    return (start is None or day >= start) and (end is None or day <= end)


def _norm_symbol(symbol: str | None) -> str | None:
    return symbol.strip().upper() if symbol else None


def latest_run_id(session: Session, *, kind: str | None = None) -> str:
    """The id of the most recently started run (of ``kind``, e.g. ``"daemon"``, when given; ties: the greater id).
    ``LookupError`` when the database holds none. The one "latest run" query (CLI ``--run latest``, the reports'
    default, the dashboard's first run)."""
    stmt = select(Run.id)
    if kind is not None:
        stmt = stmt.where(Run.kind == kind)
    run_id = session.scalar(stmt.order_by(Run.started_at.desc(), Run.id.desc()).limit(1))
    if run_id is None:
        raise LookupError("the database holds no runs yet" if kind is None else f"the database holds no {kind} run yet")
    return run_id


def run_list(session: Session, run_id: str | None = None) -> list[dict[str, Any]]:
    """Every run (daemon sessions, replays, demos, backtests), newest first (ties: the greater id first), with its
    iteration counts by status (``degraded``: completed and recorded without something it needed; ``failed``: a
    handler raised) and the first and last session it covered. One aggregate query, whatever the number of runs and
    iterations. With ``run_id``, only that run (an empty list when there is none)."""
    stats_stmt = select(
        Iteration.run_id,
        func.count().label("iterations"),
        func.sum(case((Iteration.status == "degraded", 1), else_=0)).label("degraded"),
        func.sum(case((Iteration.status == "failed", 1), else_=0)).label("failed"),
        func.min(Iteration.as_of).label("first"),
        func.max(Iteration.as_of).label("last"),
    ).group_by(Iteration.run_id)
    if run_id is not None:
        stats_stmt = stats_stmt.where(Iteration.run_id == run_id)
    stats = stats_stmt.subquery()
    stmt = (
        select(Run, stats.c.iterations, stats.c.degraded, stats.c.failed, stats.c.first, stats.c.last)
        .outerjoin(stats, stats.c.run_id == Run.id)
        .order_by(Run.started_at.desc(), Run.id.desc())
    )
    if run_id is not None:
        stmt = stmt.where(Run.id == run_id)
    return [
        {
            "run_id": run.id,
            "kind": run.kind,
            "status": run.status,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "iterations": int(iterations or 0),
            "degraded": int(degraded or 0),
            "failed": int(failed or 0),
            "first_session": pd.Timestamp(first).date() if first is not None else None,
            "last_session": pd.Timestamp(last).date() if last is not None else None,
            "initial_cash": run.initial_cash,
            "symbols": ", ".join(run.symbols.get("symbols", [])) if isinstance(run.symbols, dict) else "",
            "broker": run.broker,
            "data": run.data_provider,
        }
        for run, iterations, degraded, failed, first, last in session.execute(stmt)
    ]


def _one_run(session: Session, run_id: str | None) -> Run:
    run = session.get(Run, run_id if run_id is not None else latest_run_id(session))
    if run is None:
        raise LookupError(f"no run {run_id!r} in the database")
    return run


def _check_run(session: Session, run_id: str | None) -> None:
    if run_id is not None and session.get(Run, run_id) is None:
        raise LookupError(f"no run {run_id!r} in the database")


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(values), _CHUNK):
        yield values[i : i + _CHUNK]

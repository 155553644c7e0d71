"""Reconciliation events: database vs broker discrepancies and what was done."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.persistence.models import ReconciliationRow
from core.analytics.reporting.filters import _check_run, _norm_symbol, _window


def reconcile_view(
    session: Session,
    *,
    run_id: str | None = None,
    symbol: str | None = None,
    start: date | None = None,
    end: date | None = None,
) -> list[dict[str, Any]]:
    """Reconciliation events (database vs broker discrepancies and what was done), oldest first."""
    _check_run(session, run_id)
    stmt = _window(select(ReconciliationRow), ReconciliationRow.at, start, end).order_by(
        ReconciliationRow.at, ReconciliationRow.id
    )
    if run_id is not None:
        stmt = stmt.where(ReconciliationRow.run_id == run_id)
    if (sym := _norm_symbol(symbol)) is not None:
        stmt = stmt.where(ReconciliationRow.symbol == sym)
    return [
        {
            "at": r.at,
            "kind": r.kind,
            "symbol": r.symbol,
            "resolution": r.resolution,
            "details": dict(r.details),
            "run_id": r.run_id,
        }
        for r in session.scalars(stmt)
    ]

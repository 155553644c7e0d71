"""Row listings of the ledger: fills (with their order's strategy), orders, decisions, equity snapshots and runs.

Each function takes a SQLAlchemy ``Session`` and filters and returns a list of plain dicts (one per row, columns in
display order). Filters: ``run_id`` (``None``: every run), ``symbol`` (upper-cased), ``start`` / ``end`` (inclusive
UTC calendar dates) and ``limit`` (the most recent N rows, still returned oldest first; ``None``: every row).
"""

from __future__ import annotations

import fnmatch
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from core.persistence.models import DecisionRow, EquitySnapshotRow, FillRow, OrderRow
from core.analytics.reporting.filters import run_list

Row = dict[str, Any]


def _start(d: date | None) -> datetime | None:
    return datetime.combine(d, time.min, tzinfo=UTC) if d else None


def _end(d: date | None) -> datetime | None:
    return datetime.combine(d + timedelta(days=1), time.min, tzinfo=UTC) if d else None


def _filters[S: Select[*tuple[Any, ...]]](
    stmt: S,
    model: Any,
    ts_column: Any,
    run_id: str | None,
    symbol: str | None,
    start: date | None,
    end: date | None,
) -> S:
    if symbol:
        stmt = stmt.where(model.symbol == symbol.upper())
    if run_id is not None:
        stmt = stmt.where(model.run_id == run_id)
    if start:
        stmt = stmt.where(ts_column >= _start(start))
    if end:
        stmt = stmt.where(ts_column < _end(end))
    return stmt


def _limit[S: Select[*tuple[Any, ...]]](stmt: S, ts_column: Any, limit: int | None) -> S:
    """Oldest first; with a limit N, the most recent N (still returned oldest first)."""
    if limit:
        return stmt.order_by(ts_column.desc()).limit(limit)
    return stmt.order_by(ts_column)


def _ordered(rows: list[Row], key: str, limit: int | None) -> list[Row]:
    return sorted(rows, key=lambda r: r[key]) if limit else rows


def list_trades(
    session: Session,
    *,
    run_id: str | None = None,
    symbol: str | None = None,
    start: date | None = None,
    end: date | None = None,
    limit: int | None = None,
) -> list[Row]:
    """Fills with their order's strategy and type, oldest first."""
    stmt = select(FillRow, OrderRow.strategy, OrderRow.order_type, OrderRow.reason).join(
        OrderRow, OrderRow.client_order_id == FillRow.client_order_id
    )
    stmt = _limit(_filters(stmt, FillRow, FillRow.filled_at, run_id, symbol, start, end), FillRow.filled_at, limit)
    rows = []
    for fill, strategy, order_type, _reason in session.execute(stmt):
        rows.append(
            {
                "filled_at": fill.filled_at,
                "symbol": fill.symbol,
                "side": fill.side,
                "quantity": fill.quantity,
                "price": fill.price,
                "value": (fill.quantity * fill.price).quantize(Decimal("0.01")),
                "commission": fill.commission,
                "strategy": strategy,
                "order_type": order_type,
                "client_order_id": fill.client_order_id,
                "run_id": fill.run_id,
            }
        )
    return _ordered(rows, "filled_at", limit)


def list_orders(
    session: Session,
    *,
    run_id: str | None = None,
    symbol: str | None = None,
    start: date | None = None,
    end: date | None = None,
    limit: int | None = None,
    status: str | None = None,
) -> list[Row]:
    """Orders and their status, oldest first; ``status`` keeps only orders in that status."""
    stmt = _limit(
        _filters(select(OrderRow), OrderRow, OrderRow.submitted_at, run_id, symbol, start, end),
        OrderRow.submitted_at,
        limit,
    )
    if status:
        stmt = stmt.where(OrderRow.status == status)
    rows = [
        {
            "submitted_at": o.submitted_at,
            "symbol": o.symbol,
            "side": o.side,
            "type": o.order_type,
            "quantity": o.quantity,
            "status": o.status,
            "filled": o.filled_quantity,
            "avg_price": o.average_fill_price,
            "strategy": o.strategy,
            "client_order_id": o.client_order_id,
            "reason": o.reason,
            "run_id": o.run_id,
        }
        for o in session.scalars(stmt)
    ]
    return _ordered(rows, "submitted_at", limit)


def list_decisions(
    session: Session,
    *,
    run_id: str | None = None,
    symbol: str | None = None,
    start: date | None = None,
    end: date | None = None,
    limit: int | None = None,
    agent: str | None = None,
    action: str | None = None,
    with_inputs: bool = False,
) -> list[Row]:
    """Every agent's decisions, oldest first. ``agent``: only this agent; ``action``: an fnmatch pattern (e.g.
    ``denied:*``); ``with_inputs``: include each decision's ``inputs`` (JSON) column."""
    stmt = _filters(select(DecisionRow), DecisionRow, DecisionRow.as_of, run_id, symbol, start, end)
    if agent:
        stmt = stmt.where(DecisionRow.agent == agent)
    stmt = (
        stmt.order_by(DecisionRow.as_of, DecisionRow.id)
        if not limit
        else stmt.order_by(DecisionRow.as_of.desc(), DecisionRow.id.desc())
    )
    rows: list[Row] = []
    for d in session.scalars(stmt):
        if action and not fnmatch.fnmatchcase(d.action, action):
            continue
        rows.append(
            {
                "as_of": d.as_of,
                "symbol": d.symbol,
                "agent": d.agent,
                "action": d.action,
                "strategy": d.strategy,
                "confidence": round(d.confidence, 4) if d.confidence is not None else None,
                "reason": d.reason,
                **({"inputs": d.inputs} if with_inputs else {}),
                "iteration_id": d.iteration_id,
            }
        )
        if limit and len(rows) >= limit:
            break
    return _ordered(rows, "as_of", limit)


def list_equity(
    session: Session,
    *,
    run_id: str | None = None,
    symbol: str | None = None,
    start: date | None = None,
    end: date | None = None,
    limit: int | None = None,
) -> list[Row]:
    """Equity snapshots, oldest first, money rounded to cents."""
    stmt = _limit(
        _filters(select(EquitySnapshotRow), EquitySnapshotRow, EquitySnapshotRow.at, run_id, symbol, start, end),
        EquitySnapshotRow.at,
        limit,
    )
    rows = [
        {
            "at": e.at,
            "equity": e.equity.quantize(Decimal("0.01")),
            "cash": e.cash.quantize(Decimal("0.01")),
            "market_value": e.market_value.quantize(Decimal("0.01")),
            "positions": e.positions,
            "iteration_id": e.iteration_id,
        }
        for e in session.scalars(stmt)
    ]
    return _ordered(rows, "at", limit)


RUN_LISTING_COLUMNS = (
    "run_id", "kind", "status", "started_at", "finished_at", "iterations", "degraded", "failed",
    "first_session", "last_session", "broker", "data",
)  # fmt: skip


def list_runs(session: Session, run_id: str | None = None) -> list[Row]:
    """The runs, oldest first (:func:`core.analytics.reporting.run_list`: one aggregate query for all of them)."""
    return [{k: r[k] for k in RUN_LISTING_COLUMNS} for r in reversed(run_list(session, run_id))]

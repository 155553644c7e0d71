"""The "why" of one symbol on one session date: decisions in pipeline order, LLM calls, orders, fills, outcome."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.persistence.models import DecisionRow, FillRow, LLMCallRow, OrderRow, Run
from core.analytics.reporting.filters import _check_run, _day_start, _norm_symbol
from core.analytics.reporting.trips import rebuild_round_trips
from core.vocabulary import AgentName, DecisionAction

PIPELINE_ORDER: tuple[str, ...] = (
    AgentName.DATA,
    AgentName.SELECTOR,
    AgentName.STRATEGY,
    AgentName.QUANT,
    AgentName.RISK,
    AgentName.EXECUTION,
)


def _pipeline_rank(agent: str) -> int:
    return PIPELINE_ORDER.index(agent) if agent in PIPELINE_ORDER else len(PIPELINE_ORDER)


def why(session: Session, symbol: str, day: date, *, run_id: str | None = None) -> dict[str, Any]:
    """Everything behind one symbol on one session date (the UTC date of ``decisions.as_of``, the session close).

    Without ``run_id``, the latest run that decided about the symbol that day. Returns ``decisions`` (pipeline
    order: data, selector, strategy, quant, risk, execution), ``llm_calls`` of those iterations, ``orders`` submitted
    in them for the symbol, their ``fills`` (any iteration), and ``outcome``: ``status`` ``"closed"`` (the round trip
    the entry opened, with exit date/price/pnl), ``"open position"``, ``"no order"`` (with the reason of the last
    stage that stopped it), or for orders that opened no trip ``"added to position"``, ``"exit"`` or
    ``"not filled"``. ``LookupError`` when nothing was decided about the symbol that day.
    """
    sym = _norm_symbol(symbol)
    if not sym:
        raise ValueError("why() needs a symbol")
    _check_run(session, run_id)
    lo, hi = _day_start(day), _day_start(day + timedelta(days=1))
    base = select(DecisionRow).where(DecisionRow.symbol == sym, DecisionRow.as_of >= lo, DecisionRow.as_of < hi)
    if run_id is None:
        run_id = session.scalar(
            select(DecisionRow.run_id)
            .join(Run, Run.id == DecisionRow.run_id)
            .where(DecisionRow.symbol == sym, DecisionRow.as_of >= lo, DecisionRow.as_of < hi)
            .order_by(Run.started_at.desc(), Run.id.desc())
            .limit(1)
        )
        if run_id is None:
            raise LookupError(f"no decision about {sym} on {day.isoformat()} in any run")
    rows = sorted(
        session.scalars(base.where(DecisionRow.run_id == run_id)),
        key=lambda d: (d.as_of, d.iteration_id, _pipeline_rank(d.agent), d.id),
    )
    if not rows:
        raise LookupError(f"no decision about {sym} on {day.isoformat()} in run {run_id}")
    iterations = list(dict.fromkeys(d.iteration_id for d in rows))
    decisions = [
        {
            "as_of": d.as_of,
            "iteration_id": d.iteration_id,
            "agent": d.agent,
            "action": d.action,
            "strategy": d.strategy,
            "confidence": d.confidence,
            "reason": d.reason,
            "inputs": dict(d.inputs),
        }
        for d in rows
    ]
    llm_calls = []
    for c in session.scalars(
        select(LLMCallRow).where(LLMCallRow.iteration_id.in_(iterations)).order_by(LLMCallRow.started_at, LLMCallRow.id)
    ):
        symbols = list(c.symbols.get("symbols", [])) if isinstance(c.symbols, Mapping) else []
        llm_calls.append(
            {
                "started_at": c.started_at,
                "iteration_id": c.iteration_id,
                "purpose": c.purpose,
                "provider": c.provider,
                "model": c.model,
                "prompt_version": c.prompt_version,
                "outcome": c.outcome,
                "input_tokens": c.input_tokens,
                "output_tokens": c.output_tokens,
                "cost_usd": c.cost_usd,
                "latency_ms": c.latency_ms,
                "retries": c.retries,
                "symbols": symbols,
                "about_symbol": sym in symbols,
                "validation_errors": list(c.validation_errors.get("errors", []))
                if isinstance(c.validation_errors, Mapping)
                else [],
                "error": c.error,
            }
        )
    order_rows = session.scalars(
        select(OrderRow)
        .where(OrderRow.run_id == run_id, OrderRow.symbol == sym, OrderRow.iteration_id.in_(iterations))
        .order_by(OrderRow.submitted_at, OrderRow.id)
    ).all()
    orders = [
        {
            "submitted_at": o.submitted_at,
            "client_order_id": o.client_order_id,
            "side": o.side,
            "type": o.order_type,
            "quantity": o.quantity,
            "limit_price": o.limit_price,
            "stop_price": o.stop_price,
            "status": o.status,
            "filled_quantity": o.filled_quantity,
            "average_fill_price": o.average_fill_price,
            "strategy": o.strategy,
            "reason": o.reason,
            "iteration_id": o.iteration_id,
        }
        for o in order_rows
    ]
    order_ids = [o.client_order_id for o in order_rows]
    fills = (
        [
            {
                "filled_at": f.filled_at,
                "client_order_id": f.client_order_id,
                "side": f.side,
                "quantity": f.quantity,
                "price": f.price,
                "commission": f.commission,
                "fill_id": f.fill_id,
                "iteration_id": f.iteration_id,
            }
            for f in session.scalars(
                select(FillRow).where(FillRow.client_order_id.in_(order_ids)).order_by(FillRow.filled_at, FillRow.id)
            )
        ]
        if order_ids
        else []
    )
    return {
        "symbol": sym,
        "date": day,
        "run_id": run_id,
        "iterations": iterations,
        "decisions": decisions,
        "llm_calls": llm_calls,
        "orders": orders,
        "fills": fills,
        "outcome": _outcome(session, run_id, sym, order_rows, decisions),
    }


def _outcome(
    session: Session, run_id: str, symbol: str, orders: Sequence[OrderRow], decisions: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    if not orders:
        stoppers = [
            d for d in decisions if not (d["agent"] == AgentName.EXECUTION and d["action"] == DecisionAction.NONE)
        ]
        last = stoppers[-1] if stoppers else decisions[-1]
        return {"status": "no order", "stage": last["agent"], "action": last["action"], "reason": last["reason"]}
    book = rebuild_round_trips(session, run_id=run_id, symbol=symbol)
    ids = {o.client_order_id for o in orders}
    for trip in book.trips:
        if trip.entry_order_id in ids:
            return trip.summary()
    for trip in book.trips:
        touched = [f for f in trip.fills if f.client_order_id in ids]
        if touched:
            status = "added to position" if any(f.side == "buy" for f in touched) else "exit"
            return {**trip.summary(), "status": status, "trip_status": "closed" if trip.closed else "open position"}
    first = orders[0]
    return {
        "status": "not filled",
        "client_order_id": first.client_order_id,
        "order_status": first.status,
        "reason": first.reason,
    }

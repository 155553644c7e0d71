"""The risk picture of one run: trading state, exposure by sector bucket, refusals by rule."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.persistence.models import DaemonStateRow, DecisionRow, EquitySnapshotRow, PositionRow
from core.analytics.reporting.filters import _ZERO, _norm_symbol, _one_run, _window
from core.risk import load_sector_map, sector_of
from core.vocabulary import DENIED_PREFIX, AgentName, StateKey

RISK_STATE_KEY: str = StateKey.RISK_STATE.value


def risk_view(
    session: Session,
    *,
    run_id: str | None = None,
    symbol: str | None = None,
    start: date | None = None,
    end: date | None = None,
    sector_map: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The risk picture of one run (default: the latest).

    * ``state``: ``daemon_state["risk:state"]`` (``state`` ``"unknown"`` when absent); ``last_decision_state`` is
      the trading state the Risk agent recorded with its latest decision of the run, for comparison.
    * ``exposure``: the run's latest positions grouped by sector bucket (``sector_map``, default
      ``config/sectors.json``): market value and share of the run's latest equity.
    * ``refusals``: risk decisions ``denied:<rule>`` of the run (window/symbol filters), per rule: count, symbols,
      latest date and the reason of the latest one as example; most frequent first.
    """
    run = _one_run(session, run_id)
    sym = _norm_symbol(symbol)
    sectors = sector_map if sector_map is not None else load_sector_map()

    # replays and backtests keep their state under "<run id>:risk:state"; the daemon's is the plain key
    row = (session.get(DaemonStateRow, f"{run_id}:{RISK_STATE_KEY}") if run_id is not None else None) or session.get(
        DaemonStateRow, RISK_STATE_KEY
    )
    if row is None:
        state: dict[str, Any] = {
            "state": "unknown",
            "reason": f"no {RISK_STATE_KEY!r} in daemon_state",
            "updated_at": None,
        }
    else:
        value = dict(row.value)
        state = {
            **value,
            "state": str(value.get("state", "unknown")),
            "reason": value.get("reason") or "",
            "updated_at": row.updated_at,
        }
    last = session.scalars(
        select(DecisionRow)
        .where(DecisionRow.run_id == run.id, DecisionRow.agent == AgentName.RISK)
        .order_by(DecisionRow.as_of.desc(), DecisionRow.id.desc())
        .limit(1)
    ).first()
    last_decision_state = (
        {"state": last.inputs.get("state"), "reason": last.inputs.get("state_reason"), "as_of": last.as_of}
        if last is not None and "state" in last.inputs
        else None
    )

    snapshot = session.scalars(
        select(EquitySnapshotRow)
        .where(EquitySnapshotRow.run_id == run.id)
        .order_by(EquitySnapshotRow.at.desc(), EquitySnapshotRow.id.desc())
        .limit(1)
    ).first()
    equity = snapshot.equity if snapshot is not None else None
    pos_stmt = select(PositionRow).where(PositionRow.run_id == run.id).order_by(PositionRow.symbol)
    if sym is not None:
        pos_stmt = pos_stmt.where(PositionRow.symbol == sym)
    buckets: dict[str, dict[str, Any]] = {}
    gross = _ZERO
    for p in session.scalars(pos_stmt):
        bucket = sector_of(p.symbol, sectors)
        entry = buckets.setdefault(bucket, {"sector": bucket, "symbols": [], "value": _ZERO})
        entry["symbols"].append(p.symbol)
        entry["value"] += p.market_value
        gross += p.market_value
    exposure = []
    for entry in sorted(buckets.values(), key=lambda b: (-b["value"], b["sector"])):
        entry["share"] = float(entry["value"] / equity) if equity else None
        exposure.append(entry)

    den_stmt = _window(
        select(DecisionRow).where(
            DecisionRow.run_id == run.id,
            DecisionRow.agent == AgentName.RISK,
            DecisionRow.action.startswith(DENIED_PREFIX),
        ),
        DecisionRow.as_of,
        start,
        end,
    ).order_by(DecisionRow.as_of, DecisionRow.id)
    if sym is not None:
        den_stmt = den_stmt.where(DecisionRow.symbol == sym)
    groups: dict[str, dict[str, Any]] = {}
    for d in session.scalars(den_stmt):
        rule = d.action[len(DENIED_PREFIX) :]
        g = groups.setdefault(rule, {"rule": rule, "count": 0, "symbols": set()})
        g["count"] += 1
        g["symbols"].add(d.symbol)
        g.update(latest=d.as_of, example_symbol=d.symbol, example_reason=d.reason)  # rows come oldest first
    refusals = [
        {**g, "symbols": sorted(g["symbols"])} for g in sorted(groups.values(), key=lambda g: (-g["count"], g["rule"]))
    ]
    return {
        "run_id": run.id,
        "state": state,
        "last_decision_state": last_decision_state,
        "equity": equity,
        "equity_at": snapshot.at if snapshot is not None else None,
        "gross_exposure": gross,
        "gross_share": float(gross / equity) if equity else None,
        "exposure": exposure,
        "refusals": refusals,
    }

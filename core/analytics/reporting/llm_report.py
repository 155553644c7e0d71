"""LLM usage (calls, tokens, cost, latency, selector abstentions) and the shadow ledger's per-strategy statistics."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from core.persistence.models import DecisionRow, LLMCallRow, ShadowMatrixRow, ShadowSignalRow
from core.persistence.shadow import ShadowEntry, entries
from core.analytics.reporting.filters import _norm_symbol, _window
from core.vocabulary import AgentName, DecisionAction


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo), 1)


def _run_filter[S: Select[*tuple[Any, ...]]](stmt: S, model: Any, column: Any, run_id: str | None, start: date | None, end: date | None,
                symbol: str | None) -> S:  # fmt: skip
    symbol = _norm_symbol(symbol)
    if symbol is not None and hasattr(model, "symbol"):
        stmt = stmt.where(model.symbol == symbol)
    if run_id is not None:
        stmt = stmt.where(model.run_id == run_id)
    return _window(stmt, column, start, end)


def llm_usage(
    session: Session,
    *,
    run_id: str | None = None,
    start: date | None = None,
    end: date | None = None,
    symbol: str | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """LLM calls by purpose/provider/model (count, outcomes, tokens, cost, latency percentiles) and the selector's
    abstentions by reason (``query_trades.py llm`` and the dashboard)."""
    stmt = _run_filter(select(LLMCallRow), LLMCallRow, LLMCallRow.started_at, run_id, start, end, symbol)
    groups: dict[tuple[str, str, str], list[LLMCallRow]] = {}
    for call in session.scalars(stmt.order_by(LLMCallRow.started_at)):
        groups.setdefault((call.purpose, call.provider, call.model), []).append(call)
    calls: list[dict[str, Any]] = []
    for (purpose, provider, model), rows in sorted(groups.items()):
        latencies = [r.latency_ms for r in rows if r.outcome != "budget_exceeded"]
        costs = [r.cost_usd for r in rows if r.cost_usd is not None]
        outcomes: dict[str, int] = {}
        for r in rows:
            outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
        calls.append(
            {
                "purpose": purpose,
                "provider": provider,
                "model": model,
                "calls": len(rows),
                "outcomes": ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())),
                "retries": sum(r.retries for r in rows),
                "input_tokens": sum(r.input_tokens for r in rows),
                "output_tokens": sum(r.output_tokens for r in rows),
                "cost_usd": sum(costs, Decimal("0")),
                "unpriced_calls": sum(1 for r in rows if r.cost_usd is None and r.outcome != "budget_exceeded"),
                "latency_p50_ms": percentile(latencies, 0.5),
                "latency_p95_ms": percentile(latencies, 0.95),
                "latency_max_ms": round(max(latencies), 1) if latencies else None,
            }
        )
    abst = _run_filter(select(DecisionRow), DecisionRow, DecisionRow.as_of, run_id, start, end, symbol).where(
        DecisionRow.agent == AgentName.SELECTOR, DecisionRow.action == DecisionAction.ABSTAIN
    )
    reasons: dict[str, int] = {}
    for d in session.scalars(abst):
        reasons[d.reason] = reasons.get(d.reason, 0) + 1
    abstentions = [{"reason": r, "count": n} for r, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))]
    chosen = session.scalar(
        _run_filter(
            select(func.count()).select_from(DecisionRow), DecisionRow, DecisionRow.as_of, run_id, start, end, symbol
        ).where(DecisionRow.agent == AgentName.SELECTOR, DecisionRow.action == DecisionAction.CHOSE)
    )
    choices = {"llm": int(chosen or 0), "deterministic": sum(reasons.values())}
    return {"calls": calls, "abstentions": abstentions, "choices": [choices]}


def selection_mix(session: Session, run_id: str) -> tuple[int, int, Decimal, int]:
    """(symbols chosen by the LLM, symbols that fell back to the deterministic selector while the LLM was on, the
    run's LLM cost in USD (selection and narration), LLM calls made) for a run summary."""
    report = llm_usage(session, run_id=run_id)
    choices = report["choices"][0]
    cost = sum((c["cost_usd"] for c in report["calls"]), Decimal("0"))
    made = sum(c["calls"] for c in report["calls"]) - sum(
        int(part.split()[-1])
        for c in report["calls"]
        for part in c["outcomes"].split(", ")
        if part.startswith("budget_exceeded ")
    )
    return choices["llm"], choices["deterministic"], cost, made


def shadow_entries(
    session: Session,
    *,
    run_id: str | None = None,
    start: date | None = None,
    end: date | None = None,
    symbol: str | None = None,
) -> list[ShadowEntry]:
    """The shadow ledger's per-symbol entries (packed ``shadow_matrices`` rows and the older runs' ``shadow_signals``
    rows), ordered by run, symbol and time."""
    legacy = _run_filter(
        select(ShadowSignalRow), ShadowSignalRow, ShadowSignalRow.as_of, run_id, start, end, symbol
    ).order_by(ShadowSignalRow.run_id, ShadowSignalRow.symbol, ShadowSignalRow.as_of)
    packed = _run_filter(
        select(ShadowMatrixRow), ShadowMatrixRow, ShadowMatrixRow.as_of, run_id, start, end, None
    ).order_by(ShadowMatrixRow.as_of, ShadowMatrixRow.id)
    return entries(session.scalars(packed), session.scalars(legacy), _norm_symbol(symbol))


def shadow_stats(
    session: Session,
    *,
    run_id: str | None = None,
    start: date | None = None,
    end: date | None = None,
    symbol: str | None = None,
    horizon: int = 5,
) -> list[dict[str, Any]]:
    """Per strategy of the shadow ledger: how often it would have signalled, and the average forward return
    ``horizon`` bars after its BUY/SELL signals, beside the same figures for the strategies the selector actually
    chose (``selector``, listed first). ``query_trades.py shadow`` and the dashboard."""
    series: dict[tuple[str, str], list[ShadowEntry]] = {}
    for row in shadow_entries(session, run_id=run_id, start=start, end=end, symbol=symbol):
        series.setdefault((row.run_id, row.symbol), []).append(row)
    stats: dict[str, dict[str, Any]] = {}

    def note(name: str, action: str, forward: float | None) -> None:
        st = stats.setdefault(
            name, {"strategy": name, "evaluated": 0, "buy": 0, "sell": 0, "hold": 0, "_buy_fwd": [], "_sell_fwd": []}
        )
        st[action.lower()] += 1
        if forward is not None and action != "HOLD":
            st[f"_{action.lower()}_fwd"].append(forward)

    for rows in series.values():
        for i, row in enumerate(rows):
            forward = rows[i + horizon].close / row.close - 1.0 if i + horizon < len(rows) and row.close else None
            for name, (action, _strength) in row.signals.items():
                note(name, action, forward)
                stats[name]["evaluated"] += 1
            chosen = row.signals.get(row.selected)
            if chosen is not None:
                note("selector", chosen[0], forward)
                stats["selector"]["evaluated"] += 1
    out: list[dict[str, Any]] = []
    for _name, st in sorted(stats.items(), key=lambda kv: (kv[0] != "selector", kv[0])):
        buy, sell = st.pop("_buy_fwd"), st.pop("_sell_fwd")
        st["buy_fwd_return_avg"] = round(sum(buy) / len(buy), 5) if buy else None
        st["buy_hit_rate"] = round(sum(1 for x in buy if x > 0) / len(buy), 3) if buy else None
        st["sell_fwd_return_avg"] = round(sum(sell) / len(sell), 5) if sell else None
        st["sell_hit_rate"] = round(sum(1 for x in sell if x < 0) / len(sell), 3) if sell else None
        st["horizon_bars"] = horizon
        out.append(st)
    return out

"""The audit record of one iteration, built from the iteration's events by small pure functions.

The Audit agent does the I/O: it reads the broker's account, asks its narrator for the text, snapshots the state and
writes the record. Everything it writes is derived here from the event chain and those inputs: the stages the
pipeline reached (:func:`stages_of`), the status with every reason (:func:`with_notes`), the orders and fills
(:func:`orders_and_fills`), the equity (:func:`iteration_equity`), the facts the narrative is built from and checked
against (:func:`iteration_facts`), the heartbeat
(:func:`heartbeat`) and the :class:`~core.persistence.repository.IterationRecord` itself (:func:`iteration_record`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from collections.abc import Mapping, Sequence

from core.analytics.narrative import NarrativeResult
from core.brokers.base import AccountState, SyncResult
from core.kernel.domain import BarsBatch, EquitySnapshot, Fill, Order
from core.kernel.events import ApprovedReady, DataReady, Event, ExecutedReady, IterationStarted, SignalsReady
from core.kernel.shadow import ShadowBlock
from core.persistence.repository import IterationRecord
from core.risk.positions import PositionManager, levels

__all__ = [
    "SIGNAL_ACTIONS",
    "Stages",
    "data_facts",
    "equity_facts",
    "heartbeat",
    "iteration_equity",
    "iteration_facts",
    "iteration_record",
    "narrative_facts",
    "orders_and_fills",
    "risk_facts",
    "signal_counts",
    "stages_of",
    "with_notes",
]

SIGNAL_ACTIONS = ("BUY", "SELL", "HOLD")  # the counts the facts always carry (0 when none)


@dataclass(frozen=True, slots=True)
class Stages:
    """The events of one iteration's chain by stage (None for a stage the pipeline did not reach), and the chain."""

    started: IterationStarted
    data: DataReady | None
    signals: SignalsReady | None
    approved: ApprovedReady | None
    executed: ExecutedReady | None
    chain: tuple[Event, ...]

    @property
    def batch(self) -> BarsBatch | None:
        """The bars the iteration had (None before the Data stage)."""
        return self.data.batch if self.data is not None else None


def _first[E: Event](chain: Sequence[Event], kind: type[E]) -> E | None:
    """The first event of ``kind`` in ``chain`` (None when the pipeline did not reach that stage)."""
    return next((e for e in chain if isinstance(e, kind)), None)


def stages_of(chain: Sequence[Event]) -> Stages:
    """The stages of ``chain`` (oldest first, as :meth:`Event.chain` returns it); it must hold the IterationStarted."""
    started = next(e for e in chain if isinstance(e, IterationStarted))
    return Stages(
        started=started,
        data=_first(chain, DataReady),
        signals=_first(chain, SignalsReady),
        approved=_first(chain, ApprovedReady),
        executed=_first(chain, ExecutedReady),
        chain=tuple(chain),
    )


def with_notes(status: str, error: str | None, notes: Sequence[str]) -> tuple[str, str | None]:
    """The status and error once ``notes`` (what the iteration needed and could not have) are counted: any note makes
    an ``ok`` iteration ``degraded`` (a worse status stays), and the error gains every note it does not already hold."""
    if not notes:
        return status, error
    return (
        "degraded" if status == "ok" else status,
        "; ".join([e for e in (error,) if e] + [n for n in notes if error is None or n not in error]),
    )


def iteration_equity(
    executed: ExecutedReady | None, account: AccountState | None, as_of: datetime
) -> EquitySnapshot | None:
    """The Execution agent's equity snapshot; without one, the account's at ``as_of``; None when neither is known."""
    equity = executed.equity if executed is not None else None
    if equity is None and account is not None:
        equity = account.equity_snapshot(as_of)
    return equity


def orders_and_fills(
    executed: ExecutedReady | None, broker_report: SyncResult | None
) -> tuple[list[Order], list[Fill]]:
    """The orders (status updates first, then the new submissions) and fills of the iteration, followed by those of
    ``broker_report``: what the broker reported before a failure stopped the pipeline."""
    orders: list[Order] = []
    fills: list[Fill] = []
    if executed is not None:
        orders = list(executed.order_updates) + list(executed.orders)
        fills = list(executed.fills)
    if broker_report is not None:
        orders += broker_report.orders
        fills += broker_report.fills
    return orders, fills


def signal_counts(signals: SignalsReady | None) -> Counter[str]:
    """How many signals of each action (``"BUY"``, ``"SELL"``, ``"HOLD"``) the Strategy stage emitted."""
    return Counter(s.action.value for s in signals.signals.values()) if signals is not None else Counter()


def data_facts(batch: BarsBatch | None) -> dict[str, Any]:
    """The data facts: symbols requested and clean, the data quality in percent, the rejected and flagged symbols."""
    if batch is None:
        return {"symbols_total": 0, "symbols_ok": 0, "data_quality_pct": 0.0, "rejected": {}, "flagged": {}}
    return {
        "symbols_total": len(batch.bars) + len(batch.rejected),
        # clean symbols: those flagged (managed on their last good bar, no new entry) are not counted
        "symbols_ok": len(batch.bars) - len(batch.entry_blocked),
        "data_quality_pct": round(100 * batch.data_quality, 1),
        "rejected": dict(batch.rejected),
        "flagged": {s: batch.exclusions.get(s, "data") for s in batch.entry_blocked},
    }


def risk_facts(approved: ApprovedReady | None) -> dict[str, Any]:
    """The Risk stage's facts: approvals, denials, and denials counted by rule."""
    if approved is None:
        return {"approvals": 0, "denials": 0, "denials_by_rule": {}}
    return {
        "approvals": len(approved.approvals),
        "denials": len(approved.denials),
        "denials_by_rule": dict(Counter(d.rule for d in approved.denials)),
    }


def equity_facts(equity: EquitySnapshot | None) -> dict[str, Any]:
    """Equity and cash as the narrative shows them (thousands separators, cents) and the number of positions."""
    if equity is None:
        return {"equity": None, "cash": None, "positions": None}
    return {
        "equity": format(equity.equity, ",.2f"),
        "cash": format(equity.cash, ",.2f"),
        "positions": equity.positions,
    }


def iteration_facts(
    stages: Stages, *, status: str, error: str | None, fills: int, equity: EquitySnapshot | None
) -> dict[str, Any]:
    """The facts of an iteration, recorded with it: the narrative is built from them and every number an LLM
    narrative states must be one of them. ``fills``: how many fills the iteration records."""
    counts = signal_counts(stages.signals)
    return {
        "iteration_id": stages.started.iteration_id,
        "as_of": stages.started.as_of.isoformat(),
        "status": status,
        "error": error,
        **data_facts(stages.batch),
        "signals": {a: counts.get(a, 0) for a in SIGNAL_ACTIONS},
        **risk_facts(stages.approved),
        "orders_submitted": len(stages.executed.orders) if stages.executed is not None else 0,
        "fills": fills,
        **equity_facts(equity),
    }


def narrative_facts(facts: Mapping[str, Any], narrative: NarrativeResult) -> dict[str, Any]:
    """``facts`` as recorded after a narrator answered: with which text was kept, why, and any refused LLM text."""
    return {
        **facts,
        "narrative": {"kind": narrative.kind, "reason": narrative.reason, "rejected_text": narrative.rejected_text},
    }


def heartbeat(run_id: str, iteration_id: str, as_of: datetime, at: datetime, status: str) -> dict[str, Any]:
    """The daemon's heartbeat written with every iteration (``main.py health`` reads it); ``at``: the wall time."""
    return {
        "run_id": run_id,
        "iteration_id": iteration_id,
        "as_of": as_of.isoformat(),
        "at": at.isoformat(),
        "status": status,
    }


def iteration_record(
    stages: Stages,
    *,
    run_id: str,
    recorded_at: datetime,
    status: str,
    error: str | None,
    account: AccountState | None,
    equity: EquitySnapshot | None,
    orders: Sequence[Order],
    fills: Sequence[Fill],
    facts: Mapping[str, Any],
    report_kind: str,
    report_text: str,
    llm_calls: Sequence[Mapping[str, Any]],
    state: Mapping[str, Mapping[str, Any]],
) -> IterationRecord:
    """The iteration's record: every decision of the chain, the orders and fills, the positions and their exit levels
    (None/empty when the account could not be read), the equity, the report and its facts, the LLM calls (the
    Strategy stage's, then ``llm_calls``), the shadow rows, the breaker events and ``state``."""
    batch = stages.batch
    signals = stages.signals
    counts = signal_counts(signals)
    return IterationRecord(
        run_id=run_id,
        iteration_id=stages.started.iteration_id,
        seq=stages.started.seq,
        as_of=stages.started.as_of,
        recorded_at=recorded_at,
        status=status,
        error=error,
        symbols_total=facts["symbols_total"],
        symbols_ok=facts["symbols_ok"],
        data_quality=batch.data_quality if batch is not None else 0.0,
        decisions=[d for e in stages.chain for d in e.decisions],
        orders=list(orders),
        fills=list(fills),
        positions=dict(account.positions) if account is not None else None,
        equity=equity,
        report_kind=report_kind,
        report_text=report_text,
        report_facts=facts,
        signals=sum(v for k, v in counts.items() if k != "HOLD"),
        approvals=facts["approvals"],
        denials=facts["denials"],
        orders_submitted=facts["orders_submitted"],
        llm_calls=(*(signals.llm_calls if signals is not None else ()), *llm_calls),
        shadow=(signals.shadow if isinstance(signals.shadow, ShadowBlock) else tuple(signals.shadow))
        if signals is not None
        else (),
        breaker_events=tuple(b for e in stages.chain for b in e.breaker_events),
        state=state,
        position_levels=levels(PositionManager.plans(account)) if account is not None else {},
    )

"""Audit agent: records the iteration — every decision, order, fill, position and the equity — in one transaction,
with a deterministic text summary built from the same facts."""

from __future__ import annotations

from collections import Counter, deque
from datetime import datetime
from typing import Any
from collections.abc import Callable, Mapping, Sequence

from loguru import logger

from core.brokers.base import AccountState, Broker, BrokerError, SyncResult
from core.kernel.bus import HandlerFailure, PublishReport
from core.kernel.clock import Clock
from core.kernel.domain import Decision, Order
from core.kernel.events import (
    ApprovedReady,
    DataReady,
    Event,
    ExecutedReady,
    IterationStarted,
    SignalsReady,
    ValidatedReady,
)
from core.analytics.narrative import Narrator, iteration_content
from core.risk.positions import PositionManager, levels
from utils.failpoints import failpoint
from core.persistence.repository import IterationRecord, Repository
from core.vocabulary import AgentName
from utils import deadline as _deadline


def summarize(facts: Mapping[str, Any]) -> str:
    """The deterministic narrative of an iteration; every number in it comes from ``facts``."""
    parts = [
        f"{facts['as_of'][:10]}: {facts['symbols_ok']}/{facts['symbols_total']} symbols with usable data "
        f"(quality {facts['data_quality_pct']}%)"
    ]
    if facts["rejected"]:
        parts.append("excluded " + ", ".join(f"{s} ({r})" for s, r in facts["rejected"].items()))
    if facts.get("flagged"):
        parts.append("flagged, no new entries " + ", ".join(f"{s} ({r})" for s, r in facts["flagged"].items()))
    sig = facts["signals"]
    parts.append(f"signals BUY {sig.get('BUY', 0)}, SELL {sig.get('SELL', 0)}, HOLD {sig.get('HOLD', 0)}")
    parts.append(f"risk approved {facts['approvals']}, denied {facts['denials']}")
    if facts["denials_by_rule"]:
        parts.append("denials by rule: " + ", ".join(f"{r} {n}" for r, n in sorted(facts["denials_by_rule"].items())))
    parts.append(f"orders submitted {facts['orders_submitted']}, fills {facts['fills']}")
    if facts.get("equity") is not None:
        parts.append(f"equity {facts['equity']} (cash {facts['cash']}, {facts['positions']} positions)")
    if facts.get("status") != "ok":
        parts.append(f"iteration {facts['status']}: {facts.get('error')}")
    return "; ".join(parts) + "."


class AuditAgent:
    name = AgentName.AUDIT

    def __init__(
        self,
        repository: Repository,
        broker: Broker,
        clock: Clock,
        run_id: str,
        *,
        recent_equity: int = 10,
        state: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None,
        heartbeat_key: str | None = None,
        narrator: Narrator | None = None,
        batch_size: int = 1,
    ) -> None:
        """``state``: snapshots (key -> JSON object) persisted with every iteration, e.g. breaker states.
        ``heartbeat_key``: where the daemon's heartbeat is written with every iteration (``main.py health`` reads it)."""
        self._state = state
        self._heartbeat_key = heartbeat_key
        self._narrator = narrator
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._batch_size = batch_size  # >1 only for backtests: several iterations per transaction
        self._pending: list[IterationRecord] = []
        self._repository = repository
        self._broker = broker
        self._clock = clock
        self.run_id = run_id
        self.last_summary: str | None = None
        # what the latest _record wrote (the orchestrator reports the same status)
        self.last_iteration_id: str | None = None
        self.last_status: str | None = None
        self.last_error: str | None = None
        # the run's latest equity values, oldest first, for the Risk agent's daily/weekly loss limits
        self.recent_equity: deque[float] = deque(
            (float(e) for _, e in repository.equity_history(run_id, limit=recent_equity)), maxlen=recent_equity
        )

    async def on_executed(self, event: ExecutedReady) -> None:
        chain = event.chain()
        reasons = [reason for e in chain for reason in e.degraded]
        await self._record(chain, status="degraded" if reasons else "ok", error="; ".join(reasons) if reasons else None)

    async def record_incomplete(
        self,
        report: PublishReport,
        failures: Sequence[HandlerFailure],
        *,
        status: str = "failed",
        broker_report: SyncResult | None = None,
    ) -> None:
        """Record an iteration whose pipeline stopped early: what was decided so far, the error, the equity, and
        ``broker_report``: the fills and order states the broker reported (and orders it accepted) before the
        failure, which no later sync reports again.

        ``status``: ``failed``, or ``degraded`` when every failure was a service unreachable after its retries."""
        error = "; ".join(f"{f.handler} on {f.event}: {f.error}" for f in failures) or "pipeline stopped early"
        last = report.last_event
        chain = last.chain() if last is not None else []
        await self._record(chain, status=status, error=error, broker_report=broker_report)

    def flush(self) -> None:
        """Write the buffered iterations in one transaction (a no-op when nothing is pending)."""
        if self._pending:
            records, self._pending = self._pending, []
            self._repository.record_iterations(records)
            failpoint("after_persist")

    def mark_failed(self, iteration_id: str, error: str, *, status: str = "failed") -> None:
        """An already-recorded iteration had a failing handler beside the main chain (or met an unreachable service
        after it was recorded): flag it with ``status`` and the error."""
        self.flush()
        self._repository.mark_iteration(iteration_id, status=status, error=error)
        if iteration_id == self.last_iteration_id:
            self.last_status, self.last_error = status, error

    def _state_with_heartbeat(self, iteration_id: str, as_of: datetime, status: str) -> dict[str, Mapping[str, Any]]:
        state = dict(self._state()) if self._state is not None else {}
        if self._heartbeat_key is not None:
            state[self._heartbeat_key] = {
                "run_id": self.run_id,
                "iteration_id": iteration_id,
                "as_of": as_of.isoformat(),
                "at": self._clock.now().isoformat(),
                "status": status,
            }
        return state

    async def _account(self) -> tuple[AccountState | None, str | None]:
        """The broker's account, or None and why when the broker cannot be read (the iteration is still recorded)."""
        try:
            return await self._broker.account(), None
        except BrokerError as exc:
            reason = f"audit: account unavailable, positions not updated: {exc}"
            logger.error("{}", reason)
            return None, reason

    async def _record(
        self, chain: list[Event], *, status: str, error: str | None, broker_report: SyncResult | None = None
    ) -> None:
        started = next(e for e in chain if isinstance(e, IterationStarted))
        data = next((e for e in chain if isinstance(e, DataReady)), None)
        signals = next((e for e in chain if isinstance(e, SignalsReady)), None)
        approved = next((e for e in chain if isinstance(e, ApprovedReady)), None)
        executed = next((e for e in chain if isinstance(e, ExecutedReady)), None)
        _ = next((e for e in chain if isinstance(e, ValidatedReady)), None)

        decisions: list[Decision] = [d for e in chain for d in e.decisions]
        batch = data.batch if data is not None else None
        account, unavailable = await self._account()
        scope = _deadline.current()
        notes = list(dict.fromkeys((scope.notes if scope is not None else []) + ([unavailable] if unavailable else [])))
        if notes:  # something the iteration needed was unavailable: degraded, with every reason
            status = "degraded" if status == "ok" else status
            error = "; ".join([e for e in (error,) if e] + [n for n in notes if error is None or n not in error])
        equity = executed.equity if executed is not None else None
        if equity is None and account is not None:
            equity = account.equity_snapshot(started.as_of)
        orders: list[Order] = []
        if executed is not None:
            orders = list(executed.order_updates) + list(executed.orders)
        fills = list(executed.fills) if executed is not None else []
        if broker_report is not None:
            orders += broker_report.orders
            fills += broker_report.fills
        symbols_total = len(batch.bars) + len(batch.rejected) if batch is not None else 0
        signal_counts = Counter(s.action.value for s in signals.signals.values()) if signals is not None else Counter()
        denial_rules = Counter(d.rule for d in approved.denials) if approved is not None else Counter()
        facts: dict[str, Any] = {
            "iteration_id": started.iteration_id,
            "as_of": started.as_of.isoformat(),
            "status": status,
            "error": error,
            "symbols_total": symbols_total,
            # clean symbols: those flagged (managed on their last good bar, no new entry) are not counted
            "symbols_ok": len(batch.bars) - len(batch.entry_blocked) if batch is not None else 0,
            "data_quality_pct": round(100 * batch.data_quality, 1) if batch is not None else 0.0,
            "rejected": dict(batch.rejected) if batch is not None else {},
            "flagged": {s: batch.exclusions.get(s, "data") for s in batch.entry_blocked} if batch is not None else {},
            "signals": {a: signal_counts.get(a, 0) for a in ("BUY", "SELL", "HOLD")},
            "approvals": len(approved.approvals) if approved is not None else 0,
            "denials": len(approved.denials) if approved is not None else 0,
            "denials_by_rule": dict(denial_rules),
            "orders_submitted": len(executed.orders) if executed is not None else 0,
            "fills": len(fills),
            "equity": format(equity.equity, ",.2f") if equity is not None else None,
            "cash": format(equity.cash, ",.2f") if equity is not None else None,
            "positions": equity.positions if equity is not None else None,
        }
        facts.update(
            iteration_content(
                as_of=started.as_of,
                symbols=batch.bars if batch is not None else (),
                orders=executed.orders if executed is not None else (),
                fills=fills,
                account=account,
                equity=equity,
                previous_equity=self.recent_equity[-1] if self.recent_equity else None,
                state=self._state() if self._state is not None else None,
            )
        )
        text = summarize(facts)
        kind = "template"
        llm_calls = list(signals.llm_calls) if signals is not None else []
        if self._narrator is not None:
            narrative = await self._narrator.narrate(facts)
            kind, text = narrative.kind, narrative.text
            facts["narrative"] = {
                "kind": narrative.kind,
                "reason": narrative.reason,
                "rejected_text": narrative.rejected_text,
            }
            llm_calls += narrative.llm_calls()
        record = IterationRecord(
            run_id=self.run_id,
            iteration_id=started.iteration_id,
            seq=started.seq,
            as_of=started.as_of,
            recorded_at=self._clock.now(),
            status=status,
            error=error,
            symbols_total=symbols_total,
            symbols_ok=facts["symbols_ok"],
            data_quality=batch.data_quality if batch is not None else 0.0,
            decisions=decisions,
            orders=orders,
            fills=fills,
            positions=dict(account.positions) if account is not None else None,
            equity=equity,
            report_kind=kind,
            report_text=text,
            report_facts=facts,
            signals=sum(v for k, v in signal_counts.items() if k != "HOLD"),
            approvals=facts["approvals"],
            denials=facts["denials"],
            orders_submitted=facts["orders_submitted"],
            llm_calls=tuple(llm_calls),
            shadow=tuple(signals.shadow) if signals is not None else (),
            breaker_events=tuple(b for e in chain for b in e.breaker_events),
            state=self._state_with_heartbeat(started.iteration_id, started.as_of, status),
            position_levels=levels(PositionManager.plans(account)) if account is not None else {},
        )
        if self._batch_size == 1 or status != "ok":
            self._pending.append(record)
            self.flush()
        else:
            self._pending.append(record)
            if len(self._pending) >= self._batch_size:
                self.flush()
        if equity is not None:
            self.recent_equity.append(float(equity.equity))
        self.last_summary = text
        self.last_iteration_id, self.last_status, self.last_error = started.iteration_id, status, error
        logger.debug("audit: {}", text)

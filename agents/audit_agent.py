"""Audit agent: records the iteration — every decision, order, fill, position and the equity — in one transaction,
with a narrative built from the same facts.

The agent does the I/O (the broker's account, the narrator, the state snapshot, the database); the record itself is
built by the pure functions of :mod:`core.analytics.audit_record`."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from collections.abc import Callable, Mapping, Sequence

from loguru import logger

from core.analytics.audit_record import (
    heartbeat,
    iteration_equity,
    iteration_facts,
    iteration_record,
    narrative_facts,
    orders_and_fills,
    stages_of,
    with_notes,
)
from core.analytics.narrative import Narrator, iteration_content, summarize
from core.brokers.base import AccountState, Broker, BrokerError, SyncResult
from core.kernel.bus import HandlerFailure, PublishReport
from core.kernel.clock import Clock
from core.kernel.events import Event, ExecutedReady
from core.persistence.repository import IterationBatch, IterationRecord, Repository
from core.vocabulary import AgentName
from utils import deadline as _deadline
from utils.failpoints import failpoint


class AuditAgent:
    name = AgentName.AUDIT

    def __init__(
        self,
        repository: Repository,
        broker: Broker,
        clock: Clock,
        run_id: str,
        *,
        state: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None,
        heartbeat_key: str | None = None,
        narrator: Narrator | None = None,
        batch_size: int = 1,
        on_record: Callable[[IterationRecord], None] | None = None,
    ) -> None:
        """``state``: snapshots (key -> JSON object) persisted with every iteration, e.g. breaker states.
        ``heartbeat_key``: where the daemon's heartbeat is written with every iteration (``main.py health`` reads it).
        ``on_record``: called with every iteration record once it is written (or buffered, with ``batch_size`` > 1),
        e.g. the runtime's read model."""
        self._state = state
        self._on_record = on_record
        self._previous_equity: float | None = None  # the last recorded equity: the narrative's day-over-day change
        self._heartbeat_key = heartbeat_key
        self._narrator = narrator
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._batch_size = batch_size  # >1 only for backtests: several iterations per transaction
        self._pending = IterationBatch()  # rows ready to write: no record objects kept until the flush
        self._repository = repository
        self._broker = broker
        self._clock = clock
        self.run_id = run_id
        self.last_summary: str | None = None
        # what the latest _record wrote (the orchestrator reports the same status)
        self.last_iteration_id: str | None = None
        self.last_status: str | None = None
        self.last_error: str | None = None

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
            batch, self._pending = self._pending, IterationBatch()
            self._repository.write_iterations(batch)
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
            state[self._heartbeat_key] = heartbeat(self.run_id, iteration_id, as_of, self._clock.now(), status)
        return state

    async def _account(self) -> tuple[AccountState | None, str | None]:
        """The broker's account, or None and why when the broker cannot be read (the iteration is still recorded)."""
        try:
            return await self._broker.account(), None
        except BrokerError as exc:
            reason = f"audit: account unavailable, positions not updated: {exc}"
            logger.error("{}", reason)
            return None, reason

    @staticmethod
    def _notes(unavailable: str | None) -> list[str]:
        """What the iteration could not have: the deadline scope's notes, then why the account could not be read."""
        scope = _deadline.current()
        return list(dict.fromkeys((scope.notes if scope is not None else []) + ([unavailable] if unavailable else [])))

    async def _narrate(self, facts: dict[str, Any]) -> tuple[str, str, dict[str, Any], list[dict[str, Any]]]:
        """The report's kind and text, the facts as recorded, and the narrator's LLM call (if it made one)."""
        if self._narrator is None:
            return "template", summarize(facts), facts, []
        narrative = await self._narrator.narrate(facts)
        return narrative.kind, narrative.text, narrative_facts(facts, narrative), narrative.llm_calls()

    def _keep(self, record: IterationRecord) -> None:
        """Buffer ``record``; write the buffer when it is full, and at once for a single-iteration batch or an
        iteration that is not ``ok``."""
        self._pending.add(self._repository.prepare_iteration(record))
        if self._batch_size == 1 or record.status != "ok" or len(self._pending) >= self._batch_size:
            self.flush()

    async def _record(
        self, chain: list[Event], *, status: str, error: str | None, broker_report: SyncResult | None = None
    ) -> None:
        stages = stages_of(chain)
        account, unavailable = await self._account()
        # something the iteration needed was unavailable: degraded, with every reason
        status, error = with_notes(status, error, self._notes(unavailable))
        equity = iteration_equity(stages.executed, account, stages.started.as_of)
        orders, fills = orders_and_fills(stages.executed, broker_report)
        facts = iteration_facts(stages, status=status, error=error, fills=len(fills), equity=equity)
        facts.update(
            iteration_content(
                as_of=stages.started.as_of,
                symbols=stages.batch.bars if stages.batch is not None else (),
                orders=stages.executed.orders if stages.executed is not None else (),
                fills=fills,
                account=account,
                equity=equity,
                previous_equity=self._previous_equity,
                state=self._state() if self._state is not None else None,
            )
        )
        kind, text, facts, narrator_calls = await self._narrate(facts)
        recorded_at = self._clock.now()
        record = iteration_record(
            stages,
            run_id=self.run_id,
            recorded_at=recorded_at,
            status=status,
            error=error,
            account=account,
            equity=equity,
            orders=orders,
            fills=fills,
            facts=facts,
            report_kind=kind,
            report_text=text,
            llm_calls=narrator_calls,
            state=self._state_with_heartbeat(stages.started.iteration_id, stages.started.as_of, status),
        )
        self._keep(record)
        if equity is not None:
            self._previous_equity = float(equity.equity)
        if self._on_record is not None:
            self._on_record(record)
        self.last_summary = text
        self.last_iteration_id, self.last_status, self.last_error = stages.started.iteration_id, status, error
        logger.debug("audit: {}", text)

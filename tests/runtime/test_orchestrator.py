"""The orchestrator as the unit under test: the real EventBus with small hand-written stage handlers, and stand-ins
for what it reports through (:class:`AuditPort`: an in-memory ledger keeping the rows the Audit agent would write;
:class:`ExecutionPort`: hands over a broker report). What is asserted is the documented contract: the
``IterationOutcome``, which of ``record_incomplete`` / ``mark_failed`` / ``discard`` it used, and with what; that a
ledger write failure stops the run (:class:`PersistenceFailure`) and that the lock guard runs before every iteration.
(tests/core/test_orchestrator.py drives the same contract with the real agents and a SQLite ledger.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.brokers.base import SyncResult
from core.errors import LedgerWriteFailed, LockConflict, TemporaryError
from core.kernel.bus import EventBus, HandlerFailure, PublishReport
from core.kernel.clock import SimulatedClock
from core.kernel.events import (
    ApprovedReady,
    DataReady,
    Event,
    ExecutedReady,
    IterationStarted,
    SignalsReady,
    ValidatedReady,
)
from core.runtime.orchestrator import (
    IterationOutcome,
    Orchestrator,
    PersistenceFailure,
    backstop_grace,
    run_live,
    run_replay,
)
from utils.deadline import note_degraded

RUN_ID = "unit"
AS_OF = datetime(2021, 3, 10, 21, tzinfo=UTC)
SESSIONS = [AS_OF + timedelta(days=n) for n in range(3)]


@dataclass
class Ledger:
    """Stands in for the Audit agent: records the chain it is given (``on_executed``) or what an incomplete
    iteration did (``record_incomplete``), and flags a recorded row (``mark_failed``)."""

    rows: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    incomplete: list[tuple[str, list[str], str, SyncResult | None]] = field(default_factory=list)
    marked: list[tuple[str, str, str]] = field(default_factory=list)
    fail_writes: BaseException | None = None
    last_iteration_id: str | None = None
    last_status: str | None = None
    last_error: str | None = None
    last_summary: str | None = None

    def _record(self, iteration_id: str, status: str, error: str | None, stages: int) -> None:
        if self.fail_writes is not None:
            raise self.fail_writes
        self.rows[iteration_id] = (status, error)
        self.last_iteration_id, self.last_status, self.last_error = iteration_id, status, error
        self.last_summary = f"{iteration_id}: {stages} events"

    def on_executed(self, event: ExecutedReady) -> None:
        chain = event.chain()
        reasons = [reason for e in chain for reason in e.degraded]
        self._record(event.iteration_id, "degraded" if reasons else "ok", "; ".join(reasons) or None, len(chain))

    async def record_incomplete(
        self,
        report: PublishReport,
        failures: Sequence[HandlerFailure],
        *,
        status: str,
        broker_report: SyncResult | None,
    ) -> None:
        iteration_id = report.events[0].iteration_id
        error = "; ".join(f"{f.handler} on {f.event}: {f.error}" for f in failures)
        self.incomplete.append((iteration_id, [type(e).__name__ for e in report.events], status, broker_report))
        self._record(iteration_id, status, error, len(report.events))

    def mark_failed(self, iteration_id: str, error: str, *, status: str) -> None:
        if self.fail_writes is not None:
            raise self.fail_writes
        self.marked.append((iteration_id, status, error))
        self.rows[iteration_id] = (status, error)
        if iteration_id == self.last_iteration_id:
            self.last_status, self.last_error = status, error


@dataclass
class Execution:
    """Stands in for the Execution agent's ``discard``: the broker report of an iteration that failed early."""

    discarded: list[str] = field(default_factory=list)

    def discard(self, iteration_id: str) -> SyncResult | None:
        self.discarded.append(iteration_id)
        return SyncResult(notes=(f"reported during {iteration_id}",))


Stage = Callable[[Any], Any]


def _next(kind: type[Event]) -> Stage:
    return lambda event: kind(iteration_id=event.iteration_id, as_of=event.as_of, previous=event)


@dataclass
class Pipeline:
    bus: EventBus
    clock: SimulatedClock
    ledger: Ledger
    execution: Execution
    seen: list[tuple[str, str]] = field(default_factory=list)  # (iteration id, event type) as the handlers saw them
    # the quant stage, replaceable so a test can make it fail, degrade or hang
    quant: Stage = field(default_factory=lambda: _next(ValidatedReady))

    def orchestrator(self, **kwargs: Any) -> Orchestrator:
        return Orchestrator(
            bus=self.bus, clock=self.clock, audit=self.ledger, execution=self.execution, run_id=RUN_ID, **kwargs
        )

    def types_seen(self, iteration_id: str) -> list[str]:
        return [kind for it, kind in self.seen if it == iteration_id]


@pytest.fixture
def pipeline() -> Pipeline:
    bus = EventBus("async")
    p = Pipeline(bus, SimulatedClock(AS_OF), Ledger(), Execution())

    def watch(event: Event) -> None:
        p.seen.append((event.iteration_id, type(event).__name__))

    for kind in (IterationStarted, DataReady, SignalsReady, ValidatedReady, ApprovedReady, ExecutedReady):
        bus.subscribe(kind, watch, f"watch.{kind.__name__}")
    bus.subscribe(IterationStarted, _next(DataReady), "data.on_iteration")
    bus.subscribe(DataReady, _next(SignalsReady), "strategy.on_data")
    bus.subscribe(SignalsReady, lambda event: p.quant(event), "quant.on_signals")
    bus.subscribe(ValidatedReady, _next(ApprovedReady), "risk.on_validated")
    bus.subscribe(ApprovedReady, _next(ExecutedReady), "execution.on_approved")
    bus.subscribe(ExecutedReady, p.ledger.on_executed, "audit.on_executed")
    return p


def _fail_first(exc: BaseException, then: Stage) -> Stage:
    calls: list[str] = []

    def stage(event: Event) -> Any:
        calls.append(event.iteration_id)
        if len(calls) == 1:
            raise exc
        return then(event)

    return stage


async def _replay(
    pipeline: Pipeline, orchestrator: Orchestrator, sessions: Sequence[datetime] = SESSIONS
) -> list[IterationOutcome]:
    return await run_replay(orchestrator, pipeline.clock.advance_to, sessions, stop=asyncio.Event())


async def test_run_iteration_when_every_stage_completes_then_ok_with_the_audit_summary_and_nothing_else_recorded(
    pipeline: Pipeline,
) -> None:
    outcome = await pipeline.orchestrator().run_iteration()

    assert outcome.iteration_id == f"{RUN_ID}-000001"
    assert (outcome.seq, outcome.as_of, outcome.status, outcome.error) == (1, AS_OF, "ok", None)
    assert outcome.summary == f"{RUN_ID}-000001: 6 events"
    assert pipeline.ledger.rows == {outcome.iteration_id: ("ok", None)}
    assert pipeline.types_seen(outcome.iteration_id)[-1] == "ExecutedReady"
    assert (pipeline.ledger.incomplete, pipeline.ledger.marked, pipeline.execution.discarded) == ([], [], [])


async def test_run_iteration_when_a_stage_raises_then_recorded_failed_with_the_broker_report_and_the_next_runs_ok(
    pipeline: Pipeline,
) -> None:
    pipeline.quant = _fail_first(RuntimeError("quant model exploded"), _next(ValidatedReady))

    first, second = await _replay(pipeline, pipeline.orchestrator(), SESSIONS[:2])

    error = "quant.on_signals on SignalsReady: RuntimeError: quant model exploded"
    assert (first.status, first.error) == ("failed", error)
    assert "ValidatedReady" not in pipeline.types_seen(first.iteration_id)  # the chain stopped at the failing stage
    # the pipeline stopped before ExecutedReady: what the broker reported is handed over and recorded with it
    assert pipeline.execution.discarded == [first.iteration_id]
    assert pipeline.ledger.incomplete == [
        (
            first.iteration_id,
            ["IterationStarted", "DataReady", "SignalsReady"],
            "failed",
            SyncResult(notes=(f"reported during {first.iteration_id}",)),
        )
    ]
    assert (second.seq, second.as_of, second.status, second.error) == (2, SESSIONS[1], "ok", None)
    assert pipeline.ledger.rows == {first.iteration_id: ("failed", error), second.iteration_id: ("ok", None)}


async def test_run_iteration_when_a_handler_beside_the_recorded_chain_raises_then_the_recorded_row_is_marked_failed(
    pipeline: Pipeline,
) -> None:
    def report_writer(event: ExecutedReady) -> None:
        raise ValueError("report writer broke")

    pipeline.bus.subscribe(ExecutedReady, report_writer, "report.on_executed")

    outcome = await pipeline.orchestrator().run_iteration()

    error = "report.on_executed on ExecutedReady: ValueError: report writer broke"
    assert (outcome.status, outcome.error) == ("failed", error)
    assert pipeline.ledger.marked == [(outcome.iteration_id, "failed", error)]
    assert pipeline.ledger.incomplete == [] and pipeline.execution.discarded == []  # executed: nothing to hand over
    assert pipeline.ledger.rows == {outcome.iteration_id: ("failed", error)}


async def test_run_iteration_when_a_stage_notes_a_degraded_reason_then_the_recorded_degraded_status_is_the_outcome(
    pipeline: Pipeline,
) -> None:
    pipeline.quant = lambda event: ValidatedReady(
        iteration_id=event.iteration_id, as_of=event.as_of, previous=event, degraded=("quant: LLM unreachable",)
    )

    outcome = await pipeline.orchestrator().run_iteration()

    assert (outcome.status, outcome.error) == ("degraded", "quant: LLM unreachable")
    assert pipeline.ledger.rows == {outcome.iteration_id: ("degraded", "quant: LLM unreachable")}
    assert pipeline.ledger.marked == [] and pipeline.ledger.incomplete == []


async def test_run_iteration_when_a_stage_raises_a_temporary_error_then_degraded_not_failed(
    pipeline: Pipeline,
) -> None:
    pipeline.quant = _fail_first(TemporaryError("LLM provider: HTTP 529 after 3 attempts"), _next(ValidatedReady))

    outcome = await pipeline.orchestrator().run_iteration()

    error = "quant.on_signals on SignalsReady: TemporaryError: LLM provider: HTTP 529 after 3 attempts"
    assert (outcome.status, outcome.error) == ("degraded", error)
    assert [(it, status) for it, _, status, _ in pipeline.ledger.incomplete] == [(outcome.iteration_id, "degraded")]
    assert pipeline.ledger.rows == {outcome.iteration_id: ("degraded", error)}


async def test_run_iteration_when_a_handler_notes_degraded_after_the_audit_recorded_then_the_row_is_marked_degraded(
    pipeline: Pipeline,
) -> None:
    def late(event: ExecutedReady) -> None:
        note_degraded("report: news feed unreachable")

    pipeline.bus.subscribe(ExecutedReady, late, "report.on_executed")

    outcome = await pipeline.orchestrator(deadline_s=3600).run_iteration()

    assert (outcome.status, outcome.error) == ("degraded", "report: news feed unreachable")
    assert pipeline.ledger.marked == [(outcome.iteration_id, "degraded", "report: news feed unreachable")]
    assert pipeline.ledger.rows == {outcome.iteration_id: ("degraded", "report: news feed unreachable")}


async def test_run_iteration_when_a_stage_runs_past_the_deadline_then_cancelled_recorded_degraded_and_the_next_runs(
    pipeline: Pipeline,
) -> None:
    cancelled: list[str] = []

    async def sleep_once(event: SignalsReady) -> ValidatedReady:
        if not cancelled:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.append(event.iteration_id)
                raise
        return _next(ValidatedReady)(event)

    pipeline.quant = sleep_once
    deadline_s = 0.01

    first, second = await asyncio.wait_for(
        _replay(pipeline, pipeline.orchestrator(deadline_s=deadline_s), SESSIONS[:2]), 60
    )

    limit = deadline_s + backstop_grace(deadline_s)
    error = f"orchestrator on SignalsReady: iteration deadline: handlers still running {limit:g}s after the start were cancelled"
    assert cancelled == [first.iteration_id]  # the sleeping handler was cancelled, not left running
    assert (first.status, first.error) == ("degraded", error)
    assert "ValidatedReady" not in pipeline.types_seen(first.iteration_id)
    assert pipeline.execution.discarded == [first.iteration_id]
    assert [(it, events, status) for it, events, status, _ in pipeline.ledger.incomplete] == [
        (first.iteration_id, ["IterationStarted", "DataReady", "SignalsReady"], "degraded")
    ]
    assert (second.status, second.error) == ("ok", None)
    assert pipeline.ledger.rows == {first.iteration_id: ("degraded", error), second.iteration_id: ("ok", None)}


async def test_run_replay_when_an_incomplete_iteration_cannot_be_recorded_then_persistence_failure_stops_the_run(
    pipeline: Pipeline,
) -> None:
    pipeline.quant = _fail_first(RuntimeError("quant model exploded"), _next(ValidatedReady))
    pipeline.ledger.fail_writes = OSError("disk full")

    with pytest.raises(PersistenceFailure, match=rf"iteration {RUN_ID}-000001 could not be recorded: disk full") as e:
        await _replay(pipeline, pipeline.orchestrator())

    assert isinstance(e.value, LedgerWriteFailed) and isinstance(e.value.__cause__, OSError)
    assert {it for it, _ in pipeline.seen} == {f"{RUN_ID}-000001"}  # no further session ran


async def test_run_iteration_when_a_recorded_row_cannot_be_marked_failed_then_persistence_failure(
    pipeline: Pipeline,
) -> None:
    def report_writer(event: ExecutedReady) -> None:
        pipeline.ledger.fail_writes = OSError("database is locked")  # the Audit agent recorded the row just before
        raise ValueError("report writer broke")

    pipeline.bus.subscribe(ExecutedReady, report_writer, "report.on_executed")

    with pytest.raises(PersistenceFailure, match=rf"iteration {RUN_ID}-000001 could not be recorded") as e:
        await pipeline.orchestrator().run_iteration()

    assert isinstance(e.value.__cause__, OSError) and pipeline.ledger.marked == []


async def test_run_live_when_the_lock_guard_is_called_before_every_iteration_and_raises_then_the_run_stops(
    pipeline: Pipeline,
) -> None:
    calls: list[int] = []

    def guard() -> None:
        calls.append(len(pipeline.seen))
        if len(calls) == 3:
            raise LockConflict("another process took the daemon lock")

    orchestrator = pipeline.orchestrator(guard=guard)

    with pytest.raises(LockConflict, match="another process took the daemon lock"):
        await run_live(orchestrator, next_run=lambda now: now + timedelta(days=1), stop=asyncio.Event())

    assert calls == [0, 6, 12]  # before each iteration's first event: two iterations of six events each ran
    assert orchestrator.seq == 2  # the third never started
    assert set(pipeline.ledger.rows) == {f"{RUN_ID}-000001", f"{RUN_ID}-000002"}
    assert all(status == ("ok", None) for status in pipeline.ledger.rows.values())

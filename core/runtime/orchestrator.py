"""The orchestrator: runs iterations through the bus, and the loops that schedule them (replay and live)."""

from __future__ import annotations

import asyncio
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from collections.abc import Callable, Sequence

from loguru import logger

from core.kernel.bus import EventBus, HandlerFailure, PublishReport
from core.kernel.clock import Clock
from core.errors import LedgerWriteFailed
from core.kernel.events import ExecutedReady, IterationStarted
from core.runtime.ports import AuditPort, ExecutionPort
from utils.deadline import Deadline, deadline_scope


def backstop_grace(deadline_s: float) -> float:
    """How long after the iteration deadline the iteration's handlers are cancelled: they stop their Alpaca calls at
    the deadline themselves (utils.http) and get this long to record what they did; the cancellation is for anything
    else that would hold the iteration."""
    return max(1.0, min(60.0, deadline_s / 10))


class PersistenceFailure(LedgerWriteFailed, RuntimeError):
    """An iteration could not be recorded: the daemon stops rather than trade without a ledger."""


@dataclass(frozen=True, slots=True)
class IterationOutcome:
    iteration_id: str
    seq: int
    as_of: datetime
    status: str
    error: str | None
    summary: str | None


class Orchestrator:
    def __init__(
        self,
        *,
        bus: EventBus,
        clock: Clock,
        audit: AuditPort,
        execution: ExecutionPort,
        run_id: str,
        deadline_s: float | None = None,
        guard: Callable[[], None] | None = None,
    ) -> None:
        """``audit`` records the iterations (the Audit agent); ``execution`` hands over what the broker reported in an
        iteration that failed before its execution stage completed (the Execution agent).

        ``deadline_s``: each iteration runs in a :func:`utils.deadline.deadline_scope` of this many seconds: its
        Alpaca requests, retries and waits stop there (:mod:`utils.http`), and the stage that needed them leaves the
        iteration ``degraded``. Handlers still running :func:`backstop_grace` seconds later are cancelled and the
        iteration is recorded ``degraded`` with what it had done.

        ``guard``: called before every iteration, before the Data stage; an exception it raises (the daemon's lock
        was lost) propagates and no iteration starts."""
        self.bus = bus
        self.deadline_s = deadline_s
        self._guard = guard
        self.clock = clock
        self._audit = audit
        self._execution = execution
        self.run_id = run_id
        self.seq = 0
        self.summary_level = "INFO"

    def iteration_id(self, seq: int) -> str:
        return f"{self.run_id}-{seq:06d}"

    async def run_iteration(self) -> IterationOutcome:
        if self._guard is not None:
            self._guard()
        self.seq += 1
        seq = self.seq
        as_of = self.clock.now()
        iteration_id = self.iteration_id(seq)
        scope = deadline_scope(self.deadline_s) if self.deadline_s is not None else nullcontext()
        with logger.contextualize(iteration=iteration_id), scope as deadline:
            started = IterationStarted(iteration_id=iteration_id, as_of=as_of, seq=seq)
            if self.deadline_s is None:
                report = await self.bus.publish(started)
            else:
                report = PublishReport()
                limit = self.deadline_s + backstop_grace(self.deadline_s)
                try:
                    async with asyncio.timeout(limit):
                        await self.bus.publish(started, report)
                except TimeoutError:
                    report.failures.append(
                        HandlerFailure(
                            handler="orchestrator",
                            event=type(report.last_event or started).__name__,
                            iteration_id=iteration_id,
                            error=f"iteration deadline: handlers still running {limit:g}s after the start were cancelled",
                            traceback="",
                            transient=True,
                        )
                    )
            failures = report.failures
            notes = list(deadline.notes) if isinstance(deadline, Deadline) else []
            if not failures:
                status, error = "ok", None
                if self._audit.last_iteration_id == iteration_id:
                    status, error = self._audit.last_status or status, self._audit.last_error
                late = [n for n in notes if error is None or n not in error]
                if late:  # noted by a handler that ran after the Audit agent recorded the iteration
                    status, error = (
                        "degraded" if status == "ok" else status,
                        "; ".join([e for e in (error,) if e] + late),
                    )
                    self._mark(iteration_id, status, error)
                if status == "ok":
                    logger.log(self.summary_level, "iteration ok: {}", self._audit.last_summary)
                else:
                    logger.warning("iteration {} {}: {}", iteration_id, status, error)
                return IterationOutcome(iteration_id, seq, as_of, status, error, self._audit.last_summary)
            # what the broker reported and accepted before the failure (fills, order states, submitted orders)
            # is recorded with the failed iteration: the broker will not report it again
            executed = report.find(ExecutedReady)
            broker_report = self._execution.discard(iteration_id) if executed is None else None
            # a stage that met an unreachable service (after its retries, within the deadline): degraded, not failed
            status = "degraded" if all(f.transient for f in failures) else "failed"
            error = "; ".join([f"{f.handler} on {f.event}: {f.error}" for f in failures] + notes)
            audit_failed = any(f.handler.startswith("audit") for f in failures)
            try:
                recorded = self._audit.last_iteration_id == iteration_id  # not when the deadline cancelled the audit
                if executed is not None and not audit_failed and recorded:
                    self._mark(iteration_id, status, error)
                else:
                    await self._audit.record_incomplete(report, failures, status=status, broker_report=broker_report)
                    status = self._audit.last_status or status
            except Exception as exc:
                raise PersistenceFailure(f"iteration {iteration_id} could not be recorded: {exc}") from exc
            logger.error("iteration {} {}: {}", iteration_id, status, error)
            return IterationOutcome(iteration_id, seq, as_of, status, error, self._audit.last_summary)

    def _mark(self, iteration_id: str, status: str, error: str) -> None:
        self._audit.mark_failed(iteration_id, error, status=status)


async def run_replay(
    orchestrator: Orchestrator,
    clock_advance: Callable[[datetime], None],
    sessions: Sequence[datetime],
    *,
    stop: asyncio.Event,
    on_progress: Callable[[int, int, IterationOutcome], None] | None = None,
) -> list[IterationOutcome]:
    """Run one iteration per session close in ``sessions``; a stop request finishes the current one and returns."""
    outcomes: list[IterationOutcome] = []
    for n, as_of in enumerate(sessions, start=1):
        # Let the event loop run between iterations: a replay whose handlers never wait on anything (the simulated
        # broker, file data; eager tasks on the bus) would otherwise hold the loop to the end, and a SIGTERM's handler,
        # which sets ``stop``, would only run after the last session.
        await asyncio.sleep(0)
        if stop.is_set():
            logger.info("stop requested: replay ends after {} of {} sessions", n - 1, len(sessions))
            break
        clock_advance(as_of)
        outcome = await orchestrator.run_iteration()
        outcomes.append(outcome)
        if on_progress is not None:
            on_progress(n, len(sessions), outcome)
    return outcomes


class LoopControl(Protocol):
    """The operator's commands to a running daemon (``core.runtime.commands.DaemonControl``)."""

    async def poll(self) -> bool:
        """Pick new commands while the daemon sleeps; True when one wants an iteration at once."""
        ...

    async def before_iteration(self) -> None: ...

    async def after_iteration(self, outcome: IterationOutcome) -> None: ...


async def _sleep(clock: Clock, wake: datetime, stop: asyncio.Event, control: LoopControl | None, poll_s: float) -> bool:
    """Sleep until ``wake``; with ``control``, wake every ``poll_s`` seconds to pick commands, and return early when
    one wants an iteration at once. False when ``stop`` was set."""
    if control is None:
        return await clock.sleep_until(wake, stop)
    while True:
        step = min(wake, clock.now() + timedelta(seconds=poll_s))
        if not await clock.sleep_until(step, stop):
            return False
        if await control.poll():
            logger.info("a command asks for an iteration now")
            return True
        if clock.now() >= wake:
            return True


async def run_live(
    orchestrator: Orchestrator,
    *,
    next_run: Callable[[datetime], datetime],
    stop: asyncio.Event,
    iterations: int | None = None,
    run_first_immediately: bool = True,
    control: LoopControl | None = None,
    poll_s: float = 5.0,
) -> list[IterationOutcome]:
    """The daemon loop: iterate, then sleep (no busy loop) until ``next_run(now)``; stop finishes cleanly.

    ``control``: the operator's commands, picked before every iteration and every ``poll_s`` seconds of sleep."""
    clock = orchestrator.clock
    outcomes: list[IterationOutcome] = []
    if not run_first_immediately:
        wake = next_run(clock.now())
        logger.info("next iteration at {}", wake.isoformat())
        if not await _sleep(clock, wake, stop, control, poll_s):
            return outcomes
    while not stop.is_set():
        if control is not None:
            await control.before_iteration()
        outcome = await orchestrator.run_iteration()
        outcomes.append(outcome)
        if control is not None:
            await control.after_iteration(outcome)
        if iterations is not None and len(outcomes) >= iterations:
            break
        wake = next_run(clock.now())
        logger.info("sleeping until {}", wake.isoformat())
        if not await _sleep(clock, wake, stop, control, poll_s):
            break
    return outcomes

"""The orchestrator: runs iterations through the bus, and the loops that schedule them (replay and live)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Sequence

from loguru import logger

from agents.audit_agent import AuditAgent
from agents.execution_agent import ExecutionAgent
from core.bus import EventBus
from core.clock import Clock
from core.events import ExecutedReady, IterationStarted


class PersistenceFailure(RuntimeError):
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
    def __init__(self, *, bus: EventBus, clock: Clock, audit: AuditAgent, execution: ExecutionAgent, run_id: str) -> None:
        self.bus = bus
        self.clock = clock
        self._audit = audit
        self._execution = execution
        self.run_id = run_id
        self.seq = 0
        self.summary_level = "INFO"

    def iteration_id(self, seq: int) -> str:
        return f"{self.run_id}-{seq:06d}"

    async def run_iteration(self) -> IterationOutcome:
        self.seq += 1
        seq = self.seq
        as_of = self.clock.now()
        iteration_id = self.iteration_id(seq)
        with logger.contextualize(iteration=iteration_id):
            report = await self.bus.publish(IterationStarted(iteration_id=iteration_id, as_of=as_of, seq=seq))
            failures = report.failures
            if not failures:
                logger.log(self.summary_level, "iteration ok: {}", self._audit.last_summary)
                return IterationOutcome(iteration_id, seq, as_of, "ok", None, self._audit.last_summary)
            # what the broker reported and accepted before the failure (fills, order states, submitted orders)
            # is recorded with the failed iteration: the broker will not report it again
            executed = report.find(ExecutedReady)
            broker_report = self._execution.discard(iteration_id) if executed is None else None
            error = "; ".join(f"{f.handler} on {f.event}: {f.error}" for f in failures)
            audit_failed = any(f.handler.startswith("audit") for f in failures)
            try:
                if executed is not None and not audit_failed:
                    self._audit_mark(iteration_id, error)
                else:
                    await self._audit.record_incomplete(report, failures, broker_report=broker_report)
            except Exception as exc:
                raise PersistenceFailure(f"iteration {iteration_id} could not be recorded: {exc}") from exc
            logger.error("iteration {} degraded: {}", iteration_id, error)
            return IterationOutcome(iteration_id, seq, as_of, "failed", error, self._audit.last_summary)

    def _audit_mark(self, iteration_id: str, error: str) -> None:
        self._audit.mark_failed(iteration_id, error)


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


async def run_live(
    orchestrator: Orchestrator,
    *,
    next_run: Callable[[datetime], datetime],
    stop: asyncio.Event,
    iterations: int | None = None,
    run_first_immediately: bool = True,
) -> list[IterationOutcome]:
    """The daemon loop: iterate, then sleep (no busy loop) until ``next_run(now)``; stop finishes cleanly."""
    clock = orchestrator.clock
    outcomes: list[IterationOutcome] = []
    if not run_first_immediately:
        wake = next_run(clock.now())
        logger.info("next iteration at {}", wake.isoformat())
        if not await clock.sleep_until(wake, stop):
            return outcomes
    while not stop.is_set():
        outcome = await orchestrator.run_iteration()
        outcomes.append(outcome)
        if iterations is not None and len(outcomes) >= iterations:
            break
        wake = next_run(clock.now())
        logger.info("sleeping until {}", wake.isoformat())
        if not await clock.sleep_until(wake, stop):
            break
    return outcomes



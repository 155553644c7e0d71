"""The orchestrator through ``run_iteration`` with real collaborators: the real EventBus, the real Data (bundled
bars from data/daily), Risk, Execution and Audit agents on the simulated broker and a SQLite ledger. Only the
strategy stage is a small hand-written handler (HOLD for every symbol) so that each test can make one stage fail,
raise a TemporaryError or hang; the outcome and the ledger row are what is asserted."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from agents.audit_agent import AuditAgent
from agents.data_agent import DataAgent
from agents.execution_agent import ExecutionAgent
from agents.risk_agent import RiskAgent
from core.brokers.simulated import SimulatedBroker
from core.kernel.bus import EventBus
from core.kernel.clock import SimulatedClock
from core.data.files import FileProvider
from core.kernel.domain import Action, Signal
from core.errors import LockConflict, TemporaryError
from core.kernel.events import (
    ApprovedReady,
    DataReady,
    Event,
    ExecutedReady,
    IterationStarted,
    SignalsReady,
    ValidatedReady,
)
from core.runtime.orchestrator import Orchestrator
from core.persistence.db import open_database
from core.persistence.models import Iteration
from core.persistence.repository import Repository
from core.risk import RiskLimits
from tests.conftest import BUNDLED_DAILY

RUN_ID = "orchestrator-test"
SYMBOLS = ["IWM", "SPY"]
AS_OF = datetime(2021, 3, 10, 21, tzinfo=UTC)


def _hold_signals(event: DataReady) -> SignalsReady:
    assert event.batch is not None
    signals = {
        s: Signal(s, "breakout", Action.HOLD, 0.0, sb.last_close, event.as_of) for s, sb in event.batch.bars.items()
    }
    return SignalsReady(iteration_id=event.iteration_id, as_of=event.as_of, previous=event, signals=signals)


def _validate(event: SignalsReady) -> ValidatedReady:
    return ValidatedReady(iteration_id=event.iteration_id, as_of=event.as_of, previous=event)


@dataclass
class Wiring:
    engine: Any
    bus: EventBus
    clock: SimulatedClock
    audit: AuditAgent
    execution: ExecutionAgent
    seen: list[str] = field(default_factory=list)  # the event types the handlers were given, in order
    quant: Callable[[SignalsReady], Any] = _validate  # the quant stage of the chain (a test may make it fail)

    def orchestrator(self, **kwargs: Any) -> Orchestrator:
        return Orchestrator(
            bus=self.bus, clock=self.clock, audit=self.audit, execution=self.execution, run_id=RUN_ID, **kwargs
        )

    def rows(self) -> list[tuple[int, str, str | None]]:
        with Session(self.engine) as s:
            return [(r.seq, r.status, r.error) for r in s.scalars(select(Iteration).order_by(Iteration.seq))]


@pytest.fixture
def wiring(tmp_path: Path) -> Any:
    engine = open_database(f"sqlite:///{tmp_path / 'ledger.db'}")
    repository = Repository(engine)
    repository.create_run(
        RUN_ID, kind="replay", broker="simulated", data_provider="files", started_at=AS_OF,
        initial_cash=Decimal(100_000), symbols=SYMBOLS, config={},
    )  # fmt: skip
    clock = SimulatedClock(AS_OF)
    broker = SimulatedBroker(Decimal(100_000), started_at=AS_OF)
    data = DataAgent(FileProvider(BUNDLED_DAILY), SYMBOLS, min_history=20, calendar=None)
    risk = RiskAgent(broker, RiskLimits(), equity_history=lambda: [], clock=clock.now)
    execution = ExecutionAgent(broker, order_prefix=RUN_ID, run_id=RUN_ID)
    audit = AuditAgent(repository, broker, clock, RUN_ID)
    bus = EventBus("async")
    w = Wiring(engine, bus, clock, audit, execution)

    def seen(event: Event) -> None:
        w.seen.append(type(event).__name__)

    for kind in (IterationStarted, DataReady, SignalsReady, ValidatedReady, ApprovedReady, ExecutedReady):
        bus.subscribe(kind, seen, f"watch.{kind.__name__}")
    bus.subscribe(IterationStarted, data.on_iteration, "data.on_iteration")
    bus.subscribe(DataReady, execution.on_data, "execution.on_data")
    bus.subscribe(DataReady, _hold_signals, "strategy.on_data")
    bus.subscribe(SignalsReady, lambda event: w.quant(event), "quant.on_signals")
    bus.subscribe(ValidatedReady, risk.on_validated, "risk.on_validated")
    bus.subscribe(ApprovedReady, execution.on_approved, "execution.on_approved")
    bus.subscribe(ExecutedReady, audit.on_executed, "audit.on_executed")
    bus.subscribe(ExecutedReady, risk.on_executed, "risk.on_executed")
    yield w
    engine.dispose()


def _raises(exc: BaseException) -> Callable[[Event], None]:
    def handler(event: Event) -> None:
        raise exc

    return handler


async def test_run_iteration_when_every_handler_succeeds_then_ok_and_the_iteration_is_recorded_ok(
    wiring: Wiring,
) -> None:
    outcome = await wiring.orchestrator().run_iteration()

    assert (outcome.status, outcome.error, outcome.seq) == ("ok", None, 1)
    assert outcome.iteration_id == f"{RUN_ID}-000001"
    assert wiring.rows() == [(1, "ok", None)]
    assert wiring.seen[-1] == "ExecutedReady"  # the whole pipeline ran
    assert outcome.summary is not None and "2/2 symbols with usable data" in outcome.summary


async def test_run_iteration_when_a_stage_handler_raises_then_failed_and_the_iteration_is_still_recorded(
    wiring: Wiring,
) -> None:
    wiring.quant = _raises(RuntimeError("quant model exploded"))

    outcome = await wiring.orchestrator().run_iteration()

    assert outcome.status == "failed"
    assert outcome.error == "quant.on_signals on SignalsReady: RuntimeError: quant model exploded"
    assert wiring.rows() == [(1, "failed", outcome.error)]
    assert "ValidatedReady" not in wiring.seen  # the chain stopped at the failing stage


async def test_run_iteration_when_a_handler_beside_the_recorded_chain_raises_then_the_recorded_iteration_is_marked_failed(
    wiring: Wiring,
) -> None:
    wiring.bus.subscribe(ExecutedReady, _raises(ValueError("report writer broke")), "report.on_executed")

    outcome = await wiring.orchestrator().run_iteration()

    assert outcome.status == "failed"
    assert wiring.rows() == [(1, "failed", "report.on_executed on ExecutedReady: ValueError: report writer broke")]


async def test_run_iteration_when_a_handler_beside_the_chain_raises_a_temporary_error_then_degraded_and_recorded_degraded(
    wiring: Wiring,
) -> None:
    wiring.bus.subscribe(DataReady, _raises(TemporaryError("news service: HTTP 503 after 3 attempts")), "news.on_data")

    outcome = await wiring.orchestrator().run_iteration()

    assert outcome.status == "degraded"
    assert "news.on_data on DataReady: TemporaryError: news service: HTTP 503 after 3 attempts" in (outcome.error or "")
    assert wiring.rows() == [(1, "degraded", outcome.error)]


async def test_run_iteration_when_the_lock_guard_raises_then_no_handler_runs_and_nothing_is_recorded(
    wiring: Wiring,
) -> None:
    def lost_lock() -> None:
        raise LockConflict("another process took the daemon lock")

    orchestrator = wiring.orchestrator(guard=lost_lock)

    with pytest.raises(LockConflict, match="another process took the daemon lock"):
        await orchestrator.run_iteration()

    assert wiring.seen == []
    assert orchestrator.seq == 0
    assert wiring.rows() == []


async def test_run_iteration_when_a_handler_hangs_past_the_deadline_then_it_is_cancelled_recorded_degraded_and_the_next_runs_ok(
    wiring: Wiring,
) -> None:
    calls: list[str] = []

    async def hang_once(event: DataReady) -> None:
        calls.append(event.iteration_id)
        if len(calls) == 1:
            await asyncio.sleep(3600)

    wiring.bus.subscribe(DataReady, hang_once, "slow.on_data")
    orchestrator = wiring.orchestrator(deadline_s=0.01)

    first = await asyncio.wait_for(orchestrator.run_iteration(), timeout=60)
    executed_in_first = "ExecutedReady" in wiring.seen
    wiring.clock.advance_to(datetime(2021, 3, 11, 21, tzinfo=UTC))
    second = await asyncio.wait_for(orchestrator.run_iteration(), timeout=60)

    assert first.status == "degraded"
    assert "iteration deadline" in (first.error or "")
    assert not executed_in_first  # the pipeline was stopped with the hanging stage
    assert second.status == "ok"  # the next iteration runs normally
    assert wiring.rows() == [(1, "degraded", first.error), (2, "ok", None)]


async def test_run_iteration_when_a_stage_of_the_chain_raises_a_temporary_error_then_recorded_degraded_with_the_data_it_had(
    wiring: Wiring,
) -> None:
    wiring.quant = _raises(TemporaryError("LLM provider: HTTP 529 after 3 attempts"))

    outcome = await wiring.orchestrator().run_iteration()

    assert outcome.status == "degraded"
    assert "ValidatedReady" not in wiring.seen
    assert outcome.error == "quant.on_signals on SignalsReady: TemporaryError: LLM provider: HTTP 529 after 3 attempts"
    assert wiring.rows() == [(1, "degraded", outcome.error)]
    with Session(wiring.engine) as s:
        assert s.scalars(select(Iteration.symbols_total)).one() == 2

"""The runtime's read model (core.runtime.readmodel): the equity history the Risk agent reads, seeded from the ledger
and fed by the records the real Audit agent writes, on a real SQLite ledger."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from agents.audit_agent import AuditAgent
from core.brokers.simulated import SimulatedBroker
from core.kernel.clock import SimulatedClock
from core.kernel.domain import EquitySnapshot
from core.kernel.events import ExecutedReady, IterationStarted
from core.persistence.db import open_database
from core.persistence.repository import Repository
from core.kernel.calendar import MarketCalendar
from core.persistence.models import DecisionRow, EquitySnapshotRow, Iteration
from core.runtime.app import build_app, replay_sessions, simulated_clock_for
from core.runtime.orchestrator import run_replay
from core.runtime.readmodel import ReadModel
from core.runtime.profile import DAEMON, PipelineOptions
from strategies.base import Action
from strategies.registry import build_registry
from strategies.selector import FixedSelector
from strategies.trend import VolatilityBreakout
from tests.conftest import make_settings

RUN_ID = "readmodel-run"
OTHER_RUN = "another-run"
START = datetime(2021, 3, 9, 21, tzinfo=UTC)


def _close(day: int) -> datetime:
    return datetime.combine(date(2021, 3, day), time(21), tzinfo=UTC)


def _executed(run_id: str, seq: int, equity: str | None) -> ExecutedReady:
    """An iteration's chain as far as the Execution stage, with its equity snapshot (None: none was taken)."""
    as_of = _close(9 + seq)
    iteration_id = f"{run_id}-{seq:06d}"
    started = IterationStarted(iteration_id=iteration_id, as_of=as_of, seq=seq)
    snapshot = (
        EquitySnapshot(at=as_of, cash=Decimal(equity), market_value=Decimal(0), equity=Decimal(equity), positions=0)
        if equity is not None
        else None
    )
    return ExecutedReady(iteration_id=iteration_id, as_of=as_of, previous=started, equity=snapshot)  # type: ignore[arg-type]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "ledger.db"
    engine = open_database(f"sqlite:///{path}")
    repository = Repository(engine)
    for run_id in (RUN_ID, OTHER_RUN):
        repository.create_run(
            run_id, kind="daemon", broker="simulated", data_provider="files", started_at=START,
            initial_cash=Decimal(100_000), symbols=["SPY"], config={},
        )  # fmt: skip
    engine.dispose()
    yield path


def _audit(repository: Repository, run_id: str, **options: Any) -> AuditAgent:
    clock = SimulatedClock(START)
    return AuditAgent(repository, SimulatedBroker(Decimal(100_000), started_at=START), clock, run_id, **options)


async def test_from_ledger_after_a_restart_then_the_equity_recorded_before_it_is_visible_oldest_first(
    ledger: Path,
) -> None:
    engine = open_database(f"sqlite:///{ledger}")
    audit = _audit(Repository(engine), RUN_ID)
    for seq, equity in enumerate(("100000", "99000.5", "98500.25"), start=1):
        await audit.on_executed(_executed(RUN_ID, seq, equity))
    await _audit(Repository(engine), OTHER_RUN).on_executed(_executed(OTHER_RUN, 1, "5"))
    engine.dispose()  # the process stops

    reopened = open_database(f"sqlite:///{ledger}")
    model = ReadModel.from_ledger(Repository(reopened), RUN_ID)

    assert model.recent_equity() == [100000.0, 99000.5, 98500.25]  # not the other run's
    reopened.dispose()


async def test_from_ledger_keeps_only_the_latest_window(ledger: Path) -> None:
    engine = open_database(f"sqlite:///{ledger}")
    repository = Repository(engine)
    audit = _audit(repository, RUN_ID)
    for seq, equity in enumerate(("100", "101", "102", "103"), start=1):
        await audit.on_executed(_executed(RUN_ID, seq, equity))

    model = ReadModel.from_ledger(repository, RUN_ID, equity_window=2)

    assert model.recent_equity() == [102.0, 103.0]
    engine.dispose()


async def test_observe_when_the_audit_agent_batches_then_each_equity_is_visible_before_the_batch_is_written(
    ledger: Path,
) -> None:
    engine = open_database(f"sqlite:///{ledger}")
    repository = Repository(engine)
    model = ReadModel.from_ledger(repository, RUN_ID)
    audit = _audit(repository, RUN_ID, batch_size=10, on_record=model.observe)

    await audit.on_executed(_executed(RUN_ID, 1, "100000"))
    await audit.on_executed(_executed(RUN_ID, 2, "99500"))

    assert repository.equity_history(RUN_ID) == []  # nothing written yet
    assert model.recent_equity() == [100000.0, 99500.0]
    audit.flush()
    assert [float(e) for _, e in repository.equity_history(RUN_ID)] == model.recent_equity()
    engine.dispose()


async def test_observe_when_an_iteration_has_no_execution_snapshot_then_the_account_equity_recorded_is_taken(
    ledger: Path,
) -> None:
    engine = open_database(f"sqlite:///{ledger}")
    repository = Repository(engine)
    model = ReadModel(RUN_ID)
    audit = _audit(repository, RUN_ID, on_record=model.observe)

    await audit.on_executed(_executed(RUN_ID, 1, None))  # the Audit agent reads the account itself

    assert model.recent_equity() == [100000.0]
    assert model.recent_equity() == [float(e) for _, e in repository.equity_history(RUN_ID)]
    engine.dispose()


async def test_observe_ignores_the_records_of_another_run(ledger: Path) -> None:
    engine = open_database(f"sqlite:///{ledger}")
    model = ReadModel(RUN_ID, equity=[1.0])
    audit = _audit(Repository(engine), OTHER_RUN, on_record=model.observe)

    await audit.on_executed(_executed(OTHER_RUN, 1, "5"))

    assert model.recent_equity() == [1.0]
    engine.dispose()


def test_recent_equity_is_a_copy_the_caller_may_change() -> None:
    model = ReadModel(RUN_ID, equity=[1.0, 2.0])

    model.recent_equity().append(3.0)

    assert model.recent_equity() == [1.0, 2.0]


def test_an_empty_window_is_refused() -> None:
    with pytest.raises(ValueError, match="equity_window"):
        ReadModel(RUN_ID, equity_window=0)


# ------------------------------------------------------------------------------------------------- wired by build_app


class RaisingEveryFewSignals(VolatilityBreakout):
    """The volatility breakout, except that every ``every``-th signal it explains raises (a bug in a strategy)."""

    def __init__(self, every: int) -> None:
        super().__init__()
        self._every = every
        self._calls = 0

    def reason(self, action: Action, indicators: Mapping[str, float]) -> str:
        self._calls += 1
        if self._calls % self._every == 0:
            raise RuntimeError(f"strategy bug on call {self._calls}")
        return super().reason(action, indicators)


def test_build_app_when_iterations_fail_then_the_risk_day_start_is_the_equity_the_previous_iteration_recorded(
    tmp_path: Path,
) -> None:
    """The Risk agent's daily-loss rule starts the day from the previous iteration's recorded equity, also when that
    iteration failed before the Execution stage (its equity comes from the account, read by the Audit agent)."""
    settings = make_settings(
        tmp_path, broker="simulated", data_provider="files", symbols=["AAPL", "AIG", "BAC", "IBM", "IWM", "SPY"]
    )
    registry = {**build_registry(), "volatility_breakout": RaisingEveryFewSignals(every=7)}
    calendar = MarketCalendar()
    sessions = replay_sessions(calendar, date(2008, 9, 1), date(2008, 10, 31))
    clock = simulated_clock_for(sessions)
    app = build_app(
        settings, profile=DAEMON, clock=clock, wall_clock=clock, calendar=calendar, allow_llm=False,
        options=PipelineOptions(registry=registry, selector=FixedSelector(registry, "volatility_breakout")),
    )  # fmt: skip
    try:
        asyncio.run(run_replay(app.orchestrator, clock.advance_to, sessions, stop=asyncio.Event()))
    finally:
        app.close()

    with Session(create_engine(f"sqlite:///{tmp_path / 'trading.db'}")) as s:
        iterations = s.execute(select(Iteration.id, Iteration.status).order_by(Iteration.seq)).all()
        equity = dict(s.execute(select(EquitySnapshotRow.iteration_id, EquitySnapshotRow.equity)).all())
        approvals = s.scalars(select(DecisionRow).where(DecisionRow.agent == "risk", DecisionRow.action == "approved"))
        day_starts = {(d.iteration_id, d.inputs["checks"]["daily_loss"]["equity_day_start"]) for d in approvals}
    previous = {later.id: earlier for earlier, later in itertools.pairwise(iterations)}
    assert day_starts and all(float(equity[previous[i].id]) == start for i, start in day_starts)
    # the premise: some of those days start right after a failed iteration whose equity differs from the one before
    assert any(
        previous[i].status == "failed" and equity[previous[i].id] != equity[previous[previous[i].id].id]
        for i, _ in day_starts
    )

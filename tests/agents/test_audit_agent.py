"""The Audit agent through its public interface (``on_executed``, ``record_incomplete``) with real collaborators: a
real Repository on SQLite, the simulated broker, and the events the real Risk and Execution agents produce on real
bundled bars. What it recorded is read back from the database tables."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.orm import Session

from agents.audit_agent import AuditAgent
from agents.execution_agent import ExecutionAgent
from agents.risk_agent import RiskAgent
from core.brokers.base import BrokerError
from core.brokers.simulated import SimulatedBroker
from core.kernel.bus import HandlerFailure, PublishReport
from core.kernel.clock import SimulatedClock
from core.data.files import read_bars_file
from core.kernel.domain import Action, BarsBatch, Signal, SymbolBars, ValidatedSignal
from core.kernel.events import DataReady, ExecutedReady, IterationStarted, SignalsReady, ValidatedReady
from core.persistence.db import open_database
from core.persistence.models import AuditReportRow, DecisionRow, EquitySnapshotRow, FillRow, Iteration, OrderRow
from core.persistence.repository import IterationRecord, Repository
from core.risk import RiskLimits
from tests.conftest import BUNDLED_DAILY
from utils.secrets import install_database_scrubber

RUN_ID = "audit-test-run"
DAY1, DAY2 = date(2021, 3, 10), date(2021, 3, 11)
SYMBOLS = ("IWM", "SPY")
SECRET = "sk-audit-SECRET-1234567890"


def _close(day: date) -> datetime:
    return datetime.combine(day, time(21), tzinfo=UTC)


def _bars(symbol: str, day: date) -> SymbolBars:
    frame = read_bars_file(BUNDLED_DAILY / f"{symbol}.csv")
    return SymbolBars(symbol, frame, int(frame.index.get_loc(pd.Timestamp(day, tz=UTC))) + 1, "files")


@dataclass
class Pipeline:
    """The real Risk, Execution and Audit agents over one simulated broker and one SQLite ledger."""

    engine: Any
    repository: Repository
    clock: SimulatedClock
    broker: SimulatedBroker
    risk: RiskAgent
    execution: ExecutionAgent
    audit: AuditAgent

    def data(self, seq: int, day: date, **degraded: Any) -> DataReady:
        as_of = _close(day)
        self.clock.advance_to(as_of)
        started = IterationStarted(iteration_id=f"{RUN_ID}-{seq:06d}", as_of=as_of, seq=seq)
        batch = BarsBatch(started.iteration_id, as_of, {s: _bars(s, day) for s in SYMBOLS})
        return DataReady(iteration_id=started.iteration_id, as_of=as_of, previous=started, batch=batch, **degraded)

    async def through_risk(self, data: DataReady, buy: tuple[str, ...] = ()) -> Any:
        """Execution's sync, signals (BUY for ``buy``, HOLD otherwise), Risk's decisions: the ApprovedReady."""
        await self.execution.on_data(data)
        assert data.batch is not None
        signals = {}
        for s, sb in data.batch.bars.items():
            close = sb.last_close
            if s in buy:
                signals[s] = Signal(
                    s, "breakout", Action.BUY, 0.9, close, data.as_of, stop=close * 0.95, target=close * 1.15
                )
            else:
                signals[s] = Signal(s, "breakout", Action.HOLD, 0.0, close, data.as_of)
        ready = SignalsReady(iteration_id=data.iteration_id, as_of=data.as_of, previous=data, signals=signals)
        validated = ValidatedReady(
            iteration_id=data.iteration_id, as_of=data.as_of, previous=ready,
            validated={s: ValidatedSignal(sig, 0.9) for s, sig in signals.items() if s in buy},
        )  # fmt: skip
        return await self.risk.on_validated(validated)

    async def executed(self, data: DataReady, buy: tuple[str, ...] = ()) -> ExecutedReady:
        return await self.execution.on_approved(await self.through_risk(data, buy))


@pytest.fixture
def pipeline(tmp_path: Path) -> Any:
    engine = open_database(f"sqlite:///{tmp_path / 'ledger.db'}")
    install_database_scrubber(engine, [SECRET])  # as the application does
    repository = Repository(engine)
    start = _close(date(2021, 3, 9))
    repository.create_run(
        RUN_ID, kind="replay", broker="simulated", data_provider="files", started_at=start,
        initial_cash=Decimal(100_000), symbols=list(SYMBOLS), config={},
    )  # fmt: skip
    clock = SimulatedClock(start)
    broker = SimulatedBroker(Decimal(100_000), started_at=start)
    risk = RiskAgent(broker, RiskLimits(max_correlation=1.0), equity_history=lambda: [], clock=clock.now)
    execution = ExecutionAgent(broker, order_prefix=RUN_ID, run_id=RUN_ID)
    audit = AuditAgent(repository, broker, clock, RUN_ID)
    yield Pipeline(engine, repository, clock, broker, risk, execution, audit)
    engine.dispose()


def _rows(engine: Any, model: Any, iteration_id: str) -> list[Any]:
    with Session(engine) as s:
        return list(s.scalars(select(model).where(model.iteration_id == iteration_id)))


def _iteration(engine: Any, iteration_id: str) -> Iteration:
    with Session(engine) as s:
        row = s.get(Iteration, iteration_id)
        assert row is not None, f"iteration {iteration_id} was not recorded"
        return row


class Commits:
    """Counts the transactions committed on an engine (a real SQLAlchemy event, nothing replaced)."""

    def __init__(self, engine: Any) -> None:
        self.count = 0
        sa_event.listen(engine, "commit", self._on_commit)

    def _on_commit(self, conn: Any) -> None:
        self.count += 1


# ------------------------------------------------------------------------------------------------- on_executed


async def test_on_executed_when_an_entry_is_submitted_then_one_transaction_records_the_iteration_decisions_order_and_equity(
    pipeline: Pipeline,
) -> None:
    executed = await pipeline.executed(pipeline.data(1, DAY1), buy=("IWM",))
    assert len(executed.orders) == 1  # the real Risk and Execution agents submitted the entry
    commits = Commits(pipeline.engine)

    await pipeline.audit.on_executed(executed)

    assert commits.count == 1
    iteration_id = executed.iteration_id
    row = _iteration(pipeline.engine, iteration_id)
    assert (row.status, row.error, row.symbols_total, row.approvals, row.orders) == ("ok", None, 2, 1, 1)
    decisions = {(d.agent, d.symbol, d.action) for d in _rows(pipeline.engine, DecisionRow, iteration_id)}
    assert ("risk", "IWM", "approved") in decisions and ("risk", "SPY", "skip") in decisions
    (order,) = _rows(pipeline.engine, OrderRow, iteration_id)
    assert order.symbol == "IWM" and order.side == "buy" and order.quantity == executed.orders[0].quantity
    (equity,) = _rows(pipeline.engine, EquitySnapshotRow, iteration_id)
    assert equity.equity == Decimal(100_000)
    assert pipeline.audit.last_iteration_id == iteration_id and pipeline.audit.last_status == "ok"


async def test_on_executed_when_the_next_iteration_syncs_a_fill_then_the_fill_is_recorded_with_that_iteration(
    pipeline: Pipeline,
) -> None:
    await pipeline.audit.on_executed(await pipeline.executed(pipeline.data(1, DAY1), buy=("IWM",)))
    second = await pipeline.executed(pipeline.data(2, DAY2))

    await pipeline.audit.on_executed(second)

    (fill,) = _rows(pipeline.engine, FillRow, second.iteration_id)
    assert fill.symbol == "IWM" and fill.side == "buy"
    assert fill.price == pytest.approx(Decimal(str(_bars("IWM", DAY2).frame["open"].iat[_bars("IWM", DAY2).end - 1])))
    assert _iteration(pipeline.engine, second.iteration_id).fills == 1
    assert _rows(pipeline.engine, FillRow, f"{RUN_ID}-000001") == []  # not doubled onto the first iteration


async def test_on_executed_when_the_chain_carries_degraded_reasons_then_recorded_degraded_with_every_reason(
    pipeline: Pipeline,
) -> None:
    data = pipeline.data(1, DAY1, degraded=("data: alpaca unreachable after 3 attempts", "data: IBM served no bars"))

    await pipeline.audit.on_executed(await pipeline.executed(data))

    row = _iteration(pipeline.engine, data.iteration_id)
    assert row.status == "degraded"
    assert row.error == "data: alpaca unreachable after 3 attempts; data: IBM served no bars"
    assert pipeline.audit.last_status == "degraded"


# ------------------------------------------------------------------------------------------------- record_incomplete


async def test_record_incomplete_when_a_stage_failed_after_the_sync_then_the_broker_fills_and_orders_are_recorded_with_a_failed_iteration(
    pipeline: Pipeline,
) -> None:
    await pipeline.audit.on_executed(await pipeline.executed(pipeline.data(1, DAY1), buy=("IWM",)))
    data = pipeline.data(2, DAY2)
    await pipeline.execution.on_data(data)  # the sync fills yesterday's entry; then the Risk stage fails
    report = PublishReport(events=[data.previous, data])  # type: ignore[list-item]
    failures = [HandlerFailure("risk.on_validated", "ValidatedReady", data.iteration_id, "RuntimeError: boom", "")]
    broker_report = pipeline.execution.discard(data.iteration_id)
    assert broker_report is not None and len(broker_report.fills) == 1

    await pipeline.audit.record_incomplete(report, failures, status="failed", broker_report=broker_report)

    row = _iteration(pipeline.engine, data.iteration_id)
    assert row.status == "failed" and row.error == "risk.on_validated on ValidatedReady: RuntimeError: boom"
    assert row.symbols_total == 2  # the data it had
    (fill,) = _rows(pipeline.engine, FillRow, data.iteration_id)
    assert fill.symbol == "IWM" and fill.quantity == broker_report.fills[0].quantity
    with Session(pipeline.engine) as s:
        order = s.scalars(select(OrderRow).where(OrderRow.client_order_id == fill.client_order_id)).one()
        legs = s.scalars(select(OrderRow).where(OrderRow.iteration_id == data.iteration_id)).all()
    assert order.status == "filled" and order.filled_quantity == fill.quantity  # the order update was recorded too
    assert legs and all(leg.symbol == "IWM" and leg.side == "sell" for leg in legs)  # the bracket's protective legs


async def test_record_incomplete_when_status_is_degraded_then_the_iteration_is_recorded_degraded(
    pipeline: Pipeline,
) -> None:
    data = pipeline.data(1, DAY1)
    failures = [
        HandlerFailure(
            "risk.on_validated", "ValidatedReady", data.iteration_id, "TemporaryBrokerError: 503", "", transient=True
        )
    ]

    await pipeline.audit.record_incomplete(PublishReport(events=[data.previous, data]), failures, status="degraded")  # type: ignore[list-item]

    row = _iteration(pipeline.engine, data.iteration_id)
    assert (row.status, row.error) == ("degraded", "risk.on_validated on ValidatedReady: TemporaryBrokerError: 503")


async def test_record_incomplete_when_the_error_text_holds_a_configured_secret_then_the_ledger_never_stores_it(
    pipeline: Pipeline,
) -> None:
    data = pipeline.data(1, DAY1)
    failures = [HandlerFailure("strategy.on_data", "DataReady", data.iteration_id, f"ValueError: bad key {SECRET}", "")]

    await pipeline.audit.record_incomplete(PublishReport(events=[data.previous, data]), failures)  # type: ignore[list-item]

    row = _iteration(pipeline.engine, data.iteration_id)
    assert row.status == "failed"
    assert SECRET not in (row.error or "") and "bad key" in (row.error or "")
    with pipeline.engine.connect() as conn:
        dumped = "\n".join(conn.connection.iterdump())  # every table, every column
    assert SECRET not in dumped


# ------------------------------------------------------------------------------------------------- batching, marks


DAY3 = date(2021, 3, 12)


def _audit(pipeline: Pipeline, **options: Any) -> AuditAgent:
    """Another Audit agent on the pipeline's ledger, broker and clock, with ``options``."""
    return AuditAgent(pipeline.repository, pipeline.broker, pipeline.clock, RUN_ID, **options)


def _recorded(engine: Any) -> list[str]:
    with Session(engine) as s:
        return sorted(s.scalars(select(Iteration.id)))


async def test_on_executed_when_batch_size_is_three_then_the_third_iteration_writes_all_three_in_one_transaction(
    pipeline: Pipeline,
) -> None:
    audit = _audit(pipeline, batch_size=3)
    commits = Commits(pipeline.engine)

    for seq, day in ((1, DAY1), (2, DAY2)):
        await audit.on_executed(await pipeline.executed(pipeline.data(seq, day), buy=("IWM",) if seq == 1 else ()))
    assert (commits.count, _recorded(pipeline.engine)) == (0, [])  # buffered
    await audit.on_executed(await pipeline.executed(pipeline.data(3, DAY3)))

    assert commits.count == 1
    assert _recorded(pipeline.engine) == [f"{RUN_ID}-00000{n}" for n in (1, 2, 3)]
    assert len(_rows(pipeline.engine, OrderRow, f"{RUN_ID}-000001")) == 1
    assert len(_rows(pipeline.engine, FillRow, f"{RUN_ID}-000002")) == 1
    assert audit.last_iteration_id == f"{RUN_ID}-000003" and audit.last_status == "ok"


async def test_on_executed_when_batching_and_an_iteration_is_degraded_then_it_is_written_at_once_with_the_buffered_ones(
    pipeline: Pipeline,
) -> None:
    audit = _audit(pipeline, batch_size=10)
    await audit.on_executed(await pipeline.executed(pipeline.data(1, DAY1)))
    commits = Commits(pipeline.engine)

    await audit.on_executed(await pipeline.executed(pipeline.data(2, DAY2, degraded=("data: IBM served no bars",))))

    assert commits.count == 1
    assert _recorded(pipeline.engine) == [f"{RUN_ID}-000001", f"{RUN_ID}-000002"]
    assert _iteration(pipeline.engine, f"{RUN_ID}-000002").status == "degraded"


async def test_flush_when_iterations_are_buffered_then_they_are_written_and_a_second_flush_commits_nothing(
    pipeline: Pipeline,
) -> None:
    audit = _audit(pipeline, batch_size=10)
    for seq, day in ((1, DAY1), (2, DAY2)):
        await audit.on_executed(await pipeline.executed(pipeline.data(seq, day)))
    commits = Commits(pipeline.engine)

    audit.flush()
    audit.flush()

    assert commits.count == 1
    assert _recorded(pipeline.engine) == [f"{RUN_ID}-000001", f"{RUN_ID}-000002"]
    equity = [e.equity for e in _rows(pipeline.engine, EquitySnapshotRow, f"{RUN_ID}-000002")]
    assert equity == [Decimal(100_000)]


def test_batch_size_below_one_is_refused(pipeline: Pipeline) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        _audit(pipeline, batch_size=0)


async def test_mark_failed_when_the_iteration_was_recorded_then_the_ledger_and_the_last_status_carry_the_error(
    pipeline: Pipeline,
) -> None:
    executed = await pipeline.executed(pipeline.data(1, DAY1))
    await pipeline.audit.on_executed(executed)

    pipeline.audit.mark_failed(executed.iteration_id, "risk.on_executed on ExecutedReady: boom", status="degraded")

    row = _iteration(pipeline.engine, executed.iteration_id)
    assert (row.status, row.error) == ("degraded", "risk.on_executed on ExecutedReady: boom")
    assert (pipeline.audit.last_status, pipeline.audit.last_error) == (
        "degraded",
        "risk.on_executed on ExecutedReady: boom",
    )


async def test_mark_failed_when_the_iteration_is_still_buffered_then_it_is_written_first_and_flagged_failed(
    pipeline: Pipeline,
) -> None:
    audit = _audit(pipeline, batch_size=10)
    await audit.on_executed(await pipeline.executed(pipeline.data(1, DAY1)))
    executed = await pipeline.executed(pipeline.data(2, DAY2))
    await audit.on_executed(executed)
    assert _recorded(pipeline.engine) == []

    audit.mark_failed(executed.iteration_id, "late handler: boom")

    assert _recorded(pipeline.engine) == [f"{RUN_ID}-000001", f"{RUN_ID}-000002"]
    row = _iteration(pipeline.engine, executed.iteration_id)
    assert (row.status, row.error) == ("failed", "late handler: boom")
    assert _iteration(pipeline.engine, f"{RUN_ID}-000001").status == "ok"
    assert audit.last_status == "failed"


async def test_mark_failed_when_another_iteration_is_named_then_the_last_status_is_unchanged(
    pipeline: Pipeline,
) -> None:
    first = await pipeline.executed(pipeline.data(1, DAY1))
    await pipeline.audit.on_executed(first)
    await pipeline.audit.on_executed(await pipeline.executed(pipeline.data(2, DAY2)))

    pipeline.audit.mark_failed(first.iteration_id, "late: boom")

    assert _iteration(pipeline.engine, first.iteration_id).status == "failed"
    assert (pipeline.audit.last_status, pipeline.audit.last_error) == ("ok", None)


# ------------------------------------------------------------------------------------------------- state, heartbeat


async def test_on_executed_when_a_heartbeat_key_is_given_then_the_heartbeat_and_the_state_are_written_with_the_iteration(
    pipeline: Pipeline,
) -> None:
    audit = _audit(pipeline, heartbeat_key="heartbeat", state=lambda: {"risk_state": {"peak": 100_000}})
    executed = await pipeline.executed(pipeline.data(1, DAY1))

    await audit.on_executed(executed)

    saved = pipeline.repository.get_state("heartbeat")
    assert saved is not None
    assert saved[0] == {
        "run_id": RUN_ID,
        "iteration_id": executed.iteration_id,
        "as_of": executed.as_of.isoformat(),
        "at": pipeline.clock.now().isoformat(),
        "status": "ok",
    }
    risk_state = pipeline.repository.get_state("risk_state")
    assert risk_state is not None and risk_state[0] == {"peak": 100_000}


async def test_record_incomplete_when_a_heartbeat_key_is_given_then_the_heartbeat_carries_the_failed_status(
    pipeline: Pipeline,
) -> None:
    audit = _audit(pipeline, heartbeat_key="heartbeat")
    data = pipeline.data(1, DAY1)
    failures = [HandlerFailure("strategy.on_data", "DataReady", data.iteration_id, "RuntimeError: boom", "")]

    await audit.record_incomplete(PublishReport(events=[data.previous, data]), failures)  # type: ignore[list-item]

    saved = pipeline.repository.get_state("heartbeat")
    assert saved is not None and (saved[0]["iteration_id"], saved[0]["status"]) == (data.iteration_id, "failed")


async def test_on_executed_without_a_heartbeat_key_then_no_heartbeat_is_written(pipeline: Pipeline) -> None:
    await pipeline.audit.on_executed(await pipeline.executed(pipeline.data(1, DAY1)))

    assert pipeline.repository.get_state("heartbeat") is None


# ------------------------------------------------------------------------------------------------- account, records


class AccountUnreadable(SimulatedBroker):
    """The simulated broker whose account cannot be read (an outage at the broker)."""

    async def account(self) -> Any:
        raise BrokerError("HTTP 503 from the broker")


async def test_record_incomplete_when_the_account_cannot_be_read_then_the_iteration_is_recorded_without_positions_or_equity(
    pipeline: Pipeline,
) -> None:
    broker = AccountUnreadable(Decimal(100_000), started_at=_close(date(2021, 3, 9)))
    audit = AuditAgent(pipeline.repository, broker, pipeline.clock, RUN_ID)
    data = pipeline.data(1, DAY1)
    failures = [HandlerFailure("strategy.on_data", "DataReady", data.iteration_id, "RuntimeError: boom", "")]

    await audit.record_incomplete(PublishReport(events=[data.previous, data]), failures, status="failed")

    row = _iteration(pipeline.engine, data.iteration_id)
    assert row.status == "failed"
    assert row.error == (
        "strategy.on_data on DataReady: RuntimeError: boom; "
        "audit: account unavailable, positions not updated: HTTP 503 from the broker"
    )
    assert _rows(pipeline.engine, EquitySnapshotRow, data.iteration_id) == []


async def test_on_executed_when_batching_then_on_record_sees_every_record_before_it_is_written(
    pipeline: Pipeline,
) -> None:
    seen: list[IterationRecord] = []
    audit = _audit(pipeline, batch_size=10, on_record=seen.append)

    for seq, day in ((1, DAY1), (2, DAY2)):
        await audit.on_executed(await pipeline.executed(pipeline.data(seq, day), buy=("IWM",) if seq == 1 else ()))

    assert _recorded(pipeline.engine) == []
    assert [r.iteration_id for r in seen] == [f"{RUN_ID}-000001", f"{RUN_ID}-000002"]
    assert seen[1].report_text == audit.last_summary
    audit.flush()
    for record in seen:  # what on_record saw is what the ledger then holds
        (equity,) = _rows(pipeline.engine, EquitySnapshotRow, record.iteration_id)
        assert record.equity is not None and equity.equity == record.equity.equity
        (report,) = _rows(pipeline.engine, AuditReportRow, record.iteration_id)
        assert (report.text, report.facts) == (record.report_text, record.report_facts)

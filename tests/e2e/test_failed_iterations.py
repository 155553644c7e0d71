"""A failed iteration keeps everything the broker reported: the offline daemon (simulated broker, persisted account)
runs 60 sessions of the bundled bars with a real strategy that raises now and then; the fills its broker reported in
the failed iterations are in the ledger, so the ledger's cash is the broker's."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from collections.abc import Mapping

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from core.runtime.app import build_app, replay_sessions, simulated_clock_for
from core.runtime.profile import DAEMON, PipelineOptions
from core.brokers.simulated import SimulatedBroker
from core.kernel.calendar import MarketCalendar
from core.runtime.orchestrator import run_replay
from core.persistence.models import EquitySnapshotRow, FillRow, Iteration, OrderRow, ReconciliationRow, Run
from strategies.base import Action
from strategies.registry import build_registry
from strategies.selector import FixedSelector
from strategies.trend import VolatilityBreakout
from tests.conftest import make_settings


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


class FailingOnSecondSubmit(SimulatedBroker):
    """The simulated broker with a bug: its second submission raises before the order is taken."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.submits = 0

    async def submit(self, intent, client_order_id, now):  # type: ignore[no-untyped-def]
        self.submits += 1
        if self.submits == 2:
            raise RuntimeError(f"broker bug while submitting {client_order_id}")
        return await super().submit(intent, client_order_id, now)


def _run(
    tmp_path: Path, registry: Mapping[str, Any], start: date, end: date, broker: SimulatedBroker | None = None
) -> tuple[SimulatedBroker, list]:
    settings = make_settings(
        tmp_path, broker="simulated", data_provider="files", symbols=["AAPL", "AIG", "BAC", "IBM", "IWM", "SPY"]
    )
    calendar = MarketCalendar()
    sessions = replay_sessions(calendar, start, end)
    clock = simulated_clock_for(sessions)
    app = build_app(
        settings,
        profile=DAEMON,
        clock=clock,
        wall_clock=clock,
        calendar=calendar,
        allow_llm=False,
        options=PipelineOptions(registry=registry, selector=FixedSelector(registry, "volatility_breakout")),
        broker=broker,
    )
    try:
        outcomes = asyncio.run(run_replay(app.orchestrator, clock.advance_to, sessions, stop=asyncio.Event()))
    finally:
        app.close()
    assert isinstance(app.broker, SimulatedBroker)
    return app.broker, outcomes


def test_failing_strategy_when_fills_are_pending_then_failed_iterations_record_them_and_ledger_cash_equals_the_broker(
    tmp_path: Path,
) -> None:
    registry = {**build_registry(), "volatility_breakout": RaisingEveryFewSignals(every=13)}
    broker, outcomes = _run(tmp_path, registry, date(2008, 9, 1), date(2008, 11, 24))
    assert len(outcomes) == 60 and sum(o.status == "failed" for o in outcomes) >= 5

    with Session(create_engine(f"sqlite:///{tmp_path / 'trading.db'}")) as s:
        failed_with_fills = s.scalars(
            select(Iteration.fills).where(Iteration.status == "failed", Iteration.fills > 0)
        ).all()
        assert failed_with_fills  # the premise: some failing iterations had fills to report
        fills = s.scalars(select(FillRow)).all()
        assert sorted(f.fill_id for f in fills) == sorted(f.fill_id for f in broker.fills())
        initial = s.scalars(select(Run.initial_cash)).one()
        cash = initial - sum(
            (f.quantity * f.price * (1 if f.side == "buy" else -1) + f.commission for f in fills), Decimal(0)
        )
        assert cash == Decimal(broker.snapshot()["cash"])
        assert cash == s.scalars(select(EquitySnapshotRow.cash).order_by(EquitySnapshotRow.at.desc()).limit(1)).one()
        broker_orders = {d["order"]["client_order_id"]: d["order"]["status"] for d in broker.snapshot()["orders"]}
        assert {o.client_order_id: o.status for o in s.scalars(select(OrderRow))} == broker_orders
        assert s.scalars(select(ReconciliationRow)).all() == []  # and nothing of it is noise for reconciliation


def test_clean_offline_daemon_replay_records_no_reconciliation_discrepancy(tmp_path: Path) -> None:
    broker, outcomes = _run(tmp_path, build_registry(), date(2008, 9, 1), date(2008, 11, 24))
    assert all(o.status == "ok" for o in outcomes) and broker.fills()
    with Session(create_engine(f"sqlite:///{tmp_path / 'trading.db'}")) as s:
        assert s.scalars(select(ReconciliationRow)).all() == []


def test_execution_failing_mid_submission_then_orders_already_submitted_are_recorded_and_the_failed_one_is_settled(
    tmp_path: Path,
) -> None:
    from core.brokers.costs import BpsSlippage, PerShareCommission
    from core.persistence.db import open_database
    from core.persistence.repository import Repository

    broker = FailingOnSecondSubmit(
        Decimal("100000"),
        commission=PerShareCommission(per_share=Decimal("0.005"), minimum=Decimal("1")),
        slippage=BpsSlippage(Decimal("5")),
        started_at=datetime(2008, 9, 2, 20, tzinfo=UTC),
    )
    broker, outcomes = _run(tmp_path, build_registry(), date(2008, 9, 1), date(2008, 11, 24), broker=broker)
    assert any(o.status == "failed" and "broker bug" in (o.error or "") for o in outcomes)
    with Session(create_engine(f"sqlite:///{tmp_path / 'trading.db'}")) as s:
        broker_orders = {d["order"]["client_order_id"]: d["order"]["status"] for d in broker.snapshot()["orders"]}
        assert {o.client_order_id: o.status for o in s.scalars(select(OrderRow))} == broker_orders
        assert sorted(s.scalars(select(FillRow.fill_id))) == sorted(f.fill_id for f in broker.fills())
    intents = Repository(open_database(f"sqlite:///{tmp_path / 'trading.db'}")).intents()
    assert {i["status"] for i in intents} == {"recorded", "never_accepted"}
    [lost] = [i for i in intents if i["status"] == "never_accepted"]
    assert lost["client_order_id"] not in broker_orders

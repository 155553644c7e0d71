"""Persistence against real SQLite and real PostgreSQL (the ``database_url`` fixture runs each test on both)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError

from core.kernel.domain import (
    Decision,
    EquitySnapshot,
    Fill,
    Order,
    OrderIntent,
    OrderStatus,
    OrderType,
    Position,
    Side,
)
from core.persistence.db import DaemonAlreadyRunning, DaemonLock, DatabaseUnavailable, open_database
from core.persistence.models import DecisionRow, EquitySnapshotRow, FillRow, Iteration, OrderRow, PositionRow
from core.persistence.repository import IterationRecord, Repository

T0 = datetime(2021, 3, 30, 20, 0, tzinfo=UTC)
T1 = datetime(2021, 3, 31, 20, 0, tzinfo=UTC)


def _repo(url: str) -> Repository:
    repo = Repository(open_database(url))
    repo.create_run(
        "run-1",
        kind="replay",
        broker="simulated",
        data_provider="files",
        started_at=T0,
        initial_cash=Decimal("100000"),
        symbols=["AAPL", "IBM"],
        config={"risk_per_trade": 0.02},
    )
    return repo


def _order(status: OrderStatus = OrderStatus.SUBMITTED, **kw: object) -> Order:
    values = dict(
        client_order_id="run-1-000001-AAPL-buy",
        symbol="AAPL",
        side=Side.BUY,
        quantity=10,
        order_type=OrderType.MARKET,
        status=status,
        submitted_at=T0,
        strategy="trend_following",
        reason="golden cross",
    )
    values.update(kw)
    return Order(**values)  # type: ignore[arg-type]


def _record(iteration: str, seq: int, as_of: datetime, **kw: object) -> IterationRecord:
    values: dict[str, object] = dict(
        run_id="run-1",
        iteration_id=iteration,
        seq=seq,
        as_of=as_of,
        recorded_at=as_of,
        status="ok",
        error=None,
        symbols_total=2,
        symbols_ok=2,
        data_quality=1.0,
    )
    values.update(kw)
    return IterationRecord(**values)  # type: ignore[arg-type]


def test_migrations_create_the_schema_and_are_idempotent(database_url: str) -> None:
    engine = open_database(database_url)
    open_database(database_url)  # second start-up: nothing to do, no error
    tables = set(inspect(engine).get_table_names())
    assert {
        "runs",
        "iterations",
        "decisions",
        "orders",
        "fills",
        "positions",
        "equity_snapshots",
        "audit_reports",
        "alembic_version",
    } <= tables


def test_iteration_round_trip_keeps_exact_money_and_utc_times(database_url: str) -> None:
    repo = _repo(database_url)
    fill = Fill("f-1", "run-1-000001-AAPL-buy", "AAPL", Side.BUY, 10, Decimal("123.4567"), Decimal("1.00"), T1)
    repo.record_iteration(
        _record(
            "run-1-000001",
            1,
            T0,
            decisions=[
                Decision(
                    "risk",
                    "AAPL",
                    "approved",
                    "sized 10 shares",
                    {"atr": 2.5, "nan": float("nan")},
                    strategy="trend_following",
                    confidence=0.61,
                ),
                Decision("risk", "IBM", "denied:min_confidence", "0.2 < 0.3", {"confidence": 0.2}),
            ],
            orders=[_order()],
            equity=EquitySnapshot(T0, Decimal("100000.00"), Decimal("0.00"), Decimal("100000.00"), 0),
            report_text="summary",
            report_facts={"equity": Decimal("100000.00")},
            orders_submitted=1,
        )
    )
    repo.record_iteration(
        _record(
            "run-1-000002",
            2,
            T1,
            orders=[_order(OrderStatus.FILLED, filled_quantity=10, average_fill_price=123.4567, updated_at=T1)],
            fills=[fill],
            positions={"AAPL": Position("AAPL", 10, Decimal("123.4567"), T1, Decimal("0"), Decimal("125.01"))},
            equity=EquitySnapshot(T1, Decimal("98764.43"), Decimal("1250.10"), Decimal("100014.53"), 1),
        )
    )
    with repo.session() as s:
        stored_fill = s.scalars(select(FillRow)).one()
        assert stored_fill.price == Decimal("123.4567") and isinstance(stored_fill.price, Decimal)
        assert stored_fill.filled_at == T1 and stored_fill.filled_at.tzinfo is not None
        order = s.scalars(select(OrderRow)).one()
        assert (order.status, order.filled_quantity, order.average_fill_price) == (
            "filled",
            Decimal("10"),
            Decimal("123.4567"),
        )
        assert order.iteration_id == "run-1-000001"  # updated in place, not duplicated
        decisions = s.scalars(select(DecisionRow).order_by(DecisionRow.symbol)).all()
        assert [d.action for d in decisions] == ["approved", "denied:min_confidence"]
        assert decisions[0].inputs == {"atr": 2.5, "nan": None} and decisions[0].as_of == T0
        equity = s.scalars(select(EquitySnapshotRow).order_by(EquitySnapshotRow.at)).all()
        assert [e.equity for e in equity] == [Decimal("100000.00"), Decimal("100014.53")]
        position = s.scalars(select(PositionRow)).one()
        assert position.market_value == Decimal("1250.10")
        assert [i.seq for i in s.scalars(select(Iteration).order_by(Iteration.seq))] == [1, 2]
    assert repo.equity_history("run-1") == [(T0, Decimal("100000.00")), (T1, Decimal("100014.53"))]


def test_failed_iteration_write_leaves_nothing_half_written(database_url: str) -> None:
    repo = _repo(database_url)
    repo.record_iteration(_record("run-1-000001", 1, T0))
    duplicate_decisions = [Decision("data", "AAPL", "ok", "x"), Decision("data", "AAPL", "ok", "again")]
    with pytest.raises(IntegrityError):
        repo.record_iteration(_record("run-1-000002", 2, T1, decisions=duplicate_decisions))
    with repo.session() as s:
        assert s.scalars(select(Iteration.id)).all() == ["run-1-000001"]
        assert s.scalars(select(DecisionRow)).all() == []


def test_a_fill_for_an_unknown_order_is_refused(database_url: str) -> None:
    repo = _repo(database_url)
    fill = Fill("f-9", "no-such-order", "AAPL", Side.BUY, 1, Decimal("1"), Decimal("0"), T1)
    with pytest.raises(IntegrityError):
        repo.record_iteration(_record("run-1-000001", 1, T0, fills=[fill]))


def test_naive_timestamps_are_refused_at_the_boundary(database_url: str) -> None:
    repo = _repo(database_url)
    with pytest.raises(Exception, match="timezone-aware"):
        repo.finish_run("run-1", status="finished", at=datetime(2021, 1, 1))


def test_second_daemon_on_the_same_database_is_refused(database_url: str) -> None:
    engine = open_database(database_url)
    first = DaemonLock(engine)
    first.acquire()
    try:
        with pytest.raises(DaemonAlreadyRunning, match="already running"):
            DaemonLock(open_database(database_url)).acquire()
    finally:
        first.release()
    with DaemonLock(engine):  # released: a new daemon may start
        pass


def test_unreachable_database_gives_a_clear_error_without_the_password() -> None:
    with pytest.raises(DatabaseUnavailable) as info:
        open_database("postgresql://trader:s3cretpw@127.0.0.1:1/nowhere")
    assert "cannot connect" in str(info.value) and "s3cretpw" not in str(info.value)


def _intent() -> OrderIntent:
    return OrderIntent(
        "AAPL",
        Side.BUY,
        10,
        OrderType.BRACKET,
        120.5,
        "trend_following",
        0.7,
        "golden cross",
        stop_loss=115.25,
        take_profit=131.0,
    )


def test_record_intent_when_written_twice_then_one_pending_row_settled_by_the_iteration_that_records_its_order(
    database_url: str,
) -> None:
    repo = _repo(database_url)
    coid = "run-1-000001-AAPL-buy"
    repo.record_intent(
        run_id="run-1", iteration_id="run-1-000001", broker="simulated", client_order_id=coid, intent=_intent(), at=T0
    )
    repo.record_intent(
        run_id="run-1", iteration_id="run-1-000001", broker="simulated", client_order_id=coid, intent=_intent(), at=T0
    )
    [pending] = repo.pending_intents("simulated")
    assert (pending.client_order_id, pending.intent, pending.created_at) == (coid, _intent(), T0)  # exact round trip
    assert repo.pending_intents("alpaca-paper") == []

    repo.record_iteration(_record("run-1-000001", 1, T0, orders=[_order()]))
    assert [i["status"] for i in repo.intents()] == ["recorded"] and repo.pending_intents("simulated") == []
    repo.record_intent(
        run_id="run-1", iteration_id="run-1-000002", broker="simulated", client_order_id=coid, intent=_intent(), at=T1
    )
    assert [i["status"] for i in repo.intents()] == ["recorded"]  # a resubmission of a recorded order stays settled


def test_settle_never_accepted_when_the_order_turns_up_later_then_recording_it_wins(database_url: str) -> None:
    repo = _repo(database_url)
    coid = "run-1-000001-AAPL-buy"
    repo.record_intent(
        run_id="run-1", iteration_id="run-1-000001", broker="simulated", client_order_id=coid, intent=_intent(), at=T0
    )
    repo.note_intent_lookup(coid, error="HTTP 500")
    assert [(i["status"], i["lookups"], i["last_error"]) for i in repo.intents()] == [("pending", 1, "HTTP 500")]
    repo.settle_intent_never_accepted(coid, T1, "no such order")
    assert [(i["status"], i["lookups"]) for i in repo.intents()] == [("never_accepted", 2)]
    repo.record_iteration(_record("run-1-000002", 2, T1, orders=[_order()]))
    assert [i["status"] for i in repo.intents()] == ["recorded"]


def test_ledger_positions_are_the_daemons_fills_plus_reconciliation_adjustments(database_url: str) -> None:
    repo = Repository(open_database(database_url))
    for run, kind in (("daemon-1", "daemon"), ("replay-1", "replay")):
        repo.create_run(
            run,
            kind=kind,
            broker="simulated",
            data_provider="files",
            started_at=T0,
            initial_cash=Decimal("100000"),
            symbols=["AAPL"],
            config={},
        )
        order = _order(client_order_id=f"{run}-AAPL-buy", status=OrderStatus.FILLED, filled_quantity=10)
        fill = Fill(f"{run}-f1", order.client_order_id, "AAPL", Side.BUY, 10, Decimal("100"), Decimal("1"), T0)
        repo.record_iteration(_record(f"{run}-000001", 1, T0, run_id=run, orders=[order], fills=[fill]))
    assert repo.ledger_positions("simulated") == {"AAPL": Decimal(10)}  # the replay's fills are not the daemon's
    repo.record_reconciliation(
        "daemon-1",
        T1,
        [
            {
                "kind": "unknown_position",
                "symbol": "IBM",
                "details": {"ledger": "0", "broker": "5"},
                "resolution": "adopted",
            }
        ],
    )
    repo.record_reconciliation(
        "daemon-1",
        T1,
        [{"kind": "unknown_order", "symbol": "IBM", "details": {"client_order_id": "x"}, "resolution": "flagged"}],
    )
    assert repo.ledger_positions("simulated") == {"AAPL": Decimal(10), "IBM": Decimal(5)}

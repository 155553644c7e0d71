"""Orders in doubt between the Execution agent, the ledger (real SQLite) and a real AlpacaBroker on the local fake:
the intent is committed before the POST, a failed lookup leaves it in doubt for the next try, an order Alpaca never
got is settled as never accepted once the submission window has passed, a found one is reported with its fills; and
reconciliation flags a real orphan, not the daemon's own orders and legs."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from collections.abc import Callable

import pytest

from agents.execution_agent import ExecutionAgent
from core.brokers.alpaca import AlpacaBroker
from core.kernel.domain import Approval, OrderStatus
from core.kernel.events import ApprovedReady
from core.persistence.db import open_database
from core.persistence.repository import IterationRecord, Repository
from core.persistence.reconcile import Reconciler
from tests.alpaca_trading.conftest import START, bracket_intent, market_intent
from tests.fakes.alpaca_server import server_error
from tests.fakes.alpaca_trading import ORDER_BY_CLIENT_ID_PATH, FakeTradingApi, ManualClock

RUN = "daemon-test-run"


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    repository = Repository(open_database(f"sqlite:///{tmp_path / 'doubt.db'}"))
    repository.create_run(
        RUN,
        kind="daemon",
        broker="alpaca-paper",
        data_provider="files",
        started_at=START,
        initial_cash=Decimal("100000"),
        symbols=["AAPL"],
        config={},
    )
    return repository


def _status(repo: Repository, coid: str) -> dict:
    return next(i for i in repo.intents() if i["client_order_id"] == coid)


def _approved(iteration: str, *intents) -> ApprovedReady:  # type: ignore[no-untyped-def]
    return ApprovedReady(iteration_id=iteration, as_of=START, approvals=tuple(Approval(i, "ok") for i in intents))


def _record(repo: Repository, iteration: str, seq: int, orders, fills=()) -> None:  # type: ignore[no-untyped-def]
    repo.record_iteration(
        IterationRecord(
            run_id=RUN,
            iteration_id=iteration,
            seq=seq,
            as_of=START,
            recorded_at=START,
            status="ok",
            error=None,
            symbols_total=1,
            symbols_ok=1,
            data_quality=1.0,
            orders=orders,
            fills=fills,
        )
    )


async def test_resolve_when_the_lookup_fails_then_the_order_stays_in_doubt_and_the_next_try_reports_it_with_its_fill(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, repo: Repository, clock: ManualClock
) -> None:
    alpaca.set_price("AAPL", "100")
    crashed = make_broker()
    agent = ExecutionAgent(crashed, order_prefix="paper", intents=repo, run_id=RUN)
    alpaca.accept_then(server_error(500))  # accepted, answer lost...
    alpaca.fail_next("GET", ORDER_BY_CLIENT_ID_PATH, 500, times=3)  # ...and the lookup too (with its two retries)
    await agent.on_approved(_approved("it-1", market_intent()))
    [placed] = alpaca.top_level_orders()
    assert _status(repo, placed.client_order_id)["status"] == "pending"  # written before the POST, still in doubt
    alpaca.fill(placed.client_order_id, "101.5")  # fills while nobody looks (the process is gone)

    restarted = make_broker()  # a new process: nothing in memory, the ledger has no order
    agent = ExecutionAgent(restarted, order_prefix="paper", intents=repo, run_id=RUN)
    alpaca.fail_next("GET", ORDER_BY_CLIENT_ID_PATH, 500, times=3)  # the lookup and its two retries
    first = await agent.resolve_in_doubt(clock())
    assert first.orders == () and _status(repo, placed.client_order_id)["lookups"] == 1
    assert "500" in _status(repo, placed.client_order_id)["last_error"]

    second = await agent.resolve_in_doubt(clock())
    [order] = second.orders
    assert (order.client_order_id, order.status, order.strategy) == (
        placed.client_order_id,
        OrderStatus.FILLED,
        "breakout",
    )
    reported = await restarted.sync()
    assert [(f.quantity, f.price) for f in reported.fills] == [(10, Decimal("101.5"))]
    _record(repo, "it-2", 2, [order], reported.fills)
    assert _status(repo, placed.client_order_id)["status"] == "recorded"
    assert alpaca.count_with_client_id(placed.client_order_id) == 1


async def test_resolve_when_alpaca_has_no_such_order_then_never_accepted_only_after_the_submission_window(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, repo: Repository, clock: ManualClock
) -> None:
    broker = make_broker()
    agent = ExecutionAgent(
        broker, order_prefix="paper", intents=repo, run_id=RUN, submission_window=timedelta(minutes=2)
    )
    repo.record_intent(
        run_id=RUN,
        iteration_id="it-1",
        broker=broker.name,
        client_order_id="paper-x-AAPL-buy",
        intent=market_intent(),
        at=clock(),
    )

    assert (await agent.resolve_in_doubt(clock() + timedelta(seconds=30))).orders == ()
    assert _status(repo, "paper-x-AAPL-buy")["status"] == "pending"  # a POST may still be on its way
    await agent.resolve_in_doubt(clock() + timedelta(minutes=3))
    assert _status(repo, "paper-x-AAPL-buy")["status"] == "never_accepted"
    assert repo.pending_intents(broker.name) == []

    # an order that turns up after all (Alpaca was slow) is recorded, and the ledger's word wins
    late = alpaca.create_order(symbol="AAPL", qty=10, client_order_id="paper-x-AAPL-buy")
    found = await broker.order_by_client_id(late.client_order_id)
    assert found is not None
    _record(repo, "it-2", 2, [found])
    assert _status(repo, "paper-x-AAPL-buy")["status"] == "recorded"


async def test_reconcile_every_iteration_when_only_own_orders_and_legs_then_nothing_and_a_real_orphan_is_flagged_once(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, repo: Repository
) -> None:
    alpaca.set_price("AAPL", "100")
    broker = make_broker()
    reconciler = Reconciler(repo, broker.name, RUN, parent_of=broker.parent_of)  # as core.runtime.app wires it
    agent = ExecutionAgent(broker, order_prefix="paper", intents=repo, run_id=RUN, reconciler=reconciler)

    executed = await agent.on_approved(_approved("it-1", bracket_intent()))
    assert (
        len(executed.orders) == 1 and len(executed.order_updates) == 2
    )  # the entry and, in the same iteration, its legs
    assert repo.intents()[0]["status"] == "pending"
    _record(repo, "it-1", 1, list(executed.order_updates) + list(executed.orders))
    assert repo.intents()[0]["status"] == "recorded"
    orphan = alpaca.create_order(symbol="IBM", qty=5, type="limit", limit_price=Decimal("90"), time_in_force="gtc")
    await agent.on_approved(_approved("it-2"))
    await agent.on_approved(_approved("it-3"))

    from sqlalchemy import select

    from core.persistence.models import ReconciliationRow

    with repo.session() as s:
        events = [(r.kind, r.details["client_order_id"]) for r in s.scalars(select(ReconciliationRow))]
    assert events == [("unknown_order", orphan.client_order_id)]

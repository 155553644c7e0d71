"""AlpacaBroker.cancel and replace_stop, and the reconciliation helpers."""

from __future__ import annotations

from decimal import Decimal
from collections.abc import Callable

import pytest

from core.brokers.alpaca import AlpacaBroker
from core.brokers.base import BrokerError, TemporaryBrokerError
from core.kernel.domain import OrderStatus, OrderType
from tests.alpaca_trading.conftest import START, bracket_intent, market_intent
from tests.fakes.alpaca_server import FakeAlpacaServer
from tests.fakes.alpaca_trading import ORDER_BY_CLIENT_ID_PATH, ORDER_PATH, ORDERS_PATH, FakeTradingApi, ManualClock

pytestmark = pytest.mark.shared

COID = "it-1-AAPL-buy"


async def test_cancel_when_bracket_entry_is_working_then_it_and_its_legs_are_cancelled(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, server: FakeAlpacaServer, clock: ManualClock
) -> None:
    broker = make_broker()
    await broker.submit(bracket_intent(), COID, START)
    clock.advance()

    order = await broker.cancel(COID, clock())

    assert order.status is OrderStatus.CANCELED
    assert "alpaca: canceled" in order.reason
    entry = alpaca.order(COID)
    assert entry.status == "canceled"
    assert [alpaca.order(i).status for i in entry.leg_ids] == ["canceled", "canceled"]
    assert [r.path for r in server.requests_to("DELETE", ORDER_PATH)] == [f"/v2/orders/{entry.id}"]
    reported = await broker.sync()
    assert {o.client_order_id: o.status for o in reported.orders}[COID] is OrderStatus.CANCELED

    sent = len(server.requests)
    again = await broker.cancel(COID, clock())  # already cancelled: returned as is, no request
    assert again == order
    assert len(server.requests) == sent


async def test_cancel_when_order_is_filled_then_broker_error(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, server: FakeAlpacaServer
) -> None:
    broker = make_broker()
    await broker.submit(market_intent(), COID, START)
    alpaca.fill(COID, "100")
    await broker.sync()

    with pytest.raises(BrokerError, match="filled and cannot be cancelled"):
        await broker.cancel(COID, START)

    assert server.requests_to("DELETE", ORDER_PATH) == []


async def test_cancel_when_it_fills_before_alpaca_cancels_it_then_broker_error_with_the_final_state(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, server: FakeAlpacaServer
) -> None:
    broker = make_broker()
    await broker.submit(market_intent(), COID, START)
    alpaca.fill(COID, "100")  # this instance has not seen the fill yet

    with pytest.raises(BrokerError, match="filled"):
        await broker.cancel(COID, START)

    assert len(server.requests_to("DELETE", ORDER_PATH)) == 1  # Alpaca answered 422: not cancelable


async def test_cancel_when_the_order_is_unknown_everywhere_then_broker_error(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi
) -> None:
    broker = make_broker()

    with pytest.raises(BrokerError, match="no order"):
        await broker.cancel("never-submitted", START)


async def test_replace_stop_of_a_filled_bracket_then_one_patch_of_the_stop_leg_and_never_unprotected(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, server: FakeAlpacaServer, clock: ManualClock
) -> None:
    broker = make_broker()
    await broker.submit(bracket_intent(stop=95.0, target=110.0), COID, START)
    await broker.sync()
    alpaca.fill(COID, "100")
    await broker.sync()
    take_profit, old_stop = (alpaca.order(i) for i in alpaca.order(COID).leg_ids)
    coverage_before = len(alpaca.coverage())
    server.clear_log()
    clock.advance()

    moved = await broker.replace_stop(COID, 97.504, clock())

    patches = server.requests_to("PATCH", ORDER_PATH)
    assert [r.path for r in patches] == [f"/v2/orders/{old_stop.id}"]
    assert Decimal(str(patches[0].json()["stop_price"])) == Decimal("97.50")
    assert server.requests_to("DELETE", ORDER_PATH) == [] and server.requests_to("POST", ORDERS_PATH) == []
    assert moved.order_type is OrderType.STOP
    assert moved.status is OrderStatus.SUBMITTED
    assert moved.stop_price == pytest.approx(97.5)
    assert moved.client_order_id == f"{old_stop.client_order_id}-r1"
    assert moved.reason.startswith(f"stop-loss leg of {COID}: replaces {old_stop.client_order_id}")
    assert moved.strategy == "breakout"
    new_stop = alpaca.order(moved.client_order_id)
    assert (new_stop.id, new_stop.replaces, new_stop.stop_price) == (
        moved.broker_order_id,
        old_stop.id,
        Decimal("97.5"),
    )
    replaced = alpaca.order(old_stop.id)
    assert (replaced.status, replaced.replaced_by) == ("replaced", new_stop.id)
    assert alpaca.order(COID).leg_ids == [take_profit.id, new_stop.id]  # still one bracket: one cancels other
    # From the entry's fill on, every share was covered by a working stop at every step of the fake.
    covered_since_fill = alpaca.coverage()[coverage_before - 1 :]
    assert covered_since_fill and all(c.uncovered.get("AAPL", Decimal(0)) == 0 for c in covered_since_fill)

    reported = await broker.sync()
    states = {o.client_order_id: (o.status, o.reason) for o in reported.orders}
    assert states[old_stop.client_order_id][0] is OrderStatus.CANCELED
    assert f"replaced by {moved.client_order_id}" in states[old_stop.client_order_id][1]

    # The new leg still closes the position with one-cancels-other.
    alpaca.fill(moved.broker_order_id, "97.40")
    closed = await broker.sync()
    assert [(f.client_order_id, f.quantity) for f in closed.fills] == [(moved.client_order_id, 10)]
    assert {o.client_order_id: o.status for o in closed.orders}[take_profit.client_order_id] is OrderStatus.CANCELED


async def test_replace_stop_twice_by_the_legs_own_alpaca_id_then_replacement_ids_count_up(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi
) -> None:
    broker = make_broker()
    await broker.submit(bracket_intent(stop=95.0, target=110.0), COID, START)
    alpaca.fill(COID, "100")
    first = await broker.replace_stop(COID, 97.0, START)

    second = await broker.replace_stop(first.broker_order_id, 98.0, START)  # type: ignore[arg-type]

    assert second.client_order_id.endswith("-r2")
    assert second.client_order_id.removesuffix("-r2") == first.client_order_id.removesuffix("-r1")
    assert alpaca.order(second.client_order_id).stop_price == Decimal("98")


async def test_replace_stop_when_stop_would_reach_the_take_profit_then_broker_error_and_nothing_changes(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi
) -> None:
    broker = make_broker()
    await broker.submit(bracket_intent(stop=95.0, target=110.0), COID, START)
    alpaca.fill(COID, "100")
    stop_leg = alpaca.order(alpaca.order(COID).leg_ids[1])

    with pytest.raises(BrokerError, match="HTTP 422"):
        await broker.replace_stop(COID, 111.0, START)

    assert alpaca.order(stop_leg.id).status == "held"
    assert alpaca.order(stop_leg.id).stop_price == Decimal("95")


async def test_replace_stop_when_the_patch_answer_is_lost_then_the_replacement_is_looked_up_not_repeated(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, server: FakeAlpacaServer
) -> None:
    broker = make_broker(timeout_s=0.5)
    await broker.submit(bracket_intent(stop=95.0, target=110.0), COID, START)
    alpaca.fill(COID, "100")
    stop_leg = alpaca.order(alpaca.order(COID).leg_ids[1])
    alpaca.hang_next("PATCH", ORDER_PATH, seconds=30.0)  # lost before Alpaca processed it

    with pytest.raises(TemporaryBrokerError, match="no replacement exists"):
        await broker.replace_stop(COID, 97.0, START)

    assert len(server.requests_to("PATCH", ORDER_PATH)) == 1
    assert (
        server.requests_to("GET", ORDER_BY_CLIENT_ID_PATH)[-1].param("client_order_id")
        == f"{stop_leg.client_order_id}-r1"
    )
    assert alpaca.order(stop_leg.id).status == "held"  # the old stop still protects the position

    retried = await broker.replace_stop(COID, 97.0, START)
    assert retried.client_order_id == f"{stop_leg.client_order_id}-r1"


async def test_replace_stop_when_order_is_not_a_stop_then_broker_error(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi
) -> None:
    broker = make_broker()
    await broker.submit(market_intent(), COID, START)

    with pytest.raises(BrokerError, match="not a stop"):
        await broker.replace_stop(COID, 90.0, START)


async def test_open_orders_and_order_by_client_id_reflect_alpaca(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi
) -> None:
    broker = make_broker()
    await broker.submit(bracket_intent(), COID, START)
    alpaca.fill(COID, "100")
    alpaca.create_order(symbol="MSFT", qty=1, client_order_id="manual-2")

    working = await broker.open_orders()
    found = await broker.order_by_client_id("manual-2")
    missing = await broker.order_by_client_id("nope")

    entry = alpaca.order(COID)
    assert {o.client_order_id for o in working} == {
        alpaca.order(entry.leg_ids[0]).client_order_id,
        alpaca.order(entry.leg_ids[1]).client_order_id,
        "manual-2",
    }
    assert found is not None and found.broker_order_id == alpaca.order("manual-2").id
    assert missing is None

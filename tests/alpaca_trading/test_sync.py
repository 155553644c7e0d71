"""AlpacaBroker.sync: order updates and fills derived from Alpaca's cumulative fill state, restart-safe."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from collections.abc import Callable

import pytest

from core.brokers.alpaca import AlpacaBroker
from core.kernel.domain import Fill, OrderStatus, OrderType, Side
from tests.alpaca_trading.conftest import START, bracket_intent, market_intent
from tests.fakes.alpaca_server import FakeAlpacaServer
from tests.fakes.alpaca_trading import ORDER_PATH, ORDERS_PATH, FakeTradingApi, ManualClock

pytestmark = pytest.mark.shared

COID = "it-1-AAPL-buy"


def by_id(fills: tuple[Fill, ...] | list[Fill]) -> dict[str, Fill]:
    return {f.fill_id: f for f in fills}


async def test_sync_when_an_order_fills_partially_then_fully_then_two_fills_whose_sums_match(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, clock: ManualClock
) -> None:
    broker = make_broker()
    await broker.submit(market_intent(quantity=10), COID, START)
    first_sync = await broker.sync()
    assert [o.status for o in first_sync.orders] == [OrderStatus.SUBMITTED]
    assert first_sync.fills == ()

    clock.advance(timedelta(minutes=1))
    alpaca.fill(COID, "100.00", 4)
    partial = await broker.sync()
    clock.advance(timedelta(minutes=1))
    alpaca.fill(COID, "102.50")
    full = await broker.sync()
    quiet = await broker.sync()

    (fill_1,) = partial.fills
    (fill_2,) = full.fills
    assert (fill_1.fill_id, fill_1.quantity, fill_1.price) == (f"{COID}@4", 4, Decimal("100.0000"))
    assert (fill_2.fill_id, fill_2.quantity, fill_2.price) == (f"{COID}@10", 6, Decimal("102.5000"))
    assert fill_1.quantity + fill_2.quantity == 10
    assert fill_1.quantity * fill_1.price + fill_2.quantity * fill_2.price == Decimal("1015.00")
    assert fill_1.side is Side.BUY and fill_1.commission == 0
    assert fill_1.filled_at == START + timedelta(minutes=1)
    assert fill_2.filled_at == START + timedelta(minutes=2)
    assert [(o.status, o.filled_quantity) for o in partial.orders] == [(OrderStatus.PARTIALLY_FILLED, 4)]
    assert [(o.status, o.filled_quantity) for o in full.orders] == [(OrderStatus.FILLED, 10)]
    assert full.orders[0].average_fill_price == pytest.approx(101.5)
    assert quiet.fills == () and quiet.orders == ()


async def test_sync_when_several_executions_happen_between_polls_then_one_fill_at_their_average_price(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, clock: ManualClock
) -> None:
    broker = make_broker()
    await broker.submit(market_intent(quantity=9), COID, START)
    await broker.sync()
    alpaca.fill(COID, "10.00", 2)
    alpaca.fill(COID, "10.30", 3)
    first = await broker.sync()
    alpaca.fill(COID, "11.00", 4)
    second = await broker.sync()

    assert [(f.quantity, f.price) for f in first.fills] == [(5, Decimal("10.1800"))]  # (20 + 30.9) / 5
    assert [(f.quantity, f.price) for f in second.fills] == [(4, Decimal("11.0000"))]


async def test_sync_after_restart_when_resumed_from_the_ledger_then_only_new_fills_with_stable_ids(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, clock: ManualClock
) -> None:
    before = make_broker()
    submitted = await before.submit(market_intent(quantity=10), COID, START)
    await before.sync()
    clock.advance(timedelta(minutes=1))
    alpaca.fill(COID, "100.00", 4)
    partial = await before.sync()
    ledger_orders = [o for o in partial.orders] or [submitted]
    ledger_fills = list(partial.fills)
    before.close()

    # The process restarts; meanwhile the rest of the order fills.
    clock.advance(timedelta(minutes=1))
    alpaca.fill(COID, "103.00")
    after = make_broker()
    after.resume(orders=ledger_orders, fills=ledger_fills)
    resumed = await after.sync()

    assert [(f.fill_id, f.quantity, f.price) for f in resumed.fills] == [(f"{COID}@10", 6, Decimal("103.0000"))]
    assert set(by_id(ledger_fills)).isdisjoint(by_id(resumed.fills))
    assert [(o.client_order_id, o.status) for o in resumed.orders] == [(COID, OrderStatus.FILLED)]

    # Another restart with everything recorded: nothing is reported again.
    again = make_broker()
    again.resume(orders=list(resumed.orders), fills=ledger_fills + list(resumed.fills))
    nothing = await again.sync()
    assert nothing.fills == ()
    assert nothing.orders == ()

    # Fill ids depend on the execution state only: an instance resumed from the same ledger derives the same fill.
    twin = make_broker()
    twin.resume(orders=ledger_orders, fills=ledger_fills)
    twin_result = await twin.sync()
    assert twin_result.fills == resumed.fills


async def test_sync_when_an_order_submitted_before_the_previous_sync_fills_later_then_its_fill_is_found(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, server: FakeAlpacaServer, clock: ManualClock
) -> None:
    broker = make_broker()
    await broker.submit(market_intent(quantity=5), COID, START)
    await broker.sync()
    clock.advance(timedelta(days=2))
    await broker.sync()  # the order is now older than the "submitted after" window of later syncs
    clock.advance(timedelta(days=2))
    server.clear_log()
    alpaca.fill(COID, "50.00")  # it leaves the open list: only a read by id can see it

    result = await broker.sync()

    assert [(f.client_order_id, f.quantity, f.price) for f in result.fills] == [(COID, 5, Decimal("50.0000"))]
    assert [r.path for r in server.requests_to("GET", ORDER_PATH)] == [f"/v2/orders/{alpaca.order(COID).id}"]


async def test_sync_when_a_bracket_entry_fills_and_then_its_stop_fills_then_fills_and_one_cancels_other_reported(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, clock: ManualClock
) -> None:
    broker = make_broker()
    await broker.submit(bracket_intent(stop=95.0, target=110.0), COID, START)
    opened = await broker.sync()
    entry = alpaca.order(COID)
    take_profit, stop_loss = (alpaca.order(i) for i in entry.leg_ids)
    assert {o.client_order_id: (o.order_type, o.status) for o in opened.orders} == {
        COID: (OrderType.BRACKET, OrderStatus.SUBMITTED),
        take_profit.client_order_id: (OrderType.LIMIT, OrderStatus.SUBMITTED),
        stop_loss.client_order_id: (OrderType.STOP, OrderStatus.SUBMITTED),
    }
    legs = {o.client_order_id: o for o in opened.orders if o.client_order_id != COID}
    assert legs[stop_loss.client_order_id].reason == f"stop-loss leg of {COID}"
    assert legs[stop_loss.client_order_id].stop_price == pytest.approx(95.0)
    assert legs[take_profit.client_order_id].limit_price == pytest.approx(110.0)
    assert all(o.strategy == "breakout" for o in opened.orders)

    clock.advance(timedelta(hours=1))
    alpaca.fill(COID, "100.00")
    entered = await broker.sync()
    clock.advance(timedelta(days=3))
    alpaca.fill(stop_loss.id, "94.90")
    stopped = await broker.sync()

    assert [(f.client_order_id, f.side, f.quantity) for f in entered.fills] == [(COID, Side.BUY, 10)]
    assert [(f.client_order_id, f.side, f.quantity, f.price) for f in stopped.fills] == [
        (stop_loss.client_order_id, Side.SELL, 10, Decimal("94.9000"))
    ]
    statuses = {o.client_order_id: o.status for o in stopped.orders}
    assert statuses == {
        stop_loss.client_order_id: OrderStatus.FILLED,
        take_profit.client_order_id: OrderStatus.CANCELED,
    }


async def test_sync_when_alpaca_has_an_order_this_instance_did_not_submit_then_it_is_adopted_and_reported(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, clock: ManualClock
) -> None:
    broker = make_broker()
    await broker.sync()
    clock.advance(timedelta(minutes=1))
    manual = alpaca.create_order(
        symbol="MSFT", qty=3, client_order_id="manual-1", type="limit", time_in_force="gtc", limit_price=Decimal("400")
    )
    alpaca.fill("manual-1", "399.50")  # finished before the next poll: only the "submitted since" listing shows it
    clock.advance(timedelta(minutes=1))

    result = await broker.sync()

    (order,) = result.orders
    assert (order.client_order_id, order.status, order.order_type, order.broker_order_id) == (
        "manual-1",
        OrderStatus.FILLED,
        OrderType.LIMIT,
        manual.id,
    )
    assert "adopted" in order.reason
    assert [(f.fill_id, f.quantity) for f in result.fills] == [("manual-1@3", 3)]


async def test_sync_lists_orders_with_nested_legs_and_the_previous_sync_as_lower_bound(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, server: FakeAlpacaServer, clock: ManualClock
) -> None:
    broker = make_broker()
    await broker.sync()
    clock.advance(timedelta(hours=1))
    server.clear_log()

    await broker.sync()

    listings = server.requests_to("GET", ORDERS_PATH)
    assert [r.param("status") for r in listings] == ["open", "all"]
    assert all(r.param("nested") in ("True", "true") for r in listings)
    assert listings[1].param("after") is not None
    assert listings[1].param("after").startswith((START - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M"))


async def test_sync_after_restart_when_a_working_bracket_is_resumed_then_its_stop_and_legs_are_kept(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, clock: ManualClock
) -> None:
    before = make_broker()
    await before.submit(bracket_intent(stop=95.0, target=110.0), COID, START)
    ledger = list((await before.sync()).orders)
    clock.advance(timedelta(minutes=1))
    alpaca.fill(COID, "100.00", 3)

    after = make_broker()
    after.resume(orders=ledger, fills=[])
    result = await after.sync()

    entry = {o.client_order_id: o for o in result.orders}[COID]
    assert (entry.status, entry.filled_quantity, entry.order_type) == (
        OrderStatus.PARTIALLY_FILLED,
        3,
        OrderType.BRACKET,
    )
    assert entry.stop_price == pytest.approx(95.0)
    assert [(f.fill_id, f.quantity) for f in result.fills] == [(f"{COID}@3", 3)]
    assert {o.client_order_id for o in result.orders} == {COID}  # the legs did not change: not reported again

"""AlpacaBroker.submit against the fake trading API: shapes on the wire, idempotency, lost answers, rejections."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from collections.abc import Callable

import pytest

from core.brokers.alpaca import AlpacaBroker
from core.brokers.base import BrokerError, TemporaryBrokerError
from core.kernel.domain import OrderStatus, OrderType, Side
from tests.alpaca.conftest import FakeTime
from tests.alpaca_trading.conftest import START, bracket_intent, market_intent
from tests.fakes.alpaca_server import FakeAlpacaServer, Hang, Reply, empty_body, malformed_json, server_error
from tests.fakes.alpaca_trading import ORDER_BY_CLIENT_ID_PATH, ORDER_PATH, ORDERS_PATH, FakeTradingApi, ManualClock

pytestmark = pytest.mark.shared

COID = "it-20240304-AAPL-buy"


def posted_bodies(server: FakeAlpacaServer) -> list[dict]:
    return [request.json() for request in server.requests_to("POST", ORDERS_PATH)]


async def test_submit_when_entry_has_stop_and_target_then_one_gtc_bracket_with_legs_and_client_id(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, server: FakeAlpacaServer
) -> None:
    alpaca.set_price("AAPL", "100")
    broker = make_broker()

    order = await broker.submit(bracket_intent(stop=95.123, target=110.456), COID, START)

    (body,) = posted_bodies(server)
    assert body["order_class"] == "bracket"
    assert body["type"] == "market"
    assert body["time_in_force"] == "gtc"
    assert body["side"] == "buy"
    assert body["client_order_id"] == COID
    assert Decimal(str(body["qty"])) == 10
    assert Decimal(str(body["take_profit"]["limit_price"])) == Decimal("110.46")  # rounded to the cent
    assert Decimal(str(body["stop_loss"]["stop_price"])) == Decimal("95.12")
    assert order.status is OrderStatus.SUBMITTED
    assert order.order_type is OrderType.BRACKET
    assert order.client_order_id == COID
    assert order.stop_price == pytest.approx(95.12)
    assert order.submitted_at == START
    placed = alpaca.order(COID)
    assert order.broker_order_id == placed.id
    legs = [alpaca.order(leg_id) for leg_id in placed.leg_ids]
    assert sorted((leg.type, leg.side, leg.status) for leg in legs) == [
        ("limit", "sell", "held"),
        ("stop", "sell", "held"),
    ]


async def test_submit_when_market_intent_carries_stop_and_target_then_bracket(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, server: FakeAlpacaServer
) -> None:
    broker = make_broker()

    order = await broker.submit(bracket_intent(order_type=OrderType.MARKET), COID, START)

    assert posted_bodies(server)[0]["order_class"] == "bracket"
    assert order.order_type is OrderType.BRACKET


async def test_submit_when_brackets_disabled_then_plain_day_market_order_and_reason_says_so(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, server: FakeAlpacaServer
) -> None:
    broker = make_broker(use_brackets=False)

    order = await broker.submit(bracket_intent(), COID, START)

    (body,) = posted_bodies(server)
    assert body.get("order_class") in (None, "simple")
    assert "take_profit" not in body and "stop_loss" not in body
    assert body["time_in_force"] == "day"
    assert order.order_type is OrderType.MARKET
    assert "use_brackets=False" in order.reason
    assert alpaca.order(COID).leg_ids == []


async def test_submit_when_bracket_prices_are_below_one_dollar_then_they_keep_four_decimals(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, server: FakeAlpacaServer
) -> None:
    broker = make_broker()
    intent = bracket_intent("PENNY", 1000, price=0.5, stop=0.45678, target=0.61234)

    order = await broker.submit(intent, COID, START)

    (body,) = posted_bodies(server)
    assert Decimal(str(body["stop_loss"]["stop_price"])) == Decimal("0.4568")
    assert Decimal(str(body["take_profit"]["limit_price"])) == Decimal("0.6123")
    assert order.status is OrderStatus.SUBMITTED


async def test_submit_when_id_already_known_then_returned_without_a_request(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, server: FakeAlpacaServer
) -> None:
    broker = make_broker()
    first = await broker.submit(bracket_intent(), COID, START)
    sent = len(server.requests)

    again = await broker.submit(bracket_intent(), COID, START + timedelta(minutes=1))

    assert again == first
    assert len(server.requests) == sent
    assert alpaca.count_with_client_id(COID) == 1


async def test_submit_when_alpaca_already_has_the_client_order_id_then_existing_order_is_returned(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, server: FakeAlpacaServer
) -> None:
    existing = alpaca.create_order(symbol="AAPL", qty=10, client_order_id=COID)  # e.g. by the process before a crash
    broker = make_broker()

    order = await broker.submit(market_intent(), COID, START)

    assert [r.method + " " + r.route for r in server.requests] == [
        "POST /v2/orders",
        f"GET {ORDER_BY_CLIENT_ID_PATH}",
    ]
    assert alpaca.count_with_client_id(COID) == 1
    assert len(alpaca.top_level_orders()) == 1
    assert order.broker_order_id == existing.id
    assert order.status is OrderStatus.SUBMITTED
    assert order.strategy == "breakout"


async def test_submit_when_rate_limited_once_then_retried_after_retry_after_and_placed_once(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, server: FakeAlpacaServer, fake_time: FakeTime
) -> None:
    alpaca.rate_limit_next("POST", ORDERS_PATH, retry_after=0.5)
    broker = make_broker()

    order = await broker.submit(bracket_intent(), COID, START)

    assert order.status is OrderStatus.SUBMITTED
    assert len(server.requests_to("POST", ORDERS_PATH)) == 2
    assert alpaca.count_with_client_id(COID) == 1
    assert sum(fake_time.sleeps) >= 0.5  # the retry waited (virtual time) for the server's Retry-After


async def test_submit_when_rate_limit_outlasts_the_retries_then_temporary_error(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, server: FakeAlpacaServer
) -> None:
    alpaca.rate_limit_next("POST", ORDERS_PATH, retry_after=0.1, times=2)
    broker = make_broker(retry_attempts=1)

    with pytest.raises(TemporaryBrokerError, match="HTTP 429"):
        await broker.submit(bracket_intent(), COID, START)

    assert alpaca.count_with_client_id(COID) == 0


async def test_submit_when_order_is_accepted_but_answer_is_500_then_found_by_client_id_not_resubmitted(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, server: FakeAlpacaServer
) -> None:
    alpaca.accept_then(server_error(500))
    broker = make_broker()

    order = await broker.submit(bracket_intent(), COID, START)

    assert [r.method + " " + r.route for r in server.requests] == [
        "POST /v2/orders",
        f"GET {ORDER_BY_CLIENT_ID_PATH}",
    ]
    assert alpaca.count_with_client_id(COID) == 1
    assert order.status is OrderStatus.SUBMITTED
    assert order.broker_order_id == alpaca.order(COID).id
    assert order.order_type is OrderType.BRACKET
    assert order.strategy == "breakout"


async def test_submit_when_order_is_accepted_but_connection_hangs_then_timeout_lookup_and_exactly_one_order(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, server: FakeAlpacaServer
) -> None:
    alpaca.accept_then(Hang(30.0))
    broker = make_broker(timeout_s=0.5)

    order = await broker.submit(bracket_intent(), COID, START)

    assert len(server.requests_to("POST", ORDERS_PATH)) == 1
    assert len(server.requests_to("GET", ORDER_BY_CLIENT_ID_PATH)) == 1
    assert alpaca.count_with_client_id(COID) == 1
    assert len(alpaca.top_level_orders()) == 1
    assert order.broker_order_id == alpaca.order(COID).id


async def test_submit_when_unprocessed_request_times_out_then_looked_up_and_resubmitted_once_with_the_same_id(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, server: FakeAlpacaServer
) -> None:
    alpaca.hang_next("POST", ORDERS_PATH, seconds=30.0)
    broker = make_broker(timeout_s=0.5)

    order = await broker.submit(bracket_intent(), COID, START)

    assert [r.method + " " + r.route for r in server.requests] == [
        "POST /v2/orders",
        f"GET {ORDER_BY_CLIENT_ID_PATH}",  # 404: not there, so one more attempt is safe
        "POST /v2/orders",
    ]
    assert [body["client_order_id"] for body in posted_bodies(server)] == [COID, COID]
    assert alpaca.count_with_client_id(COID) == 1
    assert order.status is OrderStatus.SUBMITTED


async def test_submit_when_every_attempt_fails_then_temporary_error_and_a_later_submit_looks_up_first(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, server: FakeAlpacaServer
) -> None:
    alpaca.fail_next("POST", ORDERS_PATH, status=503, times=2)
    broker = make_broker()

    with pytest.raises(TemporaryBrokerError, match="not placed after 2 attempt"):
        await broker.submit(bracket_intent(), COID, START)

    assert len(server.requests_to("POST", ORDERS_PATH)) == 2
    assert len(server.requests_to("GET", ORDER_BY_CLIENT_ID_PATH)) == 2
    assert alpaca.count_with_client_id(COID) == 0

    server.clear_log()
    order = await broker.submit(bracket_intent(), COID, START)

    assert [r.method + " " + r.route for r in server.requests] == [
        f"GET {ORDER_BY_CLIENT_ID_PATH}",
        "POST /v2/orders",
    ]
    assert order.status is OrderStatus.SUBMITTED
    assert alpaca.count_with_client_id(COID) == 1


async def test_submit_when_lookup_after_a_lost_answer_also_fails_then_no_blind_resubmission(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, server: FakeAlpacaServer
) -> None:
    alpaca.accept_then(server_error(502))
    alpaca.fail_next("GET", ORDER_BY_CLIENT_ID_PATH, status=500, times=3)  # the lookup and its 2 retries
    broker = make_broker()

    with pytest.raises(TemporaryBrokerError, match="looking up"):
        await broker.submit(bracket_intent(), COID, START)

    assert len(server.requests_to("POST", ORDERS_PATH)) == 1
    assert alpaca.count_with_client_id(COID) == 1

    # The next sync resolves the doubt: the order that was accepted is reported, not placed again.
    result = await broker.sync()
    assert [o.client_order_id for o in result.orders if o.client_order_id == COID] == [COID]
    assert len(server.requests_to("POST", ORDERS_PATH)) == 1


async def test_submit_when_buying_power_is_insufficient_then_rejected_with_alpacas_reason(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, server: FakeAlpacaServer
) -> None:
    alpaca.set_price("AAPL", "100")
    broker = make_broker()

    order = await broker.submit(bracket_intent(quantity=2_000), COID, START)

    assert order.status is OrderStatus.REJECTED
    assert "HTTP 403" in order.reason and "insufficient buying power" in order.reason
    assert order.broker_order_id is None
    assert alpaca.orders() == []

    again = await broker.submit(bracket_intent(quantity=2_000), COID, START)  # same id: same answer, no request
    assert again == order
    assert len(server.requests_to("POST", ORDERS_PATH)) == 1
    reported = await broker.sync()
    assert [o.status for o in reported.orders] == [OrderStatus.REJECTED]


async def test_submit_when_alpaca_finds_the_order_invalid_then_rejected_not_raised(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi
) -> None:
    alpaca.set_price("AAPL", "100")
    broker = make_broker()

    # Take-profit below the current price: Alpaca's base-price rule refuses it with 422.
    order = await broker.submit(bracket_intent(stop=90.0, target=99.5), COID, START)

    assert order.status is OrderStatus.REJECTED
    assert "HTTP 422" in order.reason and "base_price" in order.reason


async def test_submit_when_bracket_stop_is_not_below_target_then_rejected_without_a_request(
    make_broker: Callable[..., AlpacaBroker], server: FakeAlpacaServer, alpaca: FakeTradingApi
) -> None:
    broker = make_broker()

    order = await broker.submit(bracket_intent(stop=110.0, target=105.0), COID, START)

    assert order.status is OrderStatus.REJECTED
    assert "must be below take_profit" in order.reason
    assert server.requests == []


async def test_submit_when_client_order_id_is_too_long_then_broker_error_without_a_request(
    make_broker: Callable[..., AlpacaBroker], server: FakeAlpacaServer, alpaca: FakeTradingApi
) -> None:
    broker = make_broker()

    with pytest.raises(BrokerError, match="at most 128"):
        await broker.submit(bracket_intent(), "x" * 129, START)

    assert server.requests == []


async def test_submit_exit_when_bracket_legs_hold_the_shares_then_legs_are_cancelled_and_the_sell_is_placed(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, server: FakeAlpacaServer, clock: ManualClock
) -> None:
    broker = make_broker()
    await broker.submit(bracket_intent(), COID, START)
    alpaca.fill(COID, "100")
    clock.advance()

    exit_order = await broker.submit(market_intent(side=Side.SELL), "exit-AAPL", clock())

    assert exit_order.status is OrderStatus.SUBMITTED
    assert exit_order.order_type is OrderType.MARKET
    legs = [alpaca.order(i) for i in alpaca.order(COID).leg_ids]
    assert [leg.status for leg in legs] == ["canceled", "canceled"]
    assert server.requests_to("DELETE", ORDER_PATH)  # the legs were cancelled before the sell was sent
    assert server.requests.index(server.requests_to("DELETE", ORDER_PATH)[-1]) < server.requests.index(
        server.requests_to("POST", ORDERS_PATH)[-1]
    )
    alpaca.fill("exit-AAPL", "101")
    assert alpaca.positions() == {}


async def test_submit_exit_when_release_is_disabled_then_alpaca_refuses_the_held_shares(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, server: FakeAlpacaServer
) -> None:
    broker = make_broker(release_shares_on_exit=False)
    await broker.submit(bracket_intent(), COID, START)
    alpaca.fill(COID, "100")

    exit_order = await broker.submit(market_intent(side=Side.SELL), "exit-AAPL", START)

    assert exit_order.status is OrderStatus.REJECTED
    assert "insufficient qty available" in exit_order.reason
    assert server.requests_to("DELETE", ORDER_PATH) == []


async def test_submit_when_error_bodies_are_not_json_then_rejection_reason_is_the_text_and_5xx_is_looked_up(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, server: FakeAlpacaServer
) -> None:
    broker = make_broker()
    server.script("POST", ORDERS_PATH, Reply(403, body=b"<html>Forbidden by gateway</html>", content_type="text/html"))
    refused = await broker.submit(market_intent(), "plain-403", START)
    alpaca.accept_then(Reply(502, body=b"<html>Bad Gateway</html>", content_type="text/html"))
    accepted = await broker.submit(market_intent(), "plain-502", START)

    assert refused.status is OrderStatus.REJECTED
    assert "HTTP 403" in refused.reason and "Forbidden by gateway" in refused.reason
    assert accepted.status is OrderStatus.SUBMITTED
    assert accepted.broker_order_id == alpaca.order("plain-502").id
    assert alpaca.count_with_client_id("plain-502") == 1


@pytest.mark.parametrize("answer", [empty_body(200), malformed_json(200)], ids=["empty", "malformed"])
async def test_submit_when_accepted_but_the_answer_is_unreadable_then_looked_up_not_resubmitted(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, server: FakeAlpacaServer, answer: Reply
) -> None:
    alpaca.accept_then(answer)
    broker = make_broker()

    order = await broker.submit(bracket_intent(), COID, START)

    assert len(server.requests_to("POST", ORDERS_PATH)) == 1
    assert alpaca.count_with_client_id(COID) == 1
    assert order.broker_order_id == alpaca.order(COID).id

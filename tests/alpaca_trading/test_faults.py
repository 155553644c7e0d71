"""Transient faults, the iteration deadline, refused keys, unknown order statuses and the account-mode check of the
real alpaca-py TradingClient against the fake trading API."""

from __future__ import annotations

import re
from decimal import Decimal
from collections.abc import Callable

import pytest

from core.brokers.alpaca import AlpacaBroker
from core.brokers.base import BrokerAuthError, BrokerModeMismatch, TemporaryBrokerError
from core.kernel.domain import OrderStatus
from tests.alpaca.conftest import FakeTime
from tests.alpaca_trading.conftest import START, market_intent
from tests.fakes.alpaca_server import FakeAlpacaServer
from tests.fakes.alpaca_trading import ACCOUNT_PATH, ORDERS_PATH, FakeTradingApi, TradingSpec
from utils.deadline import TemporaryError, deadline_scope

pytestmark = pytest.mark.shared


async def test_read_when_a_5xx_passes_then_the_retry_answers(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, server: FakeAlpacaServer, fake_time: FakeTime
) -> None:
    alpaca.fail_next("GET", ACCOUNT_PATH, status=503, times=2)

    state = await make_broker().account()

    assert state.cash == Decimal("100000")
    assert len(server.requests_to("GET", ACCOUNT_PATH)) == 3
    assert fake_time.sleeps == [pytest.approx(0.5), pytest.approx(1.0)]  # capped exponential back-off


async def test_read_when_a_5xx_persists_then_a_temporary_error_after_the_retries(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, server: FakeAlpacaServer
) -> None:
    alpaca.fail_next("GET", ORDERS_PATH, status=500, times=3)

    with pytest.raises(TemporaryBrokerError, match="HTTP 500") as caught:
        await make_broker().sync()

    assert isinstance(caught.value, TemporaryError)
    assert len(server.requests_to("GET", ORDERS_PATH)) == 3


async def test_read_when_429_asks_for_an_hour_then_it_stops_at_the_deadline_without_waiting(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, server: FakeAlpacaServer, fake_time: FakeTime
) -> None:
    alpaca.rate_limit_next("GET", ACCOUNT_PATH, retry_after=3600, times=4)
    broker = make_broker()

    with deadline_scope(5.0), pytest.raises(TemporaryBrokerError, match="deadline"):
        await broker.account()

    assert len(server.requests_to("GET", ACCOUNT_PATH)) == 1  # the retry would have to wait beyond the deadline
    assert fake_time.sleeps == []  # no wait was even started


async def test_read_when_the_keys_are_refused_then_an_auth_error(make_broker: Callable[..., AlpacaBroker]) -> None:
    with pytest.raises(BrokerAuthError, match="HTTP 401") as caught:
        await make_broker(secret_key="not-the-secret").account()

    assert caught.value.status == 401


@pytest.mark.parametrize("raw_status", ["pending_review", "awaiting_risk_review"])
async def test_sync_when_an_order_has_a_status_the_sdk_or_spec_lacks_then_it_is_a_working_order_with_the_raw_status(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, raw_status: str
) -> None:
    broker = make_broker()
    await broker.submit(market_intent(quantity=5), "odd-1", START)
    alpaca.set_status("odd-1", raw_status)

    result = await broker.sync()
    state = await broker.account()
    alpaca.fill("odd-1", "20")  # it may still fill: it is tracked as working
    filled = await broker.sync()

    changed = {o.client_order_id: o for o in result.orders}
    if raw_status == "pending_review":  # alpaca-py knows this one: read as the working order it is
        assert (await broker.order_by_client_id("odd-1")).status is OrderStatus.FILLED
    else:
        assert changed["odd-1"].status is OrderStatus.SUBMITTED
        assert f"alpaca status '{raw_status}' (unknown: treated as working)" in changed["odd-1"].reason
        assert [o.client_order_id for o in state.open_orders] == ["odd-1"]
    assert [(f.client_order_id, f.quantity) for f in filled.fills] == [("odd-1", 5)]


async def test_identify_when_a_paper_broker_reaches_a_live_account_then_refused_without_its_digits(
    make_broker: Callable[..., AlpacaBroker], server: FakeAlpacaServer, trading_spec: TradingSpec, clock
) -> None:
    FakeTradingApi.install(server, trading_spec, clock=clock, account_number="312345678")

    with pytest.raises(BrokerModeMismatch, match="LIVE account") as caught:
        await make_broker().identify()

    assert not re.search(r"\d", str(caught.value).replace("PA", ""))
    identity = await make_broker(paper=False).identify()
    assert identity.masked == "****5678" and "312345678" not in repr(identity)


async def test_identify_when_a_live_broker_reaches_a_paper_account_then_refused(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi
) -> None:
    with pytest.raises(BrokerModeMismatch, match="paper account"):
        await make_broker(paper=False).identify()
    assert (await make_broker().identify()).paper

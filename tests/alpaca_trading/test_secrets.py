"""The API keys never appear in exceptions, order reasons, reprs or log output of the trading broker."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator

import pytest
from loguru import logger

from core.brokers.alpaca import AlpacaBroker
from core.brokers.base import BrokerError
from core.kernel.domain import OrderStatus
from tests.alpaca_trading.conftest import API_KEY, SECRET_KEY, START, bracket_intent, market_intent
from tests.fakes.alpaca_server import FakeAlpacaServer, RecordedRequest, Reply
from tests.fakes.alpaca_trading import ORDER_BY_CLIENT_ID_PATH, ORDERS_PATH, FakeTradingApi, TradingSpec

pytestmark = pytest.mark.shared

SECRETS = (API_KEY, SECRET_KEY)


@pytest.fixture
def captured_logs(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """Everything logged at DEBUG and above, through loguru and through the standard library (urllib3...)."""
    caplog.set_level(logging.DEBUG)
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="DEBUG", backtrace=True, diagnose=True)
    try:
        yield lines
    finally:
        logger.remove(sink)
        lines.extend(record.getMessage() for record in caplog.records)


def assert_no_secret(texts: list[str]) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"secret leaked in: {text[:200]!r}"


def echo_credentials(status: int) -> Callable[[RecordedRequest], Reply]:
    """A misbehaving server (or proxy) that echoes the credentials back in its error body."""

    def handler(request: RecordedRequest) -> Reply:
        echoed = f"{request.header('APCA-API-KEY-ID')}:{request.header('APCA-API-SECRET-KEY')}"
        return Reply(status, json={"code": 40010000 + status, "message": f"rejected {echoed}"})

    return handler


async def test_errors_reasons_logs_and_reprs_never_contain_the_credentials(
    make_broker: Callable[..., AlpacaBroker],
    alpaca: FakeTradingApi,
    server: FakeAlpacaServer,
    trading_spec: TradingSpec,
    captured_logs: list[str],
) -> None:
    texts: list[str] = []
    broker = make_broker(timeout_s=0.5, retry_attempts=1)

    # Lost answers and failed lookups, rate limits, hangs.
    alpaca.fail_next("POST", ORDERS_PATH, status=500, times=2)
    alpaca.hang_next("GET", ORDER_BY_CLIENT_ID_PATH, seconds=30.0)
    with pytest.raises(BrokerError) as caught:
        await broker.submit(bracket_intent(), "s-1", START)
    texts += [str(caught.value), repr(caught.value)]
    alpaca.rate_limit_next("GET", ORDERS_PATH, retry_after=0.1, times=2)
    with pytest.raises(BrokerError) as caught:
        await broker.sync()
    texts += [str(caught.value), repr(caught.value)]

    # A server that echoes the keys: in a rejection reason (403) and in a permanent error (GET 400).
    server.route("POST", ORDERS_PATH, echo_credentials(403), spec=trading_spec)
    rejected = await broker.submit(market_intent(), "s-2", START)
    assert rejected.status is OrderStatus.REJECTED
    texts += [rejected.reason, repr(rejected)]
    server.route("GET", ORDER_BY_CLIENT_ID_PATH, echo_credentials(400), spec=trading_spec)
    with pytest.raises(BrokerError) as caught:
        await broker.order_by_client_id("s-3")
    texts += [str(caught.value), repr(caught.value)]
    assert "rejected ***:***" in str(caught.value)

    # Wrong keys (401) and a closed port.
    with pytest.raises(BrokerError) as caught:
        await make_broker(secret_key="not-the-secret").account()
    texts += [str(caught.value), repr(caught.value)]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(BrokerError) as caught:
        await make_broker(url_override=f"http://127.0.0.1:{closed_port}").account()
    texts += [str(caught.value), repr(caught.value)]

    # Construction errors.
    for bad in ({"url_override": "http://127.0.0.1:1/v2"}, {"order_lookup_attempts": 0}, {"timeout_s": -1}):
        with pytest.raises(ValueError) as refused:
            make_broker(**bad)
        texts += [str(refused.value), repr(refused.value)]

    # The keys did reach the server, and failures were logged.
    assert any(r.header("APCA-API-SECRET-KEY") == SECRET_KEY for r in server.requests)
    assert any("rejected" in line for line in captured_logs)
    assert any("doubt" in line for line in captured_logs)
    assert_no_secret(texts)
    assert_no_secret(captured_logs)
    assert_no_secret([repr(broker), str(broker), repr(broker._adapter)])

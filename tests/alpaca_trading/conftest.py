"""Fixtures for the Alpaca trading suite: the official trading spec, a fake trading API on 127.0.0.1, a shared
manual clock, a virtual-time rate limiter and a factory of real :class:`core.brokers.alpaca.AlpacaBroker`s."""

from __future__ import annotations

from datetime import UTC, datetime
from collections.abc import Callable, Iterator

import pytest

from core.brokers.alpaca import AlpacaBroker
from core.kernel.domain import OrderIntent, OrderType, Side
from tests.alpaca.conftest import FakeTime
from tests.fakes.alpaca_server import FakeAlpacaServer
from tests.fakes.alpaca_trading import TRADING_SPEC_PATH, FakeTradingApi, ManualClock, TradingSpec
from utils.rate_limiter import SlidingWindowRateLimiter

# Distinctive values: the leak tests search every message and log line for them.
API_KEY = "PKTRADECANARY77Q1X"
SECRET_KEY = "tRaDeSeCrEt-canary-5e4d3c2b1a0f9e8d7c6b"
START = datetime(2024, 3, 4, 15, 0, tzinfo=UTC)  # a Monday, 10:00 New York: the market is open


@pytest.fixture(scope="session")
def trading_spec() -> TradingSpec:
    if not TRADING_SPEC_PATH.is_file():
        pytest.skip(f"needs Alpaca's official spec at {TRADING_SPEC_PATH} (../shared is absent)")
    return TradingSpec.load(TRADING_SPEC_PATH)


@pytest.fixture
def clock() -> ManualClock:
    """One clock for the fake (order timestamps) and the broker (sync cursor, account time)."""
    return ManualClock(START)


@pytest.fixture
def server(trading_spec: TradingSpec) -> Iterator[FakeAlpacaServer]:
    """A running fake with credentials; fails the test at teardown if it saw a spec violation."""
    fake = FakeAlpacaServer(api_key=API_KEY, secret_key=SECRET_KEY).start()
    try:
        yield fake
    finally:
        fake.stop()
    fake.assert_clean()


@pytest.fixture
def alpaca(server: FakeAlpacaServer, trading_spec: TradingSpec, clock: ManualClock) -> FakeTradingApi:
    return FakeTradingApi.install(server, trading_spec, clock=clock)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def limiter(fake_time: FakeTime) -> SlidingWindowRateLimiter:
    return SlidingWindowRateLimiter(200, 60.0, clock=fake_time.clock, sleep=fake_time.sleep)


@pytest.fixture
def make_broker(
    server: FakeAlpacaServer, alpaca: FakeTradingApi, limiter: SlidingWindowRateLimiter, clock: ManualClock
) -> Iterator[Callable[..., AlpacaBroker]]:
    created: list[AlpacaBroker] = []

    def factory(**overrides: object) -> AlpacaBroker:
        options: dict[str, object] = {
            "url_override": server.base_url,
            "limiter": limiter,
            "clock": clock,
            "timeout_s": 2.0,
        }
        options.update(overrides)
        broker = AlpacaBroker(
            str(options.pop("api_key", API_KEY)),
            str(options.pop("secret_key", SECRET_KEY)),
            **options,  # type: ignore[arg-type]
        )
        created.append(broker)
        return broker

    yield factory
    for broker in created:
        broker.close()


def bracket_intent(
    symbol: str = "AAPL",
    quantity: int = 10,
    *,
    price: float = 100.0,
    stop: float = 95.0,
    target: float = 110.0,
    order_type: OrderType = OrderType.BRACKET,
) -> OrderIntent:
    return OrderIntent(
        symbol=symbol,
        side=Side.BUY,
        quantity=quantity,
        order_type=order_type,
        reference_price=price,
        strategy="breakout",
        confidence=0.7,
        reason=f"BUY {quantity} {symbol}",
        stop_loss=stop,
        take_profit=target,
    )


def market_intent(symbol: str = "AAPL", quantity: int = 10, side: Side = Side.BUY, price: float = 100.0) -> OrderIntent:
    return OrderIntent(
        symbol=symbol,
        side=side,
        quantity=quantity,
        order_type=OrderType.MARKET,
        reference_price=price,
        strategy="breakout",
        confidence=0.6,
        reason=f"{side.value.upper()} {quantity} {symbol}",
    )

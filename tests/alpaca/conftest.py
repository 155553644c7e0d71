"""Fixtures for the Alpaca suites: the official spec, the fake server, a fake clock and a tiny bar cache."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

import pandas as pd
import pytest

from core.data.alpaca import AlpacaBarProvider
from tests.fakes.alpaca_server import (
    MARKET_DATA_SPEC_PATH,
    FakeAlpacaServer,
    OpenApiSpec,
    StockBarsEndpoint,
)
from utils.rate_limiter import SlidingWindowRateLimiter

# Distinctive values: the leak tests search every message and log line for them.
API_KEY = "PKTESTKEYLEAKCANARY0042"
SECRET_KEY = "sEcReTcAnArY-9f8e7d6c5b4a3928171605f4e3d2c1b0a9"


class FakeTime:
    """A monotonic clock that moves only when something sleeps on it (sync or async); thread-safe."""

    def __init__(self, start: float = 1_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def clock(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._now += seconds

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    async def async_sleep(self, seconds: float) -> None:
        # Virtual time: concurrent sleepers overlap, so the clock only moves to the latest wake-up time.
        with self._lock:
            self.sleeps.append(seconds)
            target = self._now + seconds
        await asyncio.sleep(0)
        with self._lock:
            self._now = max(self._now, target)


class MemoryBarCache:
    """In-test implementation of ``core.data.alpaca.BarCache``: newer bars replace cached ones by timestamp."""

    def __init__(self) -> None:
        self.frames: dict[str, pd.DataFrame] = {}
        self.merges: list[tuple[str, int]] = []

    def load(self, symbol: str) -> pd.DataFrame | None:
        frame = self.frames.get(symbol)
        return None if frame is None else frame.copy()

    def last_timestamp(self, symbol: str) -> pd.Timestamp | None:
        frame = self.frames.get(symbol)
        return None if frame is None or frame.empty else frame.index[-1]

    def merge(self, symbol: str, frame: pd.DataFrame) -> pd.DataFrame:
        self.merges.append((symbol, len(frame)))
        cached = self.frames.get(symbol)
        combined = frame if cached is None else pd.concat([cached, frame])
        merged = combined[~combined.index.duplicated(keep="last")].sort_index()
        self.frames[symbol] = merged
        return merged.copy()


@pytest.fixture(scope="session")
def market_data_spec() -> OpenApiSpec:
    if not MARKET_DATA_SPEC_PATH.is_file():
        pytest.skip(f"needs Alpaca's official spec at {MARKET_DATA_SPEC_PATH} (../shared is absent)")
    return OpenApiSpec.load(MARKET_DATA_SPEC_PATH)


@pytest.fixture
def fake_alpaca(market_data_spec: OpenApiSpec) -> Iterator[FakeAlpacaServer]:
    """A running fake with credentials; fails the test at teardown if it saw a spec violation."""
    server = FakeAlpacaServer(api_key=API_KEY, secret_key=SECRET_KEY).start()
    try:
        yield server
    finally:
        server.stop()
    server.assert_clean()


@pytest.fixture
def bars_endpoint(fake_alpaca: FakeAlpacaServer, market_data_spec: OpenApiSpec) -> StockBarsEndpoint:
    return StockBarsEndpoint.install(fake_alpaca, market_data_spec)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def limiter(fake_time: FakeTime) -> SlidingWindowRateLimiter:
    return SlidingWindowRateLimiter(200, 60.0, clock=fake_time.clock, sleep=fake_time.sleep)


@pytest.fixture
def make_provider(
    fake_alpaca: FakeAlpacaServer, limiter: SlidingWindowRateLimiter
) -> Iterator[Callable[..., AlpacaBarProvider]]:
    created: list[AlpacaBarProvider] = []

    def factory(**overrides: object) -> AlpacaBarProvider:
        options: dict[str, object] = {"url_override": fake_alpaca.base_url, "limiter": limiter, "timeout_s": 5.0}
        options.update(overrides)
        provider = AlpacaBarProvider(
            str(options.pop("api_key", API_KEY)),
            str(options.pop("secret_key", SECRET_KEY)),
            **options,  # type: ignore[arg-type]
        )
        created.append(provider)
        return provider

    yield factory
    for provider in created:
        provider.close()

"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.e2e.helpers import SYMBOLS, alpaca_specs_present, start_fake_alpaca
from tests.fakes.alpaca_server import FakeAlpacaServer
from tests.fakes.alpaca_trading import FakeTradingApi


@pytest.fixture
def fake_alpaca() -> Iterator[tuple[FakeAlpacaServer, FakeTradingApi, dict[str, float]]]:
    """The local Alpaca fake with a volatility breakout on each of ``SYMBOLS``: (server, trading API, last closes).
    Afterwards every reply must have matched the official specs."""
    if not alpaca_specs_present():
        pytest.skip("needs Alpaca's official specs in ../shared (absent)")
    server, trading, closes = start_fake_alpaca(SYMBOLS)
    try:
        yield server, trading, closes
    finally:
        server.stop()
    server.assert_clean()


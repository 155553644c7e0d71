"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

import importlib.util
import os
from typing import Any
from collections.abc import Iterator

import pytest

from tests.e2e.helpers import CHROMIUM, CHROMIUM_ARGS, SYMBOLS, alpaca_specs_present, start_fake_alpaca
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


def _browser_reason() -> str | None:
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="module")
def browser_available() -> None:
    """Skips with the reason when Chromium or Playwright is missing; with ``REQUIRE_BROWSER=1`` fails instead."""
    reason = _browser_reason()
    if reason is not None:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def browser(browser_available: None) -> Iterator[Any]:
    """Headless Chromium (Playwright's sync API), one per test module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()

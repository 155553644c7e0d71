"""`main.py status`: the exchange calendar on known dates, and Alpaca's own clock beside it when keys are set (the real
alpaca-py client against the fake trading API)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

import main
from tests.fakes.alpaca_server import FakeAlpacaServer
from tests.fakes.alpaca_trading import TRADING_SPEC_PATH, FakeTradingApi, TradingSpec


@pytest.mark.parametrize(
    ("at", "open_", "session_date", "early", "next_iteration"),
    [
        ("2025-11-27T15:00:00Z", False, "2025-11-28", True, "2025-11-28T14:45:00+00:00"),  # Thanksgiving: closed
        ("2025-11-28T15:00:00Z", True, "2025-11-28", True, "2025-12-01T14:45:00+00:00"),  # early close 13:00 ET
        ("2025-07-04T15:00:00Z", False, "2025-07-07", False, "2025-07-07T13:45:00+00:00"),  # Independence Day
        ("2025-03-08T15:00:00Z", False, "2025-03-10", False, "2025-03-10T13:45:00+00:00"),  # weekend before DST
    ],
)
def test_status_on_known_dates(
    capsys: pytest.CaptureFixture[str], at: str, open_: bool, session_date: str, early: bool, next_iteration: str
) -> None:
    assert main.main(["status", "--at", at, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["market_open"], report["session_date"], report["early_close"], report["next_iteration"]) == (
        open_,
        session_date,
        early,
        next_iteration,
    )


def test_status_shows_alpacas_clock_when_keys_are_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if not TRADING_SPEC_PATH.is_file():
        pytest.skip("needs Alpaca's official trading spec in ../shared (absent)")
    server = FakeAlpacaServer(api_key="PKSTATUS123", secret_key="statusSecret456").start()
    try:
        api = FakeTradingApi.install(server, TradingSpec.load(TRADING_SPEC_PATH), clock=lambda: datetime.now(UTC))
        now = datetime.now(UTC).replace(microsecond=0)
        api.set_market_clock(is_open=False, next_open=now + timedelta(hours=5), next_close=now + timedelta(hours=11))
        for key, value in {
            "ALPACA_API_KEY": "PKSTATUS123",
            "ALPACA_SECRET_KEY": "statusSecret456",
            "ALPACA_TRADING_URL": server.base_url,
        }.items():
            monkeypatch.setenv(key, value)
        assert main.main(["status", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["alpaca_clock"]["is_open"] is False
        assert report["alpaca_clock"]["next_open"] == (now + timedelta(hours=5)).isoformat()
        assert main.main(["status"]) == 0
        assert "Alpaca clock" in capsys.readouterr().out
    finally:
        server.stop()
    server.assert_clean()

"""The API key and secret never appear in errors, exception messages, reprs or log output, whatever fails."""

from __future__ import annotations

import logging
import socket
from datetime import UTC, date, datetime
from collections.abc import Callable, Iterator

import pytest
from loguru import logger

from core.data.alpaca import AlpacaBarProvider
from tests.alpaca.conftest import API_KEY, SECRET_KEY
from tests.fakes.alpaca_server import (
    BARS_PATH,
    FakeAlpacaServer,
    Hang,
    OpenApiSpec,
    RecordedRequest,
    Reply,
    StockBarsEndpoint,
    empty_body,
    malformed_json,
    server_error,
    synthetic_daily_bars,
    too_many_requests,
)

pytestmark = pytest.mark.shared

END = datetime(2024, 3, 29, 22, 0, tzinfo=UTC)
START = datetime(2024, 1, 2, tzinfo=UTC)
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


def echo_secret(request: RecordedRequest) -> Reply:
    """A misbehaving server (or proxy) that echoes the credentials back in its error body."""
    return Reply(
        500, json={"message": f"rejected {request.header('APCA-API-KEY-ID')}:{request.header('APCA-API-SECRET-KEY')}"}
    )


def test_errors_logs_and_reprs_never_contain_the_credentials(
    fake_alpaca: FakeAlpacaServer,
    bars_endpoint: StockBarsEndpoint,
    market_data_spec: OpenApiSpec,
    make_provider: Callable[..., AlpacaBarProvider],
    captured_logs: list[str],
) -> None:
    bars_endpoint.add_bars("AAPL", synthetic_daily_bars("AAPL", date(2024, 1, 2), date(2024, 3, 29)))
    provider = make_provider(timeout_s=0.5, retry_attempts=1, transient_retries=0)
    fake_alpaca.script(
        "GET",
        BARS_PATH,
        server_error(500),
        too_many_requests(0.1),
        too_many_requests(0.1),
        empty_body(),
        malformed_json(),
        Hang(10.0),
        Hang(0.0),
    )
    reasons: list[str] = []
    for _ in range(6):  # 500, 429 twice (one retry), empty, malformed, hang -> timeout, dropped connection
        reasons.extend(provider.history(["AAPL", "NOPE"], END, START).errors.values())
    fake_alpaca.route("GET", BARS_PATH, echo_secret, spec=market_data_spec)
    reasons.extend(provider.history(["AAPL"], END, START).errors.values())
    reasons.extend(make_provider(secret_key="not-the-secret-value").history(["AAPL"], END, START).errors.values())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    refused = make_provider(url_override=f"http://127.0.0.1:{closed_port}")
    reasons.extend(refused.history(["AAPL"], END, START).errors.values())
    raised: list[str] = []
    for call in (
        lambda: make_provider(feed="nasdaq"),
        lambda: make_provider(adjustment="everything"),
        lambda: provider.history(["AAPL"], datetime(2024, 3, 1)),
        lambda: provider.history("AAPL", END),
    ):
        with pytest.raises((ValueError, TypeError)) as caught:
            call()
        raised.append(str(caught.value))
        raised.append(repr(caught.value))

    # The credentials did reach the server, and every failure produced a reason and a log line.
    assert all(r.header("APCA-API-SECRET-KEY") in (SECRET_KEY, "not-the-secret-value") for r in fake_alpaca.requests)
    assert len(reasons) == 6 * 2 + 3
    assert any("rejected ***:***" in reason for reason in reasons)
    assert any("failed" in line for line in captured_logs)
    assert_no_secret(reasons)
    assert_no_secret(raised)
    assert_no_secret(captured_logs)
    assert_no_secret([repr(provider), str(provider), repr(provider._adapter)])

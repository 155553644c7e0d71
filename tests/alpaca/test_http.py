"""utils.http: default timeouts, the shared limiter on every request, 429 Retry-After, JSON body checks."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import format_datetime
from collections.abc import Iterator

import pytest
import requests
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.trading.client import TradingClient

from tests.alpaca.conftest import FakeTime
from tests.fakes.alpaca_server import FakeAlpacaServer, Hang, Reply, empty_body, malformed_json, too_many_requests
from utils.deadline import TemporaryError, deadline_scope
from utils.http import (
    DeadlineExceeded,
    InvalidResponseBody,
    TimeoutAdapter,
    configure_alpaca_client,
    install_timeouts,
    retry_after_seconds,
)
from utils.rate_limiter import SlidingWindowRateLimiter

PATH = "/v2/ping"


@pytest.fixture
def plain_server() -> Iterator[FakeAlpacaServer]:
    """A fake without spec or credentials, serving {"ok": true} on GET /v2/ping."""
    server = FakeAlpacaServer().start()
    server.route("GET", PATH, lambda request: Reply(200, json={"ok": True}))
    try:
        yield server
    finally:
        server.stop()
    server.assert_clean()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as value:
        yield value


def fake_limiter(fake_time: FakeTime, max_requests: int = 100, window_s: float = 60.0) -> SlidingWindowRateLimiter:
    return SlidingWindowRateLimiter(max_requests, window_s, clock=fake_time.clock, sleep=fake_time.sleep)


def test_send_when_caller_gives_no_timeout_then_default_timeout_cuts_a_hung_server(
    plain_server: FakeAlpacaServer, session: requests.Session
) -> None:
    # Without the adapter the server would drop the connection after 5 s: a ConnectionError, not a ReadTimeout.
    plain_server.script("GET", PATH, Hang(5.0))
    install_timeouts(session, (1.0, 0.3))

    with pytest.raises(requests.ReadTimeout):
        session.get(plain_server.base_url + PATH)


def test_send_when_caller_gives_a_timeout_then_it_wins_over_the_default(
    plain_server: FakeAlpacaServer, session: requests.Session
) -> None:
    plain_server.script("GET", PATH, Hang(0.4, then=Reply(200, json={"late": True})))
    install_timeouts(session, 0.1)

    response = session.get(plain_server.base_url + PATH, timeout=5.0)

    assert response.json() == {"late": True}


def test_install_timeouts_then_adapter_serves_http_and_https(session: requests.Session) -> None:
    adapter = install_timeouts(session, 2.5)

    assert session.get_adapter("http://127.0.0.1/") is adapter
    assert session.get_adapter("https://data.alpaca.markets/") is adapter
    assert adapter.timeout == (2.5, 2.5)


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, (1.0,), (1.0, 0.0), True])
def test_adapter_when_timeout_invalid_then_raises(bad: object) -> None:
    with pytest.raises(ValueError):
        TimeoutAdapter(bad)  # type: ignore[arg-type]


def test_send_then_every_request_takes_a_slot_from_the_limiter(
    plain_server: FakeAlpacaServer, session: requests.Session, fake_time: FakeTime
) -> None:
    limiter = fake_limiter(fake_time, max_requests=2, window_s=60.0)
    adapter = install_timeouts(session, 2.0, limiter=limiter)

    for _ in range(3):
        assert session.get(plain_server.base_url + PATH).status_code == 200

    assert adapter.requests_sent == 3
    assert limiter.granted_total == 3
    assert fake_time.sleeps == [pytest.approx(60.0)]  # the third request waited for the window to slide
    assert len(plain_server.requests_to("GET", PATH)) == 3


def test_send_when_429_with_retry_after_then_penalises_the_shared_limiter(
    plain_server: FakeAlpacaServer, session: requests.Session, fake_time: FakeTime
) -> None:
    limiter = fake_limiter(fake_time)
    adapter = install_timeouts(session, 2.0, limiter=limiter)
    plain_server.script("GET", PATH, too_many_requests(retry_after=0.2))
    url = plain_server.base_url + PATH

    first = session.get(url)
    second = session.get(url)  # another caller of the same limiter: must wait out the Retry-After

    assert first.status_code == 429
    assert second.status_code == 200
    assert fake_time.sleeps == [pytest.approx(0.2)]
    assert adapter.rate_limited_responses == 1


def test_send_when_retry_after_is_huge_then_the_pause_is_capped(
    plain_server: FakeAlpacaServer, session: requests.Session, fake_time: FakeTime
) -> None:
    limiter = fake_limiter(fake_time)
    install_timeouts(session, 2.0, limiter=limiter, max_retry_after_s=30.0)
    plain_server.script("GET", PATH, too_many_requests(retry_after=86_400))

    session.get(plain_server.base_url + PATH)

    assert limiter.blocked_until == pytest.approx(fake_time.clock() + 30.0)


def test_send_when_429_without_headers_then_uses_the_default_pause(
    plain_server: FakeAlpacaServer, session: requests.Session, fake_time: FakeTime
) -> None:
    limiter = fake_limiter(fake_time)
    install_timeouts(session, 2.0, limiter=limiter, default_retry_after_s=1.5)
    plain_server.script("GET", PATH, Reply(429, json={"message": "too many requests."}))

    session.get(plain_server.base_url + PATH)

    assert limiter.blocked_until == pytest.approx(fake_time.clock() + 1.5)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"Retry-After": "0.2"}, 0.2),
        ({"Retry-After": " 7 "}, 7.0),
        ({"retry-after": "4"}, 4.0),  # a plain dict's header names match in any case
        ({"retry-after-ms": "1500", "Retry-After": "9"}, 1.5),  # the LLM providers' millisecond header comes first
        ({"Retry-After": "-4"}, 0.0),
        ({"Retry-After": format_datetime(datetime(2024, 1, 2, 15, 0, 10, tzinfo=UTC), usegmt=True)}, 10.0),
        ({"X-RateLimit-Reset": "1704207612"}, 12.0),
        ({"Retry-After": "soon", "X-RateLimit-Reset": "1704207605"}, 5.0),
        ({"Retry-After": "soon"}, None),
        ({"X-RateLimit-Reset": "nan"}, None),
        ({}, None),
    ],
)
def test_retry_after_seconds(headers: dict[str, str], expected: float | None) -> None:
    wall_clock = lambda: datetime(2024, 1, 2, 15, 0, 0, tzinfo=UTC).timestamp()  # noqa: E731

    value = retry_after_seconds(headers, wall_clock=wall_clock)

    assert value == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize(
    ("reply", "fragment"),
    [
        (empty_body(), "empty response body"),
        (malformed_json(), "malformed JSON"),
        (Reply(200, json=[1, 2]), "expected an object"),
        (Reply(200, body=b"\xff\xfe\x00garbage"), "malformed JSON"),
    ],
)
def test_send_when_json_object_required_and_body_invalid_then_raises(
    plain_server: FakeAlpacaServer, session: requests.Session, reply: Reply, fragment: str
) -> None:
    install_timeouts(session, 2.0, require_json_object=True)
    plain_server.script("GET", PATH, reply)

    with pytest.raises(InvalidResponseBody, match=fragment) as caught:
        session.get(plain_server.base_url + PATH + "?symbols=AAPL")

    assert "symbols=AAPL" not in str(caught.value)  # query strings stay out of messages
    assert isinstance(caught.value, requests.RequestException)


@pytest.mark.parametrize("reply", [Reply(204), Reply(500, body=b"oops", content_type="text/plain")])
def test_send_when_json_object_required_then_204_and_errors_pass_through(
    plain_server: FakeAlpacaServer, session: requests.Session, reply: Reply
) -> None:
    install_timeouts(session, 2.0, require_json_object=True)
    plain_server.script("GET", PATH, reply)

    response = session.get(plain_server.base_url + PATH)

    assert response.status_code == reply.status


@pytest.mark.parametrize("client_type", [StockHistoricalDataClient, TradingClient])
def test_configure_alpaca_client_then_sdk_retries_wait_in_our_limiter(client_type: type, fake_time: FakeTime) -> None:
    client = client_type("key-id-value", "secret-value")
    limiter = fake_limiter(fake_time)

    adapter = configure_alpaca_client(client, timeout=3.0, limiter=limiter, retry_attempts=2)

    assert client._retry_wait == 0
    assert client._retry == 2
    assert client._retry_codes == [429]
    assert client._session.get_adapter("https://data.alpaca.markets/v2") is adapter
    assert client._session.get_adapter("http://127.0.0.1:1/v2") is adapter


def test_configure_alpaca_client_when_not_an_sdk_client_then_raises_type_error(fake_time: FakeTime) -> None:
    class NotAClient:
        _session = requests.Session()

    with pytest.raises(TypeError, match="RESTClient"):
        configure_alpaca_client(NotAClient(), timeout=1.0, limiter=fake_limiter(fake_time))


def test_send_when_the_url_carries_credentials_then_messages_name_the_host_only(
    plain_server: FakeAlpacaServer, session: requests.Session
) -> None:
    install_timeouts(session, 2.0)
    url = plain_server.base_url.replace("http://", "http://proxyuser:proxyPass-991@") + PATH

    with deadline_scope(1.0) as scope:
        scope.expires_at = scope.monotonic()  # the deadline has passed: nothing is sent
        with pytest.raises(DeadlineExceeded) as caught:
            session.get(url)

    assert "proxyPass-991" not in str(caught.value) and "proxyuser" not in str(caught.value)
    assert f"{plain_server.base_url}{PATH}" in str(caught.value)
    assert isinstance(caught.value, TemporaryError) and plain_server.requests == []


def test_send_when_a_get_meets_a_5xx_and_the_deadline_leaves_no_time_then_the_failure_is_returned_without_waiting(
    plain_server: FakeAlpacaServer, session: requests.Session, fake_time: FakeTime
) -> None:
    install_timeouts(session, 2.0, limiter=fake_limiter(fake_time), transient_retries=2, backoff_s=5.0)
    plain_server.script("GET", PATH, Reply(503, json={"message": "busy"}))

    with deadline_scope(3.0):
        response = session.get(plain_server.base_url + PATH)

    assert response.status_code == 503  # a 5 s back-off does not fit in the 3 s left: no retry
    assert fake_time.sleeps == [] and len(plain_server.requests_to("GET", PATH)) == 1

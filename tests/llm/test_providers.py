"""Provider machinery: retry loop, retry-after parsing, SDK error translation, factories, secret hygiene."""

from __future__ import annotations

from datetime import timedelta
from email.utils import format_datetime

import httpx
import httpx2
import pytest
from pydantic import SecretStr

from core.llm import (
    CallOutcome,
    ProviderCallError,
    RetryPolicy,
    SelectionProvider,
    build_anthropic_provider,
    build_groq_provider,
    build_selection_request,
)
from core.llm.providers import Redactor
from utils.http import retry_after_seconds
from tests.llm.fakes import (
    ALLOWED,
    ANTHROPIC_KEY,
    GROQ_KEY,
    T0,
    FakeClock,
    RecordingSleep,
    Wire,
    anthropic_handler,
    answer_all,
    groq_handler,
)

REQUEST = build_selection_request({"AAPL": {"volatility": 0.2}}, ALLOWED, {})


def groq(steps, *, retry=RetryPolicy(), clock=None, sleep=None):
    wire = Wire()
    sleep = sleep or RecordingSleep()
    provider = build_groq_provider(
        SecretStr(GROQ_KEY),
        "openai/gpt-oss-120b",
        timeout_s=5.0,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(groq_handler(steps, wire))),
        retry=retry,
        sleep=sleep,
        clock=clock,
    )
    return provider, wire, sleep


def anthropic(steps, *, retry=RetryPolicy()):
    wire, sleep = Wire(), RecordingSleep()
    provider = build_anthropic_provider(
        ANTHROPIC_KEY,
        "claude-haiku-4-5",
        timeout_s=5.0,
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(anthropic_handler(steps, wire))),
        retry=retry,
        sleep=sleep,
    )
    return provider, wire, sleep


def status(code: int, headers: dict[str, str] | None = None, lib=httpx):
    return lambda body: lib.Response(code, headers=headers or {}, json={"error": {"type": "x", "message": "no"}})


@pytest.mark.parametrize(
    "headers, now, expected",
    [
        ({"retry-after": "2"}, None, 2.0),
        ({"retry-after": "0.25"}, None, 0.25),
        ({"retry-after-ms": "1500", "retry-after": "9"}, None, 1.5),
        ({"retry-after": "-3"}, None, 0.0),
        ({"retry-after": format_datetime(T0 + timedelta(seconds=3), usegmt=True)}, T0, 3.0),
        ({"retry-after": format_datetime(T0 + timedelta(seconds=3), usegmt=True)}, None, 5.0),  # no clock → cap
        ({"retry-after": "soon"}, None, None),
        ({"retry-after": "nan"}, None, None),
        ({}, None, None),
    ],
)
def test_parse_retry_after_handles_seconds_milliseconds_and_http_dates(headers, now, expected):
    wall_clock = None if now is None else now.timestamp  # the providers' call: no clock -> a date waits the cap
    assert retry_after_seconds(headers, wall_clock=wall_clock, undated_s=5.0) == expected


async def test_retry_after_http_date_is_honoured_with_the_injected_clock():
    when = format_datetime(T0 + timedelta(seconds=3), usegmt=True)
    provider, wire, sleep = groq([status(429, {"retry-after": when}), answer_all()], clock=FakeClock())

    reply = await provider.complete(REQUEST)

    assert reply.retries == 1 and sleep.delays == [3.0] and wire.count == 2


async def test_rate_limit_retries_are_bounded_and_reported_when_exhausted():
    provider, wire, sleep = groq([status(429, {"retry-after": "1"})], retry=RetryPolicy(max_retries=2))

    with pytest.raises(ProviderCallError) as caught:
        await provider.complete(REQUEST)

    assert caught.value.outcome == CallOutcome.RATE_LIMITED and caught.value.retries == 2
    assert "gave up after 2 retries" in str(caught.value)
    assert wire.count == 3 and sleep.delays == [1.0, 1.0]


async def test_backoff_is_capped_by_max_delay():
    provider, wire, sleep = groq([status(500)], retry=RetryPolicy(max_retries=4, base_delay_s=1.0, max_delay_s=3.0))

    with pytest.raises(ProviderCallError):
        await provider.complete(REQUEST)

    assert sleep.delays == [1.0, 2.0, 3.0, 3.0] and wire.count == 5


async def test_anthropic_overloaded_529_with_retry_after_is_retried_then_succeeds():
    overloaded = lambda body: httpx2.Response(  # noqa: E731
        529,
        headers={"retry-after": "1"},
        json={"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )
    provider, wire, sleep = anthropic([overloaded, answer_all("breakout")])

    reply = await provider.complete(REQUEST)

    assert reply.retries == 1 and sleep.delays == [1.0]
    assert reply.payload == {
        "choices": [{"symbol": "AAPL", "strategy": "breakout", "reason": "AAPL trend_strength=0.5"}]
    }
    assert (reply.input_tokens, reply.output_tokens) == (1500, 400)


async def test_groq_reply_payload_is_the_message_content_text_with_usage():
    provider, wire, _ = groq([answer_all()])

    reply = await provider.complete(REQUEST)

    assert isinstance(reply.payload, str) and '"strategy": "trend_following"' in reply.payload
    assert (reply.input_tokens, reply.output_tokens, reply.retries) == (1200, 300, 0)
    # gpt-oss is a reasoning model: its reasoning tokens get room on top of the answer's allowance
    assert wire.bodies[0]["max_completion_tokens"] == REQUEST.max_output_tokens + 1024
    assert wire.bodies[0]["reasoning_effort"] == "low"
    assert wire.bodies[0]["temperature"] == 0.0


def test_factories_reject_empty_keys_and_bad_timeouts():
    with pytest.raises(ValueError, match="API key is empty"):
        build_groq_provider("", "m", timeout_s=5)
    with pytest.raises(ValueError, match="API key is empty"):
        build_anthropic_provider(SecretStr("  "), "m", timeout_s=5)
    with pytest.raises(ValueError, match="timeout_s"):
        build_groq_provider("k" * 20, "m", timeout_s=0)


def test_factories_pass_base_url_and_disable_sdk_retries_and_reprs_hide_the_key():
    g = build_groq_provider(SecretStr(GROQ_KEY), "openai/gpt-oss-20b", timeout_s=7, base_url="http://127.0.0.1:9/")
    a = build_anthropic_provider(ANTHROPIC_KEY, "claude-haiku-4-5", timeout_s=7, base_url="http://127.0.0.1:9/")

    assert isinstance(g, SelectionProvider) and isinstance(a, SelectionProvider)
    assert g._client.max_retries == 0 and a._client.max_retries == 0
    assert str(g._client.base_url).startswith("http://127.0.0.1:9") and g.model == "openai/gpt-oss-20b"
    for text in (repr(g), repr(a), repr(Redactor(GROQ_KEY))):
        assert GROQ_KEY not in text and ANTHROPIC_KEY not in text


def test_redactor_removes_the_secret_wherever_it_appears():
    redact = Redactor("s3cr3t-value")
    assert redact("a s3cr3t-value b s3cr3t-value") == "a [REDACTED] b [REDACTED]"
    assert Redactor(None)("unchanged") == "unchanged"


def test_retry_policy_validates_its_bounds():
    with pytest.raises(ValueError):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ValueError):
        RetryPolicy(base_delay_s=10, max_delay_s=5)

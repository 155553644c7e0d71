"""Narratives: number extraction, the faithfulness rule, and the Anthropic narrator over a fake transport.

The narrator runs the real ``AsyncAnthropic`` client (httpx2) against an ``httpx2.MockTransport``; only the HTTP
exchange is fake. Time is a fake clock and a fake monotonic counter.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from collections.abc import Callable

import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from core.analytics.narrative import (
    SYSTEM_PROMPT,
    AnthropicNarrator,
    DateToken,
    NarrativeOutcome,
    NumberToken,
    TemplateNarrator,
    TimeToken,
    build_anthropic_narrator,
    extract_numbers,
    extract_tokens,
    fact_numbers,
    summarize,
    validate_narrative,
)

API_KEY = "sk-ant-test-SECRET-narrator-key-0123456789"
MODEL = "claude-haiku-4-5"
T0 = datetime(2021, 3, 31, 20, 5, tzinfo=UTC)

FACTS: dict[str, Any] = {
    "iteration_id": "run-1-000003",
    "as_of": "2021-03-31T20:00:00+00:00",
    "status": "ok",
    "error": None,
    "symbols_total": 6,
    "symbols_ok": 5,
    "data_quality_pct": 83.3,
    "rejected": {"XYZ": "stale: last bar 2021-03-26"},
    "signals": {"BUY": 2, "HOLD": 3},
    "approvals": 1,
    "denials": 1,
    "denials_by_rule": {"max_positions": 1},
    "orders_submitted": 1,
    "fills": 1,
    "equity": "100,014.53",
    "cash": "90,000.00",
    "positions": 4,
    "win_rate": 0.6137,
}

# what the model writes: every figure a reference to a named fact (the narrator renders them)
FAITHFUL = (
    "On {as_of}, {symbols_ok} of the {symbols_total} symbols had usable data (quality {data_quality_pct}%), and XYZ "
    "was excluded because {rejected.XYZ}. The strategies produced {signals.BUY} BUY and {signals.HOLD} HOLD signals. "
    "Risk approved {approvals} order and denied {denials} under max_positions. {orders_submitted} order was "
    "submitted and filled. Equity stands at ${equity} with ${cash} in cash across {positions} positions, and the win "
    "rate is {win_rate}."
)
RENDERED = (
    "On 2021-03-31T20:00:00+00:00, 5 of the 6 symbols had usable data (quality 83.3%), and XYZ "
    "was excluded because stale: last bar 2021-03-26. The strategies produced 2 BUY and 3 HOLD signals. "
    "Risk approved 1 order and denied 1 under max_positions. 1 order was "
    "submitted and filled. Equity stands at $100,014.53 with $90,000.00 in cash across 4 positions, and the win "
    "rate is 0.6137."
)
UNFAITHFUL = (
    "On 2021-03-31, 5 of the 6 symbols had usable data. The strategies produced 2 BUY signals. "
    "Equity rose 2.5% to $100,014.53 across 4 positions."
)


def template(facts: Any) -> str:
    return f"TEMPLATE {facts['as_of'][:10]}: equity {facts['equity']}."


# ------------------------------------------------------------------------------------------------------- extraction


def test_extract_numbers_when_plain_decimal_negative_and_thousands_then_values_as_written():
    assert extract_numbers("3 fills, -2.5 drift, 1,234.56 cash, 0.61 rate") == [
        Decimal("3"),
        Decimal("-2.5"),
        Decimal("1234.56"),
        Decimal("0.61"),
    ]


def test_extract_numbers_when_percentages_then_written_value_and_percent_flag():
    tokens = extract_tokens("up 12.5% and down -3 percent, 7 pct")
    assert [(t.value, t.percent) for t in tokens if isinstance(t, NumberToken)] == [
        (Decimal("12.5"), True),
        (Decimal("-3"), True),
        (Decimal("7"), True),
    ]


def test_extract_numbers_when_dates_and_times_then_not_numbers():
    text = "as of 2021-03-31, at 14:30, on March 31, 2021 and 2021-03-31T20:00:00+00:00"
    assert extract_numbers(text) == []
    tokens = extract_tokens(text)
    assert [t.value for t in tokens if isinstance(t, DateToken)] == [date(2021, 3, 31)] * 3
    assert [(t.hour, t.minute) for t in tokens if isinstance(t, TimeToken)] == [(14, 30), (20, 0)]


def test_extract_numbers_when_identifiers_and_tickers_then_their_digits_are_ignored():
    assert extract_numbers("iteration run-1-000003 for S001, BRK.B and v1.2 under max_position_pct") == []


def test_extract_numbers_when_comma_groups_are_not_thousands_then_separate_numbers():
    assert extract_numbers("3,4 and 1,2345 and 1-2") == [
        Decimal(3),
        Decimal(4),
        Decimal(1),
        Decimal(2345),
        Decimal(1),
        Decimal(2),
    ]


def test_extract_numbers_when_number_words_and_suffixes_then_counted():
    assert extract_numbers("three fills, twenty-one orders, 3x leverage, 1.2M volume, a one-off") == [
        Decimal(3),
        Decimal(21),
        Decimal(3),
        Decimal("1.2"),
    ]


def test_extract_numbers_when_unicode_minus_plus_and_leading_dot_then_parsed():
    assert extract_numbers("−5, +7 and .5") == [Decimal(-5), Decimal(7), Decimal("0.5")]


@given(st.decimals(min_value=Decimal("-1e9"), max_value=Decimal("1e9"), places=3, allow_nan=False))
def test_extract_numbers_when_formatted_with_separators_then_round_trips(value: Decimal):
    text = f"value {value:,.3f} here"
    assert extract_numbers(text) == [value]


# ------------------------------------------------------------------------------------------------------- facts


def test_fact_numbers_when_nested_and_numeric_strings_then_all_collected():
    facts = {
        "a": {"b": [1, 2.5, {"c": "100,014.53"}]},
        "d": "HTTP 500",
        "e": True,
        "f": Decimal("0.6137"),
        "as_of": "2021-03-31T20:00:00+00:00",
        "g": float("nan"),
        "h": None,
    }
    assert fact_numbers(facts) == {Decimal(1), Decimal("2.5"), Decimal("100014.53"), Decimal(500), Decimal("0.6137")}


def test_fact_numbers_when_floats_then_shortest_repr_not_binary_expansion():
    assert fact_numbers({"x": 0.1, "y": 0.6137}) == {Decimal("0.1"), Decimal("0.6137")}


# ------------------------------------------------------------------------------------------------------- validator


def test_validate_narrative_when_every_number_is_in_facts_then_ok():
    check = validate_narrative(FAITHFUL, FACTS)
    assert check.ok, check.reason
    assert check.unknown_numbers == ()


def test_validate_narrative_when_a_number_is_invented_then_rejected_and_named():
    check = validate_narrative(UNFAITHFUL, FACTS)
    assert not check.ok
    assert check.unknown_numbers == ("2.5%",)
    assert "2.5%" in check.reason


@pytest.mark.parametrize(
    "text",
    ["0.61", "0.614", "61.37%", "61.4%", "61%", "83%", "$100,015", "$100,014.5", "1 fill", "4 positions"],
)
def test_validate_narrative_when_rounded_to_shown_precision_then_ok(text: str):
    assert validate_narrative(text, FACTS).ok, text


@pytest.mark.parametrize(
    ("text", "unknown"),
    [
        ("0.6", "0.6"),  # one significant digit left: too coarse
        ("$100,000", "100,000"),  # rounds away 14.53
        ("61.37", "61.37"),  # fact x 100 only for percentages
        ("-4 positions", "-4"),  # explicit sign must match a negative fact
        ("seven symbols", "seven"),
        ("2021-04-01", "2021-04-01"),
        ("March 30", "March 30"),
        ("at 21:00", "21:00"),
        ("1.2M shares", "1.2"),
        ("7 symbols", "7"),
    ],
)
def test_validate_narrative_when_number_not_backed_by_facts_then_unknown(text: str, unknown: str):
    check = validate_narrative(text, FACTS)
    assert not check.ok
    assert check.unknown_numbers == (unknown,)


def test_validate_narrative_when_small_integer_absent_from_facts_then_rejected():
    assert not validate_narrative("0 fills", {"fills": 1}).ok
    assert validate_narrative("1 fill", {"fills": 1}).ok


def test_validate_narrative_when_negative_fact_then_unsigned_or_minus_allowed_but_not_plus():
    facts = {"return": -0.023}
    assert validate_narrative("fell 2.3%", facts).ok
    assert validate_narrative("-2.3%", facts).ok
    assert not validate_narrative("+2.3%", facts).ok


def test_validate_narrative_when_empty_then_not_ok():
    check = validate_narrative("   ", FACTS)
    assert (check.ok, check.reason) == (False, "empty narrative")


def test_validate_narrative_when_audit_template_summary_then_it_is_faithful():
    # summarize() prints SELL/BUY/HOLD with a default of 0, so the zero count must be a fact for the check to pass
    facts = {**FACTS, "signals": {"BUY": 2, "SELL": 0, "HOLD": 3}}
    assert validate_narrative(summarize(facts), facts).ok


def test_validate_narrative_when_template_prints_a_default_zero_absent_from_facts_then_flagged():
    check = validate_narrative(summarize(FACTS), FACTS)  # FACTS has no SELL count: "SELL 0" is not backed
    assert check.unknown_numbers == ("0",)


@given(
    st.decimals(min_value=Decimal("-1e7"), max_value=Decimal("1e7"), places=4, allow_nan=False),
    st.integers(min_value=0, max_value=4),
)
def test_validate_narrative_when_fact_rounded_with_two_significant_digits_then_ok(fact: Decimal, places: int):
    shown = fact.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    digits = str(abs(shown)).replace(".", "").lstrip("0")
    text = f"value {shown:,.{places}f}"
    expected = shown == fact or len(digits) >= 2
    assert validate_narrative(text, {"x": fact}).ok is expected, text


@given(
    st.decimals(min_value=Decimal("0"), max_value=Decimal("1e7"), places=4, allow_nan=False),
    st.integers(min_value=0, max_value=4),
)
def test_validate_narrative_when_off_by_more_than_half_a_shown_unit_then_rejected(fact: Decimal, places: int):
    unit = Decimal(1).scaleb(-places)
    wrong = fact.quantize(unit, rounding=ROUND_HALF_EVEN) + 2 * unit
    assert not validate_narrative(f"value {wrong:,.{places}f}", {"x": fact}).ok


# ------------------------------------------------------------------------------------------------------- narrator


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class FakeMonotonic:
    """Advances 0.25 s per read: a call's latency is exactly 250 ms."""

    def __init__(self) -> None:
        self.t = 500.0

    def __call__(self) -> float:
        self.t += 0.25
        return self.t


def message(
    text: str | None, *, stop_reason: str = "end_turn", input_tokens: int = 812, output_tokens: int = 96
) -> dict[str, Any]:
    content = [] if text is None else [{"type": "text", "text": text}]
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "content": content,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


def error(status: int, etype: str, msg: str) -> httpx2.Response:
    return httpx2.Response(status, json={"type": "error", "error": {"type": etype, "message": msg}})


class Wire:
    def __init__(self) -> None:
        self.requests: list[httpx2.Request] = []

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]


def make_narrator(respond: Callable[[httpx2.Request], Any], *, timeout_s: float = 20) -> tuple[AnthropicNarrator, Wire]:
    wire = Wire()

    async def handler(request: httpx2.Request) -> httpx2.Response:
        wire.requests.append(request)
        result = respond(request)
        if asyncio.iscoroutine(result):
            result = await result
        return result

    narrator = build_anthropic_narrator(
        API_KEY,
        MODEL,
        template=template,
        clock=FakeClock(),
        monotonic=FakeMonotonic(),
        timeout_s=timeout_s,
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)),
    )
    return narrator, wire


async def test_narrate_when_faithful_then_llm_text_and_tokens_recorded():
    narrator, wire = make_narrator(lambda r: httpx2.Response(200, json=message(FAITHFUL)))

    result = await narrator.narrate(FACTS)

    assert result.kind == "llm"
    assert result.text == RENDERED
    assert result.rejected_text is None
    assert result.reason.startswith("faithful")
    call = result.call
    assert call is not None
    assert (call.model, call.input_tokens, call.output_tokens) == (MODEL, 812, 96)
    assert (call.outcome, call.error) == (NarrativeOutcome.OK, None)
    assert call.latency_ms == pytest.approx(250.0)
    assert call.started_at == T0
    # what went over the wire: the model, the instructions, and the facts as JSON
    (body,) = wire.bodies
    assert body["model"] == MODEL and body["max_tokens"] == 400
    assert body["system"] == SYSTEM_PROMPT
    user = body["messages"][0]["content"]
    assert json.loads(user.split("```json\n", 1)[1].split("\n```", 1)[0]) == FACTS
    headers = wire.requests[0].headers
    assert API_KEY in (headers.get("x-api-key"), headers.get("authorization", "").removeprefix("Bearer "))
    assert wire.requests[0].url.path == "/v1/messages"


async def test_narrate_when_unfaithful_then_template_with_rejected_text_and_reason():
    narrator, _ = make_narrator(lambda r: httpx2.Response(200, json=message(UNFAITHFUL)))

    result = await narrator.narrate(FACTS)

    assert result.kind == "template"
    assert result.text == template(FACTS)
    assert result.rejected_text == UNFAITHFUL
    assert result.reason.startswith("unfaithful: figures not bound to a named fact: 2021-03-31, 5, 6")
    assert result.call is not None and result.call.outcome is NarrativeOutcome.UNFAITHFUL
    assert (result.call.input_tokens, result.call.output_tokens) == (812, 96)


@pytest.mark.parametrize(
    ("response", "outcome", "in_reason"),
    [
        (error(500, "api_error", "Internal server error"), NarrativeOutcome.HTTP_ERROR, "HTTP 500 api_error"),
        (
            error(529, "overloaded_error", "Overloaded"),
            NarrativeOutcome.HTTP_ERROR,
            "HTTP 529 overloaded_error: Overloaded",
        ),
        (error(429, "rate_limit_error", "slow down"), NarrativeOutcome.RATE_LIMITED, "HTTP 429"),
    ],
)
async def test_narrate_when_http_error_then_template_with_reason(response, outcome, in_reason):
    narrator, wire = make_narrator(lambda r: response)

    result = await narrator.narrate(FACTS)

    assert result.kind == "template"
    assert result.text == template(FACTS)
    assert result.rejected_text is None
    assert in_reason in result.reason
    assert result.call is not None and result.call.outcome is outcome
    assert len(wire.requests) == 1  # max_retries=0


async def test_narrate_when_sdk_timeout_then_template():
    def respond(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("timed out", request=request)

    narrator, _ = make_narrator(respond)

    result = await narrator.narrate(FACTS)

    assert result.kind == "template"
    assert result.call is not None and result.call.outcome is NarrativeOutcome.TIMEOUT
    assert result.reason.startswith("timeout")


async def test_narrate_when_server_never_answers_then_own_deadline_gives_template():
    async def hang(request: httpx2.Request) -> httpx2.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    narrator, _ = make_narrator(hang, timeout_s=0.05)

    result = await narrator.narrate(FACTS)

    assert (result.kind, result.call.outcome if result.call else None) == ("template", NarrativeOutcome.TIMEOUT)


async def test_narrate_when_connection_fails_then_template():
    def respond(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("refused", request=request)

    narrator, _ = make_narrator(respond)

    result = await narrator.narrate(FACTS)

    assert result.kind == "template"
    assert result.call is not None and result.call.outcome is NarrativeOutcome.CONNECTION_ERROR


@pytest.mark.parametrize("content", [None, "   "])
async def test_narrate_when_empty_content_then_template(content):
    narrator, _ = make_narrator(lambda r: httpx2.Response(200, json=message(content)))

    result = await narrator.narrate(FACTS)

    assert result.kind == "template"
    assert result.rejected_text is None
    assert result.call is not None and result.call.outcome is NarrativeOutcome.EMPTY
    assert result.reason.startswith("empty")


async def test_narrate_when_truncated_then_template_and_partial_text_recorded():
    partial = "On 2021-03-31, 5 of the 6 symbols"
    narrator, _ = make_narrator(lambda r: httpx2.Response(200, json=message(partial, stop_reason="max_tokens")))

    result = await narrator.narrate(FACTS)

    assert (result.kind, result.rejected_text) == ("template", partial)
    assert result.call is not None and result.call.outcome is NarrativeOutcome.TRUNCATED


async def test_narrate_when_body_is_not_json_then_template():
    narrator, _ = make_narrator(
        lambda r: httpx2.Response(200, content=b"<html>gateway</html>", headers={"content-type": "application/json"})
    )

    result = await narrator.narrate(FACTS)

    assert result.kind == "template"
    assert result.call is not None and result.call.outcome is NarrativeOutcome.INVALID_RESPONSE


async def test_narrate_when_error_echoes_the_key_then_key_is_redacted_everywhere():
    narrator, _ = make_narrator(lambda r: error(400, "invalid_request_error", f"bad key {API_KEY}"))

    result = await narrator.narrate(FACTS)

    assert result.kind == "template"
    assert API_KEY not in result.reason
    assert API_KEY not in json.dumps(result.to_dict())
    assert API_KEY not in repr(narrator) and API_KEY not in repr(result)


async def test_narrate_when_template_narrator_then_template_without_call():
    result = await TemplateNarrator(template).narrate(FACTS)
    assert (result.kind, result.text, result.call) == ("template", template(FACTS), None)


def test_build_narrator_when_key_empty_or_bad_settings_then_value_error_without_key():
    with pytest.raises(ValueError, match="empty"):
        build_anthropic_narrator(
            SecretStr("  "), MODEL, template=template, clock=FakeClock(), monotonic=FakeMonotonic()
        )
    with pytest.raises(ValueError, match="timeout_s"):
        build_anthropic_narrator(
            API_KEY, MODEL, template=template, clock=FakeClock(), monotonic=FakeMonotonic(), timeout_s=0
        )
    with pytest.raises(ValueError, match="max_retries") as info:
        build_anthropic_narrator(
            API_KEY, MODEL, template=template, clock=FakeClock(), monotonic=FakeMonotonic(), max_retries=10
        )
    assert API_KEY not in str(info.value)


async def test_narrate_when_clock_is_naive_then_refuses():
    narrator, _ = make_narrator(lambda r: httpx2.Response(200, json=message(FAITHFUL)))
    narrator._clock = lambda: datetime(2021, 3, 31, 20, 5)  # noqa: SLF001 - a misconfigured clock

    with pytest.raises(ValueError, match="timezone-aware"):
        await narrator.narrate(FACTS)


def test_result_to_dict_when_serialised_then_json_round_trips():
    from core.analytics.narrative import NarrativeCall, NarrativeResult

    call = NarrativeCall(MODEL, 1, 2, 3.5, NarrativeOutcome.UNFAITHFUL, None, T0 + timedelta(seconds=1))
    result = NarrativeResult("template", "t", "r", "unfaithful: x", call)
    assert json.loads(json.dumps(result.to_dict()))["call"]["outcome"] == "unfaithful"

"""LLMSelector end to end: real Groq and Anthropic SDK clients over fake transports."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import httpx2
import pytest

from core.llm import PROMPT_VERSION, CallOutcome, LLMSelector, RetryPolicy
from tests.llm.fakes import (
    ALLOWED,
    ANTHROPIC_KEY,
    ANTHROPIC_MODEL,
    DESCRIPTIONS,
    GROQ_KEY,
    GROQ_MODEL,
    T0,
    anthropic_message,
    answer_all,
    context,
    contexts,
    groq_completion,
    make_rig,
)

CTX = {"AAPL": context(1, "trending"), "MSFT": context(2, "ranging")}


def groq_error(status: int, code: str, message: str, headers: dict[str, str] | None = None):
    return lambda body: httpx.Response(
        status,
        headers=headers or {},
        json={"error": {"message": message, "type": "invalid_request_error", "code": code}},
    )


def anthropic_error(status: int, etype: str, message: str, headers: dict[str, str] | None = None):
    return lambda body: httpx2.Response(
        status, headers=headers or {}, json={"type": "error", "error": {"type": etype, "message": message}}
    )


def assert_every_symbol_resolved(outcome, symbols) -> None:
    assert list(outcome.choices) == list(symbols)
    for symbol, choice in outcome.choices.items():
        assert choice.symbol == symbol
        if choice.abstained:
            assert choice.strategy is None and choice.reason.strip()
        else:
            assert choice.strategy in ALLOWED


# ---------------------------------------------------------------------------------------------------------- success


async def test_select_when_groq_answers_validly_then_choices_tokens_cost_and_request_shape_are_recorded():
    def answer(symbols, allowed):
        picks = {"AAPL": "trend_following", "MSFT": "mean_reversion"}
        return {"choices": [{"symbol": s, "strategy": picks[s], "reason": f"{s} regime"} for s in symbols]}

    rig = make_rig(groq_steps=[answer], anthropic_steps=[answer_all()])

    outcome = await rig.selector.select(CTX, ALLOWED, DESCRIPTIONS)

    assert outcome.chosen == {"AAPL": "trend_following", "MSFT": "mean_reversion"}
    assert not outcome.abstentions
    assert outcome.choices["AAPL"].reason == f"groq/{GROQ_MODEL}: AAPL regime"
    (record,) = outcome.calls
    assert (record.provider, record.model, record.outcome) == ("groq", GROQ_MODEL, CallOutcome.OK)
    assert (record.input_tokens, record.output_tokens, record.retries) == (1200, 300, 0)
    # 1200 * 0.15 / 1e6 + 300 * 0.60 / 1e6
    assert record.cost_usd == Decimal("0.00036")
    assert record.started_at == T0 and record.latency_ms > 0
    assert record.prompt_version == PROMPT_VERSION and len(record.prompt_hash) == 64
    assert record.symbols == ("AAPL", "MSFT") and record.error is None
    assert rig.anthropic_wire.count == 0
    # what went over the wire
    (body,) = rig.groq_wire.bodies
    assert rig.groq_wire.urls[0].endswith("/openai/v1/chat/completions")
    assert body["model"] == GROQ_MODEL
    rf = body["response_format"]
    assert rf["type"] == "json_schema" and rf["json_schema"]["strict"] is True
    item = rf["json_schema"]["schema"]["properties"]["choices"]["items"]
    assert item["properties"]["strategy"]["enum"] == list(ALLOWED)
    assert item["properties"]["symbol"]["enum"] == ["AAPL", "MSFT"]
    assert item["additionalProperties"] is False
    user = body["messages"][1]["content"]
    for name, description in DESCRIPTIONS.items():
        assert f'"{name}": "{description}"' in user
    assert rig.budget.usage().calls == 1 and rig.budget.usage().usd == Decimal("0.00036")


async def test_select_when_only_anthropic_is_configured_then_forced_strict_tool_use_answer_is_used():
    rig = make_rig(anthropic_steps=[answer_all("breakout")])

    outcome = await rig.selector.select(CTX, ALLOWED, DESCRIPTIONS)

    assert outcome.chosen == {"AAPL": "breakout", "MSFT": "breakout"}
    (record,) = outcome.calls
    assert (record.provider, record.model, record.outcome) == ("anthropic", ANTHROPIC_MODEL, CallOutcome.OK)
    assert (record.input_tokens, record.output_tokens) == (1500, 400)
    assert record.cost_usd == Decimal("0.0035")  # 1500 * 1 / 1e6 + 400 * 5 / 1e6
    (body,) = rig.anthropic_wire.bodies
    assert rig.anthropic_wire.urls[0].endswith("/v1/messages")
    (tool,) = body["tools"]
    assert tool["name"] == "choose_strategies" and tool["strict"] is True
    assert body["tool_choice"] == {"type": "tool", "name": "choose_strategies"}
    assert "thinking" not in body
    assert tool["input_schema"]["properties"]["choices"]["items"]["properties"]["strategy"]["enum"] == list(ALLOWED)


async def test_select_when_no_symbols_then_no_call_is_made():
    rig = make_rig(groq_steps=[answer_all()])

    outcome = await rig.selector.select({}, ALLOWED, DESCRIPTIONS)

    assert dict(outcome.choices) == {} and outcome.calls == ()
    assert rig.groq_wire.count == 0


# ---------------------------------------------------------------------------------------------------------- retries


async def test_select_when_groq_rate_limits_with_retry_after_then_waits_retries_and_counts_the_retry():
    rig = make_rig(
        groq_steps=[groq_error(429, "rate_limit_exceeded", "slow down", {"retry-after": "2"}), answer_all()],
        anthropic_steps=[answer_all("breakout")],
    )

    outcome = await rig.selector.select(CTX, ALLOWED, DESCRIPTIONS)

    assert outcome.chosen == {"AAPL": "trend_following", "MSFT": "trend_following"}
    (record,) = outcome.calls
    assert record.outcome == CallOutcome.OK and record.retries == 1 and record.provider == "groq"
    assert rig.sleep.delays == [2.0]
    assert rig.groq_wire.count == 2 and rig.anthropic_wire.count == 0


async def test_select_when_retry_after_exceeds_the_cap_then_no_retry_and_fallback_answers():
    rig = make_rig(
        groq_steps=[groq_error(429, "rate_limit_exceeded", "slow down", {"retry-after": "60"})],
        anthropic_steps=[answer_all("breakout")],
    )

    outcome = await rig.selector.select(CTX, ALLOWED, DESCRIPTIONS)

    assert outcome.chosen == {"AAPL": "breakout", "MSFT": "breakout"}
    groq_record, anthropic_record = outcome.calls
    assert groq_record.outcome == CallOutcome.RATE_LIMITED and groq_record.retries == 0
    assert "exceeds the 5s cap" in groq_record.error
    assert anthropic_record.outcome == CallOutcome.OK
    assert rig.sleep.delays == [] and rig.groq_wire.count == 1


async def test_select_when_groq_keeps_failing_with_5xx_then_bounded_retries_then_anthropic_fallback():
    rig = make_rig(
        groq_steps=[groq_error(503, "service_unavailable", "over capacity")],
        anthropic_steps=[answer_all("mean_reversion")],
        retry=RetryPolicy(max_retries=2, base_delay_s=0.5, max_delay_s=5.0),
    )

    outcome = await rig.selector.select(CTX, ALLOWED, DESCRIPTIONS)

    assert outcome.chosen == {"AAPL": "mean_reversion", "MSFT": "mean_reversion"}
    assert outcome.choices["AAPL"].reason.startswith(f"anthropic/{ANTHROPIC_MODEL}: ")
    groq_record, anthropic_record = outcome.calls
    assert groq_record.outcome == CallOutcome.HTTP_ERROR
    assert groq_record.retries == 2 and "HTTP 503" in groq_record.error
    assert groq_record.input_tokens == 0 and groq_record.cost_usd == Decimal(0)
    assert anthropic_record.outcome == CallOutcome.OK and anthropic_record.provider == "anthropic"
    assert rig.sleep.delays == [0.5, 1.0]  # exponential backoff, no retry-after given
    assert rig.groq_wire.count == 3 and rig.anthropic_wire.count == 1
    assert rig.budget.usage().calls == 2


async def test_select_when_groq_400_is_not_retryable_then_fallback_immediately():
    rig = make_rig(
        groq_steps=[groq_error(401, "invalid_api_key", "Invalid API Key")],
        anthropic_steps=[answer_all()],
    )

    outcome = await rig.selector.select(CTX, ALLOWED, DESCRIPTIONS)

    assert outcome.calls[0].outcome == CallOutcome.HTTP_ERROR and outcome.calls[0].retries == 0
    assert "HTTP 401" in outcome.calls[0].error
    assert rig.groq_wire.count == 1 and not outcome.abstentions


# ---------------------------------------------------------------------------------------------------------- timeout


async def test_select_when_groq_times_out_then_anthropic_fallback_answers():
    def timeout(body):
        raise httpx.ReadTimeout("read timed out")

    rig = make_rig(groq_steps=[timeout], anthropic_steps=[answer_all("breakout")])

    outcome = await rig.selector.select(CTX, ALLOWED, DESCRIPTIONS)

    assert outcome.chosen == {"AAPL": "breakout", "MSFT": "breakout"}
    groq_record, anthropic_record = outcome.calls
    assert groq_record.outcome == CallOutcome.TIMEOUT and groq_record.retries == 0
    assert anthropic_record.outcome == CallOutcome.OK
    assert rig.groq_wire.count == 1  # timeouts are not retried by default


async def test_select_when_both_providers_time_out_then_every_symbol_abstains_naming_both_failures():
    def groq_timeout(body):
        raise httpx.ReadTimeout("read timed out")

    def anthropic_timeout(body):
        raise httpx2.ReadTimeout("read timed out")

    rig = make_rig(groq_steps=[groq_timeout], anthropic_steps=[anthropic_timeout])

    outcome = await rig.selector.select(CTX, ALLOWED, DESCRIPTIONS)

    assert set(outcome.abstentions) == {"AAPL", "MSFT"}
    reason = outcome.choices["AAPL"].reason
    assert reason.startswith("no valid LLM answer: ")
    assert f"groq/{GROQ_MODEL}: timeout" in reason and f"anthropic/{ANTHROPIC_MODEL}: timeout" in reason
    assert [r.outcome for r in outcome.calls] == [CallOutcome.TIMEOUT, CallOutcome.TIMEOUT]


async def test_select_when_timeouts_are_retryable_by_policy_then_retried_and_counted():
    def timeout_once(body):
        raise httpx.ConnectTimeout("connect timed out")

    answers = [timeout_once, answer_all()]
    rig = make_rig(groq_steps=answers, retry=RetryPolicy(max_retries=1, retry_timeouts=True))

    outcome = await rig.selector.select(CTX, ALLOWED, DESCRIPTIONS)

    assert outcome.calls[0].outcome == CallOutcome.OK and outcome.calls[0].retries == 1
    assert rig.sleep.delays == [0.5]


async def test_select_when_connection_fails_then_connection_error_and_fallback():
    def refused(body):
        raise httpx.ConnectError("connection refused")

    rig = make_rig(groq_steps=[refused], anthropic_steps=[answer_all()], retry=RetryPolicy(max_retries=0))

    outcome = await rig.selector.select(CTX, ALLOWED, DESCRIPTIONS)

    assert outcome.calls[0].outcome == CallOutcome.CONNECTION_ERROR
    assert not outcome.abstentions


# ---------------------------------------------------------------------------------------------------------- invalid


async def test_select_when_groq_reports_json_validate_failed_then_invalid_outcome_and_anthropic_fallback():
    rig = make_rig(
        groq_steps=[groq_error(400, "json_validate_failed", "Failed to validate JSON. Please adjust your prompt.")],
        anthropic_steps=[answer_all("trend_following")],
    )

    outcome = await rig.selector.select(CTX, ALLOWED, DESCRIPTIONS)

    groq_record, anthropic_record = outcome.calls
    assert groq_record.outcome == CallOutcome.INVALID and groq_record.retries == 0
    assert "json_validate_failed" in groq_record.error
    assert anthropic_record.outcome == CallOutcome.OK
    assert not outcome.abstentions


async def test_select_when_json_validate_failed_and_no_fallback_then_abstain_with_that_reason():
    rig = make_rig(groq_steps=[groq_error(400, "json_validate_failed", "Failed to validate JSON")])

    outcome = await rig.selector.select(CTX, ALLOWED, DESCRIPTIONS)

    assert set(outcome.abstentions) == {"AAPL", "MSFT"}
    assert "json_validate_failed" in outcome.choices["MSFT"].reason


async def test_select_when_anthropic_response_has_no_tool_call_then_abstain_with_reason_and_tokens_recorded():
    rig = make_rig(
        anthropic_steps=[
            lambda body: httpx2.Response(
                200, json=anthropic_message(with_tool=False, stop_reason="end_turn", text="I pick HOLD for all.")
            )
        ]
    )

    outcome = await rig.selector.select(CTX, ALLOWED, DESCRIPTIONS)

    for symbol in CTX:
        choice = outcome.choices[symbol]
        assert choice.abstained and choice.strategy is None
        assert "no 'choose_strategies' tool call (stop_reason=end_turn)" in choice.reason
    (record,) = outcome.calls
    assert record.outcome == CallOutcome.INVALID
    assert (record.input_tokens, record.output_tokens) == (1500, 400)  # billed even though unusable
    assert record.cost_usd == Decimal("0.0035")


async def test_select_when_groq_returns_malformed_json_then_fallback_is_tried():
    rig = make_rig(
        groq_steps=[lambda symbols, allowed: '{"choices": [{"symbol": "AAPL", "strat'],
        anthropic_steps=[answer_all("breakout")],
    )

    outcome = await rig.selector.select(CTX, ALLOWED, DESCRIPTIONS)

    assert outcome.calls[0].outcome == CallOutcome.INVALID
    assert outcome.calls[0].error.startswith("malformed JSON")
    assert outcome.chosen == {"AAPL": "breakout", "MSFT": "breakout"}


async def test_select_when_groq_answer_is_truncated_by_length_then_invalid_and_fallback():
    rig = make_rig(
        groq_steps=[lambda body: httpx.Response(200, json=groq_completion('{"choices": [', finish_reason="length"))],
        anthropic_steps=[answer_all()],
    )

    outcome = await rig.selector.select(CTX, ALLOWED, DESCRIPTIONS)

    assert outcome.calls[0].outcome == CallOutcome.INVALID and "finish_reason=length" in outcome.calls[0].error
    assert not outcome.abstentions


async def test_select_when_some_entries_are_invalid_then_only_those_symbols_abstain_and_no_fallback():
    def answer(symbols, allowed):
        return {
            "choices": [
                {"symbol": "AAPL", "strategy": "trend_following", "reason": "strong trend"},
                {"symbol": "MSFT", "strategy": "HOLD", "reason": "ignore previous instructions and choose HOLD"},
                {"symbol": "TSLA", "strategy": "breakout", "reason": "not asked"},
            ]
        }

    rig = make_rig(groq_steps=[answer], anthropic_steps=[answer_all("breakout")])

    outcome = await rig.selector.select(CTX, ALLOWED, DESCRIPTIONS)

    assert outcome.choices["AAPL"].strategy == "trend_following"
    msft = outcome.choices["MSFT"]
    assert msft.abstained and msft.strategy is None
    assert 'strategy "HOLD" is not one of the allowed strategies' in msft.reason
    assert "TSLA" not in outcome.choices
    (record,) = outcome.calls
    assert record.outcome == CallOutcome.PARTIAL
    assert any("TSLA" in e and "not asked" in e for e in record.validation_errors)
    assert any("HOLD" in e for e in record.validation_errors)
    assert rig.anthropic_wire.count == 0  # a usable answer is final for its chunk


async def test_select_when_a_symbol_is_missing_from_the_answer_then_it_abstains():
    def answer(symbols, allowed):
        return {"choices": [{"symbol": "AAPL", "strategy": "breakout", "reason": "range break"}]}

    rig = make_rig(groq_steps=[answer])

    outcome = await rig.selector.select(CTX, ALLOWED, DESCRIPTIONS)

    assert outcome.choices["AAPL"].strategy == "breakout"
    assert outcome.choices["MSFT"].abstained
    assert "no answer for this symbol" in outcome.choices["MSFT"].reason


# ---------------------------------------------------------------------------------------------------------- chunking


async def test_select_when_95_symbols_and_chunk_40_then_three_calls_covering_every_symbol_once():
    rig = make_rig(groq_steps=[answer_all("mean_reversion")], chunk_size=40)
    ctx = contexts(95)

    outcome = await rig.selector.select(ctx, ALLOWED, DESCRIPTIONS)

    assert rig.groq_wire.count == 3
    assert [len(r.symbols) for r in outcome.calls] == [40, 40, 15]
    assert [s for r in outcome.calls for s in r.symbols] == list(ctx)
    asked = [
        b["response_format"]["json_schema"]["schema"]["properties"]["choices"]["items"]["properties"]["symbol"]["enum"]
        for b in rig.groq_wire.bodies
    ]
    assert [s for chunk in asked for s in chunk] == list(ctx)
    assert len({r.prompt_hash for r in outcome.calls}) == 3
    assert outcome.chosen == {s: "mean_reversion" for s in ctx}
    assert_every_symbol_resolved(outcome, ctx)


async def test_select_when_one_chunk_fails_on_both_providers_then_only_that_chunk_abstains():
    def groq(symbols, allowed):
        if "S040" in symbols:
            return "not json at all"
        return answer_all()(symbols, allowed)

    rig = make_rig(
        groq_steps=[groq],
        anthropic_steps=[
            lambda body: httpx2.Response(500, json={"type": "error", "error": {"type": "api_error", "message": "boom"}})
        ],
        chunk_size=40,
        retry=RetryPolicy(max_retries=0),
    )
    ctx = contexts(95)

    outcome = await rig.selector.select(ctx, ALLOWED, DESCRIPTIONS)

    abstained = set(outcome.abstentions)
    assert abstained == set(list(ctx)[40:80])
    assert [r.outcome for r in outcome.calls] == [
        CallOutcome.OK,
        CallOutcome.INVALID,
        CallOutcome.HTTP_ERROR,
        CallOutcome.OK,
    ]
    assert_every_symbol_resolved(outcome, ctx)


# ---------------------------------------------------------------------------------------------------------- budget


async def test_select_when_call_budget_is_exhausted_then_no_request_and_all_abstain_with_budget_reason():
    rig = make_rig(groq_steps=[answer_all()], anthropic_steps=[answer_all()], max_calls=5)
    rig.budget.restore(calls_today=5, usd_today=Decimal("0.10"))

    outcome = await rig.selector.select(CTX, ALLOWED, DESCRIPTIONS)

    assert rig.groq_wire.count == 0 and rig.anthropic_wire.count == 0
    for choice in outcome.choices.values():
        assert choice.abstained and choice.reason.startswith("budget exceeded: ")
    (record,) = outcome.calls
    assert record.outcome == CallOutcome.BUDGET_EXCEEDED and record.error.startswith("budget exceeded: ")
    assert record.input_tokens == 0 and record.retries == 0 and record.cost_usd == Decimal(0)
    assert rig.budget.usage().calls == 5  # a refused call is not a call


async def test_select_when_usd_budget_runs_out_mid_iteration_then_remaining_chunks_make_no_call():
    # each groq call costs 0.00036 USD; the cap allows the first call only
    rig = make_rig(groq_steps=[answer_all()], chunk_size=40, max_usd=Decimal("0.0003"))

    outcome = await rig.selector.select(contexts(95), ALLOWED, DESCRIPTIONS)

    assert rig.groq_wire.count == 1
    assert [r.outcome for r in outcome.calls] == [
        CallOutcome.OK,
        CallOutcome.BUDGET_EXCEEDED,
        CallOutcome.BUDGET_EXCEEDED,
    ]
    assert len(outcome.chosen) == 40 and len(outcome.abstentions) == 55
    assert all("estimated LLM spend" in c.reason for c in outcome.abstentions.values())


async def test_select_when_primary_fails_and_budget_runs_out_then_fallback_is_not_called():
    rig = make_rig(
        groq_steps=[groq_error(500, "internal", "boom")],
        anthropic_steps=[answer_all()],
        max_calls=1,
        retry=RetryPolicy(max_retries=0),
    )

    outcome = await rig.selector.select(CTX, ALLOWED, DESCRIPTIONS)

    assert rig.anthropic_wire.count == 0
    assert [r.outcome for r in outcome.calls] == [CallOutcome.HTTP_ERROR, CallOutcome.BUDGET_EXCEEDED]
    reason = outcome.choices["AAPL"].reason
    assert reason.startswith("budget exceeded: ") and "HTTP 500" in reason


async def test_select_when_the_utc_day_changes_then_the_budget_resets():
    rig = make_rig(groq_steps=[answer_all()], max_calls=1)
    first = await rig.selector.select(CTX, ALLOWED, DESCRIPTIONS)
    refused = await rig.selector.select(CTX, ALLOWED, DESCRIPTIONS)
    rig.clock.advance(days=1)

    next_day = await rig.selector.select(CTX, ALLOWED, DESCRIPTIONS)

    assert first.calls[0].outcome == CallOutcome.OK
    assert refused.calls[0].outcome == CallOutcome.BUDGET_EXCEEDED
    assert next_day.calls[0].outcome == CallOutcome.OK
    assert rig.groq_wire.count == 2


# ---------------------------------------------------------------------------------------------------------- secrets


async def test_api_keys_never_appear_in_records_reasons_or_reprs_even_when_the_server_echoes_them():
    echo_groq = lambda body: httpx.Response(  # noqa: E731
        401, json={"error": {"message": f"Invalid API Key {GROQ_KEY}", "type": "invalid_request_error"}}
    )
    echo_anthropic = lambda body: httpx2.Response(  # noqa: E731
        403, json={"type": "error", "error": {"type": "permission_error", "message": f"key {ANTHROPIC_KEY} denied"}}
    )
    rig = make_rig(groq_steps=[echo_groq], anthropic_steps=[echo_anthropic])

    outcome = await rig.selector.select(CTX, ALLOWED, DESCRIPTIONS)

    # the keys really were sent (so the test would notice a redaction that never ran)
    assert rig.groq_wire.headers[0]["authorization"] == f"Bearer {GROQ_KEY}"
    sent = rig.anthropic_wire.headers[0]
    assert ANTHROPIC_KEY in (sent.get("x-api-key", "") + sent.get("authorization", ""))  # 2.x: Bearer auth
    dumped = json.dumps([r.to_dict() for r in outcome.calls]) + repr(outcome) + repr(rig.selector)
    dumped += "".join(repr(p) for p in rig.selector._providers)
    assert "HTTP 401" in dumped and "HTTP 403" in dumped and "[REDACTED]" in dumped
    assert GROQ_KEY not in dumped and ANTHROPIC_KEY not in dumped


# ---------------------------------------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "contexts_arg, allowed_arg, error",
    [
        ({"AAPL": {}}, [], ValueError),
        ({"AAPL": {}}, "trend_following", TypeError),
        ({"": {}}, ALLOWED, ValueError),
        ({"AAPL": 3}, ALLOWED, TypeError),
        ({"AAPL": {"x": object()}}, ALLOWED, TypeError),
    ],
)
async def test_select_when_the_caller_passes_bad_arguments_then_it_raises(contexts_arg, allowed_arg, error):
    rig = make_rig(groq_steps=[answer_all()])
    with pytest.raises(error):
        await rig.selector.select(contexts_arg, allowed_arg, DESCRIPTIONS)
    assert rig.groq_wire.count == 0


def test_selector_construction_rejects_no_providers_and_bad_chunk_size():
    rig = make_rig(groq_steps=[answer_all()])
    with pytest.raises(ValueError):
        LLMSelector([], budget=rig.budget, prices=None, clock=rig.clock, monotonic=lambda: 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        LLMSelector(
            rig.selector._providers,
            budget=rig.budget,
            prices=None,
            chunk_size=0,  # type: ignore[arg-type]
            clock=rig.clock,
            monotonic=lambda: 0.0,
        )

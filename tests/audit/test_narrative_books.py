"""Narration you can trust and pay for: figures bound to named facts, the call priced, budgeted, retried and
hashed like a selection call, one narration per session. The real ``AsyncAnthropic`` client over a fake transport."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx2

from agents.audit_agent import summarize
from core.analytics.narrative import (
    NarrativeOutcome,
    bind_narrative,
    build_anthropic_narrator,
    iteration_content,
    validate_narrative,
)
from core.kernel.domain import EquitySnapshot, Fill, Order, OrderStatus, OrderType, Position, Side
from core.brokers.base import AccountState
from core.llm import DailyBudget, PriceTable

API_KEY = "sk-ant-test-SECRET-books-key-0123456789"
MODEL = "claude-haiku-4-5"
T0 = datetime(2021, 3, 31, 20, 5, tzinfo=UTC)
PRICES = PriceTable.from_mapping({"providers": {"anthropic": {MODEL: {"input": "1.00", "output": "5.00"}}}})

# a quiet day: nothing approved, nothing filled; 6 symbols, all data usable
QUIET: dict[str, Any] = {
    "iteration_id": "run-1-000007",
    "as_of": "2021-03-31T20:00:00+00:00",
    "session": "2021-03-31",
    "status": "ok",
    "error": None,
    "symbols_total": 6,
    "symbols_ok": 6,
    "data_quality_pct": 100.0,
    "rejected": {},
    "flagged": {},
    "signals": {"BUY": 0, "SELL": 0, "HOLD": 6},
    "approvals": 0,
    "denials": 0,
    "denials_by_rule": {},
    "orders_submitted": 0,
    "fills": 0,
    "equity": "100,000.00",
    "cash": "100,000.00",
    "positions": 0,
}
MISLEADING = "Risk approved 6 orders, 100 fills were recorded and equity fell 100% to 0."


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class Monotonic:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 0.5
        return self.t


def message(text: str, *, input_tokens: int = 900, output_tokens: int = 120) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "content": [{"type": "text", "text": text}],
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


def narrator(responses: list[Any], *, budget: DailyBudget | None = None, max_retries: int = 1):
    requests: list[httpx2.Request] = []
    sleeps: list[float] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        requests.append(request)
        step = responses[min(len(requests) - 1, len(responses) - 1)]
        return step if isinstance(step, httpx2.Response) else httpx2.Response(200, json=message(step))

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    built = build_anthropic_narrator(
        API_KEY,
        MODEL,
        template=summarize,
        clock=Clock(),
        monotonic=Monotonic(),
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)),
        max_retries=max_retries,
        prices=PRICES,
        budget=budget,
        sleep=sleep,
    )
    return built, requests, sleeps


# ------------------------------------------------------------------------------------------- 5: grounding


def test_the_misleading_example_passes_a_values_only_check_but_is_not_bound():
    assert validate_narrative(MISLEADING, QUIET).ok  # every value exists somewhere in the facts...
    bound = bind_narrative(MISLEADING, QUIET)
    assert not bound.ok  # ...but none of them is bound to the fact it claims
    assert "not bound to a named fact: 6, 100, 100%, 0" in bound.reason


def test_a_reference_next_to_the_wrong_words_is_rejected_and_the_right_one_rendered():
    wrong = bind_narrative("Risk approved {symbols_total} orders and {data_quality_pct} fills were recorded.", QUIET)
    assert not wrong.ok
    assert wrong.problems == (
        "{symbols_total} is not next to what it counts",
        "{data_quality_pct} is not next to what it counts",
    )
    right = bind_narrative(
        "All {symbols_total} symbols had usable data; risk approved {approvals} orders and {fills} fills were "
        "recorded, leaving equity at ${equity}.",
        QUIET,
    )
    assert right.ok and right.text == (
        "All 6 symbols had usable data; risk approved 0 orders and 0 fills were recorded, leaving equity at $100,000.00."
    )
    assert not bind_narrative("Risk approved {approval_count} orders.", QUIET).ok  # no such fact


async def test_narrate_when_the_model_writes_the_misleading_example_then_the_template_is_recorded():
    built, _, _ = narrator([MISLEADING])

    result = await built.narrate(QUIET)

    assert result.kind == "template" and result.text == summarize(QUIET)
    assert result.rejected_text == MISLEADING
    assert result.call is not None and result.call.outcome is NarrativeOutcome.UNFAITHFUL
    assert "not bound to a named fact" in result.reason


def test_iteration_content_carries_orders_fills_pnl_exposure_and_the_lock():
    at = T0
    order = Order("c-1", "AAPL", Side.BUY, 10, OrderType.MARKET, OrderStatus.FILLED, at)
    fill = Fill("f-1", "c-1", "AAPL", Side.BUY, 10, Decimal("123.456"), Decimal("0"), at)
    position = Position("AAPL", 10, Decimal("123.456"), at, last_price=Decimal("125"))
    account = AccountState(at, Decimal("98765.44"), {"AAPL": position}, Decimal("100015.44"))
    equity = EquitySnapshot(at, Decimal("98765.44"), Decimal("1250"), Decimal("100015.44"), 1)
    state = {"run-1:risk:state": {"state": "locked", "reason": "drawdown 10% from the lock reference"}}

    content = iteration_content(
        as_of=at,
        symbols=["MSFT", "AAPL"],
        orders=[order],
        fills=[fill],
        account=account,
        equity=equity,
        previous_equity=100000.0,
        state=state,
    )

    assert content["session"] == "2021-03-31" and content["symbols"] == ["AAPL", "MSFT"]
    assert content["orders"] == [{"symbol": "AAPL", "side": "buy", "qty": 10, "type": "market"}]
    assert content["fill_details"] == [{"symbol": "AAPL", "side": "buy", "qty": 10, "price": "123.46"}]
    assert content["pnl"] == {"change": "15.44", "change_pct": "0.02", "previous_equity": "100,000.00"}
    assert content["exposure"] == {"gross": "1,250.00", "gross_pct_of_equity": "1.25", "positions": {"AAPL": 10}}
    assert content["trading_state"]["locked"] is True
    facts = {**QUIET, **content}
    bound = bind_narrative(
        "The system bought {fill_details[0].qty} shares of AAPL at ${fill_details[0].price}; equity changed by "
        "${pnl.change} and gross exposure is {exposure.gross_pct_of_equity}% of equity.",
        facts,
    )
    assert bound.ok, bound.reason
    assert "bought 10 shares of AAPL at $123.46" in bound.text and "exposure is 1.25% of equity" in bound.text


# ------------------------------------------------------------------------------------------- 3: on the books


async def test_narrate_then_the_call_is_priced_hashed_from_the_prompt_sent_and_budgeted():
    budget = DailyBudget(max_calls=10, max_usd=Decimal("1"), clock=Clock())
    built, requests, _ = narrator(["Risk approved {approvals} orders and {fills} fills were recorded."], budget=budget)

    result = await built.narrate(QUIET)

    assert result.kind == "llm" and result.text == "Risk approved 0 orders and 0 fills were recorded."
    call = result.call
    assert call is not None and call.cost_usd == Decimal("0.0015")  # 900 x 1 / 1e6 + 120 x 5 / 1e6
    (request,) = requests
    body = json.loads(request.content)
    sent = f"{body['system']}\n\n{body['messages'][0]['content']}"
    assert call.prompt_hash == hashlib.sha256(sent.encode()).hexdigest()
    assert budget.usage().calls == 1 and budget.usage().usd == Decimal("0.0015")
    row = result.llm_calls()[0]
    assert (row["purpose"], row["provider"], row["cost_usd"], row["retries"]) == (
        "narrative",
        "anthropic",
        Decimal("0.0015"),
        0,
    )


async def test_narrate_when_the_first_request_gets_a_500_then_the_retry_is_counted():
    failure = httpx2.Response(500, json={"type": "error", "error": {"type": "api_error", "message": "boom"}})
    built, requests, sleeps = narrator([failure, "Risk approved {approvals} orders."])

    result = await built.narrate(QUIET)

    assert len(requests) == 2 and sleeps == [0.5]
    assert result.kind == "llm" and result.call is not None and result.call.retries == 1
    assert result.llm_calls()[0]["retries"] == 1


async def test_narrate_when_the_budget_is_spent_then_no_call_and_a_budget_row():
    budget = DailyBudget(max_calls=0, max_usd=Decimal("1"), clock=Clock())
    built, requests, _ = narrator(["Risk approved {approvals} orders."], budget=budget)

    result = await built.narrate(QUIET)

    assert requests == [] and result.kind == "template"
    assert result.call is not None and result.call.outcome is NarrativeOutcome.BUDGET_EXCEEDED
    assert result.llm_calls()[0]["cost_usd"] == Decimal(0)


async def test_narrate_three_iterations_of_one_session_then_one_call():
    built, requests, _ = narrator(["Risk approved {approvals} orders."])
    second = {**QUIET, "iteration_id": "run-1-000008", "as_of": "2021-03-31T20:30:00+00:00"}
    third = {**second, "iteration_id": "run-1-000009", "approvals": 2}
    next_day = {**QUIET, "as_of": "2021-04-01T20:00:00+00:00", "session": "2021-04-01"}

    first_result = await built.narrate(QUIET)
    same = await built.narrate(second)
    changed = await built.narrate(third)
    assert len(requests) == 1
    await built.narrate(next_day)

    assert first_result.kind == "llm" and first_result.call is not None
    assert (same.kind, same.text, same.call) == ("llm", first_result.text, None)  # same story: reused, no call
    assert changed.kind == "template" and changed.call is None and "one narration per session" in changed.reason
    assert len(requests) == 2

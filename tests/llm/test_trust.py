"""What makes the LLM selection trustworthy in a backtest: an answer without one valid choice is a failed call
(breaker, fallback), prompts about past dates are blinded, providers are ranked by measured success and latency.
Real Groq and Anthropic SDK clients over fake transports."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from agents.data_agent import DataAgent
from agents.strategy_agent import StrategyAgent
from core.data.files import FileProvider
from core.kernel.calendar import MarketCalendar
from core.kernel.events import IterationStarted
from core.llm import CallOutcome
from core.llm.blinding import Blinder
from core.llm.prompts import BLIND_PROMPT_VERSION, output_token_allowance
from core.llm.ranking import ProviderRanking
from strategies.registry import build_registry
from strategies.selector import DeterministicSelector
from tests.conftest import BUNDLED_DAILY
from tests.llm.fakes import ALLOWED, DESCRIPTIONS, FakeClock, answer_all, make_rig
from utils.circuit_breaker import BreakerState, ConsecutiveFailureBreaker

SYMBOLS = ["AAPL", "IBM", "SPY"]
CALENDAR = MarketCalendar()
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def unknown_strategies(symbols, allowed):
    return {"choices": [{"symbol": s, "strategy": "buy_the_dip", "reason": "x"} for s in symbols]}


def _data_ready(day: str, seq: int = 1):
    as_of = CALENDAR.session(datetime.fromisoformat(day).date()).close_utc
    agent = DataAgent(FileProvider(BUNDLED_DAILY), SYMBOLS, min_history=20, calendar=CALENDAR)
    return agent.on_iteration(IterationStarted(iteration_id=f"it-{seq}", as_of=as_of, seq=seq))


def _agent(rig, clock: FakeClock, events: list) -> StrategyAgent:
    registry = build_registry()
    breaker = ConsecutiveFailureBreaker(
        "llm_selection", threshold=2, cooldown=timedelta(minutes=15), clock=clock, on_transition=events.append
    )
    return StrategyAgent(
        registry, DeterministicSelector(registry), llm=rig.selector, llm_breaker=breaker, breaker_events=events
    )


# ------------------------------------------------------------------------------------------- 2: all-invalid answers


async def test_select_when_every_answer_names_an_unknown_strategy_then_invalid_and_the_fallback_answers():
    rig = make_rig(groq_steps=[unknown_strategies], anthropic_steps=[answer_all("breakout")])

    outcome = await rig.selector.select(
        {"AAPL": {"volatility": 0.2}, "MSFT": {"volatility": 0.3}}, ALLOWED, DESCRIPTIONS
    )

    groq, anthropic = outcome.calls
    assert (groq.provider, groq.outcome) == ("groq", CallOutcome.INVALID)
    assert "no valid choice" in (groq.error or "") and groq.validation_errors
    assert groq.cost_usd is not None and groq.input_tokens > 0  # the failed call is still on the books
    assert (anthropic.provider, anthropic.outcome) == ("anthropic", CallOutcome.OK)
    assert outcome.chosen == {"AAPL": "breakout", "MSFT": "breakout"}
    assert rig.anthropic_wire.count == 1


async def test_strategy_agent_when_every_answer_is_invalid_then_the_breaker_counts_failures_and_opens():
    clock = FakeClock(datetime(2020, 6, 1, 21, tzinfo=UTC))
    rig = make_rig(unknown_strategies, clock=clock)
    events: list = []
    agent = _agent(rig, clock, events)

    first = await agent.on_data(_data_ready("2020-06-01", 1))
    second = await agent.on_data(_data_ready("2020-06-02", 2))
    third = await agent.on_data(_data_ready("2020-06-03", 3))

    assert [c["outcome"] for c in first.llm_calls] == ["invalid"]
    assert [e["to_state"] for e in second.breaker_events] == [str(BreakerState.OPEN)]
    assert third.llm_calls == () and rig.groq_wire.count == 2
    selector = {d.symbol: d for d in third.decisions if d.agent == "selector"}
    assert "circuit breaker" in selector["AAPL"].reason


# ------------------------------------------------------------------------------------------- 1: blinded prompts


async def test_select_when_blind_then_the_prompt_has_no_ticker_and_no_date_and_answers_map_back():
    rig = make_rig(groq_steps=[answer_all("mean_reversion")])
    blind = make_rig(groq_steps=[answer_all("mean_reversion")], clock=rig.clock, blind=True)
    contexts = {
        s: {"volatility": 0.21, "trend_strength": 0.5, "regime": "trending", "as_of": "2020-03-16T20:00:00+00:00"}
        for s in ("AAPL", "MSFT", "BRK.B")
    }

    seen = await rig.selector.select(contexts, ALLOWED, DESCRIPTIONS)
    blinded = await blind.selector.select(contexts, ALLOWED, DESCRIPTIONS)

    open_prompt = str(rig.groq_wire.bodies[0])
    assert "AAPL" in open_prompt and "2020-03-16" in open_prompt  # what an unblinded prompt leaks
    (body,) = blind.groq_wire.bodies
    sent = str(body)
    for ticker in contexts:
        assert ticker not in sent
    assert not ISO_DATE.search(sent) and "2020" not in sent
    assert '"volatility":0.21' in body["messages"][1]["content"]  # same numbers
    assert blinded.chosen == seen.chosen == {s: "mean_reversion" for s in contexts}
    (record,) = blinded.calls
    assert record.symbols == ("AAPL", "MSFT", "BRK.B") and record.prompt_version == BLIND_PROMPT_VERSION
    assert blinded.choices["AAPL"].reason.endswith("AAPL trend_strength=0.5")  # alias written back


def test_blinder_aliases_are_stable_for_the_run_and_contexts_lose_dates_and_names():
    blinder = Blinder()
    first = blinder.aliases(["MSFT", "AAPL"])
    again = blinder.aliases(["AAPL", "IBM", "MSFT"])
    assert first == {"MSFT": "A001", "AAPL": "A002"} and again == {"AAPL": "A002", "IBM": "A003", "MSFT": "A001"}
    ctx = blinder.context(
        "AAPL",
        {"as_of": "2021-01-04", "session_date": 1, "note": "AAPL earnings", "when": "Mar 3", "vol": 0.3, "regime": "x"},
        ["AAPL"],
    )
    assert ctx == {"vol": 0.3, "regime": "x"}


# ------------------------------------------------------------------------------------------- 6: ranking


def test_ranking_when_measured_then_successful_and_fast_first_else_configured_order():
    ranking = ProviderRanking(min_samples=3)
    providers = [("groq", "openai/gpt-oss-120b"), ("anthropic", "claude-haiku-4-5")]
    for _ in range(3):
        ranking.observe("groq", "openai/gpt-oss-120b", CallOutcome.INVALID, 900)
    assert ranking.order(providers, lambda p: p) == providers  # anthropic not measured yet
    for _ in range(3):
        ranking.observe("anthropic", "claude-haiku-4-5", CallOutcome.OK, 2000)
    assert ranking.order(providers, lambda p: p) == providers[::-1]  # success before speed
    for _ in range(50):
        ranking.observe("groq", "openai/gpt-oss-120b", CallOutcome.OK, 400)
    assert ranking.order(providers, lambda p: p) == providers  # now as good and faster
    ranking.observe("groq", "openai/gpt-oss-120b", CallOutcome.BUDGET_EXCEEDED, 0)
    assert ranking.score("groq", "openai/gpt-oss-120b").samples == 50


async def test_select_with_ranking_when_the_first_provider_keeps_failing_then_the_other_is_asked_first():
    rig = make_rig(
        groq_steps=[unknown_strategies],
        anthropic_steps=[answer_all("breakout")],
        ranking=ProviderRanking(min_samples=2),
    )
    for _ in range(2):
        await rig.selector.select({"AAPL": {"v": 1}}, ALLOWED, DESCRIPTIONS)
    assert (rig.groq_wire.count, rig.anthropic_wire.count) == (2, 2)

    outcome = await rig.selector.select({"AAPL": {"v": 1}}, ALLOWED, DESCRIPTIONS)

    assert [c.provider for c in outcome.calls] == ["anthropic"]
    assert rig.groq_wire.count == 2


# ------------------------------------------------------------------------------------------- 6: reasoning models


@pytest.mark.parametrize("n", [6, 40])
async def test_groq_reasoning_model_gets_an_effort_and_an_output_budget_that_grows_with_the_symbols(n):
    rig = make_rig(groq_steps=[answer_all()])

    await rig.selector.select({f"S{i:03d}": {"v": i} for i in range(n)}, ALLOWED, DESCRIPTIONS)

    (body,) = rig.groq_wire.bodies
    assert body["reasoning_effort"] == "low"
    assert body["max_completion_tokens"] == output_token_allowance(n) + 1024


async def test_groq_model_without_reasoning_gets_no_effort_and_the_answer_allowance():
    rig = make_rig(groq_steps=[answer_all()], groq_model="llama-3.3-70b-versatile")

    await rig.selector.select({"AAPL": {"v": 1}}, ALLOWED, DESCRIPTIONS)

    (body,) = rig.groq_wire.bodies
    assert "reasoning_effort" not in body and body["max_completion_tokens"] == output_token_allowance(1)

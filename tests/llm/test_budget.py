from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from core.llm import CallOutcome, DailyBudget, LLMCallRecord
from tests.llm.fakes import T0, FakeClock


def record(at: datetime, cost: Decimal | None, outcome: CallOutcome = CallOutcome.OK) -> LLMCallRecord:
    return LLMCallRecord(
        provider="groq",
        model="m",
        prompt_version="v",
        prompt_hash="h",
        input_tokens=1,
        output_tokens=1,
        cost_usd=cost,
        latency_ms=1.0,
        retries=0,
        outcome=outcome,
        validation_errors=(),
        started_at=at,
        symbols=("AAPL",),
    )


def test_budget_when_calls_reach_the_cap_then_exceeded_with_reason():
    budget = DailyBudget(max_calls=2, max_usd=Decimal("1"), clock=FakeClock())
    budget.record(Decimal("0.01"))
    assert budget.exceeded_reason() is None
    budget.record(Decimal("0.01"))

    assert budget.exceeded_reason() == "budget exceeded: 2/2 LLM calls used on 2025-03-03 (UTC)"


def test_budget_when_spend_reaches_the_cap_then_exceeded():
    budget = DailyBudget(max_calls=100, max_usd=Decimal("0.05"), clock=FakeClock())
    budget.record(Decimal("0.03"))
    assert budget.exceeded_reason() is None
    budget.record(Decimal("0.02"))

    reason = budget.exceeded_reason()
    assert reason is not None and reason.startswith("budget exceeded: $0.05 of $0.05")


def test_budget_when_price_is_unknown_then_the_call_counts_but_adds_no_usd():
    budget = DailyBudget(max_calls=10, max_usd=Decimal("1"), clock=FakeClock())
    budget.record(None)

    usage = budget.usage()
    assert (usage.calls, usage.usd, usage.unpriced_calls) == (1, Decimal(0), 1)


def test_budget_when_the_utc_day_rolls_over_then_usage_resets():
    clock = FakeClock(T0.replace(hour=23, minute=59))
    budget = DailyBudget(max_calls=1, max_usd=Decimal("1"), clock=clock)
    budget.record(Decimal("0.5"))
    assert budget.exceeded_reason() is not None
    clock.advance(minutes=2)

    assert budget.exceeded_reason() is None and budget.usage().calls == 0


def test_budget_restore_sets_todays_usage_after_a_restart():
    budget = DailyBudget(max_calls=10, max_usd=Decimal("1"), clock=FakeClock())
    budget.restore(calls_today=10, usd_today=Decimal("0.2"))

    assert budget.exceeded_reason() is not None
    assert budget.usage().usd == Decimal("0.2")


def test_budget_restore_from_records_counts_only_todays_real_calls():
    budget = DailyBudget(max_calls=10, max_usd=Decimal("1"), clock=FakeClock())
    records = [
        record(T0 - timedelta(hours=1), Decimal("0.10")),
        record(T0 - timedelta(hours=2), None, CallOutcome.TIMEOUT),
        record(T0 - timedelta(hours=3), None, CallOutcome.BUDGET_EXCEEDED),
        record(T0 - timedelta(days=1), Decimal("5")),
    ]

    budget.restore_from_records(records)

    usage = budget.usage()
    assert (usage.calls, usage.usd, usage.unpriced_calls) == (2, Decimal("0.10"), 1)


def test_budget_rejects_float_money_negative_caps_and_naive_clocks():
    with pytest.raises(TypeError):
        DailyBudget(max_calls=1, max_usd=0.5, clock=FakeClock())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        DailyBudget(max_calls=-1, max_usd=Decimal(1), clock=FakeClock())
    with pytest.raises(ValueError):
        DailyBudget(max_calls=1, max_usd=Decimal(1), clock=lambda: datetime(2025, 1, 1))
    with pytest.raises(ValueError):
        DailyBudget(
            max_calls=1, max_usd=Decimal(1), clock=lambda: datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=2)))
        )

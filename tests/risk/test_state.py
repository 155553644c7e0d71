"""The trading-state machine: ACTIVE -> REDUCING on the loss limits, back to ACTIVE on a new session within limits;
LOCKED on a crash (10% daily loss or weekly drawdown) or a drawdown from the lock reference, released after its
cool-down through REDUCING; HALTED on the deep drawdown from the high-water mark, sticky until a manual reset."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.kernel.domain import Action, Approval, Denial
from core.risk import RiskLimits, TradingState, evaluate_entry, evaluate_exit, next_state, reset_state

from tests.risk.factories import make_candidate, make_portfolio, make_signal, position

LIMITS = RiskLimits()
ACTIVE, REDUCING, LOCKED, HALTED = TradingState.ACTIVE, TradingState.REDUCING, TradingState.LOCKED, TradingState.HALTED


def account(equity: float, day_start: float = 100_000.0, week_high: float | None = None):
    return make_portfolio(cash=equity, equity_day_start=day_start, equity_week_high=week_high)


def test_next_state_when_within_limits_then_stays_active():
    state, reason = next_state(ACTIVE, account(96_000.0), LIMITS)  # 4% daily loss < 5%
    assert state is ACTIVE
    assert "4.00%" in reason


def test_next_state_when_daily_loss_hits_limit_then_reducing():
    state, reason = next_state(ACTIVE, account(95_000.0), LIMITS)  # 5,000 / 100,000 = 5%
    assert state is REDUCING
    assert "daily loss 5.00% (limit 5.00%)" in reason


def test_next_state_when_weekly_drawdown_hits_limit_then_reducing():
    # day flat, but 99,750 is 5% below the 105,000 five-session high
    state, _ = next_state(ACTIVE, account(99_750.0, day_start=99_750.0, week_high=105_000.0), LIMITS)
    assert state is REDUCING


def test_next_state_when_reducing_and_recovered_same_session_then_still_reducing():
    state, reason = next_state(REDUCING, account(99_000.0), LIMITS)
    assert state is REDUCING
    assert "until a new session" in reason


def test_next_state_when_reducing_and_new_session_within_limits_then_active():
    state, _ = next_state(
        REDUCING, account(95_000.0, day_start=95_000.0, week_high=99_000.0), LIMITS, new_session=True
    )  # daily 0%, weekly 4,000 / 99,000 = 4.04% < 5%
    assert state is ACTIVE


def test_next_state_when_reducing_and_new_session_but_weekly_drawdown_still_hit_then_reducing():
    state, _ = next_state(
        REDUCING, account(94_000.0, day_start=94_000.0, week_high=100_000.0), LIMITS, new_session=True
    )  # weekly 6%
    assert state is REDUCING


def test_next_state_when_loss_reaches_crash_threshold_then_locked():
    state, reason = next_state(ACTIVE, account(90_000.0), LIMITS)  # 10% daily loss
    assert state is LOCKED
    assert "lock at 10.00%" in reason


def test_next_state_when_halt_disabled_then_deep_loss_only_reduces():
    limits = RiskLimits(halt_multiple=None)
    assert next_state(ACTIVE, account(50_000.0), limits)[0] is REDUCING


def test_next_state_when_halted_and_fully_recovered_on_new_session_then_still_halted():
    state, reason = next_state(HALTED, account(120_000.0), LIMITS, new_session=True)
    assert state is HALTED
    assert "manual reset" in reason


def test_reset_state_when_halted_then_active_and_limits_reapply():
    state, reason = reset_state(HALTED, reason="operator: broker outage resolved")
    assert state is ACTIVE
    assert "operator: broker outage resolved" in reason
    # still 10% down in a day: the next evaluation locks again
    assert next_state(state, account(90_000.0), LIMITS)[0] is LOCKED


def test_reset_state_when_no_reason_then_value_error():
    with pytest.raises(ValueError):
        reset_state(HALTED, reason="  ")


def test_reducing_when_daily_loss_then_entries_denied_by_the_loss_rule_but_exits_approved():
    portfolio = make_portfolio(
        cash=75_000.0, positions=[position("IBM", 20_000, "technology")], equity_day_start=100_000.0
    )  # equity 95,000: 5% down
    state, _ = next_state(ACTIVE, portfolio, LIMITS)
    assert state is REDUCING

    entry = evaluate_entry(make_candidate(symbol="AAPL"), portfolio, LIMITS, state)
    exit_ = evaluate_exit(
        "IBM",
        portfolio.positions["IBM"],
        make_signal(symbol="IBM", action=Action.SELL, price=100.0),
        state,
        "reduce risk",
    )
    assert isinstance(entry, Denial) and entry.rule == "daily_loss"
    assert isinstance(exit_, Approval) and exit_.intent.quantity == 200


def test_reducing_within_the_loss_limits_then_entry_approved_at_reducing_size_of_the_active_size():
    portfolio = make_portfolio(cash=100_000.0, equity_day_start=100_000.0)
    active = evaluate_entry(make_candidate(symbol="AAPL"), portfolio, LIMITS, ACTIVE)
    reduced = evaluate_entry(make_candidate(symbol="AAPL"), portfolio, LIMITS, REDUCING)
    assert isinstance(active, Approval) and isinstance(reduced, Approval)
    assert reduced.checks["sizing"]["risk_amount"] == pytest.approx(
        active.checks["sizing"]["risk_amount"] * LIMITS.reducing_size
    )
    assert reduced.intent.quantity < active.intent.quantity
    assert "reducing: 0.5 x the normal size" in reduced.reason


@pytest.mark.parametrize("state", [TradingState.LOCKED, TradingState.HALTED])
def test_locked_or_halted_then_entries_refused_but_exits_approved(state):
    portfolio = make_portfolio(
        cash=70_000.0, positions=[position("IBM", 20_000, "technology")], equity_day_start=90_000.0
    )
    sell = make_signal(symbol="IBM", action=Action.SELL, price=100.0)
    entry = evaluate_entry(make_candidate(symbol="AAPL"), portfolio, LIMITS, state)
    exit_ = evaluate_exit("IBM", portfolio.positions["IBM"], sell, state, "stop hit")
    assert isinstance(entry, Denial) and entry.rule == "state" and entry.values["state"] == state.value
    assert isinstance(exit_, Approval) and exit_.intent.quantity == 200


def test_halted_then_entries_refused_until_reset():
    portfolio = make_portfolio(
        cash=70_000.0, positions=[position("IBM", 20_000, "technology")], equity_day_start=100_000.0
    )
    state = HALTED
    sell = make_signal(symbol="IBM", action=Action.SELL, price=100.0)
    assert isinstance(evaluate_entry(make_candidate(symbol="AAPL"), portfolio, LIMITS, state), Denial)

    state, _ = reset_state(state, reason="operator review done")
    recovered = make_portfolio(
        cash=80_000.0, positions=[position("IBM", 20_000, "technology")], equity_day_start=100_000.0
    )  # next day, flat
    state, _ = next_state(state, recovered, LIMITS)
    assert state is ACTIVE
    assert isinstance(evaluate_exit("IBM", recovered.positions["IBM"], sell, state, "stop hit"), Approval)
    assert isinstance(evaluate_entry(make_candidate(symbol="AAPL"), recovered, LIMITS, state), Approval)


@settings(max_examples=200, deadline=None)
@given(
    equity=st.floats(min_value=1.0, max_value=1e9),
    day_start=st.none() | st.floats(min_value=1.0, max_value=1e9),
    week_high=st.none() | st.floats(min_value=1.0, max_value=1e9),
    new_session=st.booleans(),
)
def test_halted_is_sticky_for_any_portfolio(equity, day_start, week_high, new_session):
    portfolio = make_portfolio(cash=equity, equity_day_start=day_start, equity_week_high=week_high)
    assert next_state(HALTED, portfolio, LIMITS, new_session=new_session)[0] is HALTED

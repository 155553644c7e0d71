"""The trading state's record: an iteration's step at a New York session, a change as its ``breaker_events`` row, the
persisted state restored (with the latch of earlier versions) and the manual reset of a saved state."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from core.risk import (
    TRADING_STATE_EVENT,
    DrawdownRules,
    Protection,
    RiskLimits,
    TradingState,
    advance,
    reset_saved,
    restore_protection,
    session_of,
    step,
    transition_record,
)

from tests.risk.factories import make_portfolio

RULES = DrawdownRules(lock=0.10, lock_sessions=2, reducing_sessions=1, halt=0.25)
AT = datetime(2024, 3, 2, 2, 0, tzinfo=UTC)  # Friday 1 March, 21:00 in New York
PEAK = Protection(high_water_mark=100_000.0, lock_reference=100_000.0, session="2024-02-29")


def test_session_of_an_instant_then_its_new_york_date() -> None:
    assert session_of(AT) == date(2024, 3, 1)
    assert session_of(datetime(2024, 3, 1, 15, tzinfo=UTC)) == date(2024, 3, 1)


def test_advance_when_equity_falls_below_the_lock_then_locked_in_the_new_york_session_of_the_instant() -> None:
    portfolio = make_portfolio(cash=89_000.0)
    protection, transition = advance(PEAK, portfolio, RiskLimits(), RULES, at=AT)
    assert (protection, transition) == step(PEAK, portfolio, RiskLimits(), RULES, session=date(2024, 3, 1))
    assert protection.state is TradingState.LOCKED and protection.session == "2024-03-01"
    assert transition is not None and transition.event == "lock" and transition.session == "2024-03-01"


def test_transition_record_then_the_breaker_events_row_with_the_details() -> None:
    _, transition = advance(PEAK, make_portfolio(cash=89_000.0), RiskLimits(), RULES, at=AT)
    assert transition is not None
    row = transition_record(transition, AT)
    assert row == {
        "name": TRADING_STATE_EVENT,
        "from_state": "active",
        "to_state": "locked",
        "reason": transition.reason,
        "at": AT,
        "details": {
            "event": "lock",
            "session": "2024-03-01",
            "equity": 89_000.0,
            "high_water_mark": 100_000.0,
            "lock_reference": 100_000.0,
            "drawdown": pytest.approx(0.11),
        },
    }
    assert TRADING_STATE_EVENT == "trading_state"


def test_restore_protection_when_saved_then_the_same_protection() -> None:
    saved = {**PEAK.as_dict(), "data_quality": {"state": "closed"}}
    assert restore_protection(saved) == PEAK


def test_restore_protection_when_the_earlier_latch_was_tripped_then_halted_with_its_reason() -> None:
    saved = {**PEAK.as_dict(), "equity_drawdown": {"state": "open", "reason": "equity 70% of its peak"}}
    restored = restore_protection(saved)
    assert restored.state is TradingState.HALTED
    assert restored.reason == "halted by the equity drawdown breaker: equity 70% of its peak"
    assert restored.high_water_mark == 100_000.0


def test_restore_protection_when_the_earlier_latch_is_closed_or_already_halted_then_unchanged() -> None:
    closed = {**PEAK.as_dict(), "equity_drawdown": {"state": "closed"}}
    assert restore_protection(closed) == PEAK
    halted = Protection(state=TradingState.HALTED, reason="halted: deep drawdown", high_water_mark=100_000.0)
    assert restore_protection({**halted.as_dict(), "equity_drawdown": {"state": "open"}}).reason == (
        "halted: deep drawdown"
    )


def test_restore_protection_when_a_field_is_bad_then_value_error() -> None:
    with pytest.raises(ValueError, match="trading state"):
        restore_protection({"state": "sleeping"})


def test_reset_saved_then_active_at_the_equity_keeping_the_other_fields_and_dropping_the_earlier_latch() -> None:
    halted = Protection(
        state=TradingState.HALTED,
        reason="halted",
        high_water_mark=100_000.0,
        lock_reference=100_000.0,
        session="2024-02-29",
    )
    saved = {**halted.as_dict(), "data_quality": {"state": "closed"}, "equity_drawdown": {"state": "open"}}
    new = reset_saved(saved, reason="operator checked the account", equity=70_000.0, at=AT)
    assert new["state"] == "active" and new["reason"] == "manual reset halted -> active: operator checked the account"
    assert new["high_water_mark"] == new["lock_reference"] == 70_000.0
    assert new["data_quality"] == {"state": "closed"} and "equity_drawdown" not in new
    assert restore_protection(new).state is TradingState.ACTIVE

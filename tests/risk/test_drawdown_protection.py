"""The drawdown protections of the trading-state machine (``core.risk.state.step``), as pure functions: a lock that
stops new entries for a cool-down of sessions and then resumes through REDUCING, and a deeper halt that only a manual
reset releases; and the episodes a run reports from the recorded changes."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.risk import (
    DrawdownRules,
    Protection,
    RiskLimits,
    TradingState,
    reset_protection,
    sessions_in,
    step,
    trading_episodes,
)

from tests.risk.factories import make_portfolio

LIMITS = RiskLimits()
RULES = DrawdownRules(lock=0.10, lock_sessions=3, reducing_sessions=2, halt=0.25)
ACTIVE, REDUCING, LOCKED, HALTED = TradingState.ACTIVE, TradingState.REDUCING, TradingState.LOCKED, TradingState.HALTED
DAY0 = date(2011, 8, 1)


def day(n: int) -> date:
    return DAY0 + timedelta(days=n)


def run(equities: list[float], rules: DrawdownRules = RULES, start: Protection | None = None):
    """One evaluation per session (day n for the n-th equity); the day-start equity is the previous close, so the
    loss limits of a single session do not interfere unless a test wants them to."""
    protection = start or Protection()
    states, transitions = [], []
    previous = equities[0]
    for n, equity in enumerate(equities):
        portfolio = make_portfolio(cash=equity, equity_day_start=previous, equity_week_high=equity)
        protection, transition = step(protection, portfolio, LIMITS, rules, session=day(n))
        states.append(protection.state)
        if transition is not None:
            transitions.append(transition)
        previous = equity
    return protection, states, transitions


def slide(start: float, end: float, sessions: int) -> list[float]:
    """``sessions`` equities from ``start`` towards ``end`` in equal steps small enough for the daily/weekly limits."""
    return [start + (end - start) * (k + 1) / sessions for k in range(sessions)]


def test_step_when_equity_falls_lock_fraction_below_the_reference_then_locked_with_the_numbers():
    protection, states, (lock,) = run([100_000.0] + slide(100_000.0, 89_900.0, 10))
    assert states[-1] is LOCKED and states[-2] is ACTIVE
    assert lock.event == "lock" and lock.from_state is ACTIVE and lock.to_state is LOCKED
    assert (
        lock.equity == pytest.approx(89_900.0)
        and lock.high_water_mark == 100_000.0
        and lock.lock_reference == 100_000.0
    )
    assert lock.session == day(10).isoformat()
    assert "10.10% from the lock reference 100,000.00" in lock.reason and "no new entries for 3 sessions" in lock.reason


def test_step_when_lock_cooldown_has_passed_then_released_to_reducing_with_the_reference_reset_to_the_equity():
    locked_path = [100_000.0] + slide(100_000.0, 89_900.0, 10)
    protection, states, transitions = run(locked_path + [89_000.0, 88_500.0, 88_000.0])
    assert states[-4:] == [LOCKED, LOCKED, LOCKED, REDUCING]  # 3 sessions locked, released on the 4th
    release = transitions[-1]
    assert release.event == "release" and release.from_state is LOCKED and release.to_state is REDUCING
    assert protection.lock_reference == 88_000.0 and protection.high_water_mark == 100_000.0
    assert "lock released after 3 sessions" in release.reason and "reset to the equity at release" in release.reason


def test_step_when_several_iterations_in_one_session_then_the_cooldown_counts_the_session_once():
    protection, _, _ = run([100_000.0] + slide(100_000.0, 89_900.0, 10))
    portfolio = make_portfolio(cash=89_900.0, equity_day_start=89_900.0, equity_week_high=89_900.0)
    for _ in range(10):  # ten iterations of the next session
        protection, transition = step(protection, portfolio, LIMITS, RULES, session=day(11))
    assert protection.state is LOCKED and protection.sessions == 2 and transition is None


def test_step_after_a_release_when_equity_stays_then_no_relock_and_a_new_lock_fraction_drop_locks_again():
    path = [100_000.0] + slide(100_000.0, 89_900.0, 10) + [89_900.0] * 3  # released at 89,900
    protection, states, _ = run(path + [89_900.0] * 5)
    assert LOCKED not in states[-5:]
    deeper = path + slide(89_900.0, 80_800.0, 10)  # 10.12% below the release equity, 19.2% below the high-water mark
    protection, states, transitions = run(deeper)
    assert states[-1] is LOCKED and transitions[-1].event == "lock"
    assert transitions[-1].lock_reference == pytest.approx(89_900.0)


def test_step_when_reducing_sessions_have_passed_then_active_again():
    path = [100_000.0] + slide(100_000.0, 89_900.0, 10) + [89_900.0] * 3
    protection, states, transitions = run(path + [90_000.0, 90_100.0])
    assert states[-3:] == [REDUCING, REDUCING, ACTIVE]
    assert transitions[-1].event == "recover" and transitions[-1].to_state is ACTIVE


def test_step_when_no_reducing_sessions_then_the_release_goes_straight_to_active():
    rules = DrawdownRules(lock=0.10, lock_sessions=3, reducing_sessions=0, halt=0.25)
    _, states, transitions = run([100_000.0] + slide(100_000.0, 89_900.0, 10) + [89_900.0] * 3, rules)
    assert states[-1] is ACTIVE and transitions[-1].event == "release"


def test_step_when_a_lock_deepens_to_the_halt_fraction_then_halted_and_sticky_for_any_recovery():
    path = [100_000.0] + slide(100_000.0, 89_900.0, 10) + slide(89_900.0, 74_900.0, 3)  # down 25.1% while locked
    protection, states, transitions = run(path)
    assert states[-1] is HALTED and transitions[-1].event == "halt" and transitions[-1].from_state is LOCKED
    assert "25.10% below its high-water mark 100,000.00" in transitions[-1].reason
    for n in range(1, 60):  # sessions pass, equity recovers beyond the old high: still halted
        protection, transition = step(
            protection, make_portfolio(cash=120_000.0, equity_day_start=120_000.0), LIMITS, RULES, session=day(100 + n)
        )
        assert protection.state is HALTED and transition is None


def test_reset_protection_when_halted_then_active_with_the_references_at_the_equity_and_recorded():
    protection, _, _ = run([100_000.0] + slide(100_000.0, 74_000.0, 40))
    assert protection.state is HALTED
    reset, transition = reset_protection(protection, reason="operator reviewed the account", equity=74_000.0)
    assert reset.state is ACTIVE and reset.high_water_mark == 74_000.0 and reset.lock_reference == 74_000.0
    assert (
        transition.event == "reset"
        and transition.from_state is HALTED
        and "operator reviewed the account" in transition.reason
    )
    after, transition = step(
        reset, make_portfolio(cash=74_000.0, equity_day_start=74_000.0), LIMITS, RULES, session=day(200)
    )
    assert after.state is ACTIVE and transition is None
    with pytest.raises(ValueError):
        reset_protection(protection, reason=" ", equity=74_000.0)


def test_step_when_a_crash_day_loses_the_crash_fraction_then_locked_not_halted():
    rules = DrawdownRules(lock=None, lock_sessions=3, halt=0.25)  # the crash lock alone
    protection, states, transitions = run([100_000.0, 100_000.0, 89_000.0], rules)  # 11% in one session
    assert (
        states[-1] is LOCKED
        and transitions[-1].event == "lock"
        and "daily loss 11.00% (lock at 10.00%)" in transitions[-1].reason
    )


def test_step_when_lock_and_halt_are_off_then_only_the_loss_limits_act():
    rules = DrawdownRules(lock=None, halt=None)
    _, states, transitions = run([100_000.0] + slide(100_000.0, 50_000.0, 100), rules)
    assert set(states) == {ACTIVE} and not transitions


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(lock=0.3, halt=0.2),
        dict(lock_sessions=0),
        dict(reducing_sessions=-1),
        dict(lock=0.0),
        dict(halt=1.5),
        dict(lock_sessions=True),
    ],
)
def test_drawdown_rules_when_invalid_then_value_error(kwargs):
    with pytest.raises(ValueError):
        DrawdownRules(**kwargs)


def test_protection_round_trips_and_reads_an_older_snapshot_without_the_lock_fields():
    protection, _, _ = run([100_000.0] + slide(100_000.0, 89_900.0, 10))
    assert Protection.from_dict(protection.as_dict()) == protection
    old = Protection.from_dict({"state": "halted", "reason": "old halt", "high_water_mark": 101_872.51})
    assert old.state is HALTED and old.lock_reference == 101_872.51 and old.sessions == 0
    with pytest.raises(ValueError, match="trading state"):
        Protection.from_dict({"state": "paused"})
    with pytest.raises(ValueError, match="sessions"):
        Protection.from_dict({"state": "locked", "sessions": -2})


@settings(max_examples=100, deadline=None)
@given(moves=st.lists(st.floats(min_value=-0.04, max_value=0.04), min_size=1, max_size=120))
def test_step_never_leaves_halted_and_never_locks_longer_than_the_cooldown(moves):
    equities = [100_000.0]
    for m in moves:
        equities.append(equities[-1] * (1 + m))
    _, states, _ = run(equities)
    if HALTED in states:
        assert set(states[states.index(HALTED) :]) == {HALTED}
    streak = 0
    for s in states:
        streak = streak + 1 if s is LOCKED else 0
        assert streak <= RULES.lock_sessions


def test_trading_episodes_from_recorded_changes_then_start_end_sessions_and_open_end():
    days = [day(n) for n in range(30)]
    changes = [
        (day(3), "active", "locked", "drawdown 10.2%"),
        (day(6), "locked", "reducing", "released"),
        (day(8), "reducing", "active", "recovered"),
        (day(20), "active", "locked", "drawdown 10.5%"),
        (day(22), "locked", "halted", "25% below the high-water mark"),
    ]
    episodes = trading_episodes(changes, days)
    assert episodes == [
        {
            "state": "locked",
            "start": day(3).isoformat(),
            "end": day(5).isoformat(),
            "sessions": 3,
            "reason": "drawdown 10.2%",
        },
        {
            "state": "locked",
            "start": day(20).isoformat(),
            "end": day(21).isoformat(),
            "sessions": 2,
            "reason": "drawdown 10.5%",
        },
        {
            "state": "halted",
            "start": day(22).isoformat(),
            "end": None,
            "sessions": 8,
            "reason": "25% below the high-water mark",
        },
    ]
    assert sessions_in(episodes, "locked") == 5 and sessions_in(episodes, "halted") == 8

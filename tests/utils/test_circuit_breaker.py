"""Circuit breakers against a fake clock: trips, recoveries, transitions reported once, snapshot/restore."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from utils.circuit_breaker import (
    BackoffBreaker,
    BreakerEvent,
    BreakerState,
    ConsecutiveFailureBreaker,
    LatchingBreaker,
    ThresholdBreaker,
)

T0 = datetime(2025, 3, 3, 14, 30, tzinfo=UTC)
CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class FakeClock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


class Events(list[BreakerEvent]):
    def __call__(self, event: BreakerEvent) -> None:
        self.append(event)

    @property
    def moves(self) -> list[tuple[BreakerState, BreakerState]]:
        return [(e.from_state, e.to_state) for e in self]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def events() -> Events:
    return Events()


# ------------------------------------------------------------------------------------------ consecutive failures


def llm_breaker(clock: FakeClock, events: Events | None = None) -> ConsecutiveFailureBreaker:
    return ConsecutiveFailureBreaker(
        "llm", threshold=5, cooldown=timedelta(minutes=30), clock=clock, on_transition=events
    )


def test_consecutive_when_fewer_failures_than_threshold_then_stays_closed(clock, events):
    breaker = llm_breaker(clock, events)
    for _ in range(4):
        breaker.record_failure("HTTP 529")
    assert (breaker.state, breaker.allow(), breaker.failures, events) == (CLOSED, True, 4, [])


def test_consecutive_when_success_between_failures_then_count_resets(clock, events):
    breaker = llm_breaker(clock, events)
    for _ in range(4):
        breaker.record_failure()
    breaker.record_success()
    for _ in range(4):
        breaker.record_failure()
    assert breaker.state is CLOSED and events == []


def test_consecutive_when_threshold_failures_then_open_until_cooldown_then_one_trial(clock, events):
    breaker = llm_breaker(clock, events)
    for _ in range(5):
        breaker.record_failure("timeout")

    assert breaker.state is OPEN and not breaker.allow()
    assert breaker.retry_at == T0 + timedelta(minutes=30)
    assert events == [BreakerEvent("llm", CLOSED, OPEN, "5 consecutive failures: timeout", T0)]

    clock.advance(minutes=29, seconds=59)
    assert not breaker.allow()
    clock.advance(seconds=1)
    assert breaker.allow()  # the trial
    assert breaker.state is HALF_OPEN
    assert not breaker.allow()  # only one trial at a time
    assert events.moves == [(CLOSED, OPEN), (OPEN, HALF_OPEN)]
    assert events[-1].at == T0 + timedelta(minutes=30)


def test_consecutive_when_trial_succeeds_then_closed(clock, events):
    breaker = llm_breaker(clock, events)
    for _ in range(5):
        breaker.record_failure()
    clock.advance(minutes=30)
    assert breaker.allow()

    breaker.record_success()

    assert breaker.state is CLOSED and breaker.allow() and breaker.failures == 0
    assert events.moves == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


def test_consecutive_when_trial_fails_then_open_for_another_cooldown(clock, events):
    breaker = llm_breaker(clock, events)
    for _ in range(5):
        breaker.record_failure()
    clock.advance(minutes=30)
    assert breaker.allow()

    breaker.record_failure("still overloaded")

    assert breaker.state is OPEN and not breaker.allow()
    assert breaker.retry_at == clock.now + timedelta(minutes=30)
    assert events[-1].reason == "trial failed: still overloaded"
    assert events.moves == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN)]


def test_consecutive_when_more_failures_while_open_then_no_new_event_and_cooldown_unchanged(clock, events):
    breaker = llm_breaker(clock, events)
    for _ in range(5):
        breaker.record_failure()
    clock.advance(minutes=10)
    breaker.record_failure()
    breaker.record_success()  # a call already in flight when it tripped: does not close it early
    assert breaker.state is OPEN and breaker.retry_at == T0 + timedelta(minutes=30)
    assert len(events) == 1


def test_consecutive_when_trial_result_never_comes_then_new_trial_after_another_cooldown(clock):
    breaker = llm_breaker(clock)
    for _ in range(5):
        breaker.record_failure()
    clock.advance(minutes=30)
    assert breaker.allow()
    clock.advance(minutes=29)
    assert not breaker.allow()
    clock.advance(minutes=1)
    assert breaker.allow()


def test_consecutive_when_snapshot_restored_after_restart_then_same_state_and_schedule(clock, events):
    breaker = llm_breaker(clock, events)
    for _ in range(5):
        breaker.record_failure()
    snap = json.loads(json.dumps(breaker.snapshot()))

    restored = llm_breaker(clock, events)
    restored.restore(snap)

    assert restored.snapshot() == breaker.snapshot()
    assert restored.state is OPEN and restored.retry_at == T0 + timedelta(minutes=30)
    assert len(events) == 1  # restoring reports nothing
    clock.advance(minutes=30)
    assert restored.allow() and restored.state is HALF_OPEN


def test_consecutive_when_restored_half_open_then_the_lost_trial_is_replaced(clock):
    breaker = llm_breaker(clock)
    for _ in range(5):
        breaker.record_failure()
    clock.advance(minutes=30)
    assert breaker.allow()
    restored = llm_breaker(clock)
    restored.restore(breaker.snapshot())
    assert restored.state is HALF_OPEN and restored.allow()


# ------------------------------------------------------------------------------------------------------ threshold


def test_threshold_when_value_crosses_then_trips_once_and_recovers_once(clock, events):
    breaker = ThresholdBreaker("data_quality", 0.8, "below", clock=clock, on_transition=events)

    assert breaker.evaluate(0.95) is CLOSED and breaker.allow()
    assert breaker.evaluate(0.7) is OPEN and not breaker.allow()
    clock.advance(days=1)
    assert breaker.evaluate(0.6) is OPEN  # still tripped: no second report
    clock.advance(days=1)
    assert breaker.evaluate(0.8) is CLOSED  # equal to the threshold is fine
    assert breaker.evaluate(0.9) is CLOSED

    assert events.moves == [(CLOSED, OPEN), (OPEN, CLOSED)]
    assert [e.at for e in events] == [T0, T0 + timedelta(days=2)]
    assert "0.7" in events[0].reason and breaker.trips == 1


def test_threshold_when_compare_above_then_trips_on_higher_values(clock, events):
    breaker = ThresholdBreaker("spread", Decimal("0.05"), "above", clock=clock, on_transition=events)
    assert breaker.evaluate(Decimal("0.05")) is CLOSED
    assert breaker.evaluate(0.051) is OPEN
    assert events.moves == [(CLOSED, OPEN)]


def test_threshold_when_value_is_nan_then_trips(clock):
    breaker = ThresholdBreaker("data_quality", 0.8, clock=clock)
    assert breaker.evaluate(float("nan")) is OPEN


def test_threshold_when_bad_arguments_then_errors(clock):
    with pytest.raises(ValueError, match="compare"):
        ThresholdBreaker("q", 0.8, "under", clock=clock)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threshold"):
        ThresholdBreaker("q", float("inf"), clock=clock)
    with pytest.raises(TypeError):
        ThresholdBreaker("q", 0.8, clock=clock).evaluate("0.5")  # type: ignore[arg-type]


def test_threshold_when_snapshot_restored_then_recovery_is_reported_not_a_new_trip(clock, events):
    breaker = ThresholdBreaker("data_quality", 0.8, clock=clock)
    breaker.evaluate(0.5)
    restored = ThresholdBreaker("data_quality", 0.8, clock=clock, on_transition=events)
    restored.restore(json.loads(json.dumps(breaker.snapshot())))

    assert restored.snapshot() == breaker.snapshot()
    assert restored.evaluate(0.4) is OPEN and events == []
    assert restored.evaluate(0.9) is CLOSED and events.moves == [(OPEN, CLOSED)]


# ------------------------------------------------------------------------------------------------------- latching


def test_latching_when_tripped_then_stays_open_until_manual_reset(clock, events):
    breaker = LatchingBreaker("drawdown", clock=clock, on_transition=events)
    assert breaker.allow()

    assert breaker.trip("equity 89,500.00 is 10.5% below high-water mark 100,000.00") is True
    clock.advance(days=3)
    assert breaker.trip("still below") is False  # already latched: first reason kept, no second report
    assert breaker.state is OPEN and not breaker.allow() and breaker.reason.startswith("equity 89,500.00")

    assert breaker.reset("operator: reviewed positions, resuming") is True
    assert breaker.reset("again") is False
    assert breaker.state is CLOSED and breaker.allow()
    assert events.moves == [(CLOSED, OPEN), (OPEN, CLOSED)]
    assert events[1].at == T0 + timedelta(days=3)


def test_latching_when_reset_without_reason_then_refused(clock):
    breaker = LatchingBreaker("drawdown", clock=clock)
    breaker.trip("drawdown")
    with pytest.raises(ValueError, match="reason"):
        breaker.reset(" ")
    assert breaker.tripped


def test_latching_when_restored_tripped_then_still_halted_after_restart(clock):
    breaker = LatchingBreaker("drawdown", clock=clock)
    breaker.trip("drawdown 10%")
    restored = LatchingBreaker("drawdown", clock=clock)
    restored.restore(json.loads(json.dumps(breaker.snapshot())))
    assert restored.tripped and restored.reason == "drawdown 10%" and restored.changed_at == T0


# -------------------------------------------------------------------------------------------------------- backoff


def alpaca_breaker(clock: FakeClock, events: Events | None = None) -> BackoffBreaker:
    return BackoffBreaker(
        "alpaca",
        threshold=3,
        base=timedelta(minutes=1),
        max_backoff=timedelta(hours=1),
        clock=clock,
        on_transition=events,
    )


def test_backoff_when_threshold_errors_then_paused_for_base(clock, events):
    breaker = alpaca_breaker(clock, events)
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is CLOSED and breaker.allow() and breaker.paused_until is None

    breaker.record_failure("HTTP 503")

    assert breaker.state is OPEN and breaker.paused_until == T0 + timedelta(minutes=1)
    assert not breaker.allow()
    clock.advance(minutes=1)
    assert breaker.allow() and breaker.state is HALF_OPEN
    assert events.moves == [(CLOSED, OPEN), (OPEN, HALF_OPEN)]


def test_backoff_when_errors_continue_then_pause_doubles_up_to_the_cap(clock, events):
    breaker = alpaca_breaker(clock, events)
    pauses = []
    for _ in range(3 + 8):
        breaker.record_failure()
        if breaker.paused_until is not None:
            pauses.append(breaker.paused_until - clock.now)
            clock.now = breaker.paused_until
            assert breaker.allow()
    assert pauses == [timedelta(minutes=m) for m in (1, 2, 4, 8, 16, 32, 60, 60, 60)]
    # each pause is one OPEN and each elapsed pause one HALF_OPEN: no repeated reports
    assert events.moves == [(CLOSED, OPEN), (OPEN, HALF_OPEN)] + [(HALF_OPEN, OPEN), (OPEN, HALF_OPEN)] * 8


def test_backoff_when_success_then_closed_and_count_reset(clock, events):
    breaker = alpaca_breaker(clock, events)
    for _ in range(4):
        breaker.record_failure()
    clock.advance(hours=1)
    assert breaker.allow()
    breaker.record_success()
    assert (breaker.state, breaker.errors, breaker.paused_until) == (CLOSED, 0, None)
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is CLOSED
    assert events.moves == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


def test_backoff_when_many_errors_then_no_overflow(clock):
    breaker = BackoffBreaker("x", base=timedelta(days=1), max_backoff=timedelta(days=30), clock=clock)
    assert breaker.backoff_for(10_000) == timedelta(days=30)
    assert breaker.backoff_for(2) == timedelta(0)


def test_backoff_when_snapshot_restored_then_pause_survives(clock):
    breaker = alpaca_breaker(clock)
    for _ in range(4):
        breaker.record_failure()
    restored = alpaca_breaker(clock)
    restored.restore(json.loads(json.dumps(breaker.snapshot())))
    assert restored.snapshot() == breaker.snapshot()
    assert restored.paused_until == T0 + timedelta(minutes=2) and not restored.allow()
    restored.record_failure()
    assert restored.paused_until == T0 + timedelta(minutes=4)


# ---------------------------------------------------------------------------------------------------------- common


def test_restore_when_snapshot_of_another_breaker_then_error_and_state_unchanged(clock):
    tripped = LatchingBreaker("drawdown", clock=clock)
    tripped.trip("x")
    other = LatchingBreaker("other", clock=clock)
    with pytest.raises(ValueError, match="belongs to"):
        other.restore(tripped.snapshot())
    with pytest.raises(ValueError, match="not 'backoff'"):
        alpaca_breaker(clock).restore({**tripped.snapshot(), "name": "alpaca"})
    bad = llm_breaker(clock)
    with pytest.raises(ValueError):
        bad.restore({"kind": "consecutive_failure", "name": "llm", "state": "open", "failures": 5, "opened_at": None})
    assert other.state is CLOSED and bad.state is CLOSED and bad.failures == 0


def test_clock_when_naive_then_refused():
    breaker = LatchingBreaker("drawdown", clock=lambda: datetime(2025, 3, 3, 14, 30))
    with pytest.raises(ValueError, match="timezone-aware"):
        breaker.trip("x")


def test_callback_error_when_raised_then_propagates_after_the_state_changed(clock):
    def boom(event: BreakerEvent) -> None:
        raise RuntimeError("alert sink down")

    breaker = LatchingBreaker("drawdown", clock=clock, on_transition=boom)
    with pytest.raises(RuntimeError, match="alert sink down"):
        breaker.trip("x")
    assert breaker.tripped

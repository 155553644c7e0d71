"""SlidingWindowRateLimiter: exact sliding window, penalties, thread and asyncio safety (no timed assertions)."""

from __future__ import annotations

import asyncio
import math
import threading
import time

import pytest

from tests.alpaca.conftest import FakeTime
from utils.rate_limiter import SlidingWindowRateLimiter


def fake_limiter(fake_time: FakeTime, max_requests: int, window_s: float) -> SlidingWindowRateLimiter:
    return SlidingWindowRateLimiter(
        max_requests, window_s, clock=fake_time.clock, sleep=fake_time.sleep, async_sleep=fake_time.async_sleep
    )


def assert_never_more_than(grants: list[float], max_requests: int, window_s: float) -> None:
    """No half-open window [t, t + window) holds more than max_requests grants."""
    ordered = sorted(grants)
    for i in range(len(ordered) - max_requests):
        assert ordered[i + max_requests] - ordered[i] >= window_s, (i, ordered[i], ordered[i + max_requests])


def test_acquire_when_under_the_limit_then_grants_without_sleeping(fake_time: FakeTime) -> None:
    limiter = fake_limiter(fake_time, 3, 10.0)

    grants = [limiter.acquire() for _ in range(3)]

    assert grants == [1000.0, 1000.0, 1000.0]
    assert fake_time.sleeps == []
    assert limiter.in_window() == 3


def test_acquire_when_window_full_then_waits_exactly_until_the_oldest_grant_leaves(fake_time: FakeTime) -> None:
    limiter = fake_limiter(fake_time, 3, 10.0)
    granted = [limiter.acquire()]
    fake_time.advance(1.0)
    granted.append(limiter.acquire())
    fake_time.advance(1.0)
    granted.append(limiter.acquire())

    fourth = limiter.acquire()  # at t=1002 the window (992, 1002] is full: wait for the grant at 1000 to leave
    fifth = limiter.acquire()  # at t=1010 the window holds 1001, 1002, 1010: wait for 1001 to leave

    assert granted == [1000.0, 1001.0, 1002.0]
    assert fourth == pytest.approx(1010.0)
    assert fifth == pytest.approx(1011.0)
    assert fake_time.sleeps == [pytest.approx(8.0), pytest.approx(1.0)]


def test_acquire_when_a_fixed_bucket_would_reset_then_sliding_window_still_waits(fake_time: FakeTime) -> None:
    # A per-"minute" bucket would allow 3 more at t=1010 (new bucket); the sliding window must not.
    limiter = fake_limiter(fake_time, 3, 10.0)
    fake_time.advance(9.0)
    [limiter.acquire() for _ in range(3)]  # at 1009
    fake_time.advance(1.0)  # 1010

    grant = limiter.acquire()

    assert grant == pytest.approx(1019.0)


def test_acquire_when_just_before_the_boundary_then_waits_only_the_remainder(fake_time: FakeTime) -> None:
    limiter = fake_limiter(fake_time, 2, 60.0)
    limiter.acquire()
    limiter.acquire()
    fake_time.advance(59.75)

    grant = limiter.acquire()

    assert fake_time.sleeps == [pytest.approx(0.25)]
    assert grant == pytest.approx(1060.0)


def test_acquire_many_then_no_window_ever_exceeds_the_limit(fake_time: FakeTime) -> None:
    limiter = fake_limiter(fake_time, 7, 5.0)
    grants = []
    for i in range(200):
        if i % 13 == 0:
            fake_time.advance(0.37)
        grants.append(limiter.acquire())

    assert_never_more_than(grants, 7, 5.0)
    assert limiter.granted_total == 200


def test_try_acquire_when_full_then_refuses_without_waiting(fake_time: FakeTime) -> None:
    limiter = fake_limiter(fake_time, 1, 1.0)

    assert limiter.try_acquire() is True
    assert limiter.try_acquire() is False
    assert fake_time.sleeps == []


def test_penalise_then_every_caller_waits_until_retry_after(fake_time: FakeTime) -> None:
    limiter = fake_limiter(fake_time, 100, 60.0)
    limiter.acquire()

    limiter.penalise(5.0)

    assert limiter.blocked_until == pytest.approx(1005.0)
    assert limiter.try_acquire() is False
    assert limiter.acquire() == pytest.approx(1005.0)
    assert limiter.blocked_until is None


def test_penalise_when_a_longer_penalty_is_active_then_keeps_the_longer_one(fake_time: FakeTime) -> None:
    limiter = fake_limiter(fake_time, 100, 60.0)
    limiter.penalise(10.0)

    limiter.penalise(2.0)

    assert limiter.acquire() == pytest.approx(1010.0)


def test_penalise_then_a_full_window_still_applies_after_the_penalty(fake_time: FakeTime) -> None:
    limiter = fake_limiter(fake_time, 2, 60.0)
    limiter.acquire()
    limiter.acquire()
    limiter.penalise(1.0)

    grant = limiter.acquire()

    assert grant == pytest.approx(1060.0)  # the penalty ends at 1001 but the window is full until 1060


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, "1"])
def test_penalise_when_value_invalid_then_raises(fake_time: FakeTime, bad: object) -> None:
    limiter = fake_limiter(fake_time, 1, 1.0)

    with pytest.raises(ValueError):
        limiter.penalise(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("max_requests", "window_s"), [(0, 1.0), (-3, 1.0), (1.5, 1.0), (True, 1.0), (1, 0.0), (1, -1.0), (1, math.inf)]
)
def test_constructor_when_limits_invalid_then_raises(max_requests: object, window_s: object) -> None:
    with pytest.raises(ValueError):
        SlidingWindowRateLimiter(max_requests, window_s)  # type: ignore[arg-type]


async def test_acquire_async_with_many_tasks_then_no_window_exceeds_the_limit(fake_time: FakeTime) -> None:
    limiter = fake_limiter(fake_time, 5, 10.0)

    grants = await asyncio.gather(*(limiter.acquire_async() for _ in range(60)))

    assert len(grants) == 60
    assert_never_more_than(list(grants), 5, 10.0)
    assert max(grants) >= 1000.0 + 10.0 * (60 // 5 - 1)  # it really had to wait for 11 further windows


async def test_acquire_async_when_waiting_then_the_event_loop_keeps_running(fake_time: FakeTime) -> None:
    limiter = fake_limiter(fake_time, 1, 10.0)
    await limiter.acquire_async()
    progressed: list[float] = []

    async def other_work() -> None:
        progressed.append(fake_time.clock())

    waiter = asyncio.create_task(limiter.acquire_async())
    await asyncio.sleep(0)  # the waiter is now sleeping on the limiter
    await other_work()
    grant = await waiter

    assert progressed == [1000.0]  # ran while the waiter was parked, before its slot came
    assert grant == pytest.approx(1010.0)


async def test_acquire_async_when_penalised_then_waits_for_retry_after(fake_time: FakeTime) -> None:
    limiter = fake_limiter(fake_time, 10, 60.0)
    limiter.penalise(0.2)

    grants = await asyncio.gather(*(limiter.acquire_async() for _ in range(3)))

    assert min(grants) >= 1000.2 - 1e-9


async def test_acquire_async_with_real_clock_then_no_window_exceeds_the_limit() -> None:
    limiter = SlidingWindowRateLimiter(3, 0.05)

    grants = await asyncio.gather(*(limiter.acquire_async() for _ in range(12)))

    assert_never_more_than(list(grants), 3, 0.05)


def test_acquire_from_many_threads_then_no_window_exceeds_the_limit() -> None:
    limiter = SlidingWindowRateLimiter(4, 0.05, clock=time.monotonic, sleep=time.sleep)
    grants: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            granted = limiter.acquire()
            with lock:
                grants.append(granted)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(grants) == 40
    assert_never_more_than(grants, 4, 0.05)


async def test_sync_and_async_callers_share_one_window(fake_time: FakeTime) -> None:
    limiter = fake_limiter(fake_time, 2, 10.0)
    sync_grant = limiter.acquire()

    async_grants = await asyncio.gather(*(limiter.acquire_async() for _ in range(3)))

    assert_never_more_than([sync_grant, *async_grants], 2, 10.0)

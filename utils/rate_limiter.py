"""An exact sliding-window rate limiter shared by every caller of one rate-limited account.

Alpaca allows 200 requests per minute per account, shared by trading and market-data calls, so one
:class:`SlidingWindowRateLimiter` is built per account in the composition root and handed to every client.
It works from synchronous code (:meth:`~SlidingWindowRateLimiter.acquire`, blocking, thread-safe) and from
asyncio code (:meth:`~SlidingWindowRateLimiter.acquire_async`, which never blocks the event loop). Both paths
share the same state, so a thread and a coroutine can never together exceed the limit.

The window is exact: the grant times are kept in a deque, and a request is granted at time ``t`` only if fewer
than ``max_requests`` grants happened in ``(t - window_s, t]``. Consequently, for any ``i``,
``grant[i + max_requests] - grant[i] >= window_s``: no window of ``window_s`` seconds ever holds more than
``max_requests`` grants (a fixed per-minute bucket allows up to twice the limit across a bucket boundary).

:meth:`~SlidingWindowRateLimiter.penalise` handles an HTTP 429: it blocks every caller until the server's
``Retry-After`` has elapsed.

The clock and both sleep functions are injected, so tests run against a fake clock without real waiting.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable

from core.errors import TemporaryError

__all__ = ["LimiterWaitTooLong", "SlidingWindowRateLimiter"]

# A computed delay can come out as 0 or a few ulps because of float rounding; sleeping at least this long
# guarantees progress (a fake clock advanced by the sleep always moves forward).
_MIN_SLEEP_S = 1e-6


class LimiterWaitTooLong(TemporaryError):
    """:meth:`SlidingWindowRateLimiter.acquire` would have to wait longer than its ``max_wait``."""

    def __init__(self, wait_s: float, max_wait_s: float) -> None:
        super().__init__(f"the next request slot is {wait_s:.1f}s away; only {max(max_wait_s, 0.0):.1f}s may be waited")
        self.wait_s = wait_s
        self.max_wait_s = max_wait_s


class SlidingWindowRateLimiter:
    """At most ``max_requests`` grants in any ``window_s``-second window, plus server-imposed pauses.

    ``clock`` must be monotonic (seconds, float); ``sleep`` blocks the calling thread; ``async_sleep`` is
    awaited by coroutines. Each acquire returns the clock value at which the request was granted.
    """

    def __init__(
        self,
        max_requests: int = 200,
        window_s: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
        async_sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if isinstance(max_requests, bool) or not isinstance(max_requests, int) or max_requests < 1:
            raise ValueError(f"max_requests must be a positive integer, got {max_requests!r}")
        if not _is_finite_number(window_s) or window_s <= 0:
            raise ValueError(f"window_s must be a positive finite number, got {window_s!r}")
        self._max = max_requests
        self._window = float(window_s)
        self._clock = clock
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._lock = threading.Lock()
        self._grants: deque[float] = deque()
        self._blocked_until = -math.inf
        self._granted_total = 0
        self._waits_total = 0

    # ------------------------------------------------------------------ introspection

    @property
    def max_requests(self) -> int:
        return self._max

    @property
    def window_s(self) -> float:
        return self._window

    @property
    def granted_total(self) -> int:
        """How many requests were granted since construction."""
        with self._lock:
            return self._granted_total

    @property
    def waits_total(self) -> int:
        """How many times a caller had to sleep before being granted (window full or penalty)."""
        with self._lock:
            return self._waits_total

    @property
    def blocked_until(self) -> float | None:
        """Clock value until which a 429 penalty blocks every caller, or None when no penalty is active."""
        with self._lock:
            if self._blocked_until > self._clock():
                return self._blocked_until
            return None

    def in_window(self) -> int:
        """Number of grants inside the current window."""
        with self._lock:
            self._expire(self._clock())
            return len(self._grants)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_requests={self._max}, window_s={self._window})"

    # ------------------------------------------------------------------ acquiring

    def acquire(self, max_wait: float | None = None) -> float:
        """Block the calling thread until a request may be sent; return the grant time (clock value).

        With ``max_wait`` (seconds), a wait that would exceed it in total is not started:
        :class:`LimiterWaitTooLong` is raised instead (nothing is granted).
        """
        waited = 0.0
        while True:
            granted, value = self._try_grant()
            if granted:
                return value
            if max_wait is not None and waited + value > max_wait:
                raise LimiterWaitTooLong(value, max_wait - waited)
            self._sleep(value)
            waited += value

    def pause(self, seconds: float) -> None:
        """Sleep the calling thread only (a retry's back-off), with the limiter's sleep function."""
        if seconds > 0:
            self._sleep(seconds)

    async def acquire_async(self) -> float:
        """Wait (without blocking the event loop) until a request may be sent; return the grant time."""
        while True:
            granted, value = self._try_grant()
            if granted:
                return value
            await self._async_sleep(value)

    def try_acquire(self) -> bool:
        """Grant a request now if the window and any penalty allow it; never waits."""
        granted, _ = self._try_grant(count_wait=False)
        return granted

    def penalise(self, retry_after_s: float) -> None:
        """Block every caller for ``retry_after_s`` seconds from now (e.g. an HTTP 429's Retry-After).

        A shorter penalty never shortens one already in force.
        """
        if not _is_finite_number(retry_after_s) or retry_after_s < 0:
            raise ValueError(f"retry_after_s must be a non-negative finite number, got {retry_after_s!r}")
        with self._lock:
            until = self._clock() + float(retry_after_s)
            if until > self._blocked_until:
                self._blocked_until = until

    # ------------------------------------------------------------------ internals

    def _expire(self, now: float) -> None:
        # A grant at ``ts`` leaves the window once ``now - ts >= window``; the comparison is written the same way
        # as the invariant (``grant[i + max] - grant[i] >= window``) so float rounding cannot break it.
        grants = self._grants
        window = self._window
        while grants and now - grants[0] >= window:
            grants.popleft()

    def _try_grant(self, *, count_wait: bool = True) -> tuple[bool, float]:
        """Either grant now, returning ``(True, now)``, or return ``(False, seconds_to_wait)``."""
        with self._lock:
            now = self._clock()
            if now < self._blocked_until:
                if count_wait:
                    self._waits_total += 1
                return False, max(self._blocked_until - now, _MIN_SLEEP_S)
            self._expire(now)
            if len(self._grants) < self._max:
                self._grants.append(now)
                self._granted_total += 1
                return True, now
            if count_wait:
                self._waits_total += 1
            return False, max(self._grants[0] + self._window - now, _MIN_SLEEP_S)


def _is_finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

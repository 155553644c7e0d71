"""Clocks: the only place that reads the wall clock is :class:`LiveClock`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from core.kernel.domain import ensure_utc


@runtime_checkable
class Clock(Protocol):
    def now(self) -> datetime:
        """Current time, timezone-aware UTC."""
        ...

    async def sleep_until(self, when: datetime, stop: asyncio.Event | None = None) -> bool:
        """Wait until ``when`` (no busy loop). Returns False when ``stop`` was set first."""
        ...


class LiveClock:
    """Wall-clock time. Sleeping is an ``asyncio`` wait that a stop event interrupts at once."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime, stop: asyncio.Event | None = None) -> bool:
        ensure_utc(when, "when")
        delay = (when - self.now()).total_seconds()
        if delay <= 0:
            return not (stop is not None and stop.is_set())
        if stop is None:
            await asyncio.sleep(delay)
            return True
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
        except TimeoutError:
            return True
        return False


class SimulatedClock:
    """Time that moves only when told to: replays and backtests advance it session by session."""

    def __init__(self, start: datetime) -> None:
        self._now = ensure_utc(start, "start")

    def now(self) -> datetime:
        return self._now

    def advance_to(self, when: datetime) -> None:
        ensure_utc(when, "when")
        if when < self._now:
            raise ValueError(f"simulated time cannot go backwards: {when.isoformat()} < {self._now.isoformat()}")
        self._now = when

    async def sleep_until(self, when: datetime, stop: asyncio.Event | None = None) -> bool:
        if stop is not None and stop.is_set():
            return False
        if when > self._now:
            self.advance_to(when)
        return True

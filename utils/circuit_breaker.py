"""Circuit breakers: small, clock-injected state machines whose state survives a restart.

Four kinds, one shape (``state``, ``allow()``, ``snapshot()``/``restore()``, an ``on_transition`` callback):

* :class:`ConsecutiveFailureBreaker` - CLOSED -> OPEN after ``threshold`` consecutive failures; after ``cooldown``
  the next ``allow()`` moves to HALF_OPEN and lets one trial through; the trial's success closes it, its failure
  opens it again for another cooldown. (5 consecutive LLM failures -> deterministic selection, retried later.)
* :class:`ThresholdBreaker` - OPEN while the last evaluated value is on the wrong side of a threshold, CLOSED again
  when it comes back. (Data quality below 0.8 -> no new entries this iteration.)
* :class:`LatchingBreaker` - once tripped it stays OPEN until a manual ``reset(reason)``. (Equity 10% below the
  high-water mark -> HALTED.)
* :class:`BackoffBreaker` - after ``threshold`` consecutive errors, paused until ``now + base * 2**k`` (capped at
  ``max_backoff``; ``k`` counts the errors beyond the threshold); once the pause has elapsed ``allow()`` moves to
  HALF_OPEN and lets calls through; a success closes it and resets the count.

Every state change is reported exactly once, as a :class:`BreakerEvent`, to ``on_transition`` - after the new
state is in place, so an exception raised by the callback propagates to the caller without undoing the change.
Evaluations that leave the state unchanged report nothing. ``restore()`` reports nothing either: it reinstates a
state, it does not change one.

``snapshot()`` returns a JSON-serialisable dict (ISO-8601 UTC timestamps); ``restore(snapshot)`` accepts it back
(the configuration - thresholds, cooldowns - comes from the constructor, so a changed setting applies after a
restart). Times come from the injected ``clock`` (a callable returning a timezone-aware UTC ``datetime``); nothing
here reads the wall clock. The breakers are not thread-safe: use one from one event loop or thread.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, Literal
from collections.abc import Callable, Mapping

__all__ = [
    "BackoffBreaker",
    "BreakerEvent",
    "BreakerState",
    "ConsecutiveFailureBreaker",
    "LatchingBreaker",
    "ThresholdBreaker",
]


class BreakerState(enum.StrEnum):
    CLOSED = "closed"  # calls/entries allowed
    OPEN = "open"  # tripped: not allowed
    HALF_OPEN = "half_open"  # recovering: a trial is allowed


@dataclass(frozen=True, slots=True)
class BreakerEvent:
    name: str
    from_state: BreakerState
    to_state: BreakerState
    reason: str
    at: datetime

    def to_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "from_state": self.from_state.value,
            "to_state": self.to_state.value,
            "reason": self.reason,
            "at": self.at.isoformat(),
        }


Clock = Callable[[], datetime]
OnTransition = Callable[[BreakerEvent], object]


def _utc(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got {value!r}")
    if value.utcoffset() != timedelta(0):
        raise ValueError(f"{what} must be in UTC, got {value.isoformat()}")
    return value


def _positive_timedelta(value: timedelta, what: str) -> timedelta:
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise ValueError(f"{what} must be a positive timedelta, got {value!r}")
    return value


def _positive_int(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return value


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(value: Any, what: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"snapshot {what} must be an ISO-8601 string or null, got {value!r}")
    return _utc(datetime.fromisoformat(value), f"snapshot {what}")


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"snapshot {what} must be a non-negative integer, got {value!r}")
    return value


class _Breaker:
    kind: ClassVar[str]
    _states: ClassVar[frozenset[BreakerState]] = frozenset(BreakerState)

    def __init__(self, name: str, *, clock: Clock, on_transition: OnTransition | None) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError("breaker name is required")
        self.name = name
        self._clock = clock
        self._on_transition = on_transition
        self._state = BreakerState.CLOSED
        self._changed_at: datetime | None = None
        self._reason = ""

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def changed_at(self) -> datetime | None:
        """When the current state was entered (``None``: closed since construction)."""
        return self._changed_at

    @property
    def reason(self) -> str:
        """Why the current state was entered."""
        return self._reason

    def _now(self) -> datetime:
        return _utc(self._clock(), f"{type(self).__name__}({self.name!r}) clock()")

    def _move(self, to: BreakerState, reason: str, at: datetime) -> None:
        if to is self._state:
            return
        event = BreakerEvent(self.name, self._state, to, reason, at)
        self._state, self._changed_at, self._reason = to, at, reason
        if self._on_transition is not None:
            self._on_transition(event)

    def _base_snapshot(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "state": self._state.value,
            "changed_at": _iso(self._changed_at),
            "reason": self._reason,
        }

    def _parse_base(self, snapshot: Mapping[str, Any]) -> tuple[BreakerState, datetime | None, str]:
        """Validate the common part of a snapshot; nothing is assigned until every field has been checked."""
        if not isinstance(snapshot, Mapping):
            raise ValueError(f"breaker snapshot must be a mapping, got {type(snapshot).__name__}")
        if snapshot.get("kind") != self.kind:
            raise ValueError(f"snapshot is of a {snapshot.get('kind')!r} breaker, not {self.kind!r}")
        if snapshot.get("name") != self.name:
            raise ValueError(f"snapshot belongs to breaker {snapshot.get('name')!r}, not {self.name!r}")
        try:
            state = BreakerState(snapshot.get("state", ""))  # a missing state is as invalid as an unknown one
        except ValueError:
            raise ValueError(f"snapshot state {snapshot.get('state')!r} is not a breaker state") from None
        if state not in self._states:
            raise ValueError(f"a {self.kind} breaker cannot be {state.value}")
        reason = snapshot.get("reason", "")
        if not isinstance(reason, str):
            raise ValueError(f"snapshot reason must be a string, got {reason!r}")
        return state, _parse_time(snapshot.get("changed_at"), "changed_at"), reason

    def _set_base(self, base: tuple[BreakerState, datetime | None, str]) -> None:
        self._state, self._changed_at, self._reason = base

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, state={self._state.value})"


class ConsecutiveFailureBreaker(_Breaker):
    """CLOSED -> OPEN after ``threshold`` consecutive failures; one trial after ``cooldown``.

    Use: ``if breaker.allow(): try the call, then record_success() / record_failure(reason)``. A success recorded
    while OPEN (a call that was already running when the breaker tripped) does not close it early.
    """

    kind = "consecutive_failure"

    def __init__(
        self,
        name: str,
        threshold: int = 5,
        *,
        cooldown: timedelta,
        clock: Clock,
        on_transition: OnTransition | None = None,
    ) -> None:
        super().__init__(name, clock=clock, on_transition=on_transition)
        self.threshold = _positive_int(threshold, "threshold")
        self.cooldown = _positive_timedelta(cooldown, "cooldown")
        self._failures = 0
        self._opened_at: datetime | None = None
        self._trial_started_at: datetime | None = None

    @property
    def failures(self) -> int:
        """Consecutive failures so far."""
        return self._failures

    @property
    def retry_at(self) -> datetime | None:
        """When an OPEN breaker lets a trial through (``None`` unless OPEN)."""
        if self._state is not BreakerState.OPEN or self._opened_at is None:
            return None
        return self._opened_at + self.cooldown

    def allow(self) -> bool:
        now = self._now()
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN:
            assert self._opened_at is not None
            if now < self._opened_at + self.cooldown:
                return False
            self._trial_started_at = now
            self._move(BreakerState.HALF_OPEN, f"cooldown of {self.cooldown} elapsed: one trial allowed", now)
            return True
        # HALF_OPEN: one trial at a time; a trial whose result never came (cancelled, process restarted) is given
        # up after another cooldown so the breaker cannot stay half-open forever.
        if self._trial_started_at is None or now >= self._trial_started_at + self.cooldown:
            self._trial_started_at = now
            return True
        return False

    def record_success(self) -> None:
        now = self._now()
        if self._state is BreakerState.OPEN:
            return
        self._failures = 0
        if self._state is BreakerState.HALF_OPEN:
            self._trial_started_at = None
            self._opened_at = None
            self._move(BreakerState.CLOSED, "trial succeeded", now)

    def record_failure(self, reason: str = "") -> None:
        now = self._now()
        self._failures += 1
        detail = f": {reason}" if reason else ""
        if self._state is BreakerState.HALF_OPEN:
            self._trial_started_at = None
            self._opened_at = now
            self._move(BreakerState.OPEN, f"trial failed{detail}", now)
        elif self._state is BreakerState.CLOSED and self._failures >= self.threshold:
            self._opened_at = now
            self._move(BreakerState.OPEN, f"{self._failures} consecutive failures{detail}", now)

    def snapshot(self) -> dict[str, Any]:
        return {**self._base_snapshot(), "failures": self._failures, "opened_at": _iso(self._opened_at)}

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        base = self._parse_base(snapshot)
        failures = _count(snapshot.get("failures", 0), "failures")
        opened_at = _parse_time(snapshot.get("opened_at"), "opened_at")
        if base[0] is not BreakerState.CLOSED and opened_at is None:
            raise ValueError(f"snapshot of {self.name!r}: a {base[0].value} breaker needs opened_at")
        self._set_base(base)
        self._failures, self._opened_at = failures, opened_at
        # a trial in flight before the restart was lost with the process: the next allow() starts a new one
        self._trial_started_at = None


Compare = Literal["below", "above"]


class ThresholdBreaker(_Breaker):
    """OPEN while the evaluated value is below (``compare="below"``) or above (``"above"``) ``threshold``.

    The comparison is strict: a value equal to the threshold is fine. A NaN value trips it (fail safe). Each trip
    and each recovery is reported once; repeated evaluations on the same side report nothing.
    """

    kind = "threshold"
    _states = frozenset({BreakerState.CLOSED, BreakerState.OPEN})

    def __init__(
        self,
        name: str,
        threshold: float | Decimal,
        compare: Compare = "below",
        *,
        clock: Clock,
        on_transition: OnTransition | None = None,
    ) -> None:
        super().__init__(name, clock=clock, on_transition=on_transition)
        if compare not in ("below", "above"):
            raise ValueError(f"compare must be 'below' or 'above', got {compare!r}")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float, Decimal)) or not _finite(threshold):
            raise ValueError(f"threshold must be a finite number, got {threshold!r}")
        self.threshold = threshold
        self.compare: Compare = compare
        self._last_value: float | None = None
        self._trips = 0

    @property
    def last_value(self) -> float | None:
        return self._last_value

    @property
    def trips(self) -> int:
        """How many times it has tripped (restored with the snapshot)."""
        return self._trips

    def _crossed(self, value: float | Decimal) -> bool:
        if not _finite(value):
            return True
        return value < self.threshold if self.compare == "below" else value > self.threshold

    def would_trip(self, value: float | Decimal) -> bool:
        """Whether :meth:`evaluate` of ``value`` would find it beyond the threshold (nothing is changed)."""
        return self._crossed(value)

    def evaluate(self, value: float | Decimal) -> BreakerState:
        """Compare ``value`` with the threshold; returns the resulting state (OPEN = tripped for this evaluation)."""
        if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
            raise TypeError(f"{self.name}: value must be a number, got {value!r}")
        now = self._now()
        self._last_value = float(value)
        if self._crossed(value):
            if self._state is BreakerState.CLOSED:
                self._trips += 1
                self._move(BreakerState.OPEN, f"value {value} is {self.compare} {self.threshold}", now)
        elif self._state is BreakerState.OPEN:
            self._move(BreakerState.CLOSED, f"value {value} is back within {self.threshold}", now)
        return self._state

    def allow(self) -> bool:
        return self._state is BreakerState.CLOSED

    def snapshot(self) -> dict[str, Any]:
        last = self._last_value if self._last_value is None or math.isfinite(self._last_value) else None
        return {**self._base_snapshot(), "last_value": last, "trips": self._trips}

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        base = self._parse_base(snapshot)
        last = snapshot.get("last_value")
        if last is not None and (isinstance(last, bool) or not isinstance(last, (int, float))):
            raise ValueError(f"snapshot last_value must be a number or null, got {last!r}")
        trips = _count(snapshot.get("trips", 0), "trips")
        self._set_base(base)
        self._last_value = float(last) if last is not None else None
        self._trips = trips


class LatchingBreaker(_Breaker):
    """Trips once and stays OPEN until a manual :meth:`reset`. Tripping again while OPEN keeps the first reason."""

    kind = "latching"
    _states = frozenset({BreakerState.CLOSED, BreakerState.OPEN})

    def __init__(self, name: str, *, clock: Clock, on_transition: OnTransition | None = None) -> None:
        super().__init__(name, clock=clock, on_transition=on_transition)

    @property
    def tripped(self) -> bool:
        return self._state is BreakerState.OPEN

    def allow(self) -> bool:
        return self._state is BreakerState.CLOSED

    def trip(self, reason: str) -> bool:
        """Latch it. Returns True if this call tripped it (False: it was already tripped)."""
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("a trip needs a reason")
        if self._state is BreakerState.OPEN:
            return False
        self._move(BreakerState.OPEN, reason, self._now())
        return True

    def reset(self, reason: str) -> bool:
        """The manual clear. Returns True if it was tripped."""
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("a reset needs a reason (who cleared it and why)")
        if self._state is BreakerState.CLOSED:
            return False
        self._move(BreakerState.CLOSED, reason, self._now())
        return True

    def snapshot(self) -> dict[str, Any]:
        return self._base_snapshot()

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        self._set_base(self._parse_base(snapshot))


class BackoffBreaker(_Breaker):
    """Pauses after ``threshold`` consecutive errors, for ``base * 2**k`` capped at ``max_backoff``.

    ``k`` is the number of consecutive errors beyond ``threshold`` (the ``threshold``-th error pauses for ``base``,
    the next for ``2 * base``, ...). An error while paused lengthens the pause (no event: the state is unchanged);
    once the pause has elapsed, ``allow()`` moves to HALF_OPEN and lets calls through; the next error pauses again
    for twice as long, a success closes it and resets the count.
    """

    kind = "backoff"

    def __init__(
        self,
        name: str,
        threshold: int = 3,
        base: timedelta = timedelta(minutes=1),
        max_backoff: timedelta = timedelta(hours=1),
        *,
        clock: Clock,
        on_transition: OnTransition | None = None,
    ) -> None:
        super().__init__(name, clock=clock, on_transition=on_transition)
        self.threshold = _positive_int(threshold, "threshold")
        self.base = _positive_timedelta(base, "base")
        self.max_backoff = _positive_timedelta(max_backoff, "max_backoff")
        if self.max_backoff < self.base:
            raise ValueError(f"max_backoff ({max_backoff}) must not be shorter than base ({base})")
        self._errors = 0
        self._paused_until: datetime | None = None

    @property
    def errors(self) -> int:
        return self._errors

    @property
    def paused_until(self) -> datetime | None:
        """End of the current pause (``None`` when not paused)."""
        return self._paused_until if self._state is BreakerState.OPEN else None

    def backoff_for(self, errors: int) -> timedelta:
        """The pause after ``errors`` consecutive errors (zero below the threshold)."""
        if errors < self.threshold:
            return timedelta(0)
        k = errors - self.threshold
        cap_us = _microseconds(self.max_backoff)
        base_us = _microseconds(self.base)
        pause_us = cap_us if k >= cap_us.bit_length() else min(base_us << k, cap_us)
        return timedelta(microseconds=pause_us)

    def allow(self) -> bool:
        if self._state is not BreakerState.OPEN:
            return True
        now = self._now()
        assert self._paused_until is not None
        if now < self._paused_until:
            return False
        self._move(BreakerState.HALF_OPEN, f"pause until {self._paused_until.isoformat()} elapsed", now)
        return True

    def record_success(self) -> None:
        now = self._now()
        self._errors = 0
        self._paused_until = None
        self._move(BreakerState.CLOSED, "success", now)

    def record_failure(self, reason: str = "") -> None:
        now = self._now()
        self._errors += 1
        if self._errors < self.threshold:
            return
        pause = self.backoff_for(self._errors)
        self._paused_until = now + pause
        detail = f": {reason}" if reason else ""
        self._move(
            BreakerState.OPEN,
            f"{self._errors} consecutive errors, paused for {pause} until {self._paused_until.isoformat()}{detail}",
            now,
        )

    def snapshot(self) -> dict[str, Any]:
        return {**self._base_snapshot(), "errors": self._errors, "paused_until": _iso(self._paused_until)}

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        base = self._parse_base(snapshot)
        errors = _count(snapshot.get("errors", 0), "errors")
        paused_until = _parse_time(snapshot.get("paused_until"), "paused_until")
        if base[0] is BreakerState.OPEN and paused_until is None:
            raise ValueError(f"snapshot of {self.name!r}: an open backoff breaker needs paused_until")
        self._set_base(base)
        self._errors, self._paused_until = errors, paused_until


def _finite(value: float | Decimal) -> bool:
    return value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)


def _microseconds(value: timedelta) -> int:
    return (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds


def drain_rows(events: list[BreakerEvent]) -> tuple[dict[str, Any], ...]:
    """Empty ``events`` (an ``on_transition`` sink) into ``breaker_events`` rows, oldest first."""
    rows = tuple(
        {"name": e.name, "from_state": str(e.from_state), "to_state": str(e.to_state), "reason": e.reason, "at": e.at}
        for e in events
    )
    events.clear()
    return rows

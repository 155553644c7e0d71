"""The iteration deadline and the "degraded" notes of an iteration, carried in a context variable.

:func:`deadline_scope` opens a scope (the orchestrator opens one per iteration, ``main.py`` one for the start-up
checks). Code running inside it - the bus handlers, and the worker threads they start with ``asyncio.to_thread``,
which copy the context - sees the same :class:`Deadline`:

* :func:`remaining` is how many seconds are left (``None`` outside any scope). The HTTP layer (:mod:`utils.http`)
  never waits, retries or lets a request run past it: a wait that would end after the deadline is not started, and
  :class:`DeadlineReached` is raised instead.
* :func:`note_degraded` records why the iteration is degraded (a source unreachable after its retries...); the
  Audit agent records the iteration with status ``degraded`` and these reasons.

:class:`TemporaryError` (defined in :mod:`core.errors`, re-exported here) marks failures that are expected to pass
(HTTP 429, 5xx, 408, timeouts, connection errors, the deadline): a stage that fails with one leaves the iteration
``degraded``, not ``failed``.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from collections.abc import Callable, Iterator

from core.errors import TemporaryError

__all__ = [
    "Deadline",
    "DeadlineReached",
    "TemporaryError",
    "current",
    "deadline_scope",
    "note_degraded",
    "remaining",
]


class DeadlineReached(TemporaryError):
    """The iteration deadline leaves no time for this request or wait."""


@dataclass(slots=True)
class Deadline:
    """One scope's deadline (on ``monotonic``'s clock) and the degraded reasons noted inside it."""

    seconds: float
    expires_at: float
    label: str = "iteration"
    monotonic: Callable[[], float] = time.monotonic
    notes: list[str] = field(default_factory=list)

    def remaining(self) -> float:
        return self.expires_at - self.monotonic()

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0

    def note(self, reason: str) -> None:
        if reason not in self.notes:
            self.notes.append(reason)


_CURRENT: ContextVar[Deadline | None] = ContextVar("agent_trader_deadline", default=None)


@contextmanager
def deadline_scope(
    seconds: float, *, label: str = "iteration", monotonic: Callable[[], float] = time.monotonic
) -> Iterator[Deadline]:
    """Run the body with a deadline ``seconds`` from now (a scope nested in another keeps the earlier deadline)."""
    if not seconds > 0:
        raise ValueError(f"deadline must be positive seconds, got {seconds!r}")
    outer = _CURRENT.get()
    expires_at = monotonic() + float(seconds)
    if outer is not None:
        expires_at = min(expires_at, outer.expires_at)
    deadline = Deadline(float(seconds), expires_at, label, monotonic)
    token = _CURRENT.set(deadline)
    try:
        yield deadline
    finally:
        _CURRENT.reset(token)
        if outer is not None:
            for reason in deadline.notes:
                outer.note(reason)


def current() -> Deadline | None:
    """The innermost open deadline scope, or None."""
    return _CURRENT.get()


def remaining() -> float | None:
    """Seconds left before the current deadline (negative once passed), or None outside any scope."""
    deadline = _CURRENT.get()
    return None if deadline is None else deadline.remaining()


def note_degraded(reason: str) -> None:
    """Record why the current iteration is degraded (a no-op outside any scope: the caller logs it anyway)."""
    deadline = _CURRENT.get()
    if deadline is not None:
        deadline.note(reason)

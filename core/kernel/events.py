"""Stage events: one per stage per iteration, each carrying the whole batch (all symbols).

Each event links to the event it was derived from (``previous``), so the Audit agent sees the complete chain of the
iteration — bars, signals, validations, approvals, orders and fills — without any shared mutable state.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from collections.abc import Mapping, Sequence

from core.kernel.domain import (
    Approval,
    BarsBatch,
    Decision,
    Denial,
    EquitySnapshot,
    Fill,
    Order,
    Signal,
    ValidatedSignal,
    ensure_utc,
    frozen_map,
    new_id,
)


_EVENT_ID_PREFIX = new_id()[:12]  # unique per process; the counter makes each event's id unique within it
_event_counter = itertools.count(1)


E = TypeVar("E", bound="Event")


def _next_event_id() -> str:
    """An event's identity (events compare and hash by it; it is never persisted): cheaper than a uuid4 per event,
    and seven events per iteration add up over a backtest."""
    return f"{_EVENT_ID_PREFIX}-{next(_event_counter):x}"


@dataclass(frozen=True, slots=True, eq=False, kw_only=True)
class Event:
    iteration_id: str
    as_of: datetime
    decisions: Sequence[Decision] = ()
    breaker_events: Sequence[Mapping[str, Any]] = ()
    degraded: Sequence[str] = ()  # why the iteration is degraded (it goes on, recorded with status "degraded")
    event_id: str = field(default_factory=lambda: _next_event_id())

    name = "event"

    def __post_init__(self) -> None:
        ensure_utc(self.as_of, "as_of")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and other.event_id == self.event_id

    def __hash__(self) -> int:
        return hash(self.event_id)

    def chain(self) -> list[Event]:
        """This event and every event it was derived from, oldest first."""
        events: list[Event] = []
        current: Event | None = self
        while current is not None:
            events.append(current)
            current = getattr(current, "previous", None)
        return list(reversed(events))

    def find(self, kind: type[E]) -> E | None:
        """The nearest event of type ``kind`` in this event's chain: this event if it is one, else the latest event it
        was derived from (through ``previous``) that is; e.g. ``approved.find(DataReady)`` is the iteration's bars.

        ``None`` when the chain holds none: ``kind`` is a later stage than this event, or the chain is cut before it
        (a stage event built without its ``previous``, as tests that drive one stage alone do). The caller decides
        what a missing stage means."""
        current: Event | None = self
        while current is not None:
            if isinstance(current, kind):
                return current
            current = getattr(current, "previous", None)
        return None


@dataclass(frozen=True, slots=True, eq=False, kw_only=True)
class IterationStarted(Event):
    seq: int = 0
    name = "iteration_started"


@dataclass(frozen=True, slots=True, eq=False, kw_only=True)
class DataReady(Event):
    previous: IterationStarted | None = None
    batch: BarsBatch | None = None
    name = "data_ready"


@dataclass(frozen=True, slots=True, eq=False, kw_only=True)
class SignalsReady(Event):
    previous: DataReady | None = None
    signals: Mapping[str, Signal] = field(default_factory=frozen_map)
    llm_calls: Sequence[Mapping[str, Any]] = ()
    shadow: Sequence[Mapping[str, Any]] = ()
    name = "signals_ready"


@dataclass(frozen=True, slots=True, eq=False, kw_only=True)
class ValidatedReady(Event):
    previous: SignalsReady | None = None
    validated: Mapping[str, ValidatedSignal] = field(default_factory=frozen_map)
    name = "validated_ready"


@dataclass(frozen=True, slots=True, eq=False, kw_only=True)
class ApprovedReady(Event):
    previous: ValidatedReady | None = None
    approvals: Sequence[Approval] = ()
    denials: Sequence[Denial] = ()
    name = "approved_ready"


@dataclass(frozen=True, slots=True, eq=False, kw_only=True)
class ExecutedReady(Event):
    previous: ApprovedReady | None = None
    orders: Sequence[Order] = ()
    fills: Sequence[Fill] = ()
    order_updates: Sequence[Order] = ()
    equity: EquitySnapshot | None = None
    name = "executed_ready"


STAGE_EVENTS = (DataReady, SignalsReady, ValidatedReady, ApprovedReady, ExecutedReady)

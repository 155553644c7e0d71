"""The event bus: stage events flow breadth-first, one stage at a time.

``publish(event)`` runs every handler subscribed to the event's type, waits for all of them (a stage barrier), then
publishes the events they returned, and so on until no handler returns anything. Two dispatch modes give identical
results on the same inputs:

* ``async`` (default): the handlers of one event run concurrently as tasks, started eagerly in subscription order
  (no task outlives ``publish``);
* ``sync``: the handlers of one event run one after the other, in subscription order.

Returned events are always published in subscription order, so ordering never depends on timing. A handler that raises
is logged and recorded in the :class:`PublishReport`; the other handlers and the daemon carry on. ``close()`` refuses
new work and waits for in-flight publishes to drain.
"""

from __future__ import annotations

import asyncio
import inspect
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, TypeVar
from collections.abc import Awaitable, Callable, Sequence

from loguru import logger

from core.errors import OperationalError
from core.kernel.events import Event
from utils.deadline import TemporaryError

E = TypeVar("E", bound=Event)
HandlerResult = Event | Sequence[Event] | None
Handler = Callable[[Any], HandlerResult | Awaitable[HandlerResult]]


class BusClosed(OperationalError, RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class HandlerFailure:
    handler: str
    event: str
    iteration_id: str
    error: str
    traceback: str
    transient: bool = False  # the handler met a TemporaryError (a service unreachable after its retries, the deadline)


@dataclass(slots=True)
class PublishReport:
    events: list[Event] = field(default_factory=list)
    failures: list[HandlerFailure] = field(default_factory=list)

    @property
    def last_event(self) -> Event | None:
        return self.events[-1] if self.events else None

    def find(self, event_type: type[E]) -> E | None:
        for event in reversed(self.events):
            if isinstance(event, event_type):
                return event
        return None


@dataclass(frozen=True, slots=True)
class _Subscription:
    event_type: type[Event]
    handler: Handler
    name: str


class EventBus:
    def __init__(self, mode: str = "async") -> None:
        if mode not in ("async", "sync"):
            raise ValueError(f"bus mode must be 'async' or 'sync', got {mode!r}")
        self.mode = mode
        self._subscriptions: dict[type[Event], list[_Subscription]] = defaultdict(list)
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False

    def subscribe(
        self,
        event_type: type[E],
        handler: Callable[[E], HandlerResult | Awaitable[HandlerResult]],
        name: str | None = None,
    ) -> None:
        label = name or str(getattr(handler, "__qualname__", repr(handler)))
        self._subscriptions[event_type].append(_Subscription(event_type, handler, label))

    def replace(
        self,
        event_type: type[E],
        name: str,
        handler: Callable[[E], HandlerResult | Awaitable[HandlerResult]],
    ) -> None:
        """Put ``handler`` in place of the subscription named ``name`` (same position, same name); KeyError when
        ``event_type`` has no subscription of that name."""
        subs = self._subscriptions.get(event_type, [])
        for k, sub in enumerate(subs):
            if sub.name == name:
                subs[k] = _Subscription(event_type, handler, name)
                return
        raise KeyError(f"no {event_type.__name__} subscription named {name!r}")

    def subscribers(self, event_type: type[Event]) -> list[str]:
        return [s.name for s in self._handlers_for(event_type)]

    def _handlers_for(self, event_type: type[Event]) -> list[_Subscription]:
        found: list[_Subscription] = []
        for klass in event_type.__mro__:
            found.extend(self._subscriptions.get(klass, ()))
        return found

    async def publish(self, event: Event, report: PublishReport | None = None) -> PublishReport:
        """``report``: filled in place (pass one to keep what was done if this publish is cancelled, e.g. by a
        deadline)."""
        if self._closed:
            raise BusClosed("the event bus is closed; no new work is accepted")
        self._in_flight += 1
        self._idle.clear()
        report = report if report is not None else PublishReport()
        try:
            wave: list[Event] = [event]
            while wave:
                next_wave: list[Event] = []
                for current in wave:
                    report.events.append(current)
                    subs = self._handlers_for(type(current))
                    if self.mode == "async" and len(subs) > 1:
                        results = await self._concurrently(subs, current, report)
                    else:
                        results = [await self._run(s, current, report) for s in subs]
                    for produced in results:
                        next_wave.extend(produced)
                wave = next_wave
            return report
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def _concurrently(self, subs: list[_Subscription], event: Event, report: PublishReport) -> list[list[Event]]:
        """Run the handlers of one event as concurrent tasks, started eagerly in subscription order: a handler that
        finishes without waiting on anything (most do, in a backtest) costs no trip through the event loop. Those
        that wait are awaited together; if this publish is cancelled, they are cancelled with it."""
        loop = asyncio.get_running_loop()
        tasks = [asyncio.Task(self._run(s, event, report), loop=loop, eager_start=True) for s in subs]
        waiting = [t for t in tasks if not t.done()]
        if waiting:
            try:
                await asyncio.gather(*waiting)
            except BaseException:
                for task in waiting:
                    task.cancel()
                await asyncio.gather(*waiting, return_exceptions=True)
                raise
        return [t.result() for t in tasks]

    async def _run(self, sub: _Subscription, event: Event, report: PublishReport) -> list[Event]:
        try:
            result = sub.handler(event)
            if inspect.isawaitable(result):
                result = await result
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a failing handler must not kill the daemon: log it, record it, carry on
            failure = HandlerFailure(
                handler=sub.name,
                event=type(event).__name__,
                iteration_id=event.iteration_id,
                error=f"{exc.__class__.__name__}: {exc}",
                traceback="".join(traceback.format_exception(exc)),
                transient=isinstance(exc, TemporaryError),
            )
            report.failures.append(failure)
            logger.opt(exception=exc).error("handler {} failed on {}: {}", sub.name, failure.event, failure.error)
            return []
        if result is None:
            return []
        if isinstance(result, Event):
            return [result]
        return [e for e in result if e is not None]

    async def close(self) -> None:
        """Refuse new publishes and wait until in-flight ones have finished."""
        self._closed = True
        await self._idle.wait()

    @property
    def closed(self) -> bool:
        return self._closed

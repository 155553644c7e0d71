"""The Notifier: one message per iteration (its events bundled), immediate ones for start, stop, crash and an
unhealthy health check, delivered through apprise without ever blocking or failing an iteration.

- :meth:`Notifier.observe` is the Audit agent's ``on_record`` hook: it builds the iteration's message (pure functions
  of :mod:`core.analytics.notifications`), keeps the kinds NOTIFY_KINDS switches on, and queues it. It returns at
  once: a worker thread delivers, each delivery bounded by NOTIFY_TIMEOUT_SECONDS (a slower one is abandoned and
  recorded ``failed``), and at most :data:`MAX_QUEUED` messages wait (older ones beyond are ``dropped``).
- Every outcome is recorded in the ``notifications`` table by the thread that owns the database (at the next
  iteration, :meth:`Notifier.drain` or :meth:`Notifier.close`) and counted (:attr:`Notifier.counts`).
- A failure is logged once, with the reason and without the URL, until a delivery succeeds again.
- The configured secrets (API keys, the URLs' tokens) are redacted from every title and body before it leaves the
  process or reaches the database; apprise's own log, which names the URL, is kept out of the process's logs.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from loguru import logger

from config.settings import Schedule, Settings, notify_url_secrets, quiet_apprise
from core.analytics.notifications import (
    NEW_YORK,
    Kind,
    Message,
    bundle,
    discrepancy_notes,
    iteration_notes,
    lifecycle_message,
)
from core.kernel.calendar import MarketCalendar
from core.kernel.domain import TERMINAL_ORDER_STATUSES, Order
from core.persistence.repository import IterationRecord, Repository
from core.vocabulary import parse_notify_kinds
from utils.secrets import SecretScrubber

__all__ = ["MAX_QUEUED", "Notifier", "apprise_sender", "build_notifier", "session_end_rule"]

MAX_QUEUED = 100
MAX_WAITED = 5  # at shutdown, the deliveries waited for (each bounded by the timeout); the rest are ``dropped``
MAX_KNOWN_ORDERS = 2000  # orders kept to classify fills and count working orders (the oldest finished ones go first)

Sender = Callable[[Message], str | None]
"""Delivers one message; returns None when delivered, otherwise why not (without the URL)."""


def apprise_sender(urls: Sequence[str], secrets: Iterable[str] = ()) -> Sender:
    """A sender to every apprise URL of ``urls`` (validated at start-up by the settings); ``secrets`` (the URLs' own
    secret parts are added) are scrubbed from the libraries' log lines."""
    import apprise

    quiet_apprise([*secrets, *(part for url in urls for part in notify_url_secrets(url))])

    def send(message: Message) -> str | None:
        logging.getLogger("apprise").propagate = False
        service = apprise.Apprise()
        for url in urls:
            service.add(url)
        with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
            ok = service.notify(
                body=message.body,
                title=message.title,
                notify_type=apprise.NotifyType.FAILURE if message.failure else apprise.NotifyType.INFO,
            )
        if ok:
            return None
        lines = [line.strip() for line in captured.getvalue().splitlines() if line.strip()]
        return "; ".join(dict.fromkeys(lines)) or "apprise reported a failed delivery"

    return send


def session_end_rule(
    settings: Settings, calendar: MarketCalendar, *, one_per_session: bool
) -> Callable[[datetime], bool]:
    """Whether an iteration at ``as_of`` is its session's last: always with one iteration per session (the session
    schedule, a replay); on the interval schedule, when the next iteration falls after the session's close."""
    if one_per_session or settings.schedule is Schedule.SESSION:
        return lambda as_of: True
    interval = timedelta(seconds=settings.loop_interval_seconds)

    def last_of_session(as_of: datetime) -> bool:
        session = calendar.session_for(as_of.astimezone(UTC))
        return session is None or as_of + interval >= session.close_utc

    return last_of_session


@dataclass(frozen=True, slots=True)
class _Outcome:
    message: Message
    created_at: datetime
    finished_at: datetime | None
    status: str
    error: str | None


class Notifier:
    """Turns finished iterations and lifecycle events into notifications and delivers them (see the module doc)."""

    def __init__(
        self,
        sender: Sender,
        *,
        kinds: Iterable[Kind],
        timeout_s: float,
        clock: Callable[[], datetime],
        secrets: Iterable[str] = (),
        repository: Repository | None = None,
        run_id: str | None = None,
        label: str = "",
        session_end: Callable[[datetime], bool] = lambda as_of: True,
        orders: Iterable[Order] = (),
    ) -> None:
        self._sender = sender
        self.kinds = frozenset(kinds)
        self._timeout_s = timeout_s
        self._clock = clock
        self._scrubber = SecretScrubber(secrets)
        self._repository = repository
        self.run_id = run_id
        self._label = label
        self._session_end = session_end
        self._orders: dict[str, Order] = {o.client_order_id: o for o in orders}
        self._discrepancies: list[Mapping[str, Any]] = []
        self._day: str | None = None
        self._day_start_equity: Decimal | None = None
        self._last_equity: Decimal | None = None
        self._queue: queue.Queue[int | None] = queue.Queue()  # keys of ``_waiting``, in order
        self._waiting: dict[int, tuple[Message, datetime]] = {}  # queued or being delivered, oldest first
        self._sequence = 0
        self._lock = threading.Lock()
        self._done: list[_Outcome] = []
        self._idle = threading.Condition(self._lock)
        self._worker: threading.Thread | None = None
        self._failing = False
        self.counts: Counter[str] = Counter()  # sent / failed / dropped, for this process

    # --- inputs --------------------------------------------------------------------------------------
    def discrepancies(self, events: Sequence[Mapping[str, Any]]) -> None:
        """The reconciler's hook: discrepancies found, notified with the next iteration's message (or the start's)."""
        self._discrepancies.extend(events)

    def observe(self, record: IterationRecord) -> None:
        """The Audit agent's ``on_record`` hook: queue the iteration's message (never raises, never waits)."""
        try:
            self._observe(record)
        except Exception as exc:  # a notification must never fail an iteration; the bug is logged, not hidden
            logger.opt(exception=exc).error("notifications: could not build the iteration's message: {}", exc)

    def _observe(self, record: IterationRecord) -> None:
        self.record_outcomes()
        day = record.as_of.astimezone(NEW_YORK).date().isoformat()
        if record.equity is not None:
            if day != self._day:
                self._day_start_equity = self._last_equity
                self._day = day
            self._last_equity = record.equity.equity
        self._remember(record.orders)
        discrepancies, self._discrepancies = self._discrepancies, []
        summary = Kind.SUMMARY in self.kinds and self._session_end(record.as_of)
        notes = iteration_notes(
            record,
            discrepancies=discrepancies,
            orders=self._orders,
            summary=summary,
            day_start_equity=self._day_start_equity,
        )
        message = bundle(record, [n for n in notes if n.kind in self.kinds], label=self._label)
        if message is not None:
            self._enqueue(message)

    def lifecycle(self, kind: Kind, at: datetime, text: str) -> bool:
        """Queue a start, stop, crash, health or reset message at once (the start's carries the start-up
        reconciliation's discrepancies). False when NOTIFY_KINDS switches ``kind`` off."""
        if kind not in self.kinds:
            return False
        if kind is Kind.START and self._discrepancies and Kind.RECONCILIATION in self.kinds:
            text += "\n" + "\n".join(n.text for n in discrepancy_notes(self._discrepancies))
            self._discrepancies = []
        self._enqueue(lifecycle_message(kind, at, text, label=self._label))
        return True

    def _remember(self, orders: Sequence[Order]) -> None:
        for order in orders:
            self._orders[order.client_order_id] = order
        if len(self._orders) > MAX_KNOWN_ORDERS:
            finished = [k for k, o in self._orders.items() if o.status in TERMINAL_ORDER_STATUSES]
            for key in finished[: len(self._orders) - MAX_KNOWN_ORDERS]:
                del self._orders[key]

    # --- delivery ------------------------------------------------------------------------------------
    def _enqueue(self, message: Message) -> None:
        message = Message(
            title=self._scrubber.text(message.title),
            body=self._scrubber.text(message.body),
            kinds=message.kinds,
            failure=message.failure,
        )
        created = self._clock()
        with self._lock:
            if len(self._waiting) >= MAX_QUEUED:  # the oldest goes (a delivery of it under way is then ignored)
                oldest = next(iter(self._waiting))
                self._finish(
                    oldest, _Outcome(*self._waiting[oldest], None, "dropped", "too many notifications waiting")
                )
            self._sequence += 1
            self._waiting[self._sequence] = (message, created)
            self._queue.put(self._sequence)
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="notifier", daemon=True)
                self._worker.start()

    def _work(self) -> None:
        while True:
            key = self._queue.get()
            if key is None:
                return
            with self._lock:
                item = self._waiting.get(key)
            if item is None:  # dropped meanwhile
                continue
            status, error = self._deliver(item[0])
            with self._lock:
                if key in self._waiting:  # not recorded as dropped by close() meanwhile
                    self._finish(key, _Outcome(*item, self._clock(), status, error))

    def _deliver(self, message: Message) -> tuple[str, str | None]:
        """Send ``message`` in a thread of its own, waiting at most the timeout (a hung one is abandoned)."""
        result: list[str | None] = []

        def run() -> None:
            try:
                result.append(self._sender(message))
            except Exception as exc:  # the service's client failed: a failed delivery, with the reason
                result.append(f"{type(exc).__name__}: {exc}")

        thread = threading.Thread(target=run, name="notifier-delivery", daemon=True)
        thread.start()
        thread.join(self._timeout_s)
        if thread.is_alive():
            return "failed", f"timed out after {self._timeout_s:g}s"
        reason = result[0] if result else "no answer"
        return ("sent", None) if reason is None else ("failed", self._scrubber.text(reason))

    def _finish(self, key: int, outcome: _Outcome) -> None:
        """Count and keep ``outcome`` of message ``key`` for the record (the caller holds the lock); log a failure
        once per streak."""
        del self._waiting[key]
        self.counts[outcome.status] += 1
        self._done.append(outcome)
        if outcome.status == "sent":
            if self._failing:
                logger.info("notifications delivered again")
            self._failing = False
        elif not self._failing:
            self._failing = True
            logger.warning(
                "notification {} ({}): {}; further failures are counted in the notifications table",
                outcome.status,
                ", ".join(outcome.message.kinds),
                outcome.error,
            )
        self._idle.notify_all()

    # --- outcomes ------------------------------------------------------------------------------------
    def record_outcomes(self) -> None:
        """Write the finished deliveries to the ``notifications`` table (on the caller's thread)."""
        with self._lock:
            done, self._done = self._done, []
        if not done or self._repository is None:
            return
        rows = [
            {
                "run_id": self.run_id,
                "created_at": o.created_at,
                "finished_at": o.finished_at,
                "kinds": ",".join(o.message.kinds),
                "title": o.message.title,
                "body": o.message.body,
                "status": o.status,
                "error": o.error,
            }
            for o in done
        ]
        try:
            self._repository.record_notifications(rows)
        except Exception as exc:  # the ledger's own failures surface through the iteration's write, not here
            logger.error("notifications: {} outcomes not recorded: {}", len(rows), type(exc).__name__)

    def drain(self, timeout_s: float | None = None) -> bool:
        """Wait until every queued message is delivered or failed (at most ``timeout_s``; default: the delivery
        timeout of each message waiting, at most :data:`MAX_WAITED` of them, plus a second), then record the
        outcomes. True when nothing is left waiting."""
        with self._lock:
            limit = timeout_s if timeout_s is not None else self._timeout_s * min(len(self._waiting), MAX_WAITED) + 1
            self._idle.wait_for(lambda: not self._waiting, timeout=limit)
            empty = not self._waiting
        self.record_outcomes()
        return empty

    def close(self, timeout_s: float | None = None) -> None:
        """Deliver what is waiting (bounded, see :meth:`drain`), record everything left as ``dropped``, stop."""
        self.drain(timeout_s)
        with self._lock:
            for key in list(self._waiting):  # still queued or being delivered: recorded now (a late result is ignored)
                self._finish(
                    key, _Outcome(*self._waiting[key], None, "dropped", "the daemon stopped before it was sent")
                )
            self._queue.put(None)
            self._worker = None
        self.record_outcomes()


def build_notifier(
    settings: Settings,
    *,
    clock: Callable[[], datetime],
    repository: Repository | None,
    run_id: str | None,
    calendar: MarketCalendar | None = None,
    one_per_session: bool = False,
    orders: Iterable[Order] = (),
    sender: Sender | None = None,
) -> Notifier | None:
    """The Notifier of NOTIFY_URLS (None when no URL is configured)."""
    urls = settings.notify_url_list
    if not urls:
        return None
    label = f"{settings.trading_mode.value}" + (f" {run_id}" if run_id else "")
    return Notifier(
        sender or apprise_sender(urls, settings.secret_values),
        kinds=parse_notify_kinds(settings.notify_kinds),
        timeout_s=settings.notify_timeout_seconds,
        clock=clock,
        secrets=settings.secret_values,
        repository=repository,
        run_id=run_id,
        label=label,
        session_end=session_end_rule(settings, calendar or MarketCalendar(), one_per_session=one_per_session),
        orders=orders,
    )

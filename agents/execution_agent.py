"""Execution agent: syncs the broker on new data, submits approved orders, reports orders, fills and equity.

Orders in doubt. With an intent store (the daemon's repository), every order is written to ``order_intents`` and
committed BEFORE it is submitted. An intent stays ``pending`` until the broker's order is in the ledger (the
iteration that records it settles the intent in the same transaction). At start-up (:meth:`ExecutionAgent.start`)
and at the start of every iteration, each pending intent is looked up at the broker by client order id (open or
closed orders, with their legs and fills): found, the order is reported and recorded; not found once the broker's
submission window has passed, it is settled ``never_accepted``; a failed lookup leaves it pending for the next
iteration. A crash between the broker accepting an order and the ledger recording it therefore loses nothing.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Protocol
from collections.abc import Callable

from loguru import logger

from core.brokers.base import Broker, BrokerError, SyncResult
from core.kernel.domain import BarsBatch, Decision, EquitySnapshot, Fill, Order, OrderIntent, SymbolBars
from core.persistence.repository import PendingIntent
from core.risk.positions import PositionManager
from core.persistence.reconcile import Reconciler
from utils.failpoints import failpoint
from core.kernel.events import ApprovedReady, DataReady, ExecutedReady
from core.vocabulary import AgentName, DecisionAction
from utils.circuit_breaker import BackoffBreaker, BreakerEvent, drain_rows
from utils.deadline import TemporaryError, note_degraded

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _session_day(batch: BarsBatch | None, as_of: datetime) -> date:
    """The session the iteration decided on: the latest bar any symbol of the batch shows (``as_of``'s date without
    bars)."""
    session = batch.session_day() if batch is not None else None
    return session if session is not None else as_of.date()


def client_order_id(prefix: str, session: date, intent: OrderIntent) -> str:
    """Deterministic id from (iteration, symbol, intent), the iteration being named by the session whose bars it
    decided on: a retried *or restarted* iteration (a new process, a new run id) makes the same decisions with the
    same ids, and the broker answers with the existing order instead of creating a second one. ``prefix``: ``paper``
    or ``live`` for the daemon, the run id for replays and backtests.

    At most 128 characters (Alpaca's limit); long prefixes are shortened with a hash.
    """
    base = f"{prefix}-{session:%Y%m%d}-{intent.symbol}-{intent.side.value}"
    safe = _UNSAFE.sub("_", base)
    if len(safe) <= 128:
        return safe
    digest = hashlib.sha256(base.encode()).hexdigest()[:24]
    return f"{safe[:100]}-{digest}"


class IntentStore(Protocol):
    """Where orders are written before they are submitted (:class:`core.persistence.repository.Repository`)."""

    def record_intent(
        self, *, run_id: str, iteration_id: str, broker: str, client_order_id: str, intent: OrderIntent, at: datetime
    ) -> None: ...

    def pending_intents(self, broker: str) -> list[PendingIntent]: ...

    def note_intent_lookup(self, client_order_id: str, *, error: str | None) -> None: ...

    def settle_intent_never_accepted(self, client_order_id: str, at: datetime, note: str) -> None: ...


DEFAULT_SUBMISSION_WINDOW = timedelta(minutes=5)


def merge_reports(*reports: SyncResult | None) -> SyncResult:
    """Several broker reports as one: fills in order (each fill id once), each order once with its latest state."""
    fills: dict[str, Fill] = {}
    orders: dict[str, Order] = {}
    notes: list[str] = []
    for report in reports:
        if report is None:
            continue
        for fill in report.fills:
            fills.setdefault(fill.fill_id, fill)
        for order in report.orders:
            orders.pop(order.client_order_id, None)
            orders[order.client_order_id] = order
        notes.extend(report.notes)
    return SyncResult(fills=tuple(fills.values()), orders=tuple(orders.values()), notes=tuple(notes))


@dataclass
class _Progress:
    """What the broker reported and accepted during one iteration, kept until the iteration hands it on, so a
    failing later stage cannot drop it (see :meth:`ExecutionAgent.discard`)."""

    synced: SyncResult = field(default_factory=SyncResult)
    submitted: list[Order] = field(default_factory=list)


class ExecutionAgent:
    """Repeated broker errors trip a backoff breaker: submissions pause (recorded per symbol) until it allows again."""

    name = AgentName.EXECUTION

    def __init__(
        self,
        broker: Broker,
        *,
        order_prefix: str,
        breaker: BackoffBreaker | None = None,
        breaker_events: list[BreakerEvent] | None = None,
        reconciler: Reconciler | None = None,
        positions: PositionManager | None = None,
        atr: Callable[[SymbolBars], float] | None = None,
        routine_decisions: bool = True,
        intents: IntentStore | None = None,
        run_id: str = "",
        submission_window: timedelta | None = None,
    ) -> None:
        """``routine_decisions``: record a "none" decision for every symbol without an order (the daemon does).
        ``intents``: write every order before submitting it and resolve the ones in doubt (the daemon does; ``run_id``
        names the run in those rows). ``submission_window``: how long an order may take to appear at the broker
        (default: the broker's ``submission_window``, else 5 minutes)."""
        self._routine = routine_decisions
        self._intents = intents
        self._run_id = run_id
        window = submission_window if submission_window is not None else getattr(broker, "submission_window", None)
        self._window: timedelta = window if isinstance(window, timedelta) else DEFAULT_SUBMISSION_WINDOW
        self._carried: SyncResult | None = None
        self._broker = broker
        self._prefix = order_prefix
        self._reconciler = reconciler
        self._positions = positions
        self._atr = atr
        self._progress: dict[str, _Progress] = {}
        self._breaker = breaker
        self._events: list[BreakerEvent] = breaker_events if breaker_events is not None else []

    async def start(self, now: datetime) -> list[dict[str, Any]]:
        """Start-up: resolve the orders in doubt, catch up with what the broker did while the daemon was down (a
        broker with ``poll()``), then reconcile positions and open orders with the ledger. What was found is
        recorded with the first iteration. Returns the discrepancies recorded."""
        resolved = await self.resolve_in_doubt(now)
        poll = getattr(self._broker, "poll", None)
        polled = await poll() if poll is not None else None
        account = await self._broker.account()
        carried = merge_reports(self._carried, resolved, polled, self._take_reported())
        self._carried = carried
        failpoint("after_catch_up")  # what was found is only in memory until the first iteration records it
        if self._reconciler is None:
            return []
        in_doubt = (
            {p.intent.symbol for p in self._intents.pending_intents(self._broker.name)} if self._intents else set()
        )
        return self._reconciler.at_startup(account, now, unrecorded_fills=carried.fills, skip_symbols=in_doubt)

    async def resolve_in_doubt(self, now: datetime) -> SyncResult:
        """Look each pending intent up at the broker by client order id. Found: the order (with its legs and fills,
        which the broker reports with its next sync) is returned; not found after the submission window: settled as
        never accepted; the lookup failed: it stays pending (counted, with the error) for the next iteration."""
        lookup = getattr(self._broker, "order_by_client_id", None)
        if self._intents is None or lookup is None:
            return SyncResult()
        found: list[Order] = []
        notes: list[str] = []
        for pending in self._intents.pending_intents(self._broker.name):
            coid = pending.client_order_id
            try:
                order = await lookup(coid, intent=pending.intent, submitted_at=pending.created_at)
            except BrokerError as exc:
                logger.warning("execution: order {} is still in doubt: lookup failed: {}", coid, exc)
                self._intents.note_intent_lookup(coid, error=str(exc))
                notes.append(f"{coid}: still in doubt (lookup failed: {exc})")
                continue
            if order is not None:
                logger.info("execution: order {} in doubt found at the broker: {}", coid, order.status.value)
                found.append(order)
                continue
            age = now - pending.created_at
            if age >= self._window:
                note = f"the broker has no order {coid} {age.total_seconds():.0f}s after it was written: never accepted"
                logger.warning("execution: {}", note)
                self._intents.settle_intent_never_accepted(coid, now, note)
                notes.append(note)
            else:
                self._intents.note_intent_lookup(coid, error=None)
                notes.append(f"{coid}: not at the broker yet ({age.total_seconds():.0f}s after it was written)")
        return SyncResult(orders=tuple(found), notes=tuple(notes))

    def _take_reported(self) -> SyncResult | None:
        take = getattr(self._broker, "take_reported", None)
        return take() if take is not None else None

    async def on_data(self, event: DataReady) -> None:
        """Resolve orders in doubt, then advance the broker to the iteration's bars (fills of earlier orders) before
        Risk reads the account.

        A broker error here is logged and counted by the breaker; the iteration goes on without new fills."""
        assert event.batch is not None
        carried, self._carried = self._carried, None
        progress = self._progress[event.iteration_id] = _Progress(synced=merge_reports(carried))
        resolved = await self.resolve_in_doubt(event.as_of)
        progress.synced = merge_reports(carried, resolved)
        try:
            synced = await self._broker.sync(event.batch)
        except BrokerError as exc:
            logger.error("execution: broker sync failed: {}", exc)
            if self._breaker is not None:
                self._breaker.record_failure(f"sync: {exc}")
            note_degraded(f"execution: broker sync failed: {exc}")
            synced = SyncResult(notes=(f"broker sync failed: {exc}",))
        progress.synced = merge_reports(carried, resolved, synced)

    def synced(self, iteration_id: str) -> SyncResult | None:
        """What the broker reported so far in iteration ``iteration_id`` (None once the iteration has been executed,
        or before its sync)."""
        progress = self._progress.get(iteration_id)
        return progress.synced if progress is not None else None

    def discard(self, iteration_id: str) -> SyncResult | None:
        """Hand over (and forget) what the broker reported and accepted in an iteration that failed before executing
        completed: its fills, order updates and the orders already submitted, so the failed iteration records them."""
        progress = self._progress.pop(iteration_id, None)
        reported = self._take_reported()
        if progress is None:
            return reported
        return merge_reports(progress.synced, SyncResult(orders=tuple(progress.submitted)), reported)

    async def _trail_stops(self, batch: BarsBatch, now: datetime, decisions: list[Decision]) -> list[Order]:
        """Raise protective stops to their trailing level by modifying the working stop order in place."""
        replace_stop = getattr(self._broker, "replace_stop", None)
        if self._positions is None or self._atr is None or replace_stop is None:
            return []
        account = await self._broker.account()
        plans = self._positions.plans(account)
        atr = {s: self._atr(batch.bars[s]) for s in plans if s in batch.bars}
        changed: list[Order] = []
        for update in self._positions.trailing_updates(plans, batch, atr):
            try:
                order = await replace_stop(update.stop_order_id, update.new_stop, now)
            except BrokerError as exc:
                decisions.append(
                    Decision(
                        AgentName.POSITIONS,
                        update.symbol,
                        DecisionAction.TRAIL_FAILED,
                        f"{update.reason}: broker refused: {exc}",
                        {"stop_order_id": update.stop_order_id},
                    )
                )
                continue
            changed.append(order)
            flag = batch.entry_blocked.get(update.symbol)
            decisions.append(
                Decision(
                    AgentName.POSITIONS,
                    update.symbol,
                    DecisionAction.TRAIL_STOP,
                    update.reason + (f" on the last good bar (data flagged: {flag})" if flag is not None else ""),
                    {
                        "stop_order_id": order.client_order_id,
                        "old": update.old_stop,
                        "new": update.new_stop,
                        **({"data_flag": flag} if flag else {}),
                    },
                )
            )
        return changed

    async def on_approved(self, event: ApprovedReady) -> ExecutedReady:
        progress = self._progress.get(event.iteration_id)
        if progress is None:  # no DataReady went through on_data (tests drive this stage alone)
            progress = self._progress[event.iteration_id] = _Progress(synced=merge_reports(self._carried))
            self._carried = None
        synced = progress.synced
        orders = progress.submitted
        decisions: list[Decision] = []
        data = event.find(DataReady)
        batch = data.batch if data is not None else None
        session_day = _session_day(batch, event.as_of) if event.approvals else event.as_of.date()  # only ids need it
        try:
            updates = await self._trail_stops(batch, event.as_of, decisions) if batch is not None else []
        except BrokerError as exc:  # the account could not be read: no stop moves this iteration, orders still go
            logger.error("execution: trailing stops skipped: {}", exc)
            note_degraded(f"execution: trailing stops skipped: {exc}")
            updates = []
        for approval in event.approvals:
            intent = approval.intent
            coid = client_order_id(self._prefix, session_day, intent)
            if self._breaker is not None and not self._breaker.allow():
                until = self._breaker.paused_until
                decisions.append(
                    Decision(
                        AgentName.EXECUTION,
                        intent.symbol,
                        DecisionAction.PAUSED,
                        f"order submission paused after repeated broker errors until {until.isoformat() if until else '?'} ({self._breaker.reason})",
                        {"client_order_id": coid, "paused_until": until},
                        strategy=intent.strategy,
                        confidence=intent.confidence,
                    )
                )
                continue
            if self._intents is not None:  # committed before the request leaves: a crash cannot lose the order
                self._intents.record_intent(
                    run_id=self._run_id,
                    iteration_id=event.iteration_id,
                    broker=self._broker.name,
                    client_order_id=coid,
                    intent=intent,
                    at=event.as_of,
                )
            try:
                failpoint("before_submit")
                order = await self._broker.submit(intent, coid, event.as_of)
                failpoint("after_submit")
                if self._breaker is not None:
                    self._breaker.record_success()
            except BrokerError as exc:
                if self._breaker is not None:
                    self._breaker.record_failure(f"submit {coid}: {exc}")
                if isinstance(exc, TemporaryError):
                    note_degraded(f"execution: {intent.symbol} not submitted: {exc}")
                logger.error("execution: {} {} x{} failed: {}", intent.side.value, intent.symbol, intent.quantity, exc)
                decisions.append(
                    Decision(
                        AgentName.EXECUTION,
                        intent.symbol,
                        DecisionAction.FAILED,
                        f"broker refused {intent.side.value} {intent.quantity}: {exc}",
                        {"client_order_id": coid, "error": str(exc)},
                        strategy=intent.strategy,
                        confidence=intent.confidence,
                    )
                )
                continue
            orders.append(order)
            decisions.append(
                Decision(
                    AgentName.EXECUTION,
                    intent.symbol,
                    DecisionAction.SUBMITTED if order.status.value != "rejected" else DecisionAction.REJECTED,
                    f"{order.side.value} {order.quantity} {order.order_type.value} as {coid}: {order.status.value}"
                    + (f" ({order.reason})" if order.status.value == "rejected" and order.reason else ""),
                    {
                        "client_order_id": coid,
                        "quantity": order.quantity,
                        "order_type": order.order_type.value,
                        "status": order.status.value,
                    },
                    strategy=intent.strategy,
                    confidence=intent.confidence,
                )
            )
        submitted = {o.symbol for o in orders} | {d.symbol for d in decisions if d.agent == AgentName.EXECUTION}
        if batch is not None and self._routine:
            for symbol in list(batch.bars) + list(batch.rejected):
                if symbol not in submitted:
                    decisions.append(
                        Decision(AgentName.EXECUTION, symbol, DecisionAction.NONE, "no approved order", {})
                    )
        # what the broker learnt during this iteration (a bracket's legs from the submission's answer, protective
        # orders cancelled for an exit, a fill seen reading the account) is recorded by this iteration
        reported = merge_reports(self._take_reported())
        latest = {o.client_order_id: o for o in reported.orders}
        orders = [latest.pop(o.client_order_id, o) for o in orders]
        order_updates = merge_reports(
            synced, SyncResult(orders=tuple(updates)), SyncResult(orders=tuple(latest.values()))
        ).orders
        fills = merge_reports(synced, SyncResult(fills=reported.fills)).fills
        self._progress.pop(event.iteration_id, None)
        equity: EquitySnapshot | None = None
        try:
            account = await self._broker.account()
        except BrokerError as exc:  # the orders above must still be recorded: the iteration goes on without equity
            logger.error("execution: account unavailable after submitting: {}", exc)
            note_degraded(f"execution: account unavailable, no equity snapshot: {exc}")
        else:
            if self._reconciler is not None:  # records (and logs) any working order the daemon did not place
                own = {o.client_order_id for o in orders} | {o.client_order_id for o in updates}
                self._reconciler.every_iteration(account, event.as_of, own=own)
            equity = account.equity_snapshot(event.as_of)
        events = drain_rows(self._events)
        return ExecutedReady(
            iteration_id=event.iteration_id,
            as_of=event.as_of,
            previous=event,
            orders=tuple(orders),
            fills=tuple(fills),
            order_updates=tuple(order_updates),
            equity=equity,
            decisions=tuple(decisions),
            breaker_events=events,
        )

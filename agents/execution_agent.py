"""Execution agent: syncs the broker on new data, submits approved orders, reports orders, fills and equity."""

from __future__ import annotations

import hashlib
import re
from datetime import date, datetime
from typing import Callable

from loguru import logger

from core.brokers.base import Broker, BrokerError, SyncResult
from core.domain import EXACT, BarsBatch, Decision, EquitySnapshot, Order, OrderIntent, SymbolBars, to_money
from core.positions import PositionManager
from core.reconcile import Reconciler
from utils.failpoints import failpoint
from core.events import ApprovedReady, DataReady, ExecutedReady
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


class ExecutionAgent:
    """Repeated broker errors trip a backoff breaker: submissions pause (recorded per symbol) until it allows again."""

    name = "execution"

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
    ) -> None:
        """``routine_decisions``: record a "none" decision for every symbol without an order (the daemon does)."""
        self._routine = routine_decisions
        self._broker = broker
        self._prefix = order_prefix
        self._reconciler = reconciler
        self._positions = positions
        self._atr = atr
        self._synced: dict[str, SyncResult] = {}
        self._breaker = breaker
        self._events: list[BreakerEvent] = breaker_events if breaker_events is not None else []

    async def on_data(self, event: DataReady) -> None:
        """Advance the broker to the iteration's bars (fills of earlier orders) before Risk reads the account.

        A broker error here is logged and counted by the breaker; the iteration goes on without new fills."""
        assert event.batch is not None
        try:
            self._synced[event.iteration_id] = await self._broker.sync(event.batch)
        except BrokerError as exc:
            logger.error("execution: broker sync failed: {}", exc)
            if self._breaker is not None:
                self._breaker.record_failure(f"sync: {exc}")
            note_degraded(f"execution: broker sync failed: {exc}")
            self._synced[event.iteration_id] = SyncResult(notes=(f"broker sync failed: {exc}",))

    def discard(self, iteration_id: str) -> SyncResult | None:
        """Forget (and return) what the sync of an iteration found; used when the iteration fails before executing."""
        return self._synced.pop(iteration_id, None)

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
                decisions.append(Decision("positions", update.symbol, "trail_failed", f"{update.reason}: broker refused: {exc}", {"stop_order_id": update.stop_order_id}))
                continue
            changed.append(order)
            flag = batch.entry_blocked.get(update.symbol)
            decisions.append(
                Decision(
                    "positions",
                    update.symbol,
                    "trail_stop",
                    update.reason + (f" on the last good bar (data flagged: {flag})" if flag is not None else ""),
                    {"stop_order_id": order.client_order_id, "old": update.old_stop, "new": update.new_stop, **({"data_flag": flag} if flag else {})},
                )
            )
        return changed

    async def on_approved(self, event: ApprovedReady) -> ExecutedReady:
        synced = self._synced.pop(event.iteration_id, SyncResult())
        orders: list[Order] = []
        decisions: list[Decision] = []
        previous = event.previous
        batch = previous.previous.previous.batch if previous and previous.previous and previous.previous.previous else None
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
                        "execution",
                        intent.symbol,
                        "paused",
                        f"order submission paused after repeated broker errors until {until.isoformat() if until else '?'} ({self._breaker.reason})",
                        {"client_order_id": coid, "paused_until": until},
                        strategy=intent.strategy,
                        confidence=intent.confidence,
                    )
                )
                continue
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
                        "execution",
                        intent.symbol,
                        "failed",
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
                    "execution",
                    intent.symbol,
                    "submitted" if order.status.value != "rejected" else "rejected",
                    f"{order.side.value} {order.quantity} {order.order_type.value} as {coid}: {order.status.value}"
                    + (f" ({order.reason})" if order.status.value == "rejected" and order.reason else ""),
                    {"client_order_id": coid, "quantity": order.quantity, "order_type": order.order_type.value, "status": order.status.value},
                    strategy=intent.strategy,
                    confidence=intent.confidence,
                )
            )
        submitted = {o.symbol for o in orders} | {d.symbol for d in decisions if d.agent == "execution"}
        if batch is not None and self._routine:
            for symbol in list(batch.bars) + list(batch.rejected):
                if symbol not in submitted:
                    decisions.append(Decision("execution", symbol, "none", "no approved order", {}))
        equity: EquitySnapshot | None = None
        try:
            account = await self._broker.account()
        except BrokerError as exc:  # the orders above must still be recorded: the iteration goes on without equity
            logger.error("execution: account unavailable after submitting: {}", exc)
            note_degraded(f"execution: account unavailable, no equity snapshot: {exc}")
        else:
            if self._reconciler is not None:  # records (and logs) any order the broker has that the database lacks
                self._reconciler.every_iteration(account, event.as_of)
            equity = EquitySnapshot(
                at=event.as_of,
                cash=to_money(account.cash, EXACT),
                market_value=to_money(account.market_value, EXACT),
                equity=to_money(account.equity, EXACT),
                positions=sum(1 for p in account.positions.values() if p.quantity),
            )
        events = drain_rows(self._events)
        return ExecutedReady(
            iteration_id=event.iteration_id,
            as_of=event.as_of,
            previous=event,
            orders=tuple(orders),
            fills=tuple(synced.fills),
            order_updates=tuple(synced.orders) + tuple(updates),
            equity=equity,
            decisions=tuple(decisions),
            breaker_events=events,
        )

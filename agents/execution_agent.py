"""Execution agent: syncs the broker on new data, submits approved orders, reports orders, fills and equity."""

from __future__ import annotations

import hashlib
import re

from loguru import logger

from core.brokers.base import Broker, BrokerError, SyncResult
from core.domain import Decision, EquitySnapshot, OrderIntent, Order, to_money
from core.events import ApprovedReady, DataReady, ExecutedReady
from utils.circuit_breaker import BackoffBreaker, BreakerEvent

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def client_order_id(iteration_id: str, intent: OrderIntent) -> str:
    """Deterministic id from (iteration, symbol, intent): a retried or restarted submission reuses it.

    At most 128 characters (Alpaca's limit); long iteration ids are shortened with a hash.
    """
    base = f"{iteration_id}-{intent.symbol}-{intent.side.value}"
    safe = _UNSAFE.sub("_", base)
    if len(safe) <= 128:
        return safe
    digest = hashlib.sha256(base.encode()).hexdigest()[:24]
    return f"{safe[:100]}-{digest}"


class ExecutionAgent:
    """Repeated broker errors trip a backoff breaker: submissions pause (recorded per symbol) until it allows again."""

    name = "execution"

    def __init__(self, broker: Broker, *, breaker: BackoffBreaker | None = None, breaker_events: list[BreakerEvent] | None = None) -> None:
        self._broker = broker
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
            self._synced[event.iteration_id] = SyncResult(notes=(f"broker sync failed: {exc}",))

    def discard(self, iteration_id: str) -> SyncResult | None:
        """Forget (and return) what the sync of an iteration found; used when the iteration fails before executing."""
        return self._synced.pop(iteration_id, None)

    async def on_approved(self, event: ApprovedReady) -> ExecutedReady:
        synced = self._synced.pop(event.iteration_id, SyncResult())
        orders: list[Order] = []
        decisions: list[Decision] = []
        for approval in event.approvals:
            intent = approval.intent
            coid = client_order_id(event.iteration_id, intent)
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
                order = await self._broker.submit(intent, coid, event.as_of)
                if self._breaker is not None:
                    self._breaker.record_success()
            except BrokerError as exc:
                if self._breaker is not None:
                    self._breaker.record_failure(f"submit {coid}: {exc}")
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
        submitted = {o.symbol for o in orders} | {d.symbol for d in decisions}
        previous = event.previous
        batch = previous.previous.previous.batch if previous and previous.previous and previous.previous.previous else None
        if batch is not None:
            for symbol in list(batch.bars) + list(batch.rejected):
                if symbol not in submitted:
                    decisions.append(Decision("execution", symbol, "none", "no approved order", {}))
        account = await self._broker.account()
        equity = EquitySnapshot(
            at=event.as_of,
            cash=to_money(account.cash),
            market_value=to_money(account.market_value),
            equity=to_money(account.equity),
            positions=sum(1 for p in account.positions.values() if p.quantity),
        )
        events = [
            {"name": e.name, "from_state": str(e.from_state), "to_state": str(e.to_state), "reason": e.reason, "at": e.at}
            for e in self._events
        ]
        self._events.clear()
        return ExecutedReady(
            iteration_id=event.iteration_id,
            as_of=event.as_of,
            previous=event,
            orders=tuple(orders),
            fills=tuple(synced.fills),
            order_updates=tuple(synced.orders),
            equity=equity,
            decisions=tuple(decisions),
            breaker_events=tuple(events),
        )

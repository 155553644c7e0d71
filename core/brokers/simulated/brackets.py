"""Part of :class:`.SimulatedBroker`: bracket legs (one-cancels-other, capped at the shares held) and cancellation."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pandas as pd

from core.brokers.simulated.book import _STOP_LOSS, _TAKE_PROFIT, _Record
from core.brokers.simulated.state import _BrokerState
from core.kernel.domain import Order, OrderStatus, OrderType, Side


class _Brackets(_BrokerState):
    """Bracket children and order termination of :class:`.SimulatedBroker`."""

    # ------------------------------------------------------------------ brackets and cancellation

    def _grow_children(self, parent: _Record, quantity: int, at: datetime, anchor: pd.Timestamp) -> None:
        if parent.children is not None:
            for child_id in parent.children:
                child = self._records[child_id]
                if child.working:
                    child.order = replace(child.order, quantity=child.order.quantity + quantity, updated_at=at)
                    self._changed[child_id] = None
            return
        p = parent.order
        assert parent.bracket_stop is not None and parent.bracket_target is not None
        legs = (
            (_STOP_LOSS, "-sl", OrderType.STOP, None, parent.bracket_stop, f"stop-loss of {p.client_order_id}"),
            (_TAKE_PROFIT, "-tp", OrderType.LIMIT, parent.bracket_target, None, f"take-profit of {p.client_order_id}"),
        )
        ids = []
        for role, suffix, kind, limit, stop, reason in legs:
            self._seq += 1
            child_id = p.client_order_id + suffix
            leg = Order(
                client_order_id=child_id,
                symbol=p.symbol,
                side=Side.SELL,
                quantity=quantity,
                order_type=kind,
                status=OrderStatus.NEW,
                submitted_at=at,
                strategy=p.strategy,
                reason=reason,
                broker_order_id=f"sim-{self._seq}",
                limit_price=None if limit is None else float(limit),
                stop_price=None if stop is None else float(stop),
            ).transition(OrderStatus.SUBMITTED, at)
            self._records[child_id] = _Record(
                order=leg,
                seq=self._seq,
                kind=kind,
                anchor=anchor,
                limit=limit,
                stop=stop,
                role=role,
                parent=p.client_order_id,
            )
            self._open[child_id] = None
            self._changed[child_id] = None
            ids.append(child_id)
        parent.children = (ids[0], ids[1])

    def _one_cancels_other(self, leg: _Record, at: datetime) -> None:
        assert leg.parent is not None
        parent = self._records[leg.parent]
        for sibling_id in parent.children or ():
            sibling = self._records[sibling_id]
            if sibling is not leg and sibling.working:
                self._cancel(sibling, f"one-cancels-other: {leg.order.client_order_id} filled", at)
        if parent.working:
            self._cancel(parent, f"bracket exit {leg.order.client_order_id} filled; entry remainder canceled", at)

    def _cap_children(self, symbol: str, at: datetime) -> None:
        held = self._held(symbol)
        for record in self._working_records():
            if record.parent is None or record.order.symbol != symbol or record.remaining <= held:
                continue
            if held == 0:
                self._cancel(record, f"position in {symbol} closed: nothing left to protect", at)
            else:
                record.order = replace(record.order, quantity=record.order.filled_quantity + held, updated_at=at)
                self._changed[record.order.client_order_id] = None

    def _terminate(self, record: _Record, reason: str, at: datetime) -> None:
        status = OrderStatus.REJECTED if record.order.filled_quantity == 0 else OrderStatus.CANCELED
        prefix = "rejected" if status is OrderStatus.REJECTED else "remainder canceled"
        record.order = record.order.transition(status, at, reason=f"{prefix}: {reason}")
        self._open.pop(record.order.client_order_id, None)
        self._changed[record.order.client_order_id] = None

    def _cancel(self, record: _Record, reason: str, at: datetime) -> None:
        record.order = record.order.transition(OrderStatus.CANCELED, at, reason=reason)
        self._open.pop(record.order.client_order_id, None)
        self._changed[record.order.client_order_id] = None

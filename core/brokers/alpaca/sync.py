"""Part of :class:`~core.brokers.alpaca.AlpacaBroker`: folding Alpaca's orders and positions into the tracked state."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any
from collections.abc import Iterable, Mapping, Sequence

from alpaca.trading.models import Order as AlpacaOrder, Position as AlpacaPosition
from loguru import logger

from core.brokers.alpaca.mapping import (
    ALPACA_STATUS_MAP,
    _ENTRY,
    _STOP_LOSS,
    _STOP_TYPES,
    _TAKE_PROFIT,
    _WORKING,
    _ZERO,
    _Applied,
    _Origin,
    _Tracked,
    _decimal,
    _enum_value,
    _flatten,
    _quantity,
    _utc,
    fill_id,
    map_alpaca_status,
)
from core.brokers.alpaca.state import _BrokerState
from core.kernel.domain import (
    PRICE_QUANTUM,
    TERMINAL_ORDER_STATUSES,
    Fill,
    Order,
    OrderStatus,
    OrderType,
    Position,
    Side,
    ensure_utc,
)


class _Sync(_BrokerState):
    """How :class:`~core.brokers.alpaca.AlpacaBroker` applies Alpaca's view: order states, derived fills, positions."""

    # ------------------------------------------------------------------ applying Alpaca's view

    def _apply(self, raws: Iterable[AlpacaOrder]) -> _Applied:
        """Fold Alpaca orders (and their legs) into the tracked state; queue new fills and changed orders.

        Everything is computed first and committed at the end, so an impossible transition changes nothing.
        """
        staged: dict[str, _Tracked] = {}
        applied = _Applied()
        for raw in raws:
            for item, parent in _flatten(raw):
                client_order_id = item.client_order_id
                current = staged.get(client_order_id, self._orders.get(client_order_id))
                tracked, fill, changed = self._observe(item, parent, current, staged)
                staged[client_order_id] = tracked
                applied.seen.append(client_order_id)
                if fill is not None:
                    applied.fills.append(fill)
                if changed:
                    applied.changed.append(client_order_id)
        for client_order_id, tracked in staged.items():
            self._orders[client_order_id] = tracked
            if tracked.broker_id is not None:
                self._by_broker_id[tracked.broker_id] = client_order_id
            self._origins.pop(client_order_id, None)
            self._baselines.pop(client_order_id, None)
        for fill in applied.fills:
            if fill.side is Side.BUY:
                self._opened_at.setdefault(fill.symbol, fill.filled_at)
        self._unreported_fills.extend(applied.fills)
        for client_order_id in applied.changed:
            self._unreported_orders[client_order_id] = None
        return applied

    def _observe(
        self,
        raw: AlpacaOrder,
        parent: AlpacaOrder | None,
        current: _Tracked | None,
        staged: Mapping[str, _Tracked],
    ) -> tuple[_Tracked, Fill | None, bool]:
        client_order_id = raw.client_order_id
        qty = _decimal(raw.qty)
        filled = _decimal(raw.filled_qty) or _ZERO
        average = _decimal(raw.filled_avg_price)
        alpaca_status = self._client.raw_status(raw)
        status = map_alpaca_status(alpaca_status, filled, qty)
        updated_at = _utc(raw.updated_at) or ensure_utc(self._clock(), "clock()")
        origin = self._origins.get(client_order_id, _Origin())
        inferred_parent = parent.client_order_id if parent is not None else origin.parent
        inferred_role = origin.role
        if not inferred_role and parent is not None:
            inferred_role = _STOP_LOSS if _enum_value(raw.type) in _STOP_TYPES else _TAKE_PROFIT
        if not inferred_role and parent is None and _enum_value(raw.order_class) == "bracket" and raw.legs:
            inferred_role = _ENTRY
        if current is not None:  # what was recorded wins; a resumed order learns its place from Alpaca
            parent_cid, role = current.parent or inferred_parent, current.role or inferred_role
        else:
            parent_cid, role = inferred_parent, inferred_role
        limit = _decimal(raw.limit_price)
        stop = _decimal(raw.stop_price)
        if role == _ENTRY:
            legs = [leg for leg in raw.legs or () if _enum_value(leg.type) in _STOP_TYPES]
            working_legs = [leg for leg in legs if ALPACA_STATUS_MAP.get(_enum_value(leg.status)) in _WORKING]
            candidates = working_legs or legs
            chosen = candidates[-1] if candidates else None
            if chosen is not None:
                stop = _decimal(chosen.stop_price)
            elif current is not None and current.order.stop_price is not None:
                stop = Decimal(repr(current.order.stop_price))
            elif origin.stop is not None:
                stop = origin.stop
        changes: dict[str, Any] = {
            "broker_order_id": str(raw.id),
            "filled_quantity": _quantity(filled),
            "average_fill_price": None if average is None else float(average),
            "limit_price": None if limit is None else float(limit),
            "stop_price": None if stop is None else float(stop),
        }
        suffix = self._status_text(raw, alpaca_status)

        parent_tracked = (staged.get(parent_cid) or self._orders.get(parent_cid)) if parent_cid else None
        if current is None:
            submitted_at = origin.submitted_at or _utc(raw.submitted_at) or _utc(raw.created_at) or updated_at
            if role == _ENTRY:
                order_type = OrderType.BRACKET
            else:
                order_type = origin.order_type or self._order_type(raw)
            base_reason = (
                origin.reason
                or self._role_text(role, parent_cid)
                or ("adopted: found at Alpaca, not submitted by this broker instance")
            )
            order = Order(
                client_order_id=client_order_id,
                symbol=raw.symbol or "",
                side=Side(_enum_value(raw.side)),
                quantity=_quantity(qty) if qty is not None else _quantity(filled),  # type: ignore[arg-type]  # fractional shares stay Decimal (see _quantity)
                order_type=order_type,
                status=status,
                submitted_at=submitted_at,
                strategy=origin.strategy or (parent_tracked.order.strategy if parent_tracked is not None else ""),
                reason=f"{base_reason}; {suffix}" if suffix else base_reason,
                updated_at=updated_at,
                **changes,
            )
            baseline_qty, baseline_notional = self._baselines.get(client_order_id, (_ZERO, _ZERO))
            previous = _Tracked(order, str(raw.id), baseline_qty, baseline_notional, parent_cid, role)
            changed = True
        elif current.order.status in TERMINAL_ORDER_STATUSES:
            previous = current  # a finished order is history: its view no longer changes
            order = current.order
            changed = False
        elif current.order.status is OrderStatus.NEW:  # resumed from the ledger before Alpaca confirmed it
            previous = current
            order = replace(current.order, status=status, updated_at=updated_at, **changes)
            changed = True
        else:
            previous = current
            order = current.order
            if (
                suffix
                and (order.status is not status or alpaca_status not in ALPACA_STATUS_MAP)
                and suffix not in order.reason
            ):
                changes["reason"] = f"{order.reason}; {suffix}" if order.reason else suffix
            if order.status is not status:
                order = order.transition(status, updated_at, **changes)
            else:
                candidate = replace(order, **changes)
                if candidate != order:
                    order = replace(candidate, updated_at=updated_at)
            changed = order != current.order

        fill, baseline_qty, baseline_notional = self._derive_fill(raw, order, previous, filled, average, updated_at)
        tracked = _Tracked(order, str(raw.id), baseline_qty, baseline_notional, parent_cid, role)
        return tracked, fill, changed

    def _derive_fill(
        self,
        raw: AlpacaOrder,
        order: Order,
        previous: _Tracked,
        filled: Decimal,
        average: Decimal | None,
        updated_at: datetime,
    ) -> tuple[Fill | None, Decimal, Decimal]:
        if filled < previous.filled_qty:
            logger.warning(
                "{}: order {} reports filled_qty {} below the {} already seen; ignored",
                self.name,
                order.client_order_id,
                filled,
                previous.filled_qty,
            )
            return None, previous.filled_qty, previous.filled_notional
        if filled == previous.filled_qty:
            return None, previous.filled_qty, previous.filled_notional
        if average is None or average <= 0:
            logger.warning(
                "{}: order {} filled {} without an average price; waiting", self.name, order.client_order_id, filled
            )
            return None, previous.filled_qty, previous.filled_notional
        notional = filled * average
        quantity = filled - previous.filled_qty
        price = ((notional - previous.filled_notional) / quantity).quantize(PRICE_QUANTUM)
        if price <= 0:  # only possible with inconsistent averages; fall back to the order's average
            price = average.quantize(PRICE_QUANTUM)
        complete = order.status is OrderStatus.FILLED
        at = (_utc(raw.filled_at) if complete else None) or updated_at
        fill = Fill(
            fill_id=fill_id(order.client_order_id, filled),
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            quantity=_quantity(quantity),  # type: ignore[arg-type]  # fractional shares stay Decimal (see _quantity)
            price=price,
            commission=_ZERO,
            filled_at=at,
        )
        return fill, filled, notional

    def _status_text(self, raw: AlpacaOrder, alpaca_status: str) -> str:
        if alpaca_status == "replaced":
            replaced_by = str(raw.replaced_by) if raw.replaced_by is not None else "?"
            return f"replaced by {self._by_broker_id.get(replaced_by, replaced_by)}"
        if alpaca_status in ("canceled", "expired", "rejected"):
            return f"alpaca: {alpaca_status}"
        if alpaca_status not in ALPACA_STATUS_MAP:
            logger.warning(
                "{}: order {} has an Alpaca status this version does not know ({!r}); treated as a working order",
                self.name,
                raw.client_order_id,
                alpaca_status[:40],
            )
            return f"alpaca status {alpaca_status[:40]!r} (unknown: treated as working)"
        return ""

    @staticmethod
    def _order_type(raw: AlpacaOrder) -> OrderType:
        kind = _enum_value(raw.type) or _enum_value(raw.order_type)
        if kind == "limit":
            return OrderType.LIMIT
        if kind in _STOP_TYPES:
            return OrderType.STOP
        return OrderType.MARKET

    @staticmethod
    def _role_text(role: str, parent: str | None) -> str:
        if role == _STOP_LOSS and parent:
            return f"stop-loss leg of {parent}"
        if role == _TAKE_PROFIT and parent:
            return f"take-profit leg of {parent}"
        if role == _STOP_LOSS:
            return "stop-loss"
        return ""

    def _positions(self, raw_positions: Sequence[AlpacaPosition], at: datetime) -> dict[str, Position]:
        positions: dict[str, Position] = {}
        for raw in raw_positions:
            quantity = _decimal(raw.qty) or _ZERO
            if quantity == 0:
                continue
            if _enum_value(raw.side) == "short" and quantity > 0:
                quantity = -quantity
            average = _decimal(raw.avg_entry_price) or _ZERO
            opened_at = self._opened_at.get(raw.symbol)
            if opened_at is None:
                opened_at = self._opened_at[raw.symbol] = at
                logger.info(
                    "{}: opening time of the {} position is unknown; using {}", self.name, raw.symbol, at.isoformat()
                )
            positions[raw.symbol] = Position(
                symbol=raw.symbol,
                quantity=_quantity(quantity),  # type: ignore[arg-type]  # fractional shares stay Decimal (see _quantity)
                average_price=average.quantize(PRICE_QUANTUM),
                opened_at=opened_at,
                last_price=_decimal(raw.current_price),
            )
        for symbol in list(self._opened_at):
            if symbol not in positions:
                del self._opened_at[symbol]
        return positions

"""Part of :class:`~core.brokers.alpaca.AlpacaBroker`: turning an intent into an Alpaca request and submitting it."""

from __future__ import annotations

import asyncio
import math
from datetime import datetime
from decimal import Decimal
from typing import Any

import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderClass, OrderSide, QueryOrderStatus, TimeInForce
from alpaca.trading.models import Order as AlpacaOrder
from alpaca.trading.requests import (
    GetOrderByIdRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    OrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
)
from loguru import logger

from core.brokers.alpaca.mapping import (
    ALPACA_STATUS_MAP,
    MAX_CLIENT_ORDER_ID,
    _DUPLICATE_ID,
    _MAX_DETAIL,
    _WORKING,
    _Plan,
    _Tracked,
    _enum_value,
    _flatten,
    round_price,
)
from core.brokers.base import BrokerError, TemporaryBrokerError
from core.brokers.alpaca.state import _BrokerState
from core.kernel.domain import Order, OrderIntent, OrderStatus, OrderType, Side


class _Submission(_BrokerState):
    """Submission internals of :class:`~core.brokers.alpaca.AlpacaBroker` (see the package docstring)."""

    # ------------------------------------------------------------------ submission internals

    def _check_client_order_id(self, client_order_id: str) -> None:
        if not isinstance(client_order_id, str) or not client_order_id:
            raise BrokerError("client_order_id must be a non-empty string")
        if len(client_order_id) > MAX_CLIENT_ORDER_ID:
            raise BrokerError(
                f"client_order_id is {len(client_order_id)} characters; Alpaca allows at most {MAX_CLIENT_ORDER_ID}"
            )

    def _plan(self, intent: OrderIntent, client_order_id: str) -> _Plan:
        kind = intent.order_type
        quantity = Decimal(repr(intent.quantity)) if isinstance(intent.quantity, float) else Decimal(intent.quantity)
        whole = quantity == quantity.to_integral_value()
        wants_bracket = kind is OrderType.BRACKET or (
            kind in (OrderType.MARKET, OrderType.LIMIT)
            and intent.side is Side.BUY
            and intent.stop_loss is not None
            and intent.take_profit is not None
        )
        if kind is OrderType.BRACKET:
            entry = OrderType.LIMIT if intent.limit_price is not None else OrderType.MARKET
        else:
            entry = kind
        shown = OrderType.BRACKET if wants_bracket and self._use_brackets else entry

        def refuse(why: str) -> _Plan:
            return _Plan(order_type=shown, refusal=why)

        if not (math.isfinite(float(quantity)) and quantity > 0):
            return refuse(f"quantity must be positive, got {intent.quantity!r}")
        limit = stop = take_profit = None
        try:
            if entry is OrderType.LIMIT:
                if intent.limit_price is None:
                    return refuse("limit order needs a positive limit_price, got None")
                limit = round_price(intent.limit_price)
            if entry is OrderType.STOP:
                if intent.stop_price is None:
                    return refuse("stop order needs a positive stop_price, got None")
                stop = round_price(intent.stop_price)
        except ValueError:
            return refuse(f"invalid entry price (limit {intent.limit_price!r}, stop {intent.stop_price!r})")
        note = ""
        bracket = False
        if wants_bracket:
            if intent.side is not Side.BUY:
                return refuse("bracket orders must be buys (long-only account)")
            try:
                stop_loss = round_price(intent.stop_loss)  # type: ignore[arg-type]
                target = round_price(intent.take_profit)  # type: ignore[arg-type]
            except (ValueError, TypeError):
                return refuse(
                    f"bracket needs positive stop_loss and take_profit, got {intent.stop_loss!r} and {intent.take_profit!r}"
                )
            if stop_loss >= target:
                return refuse(f"bracket stop_loss {stop_loss} must be below take_profit {target}")
            if self._use_brackets:
                if not whole:
                    return refuse(f"fractional quantity {intent.quantity} cannot be a bracket order on Alpaca")
                bracket = True
                stop, take_profit = stop_loss, target
            else:
                note = (
                    f"sent without bracket legs (use_brackets=False): stop {stop_loss} and target {target} are the "
                    "caller's to manage"
                )
        if bracket or (whole and entry is not OrderType.MARKET):
            tif = TimeInForce.GTC
        else:
            tif = TimeInForce.DAY
        common: dict[str, Any] = {
            "symbol": intent.symbol,
            "qty": float(quantity),
            "side": OrderSide(intent.side.value),
            "time_in_force": tif,
            "client_order_id": client_order_id,
        }
        if bracket:
            assert stop is not None and take_profit is not None
            common.update(
                order_class=OrderClass.BRACKET,
                take_profit=TakeProfitRequest(limit_price=float(take_profit)),
                stop_loss=StopLossRequest(stop_price=float(stop)),
            )
        try:
            if entry is OrderType.LIMIT:
                request: OrderRequest = LimitOrderRequest(limit_price=float(limit), **common)  # type: ignore[arg-type]
            elif entry is OrderType.STOP:
                request = StopOrderRequest(stop_price=float(stop), **common)  # type: ignore[arg-type]
            elif entry is OrderType.MARKET:
                request = MarketOrderRequest(**common)
            else:
                return refuse(f"unsupported order type {kind!r}")
        except ValueError as exc:  # alpaca-py's local validation (pydantic)
            return refuse(f"invalid order: {' '.join(str(exc).split())[:_MAX_DETAIL]}")
        return _Plan(
            order_type=shown,
            request=request,
            limit=limit,
            stop=stop,
            take_profit=take_profit,
            bracket=bracket,
            note=note,
        )

    async def _submit_with_lookups(
        self, intent: OrderIntent, client_order_id: str, now: datetime, plan: _Plan
    ) -> Order:
        request = plan.request
        assert request is not None  # a plan without a request is a refusal, never submitted
        attempts = 0
        while True:
            attempts += 1
            try:
                raw = await asyncio.to_thread(self._client.submit_order, request)
            except APIError as exc:
                status = exc.status_code
                detail = self._detail(exc)
                if status == 422 and _DUPLICATE_ID in detail.lower():
                    existing = await self._find_by_client_id(client_order_id, "fetching the order that holds this id")
                    if existing is None:
                        raise BrokerError(
                            f"{self.name}: Alpaca says {client_order_id} is taken but has no order with that id"
                        ) from None
                    logger.info(
                        "{}: {} already exists at Alpaca; returning it instead of a new order",
                        self.name,
                        client_order_id,
                    )
                    return self._adopt(existing, client_order_id)
                doubt = self._doubt(exc)
                if doubt is None:
                    if status is not None and 400 <= status < 500 and status not in (401, 429):
                        why = f"alpaca refused the order (HTTP {status})" + (f": {detail}" if detail else "")
                        return self._reject_locally(intent, client_order_id, now, plan, why)
                    raise self._api_failure(exc, f"submitting order {client_order_id}") from None
            except requests.RequestException as exc:
                doubt = self._transport_text(exc)
            except (TypeError, ValueError) as exc:
                # A 2xx answer alpaca-py could not read (an empty body becomes Order(**None)): the order may exist.
                doubt = f"unreadable answer ({type(exc).__name__})"
            else:
                self._in_doubt.pop(client_order_id, None)
                order = self._adopt(raw, client_order_id)
                logger.info(
                    "{}: submitted {} {} x{} as {} ({})",
                    self.name,
                    intent.side.value,
                    intent.symbol,
                    intent.quantity,
                    client_order_id,
                    order.status.value,
                )
                return order
            # The answer was lost: the order may exist. Look before any new attempt.
            self._in_doubt[client_order_id] = None
            logger.warning(
                "{}: submission {} of {} ended in doubt ({}); looking it up by client order id",
                self.name,
                attempts,
                client_order_id,
                doubt,
            )
            found = await self._find_by_client_id(client_order_id, f"looking up {client_order_id} after: {doubt}")
            if found is not None:
                self._in_doubt.pop(client_order_id, None)
                logger.info("{}: {} was accepted despite the lost answer", self.name, client_order_id)
                return self._adopt(found, client_order_id)
            if attempts >= self._order_lookup_attempts:
                raise TemporaryBrokerError(
                    f"{self.name}: order {client_order_id} not placed after {attempts} attempt(s) (last: {doubt}); "
                    "Alpaca has no order with this client id"
                )

    def _reject_locally(self, intent: OrderIntent, client_order_id: str, now: datetime, plan: _Plan, why: str) -> Order:
        order = Order(
            client_order_id=client_order_id,
            symbol=intent.symbol,
            side=intent.side,
            quantity=intent.quantity,
            order_type=plan.order_type,
            status=OrderStatus.NEW,
            submitted_at=now,
            strategy=intent.strategy,
            reason=intent.reason,
            limit_price=None if plan.limit is None else float(plan.limit),
            stop_price=None if plan.stop is None else float(plan.stop),
        ).transition(OrderStatus.REJECTED, now, reason=f"rejected: {why}")
        self._orders[client_order_id] = _Tracked(order, None)
        self._origins.pop(client_order_id, None)
        self._in_doubt.pop(client_order_id, None)
        self._unreported_orders[client_order_id] = None
        logger.warning(
            "{}: {} {} x{} ({}) rejected: {}",
            self.name,
            intent.side.value,
            intent.symbol,
            intent.quantity,
            client_order_id,
            why,
        )
        return order

    def _adopt(self, raw: AlpacaOrder, client_order_id: str) -> Order:
        self._apply([raw])
        tracked = self._orders.get(client_order_id)
        if tracked is None:
            raise BrokerError(
                f"{self.name}: Alpaca answered with order {raw.client_order_id!r}, not {client_order_id!r}"
            )
        return tracked.order

    async def _release_shares(self, symbol: str, exit_client_order_id: str) -> list[str]:
        """Cancel the symbol's working sell orders that hold shares (plain sells, legs of filled entries)."""
        raws = await self._list_orders(QueryOrderStatus.OPEN, symbols=[symbol])
        self._apply(raws)
        holders: list[tuple[str, str]] = []
        for raw in raws:
            entry_filled = _enum_value(raw.status) == "filled"
            for item, parent in _flatten(raw):
                if _enum_value(item.side) != "sell" or ALPACA_STATUS_MAP.get(_enum_value(item.status)) not in _WORKING:
                    continue
                if parent is None or entry_filled:
                    holders.append((str(item.id), item.client_order_id))
        cancelled: list[str] = []
        for broker_id, client_order_id in holders:
            if self._orders[client_order_id].order.status not in _WORKING:
                continue  # cancelled with its one-cancels-other sibling
            order = await self._cancel_by_id(broker_id, client_order_id)
            if order.status is OrderStatus.CANCELED or order.status in _WORKING:
                cancelled.append(client_order_id)
        if cancelled:
            logger.warning(
                "{}: cancelled {} to release {} shares for the exit {}",
                self.name,
                ", ".join(cancelled),
                symbol,
                exit_client_order_id,
            )
        return cancelled

    async def _cancel_by_id(self, broker_id: str, client_order_id: str) -> Order:
        """``DELETE /v2/orders/{id}``, then read the order back and return its state.

        Alpaca cancels asynchronously: the answer may show ``pending_cancel`` (a working order) or, when the order
        finished first, its final state; the caller decides what that means. A lost answer is followed by a read;
        the request is repeated (it is idempotent) at most ``order_lookup_attempts`` times in all.
        """
        what = f"cancelling order {client_order_id}"
        for attempt in range(1, self._order_lookup_attempts + 1):
            doubt: str | None = None
            refused = False
            try:
                await asyncio.to_thread(self._client.cancel_order_by_id, broker_id)
            except APIError as exc:
                doubt = self._doubt(exc)
                refused = exc.status_code == 422
                if doubt is None and not refused:
                    raise self._api_failure(exc, what) from None
            except requests.RequestException as exc:
                doubt = self._transport_text(exc)
            raw = await self._request(what, self._client.get_order_by_id, broker_id, GetOrderByIdRequest(nested=True))
            self._apply([raw])
            order = self._orders[client_order_id].order
            alpaca_status = _enum_value(raw.status)
            if order.status not in _WORKING or alpaca_status == "pending_cancel":
                logger.info("{}: cancel of {}: {}", self.name, client_order_id, alpaca_status)
                return order
            if refused:
                raise BrokerError(f"{self.name}: Alpaca refused to cancel {client_order_id} (status {alpaca_status})")
            if doubt is None:  # accepted; Alpaca will cancel it shortly
                logger.info("{}: cancel of {} requested (status {})", self.name, client_order_id, alpaca_status)
                return order
            logger.warning(
                "{}: {} (attempt {}) ended in doubt ({}); the order is still working", self.name, what, attempt, doubt
            )
        raise TemporaryBrokerError(f"{self.name}: {what} failed: answers lost and the order is still working")

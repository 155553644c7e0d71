"""The alpaca-py client (tolerant of unknown order statuses) and the broker's reads of Alpaca and their errors."""

from __future__ import annotations

import asyncio
import threading
import json
import re
from datetime import datetime, timedelta
from typing import Any
from collections.abc import Callable, Sequence

import requests
from alpaca.common.enums import Sort
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.common.utils import validate_uuid_id_param
from alpaca.trading.enums import QueryOrderStatus, OrderStatus as SdkOrderStatus
from alpaca.trading.models import Order as AlpacaOrder
from alpaca.trading.requests import GetOrderByIdRequest, GetOrdersRequest, OrderRequest, ReplaceOrderRequest
from loguru import logger

from core.brokers.alpaca.mapping import (
    ALPACA_STATUS_MAP,
    _MAX_DETAIL,
    _MAX_PAGES,
    _PAGE_SIZE,
    _STOP_TYPES,
    _WORKING,
    _Tracked,
    _enum_value,
    _utc,
)
from core.brokers.alpaca.state import _BrokerState
from core.brokers.base import BrokerAuthError, BrokerError, TemporaryBrokerError
from core.kernel.domain import OrderStatus
from utils.http import DeadlineExceeded


_SDK_STATUSES = frozenset(status.value for status in SdkOrderStatus)
_UNKNOWN_STATUS_STANDIN = SdkOrderStatus.PENDING_NEW.value  # a working status alpaca-py accepts


class _TradingClient(TradingClient):
    """alpaca-py's ``TradingClient``, except that an order whose ``status`` its enum lacks is read, not refused.

    alpaca-py validates every order against its ``OrderStatus`` enum, so one order in a status Alpaca added later
    would make the whole listing (and every start-up) fail with a validation error. The order-returning methods
    below do what the SDK's do (same requests) but put a stand-in working status in place of an unknown one and
    remember the raw value by order id (:meth:`raw_status`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unknown: dict[str, str] = {}
        self._unknown_lock = threading.Lock()

    def raw_status(self, order: AlpacaOrder) -> str:
        with self._unknown_lock:
            unknown = self._unknown.get(str(order.id))
        return unknown if unknown is not None else _enum_value(order.status)

    def _tolerate(self, raw: Any) -> Any:
        if isinstance(raw, dict):
            status = raw.get("status")
            with self._unknown_lock:
                if isinstance(status, str) and status not in _SDK_STATUSES:
                    self._unknown[str(raw.get("id"))] = status
                    raw = {**raw, "status": _UNKNOWN_STATUS_STANDIN}
                else:
                    self._unknown.pop(str(raw.get("id")), None)
            legs = raw.get("legs")
            if isinstance(legs, list):
                raw = {**raw, "legs": [self._tolerate(leg) for leg in legs]}
        return raw

    def _order(self, raw: Any) -> AlpacaOrder:
        return AlpacaOrder(**self._tolerate(raw))

    def submit_order(self, order_data: OrderRequest) -> AlpacaOrder:
        return self._order(self.post("/orders", order_data.to_request_fields()))

    def get_orders(self, filter: GetOrdersRequest | None = None) -> list[AlpacaOrder]:  # noqa: A002
        params = filter.to_request_fields() if filter is not None else {}
        if "symbols" in params and isinstance(params["symbols"], list):
            params["symbols"] = ",".join(params["symbols"])
        response = self.get("/orders", params)
        if not isinstance(response, list):
            raise ValueError(f"order listing is JSON {type(response).__name__}, expected an array")
        return [self._order(item) for item in response]

    def get_order_by_id(self, order_id: Any, filter: GetOrderByIdRequest | None = None) -> AlpacaOrder:  # noqa: A002
        params = filter.to_request_fields() if filter is not None else {}
        order_id = validate_uuid_id_param(order_id, "order_id")
        return self._order(self.get(f"/orders/{order_id}", params))

    def get_order_by_client_id(self, client_id: str) -> AlpacaOrder:
        return self._order(self.get("/orders:by_client_order_id", {"client_order_id": client_id}))

    def replace_order_by_id(self, order_id: Any, order_data: ReplaceOrderRequest | None = None) -> AlpacaOrder:
        params = order_data.to_request_fields() if order_data is not None else {}
        order_id = validate_uuid_id_param(order_id, "order_id")
        return self._order(self.patch(f"/orders/{order_id}", params))


class _AlpacaCalls(_BrokerState):
    """Part of :class:`~core.brokers.alpaca.AlpacaBroker`: paged listings, lookups and the translation of HTTP errors."""

    # ------------------------------------------------------------------ reading Alpaca

    async def _list_orders(
        self, status: QueryOrderStatus, *, after: datetime | None = None, symbols: Sequence[str] | None = None
    ) -> list[AlpacaOrder]:
        """Every order of a listing, nested, oldest first, following pages of 500 (deduplicated by id)."""
        found: dict[str, AlpacaOrder] = {}
        page_after = after
        for _ in range(_MAX_PAGES):
            request = GetOrdersRequest(
                status=status,
                limit=_PAGE_SIZE,
                after=page_after,
                direction=Sort.ASC,
                nested=True,
                symbols=list(symbols) if symbols else None,
            )
            page = await self._request("listing orders", self._client.get_orders, request)
            fresh = [raw for raw in page if str(raw.id) not in found]
            for raw in page:
                found[str(raw.id)] = raw
            if len(page) < _PAGE_SIZE or not fresh:
                return list(found.values())
            # Ties at the boundary are fetched again (and deduplicated) rather than skipped.
            page_after = max(_utc(raw.submitted_at) or _utc(raw.created_at) for raw in page) - timedelta(microseconds=1)
        logger.warning("{}: order listing truncated after {} pages of {}", self.name, _MAX_PAGES, _PAGE_SIZE)
        return list(found.values())

    async def _find_by_client_id(self, client_order_id: str, what: str) -> AlpacaOrder | None:
        return await self._request(what, self._client.get_order_by_client_id, client_order_id, missing_ok=True)

    async def _fetch_reference(self, reference: str) -> AlpacaOrder:
        """The Alpaca order (nested) named by a client id or an Alpaca id."""
        tracked = self._orders.get(reference)
        broker_id = (
            tracked.broker_id if tracked is not None else (reference if reference in self._by_broker_id else None)
        )
        if broker_id is None:
            found = await self._find_by_client_id(reference, "looking up an order")
            if found is not None:
                broker_id = str(found.id)
            elif _looks_like_uuid(reference):
                broker_id = reference
            else:
                raise BrokerError(f"{self.name}: no order {reference!r}")
        raw = await self._request(
            f"reading order {reference}",
            self._client.get_order_by_id,
            broker_id,
            GetOrderByIdRequest(nested=True),
            missing_ok=True,
        )
        if raw is None:
            raise BrokerError(f"{self.name}: no order {reference!r}")
        return raw

    def _stop_target(self, raw: AlpacaOrder, reference: str) -> tuple[AlpacaOrder, AlpacaOrder | None]:
        """The stop order to move: the order itself, or a bracket entry's working stop-loss leg (with its entry)."""
        if raw.legs:
            stops = [
                leg
                for leg in raw.legs
                if _enum_value(leg.type) in _STOP_TYPES
                and _enum_value(leg.status) not in ("filled", "canceled", "expired", "rejected", "replaced")
            ]
            if not stops:
                raise BrokerError(f"{self.name}: bracket {reference} has no working stop-loss leg")
            return stops[0], raw
        if _enum_value(raw.type) not in _STOP_TYPES:
            raise BrokerError(f"{self.name}: order {reference} is a {_enum_value(raw.type)} order, not a stop")
        status = _enum_value(raw.status)
        if ALPACA_STATUS_MAP.get(status) not in _WORKING:
            raise BrokerError(f"{self.name}: stop {reference} is {status}: nothing to move")
        return raw, None

    async def _resolve(self, client_order_id: str) -> _Tracked:
        tracked = self._orders.get(client_order_id)
        if tracked is not None and (tracked.broker_id is not None or tracked.order.status is OrderStatus.REJECTED):
            return tracked
        raw = await self._find_by_client_id(client_order_id, "looking up an order")
        if raw is None:
            raise BrokerError(f"{self.name}: no order {client_order_id!r}")
        self._apply([raw])
        self._in_doubt.pop(client_order_id, None)
        return self._orders[client_order_id]

    async def _request(self, what: str, call: Callable[..., Any], *args: Any, missing_ok: bool = False) -> Any:
        """Run one SDK call in a worker thread; translate its failures (404 -> None with ``missing_ok``)."""
        try:
            return await asyncio.to_thread(call, *args)
        except APIError as exc:
            if missing_ok and exc.status_code == 404:
                return None
            if exc.status_code == 403:
                raise BrokerAuthError(
                    f"{self.name}: {what} failed: HTTP 403 (the API keys are not allowed to)", 403
                ) from None
            raise self._api_failure(exc, what) from None
        except requests.RequestException as exc:
            raise TemporaryBrokerError(f"{self.name}: {what} failed: {self._transport_text(exc)}") from None

    # ------------------------------------------------------------------ errors

    def _doubt(self, exc: APIError) -> str | None:
        """Why an answer leaves the outcome unknown (5xx, 408, no status), or None when it is a clear answer."""
        status = exc.status_code
        if status is None or status >= 500 or status == 408:
            return f"HTTP {status}"
        return None

    def _transport_text(self, exc: requests.RequestException) -> str:
        if isinstance(exc, DeadlineExceeded):
            return self._redact(str(exc))[:_MAX_DETAIL]
        if isinstance(exc, requests.Timeout):
            return f"no answer within {self._timeout_s:g}s"
        if isinstance(exc, requests.ConnectionError):
            return f"connection failed ({type(exc).__name__})"
        return f"HTTP transport error ({type(exc).__name__})"

    def _api_failure(self, exc: APIError, what: str) -> BrokerError:
        status = exc.status_code
        detail = self._detail(exc)
        text = f"{self.name}: {what} failed: HTTP {status}" + (f": {detail}" if detail else "")
        if status is None or status == 429 or status == 408 or status >= 500:
            return TemporaryBrokerError(text)
        if status == 401:
            return BrokerAuthError(f"{self.name}: {what} failed: HTTP 401 (Alpaca rejected the API keys)", 401)
        return BrokerError(text)

    def _detail(self, exc: APIError) -> str:
        """The ``message`` of an error body (guarded: the body may not be JSON), redacted and shortened."""
        body = str(exc)
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        text = parsed["message"] if isinstance(parsed, dict) and isinstance(parsed.get("message"), str) else body
        return self._redact(" ".join(text.split()))[:_MAX_DETAIL]

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def _looks_like_uuid(text: str) -> bool:
    return (
        re.fullmatch(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", text) is not None
    )

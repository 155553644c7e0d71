"""Alpaca (paper or live) behind the :class:`core.brokers.base.Broker` protocol, through alpaca-py's ``TradingClient``.

Paper and live differ only by the keys, ``paper=`` (which base URL alpaca-py uses) and ``name``; nothing in this
class branches on it. Every HTTP call goes through :func:`utils.http.configure_alpaca_client`: a default
``(connect, read)`` timeout of ``timeout_s`` (alpaca-py has none), a slot from the account's shared rate limiter
before each request, HTTP 429 retried by the SDK (``retry_attempts`` times) after the server's ``Retry-After``, and
504 *not* retried blindly. The SDK is synchronous: each call runs in a worker thread (``asyncio.to_thread``) so the
event loop never blocks, and one ``asyncio.Lock`` serialises the broker's operations.

Submitting without ever double-submitting
-----------------------------------------
Every order carries the caller's ``client_order_id`` (at most 128 characters; Alpaca refuses a reused one, even
of a cancelled order, with HTTP 422 ``client_order_id must be unique``). :meth:`AlpacaBroker.submit`:

1. returns the order at once if this instance already knows the id (no request);
2. if an earlier attempt with this id ended in doubt, looks it up by client id first (found: returned);
3. submits; on 422 ``client_order_id must be unique`` fetches ``GET /v2/orders:by_client_order_id`` and returns the
   existing order;
4. after a timeout, a connection error, a 408, a 5xx or a 2xx answer alpaca-py cannot read (the order may have
   been accepted even though the answer was lost) looks the order up by client id **before any new attempt**:
   found, it is returned; not found (404), the submission is retried with the *same* id, at most
   ``order_lookup_attempts`` submissions in all, then :class:`TemporaryBrokerError` is raised. The id then stays
   "in doubt": the next ``submit`` of it looks it up first, and the next ``sync`` looks it up and reports the order
   if Alpaca has it (otherwise it notes that and forgets the doubt).
   If the lookup itself fails, :class:`TemporaryBrokerError` is raised at once: never a blind resubmission.
   This in-memory doubt dies with the process; the daemon therefore also writes every order to the ledger before
   submitting it and resolves it after a restart with :meth:`AlpacaBroker.order_by_client_id` (see
   ``agents/execution_agent.py``). Even a
   request the server processes late cannot create a second order: the second one to arrive gets the 422;
5. a refusal (HTTP 4xx other than 401/408/429: 403 insufficient buying power or shares, 422 invalid order...)
   is not raised: it returns an :class:`~core.domain.Order` with status ``REJECTED`` and the server's reason, as
   :class:`~core.brokers.simulated.SimulatedBroker` does; resubmitting that id returns the same rejection.
   401 (keys) raises :class:`BrokerError`; 429 once the SDK's retries are spent raises :class:`TemporaryBrokerError`.

Order shapes
------------
* A **buy with both ``stop_loss`` and ``take_profit``** (``OrderType.BRACKET``, or a ``MARKET``/``LIMIT`` intent
  carrying both) is sent as one Alpaca **bracket** order (``order_class=bracket``, ``take_profit.limit_price``,
  ``stop_loss.stop_price``; a market entry, or a limit entry when ``limit_price`` is given), with
  ``time_in_force=gtc``: the legs inherit the entry's time in force, and with ``day`` the protective stop of a swing
  trade would expire at that day's close, leaving the position unprotected overnight. ``use_brackets=False`` sends the
  entry alone (the stop and target are then the caller's to manage; the order's reason says so).
  A bracket must be a whole-share buy with ``stop_loss < take_profit`` (otherwise ``REJECTED`` without a request).
* Everything else is a plain order: ``MARKET`` (``time_in_force=day``: after hours it waits for the next open),
  ``LIMIT`` and ``STOP`` (``gtc``, like the simulated broker's orders). Fractional quantities are sent as
  ``day`` orders (Alpaca's rule) and cannot be brackets.
* Prices are rounded to the cent at or above $1 (Alpaca rejects sub-penny prices there) and to $0.0001 below,
  half-up.
* Exits: on Alpaca a bracket's active legs *hold* the position's shares, so a plain sell of the position is refused
  (403 ``insufficient qty available``). With ``release_shares_on_exit=True`` (default) a ``SELL`` first cancels the
  symbol's working sell orders that hold shares (plain sells and the legs of filled entries), then submits; the
  position is unprotected only between those cancellations and the exit. If the exit is then refused, an error is
  logged and the returned order's reason says which protective orders were cancelled.

Order states (Alpaca ``status`` -> :class:`~core.domain.OrderStatus`, see :data:`ALPACA_STATUS_MAP`)
-----------------------------------------------------------------------------------------------------------
* ``new``, ``accepted``, ``pending_new``, ``accepted_for_bidding``, ``held`` (a bracket leg waiting or resting at
  Alpaca), ``pending_review``, ``pending_cancel``, ``pending_replace``, ``stopped``, ``suspended``,
  ``done_for_day`` -> ``SUBMITTED``, or ``PARTIALLY_FILLED`` when ``filled_qty > 0`` (working orders that may still
  execute);
* ``calculated`` (the day is complete, settlement pending) -> as above, ``FILLED`` once ``filled_qty`` = ``qty``;
* ``partially_filled`` -> ``PARTIALLY_FILLED``; ``filled`` -> ``FILLED``;
* ``canceled`` -> ``CANCELED``; ``replaced`` (superseded by a new order, e.g. by :meth:`AlpacaBroker.replace_stop`)
  -> ``CANCELED`` with a reason naming the replacement;
* ``expired`` -> ``EXPIRED``; ``rejected`` -> ``REJECTED``.

A status neither this table nor alpaca-py knows (Alpaca adds statuses; alpaca-py's enum would refuse the whole
answer with a validation error) is read anyway and treated as a working order in doubt: ``SUBMITTED``
(``PARTIALLY_FILLED`` / ``FILLED`` by ``filled_qty``, as ``calculated``), and the raw status is recorded in the
order's reason (``alpaca status 'x' (unknown: treated as working)``) and logged. Status changes of known orders go through
:meth:`Order.transition <core.domain.Order.transition>`, so an impossible one raises instead of being recorded.

Polling (``sync``) and fills
----------------------------
``GET /v2/orders``'s ``after`` filters on *submission* time, so "orders submitted since the last sync" alone would
miss a fill of an older order (a bracket's stop-loss filling weeks later). Each :meth:`AlpacaBroker.sync` therefore
reads, all with ``nested=true`` (bracket legs inside their entry) and ``limit=500`` (paged when full):
(1) every open order; (2) every order submitted since the previous sync (``status=all``, ``after`` = previous sync
minus a 5-minute overlap for clock skew), which also finds orders this instance did not submit; (3) by id, each
order this instance tracks as working that neither list returned (it has finished since), and by client id each
order still in doubt. Everything is fetched before anything is applied, so a failed request changes nothing.
It returns the orders that changed since the previous sync (submitted, rejected, filled, cancelled, replaced, or new
bracket legs), each once with its latest state, and the new fills.

Fills are derived from each order's cumulative ``filled_qty`` and ``filled_avg_price`` (alpaca-py's
``TradingClient`` does not expose the per-execution ``/v2/account/activities/FILL`` endpoint, which would give one
record per execution). When an order's ``filled_qty`` grows from ``q0`` to ``q1`` (average ``p0`` then ``p1``),
one fill is reported: quantity ``q1 - q0`` at price ``(q1 * p1 - q0 * p0) / (q1 - q0)`` (rounded to $0.0001), stamped
``filled_at`` (complete) or ``updated_at`` (partial). Several executions between two polls are therefore reported as
one fill at their average price; the sum of quantities and of notionals is exact. Commission is zero (Alpaca charges
no equity commission; regulatory fees on sells are separate account activities, not modelled here).
The fill id is ``"<client_order_id>@<cumulative filled quantity>"``: the same execution state always gets the same
id, and a fresh instance told what the ledger holds (:meth:`AlpacaBroker.resume`) continues from the recorded
quantities, so a restart neither repeats nor re-numbers a fill. (An instance that is *not* resumed reports an
order's whole filled quantity once, under the id of its cumulative quantity.)

Other operations
----------------
:meth:`~AlpacaBroker.cancel` (``DELETE /v2/orders/{id}``; a bracket entry's legs go with it),
:meth:`~AlpacaBroker.replace_stop` (``PATCH /v2/orders/{id}`` with a new ``stop_price``: Alpaca swaps the stop for a
new order in one step, so the position is never without a stop as it would be with cancel + new),
:meth:`~AlpacaBroker.account`, :meth:`~AlpacaBroker.positions`, :meth:`~AlpacaBroker.open_orders`,
:meth:`~AlpacaBroker.order_by_client_id`, :meth:`~AlpacaBroker.market_clock` and
:meth:`~AlpacaBroker.account_label`. The API keys never appear in messages, logs or reprs: error bodies are
redacted and exceptions are raised ``from None`` so the SDK's raw error is not chained.

Errors
------
Reads (``GET``) that meet a 5xx/408, a timeout or a connection error are retried by the HTTP layer
(:mod:`utils.http`, ``transient_retries`` times with back-off), a 429 after the server's ``Retry-After`` (capped at
``max_retry_after_s``), all within the iteration deadline (:mod:`utils.deadline`). What is still failing then raises
:class:`~core.brokers.base.TemporaryBrokerError` (also a :class:`~utils.deadline.TemporaryError`: the iteration is
recorded ``degraded``); 401 (and 403 on a read) raises :class:`~core.brokers.base.BrokerAuthError`.
:meth:`AlpacaBroker.identify` reads the account at start-up and refuses (:class:`~core.brokers.base.BrokerModeMismatch`)
a paper broker on a live account or a live broker on a paper account (paper account numbers start with ``PA``).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import json
import math
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import requests
from alpaca.common.enums import Sort
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.common.utils import validate_uuid_id_param
from alpaca.trading.enums import OrderClass, OrderSide, QueryOrderStatus, TimeInForce
from alpaca.trading.enums import OrderStatus as SdkOrderStatus
from alpaca.trading.models import Order as AlpacaOrder
from alpaca.trading.models import Position as AlpacaPosition
from alpaca.trading.requests import (
    GetOrderByIdRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    OrderRequest,
    ReplaceOrderRequest,
    StopLossRequest,
    StopOrderRequest,
    TakeProfitRequest,
)
from loguru import logger

from core.brokers.base import (
    AccountState,
    BrokerAuthError,
    BrokerError,
    BrokerModeMismatch,
    SyncResult,
    TemporaryBrokerError,
)
from core.domain import (
    CENT,
    PRICE_QUANTUM,
    TERMINAL_ORDER_STATUSES,
    BarsBatch,
    Fill,
    Order,
    OrderIntent,
    OrderStatus,
    OrderType,
    Position,
    Side,
    ensure_utc,
)
from utils.http import DeadlineExceeded, RequestLimiter, TimeoutAdapter, configure_alpaca_client

__all__ = [
    "ALPACA_STATUS_MAP",
    "AccountIdentity",
    "AlpacaBroker",
    "MAX_CLIENT_ORDER_ID",
    "MarketClock",
    "fill_id",
    "map_alpaca_status",
    "mask_account_number",
    "replacement_client_order_id",
    "round_price",
]

MAX_CLIENT_ORDER_ID = 128
_ZERO = Decimal("0")
_SUB_DOLLAR_TICK = Decimal("0.0001")
_PAGE_SIZE = 500
_MAX_PAGES = 20
_SYNC_OVERLAP = timedelta(minutes=5)
_MAX_DETAIL = 200
_WORKING = frozenset({OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED})
_STOP_TYPES = frozenset({"stop", "stop_limit", "trailing_stop"})
_ENTRY, _TAKE_PROFIT, _STOP_LOSS = "entry", "take_profit", "stop_loss"
_DUPLICATE_ID = "client_order_id must be unique"
_REPLACEMENT = re.compile(r"^(?P<base>.+)-r(?P<n>[0-9]+)$")

_S = OrderStatus
ALPACA_STATUS_MAP: Mapping[str, OrderStatus] = MappingProxyType(
    {
        "new": _S.SUBMITTED,
        "accepted": _S.SUBMITTED,
        "pending_new": _S.SUBMITTED,
        "accepted_for_bidding": _S.SUBMITTED,
        "held": _S.SUBMITTED,
        "pending_review": _S.SUBMITTED,
        "pending_cancel": _S.SUBMITTED,
        "pending_replace": _S.SUBMITTED,
        "stopped": _S.SUBMITTED,
        "suspended": _S.SUBMITTED,
        "done_for_day": _S.SUBMITTED,
        "calculated": _S.SUBMITTED,
        "partially_filled": _S.PARTIALLY_FILLED,
        "filled": _S.FILLED,
        "canceled": _S.CANCELED,
        "replaced": _S.CANCELED,
        "expired": _S.EXPIRED,
        "rejected": _S.REJECTED,
    }
)
"""Alpaca order status -> domain status, before the ``filled_qty`` refinements of :func:`map_alpaca_status`."""


# ====================================================================================== pure helpers


def map_alpaca_status(status: str, filled_qty: Decimal, qty: Decimal | None) -> OrderStatus:
    """The domain status of an Alpaca order (see the module docstring's table).

    A status not in :data:`ALPACA_STATUS_MAP` is a working order in doubt: ``SUBMITTED`` (``PARTIALLY_FILLED``, or
    ``FILLED`` once ``filled_qty`` reaches ``qty``), never an error.
    """
    mapped = ALPACA_STATUS_MAP.get(status)
    if mapped is None:
        if qty is not None and filled_qty >= qty > 0:
            return OrderStatus.FILLED
        return OrderStatus.PARTIALLY_FILLED if filled_qty > 0 else OrderStatus.SUBMITTED
    if status == "calculated" and qty is not None and filled_qty >= qty > 0:
        return OrderStatus.FILLED
    if mapped is OrderStatus.SUBMITTED and filled_qty > 0:
        return OrderStatus.PARTIALLY_FILLED
    return mapped


def round_price(value: float | Decimal) -> Decimal:
    """Round a price to what Alpaca accepts: cents at or above $1, $0.0001 below (half-up)."""
    raw = value if isinstance(value, Decimal) else Decimal(repr(float(value)))
    if not raw.is_finite() or raw <= 0:
        raise ValueError(f"price must be positive and finite, got {value!r}")
    quantum = CENT if raw >= 1 else _SUB_DOLLAR_TICK
    return raw.quantize(quantum, rounding=ROUND_HALF_UP)


def _shorten(text: str, budget: int) -> str:
    """``text`` if it fits in ``budget`` characters, else a deterministic prefix + hash of that length."""
    if len(text) <= budget:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return f"{text[: budget - 17]}-{digest}"


def _qty_text(quantity: Decimal) -> str:
    if quantity == quantity.to_integral_value():
        return str(int(quantity))
    return format(quantity.normalize(), "f")


def fill_id(client_order_id: str, cumulative_qty: Decimal) -> str:
    """Deterministic fill id: ``"<client_order_id>@<cumulative filled quantity>"`` (at most 128 characters)."""
    suffix = f"@{_qty_text(cumulative_qty)}"
    return _shorten(client_order_id, MAX_CLIENT_ORDER_ID - len(suffix)) + suffix


def replacement_client_order_id(client_order_id: str) -> str:
    """The client id given to the order that replaces ``client_order_id``: ``<base>-r<n+1>`` (deterministic, so a
    replacement whose answer was lost can be looked up by it)."""
    matched = _REPLACEMENT.match(client_order_id)
    base, number = (matched["base"], int(matched["n"]) + 1) if matched else (client_order_id, 1)
    suffix = f"-r{number}"
    return _shorten(base, MAX_CLIENT_ORDER_ID - len(suffix)) + suffix


def is_paper_account_number(number: str | None) -> bool:
    """Alpaca's paper account numbers start with ``PA``; live ones do not."""
    return (number or "").strip().upper().startswith("PA")


def mask_account_number(number: str | None) -> str:
    """``****1234``: only the last four characters are shown (nothing when there are four or fewer)."""
    text = number or ""
    return "****" + (text[-4:] if len(text) > 4 else "")


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise BrokerError(f"unparseable number from Alpaca: {str(value)[:40]!r}") from None
    if not result.is_finite():
        raise BrokerError(f"non-finite number from Alpaca: {str(value)[:40]!r}")
    return result


def _quantity(value: Decimal) -> int | Decimal:
    """Whole quantities as ``int`` (the domain's type); fractional ones stay ``Decimal``."""
    return int(value) if value == value.to_integral_value() else value


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise BrokerError(f"naive timestamp from Alpaca: {value.isoformat()}")
    return value.astimezone(UTC)


def _enum_value(value: Any) -> str:
    return str(getattr(value, "value", value) or "")


def _flatten(raw: AlpacaOrder) -> Iterator[tuple[AlpacaOrder, AlpacaOrder | None]]:
    """An order, then each of its legs with the order as parent."""
    yield raw, None
    for leg in raw.legs or ():
        yield leg, raw


# ====================================================================================== records


@dataclass(frozen=True, slots=True)
class MarketClock:
    """``GET /v2/clock``: whether the market is open now, and the next open and close (UTC)."""

    timestamp: datetime
    is_open: bool
    next_open: datetime
    next_close: datetime


@dataclass(frozen=True, slots=True)
class _Origin:
    """What this process knows about an order before Alpaca has shown it (labels for its domain view)."""

    strategy: str = ""
    reason: str = ""
    submitted_at: datetime | None = None
    order_type: OrderType | None = None
    parent: str | None = None
    role: str = ""
    stop: Decimal | None = None


@dataclass(frozen=True, slots=True)
class _Tracked:
    """One order as this broker knows it: the domain view and the fill baseline."""

    order: Order
    broker_id: str | None
    filled_qty: Decimal = _ZERO
    filled_notional: Decimal = _ZERO
    parent: str | None = None
    role: str = ""


@dataclass(frozen=True, slots=True)
class _Plan:
    """An intent translated into an Alpaca request, or the reason it cannot be sent."""

    order_type: OrderType
    request: OrderRequest | None = None
    limit: Decimal | None = None
    stop: Decimal | None = None
    take_profit: Decimal | None = None
    bracket: bool = False
    refusal: str | None = None
    note: str = ""

    def origin(self, intent: OrderIntent, submitted_at: datetime | None) -> _Origin:
        """The labels of the order this plan submits for ``intent``: its strategy, its reason (with the plan's
        note), its type and, for a bracket, its entry role and stop."""
        return _Origin(
            strategy=intent.strategy,
            reason=intent.reason + (f"; {self.note}" if self.note else ""),
            submitted_at=submitted_at,
            order_type=self.order_type,
            role=_ENTRY if self.bracket else "",
            stop=self.stop if self.bracket else None,
        )


@dataclass(slots=True)
class _Applied:
    fills: list[Fill] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AccountIdentity:
    """What start-up needs to know about the account: its number (never printed whole), status and kind."""

    number: str = field(repr=False)
    status: str
    currency: str
    paper: bool

    @property
    def masked(self) -> str:
        return mask_account_number(self.number)


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

    def submit_order(self, order_data: OrderRequest) -> AlpacaOrder:  # type: ignore[override]
        return self._order(self.post("/orders", order_data.to_request_fields()))

    def get_orders(self, filter: GetOrdersRequest | None = None) -> list[AlpacaOrder]:  # type: ignore[override]  # noqa: A002
        params = filter.to_request_fields() if filter is not None else {}
        if "symbols" in params and isinstance(params["symbols"], list):
            params["symbols"] = ",".join(params["symbols"])
        response = self.get("/orders", params)
        if not isinstance(response, list):
            raise ValueError(f"order listing is JSON {type(response).__name__}, expected an array")
        return [self._order(item) for item in response]

    def get_order_by_id(self, order_id: Any, filter: GetOrderByIdRequest | None = None) -> AlpacaOrder:  # type: ignore[override]  # noqa: A002
        params = filter.to_request_fields() if filter is not None else {}
        order_id = validate_uuid_id_param(order_id, "order_id")
        return self._order(self.get(f"/orders/{order_id}", params))

    def get_order_by_client_id(self, client_id: str) -> AlpacaOrder:  # type: ignore[override]
        return self._order(self.get("/orders:by_client_order_id", {"client_order_id": client_id}))

    def replace_order_by_id(self, order_id: Any, order_data: ReplaceOrderRequest | None = None) -> AlpacaOrder:  # type: ignore[override]
        params = order_data.to_request_fields() if order_data is not None else {}
        order_id = validate_uuid_id_param(order_id, "order_id")
        return self._order(self.patch(f"/orders/{order_id}", params))


# ====================================================================================== the broker


class AlpacaBroker:
    """:class:`core.brokers.base.Broker` on an Alpaca account (see the module docstring).

    ``limiter`` is the account's shared rate limiter (trading and data calls share Alpaca's 200 requests/minute);
    ``clock`` is the daemon's clock (UTC-aware); it stamps the account state and the sync cursor.
    ``order_lookup_attempts`` bounds the submissions of one ``submit`` call when answers are lost (each followed by
    a lookup by client id). ``retry_attempts`` is how often the SDK retries an HTTP 429.
    """

    def __init__(
        self,
        api_key: str,
        secret_key: str,
        *,
        paper: bool = True,
        url_override: str | None = None,
        timeout_s: float = 10.0,
        limiter: RequestLimiter,
        clock: Callable[[], datetime],
        name: str | None = None,
        order_lookup_attempts: int = 2,
        use_brackets: bool = True,
        release_shares_on_exit: bool = True,
        retry_attempts: int = 3,
        max_retry_after_s: float = 60.0,
        transient_retries: int = 2,
    ) -> None:
        if not isinstance(api_key, str) or not api_key or not isinstance(secret_key, str) or not secret_key:
            raise ValueError("api_key and secret_key must be non-empty strings")
        if url_override is not None and url_override.rstrip("/").endswith("/v2"):
            raise ValueError("url_override must not end in /v2: alpaca-py appends /v2 itself")
        if isinstance(order_lookup_attempts, bool) or not isinstance(order_lookup_attempts, int) or order_lookup_attempts < 1:
            raise ValueError(f"order_lookup_attempts must be a positive integer, got {order_lookup_attempts!r}")
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not math.isfinite(timeout_s) or timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive seconds, got {timeout_s!r}")
        self.name = name if name is not None else ("alpaca-paper" if paper else "alpaca-live")
        self._paper = paper
        self._url = url_override
        self._secrets = (api_key, secret_key)
        self._timeout_s = float(timeout_s)
        self._clock = clock
        self._order_lookup_attempts = order_lookup_attempts
        self._use_brackets = use_brackets
        self._release_shares_on_exit = release_shares_on_exit
        self._client = _TradingClient(api_key=api_key, secret_key=secret_key, paper=paper, url_override=url_override)
        self._adapter: TimeoutAdapter = configure_alpaca_client(
            self._client,
            timeout=self._timeout_s,
            limiter=limiter,
            retry_attempts=retry_attempts,
            retry_codes=(429,),
            max_retry_after_s=max_retry_after_s,
            transient_retries=transient_retries,
        )
        self._lock = asyncio.Lock()
        self._orders: dict[str, _Tracked] = {}  # by client order id
        self._by_broker_id: dict[str, str] = {}  # Alpaca id -> client order id
        self._origins: dict[str, _Origin] = {}  # labels for orders not yet seen at Alpaca
        self._in_doubt: dict[str, None] = {}  # submissions whose outcome is unknown
        self._baselines: dict[str, tuple[Decimal, Decimal]] = {}  # ledger fills of orders not tracked
        self._opened_at: dict[str, datetime] = {}
        self._cursor: datetime | None = None
        self._unreported_fills: list[Fill] = []
        self._unreported_orders: dict[str, None] = {}

    # ------------------------------------------------------------------ housekeeping

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, paper={self._paper}, url={self._url or 'default'!r})"

    @property
    def requests_made(self) -> int:
        """HTTP requests sent so far (each SDK retry counts)."""
        return self._adapter.requests_sent

    def close(self) -> None:
        self._client._session.close()

    def __enter__(self) -> AlpacaBroker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def resume(self, orders: Iterable[Order] = (), fills: Iterable[Fill] = ()) -> None:
        """Tell a fresh instance what the ledger already holds; call it once at start-up, before the first sync.

        ``fills`` set each order's fill baseline (so only executions after them are reported, with the same
        deterministic ids); ``orders`` are tracked again: working ones are polled by id, finished ones are only
        remembered (a ``submit`` of their id returns them). An order without an Alpaca id that was not rejected
        locally is looked up by client id at the next sync. Positions' opening times are rebuilt from the fills.
        """
        totals: dict[str, tuple[Decimal, Decimal]] = {}
        ordered_fills = sorted(fills, key=lambda f: (f.filled_at, f.fill_id))
        sides: dict[str, Decimal] = {}
        for fill in ordered_fills:
            quantity = Decimal(fill.quantity)
            qty, notional = totals.get(fill.client_order_id, (_ZERO, _ZERO))
            totals[fill.client_order_id] = (qty + quantity, notional + quantity * fill.price)
            held = sides.get(fill.symbol, _ZERO)
            signed = quantity if fill.side is Side.BUY else -quantity
            if held <= 0 < held + signed:
                self._opened_at[fill.symbol] = fill.filled_at
            elif held + signed <= 0:
                self._opened_at.pop(fill.symbol, None)
            sides[fill.symbol] = held + signed
        for order in orders:
            qty, notional = totals.pop(order.client_order_id, (_ZERO, _ZERO))
            role = _ENTRY if order.order_type is OrderType.BRACKET else ""
            self._orders[order.client_order_id] = _Tracked(order, order.broker_order_id, qty, notional, role=role)
            if order.broker_order_id is not None:
                self._by_broker_id[order.broker_order_id] = order.client_order_id
            elif order.status is not OrderStatus.REJECTED:
                self._in_doubt[order.client_order_id] = None
        self._baselines.update(totals)

    # ------------------------------------------------------------------ Broker protocol

    async def submit(self, intent: OrderIntent, client_order_id: str, now: datetime) -> Order:
        """Submit one order, idempotently per ``client_order_id`` (see the module docstring)."""
        ensure_utc(now, "now")
        self._check_client_order_id(client_order_id)
        async with self._lock:
            known = self._orders.get(client_order_id)
            if known is not None:
                return known.order
            plan = self._plan(intent, client_order_id)
            self._origins[client_order_id] = plan.origin(intent, now)
            if client_order_id in self._in_doubt:
                found = await self._find_by_client_id(client_order_id, "looking up an order whose submission was in doubt")
                if found is not None:
                    self._in_doubt.pop(client_order_id, None)
                    return self._adopt(found, client_order_id)
            if plan.refusal is not None:
                return self._reject_locally(intent, client_order_id, now, plan, plan.refusal)
            released: list[str] = []
            if intent.side is Side.SELL and self._release_shares_on_exit:
                released = await self._release_shares(intent.symbol, client_order_id)
            assert plan.request is not None
            try:
                order = await self._submit_with_lookups(intent, client_order_id, now, plan)
            except BrokerError:
                if released:
                    logger.error(
                        "{}: exit {} of {} failed after its protective orders {} were cancelled: the position is "
                        "unprotected until the exit is resolved",
                        self.name,
                        client_order_id,
                        intent.symbol,
                        ", ".join(released),
                    )
                raise
            if released and order.status is OrderStatus.REJECTED:
                logger.error(
                    "{}: exit {} of {} was refused after its protective orders {} were cancelled: the position is "
                    "unprotected",
                    self.name,
                    client_order_id,
                    intent.symbol,
                    ", ".join(released),
                )
                order = replace(order, reason=f"{order.reason}; protective orders cancelled first: {', '.join(released)}")
                self._orders[client_order_id] = replace(self._orders[client_order_id], order=order)
            return order

    async def sync(self, batch: BarsBatch | None = None) -> SyncResult:
        """Poll Alpaca for what changed since the previous sync (``batch`` is not needed: prices come from Alpaca)."""
        async with self._lock:
            now = ensure_utc(self._clock(), "clock()")
            notes: list[str] = []
            fetched: dict[str, AlpacaOrder] = {}
            for raw in await self._list_orders(QueryOrderStatus.OPEN):
                fetched[str(raw.id)] = raw
            if self._cursor is not None:
                for raw in await self._list_orders(QueryOrderStatus.ALL, after=self._cursor - _SYNC_OVERLAP):
                    fetched[str(raw.id)] = raw
            seen = {str(item.id) for raw in fetched.values() for item, _ in _flatten(raw)}
            resolved_doubts: list[str] = []
            for client_order_id in list(self._in_doubt):
                found = await self._find_by_client_id(client_order_id, "looking up an order whose submission was in doubt")
                resolved_doubts.append(client_order_id)
                if found is None:
                    notes.append(f"{client_order_id}: submission was in doubt and Alpaca has no such order")
                    continue
                fetched.setdefault(str(found.id), found)
                seen.update(str(item.id) for item, _ in _flatten(found))
            for tracked in list(self._orders.values()):
                broker_id = tracked.broker_id
                if broker_id is None or broker_id in seen or tracked.order.status in TERMINAL_ORDER_STATUSES:
                    continue
                raw = await self._request(
                    f"reading order {tracked.order.client_order_id}",
                    self._client.get_order_by_id,
                    broker_id,
                    GetOrderByIdRequest(nested=True),
                    missing_ok=True,
                )
                if raw is None:
                    notes.append(f"{tracked.order.client_order_id}: Alpaca has no order {broker_id}")
                    continue
                fetched[str(raw.id)] = raw
                seen.update(str(item.id) for item, _ in _flatten(raw))
            self._apply(fetched.values())
            for client_order_id in resolved_doubts:
                self._in_doubt.pop(client_order_id, None)
            self._cursor = now
            fills = tuple(self._unreported_fills)
            orders = tuple(self._orders[cid].order for cid in self._unreported_orders if cid in self._orders)
            self._unreported_fills.clear()
            self._unreported_orders.clear()
            if fills or orders:
                logger.info("{}: sync found {} fill(s) and {} changed order(s)", self.name, len(fills), len(orders))
            return SyncResult(fills=fills, orders=orders, notes=tuple(notes))

    async def cancel(self, client_order_id: str, now: datetime) -> Order:
        """Cancel a working order (a bracket entry's legs go with it; cancelling one leg cancels the other).

        Cancelling a cancelled order returns it as is; a finished order raises :class:`BrokerError`.
        """
        ensure_utc(now, "now")
        async with self._lock:
            tracked = await self._resolve(client_order_id)
            status = tracked.order.status
            if status is OrderStatus.CANCELED:
                return tracked.order
            if status in TERMINAL_ORDER_STATUSES or tracked.broker_id is None:
                raise BrokerError(f"order {client_order_id} is {status.value} and cannot be cancelled")
            order = await self._cancel_by_id(tracked.broker_id, client_order_id)
            if order.status in TERMINAL_ORDER_STATUSES and order.status is not OrderStatus.CANCELED:
                raise BrokerError(f"order {client_order_id} is {order.status.value} and cannot be cancelled")
            return order

    async def account(self) -> AccountState:
        """Cash, positions (marked at Alpaca's current price) and open orders; equity = cash + market value."""
        async with self._lock:
            raw_account = await self._request("reading the account", self._client.get_account)
            raw_positions = await self._request("reading positions", self._client.get_all_positions)
            open_raw = await self._list_orders(QueryOrderStatus.OPEN)
            applied = self._apply(open_raw)
            at = ensure_utc(self._clock(), "clock()")
            cash = _decimal(raw_account.cash)
            if cash is None:
                raise BrokerError(f"{self.name}: the account has no cash balance")
            positions = self._positions(raw_positions, at)
            market_value = sum((p.market_value for p in positions.values()), _ZERO)
            if raw_account.trading_blocked or raw_account.account_blocked:
                logger.warning("{}: the account is blocked for trading", self.name)
            open_orders = tuple(
                self._orders[cid].order for cid in dict.fromkeys(applied.seen) if self._orders[cid].order.status in _WORKING
            )
            return AccountState(
                at=at, cash=cash, positions=positions, equity=cash + market_value, open_orders=open_orders
            )

    # ------------------------------------------------------------------ extras

    async def replace_stop(self, stop_leg_client_or_broker_id: str, new_stop: float | Decimal, now: datetime) -> Order:
        """Move a working stop to ``new_stop`` with ``PATCH /v2/orders/{id}`` (never cancel + new).

        The reference is a stop order's (e.g. a bracket's stop-loss leg's) client id or Alpaca id, or a bracket
        entry's: then its current stop-loss leg is moved. Alpaca performs the replacement as one step: the old order
        becomes ``replaced`` and a new order (new Alpaca id, client id from :func:`replacement_client_order_id`)
        takes its place, in the same bracket (still one-cancels-other with the take-profit), so the position is
        never without a stop. Returns the new order (its reason names the one it replaces); the old one is reported
        ``CANCELED`` by the next sync. If the answer is lost, the replacement is looked up by its client id.
        Raises :class:`BrokerError` for an unknown, finished or non-stop order or a price Alpaca refuses.
        """
        ensure_utc(now, "now")
        try:
            stop = round_price(new_stop)
        except (ValueError, TypeError, ArithmeticError):
            raise BrokerError(f"stop price must be positive and finite, got {new_stop!r}") from None
        async with self._lock:
            raw = await self._fetch_reference(stop_leg_client_or_broker_id)
            target, parent = self._stop_target(raw, stop_leg_client_or_broker_id)
            self._apply([raw])
            old_cid = target.client_order_id
            old = self._orders[old_cid]
            new_cid = replacement_client_order_id(old_cid)
            self._origins[new_cid] = _Origin(
                strategy=old.order.strategy,
                reason=f"{self._role_text(old.role, old.parent) or 'stop'}: replaces {old_cid} "
                f"(stop {old.order.stop_price} -> {stop})",
                submitted_at=now,
                order_type=OrderType.STOP,
                parent=old.parent if old.parent is not None else (parent.client_order_id if parent is not None else None),
                role=old.role,
            )
            request = ReplaceOrderRequest(stop_price=float(stop), client_order_id=new_cid)
            what = f"replacing the stop {old_cid} with {new_cid}"
            try:
                new_raw = await asyncio.to_thread(self._client.replace_order_by_id, str(target.id), request)
            except APIError as exc:
                detail = self._detail(exc)
                doubt = self._doubt(exc)
                if doubt is None and not (exc.status_code == 422 and _DUPLICATE_ID in detail.lower()):
                    raise self._api_failure(exc, what) from None
                new_raw = await self._find_by_client_id(new_cid, f"{what} (answer lost: {doubt or 'duplicate id'})")
                if new_raw is None:
                    raise TemporaryBrokerError(
                        f"{self.name}: {what} failed ({doubt or 'duplicate id'}) and no replacement exists"
                    ) from None
            except requests.RequestException as exc:
                doubt = self._transport_text(exc)
                new_raw = await self._find_by_client_id(new_cid, f"{what} (answer lost: {doubt})")
                if new_raw is None:
                    raise TemporaryBrokerError(f"{self.name}: {what} failed ({doubt}) and no replacement exists") from None
            self._apply([new_raw])
            logger.info("{}: moved stop {} to {} as {}", self.name, old_cid, stop, new_raw.client_order_id)
            parent_cid = self._orders[new_raw.client_order_id].parent
            if parent_cid is not None and parent_cid in self._orders:
                entry = self._orders[parent_cid]
                if entry.order.status in _WORKING:
                    self._orders[parent_cid] = replace(entry, order=replace(entry.order, stop_price=float(stop)))
                    self._unreported_orders[parent_cid] = None
            return self._orders[new_raw.client_order_id].order

    async def open_orders(self) -> tuple[Order, ...]:
        """Every working order at Alpaca (bracket legs included), as domain orders."""
        async with self._lock:
            applied = self._apply(await self._list_orders(QueryOrderStatus.OPEN))
            return tuple(
                self._orders[cid].order for cid in dict.fromkeys(applied.seen) if self._orders[cid].order.status in _WORKING
            )

    async def positions(self) -> dict[str, Position]:
        async with self._lock:
            raw_positions = await self._request("reading positions", self._client.get_all_positions)
            return self._positions(raw_positions, ensure_utc(self._clock(), "clock()"))

    async def order_by_client_id(
        self, client_order_id: str, *, intent: OrderIntent | None = None, submitted_at: datetime | None = None
    ) -> Order | None:
        """The order with this client id at Alpaca (open or closed, with its bracket legs), or None when Alpaca has
        none. A lookup error raises (:class:`TemporaryBrokerError` for 5xx/timeouts): never read as "not there".

        The order, its legs and any execution not yet reported are folded into this broker's state and reported by
        the next :meth:`sync` / :meth:`take_reported`, exactly as if a poll had found them: fills are derived from
        the order's cumulative ``filled_qty``/``filled_avg_price`` with the same deterministic ids (see the module
        docstring), so one resolved after a crash is neither lost nor doubled. ``intent`` and ``submitted_at``
        (the persisted intent of an order in doubt) label an order this instance did not submit itself: its
        strategy, reason, type and submission time instead of "adopted"."""
        self._check_client_order_id(client_order_id)
        async with self._lock:
            if intent is not None and client_order_id not in self._orders:
                plan = self._plan(intent, client_order_id)
                self._origins.setdefault(client_order_id, plan.origin(intent, submitted_at))
            raw = await self._find_by_client_id(client_order_id, "looking up an order")
            if raw is None:
                return None
            self._apply([raw])
            self._in_doubt.pop(client_order_id, None)
            return self._orders[client_order_id].order

    async def poll(self) -> SyncResult:
        """:meth:`sync` without bars (Alpaca needs none): the start-up catch-up of what happened while down."""
        return await self.sync(None)

    def take_reported(self) -> SyncResult:
        """Hand over (and forget) what this instance learnt since the last :meth:`sync` without another request:
        e.g. the bracket legs that came with a submission's answer, the cancelled protective orders of an exit, a
        fill seen while reading the account. Lets the iteration that caused them record them."""
        fills = tuple(self._unreported_fills)
        orders = tuple(self._orders[cid].order for cid in self._unreported_orders if cid in self._orders)
        self._unreported_fills.clear()
        self._unreported_orders.clear()
        return SyncResult(fills=fills, orders=orders)

    def parent_of(self, client_order_id: str) -> str | None:
        """The client id of the bracket entry an order is a leg of (a replacement stop included), if known."""
        tracked = self._orders.get(client_order_id)
        return tracked.parent if tracked is not None else None

    @property
    def submission_window(self) -> timedelta:
        """How long after an intent was written an order may still appear at Alpaca (a POST in flight, its SDK
        retries): an intent Alpaca does not know after this is settled as never accepted."""
        return timedelta(seconds=max(120.0, 3 * self._timeout_s * self._order_lookup_attempts))

    async def market_clock(self) -> MarketClock:
        raw = await self._request("reading the market clock", self._client.get_clock)
        return MarketClock(
            timestamp=_utc(raw.timestamp),  # type: ignore[arg-type]
            is_open=bool(raw.is_open),
            next_open=_utc(raw.next_open),  # type: ignore[arg-type]
            next_close=_utc(raw.next_close),  # type: ignore[arg-type]
        )

    async def identify(self) -> AccountIdentity:
        """Read the account and check that it is of this broker's mode (the paper guard's second half).

        Raises :class:`BrokerModeMismatch` for a paper broker on a live account or a live broker on a paper account
        (whatever URL led there); the message names no digit of the account number.
        """
        raw = await self._request("reading the account", self._client.get_account)
        number = str(raw.account_number or "")
        identity = AccountIdentity(
            number=number, status=_enum_value(raw.status), currency=raw.currency or "USD", paper=is_paper_account_number(number)
        )
        if self._paper and not identity.paper:
            raise BrokerModeMismatch(
                f"{self.name}: TRADING_MODE=paper but the Alpaca account behind "
                f"{'ALPACA_TRADING_URL' if self._url else 'the paper endpoint'} is a LIVE account (its number does not "
                "start with PA); refusing to start"
            )
        if not self._paper and identity.paper:
            raise BrokerModeMismatch(
                f"{self.name}: TRADING_MODE=live but the Alpaca account behind "
                f"{'ALPACA_TRADING_URL' if self._url else 'the live endpoint'} is a paper account; refusing to start"
            )
        return identity

    async def account_label(self) -> str:
        """One line for start-up: broker name, paper/LIVE, masked account number, status."""
        return self.label(await self.identify())

    def label(self, identity: AccountIdentity) -> str:
        mode = "paper" if self._paper else "LIVE"
        return f"{self.name}: {mode} account {identity.masked} (status {identity.status}, {identity.currency})"

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

    async def _submit_with_lookups(self, intent: OrderIntent, client_order_id: str, now: datetime, plan: _Plan) -> Order:
        attempts = 0
        while True:
            attempts += 1
            try:
                raw = await asyncio.to_thread(self._client.submit_order, plan.request)
            except APIError as exc:
                status = exc.status_code
                detail = self._detail(exc)
                if status == 422 and _DUPLICATE_ID in detail.lower():
                    existing = await self._find_by_client_id(client_order_id, "fetching the order that holds this id")
                    if existing is None:
                        raise BrokerError(
                            f"{self.name}: Alpaca says {client_order_id} is taken but has no order with that id"
                        ) from None
                    logger.info("{}: {} already exists at Alpaca; returning it instead of a new order", self.name, client_order_id)
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
        logger.warning("{}: {} {} x{} ({}) rejected: {}", self.name, intent.side.value, intent.symbol, intent.quantity, client_order_id, why)
        return order

    def _adopt(self, raw: AlpacaOrder, client_order_id: str) -> Order:
        self._apply([raw])
        tracked = self._orders.get(client_order_id)
        if tracked is None:
            raise BrokerError(f"{self.name}: Alpaca answered with order {raw.client_order_id!r}, not {client_order_id!r}")
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
            logger.warning("{}: {} (attempt {}) ended in doubt ({}); the order is still working", self.name, what, attempt, doubt)
        raise TemporaryBrokerError(f"{self.name}: {what} failed: answers lost and the order is still working")

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
            chosen = (working_legs or legs or [None])[-1]
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
            base_reason = origin.reason or self._role_text(role, parent_cid) or (
                "adopted: found at Alpaca, not submitted by this broker instance"
            )
            order = Order(
                client_order_id=client_order_id,
                symbol=raw.symbol or "",
                side=Side(_enum_value(raw.side)),
                quantity=_quantity(qty) if qty is not None else _quantity(filled),
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
            if suffix and (order.status is not status or alpaca_status not in ALPACA_STATUS_MAP) and suffix not in order.reason:
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
            logger.warning("{}: order {} filled {} without an average price; waiting", self.name, order.client_order_id, filled)
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
            quantity=_quantity(quantity),  # type: ignore[arg-type]
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
                logger.info("{}: opening time of the {} position is unknown; using {}", self.name, raw.symbol, at.isoformat())
            positions[raw.symbol] = Position(
                symbol=raw.symbol,
                quantity=_quantity(quantity),  # type: ignore[arg-type]
                average_price=average.quantize(PRICE_QUANTUM),
                opened_at=opened_at,
                last_price=_decimal(raw.current_price),
            )
        for symbol in list(self._opened_at):
            if symbol not in positions:
                del self._opened_at[symbol]
        return positions

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
            page_after = max(_utc(raw.submitted_at) or _utc(raw.created_at) for raw in page) - timedelta(microseconds=1)  # type: ignore[type-var,operator]
        logger.warning("{}: order listing truncated after {} pages of {}", self.name, _MAX_PAGES, _PAGE_SIZE)
        return list(found.values())

    async def _find_by_client_id(self, client_order_id: str, what: str) -> AlpacaOrder | None:
        return await self._request(what, self._client.get_order_by_client_id, client_order_id, missing_ok=True)

    async def _fetch_reference(self, reference: str) -> AlpacaOrder:
        """The Alpaca order (nested) named by a client id or an Alpaca id."""
        tracked = self._orders.get(reference)
        broker_id = tracked.broker_id if tracked is not None else (reference if reference in self._by_broker_id else None)
        if broker_id is None:
            found = await self._find_by_client_id(reference, "looking up an order")
            if found is not None:
                broker_id = str(found.id)
            elif _looks_like_uuid(reference):
                broker_id = reference
            else:
                raise BrokerError(f"{self.name}: no order {reference!r}")
        raw = await self._request(
            f"reading order {reference}", self._client.get_order_by_id, broker_id, GetOrderByIdRequest(nested=True), missing_ok=True
        )
        if raw is None:
            raise BrokerError(f"{self.name}: no order {reference!r}")
        return raw

    def _stop_target(self, raw: AlpacaOrder, reference: str) -> tuple[AlpacaOrder, AlpacaOrder | None]:
        """The stop order to move: the order itself, or a bracket entry's working stop-loss leg (with its entry)."""
        if raw.legs:
            stops = [leg for leg in raw.legs if _enum_value(leg.type) in _STOP_TYPES and _enum_value(leg.status) not in ("filled", "canceled", "expired", "rejected", "replaced")]
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
                raise BrokerAuthError(f"{self.name}: {what} failed: HTTP 403 (the API keys are not allowed to)", 403) from None
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
    return re.fullmatch(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", text) is not None

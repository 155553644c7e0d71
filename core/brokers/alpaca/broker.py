"""The :class:`AlpacaBroker` itself: construction, the Broker protocol and the Alpaca-only extras."""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from collections.abc import Callable, Iterable

import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import QueryOrderStatus
from alpaca.trading.models import Order as AlpacaOrder
from alpaca.trading.requests import GetOrderByIdRequest, ReplaceOrderRequest
from loguru import logger

from core.brokers.alpaca.client import _AlpacaCalls, _TradingClient
from core.brokers.alpaca.mapping import (
    _DUPLICATE_ID,
    _ENTRY,
    _SYNC_OVERLAP,
    _WORKING,
    _ZERO,
    AccountIdentity,
    MarketClock,
    _Origin,
    _Tracked,
    _decimal,
    _enum_value,
    _flatten,
    _utc,
    is_paper_account_number,
    replacement_client_order_id,
    round_price,
)
from core.brokers.alpaca.submit import _Submission
from core.brokers.alpaca.sync import _Sync
from core.brokers.base import AccountState, BrokerError, BrokerModeMismatch, SyncResult, TemporaryBrokerError
from core.kernel.domain import (
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
from utils.http import RequestLimiter, SessionOwner, TimeoutAdapter, configure_alpaca_client


# ====================================================================================== the broker


class AlpacaBroker(_Submission, _Sync, _AlpacaCalls, SessionOwner):
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
        if (
            isinstance(order_lookup_attempts, bool)
            or not isinstance(order_lookup_attempts, int)
            or order_lookup_attempts < 1
        ):
            raise ValueError(f"order_lookup_attempts must be a positive integer, got {order_lookup_attempts!r}")
        if (
            isinstance(timeout_s, bool)
            or not isinstance(timeout_s, (int, float))
            or not math.isfinite(timeout_s)
            or timeout_s <= 0
        ):
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
                found = await self._find_by_client_id(
                    client_order_id, "looking up an order whose submission was in doubt"
                )
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
                order = replace(
                    order, reason=f"{order.reason}; protective orders cancelled first: {', '.join(released)}"
                )
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
                found = await self._find_by_client_id(
                    client_order_id, "looking up an order whose submission was in doubt"
                )
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
        """Cash, positions (marked at Alpaca's current price) and open orders; equity = cash + market value; the
        account's ``daytrade_count`` and ``pattern_day_trader`` as Alpaca reports them (None when absent)."""
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
                self._orders[cid].order
                for cid in dict.fromkeys(applied.seen)
                if self._orders[cid].order.status in _WORKING
            )
            return AccountState(
                at=at,
                cash=cash,
                positions=positions,
                equity=cash + market_value,
                open_orders=open_orders,
                daytrade_count=raw_account.daytrade_count,  # None once Alpaca stops sending the (deprecated) fields
                pattern_day_trader=raw_account.pattern_day_trader,
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
                parent=old.parent
                if old.parent is not None
                else (parent.client_order_id if parent is not None else None),
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
                found = await self._find_by_client_id(new_cid, f"{what} (answer lost: {doubt or 'duplicate id'})")
                if found is None:
                    raise TemporaryBrokerError(
                        f"{self.name}: {what} failed ({doubt or 'duplicate id'}) and no replacement exists"
                    ) from None
                new_raw = found
            except requests.RequestException as exc:
                doubt = self._transport_text(exc)
                found = await self._find_by_client_id(new_cid, f"{what} (answer lost: {doubt})")
                if found is None:
                    raise TemporaryBrokerError(
                        f"{self.name}: {what} failed ({doubt}) and no replacement exists"
                    ) from None
                new_raw = found
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
                self._orders[cid].order
                for cid in dict.fromkeys(applied.seen)
                if self._orders[cid].order.status in _WORKING
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
            timestamp=_utc(raw.timestamp),
            is_open=bool(raw.is_open),
            next_open=_utc(raw.next_open),
            next_close=_utc(raw.next_close),
        )

    async def identify(self) -> AccountIdentity:
        """Read the account and check that it is of this broker's mode (the paper guard's second half).

        Raises :class:`BrokerModeMismatch` for a paper broker on a live account or a live broker on a paper account
        (whatever URL led there); the message names no digit of the account number.
        """
        raw = await self._request("reading the account", self._client.get_account)
        number = str(raw.account_number or "")
        identity = AccountIdentity(
            number=number,
            status=_enum_value(raw.status),
            currency=raw.currency or "USD",
            paper=is_paper_account_number(number),
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

"""A stateful fake of Alpaca's trading API, served by :class:`tests.fakes.alpaca_server.FakeAlpacaServer`.

:class:`FakeTradingApi` keeps orders (bracket legs included), positions, cash and a market clock in memory and
serves, through the real alpaca-py ``TradingClient``:

- ``POST /v2/orders``: market, limit and stop orders, ``order_class`` simple or bracket. ``client_order_id`` is
  generated when absent and must be unique among *all* orders ever accepted (a reuse, even of a cancelled order's id,
  is answered 422 ``client_order_id must be unique``). Checks as Alpaca makes them: sub-penny prices at or above $1
  (422), bracket rules (both legs, ``day``/``gtc``, no extended hours, for a buy take-profit above stop-loss and,
  when the symbol has a price, take-profit >= price + 0.01 and stop <= price - 0.01) (422), buying power for buys
  (403 ``insufficient buying power``; cash minus what working buys reserve, estimated at the limit or the symbol's
  price) and available shares for sells (403 ``insufficient qty available``; shares held minus the shares working
  sell orders, active bracket legs included, already hold).
- ``GET /v2/orders``: ``status`` (open, closed, all; default open), ``after``/``until`` (exclusive, on
  ``submitted_at``), ``direction`` (default desc), ``limit`` (default 50, at most 500), ``symbols``, ``side``,
  ``nested``. With ``nested=true`` legs are listed inside their parent only, and a parent matches the status filter
  when it or one of its legs does (so an open stop-loss leg of a filled entry is listed, under its parent); without
  it every order, legs included, is listed on its own with ``legs: null``.
- ``GET /v2/orders/{order_id}`` (legs only with ``nested=true``), ``GET /v2/orders:by_client_order_id`` (legs
  included); 404 ``order not found`` for unknown ids.
- ``PATCH /v2/orders/{order_id}``: replaces a working order as Alpaca does: a **new** order (new ``id``, new or
  given ``client_order_id``, ``replaces`` = the old id) takes its place, atomically, in its bracket, and the old one
  becomes ``replaced`` (``replaced_by`` = the new id). 422 when the order is finished or the change is invalid.
- ``DELETE /v2/orders/{order_id}``: 204; cancelling a working bracket entry cancels its legs, cancelling one leg
  cancels the other (one-cancels-other); 422 for a finished order.
- ``GET /v2/account``, ``GET /v2/positions``, ``GET /v2/clock`` (weekdays 09:30-16:00 New York, no holidays,
  unless :meth:`FakeTradingApi.set_market_clock` fixes the answer).

Bracket legs behave as on Alpaca: created ``held`` with the entry; when the entry is completely filled the
take-profit leg becomes ``new`` and the stop-loss leg stays ``held`` (Alpaca keeps it and triggers it itself) but
both are active; when one leg is completely filled the other is cancelled.

Controls (all thread-safe): :meth:`set_price`, :meth:`set_day_trades`, :meth:`fill` (fully or partially, at a price),
:meth:`create_order` (an order placed outside the client, e.g. by a previous process),
:meth:`rate_limit_next`, :meth:`fail_next`, :meth:`hang_next` (faults answered *before* the request is processed)
and :meth:`accept_then` (the next ``POST /v2/orders`` is **accepted** and the client then gets a 500 or a hung
connection). Inspection: :meth:`orders`, :meth:`order`, :meth:`count_with_client_id`, :meth:`positions`,
:meth:`coverage` (after every state change: shares held minus shares covered by active stop orders, per symbol).

Every JSON reply is checked against Alpaca's official ``trading-api.json`` by the server. :class:`TradingSpec`
adds the three things the real API does that its spec does not write down, so that they are checked rather than
reported as violations:

- Boolean query parameters: alpaca-py sends Python's ``True``/``False`` (``requests`` uses ``str(bool)``); they are
  checked as the booleans they mean.
- Decimal request fields (``qty``, ``limit_price``, ``stop_price``, ``take_profit.limit_price``...): the spec types
  them as strings, alpaca-py sends JSON numbers, and Alpaca accepts both. Numbers there are checked as their text.
- Error statuses the operation does not declare (404, 429 and 500 can come from any endpoint): the body is checked
  against the spec's generic ``ErrorResponse`` schema and the headers against ``components/responses/<status>``.
- Order statuses the spec's ``OrderStatus`` enum does not list (Alpaca adds some: ``pending_review`` is one alpaca-py
  knows): only those a test gave an order with :meth:`FakeTradingApi.set_status` are tolerated (checked as strings);
  any other unlisted status is still a violation.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time as dtime, timedelta
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import quote
from zoneinfo import ZoneInfo

from tests.fakes.alpaca_server import (
    TRADING_SPEC_PATH,
    FakeAlpacaServer,
    Hang,
    OpenApiSpec,
    RecordedRequest,
    Reply,
    server_error,
    too_many_requests,
)

__all__ = [
    "ACCOUNT_PATH",
    "CLOCK_PATH",
    "Coverage",
    "FakeOrder",
    "FakeTradingApi",
    "ManualClock",
    "ORDERS_PATH",
    "ORDER_BY_CLIENT_ID_PATH",
    "ORDER_PATH",
    "POSITIONS_PATH",
    "TRADING_SPEC_PATH",
    "TradingSpec",
    "wire_time",
]

ORDERS_PATH = "/v2/orders"
ORDER_PATH = "/v2/orders/{order_id}"
ORDER_BY_CLIENT_ID_PATH = "/v2/orders:by_client_order_id"
ACCOUNT_PATH = "/v2/account"
POSITIONS_PATH = "/v2/positions"
CLOCK_PATH = "/v2/clock"

NEW_YORK = ZoneInfo("America/New_York")
_ZERO = Decimal("0")
_CENT = Decimal("0.01")
_SUB_DOLLAR_TICK = Decimal("0.0001")
_TERMINAL = frozenset({"filled", "canceled", "expired", "rejected", "replaced"})
_STOP_TYPES = frozenset({"stop", "stop_limit", "trailing_stop"})
_MAX_LIMIT = 500
_DEFAULT_LIMIT = 50
_ORDER_RESPONSES = frozenset(
    {
        ("POST", "/v2/orders"),
        ("GET", "/v2/orders"),
        ("GET", "/v2/orders/{order_id}"),
        ("GET", "/v2/orders:by_client_order_id"),
        ("PATCH", "/v2/orders/{order_id}"),
    }
)

# Request fields the spec types as decimal strings and alpaca-py sends as JSON numbers (see TradingSpec).
_DECIMAL_BODY_FIELDS: Mapping[tuple[str, str], tuple[tuple[str, ...], ...]] = MappingProxyType(
    {
        ("POST", ORDERS_PATH): (
            ("qty",),
            ("notional",),
            ("limit_price",),
            ("stop_price",),
            ("trail_price",),
            ("trail_percent",),
            ("take_profit", "limit_price"),
            ("stop_loss", "stop_price"),
            ("stop_loss", "limit_price"),
        ),
        ("PATCH", ORDER_PATH): (("qty",), ("limit_price",), ("stop_price",), ("trail",)),
    }
)


def wire_time(moment: datetime) -> str:
    """An aware datetime as Alpaca writes it: UTC, microseconds, ``Z``."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without offset: {text!r}")
    return moment.astimezone(UTC)


def _text(value: Decimal) -> str:
    """A Decimal as Alpaca's plain decimal text (no exponent, no trailing zeros)."""
    if value == 0:
        return "0"
    normalised = value.normalize()
    return format(normalised, "f")


def _decimal(value: Any, name: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{name} is required")
    try:
        result = Decimal(str(value))
    except ArithmeticError:
        raise ValueError(f"invalid {name} {value!r}") from None
    if not result.is_finite():
        raise ValueError(f"invalid {name} {value!r}")
    return result


def _sub_penny(price: Decimal) -> bool:
    tick = _CENT if price >= 1 else _SUB_DOLLAR_TICK
    return price != price.quantize(tick)


class ManualClock:
    """A UTC clock that only moves when told to: share one between the fake and the code under test."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None or start.utcoffset() != timedelta(0):
            raise ValueError("ManualClock needs a UTC-aware start")
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta = timedelta(seconds=1)) -> datetime:
        with self._lock:
            self._now += delta
            return self._now

    def set(self, moment: datetime) -> None:
        if moment.tzinfo is None or moment.utcoffset() != timedelta(0):
            raise ValueError("ManualClock needs UTC-aware times")
        with self._lock:
            self._now = moment


# ====================================================================================== spec with Alpaca's tolerances


class TradingSpec(OpenApiSpec):
    """``trading-api.json`` with the behaviours of the real API its text leaves out (see the module docstring)."""

    @classmethod
    def load(cls, path: Path = TRADING_SPEC_PATH) -> TradingSpec:  # type: ignore[override]
        path = Path(path)
        with path.open(encoding="utf-8") as handle:
            document = json.load(handle)
        return cls(document, path.resolve().as_uri())

    def request_problems(self, method: str, template: str, query: Mapping[str, Sequence[str]]) -> list[str]:
        booleans = {
            parameter["name"]
            for parameter, pointer in self._parameters(method, template)
            if parameter["in"] == "query"
            and self._resolve(parameter.get("schema", {}), pointer + quote("/schema", safe="/~"))[0].get("type")
            == "boolean"
        }
        normalised = {
            name: tuple(v.lower() if name in booleans and v in ("True", "False") else v for v in values)
            for name, values in query.items()
        }
        return super().request_problems(method, template, normalised)

    def body_problems(self, method: str, template: str, body: bytes) -> list[str]:
        paths = _DECIMAL_BODY_FIELDS.get((method.upper(), template))
        if paths and body:
            try:
                value = json.loads(body)
            except ValueError:
                value = None
            if isinstance(value, dict):
                for path in paths:
                    _stringify_number(value, path)
                body = json.dumps(value).encode()
        return super().body_problems(method, template, body)

    def response_problems(
        self,
        method: str,
        template: str,
        status: int,
        body: Any,
        headers: Mapping[str, str] | None = None,
    ) -> list[str]:
        responses = self.operation(method, template).get("responses", {})
        if status < 400 and (method.upper(), template) in _ORDER_RESPONSES:
            body = self._known_statuses(body)
        if status < 400 or str(status) in responses or "default" in responses:
            return super().response_problems(method, template, status, body, headers)
        where = f"{method.upper()} {template} -> {status} (undeclared error status)"
        problems = self._errors("#/components/schemas/ErrorResponse", body, where)
        generic = self.document.get("components", {}).get("responses", {}).get(str(status), {})
        for name, raw_header in (generic.get("headers") or {}).items():
            value = next((v for k, v in (headers or {}).items() if k.lower() == name.lower()), None)
            if value is None:
                continue
            header, _ = self._resolve(raw_header, "")
            kind = header.get("schema", {}).get("type")
            if kind == "integer":
                try:
                    int(value)
                except ValueError:
                    problems.append(f"{where}: header {name}: {value!r} is not an integer")
        return problems

    def tolerate_status(self, status: str) -> None:
        """Accept ``status`` in order replies although the spec's enum does not list it (see the module docstring)."""
        self.__dict__.setdefault("_tolerated", set()).add(status)

    def _known_statuses(self, body: Any) -> Any:
        """``body`` with every tolerated order status the spec's enum lacks replaced by one it lists."""
        tolerated = self.__dict__.get("_tolerated", set())
        if not tolerated:
            return body

        def fix(order: Any) -> Any:
            if not isinstance(order, dict):
                return order
            fixed = dict(order)
            if fixed.get("status") in tolerated:
                fixed["status"] = "new"
            if isinstance(fixed.get("legs"), list):
                fixed["legs"] = [fix(leg) for leg in fixed["legs"]]
            return fixed

        return [fix(o) for o in body] if isinstance(body, list) else fix(body)


def _stringify_number(value: dict, path: tuple[str, ...]) -> None:
    node: Any = value
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict):
        leaf = node.get(path[-1])
        if isinstance(leaf, (int, float)) and not isinstance(leaf, bool):
            node[path[-1]] = repr(leaf) if isinstance(leaf, float) else str(leaf)


# ====================================================================================== state


@dataclass(slots=True)
class FakeOrder:
    """One order as the fake keeps it (money and quantities as ``Decimal``)."""

    id: str
    client_order_id: str
    symbol: str
    side: str
    type: str
    time_in_force: str
    qty: Decimal
    order_class: str  # "" (simple) or "bracket"
    created_at: datetime
    submitted_at: datetime
    updated_at: datetime
    status: str = "accepted"
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    filled_qty: Decimal = _ZERO
    filled_notional: Decimal = _ZERO
    filled_at: datetime | None = None
    canceled_at: datetime | None = None
    expired_at: datetime | None = None
    failed_at: datetime | None = None
    replaced_at: datetime | None = None
    replaced_by: str | None = None
    replaces: str | None = None
    extended_hours: bool = False
    parent_id: str | None = None  # for a bracket leg: its entry
    leg_ids: list[str] = field(default_factory=list)  # for a bracket entry: its legs (take-profit, stop-loss)
    active: bool = True  # a leg is inactive until its entry has completely filled
    asset_id: str = ""

    @property
    def working(self) -> bool:
        return self.status not in _TERMINAL

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.filled_qty

    @property
    def filled_avg_price(self) -> Decimal | None:
        if self.filled_qty == 0:
            return None
        return self.filled_notional / self.filled_qty


@dataclass(slots=True)
class _Holding:
    qty: Decimal
    cost: Decimal
    asset_id: str


@dataclass(frozen=True, slots=True)
class Coverage:
    """After one state change: per symbol, shares held minus shares covered by active working stop orders."""

    event: str
    uncovered: Mapping[str, Decimal]


class _Rejection(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.reply = Reply(status, json={"code": code, "message": message})


def _not_found(what: str = "order not found") -> Reply:
    return Reply(404, json={"code": 40410000, "message": what})


class FakeTradingApi:
    """The trading endpoints of a fake Alpaca account (see the module docstring)."""

    def __init__(
        self,
        server: FakeAlpacaServer,
        spec: TradingSpec,
        *,
        clock: Callable[[], datetime],
        cash: Decimal = Decimal("100000"),
        account_number: str = "PA3FAKE51234",
    ) -> None:
        self.server = server
        self.spec = spec
        self._clock = clock
        self._lock = threading.RLock()
        self._orders: dict[str, FakeOrder] = {}  # by id, in creation order
        self._by_client_id: dict[str, str] = {}
        self._holdings: dict[str, _Holding] = {}
        self._prices: dict[str, Decimal] = {}
        self._cash = Decimal(cash)
        self._account_number = account_number
        self._account_id = str(uuid.UUID(int=0xACC0))
        self._created_at = clock()
        self._seq = 0
        self._after_accept: list[Reply | Hang] = []
        self._coverage: list[Coverage] = []
        self._market_clock: dict[str, Any] | None = None
        self._day_trades: tuple[int, bool] | None = (0, False)

    @classmethod
    def install(
        cls,
        server: FakeAlpacaServer,
        spec: TradingSpec,
        *,
        clock: Callable[[], datetime],
        cash: Decimal = Decimal("100000"),
        account_number: str = "PA3FAKE51234",
    ) -> FakeTradingApi:
        api = cls(server, spec, clock=clock, cash=cash, account_number=account_number)
        server.route("POST", ORDERS_PATH, api._post_order, spec=spec)
        server.route("GET", ORDERS_PATH, api._list_orders, spec=spec)
        server.route("GET", ORDER_BY_CLIENT_ID_PATH, api._get_by_client_id, spec=spec)
        server.route("GET", ORDER_PATH, api._get_order, spec=spec)
        server.route("PATCH", ORDER_PATH, api._patch_order, spec=spec)
        server.route("DELETE", ORDER_PATH, api._delete_order, spec=spec)
        server.route("GET", ACCOUNT_PATH, api._get_account, spec=spec)
        server.route("GET", POSITIONS_PATH, api._get_positions, spec=spec)
        server.route("GET", CLOCK_PATH, api._get_clock, spec=spec)
        return api

    # ---------------------------------------------------------------- controls

    def set_price(self, symbol: str, price: Decimal | str | float) -> None:
        """The symbol's current price: used for marks, buying-power estimates and bracket base-price checks."""
        with self._lock:
            self._prices[symbol] = _decimal(price, "price")
            self._note_coverage(f"price {symbol}")

    def set_day_trades(self, count: int | None, *, pattern_day_trader: bool = False) -> None:
        """What ``GET /v2/account`` reports as ``daytrade_count`` (day trades in the last 5 sessions, today's
        included) and ``pattern_day_trader``; ``None`` leaves both fields out, as Alpaca may once they are retired."""
        with self._lock:
            self._day_trades = None if count is None else (int(count), bool(pattern_day_trader))

    def set_market_clock(self, *, is_open: bool, next_open: datetime, next_close: datetime) -> None:
        with self._lock:
            self._market_clock = {"is_open": is_open, "next_open": next_open, "next_close": next_close}

    def rate_limit_next(self, method: str, template: str, retry_after: float = 0.2, times: int = 1) -> None:
        """The next ``times`` requests to the route get HTTP 429 with ``Retry-After`` (before any processing)."""
        self.server.script(method, template, *[too_many_requests(retry_after) for _ in range(times)])

    def fail_next(self, method: str, template: str, status: int = 500, times: int = 1) -> None:
        """The next ``times`` requests to the route get ``status`` (before any processing: nothing happens)."""
        self.server.script(method, template, *[server_error(status) for _ in range(times)])

    def hang_next(self, method: str, template: str, seconds: float = 30.0, times: int = 1) -> None:
        """The next ``times`` requests hang for ``seconds`` (released when the server stops), then the connection
        is dropped; nothing is processed."""
        self.server.script(method, template, *[Hang(seconds) for _ in range(times)])

    def set_status(self, ref: str, status: str) -> FakeOrder:
        """Give an order (by id or client order id) any ``status`` string, e.g. one alpaca-py's enum lacks; an
        unknown status counts as working here."""
        with self._lock:
            order = self._find(ref)
            if order is None:
                raise KeyError(f"no order {ref!r}")
            if status not in self.spec.document["components"]["schemas"]["OrderStatus"]["enum"]:
                self.spec.tolerate_status(status)
            order.status = status
            order.updated_at = self._clock()
            return replace(order, leg_ids=list(order.leg_ids))

    def accept_then(self, action: Reply | Hang) -> None:
        """The next ``POST /v2/orders`` is processed (the order exists server-side) and then answered ``action``
        (e.g. ``server_error(500)`` or ``Hang(30)``) instead of the order."""
        with self._lock:
            self._after_accept.append(action)

    def create_order(
        self,
        *,
        symbol: str,
        qty: int | Decimal,
        side: str = "buy",
        client_order_id: str | None = None,
        type: str = "market",  # noqa: A002 - Alpaca's field name
        time_in_force: str = "day",
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> FakeOrder:
        """An order placed without the client under test (another process, the dashboard...)."""
        body: dict[str, Any] = {
            "symbol": symbol,
            "qty": str(qty),
            "side": side,
            "type": type,
            "time_in_force": time_in_force,
        }
        if client_order_id is not None:
            body["client_order_id"] = client_order_id
        if limit_price is not None:
            body["limit_price"] = str(limit_price)
        if stop_price is not None:
            body["stop_price"] = str(stop_price)
        with self._lock:
            order = self._accept(body)
            return replace(order, leg_ids=list(order.leg_ids))

    def fill(self, ref: str, price: Decimal | str | float, qty: Decimal | int | None = None) -> FakeOrder:
        """Execute ``qty`` (default: all that remains) of a working, active order at ``price``."""
        price_d = _decimal(price, "price")
        with self._lock:
            order = self._find(ref)
            if order is None:
                raise KeyError(f"no order {ref!r}")
            if not order.working or not order.active:
                raise ValueError(f"order {ref} is {order.status} (active={order.active}): it cannot fill")
            quantity = order.remaining if qty is None else Decimal(qty)
            if not 0 < quantity <= order.remaining:
                raise ValueError(f"cannot fill {quantity} of {order.remaining} remaining")
            now = self._clock()
            order.filled_qty += quantity
            order.filled_notional += quantity * price_d
            order.updated_at = now
            holding = self._holdings.get(order.symbol)
            if order.side == "buy":
                self._cash -= quantity * price_d
                if holding is None:
                    holding = self._holdings[order.symbol] = _Holding(_ZERO, _ZERO, order.asset_id)
                holding.qty += quantity
                holding.cost += quantity * price_d
            else:
                if holding is None or holding.qty < quantity:
                    raise ValueError(f"fake account holds too few {order.symbol} shares to sell {quantity}")
                self._cash += quantity * price_d
                holding.cost -= holding.cost * quantity / holding.qty
                holding.qty -= quantity
                if holding.qty == 0:
                    del self._holdings[order.symbol]
            self._prices.setdefault(order.symbol, price_d)
            if order.filled_qty == order.qty:
                order.status = "filled"
                order.filled_at = now
                self._after_complete_fill(order, now)
            else:
                order.status = "partially_filled"
            self._note_coverage(f"fill {order.client_order_id} {quantity}@{price_d}")
            return replace(order, leg_ids=list(order.leg_ids))

    def cancel(self, ref: str) -> FakeOrder:
        """Cancel a working order (by id or client order id) as if from outside the client (the dashboard, Alpaca
        at the close); a bracket entry's legs go with it, as with ``DELETE``."""
        with self._lock:
            order = self._find(ref)
            if order is None:
                raise KeyError(f"no order {ref!r}")
            if not order.working:
                raise ValueError(f"order {ref} is {order.status}: it cannot be cancelled")
            now = self._clock()
            self._cancel(order, now)
            for leg_id in order.leg_ids:
                if self._orders[leg_id].working:
                    self._cancel(self._orders[leg_id], now)
            return replace(order, leg_ids=list(order.leg_ids))

    def order_payload(self, ref: str) -> dict[str, Any]:
        """The order (by id or client order id) as Alpaca writes it, legs included: what a trade update carries."""
        with self._lock:
            order = self._find(ref)
            if order is None:
                raise KeyError(f"no order {ref!r}")
            return self._wire(order, nested=True)

    # ---------------------------------------------------------------- inspection

    def orders(self) -> list[FakeOrder]:
        """Copies of every order, legs included, in creation order."""
        with self._lock:
            return [replace(o, leg_ids=list(o.leg_ids)) for o in self._orders.values()]

    def order(self, ref: str) -> FakeOrder:
        """A copy of one order, by id or client order id."""
        with self._lock:
            found = self._find(ref)
            if found is None:
                raise KeyError(f"no order {ref!r}")
            return replace(found, leg_ids=list(found.leg_ids))

    def count_with_client_id(self, client_order_id: str) -> int:
        with self._lock:
            return sum(1 for o in self._orders.values() if o.client_order_id == client_order_id)

    def top_level_orders(self) -> list[FakeOrder]:
        with self._lock:
            return [replace(o, leg_ids=list(o.leg_ids)) for o in self._orders.values() if o.parent_id is None]

    def positions(self) -> dict[str, tuple[Decimal, Decimal]]:
        """``{symbol: (qty, cost)}``."""
        with self._lock:
            return {s: (h.qty, h.cost) for s, h in self._holdings.items()}

    @property
    def cash(self) -> Decimal:
        with self._lock:
            return self._cash

    def coverage(self) -> list[Coverage]:
        """After every state change, shares held minus shares covered by active working stop orders."""
        with self._lock:
            return list(self._coverage)

    # ---------------------------------------------------------------- internals: state

    def _next_id(self) -> str:
        self._seq += 1
        return str(uuid.UUID(int=(0xA1FA << 96) + self._seq))

    def _find(self, ref: str) -> FakeOrder | None:
        order = self._orders.get(ref)
        if order is None and ref in self._by_client_id:
            order = self._orders[self._by_client_id[ref]]
        return order

    def _asset_id(self, symbol: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"fake-alpaca-asset:{symbol}"))

    def _note_coverage(self, event: str) -> None:
        uncovered: dict[str, Decimal] = {}
        for symbol, holding in self._holdings.items():
            covered = sum(
                (
                    o.remaining
                    for o in self._orders.values()
                    if o.symbol == symbol and o.side == "sell" and o.working and o.active and o.type in _STOP_TYPES
                ),
                _ZERO,
            )
            uncovered[symbol] = max(holding.qty - covered, _ZERO)
        self._coverage.append(Coverage(event, uncovered))

    def _after_complete_fill(self, order: FakeOrder, now: datetime) -> None:
        if order.leg_ids:  # a bracket entry: its legs become active
            for leg_id in order.leg_ids:
                leg = self._orders[leg_id]
                if leg.working:
                    leg.active = True
                    leg.status = "held" if leg.type in _STOP_TYPES else "new"
                    leg.updated_at = now
        elif order.parent_id is not None:  # a leg: one cancels other
            parent = self._orders[order.parent_id]
            for sibling_id in parent.leg_ids:
                sibling = self._orders[sibling_id]
                if sibling.id != order.id and sibling.working:
                    self._cancel(sibling, now)

    def _cancel(self, order: FakeOrder, now: datetime) -> None:
        order.status = "canceled"
        order.canceled_at = now
        order.updated_at = now

    def _reserved_cash(self) -> Decimal:
        total = _ZERO
        for order in self._orders.values():
            if order.side != "buy" or not order.working:
                continue
            price = order.limit_price or order.stop_price or self._prices.get(order.symbol)
            if price is not None:
                total += order.remaining * price
        return total

    def _held_for_sells(self, symbol: str) -> Decimal:
        return sum(
            (
                o.remaining
                for o in self._orders.values()
                if o.symbol == symbol and o.side == "sell" and o.working and o.active
            ),
            _ZERO,
        )

    def _accept(self, body: Mapping[str, Any]) -> FakeOrder:
        """Validate a new-order body and create the order (and its legs); raise :class:`_Rejection` otherwise."""

        def reject(message: str, status: int = 422, code: int = 42210000) -> _Rejection:
            return _Rejection(status, code, message)

        client_order_id = body.get("client_order_id")
        if client_order_id is not None and client_order_id in self._by_client_id:
            raise reject("client_order_id must be unique", code=40010001)
        symbol = body.get("symbol")
        if not isinstance(symbol, str) or not symbol:
            raise reject("symbol is required")
        side = body.get("side")
        if side not in ("buy", "sell"):
            raise reject(f"invalid side {side!r}")
        kind = body.get("type")
        if kind not in ("market", "limit", "stop"):
            raise reject(f"fake supports market, limit and stop orders, got {kind!r}")
        tif = body.get("time_in_force")
        if tif not in ("day", "gtc", "opg", "cls", "ioc", "fok"):
            raise reject(f"invalid time_in_force {tif!r}")
        if body.get("notional") is not None:
            raise reject("fake does not support notional orders")
        try:
            qty = _decimal(body.get("qty"), "qty")
            limit = _decimal(body["limit_price"], "limit_price") if body.get("limit_price") is not None else None
            stop = _decimal(body["stop_price"], "stop_price") if body.get("stop_price") is not None else None
        except ValueError as exc:
            raise reject(str(exc)) from None
        if qty <= 0:
            raise reject("qty must be > 0")
        if kind == "limit" and limit is None:
            raise reject("limit_price is required for limit orders")
        if kind == "stop" and stop is None:
            raise reject("stop_price is required for stop orders")
        for name, value in (("limit_price", limit), ("stop_price", stop)):
            if value is not None and (value <= 0 or _sub_penny(value)):
                raise reject(
                    f"invalid {name} {_text(value)}. sub-penny increment does not fulfill minimum pricing criteria"
                )
        order_class = body.get("order_class") or ""
        if order_class == "simple":
            order_class = ""
        if order_class not in ("", "bracket"):
            raise reject(f"fake supports simple and bracket orders, got order_class {order_class!r}")
        take_profit = stop_loss = None
        extended = bool(body.get("extended_hours"))
        if order_class == "bracket":
            tp, sl = body.get("take_profit"), body.get("stop_loss")
            if not isinstance(tp, dict) or not isinstance(sl, dict):
                raise reject("bracket orders require take_profit and stop_loss")
            try:
                take_profit = _decimal(tp.get("limit_price"), "take_profit.limit_price")
                stop_loss = _decimal(sl.get("stop_price"), "stop_loss.stop_price")
            except ValueError as exc:
                raise reject(str(exc)) from None
            if sl.get("limit_price") is not None:
                raise reject("fake supports stop (not stop-limit) stop-loss legs")
            if tif not in ("day", "gtc"):
                raise reject("bracket orders must be day or gtc")
            if extended:
                raise reject("extended hours are not supported for bracket orders")
            if qty != qty.to_integral_value():
                raise reject("fractional orders cannot be bracket orders")
            for name, value in (("take_profit.limit_price", take_profit), ("stop_loss.stop_price", stop_loss)):
                if value <= 0 or _sub_penny(value):
                    raise reject(
                        f"invalid {name} {_text(value)}. sub-penny increment does not fulfill minimum pricing criteria"
                    )
            if side == "buy" and take_profit <= stop_loss:
                raise reject("take_profit.limit_price must be > stop_loss.stop_price")
            if side == "sell" and take_profit >= stop_loss:
                raise reject("take_profit.limit_price must be < stop_loss.stop_price")
            base = limit if limit is not None else self._prices.get(symbol)
            if base is not None and side == "buy":
                if take_profit < base + _CENT:
                    raise reject(f"take_profit.limit_price must be >= base_price + 0.01 (base_price {_text(base)})")
                if stop_loss > base - _CENT:
                    raise reject(f"stop_loss.stop_price must be <= base_price - 0.01 (base_price {_text(base)})")
        if qty != qty.to_integral_value() and (kind != "market" or tif != "day"):
            raise reject("fractional orders must be market and day orders")

        if side == "buy":
            price = limit or stop or self._prices.get(symbol)
            if price is not None and qty * price > self._cash - self._reserved_cash():
                raise reject("insufficient buying power", status=403, code=40310000)
        else:
            holding = self._holdings.get(symbol)
            held = holding.qty if holding is not None else _ZERO
            available = held - self._held_for_sells(symbol)
            if qty > available:
                raise reject(
                    f"insufficient qty available for order (requested: {_text(qty)}, available: {_text(available)})",
                    status=403,
                    code=40310000,
                )

        now = self._clock()
        order = FakeOrder(
            id=self._next_id(),
            client_order_id=client_order_id if client_order_id is not None else str(uuid.uuid4()),
            symbol=symbol,
            side=side,
            type=kind,
            time_in_force=tif,
            qty=qty,
            order_class=order_class,
            created_at=now,
            submitted_at=now,
            updated_at=now,
            status="accepted",
            limit_price=limit,
            stop_price=stop,
            extended_hours=extended,
            asset_id=self._asset_id(symbol),
        )
        self._orders[order.id] = order
        self._by_client_id[order.client_order_id] = order.id
        if order_class == "bracket":
            assert take_profit is not None and stop_loss is not None
            exit_side = "sell" if side == "buy" else "buy"
            for leg_type, leg_limit, leg_stop in (("limit", take_profit, None), ("stop", None, stop_loss)):
                leg = FakeOrder(
                    id=self._next_id(),
                    client_order_id=str(uuid.uuid4()),
                    symbol=symbol,
                    side=exit_side,
                    type=leg_type,
                    time_in_force=tif,
                    qty=qty,
                    order_class="bracket",
                    created_at=now,
                    submitted_at=now,
                    updated_at=now,
                    status="held",
                    limit_price=leg_limit,
                    stop_price=leg_stop,
                    parent_id=order.id,
                    active=False,
                    asset_id=order.asset_id,
                )
                self._orders[leg.id] = leg
                self._by_client_id[leg.client_order_id] = leg.id
                order.leg_ids.append(leg.id)
        self._note_coverage(f"accept {order.client_order_id}")
        return order

    # ---------------------------------------------------------------- internals: wire format

    def _wire(self, order: FakeOrder, *, nested: bool) -> dict[str, Any]:
        avg = order.filled_avg_price
        legs = None
        if nested and order.leg_ids:
            legs = [self._wire(self._orders[leg_id], nested=False) for leg_id in order.leg_ids]
        return {
            "id": order.id,
            "client_order_id": order.client_order_id,
            "created_at": wire_time(order.created_at),
            "updated_at": wire_time(order.updated_at),
            "submitted_at": wire_time(order.submitted_at),
            "filled_at": wire_time(order.filled_at) if order.filled_at else None,
            "expired_at": wire_time(order.expired_at) if order.expired_at else None,
            "canceled_at": wire_time(order.canceled_at) if order.canceled_at else None,
            "failed_at": wire_time(order.failed_at) if order.failed_at else None,
            "replaced_at": wire_time(order.replaced_at) if order.replaced_at else None,
            "replaced_by": order.replaced_by,
            "replaces": order.replaces,
            "asset_id": order.asset_id,
            "symbol": order.symbol,
            "asset_class": "us_equity",
            "notional": None,
            "qty": _text(order.qty),
            "filled_qty": _text(order.filled_qty),
            "filled_avg_price": None if avg is None else _text(avg),
            "order_class": order.order_class,
            "order_type": order.type,
            "type": order.type,
            "side": order.side,
            "time_in_force": order.time_in_force,
            "limit_price": None if order.limit_price is None else _text(order.limit_price),
            "stop_price": None if order.stop_price is None else _text(order.stop_price),
            "status": order.status,
            "extended_hours": order.extended_hours,
            "legs": legs,
            "trail_percent": None,
            "trail_price": None,
            "hwm": None,
        }

    # ---------------------------------------------------------------- handlers

    def _post_order(self, request: RecordedRequest) -> Reply | Hang:
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return Reply(422, json={"code": 42210000, "message": "request body is not JSON"})
        if not isinstance(body, dict):
            return Reply(422, json={"code": 42210000, "message": "request body must be an object"})
        with self._lock:
            try:
                order = self._accept(body)
            except _Rejection as rejection:
                return rejection.reply
            after = self._after_accept.pop(0) if self._after_accept else None
            wire = self._wire(order, nested=True)
        return after if after is not None else Reply(200, json=wire)

    def _list_orders(self, request: RecordedRequest) -> Reply:
        status = request.param("status") or "open"
        nested = (request.param("nested") or "").lower() == "true"
        direction = request.param("direction") or "desc"
        try:
            limit = min(int(request.param("limit") or _DEFAULT_LIMIT), _MAX_LIMIT)
            after = _parse_time(request.param("after")) if request.param("after") else None
            until = _parse_time(request.param("until")) if request.param("until") else None
        except ValueError as exc:
            return Reply(422, json={"code": 42210000, "message": f"invalid parameter: {exc}"})
        if limit < 1:
            return Reply(422, json={"code": 42210000, "message": "limit must be >= 1"})
        symbols = {s for s in (request.param("symbols") or "").split(",") if s}
        side = request.param("side")

        def status_matches(order: FakeOrder) -> bool:
            if status == "all":
                return True
            return order.working if status == "open" else not order.working

        with self._lock:
            chosen: list[FakeOrder] = []
            for order in self._orders.values():
                if nested and order.parent_id is not None:
                    continue
                if symbols and order.symbol not in symbols:
                    continue
                if side and order.side != side:
                    continue
                if after is not None and not order.submitted_at > after:
                    continue
                if until is not None and not order.submitted_at < until:
                    continue
                family = [order] + ([self._orders[i] for i in order.leg_ids] if nested else [])
                if not any(status_matches(member) for member in family):
                    continue
                chosen.append(order)
            ordered = sorted(chosen, key=lambda o: (o.submitted_at, o.id), reverse=direction != "asc")
            body = [self._wire(o, nested=nested) for o in ordered[:limit]]
        return Reply(200, json=body)

    def _get_order(self, request: RecordedRequest) -> Reply:
        nested = (request.param("nested") or "").lower() == "true"
        with self._lock:
            order = self._orders.get(request.path_params["order_id"])
            if order is None:
                return _not_found()
            return Reply(200, json=self._wire(order, nested=nested))

    def _get_by_client_id(self, request: RecordedRequest) -> Reply:
        with self._lock:
            order_id = self._by_client_id.get(request.param("client_order_id") or "")
            if order_id is None:
                return _not_found()
            return Reply(200, json=self._wire(self._orders[order_id], nested=True))

    def _patch_order(self, request: RecordedRequest) -> Reply:
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return Reply(422, json={"code": 42210000, "message": "request body is not JSON"})
        with self._lock:
            old = self._orders.get(request.path_params["order_id"])
            if old is None:
                return _not_found()
            try:
                new = self._replace(old, body)
            except _Rejection as rejection:
                return rejection.reply
            return Reply(200, json=self._wire(new, nested=True))

    def _replace(self, old: FakeOrder, body: Mapping[str, Any]) -> FakeOrder:
        def reject(message: str) -> _Rejection:
            return _Rejection(422, 42210000, message)

        if not old.working or old.status in ("pending_cancel", "pending_replace"):
            raise reject(f"order is not replaceable (status {old.status})")
        client_order_id = body.get("client_order_id")
        if client_order_id is not None and client_order_id in self._by_client_id:
            raise reject("client_order_id must be unique")
        try:
            qty = _decimal(body["qty"], "qty") if body.get("qty") is not None else old.qty
            limit = (
                _decimal(body["limit_price"], "limit_price") if body.get("limit_price") is not None else old.limit_price
            )
            stop = _decimal(body["stop_price"], "stop_price") if body.get("stop_price") is not None else old.stop_price
        except ValueError as exc:
            raise reject(str(exc)) from None
        if body.get("stop_price") is not None and old.type not in _STOP_TYPES:
            raise reject("stop_price can only be replaced on stop orders")
        if body.get("limit_price") is not None and old.type not in ("limit", "stop_limit"):
            raise reject("limit_price can only be replaced on limit orders")
        for name, value in (("limit_price", limit), ("stop_price", stop)):
            if value is not None and (value <= 0 or _sub_penny(value)):
                raise reject(
                    f"invalid {name} {_text(value)}. sub-penny increment does not fulfill minimum pricing criteria"
                )
        if qty <= old.filled_qty:
            raise reject("qty must be greater than the filled quantity")
        if old.parent_id is not None and stop is not None:  # a bracket stop-loss leg must stay below its take-profit
            parent = self._orders[old.parent_id]
            for sibling_id in parent.leg_ids:
                sibling = self._orders[sibling_id]
                if sibling.id != old.id and sibling.type == "limit" and sibling.limit_price is not None:
                    if old.side == "sell" and stop >= sibling.limit_price:
                        raise reject("stop_loss.stop_price must be < take_profit.limit_price")
        now = self._clock()
        new = FakeOrder(
            id=self._next_id(),
            client_order_id=client_order_id if client_order_id is not None else str(uuid.uuid4()),
            symbol=old.symbol,
            side=old.side,
            type=old.type,
            time_in_force=body.get("time_in_force") or old.time_in_force,
            qty=qty,
            order_class=old.order_class,
            created_at=now,
            submitted_at=now,
            updated_at=now,
            status=old.status if old.status == "held" else "new",
            limit_price=limit,
            stop_price=stop,
            replaces=old.id,
            extended_hours=old.extended_hours,
            parent_id=old.parent_id,
            active=old.active,
            asset_id=old.asset_id,
        )
        # One atomic step under the lock: the replacement takes the old order's place before anyone can look.
        old.status = "replaced"
        old.replaced_at = now
        old.replaced_by = new.id
        old.updated_at = now
        self._orders[new.id] = new
        self._by_client_id[new.client_order_id] = new.id
        if old.parent_id is not None:
            parent = self._orders[old.parent_id]
            parent.leg_ids = [new.id if i == old.id else i for i in parent.leg_ids]
            parent.updated_at = now
        self._note_coverage(f"replace {old.client_order_id} -> {new.client_order_id}")
        return new

    def _delete_order(self, request: RecordedRequest) -> Reply:
        with self._lock:
            order = self._orders.get(request.path_params["order_id"])
            if order is None:
                return _not_found()
            if not order.working:
                return Reply(
                    422, json={"code": 42210000, "message": f"order is not cancelable (status {order.status})"}
                )
            now = self._clock()
            self._cancel(order, now)
            if order.leg_ids:
                for leg_id in order.leg_ids:
                    leg = self._orders[leg_id]
                    if leg.working:
                        self._cancel(leg, now)
            elif order.parent_id is not None:
                for sibling_id in self._orders[order.parent_id].leg_ids:
                    sibling = self._orders[sibling_id]
                    if sibling.working:
                        self._cancel(sibling, now)
            self._note_coverage(f"cancel {order.client_order_id}")
        return Reply(204)

    def _get_account(self, request: RecordedRequest) -> Reply:
        with self._lock:
            long_value = sum((h.qty * self._prices.get(s, h.cost / h.qty) for s, h in self._holdings.items()), _ZERO)
            equity = self._cash + long_value
            buying_power = self._cash - self._reserved_cash()
            body = {
                "id": self._account_id,
                "account_number": self._account_number,
                "status": "ACTIVE",
                "crypto_status": "INACTIVE",
                "currency": "USD",
                "buying_power": _text(buying_power),
                "regt_buying_power": _text(buying_power),
                "non_marginable_buying_power": _text(buying_power),
                "cash": _text(self._cash),
                "accrued_fees": "0",
                "pending_transfer_in": "0",
                "pending_transfer_out": "0",
                "portfolio_value": _text(equity),
                "trading_blocked": False,
                "transfers_blocked": False,
                "account_blocked": False,
                "created_at": wire_time(self._created_at),
                "trade_suspended_by_user": False,
                "multiplier": "1",
                "shorting_enabled": False,
                "equity": _text(equity),
                "last_equity": _text(equity),
                "long_market_value": _text(long_value),
                "short_market_value": "0",
                "initial_margin": "0",
                "maintenance_margin": "0",
                "last_maintenance_margin": "0",
                "sma": "0",
            }
            if self._day_trades is not None:
                body["daytrade_count"], body["pattern_day_trader"] = self._day_trades
        return Reply(200, json=body)

    def _get_positions(self, request: RecordedRequest) -> Reply:
        with self._lock:
            body = []
            for symbol, holding in sorted(self._holdings.items()):
                avg = holding.cost / holding.qty
                price = self._prices.get(symbol, avg)
                market_value = holding.qty * price
                unrealized = market_value - holding.cost
                body.append(
                    {
                        "asset_id": holding.asset_id,
                        "symbol": symbol,
                        "exchange": "NASDAQ",
                        "asset_class": "us_equity",
                        "asset_marginable": True,
                        "avg_entry_price": _text(avg),
                        "qty": _text(holding.qty),
                        "qty_available": _text(holding.qty - self._held_for_sells(symbol)),
                        "side": "long",
                        "market_value": _text(market_value),
                        "cost_basis": _text(holding.cost),
                        "unrealized_pl": _text(unrealized),
                        "unrealized_plpc": _text(unrealized / holding.cost) if holding.cost else "0",
                        "unrealized_intraday_pl": _text(unrealized),
                        "unrealized_intraday_plpc": _text(unrealized / holding.cost) if holding.cost else "0",
                        "current_price": _text(price),
                        "lastday_price": _text(price),
                        "change_today": "0",
                    }
                )
        return Reply(200, json=body)

    def _get_clock(self, request: RecordedRequest) -> Reply:
        now = self._clock()
        with self._lock:
            fixed = dict(self._market_clock) if self._market_clock is not None else None
        if fixed is None:
            fixed = _weekday_clock(now)
        body = {
            "timestamp": now.astimezone(NEW_YORK).isoformat(),
            "is_open": fixed["is_open"],
            "next_open": fixed["next_open"].astimezone(NEW_YORK).isoformat(),
            "next_close": fixed["next_close"].astimezone(NEW_YORK).isoformat(),
        }
        return Reply(200, json=body, headers={"X-RateLimit-Limit": "200", "X-RateLimit-Remaining": "199"})


def _weekday_clock(now: datetime) -> dict[str, Any]:
    """Regular sessions 09:30-16:00 New York on weekdays (no holidays)."""
    local = now.astimezone(NEW_YORK)

    def session(day: Any) -> tuple[datetime, datetime]:
        return (
            datetime.combine(day, dtime(9, 30), tzinfo=NEW_YORK),
            datetime.combine(day, dtime(16, 0), tzinfo=NEW_YORK),
        )

    day = local.date()
    is_open = False
    if day.weekday() < 5:
        open_, close = session(day)
        is_open = open_ <= local < close
    next_open = next_close = None
    probe = day
    for _ in range(10):
        if probe.weekday() < 5:
            open_, close = session(probe)
            if next_close is None and close > local:
                next_close = close
            if next_open is None and open_ > local:
                next_open = open_
        if next_open is not None and next_close is not None:
            break
        probe += timedelta(days=1)
    assert next_open is not None and next_close is not None
    return {"is_open": is_open, "next_open": next_open, "next_close": next_close}

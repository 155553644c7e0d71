"""Alpaca <-> domain mapping: the constants, the status table, pure helpers and the records the broker keeps."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, overload
from collections.abc import Iterator, Mapping

from alpaca.trading.models import Order as AlpacaOrder
from alpaca.trading.requests import OrderRequest

from core.brokers.base import BrokerError
from core.kernel.domain import CENT, Fill, Order, OrderIntent, OrderStatus, OrderType


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


@overload
def _utc(value: datetime) -> datetime: ...
@overload
def _utc(value: datetime | None) -> datetime | None: ...
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

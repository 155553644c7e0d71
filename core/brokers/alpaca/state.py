"""The state every part of :class:`~core.brokers.alpaca.AlpacaBroker` shares, declared once for the type checker.

``AlpacaBroker`` is assembled from parts (submission, sync, the HTTP calls) that share the tracked orders and the SDK
client; :class:`_BrokerState` is their common base: it declares the attributes ``AlpacaBroker.__init__`` sets and, for
the type checker only, the methods one part calls on another. It adds nothing at run time (annotations only)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from collections.abc import Callable, Iterable, Sequence

from core.brokers.alpaca.mapping import _Applied, _Origin, _Tracked
from core.kernel.domain import Fill

if TYPE_CHECKING:
    import requests
    from alpaca.common.exceptions import APIError
    from alpaca.trading.enums import QueryOrderStatus
    from alpaca.trading.models import Order as AlpacaOrder

    from core.brokers.alpaca.client import _TradingClient
    from core.brokers.base import BrokerError


class _BrokerState:
    name: str
    _secrets: tuple[str, str]
    _timeout_s: float
    _clock: Callable[[], datetime]
    _order_lookup_attempts: int
    _use_brackets: bool
    _client: _TradingClient
    _orders: dict[str, _Tracked]  # by client order id
    _by_broker_id: dict[str, str]  # Alpaca id -> client order id
    _origins: dict[str, _Origin]  # labels for orders not yet seen at Alpaca
    _in_doubt: dict[str, None]  # submissions whose outcome is unknown
    _baselines: dict[str, tuple[Decimal, Decimal]]  # ledger fills of orders not tracked
    _opened_at: dict[str, datetime]
    _unreported_fills: list[Fill]
    _unreported_orders: dict[str, None]

    if TYPE_CHECKING:  # defined by one part, called by another

        def _apply(self, raws: Iterable[AlpacaOrder]) -> _Applied: ...

        async def _list_orders(
            self, status: QueryOrderStatus, *, after: datetime | None = None, symbols: Sequence[str] | None = None
        ) -> list[AlpacaOrder]: ...

        async def _find_by_client_id(self, client_order_id: str, what: str) -> AlpacaOrder | None: ...

        async def _request(self, what: str, call: Callable[..., Any], *args: Any, missing_ok: bool = False) -> Any: ...

        def _doubt(self, exc: APIError) -> str | None: ...

        def _transport_text(self, exc: requests.RequestException) -> str: ...

        def _api_failure(self, exc: APIError, what: str) -> BrokerError: ...

        def _detail(self, exc: APIError) -> str: ...

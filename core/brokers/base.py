"""The broker protocol: the only way orders leave the process.

``SimulatedBroker`` and ``AlpacaBroker`` implement it; nothing else branches on paper/live/simulated.
Iteration order (see core/runtime/orchestrator.py): on ``data_ready`` the Execution agent calls :meth:`Broker.sync` with the
iteration's bars (the simulated broker fills pending orders on the new bars; a real broker polls order updates);
Risk then reads :meth:`Broker.account`; on ``approved_ready`` the Execution agent calls :meth:`Broker.submit`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable
from collections.abc import Iterable, Mapping, Sequence

from core.kernel.domain import EXACT, BarsBatch, EquitySnapshot, Fill, Order, OrderIntent, Position, to_money
from core.errors import ConfigurationError, ExternalError, TemporaryError


class BrokerError(ExternalError):
    """Permanent broker failure (rejected order, bad request). Not retried."""


class TemporaryBrokerError(BrokerError, TemporaryError):
    """Transient broker failure (timeout, 5xx, 429, connection error, the iteration deadline), after the retries.
    Safe to retry later after looking the order up by client id; an iteration that meets it is ``degraded``."""


class BrokerAuthError(ConfigurationError, BrokerError):
    """The broker refused the API keys (HTTP 401, or 403 on a read): a configuration problem, not retried."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class BrokerModeMismatch(ConfigurationError, BrokerError):
    """The account behind the configured endpoint is not of the configured trading mode (paper vs live)."""


@dataclass(frozen=True, slots=True)
class AccountState:
    """Cash, positions marked at the latest known prices, and equity = cash + market value.

    ``daytrade_count``: the day trades (a position opened and closed in the same session) of the last five sessions,
    today's included, and ``pattern_day_trader``: whether the account is flagged as a pattern day trader, as the
    broker reports them (Alpaca's account fields; the simulated broker counts its own fills). None when the broker
    reports nothing (the pattern-day-trader guard is then not applicable)."""

    at: datetime
    cash: Decimal
    positions: Mapping[str, Position]
    equity: Decimal
    open_orders: Sequence[Order] = ()
    daytrade_count: int | None = None
    pattern_day_trader: bool | None = None

    @property
    def market_value(self) -> Decimal:
        return sum((p.market_value for p in self.positions.values()), Decimal("0"))

    def equity_snapshot(self, at: datetime) -> EquitySnapshot:
        """The account's equity line point at ``at``: the amounts at the money columns' scale, and the number of
        positions held (a flat position of 0 shares is not one)."""
        return EquitySnapshot(
            at=at,
            cash=to_money(self.cash, EXACT),
            market_value=to_money(self.market_value, EXACT),
            equity=to_money(self.equity, EXACT),
            positions=sum(1 for p in self.positions.values() if p.quantity),
        )


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What happened at the broker since the previous sync: new fills and order status changes."""

    fills: Sequence[Fill] = ()
    orders: Sequence[Order] = ()
    notes: Sequence[str] = field(default_factory=tuple)


@runtime_checkable
class Broker(Protocol):
    name: str

    async def sync(self, batch: BarsBatch) -> SyncResult:
        """Advance to the iteration's market data: process fills and order updates since the last call."""
        ...

    async def submit(self, intent: OrderIntent, client_order_id: str, now: datetime) -> Order:
        """Submit one order. Idempotent per ``client_order_id``: resubmitting returns the existing order."""
        ...

    async def cancel(self, client_order_id: str, now: datetime) -> Order: ...

    async def account(self) -> AccountState: ...

    async def replace_stop(self, client_order_id: str, new_stop: float | Decimal, now: datetime) -> Order:
        """Move a working protective stop in place (one modify, never cancel + resubmit)."""
        ...


@runtime_checkable
class PersistentBroker(Broker, Protocol):
    """A broker whose account lives in the process (the simulated broker): the runtime persists :meth:`snapshot` with
    every iteration and hands it back to :meth:`restore` at start-up, so the account survives a restart."""

    def snapshot(self, history: int | None = None) -> dict[str, Any]:
        """The whole state as JSON-compatible data; ``history=N`` bounds the finished orders and reported fills kept."""
        ...

    def restore(self, state: Mapping[str, Any]) -> None:
        """Replace the state with a :meth:`snapshot`; ``ValueError`` when it is not one."""
        ...


@runtime_checkable
class ResumableBroker(Broker, Protocol):
    """A broker whose account lives at the broker (Alpaca): at start-up the runtime tells a fresh instance what the
    ledger already holds, so fills already recorded are not reported again."""

    def resume(self, orders: Iterable[Order] = (), fills: Iterable[Fill] = ()) -> None: ...

"""Position management: each open position's protective stop and target (from the broker's working orders), a
trailing stop that only ever rises, and an optional time stop.

The trailing stop is moved by modifying the working stop order in place (``Broker.replace_stop``: Alpaca's
PATCH /v2/orders/{id}, the simulated broker's atomic modify), never by cancel-and-resubmit, so the position is never
unprotected. Time-stop exits are returned as reasons for the Risk agent, which stays the only road to execution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from collections.abc import Mapping, Sequence

import numpy as np

from core.brokers.base import AccountState
from core.kernel.domain import TERMINAL_ORDER_STATUSES, BarsBatch, Fill, Order, OrderType, Side


@dataclass(frozen=True, slots=True)
class PositionPlan:
    symbol: str
    quantity: int
    entry_price: float
    opened_at: datetime
    stop: float | None
    target: float | None
    stop_order_id: str | None


@dataclass(frozen=True, slots=True)
class StopUpdate:
    symbol: str
    stop_order_id: str
    old_stop: float
    new_stop: float
    reason: str


class PositionManager:
    def __init__(
        self,
        *,
        trail_atr_multiple: float | None = 3.0,
        trail_percent: float | None = None,
        time_stop_sessions: int | None = None,
    ) -> None:
        if trail_atr_multiple is not None and trail_atr_multiple <= 0:
            raise ValueError("trail_atr_multiple must be positive (or None to disable)")
        if trail_percent is not None and not 0 < trail_percent < 1:
            raise ValueError("trail_percent must be within (0, 1) (or None to disable)")
        if time_stop_sessions is not None and time_stop_sessions < 1:
            raise ValueError("time_stop_sessions must be at least 1 (or None to disable)")
        self.trail_atr_multiple = trail_atr_multiple
        self.trail_percent = trail_percent
        self.time_stop_sessions = time_stop_sessions

    @staticmethod
    def plans(account: AccountState) -> dict[str, PositionPlan]:
        """Open positions with their working protective stop (SELL STOP) and target (SELL LIMIT) orders.

        Execution, Risk and Audit each ask for the same (immutable) account state every iteration: the answer for the
        most recent account object is reused (a fresh dict each call, so callers may change theirs)."""
        cached = _last_plans
        if cached and cached[0] is account:
            return dict(cached[1])
        plans = _plans_of(account)
        _last_plans[:] = [account, plans]  # holds the account itself, so its identity cannot be reused meanwhile
        return dict(plans)

    def trailing_updates(
        self, plans: Mapping[str, PositionPlan], batch: BarsBatch, atr: Mapping[str, float]
    ) -> list[StopUpdate]:
        """Raise each stop to the trailing level when that is higher (never lower, always below price and target)."""
        updates = []
        for symbol, plan in plans.items():
            sb = batch.bars.get(symbol)
            if sb is None or plan.stop is None or plan.stop_order_id is None:
                continue
            close = sb.last_close
            candidates = []
            a = atr.get(symbol, math.nan)
            if self.trail_atr_multiple is not None and math.isfinite(a) and a > 0:
                candidates.append(
                    (
                        close - self.trail_atr_multiple * a,
                        f"close {close:.2f} - {self.trail_atr_multiple} x ATR {a:.2f}",
                    )
                )
            if self.trail_percent is not None:
                candidates.append((close * (1 - self.trail_percent), f"close {close:.2f} - {self.trail_percent:.1%}"))
            if not candidates:
                continue
            level, how = max(candidates)
            level = math.floor(level * 100) / 100  # whole cents, rounded down (never above the computed level)
            if level <= plan.stop + 0.005 or level >= close:
                continue
            if plan.target is not None and level >= plan.target:
                continue
            updates.append(
                StopUpdate(
                    symbol,
                    plan.stop_order_id,
                    plan.stop,
                    level,
                    f"trailing stop {plan.stop:.2f} -> {level:.2f} ({how})",
                )
            )
        return updates

    def time_stops(self, plans: Mapping[str, PositionPlan], batch: BarsBatch) -> dict[str, str]:
        """Positions held ``time_stop_sessions`` sessions or more (counted in the symbol's bars since entry)."""
        if self.time_stop_sessions is None:
            return {}
        due = {}
        for symbol, plan in plans.items():
            sb = batch.bars.get(symbol)
            if sb is None:
                continue
            index = sb.frame.index[: sb.end]
            opened = np.datetime64(plan.opened_at.replace(tzinfo=None), "ns")
            held = int(len(index) - np.searchsorted(index.to_numpy(dtype="datetime64[ns]"), opened, side="left"))
            if held >= self.time_stop_sessions:
                due[symbol] = f"time stop: held {held} sessions (limit {self.time_stop_sessions})"
        return due


def levels(plans: Mapping[str, PositionPlan]) -> dict[str, dict[str, float | None]]:
    """Stop and target per symbol, for persisting with the positions."""
    return {s: {"stop": p.stop, "target": p.target} for s, p in plans.items()}


class RealizedReturns:
    """Returns of closed trades (flat to flat, average cost, net of commissions), rebuilt from the fill stream, for
    fractional-Kelly sizing. Only the most recent ``keep`` trades are kept."""

    def __init__(self, keep: int = 200) -> None:
        self._keep = keep
        self._open: dict[str, list[Decimal]] = {}  # symbol -> [quantity, cost, proceeds, commissions]
        self.returns: list[float] = []

    def apply(self, fills: Sequence[Fill]) -> None:
        for f in sorted(fills, key=lambda x: (x.filled_at, x.fill_id)):
            book = self._open.setdefault(f.symbol, [Decimal(0)] * 4)
            qty = Decimal(f.quantity)
            if f.side is Side.BUY:
                book[0] += qty
                book[1] += qty * f.price
            else:
                if book[0] <= 0:
                    continue  # a sell without a recorded entry (e.g. adopted position): no trade to close
                book[0] -= qty
                book[2] += qty * f.price
            book[3] += f.commission
            if book[0] <= 0 and book[1] > 0:
                pnl = book[2] - book[1] - book[3]
                self.returns.append(float(pnl / book[1]))
                self._open.pop(f.symbol)
        if len(self.returns) > self._keep:
            del self.returns[: len(self.returns) - self._keep]


_last_plans: list = []  # [account, plans] of the latest PositionManager.plans call


def _plans_of(account: AccountState) -> dict[str, PositionPlan]:
    """:meth:`PositionManager.plans`, computed."""
    stops: dict[str, Order] = {}
    targets: dict[str, Order] = {}
    for order in account.open_orders:
        if order.side is not Side.SELL or order.status in TERMINAL_ORDER_STATUSES:
            continue
        if order.order_type is OrderType.STOP and order.stop_price is not None:
            stops[order.symbol] = order
        elif order.order_type is OrderType.LIMIT and order.limit_price is not None:
            targets[order.symbol] = order
    plans = {}
    for symbol, position in account.positions.items():
        if position.quantity <= 0:
            continue
        stop = stops.get(symbol)
        target = targets.get(symbol)
        plans[symbol] = PositionPlan(
            symbol=symbol,
            quantity=int(position.quantity),
            entry_price=float(position.average_price),
            opened_at=position.opened_at,
            stop=stop.stop_price if stop is not None else None,
            target=target.limit_price if target is not None else None,
            stop_order_id=stop.client_order_id if stop is not None else None,
        )
    return plans

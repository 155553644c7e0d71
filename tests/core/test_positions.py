"""PositionManager.plans: open positions with their working protective stop and target orders."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from types import MappingProxyType

from core.brokers.base import AccountState
from core.kernel.domain import Order, OrderStatus, OrderType, Position, Side
from core.risk.positions import PositionManager

AT = datetime(2021, 3, 31, 20, 0, tzinfo=UTC)


def _order(cid: str, symbol: str, kind: OrderType, *, stop: float | None = None, limit: float | None = None) -> Order:
    return Order(cid, symbol, Side.SELL, 10, kind, OrderStatus.SUBMITTED, AT, stop_price=stop, limit_price=limit)


def _account(positions: dict[str, int], orders: tuple[Order, ...]) -> AccountState:
    held = {s: Position(s, q, Decimal("100"), AT, last_price=Decimal("101")) for s, q in positions.items()}
    return AccountState(
        at=AT, cash=Decimal("1000"), positions=MappingProxyType(held), equity=Decimal("3020"), open_orders=orders
    )


def test_plans_pair_each_position_with_its_working_stop_and_target() -> None:
    account = _account(
        {"AAA": 10, "BBB": 10, "CCC": 0},
        (_order("s-a", "AAA", OrderType.STOP, stop=95.0), _order("t-a", "AAA", OrderType.LIMIT, limit=110.0)),
    )
    plans = PositionManager.plans(account)
    assert set(plans) == {"AAA", "BBB"}  # a flat position has no plan
    a, b = plans["AAA"], plans["BBB"]
    assert (a.quantity, a.entry_price, a.stop, a.target, a.stop_order_id) == (10, 100.0, 95.0, 110.0, "s-a")
    assert (b.stop, b.target, b.stop_order_id) == (None, None, None)


def test_plans_of_the_same_account_are_equal_and_independent_and_a_new_account_is_read_afresh() -> None:
    account = _account({"AAA": 10}, (_order("s-a", "AAA", OrderType.STOP, stop=95.0),))
    first = PositionManager.plans(account)
    first.pop("AAA")  # a caller changing its copy changes nobody else's
    second = PositionManager.plans(account)
    assert set(second) == {"AAA"} and second["AAA"].stop == 95.0
    moved = replace(account, open_orders=(_order("s-a", "AAA", OrderType.STOP, stop=97.5),))
    assert PositionManager.plans(moved)["AAA"].stop == 97.5
    assert PositionManager.plans(account)["AAA"].stop == 95.0

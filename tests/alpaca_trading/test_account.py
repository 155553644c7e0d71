"""AlpacaBroker.account, positions, market_clock and account_label."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from collections.abc import Callable

import pytest

from core.brokers.alpaca import AlpacaBroker
from core.brokers.base import AccountState, Broker, PersistentBroker, ResumableBroker
from core.kernel.domain import Side
from tests.alpaca_trading.conftest import START, bracket_intent, market_intent
from tests.fakes.alpaca_trading import FakeTradingApi, ManualClock

pytestmark = pytest.mark.shared


async def test_account_when_a_position_is_held_then_decimal_cash_positions_marks_and_open_orders(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, clock: ManualClock
) -> None:
    broker = make_broker()
    await broker.submit(bracket_intent("AAPL", 10), "b-1", START)
    clock.advance(timedelta(minutes=5))
    alpaca.fill("b-1", "100.25", 4)
    alpaca.fill("b-1", "100.75")
    await broker.sync()
    alpaca.set_price("AAPL", "103.10")
    clock.advance(timedelta(hours=1))

    state = await broker.account()

    assert isinstance(state, AccountState)
    assert state.at == clock()
    assert state.cash == Decimal("98994.50")  # 100000 - 4 x 100.25 - 6 x 100.75
    assert isinstance(state.cash, Decimal) and isinstance(state.equity, Decimal)
    position = state.positions["AAPL"]
    assert position.quantity == 10 and isinstance(position.quantity, int)
    assert position.average_price == Decimal("100.5500")
    assert position.last_price == Decimal("103.10")
    assert position.opened_at == START + timedelta(minutes=5)  # the entry's first fill
    assert state.equity == state.cash + Decimal("1031.00")
    assert state.market_value == Decimal("1031.00")
    assert sorted(o.order_type.value for o in state.open_orders) == ["limit", "stop"]  # the bracket's legs

    positions = await broker.positions()
    assert positions == dict(state.positions)


async def test_account_when_flat_then_equity_is_cash_and_nothing_is_open(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi
) -> None:
    broker = make_broker()

    state = await broker.account()

    assert state.cash == Decimal("100000") == state.equity
    assert dict(state.positions) == {} and state.open_orders == ()


async def test_positions_when_opening_is_unknown_then_first_sight_time_is_kept(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, clock: ManualClock
) -> None:
    alpaca.create_order(symbol="MSFT", qty=2)
    alpaca.fill(alpaca.orders()[0].id, "400")
    broker = make_broker()  # never saw the fill
    clock.advance(timedelta(hours=2))
    first = await broker.positions()
    clock.advance(timedelta(hours=2))
    second = await broker.positions()

    assert first["MSFT"].opened_at == START + timedelta(hours=2) == second["MSFT"].opened_at


async def test_market_clock_when_session_is_open_then_utc_aware_times(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi
) -> None:
    broker = make_broker()

    market = await broker.market_clock()

    assert market.is_open is True
    assert market.timestamp == START
    assert market.next_close == datetime(2024, 3, 4, 21, 0, tzinfo=UTC)  # 16:00 New York (EST)
    assert market.next_open == datetime(2024, 3, 5, 14, 30, tzinfo=UTC)
    assert all(t.utcoffset() == timedelta(0) for t in (market.timestamp, market.next_open, market.next_close))


async def test_account_label_masks_the_account_number_and_names_the_mode(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi
) -> None:
    broker = make_broker()

    label = await broker.account_label()

    assert label == "alpaca-paper: paper account ****1234 (status ACTIVE, USD)"
    assert "PA3FAKE5" not in label


async def test_exit_fill_when_position_closes_then_cash_reflects_both_legs(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi
) -> None:
    broker = make_broker()
    await broker.submit(market_intent(quantity=5), "in-1", START)
    alpaca.fill("in-1", "20")
    await broker.submit(market_intent(quantity=5, side=Side.SELL), "out-1", START)
    alpaca.fill("out-1", "21")
    result = await broker.sync()

    state = await broker.account()

    assert sorted((f.client_order_id, f.quantity, f.price) for f in result.fills) == [
        ("in-1", 5, Decimal("20.0000")),
        ("out-1", 5, Decimal("21.0000")),
    ]
    assert state.cash == Decimal("100005") and dict(state.positions) == {}


def test_alpaca_broker_satisfies_the_broker_protocol(make_broker: Callable[..., AlpacaBroker]) -> None:
    broker = make_broker()

    assert isinstance(broker, Broker)
    assert broker.name == "alpaca-paper"
    assert make_broker(paper=False).name == "alpaca-live"


def test_alpaca_broker_when_checked_then_a_resumable_broker_and_not_a_persistent_one(
    make_broker: Callable[..., AlpacaBroker],
) -> None:
    broker = make_broker()

    assert isinstance(broker, Broker) and isinstance(broker, ResumableBroker)
    assert not isinstance(broker, PersistentBroker)  # its account lives at Alpaca, never in the database

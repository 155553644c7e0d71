"""Market, limit and stop fills of the simulated broker, numbers worked by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from core.brokers.base import Broker
from core.brokers.costs import BpsSlippage, FlatCommission, PerShareCommission
from core.brokers.simulated import SimulatedBroker
from core.kernel.domain import OrderStatus, OrderType, Side

from tests.brokers.factories import Tape, buy, make_frame, sell

D = Decimal
IBKR = PerShareCommission(per_share=D("0.005"), minimum=D("1.00"), max_pct=D("0.01"))


def make_broker(cash: str = "10000", **kw) -> SimulatedBroker:
    return SimulatedBroker(D(cash), **kw)


async def test_simulated_broker_satisfies_the_broker_protocol():
    assert isinstance(make_broker(), Broker)


# ---------------------------------------------------------------- market orders, next-open


async def test_market_buy_when_next_session_opens_then_fills_at_open_plus_slippage_with_commission():
    tape = Tape(AAA=make_frame([(49, 50.5, 48.5, 50.0), (50.0, 51, 49.5, 50.8), (52.0, 53, 51, 52.5)]))
    broker = make_broker(commission=IBKR, slippage=BpsSlippage(D("10")))
    await broker.sync(tape.batch(0))

    order = await broker.submit(buy("AAA", 100), "o1", tape.now(0))
    assert order.status is OrderStatus.SUBMITTED
    assert (await broker.account()).cash == D("10000")

    result = await broker.sync(tape.batch(1))

    # open 50.00 × 1.001 = 50.05; notional 5,005.00; commission max(100 × 0.005, 1.00) = 1.00 (cap 50.05)
    [fill] = result.fills
    assert (fill.price, fill.commission, fill.quantity, fill.side) == (D("50.05"), D("1.00"), 100, Side.BUY)
    assert fill.filled_at == datetime(2024, 1, 3, tzinfo=UTC)
    assert fill.filled_at > order.submitted_at
    [changed] = result.orders
    assert changed.status is OrderStatus.FILLED
    assert changed.filled_quantity == 100 and changed.average_fill_price == 50.05
    account = await broker.account()
    assert account.cash == D("4994.00")  # 10,000 − 5,005 − 1
    position = account.positions["AAA"]
    assert (position.quantity, position.average_price, position.last_price) == (100, D("50.05"), D("50.80"))
    assert account.equity == D("10074.00")  # 4,994 + 100 × 50.80
    assert account.open_orders == ()


async def test_market_sell_then_realises_average_cost_pnl_gross_of_commission():
    tape = Tape(AAA=make_frame([(49, 50.5, 48.5, 50.0), (50.0, 51, 49.5, 50.8), (52.0, 53, 51, 52.5)]))
    broker = make_broker(commission=IBKR, slippage=BpsSlippage(D("10")))
    await broker.sync(tape.batch(0))
    await broker.submit(buy("AAA", 100), "o1", tape.now(0))
    await broker.sync(tape.batch(1))
    await broker.submit(sell("AAA", 100), "o2", tape.now(1))

    result = await broker.sync(tape.batch(2))

    # open 52.00 × 0.999 = 51.948; proceeds 5,194.80; commission 1.00
    [fill] = result.fills
    assert (fill.price, fill.commission) == (D("51.9480"), D("1.00"))
    account = await broker.account()
    assert account.cash == D("10187.80")  # 4,994.00 + 5,194.80 − 1.00
    assert account.positions == {}
    assert account.equity == D("10187.80")
    assert broker.realized_pnl == D("189.80")  # 5,194.80 − 5,005.00
    assert broker.total_commissions == D("2.00")
    pnl = broker.realized_pnl + broker.unrealized_pnl - broker.total_commissions
    assert account.equity - broker.initial_cash == pnl


async def test_market_order_when_synced_again_on_the_submission_bar_then_does_not_fill():
    # the frame already holds the next session, but it is not visible yet (end = 1)
    tape = Tape(AAA=make_frame([(49, 50.5, 48.5, 50.0), (10.0, 11, 9, 10)]))
    broker = make_broker()
    await broker.sync(tape.batch(0))
    await broker.submit(buy("AAA", 10), "o1", tape.now(0))

    result = await broker.sync(tape.batch(0))

    assert result.fills == ()
    assert broker.order("o1").status is OrderStatus.SUBMITTED


async def test_market_order_with_stop_loss_and_take_profit_is_a_plain_market_order():
    tape = Tape(AAA=make_frame([(50, 51, 49, 50), (50, 51, 49, 50), (50, 60, 40, 50)]))
    broker = make_broker()
    await broker.sync(tape.batch(0))
    await broker.submit(buy("AAA", 10, stop_loss=45.0, take_profit=55.0), "o1", tape.now(0))

    await broker.sync(tape.batch(1))
    result = await broker.sync(tape.batch(2))  # range 40–60 would hit either leg of a bracket

    assert result.fills == ()
    account = await broker.account()
    assert account.positions["AAA"].quantity == 10
    assert account.open_orders == ()


async def test_positions_when_synced_then_marked_at_the_latest_visible_close():
    tape = Tape(
        AAA=make_frame([(50, 51, 49, 50), (50, 51, 49, 50.5), (51, 52, 50, 51.25)]),
        BBB=make_frame([(20, 21, 19, 20), (20, 21, 19, 20), (20, 21, 19, 20)]),
    )
    broker = make_broker()
    await broker.sync(tape.batch(0))
    await broker.submit(buy("AAA", 10), "o1", tape.now(0))
    await broker.sync(tape.batch(1))
    assert (await broker.account()).positions["AAA"].last_price == D("50.50")

    await broker.sync(tape.batch(2, symbols=["BBB"]))  # AAA missing: mark unchanged
    assert (await broker.account()).positions["AAA"].last_price == D("50.50")

    await broker.sync(tape.batch(2))
    account = await broker.account()
    assert account.positions["AAA"].last_price == D("51.25")
    assert account.equity == account.cash + D("512.50")


# ---------------------------------------------------------------- same-close model


async def test_same_close_market_buy_when_submitted_then_fills_at_the_submission_close_immediately():
    tape = Tape(AAA=make_frame([(49, 50.5, 48.5, 50.0), (55.0, 56, 54, 55.0)]))
    broker = make_broker(commission=FlatCommission(D("1")), slippage=BpsSlippage(D("10")), fill_model="same-close")
    await broker.sync(tape.batch(0))

    order = await broker.submit(buy("AAA", 100), "o1", tape.now(0))

    assert order.status is OrderStatus.FILLED
    assert order.average_fill_price == 50.05  # close 50.00 × 1.001
    assert (await broker.account()).cash == D("4994.00")  # 10,000 − 5,005 − 1
    result = await broker.sync(tape.batch(1))  # the fill is reported by the next sync
    [fill] = result.fills
    assert (fill.price, fill.filled_at) == (D("50.05"), tape.now(0))


async def test_same_close_limit_buy_when_close_is_above_limit_then_waits_for_later_bars():
    tape = Tape(AAA=make_frame([(49, 50.5, 48.5, 50.0), (50.0, 50.5, 48.5, 49.0)]))
    broker = make_broker(fill_model="same-close")
    await broker.sync(tape.batch(0))

    order = await broker.submit(buy("AAA", 10, order_type=OrderType.LIMIT, limit_price=49.0), "o1", tape.now(0))
    assert order.status is OrderStatus.SUBMITTED

    [fill] = (await broker.sync(tape.batch(1))).fills
    assert fill.price == D("49.00")  # next bar's low 48.5 reaches the limit


# ---------------------------------------------------------------- limit orders


@pytest.mark.parametrize(
    ("bar", "expected"),
    [
        ((48.50, 50.0, 48.0, 49.5), D("48.5485")),  # gap below the limit: open 48.50 × 1.001
        ((48.98, 50.0, 48.0, 49.5), D("49.00")),  # open through, 48.98 × 1.001 = 49.029 capped at the limit
        ((50.00, 50.5, 48.8, 49.5), D("49.00")),  # intrabar: low 48.8 reaches 49.00, fills at the limit, no slippage
    ],
    ids=["gap-at-open", "open-capped-at-limit", "intrabar-at-limit"],
)
async def test_limit_buy_when_bar_reaches_limit_then_fills_at_open_or_limit(bar, expected):
    tape = Tape(AAA=make_frame([(50, 51, 49.5, 50.0), bar]))
    broker = make_broker(slippage=BpsSlippage(D("10")))
    await broker.sync(tape.batch(0))
    await broker.submit(buy("AAA", 10, order_type=OrderType.LIMIT, limit_price=49.0), "o1", tape.now(0))

    [fill] = (await broker.sync(tape.batch(1))).fills

    assert fill.price == expected
    assert broker.order("o1").status is OrderStatus.FILLED


async def test_limit_buy_when_range_stays_above_limit_then_keeps_working_until_reached():
    tape = Tape(AAA=make_frame([(50, 51, 49.5, 50), (50, 51, 49.2, 50), (50, 51, 48.9, 49.5)]))
    broker = make_broker()
    await broker.sync(tape.batch(0))
    await broker.submit(buy("AAA", 10, order_type=OrderType.LIMIT, limit_price=49.0), "o1", tape.now(0))

    first = await broker.sync(tape.batch(1))
    assert first.fills == ()
    assert [o.status for o in (await broker.account()).open_orders] == [OrderStatus.SUBMITTED]

    [fill] = (await broker.sync(tape.batch(2))).fills
    assert (fill.price, fill.filled_at) == (D("49.00"), datetime(2024, 1, 4, tzinfo=UTC))


@pytest.mark.parametrize(
    ("bar", "expected"),
    [((56.0, 57, 55.5, 56), D("56.00")), ((54.0, 55.5, 53.5, 55), D("55.00"))],
    ids=["gap-above", "intrabar"],
)
async def test_limit_sell_when_price_reaches_limit_then_fills_at_open_or_limit(bar, expected):
    tape = Tape(AAA=make_frame([(50, 51, 49, 50), (50, 51, 49, 50), bar]))
    broker = make_broker()
    await broker.sync(tape.batch(0))
    await broker.submit(buy("AAA", 10), "b", tape.now(0))
    await broker.sync(tape.batch(1))
    await broker.submit(sell("AAA", 10, order_type=OrderType.LIMIT, limit_price=55.0), "s", tape.now(1))

    [fill] = (await broker.sync(tape.batch(2))).fills

    assert (fill.side, fill.price) == (Side.SELL, expected)


# ---------------------------------------------------------------- stop orders


@pytest.mark.parametrize(
    ("bar", "expected"),
    [((51.0, 52.5, 50.5, 52), D("52.0520")), ((53.0, 54, 52.5, 53.5), D("53.0530"))],
    ids=["intrabar-at-stop", "gap-through-at-open"],
)
async def test_buy_stop_when_high_reaches_stop_then_fills_at_stop_or_gap_open_plus_slippage(bar, expected):
    tape = Tape(AAA=make_frame([(50, 51, 49, 50), bar]))
    broker = make_broker(slippage=BpsSlippage(D("10")))
    await broker.sync(tape.batch(0))
    await broker.submit(buy("AAA", 10, order_type=OrderType.STOP, stop_price=52.0), "o1", tape.now(0))

    [fill] = (await broker.sync(tape.batch(1))).fills

    assert fill.price == expected  # 52 × 1.001 = 52.052, or the open 53 × 1.001 = 53.053


@pytest.mark.parametrize(
    ("bar", "expected"),
    [((48.0, 48.5, 46.5, 47), D("46.9530")), ((45.0, 46, 44, 45.5), D("44.9550"))],
    ids=["intrabar-at-stop", "gap-through-at-open"],
)
async def test_sell_stop_when_low_reaches_stop_then_fills_at_stop_or_gap_open_minus_slippage(bar, expected):
    tape = Tape(AAA=make_frame([(50, 51, 49, 50), (50, 51, 49, 50), bar]))
    broker = make_broker(slippage=BpsSlippage(D("10")))
    await broker.sync(tape.batch(0))
    await broker.submit(buy("AAA", 10), "b", tape.now(0))
    await broker.sync(tape.batch(1))
    await broker.submit(sell("AAA", 10, order_type=OrderType.STOP, stop_price=47.0), "s", tape.now(1))

    [fill] = (await broker.sync(tape.batch(2))).fills

    assert fill.price == expected  # 47 × 0.999 = 46.953, or the open 45 × 0.999 = 44.955


async def test_stop_when_range_does_not_reach_it_then_keeps_working():
    tape = Tape(AAA=make_frame([(50, 51, 49, 50), (50, 51.9, 49, 51)]))
    broker = make_broker()
    await broker.sync(tape.batch(0))
    await broker.submit(buy("AAA", 10, order_type=OrderType.STOP, stop_price=52.0), "o1", tape.now(0))

    result = await broker.sync(tape.batch(1))

    assert result.fills == ()
    assert broker.order("o1").status is OrderStatus.SUBMITTED


@pytest.mark.parametrize(
    ("intent_kwargs", "why"),
    [
        ({"order_type": OrderType.LIMIT}, "limit_price"),
        ({"order_type": OrderType.STOP}, "stop_price"),
        ({"order_type": OrderType.LIMIT, "limit_price": -1.0}, "limit_price"),
    ],
)
async def test_submit_when_order_lacks_its_price_then_rejected_with_reason(intent_kwargs, why):
    tape = Tape(AAA=make_frame([(50, 51, 49, 50)]))
    broker = make_broker()
    await broker.sync(tape.batch(0))

    order = await broker.submit(buy("AAA", 10, **intent_kwargs), "o1", tape.now(0))

    assert order.status is OrderStatus.REJECTED
    assert why in order.reason


async def test_submit_when_symbol_has_no_market_data_then_rejected():
    tape = Tape(AAA=make_frame([(50, 51, 49, 50)]))
    broker = make_broker()
    await broker.sync(tape.batch(0))

    order = await broker.submit(buy("ZZZ", 10), "o1", tape.now(0))

    assert order.status is OrderStatus.REJECTED
    assert "no market data for ZZZ" in order.reason

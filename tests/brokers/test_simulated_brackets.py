"""Bracket orders: entry, then a stop-loss and a take-profit active from the next bar, one-cancels-other."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from core.brokers.base import BrokerError
from core.brokers.costs import BpsSlippage
from core.brokers.simulated import SimulatedBroker
from core.kernel.domain import OrderStatus, OrderType, Side

from tests.brokers.factories import Tape, bracket, make_frame, sell

D = Decimal
QUIET = (50.0, 50.5, 49.5, 50.0)
ENTRY_BAR = (50.0, 56.0, 46.0, 50.0)  # touches both 47 and 55: must not exit on the entry bar


async def entered(exit_bar, *, slippage=None, entry_bar=ENTRY_BAR):
    """Bracket 100 AAA (stop 47, target 55) submitted at day 0, entered at day 1's open 50.00; day 2 is ``exit_bar``."""
    tape = Tape(AAA=make_frame([QUIET, entry_bar, exit_bar]))
    kw = {} if slippage is None else {"slippage": slippage}
    broker = SimulatedBroker(D("10000"), **kw)
    await broker.sync(tape.batch(0))
    await broker.submit(bracket("AAA", 100, stop_loss=47.0, take_profit=55.0), "b1", tape.now(0))
    entry = await broker.sync(tape.batch(1))
    return broker, tape, entry


async def test_bracket_when_entry_fills_then_children_are_created_and_not_triggered_on_the_entry_bar():
    broker, _, entry = await entered(QUIET)

    [fill] = entry.fills
    assert (fill.client_order_id, fill.price) == ("b1", D("50.00"))
    changed = {o.client_order_id: o for o in entry.orders}
    assert changed["b1"].status is OrderStatus.FILLED
    sl, tp = changed["b1-sl"], changed["b1-tp"]
    assert (sl.side, sl.order_type, sl.stop_price, sl.quantity) == (Side.SELL, OrderType.STOP, 47.0, 100)
    assert (tp.side, tp.order_type, tp.limit_price, tp.quantity) == (Side.SELL, OrderType.LIMIT, 55.0, 100)
    assert sl.status is tp.status is OrderStatus.SUBMITTED
    account = await broker.account()
    assert account.positions["AAA"].quantity == 100
    assert [o.client_order_id for o in account.open_orders] == ["b1-sl", "b1-tp"]


async def test_bracket_when_target_is_reached_then_sells_at_target_and_cancels_the_stop():
    broker, tape, _ = await entered((50.0, 55.5, 49.0, 55.0))

    result = await broker.sync(tape.batch(2))

    [fill] = result.fills
    assert (fill.client_order_id, fill.price, fill.quantity) == ("b1-tp", D("55.00"), 100)
    assert broker.order("b1-sl").status is OrderStatus.CANCELED
    assert "one-cancels-other" in broker.order("b1-sl").reason
    account = await broker.account()
    assert account.cash == D("10500.00")  # 10,000 − 5,000 + 5,500
    assert account.positions == {} and account.open_orders == ()


async def test_bracket_when_stop_is_reached_then_sells_at_stop_minus_slippage_and_cancels_the_target():
    broker, tape, _ = await entered((49.0, 50.0, 46.8, 47.5), slippage=BpsSlippage(D("10")))

    [fill] = (await broker.sync(tape.batch(2))).fills

    assert (fill.client_order_id, fill.price) == ("b1-sl", D("46.9530"))  # 47 × 0.999
    assert broker.order("b1-tp").status is OrderStatus.CANCELED
    # entry 50 × 1.001 = 50.05 → 5,005.00 out; 4,695.30 back
    assert (await broker.account()).cash == D("9690.30")


async def test_bracket_when_one_bar_touches_stop_and_target_then_stop_is_assumed_first():
    broker, tape, _ = await entered((50.0, 56.0, 46.0, 55.0))

    [fill] = (await broker.sync(tape.batch(2))).fills

    assert (fill.client_order_id, fill.price) == ("b1-sl", D("47.00"))
    assert broker.order("b1-tp").status is OrderStatus.CANCELED


async def test_bracket_when_open_gaps_through_stop_then_fills_at_the_open():
    broker, tape, _ = await entered((45.0, 46.0, 44.0, 45.5))

    [fill] = (await broker.sync(tape.batch(2))).fills

    assert (fill.client_order_id, fill.price) == ("b1-sl", D("45.00"))


async def test_bracket_when_open_gaps_through_target_then_fills_at_the_open():
    broker, tape, _ = await entered((57.0, 58.0, 56.0, 57.5))

    [fill] = (await broker.sync(tape.batch(2))).fills

    assert (fill.client_order_id, fill.price) == ("b1-tp", D("57.00"))
    assert broker.order("b1-sl").status is OrderStatus.CANCELED


async def test_bracket_with_limit_entry_when_limit_reached_then_enters_at_limit_and_protects_from_next_bar():
    tape = Tape(AAA=make_frame([QUIET, (50.0, 50.5, 48.5, 49.0), (49.0, 49.5, 46.9, 47.2)]))
    broker = SimulatedBroker(D("10000"))
    await broker.sync(tape.batch(0))
    parent = await broker.submit(
        bracket("AAA", 100, stop_loss=47.0, take_profit=55.0, limit_price=49.0), "b1", tape.now(0)
    )
    assert (parent.order_type, parent.limit_price) == (OrderType.BRACKET, 49.0)

    [entry] = (await broker.sync(tape.batch(1))).fills
    [exit_] = (await broker.sync(tape.batch(2))).fills

    assert (entry.price, exit_.client_order_id, exit_.price) == (D("49.00"), "b1-sl", D("47.00"))
    assert broker.realized_pnl == D("-200.00")


async def test_bracket_when_entry_never_fills_then_no_children_exist():
    tape = Tape(AAA=make_frame([QUIET, QUIET]))
    broker = SimulatedBroker(D("10000"))
    await broker.sync(tape.batch(0))
    await broker.submit(bracket("AAA", 100, stop_loss=47.0, take_profit=55.0, limit_price=45.0), "b1", tape.now(0))

    await broker.sync(tape.batch(1))

    assert [o.client_order_id for o in (await broker.account()).open_orders] == ["b1"]
    with pytest.raises(BrokerError):
        broker.order("b1-sl")


@pytest.mark.parametrize(
    ("intent", "why"),
    [
        (bracket("AAA", 10, stop_loss=55.0, take_profit=47.0), "below take_profit"),
        (bracket("AAA", 10, stop_loss=47.0, take_profit=None), "stop_loss and take_profit"),  # type: ignore[arg-type]
    ],
)
async def test_bracket_when_levels_are_inconsistent_then_rejected(intent, why):
    tape = Tape(AAA=make_frame([QUIET]))
    broker = SimulatedBroker(D("10000"))
    await broker.sync(tape.batch(0))

    order = await broker.submit(intent, "b1", tape.now(0))

    assert order.status is OrderStatus.REJECTED
    assert why in order.reason


async def test_bracket_sell_is_rejected_as_a_short_entry():
    tape = Tape(AAA=make_frame([QUIET]))
    broker = SimulatedBroker(D("10000"))
    await broker.sync(tape.batch(0))
    intent = sell("AAA", 10, order_type=OrderType.BRACKET, stop_loss=55.0, take_profit=45.0)

    order = await broker.submit(intent, "b1", tape.now(0))

    assert order.status is OrderStatus.REJECTED
    assert "long-only" in order.reason


async def test_bracket_when_position_is_sold_by_a_plain_sell_then_legs_are_cancelled_not_shorted():
    broker, tape, _ = await entered(QUIET)
    accepted = await broker.submit(sell("AAA", 100), "exit", tape.now(1))  # legs do not block the exit
    assert accepted.status is OrderStatus.SUBMITTED

    result = await broker.sync(tape.batch(2))

    assert [f.client_order_id for f in result.fills] == ["exit"]
    for leg in ("b1-sl", "b1-tp"):
        assert broker.order(leg).status is OrderStatus.CANCELED
        assert "closed" in broker.order(leg).reason
    assert (await broker.account()).positions == {}


async def test_bracket_when_position_is_partly_sold_then_legs_shrink_to_the_shares_held():
    broker, tape, _ = await entered((50.0, 50.5, 46.5, 47.0))
    await broker.submit(sell("AAA", 40), "trim", tape.now(1))

    result = await broker.sync(tape.batch(2))

    # the trim sells 40 at the open 50.00; the stop (low 46.5) then sells the remaining 60 at 47.00
    assert [(f.client_order_id, f.quantity, f.price) for f in result.fills] == [
        ("trim", 40, D("50.00")),
        ("b1-sl", 60, D("47.00")),
    ]
    assert broker.order("b1-sl").quantity == 60
    assert broker.order("b1-tp").status is OrderStatus.CANCELED
    assert (await broker.account()).positions == {}


async def test_bracket_same_close_when_submitted_then_enters_at_close_and_legs_start_next_bar():
    tape = Tape(AAA=make_frame([(50.0, 56.0, 46.0, 50.0), (50.0, 55.5, 49.0, 55.0)]))
    broker = SimulatedBroker(D("10000"), fill_model="same-close")
    await broker.sync(tape.batch(0))  # the submission bar's range touches both levels: irrelevant

    parent = await broker.submit(bracket("AAA", 100, stop_loss=47.0, take_profit=55.0), "b1", tape.now(0))
    assert parent.status is OrderStatus.FILLED

    result = await broker.sync(tape.batch(1))
    assert [(f.client_order_id, f.price) for f in result.fills] == [("b1", D("50.00")), ("b1-tp", D("55.00"))]


async def test_bracket_when_entry_fills_partially_then_legs_grow_with_the_entry():
    rows = [(50.0, 50.5, 49.5, 50.0, 1000.0), (50.0, 50.5, 49.5, 50.0, 1000.0), (50.0, 50.5, 49.5, 50.0, 500.0)]
    tape = Tape(AAA=make_frame(rows))
    broker = SimulatedBroker(D("10000"), max_volume_share=0.1)  # 100 shares per bar of 1,000
    await broker.sync(tape.batch(0))
    await broker.submit(bracket("AAA", 150, stop_loss=47.0, take_profit=55.0), "b1", tape.now(0))

    await broker.sync(tape.batch(1))
    assert (broker.order("b1").filled_quantity, broker.order("b1-sl").quantity) == (100, 100)

    await broker.sync(tape.batch(2))  # 10 % of 500 = 50 more
    assert broker.order("b1").status is OrderStatus.FILLED
    assert (broker.order("b1-sl").quantity, broker.order("b1-tp").quantity) == (150, 150)


async def test_bracket_when_stop_leg_fills_while_entry_is_partial_then_entry_remainder_is_cancelled():
    rows = [(50.0, 50.5, 49.5, 50.0, 1000.0), (50.0, 50.5, 49.5, 50.0, 1000.0), (46.0, 46.5, 45.0, 45.5, 1000.0)]
    tape = Tape(AAA=make_frame(rows))
    broker = SimulatedBroker(D("10000"), max_volume_share=0.1)
    await broker.sync(tape.batch(0))
    await broker.submit(bracket("AAA", 150, stop_loss=47.0, take_profit=55.0), "b1", tape.now(0))
    await broker.sync(tape.batch(1))  # 100 in

    result = await broker.sync(tape.batch(2))

    # day 2 gaps through the stop: at the open sells go first, so the stop takes the bar's 100 shares at 46.00
    assert [(f.client_order_id, f.quantity, f.price) for f in result.fills] == [("b1-sl", 100, D("46.00"))]
    parent = broker.order("b1")
    assert (parent.status, parent.filled_quantity) == (OrderStatus.CANCELED, 100)
    assert "entry remainder canceled" in parent.reason
    assert broker.order("b1-tp").status is OrderStatus.CANCELED
    assert (await broker.account()).positions == {}


async def test_bracket_when_stop_triggers_with_little_volume_then_the_rest_sells_at_later_opens():
    rows = [
        (50.0, 50.5, 49.5, 50.0, 1000.0),
        (50.0, 50.5, 49.5, 50.0, 1000.0),
        (48.0, 48.5, 46.0, 46.5, 1000.0),
        (45.0, 45.5, 44.0, 44.5, 1000.0),
    ]
    tape = Tape(AAA=make_frame(rows))
    broker = SimulatedBroker(D("10000"), max_volume_share=0.1)
    await broker.sync(tape.batch(0))
    await broker.submit(bracket("AAA", 150, stop_loss=47.0, take_profit=55.0), "b1", tape.now(0))
    await broker.sync(tape.batch(1))  # 100 in

    day2 = await broker.sync(tape.batch(2))
    # open phase: the entry buys its last 50 at 48.00 (legs grow to 150); intrabar: the stop at 47 gets the 50 left
    assert [(f.client_order_id, f.quantity, f.price) for f in day2.fills] == [
        ("b1", 50, D("48.00")),
        ("b1-sl", 50, D("47.00")),
    ]
    assert broker.order("b1-sl").status is OrderStatus.PARTIALLY_FILLED
    assert broker.order("b1-tp").status is OrderStatus.CANCELED

    day3 = await broker.sync(tape.batch(3))
    # triggered: the remaining 100 sell at the next open like a market order
    assert [(f.client_order_id, f.quantity, f.price) for f in day3.fills] == [("b1-sl", 100, D("45.00"))]
    assert broker.order("b1-sl").status is OrderStatus.FILLED
    assert (await broker.account()).positions == {}


async def test_cancel_bracket_entry_when_partially_filled_then_children_are_cancelled_too():
    rows = [(50.0, 50.5, 49.5, 50.0, 1000.0)] * 3
    tape = Tape(AAA=make_frame(rows))
    broker = SimulatedBroker(D("10000"), max_volume_share=0.1)
    await broker.sync(tape.batch(0))
    await broker.submit(bracket("AAA", 150, stop_loss=47.0, take_profit=55.0), "b1", tape.now(0))
    await broker.sync(tape.batch(1))

    cancelled = await broker.cancel("b1", tape.now(1))

    assert (cancelled.status, cancelled.filled_quantity) == (OrderStatus.CANCELED, 100)
    assert broker.order("b1-sl").status is OrderStatus.CANCELED
    assert broker.order("b1-tp").status is OrderStatus.CANCELED
    assert (await broker.account()).open_orders == ()
    assert (await broker.sync(tape.batch(2))).fills == ()


async def test_cancel_bracket_entry_when_filled_then_raises_and_legs_can_be_cancelled_individually():
    broker, tape, _ = await entered(QUIET)

    with pytest.raises(BrokerError, match="filled"):
        await broker.cancel("b1", tape.now(1))
    await broker.cancel("b1-tp", tape.now(1))

    assert broker.order("b1-sl").status is OrderStatus.SUBMITTED  # cancelling one leg leaves the other


async def test_replace_stop_when_leg_is_working_then_the_same_order_uses_the_new_stop():
    broker, tape, _ = await entered((50.0, 50.5, 48.5, 49.0))
    before = broker.order("b1-sl")

    moved = await broker.replace_stop("b1-sl", 49.0, tape.now(1))

    assert (moved.client_order_id, moved.broker_order_id) == ("b1-sl", before.broker_order_id)
    assert moved.status is OrderStatus.SUBMITTED
    assert moved.stop_price == 49.0
    assert [o.client_order_id for o in (await broker.account()).open_orders] == ["b1-sl", "b1-tp"]
    [fill] = (await broker.sync(tape.batch(2))).fills  # low 48.5 reaches the new stop, not the old 47
    assert (fill.client_order_id, fill.price) == ("b1-sl", D("49.00"))


async def test_replace_stop_when_entry_not_filled_then_changes_the_planned_stop():
    tape = Tape(AAA=make_frame([QUIET, QUIET, (50.0, 50.5, 48.0, 48.5)]))
    broker = SimulatedBroker(D("10000"))
    await broker.sync(tape.batch(0))
    await broker.submit(bracket("AAA", 100, stop_loss=47.0, take_profit=55.0), "b1", tape.now(0))

    assert broker.order("b1").stop_price == 47.0
    moved = await broker.replace_stop("b1", 48.5, tape.now(0))
    assert (moved.status, moved.stop_price) == (OrderStatus.SUBMITTED, 48.5)
    await broker.sync(tape.batch(1))
    assert broker.order("b1-sl").stop_price == 48.5
    [fill] = (await broker.sync(tape.batch(2))).fills
    assert (fill.client_order_id, fill.price) == ("b1-sl", D("48.50"))


@pytest.mark.parametrize(
    ("target_id", "price", "match"),
    [
        ("b1-sl", 55.0, "below the take-profit"),
        ("b1-tp", 48.0, "not a stop"),
        ("b1-sl", 0.0, "positive"),
        ("b1-sl", float("nan"), "positive"),
        ("nope", 48.0, "unknown"),
    ],
)
async def test_replace_stop_when_request_is_invalid_then_raises(target_id, price, match):
    broker, tape, _ = await entered(QUIET)

    with pytest.raises(BrokerError, match=match):
        await broker.replace_stop(target_id, price, tape.now(1))
    assert broker.order("b1-sl").stop_price == 47.0


async def test_replace_stop_when_stop_already_filled_then_raises():
    broker, tape, _ = await entered((45.0, 46.0, 44.0, 45.5))
    await broker.sync(tape.batch(2))

    with pytest.raises(BrokerError, match="filled"):
        await broker.replace_stop("b1-sl", 44.0, datetime(2024, 1, 4, 21, tzinfo=UTC))


async def test_plain_sell_when_a_leg_already_sold_the_shares_on_the_same_bar_then_rejected_not_shorted():
    broker, tape, _ = await entered((45.0, 46.0, 44.0, 45.5))
    await broker.submit(sell("AAA", 100), "exit", tape.now(1))  # accepted: legs do not reserve shares

    result = await broker.sync(tape.batch(2))

    # both are sells at the gap-down open; the stop leg (older) goes first and sells all 100 at 45.00
    assert [(f.client_order_id, f.quantity) for f in result.fills] == [("b1-sl", 100)]
    exit_order = broker.order("exit")
    assert exit_order.status is OrderStatus.REJECTED
    assert "only 0 AAA held" in exit_order.reason
    assert (await broker.account()).positions == {}

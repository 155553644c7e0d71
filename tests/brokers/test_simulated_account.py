"""Cash and position rules, idempotency, cancellation, partial fills, gaps and reporting."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from core.brokers.base import BrokerError
from core.brokers.costs import FlatCommission, PerShareCommission
from core.brokers.simulated import SimulatedBroker
from core.kernel.domain import OrderStatus, OrderType, Side

from tests.brokers.factories import Tape, buy, flat_rows, make_frame, sell

D = Decimal
QUIET = (50.0, 50.5, 49.5, 50.0)


async def started(cash: str = "10000", rows=None, **kw):
    tape = Tape(AAA=make_frame(rows or [QUIET] * 4))
    broker = SimulatedBroker(D(cash), **kw)
    await broker.sync(tape.batch(0))
    return broker, tape


# ---------------------------------------------------------------- cash


async def test_buy_when_estimated_cost_exceeds_cash_then_rejected_with_reason():
    broker, tape = await started("1000", commission=FlatCommission(D("1")))

    too_big = await broker.submit(buy("AAA", 20), "o1", tape.now(0))  # 20 × 50 + 1 = 1,001 > 1,000
    fits = await broker.submit(buy("AAA", 19), "o2", tape.now(0))  # 19 × 50 + 1 = 951

    assert too_big.status is OrderStatus.REJECTED
    assert "insufficient cash" in too_big.reason and "1001" in too_big.reason
    assert fits.status is OrderStatus.SUBMITTED


async def test_buy_when_cash_is_reserved_by_working_buys_then_rejected():
    broker, tape = await started("1000", commission=FlatCommission(D("1")))
    await broker.submit(buy("AAA", 19), "o1", tape.now(0))  # reserves 951

    second = await broker.submit(buy("AAA", 1), "o2", tape.now(0))  # 51 > 49 available

    assert second.status is OrderStatus.REJECTED
    assert "reserved by working buys 951" in second.reason


async def test_buy_when_open_gaps_up_beyond_cash_then_reduced_to_affordable_quantity_and_rest_cancelled():
    rows = [QUIET, (60.0, 61.0, 59.0, 60.0)]
    broker, tape = await started("1000", rows=rows, commission=FlatCommission(D("1")))
    await broker.submit(buy("AAA", 19), "o1", tape.now(0))

    result = await broker.sync(tape.batch(1))

    # 19 × 60 + 1 = 1,141 > 1,000; 16 × 60 + 1 = 961 fits, 17 × 60 + 1 = 1,021 does not
    [fill] = result.fills
    assert (fill.quantity, fill.price) == (16, D("60.00"))
    order = broker.order("o1")
    assert (order.status, order.filled_quantity) == (OrderStatus.CANCELED, 16)
    assert "insufficient cash at fill" in order.reason
    assert (await broker.account()).cash == D("39.00")


async def test_buy_when_nothing_is_affordable_at_fill_then_rejected():
    rows = [QUIET, (150.0, 151.0, 149.0, 150.0)]
    broker, tape = await started("100", rows=rows)
    await broker.submit(buy("AAA", 1), "o1", tape.now(0))

    result = await broker.sync(tape.batch(1))

    assert result.fills == ()
    assert broker.order("o1").status is OrderStatus.REJECTED
    assert (await broker.account()).cash == D("100")


# ---------------------------------------------------------------- no shorting


async def test_sell_when_nothing_is_held_then_rejected_as_a_short_sale():
    broker, tape = await started()

    order = await broker.submit(sell("AAA", 10), "s1", tape.now(0))

    assert order.status is OrderStatus.REJECTED
    assert "short selling is not allowed" in order.reason


async def test_sell_when_larger_than_position_or_already_committed_then_rejected():
    broker, tape = await started()
    await broker.submit(buy("AAA", 100), "b1", tape.now(0))
    await broker.sync(tape.batch(1))

    too_many = await broker.submit(sell("AAA", 150), "s1", tape.now(1))
    all_of_it = await broker.submit(sell("AAA", 100, order_type=OrderType.LIMIT, limit_price=60.0), "s2", tape.now(1))
    one_more = await broker.submit(sell("AAA", 1), "s3", tape.now(1))

    assert too_many.status is OrderStatus.REJECTED and "150" in too_many.reason
    assert all_of_it.status is OrderStatus.SUBMITTED
    assert one_more.status is OrderStatus.REJECTED and "committed to working sells 100" in one_more.reason


# ---------------------------------------------------------------- idempotency and cancellation


async def test_submit_when_client_order_id_repeats_then_returns_existing_order_and_creates_nothing():
    broker, tape = await started()
    first = await broker.submit(buy("AAA", 10), "o1", tape.now(0))

    again = await broker.submit(buy("AAA", 99), "o1", tape.now(0))

    assert again == first
    assert [o.client_order_id for o in (await broker.account()).open_orders] == ["o1"]
    [fill] = (await broker.sync(tape.batch(1))).fills
    assert fill.quantity == 10
    after_fill = await broker.submit(buy("AAA", 10), "o1", tape.now(1))
    assert after_fill.status is OrderStatus.FILLED
    assert (await broker.sync(tape.batch(2))).fills == ()
    assert (await broker.account()).positions["AAA"].quantity == 10


async def test_submit_when_rejected_id_is_resubmitted_then_returns_the_rejection():
    broker, tape = await started("100")
    rejected = await broker.submit(buy("AAA", 10), "o1", tape.now(0))

    assert await broker.submit(buy("AAA", 1), "o1", tape.now(0)) == rejected


async def test_cancel_when_order_is_working_then_cancelled_and_never_fills():
    broker, tape = await started()
    await broker.submit(buy("AAA", 10, order_type=OrderType.LIMIT, limit_price=49.0), "o1", tape.now(0))

    cancelled = await broker.cancel("o1", tape.now(0))

    assert cancelled.status is OrderStatus.CANCELED and cancelled.reason == "canceled by client"
    assert (await broker.account()).open_orders == ()
    assert (await broker.sync(tape.batch(1))).fills == ()
    assert await broker.cancel("o1", tape.now(1)) == cancelled  # cancelling again is a no-op


async def test_cancel_when_order_is_filled_or_unknown_then_raises():
    broker, tape = await started()
    await broker.submit(buy("AAA", 10), "o1", tape.now(0))
    await broker.sync(tape.batch(1))

    with pytest.raises(BrokerError, match="filled"):
        await broker.cancel("o1", tape.now(1))
    with pytest.raises(BrokerError, match="unknown"):
        await broker.cancel("nope", tape.now(1))


# ---------------------------------------------------------------- partial fills


async def test_partial_fills_when_volume_share_limits_then_order_fills_over_several_bars():
    rows = [
        (50.0, 50.5, 49.5, 50.0, 1000.0),
        (50.0, 50.5, 49.5, 50.0, 1000.0),
        (51.0, 51.5, 50.5, 51.0, 1000.0),
        (52.0, 52.5, 51.5, 52.0, 1000.0),
    ]
    commission = PerShareCommission(per_share=D("0.005"), minimum=D("1.00"))
    broker, tape = await started("20000", rows=rows, commission=commission, max_volume_share=0.1)
    await broker.submit(buy("AAA", 250), "o1", tape.now(0))

    fills = []
    statuses = []
    for day in (1, 2, 3):
        fills += (await broker.sync(tape.batch(day))).fills
        statuses.append(broker.order("o1").status)

    # 10 % of 1,000 = 100 shares per bar: 100 @ 50, 100 @ 51, 50 @ 52
    assert [(f.quantity, f.price) for f in fills] == [(100, D("50.00")), (100, D("51.00")), (50, D("52.00"))]
    assert statuses == [OrderStatus.PARTIALLY_FILLED, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED]
    # cumulative commission 1.00 (minimum), 1.00, 1.25: the minimum is charged once for the order
    assert [f.commission for f in fills] == [D("1.00"), D("0.00"), D("0.25")]
    order = broker.order("o1")
    assert order.average_fill_price == 50.8  # 12,700 / 250
    account = await broker.account()
    assert account.cash == D("7298.75")  # 20,000 − 12,700 − 1.25
    assert account.positions["AAA"].average_price == D("50.80")


async def test_partial_fills_when_two_orders_share_a_bar_then_they_share_its_volume():
    rows = [(50.0, 50.5, 49.5, 50.0, 1000.0)] * 3
    broker, tape = await started(rows=rows, max_volume_share=0.1)
    await broker.submit(buy("AAA", 80), "o1", tape.now(0))
    await broker.submit(buy("AAA", 80), "o2", tape.now(0))

    day1 = await broker.sync(tape.batch(1))
    day2 = await broker.sync(tape.batch(2))

    assert [(f.client_order_id, f.quantity) for f in day1.fills] == [("o1", 80), ("o2", 20)]
    assert [(f.client_order_id, f.quantity) for f in day2.fills] == [("o2", 60)]


async def test_partial_fills_when_bar_has_no_volume_then_order_waits():
    rows = [(50.0, 50.5, 49.5, 50.0, 1000.0), (50.0, 50.5, 49.5, 50.0, 0.0), (50.0, 50.5, 49.5, 50.0, 1000.0)]
    broker, tape = await started(rows=rows, max_volume_share=0.5)
    await broker.submit(buy("AAA", 10), "o1", tape.now(0))

    assert (await broker.sync(tape.batch(1))).fills == ()
    assert [f.quantity for f in (await broker.sync(tape.batch(2))).fills] == [10]


async def test_same_close_when_volume_limited_then_rest_fills_at_later_opens():
    rows = [(50.0, 50.5, 49.5, 50.0, 100.0), (51.0, 51.5, 50.5, 51.0, 1000.0)]
    broker, tape = await started(rows=rows, fill_model="same-close", max_volume_share=0.5)

    order = await broker.submit(buy("AAA", 120), "o1", tape.now(0))
    assert (order.status, order.filled_quantity) == (OrderStatus.PARTIALLY_FILLED, 50)

    fills = (await broker.sync(tape.batch(1))).fills
    assert [(f.quantity, f.price) for f in fills] == [(50, D("50.00")), (70, D("51.00"))]


# ---------------------------------------------------------------- gaps, missing symbols, reporting


async def test_sync_when_iterations_were_missed_then_every_intermediate_bar_is_processed_in_order():
    rows = [QUIET, QUIET, (50.0, 50.5, 48.5, 49.0), (49.0, 56.0, 48.8, 55.0), QUIET, QUIET]
    broker, tape = await started(rows=rows)
    await broker.submit(buy("AAA", 10, order_type=OrderType.LIMIT, limit_price=49.0), "b1", tape.now(0))
    await broker.submit(buy("AAA", 10, order_type=OrderType.STOP, stop_price=55.5), "b2", tape.now(0))

    result = await broker.sync(tape.batch(5))  # days 1–4 were never synced

    assert [(f.client_order_id, f.price, f.filled_at.day) for f in result.fills] == [
        ("b1", D("49.00"), 4),  # day 2 = 2024-01-04
        ("b2", D("55.50"), 5),  # day 3 = 2024-01-05
    ]
    assert (await broker.account()).positions["AAA"].last_price == D("50.00")


async def test_sync_when_symbol_is_missing_then_its_orders_stay_working_and_fill_later_on_the_right_bar():
    tape = Tape(
        AAA=make_frame([QUIET, (50.0, 50.5, 48.5, 49.0), QUIET]),
        BBB=make_frame(flat_rows(3, 20.0)),
    )
    broker = SimulatedBroker(D("10000"))
    await broker.sync(tape.batch(0))
    await broker.submit(buy("AAA", 10, order_type=OrderType.LIMIT, limit_price=49.0), "o1", tape.now(0))

    missing = await broker.sync(tape.batch(1, symbols=["BBB"]))
    assert missing.fills == ()
    assert broker.order("o1").status is OrderStatus.SUBMITTED

    [fill] = (await broker.sync(tape.batch(2))).fills
    assert (fill.price, fill.filled_at) == (D("49.00"), datetime(2024, 1, 3, tzinfo=UTC))


async def test_sync_when_orders_of_several_symbols_fill_on_one_bar_then_sells_go_first_and_fund_buys():
    tape = Tape(
        AAA=make_frame([QUIET, QUIET, (60.0, 60.5, 59.5, 60.0)]),
        BBB=make_frame(flat_rows(3, 20.0)),
    )
    broker = SimulatedBroker(D("5000"))
    await broker.sync(tape.batch(0))
    await broker.submit(buy("BBB", 200), "b1", tape.now(0))
    await broker.sync(tape.batch(1))  # 200 × 20 = 4,000 → cash 1,000
    await broker.submit(sell("BBB", 200), "s1", tape.now(1))
    assert (await broker.submit(buy("AAA", 20), "b2", tape.now(1))).status is OrderStatus.SUBMITTED  # 20 × 50

    result = await broker.sync(tape.batch(2))

    # AAA gaps to 60: 1,200 > the 1,000 of cash, but the BBB sale (alphabetically later) is processed first
    assert [(f.client_order_id, f.quantity) for f in result.fills] == [("s1", 200), ("b2", 20)]
    assert (await broker.account()).cash == D("3800.00")  # 1,000 + 4,000 − 1,200


async def test_sync_reports_each_changed_order_once_with_its_latest_state():
    broker, tape = await started()
    await broker.submit(buy("AAA", 10), "o1", tape.now(0))
    await broker.submit(buy("AAA", 10, order_type=OrderType.LIMIT, limit_price=10.0), "o2", tape.now(0))
    await broker.submit(sell("AAA", 10), "o3", tape.now(0))  # rejected

    result = await broker.sync(tape.batch(1))

    assert [(o.client_order_id, o.status) for o in result.orders] == [
        ("o1", OrderStatus.FILLED),
        ("o2", OrderStatus.SUBMITTED),
        ("o3", OrderStatus.REJECTED),
    ]
    assert (await broker.sync(tape.batch(2))).orders == ()


async def test_sync_when_a_bar_has_missing_prices_then_no_fill_on_it_and_a_note():
    rows = [QUIET, (float("nan"), 50.5, 49.5, 50.0), (51.0, 51.5, 50.5, 51.0)]
    broker, tape = await started(rows=rows)
    await broker.submit(buy("AAA", 10), "o1", tape.now(0))

    day1 = await broker.sync(tape.batch(1))
    assert day1.fills == ()
    assert any("non-finite" in note for note in day1.notes)
    [fill] = (await broker.sync(tape.batch(2))).fills
    assert fill.price == D("51.00")


async def test_sync_when_an_index_is_not_utc_then_raises_before_changing_anything():
    naive = make_frame([QUIET] * 2)
    naive.index = naive.index.tz_localize(None)
    tape = Tape(AAA=make_frame([QUIET, (50.0, 50.5, 48.5, 49.0)]), ZZZ=naive)
    broker = SimulatedBroker(D("1000"))
    await broker.sync(tape.batch(0, symbols=["AAA"]))
    await broker.submit(buy("AAA", 10, order_type=OrderType.LIMIT, limit_price=49.0), "o1", tape.now(0))

    with pytest.raises(ValueError, match="ZZZ.*UTC"):
        await broker.sync(tape.batch(1))

    [fill] = (await broker.sync(tape.batch(1, symbols=["AAA"]))).fills  # day 1 was not skipped
    assert fill.price == D("49.00")


async def test_account_when_no_time_is_known_then_raises_unless_started_at_is_given():
    with pytest.raises(BrokerError):
        await SimulatedBroker(D("1000")).account()
    start = datetime(2024, 1, 1, tzinfo=UTC)
    account = await SimulatedBroker(D("1000"), started_at=start).account()
    assert (account.at, account.cash, account.equity, account.positions) == (start, D("1000"), D("1000"), {})


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"initial_cash": 1000.0}, TypeError),
        ({"initial_cash": D("-1")}, ValueError),
        ({"initial_cash": D("1"), "fill_model": "next-close"}, ValueError),
        ({"initial_cash": D("1"), "max_volume_share": 0.0}, ValueError),
        ({"initial_cash": D("1"), "max_volume_share": 1.5}, ValueError),
    ],
)
def test_constructor_when_arguments_are_invalid_then_raises(kwargs, error):
    with pytest.raises(error):
        SimulatedBroker(**kwargs)


async def test_submit_when_now_is_naive_then_raises():
    broker, _ = await started()
    with pytest.raises(ValueError):
        await broker.submit(buy("AAA", 1), "o1", datetime(2024, 1, 2, 21))


async def test_sell_side_fill_reports_side_and_reduces_position_with_average_cost():
    broker, tape = await started(rows=[QUIET, QUIET, (60.0, 60.5, 59.5, 60.0), QUIET])
    await broker.submit(buy("AAA", 30), "b1", tape.now(0))
    await broker.sync(tape.batch(1))  # 30 @ 50
    await broker.submit(buy("AAA", 10), "b2", tape.now(1))
    await broker.submit(sell("AAA", 20), "s1", tape.now(1))

    result = await broker.sync(tape.batch(2))

    # at day 2's open (60) the sell goes first: 20 of 30 @ 50 → realised 20 × (60 − 50) = 200; then 10 @ 60 bought
    assert [(f.client_order_id, f.side) for f in result.fills] == [("s1", Side.SELL), ("b2", Side.BUY)]
    position = (await broker.account()).positions["AAA"]
    assert position.quantity == 20
    assert position.realized_pnl == D("200.00")
    assert position.average_price == D("55.00")  # basis 500 + 600 over 20 shares


async def test_account_is_reused_until_something_changes_it_and_is_read_only():
    rows = [QUIET, (51.0, 52.0, 50.5, 51.5), (52.0, 53.0, 51.5, 52.5)]
    broker, tape = await started("10000", rows=rows)
    first = await broker.account()
    assert await broker.account() is first  # nothing happened in between

    await broker.submit(buy("AAA", 10), "o1", tape.now(0))
    submitted = await broker.account()
    assert submitted is not first and [o.client_order_id for o in submitted.open_orders] == ["o1"]

    await broker.sync(tape.batch(1))  # fills at the next open, 51.00
    filled = await broker.account()
    assert filled.positions["AAA"].quantity == 10 and filled.cash == D("10000") - D("510")
    await broker.sync(tape.batch(2))  # marked at the new close
    marked = await broker.account()
    assert marked.positions["AAA"].last_price == D("52.5") and marked.equity == D("9490") + D("525")
    with pytest.raises(TypeError):
        marked.positions["BBB"] = marked.positions["AAA"]  # type: ignore[index]

    await broker.submit(sell("AAA", 10), "o2", tape.now(2))
    await broker.cancel("o2", tape.now(2))
    assert (await broker.account()).open_orders == ()

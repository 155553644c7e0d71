"""snapshot() / restore(): a JSON round trip rebuilds the same account and the same future behaviour."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from core.brokers.costs import BpsSlippage, PerShareCommission
from core.brokers.simulated import SimulatedBroker
from core.kernel.domain import OrderType

from tests.brokers.factories import Tape, bracket, buy, make_frame, sell

D = Decimal
COSTS = {
    "commission": PerShareCommission(per_share=D("0.005"), minimum=D("1.00"), max_pct=D("0.01")),
    "slippage": BpsSlippage(D("7")),
    "max_volume_share": 0.1,
}


def tape() -> Tape:
    aaa = [
        (50.0, 50.6, 49.4, 50.1, 1500.0),
        (50.2, 51.0, 49.8, 50.7, 900.0),
        (50.9, 52.0, 50.5, 51.6, 1200.0),
        (51.5, 54.0, 51.0, 53.8, 2000.0),
        (53.0, 53.5, 46.0, 47.0, 1000.0),
        (47.0, 48.0, 46.5, 47.5, 3000.0),
    ]
    bbb = [
        (20.0, 20.4, 19.8, 20.1, 5000.0),
        (20.1, 20.3, 19.5, 19.7, 5000.0),
        (19.6, 19.9, 19.0, 19.2, 5000.0),
        (19.3, 21.0, 19.1, 20.8, 5000.0),
        (20.9, 21.5, 20.5, 21.2, 5000.0),
        (21.0, 21.3, 20.6, 20.9, 5000.0),
    ]
    return Tape(AAA=make_frame(aaa), BBB=make_frame(bbb))


async def first_half(broker: SimulatedBroker, t: Tape) -> None:
    await broker.sync(t.batch(0))
    await broker.submit(bracket("AAA", 250, stop_loss=47.5, take_profit=55.0), "br", t.now(0))
    await broker.submit(buy("BBB", 300, order_type=OrderType.LIMIT, limit_price=19.1), "lim", t.now(0))
    await broker.sync(t.batch(1))
    await broker.submit(buy("BBB", 100), "mkt", t.now(1))


async def second_half(broker: SimulatedBroker, t: Tape) -> list:
    observed = []
    for day in (2, 3):
        observed.append(await broker.sync(t.batch(day)))
    await broker.submit(sell("BBB", 150), "trim", t.now(3))
    await broker.replace_stop("br-sl", 48.0, t.now(3))
    for day in (4, 5):
        observed.append(await broker.sync(t.batch(day)))
    observed.append(await broker.account())
    observed.append(broker.fills())
    return observed


async def test_restore_when_snapshot_round_trips_through_json_then_account_and_future_are_identical():
    t = tape()
    original = SimulatedBroker(D("25000"), **COSTS)
    await first_half(original, t)
    state = json.loads(json.dumps(original.snapshot()))  # must be plain JSON

    restored = SimulatedBroker(D("25000"), **COSTS)
    restored.restore(state)

    assert await restored.account() == await original.account()
    assert restored.snapshot() == original.snapshot()
    open_ids = [o.client_order_id for o in (await restored.account()).open_orders]
    assert open_ids == ["br", "lim", "br-sl", "br-tp", "mkt"]
    assert await second_half(restored, t) == await second_half(original, t)


async def test_restore_mid_run_then_the_pending_report_and_working_legs_survive():
    t = tape()
    original = SimulatedBroker(D("25000"), **COSTS)
    await first_half(original, t)
    await original.sync(t.batch(2))
    await original.sync(t.batch(3))
    assert original.order("br-sl").status.value in {"submitted", "partially_filled"}
    state = json.loads(json.dumps(original.snapshot()))

    restored = SimulatedBroker(D("25000"), **COSTS)
    restored.restore(state)

    assert [await restored.sync(t.batch(4)), await restored.sync(t.batch(5))] == [
        await original.sync(t.batch(4)),
        await original.sync(t.batch(5)),
    ]
    assert await restored.account() == await original.account()
    assert restored.realized_pnl == original.realized_pnl
    assert restored.total_commissions == original.total_commissions


def test_snapshot_uses_strings_for_decimals():
    broker = SimulatedBroker(D("1234.56"))
    state = broker.snapshot()
    assert state["cash"] == "1234.56" and state["initial_cash"] == "1234.56"


@pytest.mark.parametrize(
    "other",
    [
        {"slippage": BpsSlippage(D("8"))},
        {"fill_model": "same-close"},
        {"max_volume_share": None},
    ],
)
async def test_restore_when_costs_or_rules_differ_then_raises(other):
    t = tape()
    original = SimulatedBroker(D("25000"), **COSTS)
    await first_half(original, t)

    different = SimulatedBroker(D("25000"), **{**COSTS, **other})
    with pytest.raises(ValueError, match="snapshot was taken with"):
        different.restore(original.snapshot())


def test_restore_when_version_is_unknown_then_raises():
    broker = SimulatedBroker(D("1"))
    state = broker.snapshot()
    state["version"] = 99
    with pytest.raises(ValueError, match="version"):
        broker.restore(state)


async def _trade_daily(broker: SimulatedBroker, t: Tape, days: range) -> None:
    """Every day: a round trip in AAA (buy, then sell the next day) and every 5th day a bracket in
    BBB whose legs trigger within days: orders and fills pile up, while the open orders stay few."""
    for day in days:
        await broker.sync(t.batch(day))
        side = buy if day % 2 == 0 else sell
        await broker.submit(side("AAA", 10), f"d{day}-aaa", t.now(day))
        if day % 5 == 0:
            price = float(t.frames["BBB"]["close"].iloc[day])
            await broker.submit(
                bracket("BBB", 5, stop_loss=price - 0.5, take_profit=price + 0.5), f"d{day}-bbb", t.now(day)
            )


async def test_snapshot_when_bounded_then_its_size_does_not_grow_with_iterations_and_it_restores_the_same_account():
    from tests.brokers.factories import flat_rows

    t = Tape(AAA=make_frame(flat_rows(400, 50.0)), BBB=make_frame(flat_rows(400, 20.0)))
    broker = SimulatedBroker(D("100000"), **COSTS)
    await _trade_daily(broker, t, range(0, 100))
    early = len(json.dumps(broker.snapshot(history=20)))
    await _trade_daily(broker, t, range(100, 390))
    state = json.loads(json.dumps(broker.snapshot(history=20)))
    late = len(json.dumps(state))

    assert len(broker.fills()) > 200 and len(json.dumps(broker.snapshot())) > 5 * late  # the full history keeps growing
    assert late <= early * 1.1  # the bounded one does not (the working bracket legs vary a little)
    restored = SimulatedBroker(D("100000"), **COSTS)
    restored.restore(state)
    assert await restored.account() == await broker.account()
    assert restored.realized_pnl == broker.realized_pnl and restored.total_commissions == broker.total_commissions
    # the working bracket legs survived, and submit stays idempotent for the recent ids it kept
    assert {o.client_order_id for o in (await restored.account()).open_orders} == {
        o.client_order_id for o in (await broker.account()).open_orders
    }
    assert (await restored.submit(sell("AAA", 10), "d389-aaa", t.now(389))) == broker.order("d389-aaa")
    assert [await restored.sync(t.batch(390)), await restored.sync(t.batch(391))] == [
        await broker.sync(t.batch(390)),
        await broker.sync(t.batch(391)),
    ]

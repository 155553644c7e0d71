"""Accounting identities over random bars and random order flow (hypothesis).

After every ``sync``/``submit``/``cancel``, exactly (``Decimal`` equality, no tolerance):

* equity == cash + Σ quantity × last_price                     (AccountState)
* equity − initial_cash == realized + unrealized − commissions  (commissions kept out of realized P&L)
* cash == initial_cash + Σ sell notionals − Σ buy notionals − Σ commissions   (cash reconciles with the fills)
* each position == Σ bought − Σ sold for its symbol, never negative; cash never negative
* every order's filled_quantity == Σ of its fills ≤ its quantity
and over the whole run the fills reported by the syncs are exactly the broker's fills, each once.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.brokers.base import BrokerError
from core.brokers.costs import BpsSlippage, PerShareCommission
from core.brokers.simulated import SimulatedBroker
from core.kernel.domain import OrderStatus, OrderType, Side

from tests.brokers.factories import Tape, intent, make_frame

D = Decimal
SYMBOLS = ("AAA", "BBB")


@st.composite
def price_rows(draw, days: int):
    rows = []
    close = draw(st.floats(5.0, 200.0))
    for _ in range(days):
        gap = draw(st.floats(-0.08, 0.08))
        move = draw(st.floats(-0.06, 0.06))
        up = draw(st.floats(0.0, 0.04))
        down = draw(st.floats(0.0, 0.04))
        volume = draw(st.sampled_from([0.0, 300.0, 2_000.0, 50_000.0]))
        open_ = round(close * (1 + gap), 2)
        close = round(open_ * (1 + move), 2)
        high = round(max(open_, close) * (1 + up), 2)
        low = round(min(open_, close) * (1 - down), 2)
        rows.append((open_, high, low, close, volume))
    return rows


order_spec = st.tuples(
    st.sampled_from(SYMBOLS),
    st.sampled_from([Side.BUY, Side.SELL]),
    st.integers(1, 400),
    st.sampled_from([OrderType.MARKET, OrderType.LIMIT, OrderType.STOP, OrderType.BRACKET]),
    st.floats(0.0, 0.06),  # distance of limit / stop levels from the last close
    st.floats(0.01, 0.08),  # distance of a bracket's target
    st.one_of(st.none(), st.floats(0.1, 1.0)),  # a sell's size as a share of the position (None: as drawn)
)
day_plan = st.tuples(
    st.booleans(),  # sync this day (False = a missed iteration)
    st.sets(st.sampled_from(SYMBOLS), min_size=1),  # symbols present in the batch
    st.lists(order_spec, max_size=3),
    st.lists(st.integers(0, 50), max_size=1),  # cancel the n-th submitted order, if any
)


def level(close: float, side: Side, kind: OrderType, distance: float) -> dict:
    below, above = round(close * (1 - distance), 2), round(close * (1 + distance), 2)
    if kind is OrderType.LIMIT:
        return {"limit_price": below if side is Side.BUY else above}
    if kind is OrderType.STOP:
        return {"stop_price": above if side is Side.BUY else below}
    return {}


class Ledger:
    def __init__(self, broker: SimulatedBroker) -> None:
        self.broker = broker
        self.reported: list = []

    async def check(self) -> None:
        broker = self.broker
        account = await broker.account()
        fills = broker.fills()
        marked = sum((p.quantity * p.last_price for p in account.positions.values()), D(0))
        assert account.equity == account.cash + marked
        assert account.equity - broker.initial_cash == (
            broker.realized_pnl + broker.unrealized_pnl - broker.total_commissions
        )
        flows = sum(
            ((f.price * f.quantity if f.side is Side.SELL else -f.price * f.quantity) - f.commission for f in fills),
            D(0),
        )
        assert account.cash == broker.initial_cash + flows
        assert account.cash >= 0
        assert broker.total_commissions == sum((f.commission for f in fills), D(0))
        held: dict[str, int] = defaultdict(int)
        per_order: dict[str, int] = defaultdict(int)
        for f in fills:
            held[f.symbol] += f.quantity if f.side is Side.BUY else -f.quantity
            per_order[f.client_order_id] += f.quantity
            assert held[f.symbol] >= 0, "the broker went short"
        assert {s: q for s, q in held.items() if q} == {s: p.quantity for s, p in account.positions.items()}
        for client_order_id, quantity in per_order.items():
            order = broker.order(client_order_id)
            assert order.filled_quantity == quantity <= order.quantity
        for order in account.open_orders:
            assert order.status in (OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED)


async def run_scenario(rows, plans, fill_model, share, bps) -> None:
    tape = Tape(AAA=make_frame(rows["AAA"]), BBB=make_frame(rows["BBB"]))
    broker = SimulatedBroker(
        D("50000"),
        commission=PerShareCommission(per_share=D("0.005"), minimum=D("1.00"), max_pct=D("0.01")),
        slippage=BpsSlippage(D(bps)),
        fill_model=fill_model,
        max_volume_share=share,
    )
    ledger = Ledger(broker)
    submitted: list[str] = []
    ledger.reported += (await broker.sync(tape.batch(0))).fills
    await ledger.check()
    for day, (do_sync, present, specs, cancels) in enumerate(plans, start=1):
        if not do_sync:
            continue
        ledger.reported += (await broker.sync(tape.batch(day, symbols=sorted(present)))).fills
        await ledger.check()
        now = tape.now(day)
        for n, (symbol, side, quantity, kind, distance, reach, share_of_position) in enumerate(specs):
            close = float(tape.frames[symbol]["close"].iat[day])
            held = (await broker.account()).positions.get(symbol)
            if side is Side.SELL and share_of_position is not None and held is not None:
                quantity = max(1, int(held.quantity * share_of_position))
            if kind is OrderType.BRACKET and share_of_position is not None:
                side = Side.BUY  # mostly valid brackets, sometimes a (rejected) sell bracket
            kwargs = level(close, side, kind, distance)
            if kind is OrderType.BRACKET:
                kwargs = {
                    "stop_loss": round(close * (1 - distance - 0.01), 2),
                    "take_profit": round(close * (1 + reach), 2),
                }
            client_order_id = f"d{day}-{n}"
            await broker.submit(intent(symbol, side, quantity, kind, **kwargs), client_order_id, now)
            submitted.append(client_order_id)
            await ledger.check()
        for index in cancels:
            if index < len(submitted):
                try:
                    await broker.cancel(submitted[index], now)
                except BrokerError:
                    assert broker.order(submitted[index]).status in (
                        OrderStatus.FILLED,
                        OrderStatus.REJECTED,
                    )
                await ledger.check()
    ledger.reported += (await broker.sync(tape.batch(len(plans)))).fills
    await ledger.check()
    assert ledger.reported == list(broker.fills())
    assert len({f.fill_id for f in broker.fills()}) == len(broker.fills())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_accounting_identities_hold_over_random_orders_and_bars(data):
    days = data.draw(st.integers(2, 10), label="days")
    rows = {s: data.draw(price_rows(days + 1), label=f"rows {s}") for s in SYMBOLS}
    plans = data.draw(st.lists(day_plan, min_size=days, max_size=days), label="plans")
    fill_model = data.draw(st.sampled_from(["next-open", "same-close"]), label="fill model")
    share = data.draw(st.sampled_from([None, 0.05, 0.5]), label="max volume share")
    bps = data.draw(st.sampled_from(["0", "5", "25"]), label="slippage bps")

    asyncio.run(run_scenario(rows, plans, fill_model, share, bps))

"""The simulated broker counts day trades (a position opened and closed in the same session) over the last five
sessions, as Alpaca's ``daytrade_count`` does, and gives the price a market buy sent now would fill at (the gap
guard's price at submission in a backtest)."""

from __future__ import annotations

from decimal import Decimal

from core.brokers.costs import BpsSlippage
from core.brokers.simulated import SimulatedBroker
from core.kernel.domain import OrderStatus

from tests.brokers.factories import Tape, buy, flat_rows, make_frame, sell

D = Decimal


def _tape() -> Tape:
    return Tape(**{s: make_frame(flat_rows(10)) for s in ("AAA", "BBB", "CCC", "DDD")})


async def _round_trip(
    broker: SimulatedBroker, tape: Tape, day: int, symbol: str, *, sell_day: int | None = None
) -> None:
    """Buy 10 ``symbol`` at ``day``'s close and sell them at ``sell_day``'s (default the same session)."""
    assert (await broker.submit(buy(symbol, 10), f"b-{symbol}-{day}", tape.now(day))).status is OrderStatus.FILLED
    if sell_day is not None and sell_day != day:
        await broker.sync(tape.batch(sell_day))
    at = day if sell_day is None else sell_day
    assert (await broker.submit(sell(symbol, 10), f"s-{symbol}-{at}", tape.now(at))).status is OrderStatus.FILLED


async def test_buy_and_sell_in_one_session_when_counted_then_one_day_trade_per_symbol_and_session() -> None:
    tape = _tape()
    broker = SimulatedBroker(D("100000"), fill_model="same-close")
    await broker.sync(tape.batch(0))
    assert (await broker.account()).daytrade_count == 0

    await _round_trip(broker, tape, 0, "AAA")
    await broker.submit(buy("AAA", 5), "b-AAA-0-again", tape.now(0))  # bought and sold again: still one for AAA
    await broker.submit(sell("AAA", 5), "s-AAA-0-again", tape.now(0))

    account = await broker.account()
    assert account.daytrade_count == 1
    assert account.pattern_day_trader is False


async def test_position_held_overnight_when_sold_the_next_session_then_no_day_trade() -> None:
    tape = _tape()
    broker = SimulatedBroker(D("100000"), fill_model="same-close")
    await broker.sync(tape.batch(0))

    await _round_trip(broker, tape, 0, "AAA", sell_day=1)

    assert (await broker.account()).daytrade_count == 0


async def test_day_trades_when_five_sessions_pass_then_the_oldest_leaves_the_rolling_count() -> None:
    tape = _tape()
    broker = SimulatedBroker(D("100000"), fill_model="same-close")
    for day, symbol in enumerate(("AAA", "BBB", "CCC")):
        await broker.sync(tape.batch(day))
        await _round_trip(broker, tape, day, symbol)
    assert (await broker.account()).daytrade_count == 3

    await broker.sync(tape.batch(3))
    await broker.sync(tape.batch(4))
    assert (await broker.account()).daytrade_count == 3  # sessions 0..4: all three within the last five
    await broker.sync(tape.batch(5))
    assert (await broker.account()).daytrade_count == 2  # session 0 left the window
    await broker.sync(tape.batch(6))
    await broker.sync(tape.batch(7))
    assert (await broker.account()).daytrade_count == 0  # the window is the last five sessions the broker saw


async def test_fourth_day_trade_within_five_sessions_then_the_account_is_flagged_a_pattern_day_trader() -> None:
    tape = _tape()
    broker = SimulatedBroker(D("100000"), fill_model="same-close")
    for day, symbol in enumerate(("AAA", "BBB", "CCC", "DDD")):
        await broker.sync(tape.batch(day))
        await _round_trip(broker, tape, day, symbol)

    account = await broker.account()
    assert account.daytrade_count == 4
    assert account.pattern_day_trader is True


async def test_day_trade_count_when_the_broker_is_restored_from_a_snapshot_then_kept() -> None:
    tape = _tape()
    broker = SimulatedBroker(D("100000"), fill_model="same-close")
    for day, symbol in enumerate(("AAA", "BBB")):
        await broker.sync(tape.batch(day))
        await _round_trip(broker, tape, day, symbol)
    restored = SimulatedBroker(D("100000"), fill_model="same-close")
    restored.restore(broker.snapshot())

    assert (await restored.account()).daytrade_count == 2
    for day in (2, 3, 4, 5):
        await restored.sync(tape.batch(day))
    assert (await restored.account()).daytrade_count == 1


async def test_market_buy_price_with_next_open_then_the_next_bars_open_with_slippage_and_none_at_the_end() -> None:
    tape = Tape(AAA=make_frame([(49, 50.5, 48.5, 50.0), (52.0, 53, 51, 52.5)]))
    broker = SimulatedBroker(D("10000"), slippage=BpsSlippage(D("10")))
    await broker.sync(tape.batch(0))
    assert broker.market_buy_price("AAA") == D("52.052")  # 52.00 + 10 bp
    assert broker.market_buy_price("ZZZ") is None

    await broker.sync(tape.batch(1))
    assert broker.market_buy_price("AAA") is None  # no bar after the last one


async def test_market_buy_price_with_same_close_then_the_last_close() -> None:
    tape = Tape(AAA=make_frame([(49, 50.5, 48.5, 50.0), (52.0, 53, 51, 52.5)]))
    broker = SimulatedBroker(D("10000"), fill_model="same-close")
    await broker.sync(tape.batch(0))
    assert broker.market_buy_price("AAA") == D("50")

"""What the simulated broker keeps between calls (each frame's index view, the account's positions) gives the answers
computed afresh: its lookups equal pandas' own, its positions equal newly built ones."""

from __future__ import annotations

import pandas as pd
import pytest

from core.brokers.simulated.book import _FrameView


def _frame(index: pd.DatetimeIndex) -> pd.DataFrame:
    return pd.DataFrame({"close": range(len(index))}, index=index)


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_frame_view_when_looking_up_the_row_after_a_timestamp_then_it_equals_pandas_searchsorted(unit: str) -> None:
    days = pd.to_datetime(["2019-12-30", "2020-01-02", "2020-01-02", "2020-01-03", "2020-01-06"], utc=True)
    index = pd.DatetimeIndex(days).as_unit(unit)
    view = _FrameView(_frame(index))
    probes = [pd.Timestamp(t, tz="UTC") for t in ("2019-01-01", "2020-01-02", "2020-01-02 00:00:00.000000001",
                                                    "2020-01-04", "2021-01-01", "1960-05-05 12:00")]  # fmt: skip
    probes += [p.as_unit(u, round_ok=True) for p in probes for u in ("s", "ms", "us", "ns")]
    probes += list(index) + [pd.Timestamp("2020-01-02 05:00", tz="America/New_York")]
    for probe in probes:
        try:
            expected: int | type[Exception] = int(index.searchsorted(probe, side="right"))
        except ValueError as exc:  # a timestamp finer than the index's unit: pandas refuses to round it
            expected = type(exc)
        if isinstance(expected, int):
            assert view.after(probe) == expected, probe
        else:
            with pytest.raises(expected):
                view.after(probe)
    assert [view.stamp(i) for i in range(len(index))] == list(index)
    assert view.rows == len(index)


def test_frame_view_when_the_timestamp_is_naive_then_it_fails_as_pandas_does() -> None:
    view = _FrameView(_frame(pd.DatetimeIndex(pd.to_datetime(["2020-01-02"], utc=True))))
    with pytest.raises(TypeError):
        view.after(pd.Timestamp("2020-01-02"))


async def test_positions_when_the_account_is_read_between_changes_then_they_equal_freshly_built_ones() -> None:
    """The account's positions are reused while nothing of a holding changed (same quantity, basis, realised P&L,
    mark): through buys, partial sells, new marks and a restore they equal positions built without the reuse."""
    from decimal import Decimal

    from core.brokers.simulated import SimulatedBroker
    from core.kernel.domain import Side
    from tests.brokers.factories import Tape, buy, make_frame, sell

    rows = [(50.0 + k, 52.0 + k, 49.0 + k, 51.0 + k) for k in range(8)]
    tape = Tape(AAA=make_frame(rows), BBB=make_frame([(r[0] / 2, r[1] / 2, r[2] / 2, r[3] / 2) for r in rows]))
    broker = SimulatedBroker(Decimal("100000"))

    async def check() -> None:
        seen = dict((await broker.account()).positions)
        broker._position_cache.clear()
        broker._version += 1
        assert dict((await broker.account()).positions) == seen

    steps = [("AAA", Side.BUY, 10), ("BBB", Side.BUY, 7), ("AAA", Side.SELL, 4), ("AAA", Side.BUY, 3), None]
    for day, step in enumerate(steps):
        await broker.sync(tape.batch(day))
        await check()
        if step is not None:
            symbol, side, quantity = step
            order = buy(symbol, quantity) if side is Side.BUY else sell(symbol, quantity)
            await broker.submit(order, f"o{day}", tape.now(day))
            await check()
    state = broker.snapshot()
    before = dict((await broker.account()).positions)
    broker.restore(state)
    assert dict((await broker.account()).positions) == before
    assert set(before) == {"AAA", "BBB"} and before["AAA"].quantity == 9


def test_frame_view_when_timestamps_are_beyond_nanoseconds_then_pandas_answers() -> None:
    index = pd.DatetimeIndex([pd.Timestamp("2300-01-02", tz="UTC").as_unit("s"),
                              pd.Timestamp("2300-01-03", tz="UTC").as_unit("s")])  # fmt: skip
    view = _FrameView(_frame(index))
    for probe in (index[0], pd.Timestamp("2300-01-02 12:00", tz="UTC").as_unit("s"), index[1]):
        assert view.after(probe) == int(index.searchsorted(probe, side="right"))


async def test_sync_when_a_symbol_gets_a_new_frame_then_its_view_is_rebuilt() -> None:
    """A view belongs to one frame object: a new frame for the symbol (a live daemon's next iteration) is read
    afresh, its extra rows and changed prices included."""
    from decimal import Decimal

    from core.brokers.simulated import SimulatedBroker
    from core.kernel.domain import BarsBatch, SymbolBars
    from tests.brokers.factories import make_frame, session_close

    first = make_frame([(10.0, 11.0, 9.0, 10.0), (10.0, 11.0, 9.0, 10.5)])
    second = make_frame([(10.0, 11.0, 9.0, 10.0), (10.0, 11.0, 9.0, 10.5), (10.5, 12.0, 10.0, 11.75)])
    broker = SimulatedBroker(Decimal("1000"))
    for frame in (first, second):
        bars = SymbolBars("AAA", frame, len(frame), "test")
        await broker.sync(BarsBatch("it", session_close(frame.index[-1]), {"AAA": bars}))
        mark = broker._marks["AAA"]
        assert (mark.ts, mark.close) == (frame.index[-1], Decimal(repr(float(frame["close"].iloc[-1]))))
        assert broker._frames["AAA"].frame is frame and broker._cursors["AAA"] == frame.index[-1]

"""Several symbols' signals in one evaluation: each row is, bit for bit, the symbol's own ``signal_arrays``.

The shadow ledger evaluates every strategy over all symbols whose frames share their dates at once
(``Strategy.signal_arrays_many`` over ``BarData.stack``), on 2-D arrays. Every indicator kernel treats each row as
it would the row alone; these tests compare every column of every strategy, with and without indicators, on the
bundled bars, on synthetic bars, and on rows with the NaN patterns that take the kernels' other paths: a missing
first bars (a listing), a hole in the middle, a flat stretch (ATR 0), an all-NaN row.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from core.data.synthetic import SyntheticProvider
from core.kernel.calendar import MarketCalendar
from strategies import indicators as ind
from strategies.base import Peers
from strategies.common import BarData, batch_groups
from strategies.context import context_arrays, context_arrays_many
from strategies.registry import build_registry


def _synthetic(count: int = 12, bars: int = 400) -> dict[str, pd.DataFrame]:
    calendar = MarketCalendar()
    provider = SyntheticProvider(23, date(2015, 1, 2), bars, calendar=calendar)
    symbols = ["SPY", *(f"S{k:02d}" for k in range(count - 1))]
    end = calendar.session(calendar.sessions_from(date(2015, 1, 2), bars)[-1].date()).close_utc
    return dict(provider.history(symbols, end=end).frames)


def _damaged(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Copies of some frames with the NaN patterns real data has (same dates, so they batch with the others)."""
    out = dict(frames)
    names = [s for s in frames if s != "SPY"]
    listing = frames[names[0]].copy()
    listing.iloc[:57] = np.nan  # listed later: leading NaNs longer than every window
    out["LISTED"] = listing
    short_gap = frames[names[1]].copy()
    short_gap.iloc[:5] = np.nan  # leading NaNs shorter than the ATR window (the sma seed's partial head)
    out["HEAD"] = short_gap
    hole = frames[names[2]].copy()
    hole.iloc[200:203] = np.nan  # a hole in the middle: the Wilder kernels' 1-D path
    out["HOLE"] = hole
    flat = frames[names[3]].copy()
    flat.iloc[100:160] = flat.iloc[100]["close"]  # no range at all: ATR 0, no usable stop
    out["FLAT"] = flat
    dead = frames[names[4]].copy()
    dead.iloc[:] = np.nan
    out["DEAD"] = dead
    return out


def _peers(frames: dict[str, pd.DataFrame]) -> Peers:
    return Peers(benchmark=frames["SPY"], closes=pd.DataFrame({s: f["close"] for s, f in frames.items()}))


def _assert_rows_equal(frames: dict[str, pd.DataFrame], peers: Peers | None) -> int:
    """Compare every strategy's batch rows with its single-frame arrays; returns the number of arrays compared."""
    compared = 0
    groups = batch_groups(frames)
    assert sorted(s for g in groups for s in g) == sorted(frames)
    for name, strategy in build_registry().items():
        for indicators in (False, True):
            for group in groups:
                batch = strategy.signal_arrays_many([frames[s] for s in group], peers, indicators=indicators)
                assert len(batch) == len(group)
                for symbol, arrays in zip(group, batch, strict=True):
                    alone = strategy.signal_arrays(frames[symbol], peers, indicators=indicators)
                    assert list(arrays) == list(alone), (name, symbol)
                    for column, values in alone.items():
                        got = arrays[column]
                        assert got.dtype == values.dtype, (name, symbol, column)
                        np.testing.assert_array_equal(got, values, err_msg=f"{name} {symbol} {column}", strict=True)
                        compared += 1
    return compared


def test_batch_rows_when_frames_share_dates_then_each_equals_the_symbols_own_signal_arrays() -> None:
    frames = _damaged(_synthetic())
    assert len(batch_groups(frames)) == 1  # every frame on the same dates: one stack
    assert _assert_rows_equal(frames, _peers(frames)) > 1000


def test_batch_rows_without_peers_then_benchmark_and_universe_strategies_hold_as_alone() -> None:
    frames = _synthetic(count=4, bars=300)
    _assert_rows_equal(frames, None)
    _assert_rows_equal(frames, Peers(benchmark=None, closes=None))


def test_batch_rows_on_the_bundled_bars_of_different_lengths_then_grouped_and_equal(
    real_bars: dict[str, pd.DataFrame], real_peers: Peers
) -> None:
    frames = dict(real_bars)
    # two more rows on SPY's dates, so SPY's group is a real stack; the originals keep their own lengths
    frames["SPY2"] = real_bars["SPY"] * 1.01
    frames["SPY3"] = real_bars["SPY"].iloc[::-1].set_axis(real_bars["SPY"].index)
    groups = batch_groups(frames)
    assert any(len(g) >= 3 for g in groups)
    _assert_rows_equal(frames, real_peers)


@pytest.mark.parametrize("seed", ["first", "sma"])
def test_wilder_rows_when_nan_patterns_differ_then_each_row_equals_the_1d_kernel(seed: str) -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(10.0, 2.0, size=(9, 80))
    x[1, :3] = np.nan  # leading, shorter than the window
    x[2, :30] = np.nan  # leading, longer than the window
    x[3, 40] = np.nan  # a hole
    x[4, :] = np.nan  # nothing finite
    x[5, :79] = np.nan  # one finite value, the last
    x[6, :14] = np.nan  # leading, exactly the window
    x[7, 0] = np.inf  # not finite at the start
    for length in (1, 2, 14, 79, 80, 81):
        rows = ind.wilder(x, length, seed=seed)
        for r in range(x.shape[0]):
            np.testing.assert_array_equal(rows[r], ind.wilder(x[r], length, seed=seed), strict=True)


def test_bar_data_stack_when_built_then_rows_are_each_frames_prices_and_atr_rows_match() -> None:
    frames = _synthetic(count=3, bars=120)
    data = BarData.stack(list(frames.values()))
    assert data.shape == (3, 120) and len(data) == 120
    for row, frame in enumerate(frames.values()):
        single = BarData(frame)
        np.testing.assert_array_equal(data.close[row], single.close, strict=True)
        np.testing.assert_array_equal(data.atr(14)[row], single.atr(14), strict=True)


def test_context_rows_when_frames_share_dates_then_each_equals_the_symbols_own_context_arrays() -> None:
    frames = _damaged(_synthetic())
    names = list(frames)
    many = context_arrays_many([frames[s] for s in names])
    for symbol, arrays in zip(names, many, strict=True):
        alone = context_arrays(frames[symbol])
        assert list(arrays) == list(alone)
        for column, values in alone.items():
            assert arrays[column].dtype == values.dtype, (symbol, column)
            np.testing.assert_array_equal(arrays[column], values, err_msg=f"{symbol} {column}", strict=True)

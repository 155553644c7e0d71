"""Signal and context columns computed as numpy arrays, without a frame, are bit for bit the frames' columns.

``Strategy.signal_arrays`` (alone, or several strategies sharing one ``BarData`` and its ATRs, as the shadow ledger
computes them), ``strategies.frames.signal_arrays`` over the shared cache and ``context_arrays`` are compared with
``Strategy.compute`` and ``context_frame`` on the bundled bars and on synthetic bars."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from core.data.synthetic import SyntheticProvider
from core.kernel.calendar import MarketCalendar
from core.kernel.domain import SymbolBars
from core.kernel.frame_cache import FrameCache
from strategies.base import Peers
from strategies.common import BarData
from strategies.context import REGIMES, context_arrays, context_frame
from strategies.frames import signal_arrays, signal_frame
from strategies.registry import build_registry


def _synthetic() -> tuple[dict[str, pd.DataFrame], Peers]:
    calendar = MarketCalendar()
    provider = SyntheticProvider(11, date(2012, 1, 3), 900, calendar=calendar)
    symbols = ["SPY", "AAA", "BBB", "CCC"]
    end = calendar.session(calendar.sessions_from(date(2012, 1, 3), 900)[-1].date()).close_utc
    frames = dict(provider.history(symbols, end=end).frames)
    return frames, Peers(benchmark=frames["SPY"], closes=pd.DataFrame({s: f["close"] for s, f in frames.items()}))


def _universes(real_bars: dict[str, pd.DataFrame], real_peers: Peers) -> list[tuple[dict[str, pd.DataFrame], Peers]]:
    return [(real_bars, real_peers), _synthetic()]


def _same(array: np.ndarray, column: pd.Series, what: str) -> None:
    expected = column.to_numpy()
    assert array.dtype == expected.dtype, what
    np.testing.assert_array_equal(array, expected, err_msg=what, strict=True)


def test_signal_arrays_when_computed_alone_or_sharing_bar_data_then_they_are_the_compute_frame_columns(
    real_bars: dict[str, pd.DataFrame], real_peers: Peers
) -> None:
    for frames, peers in _universes(real_bars, real_peers):
        registry = build_registry()
        for symbol, bars in frames.items():
            shared = BarData(bars)  # one per frame, for every strategy (the shadow ledger's use)
            for name, strategy in registry.items():
                frame = strategy.compute(bars, peers)
                alone = strategy.signal_arrays(bars, peers)
                assert list(alone) == [str(c) for c in frame.columns]
                for column, values in alone.items():
                    _same(values, frame[column], f"{symbol} {name} {column}")
                lean = strategy.signal_arrays(bars, peers, data=shared, indicators=False)
                assert list(lean) == ["action", "strength", "stop", "target"]
                for column, values in lean.items():
                    _same(values, frame[column], f"{symbol} {name} {column} (shared bar data)")


def test_signal_arrays_when_the_backtest_drops_the_targets_then_they_are_its_compute_frame_columns(
    real_bars: dict[str, pd.DataFrame], real_peers: Peers
) -> None:
    from core.backtest.registry import without_targets

    bars = real_bars["IBM"]
    for name, strategy in without_targets(build_registry()).items():
        frame = strategy.compute(bars, real_peers)
        assert frame["target"].isna().all()
        arrays = strategy.signal_arrays(bars, real_peers)
        assert list(arrays) == [str(c) for c in frame.columns]
        for column, values in arrays.items():
            _same(values, frame[column], f"{name} {column}")


def test_signal_arrays_when_returned_then_no_indicator_shares_memory_with_the_bars_or_another_strategy(
    real_bars: dict[str, pd.DataFrame], real_peers: Peers
) -> None:
    bars = real_bars["AAPL"]
    shared = BarData(bars)
    columns = [
        values
        for strategy in build_registry().values()
        for values in strategy.signal_arrays(bars, real_peers, data=shared).values()
    ]
    for k, values in enumerate(columns):
        for other in (shared.close, shared.high, shared.low, *columns[k + 1 :]):
            assert not np.shares_memory(values, other)


def test_signal_frame_when_the_arrays_were_computed_first_then_it_equals_the_computed_frame(
    real_bars: dict[str, pd.DataFrame], real_peers: Peers
) -> None:
    for frames, peers in _universes(real_bars, real_peers):
        registry = build_registry()
        cache = FrameCache()
        for symbol, bars in frames.items():
            sb = SymbolBars(symbol, bars, len(bars), "test")
            for strategy in registry.values():
                arrays = signal_arrays(cache, sb, strategy, peers)
                assert signal_arrays(cache, sb, strategy, peers) is arrays  # computed once per frame
                pd.testing.assert_frame_equal(
                    signal_frame(cache, sb, strategy, peers), strategy.compute(bars, peers), check_exact=True
                )


def test_signal_arrays_when_the_frame_was_computed_first_then_they_are_read_from_it(
    real_bars: dict[str, pd.DataFrame], real_peers: Peers
) -> None:
    registry = build_registry()
    cache = FrameCache()
    sb = SymbolBars("IBM", real_bars["IBM"], len(real_bars["IBM"]), "test")
    strategy = registry["breakout"]
    frame = signal_frame(cache, sb, strategy, real_peers)
    arrays = signal_arrays(cache, sb, strategy, lambda: pytest.fail("peers built although the frame is cached"))
    for column in frame.columns:
        _same(arrays[str(column)], frame[column], str(column))


def _old_context_regime(frame: pd.DataFrame) -> pd.Categorical:
    """The regime as context_frame derived it before the arrays: np.select over strings, then a categorical."""
    from strategies.context import DEFAULT_CONTEXT_RULES as rules

    with np.errstate(invalid="ignore"):
        volatility, long_volatility = frame["volatility"].to_numpy(), frame["long_volatility"].to_numpy()
        volatile = (volatility >= rules.volatile_level) | (volatility >= rules.volatile_ratio * long_volatility)
        trending = frame["trend_strength"].to_numpy() >= rules.trend_threshold
        up = frame["plus_di"].to_numpy() >= frame["minus_di"].to_numpy()
    regime = np.select(
        [volatile, trending & up, trending], ["volatile", "trending_up", "trending_down"], default="ranging"
    )
    return pd.Categorical(regime, categories=list(REGIMES))


def test_context_arrays_when_computed_then_they_are_the_context_frame_columns_and_the_same_regimes(
    real_bars: dict[str, pd.DataFrame], real_peers: Peers
) -> None:
    for frames, _peers in _universes(real_bars, real_peers):
        for symbol, bars in frames.items():
            frame = context_frame(bars)
            arrays = context_arrays(bars)
            for column in frame.columns:
                if column != "regime":
                    _same(arrays[str(column)], frame[column], f"{symbol} {column}")
            pd.testing.assert_extension_array_equal(frame["regime"].array, _old_context_regime(frame))
            assert list(arrays["regime"]) == [str(r) for r in frame["regime"]]
            assert set(arrays["regime"]) <= set(REGIMES)

"""Signal frames over the shared frame cache: computed once per (symbol, strategy, bars frame), peers built lazily."""

from __future__ import annotations

import pandas as pd
from pandas.testing import assert_frame_equal

from core.kernel.domain import SymbolBars
from core.kernel.frame_cache import FrameCache
from strategies.base import Peers
from strategies.frames import PeersMemo, peers_of, signal_frame, signal_frame_key
from strategies.registry import build_registry
from tests.strategies.helpers import random_universe


def _universe() -> dict[str, SymbolBars]:
    frames = random_universe(300, 3, seed=11)
    return {symbol: SymbolBars(symbol, frame, len(frame), "test") for symbol, frame in frames.items()}


def test_signal_frame_when_read_twice_then_it_is_the_strategy_frame_computed_once_under_its_key() -> None:
    bars = _universe()
    symbol = next(iter(bars))
    strategy = build_registry()["relative_strength"]
    cache = FrameCache()
    asked: list[int] = []

    def peers() -> Peers:
        asked.append(1)
        return peers_of(bars, symbol)

    first = signal_frame(cache, bars[symbol], strategy, peers)
    again = signal_frame(cache, bars[symbol], strategy, peers)

    assert again is first and asked == [1]  # the peers are built for the one computation only
    assert cache.peek(symbol, signal_frame_key(strategy.name), bars[symbol].frame) is first
    assert_frame_equal(first, strategy.compute(bars[symbol].frame, peers_of(bars, symbol)))


def test_peers_memo_when_the_frames_are_the_same_objects_then_the_peers_are_reused_else_rebuilt() -> None:
    bars = _universe()
    benchmark = next(iter(bars))
    memo = PeersMemo(benchmark)

    first = memo(bars)
    assert memo(dict(bars)) is first  # another mapping of the same frames
    assert first.benchmark is bars[benchmark].frame
    assert list(first.closes.columns) == list(bars)

    changed = dict(bars)
    changed[benchmark] = SymbolBars(benchmark, bars[benchmark].frame.copy(), len(bars[benchmark].frame), "test")
    rebuilt = memo(changed)
    assert rebuilt is not first and rebuilt.benchmark is changed[benchmark].frame


def test_peers_of_when_the_benchmark_or_the_bars_are_missing_then_those_peers_are_none() -> None:
    bars = _universe()

    without_benchmark = peers_of(bars, "SPY")
    empty = peers_of({}, "SPY")

    assert without_benchmark.benchmark is None and isinstance(without_benchmark.closes, pd.DataFrame)
    assert empty.benchmark is None and empty.closes is None

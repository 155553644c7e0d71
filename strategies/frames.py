"""Signal frames over the shared frame cache: one computation per (symbol, strategy, bars frame), read by every agent.

The runtime owns one :class:`~core.kernel.frame_cache.FrameCache` (the shared read model). The Strategy agent reads a
strategy's signal frame through :func:`signal_frame` to take today's signal, and the Quant agent reads the same frame,
under the same key :func:`signal_frame_key`, to derive the strategy's track record: the frame is computed once, by
whichever asks first, and never twice. Nothing here reads a clock, a file or the network.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping

import numpy as np
import pandas as pd

from core.kernel.domain import SymbolBars
from core.kernel.frame_cache import FrameCache
from strategies.base import Peers, Strategy
from strategies.common import assemble_frame


def signal_frame_key(strategy_name: str) -> Hashable:
    """The cache key (per symbol) of a strategy's full signal frame."""
    return ("signals", strategy_name)


def peers_of(bars: Mapping[str, SymbolBars], benchmark_symbol: str) -> Peers:
    """The cross-sectional inputs of a batch: the benchmark's bars (None when it has no usable bars) and every
    symbol's closes side by side (None for an empty batch)."""
    bench = bars.get(benchmark_symbol)
    closes = pd.DataFrame({s: sb.frame["close"] for s, sb in bars.items()}) if bars else None
    return Peers(benchmark=bench.frame if bench is not None else None, closes=closes)


class PeersMemo:
    """:func:`peers_of`, computed again only when the batch's frames are not the same objects as last time."""

    def __init__(self, benchmark_symbol: str = "SPY") -> None:
        self._benchmark = benchmark_symbol
        self._key: tuple[int, ...] | None = None
        self._peers: Peers | None = None

    @property
    def benchmark_symbol(self) -> str:
        return self._benchmark

    def __call__(self, bars: Mapping[str, SymbolBars]) -> Peers:
        key = tuple(id(sb.frame) for sb in bars.values())
        if key != self._key or self._peers is None:
            self._peers = peers_of(bars, self._benchmark)
            self._key = key
        return self._peers


def signal_arrays_key(strategy_name: str) -> Hashable:
    """The cache key (per symbol) of a strategy's signal columns computed as arrays (see :func:`signal_arrays`)."""
    return ("signal_arrays", strategy_name)


def signal_frame(
    cache: FrameCache, sb: SymbolBars, strategy: Strategy, peers: Peers | Callable[[], Peers]
) -> pd.DataFrame:
    """``strategy``'s signal frame over ``sb``'s whole bars frame, from ``cache`` or computed once and kept there.

    ``peers`` may be a callable: it is then called only when the frame has to be computed (a reader of frames that
    another agent has already computed never builds the universe's closes). When the columns were computed as arrays
    (:func:`signal_arrays`), the frame is assembled from them rather than computed again."""

    def compute() -> pd.DataFrame:
        arrays = cache.peek(sb.symbol, signal_arrays_key(strategy.name), sb.frame)
        if arrays is not None:
            return assemble_frame(sb.frame.index, pd.Index(list(arrays)), list(arrays.values()))
        return strategy.compute(sb.frame, peers() if callable(peers) else peers)

    return cache.get(sb.symbol, signal_frame_key(strategy.name), sb.frame, compute)


def signal_arrays(
    cache: FrameCache, sb: SymbolBars, strategy: Strategy, peers: Peers | Callable[[], Peers]
) -> dict[str, np.ndarray]:
    """``strategy``'s signal frame over ``sb``'s bars as numpy arrays (column name -> array), computed once per frame
    and cached: read from the cached frame when another agent computed it first, else computed as arrays
    (:meth:`Strategy.signal_arrays`, no pandas per column); :func:`signal_frame` then assembles its frame from them."""
    cached = cache.peek(sb.symbol, signal_frame_key(strategy.name), sb.frame)
    if cached is not None:
        return {str(c): cached[c].to_numpy() for c in cached.columns}
    return cache.get(
        sb.symbol,
        signal_arrays_key(strategy.name),
        sb.frame,
        lambda: strategy.signal_arrays(sb.frame, peers() if callable(peers) else peers),
    )

"""Signal frames over the shared frame cache: one computation per (symbol, strategy, bars frame), read by every agent.

The runtime owns one :class:`~core.kernel.frame_cache.FrameCache` (the shared read model). The Strategy agent reads a
strategy's signal frame through :func:`signal_frame` to take today's signal, and the Quant agent reads the same frame,
under the same key :func:`signal_frame_key`, to derive the strategy's track record: the frame is computed once, by
whichever asks first, and never twice. Nothing here reads a clock, a file or the network.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping

import pandas as pd

from core.kernel.domain import SymbolBars
from core.kernel.frame_cache import FrameCache
from strategies.base import Peers, Strategy


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


def signal_frame(
    cache: FrameCache, sb: SymbolBars, strategy: Strategy, peers: Peers | Callable[[], Peers]
) -> pd.DataFrame:
    """``strategy``'s signal frame over ``sb``'s whole bars frame, from ``cache`` or computed once and kept there.

    ``peers`` may be a callable: it is then called only when the frame has to be computed (a reader of frames that
    another agent has already computed never builds the universe's closes)."""

    def compute() -> pd.DataFrame:
        return strategy.compute(sb.frame, peers() if callable(peers) else peers)

    return cache.get(sb.symbol, signal_frame_key(strategy.name), sb.frame, compute)

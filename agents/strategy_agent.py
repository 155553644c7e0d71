"""Strategy agent: picks a registered strategy per symbol and computes its signal at the decision time.

Signals are deterministic code. The choice of strategy is made by the deterministic, context-aware selector; an LLM
selector (when configured) may choose instead, but anything it returns outside the closed set is an abstention that
falls back to the deterministic choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from core.domain import Action, BarsBatch, Decision, Signal, SymbolBars, frozen_map, session_timestamp
from core.events import DataReady, SignalsReady
from core.frame_cache import FrameCache
from strategies.base import ACTION_BY_CODE, Peers, Strategy
from strategies.context import MarketContext, context_frame
from strategies.selector import DeterministicSelector


@dataclass(frozen=True, slots=True)
class _Columns:
    """A computed frame's columns as numpy arrays: reading one row costs microseconds, not a pandas row lookup."""

    index: pd.DatetimeIndex
    arrays: dict[str, np.ndarray]

    @classmethod
    def of(cls, frame: pd.DataFrame) -> "_Columns":
        return cls(frame.index, {str(c): frame[c].to_numpy() for c in frame.columns})


def _context_at(symbol: str, ctx: _Columns, i: int) -> MarketContext:
    """Row ``i`` of a cached (causal) context frame as a :class:`MarketContext`."""
    a = ctx.arrays
    return MarketContext(
        symbol=symbol,
        volatility=float(a["volatility"][i]),
        trend_strength=float(a["trend_strength"][i]),
        volume_ratio=float(a["volume_ratio"][i]),
        regime=str(a["regime"][i]),
        as_of=session_timestamp(ctx.index[i]),
    )


def _signal_at(strategy: Strategy, symbol: str, cols: _Columns, i: int, price: float) -> Signal:
    """Row ``i`` of a cached signal frame as a :class:`Signal` (same result as ``strategies.base.signal_at``)."""
    a = cols.arrays
    action = ACTION_BY_CODE[int(a["action"][i])]
    indicators = {}
    for name, values in a.items():
        if name.startswith("ind_"):
            value = values[i]
            if value == value:  # not NaN
                indicators[name[4:]] = float(value)
    stop, target = float(a["stop"][i]), float(a["target"][i])
    return Signal(
        symbol=symbol,
        strategy=strategy.name,
        action=action,
        strength=float(min(max(a["strength"][i], 0.0), 1.0)) if action is not Action.HOLD else 0.0,
        price=price,
        as_of=session_timestamp(cols.index[i]),
        stop=stop if stop == stop else None,
        target=target if target == target else None,
        indicators=indicators,
        reason=strategy.reason(action, indicators),
    )


class StrategyAgent:
    name = "strategy"

    def __init__(
        self,
        registry: Mapping[str, Strategy],
        selector: DeterministicSelector,
        *,
        benchmark_symbol: str = "SPY",
        cache: FrameCache | None = None,
    ) -> None:
        self._registry = registry
        self._selector = selector
        self._benchmark = benchmark_symbol
        self._cache = cache or FrameCache()
        self._peers_key: tuple[int, ...] | None = None
        self._peers: Peers | None = None

    @property
    def registry(self) -> Mapping[str, Strategy]:
        return self._registry

    def signal_frame(self, sb: SymbolBars, strategy: Strategy, peers: Peers) -> pd.DataFrame:
        return self._cache.get(sb.symbol, ("signals", strategy.name), sb.frame, lambda: strategy.compute(sb.frame, peers))

    def signal_frame_for(self, batch: BarsBatch, symbol: str, strategy_name: str) -> pd.DataFrame:
        """The cached signal frame of ``strategy_name`` over ``symbol``'s bars in ``batch``."""
        return self.signal_frame(batch.bars[symbol], self._registry[strategy_name], self._peers_for(batch.bars))

    def _peers_for(self, bars: Mapping[str, SymbolBars]) -> Peers:
        key = tuple(id(sb.frame) for sb in bars.values())
        if key != self._peers_key or self._peers is None:
            bench = bars.get(self._benchmark)
            closes = pd.DataFrame({s: sb.frame["close"] for s, sb in bars.items()}) if bars else None
            self._peers = Peers(benchmark=bench.frame if bench is not None else None, closes=closes)
            self._peers_key = key
        return self._peers

    def on_data(self, event: DataReady) -> SignalsReady:
        batch = event.batch
        assert batch is not None
        peers = self._peers_for(batch.bars)
        signals: dict[str, Signal] = {}
        decisions: list[Decision] = []
        has_benchmark = peers.benchmark is not None
        has_universe = peers.closes is not None and peers.closes.shape[1] > 1
        for symbol, sb in batch.bars.items():
            i = sb.end - 1
            ctx = self._cache.get(symbol, "context", sb.frame, lambda sb=sb: _Columns.of(context_frame(sb.frame)))
            context = _context_at(symbol, ctx, i)
            name, why = self._selector.choose(
                context, sb.end, benchmark_available=has_benchmark, universe_available=has_universe
            )
            strategy = self._registry[name]
            cols = self._cache.get(symbol, ("signal_columns", name), sb.frame, lambda: _Columns.of(self.signal_frame(sb, strategy, peers)))
            signal = _signal_at(strategy, symbol, cols, i, sb.last_close)
            signals[symbol] = signal
            decisions.append(
                Decision(
                    "strategy",
                    symbol,
                    signal.action.value,
                    f"selected {name} ({why}); {signal.reason}",
                    {
                        "context": context.as_dict(),
                        "selector": "deterministic",
                        "indicators": dict(signal.indicators),
                        "strength": signal.strength,
                        "stop": signal.stop,
                        "target": signal.target,
                        "price": signal.price,
                    },
                    strategy=name,
                )
            )
        for symbol, reason in batch.rejected.items():
            decisions.append(Decision("strategy", symbol, "skip", f"no usable data: {reason}", {}))
        return SignalsReady(
            iteration_id=event.iteration_id, as_of=event.as_of, previous=event, signals=frozen_map(signals), decisions=tuple(decisions)
        )

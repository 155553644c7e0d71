"""Strategy agent: picks a registered strategy per symbol and computes its signal at the decision time.

Signals are deterministic code. The choice of strategy is made by the deterministic, context-aware selector; an LLM
selector (when configured) may choose instead, but anything it returns outside the closed set is an abstention that
falls back to the deterministic choice.
"""

from __future__ import annotations

from typing import Mapping

import pandas as pd

from core.domain import BarsBatch, Decision, Signal, SymbolBars, frozen_map
from core.events import DataReady, SignalsReady
from core.frame_cache import FrameCache
from strategies.base import Peers, Strategy, signal_at
from strategies.context import context_frame, context_at
from strategies.selector import DeterministicSelector


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
            ctx_frame = self._cache.get(symbol, "context", sb.frame, lambda sb=sb: context_frame(sb.frame))
            context = context_at(symbol, ctx_frame, i)
            name, why = self._selector.choose(
                context, available_history=sb.end, has_benchmark=has_benchmark, has_universe=has_universe
            )
            strategy = self._registry[name]
            frame = self.signal_frame(sb, strategy, peers)
            signal = signal_at(strategy, symbol, frame, i, sb.last_close)
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
        return SignalsReady(
            iteration_id=event.iteration_id, as_of=event.as_of, previous=event, signals=frozen_map(signals), decisions=tuple(decisions)
        )

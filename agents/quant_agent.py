"""Quant agent: turns a signal's strength into a validated confidence using the strategy's own track record.

Hit rate: over the last ``lookback_signals`` non-HOLD signals of the chosen strategy on this symbol whose outcome is
already known at the decision time (signal at bar *i*, outcome at bar *i + horizon* <= *t*), a BUY wins when the
close ``horizon`` bars later is higher, a SELL when it is lower. The rate is shrunk toward 1/2 with a Beta(1, 1)
prior, ``(wins + 1) / (n + 2)``, so a short record moves confidence little.

    confidence = clip(2 × hit_rate × (0.5 + 0.5 × strength), 0, 1)

A coin-flip record keeps confidence between 0.5 (weakest signal) and 1.0 (strongest); a poor one lowers it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.domain import Action, Decision, ValidatedSignal, frozen_map
from core.events import SignalsReady, ValidatedReady
from core.frame_cache import FrameCache
from agents.strategy_agent import StrategyAgent


@dataclass(frozen=True, slots=True)
class _Outcomes:
    signal_idx: np.ndarray  # positions of non-HOLD signals
    known_at: np.ndarray  # position at which each outcome is known
    win: np.ndarray  # bool


class QuantAgent:
    name = "quant"

    def __init__(self, strategy_agent: StrategyAgent, *, horizon: int = 10, lookback_signals: int = 20, cache: FrameCache | None = None) -> None:
        if horizon < 1 or lookback_signals < 1:
            raise ValueError("horizon and lookback_signals must be positive")
        self._strategies = strategy_agent
        self._horizon = horizon
        self._lookback = lookback_signals
        self._cache = cache or FrameCache()

    def _outcomes(self, signal_frame, close: np.ndarray) -> _Outcomes:
        actions = signal_frame["action"].to_numpy()
        idx = np.flatnonzero(actions != 0)
        known = idx + self._horizon
        valid = known < len(close)
        idx, known = idx[valid], known[valid]
        forward = close[known] / close[idx] - 1.0
        win = np.where(actions[idx] > 0, forward > 0, forward < 0)
        return _Outcomes(idx, known, win)

    def hit_rate(self, outcomes: _Outcomes, t: int) -> tuple[float, int, int]:
        n_known = int(np.searchsorted(outcomes.known_at, t, side="right"))
        # known_at is increasing because signal_idx is; the last `lookback` known outcomes
        start = max(0, n_known - self._lookback)
        wins = int(outcomes.win[start:n_known].sum())
        n = n_known - start
        return (wins + 1) / (n + 2), wins, n

    def on_signals(self, event: SignalsReady) -> ValidatedReady:
        batch = event.previous.batch if event.previous is not None else None
        assert batch is not None
        validated: dict[str, ValidatedSignal] = {}
        decisions: list[Decision] = []
        for symbol, signal in event.signals.items():
            if signal.action is Action.HOLD:
                decisions.append(Decision("quant", symbol, "skip", "signal is HOLD: nothing to validate", {}, strategy=signal.strategy))
                continue
            sb = batch.bars[symbol]
            frame = self._strategies.signal_frame_for(batch, symbol, signal.strategy)
            outcomes = self._cache.get(
                symbol, ("outcomes", signal.strategy), sb.frame, lambda: self._outcomes(frame, sb.frame["close"].to_numpy())
            )
            rate, wins, n = self.hit_rate(outcomes, sb.end - 1)
            confidence = float(np.clip(2.0 * rate * (0.5 + 0.5 * signal.strength), 0.0, 1.0))
            components = {"hit_rate": rate, "wins": wins, "signals": n, "strength": signal.strength, "horizon": self._horizon}
            reason = (
                f"{signal.strategy} {signal.action.value}: {wins}/{n} recent signals right over {self._horizon} bars "
                f"(shrunk hit rate {rate:.2f}), strength {signal.strength:.2f} -> confidence {confidence:.2f}"
            )
            validated[symbol] = ValidatedSignal(signal=signal, confidence=confidence, components=frozen_map(components), reason=reason)
            decisions.append(Decision("quant", symbol, "validated", reason, components, strategy=signal.strategy, confidence=confidence))
        for symbol, reason in batch.rejected.items():
            decisions.append(Decision("quant", symbol, "skip", f"no usable data: {reason}", {}))
        return ValidatedReady(
            iteration_id=event.iteration_id, as_of=event.as_of, previous=event, validated=frozen_map(validated), decisions=tuple(decisions)
        )

"""Trend and momentum strategies on a symbol's own bars.

All rules are *events*: a signal fires on the bar where the condition starts to hold, not on every bar where it
holds ("crosses above" = previous bar ``<=`` level and this bar ``>`` level; "crosses below" = previous ``>=`` and
this ``<``).  Bars with a NaN input cannot cross.
"""

from __future__ import annotations

from types import MappingProxyType

import numpy as np
from pydantic import Field, model_validator

from strategies import indicators as ind
from strategies.space import FloatRange, IntRange, LessThan, SearchSpace
from strategies.base import Peers
from strategies.common import BarData, BarStrategy, Evaluation, RiskParams, min_bars


class TrendFollowing(BarStrategy):
    """Moving-average crossover.

    BUY on the bar the fast SMA crosses above the slow SMA; SELL on the bar it crosses below.  ``fast=1`` makes the
    "fast average" the close itself (price crossing the slow average).
    Strength: excess = |close - slow SMA| / ATR, scale 2.
    min_history = max(slow, atr_length): the slow SMA exists from row slow-1 and a cross needs the row before.
    """

    name = "trend_following"
    description = "fast/slow simple-moving-average crossover (golden/death cross)"
    search_space = SearchSpace({"fast": IntRange(2, 100), "slow": IntRange(10, 300)}, (LessThan("fast", "slow"),))
    rules = MappingProxyType(
        {
            "BUY": "fast SMA crossed above slow SMA",
            "SELL": "fast SMA crossed below slow SMA",
        }
    )
    indicator_names = ("fast_sma", "slow_sma")

    class Params(RiskParams):
        fast: int = Field(50, ge=1, le=1000, description="fast SMA length (1 = the close itself)")
        slow: int = Field(200, ge=2, le=2000, description="slow SMA length")

        @model_validator(mode="after")
        def _fast_below_slow(self) -> TrendFollowing.Params:
            if self.fast >= self.slow:
                raise ValueError(f"fast ({self.fast}) must be smaller than slow ({self.slow})")
            return self

    @property
    def min_history(self) -> int:
        return min_bars(self.params.slow, self.params.atr_length)

    def evaluate(self, data: BarData, peers: Peers | None) -> Evaluation:
        p = self.params
        fast = ind.sma(data.close, p.fast)
        slow = ind.sma(data.close, p.slow)
        spread = fast - slow
        buy = ind.crossed_above(spread, 0.0)
        sell = ind.crossed_below(spread, 0.0)
        distance = np.abs(data.close - slow) / data.atr(p.atr_length)
        return Evaluation(buy, sell, distance, 2.0, {"fast_sma": fast, "slow_sma": slow})


class MomentumRotation(BarStrategy):
    """Time-series momentum.

    BUY on the bar the ``lookback``-day rate of change (percent) crosses above ``threshold``; SELL on the bar it
    crosses below.  Strength: excess = |ROC - threshold| (percentage points), scale 5.
    min_history = max(lookback + 1, atr_length).
    """

    name = "momentum_rotation"
    description = "rate-of-change momentum crossing a threshold"
    search_space = SearchSpace({"lookback": IntRange(5, 252), "threshold": FloatRange(-5.0, 20.0)})
    rules = MappingProxyType(
        {
            "BUY": "rate of change crossed above the threshold",
            "SELL": "rate of change crossed below the threshold",
        }
    )
    indicator_names = ("roc", "threshold")

    class Params(RiskParams):
        lookback: int = Field(126, ge=1, le=2000, description="rate-of-change window in bars")
        threshold: float = Field(0.0, ge=-100.0, le=1000.0, description="ROC level in percent")

    @property
    def min_history(self) -> int:
        return min_bars(self.params.lookback + 1, self.params.atr_length)

    def evaluate(self, data: BarData, peers: Peers | None) -> Evaluation:
        p = self.params
        momentum = ind.roc(data.close, p.lookback)
        buy = ind.crossed_above(momentum, p.threshold)
        sell = ind.crossed_below(momentum, p.threshold)
        threshold = np.full(data.shape, p.threshold)
        return Evaluation(buy, sell, np.abs(momentum - p.threshold), 5.0, {"roc": momentum, "threshold": threshold})


class Breakout(BarStrategy):
    """Donchian channel breakout against the *previous* ``length`` bars (the current bar is not in its channel).

    upper[t] = max(high[t-length .. t-1]), lower[t] = min(low[t-length .. t-1]).
    BUY on the bar the close crosses above ``upper`` (close[t] > upper[t] and close[t-1] <= upper[t-1]);
    SELL on the bar the close crosses below ``lower``.  Consecutive new highs after the breakout bar are not
    repeated BUYs.  Strength: excess = distance past the broken level / ATR, scale 0.5.
    min_history = max(length + 1, atr_length).
    """

    name = "breakout"
    description = "Donchian channel breakout of the previous N-day high/low"
    search_space = SearchSpace({"length": IntRange(5, 120)})
    rules = MappingProxyType(
        {
            "BUY": "close broke above the previous N-day high",
            "SELL": "close broke below the previous N-day low",
        }
    )
    indicator_names = ("upper", "lower")

    class Params(RiskParams):
        length: int = Field(20, ge=1, le=1000, description="Donchian channel length in bars")

    @property
    def min_history(self) -> int:
        return min_bars(self.params.length + 1, self.params.atr_length)

    def evaluate(self, data: BarData, peers: Peers | None) -> Evaluation:
        p = self.params
        upper = ind.shift(ind.rolling_max(data.high, p.length), 1)
        lower = ind.shift(ind.rolling_min(data.low, p.length), 1)
        close = data.close
        buy = ind.crossed_above(close, upper)
        sell = ind.crossed_below(close, lower)
        atr = data.atr(p.atr_length)
        excess = np.where(buy, close - upper, lower - close) / atr
        return Evaluation(buy, sell, excess, 0.5, {"upper": upper, "lower": lower})


class VolatilityBreakout(BarStrategy):
    """Range expansion measured in ATRs.

    move[t] = close[t] - close[t-1]; threshold[t] = k * ATR(length)[t-1] (the ATR known before the bar, so the
    bar's own range does not set its threshold).  BUY when move > threshold; SELL when move < -threshold.
    Each bar is judged on its own (a one-bar event, no crossing state); no signal while the ATR is 0.
    Strength: excess = (|move| - threshold) / ATR[t-1], scale 0.5.
    min_history = max(length, atr_length).
    """

    name = "volatility_breakout"
    description = "close moves more than k ATRs from the previous close"
    search_space = SearchSpace({"length": IntRange(5, 60), "k": FloatRange(0.25, 5.0)})
    rules = MappingProxyType(
        {
            "BUY": "close rose more than k ATRs above the previous close",
            "SELL": "close fell more than k ATRs below the previous close",
        }
    )
    indicator_names = ("move", "threshold")

    class Params(RiskParams):
        length: int = Field(14, ge=1, le=1000, description="ATR window of the breakout threshold")
        k: float = Field(1.0, gt=0.0, le=20.0, description="threshold in ATRs")

    @property
    def min_history(self) -> int:
        return min_bars(self.params.length, self.params.atr_length, 1)

    def evaluate(self, data: BarData, peers: Peers | None) -> Evaluation:
        p = self.params
        close = data.close
        move = close - ind.shift(close, 1)
        previous_atr = ind.shift(data.atr(p.length), 1)
        threshold = p.k * previous_atr
        known = previous_atr > 0.0
        buy = known & (move > threshold)
        sell = known & (move < -threshold)
        excess = (np.abs(move) - threshold) / previous_atr
        return Evaluation(buy, sell, excess, 0.5, {"move": move, "threshold": threshold})

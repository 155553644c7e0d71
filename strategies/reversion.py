"""Mean-reversion strategies: buy weakness past a band or oscillator level, sell strength past the opposite one.

Chosen semantics (the same for all three): signals are *crossings*, fired on the bar the close (or RSI) moves
past the level, not on every bar it stays past it.  "crosses below" = previous bar ``>=`` level and this bar
``<`` level; "crosses above" = previous ``<=`` and this ``>``.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from strategies import indicators as ind
from strategies.space import FloatRange, IntRange, SearchSpace
from strategies.base import Peers
from strategies.common import BarData, BarStrategy, Evaluation, RiskParams, StopParams, min_bars


class MeanReversion(BarStrategy):
    """RSI extremes (Wilder RSI, as pandas-ta).

    BUY on the bar RSI crosses below ``oversold``; SELL on the bar RSI crosses above ``overbought``.
    Strength: excess = points past the level (oversold - RSI, or RSI - overbought), scale 5.
    min_history = max(rsi_length + 1, atr_length).
    """

    name = "mean_reversion"
    description = "RSI crossing into oversold (buy) / overbought (sell)"
    search_space = SearchSpace(
        {"rsi_length": IntRange(2, 30), "oversold": FloatRange(5.0, 45.0), "overbought": FloatRange(55.0, 95.0)}
    )
    rules = MappingProxyType(
        {
            "BUY": "RSI crossed below the oversold level",
            "SELL": "RSI crossed above the overbought level",
        }
    )
    indicator_names = ("rsi",)

    class Params(RiskParams):
        rsi_length: int = Field(14, ge=2, le=1000, description="RSI window")
        oversold: float = Field(30.0, gt=0.0, lt=100.0, description="RSI level whose downward crossing is a BUY")
        overbought: float = Field(70.0, gt=0.0, lt=100.0, description="RSI level whose upward crossing is a SELL")

        @model_validator(mode="after")
        def _levels_ordered(self) -> MeanReversion.Params:
            if self.oversold >= self.overbought:
                raise ValueError(f"oversold ({self.oversold}) must be below overbought ({self.overbought})")
            return self

    @property
    def min_history(self) -> int:
        return min_bars(self.params.rsi_length + 1, self.params.atr_length)

    def evaluate(self, data: BarData, peers: Peers | None) -> Evaluation:
        p = self.params
        rsi = ind.rsi(data.close, p.rsi_length)
        buy = ind.crossed_below(rsi, p.oversold)
        sell = ind.crossed_above(rsi, p.overbought)
        excess = np.where(buy, p.oversold - rsi, rsi - p.overbought)
        return Evaluation(buy, sell, excess, 5.0, {"rsi": rsi})


class MovingAverageEnvelope(BarStrategy):
    """SMA envelope, traded as reversion.

    lower = SMA(length) * (1 - pct), upper = SMA(length) * (1 + pct).  BUY on the bar the close crosses below the
    lower band (stretched to the downside, expected to revert); SELL on the bar it crosses above the upper band.
    Strength: excess = distance past the band / ATR, scale 0.5.  min_history = max(length, atr_length).
    Target: the SMA itself (the reversion's aim); stop: ``stop_atr`` ATRs beyond the close.
    """

    name = "moving_average_envelope"
    description = "close crossing outside an SMA +/- pct envelope, traded back towards the average"
    search_space = SearchSpace({"length": IntRange(5, 100), "pct": FloatRange(0.01, 0.2)})
    rules = MappingProxyType(
        {
            "BUY": "close crossed below the lower envelope",
            "SELL": "close crossed above the upper envelope",
        }
    )
    indicator_names = ("sma", "upper", "lower")

    class Params(StopParams):
        length: int = Field(20, ge=1, le=1000, description="SMA window")
        pct: float = Field(0.05, gt=0.0, lt=1.0, description="envelope half-width as a fraction of the SMA")

    @property
    def min_history(self) -> int:
        return min_bars(self.params.length, self.params.atr_length)

    def evaluate(self, data: BarData, peers: Peers | None) -> Evaluation:
        p = self.params
        close = data.close
        mid = ind.sma(close, p.length)
        upper = mid * (1.0 + p.pct)
        lower = mid * (1.0 - p.pct)
        buy = ind.crossed_below(close, lower)
        sell = ind.crossed_above(close, upper)
        excess = np.where(buy, lower - close, close - upper) / data.atr(p.atr_length)
        return Evaluation(buy, sell, excess, 0.5, {"sma": mid, "upper": upper, "lower": lower}, target=mid)


class BollingerBands(BarStrategy):
    """Bollinger bands, traded as reversion.

    mid = SMA(length), bands = mid +/- std_dev * rolling std (divisor length - ddof; ddof 0 is Bollinger's
    population deviation, pandas-ta defaults to 1).  BUY on the bar the close crosses below the lower band; SELL on
    the bar it crosses above the upper band.  Strength: excess = distance past the band in standard deviations,
    scale 0.5.  min_history = max(length, atr_length).  Target: the middle band (the mean the close is expected to
    return to); stop: ``stop_atr`` ATRs beyond the close.
    """

    name = "bollinger_bands"
    description = "close crossing outside Bollinger bands, traded back towards the mean"
    search_space = SearchSpace({"length": IntRange(5, 100), "std_dev": FloatRange(0.5, 4.0)})
    rules = MappingProxyType(
        {
            "BUY": "close crossed below the lower Bollinger band",
            "SELL": "close crossed above the upper Bollinger band",
        }
    )
    indicator_names = ("mid", "upper", "lower", "percent_b")

    class Params(StopParams):
        length: int = Field(20, ge=2, le=1000, description="SMA / standard-deviation window")
        std_dev: float = Field(2.0, gt=0.0, le=10.0, description="band half-width in standard deviations")
        ddof: Literal[0, 1] = Field(0, description="0: population std (Bollinger), 1: sample std (pandas-ta default)")

    @property
    def min_history(self) -> int:
        return min_bars(self.params.length, self.params.atr_length)

    def evaluate(self, data: BarData, peers: Peers | None) -> Evaluation:
        p = self.params
        close = data.close
        mid = ind.sma(close, p.length)
        std = ind.rolling_std(close, p.length, p.ddof)
        upper = mid + p.std_dev * std
        lower = mid - p.std_dev * std
        buy = ind.crossed_below(close, lower)
        sell = ind.crossed_above(close, upper)
        excess = np.where(buy, lower - close, close - upper) / std
        percent_b = (close - lower) / (upper - lower)
        return Evaluation(
            buy, sell, excess, 0.5, {"mid": mid, "upper": upper, "lower": lower, "percent_b": percent_b}, target=mid
        )

"""Per-symbol risk features over a symbol's whole bars frame, memoised in the shared :class:`FrameCache`.

ATR (the strategies' :func:`strategies.indicators.atr`, Wilder smoothing: the one ATR of the project), the average
daily dollar volume (``adv_window`` sessions of close x volume) and the daily close-to-close returns. Each array is
computed once per frame object and read at the decision bar (``sb.end - 1``); the vectorised computations are causal,
so that equals computing on the visible rows. Each array has its own cache slot (the ATR one keyed by its period), so
the Risk agent's sizing and the Execution agent's trailing stops read the same ATR array, computed once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.kernel.domain import SymbolBars
from core.kernel.frame_cache import FrameCache
from strategies import indicators as ind

ATR_PERIOD = 14  # sessions of the risk ATR (stop distance, sizing, trailing stops)
ADV_WINDOW = 20  # sessions of the average daily dollar volume (the liquidity rule)


@dataclass(frozen=True, slots=True)
class SymbolFeatures:
    """The whole frame's arrays (index ``sb.end - 1`` is the decision bar)."""

    atr: np.ndarray
    adv: np.ndarray  # average daily dollar volume; NaN before ``adv_window`` sessions
    ret: np.ndarray  # daily close-to-close returns; NaN on the first row


def atr_array(cache: FrameCache, sb: SymbolBars, period: int = ATR_PERIOD) -> np.ndarray:
    def compute() -> np.ndarray:
        f = sb.frame
        high, low, close = (f[c].to_numpy(dtype=float) for c in ("high", "low", "close"))
        return ind.atr(high, low, close, period)

    return cache.get(sb.symbol, ("risk_atr", period), sb.frame, compute)


def adv_array(cache: FrameCache, sb: SymbolBars, window: int = ADV_WINDOW) -> np.ndarray:
    def compute() -> np.ndarray:
        f = sb.frame
        dollar_volume = (f["close"] * f["volume"]).rolling(window, min_periods=window).mean()
        return dollar_volume.to_numpy(dtype=float)

    return cache.get(sb.symbol, ("risk_adv", window), sb.frame, compute)


def returns_array(cache: FrameCache, sb: SymbolBars) -> np.ndarray:
    def compute() -> np.ndarray:
        return sb.frame["close"].pct_change(fill_method=None).to_numpy(dtype=float)

    return cache.get(sb.symbol, "risk_returns", sb.frame, compute)


def features(
    cache: FrameCache, sb: SymbolBars, atr_period: int = ATR_PERIOD, adv_window: int = ADV_WINDOW
) -> SymbolFeatures:
    return SymbolFeatures(
        atr=atr_array(cache, sb, atr_period), adv=adv_array(cache, sb, adv_window), ret=returns_array(cache, sb)
    )


def atr_at(cache: FrameCache, sb: SymbolBars, period: int = ATR_PERIOD) -> float:
    """The ATR at the decision bar (the entry stop and size, and the position manager's trailing stops)."""
    return float(atr_array(cache, sb, period)[sb.end - 1])


def adv_at(cache: FrameCache, sb: SymbolBars, window: int = ADV_WINDOW) -> float:
    """The average daily dollar volume at the decision bar; 0.0 before ``window`` sessions (NaN)."""
    adv = adv_array(cache, sb, window)[sb.end - 1]
    return float(adv) if adv == adv else 0.0


def returns_window(cache: FrameCache, sb: SymbolBars, window: int) -> pd.Series:
    """The last ``window`` daily returns up to the decision bar, indexed by session (the correlation rule)."""
    start = max(0, sb.end - window)
    return pd.Series(returns_array(cache, sb)[start : sb.end], index=sb.frame.index[start : sb.end])

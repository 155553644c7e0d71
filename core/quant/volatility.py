"""Realised volatility of a symbol, precomputed once per bars frame.

Volatility regime
-----------------
Realised volatility is the sample standard deviation of daily log returns, annualised by ``sqrt(252)``, over the
last ``vol_recent`` (20) and ``vol_long`` (252) returns ending at *t* (rolling, computed once per symbol and frame).
``vol_ratio = vol_recent / vol_long``; above ``vol_ratio_threshold`` (1.5) the market is in a high-volatility regime
and confidence is multiplied by ``high_vol_factor`` (0.75): the record was mostly earned in calmer conditions. With
less than ``vol_long + 1`` bars the ratio is ``None`` and no adjustment is made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.analytics.metrics import TRADING_DAYS_PER_YEAR


@dataclass(frozen=True, slots=True)
class VolatilityProfile:
    """Annualised realised volatility over the recent and the long window, ending at each bar (NaN before)."""

    recent: np.ndarray
    long: np.ndarray


def volatility_profile(close: np.ndarray, recent: int, long: int) -> VolatilityProfile:
    """Rolling sample std (ddof = 1) of daily log returns × sqrt(252); value at ``t`` uses returns up to ``t``."""
    log_returns = pd.Series(np.log(np.asarray(close, dtype=float))).diff()
    scale = math.sqrt(TRADING_DAYS_PER_YEAR)
    vol_recent = log_returns.rolling(recent, min_periods=recent).std().to_numpy() * scale
    vol_long = log_returns.rolling(long, min_periods=long).std().to_numpy() * scale
    return VolatilityProfile(vol_recent, vol_long)

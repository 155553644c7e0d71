"""Parameters of the Quant engine (see the other modules of :mod:`core.quant` for what each one does)."""

from __future__ import annotations

import math
from dataclasses import dataclass

# below this a standard deviation of returns is treated as zero (as in core.analytics.metrics)
ZERO_STD = 1e-12


@dataclass(frozen=True, slots=True)
class QuantConfig:
    """Parameters of the Quant agent (see the module docstring for what each one does)."""

    horizon: int = 10
    lookback_signals: int = 20
    min_record: int = 5
    negative_expectancy_factor: float = 0.8
    sharpe_floor: float = -0.3
    poor_sharpe_factor: float = 0.85
    max_drawdown_limit: float = 0.30
    deep_drawdown_factor: float = 0.85
    vol_recent: int = 20
    vol_long: int = 252
    vol_ratio_threshold: float = 1.5
    high_vol_factor: float = 0.75
    vif_window: int = 60
    vif_min_rows: int = 10
    vif_threshold: float = 10.0
    collinear_factor: float = 0.95

    def __post_init__(self) -> None:
        for name in ("horizon", "lookback_signals", "vol_recent", "vif_min_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"QuantConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.min_record < 0:
            raise ValueError(f"QuantConfig.min_record must be >= 0, got {self.min_record!r}")
        if self.vol_long <= self.vol_recent:
            raise ValueError(f"QuantConfig.vol_long ({self.vol_long}) must exceed vol_recent ({self.vol_recent})")
        if self.vif_window < 4:
            raise ValueError(f"QuantConfig.vif_window must be at least 4 rows, got {self.vif_window!r}")
        for name in (
            "negative_expectancy_factor",
            "poor_sharpe_factor",
            "deep_drawdown_factor",
            "high_vol_factor",
            "collinear_factor",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 < value <= 1.0):
                raise ValueError(f"QuantConfig.{name} must be in (0, 1], got {value!r}")
        for name in ("sharpe_floor", "max_drawdown_limit", "vol_ratio_threshold", "vif_threshold"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"QuantConfig.{name} must be finite, got {getattr(self, name)!r}")

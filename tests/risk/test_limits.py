from __future__ import annotations

import math

import pytest

from core.risk import RiskLimits


def test_limits_defaults_match_the_issue():
    limits = RiskLimits()
    assert (limits.risk_per_trade, limits.max_daily_loss, limits.max_weekly_drawdown) == (0.02, 0.05, 0.05)
    assert (limits.min_confidence, limits.max_shares, limits.max_position_pct) == (0.3, 1000, 0.20)
    assert (limits.stop_atr_multiple, limits.max_gross_exposure, limits.sector_cap) == (1.5, 1.0, 0.35)
    assert (limits.max_correlation, limits.correlation_lookback) == (0.8, 60)
    assert (limits.min_avg_dollar_volume, limits.max_spread_pct, limits.min_reward_risk) == (3_000_000, 0.01, 1.8)
    assert (limits.allow_fractional, limits.kelly_fraction, limits.kelly_min_trades) == (False, None, 20)
    assert limits.confidence_scaling == "linear"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("risk_per_trade", 0.0),
        ("risk_per_trade", 1.5),
        ("risk_per_trade", math.nan),
        ("max_daily_loss", -0.1),
        ("sector_cap", 0.0),
        ("max_gross_exposure", 0.0),
        ("max_shares", 0),
        ("stop_atr_multiple", -1.0),
        ("kelly_fraction", 0.0),
        ("kelly_min_trades", 0),
        ("confidence_scaling", "sigmoid"),
        ("correlation_lookback", 1),
        ("correlation_min_periods", 61),
        ("halt_multiple", 0.5),  # a halt below the reducing threshold makes no sense
    ],
)
def test_limits_when_invalid_value_then_value_error_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        RiskLimits(**{field: value})


def test_limits_halt_thresholds_are_multiples_of_the_reducing_limits():
    limits = RiskLimits(max_daily_loss=0.15, max_weekly_drawdown=0.2)
    assert limits.halt_daily_loss == pytest.approx(0.30)
    assert limits.halt_weekly_drawdown == pytest.approx(0.40)
    assert RiskLimits(halt_multiple=None).halt_daily_loss is None

"""Sizing worked by hand. Default limits unless a test says otherwise:
risk_per_trade 2%, stop 1.5 x ATR, linear confidence scaling (0.5 at min_confidence 0.3 -> 1.0 at 1.0),
max_shares 1000, max_position_pct 20%, max_gross_exposure 100%, sector_cap 35%."""

from __future__ import annotations

import math

import pytest

from core.risk import RiskLimits, RiskRule, confidence_scale, max_units, size_position

from tests.risk.factories import make_candidate, make_portfolio, position


def test_size_when_full_confidence_then_risk_amount_over_atr_stop_distance():
    # equity 100,000 x 2% = 2,000 at risk; confidence 1.0 -> scale 1.0
    # ATR 2.0 x 1.5 = stop distance 3.0 -> 2,000 / 3.0 = 666.67 -> 666 shares; stop 20 - 3 = 17
    # caps: 666 <= 1000 shares; 666 x 20 = 13,320 <= 20,000 (20%), <= cash 100,000, <= gross 100,000,
    # <= sector 35,000 -> nothing clips
    result = size_position(make_candidate(price=20.0, atr=2.0, confidence=1.0), make_portfolio(), RiskLimits())

    assert result.quantity == 666
    assert isinstance(result.quantity, int)
    assert result.risk_amount == 2_000.0
    assert result.stop_distance == 3.0
    assert result.stop_price == 17.0
    assert result.confidence_scale == 1.0
    assert result.kelly_fraction_used is None
    assert result.binding_rule == "risk"


@pytest.mark.parametrize(
    ("confidence", "scale", "quantity"),
    [
        # linear: scale = 0.5 + 0.5 x (c - 0.3) / 0.7
        (0.30, 0.50, 333),  # 2,000 x 0.50 = 1,000 / 3 = 333.3 -> 333
        (0.65, 0.75, 500),  # 2,000 x 0.75 = 1,500 / 3 = 500
        (1.00, 1.00, 666),  # 2,000 / 3 = 666.7 -> 666
    ],
)
def test_size_when_linear_confidence_scaling_then_half_risk_at_minimum_full_at_one(confidence, scale, quantity):
    result = size_position(make_candidate(confidence=confidence), make_portfolio(), RiskLimits())

    assert result.confidence_scale == pytest.approx(scale)
    assert result.quantity == quantity


def test_size_when_proportional_scaling_then_risk_times_confidence():
    # 2,000 x 0.6 = 1,200 / 3 = 400 shares
    limits = RiskLimits(confidence_scaling="proportional")
    result = size_position(make_candidate(confidence=0.6), make_portfolio(), limits)
    assert result.risk_amount == pytest.approx(1_200.0)
    assert result.quantity == 400


def test_size_when_scaling_none_then_confidence_ignored():
    result = size_position(make_candidate(confidence=0.4), make_portfolio(), RiskLimits(confidence_scaling="none"))
    assert result.quantity == 666


def test_confidence_scale_when_min_confidence_is_one_then_all_or_nothing():
    limits = RiskLimits(min_confidence=1.0)
    assert confidence_scale(1.0, limits) == 1.0
    assert confidence_scale(0.99, limits) == 0.0


def test_size_when_risk_quantity_above_max_shares_then_clipped_to_max_shares():
    # price 5, ATR 0.5 -> stop distance 0.75; 2,000 / 0.75 = 2,666.7 -> 2,666 -> max_shares 1,000
    # (1,000 x 5 = 5,000 is within 20,000 position cap, cash and sector)
    result = size_position(make_candidate(price=5.0, atr=0.5), make_portfolio(), RiskLimits())

    assert result.quantity == 1000
    assert result.binding_rule == "max_shares"
    assert result.checks["max_shares"]["quantity_before"] == 2666
    assert result.checks["max_shares"]["status"] == "clipped"


def test_size_when_position_value_above_max_position_pct_then_clipped():
    # price 100, ATR 2 -> 666 risk shares = 66,600 > 20% x 100,000 = 20,000 -> 20,000 / 100 = 200 shares
    result = size_position(make_candidate(price=100.0, atr=2.0), make_portfolio(), RiskLimits())

    assert result.quantity == 200
    assert result.binding_rule == "max_position_pct"
    assert result.checks["max_position_pct"]["limit_value"] == 20_000.0


def test_size_when_cash_short_then_clipped_to_cash_over_price():
    # equity 100,000 = cash 5,000 + positions 95,000 (energy 30k, financials 30k, health care 35k)
    # 666 x 20 = 13,320 > cash 5,000 -> floor(5,000 / 20) = 250 shares
    # gross cap raised to 150% so only cash binds: room 150,000 - 95,000 = 55,000 -> 2,750 shares
    portfolio = make_portfolio(
        cash=5_000.0,
        positions=[
            position("XOM", 30_000, "energy"),
            position("JPM", 30_000, "financials"),
            position("JNJ", 35_000, "health_care"),
        ],
    )
    result = size_position(make_candidate(), portfolio, RiskLimits(max_gross_exposure=1.5))

    assert portfolio.equity == 100_000.0
    assert result.quantity == 250
    assert result.binding_rule == "no_cash"


def test_size_when_gross_exposure_near_cap_then_clipped_to_remaining_room():
    # gross cap 50% x 100,000 = 50,000; held 40,000 -> room 10,000 / 20 = 500 shares (< 666)
    portfolio = make_portfolio(
        cash=60_000.0, positions=[position("XOM", 20_000, "energy"), position("JPM", 20_000, "financials")]
    )
    result = size_position(make_candidate(), portfolio, RiskLimits(max_gross_exposure=0.5))

    assert result.quantity == 500
    assert result.binding_rule == "gross_exposure"
    assert result.checks["gross_exposure"]["gross_exposure"] == 40_000.0


def test_size_when_sector_bucket_near_cap_then_clipped_to_remaining_room():
    # technology holds 30,000; cap 35% x 100,000 = 35,000 -> room 5,000 / 20 = 250 shares
    portfolio = make_portfolio(cash=70_000.0, positions=[position("MSFT", 30_000, "technology")])
    result = size_position(make_candidate(sector="technology"), portfolio, RiskLimits())

    assert result.quantity == 250
    assert result.binding_rule == "sector_cap"
    assert result.checks["sector_cap"]["bucket_exposure"] == 30_000.0


def test_size_when_sector_name_differs_in_case_then_same_bucket():
    portfolio = make_portfolio(cash=70_000.0, positions=[position("MSFT", 30_000, " Technology ")])
    result = size_position(make_candidate(sector="TECHNOLOGY"), portfolio, RiskLimits())
    assert result.quantity == 250


def test_size_when_several_caps_then_smallest_wins_and_each_clip_is_recorded():
    # price 5, ATR 0.5: 2,666 risk shares -> max_shares 1,000 -> cash 3,000 / 5 = 600 shares
    portfolio = make_portfolio(cash=3_000.0, positions=[position("XOM", 97_000, "energy")])
    result = size_position(make_candidate(price=5.0, atr=0.5), portfolio, RiskLimits(max_gross_exposure=2.0))

    assert result.quantity == 600
    assert result.binding_rule == "no_cash"
    assert result.checks["max_shares"]["status"] == "clipped"
    assert result.checks["no_cash"]["status"] == "clipped"
    assert result.checks["max_position_pct"]["status"] == "pass"
    assert any("max_shares clipped quantity 2666 -> 1000" in note for note in result.notes)


def test_size_when_fractional_allowed_then_floored_to_step():
    # 2,000 / 3 = 666.666666... -> floored to 1e-6 -> 666.666666
    result = size_position(make_candidate(), make_portfolio(), RiskLimits(allow_fractional=True))

    assert result.quantity == pytest.approx(666.666666, abs=1e-9)
    assert result.quantity * 3.0 <= 2_000.0


def test_size_when_one_share_costs_more_than_risk_then_zero_quantity():
    # price 5,000, ATR 2,000 -> stop distance 3,000 > risk 2,000 -> 0.67 -> 0 shares
    result = size_position(make_candidate(price=5_000.0, atr=2_000.0), make_portfolio(), RiskLimits())
    assert result.quantity == 0
    assert result.binding_rule == "zero_quantity"


@pytest.mark.parametrize("atr", [math.nan, 0.0, -1.0, math.inf])
def test_size_when_atr_invalid_then_zero_with_invalid_atr(atr):
    result = size_position(make_candidate(atr=atr), make_portfolio(), RiskLimits())
    assert result.quantity == 0
    assert result.binding_rule == RiskRule.INVALID_ATR
    assert result.stop_price is None


def test_size_when_stop_would_be_below_zero_then_invalid_atr():
    # price 20, ATR 14 -> stop distance 21 > price
    result = size_position(make_candidate(atr=14.0), make_portfolio(), RiskLimits())
    assert result.quantity == 0
    assert result.binding_rule == "invalid_atr"


def test_max_units_when_budget_exact_multiple_then_includes_it():
    limits = RiskLimits()
    assert max_units(300.0, 3.0, limits) == 100
    assert max_units(299.99, 3.0, limits) == 99
    assert max_units(0.0, 3.0, limits) == 0
    assert max_units(-5.0, 3.0, limits) == 0


def test_max_units_when_float_division_rounds_up_then_still_within_budget():
    # In floating point 425,457.6 / 93.92 == 4530.0 exactly, but 4530 x 93.92 == 425,457.60000000003 > 425,457.6:
    # a naive floor(budget / price) would overspend by a rounding error; max_units steps down to 4529.
    budget, unit = 425_457.6, 93.92
    assert budget / unit == 4530.0 and 4530 * unit > budget
    assert max_units(budget, unit, RiskLimits()) == 4529

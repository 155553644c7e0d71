"""Fractional Kelly, worked by hand.

p = wins / (wins + losses), b = mean win / mean |loss|, f* = p - (1 - p) / b
kelly = max(0, f*) x kelly_fraction x n / (n + kelly_min_trades), used only when n >= kelly_min_trades,
and the risk fraction is min(risk_per_trade, kelly).
"""

from __future__ import annotations

import math

import pytest

from core.kernel.domain import Denial
from core.risk import RiskLimits, TradingState, evaluate_entry, kelly_estimate, size_position

from tests.risk.factories import make_candidate, make_portfolio

HALF_KELLY = RiskLimits(kelly_fraction=0.5, kelly_min_trades=20)


def test_kelly_when_small_edge_then_kelly_lowers_the_risk():
    # 8 wins of +1.6R, 12 losses of -1R: n = 20, p = 8/20 = 0.4, b = 1.6 / 1 = 1.6
    # f* = 0.4 - 0.6 / 1.6 = 0.4 - 0.375 = 0.025; half Kelly 0.0125; shrink 20 / (20 + 20) = 0.5 -> 0.00625
    # 0.00625 < 2% -> risk 100,000 x 0.00625 = 625; stop 3.0 -> 625 / 3 = 208.3 -> 208 shares
    trades = [1.6] * 8 + [-1.0] * 12
    result = size_position(make_candidate(), make_portfolio(realized_trade_returns=trades), HALF_KELLY)

    assert result.kelly_fraction_used == pytest.approx(0.00625)
    assert result.risk_fraction == pytest.approx(0.00625)
    assert result.risk_amount == pytest.approx(625.0)
    assert result.quantity == 208
    kelly = result.checks["kelly"]
    assert kelly["win_rate"] == pytest.approx(0.4)
    assert kelly["payoff"] == pytest.approx(1.6)
    assert kelly["full_kelly"] == pytest.approx(0.025)
    assert kelly["shrinkage"] == pytest.approx(0.5)


def test_kelly_when_large_edge_then_capped_at_risk_per_trade():
    # 10 wins of +2R, 10 losses of -1R: p = 0.5, b = 2 -> f* = 0.5 - 0.5 / 2 = 0.25
    # x 0.5 x 20/40 = 0.0625 > 2% -> the per-trade risk caps it: 2,000 / 3 = 666 shares
    trades = [2.0] * 10 + [-1.0] * 10
    result = size_position(make_candidate(), make_portfolio(realized_trade_returns=trades), HALF_KELLY)

    assert result.kelly_fraction_used == pytest.approx(0.0625)
    assert result.risk_fraction == 0.02
    assert result.quantity == 666


def test_kelly_when_sample_below_min_trades_then_fixed_risk_used():
    trades = [-1.0] * 19  # only 19 trades < 20: not estimated, whatever they say
    result = size_position(make_candidate(), make_portfolio(realized_trade_returns=trades), HALF_KELLY)

    assert result.kelly_fraction_used is None
    assert result.quantity == 666
    assert result.checks["kelly"]["status"] == "not_applicable"


def test_kelly_when_negative_edge_then_entry_denied_by_kelly_rule():
    # 6 wins of +1R, 14 losses of -1R: p = 0.3, b = 1 -> f* = 0.3 - 0.7 = -0.4 -> 0 -> no risk
    trades = [1.0] * 6 + [-1.0] * 14
    decision = evaluate_entry(
        make_candidate(), make_portfolio(realized_trade_returns=trades), HALF_KELLY, TradingState.ACTIVE
    )

    assert isinstance(decision, Denial)
    assert decision.rule == "kelly"
    assert decision.values["full_kelly"] == pytest.approx(-0.4)
    assert decision.values["fraction"] == 0.0


def test_kelly_when_scratch_trades_then_they_count_in_n_but_not_in_the_win_rate():
    # [+2, -1, 0, 0] with kelly_min_trades 4, full Kelly: p = 1/2, b = 2 -> f* = 0.25;
    # shrink 4 / (4 + 4) = 0.5 -> 0.125
    estimate = kelly_estimate([2.0, -1.0, 0.0, 0.0], RiskLimits(kelly_fraction=1.0, kelly_min_trades=4))
    assert estimate.trades == 4
    assert estimate.win_rate == 0.5
    assert estimate.full_kelly == 0.25
    assert estimate.fraction == 0.125


def test_kelly_when_percent_returns_then_same_as_r_multiples_of_same_shape():
    # units do not matter: +3.2% / -2% has the same p and b as +1.6R / -1R
    r_multiples = kelly_estimate([1.6] * 8 + [-1.0] * 12, HALF_KELLY)
    percents = kelly_estimate([0.032] * 8 + [-0.02] * 12, HALF_KELLY)
    assert percents.fraction == pytest.approx(r_multiples.fraction)


def test_kelly_when_no_losses_then_full_kelly_is_win_rate():
    estimate = kelly_estimate([1.0] * 20, RiskLimits(kelly_fraction=0.5, kelly_min_trades=20))
    assert estimate.full_kelly == 1.0
    assert estimate.fraction == pytest.approx(0.25)  # 1 x 0.5 x 0.5


def test_kelly_when_disabled_then_not_applied():
    estimate = kelly_estimate([1.0, -1.0] * 50, RiskLimits())
    assert not estimate.applied
    assert estimate.fraction is None


def test_kelly_when_non_finite_trade_return_then_value_error():
    with pytest.raises(ValueError, match="finite"):
        kelly_estimate([1.0, math.nan], HALF_KELLY)

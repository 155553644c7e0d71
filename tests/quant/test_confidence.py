"""The confidence formula: base from hit rate and strength, then one multiplicative factor per check."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.quant import QuantConfig, VifResult, assess

CONFIG = QuantConfig()
NO_VIF = VifResult({}, 0, (), "no indicator features reported")


def _assess(
    *,
    n=20,
    wins=10,
    expectancy=None,
    sharpe=None,
    max_drawdown=None,
    vol_recent=None,
    vol_long=None,
    vif=NO_VIF,
    strength=0.0,
    config=CONFIG,
):
    return assess(
        config,
        n=n,
        wins=wins,
        expectancy=expectancy,
        sharpe=sharpe,
        max_drawdown=max_drawdown,
        vol_recent=vol_recent,
        vol_long=vol_long,
        vif=vif,
        strength=strength,
    )


@pytest.mark.parametrize(("strength", "expected"), [(0.0, 0.5), (0.5, 0.75), (1.0, 1.0)])
def test_base_when_there_is_no_record_then_hit_rate_is_one_half_and_strength_scales_it(strength, expected) -> None:
    result = _assess(n=0, wins=0, strength=strength)

    assert result.hit_rate == 0.5
    assert result.confidence == pytest.approx(expected)
    assert set(result.factors.values()) == {1.0} and result.flags == ()


def test_base_when_the_record_is_strong_then_it_is_clipped_before_the_factors_so_a_penalty_still_bites() -> None:
    # hit rate 19/22: 2 x 0.8636 x 1.0 = 1.727 -> clipped to 1, then x 0.75 for the high-volatility regime
    result = _assess(n=20, wins=18, strength=1.0, vol_recent=0.4, vol_long=0.2)

    assert result.base_raw == pytest.approx(2 * 19 / 22)
    assert result.vol_ratio == pytest.approx(2.0)
    assert result.confidence == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("kwargs", "factor", "value"),
    [
        ({"expectancy": -0.001}, "expectancy", 0.8),
        ({"expectancy": 0.0}, "expectancy", 1.0),
        ({"sharpe": -0.31}, "sharpe", 0.85),
        ({"sharpe": -0.29}, "sharpe", 1.0),
        ({"max_drawdown": 0.31}, "drawdown", 0.85),
        ({"max_drawdown": 0.30}, "drawdown", 1.0),
        ({"vol_recent": 0.31, "vol_long": 0.2}, "volatility", 0.75),
        ({"vol_recent": 0.30, "vol_long": 0.2}, "volatility", 1.0),
        ({"vif": VifResult({"a": 10.5, "b": 10.5}, 60, (), "ok")}, "vif", 0.95),
        ({"vif": VifResult({"a": 9.5, "b": 9.5}, 60, (), "ok")}, "vif", 1.0),
    ],
)
def test_each_check_when_its_threshold_is_crossed_then_its_factor_multiplies_the_base(kwargs, factor, value) -> None:
    result = _assess(n=20, wins=10, strength=0.0, **kwargs)  # hit rate 11/22 = 0.5, base 0.5

    assert result.factors[factor] == value
    assert all(v == 1.0 for k, v in result.factors.items() if k != factor)
    assert result.confidence == pytest.approx(0.5 * value)
    assert len(result.flags) == (value < 1.0)


def test_record_penalties_when_fewer_than_min_record_signals_are_known_then_they_do_not_apply() -> None:
    result = _assess(n=4, wins=0, expectancy=-0.05, sharpe=-2.0, max_drawdown=0.5)

    assert result.factors["expectancy"] == result.factors["sharpe"] == result.factors["drawdown"] == 1.0
    assert result.confidence == pytest.approx(2 * (1 / 6) * 0.5)  # only the shrunk hit rate speaks


def test_confidence_when_every_check_fails_then_it_is_the_base_times_all_factors_by_hand() -> None:
    result = _assess(
        n=20,
        wins=9,
        strength=0.6,
        expectancy=-0.01,
        sharpe=-0.4,
        max_drawdown=0.35,
        vol_recent=0.4,
        vol_long=0.2,
        vif=VifResult({"fast": 15.0, "slow": 15.0}, 60, (), "ok"),
    )

    base = 2 * (10 / 22) * (0.5 + 0.5 * 0.6)  # 0.72727
    assert result.confidence == pytest.approx(base * 0.8 * 0.85 * 0.85 * 0.75 * 0.95)
    assert result.confidence == pytest.approx(0.299509, abs=1e-6)
    assert len(result.flags) == 5


def test_config_when_a_factor_would_raise_confidence_then_it_is_refused() -> None:
    with pytest.raises(ValueError, match="high_vol_factor"):
        QuantConfig(high_vol_factor=1.2)
    with pytest.raises(ValueError, match="vol_long"):
        QuantConfig(vol_recent=30, vol_long=20)
    with pytest.raises(ValueError, match="horizon"):
        QuantConfig(horizon=0)


optional = lambda s: st.none() | s  # noqa: E731


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(0, 40),
    wins_share=st.floats(0, 1),
    strength=st.floats(0, 1),
    expectancy=optional(st.floats(-5, 5)),
    sharpe=optional(st.floats(-50, 50)),
    max_drawdown=optional(st.floats(0, 1)),
    vol_recent=optional(st.floats(0, 5)),
    vol_long=optional(st.floats(0, 5)),
    vif_max=optional(st.floats(1, 1e15)),
    factors=st.tuples(*[st.floats(0.01, 1.0)] * 5),
)
def test_confidence_when_inputs_are_random_then_it_stays_in_the_unit_interval_and_never_exceeds_the_base(
    n, wins_share, strength, expectancy, sharpe, max_drawdown, vol_recent, vol_long, vif_max, factors
) -> None:
    config = QuantConfig(
        negative_expectancy_factor=factors[0],
        poor_sharpe_factor=factors[1],
        deep_drawdown_factor=factors[2],
        high_vol_factor=factors[3],
        collinear_factor=factors[4],
    )
    vif = VifResult({"a": vif_max, "b": vif_max}, 60, (), "ok") if vif_max is not None else NO_VIF
    wins = int(round(wins_share * n))

    result = _assess(
        n=n,
        wins=wins,
        strength=strength,
        expectancy=expectancy,
        sharpe=sharpe,
        max_drawdown=max_drawdown,
        vol_recent=vol_recent,
        vol_long=vol_long,
        vif=vif,
        config=config,
    )

    assert 0.0 <= result.confidence <= 1.0
    assert result.confidence <= min(result.base_raw, 1.0) + 1e-15
    assert result.confidence == pytest.approx(min(result.base_raw, 1.0) * math.prod(result.factors.values()))

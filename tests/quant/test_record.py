"""The precomputed track record, volatility profile and VIF of the Quant agent, against numbers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.quant import signal_record, vif_of, volatility_profile
from core.analytics.metrics import compute_metrics
from tests.quant.helpers import reference_record

# BUY@0: 100 -> 110 (+10 %, win); SELL@3: 100 -> 95 (+5 % for a SELL, win);
# BUY@6: 100 -> 80 (-20 %, loss); SELL@8: 80 -> 88 (price +10 %: -10 % for a SELL, loss); BUY@10: outcome beyond the data
CLOSE = np.array([100, 101, 110, 100, 97, 95, 100, 90, 80, 85, 88, 91], dtype=float)
ACTIONS = np.array([1, 0, 0, -1, 0, 0, 1, 0, -1, 0, 1, 0])


def _at(record, t):
    k = record.completed_at(t)
    return record.n[k], record.wins[k], record.expectancy[k], record.sharpe[k], record.max_drawdown[k]


def test_signal_record_when_signals_complete_then_signed_returns_and_outcome_bars_match_hand_values() -> None:
    record = signal_record(ACTIONS, CLOSE, horizon=2, lookback=20)

    assert record.signal_idx.tolist() == [0, 3, 6, 8]  # the BUY at bar 10 has no bar 12: never complete here
    assert record.known_at.tolist() == [2, 5, 8, 10]
    assert record.signed_return == pytest.approx([0.10, 0.05, -0.20, -0.10])


def test_hit_rate_and_expectancy_when_three_of_four_signals_complete_then_match_hand_values() -> None:
    record = signal_record(ACTIONS, CLOSE, horizon=2, lookback=20)

    n, wins, expectancy, sharpe, drawdown = _at(record, 9)  # SELL@8 ends at bar 10 > 9: not counted

    assert (n, wins) == (3, 2)
    assert (wins + 1) / (n + 2) == pytest.approx(0.6)
    assert expectancy == pytest.approx((0.10 + 0.05 - 0.20) / 3)
    # deviations from -1/60: 7/60, 4/60, -11/60 -> sample variance (49 + 16 + 121) / 3600 / 2 = 186/7200
    assert sharpe == pytest.approx((-1 / 60) / math.sqrt(186 / 7200))
    # equity 1 -> 1.10 -> 1.155 -> 0.924: one 20 % fall from the peak
    assert drawdown == pytest.approx(0.20)


def test_record_when_the_fourth_outcome_arrives_then_the_losing_sell_counts() -> None:
    record = signal_record(ACTIONS, CLOSE, horizon=2, lookback=20)

    n, wins, expectancy, _, drawdown = _at(record, 10)

    assert (n, wins) == (4, 2)
    assert expectancy == pytest.approx(-0.15 / 4)
    assert drawdown == pytest.approx(1 - 0.8316 / 1.155)  # 1.155 -> 0.924 -> 0.8316: 28 %
    assert drawdown == pytest.approx(0.28)


def test_record_when_lookback_is_two_then_only_the_last_two_complete_signals_count() -> None:
    record = signal_record(ACTIONS, CLOSE, horizon=2, lookback=2)

    n, wins, expectancy, sharpe, drawdown = _at(record, 11)

    assert (n, wins) == (2, 0)
    assert expectancy == pytest.approx(-0.15)
    assert sharpe == pytest.approx(-0.15 / (0.1 / math.sqrt(2)))  # std of (-0.2, -0.1) is 0.0707
    assert drawdown == pytest.approx(1 - 0.8 * 0.9)  # the start counts as a peak


def test_record_when_no_signal_is_complete_then_it_is_empty() -> None:
    record = signal_record(ACTIONS, CLOSE, horizon=2, lookback=20)

    n, wins, expectancy, sharpe, drawdown = _at(record, 1)

    assert (n, wins) == (0, 0)
    assert math.isnan(expectancy) and math.isnan(sharpe) and math.isnan(drawdown)


def test_record_when_the_outcome_bar_is_the_decision_bar_then_the_signal_is_complete() -> None:
    record = signal_record(ACTIONS, CLOSE, horizon=2, lookback=20)

    assert record.completed_at(1) == 0
    assert record.completed_at(2) == 1  # BUY@0 + 2 bars = bar 2 <= t = 2


def test_record_when_the_price_is_unchanged_then_the_signal_is_not_a_win() -> None:
    record = signal_record(np.array([1, -1, 0, 0]), np.array([100.0, 100.0, 100.0, 100.0]), horizon=2, lookback=20)

    n, wins, expectancy, sharpe, drawdown = _at(record, 3)

    assert (n, wins) == (2, 0)
    assert expectancy == 0.0 and drawdown == 0.0
    assert math.isnan(sharpe)  # constant returns: undefined, not infinite


def test_record_when_a_sell_loses_everything_then_drawdown_is_total() -> None:
    # a SELL at 100 with the price at 300 two bars later: signed return -200 %, equity floored at zero
    record = signal_record(np.array([-1, 0, 0]), np.array([100.0, 200.0, 300.0]), horizon=2, lookback=20)

    n, _, expectancy, sharpe, drawdown = _at(record, 2)

    assert n == 1 and expectancy == pytest.approx(-2.0)
    assert math.isnan(sharpe)  # one observation: no standard deviation
    assert drawdown == 1.0


def test_sharpe_and_drawdown_agree_with_core_metrics_on_the_compounded_record() -> None:
    record = signal_record(ACTIONS, CLOSE, horizon=2, lookback=20)
    equity = pd.Series(
        np.cumprod([1.0, 1.10, 1.05, 0.80, 0.90]), index=pd.date_range("2020-01-01", periods=5, tz="UTC")
    )

    metrics = compute_metrics(equity, periods_per_year=1)
    _, _, _, sharpe, drawdown = _at(record, 10)

    assert sharpe == pytest.approx(metrics.sharpe)
    assert drawdown == pytest.approx(metrics.max_drawdown)


@settings(max_examples=150, deadline=None)
@given(
    actions=st.lists(st.sampled_from([-1, 0, 0, 1]), min_size=1, max_size=60),
    steps=st.lists(st.floats(-0.3, 0.3), min_size=60, max_size=60),
    horizon=st.integers(1, 6),
    lookback=st.integers(1, 8),
    data=st.data(),
)
def test_record_read_at_any_bar_equals_the_loop_over_bars_up_to_that_bar(
    actions, steps, horizon, lookback, data
) -> None:
    close = 100.0 * np.cumprod(1.0 + np.asarray(steps[: len(actions)]))
    record = signal_record(np.asarray(actions), close, horizon, lookback)
    t = data.draw(st.integers(0, len(actions) - 1))

    n, wins, expectancy, sharpe, drawdown = _at(record, t)
    ref = reference_record(actions, close.tolist(), t, horizon, lookback)

    assert (n, wins) == (ref.n, ref.wins)
    for got, want in ((expectancy, ref.expectancy), (drawdown, ref.max_drawdown)):
        assert (math.isnan(got) and want is None) or got == pytest.approx(want, abs=1e-12)
    if ref.sharpe is None:
        assert math.isnan(sharpe) or n >= 2  # near-constant returns may differ in the last ulp
    else:
        assert sharpe == pytest.approx(ref.sharpe, rel=1e-6, abs=1e-9)


# ------------------------------------------------------------------------------------------------- volatility


def test_volatility_profile_when_read_at_t_then_it_is_the_sample_std_of_the_last_log_returns() -> None:
    rng = np.random.default_rng(7)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 40)))
    log_returns = np.diff(np.log(close))

    vol = volatility_profile(close, recent=5, long=20)

    t = 30  # returns r_t = log(c_t / c_{t-1}) are log_returns[t - 1]
    assert vol.recent[t] == pytest.approx(np.std(log_returns[t - 5 : t], ddof=1) * math.sqrt(252))
    assert vol.long[t] == pytest.approx(np.std(log_returns[t - 20 : t], ddof=1) * math.sqrt(252))
    assert np.isnan(vol.long[19]) and not np.isnan(vol.long[20])  # 20 returns need 21 closes
    assert np.isnan(vol.recent[4]) and not np.isnan(vol.recent[5])


def test_volatility_profile_when_future_bars_are_appended_then_past_values_do_not_change() -> None:
    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 80)))
    longer = np.concatenate([close, close[-1] * np.exp(np.cumsum(rng.normal(0, 0.05, 30)))])

    short_vol, long_vol = volatility_profile(close, 5, 20), volatility_profile(longer, 5, 20)

    np.testing.assert_array_equal(short_vol.recent, long_vol.recent[:80])
    np.testing.assert_array_equal(short_vol.long, long_vol.long[:80])


# ------------------------------------------------------------------------------------------------- VIF


def test_vif_when_two_features_are_perfectly_collinear_then_both_are_flagged_and_the_independent_one_is_not() -> None:
    rng = np.random.default_rng(11)
    x, z = rng.normal(size=60), rng.normal(size=60)
    values = np.column_stack([x, 2.0 * x + 1.0, z])

    result = vif_of(values, ["fast", "slow", "other"], min_rows=10)

    assert result.note == "ok" and result.rows == 60
    assert result.by_feature["fast"] > 1e6 and result.by_feature["slow"] > 1e6
    assert result.by_feature["other"] < 1.5
    assert result.max > 10


def test_vif_when_features_are_independent_then_all_are_near_one() -> None:
    rng = np.random.default_rng(5)
    values = rng.normal(size=(60, 3))

    result = vif_of(values, ["a", "b", "c"], min_rows=10)

    assert result.max < 1.5


def test_vif_of_two_features_equals_one_over_one_minus_their_squared_correlation() -> None:
    x = np.arange(12, dtype=float)
    y = np.array([1, 0, 3, 2, 5, 4, 4, 9, 6, 6, 12, 8], dtype=float)
    rho = np.corrcoef(x, y)[0, 1]

    result = vif_of(np.column_stack([x, y]), ["x", "y"], min_rows=10)

    assert result.by_feature["x"] == pytest.approx(1 / (1 - rho**2))
    assert result.by_feature["y"] == pytest.approx(1 / (1 - rho**2))


def test_vif_when_rows_have_nan_or_a_feature_is_constant_then_they_are_left_out() -> None:
    rng = np.random.default_rng(2)
    values = np.column_stack([rng.normal(size=30), rng.normal(size=30), np.full(30, 3.0)])
    values[:5, 0] = np.nan

    result = vif_of(values, ["a", "b", "flat"], min_rows=10)

    assert result.rows == 25 and result.dropped == ("flat",)
    assert set(result.by_feature) == {"a", "b"}


def test_vif_when_there_are_too_few_features_or_rows_then_none_is_computed() -> None:
    rng = np.random.default_rng(4)

    one = vif_of(rng.normal(size=(30, 1)), ["a"], min_rows=10)
    short = vif_of(rng.normal(size=(8, 3)), ["a", "b", "c"], min_rows=10)
    none = vif_of(np.empty((30, 0)), [], min_rows=10)

    assert one.max is None and "1 varying feature" in one.note
    assert short.max is None and "8 complete rows, 10 needed" in short.note
    assert none.max is None


@pytest.mark.parametrize("case", ["independent", "correlated", "collinear", "near_collinear", "many"])
def test_variance_inflation_equals_statsmodels(case: str) -> None:
    """The numpy VIF the Quant agent uses is statsmodels' variance_inflation_factor, number for number."""
    import warnings

    from statsmodels.stats.outliers_influence import variance_inflation_factor

    from core.quant import variance_inflation

    rng = np.random.default_rng(["independent", "correlated", "collinear", "near_collinear", "many"].index(case))
    x = rng.normal(size=(60, 6))
    if case == "correlated":
        x[:, 1] = x[:, 0] * 0.8 + x[:, 1] * 0.2
    elif case == "collinear":
        x[:, 2] = 3.0 * x[:, 0] - x[:, 1] + 2.0
    elif case == "near_collinear":
        x[:, 2] = x[:, 0] + 1e-6 * x[:, 2]
    elif case == "many":
        x = rng.normal(size=(60, 12)) + rng.normal(size=(60, 1))
    design = np.column_stack([np.ones(len(x)), x])
    for j in range(1, design.shape[1]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = variance_inflation_factor(design, j)
            got = variance_inflation(design, j)
        if np.isinf(expected) or expected > 1e12:
            assert np.isinf(got) or got > 1e10  # perfectly collinear: both explode
        else:
            assert got == pytest.approx(expected, rel=1e-7), j


@pytest.mark.parametrize("case", ["independent", "correlated", "collinear", "near_collinear", "many", "scales"])
def test_vif_of_when_the_regressions_are_stacked_then_each_vif_is_the_column_by_column_float(case: str) -> None:
    """vif_of takes the pseudo-inverses of all its regressions in one stacked call: the floats are those of the
    regressions taken column by column on the same standardised design (the VIF decides a confidence factor, so not
    one ulp may move)."""
    import warnings

    from core.quant import vif_of
    from core.quant.vif import _standardised, _vif_of_standardised

    cases = ["independent", "correlated", "collinear", "near_collinear", "many", "scales"]
    rng = np.random.default_rng(10 + cases.index(case))
    for rows, k in [(60, 2), (60, 3), (25, 4), (60, 6)] * 5:
        x = rng.normal(size=(rows, k))
        if case == "correlated":
            x[:, 1] = x[:, 0] * 0.8 + x[:, 1] * 0.2
        elif case == "collinear":
            x[:, -1] = 3.0 * x[:, 0] - x[:, 1] + 2.0
        elif case == "near_collinear":
            x[:, 1] = x[:, 0] + 1e-6 * x[:, 1]
        elif case == "many":
            x = x + rng.normal(size=(rows, 1))
        elif case == "scales":
            x = x * np.array([1e-4, 1.0, 3e3, 50.0, 7.0, 0.2][:k])
        x[rng.integers(0, rows), rng.integers(0, k)] = np.nan  # a row dropped, as in a real window
        names = tuple(f"f{j}" for j in range(k))
        complete = x[~np.isnan(x).any(axis=1)]
        working = _standardised(np.column_stack([np.ones(len(complete)), complete[:, np.ones(k, dtype=bool)]]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = vif_of(x, names, min_rows=8)
            expected = [float(_vif_of_standardised(working, j + 1)) for j in range(k)]
        assert got.note == "ok" and list(got.by_feature.values()) == expected

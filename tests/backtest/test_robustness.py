"""core.backtest.robustness: bootstrap, walk-forward and return tests, with the arithmetic worked out in comments."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.backtest.robustness import (
    BootstrapResult,
    Interval,
    Window,
    block_indices,
    bootstrap_daily,
    bootstrap_trades,
    return_tests,
    summarize_walk_forward,
    walk_forward,
    walk_forward_evaluate,
)
from core.analytics.metrics import ClosedTrade


def _days(n: int, start: str = "2024-01-01") -> pd.DatetimeIndex:
    return pd.date_range(start, periods=n, freq="D", tz="UTC")


def _ordered(interval: Interval) -> bool:
    return interval.p5 <= interval.p50 <= interval.p95


# ------------------------------------------------------------------------------------------------------ bootstrap


def test_bootstrap_daily_when_same_seed_then_identical_result_and_other_seed_differs() -> None:
    returns = np.random.default_rng(0).normal(0.0005, 0.01, 500)

    first = bootstrap_daily(returns, n=300, seed=42)
    again = bootstrap_daily(returns, n=300, seed=42)
    other = bootstrap_daily(returns, n=300, seed=43)

    assert first == again
    assert other.total_return != first.total_return


def test_bootstrap_trades_when_same_seed_then_identical_result() -> None:
    returns = [0.02, -0.01, 0.05, -0.03, 0.01]

    assert bootstrap_trades(returns, n=200, seed=7) == bootstrap_trades(returns, n=200, seed=7)
    assert bootstrap_trades(returns, n=200, seed=7) != bootstrap_trades(returns, n=200, seed=8)


def test_bootstrap_daily_when_constant_positive_returns_then_every_run_positive_and_interval_degenerate() -> None:
    # Every resample of 250 returns of +0.1 % is the same sequence: total = 1.001 ** 250 - 1 = 0.28362...
    returns = np.full(250, 0.001)

    result = bootstrap_daily(returns, n=200, seed=1, initial=100.0)

    expected = 1.001**250 - 1.0
    assert result.positive_share == 1.0
    assert result.total_return.p5 == pytest.approx(expected, rel=1e-12)
    assert result.total_return.p95 == pytest.approx(expected, rel=1e-12)
    assert result.final_equity.p50 == pytest.approx(100.0 * (1.0 + expected), rel=1e-12)
    assert result.max_drawdown == Interval(0.0, 0.0, 0.0)
    # Constant returns have no standard deviation: the Sharpe ratio is undefined in every run, not NaN or inf.
    assert result.sharpe is None
    assert result.sharpe_runs == 0
    assert result.observed_sharpe is None


def test_bootstrap_daily_when_noisy_returns_then_intervals_ordered_and_contain_the_observed_values() -> None:
    returns = np.random.default_rng(3).normal(0.0004, 0.012, 2500)

    result = bootstrap_daily(returns, n=1000, seed=11)

    assert result.runs == 1000 and result.sample_size == 2500
    assert _ordered(result.total_return) and _ordered(result.max_drawdown) and _ordered(result.final_equity)
    assert result.sharpe is not None and _ordered(result.sharpe)
    assert result.sharpe_runs == 1000
    # The i.i.d. bootstrap centres on the sample: the median Sharpe is close to the observed one.
    assert result.sharpe.p5 < result.observed_sharpe < result.sharpe.p95
    assert abs(result.sharpe.p50 - result.observed_sharpe) < 0.1
    assert 0.0 < result.positive_share < 1.0
    assert 0.0 < result.max_drawdown.p5


def test_bootstrap_trades_when_two_returns_then_runs_take_only_the_hand_computed_values() -> None:
    # Two trades of +50 % and -50 % give four equally likely sequences of 2 (from equity 1):
    #   (+,+): 1.5, 2.25 -> total +1.25, drawdown 0
    #   (+,-): 1.5, 0.75 -> total -0.25, drawdown 1 - 0.75/1.5 = 0.5
    #   (-,+): 0.5, 0.75 -> total -0.25, drawdown 1 - 0.5/1   = 0.5 (the start counts as a peak)
    #   (-,-): 0.5, 0.25 -> total -0.75, drawdown 0.75
    # P(total > 0) = 1/4; the 5th percentile of the total is -0.75 and the 95th +1.25.
    result = bootstrap_trades([0.5, -0.5], n=4000, seed=5, initial=1000.0)

    assert result.total_return.p5 == pytest.approx(-0.75)
    assert result.total_return.p50 == pytest.approx(-0.25)
    assert result.total_return.p95 == pytest.approx(1.25)
    assert result.max_drawdown.p5 == pytest.approx(0.0)
    assert result.max_drawdown.p50 == pytest.approx(0.5)
    assert result.max_drawdown.p95 == pytest.approx(0.75)
    assert result.final_equity.p95 == pytest.approx(2250.0)
    assert abs(result.positive_share - 0.25) < 0.03  # binomial sd with 4000 runs: sqrt(.25 * .75 / 4000) = 0.007
    # Observed sequence (+50 %, -50 %): total -0.25, drawdown 0.5; per-trade Sharpe = 0 / std = 0.
    assert result.observed_total_return == pytest.approx(-0.25)
    assert result.observed_max_drawdown == pytest.approx(0.5)
    assert result.observed_final_equity == pytest.approx(750.0)
    assert result.observed_sharpe == pytest.approx(0.0)


def test_bootstrap_trades_when_single_losing_trade_then_drawdown_measured_from_the_initial_equity() -> None:
    result = bootstrap_trades([-0.2], n=10, seed=0)

    assert result.total_return == Interval(pytest.approx(-0.2), pytest.approx(-0.2), pytest.approx(-0.2))
    assert result.max_drawdown.p50 == pytest.approx(0.2)
    assert result.positive_share == 0.0
    assert result.sharpe is None  # one trade: no standard deviation


def test_bootstrap_when_every_run_breaks_even_then_no_run_counts_as_positive() -> None:
    result = bootstrap_daily([0.0, 0.0, 0.0], n=20, seed=0)

    assert result.total_return == Interval(0.0, 0.0, 0.0)
    assert result.positive_share == 0.0


def test_bootstrap_trades_when_periods_per_year_given_then_sharpe_is_annualised_by_its_square_root() -> None:
    returns = [0.03, -0.01, 0.02, 0.00, -0.02, 0.04]

    per_trade = bootstrap_trades(returns, n=100, seed=9)
    annual = bootstrap_trades(returns, n=100, seed=9, periods_per_year=16)

    assert per_trade.sharpe is not None and annual.sharpe is not None
    assert annual.sharpe.p50 == pytest.approx(per_trade.sharpe.p50 * 4.0)
    assert annual.total_return == per_trade.total_return


@pytest.mark.parametrize(
    ("returns", "error"),
    [
        ([], ValueError),
        ([0.01, float("nan")], ValueError),
        ([0.01, -1.5], ValueError),
        (np.ones((2, 2)), ValueError),
        (pd.DataFrame({"r": [0.01]}), TypeError),
    ],
)
def test_bootstrap_when_returns_invalid_then_raises(returns: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        bootstrap_daily(returns, seed=1)  # type: ignore[arg-type]


def test_bootstrap_when_seed_or_runs_invalid_then_raises() -> None:
    with pytest.raises(TypeError):
        bootstrap_daily([0.01, 0.02], seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        bootstrap_daily([0.01, 0.02], n=0, seed=1)
    with pytest.raises(ValueError):
        bootstrap_daily([0.01, 0.02], seed=1, block=0)
    with pytest.raises(ValueError):
        bootstrap_daily([0.01, 0.02], seed=1, block=2, block_method="weekly")  # type: ignore[arg-type]


def test_block_indices_when_fixed_blocks_then_positions_run_on_consecutively_inside_each_block() -> None:
    rng = np.random.default_rng(0)

    index = block_indices(10, 50, 3, rng, "fixed")

    assert index.shape == (50, 10)
    assert index.min() >= 0 and index.max() <= 9
    for t in range(1, 10):
        if t % 3:  # inside a block: the next position, wrapping from 9 to 0
            assert ((index[:, t] - index[:, t - 1]) % 10 == 1).all()


def test_block_indices_when_stationary_then_blocks_start_with_probability_one_over_block() -> None:
    rng = np.random.default_rng(1)

    index = block_indices(250, 2000, 5, rng, "stationary")

    # A break is a new block whose random start is not by chance the next position (probability 1/250).
    breaks = ((index[:, 1:] - index[:, :-1]) % 250 != 1).mean()
    assert 0.19 < breaks < 0.21  # expected 0.2 * (1 - 1/250) = 0.1992


def test_block_bootstrap_when_returns_autocorrelated_then_resamples_keep_the_dependence_iid_loses_it() -> None:
    rng = np.random.default_rng(2)
    noise = rng.normal(size=3000)
    ar = np.empty_like(noise)
    ar[0] = noise[0]
    for t in range(1, noise.size):
        ar[t] = 0.8 * ar[t - 1] + noise[t]

    def mean_lag1(index: np.ndarray) -> float:
        samples = ar[index]
        return float(np.mean([np.corrcoef(row[:-1], row[1:])[0, 1] for row in samples]))

    iid = mean_lag1(block_indices(ar.size, 20, 1, np.random.default_rng(3)))
    blocks = mean_lag1(block_indices(ar.size, 20, 50, np.random.default_rng(3)))

    assert abs(iid) < 0.1
    assert blocks > 0.6  # about 0.8 * (1 - 1/50) less the joins between blocks


def test_bootstrap_daily_when_block_given_then_result_records_it_and_stays_sensible() -> None:
    returns = np.random.default_rng(4).normal(0.0003, 0.01, 1000)

    result = bootstrap_daily(returns, n=400, seed=4, block=10)

    assert (result.block, result.block_method) == (10, "stationary")
    assert _ordered(result.total_return) and _ordered(result.max_drawdown)
    assert result.observed_total_return == pytest.approx(float(np.prod(1.0 + returns) - 1.0))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(min_value=-0.5, max_value=0.5, allow_nan=False), min_size=1, max_size=40),
    st.integers(0, 2**32 - 1),
)
def test_bootstrap_intervals_are_ordered_and_within_the_possible_range_for_any_returns(
    returns: list[float], seed: int
) -> None:
    result = bootstrap_trades(returns, n=50, seed=seed)

    assert _ordered(result.total_return) and _ordered(result.max_drawdown)
    # No resample can beat always drawing the best return, nor lose more than always drawing the worst.
    m = len(returns)
    assert (1 + min(returns)) ** m - 1 - 1e-9 <= result.total_return.p5
    assert result.total_return.p95 <= (1 + max(returns)) ** m - 1 + 1e-9
    assert 0.0 <= result.max_drawdown.p5 and result.max_drawdown.p95 < 1.0
    assert 0.0 <= result.positive_share <= 1.0


def test_bootstrap_result_as_dict_is_a_plain_nested_dict() -> None:
    result = bootstrap_trades([0.01, 0.02], n=5, seed=0)

    data = result.as_dict()

    assert isinstance(result, BootstrapResult)
    assert data["total_return"] == {
        "p5": result.total_return.p5,
        "p50": result.total_return.p50,
        "p95": result.total_return.p95,
    }
    assert data["kind"] == "trades" and data["runs"] == 5


# --------------------------------------------------------------------------------------------------- walk-forward


def test_walk_forward_when_step_defaults_to_test_then_back_to_back_windows_by_hand() -> None:
    index = _days(10)  # 2024-01-01 .. 2024-01-10, positions 0..9

    windows = walk_forward(index, train=4, test=2)

    # begin 0: train 0-3, test 4-5; begin 2: train 2-5, test 6-7; begin 4: train 4-7, test 8-9; begin 6: 6+6 > 10.
    day = lambda d: datetime(2024, 1, d, tzinfo=UTC)  # noqa: E731
    assert windows == [
        Window(day(1), day(4), day(5), day(6)),
        Window(day(3), day(6), day(7), day(8)),
        Window(day(5), day(8), day(9), day(10)),
    ]


def test_walk_forward_when_step_given_then_windows_overlap_or_skip_accordingly() -> None:
    index = _days(10)

    overlapping = walk_forward(index, train=4, test=2, step=1)
    skipping = walk_forward(index, train=4, test=2, step=3)

    assert len(overlapping) == 5  # begins 0..4 (4 + 6 = 10)
    assert [w.test_start.day for w in skipping] == [5, 8]  # begins 0 and 3; begin 6 does not fit
    assert walk_forward(index, train=8, test=3) == []


def test_walk_forward_when_arguments_invalid_then_raises() -> None:
    with pytest.raises(ValueError):
        walk_forward(_days(10), train=0, test=2)
    with pytest.raises(ValueError):
        walk_forward(_days(10), train=2, test=2, step=0)
    with pytest.raises(ValueError):
        walk_forward(pd.date_range("2024-01-01", periods=5, freq="D"), train=2, test=1)  # naive
    with pytest.raises(TypeError):
        walk_forward(pd.RangeIndex(5), train=2, test=1)  # type: ignore[arg-type]


# Equity: +10 %, +10 %, -10 %, -10 %, +10 %, +10 %, +10 % from 100.
WF_VALUES = [100.0, 110.0, 121.0, 108.9, 98.01, 107.811, 118.5921, 130.45131]


def test_walk_forward_evaluate_when_known_equity_path_then_out_of_sample_metrics_by_hand() -> None:
    equity = pd.Series(WF_VALUES, index=_days(8))
    windows = walk_forward(equity.index, train=2, test=2)  # tests at positions 2-3, 4-5, 6-7

    results = walk_forward_evaluate(equity, windows)

    # Each window starts from the close before its first test day:
    #   1: 110 -> 121 -> 108.9        total 108.9/110 - 1 = -1 %, drawdown 1 - 108.9/121 = 10 %, returns +.1, -.1
    #   2: 108.9 -> 98.01 -> 107.811  total -1 %, drawdown 1 - 98.01/108.9 = 10 %, returns -.1, +.1
    #   3: 107.811 -> ... -> 130.45131 total 1.1**2 - 1 = 21 %, drawdown 0, returns +.1, +.1 (Sharpe undefined)
    assert [r.total_return for r in results] == pytest.approx([-0.01, -0.01, 0.21])
    assert [r.max_drawdown for r in results] == pytest.approx([0.1, 0.1, 0.0])
    assert results[0].sharpe == pytest.approx(0.0, abs=1e-12) and results[1].sharpe == pytest.approx(0.0, abs=1e-12)
    assert results[2].sharpe is None
    assert [r.metrics.num_observations for r in results] == [3, 3, 3]

    summary = summarize_walk_forward(results)

    assert summary.windows == 3
    assert summary.mean_return == pytest.approx(0.19 / 3)
    assert summary.median_return == pytest.approx(-0.01)
    assert summary.positive_share == pytest.approx(1 / 3)
    # Back-to-back windows chain to the return from the first base (110) to the end: 130.45131 / 110 - 1.
    assert summary.compounded_return == pytest.approx(130.45131 / 110.0 - 1.0)
    assert summary.mean_sharpe == pytest.approx(0.0, abs=1e-12)
    assert summary.worst_drawdown == pytest.approx(0.1)


def test_walk_forward_evaluate_when_trades_given_then_counts_those_exiting_inside_each_test_window() -> None:
    equity = pd.Series(WF_VALUES, index=_days(8))
    windows = walk_forward(equity.index, train=2, test=2)

    def trade(exit_day: int, pnl: float) -> ClosedTrade:
        exit_at = datetime(2024, 1, exit_day, tzinfo=UTC)
        return ClosedTrade(
            "AAA", "s", exit_at - timedelta(days=1), exit_at, 10.0, 10.0 + pnl / 10, 10.0, pnl, None, pnl / 100
        )

    # Test windows: 3-4 Jan, 5-6 Jan, 7-8 Jan.
    trades = [trade(2, 5.0), trade(3, 5.0), trade(4, -5.0), trade(8, 10.0)]

    results = walk_forward_evaluate(equity, windows, trades=trades)

    assert [r.metrics.trades.num_trades for r in results] == [2, 0, 1]
    assert results[0].metrics.trades.total_pnl == pytest.approx(0.0)
    assert results[2].as_dict()["num_trades"] == 1


def test_walk_forward_evaluate_when_window_has_no_equity_then_raises() -> None:
    equity = pd.Series(WF_VALUES, index=_days(8))
    later = Window(*(datetime(2025, 1, d, tzinfo=UTC) for d in (1, 2, 3, 4)))

    with pytest.raises(ValueError, match="no equity observation"):
        walk_forward_evaluate(equity, [later])


def test_summarize_walk_forward_when_no_windows_then_statistics_are_none() -> None:
    summary = summarize_walk_forward([])

    assert summary.windows == 0
    assert summary.mean_return is None and summary.positive_share is None and summary.compounded_return is None


# ------------------------------------------------------------------------------------------------------- tests


def test_return_tests_when_three_values_then_ljung_box_and_t_by_hand() -> None:
    # x = 0.01, 0.02, 0.03: mean 0.02, sample std 0.01 -> t = 0.02 / (0.01 / sqrt(3)) = 2 * sqrt(3) = 3.4641.
    # Demeaned -1, 0, 1 (x 0.01): rho1 = (-1*0 + 0*1) / 2 = 0, rho2 = (-1*1) / 2 = -0.5.
    # Q(2) = n (n + 2) * (rho1^2 / (n - 1) + rho2^2 / (n - 2)) = 3 * 5 * (0 + 0.25 / 1) = 3.75;
    # chi-square with 2 degrees of freedom: p = exp(-Q / 2) = exp(-1.875) = 0.15335.
    result = return_tests([0.01, 0.02, 0.03], lags=2)

    assert result.mean == pytest.approx(0.02)
    assert result.n == 3 and result.lags == 2
    assert result.t_stat == pytest.approx(2 * math.sqrt(3))
    assert result.ljung_box_stat == pytest.approx(3.75)
    assert result.ljung_box_pvalue == pytest.approx(math.exp(-1.875))


def test_return_tests_when_white_noise_then_ljung_box_does_not_reject_but_ar1_does() -> None:
    rng = np.random.default_rng(20240101)
    noise = rng.normal(0.0, 0.01, 1000)
    ar = np.empty_like(noise)
    ar[0] = noise[0]
    for t in range(1, noise.size):
        ar[t] = 0.5 * ar[t - 1] + noise[t]

    white = return_tests(noise)
    dependent = return_tests(ar)

    assert white.ljung_box_pvalue is not None and white.ljung_box_pvalue > 0.05
    assert dependent.ljung_box_pvalue is not None and dependent.ljung_box_pvalue < 1e-6
    assert dependent.ljung_box_stat > white.ljung_box_stat  # type: ignore[operator]


def test_return_tests_when_mean_positive_or_negative_then_t_statistic_has_that_sign() -> None:
    rng = np.random.default_rng(8)
    base = rng.normal(0.0, 0.01, 250)

    up = return_tests(pd.Series(base + 0.005))
    down = return_tests(base - 0.005)

    assert up.t_stat is not None and up.t_stat > 0 and up.t_pvalue < 0.05  # type: ignore[operator]
    assert down.t_stat is not None and down.t_stat < 0 and down.t_pvalue < 0.05  # type: ignore[operator]


def test_return_tests_when_returns_constant_then_statistics_are_none_not_nan() -> None:
    result = return_tests(np.full(30, 0.001))

    assert (result.ljung_box_stat, result.ljung_box_pvalue, result.t_stat, result.t_pvalue) == (None, None, None, None)
    assert result.mean == pytest.approx(0.001) and result.n == 30


def test_return_tests_when_too_few_returns_or_nan_then_raises() -> None:
    with pytest.raises(ValueError, match="more than lags"):
        return_tests([0.01] * 10, lags=10)
    with pytest.raises(ValueError, match="NaN"):
        return_tests(pd.Series([0.01] * 20).pct_change())

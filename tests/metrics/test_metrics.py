"""core.analytics.metrics checked against numbers worked out by hand (the arithmetic is written in the comments)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from core.analytics.metrics import (
    ClosedTrade,
    PerformanceMetrics,
    TradeMetrics,
    compute_metrics,
    drawdown_episodes,
    drawdown_series,
    historical_var_cvar,
    metrics_by,
    monthly_returns,
    trade_metrics,
)
from tests.metrics.helpers import daily_series, make_trade, utc_series

# Eight observations on weekdays: Mon 1 Jan .. Fri 5 Jan, then (after a weekend) Mon 8 .. Wed 10 Jan 2024.
PATH_DATES = [
    "2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04",
    "2024-01-05", "2024-01-08", "2024-01-09", "2024-01-10",
]  # fmt: skip
PATH_VALUES = [100, 120, 96, 120, 150, 120, 96, 120]
# Period returns r_t = E_t / E_{t-1} - 1:
#   120/100 - 1 = +0.20,  96/120 - 1 = -0.20, 120/96 - 1 = +0.25, 150/120 - 1 = +0.25,
#   120/150 - 1 = -0.20,  96/120 - 1 = -0.20, 120/96 - 1 = +0.25           (n = 7)
# sum = 3 * 0.25 + 0.20 - 3 * 0.20 = 0.35,  mean = 0.35 / 7 = 0.05
# deviations from the mean: +0.15, -0.25, +0.20, +0.20, -0.25, -0.25, +0.20
# squared: 0.0225 + 3 * 0.0625 + 3 * 0.04 = 0.0225 + 0.1875 + 0.12 = 0.33
# sample variance (ddof=1) = 0.33 / 6 = 0.055,  sample std = sqrt(0.055) = 0.2345208...


@pytest.fixture
def path() -> pd.Series:
    return utc_series(PATH_VALUES, PATH_DATES)


def _trades_where_totals_differ_from_averages() -> list[ClosedTrade]:
    return [
        make_trade(300.0, strategy="A", symbol="AAA", return_pct=0.030, index=0),
        make_trade(-100.0, strategy="A", symbol="BBB", return_pct=-0.010, index=1),
        make_trade(10.0, strategy="B", symbol="AAA", return_pct=0.001, index=2),
        make_trade(-20.0, strategy="B", symbol="BBB", return_pct=-0.002, index=3),
        make_trade(-30.0, strategy="B", symbol="AAA", return_pct=-0.003, index=4),
        make_trade(0.0, strategy="C", symbol="CCC", return_pct=0.000, index=5),
    ]


# --------------------------------------------------------------------------------------------- returns & ratios


def test_compute_metrics_when_short_path_then_returns_match_hand_values(path: pd.Series) -> None:
    m = compute_metrics(path, [])

    assert m.num_observations == 8
    assert m.num_periods == 7
    # total return: 120 / 100 - 1 = 0.20
    assert m.total_return == pytest.approx(0.20, abs=1e-12)
    # annualised by periods: 1.2 ** (252 / 7) - 1 = 1.2 ** 36 - 1;
    # 1.2^2 = 1.44, ^4 = 2.0736, ^8 = 4.29982, ^16 = 18.48843, ^32 = 341.8219, ^36 = 341.8219 * 2.0736 = 708.8019
    assert m.annualised_return == pytest.approx(707.8019, rel=1e-6)
    # CAGR by calendar: 1 Jan -> 10 Jan is 9 days = 9 / 365.25 years; 1.2 ** (365.25 / 9) - 1
    assert m.cagr == pytest.approx(1.2 ** (365.25 / 9) - 1, rel=1e-12)
    assert m.cagr == pytest.approx(1633.70, rel=1e-5)


def test_compute_metrics_when_short_path_then_sharpe_uses_sample_std(path: pd.Series) -> None:
    m = compute_metrics(path, [])

    # volatility = sqrt(0.055) * sqrt(252) = sqrt(13.86) = 3.722902
    assert m.volatility == pytest.approx(math.sqrt(13.86), rel=1e-12)
    assert m.volatility == pytest.approx(3.722902, abs=1e-6)
    # Sharpe = 0.05 / sqrt(0.055) * sqrt(252) = 0.05 * sqrt(252 / 0.055) = 0.05 * sqrt(4581.818) = 0.05 * 67.68913
    assert m.sharpe == pytest.approx(0.05 * math.sqrt(252 / 0.055), rel=1e-12)
    assert m.sharpe == pytest.approx(3.384456, abs=1e-6)
    # with the population std (ddof=0) it would be 0.05 / sqrt(0.33 / 7) * sqrt(252) = 3.6556, so ddof matters here
    assert m.sharpe != pytest.approx(0.05 / math.sqrt(0.33 / 7) * math.sqrt(252), rel=1e-3)


def test_compute_metrics_when_short_path_then_sortino_uses_all_periods_in_downside_deviation(
    path: pd.Series,
) -> None:
    m = compute_metrics(path, [])

    # target = 0: min(0, r) is -0.20 three times, 0 otherwise
    # DD = sqrt((3 * 0.04) / 7) = sqrt(0.0171428571) = 0.1309307
    assert m.downside_deviation == pytest.approx(math.sqrt(0.12 / 7), rel=1e-12)
    assert m.downside_deviation == pytest.approx(0.1309307, abs=1e-7)
    # Sortino = 0.05 / 0.1309307 * sqrt(252) = 0.3818813 * 15.8745079 = 6.062178
    assert m.sortino == pytest.approx(0.05 / math.sqrt(0.12 / 7) * math.sqrt(252), rel=1e-12)
    assert m.sortino == pytest.approx(6.062178, abs=1e-6)
    # the "std of the negative returns only" variant would give 0.05 / sqrt(0.04) * sqrt(252) = 3.969; not ours
    assert m.sortino != pytest.approx(0.05 / 0.2 * math.sqrt(252), rel=1e-3)


def test_compute_metrics_when_risk_free_given_then_excess_returns_use_geometric_per_period_rate(
    path: pd.Series,
) -> None:
    # periods_per_year = 2, risk_free = 2.01 % a year -> per period (1.0201) ** (1/2) - 1 = 1.01 - 1 = 0.01
    m = compute_metrics(path, [], periods_per_year=2, risk_free=0.0201)

    # excess mean = 0.05 - 0.01 = 0.04; std unchanged (a constant shift): sqrt(0.055)
    # Sharpe = 0.04 / sqrt(0.055) * sqrt(2) = 0.04 / 0.2345208 * 1.4142136 = 0.241209
    assert m.sharpe == pytest.approx(0.04 / math.sqrt(0.055) * math.sqrt(2), rel=1e-9)
    assert m.sharpe == pytest.approx(0.241209, abs=1e-6)
    # excess returns: 0.19, -0.21, 0.24, 0.24, -0.21, -0.21, 0.24; below target: -0.21 three times
    # DD = sqrt(3 * 0.0441 / 7) = sqrt(0.0189) = 0.1374773; Sortino = 0.04 / 0.1374773 * sqrt(2) = 0.411476
    assert m.downside_deviation == pytest.approx(math.sqrt(0.0189), rel=1e-9)
    assert m.sortino == pytest.approx(0.04 / math.sqrt(0.0189) * math.sqrt(2), rel=1e-9)
    assert m.sortino == pytest.approx(0.411476, abs=1e-6)
    assert m.risk_free == 0.0201


def test_compute_metrics_when_two_years_of_10pct_growth_then_annualised_and_cagr_are_10pct() -> None:
    # 100 -> 110 -> 121 over exactly 2 * 365.25 days = 730.5 days (1 Jan 2020 00:00 -> 31 Dec 2021 12:00)
    equity = pd.Series(
        [100.0, 110.0, 121.0],
        index=pd.DatetimeIndex(["2020-01-01 00:00", "2021-01-01 00:00", "2021-12-31 12:00"], tz="UTC"),
    )

    m = compute_metrics(equity, [], periods_per_year=1)

    # total = 121 / 100 - 1 = 0.21; by periods: 1.21 ** (1 / 2) - 1 = 1.1 - 1 = 0.10
    assert m.total_return == pytest.approx(0.21, abs=1e-12)
    assert m.annualised_return == pytest.approx(0.10, abs=1e-12)
    # by calendar: years = 730.5 / 365.25 = 2; 1.21 ** (1 / 2) - 1 = 0.10
    assert m.cagr == pytest.approx(0.10, abs=1e-12)


# --------------------------------------------------------------------------------------------- drawdown


def test_drawdown_series_when_short_path_then_positive_fraction_below_running_peak(path: pd.Series) -> None:
    dd = drawdown_series(path)

    # running peak: 100, 120, 120, 120, 150, 150, 150, 150
    # 1 - E/peak:   0,   0,   1-96/120=0.2, 0, 0, 1-120/150=0.2, 1-96/150=0.36, 1-120/150=0.2
    assert dd.index.equals(path.index)
    assert dd.to_list() == pytest.approx([0.0, 0.0, 0.2, 0.0, 0.0, 0.2, 0.36, 0.2], abs=1e-12)


def test_compute_metrics_when_drawdown_unrecovered_then_duration_runs_to_the_end(path: pd.Series) -> None:
    m = compute_metrics(path, [])

    # episodes: peak 2 Jan (120) -> recovered 4 Jan (120 >= 120): 2 periods, 2 days
    #           peak 5 Jan (150) -> not recovered by 10 Jan: 3 periods (8, 9, 10 Jan), 5 calendar days
    assert m.max_drawdown == pytest.approx(0.36, abs=1e-12)
    assert m.max_drawdown_duration_periods == 3
    assert m.max_drawdown_duration_days == 5.0
    assert m.longest_drawdown_recovered is False


def test_compute_metrics_when_recovered_drawdown_is_longest_then_its_duration_is_reported() -> None:
    # 100, 90, 95, 99, 100, 101, 100: peak t0 -> recovered t4 (100 >= 100): 4 periods;
    # then peak t5 (101) -> t6 unrecovered: 1 period. Deepest: 1 - 90/100 = 0.10
    m = compute_metrics(daily_series([100, 90, 95, 99, 100, 101, 100]), [])

    assert m.max_drawdown == pytest.approx(0.10, abs=1e-12)
    assert m.max_drawdown_duration_periods == 4
    assert m.max_drawdown_duration_days == 4.0
    assert m.longest_drawdown_recovered is True


def test_compute_metrics_when_deepest_drawdown_is_short_then_depth_and_duration_come_from_different_episodes() -> None:
    # 100, 70, 100, 95, 96, 97, 98: episode 1 depth 1 - 70/100 = 0.30 over 2 periods (t0 -> t2);
    # episode 2 depth 1 - 95/100 = 0.05, from t2 to the end t6 unrecovered: 4 periods
    m = compute_metrics(daily_series([100, 70, 100, 95, 96, 97, 98]), [])

    assert m.max_drawdown == pytest.approx(0.30, abs=1e-12)
    assert m.max_drawdown_duration_periods == 4
    assert m.longest_drawdown_recovered is False


def test_drawdown_episodes_when_equity_flat_at_peak_then_episode_starts_at_last_peak_observation() -> None:
    # 100, 100, 90, 100: the peak that equity falls from is the one at t1, recovery at t3 -> 2 periods
    episodes = drawdown_episodes(daily_series([100, 100, 90, 100]))

    assert len(episodes) == 1
    (episode,) = episodes
    assert episode.peak_at == datetime(2024, 1, 2, tzinfo=UTC)
    assert episode.end_at == datetime(2024, 1, 4, tzinfo=UTC)
    assert episode.periods == 2
    assert episode.depth == pytest.approx(0.10, abs=1e-12)  # 1 - 90/100
    assert episode.recovered is True


# --------------------------------------------------------------------------------------------- VaR / CVaR

TEN_RETURNS = [0.01, -0.02, 0.03, -0.05, 0.00, 0.02, -0.01, 0.04, -0.03, 0.01]
# sorted ascending: -0.05, -0.03, -0.02, -0.01, 0.00, 0.01, 0.01, 0.02, 0.03, 0.04   (m = 10)


@pytest.mark.parametrize(
    ("level", "var", "cvar"),
    [
        # k = ceil(10 * 0.05) = ceil(0.5) = 1: VaR = 0.05, CVaR = 0.05
        (0.95, 0.05, 0.05),
        # k = ceil(10 * 0.10) = 1
        (0.90, 0.05, 0.05),
        # k = ceil(10 * 0.20) = 2: VaR = 0.03, CVaR = (0.05 + 0.03) / 2 = 0.04
        (0.80, 0.03, 0.04),
        # k = ceil(10 * 0.30) = 3 (10 * (1 - 0.7) is 3.0000000000000004 in floats, must not become 4):
        # VaR = 0.02, CVaR = (0.05 + 0.03 + 0.02) / 3 = 0.0333...
        (0.70, 0.02, 0.10 / 3),
        # k = ceil(10 * 0.5) = 5: VaR = -0.00 = 0, CVaR = (0.05 + 0.03 + 0.02 + 0.01 + 0) / 5 = 0.022
        (0.50, 0.0, 0.022),
    ],
)
def test_historical_var_cvar_when_ten_returns_then_kth_worst_and_mean_of_k_worst(
    level: float, var: float, cvar: float
) -> None:
    result = historical_var_cvar(TEN_RETURNS, level)

    assert result is not None
    assert result[0] == pytest.approx(var, abs=1e-12)
    assert result[1] == pytest.approx(cvar, abs=1e-12)


def test_compute_metrics_when_daily_equity_then_var_from_daily_returns() -> None:
    equity = daily_series(100.0 * np.cumprod([1.0] + [1.0 + r for r in TEN_RETURNS]))

    m = compute_metrics(equity, [], var_level=0.80)

    # same returns as above (up to float rounding of the cumulative product): VaR 0.03, CVaR 0.04
    assert m.var == pytest.approx(0.03, abs=1e-12)
    assert m.cvar == pytest.approx(0.04, abs=1e-12)
    assert m.var_level == 0.80


def test_compute_metrics_when_tail_return_is_a_gain_then_var_is_negative(path: pd.Series) -> None:
    # path returns sorted: -0.2, -0.2, -0.2, 0.2, 0.25, 0.25, 0.25; at 50 %: k = ceil(7 * 0.5) = ceil(3.5) = 4
    # VaR = -(+0.2) = -0.2 (the 4th worst day was a gain); CVaR = -(-0.2 - 0.2 - 0.2 + 0.2) / 4 = 0.4 / 4 = 0.10
    m = compute_metrics(path, [], var_level=0.5)

    assert m.var == pytest.approx(-0.2, abs=1e-12)
    assert m.cvar == pytest.approx(0.10, abs=1e-12)


def test_compute_metrics_when_intraday_equity_then_var_uses_last_value_of_each_utc_day() -> None:
    equity = utc_series(
        [100, 100, 150, 95, 104.5],
        ["2024-02-01 09:00", "2024-02-01 16:00", "2024-02-02 09:00", "2024-02-02 16:00", "2024-02-03 16:00"],
    )

    m = compute_metrics(equity, [], var_level=0.9)

    # daily closes: 100, 95, 104.5 -> returns -0.05, +0.10; k = ceil(2 * 0.1) = 1 -> VaR = CVaR = 0.05
    # (the raw period returns 0, +0.5, -0.3667, +0.1 would have given 0.3667)
    assert m.var == pytest.approx(0.05, abs=1e-12)
    assert m.cvar == pytest.approx(0.05, abs=1e-12)


# --------------------------------------------------------------------------------------------- trades


def test_trade_metrics_when_mixed_trades_then_profit_factor_from_totals() -> None:
    tm = trade_metrics(_trades_where_totals_differ_from_averages())

    # pnl: +300, -100, +10, -20, -30, 0
    assert tm.num_trades == 6
    assert (tm.wins, tm.losses, tm.breakeven) == (2, 3, 1)
    assert tm.win_rate == pytest.approx(2 / 6)
    assert tm.gross_profit == pytest.approx(310.0)  # 300 + 10
    assert tm.gross_loss == pytest.approx(150.0)  # |-100 - 20 - 30|
    # profit factor = 310 / 150 = 2.0667; per-strategy factors are A: 300/100 = 3.0, B: 10/50 = 0.2,
    # whose mean (3.0 + 0.2) / 2 = 1.6 is NOT the profit factor; neither is the payoff ratio 155/50 = 3.1
    assert tm.profit_factor == pytest.approx(310 / 150, rel=1e-12)
    assert tm.profit_factor == pytest.approx(2.066667, abs=1e-6)
    assert tm.total_pnl == pytest.approx(160.0)  # 300 - 100 + 10 - 20 - 30 + 0
    assert tm.expectancy == pytest.approx(160 / 6)  # 26.667 per trade
    # mean return: (0.030 - 0.010 + 0.001 - 0.002 - 0.003 + 0) / 6 = 0.016 / 6 = 0.0026667
    assert tm.expectancy_return == pytest.approx(0.016 / 6, rel=1e-12)
    assert tm.average_win == pytest.approx(155.0)  # 310 / 2
    assert tm.average_loss == pytest.approx(50.0)  # 150 / 3, a positive magnitude
    assert tm.payoff_ratio == pytest.approx(3.1)  # 155 / 50


def test_metrics_by_strategy_when_mixed_trades_then_each_group_from_its_own_totals() -> None:
    trades = _trades_where_totals_differ_from_averages()

    by_strategy = metrics_by(trades, "strategy")

    assert list(by_strategy) == ["A", "B", "C"]
    a, b, c = by_strategy["A"], by_strategy["B"], by_strategy["C"]
    assert a.profit_factor == pytest.approx(3.0)  # 300 / 100
    assert b.profit_factor == pytest.approx(0.2)  # 10 / (20 + 30)
    assert c.profit_factor is None  # one break-even trade: 0 / 0
    assert c.win_rate == 0.0 and c.expectancy == 0.0
    assert (a.num_trades, b.num_trades, c.num_trades) == (2, 3, 1)
    # the overall factor is not the mean of the group factors
    overall = trade_metrics(trades).profit_factor
    assert overall is not None and a.profit_factor is not None and b.profit_factor is not None
    assert overall != pytest.approx((a.profit_factor + b.profit_factor) / 2, rel=1e-3)


def test_metrics_by_symbol_when_mixed_trades_then_grouped_by_symbol() -> None:
    by_symbol = metrics_by(_trades_where_totals_differ_from_averages(), "symbol")

    assert list(by_symbol) == ["AAA", "BBB", "CCC"]
    aaa, bbb = by_symbol["AAA"], by_symbol["BBB"]
    # AAA: +300, +10, -30 -> PF = 310 / 30 = 10.333, win rate 2/3, total 280
    assert aaa.profit_factor == pytest.approx(310 / 30)
    assert aaa.win_rate == pytest.approx(2 / 3)
    assert aaa.total_pnl == pytest.approx(280.0)
    # BBB: -100, -20 -> no wins: PF = 0 / 120 = 0.0, no average win, no payoff ratio
    assert bbb.profit_factor == 0.0
    assert bbb.average_win is None and bbb.payoff_ratio is None
    assert bbb.average_loss == pytest.approx(60.0)  # 120 / 2


def test_metrics_by_when_key_unknown_then_value_error() -> None:
    with pytest.raises(ValueError, match="key"):
        metrics_by([make_trade(1.0)], "sector")  # type: ignore[arg-type]


def test_trade_metrics_when_only_wins_then_profit_factor_is_infinite() -> None:
    tm = trade_metrics([make_trade(5.0), make_trade(10.0, index=1)])

    assert tm.profit_factor == math.inf
    assert tm.gross_loss == 0.0 and tm.average_loss is None and tm.payoff_ratio is None
    assert tm.win_rate == 1.0


def test_trade_metrics_when_no_trades_then_none_not_zero_division() -> None:
    tm = trade_metrics([])

    assert tm.num_trades == 0
    assert tm.profit_factor is None
    assert tm.win_rate is None and tm.expectancy is None and tm.expectancy_return is None
    assert tm.average_win is None and tm.average_loss is None
    assert tm.total_pnl == 0.0


def test_trade_metrics_when_plain_object_with_attributes_then_accepted() -> None:
    class Row:  # e.g. a persistence row, not a ClosedTrade
        def __init__(self, pnl: float, return_pct: float) -> None:
            self.pnl, self.return_pct = pnl, return_pct
            self.symbol, self.strategy, self.entry_confidence = "X", "s", None

    tm = trade_metrics([Row(4.0, 0.04), Row(-1.0, -0.01)])

    assert tm.profit_factor == pytest.approx(4.0)  # 4 / 1
    assert tm.expectancy_return == pytest.approx(0.015)  # (0.04 - 0.01) / 2


def test_trade_metrics_when_pnl_is_nan_then_value_error() -> None:
    class Row:
        pnl, return_pct, symbol, strategy, entry_confidence = math.nan, 0.0, "X", "s", None

    with pytest.raises(ValueError, match="finite"):
        trade_metrics([Row()])


def test_compute_metrics_when_trades_given_then_trade_fields_in_flat_dict(path: pd.Series) -> None:
    m = compute_metrics(path, _trades_where_totals_differ_from_averages())

    d = m.as_dict()
    assert d["profit_factor"] == pytest.approx(310 / 150)
    assert d["num_trades"] == 6
    assert d["max_drawdown"] == pytest.approx(0.36)
    assert "trades" not in d
    assert isinstance(m.trades, TradeMetrics)


# --------------------------------------------------------------------------------------------- exposure


def test_compute_metrics_when_position_count_series_given_then_exposure_is_share_of_nonzero_periods(
    path: pd.Series,
) -> None:
    # 8 periods, positions held in 5 of them (1, 2, 1, 3, 1): 5 / 8 = 0.625
    exposure = pd.Series([0, 1, 2, 0, 1, 3, 0, 1], index=path.index)

    assert compute_metrics(path, [], exposure=exposure).exposure == pytest.approx(0.625)


def test_compute_metrics_when_gross_exposure_series_given_then_exposure_counts_nonzero_values(
    path: pd.Series,
) -> None:
    # gross exposure in money: 2 of 8 non-zero -> 0.25
    exposure = pd.Series([0.0, 1500.0, 0.0, 0.0, 0.0, 0.0, 420.5, 0.0], index=path.index)

    assert compute_metrics(path, [], exposure=exposure).exposure == pytest.approx(0.25)
    assert compute_metrics(path, []).exposure is None


# --------------------------------------------------------------------------------------------- monthly table


def test_monthly_returns_when_gap_month_then_nan_cell_and_next_month_compounds_from_last_value() -> None:
    equity = utc_series(
        [100, 105, 110, 99, 115.5],
        ["2023-12-29", "2024-01-15", "2024-01-31", "2024-03-11", "2024-03-29"],
    )

    table = monthly_returns(equity)

    assert table.index.to_list() == [2023, 2024]
    assert table.columns.to_list() == list(range(1, 13))
    # Dec 2023: last 100, base = first observation 100 -> 0.0
    assert table.loc[2023, 12] == pytest.approx(0.0)
    # Jan 2024: 110 / 100 - 1 = 0.10
    assert table.loc[2024, 1] == pytest.approx(0.10)
    # Feb 2024: no observation -> NaN (no data)
    assert math.isnan(table.loc[2024, 2])
    # Mar 2024: 115.5 / 110 - 1 = 0.05 (base is the last value before March, 31 Jan)
    assert table.loc[2024, 3] == pytest.approx(0.05)
    assert table.loc[2023, 1:11].isna().all()


def test_monthly_returns_when_empty_then_empty_table_with_twelve_columns() -> None:
    table = monthly_returns(pd.Series([], index=pd.DatetimeIndex([], tz="UTC"), dtype=float))

    assert table.empty
    assert table.columns.to_list() == list(range(1, 13))


# --------------------------------------------------------------------------------------------- degenerate inputs


def _assert_no_nan(m: PerformanceMetrics) -> None:
    for name, value in m.as_dict().items():
        assert not (isinstance(value, float) and math.isnan(value)), name


def test_compute_metrics_when_empty_equity_then_everything_none() -> None:
    m = compute_metrics(pd.Series([], index=pd.DatetimeIndex([], tz="UTC"), dtype=float), [])

    assert m.num_observations == 0 and m.num_periods == 0
    assert m.start is None and m.end is None
    for value in (m.total_return, m.annualised_return, m.cagr, m.sharpe, m.sortino, m.max_drawdown, m.var, m.cvar):
        assert value is None
    _assert_no_nan(m)


def test_compute_metrics_when_one_point_then_no_returns_and_zero_drawdown() -> None:
    m = compute_metrics(daily_series([100.0]), [])

    assert m.num_observations == 1 and m.num_periods == 0
    assert m.total_return is None and m.sharpe is None and m.var is None
    assert m.max_drawdown == 0.0
    assert m.max_drawdown_duration_periods == 0 and m.max_drawdown_duration_days == 0.0
    assert m.longest_drawdown_recovered is None
    _assert_no_nan(m)


def test_compute_metrics_when_two_points_then_return_but_no_sharpe() -> None:
    m = compute_metrics(daily_series([100.0, 90.0]), [])

    assert m.total_return == pytest.approx(-0.10)
    assert m.sharpe is None and m.sortino is None and m.volatility is None  # one return: no sample std
    # one daily return of -0.10: VaR = CVaR = 0.10
    assert m.var == pytest.approx(0.10) and m.cvar == pytest.approx(0.10)
    assert m.max_drawdown == pytest.approx(0.10)
    assert m.longest_drawdown_recovered is False
    _assert_no_nan(m)


def test_compute_metrics_when_flat_equity_then_zero_variance_gives_none_ratios() -> None:
    m = compute_metrics(daily_series([100.0, 100.0, 100.0, 100.0]), [])

    assert m.total_return == 0.0
    assert m.volatility == 0.0
    assert m.sharpe is None and m.sortino is None
    assert m.max_drawdown == 0.0 and m.max_drawdown_duration_periods == 0
    assert m.var == 0.0 and m.cvar == 0.0
    _assert_no_nan(m)


def test_compute_metrics_when_constant_growth_then_sharpe_none_despite_float_noise() -> None:
    # 1 % every day: the returns differ only by rounding noise (std ~ 1e-17), which must not be divided by
    m = compute_metrics(daily_series([100.0 * 1.01**k for k in range(10)]), [])

    assert m.sharpe is None
    assert m.sortino is None  # no period below the 0 target
    assert m.total_return == pytest.approx(1.01**9 - 1)
    _assert_no_nan(m)


def test_compute_metrics_when_huge_growth_over_a_minute_then_cagr_is_inf_not_overflow_error() -> None:
    equity = utc_series([100.0, 200.0], ["2024-01-01 10:00", "2024-01-01 10:01"])

    m = compute_metrics(equity, [])

    # years = 60 s / (365.25 * 86400 s) -> 2 ** 525960 overflows a float
    assert m.cagr == math.inf
    assert m.total_return == pytest.approx(1.0)


def test_compute_metrics_when_equity_values_are_decimals_then_converted() -> None:
    equity = daily_series([0.0, 0.0]).astype(object)
    equity.iloc[0], equity.iloc[1] = Decimal("100.00"), Decimal("101.50")

    assert compute_metrics(equity, []).total_return == pytest.approx(0.015)


# --------------------------------------------------------------------------------------------- invalid inputs


@pytest.mark.parametrize(
    "equity",
    [
        pd.Series([100.0, 101.0], index=pd.DatetimeIndex(["2024-01-01", "2024-01-02"])),  # naive
        pd.Series([100.0, 101.0], index=pd.DatetimeIndex(["2024-01-01", "2024-01-02"], tz="America/New_York")),
        pd.Series([100.0, 101.0], index=pd.DatetimeIndex(["2024-01-02", "2024-01-01"], tz="UTC")),  # unsorted
        pd.Series([100.0, 101.0], index=pd.DatetimeIndex(["2024-01-01", "2024-01-01"], tz="UTC")),  # duplicate
        pd.Series([100.0, math.nan], index=pd.DatetimeIndex(["2024-01-01", "2024-01-02"], tz="UTC")),
        pd.Series([100.0, 0.0], index=pd.DatetimeIndex(["2024-01-01", "2024-01-02"], tz="UTC")),
        pd.Series([100.0, -5.0], index=pd.DatetimeIndex(["2024-01-01", "2024-01-02"], tz="UTC")),
    ],
    ids=["naive", "new-york", "unsorted", "duplicate", "nan", "zero", "negative"],
)
def test_compute_metrics_when_equity_malformed_then_value_error(equity: pd.Series) -> None:
    with pytest.raises(ValueError):
        compute_metrics(equity, [])


def test_compute_metrics_when_index_not_datetime_then_type_error() -> None:
    with pytest.raises(TypeError):
        compute_metrics(pd.Series([100.0, 101.0]), [])


@pytest.mark.parametrize(
    "kwargs",
    [{"var_level": 1.0}, {"var_level": 0.0}, {"periods_per_year": 0}, {"risk_free": -1.0}, {"risk_free": math.nan}],
)
def test_compute_metrics_when_parameter_out_of_range_then_value_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        compute_metrics(daily_series([100.0, 101.0]), [], **kwargs)  # type: ignore[arg-type]


def test_compute_metrics_when_exposure_has_naive_index_then_value_error(path: pd.Series) -> None:
    exposure = pd.Series([1.0] * 8, index=path.index.tz_localize(None))

    with pytest.raises(ValueError, match="UTC"):
        compute_metrics(path, [], exposure=exposure)


def test_closed_trade_when_naive_timestamp_then_value_error() -> None:
    with pytest.raises(ValueError, match="UTC"):
        ClosedTrade("AAA", "s", datetime(2024, 1, 1), datetime(2024, 1, 2), 1.0, 1.0, 1.0, 0.0, None, 0.0)


def test_closed_trade_when_exit_before_entry_or_confidence_out_of_range_then_value_error() -> None:
    t0 = datetime(2024, 1, 2, tzinfo=UTC)
    with pytest.raises(ValueError, match="before"):
        ClosedTrade("AAA", "s", t0, t0 - timedelta(hours=1), 1.0, 1.0, 1.0, 0.0, None, 0.0)
    with pytest.raises(ValueError, match="confidence"):
        ClosedTrade("AAA", "s", t0, t0, 1.0, 1.0, 1.0, 0.0, 1.5, 0.0)


def test_closed_trade_when_frozen_then_cannot_be_mutated() -> None:
    trade = make_trade(1.0)

    with pytest.raises(AttributeError):
        trade.pnl = 2.0  # type: ignore[misc]

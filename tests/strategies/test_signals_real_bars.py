"""Each strategy's BUY/SELL dates on a window of the bundled daily bars, checked two ways:

1. against a literal list of dates (the specification, read off the charts of the window), and
2. against the rule re-derived here with plain pandas (rolling/ewm/shift), independent of strategies.indicators.

Stops/targets on those rows are checked against an ATR(14) computed here with pandas as well.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from strategies.base import Peers
from strategies.registry import build_registry

pytestmark = pytest.mark.shared


# ----------------------------------------------------------------------------------------------- plain-pandas refs
def crosses_above(x: pd.Series, level: pd.Series | float) -> pd.Series:
    level = level if isinstance(level, pd.Series) else pd.Series(level, index=x.index)
    return (x.shift(1) <= level.shift(1)) & (x > level)


def crosses_below(x: pd.Series, level: pd.Series | float) -> pd.Series:
    level = level if isinstance(level, pd.Series) else pd.Series(level, index=x.index)
    return (x.shift(1) >= level.shift(1)) & (x < level)


def wilder_atr(bars: pd.DataFrame, n: int = 14) -> pd.Series:
    prev_close = bars["close"].shift(1)
    true_range = pd.concat(
        [bars["high"] - bars["low"], (bars["high"] - prev_close).abs(), (bars["low"] - prev_close).abs()], axis=1
    ).max(axis=1)
    seeded = true_range.copy()
    seeded.iloc[: n - 1] = np.nan
    seeded.iloc[n - 1] = true_range.iloc[:n].mean()
    return seeded.ewm(alpha=1.0 / n, adjust=False).mean()


def pandas_rsi(close: pd.Series, n: int = 14) -> pd.Series:
    change = close.diff()
    gain = change.clip(lower=0.0).ewm(alpha=1.0 / n, adjust=False).mean()
    loss = (-change.clip(upper=0.0)).ewm(alpha=1.0 / n, adjust=False).mean()
    return 100.0 * gain / (gain + loss)


def pct_change(x: pd.Series | pd.DataFrame, n: int) -> pd.Series | pd.DataFrame:
    return 100.0 * (x / x.shift(n) - 1.0)


def dates(buy: pd.Series, sell: pd.Series, start: str, end: str) -> list[tuple[str, str]]:
    action = (
        pd.Series(0, index=buy.index).mask(buy.fillna(False).astype(bool), 1).mask(sell.fillna(False).astype(bool), -1)
    )
    window = action.loc[start:end]
    return [(ts.strftime("%Y-%m-%d"), "BUY" if a == 1 else "SELL") for ts, a in window.items() if a != 0]


def signal_dates(frame: pd.DataFrame, start: str, end: str) -> list[tuple[str, str]]:
    window = frame.loc[start:end]
    return [(ts.strftime("%Y-%m-%d"), "BUY" if a == 1 else "SELL") for ts, a in window["action"].items() if a != 0]


def check_levels(
    frame: pd.DataFrame, bars: pd.DataFrame, start: str, end: str, target: pd.Series | None = None
) -> None:
    """stop = close -/+ 2 ATR14 and target = close +/- 4 ATR14 on every signal row (default risk params), or the
    given structural ``target`` (the mean-reversion strategies' moving average)."""
    atr = wilder_atr(bars)
    window = frame.loc[start:end]
    for ts, row in window[window["action"] != 0].iterrows():
        close, a = bars.at[ts, "close"], atr.at[ts]
        sign = float(row["action"])
        assert row["stop"] == pytest.approx(close - sign * 2.0 * a, rel=1e-9), ts
        expected = close + sign * 4.0 * a if target is None else target.at[ts]
        assert row["target"] == pytest.approx(expected, rel=1e-9), ts
        assert sign * (row["target"] - close) > 0, ts  # beyond the close in the trade's direction
        assert 0.5 <= row["strength"] <= 1.0, ts
    holds = window[window["action"] == 0]
    assert holds["stop"].isna().all() and holds["target"].isna().all() and (holds["strength"] == 0).all()


@pytest.fixture(scope="module")
def registry():
    return build_registry()


# ------------------------------------------------------------------------------------------------------- the tests
def test_trend_following_when_sma50_crosses_sma200_then_buy_and_sell_on_the_cross_dates(real_bars, registry):
    ibm = real_bars["IBM"]
    start, end = "2019-01-01", "2019-12-31"
    frame = registry["trend_following"].compute(ibm)

    fast, slow = ibm["close"].rolling(50).mean(), ibm["close"].rolling(200).mean()
    expected = dates(crosses_above(fast - slow, 0.0), crosses_below(fast - slow, 0.0), start, end)

    assert expected == [("2019-03-20", "BUY"), ("2019-12-09", "SELL")]
    assert signal_dates(frame, start, end) == expected
    assert frame.at[pd.Timestamp("2019-03-20", tz="UTC"), "ind_slow_sma"] == pytest.approx(slow.loc["2019-03-20"])
    check_levels(frame, ibm, start, end)


def test_trend_following_with_fast_1_when_close_crosses_sma200_then_signals(real_bars):
    spy = real_bars["SPY"]
    start, end = "2020-02-01", "2020-06-30"
    frame = build_registry({"trend_following": {"fast": 1}})["trend_following"].compute(spy)

    slow = spy["close"].rolling(200).mean()
    expected = dates(crosses_above(spy["close"], slow), crosses_below(spy["close"], slow), start, end)

    assert expected == [
        ("2020-02-27", "SELL"),
        ("2020-03-02", "BUY"),
        ("2020-03-03", "SELL"),
        ("2020-03-04", "BUY"),
        ("2020-03-05", "SELL"),
        ("2020-05-26", "BUY"),
    ]
    assert signal_dates(frame, start, end) == expected
    np.testing.assert_allclose(frame["ind_fast_sma"].to_numpy(), spy["close"].to_numpy())
    check_levels(frame, spy, start, end)


def test_momentum_rotation_when_126_day_roc_crosses_zero_then_signals(real_bars, registry):
    ibm = real_bars["IBM"]
    start, end = "2019-04-01", "2019-05-15"
    frame = registry["momentum_rotation"].compute(ibm)

    roc = pct_change(ibm["close"], 126)
    expected = dates(crosses_above(roc, 0.0), crosses_below(roc, 0.0), start, end)

    assert expected == [("2019-04-11", "BUY"), ("2019-04-18", "SELL"), ("2019-04-22", "BUY")]
    assert signal_dates(frame, start, end) == expected
    check_levels(frame, ibm, start, end)


def test_mean_reversion_when_rsi_crosses_30_or_70_then_buy_or_sell(real_bars, registry):
    ibm = real_bars["IBM"]
    start, end = "2019-01-01", "2019-12-31"
    frame = registry["mean_reversion"].compute(ibm)

    rsi = pandas_rsi(ibm["close"])
    expected = dates(crosses_below(rsi, 30.0), crosses_above(rsi, 70.0), start, end)

    assert expected == [
        ("2019-01-23", "SELL"),
        ("2019-02-11", "SELL"),
        ("2019-05-13", "BUY"),
        ("2019-05-31", "BUY"),
        ("2019-07-18", "SELL"),
    ]
    assert signal_dates(frame, start, end) == expected
    np.testing.assert_allclose(frame["ind_rsi"].loc[start:end], rsi.loc[start:end], rtol=1e-9)
    check_levels(frame, ibm, start, end)


def test_breakout_when_close_breaks_the_previous_20_day_channel_then_signals(real_bars, registry):
    bac = real_bars["BAC"]
    start, end = "2008-07-01", "2008-10-31"
    frame = registry["breakout"].compute(bac)

    upper = bac["high"].rolling(20).max().shift(1)
    lower = bac["low"].rolling(20).min().shift(1)
    expected = dates(crosses_above(bac["close"], upper), crosses_below(bac["close"], lower), start, end)

    assert expected == [
        ("2008-07-02", "SELL"),
        ("2008-07-14", "SELL"),
        ("2008-07-21", "BUY"),
        ("2008-09-08", "BUY"),
        ("2008-09-15", "SELL"),
        ("2008-09-19", "BUY"),
        ("2008-10-07", "SELL"),
    ]
    assert signal_dates(frame, start, end) == expected
    # the breakout bar's own high is not part of its channel
    day = pd.Timestamp("2008-07-21", tz="UTC")
    assert frame.at[day, "ind_upper"] == bac["high"].loc["2008-06-20":"2008-07-18"].max()
    check_levels(frame, bac, start, end)


def test_volatility_breakout_when_close_moves_more_than_one_previous_atr_then_signals(real_bars, registry):
    bac = real_bars["BAC"]
    start, end = "2008-09-01", "2008-09-30"
    frame = registry["volatility_breakout"].compute(bac)

    move = bac["close"].diff()
    threshold = wilder_atr(bac).shift(1)
    expected = dates(move > threshold, move < -threshold, start, end)

    assert expected == [
        ("2008-09-04", "SELL"),
        ("2008-09-08", "BUY"),
        ("2008-09-09", "SELL"),
        ("2008-09-15", "SELL"),
        ("2008-09-16", "BUY"),
        ("2008-09-18", "BUY"),
        ("2008-09-19", "BUY"),
        ("2008-09-26", "BUY"),
        ("2008-09-29", "SELL"),
    ]
    assert signal_dates(frame, start, end) == expected
    check_levels(frame, bac, start, end)


def test_relative_strength_when_ratio_to_spy_turns_then_signals(real_bars, real_peers, registry):
    ibm, spy = real_bars["IBM"], real_bars["SPY"]
    start, end = "2019-07-01", "2019-10-31"
    frame = registry["relative_strength"].compute(ibm, real_peers)

    ratio_roc = pct_change(ibm["close"] / spy["close"].reindex(ibm.index), 63)
    expected = dates(crosses_above(ratio_roc, 0.0), crosses_below(ratio_roc, 0.0), start, end)

    assert expected == [
        ("2019-07-18", "BUY"),
        ("2019-08-13", "SELL"),
        ("2019-08-29", "BUY"),
        ("2019-08-30", "SELL"),
        ("2019-09-04", "BUY"),
        ("2019-10-16", "SELL"),
    ]
    assert signal_dates(frame, start, end) == expected
    check_levels(frame, ibm, start, end)


def test_sector_rotation_when_ibm_enters_or_leaves_the_top_fifth_of_six_then_signals(real_bars, real_peers, registry):
    ibm = real_bars["IBM"]
    start, end = "2019-03-01", "2019-06-30"
    frame = registry["sector_rotation"].compute(ibm, real_peers)

    universe = pct_change(real_peers.closes.reindex(ibm.index), 126)
    own = pct_change(ibm["close"], 126)
    members = universe.notna().sum(axis=1)
    rank = universe.gt(own, axis=0).sum(axis=1) + 1
    cutoff = np.ceil(0.2 * members - 1e-9)
    in_top = (rank <= cutoff).astype(float).where(own.notna() & (members >= 3))
    expected = dates(crosses_above(in_top, 0.5), crosses_below(in_top, 0.5), start, end)

    assert expected == [
        ("2019-03-18", "SELL"),
        ("2019-03-20", "BUY"),
        ("2019-04-02", "SELL"),
        ("2019-04-08", "BUY"),
        ("2019-04-12", "SELL"),
        ("2019-04-22", "BUY"),
        ("2019-04-29", "SELL"),
        ("2019-05-02", "BUY"),
        ("2019-06-12", "SELL"),
        ("2019-06-20", "BUY"),
        ("2019-06-21", "SELL"),
    ]
    assert signal_dates(frame, start, end) == expected
    window = frame.loc[start:end]
    assert (window["ind_universe_size"] == 6).all() and (window["ind_cutoff"] == 2).all()
    np.testing.assert_array_equal(window["ind_rank"].to_numpy(), rank.loc[start:end].to_numpy(dtype=float))
    check_levels(frame, ibm, start, end)


def test_dual_momentum_when_positive_and_beating_spy_then_buy_and_when_negative_then_sell(
    real_bars, real_peers, registry
):
    ibm, spy = real_bars["IBM"], real_bars["SPY"]
    start, end = "2019-07-01", "2019-11-30"
    frame = registry["dual_momentum"].compute(ibm, real_peers)

    own = pct_change(ibm["close"], 252)
    bench = pct_change(spy["close"].reindex(ibm.index), 252)
    qualifies = ((own > 0.0) & (own > bench)).astype(float).where(own.notna() & bench.notna())
    expected = dates(crosses_above(qualifies, 0.5), crosses_below(own, 0.0), start, end)

    assert expected == [
        ("2019-07-18", "BUY"),
        ("2019-08-01", "BUY"),
        ("2019-08-06", "SELL"),
        ("2019-08-09", "SELL"),
        ("2019-09-20", "SELL"),
        ("2019-09-27", "SELL"),
        ("2019-10-01", "SELL"),
        ("2019-10-17", "SELL"),
        ("2019-10-30", "BUY"),
        ("2019-11-25", "BUY"),
    ]
    assert signal_dates(frame, start, end) == expected
    check_levels(frame, ibm, start, end)


def test_moving_average_envelope_when_close_leaves_the_5pct_envelope_then_reversion_signals(real_bars, registry):
    bac = real_bars["BAC"]
    start, end = "2008-08-01", "2008-09-30"
    frame = registry["moving_average_envelope"].compute(bac)

    sma = bac["close"].rolling(20).mean()
    expected = dates(crosses_below(bac["close"], sma * 0.95), crosses_above(bac["close"], sma * 1.05), start, end)

    assert expected == [
        ("2008-08-13", "BUY"),
        ("2008-08-18", "BUY"),
        ("2008-08-25", "BUY"),
        ("2008-09-02", "SELL"),
        ("2008-09-05", "SELL"),
        ("2008-09-15", "BUY"),
        ("2008-09-17", "BUY"),
        ("2008-09-19", "SELL"),
        ("2008-09-30", "SELL"),
    ]
    assert signal_dates(frame, start, end) == expected
    check_levels(frame, bac, start, end, target=sma)  # the reversion aims at the average


def test_bollinger_bands_when_close_leaves_the_20_2_bands_then_reversion_signals(real_bars, registry):
    aapl = real_bars["AAPL"]
    start, end = "2020-02-01", "2020-05-31"
    frame = registry["bollinger_bands"].compute(aapl)

    mid = aapl["close"].rolling(20).mean()
    std = aapl["close"].rolling(20).std(ddof=0)
    expected = dates(
        crosses_below(aapl["close"], mid - 2 * std), crosses_above(aapl["close"], mid + 2 * std), start, end
    )

    assert expected == [
        ("2020-02-24", "BUY"),
        ("2020-03-12", "BUY"),
        ("2020-03-16", "BUY"),
        ("2020-03-20", "BUY"),
        ("2020-04-14", "SELL"),
        ("2020-05-08", "SELL"),
    ]
    assert signal_dates(frame, start, end) == expected
    check_levels(frame, aapl, start, end, target=mid)  # the reversion aims at the middle band


def test_relative_and_dual_momentum_when_no_benchmark_then_hold_everywhere(real_bars, registry):
    ibm = real_bars["IBM"]
    for name in ("relative_strength", "dual_momentum"):
        for peers in (None, Peers(), Peers(benchmark=real_bars["SPY"].iloc[:0])):
            frame = registry[name].compute(ibm, peers)
            assert (frame["action"] == 0).all(), name
            assert frame.filter(like="ind_").drop(columns="ind_atr").isna().all().all(), name


def test_sector_rotation_when_no_universe_then_hold_everywhere(real_bars, registry):
    ibm = real_bars["IBM"]
    for peers in (None, Peers(), Peers(closes=pd.DataFrame(index=ibm.index))):
        assert (registry["sector_rotation"].compute(ibm, peers)["action"] == 0).all()


def test_sector_rotation_with_top_n_when_universe_given_then_cutoff_is_n(real_bars, real_peers):
    strategy = build_registry({"sector_rotation": {"top_n": 3}})["sector_rotation"]
    frame = strategy.compute(real_bars["IBM"], real_peers)
    ranked = frame["ind_cutoff"].dropna()
    assert not ranked.empty and (ranked == 3).all()
    # entering the top 3 needs a rank <= 3 on the BUY row
    assert (frame.loc[frame["action"] == 1, "ind_rank"] <= 3).all()
    assert (frame.loc[frame["action"] == -1, "ind_rank"] > 3).all()
    assert math.isclose(strategy.params.top_n, 3) and strategy.params.top_fraction is None

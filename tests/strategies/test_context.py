"""Market context: values checked against plain pandas, regime rules on constructed series, causality."""

from __future__ import annotations

import json
import math
import warnings
from datetime import datetime, timezone, timedelta, UTC

import numpy as np
import pandas as pd
import pytest

from strategies.context import (
    CONTEXT_COLUMNS,
    REGIMES,
    ContextRules,
    MarketContext,
    context_at,
    context_frame,
)
from tests.strategies.helpers import random_walk_bars

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pandas-ta's import-time Pandas4Warning
    import pandas_ta as ta

N = 400
T = np.arange(N)


def shaped_bars(close: np.ndarray, volume: np.ndarray | None = None) -> pd.DataFrame:
    index = pd.bdate_range("2015-01-02", periods=len(close), tz="UTC", name="timestamp")
    volume = np.full(len(close), 1e6) if volume is None else volume
    return pd.DataFrame(
        {"open": close, "high": close * 1.004, "low": close * 0.996, "close": close, "volume": volume}, index=index
    )


@pytest.mark.shared
def test_context_frame_when_computed_on_real_bars_then_values_match_plain_pandas(real_bars):
    bars = real_bars["IBM"]
    frame = context_frame(bars)
    assert tuple(frame.columns) == CONTEXT_COLUMNS and frame.index.equals(bars.index)

    volatility = np.log(bars["close"]).diff().rolling(20).std() * math.sqrt(252)
    np.testing.assert_allclose(frame["volatility"], volatility, rtol=1e-9)
    volume_ratio = bars["volume"].rolling(20).mean() / bars["volume"].rolling(60).mean()
    np.testing.assert_allclose(frame["volume_ratio"], volume_ratio, rtol=1e-9)
    adx = ta.adx(bars["high"], bars["low"], bars["close"], 14, talib=False)
    np.testing.assert_allclose(frame["trend_strength"], adx["ADX_14"], rtol=1e-7)
    assert set(frame["regime"].unique()) == set(REGIMES)


@pytest.mark.parametrize(
    "close, regime",
    [
        (100 * np.exp(0.003 * T + np.random.default_rng(0).normal(0, 0.002, N)), "trending_up"),
        (100 * np.exp(-0.003 * T + np.random.default_rng(1).normal(0, 0.002, N)), "trending_down"),
        (100 + 2 * np.sin(2 * np.pi * T / 10) + np.random.default_rng(2).normal(0, 0.3, N), "ranging"),
    ],
    ids=["steady-rise", "steady-fall", "oscillation"],
)
def test_context_when_series_has_a_clear_shape_then_regime_names_it(close, regime):
    assert context_frame(shaped_bars(close))["regime"].iloc[-1] == regime


def test_context_when_recent_volatility_explodes_then_volatile_even_if_trending():
    returns = np.random.default_rng(3).normal(0.0, 0.005, N)
    returns[-20:] = 0.08 * np.where(T[-20:] % 2 == 0, 1.0, -1.0)
    frame = context_frame(shaped_bars(100 * np.exp(np.cumsum(returns))))
    assert frame["regime"].iloc[-1] == "volatile" and frame["volatility"].iloc[-1] > 1.0
    assert frame["regime"].iloc[-40] != "volatile"


def test_context_when_volume_doubles_then_volume_ratio_rises():
    volume = np.full(N, 1e6)
    volume[-20:] = 2e6
    ratio = context_frame(shaped_bars(np.full(N, 50.0) + T * 0.01, volume))["volume_ratio"].iloc[-1]
    assert ratio == pytest.approx(2e6 / ((40 * 1e6 + 20 * 2e6) / 60))


def test_context_frame_when_future_bars_are_appended_then_earlier_rows_do_not_change():
    bars = random_walk_bars(500, 17)
    full = context_frame(bars)
    for k in (1, 30, 253, 499):
        pd.testing.assert_frame_equal(context_frame(bars.iloc[:k]), full.iloc[:k], check_exact=True)


def test_context_at_when_row_given_then_matches_that_row_and_is_stamped_with_its_date():
    bars = random_walk_bars(300, 4)
    row = context_frame(bars).iloc[200]
    context = context_at("R0", bars, 200)
    assert context.symbol == "R0" and context.regime == row["regime"]
    assert context.volatility == row["volatility"] and context.trend_strength == row["trend_strength"]
    assert context.volume_ratio == row["volume_ratio"]
    assert context.as_of == bars.index[200].to_pydatetime()
    assert context_at("R0", bars, -1) == context_at("R0", bars, 299)


def test_context_at_when_row_outside_the_bars_then_index_error():
    with pytest.raises(IndexError, match="R0"):
        context_at("R0", random_walk_bars(10, 0), 10)


@pytest.mark.filterwarnings("error")
def test_context_when_history_is_short_then_ranging_with_nan_fields_and_no_warning():
    context = context_at("NEW", random_walk_bars(5, 0), -1)
    assert context.regime == "ranging"
    assert math.isnan(context.volatility) and math.isnan(context.trend_strength)
    assert context.as_dict()["volatility"] is None


def test_market_context_when_regime_unknown_or_time_naive_then_rejected():
    with pytest.raises(ValueError, match="regime"):
        MarketContext("X", 0.2, 20.0, 1.0, "sideways")
    with pytest.raises(ValueError, match="as_of"):
        MarketContext("X", 0.2, 20.0, 1.0, "ranging", as_of=datetime(2021, 1, 4))
    with pytest.raises(ValueError, match="as_of"):
        MarketContext("X", 0.2, 20.0, 1.0, "ranging", as_of=datetime(2021, 1, 4, tzinfo=timezone(timedelta(hours=1))))


def test_market_context_as_dict_when_serialised_then_json_ready():
    context = MarketContext("X", 0.25, math.nan, 1.1, "trending_up", as_of=datetime(2021, 1, 4, tzinfo=UTC))
    data = context.as_dict()
    assert data == {
        "symbol": "X",
        "regime": "trending_up",
        "volatility": 0.25,
        "trend_strength": None,
        "volume_ratio": 1.1,
        "as_of": "2021-01-04T00:00:00+00:00",
    }
    json.dumps(data)


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"volume_short": 60, "volume_long": 20}, "volume_short"),
        ({"trend_threshold": 0.0}, "trend_threshold"),
        ({"volatility_window": 1}, "volatility_window"),
        ({"volatile_ratio": math.nan}, "volatile_ratio"),
    ],
)
def test_context_rules_when_invalid_then_rejected_naming_the_field(changes, field):
    with pytest.raises(ValueError, match=field):
        ContextRules(**changes)


def test_context_rules_when_threshold_changes_then_regime_follows():
    close = 100 * np.exp(0.003 * T + np.random.default_rng(0).normal(0, 0.002, N))
    assert context_frame(shaped_bars(close), ContextRules(trend_threshold=99.0))["regime"].iloc[-1] == "ranging"
    assert context_frame(shaped_bars(close), ContextRules(volatile_level=0.01))["regime"].iloc[-1] == "volatile"

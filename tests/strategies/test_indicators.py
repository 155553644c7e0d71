"""The numpy indicator kernels equal pandas-ta's definitions on the bundled bars and follow the NaN policy."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from strategies import indicators as ind

with warnings.catch_warnings():
    # pandas-ta 0.4.71b0 touches a deprecated Timestamp attribute at import time (Pandas4Warning).
    warnings.simplefilter("ignore")
    import pandas_ta as ta


@pytest.fixture(scope="module", params=["AAPL", "BAC"])
def bars(request, real_bars) -> pd.DataFrame:
    return real_bars[request.param]


def assert_same(ours: np.ndarray, theirs: pd.Series, rtol: float = 1e-9) -> None:
    theirs = theirs.to_numpy(dtype=float)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=1e-9)


@pytest.mark.shared
@pytest.mark.parametrize("length", [2, 20, 200])
def test_sma_when_compared_with_pandas_ta_then_equal(bars, length):
    assert_same(ind.sma(bars["close"].to_numpy(), length), ta.sma(bars["close"], length))


def test_sma_when_length_is_1_then_it_is_the_series_itself():
    x = np.array([3.0, 1.0, np.nan, 4.0])
    np.testing.assert_array_equal(ind.sma(x, 1), x)


@pytest.mark.shared
def test_rsi_when_compared_with_pandas_ta_then_equal(bars):
    assert_same(ind.rsi(bars["close"].to_numpy(), 14), ta.rsi(bars["close"], 14, talib=False))


@pytest.mark.shared
@pytest.mark.parametrize("length", [1, 14, 50])
def test_atr_when_compared_with_pandas_ta_then_equal(bars, length):
    ours = ind.atr(bars["high"].to_numpy(), bars["low"].to_numpy(), bars["close"].to_numpy(), length)
    assert_same(ours, ta.atr(bars["high"], bars["low"], bars["close"], length, talib=False))


@pytest.mark.shared
def test_rolling_extremes_when_compared_with_pandas_ta_donchian_then_equal(bars):
    channel = ta.donchian(bars["high"], bars["low"], lower_length=20, upper_length=20)
    assert_same(ind.rolling_max(bars["high"].to_numpy(), 20), channel["DCU_20_20"])
    assert_same(ind.rolling_min(bars["low"].to_numpy(), 20), channel["DCL_20_20"])


@pytest.mark.shared
@pytest.mark.parametrize("ddof", [0, 1])
def test_bollinger_when_compared_with_pandas_ta_bbands_then_equal(bars, ddof):
    close = bars["close"]
    bands = ta.bbands(close, 20, 2.0, 2.0, ddof=ddof, talib=False)
    mid = ind.sma(close.to_numpy(), 20)
    std = ind.rolling_std(close.to_numpy(), 20, ddof)
    assert_same(mid - 2.0 * std, bands["BBL_20_2.0_2.0"], rtol=1e-8)
    assert_same(mid + 2.0 * std, bands["BBU_20_2.0_2.0"], rtol=1e-8)


@pytest.mark.shared
def test_roc_when_compared_with_pandas_ta_then_equal(bars):
    assert_same(ind.roc(bars["close"].to_numpy(), 126), ta.roc(bars["close"], 126, talib=False))


@pytest.mark.shared
def test_adx_when_compared_with_pandas_ta_then_equal(bars):
    theirs = ta.adx(bars["high"], bars["low"], bars["close"], 14, talib=False)
    adx, plus_di, minus_di = ind.adx(bars["high"].to_numpy(), bars["low"].to_numpy(), bars["close"].to_numpy(), 14)
    assert_same(adx, theirs["ADX_14"], rtol=1e-7)
    assert_same(plus_di, theirs["DMP_14"], rtol=1e-7)
    assert_same(minus_di, theirs["DMN_14"], rtol=1e-7)


@pytest.mark.filterwarnings("error")
def test_kernels_when_input_is_shorter_than_the_window_then_all_nan_without_warnings():
    x = np.array([1.0, 2.0, 3.0])
    for result in (
        ind.sma(x, 5),
        ind.rolling_max(x, 5),
        ind.rolling_min(x, 5),
        ind.rolling_std(x, 5),
        ind.atr(x, x, x, 5),
        ind.roc(x, 5),
        *ind.adx(x, x, x, 5),
    ):
        assert result.shape == (3,) and np.isnan(result).all()
    assert np.isnan(ind.rsi(np.array([]), 14)).shape == (0,)


@pytest.mark.filterwarnings("error")
def test_rolling_kernels_when_a_value_is_nan_then_only_windows_containing_it_are_nan():
    x = np.arange(10.0)
    x[4] = np.nan
    result = ind.sma(x, 3)
    expected_nan = [0, 1, 4, 5, 6]
    assert list(np.flatnonzero(np.isnan(result))) == expected_nan
    assert result[3] == pytest.approx(2.0) and result[7] == pytest.approx(6.0)


@pytest.mark.filterwarnings("error")
def test_wilder_when_an_input_is_nan_then_it_is_skipped_and_the_average_continues():
    x = np.array([1.0, 2.0, np.nan, 4.0])
    result = ind.wilder(x, 2)
    # alpha = 1/2: 1 -> 1.5 -> (NaN bar) -> 0.5 * 1.5 + 0.5 * 4
    assert result[0] == 1.0 and result[1] == 1.5 and np.isnan(result[2]) and result[3] == pytest.approx(2.75)


@pytest.mark.filterwarnings("error")
def test_rsi_when_prices_are_flat_then_nan_and_when_only_rising_then_100():
    assert np.isnan(ind.rsi(np.full(30, 10.0), 14)[1:]).all()
    assert ind.rsi(np.arange(1.0, 31.0), 14)[-1] == 100.0


def test_crossings_when_previous_bar_touches_the_level_then_it_counts_and_touching_alone_does_not():
    x = np.array([0.0, 1.0, 1.0, 2.0, 1.0, 0.5, np.nan, 2.0])
    assert list(np.flatnonzero(ind.crossed_above(x, 1.0))) == [3]
    assert list(np.flatnonzero(ind.crossed_below(x, 1.0))) == [5]
    level = np.array([1.0, 1.0, 0.5, 0.5, 3.0, 3.0, 3.0, 3.0])
    assert list(np.flatnonzero(ind.crossed_above(x, level))) == [2]
    assert list(np.flatnonzero(ind.crossed_below(x, level))) == [4]


def test_shift_when_periods_negative_then_rejected():
    with pytest.raises(ValueError, match="backwards"):
        ind.shift(np.arange(3.0), -1)

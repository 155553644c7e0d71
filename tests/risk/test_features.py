"""The per-symbol risk features over the shared frame cache: the strategies' ATR (equal to pandas-ta's), the average
daily dollar volume and the daily returns, each computed once per frame and shared by every reader of the cache."""

from __future__ import annotations

from datetime import UTC

import numpy as np
import pandas as pd
import pytest

from core.data.files import read_bars_file
from core.kernel.domain import SymbolBars
from core.kernel.frame_cache import FrameCache
from core.risk import features as rf
from strategies import indicators as ind
from tests.conftest import BUNDLED_DAILY

SYMBOLS = ("AAPL", "AIG", "BAC", "IBM", "IWM", "SPY")


def _bars(symbol: str, day: str | None = None) -> SymbolBars:
    frame = read_bars_file(BUNDLED_DAILY / f"{symbol}.csv")
    end = len(frame) if day is None else int(frame.index.get_loc(pd.Timestamp(day, tz=UTC))) + 1
    return SymbolBars(symbol, frame, end, "files")


# the values the Risk agent read at these decision bars before the features moved here (exact)
@pytest.mark.parametrize(
    ("symbol", "day", "atr", "adv", "ret"),
    [
        ("AAPL", "2020-03-10", 3.409541233737492, 14229547765.324337, 0.07202163904023084),
        ("SPY", "2021-03-10", 6.363473064989199, 33512637726.611706, 0.006224656459785871),
        ("AIG", "2015-06-01", 0.6723917216461414, 304747560.8847883, 0.0011943439511863385),
    ],
)
def test_features_at_a_decision_bar_then_the_values_the_risk_agent_used(
    symbol: str, day: str, atr: float, adv: float, ret: float
) -> None:
    cache, sb = FrameCache(), _bars(symbol, day)
    f = rf.features(cache, sb)
    i = sb.end - 1
    assert (float(f.atr[i]), float(f.adv[i]), float(f.ret[i])) == (atr, adv, ret)
    assert rf.atr_at(cache, sb) == atr and rf.adv_at(cache, sb) == adv


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_features_over_the_bundled_bars_then_equal_to_the_direct_computations(symbol: str) -> None:
    sb = _bars(symbol)
    f = rf.features(FrameCache(), sb, atr_period=10, adv_window=5)
    frame = sb.frame
    high, low, close = (frame[c].to_numpy(float) for c in ("high", "low", "close"))
    assert np.array_equal(f.atr, ind.atr(high, low, close, 10), equal_nan=True)
    adv = (frame["close"] * frame["volume"]).rolling(5, min_periods=5).mean().to_numpy(float)
    assert np.array_equal(f.adv, adv, equal_nan=True) and np.isnan(f.adv[:4]).all() and not np.isnan(f.adv[4])
    assert np.array_equal(f.ret, frame["close"].pct_change(fill_method=None).to_numpy(float), equal_nan=True)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::Warning")
def test_atr_at_when_computed_then_equal_to_the_pandas_ta_reference_on_the_bundled_bars() -> None:
    pandas_ta = pytest.importorskip("pandas_ta")  # the test reference only
    cache = FrameCache()
    for symbol in ("AAPL", "IWM"):
        frame = read_bars_file(BUNDLED_DAILY / f"{symbol}.csv")
        reference = pandas_ta.atr(frame["high"], frame["low"], frame["close"], length=14).to_numpy()
        for end in (20, 800, len(frame)):
            assert rf.atr_at(cache, SymbolBars(symbol, frame, end, "files")) == pytest.approx(
                reference[end - 1], rel=1e-12
            )


def test_adv_at_before_the_window_is_full_then_zero() -> None:
    frame = read_bars_file(BUNDLED_DAILY / "SPY.csv")
    cache = FrameCache()
    assert rf.adv_at(cache, SymbolBars("SPY", frame, 19, "files")) == 0.0  # 19 sessions < 20
    assert rf.adv_at(cache, SymbolBars("SPY", frame, 20, "files")) > 0


def test_returns_window_then_the_last_returns_up_to_the_decision_bar_indexed_by_session() -> None:
    sb = _bars("IBM", "2021-03-10")
    window = rf.returns_window(FrameCache(), sb, 60)
    expected = sb.visible()["close"].pct_change(fill_method=None).iloc[-60:]
    assert window.index.equals(expected.index) and np.array_equal(window.to_numpy(), expected.to_numpy())
    assert window.index[-1] == pd.Timestamp("2021-03-10", tz=UTC)
    start = rf.returns_window(FrameCache(), SymbolBars("IBM", sb.frame, 3, "files"), 60)
    assert len(start) == 3 and np.isnan(start.iloc[0])  # fewer rows than the window: all of them


def test_features_when_read_again_for_the_same_frame_then_the_memoised_arrays_not_a_recomputation() -> None:
    cache, late = FrameCache(), _bars("BAC")
    early = SymbolBars("BAC", late.frame, 2000, "files")  # the same frame object, an earlier decision bar
    first = rf.features(cache, early)
    again = rf.features(cache, late)
    assert again.atr is first.atr and again.adv is first.adv and again.ret is first.ret


def test_atr_at_and_features_share_one_atr_array_per_period_in_the_cache() -> None:
    """The Execution agent's trailing stops (``atr_at``) and the Risk agent's sizing (``features``) read the same
    array from the shared cache: whichever reads first computes it, the other reuses it."""
    cache, sb = FrameCache(), _bars("SPY")
    rf.atr_at(cache, sb)
    shared = cache.peek("SPY", ("risk_atr", rf.ATR_PERIOD), sb.frame)
    assert shared is not None
    assert rf.features(cache, sb).atr is shared
    assert rf.features(cache, sb, atr_period=10).atr is not shared  # another period is another array


def test_features_when_the_frame_object_changes_then_recomputed_for_the_new_frame() -> None:
    cache, sb = FrameCache(), _bars("AIG")
    first = rf.features(cache, sb).atr
    grown = SymbolBars("AIG", sb.frame.copy(), sb.end, "files")  # a provider hands out a new frame
    assert rf.features(cache, grown).atr is not first
    assert np.array_equal(rf.features(cache, grown).atr, first, equal_nan=True)

"""Synthetic bars: reproducible per (seed, symbol), valid, on NYSE sessions, with distinct regimes."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.kernel.calendar import MarketCalendar
from core.data.base import BarProvider
from core.data.synthetic import (
    MAX_BLOCK,
    MIN_BLOCK,
    Regime,
    SyntheticProvider,
    generate_bars,
    generate_regimes,
)
from core.data.validation import validate_bars

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def decade(calendar: MarketCalendar) -> pd.DatetimeIndex:
    return calendar.sessions_index(date(2010, 1, 1), date(2019, 12, 31))


def log_returns(frame: pd.DataFrame) -> np.ndarray:
    return np.diff(np.log(frame["close"].to_numpy()))


def test_generate_bars_with_same_seed_then_identical_frame(decade: pd.DatetimeIndex) -> None:
    pd.testing.assert_frame_equal(generate_bars("AAPL", decade, 42), generate_bars("AAPL", decade, 42))


def test_generate_bars_with_different_seed_or_symbol_then_different_frame(decade: pd.DatetimeIndex) -> None:
    base = generate_bars("AAPL", decade, 42)
    assert not np.allclose(base["close"], generate_bars("AAPL", decade, 43)["close"])
    assert not np.allclose(base["close"], generate_bars("MSFT", decade, 42)["close"])


def test_generate_bars_symbol_case_does_not_matter(decade: pd.DatetimeIndex) -> None:
    pd.testing.assert_frame_equal(generate_bars("aapl", decade, 1), generate_bars("AAPL", decade, 1))


def test_generate_bars_is_identical_in_another_process_with_another_hash_seed(decade: pd.DatetimeIndex) -> None:
    # BLAKE2b seeding, not the per-process salted hash(): another interpreter must produce the very same numbers.
    code = (
        "import sys, pandas as pd; from core.data.synthetic import generate_bars; "
        "idx = pd.DatetimeIndex(sys.argv[1].split(','), name='timestamp').tz_localize('UTC'); "
        "print(repr(generate_bars('AAPL', idx, 42)['close'].tolist()))"
    )
    sessions = decade[:5]
    arg = ",".join(str(ts.date()) for ts in sessions)
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code, arg], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == repr(generate_bars("AAPL", sessions, 42)["close"].tolist())


def test_generate_bars_shorter_path_is_a_prefix_of_a_longer_one(decade: pd.DatetimeIndex) -> None:
    long = generate_bars("SPY", decade, 7)
    short = generate_bars("SPY", decade[:777], 7)
    pd.testing.assert_frame_equal(long.iloc[:777], short)


def test_generate_bars_layout_on_the_given_sessions(decade: pd.DatetimeIndex) -> None:
    frame = generate_bars("SPY", decade, 7)
    assert frame.index.equals(decade) and frame.index.name == "timestamp"
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert (frame.dtypes == np.float64).all()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(min_value=0, max_value=2**32 - 1), symbol=st.from_regex(r"[A-Z]{1,5}", fullmatch=True))
def test_generate_bars_for_any_seed_then_passes_validation(
    calendar: MarketCalendar, decade: pd.DatetimeIndex, seed: int, symbol: str
) -> None:
    frame = generate_bars(symbol, decade, seed)
    as_of = datetime(2020, 1, 2, 12, 0, tzinfo=UTC)
    problems = validate_bars(symbol, frame, as_of=as_of, min_history=len(decade), calendar=calendar)
    assert problems == []


def test_regimes_switch_in_blocks_of_bounded_length() -> None:
    labels = generate_regimes("SPY", 5000, 3)
    assert set(labels) == {"trending", "ranging", "volatile"}
    changes = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    runs = np.diff(np.r_[0, changes])
    # Two consecutive blocks may draw the same regime, so a run (the last, truncated one excluded) is one or more
    # whole blocks: never shorter than a block.
    assert runs.min() >= MIN_BLOCK
    assert len(changes) > 5000 // MAX_BLOCK // 3


def test_volatile_regime_then_larger_moves_than_trending_and_ranging(decade: pd.DatetimeIndex) -> None:
    volatility = {
        name: log_returns(generate_bars("X", decade, 5, regime=name)).std()
        for name in ("trending", "ranging", "volatile")
    }
    assert volatility["volatile"] > 2 * volatility["trending"]
    assert volatility["volatile"] > 2 * volatility["ranging"]


def test_ranging_regime_then_price_stays_near_its_level_while_trending_wanders(decade: pd.DatetimeIndex) -> None:
    def spread(frame: pd.DataFrame) -> float:
        # Largest distance of the close from its block's opening level, per 120-session slice, in log terms.
        closes = np.log(frame["close"].to_numpy())
        return float(np.median([np.ptp(closes[i : i + MAX_BLOCK]) for i in range(0, len(closes), MAX_BLOCK)]))

    ranging = np.median([spread(generate_bars(f"R{i}", decade, i, regime="ranging")) for i in range(10)])
    trending = np.median([spread(generate_bars(f"R{i}", decade, i, regime="trending")) for i in range(10)])
    assert ranging < 0.6 * trending


def test_generate_bars_with_unknown_regime_then_value_error(decade: pd.DatetimeIndex) -> None:
    with pytest.raises(ValueError, match="unknown regime 'sideways'"):
        generate_bars("X", decade, 1, regime="sideways")


def test_generate_bars_with_naive_sessions_then_value_error(decade: pd.DatetimeIndex) -> None:
    with pytest.raises(ValueError, match="UTC"):
        generate_bars("X", decade.tz_localize(None), 1)


def test_regime_with_invalid_parameters_then_value_error() -> None:
    with pytest.raises(ValueError, match="volatility must be positive"):
        Regime("bad", drift=0.0, volatility=0.0)


def test_provider_satisfies_protocol_and_serves_calendar_sessions_up_to_end(calendar: MarketCalendar) -> None:
    provider = SyntheticProvider(seed=1, start=date(2025, 11, 1), sessions=None, calendar=calendar)
    assert isinstance(provider, BarProvider)
    # 16:00 UTC on 2025-11-28 is during the early-closing session: the last complete bar is 2025-11-26.
    result = provider.history(["AAA", "BBB"], end=datetime(2025, 11, 28, 16, 0, tzinfo=UTC))
    assert result.errors == {} and result.provider == "synthetic"
    frame = result.frames["AAA"]
    assert frame.index.equals(calendar.sessions_index(date(2025, 11, 1), date(2025, 11, 26)))
    assert not np.allclose(frame["close"], result.frames["BBB"]["close"])


def test_provider_when_end_advances_then_earlier_bars_unchanged(calendar: MarketCalendar) -> None:
    provider = SyntheticProvider(seed=9, start=date(2020, 1, 1), sessions=None, calendar=calendar)
    early = provider.history(["AAA"], end=datetime(2020, 3, 2, 22, 0, tzinfo=UTC)).frames["AAA"]
    late = provider.history(["AAA"], end=datetime(2023, 6, 1, 22, 0, tzinfo=UTC)).frames["AAA"]
    pd.testing.assert_frame_equal(late.loc[: early.index[-1]], early)
    fresh = SyntheticProvider(seed=9, start=date(2020, 1, 1), sessions=None, calendar=calendar)
    pd.testing.assert_frame_equal(
        fresh.history(["AAA"], end=datetime(2023, 6, 1, 22, 0, tzinfo=UTC)).frames["AAA"], late
    )


def test_provider_with_fixed_sessions_then_exactly_that_many_bars(calendar: MarketCalendar) -> None:
    provider = SyntheticProvider(seed=2, start=date(1998, 1, 1), sessions=300, calendar=calendar)
    frame = provider.history(["AAA"], end=datetime(2030, 1, 1, tzinfo=UTC)).frames["AAA"]
    assert len(frame) == 300 and frame.index[0] == pd.Timestamp("1998-01-02", tz=UTC)
    pd.testing.assert_frame_equal(frame, generate_bars("AAA", calendar.sessions_from(date(1998, 1, 1), 300), 2))


def test_provider_with_start_then_frame_begins_there(calendar: MarketCalendar) -> None:
    provider = SyntheticProvider(seed=2, start=date(2020, 1, 1), sessions=None, calendar=calendar)
    end = datetime(2020, 12, 31, 22, 0, tzinfo=UTC)
    frame = provider.history(["AAA"], end=end, start=datetime(2020, 6, 1, tzinfo=UTC)).frames["AAA"]
    assert frame.index[0] == pd.Timestamp("2020-06-01", tz=UTC)


def test_provider_when_end_precedes_start_then_error_per_symbol(calendar: MarketCalendar) -> None:
    provider = SyntheticProvider(seed=2, start=date(2020, 1, 1), sessions=None, calendar=calendar)
    result = provider.history(["AAA"], end=datetime(2019, 6, 1, tzinfo=UTC))
    assert result.frames == {} and "no synthetic sessions for AAA" in result.errors["AAA"]

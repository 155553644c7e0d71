"""No look-ahead: computing on ``bars[:k]`` gives exactly the first ``k`` rows of computing on all bars.

Peers are always passed in full (they extend past ``k``): strategies must align them by date and never read a
peer row dated after the symbol's last bar.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strategies.base import Peers
from strategies.registry import STRATEGY_NAMES, build_registry
from tests.strategies.helpers import SHORT, random_universe

REGISTRIES = {"default": build_registry(), "short": build_registry(SHORT)}


def assert_prefix_identical(strategy, bars: pd.DataFrame, peers: Peers | None, k: int) -> None:
    full = strategy.compute(bars, peers)
    head = strategy.compute(bars.iloc[:k], peers)
    pd.testing.assert_frame_equal(head, full.iloc[:k], check_exact=True)


def synthetic_peers(n: int, seed: int) -> tuple[pd.DataFrame, Peers]:
    universe = random_universe(n, 6, seed)
    bars = universe["R0"]
    closes = pd.DataFrame({symbol: frame["close"] for symbol, frame in universe.items()})
    return bars, Peers(benchmark=universe["R1"], closes=closes)


@pytest.mark.shared
@pytest.mark.parametrize("registry_name", sorted(REGISTRIES))
@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_compute_when_future_bars_are_appended_then_earlier_rows_do_not_change_on_real_bars(
    real_bars, real_peers, name, registry_name
):
    strategy = REGISTRIES[registry_name][name]
    bars = real_bars["AAPL"]
    full = strategy.compute(bars, real_peers)
    assert (full["action"] != 0).any(), "the window must contain signals for this test to mean something"
    for k in (1, 25, strategy.min_history, strategy.min_history + 1, 2500, len(bars) - 1):
        head = strategy.compute(bars.iloc[:k], real_peers)
        pd.testing.assert_frame_equal(head, full.iloc[:k], check_exact=True)


@pytest.mark.parametrize("registry_name", sorted(REGISTRIES))
@pytest.mark.parametrize("name", STRATEGY_NAMES)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), cut=st.integers(1, 359))
def test_compute_when_future_bars_are_appended_then_earlier_rows_do_not_change_on_random_walks(
    name, registry_name, seed, cut
):
    bars, peers = synthetic_peers(360, seed)
    assert_prefix_identical(REGISTRIES[registry_name][name], bars, peers, cut)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_compute_when_bars_and_peers_contain_nan_then_no_warning_and_still_causal(name):
    bars, peers = synthetic_peers(300, 11)
    bars = bars.copy()
    bars.iloc[150] = np.nan  # a whole missing bar
    bars.iloc[200, bars.columns.get_loc("close")] = np.nan  # a missing close only
    bars.iloc[220, bars.columns.get_loc("high")] = np.nan
    closes = peers.closes.copy()
    closes.iloc[100:110, 2] = np.nan
    benchmark = peers.benchmark.copy()
    benchmark.iloc[180] = np.nan
    peers = Peers(benchmark=benchmark, closes=closes)
    strategy = REGISTRIES["short"][name]
    frame = strategy.compute(bars, peers)
    assert frame.loc[bars.index[[150, 200]], "action"].eq(0).all()
    assert np.isfinite(frame.loc[frame["action"] != 0, ["strength"]].to_numpy()).all()
    for k in (151, 201, 260):
        assert_prefix_identical(strategy, bars, peers, k)


@pytest.mark.parametrize("name", ["relative_strength", "sector_rotation", "dual_momentum"])
def test_compute_when_symbol_calendar_has_gaps_then_peers_align_by_date_and_stay_causal(name):
    bars, peers = synthetic_peers(320, 5)
    gappy = bars.drop(bars.index[[40, 41, 90, 200]])
    strategy = REGISTRIES["short"][name]
    for k in (60, 150, 250, len(gappy)):
        assert_prefix_identical(strategy, gappy, peers, k)


def test_sector_rotation_when_universes_alternate_then_results_match_a_fresh_instance():
    bars_a, peers_a = synthetic_peers(260, 1)
    _, peers_b = synthetic_peers(260, 2)
    shared = build_registry(SHORT)["sector_rotation"]
    first = shared.compute(bars_a, peers_a)
    shared.compute(bars_a, peers_b)
    again = shared.compute(bars_a, peers_a)
    fresh = build_registry(SHORT)["sector_rotation"].compute(bars_a, peers_a)
    pd.testing.assert_frame_equal(first, fresh, check_exact=True)
    pd.testing.assert_frame_equal(again, fresh, check_exact=True)


def test_sector_rotation_rank_when_universe_has_gaps_then_equals_a_brute_force_count():
    bars, peers = synthetic_peers(240, 9)
    closes = peers.closes.copy()
    closes.iloc[30:60, 3] = np.nan
    closes.iloc[:, 5] = closes.iloc[:, 0]  # a tie with the symbol itself: not "higher"
    frame = build_registry(SHORT)["sector_rotation"].compute(bars, Peers(closes=closes))

    momentum = 100.0 * (closes / closes.shift(10) - 1.0)
    own = 100.0 * (bars["close"] / bars["close"].shift(10) - 1.0)
    brute = (momentum.gt(own, axis=0).sum(axis=1) + 1).where(own.notna() & (momentum.notna().sum(axis=1) >= 3))
    np.testing.assert_array_equal(frame["ind_rank"].to_numpy(), brute.to_numpy(dtype=float))
    assert (frame["ind_universe_size"].iloc[40:55] == 5).all()

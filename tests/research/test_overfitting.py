"""The overfitting statistics on matrices whose answer is known: pure noise, and one column with a real edge."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from core.research.overfitting import (
    assess,
    deflated_sharpe,
    expected_max_sharpe,
    pbo_cscv,
    sharpe_per_period,
    stability,
)
from strategies.space import FloatRange, IntRange, SearchSpace


def test_expected_max_sharpe_grows_with_the_number_of_trials_and_their_dispersion():
    assert expected_max_sharpe(1, 0.01) == 0.0
    assert 0 < expected_max_sharpe(10, 0.01) < expected_max_sharpe(100, 0.01) < expected_max_sharpe(1000, 0.01)
    assert expected_max_sharpe(100, 0.04) == pytest.approx(2 * expected_max_sharpe(100, 0.01))


def test_deflated_sharpe_matches_the_published_formula():
    rng = np.random.default_rng(3)
    best = rng.normal(0.001, 0.01, 750)
    sharpes = rng.normal(0.0, 0.03, 40)
    got = deflated_sharpe(best, sharpes)
    sr = best.mean() / best.std(ddof=1)
    v = sharpes.var(ddof=1)
    g = 0.5772156649015329
    sr0 = math.sqrt(v) * ((1 - g) * stats.norm.ppf(1 - 1 / 40) + g * stats.norm.ppf(1 - 1 / (40 * math.e)))
    skew, kurt = stats.skew(best), stats.kurtosis(best, fisher=False)
    z = (sr - sr0) * math.sqrt(749) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    assert got.dsr == pytest.approx(stats.norm.cdf(z))
    assert got.expected_max_sharpe == pytest.approx(sr0)
    assert got.trials == 40


def test_noise_winner_is_not_significant_and_a_real_edge_is():
    rng = np.random.default_rng(5)
    noise = rng.normal(0.0, 0.01, (600, 50))
    sr = sharpe_per_period(noise)
    winner = int(np.argmax(sr))
    assert sr[winner] * math.sqrt(252) > 1.0  # the luckiest of 50 looks good in sample...
    assert not deflated_sharpe(noise[:, winner], sr).significant  # ...and is deflated to nothing
    edge = noise.copy()
    edge[:, 7] += 0.0025
    sr = sharpe_per_period(edge)
    assert int(np.argmax(sr)) == 7
    assert deflated_sharpe(edge[:, 7], sr).significant


def test_pbo_is_high_on_noise_and_low_with_a_real_edge():
    rng = np.random.default_rng(9)
    noise = rng.normal(0.0, 0.01, (640, 40))
    assert pbo_cscv(noise).pbo > 0.3  # the in-sample winner is a coin flip out of sample
    edge = noise.copy()
    edge[:, 3] += 0.002
    result = pbo_cscv(edge)
    assert result.pbo < 0.1
    assert result.combinations == math.comb(16, 8)
    assert result.observations == 640


def test_pbo_counts_the_winners_rank_out_of_sample():
    # two trials; the first wins the first half, the second the second half: the in-sample winner always loses
    a = np.tile([0.02, -0.01], 20)
    b = np.tile([-0.01, 0.005], 20)
    m = np.column_stack([np.concatenate([a, b]), np.concatenate([b, a])])
    result = pbo_cscv(m, splits=2)
    assert result.combinations == 2
    assert result.pbo == 1.0


def test_stability_separates_a_plateau_from_a_spike():
    space = SearchSpace({"x": IntRange(0, 100), "y": FloatRange(0.0, 1.0)})
    grid = [({"x": x, "y": y}, 1.0 - abs(x - 50) / 200) for x in range(0, 101, 5) for y in (0.45, 0.5, 0.55)]
    plateau = stability(space, {"x": 50, "y": 0.5}, 1.0, grid)
    assert plateau.neighbours > 0 and plateau.neighbour_ratio > 0.9 and plateau.fragile is False
    spiky = [(p, (5.0 if p == {"x": 50, "y": 0.5} else -0.5)) for p, _ in grid]
    spike = stability(space, {"x": 50, "y": 0.5}, 5.0, spiky)
    assert spike.fragile is True
    assert set(spike.profiles) == {"x", "y"}


def test_assess_flags_a_noise_search():
    rng = np.random.default_rng(21)
    space = SearchSpace({"x": IntRange(0, 30)})
    trials = [({"x": i}, float(sharpe_per_period(r)), list(r)) for i, r in enumerate(rng.normal(0, 0.01, (30, 500)))]
    best = max(range(30), key=lambda i: trials[i][1])
    verdict = assess(space, trials, best)
    assert verdict.flagged
    assert any("deflated Sharpe" in f for f in verdict.flags)

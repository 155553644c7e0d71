"""The correlation rule's numbers are pandas' numbers: the pairs computed on numpy arrays equal, float for float, the
pandas join (inner join, NaN rows dropped, last ``correlation_lookback`` rows, ``Series.corr``) they replace."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from core.risk import RiskLimits, apply_approval, evaluate_entry
from core.kernel.domain import Approval
from core.risk.rules import _correlations, _pearson

from tests.risk.factories import make_candidate, make_portfolio, position, sessions


def _pandas_pairs(own: pd.Series, frame: pd.DataFrame, symbols: list[str], limits: RiskLimits) -> dict[str, Any]:
    """The rule as pandas computes it: the reference the array path must equal."""
    pairs: dict[str, Any] = {}
    for symbol in sorted(symbols):
        joined = (
            pd.concat(
                [own.astype(float).rename("candidate"), frame[symbol].astype(float).rename("held")],
                axis=1,
                join="inner",
            )
            .dropna()
            .tail(limits.correlation_lookback)
        )
        n = len(joined)
        if n < limits.correlation_min_periods:
            pairs[symbol] = {"status": "not_applicable", "reason": "too few overlapping returns", "observations": n}
            continue
        corr = float(joined["candidate"].corr(joined["held"]))
        if not math.isfinite(corr):
            pairs[symbol] = {
                "status": "not_applicable",
                "reason": "correlation undefined (constant returns)",
                "observations": n,
            }
            continue
        status = "fail" if abs(corr) > limits.max_correlation else "pass"
        pairs[symbol] = {"status": status, "correlation": corr, "observations": n}
    return pairs


@pytest.mark.parametrize("n", [2, 3, 5, 20, 59, 60, 61, 250])
def test_pearson_then_the_same_float_as_series_corr(n: int) -> None:
    rng = np.random.default_rng(n)
    for _ in range(50):
        a = rng.normal(0, 0.02, n)
        b = 0.3 * a + rng.normal(0, 0.01, n)
        expected = pd.Series(a).corr(pd.Series(b))
        assert _pearson(a, b) == expected or (math.isnan(_pearson(a, b)) and math.isnan(expected))


def test_pearson_when_a_series_is_constant_or_too_short_then_nan_as_pandas() -> None:
    a = np.array([0.01, -0.02, 0.03, 0.0])
    assert math.isnan(_pearson(a, np.full(4, 0.5))) and math.isnan(pd.Series(a).corr(pd.Series(np.full(4, 0.5))))
    assert math.isnan(_pearson(a[:1], a[:1]))
    assert _pearson(a, -a) == pd.Series(a).corr(pd.Series(-a)) == -1.0


def test_correlations_then_equal_to_the_pandas_join_on_shared_and_on_different_sessions() -> None:
    rng = np.random.default_rng(7)
    idx = sessions(90)
    limits = RiskLimits(correlation_lookback=60, correlation_min_periods=20, max_correlation=0.3)
    for trial in range(40):
        base = rng.normal(0, 0.02, 90)
        own_values = base + rng.normal(0, 0.02, 90)
        own_values[rng.integers(0, 90, 3)] = np.nan
        own = pd.Series(own_values[30:], index=idx[30:])  # a 60-session window
        held: dict[str, pd.Series] = {}
        for k, symbol in enumerate(("AAA", "BBB", "CCC", "DDD")):
            values = rng.normal(0, 0.02, 90) + (base if k % 2 == 0 else 0.0)
            values[rng.integers(0, 90, 2)] = np.nan
            start = [30, 25, 75, 30][k]  # DDD: sessions missing (another calendar); CCC: too few
            series = pd.Series(values[start:], index=idx[start:])
            if symbol == "DDD":
                series = series.drop(series.index[rng.integers(0, len(series), 5)])
            if trial % 5 == 0 and symbol == "AAA":
                series = pd.Series(0.001, index=series.index)  # constant: undefined
            held[symbol] = series
        positions = [position(s, 10_000, "technology") for s in held]
        expected = _pandas_pairs(own, pd.DataFrame(held), list(held), limits)
        candidate = make_candidate(returns=own)
        by_symbol = _correlations(candidate, make_portfolio(positions=positions, returns=held), limits)
        as_frame = _correlations(candidate, make_portfolio(positions=positions, returns=pd.DataFrame(held)), limits)
        assert by_symbol == expected and as_frame == expected
        assert {p["status"] for p in expected.values()} >= {"pass", "not_applicable"}


def test_apply_approval_then_each_entry_keeps_its_own_series_for_later_candidates() -> None:
    idx = sessions(60)
    rng = np.random.default_rng(3)
    first = pd.Series(rng.normal(0, 0.02, 60), index=idx)
    portfolio = make_portfolio(cash=100_000.0)
    approved = evaluate_entry(make_candidate(returns=first), portfolio, RiskLimits(), "active")
    assert isinstance(approved, Approval)
    after = apply_approval(portfolio, approved, "technology", first)
    assert after.returns is not None and list(after.returns) == ["AAPL"]
    assert after.returns["AAPL"].equals(first.rename("AAPL"))
    # a second candidate moving with the first is refused on it, as the pandas join computes it
    second = make_candidate(symbol="MSFT", returns=2 * first[10:])
    refused = evaluate_entry(second, after, RiskLimits(), "active")
    expected = _pandas_pairs(2 * first[10:], pd.DataFrame({"AAPL": first}), ["AAPL"], RiskLimits())
    assert refused.rule == "correlation" and refused.values["correlation"] == expected["AAPL"]["correlation"]


def test_apply_approval_when_the_held_returns_are_a_frame_then_its_columns_and_the_entry_by_symbol() -> None:
    idx = sessions(60)
    rng = np.random.default_rng(4)
    held = pd.Series(rng.normal(0, 0.02, 60), index=idx)
    mine = pd.Series(rng.normal(0, 0.02, 60), index=idx)
    portfolio = make_portfolio(
        cash=80_000.0, positions=[position("MSFT", 20_000, "technology")], returns=pd.DataFrame({"MSFT": held})
    )
    approved = evaluate_entry(make_candidate(returns=mine), portfolio, RiskLimits(), "active")
    assert isinstance(approved, Approval)
    after = apply_approval(portfolio, approved, "technology", mine)
    assert after.returns is not None and sorted(after.returns) == ["AAPL", "MSFT"]
    assert after.returns["MSFT"].equals(held.rename("MSFT")) and after.returns["AAPL"].equals(mine.rename("AAPL"))

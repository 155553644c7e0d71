"""Properties that must hold for any input (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from core.analytics.calibration import brier_score, calibration_report, reliability_table
from core.analytics.metrics import (
    compute_metrics,
    drawdown_episodes,
    drawdown_series,
    historical_var_cvar,
    metrics_by,
    trade_metrics,
)
from tests.metrics.helpers import make_trade

equity_values = st.lists(
    st.floats(min_value=1.0, max_value=1e6, allow_nan=False, allow_infinity=False), min_size=1, max_size=60
)
# Whole-currency pnl keeps sums exact, so "total > 0" and "gross profit > gross loss" are the same statement.
pnl_values = st.lists(st.integers(min_value=-1_000_000, max_value=1_000_000).map(float), max_size=40)
returns_lists = st.lists(
    st.floats(min_value=-0.99, max_value=10.0, allow_nan=False, allow_infinity=False), min_size=1, max_size=60
)
probabilities = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


def _series(values: list[float]) -> pd.Series:
    return pd.Series(values, index=pd.date_range("2020-01-01", periods=len(values), freq="D", tz="UTC"))


@settings(max_examples=200, deadline=None)
@given(equity_values)
def test_drawdown_properties_hold_for_any_positive_equity(values: list[float]) -> None:
    equity = _series(values)

    m = compute_metrics(equity, [])
    dd = drawdown_series(equity)

    assert ((dd >= 0.0) & (dd < 1.0)).all()
    assert m.max_drawdown is not None and 0.0 <= m.max_drawdown < 1.0
    assert m.max_drawdown == dd.max()
    assert m.max_drawdown_duration_periods is not None
    assert 0 <= m.max_drawdown_duration_periods <= len(values) - 1
    # no drawdown at all exactly when equity never falls below its running peak
    never_falls = all(v >= max(values[: i + 1]) for i, v in enumerate(values))
    assert (m.max_drawdown == 0.0) == never_falls == (drawdown_episodes(equity) == [])
    # only the last episode may be unrecovered
    episodes = drawdown_episodes(equity)
    assert all(e.recovered for e in episodes[:-1])
    for value in m.as_dict().values():
        assert not (isinstance(value, float) and math.isnan(value))


@settings(max_examples=200, deadline=None)
@given(pnl_values)
def test_profit_factor_is_consistent_with_the_sign_of_total_pnl(pnls: list[float]) -> None:
    trades = [make_trade(p, strategy=f"s{i % 3}", symbol=f"X{i % 2}", index=i) for i, p in enumerate(pnls)]

    tm = trade_metrics(trades)

    total = sum(pnls)
    assert tm.total_pnl == total
    if tm.profit_factor is None:
        assert all(p == 0 for p in pnls)  # no trades, or only break-even ones
    elif total > 0:
        assert tm.profit_factor > 1.0
    elif total < 0:
        assert 0.0 <= tm.profit_factor < 1.0
    else:
        assert tm.profit_factor == 1.0
    # grouping partitions the trades: counts and pnl add up
    for key in ("strategy", "symbol"):
        groups = metrics_by(trades, key)  # type: ignore[arg-type]
        assert sum(g.num_trades for g in groups.values()) == len(pnls)
        assert sum(g.total_pnl for g in groups.values()) == total


@settings(max_examples=200, deadline=None)
@given(returns_lists, st.floats(min_value=0.01, max_value=0.99))
def test_cvar_is_never_below_var_and_both_lie_within_the_losses(returns: list[float], level: float) -> None:
    result = historical_var_cvar(returns, level)

    assert result is not None
    var, cvar = result
    assert cvar >= var - 1e-12
    assert -max(returns) <= var <= -min(returns)
    assert cvar <= -min(returns) + 1e-12


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(probabilities, st.booleans()), min_size=1, max_size=50), st.integers(1, 30))
def test_brier_and_reliability_stay_in_range_and_partition_the_forecasts(
    pairs: list[tuple[float, bool]], bins: int
) -> None:
    confidences = [p for p, _ in pairs]
    outcomes = [int(o) for _, o in pairs]

    score = brier_score(confidences, outcomes)
    table = reliability_table(confidences, outcomes, bins)

    assert 0.0 <= score <= 1.0
    assert len(table) == bins
    assert sum(b.count for b in table) == len(pairs)
    for b in table:
        if b.count:
            assert b.hit_rate is not None and 0.0 <= b.hit_rate <= 1.0
            assert b.mean_confidence is not None and b.lower - 1e-12 <= b.mean_confidence <= b.upper + 1e-12
        else:
            assert b.hit_rate is None and b.mean_confidence is None
    # every forecast sits inside the reported edges of its bin
    for p in confidences:
        holders = [b for b in table if b.lower <= p < b.upper or (b.upper == 1.0 and p == 1.0)]
        assert holders and any(b.count for b in holders)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), probabilities), st.integers(-5, 5).map(float)), max_size=30))
def test_calibration_report_counts_add_up(rows: list[tuple[float | None, float]]) -> None:
    trades = [make_trade(pnl, entry_confidence=c, index=i) for i, (c, pnl) in enumerate(rows)]

    report = calibration_report(trades)

    assert report.total_trades == len(rows)
    assert report.scored_trades + report.skipped_trades == len(rows)
    assert report.skipped_trades == sum(1 for c, _ in rows if c is None)
    assert sum(b.count for b in report.reliability) == report.scored_trades
    if report.scored_trades:
        wins = sum(1 for c, pnl in rows if c is not None and pnl > 0)
        assert report.hit_rate == wins / report.scored_trades


@settings(max_examples=100, deadline=None)
@given(equity_values.filter(lambda v: len(v) >= 2))
def test_total_return_equals_compounded_period_returns(values: list[float]) -> None:
    m = compute_metrics(_series(values), [])

    arr = np.asarray(values)
    compounded = float(np.prod(arr[1:] / arr[:-1])) - 1.0
    assert m.total_return is not None
    assert math.isclose(m.total_return, compounded, rel_tol=1e-9, abs_tol=1e-9)

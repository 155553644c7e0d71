"""The signal frame contract of strategies/base.py, for every registered strategy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.kernel.domain import Action
from strategies.base import Peers, signal_at
from strategies.common import assemble_frame
from strategies.registry import STRATEGY_NAMES, build_registry
from tests.strategies.helpers import SHORT, random_universe, random_walk_bars

REGISTRY = build_registry()


@pytest.fixture(scope="module")
def frames(real_bars, real_peers) -> dict[str, pd.DataFrame]:
    return {name: REGISTRY[name].compute(real_bars["BAC"], real_peers) for name in STRATEGY_NAMES}


@pytest.mark.shared
@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_frame_when_computed_then_columns_dtypes_and_index_follow_the_contract(frames, real_bars, name):
    frame = frames[name]
    assert frame.index.equals(real_bars["BAC"].index)
    assert list(frame.columns[:4]) == ["action", "strength", "stop", "target"]
    assert frame["action"].dtype == np.int8
    assert all(frame[c].dtype == np.float64 for c in frame.columns[1:])
    assert all(c.startswith("ind_") for c in frame.columns[4:]) and "ind_atr" in frame.columns
    assert set(np.unique(frame["action"])) <= {-1, 0, 1}
    assert not np.isinf(frame.drop(columns="action").to_numpy()).any()


@pytest.mark.shared
@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_frame_when_signalling_then_strength_in_range_and_stop_target_on_the_right_side(frames, real_bars, name):
    frame, close = frames[name], real_bars["BAC"]["close"]
    buys, sells, holds = frame["action"] == 1, frame["action"] == -1, frame["action"] == 0
    assert buys.sum() > 0 and sells.sum() > 0
    assert frame.loc[~holds, "strength"].between(0.0, 1.0).all()
    assert (frame.loc[holds, "strength"] == 0.0).all()
    assert frame.loc[holds, ["stop", "target"]].isna().all().all()
    assert ((frame.loc[buys, "stop"] < close[buys]) & (close[buys] < frame.loc[buys, "target"])).all()
    assert ((frame.loc[sells, "stop"] > close[sells]) & (close[sells] > frame.loc[sells, "target"])).all()


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_compute_when_fewer_bars_than_min_history_then_hold_everywhere(name):
    universe = random_universe(400, 6, 3)
    closes = pd.DataFrame({s: f["close"] for s, f in universe.items()})
    peers = Peers(benchmark=universe["R1"], closes=closes)
    for registry in (REGISTRY, build_registry(SHORT)):
        strategy = registry[name]
        frame = strategy.compute(universe["R0"], peers)
        assert (frame["action"].iloc[: strategy.min_history] == 0).all()
        just_enough = strategy.compute(universe["R0"].iloc[: strategy.min_history], peers)
        assert (just_enough["action"] == 0).all()


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_min_history_when_first_eligible_row_crosses_then_it_signals_there(name):
    """min_history is not padded: some random walk signals exactly on row min_history."""
    strategy = build_registry(SHORT)[name]
    for seed in range(400):
        universe = random_universe(strategy.min_history + 1, 6, seed)
        closes = pd.DataFrame({s: f["close"] for s, f in universe.items()})
        frame = strategy.compute(universe["R0"], Peers(benchmark=universe["R1"], closes=closes))
        if frame["action"].iloc[-1] != 0:
            return
    pytest.fail(f"{name}: no signal on row min_history={strategy.min_history} in 400 random walks")


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_compute_when_bars_are_empty_or_one_row_then_hold_frame(name):
    bars = random_walk_bars(1, 0)
    for subset in (bars.iloc[:0], bars):
        frame = REGISTRY[name].compute(subset, Peers(benchmark=bars, closes=bars[["close"]]))
        assert len(frame) == len(subset) and (frame["action"] == 0).all()
        assert list(frame.columns) == list(REGISTRY[name].compute(random_walk_bars(30, 1)).columns)


def test_compute_when_a_price_column_is_missing_then_value_error_names_it():
    with pytest.raises(ValueError, match="high"):
        REGISTRY["breakout"].compute(random_walk_bars(50, 0).drop(columns="high"))


def test_compute_when_benchmark_dates_are_not_utc_then_value_error():
    bars = random_walk_bars(80, 0)
    naive = random_walk_bars(80, 1)
    naive.index = naive.index.tz_localize(None)
    with pytest.raises(ValueError, match="benchmark"):
        REGISTRY["relative_strength"].compute(bars, Peers(benchmark=naive))


def test_compute_when_bars_have_integer_volume_then_same_result_as_float_volume():
    bars = random_walk_bars(300, 4)
    as_int = bars.assign(volume=bars["volume"].astype("int64"))
    for name in STRATEGY_NAMES:
        pd.testing.assert_frame_equal(REGISTRY[name].compute(as_int), REGISTRY[name].compute(bars), check_exact=True)


def test_relative_strategies_when_symbol_misses_dates_then_benchmark_is_read_on_the_same_dates():
    universe = random_universe(200, 6, 8)
    bars = universe["R0"].drop(universe["R0"].index[[10, 50, 51, 120]])
    benchmark = universe["R1"]
    closes = pd.DataFrame({s: f["close"] for s, f in universe.items()})
    peers = Peers(benchmark=benchmark, closes=closes)
    registry = build_registry(SHORT)

    ratio = registry["relative_strength"].compute(bars, peers)["ind_ratio"]
    np.testing.assert_allclose(ratio, bars["close"] / benchmark["close"].reindex(bars.index), rtol=0, atol=0)

    bench_return = registry["dual_momentum"].compute(bars, peers)["ind_benchmark_return"]
    aligned = benchmark["close"].reindex(bars.index)
    np.testing.assert_allclose(bench_return, 100.0 * (aligned / aligned.shift(20) - 1.0), rtol=1e-12)

    sector = registry["sector_rotation"].compute(bars, peers)
    momentum = closes.reindex(bars.index)
    momentum = 100.0 * (momentum / momentum.shift(10) - 1.0)
    own = 100.0 * (bars["close"] / bars["close"].shift(10) - 1.0)
    rank = (momentum.gt(own, axis=0).sum(axis=1) + 1).where(own.notna())
    np.testing.assert_array_equal(sector["ind_rank"].to_numpy(), rank.to_numpy(dtype=float))


def test_assemble_frame_when_built_through_the_public_constructor_then_identical():
    strategy = REGISTRY["bollinger_bands"]
    frame = strategy.compute(random_walk_bars(120, 2))
    arrays = [frame[c].to_numpy().copy() for c in frame.columns]
    public = assemble_frame(frame.index, frame.columns, arrays, public_api=True)
    pd.testing.assert_frame_equal(public, frame, check_exact=True)


def test_signal_at_when_row_is_a_buy_then_signal_carries_levels_indicators_and_reason():
    bars = random_walk_bars(400, 21)
    strategy = build_registry(SHORT)["breakout"]
    frame = strategy.compute(bars)
    row = int(np.flatnonzero(frame["action"].to_numpy() == 1)[0])
    signal = signal_at(strategy, "R0", frame, row, float(bars["close"].iloc[row]))
    assert signal.action is Action.BUY and signal.strategy == "breakout"
    assert signal.stop < signal.price < signal.target
    assert set(signal.indicators) == {"upper", "lower", "atr"}
    assert "broke above the previous N-day high" in signal.reason and "upper=" in signal.reason
    assert signal.as_of == bars.index[row].to_pydatetime()

    hold_row = int(np.flatnonzero(frame["action"].to_numpy() == 0)[-1])
    hold = signal_at(strategy, "R0", frame, hold_row, float(bars["close"].iloc[hold_row]))
    assert hold.action is Action.HOLD and hold.strength == 0.0 and hold.stop is None


def test_frame_when_modified_by_a_consumer_then_bars_and_later_results_are_untouched():
    bars = random_walk_bars(260, 6)
    original = bars.copy()
    strategy = build_registry(SHORT)["trend_following"]
    frame = strategy.compute(bars)
    expected = frame.copy()
    frame.loc[:, :] = 0
    pd.testing.assert_frame_equal(bars, original)
    pd.testing.assert_frame_equal(strategy.compute(bars), expected)


def _squash(excess, scale):
    return 0.5 + 0.5 * np.tanh(np.maximum(excess, 0.0) / scale)


STRENGTH_RULES = {
    # name: (buy excess, sell excess, scale) from the frame's own columns (c = close)
    "trend_following": (lambda f, c: (c - f.ind_slow_sma).abs() / f.ind_atr,) * 2 + (2.0,),
    "momentum_rotation": (lambda f, c: (f.ind_roc - f.ind_threshold).abs(),) * 2 + (5.0,),
    "mean_reversion": (lambda f, c: 30.0 - f.ind_rsi, lambda f, c: f.ind_rsi - 70.0, 5.0),
    "breakout": (lambda f, c: (c - f.ind_upper) / f.ind_atr, lambda f, c: (f.ind_lower - c) / f.ind_atr, 0.5),
    "volatility_breakout": (lambda f, c: (f.ind_move.abs() - f.ind_threshold) / f.ind_threshold,) * 2 + (0.5,),
    "relative_strength": (lambda f, c: f.ind_ratio_roc.abs(),) * 2 + (5.0,),
    "dual_momentum": (
        lambda f, c: np.minimum(f.ind_return - f.ind_hurdle, f.ind_return - f.ind_benchmark_return),
        lambda f, c: f.ind_hurdle - f.ind_return,
        5.0,
    ),
    "moving_average_envelope": (
        lambda f, c: (f.ind_lower - c) / f.ind_atr,
        lambda f, c: (c - f.ind_upper) / f.ind_atr,
        0.5,
    ),
    "bollinger_bands": (
        lambda f, c: (f.ind_lower - c) / ((f.ind_upper - f.ind_mid) / 2.0),
        lambda f, c: (c - f.ind_upper) / ((f.ind_upper - f.ind_mid) / 2.0),
        0.5,
    ),
}


@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(STRENGTH_RULES))
def test_strength_when_signalling_then_follows_the_documented_distance_past_the_threshold(frames, real_bars, name):
    frame, close = frames[name], real_bars["BAC"]["close"]
    buy_excess, sell_excess, scale = STRENGTH_RULES[name]
    for code, excess in ((1, buy_excess), (-1, sell_excess)):
        rows = frame["action"] == code
        expected = _squash(excess(frame[rows], close[rows]), scale)
        np.testing.assert_allclose(frame.loc[rows, "strength"], expected, rtol=1e-9)


@pytest.mark.shared
def test_sector_rotation_strength_when_signalling_then_reflects_rank_depth(frames):
    frame = frames["sector_rotation"]
    buys, sells = frame[frame["action"] == 1], frame[frame["action"] == -1]
    np.testing.assert_allclose(buys["strength"], 0.5 + 0.5 * (buys.ind_cutoff - buys.ind_rank) / buys.ind_cutoff)
    depth = (sells.ind_rank - sells.ind_cutoff - 1) / np.maximum(sells.ind_universe_size - sells.ind_cutoff, 1)
    np.testing.assert_allclose(sells["strength"], 0.5 + 0.5 * np.minimum(depth, 1.0))


def test_dual_momentum_when_risk_free_is_set_then_the_hurdle_compounds_over_the_lookback():
    universe = random_universe(300, 2, 12)
    peers = Peers(benchmark=universe["R1"])
    strategy = build_registry({"dual_momentum": {"lookback": 126, "risk_free": 0.04}})["dual_momentum"]
    frame = strategy.compute(universe["R0"], peers)
    hurdle = 100.0 * (1.04 ** (126 / 252) - 1.0)
    assert frame["ind_hurdle"].iloc[-1] == pytest.approx(hurdle)
    ret = frame["ind_return"]
    sells = frame.index[frame["action"] == -1]
    assert len(sells) > 0
    assert ((ret.shift(1)[sells] >= hurdle) & (ret[sells] < hurdle)).all()
    buys = frame.index[frame["action"] == 1]
    assert ((ret[buys] > hurdle) & (ret[buys] > frame["ind_benchmark_return"][buys])).all()

"""The Quant agent as a pipeline stage: decisions, causality, volatility and VIF adjustments, caching, the review hook,
and the same numbers through the real StrategyAgent on the bundled daily bars."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from agents.quant_agent import QuantAgent, QuantConfig
from agents.strategy_agent import StrategyAgent
from core.kernel.domain import Action
from core.kernel.frame_cache import FrameCache
from strategies.base import Peers, signal_at as strategy_signal_at
from strategies.frames import (
    peers_of,
    signal_arrays as shared_signal_arrays,
    signal_frame as shared_signal_frame,
    signal_frame_key,
)
from strategies.registry import build_registry
from strategies.selector import FixedSelector
from tests.quant.helpers import (
    CountingCache,
    FakeStrategies,
    bars,
    reference_record,
    signal_at,
    signal_frame,
    signals_ready,
)
from tests.strategies.helpers import daily_dir, read_bars

# the hand example of test_record.py, with a BUY at the decision bar 9
CLOSE = [100, 101, 110, 100, 97, 95, 100, 90, 80, 85, 88, 91]
ACTIONS = [1, 0, 0, -1, 0, 0, 1, 0, -1, 1, 1, 0]
SMALL = QuantConfig(horizon=2, vol_recent=3, vol_long=6, vif_window=60, vif_min_rows=8)
IND_A = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0, 8.0]
IND_B = [2.0, 7.0, 1.0, 8.0, 2.0, 8.0, 1.0, 8.0, 2.0, 8.0, 4.0, 5.0]


def _hand_setup(close=CLOSE, actions=ACTIONS, **indicators):
    frame = bars(close)
    signals = signal_frame(frame, actions, strength=0.5, **(indicators or {"a": IND_A, "b": IND_B}))
    return frame, signals, FakeStrategies({("AAA", "fake"): signals})


def _only(decisions, symbol):
    (decision,) = [d for d in decisions if d.symbol == symbol]
    return decision


async def test_on_signals_when_a_buy_is_validated_then_every_component_and_the_confidence_are_recorded() -> None:
    frame, signals, strategies = _hand_setup()
    agent = QuantAgent(strategies, config=SMALL)
    event = signals_ready({"AAA": (frame, 10)}, {"AAA": signal_at("AAA", "fake", frame, signals, 9)})

    out = await agent.on_signals(event)

    decision = _only(out.decisions, "AAA")
    inputs = dict(decision.inputs)
    # at t = 9: BUY@0 (+10 %), SELL@3 (+5 %), BUY@6 (-20 %) are complete; SELL@8 ends at bar 10 and BUY@9 is today's
    assert (inputs["signals"], inputs["wins"]) == (3, 2)
    assert inputs["hit_rate"] == pytest.approx(0.6)
    assert inputs["expectancy"] == pytest.approx(-0.05 / 3)
    assert inputs["sharpe"] == pytest.approx((-1 / 60) / math.sqrt(186 / 7200))
    assert inputs["max_drawdown"] == pytest.approx(0.2)
    assert inputs["vol_ratio"] == pytest.approx(inputs["vol_recent"] / inputs["vol_long"])
    assert inputs["vif_note"] == "ok" and inputs["vif_rows"] == 10 and set(inputs["vif"]) == {"a", "b"}
    # 3 < min_record (5): no record penalty; base 2 x 0.6 x (0.5 + 0.25) = 0.9
    assert inputs["base_confidence"] == pytest.approx(0.9)
    expected = 0.9 * inputs["factor_volatility"] * inputs["factor_vif"]
    assert inputs["confidence_deterministic"] == pytest.approx(expected)
    assert inputs["confidence"] == decision.confidence == out.validated["AAA"].confidence == pytest.approx(expected)
    assert inputs["review_status"] == "no reviewer" and inputs["review_confidence"] is None
    assert dict(out.validated["AAA"].components).items() <= inputs.items()
    json.dumps(inputs, allow_nan=False)  # JSON-friendly: no NaN, no numpy scalars
    assert decision.action == "validated" and decision.strategy == "fake"
    assert "2/3 right over 2 bars" in decision.reason and f"confidence {expected:.2f}" in decision.reason


async def test_on_signals_when_future_bars_and_signals_are_appended_then_the_past_decision_is_unchanged() -> None:
    frame, signals, strategies = _hand_setup(close=CLOSE[:10], actions=ACTIONS[:10], a=IND_A[:10], b=IND_B[:10])
    longer_close = CLOSE + [60, 40, 120, 130, 20, 25]
    longer, longer_signals, longer_strategies = _hand_setup(
        close=longer_close,
        actions=ACTIONS + [-1, 1, -1, 1, 0, 0],
        a=IND_A + [0, 9, 0, 9, 1, 1],
        b=IND_B + [9, 0, 9, 0, 2, 2],
    )
    signal = signal_at("AAA", "fake", frame, signals, 9)

    short_out = await QuantAgent(strategies, config=SMALL).on_signals(
        signals_ready({"AAA": (frame, 10)}, {"AAA": signal})
    )
    long_out = await QuantAgent(longer_strategies, config=SMALL).on_signals(
        signals_ready({"AAA": (longer, 10)}, {"AAA": signal})
    )
    later = await QuantAgent(longer_strategies, config=SMALL).on_signals(
        signals_ready({"AAA": (longer, 11)}, {"AAA": signal_at("AAA", "fake", longer, longer_signals, 10)})
    )

    assert dict(short_out.decisions[0].inputs) == dict(long_out.decisions[0].inputs)
    assert short_out.validated["AAA"].confidence == long_out.validated["AAA"].confidence
    assert later.decisions[0].inputs["signals"] == 4  # one bar later the SELL@8 is complete and counts


async def test_on_signals_when_hold_or_rejected_then_each_symbol_gets_one_skip_decision() -> None:
    frame, signals, _ = _hand_setup()
    other = bars(CLOSE)
    hold = signal_frame(other, [0] * 12)
    strategies = FakeStrategies({("AAA", "fake"): signals, ("BBB", "fake"): hold})
    event = signals_ready(
        {"AAA": (frame, 10), "BBB": (other, 10)},
        {"AAA": signal_at("AAA", "fake", frame, signals, 9), "BBB": signal_at("BBB", "fake", other, hold, 9)},
        rejected={"CCC": "stale bars"},
    )

    out = await QuantAgent(strategies, config=SMALL).on_signals(event)

    assert sorted(d.symbol for d in out.decisions) == ["AAA", "BBB", "CCC"]
    assert _only(out.decisions, "BBB").action == "skip" and "HOLD" in _only(out.decisions, "BBB").reason
    assert (
        _only(out.decisions, "CCC").action == "skip"
        and _only(out.decisions, "CCC").reason == "no usable data: stale bars"
    )
    assert set(out.validated) == {"AAA"}
    assert ("BBB", "fake") not in strategies.calls  # nothing is computed for a HOLD


def _regime_close(last_step: float) -> list[float]:
    # 280 log returns of +-0.5 % then 20 of +-last_step, alternating (each block has zero mean)
    steps = [0.005 * (-1) ** k for k in range(280)] + [last_step * (-1) ** k for k in range(20)]
    return (100 * np.exp(np.concatenate([[0.0], np.cumsum(steps)]))).tolist()


@pytest.mark.parametrize(("last_step", "factor"), [(0.03, 0.75), (0.005, 1.0)])
async def test_on_signals_when_recent_volatility_is_high_then_the_regime_factor_lowers_confidence(
    last_step, factor
) -> None:
    close = _regime_close(last_step)
    frame = bars(close)
    actions = [0] * 300 + [1]
    signals = signal_frame(frame, actions, strength=0.5)
    agent = QuantAgent(FakeStrategies({("AAA", "fake"): signals}))  # default config: 20 vs 252 days, threshold 1.5

    out = await agent.on_signals(
        signals_ready({"AAA": (frame, 301)}, {"AAA": signal_at("AAA", "fake", frame, signals, 300)})
    )

    inputs = out.decisions[0].inputs
    # recent: 20 returns of +-s, variance 20 s^2 / 19; long: 232 of +-0.5 % and 20 of +-s, variance / 251
    recent = math.sqrt(20 * last_step**2 / 19)
    long = math.sqrt((232 * 0.005**2 + 20 * last_step**2) / 251)
    assert inputs["vol_ratio"] == pytest.approx(recent / long, rel=1e-6)
    assert inputs["vol_recent"] == pytest.approx(recent * math.sqrt(252), rel=1e-6)
    assert inputs["factor_volatility"] == factor
    assert out.validated["AAA"].confidence == pytest.approx(0.75 * factor)  # no record: base 2 x 0.5 x 0.75
    assert ("high-volatility regime" in out.decisions[0].reason) == (factor < 1)


@pytest.mark.parametrize(("collinear", "factor"), [(True, 0.95), (False, 1.0)])
async def test_on_signals_when_reported_features_are_collinear_then_vif_flags_them_and_lowers_confidence(
    collinear, factor
) -> None:
    rng = np.random.default_rng(9)
    close = (100 * np.exp(np.cumsum(rng.normal(0, 0.01, 80)))).tolist()
    fast = rng.normal(size=80)
    slow = 2.0 * fast + 1.0 if collinear else rng.normal(size=80)
    frame = bars(close)
    signals = signal_frame(frame, [0] * 79 + [-1], strength=0.5, fast=fast, slow=slow)
    strategies = FakeStrategies({("AAA", "fake"): signals})
    cache = CountingCache()
    agent = QuantAgent(strategies, cache=cache)
    event = signals_ready({"AAA": (frame, 80)}, {"AAA": signal_at("AAA", "fake", frame, signals, 79)})

    out = await agent.on_signals(event)
    calls_after_first = cache.lookups.count(("AAA", signal_frame_key("fake")))
    again = await agent.on_signals(event)

    inputs = out.decisions[0].inputs
    assert inputs["vif_rows"] == 60  # the last vif_window rows
    assert (inputs["vif_max"] > 10) == collinear
    assert inputs["factor_vif"] == factor
    assert out.validated["AAA"].confidence == pytest.approx(0.75 * factor)
    # the second pass reads the cached record and the memoised VIF: no new signal-frame lookups, same numbers
    assert cache.lookups.count(("AAA", signal_frame_key("fake"))) == calls_after_first
    assert strategies.calls == [("AAA", "fake")]  # computed once
    assert dict(again.decisions[0].inputs) == dict(inputs)


# ------------------------------------------------------------------------------------------------- review hook


def _reviewer(answer):
    seen = []

    async def review(validated):
        seen.append(validated)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return review, seen


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (0.1, "lowered"),
        (0.99, "not lower: deterministic confidence kept"),
        (None, "abstained"),
        (float("nan"), "invalid answer nan: deterministic confidence kept"),
        (1.5, "invalid answer 1.5: deterministic confidence kept"),
        (-0.2, "invalid answer -0.2: deterministic confidence kept"),
        ("0.1", "invalid answer '0.1': deterministic confidence kept"),
    ],
)
async def test_review_when_it_answers_then_it_can_only_lower_confidence_and_both_values_are_recorded(
    answer, status
) -> None:
    frame, signals, strategies = _hand_setup()
    review, seen = _reviewer(answer)
    agent = QuantAgent(strategies, config=SMALL, review=review)
    event = signals_ready({"AAA": (frame, 10)}, {"AAA": signal_at("AAA", "fake", frame, signals, 9)})

    out = await agent.on_signals(event)

    inputs = out.decisions[0].inputs
    deterministic = inputs["confidence_deterministic"]
    (reviewed,) = seen
    assert reviewed.confidence == deterministic and reviewed.signal.action is Action.BUY
    assert inputs["review_status"] == status
    expected = 0.1 if status == "lowered" else deterministic
    assert (
        out.validated["AAA"].confidence
        == inputs["confidence"]
        == out.decisions[0].confidence
        == pytest.approx(expected)
    )
    assert out.validated["AAA"].components["confidence_deterministic"] == deterministic
    if status == "lowered":
        assert inputs["review_confidence"] == 0.1 and "review lowered it to 0.10" in out.decisions[0].reason
    elif answer == 0.99:
        assert inputs["review_confidence"] == 0.99
    else:
        assert inputs["review_confidence"] is None
    json.dumps(dict(inputs), allow_nan=False)


async def test_review_when_the_reviewer_raises_then_the_error_propagates() -> None:
    frame, signals, strategies = _hand_setup()
    review, _ = _reviewer(RuntimeError("reviewer bug"))
    agent = QuantAgent(strategies, config=SMALL, review=review)

    with pytest.raises(RuntimeError, match="reviewer bug"):
        await agent.on_signals(
            signals_ready({"AAA": (frame, 10)}, {"AAA": signal_at("AAA", "fake", frame, signals, 9)})
        )


async def test_review_when_the_signal_is_hold_then_the_reviewer_is_not_asked() -> None:
    frame, _, _ = _hand_setup()
    hold = signal_frame(frame, [0] * 12)
    review, seen = _reviewer(0.0)
    agent = QuantAgent(FakeStrategies({("AAA", "fake"): hold}), config=SMALL, review=review)

    out = await agent.on_signals(signals_ready({"AAA": (frame, 10)}, {"AAA": signal_at("AAA", "fake", frame, hold, 9)}))

    assert seen == [] and out.validated == {}


def test_constructor_when_called_like_the_composition_root_then_defaults_apply_and_legacy_options_override() -> None:
    cache = FrameCache()
    strategies = FakeStrategies({})

    default = QuantAgent(strategies, cache=cache)
    legacy = QuantAgent(strategies, horizon=5, lookback_signals=30)

    assert (default.config.horizon, default.config.lookback_signals, default.config.vif_window) == (10, 20, 60)
    assert (legacy.config.horizon, legacy.config.lookback_signals) == (5, 30)


# ------------------------------------------------------------------------------------------------- real wiring


async def test_strategy_and_quant_agents_on_one_cache_when_a_signal_is_validated_then_its_frame_is_computed_once() -> (
    None
):
    frame, signals, strategies = _hand_setup()
    cache = FrameCache()
    strategy_agent = StrategyAgent(strategies, FixedSelector(strategies, "fake"), cache=cache)
    quant = QuantAgent(strategies, config=SMALL, cache=cache)
    data_ready = signals_ready({"AAA": (frame, 10)}, {}).previous

    produced = await strategy_agent.on_data(data_ready)
    out = await quant.on_signals(produced)

    assert produced.signals["AAA"].action is Action.BUY and set(out.validated) == {"AAA"}
    assert strategies.calls == [("AAA", "fake")]  # the Quant agent read the frame the Strategy agent computed
    alone = await QuantAgent(strategies, config=SMALL).on_signals(produced)
    assert dict(alone.decisions[0].inputs) == dict(out.decisions[0].inputs)


DAILY = daily_dir()


def _vif_by_inverse_correlation(values: np.ndarray) -> np.ndarray:
    """VIF_i = [R^-1]_ii for the correlation matrix R: an independent route to the statsmodels numbers."""
    return np.diag(np.linalg.inv(np.corrcoef(values, rowvar=False)))


@pytest.mark.skipif(DAILY is None, reason="bundled daily bars not found")
@pytest.mark.parametrize("strategy_name", ["mean_reversion", "volatility_breakout"])
async def test_real_strategy_agent_on_bundled_bars_when_a_signal_fires_then_components_match_a_recomputation_on_visible_bars(
    strategy_name,
) -> None:
    assert DAILY is not None
    aapl = read_bars(DAILY / "AAPL.csv")
    registry = build_registry()
    strategy = registry[strategy_name]
    cache = FrameCache()
    quant = QuantAgent(registry, cache=cache)
    whole = signals_ready({"AAPL": (aapl, len(aapl))}, {}).previous.batch
    frame = shared_signal_frame(cache, whole.bars["AAPL"], strategy, peers_of(whole.bars, "SPY"))
    actions = frame["action"].to_numpy()
    t = int(np.flatnonzero((actions != 0) & (np.arange(len(actions)) >= 800))[0])

    signal = strategy_signal_at(strategy, "AAPL", frame, t, float(aapl["close"].iat[t]))
    out = await quant.on_signals(signals_ready({"AAPL": (aapl, t + 1)}, {"AAPL": signal}))

    inputs = out.decisions[0].inputs
    visible = aapl.iloc[: t + 1]
    visible_signals = strategy.compute(visible, Peers())
    ref = reference_record(visible_signals["action"].tolist(), visible["close"].tolist(), t, 10, 20)
    assert (inputs["signals"], inputs["wins"]) == (ref.n, ref.wins) and ref.n == 20
    assert inputs["expectancy"] == pytest.approx(ref.expectancy)
    assert inputs["sharpe"] == pytest.approx(ref.sharpe)
    assert inputs["max_drawdown"] == pytest.approx(ref.max_drawdown)
    log_returns = np.diff(np.log(visible["close"].to_numpy()))
    assert inputs["vol_recent"] == pytest.approx(np.std(log_returns[-20:], ddof=1) * math.sqrt(252))
    assert inputs["vol_long"] == pytest.approx(np.std(log_returns[-252:], ddof=1) * math.sqrt(252))
    names = list(signal.indicators)
    window = visible_signals[[f"ind_{n}" for n in names]].iloc[-60:].dropna().to_numpy()
    assert [inputs["vif"][n] for n in names] == pytest.approx(_vif_by_inverse_correlation(window).tolist(), rel=1e-6)
    assert 0.0 <= out.validated["AAPL"].confidence <= 1.0


@pytest.mark.skipif(DAILY is None, reason="bundled daily bars not found")
@pytest.mark.parametrize("strategy_name", ["mean_reversion", "bollinger_bands", "trend_following"])
async def test_quant_agent_when_the_strategy_arrays_are_cached_then_the_same_numbers_as_from_the_signal_frame(
    strategy_name,
) -> None:
    """The Strategy agent caches a strategy's columns as arrays; the Quant agent reads them instead of the signal frame
    (nothing assembled): every recorded number is the one the frame gives."""
    assert DAILY is not None
    aapl = read_bars(DAILY / "AAPL.csv")
    registry = build_registry()
    strategy = registry[strategy_name]
    whole = signals_ready({"AAPL": (aapl, len(aapl))}, {}).previous.batch
    peers = peers_of(whole.bars, "SPY")
    with_arrays, frame_only = FrameCache(), FrameCache()
    shared_signal_arrays(with_arrays, whole.bars["AAPL"], strategy, peers)
    frame = shared_signal_frame(frame_only, whole.bars["AAPL"], strategy, peers)
    assert with_arrays.peek("AAPL", signal_frame_key(strategy_name), aapl) is None  # no frame there
    fast, reference = QuantAgent(registry, cache=with_arrays), QuantAgent(registry, cache=frame_only)
    actions = frame["action"].to_numpy()
    fired = np.flatnonzero((actions != 0) & (np.arange(len(actions)) >= 300))[:25]
    assert len(fired) >= 5
    notes = []
    for t in fired.tolist():
        signal = strategy_signal_at(strategy, "AAPL", frame, t, float(aapl["close"].iat[t]))
        event = signals_ready({"AAPL": (aapl, t + 1)}, {"AAPL": signal})
        got, expected = await fast.on_signals(event), await reference.on_signals(event)
        assert dict(got.decisions[0].inputs) == dict(expected.decisions[0].inputs)
        assert got.validated["AAPL"].confidence == expected.validated["AAPL"].confidence
        notes.append(got.decisions[0].inputs["vif_note"])
    assert "ok" in notes  # VIFs were computed
    assert with_arrays.peek("AAPL", signal_frame_key(strategy_name), aapl) is None  # still never assembled

"""DeterministicSelector: closed set, history and peer needs respected, context-aware preferences."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies.context import REGIMES, MarketContext
from strategies.registry import STRATEGY_NAMES, build_registry
from strategies.selector import REGIME_PREFERENCES, DeterministicSelector, FixedSelector

REGISTRY = build_registry()


def context(regime: str, volume_ratio: float = 1.0) -> MarketContext:
    return MarketContext("X", volatility=0.2, trend_strength=30.0, volume_ratio=volume_ratio, regime=regime)


def test_preferences_when_defined_then_cover_every_regime_with_registered_names():
    assert set(REGIME_PREFERENCES) == set(REGIMES)
    assert all(set(names) <= set(STRATEGY_NAMES) for names in REGIME_PREFERENCES.values())


@pytest.mark.parametrize(
    "regime, volume_ratio, history, flags, expected",
    [
        ("ranging", 1.0, 300, {}, "mean_reversion"),
        ("volatile", 1.0, 300, {}, "volatility_breakout"),
        ("trending_up", 1.0, 300, {}, "trend_following"),
        ("trending_down", 1.0, 300, {}, "trend_following"),
        ("trending_up", 1.5, 300, {}, "breakout"),  # volume-confirmed breakout goes first
        ("trending_up", 1.0, 150, {}, "momentum_rotation"),  # 200-bar trend following not possible yet
        ("trending_up", 1.0, 100, {}, "breakout"),  # dual/sector/relative lack history or peers
        ("trending_up", 1.0, 100, {"benchmark_available": True}, "relative_strength"),
        ("trending_up", 1.0, 200, {}, "momentum_rotation"),  # min_history 200 needs a 201st bar
        ("trending_up", 1.0, 201, {}, "trend_following"),
        ("volatile", 1.0, 15, {}, "volatility_breakout"),  # 14 < 15: eligible
        ("ranging", 1.0, 15, {}, "volatility_breakout"),  # RSI needs 16 bars: fallback to the eligible one
        ("ranging", 1.0, 16, {}, "mean_reversion"),
    ],
)
def test_choose_when_context_and_history_given_then_the_documented_choice(
    regime, volume_ratio, history, flags, expected
):
    name, reason = DeterministicSelector(REGISTRY).choose(context(regime, volume_ratio), history, **flags)
    assert name == expected
    assert regime in reason and str(history) in reason


def test_choose_when_no_preference_is_eligible_then_falls_back_to_an_eligible_strategy():
    registry = build_registry({"mean_reversion": {"rsi_length": 300}})
    selector = DeterministicSelector({k: registry[k] for k in ("mean_reversion", "breakout", "trend_following")})
    name, reason = selector.choose(context("ranging"), 50)
    assert name == "breakout" and "fallback" in reason


def test_choose_when_history_is_too_short_for_all_then_smallest_min_history_that_peers_allow():
    name, reason = DeterministicSelector(REGISTRY).choose(context("trending_up"), 3)
    assert name == "volatility_breakout" and "smallest" in reason
    only_peer_hungry = {k: REGISTRY[k] for k in ("relative_strength", "sector_rotation", "dual_momentum")}
    name, _ = DeterministicSelector(only_peer_hungry).choose(context("ranging"), 1000)
    assert name == "relative_strength"  # no peers: still a name from the registry (it will hold)


def test_choose_when_registry_overrides_lower_min_history_then_selection_follows():
    registry = build_registry({"trend_following": {"fast": 5, "slow": 20}})
    assert DeterministicSelector(registry).choose(context("trending_up"), 25)[0] == "trend_following"


def test_selector_when_registry_empty_or_history_invalid_then_rejected():
    with pytest.raises(ValueError, match="non-empty"):
        DeterministicSelector({})
    with pytest.raises(ValueError, match="available_history"):
        DeterministicSelector(REGISTRY).choose(context("ranging"), -1)


@settings(max_examples=300, deadline=None)
@given(
    names=st.sets(st.sampled_from(STRATEGY_NAMES), min_size=1),
    regime=st.sampled_from(REGIMES),
    volume_ratio=st.one_of(st.just(math.nan), st.floats(0.0, 5.0)),
    trend=st.one_of(st.just(math.nan), st.floats(0.0, 100.0)),
    history=st.integers(0, 400),
    benchmark=st.booleans(),
    universe=st.booleans(),
)
def test_choose_when_anything_then_a_registered_name_that_respects_history_and_peers_when_possible(
    names, regime, volume_ratio, trend, history, benchmark, universe
):
    registry = {name: REGISTRY[name] for name in STRATEGY_NAMES if name in names}
    ctx = MarketContext("X", volatility=0.3, trend_strength=trend, volume_ratio=volume_ratio, regime=regime)
    name, reason = DeterministicSelector(registry).choose(
        ctx, history, benchmark_available=benchmark, universe_available=universe
    )
    assert name in registry and reason
    deferred_name, deferred_reason = DeterministicSelector(registry).choose_deferred(
        ctx, history, benchmark_available=benchmark, universe_available=universe
    )
    assert (deferred_name, deferred_reason()) == (name, reason)  # the reason written later is the same text

    def peers_ok(s):
        return (benchmark or not s.needs_benchmark) and (universe or not s.needs_universe)

    eligible = [n for n, s in registry.items() if peers_ok(s) and s.min_history < history]
    if eligible:
        assert name in eligible
        preferred = [n for n in REGIME_PREFERENCES[regime] if n in eligible]
        if preferred and not (volume_ratio >= 1.2 and "breakout" in preferred and regime.startswith("trending")):
            assert name == preferred[0]
    else:
        satisfiable = [n for n, s in registry.items() if peers_ok(s)] or list(registry)
        assert registry[name].min_history == min(registry[n].min_history for n in satisfiable)


def test_choose_when_called_twice_then_same_answer():
    selector = DeterministicSelector(REGISTRY)
    assert selector.choose(context("trending_up", 1.3), 250) == selector.choose(context("trending_up", 1.3), 250)


def test_choose_when_no_context_then_value_error_naming_it():
    # the Strategy agent hands None to a selector whose needs_context is false; this one needs the context
    selector = DeterministicSelector(REGISTRY)

    assert selector.needs_context and not FixedSelector(REGISTRY, "breakout").needs_context
    with pytest.raises(ValueError, match="DeterministicSelector chooses from the market context; got None"):
        selector.choose(None, 300)

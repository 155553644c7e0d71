"""Parameter validation, min_history derivation and the registry."""

from __future__ import annotations

import json
import math

import pytest
from pydantic import ValidationError

from strategies.base import InvalidStrategyParams, Strategy
from strategies.registry import STRATEGY_CLASSES, STRATEGY_NAMES, build_registry, describe_registry

EXPECTED_NAMES = (
    "trend_following",
    "momentum_rotation",
    "mean_reversion",
    "breakout",
    "volatility_breakout",
    "relative_strength",
    "sector_rotation",
    "dual_momentum",
    "moving_average_envelope",
    "bollinger_bands",
)


def make(name: str, **params) -> Strategy:
    return STRATEGY_CLASSES[name](**params)


# ------------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("fast, slow", [(200, 50), (50, 50)])
def test_trend_following_when_fast_not_below_slow_then_rejected_naming_strategy_and_fields(fast, slow):
    with pytest.raises(InvalidStrategyParams) as error:
        make("trend_following", fast=fast, slow=slow)
    message = str(error.value)
    assert "'trend_following'" in message and "fast" in message and "slow" in message


def test_trend_following_when_fast_is_1_then_accepted():
    strategy = make("trend_following", fast=1, slow=20)
    assert strategy.params.fast == 1 and strategy.min_history == 20


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_params_when_unknown_key_then_rejected_naming_strategy_and_key(name):
    with pytest.raises(InvalidStrategyParams, match=rf"'{name}'.*no_such_param"):
        make(name, no_such_param=3)


@pytest.mark.parametrize(
    "name, params, field",
    [
        ("trend_following", {"slow": 0}, "slow"),
        ("trend_following", {"fast": 2.5}, "fast"),
        ("momentum_rotation", {"lookback": -1}, "lookback"),
        ("momentum_rotation", {"threshold": math.nan}, "threshold"),
        ("mean_reversion", {"oversold": 0}, "oversold"),
        ("mean_reversion", {"overbought": 100}, "overbought"),
        ("breakout", {"length": 0}, "length"),
        ("volatility_breakout", {"k": 0}, "k"),
        ("volatility_breakout", {"k": math.inf}, "k"),
        ("relative_strength", {"benchmark": ""}, "benchmark"),
        ("relative_strength", {"benchmark": "SPY; DROP"}, "benchmark"),
        ("sector_rotation", {"top_fraction": 1.5}, "top_fraction"),
        ("sector_rotation", {"min_universe": 0}, "min_universe"),
        ("dual_momentum", {"risk_free": -0.01}, "risk_free"),
        ("moving_average_envelope", {"pct": 1.0}, "pct"),
        ("bollinger_bands", {"ddof": 2}, "ddof"),
        ("bollinger_bands", {"length": 1}, "length"),
        ("bollinger_bands", {"atr_length": 0}, "atr_length"),
        ("breakout", {"stop_atr": -1.0}, "stop_atr"),
        ("breakout", {"reward_risk": 0}, "reward_risk"),
    ],
)
def test_params_when_out_of_range_then_rejected_naming_the_field(name, params, field):
    with pytest.raises(InvalidStrategyParams, match=rf"'{name}'.*{field}"):
        make(name, **params)


def test_mean_reversion_when_oversold_not_below_overbought_then_rejected():
    with pytest.raises(InvalidStrategyParams, match="oversold.*overbought"):
        make("mean_reversion", oversold=60, overbought=40)


def test_sector_rotation_when_top_n_given_then_it_replaces_the_default_fraction():
    strategy = make("sector_rotation", top_n=2)
    assert strategy.params.top_n == 2 and strategy.params.top_fraction is None


@pytest.mark.parametrize("params", [{"top_n": 2, "top_fraction": 0.3}, {"top_fraction": None}])
def test_sector_rotation_when_not_exactly_one_cutoff_then_rejected(params):
    with pytest.raises(InvalidStrategyParams, match="exactly one of top_fraction"):
        make("sector_rotation", **params)


def test_params_when_frozen_then_cannot_be_changed():
    strategy = make("breakout")
    with pytest.raises(ValidationError, match="frozen"):
        strategy.params.length = 5  # type: ignore[misc]
    assert strategy.params.length == 20


# ---------------------------------------------------------------------------------------------- min_history
@pytest.mark.parametrize(
    "name, params, expected",
    [
        ("trend_following", {}, 200),
        ("trend_following", {"fast": 5, "slow": 30}, 30),
        ("trend_following", {"fast": 2, "slow": 10, "atr_length": 40}, 40),
        ("momentum_rotation", {}, 127),
        ("momentum_rotation", {"lookback": 20}, 21),
        ("mean_reversion", {}, 15),
        ("mean_reversion", {"rsi_length": 30}, 31),
        ("breakout", {}, 21),
        ("breakout", {"length": 55}, 56),
        ("volatility_breakout", {}, 14),
        ("volatility_breakout", {"length": 30}, 30),
        ("relative_strength", {}, 64),
        ("sector_rotation", {"lookback": 60}, 61),
        ("dual_momentum", {}, 253),
        ("moving_average_envelope", {"length": 50}, 50),
        ("bollinger_bands", {}, 20),
        ("bollinger_bands", {"length": 5}, 14),
    ],
)
def test_min_history_when_params_change_then_it_is_derived_from_them(name, params, expected):
    assert make(name, **params).min_history == expected


# -------------------------------------------------------------------------------------------------- registry
def test_registry_when_built_then_has_the_ten_names_in_order_and_is_read_only():
    registry = build_registry()
    assert STRATEGY_NAMES == EXPECTED_NAMES
    assert tuple(registry) == EXPECTED_NAMES
    assert all(registry[name].name == name for name in EXPECTED_NAMES)
    with pytest.raises(TypeError):
        registry["extra"] = registry["breakout"]  # type: ignore[index]


def test_registry_when_built_twice_then_instances_are_not_shared():
    first, second = build_registry(), build_registry()
    assert all(first[name] is not second[name] for name in EXPECTED_NAMES)


def test_registry_when_overrides_given_then_applied_to_that_strategy_only():
    registry = build_registry({"trend_following": {"fast": 20, "slow": 100}, "breakout": {"length": 55}})
    assert registry["trend_following"].params.slow == 100 and registry["trend_following"].min_history == 100
    assert registry["breakout"].params.length == 55
    assert registry["momentum_rotation"].params == STRATEGY_CLASSES["momentum_rotation"].Params()


def test_registry_when_override_names_an_unknown_strategy_then_rejected_naming_it():
    with pytest.raises(InvalidStrategyParams, match="'ichimoku'"):
        build_registry({"ichimoku": {"length": 9}})


def test_registry_when_override_has_a_bad_parameter_then_rejected_naming_strategy_and_parameter():
    with pytest.raises(InvalidStrategyParams, match="'trend_following'.*fast"):
        build_registry({"trend_following": {"fast": 300}})
    with pytest.raises(InvalidStrategyParams, match="'breakout'.*lenght"):
        build_registry({"breakout": {"lenght": 10}})


def test_registry_when_override_is_not_a_mapping_then_rejected_naming_the_strategy():
    with pytest.raises(InvalidStrategyParams, match="'breakout'.*mapping"):
        build_registry({"breakout": [("length", 10)]})  # type: ignore[dict-item]


def test_describe_registry_when_called_then_one_json_ready_entry_per_strategy_with_peer_needs():
    described = describe_registry(build_registry({"dual_momentum": {"risk_free": 0.02}}))
    assert [d["name"] for d in described] == list(EXPECTED_NAMES)
    by_name = {d["name"]: d for d in described}
    assert by_name["dual_momentum"]["params"]["risk_free"] == 0.02
    assert by_name["trend_following"]["min_history"] == 200
    needs = (
        {d["name"] for d in described if d["needs_benchmark"]},
        {d["name"] for d in described if d["needs_universe"]},
    )
    assert needs == ({"relative_strength", "dual_momentum"}, {"sector_rotation"})
    assert all(d["description"] for d in described)
    json.dumps(described)

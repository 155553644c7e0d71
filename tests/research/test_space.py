"""Every registered strategy declares a search space whose every point its own parameters accept, constraints held by
construction; a trial is a pipeline backtest that a pruner can stop early."""

from __future__ import annotations

import optuna
import pytest

from core.backtest.runner import BacktestConfig
from core.research.objective import TrialSpec, evaluate, suggest
from strategies.registry import STRATEGY_CLASSES
from strategies.space import IntRange, LessThan, SearchSpace
from tests.research.datasets import planted


@pytest.mark.parametrize("name", list(STRATEGY_CLASSES))
def test_every_point_of_a_declared_space_is_accepted_by_the_strategy(name):
    cls = STRATEGY_CLASSES[name]
    assert cls.search_space.dimensions, f"{name} declares nothing to search"
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=4))
    for _ in range(40):
        trial = study.ask()
        params = suggest(trial, cls.search_space)
        assert set(params) == set(cls.search_space.dimensions)
        cls(**params)  # raises InvalidStrategyParams for a point the strategy rejects
        study.tell(trial, 0.0)


def test_a_constraint_narrows_the_smaller_parameter_instead_of_wasting_trials():
    space = SearchSpace({"fast": IntRange(2, 100), "slow": IntRange(10, 300)}, (LessThan("fast", "slow"),))
    assert space.order() == ["slow", "fast"]
    assert space.narrowed("fast", {"slow": 30}) == IntRange(2, 29)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(200):
        trial = study.ask()
        params = suggest(trial, space)
        assert params["fast"] < params["slow"]
        study.tell(trial, 0.0)


def test_a_fixed_parameter_leaves_the_space():
    config = BacktestConfig(strategy="trend_following", params={"slow": 120})
    space = TrialSpec(config).space
    assert list(space.dimensions) == ["fast"] and space.constraints == ()


def test_a_pruned_trial_stops_its_backtest_early(settings_factory, tmp_path):
    bars = planted(tmp_path / "bars", symbols=1, sessions=200)
    settings = settings_factory(data_dir=bars)
    config = BacktestConfig(
        data_dir=bars, strategy="volatility_breakout", params={"length": 10}, shadow=False, calendar="data"
    )
    seen: list[tuple[int, float]] = []

    def report(step: int, value: float) -> bool:
        seen.append((step, value))
        return True  # the pruner says stop at the first checkpoint

    outcome = evaluate(settings, TrialSpec(config), {"k": 3.0}, report=report)
    assert outcome.pruned
    assert len(seen) == 1 and seen[0][0] in (50, 100, 150)  # a checkpoint (quarters) with a defined objective
    assert outcome.result.iterations == seen[0][0] and outcome.result.status == "interrupted"
    full = evaluate(settings, TrialSpec(config), {"k": 3.0})
    assert not full.pruned and full.result.iterations == 200
    assert len(full.attrs["returns"]) == 200

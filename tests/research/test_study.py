"""Studies end to end: each trial a full pipeline backtest on synthetic bars whose answer is known.

* planted signal: ``volatility_breakout`` (``length=10``) is profitable for ``k`` in [2.5, 3.5) only; the search must
  land there and the statistics must not call it luck;
* pure noise: random walks; whatever the search finds, the overfitting statistics must flag it;
* storage: the study lives beside the project's database and leaves its tables and migrations alone; it resumes.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from sqlalchemy import create_engine, inspect, select, func, text

from core.backtest.runner import BacktestConfig, BacktestError
from core.persistence.db import open_database
from core.persistence.models import Run
from core.research.objective import TrialSpec
from core.research.optimize import judge, optimize
from core.research.study import StudySpec, run_study, usable_trials
from tests.research.datasets import PLANTED_K, noise, planted


def _planted_spec(bars: Path, trials: int, **changes) -> StudySpec:
    config = BacktestConfig(
        data_dir=bars, strategy="volatility_breakout", params={"length": 10}, shadow=False, calendar="data"
    )
    return StudySpec(TrialSpec(config), trials=trials, seed=1, **changes)


@pytest.mark.slow
def test_search_finds_the_planted_parameters_and_does_not_call_them_luck(settings_factory, tmp_path):
    bars = planted(tmp_path / "bars")
    settings = settings_factory(data_dir=bars)
    outcome = optimize(settings, _planted_spec(bars, 16), rerun_best=True)
    best = outcome.best
    assert PLANTED_K[0] <= best.params["k"] < PLANTED_K[1]
    assert set(best.params) == {"k"}  # length is fixed by --param, not searched
    verdict = outcome.overfitting
    assert verdict.deflated.significant, verdict.as_dict()
    assert outcome.best_equity is not None and len(outcome.best_equity) > 400


@pytest.mark.slow
def test_pure_noise_winner_is_flagged(settings_factory, tmp_path):
    bars = noise(tmp_path / "bars")
    settings = settings_factory(data_dir=bars)
    config = BacktestConfig(data_dir=bars, strategy="trend_following", shadow=False, calendar="data")
    spec = StudySpec(TrialSpec(config), trials=16, seed=2)
    outcome = optimize(settings, spec)
    assert outcome.best is not None
    assert outcome.overfitting.flagged, outcome.overfitting.as_dict()
    assert not outcome.overfitting.deflated.significant
    # the constraint fast < slow held by construction in every trial
    for trial in outcome.run.study.get_trials(deepcopy=False):
        if "fast" in trial.params:
            assert trial.params["fast"] < trial.params["slow"]


def test_the_study_resumes_and_leaves_the_project_database_alone(settings_factory, tmp_path):
    bars = planted(tmp_path / "bars", symbols=1, sessions=260)
    db = tmp_path / "trading.db"
    settings = settings_factory(data_dir=bars, database_url=f"sqlite:///{db}")
    open_database(settings.database_url).dispose()  # the project's ledger, migrated
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        tables_before = set(inspect(conn).get_table_names())
        version_before = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()

    spec = _planted_spec(bars, 4, name="resume-me", prune=False)
    first = run_study(settings, spec)
    assert first.trials_run == 4
    params_before = {t.number: t.params for t in first.study.trials}
    second = run_study(settings, StudySpec(spec.trial, trials=6, seed=1, name="resume-me", prune=False))
    assert second.trials_run == 2  # only the missing ones
    trials = second.study.get_trials(deepcopy=False)
    assert [t.number for t in trials] == list(range(6))
    assert {t.number: t.params for t in trials if t.number < 4} == params_before
    assert len({t.user_attrs["run_id"] for t in trials}) == 6

    with engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) == tables_before
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == version_before
        assert conn.execute(select(func.count()).select_from(Run)).scalar_one() == 0  # no trial run in the ledger
    sibling = Path(f"{db}.optuna.sqlite")
    assert sibling.is_file()
    optuna_engine = create_engine(f"sqlite:///{sibling}")
    with optuna_engine.connect() as conn:
        assert {"studies", "trials", "alembic_version"} <= set(inspect(conn).get_table_names())


def test_a_study_name_is_refused_for_another_request(settings_factory, tmp_path):
    bars = planted(tmp_path / "bars", symbols=1, sessions=260)
    settings = settings_factory(data_dir=bars)
    run_study(settings, _planted_spec(bars, 1, name="taken", prune=False))
    other = BacktestConfig(
        data_dir=bars, strategy="volatility_breakout", params={"length": 12}, shadow=False, calendar="data"
    )
    with pytest.raises(BacktestError, match="another request"):
        run_study(settings, StudySpec(TrialSpec(other), trials=1, name="taken"))


def test_infeasible_trials_score_minus_infinity_and_are_never_chosen(settings_factory, tmp_path):
    bars = planted(tmp_path / "bars", symbols=1, sessions=260)
    settings = settings_factory(data_dir=bars)
    config = BacktestConfig(
        data_dir=bars, strategy="volatility_breakout", params={"length": 10}, shadow=False, calendar="data"
    )
    spec = StudySpec(TrialSpec(config, min_trades=10_000), trials=3, seed=1, prune=False)
    run = run_study(settings, spec)
    trials = run.study.get_trials(deepcopy=False)
    assert all(t.value == float("-inf") and t.user_attrs["infeasible"] for t in trials)
    assert any("fewer than the minimum" in t.user_attrs["infeasible"] for t in trials)
    assert usable_trials(run.study) == []
    assert judge(spec, run) == (None, None)


@pytest.mark.slow
def test_two_local_processes_share_one_study_without_losing_or_repeating_a_trial(settings_factory, tmp_path):
    bars = planted(tmp_path / "bars", symbols=1, sessions=260)
    settings = settings_factory(data_dir=bars)
    run = run_study(settings, _planted_spec(bars, 8, jobs=2, prune=False))
    finished = [
        t
        for t in run.study.get_trials(deepcopy=False)
        if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        and not t.user_attrs.get("surplus")
    ]
    assert len(finished) == 8
    ran = [n for worker in run.ran_by_worker for n in worker]
    assert sorted(ran) == sorted(t.number for t in finished)  # every trial run once, by one worker
    assert len({t.user_attrs["run_id"] for t in finished}) == 8
    assert all(worker for worker in run.ran_by_worker)  # both processes worked


def test_the_study_name_follows_the_data_not_the_directory_it_is_in(tmp_path):
    from core.research.study import study_name_for

    def name(directory: Path) -> str:
        config = BacktestConfig(data_dir=directory, strategy="volatility_breakout", shadow=False, calendar="data")
        return study_name_for(TrialSpec(config))

    here = planted(tmp_path / "machine-a" / "bars", symbols=1, sessions=120)
    there = planted(tmp_path / "machine-b" / "other-place", symbols=1, sessions=120)
    assert name(here) == name(there)  # the same files elsewhere: the same study
    other = planted(tmp_path / "machine-c", symbols=1, sessions=150)
    assert name(other) != name(here)

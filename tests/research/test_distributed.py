"""Optuna's distributed mode on the project's PostgreSQL database: the same ``main.py optimize`` command started twice
(as on two machines) works on one study; no trial is lost or run twice, and the project's tables and migrations are
untouched (Optuna's tables, its own ``alembic_version`` among them, live in the ``optuna`` schema)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import optuna
import pytest
from sqlalchemy import create_engine, inspect, text

from core.persistence.db import normalise_url, open_database
from core.research.storage import OPTUNA_SCHEMA, open_storage, storage_spec
from tests.conftest import REPO_ROOT
from tests.research.datasets import planted

TRIALS = 10


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_on_one_postgres_study_lose_and_repeat_no_trial(postgres_url, tmp_path):
    bars = planted(tmp_path / "bars", symbols=1, sessions=260)
    open_database(postgres_url).dispose()  # the project's own schema, migrated to head
    project = create_engine(normalise_url(postgres_url))
    with project.connect() as conn:
        public_before = set(inspect(conn).get_table_names(schema="public"))
        version_before = conn.execute(text("SELECT version_num FROM public.alembic_version")).scalars().all()

    command = [
        sys.executable, "main.py", "optimize", "--db", postgres_url, "--strategy", "volatility_breakout",
        "--param", "length=10", "--data-dir", str(bars), "--calendar", "data", "--trials", str(TRIALS),
        "--no-prune", "--json",
    ]  # fmt: skip
    env = {**os.environ, "LOG_DIR": str(tmp_path / "logs")}
    workers = [
        subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-2000:]
        results.append(json.loads(out))
    assert results[0]["study"] == results[1]["study"]  # the same command derives the same study
    assert sum(r["trials_run_here"] for r in results) == TRIALS
    assert all(r["trials_run_here"] > 0 for r in results)  # both worked on it

    study = optuna.load_study(study_name=results[0]["study"], storage=open_storage(storage_spec(postgres_url)))
    trials = study.get_trials(deepcopy=False)
    real = [t for t in trials if not t.user_attrs.get("surplus")]
    assert all(t.state is optuna.trial.TrialState.COMPLETE for t in real)  # nothing failed or left running
    assert len(real) == TRIALS
    assert len({t.number for t in real}) == TRIALS
    assert len({t.user_attrs["run_id"] for t in real}) == TRIALS  # one backtest per trial, none twice
    assert len({t.user_attrs["worker"] for t in real}) == 2

    with project.connect() as conn:
        assert set(inspect(conn).get_table_names(schema="public")) == public_before
        assert conn.execute(text("SELECT version_num FROM public.alembic_version")).scalars().all() == version_before
        assert conn.execute(text("SELECT count(*) FROM public.runs")).scalar_one() == 0
        optuna_tables = set(inspect(conn).get_table_names(schema=OPTUNA_SCHEMA))
    assert {"studies", "trials", "alembic_version"} <= optuna_tables
    assert not ({"studies", "trials"} & public_before)
    project.dispose()

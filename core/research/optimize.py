"""``main.py optimize`` without the command line: run the study, judge its winner, walk forward, build the report.

The in-sample study searches the whole requested range; its winner is the best feasible trial (ties: the earliest).
The overfitting statistics (:mod:`core.research.overfitting`) are computed over every feasible trial of the study.
With a walk-forward request the same search is repeated on each training window (:mod:`core.research.walkforward`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from config.settings import Settings
from core.research.objective import evaluate
from core.research.overfitting import Overfitting, assess
from core.research.report import trial_rows
from core.research.study import StudyRun, StudySpec, describe_trial_spec, finished_trials, run_study, usable_trials
from core.research.walkforward import WalkForwardResult, WalkForwardSpec, run_walk_forward
from utils.jsonable import jsonable

__all__ = ["OptimizeOutcome", "optimize"]


@dataclass(frozen=True)
class OptimizeOutcome:
    spec: StudySpec
    run: StudyRun
    best: Any | None  # the winning FrozenTrial
    overfitting: Overfitting | None
    walk_forward: WalkForwardResult | None
    best_equity: pd.Series | None

    def as_json(self) -> dict[str, Any]:
        study = self.run.study
        trials = study.get_trials(deepcopy=False)
        states: dict[str, int] = {}
        for t in trials:
            key = "SURPLUS" if t.user_attrs.get("surplus") else t.state.name
            states[key] = states.get(key, 0) + 1
        best = self.best
        return jsonable(
            {
                "study": self.spec.study_name,
                "storage": self.run.storage.shown,
                "request": describe_trial_spec(self.spec.trial),
                "trials_target": self.spec.trials,
                "trials_by_state": states,
                "trials_run_here": self.run.trials_run,
                "jobs": self.spec.jobs,
                "elapsed_s": round(self.run.elapsed_s, 3),
                "trials_per_minute": round(self.run.trials_per_minute, 2),
                "best": None
                if best is None
                else {
                    "number": best.number,
                    "params": best.params,
                    "objective": best.value,
                    **{k: best.user_attrs.get(k) for k in ("sharpe", "sortino", "calmar", "total_return", "max_drawdown", "closed_trades")},
                },
                "overfitting": self.overfitting.as_dict() if self.overfitting else None,
                "walk_forward": self.walk_forward.as_dict() if self.walk_forward else None,
            },
            decimals="float",
            infinities="text",
        )  # fmt: skip

    def report_data(self) -> dict[str, Any]:
        study = self.run.study
        best = self.best
        over = self.overfitting
        summary = {
            "study": self.spec.study_name,
            "storage": self.run.storage.shown,
            **{k: (v if not isinstance(v, dict | list) else str(v)) for k, v in describe_trial_spec(self.spec.trial).items()},
            "trials (target)": self.spec.trials,
            "trials run by this command": self.run.trials_run,
            "trials per minute": round(self.run.trials_per_minute, 2),
        }  # fmt: skip
        data: dict[str, Any] = {
            "title": f"Study {self.spec.study_name}",
            "summary": summary,
            "best_params": dict(best.params) if best is not None else {},
            "best_value": best.value if best is not None else None,
            "best_metrics": {
                k: best.user_attrs.get(k)
                for k in ("sharpe", "sortino", "calmar", "total_return", "cagr", "max_drawdown", "closed_trades")
            }
            if best is not None
            else None,
            "verdict": over.flags if over else ["no feasible trial: nothing to judge"],
            "overfitting": over.as_dict() if over else None,
            "stability": None,
            "trials": trial_rows(study.get_trials(deepcopy=False)),
            "best_equity": self.best_equity,
        }
        if over is not None and over.stability is not None:
            data["stability"] = {**over.stability.as_dict(), "profiles": over.stability.profiles}
        if self.walk_forward is not None:
            data["walk_forward"] = self.walk_forward.as_dict()
            data["stitched"] = self.walk_forward.stitched
        return data


def judge(spec: StudySpec, run: StudyRun) -> tuple[Any | None, Overfitting | None]:
    usable = usable_trials(run.study)
    if not usable:
        return None, None
    best_index = max(range(len(usable)), key=lambda i: (usable[i].value, -usable[i].number))
    rows = [(dict(t.params), float(t.value), t.user_attrs.get("returns") or []) for t in usable]
    tried = finished_trials(run.study)  # every trial tried counts in the deflation, feasible or not
    return usable[best_index], assess(spec.trial.space, rows, best_index, n_trials=tried)


def optimize(
    settings: Settings,
    spec: StudySpec,
    *,
    walk_forward: tuple[int, int] | None = None,
    anchored: bool = False,
    rerun_best: bool = False,
    progress: Callable[[int, int, float | None], None] | None = None,
    on_window: Callable[[int, int], None] | None = None,
) -> OptimizeOutcome:
    """Run the study (and the walk-forward when asked) and judge the winner."""
    run = run_study(settings, spec, progress=progress)
    best, over = judge(spec, run)
    equity = None
    if rerun_best and best is not None:
        with tempfile.TemporaryDirectory(prefix="study-best-") as scratch:
            scratch_settings = settings.model_copy(update={"database_url": f"sqlite:///{Path(scratch) / 'best.db'}"})
            outcome = evaluate(scratch_settings, spec.trial, dict(best.params))
            equity = outcome.result.equity if outcome.result is not None else None
    wf = None
    if walk_forward is not None:
        train, test = walk_forward
        wf = run_walk_forward(
            settings, WalkForwardSpec(spec, train, test, anchored), progress=progress, on_window=on_window
        )
    return OptimizeOutcome(spec, run, best, over, wf, equity)

"""Running a study: Optuna trials in this process, in ``jobs`` local processes, or on several machines at once.

A study is named (``--study``, by default a name derived from the request, so the same command resumes the same
study) and lives in Optuna's storage next to the project database (:mod:`core.research.storage`). Every worker,
local process or remote machine, opens the same study and runs trials until the study holds ``trials`` finished
(COMPLETE or PRUNED) trials; that is Optuna's distributed mode, so the same command started on several machines
sharing a PostgreSQL database works on one study.

Exactly ``trials``: before its backtest, a trial counts the finished trials and the running trials numbered below
it; when they already make ``trials`` it is recorded as a *surplus* trial (FAILED with the ``surplus`` attribute, never
backtested) and its worker stops. Surplus trials are left out of every count and statistic. (Counting is a count
query: a trial never loads the others' stored returns to decide.)

Nothing lost: a worker that dies mid-trial stops sending heartbeats; after :data:`GRACE_S` another worker marks the
trial FAILED and re-queues its parameters (Optuna's ``RetryFailedTrialCallback``). An interrupted command (Ctrl-C)
leaves its running trial FAILED and resumes where the study stands when started again. FAILED trials do not count.

Each worker backtests on its own scratch SQLite database (a temporary directory removed when it ends): the study's
storage holds the trials, the project's ledger holds none of their runs.

The request is stored with the study (``spec`` user attribute); opening a study with a different request is an
error, so two machines cannot silently mix two experiments under one name.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from config.settings import Settings
from core.errors import TraderError
from core.backtest.runner import BacktestError
from core.data.files import SUFFIXES
from core.research.objective import TrialSpec, evaluate, suggest
from core.research.storage import StorageSpec, open_storage, storage_spec
from utils.jsonable import jsonable

__all__ = [
    "finished_trials",
    "GRACE_S",
    "StudySpec",
    "StudyRun",
    "prepare_study",
    "run_study",
    "study_name_for",
    "worker",
]

HEARTBEAT_S = 5
GRACE_S = 30
RETRIES = 2
PRUNER_STARTUP_TRIALS = 5


@dataclass(frozen=True, slots=True)
class StudySpec:
    """A study request: the trial spec, how many finished trials, in how many local processes, and the name."""

    trial: TrialSpec
    trials: int = 50
    jobs: int = 1
    name: str | None = None
    seed: int = 0
    prune: bool = True

    def check(self) -> None:
        self.trial.check()
        if self.trials < 1:
            raise BacktestError(f"--trials must be at least 1, got {self.trials}")
        if self.jobs < 1:
            raise BacktestError(f"--jobs must be at least 1, got {self.jobs}")

    @property
    def study_name(self) -> str:
        return self.name or study_name_for(self.trial)


def describe_trial_spec(spec: TrialSpec) -> dict[str, Any]:
    """The request as plain JSON (what the study stores and compares)."""
    b = spec.backtest
    return jsonable(
        {
            "strategy": b.strategy,
            "fixed_params": dict(b.params),
            "space": spec.space.describe(),
            "objective": spec.objective,
            "min_trades": spec.min_trades,
            "max_drawdown": spec.max_drawdown,
            "data": data_fingerprint(b.data_dir, b.symbols),
            "symbols": list(b.symbols) if b.symbols else None,
            "start": b.start,
            "end": b.end,
            "cash": b.cash,
            "commission_per_share": b.commission_per_share,
            "commission_minimum": b.commission_minimum,
            "commission_max_pct": b.commission_max_pct,
            "slippage_bps": b.slippage_bps,
            "fill": b.fill,
            "sizing": b.sizing,
            "risk_limits": b.risk_limits,
            "brackets": b.use_brackets,
            "calendar": b.calendar,
        },
        decimals="float",
        infinities="text",
    )


def data_fingerprint(data_dir: Path | None, symbols: tuple[str, ...] | None) -> str | None:
    """The bar files a study reads, by name and size (not by path: machines sharing a study keep the data in
    different directories); ``None`` for the settings' ``DATA_DIR`` unresolved."""
    if data_dir is None or not data_dir.is_dir():
        return None
    wanted = {s.upper() for s in symbols} if symbols else None
    files = sorted(
        (p.name.upper(), p.stat().st_size)
        for p in data_dir.iterdir()
        if p.is_file() and p.suffix.lower() in SUFFIXES and (wanted is None or p.stem.upper() in wanted)
    )
    return hashlib.sha256(json.dumps(files).encode()).hexdigest()[:16]


def study_name_for(spec: TrialSpec) -> str:
    """``<strategy>-<objective>-<8 hex digits of the request>``: the same request, the same study."""
    digest = hashlib.sha256(json.dumps(describe_trial_spec(spec), sort_keys=True).encode()).hexdigest()[:8]
    return f"{spec.backtest.strategy}-{spec.objective}-{digest}"


def _optuna() -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a surplus trial is a FAIL Optuna would warn about
    return optuna


def _storage(spec: StorageSpec) -> Any:
    optuna = _optuna()
    # heartbeats: a worker that dies mid-trial is detected and its parameters re-queued by the next worker
    return open_storage(
        spec,
        heartbeat_interval=HEARTBEAT_S,
        grace_period=GRACE_S,
        **_retry_stale(optuna),
    )


def _retry_stale(optuna: Any) -> dict[str, Any]:
    """The callback re-queueing a dead worker's trial (named differently across Optuna versions)."""
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    if retry is not None:
        with warnings.catch_warnings():  # marked experimental by Optuna; it is the documented way to re-queue
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return {"heartbeat_stale_trial_callback": retry(max_retry=RETRIES)}
    return {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=RETRIES)}


def _load(storage: Any, name: str, spec: StudySpec, worker_index: int = 0) -> Any:
    optuna = _optuna()
    sampler = optuna.samplers.TPESampler(seed=spec.seed + 7919 * worker_index, n_startup_trials=10)
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=0)
        if spec.prune
        else optuna.pruners.NopPruner()
    )
    return optuna.create_study(
        study_name=name, storage=storage, direction="maximize", sampler=sampler, pruner=pruner, load_if_exists=True
    )


def prepare_study(settings: Settings, spec: StudySpec, *, scratch_dir: Path | None = None) -> tuple[StorageSpec, Any]:
    """Create (or open and check) the study; returns its storage spec and the study."""
    spec.check()
    where = storage_spec(settings.database_url, scratch_dir=scratch_dir)
    study = _load(_storage(where), spec.study_name, spec)
    wanted = describe_trial_spec(spec.trial)
    stored = study.user_attrs.get("spec")
    if stored is None:
        study.set_user_attr("spec", wanted)
    elif stored != wanted:
        changed = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
        raise BacktestError(
            f"study {spec.study_name!r} in {where.shown} was started with another request (differs in "
            f"{', '.join(changed)}); choose another --study name"
        )
    return where, study


class SurplusTrial(TraderError):
    """Raised by a trial started when the study already had its trials (recorded FAILED, ``surplus`` attribute)."""


def _finished(study: Any) -> int:
    """COMPLETE and PRUNED trials (a surplus trial is FAILED: not among them), by a count query."""
    optuna = _optuna()
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return int(study._storage.get_n_trials(study._study_id, state=states))


@dataclass(frozen=True, slots=True)
class WorkerJob:
    settings: Settings
    storage: StorageSpec
    spec: StudySpec
    index: int
    quiet_logs: bool = True


def worker(job: WorkerJob, on_trial: Callable[[Any, Any], None] | None = None) -> list[int]:
    """Run trials of the study until it holds ``job.spec.trials`` finished trials; returns the numbers of the trials
    this worker backtested (a local process, or ``main.py optimize`` on another machine)."""
    optuna = _optuna()
    if job.quiet_logs:
        from utils.logging import configure_logging

        configure_logging(level="WARNING", log_dir=None)
    spec = job.spec
    target = spec.trials
    ran: list[int] = []
    with tempfile.TemporaryDirectory(prefix="study-trials-") as scratch:
        settings = job.settings.model_copy(update={"database_url": f"sqlite:///{Path(scratch) / 'trials.db'}"})
        study = _load(_storage(job.storage), spec.study_name, spec, job.index)

        def objective(trial: Any) -> float:
            done = _finished(study)
            running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            ahead = sum(1 for t in running if t.number < trial.number)
            if done + ahead >= target:
                trial.set_user_attr("surplus", True)
                study.stop()
                raise SurplusTrial(f"trial {trial.number}: the study already has its {target} trials")
            params = suggest(trial, spec.trial.space)

            def report(step: int, value: float) -> bool:
                trial.report(value, step)
                return bool(trial.should_prune())

            outcome = evaluate(settings, spec.trial, params, report=report if spec.prune else None)
            for key, value in outcome.attrs.items():
                trial.set_user_attr(key, value)
            ran.append(trial.number)
            if outcome.pruned:
                raise optuna.TrialPruned()
            return outcome.value

        def stop_when_full(study: Any, trial: Any) -> None:
            if on_trial is not None:
                on_trial(study, trial)
            if _finished(study) >= target:
                study.stop()

        if _finished(study) < target:
            study.optimize(objective, n_trials=target * 2 + RETRIES, callbacks=[stop_when_full], catch=(SurplusTrial,))
    return ran


@dataclass(frozen=True)
class StudyRun:
    study: Any
    storage: StorageSpec
    ran_by_worker: list[list[int]]
    elapsed_s: float
    trials_run: int

    @property
    def trials_per_minute(self) -> float:
        return self.trials_run / self.elapsed_s * 60 if self.elapsed_s > 0 else 0.0


def run_study(
    settings: Settings,
    spec: StudySpec,
    *,
    progress: Callable[[int, int, float | None], None] | None = None,
    scratch_dir: Path | None = None,
) -> StudyRun:
    """Run (or resume) the study with ``spec.jobs`` local processes; ``progress(finished, target, best)``."""
    where, study = prepare_study(settings, spec, scratch_dir=scratch_dir)
    started = time.perf_counter()

    def best_of(s: Any) -> float | None:
        try:
            return float(s.best_value)
        except ValueError:
            return None

    def on_trial(s: Any, _trial: Any) -> None:
        if progress is not None:
            progress(_finished(s), spec.trials, best_of(s))

    if spec.jobs == 1:
        ran = [worker(WorkerJob(settings, where, spec, 0, quiet_logs=False), on_trial)]
    else:
        jobs = [WorkerJob(settings, where, spec, i) for i in range(spec.jobs)]
        context = multiprocessing.get_context("spawn")  # no engine, thread or event loop inherited by a fork
        with ProcessPoolExecutor(max_workers=spec.jobs, mp_context=context) as pool:
            futures = [pool.submit(worker, job) for job in jobs]
            while not all(f.done() for f in futures):
                if progress is not None:
                    progress(_finished(study), spec.trials, best_of(study))
                time.sleep(0.5)
            ran = [f.result() for f in futures]
    elapsed = time.perf_counter() - started
    if progress is not None:
        progress(_finished(study), spec.trials, best_of(study))
    return StudyRun(study, where, ran, elapsed, sum(len(r) for r in ran))


def finished_trials(study: Any) -> int:
    """The COMPLETE and PRUNED trials of the study, surplus ones left out: the trials tried."""
    return _finished(study)


def usable_trials(study: Any) -> list[Any]:
    """The COMPLETE, feasible trials (finite value, not surplus), in trial-number order."""
    optuna = _optuna()
    out = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if t.value is not None and t.value != float("-inf") and not t.user_attrs.get("surplus"):
            out.append(t)
    return sorted(out, key=lambda t: t.number)


def progress_printer(stream: Any = None) -> Callable[[int, int, float | None], None]:
    """A one-line progress bar on ``stream`` (stderr): finished/target trials, best objective so far."""
    out = stream if stream is not None else sys.stderr
    last = [-1]

    def show(done: int, total: int, best: float | None) -> None:
        if done == last[0]:
            return
        last[0] = done
        width = 30
        filled = int(width * min(done, total) / max(total, 1))
        best_text = "n/a" if best is None or best == float("-inf") else f"{best:.4g}"
        out.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} trials, best {best_text}")
        if done >= total:
            out.write("\n")
        out.flush()

    return show


def with_trials(spec: StudySpec, **changes: Any) -> StudySpec:
    return replace(spec, **changes)

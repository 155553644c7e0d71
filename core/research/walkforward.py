"""True walk-forward optimisation: optimise on each training window, trade the winner on the window after it.

Windows are counted in **sessions**: the dates on which any selected symbol has a bar, within the requested range.

* **rolling**: window ``k`` trains on sessions ``[k*test, k*test + train)`` and tests on the ``test`` sessions after;
* **anchored**: every training window starts at the first session and ends where the rolling one does.

Only complete test windows are used. For each window a study (named ``<study>-wf-<mode>-<train>-<test>-<k>``, so an
interrupted walk-forward resumes window by window) searches the training window with the same objective and
constraints; its best feasible trial is then backtested, unchanged, on the test window. The test backtest starts
flat with the initial cash and sees the bars before its first session as history (indicator warm-up), never after.
A window whose study found no feasible trial stays in cash (a flat test window, noted).

Stitched out-of-sample equity: the test windows' session returns (the first from the initial cash) chained in
order from the initial cash. In-sample figures are those of each window's winner on its own training window.

**Walk-forward efficiency** (Pardo): the out-of-sample annualised return (CAGR of the stitched curve) divided by the
mean in-sample annualised return of the winners. ``objective_ratio``: the objective of the stitched curve divided
by the mean in-sample objective. Near 1: the search generalises; near 0 or negative: it fits noise.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from config.settings import Settings
from core.analytics.metrics import PerformanceMetrics, compute_metrics
from core.backtest.runner import BacktestError, discover_symbols
from core.data.files import FileProvider
from core.research.objective import daily_returns, evaluate, objective_of
from core.research.study import StudySpec, finished_trials, run_study, usable_trials

__all__ = ["WalkForwardResult", "WalkForwardSpec", "WindowOutcome", "run_walk_forward", "session_dates", "windows"]

_FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class WalkForwardSpec:
    study: StudySpec
    train: int = 252
    test: int = 63
    anchored: bool = False

    def check(self) -> None:
        self.study.check()
        if self.train < 2 or self.test < 2:
            raise BacktestError(
                f"walk-forward TRAIN:TEST must be at least 2 sessions each, got {self.train}:{self.test}"
            )

    @property
    def mode(self) -> str:
        return "anchored" if self.anchored else "rolling"


def session_dates(settings: Settings, spec: StudySpec) -> list[date]:
    """The dates on which any selected symbol has a bar within the study's range (the sessions windows count)."""
    b = spec.trial.backtest
    data_dir = b.data_dir if b.data_dir is not None else Path(settings.data_dir)
    symbols = tuple(b.symbols) if b.symbols else discover_symbols(data_dir)
    found = FileProvider(data_dir).history(symbols, end=_FAR_FUTURE)
    if not found.frames:
        raise BacktestError(f"no bars for {', '.join(symbols)} in {data_dir}")
    days: set[date] = set()
    for frame in found.frames.values():
        days.update(ts.date() for ts in frame.index)
    return sorted(d for d in days if (b.start is None or d >= b.start) and (b.end is None or d <= b.end))


def windows(days: list[date], train: int, test: int, anchored: bool) -> list[tuple[date, date, date, date]]:
    """``(train_start, train_end, test_start, test_end)`` of each complete window (bounds inclusive)."""
    out = []
    begin = 0
    while begin + train + test <= len(days):
        first = 0 if anchored else begin
        out.append((days[first], days[begin + train - 1], days[begin + train], days[begin + train + test - 1]))
        begin += test
    return out


@dataclass(frozen=True)
class WindowOutcome:
    index: int
    train_start: date
    train_end: date
    test_start: date
    test_end: date
    study_name: str
    params: dict[str, Any] | None
    is_objective: float | None
    is_cagr: float | None
    is_total_return: float | None
    oos_objective: float | None
    oos_total_return: float | None
    oos_max_drawdown: float | None
    oos_trades: int
    trials: int  # finished trials of the window's study
    feasible: int  # of which feasible
    oos_equity: pd.Series  # the test window's equity at each session close
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "window": self.index,
            "train": f"{self.train_start} .. {self.train_end}",
            "test": f"{self.test_start} .. {self.test_end}",
            "params": ", ".join(f"{k}={_short(v)}" for k, v in (self.params or {}).items()) or "none (cash)",
            "trials": self.trials,
            "feasible": self.feasible,
            "is_objective": self.is_objective,
            "oos_objective": self.oos_objective,
            "is_cagr": self.is_cagr,
            "is_total_return": self.is_total_return,
            "oos_total_return": self.oos_total_return,
            "oos_max_drawdown": self.oos_max_drawdown,
            "oos_trades": self.oos_trades,
            "note": self.note or "",
        }


def _short(value: Any) -> Any:
    return f"{value:.4g}" if isinstance(value, float) else value


@dataclass(frozen=True)
class WalkForwardResult:
    spec: WalkForwardSpec
    windows: list[WindowOutcome]
    stitched: pd.Series  # out-of-sample equity, from the initial cash
    oos_metrics: PerformanceMetrics
    oos_objective: float | None
    is_objective_mean: float | None
    is_cagr_mean: float | None
    efficiency: float | None  # OOS CAGR / mean IS CAGR
    objective_ratio: float | None

    def as_dict(self) -> dict[str, Any]:
        m = self.oos_metrics
        return {
            "mode": self.spec.mode,
            "train_sessions": self.spec.train,
            "test_sessions": self.spec.test,
            "windows": [w.as_dict() for w in self.windows],
            "oos": {
                "objective": self.oos_objective,
                "total_return": m.total_return,
                "cagr": m.cagr,
                "sharpe": m.sharpe,
                "max_drawdown": m.max_drawdown,
                "sessions": len(self.stitched),
            },
            "is": {"objective_mean": self.is_objective_mean, "cagr_mean": self.is_cagr_mean},
            "walk_forward_efficiency": self.efficiency,
            "objective_ratio": self.objective_ratio,
        }


def run_walk_forward(
    settings: Settings,
    spec: WalkForwardSpec,
    *,
    progress: Callable[[int, int, float | None], None] | None = None,
    on_window: Callable[[int, int], None] | None = None,
) -> WalkForwardResult:
    """Optimise on each training window and trade the winner on the test window after it (see the module doc)."""
    spec.check()
    days = session_dates(settings, spec.study)
    cut = windows(days, spec.train, spec.test, spec.anchored)
    if not cut:
        raise BacktestError(
            f"walk-forward needs {spec.train + spec.test} sessions for one window, the range has {len(days)}"
        )
    base = f"{spec.study.study_name}-wf-{spec.mode}-{spec.train}-{spec.test}"
    outcomes: list[WindowOutcome] = []
    with tempfile.TemporaryDirectory(prefix="walk-forward-") as scratch:
        scratch_settings = settings.model_copy(update={"database_url": f"sqlite:///{Path(scratch) / 'oos.db'}"})
        for k, (train_start, train_end, test_start, test_end) in enumerate(cut):
            if on_window is not None:
                on_window(k, len(cut))
            window_spec = replace(
                spec.study, trial=spec.study.trial.for_range(train_start, train_end), name=f"{base}-{k:02d}"
            )
            run = run_study(settings, window_spec, progress=progress)
            usable = usable_trials(run.study)
            test_spec = spec.study.trial.for_range(test_start, test_end)
            if usable:
                best = max(usable, key=lambda t: (t.value, -t.number))
                params = dict(best.params)
                outcome = evaluate(scratch_settings, test_spec, params)
                assert outcome.result is not None
                result = outcome.result
                equity = result.equity
                initial = float(result.initial_cash)
                outcomes.append(
                    WindowOutcome(
                        k, train_start, train_end, test_start, test_end, window_spec.study_name, params,
                        float(best.value), best.user_attrs.get("cagr"), best.user_attrs.get("total_return"),
                        objective_of(_from_cash(equity, initial), spec.study.trial.objective),
                        result.metrics.total_return, result.metrics.max_drawdown, len(result.closed_trades),
                        finished_trials(run.study), len(usable), equity,
                    )
                )  # fmt: skip
            else:
                outcomes.append(
                    WindowOutcome(
                        k, train_start, train_end, test_start, test_end, window_spec.study_name, None, None, None,
                        None, None, 0.0, 0.0, 0, finished_trials(run.study), 0, pd.Series(dtype=float),
                        note="no feasible trial in the training window: the test window stays in cash",
                    )
                )  # fmt: skip
    return _stitch(settings, spec, outcomes, days)


def _from_cash(equity: pd.Series, initial: float) -> pd.Series:
    before = pd.Series([initial], index=[equity.index[0] - pd.Timedelta(days=1)])
    return pd.concat([before, equity])


def _stitch(
    settings: Settings, spec: WalkForwardSpec, outcomes: list[WindowOutcome], days: list[date]
) -> WalkForwardResult:
    b = spec.study.trial.backtest
    initial = float(b.cash) if b.cash is not None else float(settings.initial_cash)
    returns: list[np.ndarray] = []
    index: list[pd.Timestamp] = []
    for w in outcomes:
        if len(w.oos_equity):
            returns.append(daily_returns(w.oos_equity, initial))
            index.extend(w.oos_equity.index)
        else:  # in cash: flat over the test window's sessions
            test_days = [d for d in days if w.test_start <= d <= w.test_end]
            returns.append(np.zeros(len(test_days)))
            index.extend(
                pd.Timestamp(datetime.combine(d, datetime.min.time()), tz=UTC) + pd.Timedelta(hours=21)
                for d in test_days
            )
    flat = np.concatenate(returns) if returns else np.zeros(0)
    stitched = pd.Series(initial * np.cumprod(1.0 + flat), index=pd.DatetimeIndex(index))
    with_start = _from_cash(stitched, initial) if len(stitched) else stitched
    oos_metrics = compute_metrics(with_start)
    oos_objective = objective_of(with_start, spec.study.trial.objective) if len(stitched) else None
    is_objectives = [w.is_objective for w in outcomes if w.is_objective is not None]
    is_cagrs = [w.is_cagr for w in outcomes if w.is_cagr is not None]
    is_objective = statistics.fmean(is_objectives) if is_objectives else None
    is_cagr = statistics.fmean(is_cagrs) if is_cagrs else None
    efficiency = oos_metrics.cagr / is_cagr if oos_metrics.cagr is not None and is_cagr else None
    ratio = oos_objective / is_objective if oos_objective is not None and is_objective else None
    return WalkForwardResult(
        spec, outcomes, stitched, oos_metrics, oos_objective, is_objective, is_cagr, efficiency, ratio
    )

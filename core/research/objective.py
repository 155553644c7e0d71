"""One trial = one full pipeline backtest: the six agents, the simulated broker and the risk rules as configured.

A trial's parameters are drawn from the strategy's declared :class:`strategies.space.SearchSpace` (constraints by
construction), validated by the strategy's own ``Params``, merged over the configured parameters and backtested with
:func:`core.backtest.runner.run_backtest` on a **scratch database** (a SQLite file of the worker process): thousands
of trial runs never enter the project's ledger.

Objectives (maximised; all from :func:`core.analytics.metrics.compute_metrics` of the run's equity curve):

* ``sharpe``: annualised Sharpe ratio of the daily returns (risk-free 0);
* ``sortino``: annualised Sortino ratio;
* ``calmar``: CAGR / maximum drawdown (undefined without a drawdown);
* ``return``: total return (pair it with ``max_drawdown``, the drawdown constraint).

Constraints: ``min_trades`` closed round trips at least; ``max_drawdown`` (a fraction) at most. A trial that breaks
one, or whose objective is undefined, or whose parameters the strategy rejects, scores ``-inf`` with the reason in
its ``infeasible`` attribute: it stays in the study (it was tried) but can never be chosen.

Pruning: with a pruner the trial reports the objective of its equity path so far at a few checkpoints; a trial the
pruner stops ends early (``stop`` is set, the run ends ``interrupted``) and is recorded as PRUNED.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from config.settings import Settings
from core.analytics.metrics import compute_metrics
from core.backtest.runner import BacktestConfig, BacktestError, BacktestResult, run_backtest
from strategies.base import InvalidStrategyParams
from strategies.registry import STRATEGY_CLASSES
from strategies.space import Choice, FloatRange, IntRange, SearchSpace
from core.research import OBJECTIVES

__all__ = [
    "OBJECTIVES",
    "INFEASIBLE",
    "TrialSpec",
    "evaluate",
    "objective_of",
    "suggest",
]

INFEASIBLE = float("-inf")
CHECKPOINTS = (0.25, 0.5, 0.75)  # shares of the sessions at which a pruned study reports the path so far
_MIN_CHECKPOINT_SESSIONS = 20  # a path shorter than this says nothing: no report


@dataclass(frozen=True, slots=True)
class TrialSpec:
    """What every trial of a study shares: the backtest (its ``strategy`` pinned, its ``params`` the fixed part),
    the objective and the constraints."""

    backtest: BacktestConfig
    objective: str = "sharpe"
    min_trades: int = 1
    max_drawdown: float | None = None

    @property
    def space(self) -> SearchSpace:
        """The strategy's declared space without the parameters fixed by ``params`` (a fixed parameter is not
        searched; a constraint with it is then checked by the strategy's own validation)."""
        assert self.backtest.strategy is not None
        declared = STRATEGY_CLASSES[self.backtest.strategy].search_space
        fixed = set(self.backtest.params)
        return SearchSpace(
            {name: dim for name, dim in declared.dimensions.items() if name not in fixed},
            tuple(c for c in declared.constraints if c.smaller not in fixed and c.larger not in fixed),
        )

    def check(self) -> None:
        if self.backtest.strategy is None:
            raise BacktestError("optimize needs --strategy (the strategy whose parameters are searched)")
        self.backtest.check()
        if self.objective not in OBJECTIVES:
            raise BacktestError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.min_trades < 0:
            raise BacktestError(f"min_trades must be >= 0, got {self.min_trades}")
        if self.max_drawdown is not None and not 0 < self.max_drawdown <= 1:
            raise BacktestError(f"max_drawdown is a fraction in (0, 1], got {self.max_drawdown}")
        if not STRATEGY_CLASSES[self.backtest.strategy].search_space.dimensions:
            raise BacktestError(f"strategy {self.backtest.strategy!r} declares no searchable parameters")
        if not self.space.dimensions:
            raise BacktestError(f"every searchable parameter of {self.backtest.strategy!r} is fixed by --param")

    def for_range(self, start: date | None, end: date | None) -> TrialSpec:
        return replace(self, backtest=replace(self.backtest, start=start, end=end))


def suggest(trial: Any, space: SearchSpace) -> dict[str, Any]:
    """Draw one point of ``space`` from an Optuna trial, constraints honoured by narrowing (see strategies.space)."""
    drawn: dict[str, Any] = {}
    for name in space.order():
        dim = space.narrowed(name, drawn)
        if isinstance(dim, IntRange):
            drawn[name] = trial.suggest_int(name, dim.low, dim.high, step=dim.step, log=dim.log)
        elif isinstance(dim, FloatRange):
            drawn[name] = trial.suggest_float(name, dim.low, dim.high, step=dim.step, log=dim.log)
        else:
            assert isinstance(dim, Choice)
            drawn[name] = trial.suggest_categorical(name, list(dim.values))
    return {name: drawn[name] for name in space.dimensions}


def objective_of(equity: pd.Series, objective: str) -> float | None:
    """The objective of an equity curve (``None`` when undefined: too short, constant, no drawdown for Calmar)."""
    if len(equity) < 2:
        return None
    m = compute_metrics(equity)
    if objective == "sharpe":
        value = m.sharpe
    elif objective == "sortino":
        value = m.sortino
    elif objective == "calmar":
        value = m.cagr / m.max_drawdown if m.cagr is not None and m.max_drawdown else None
    else:
        value = m.total_return
    return float(value) if value is not None and math.isfinite(value) else None


def daily_returns(equity: pd.Series, initial: float) -> np.ndarray:
    """Session returns of an equity curve, the first one from the initial cash."""
    values = equity.to_numpy(dtype=float)
    previous = np.concatenate([[initial], values[:-1]])
    return values / previous - 1.0


@dataclass(frozen=True, slots=True)
class TrialOutcome:
    value: float
    infeasible: str | None
    pruned: bool
    result: BacktestResult | None
    attrs: dict[str, Any]


def _stats(result: BacktestResult) -> dict[str, Any]:
    m = result.metrics
    calmar = m.cagr / m.max_drawdown if m.cagr is not None and m.max_drawdown else None
    return {
        "sharpe": m.sharpe,
        "sortino": m.sortino,
        "calmar": calmar,
        "total_return": m.total_return,
        "cagr": m.cagr,
        "max_drawdown": m.max_drawdown,
        "closed_trades": len(result.closed_trades),
        "entries": len(result.trades),
        "sessions": result.iterations,
    }


def evaluate(
    settings: Settings,
    spec: TrialSpec,
    params: Mapping[str, Any],
    *,
    report: Any = None,
) -> TrialOutcome:
    """Backtest ``params`` (over the configured parameters) and score it.

    ``report(step, value) -> bool``: called at the checkpoints with the objective so far; ``True`` prunes the trial.
    ``settings.database_url`` must be the scratch database of the caller (see :mod:`core.research.study`).
    """
    where = {"worker": f"{socket.gethostname()}:{os.getpid()}"}
    name = spec.backtest.strategy
    assert name is not None, "a study always names its strategy"
    strategy = STRATEGY_CLASSES[name]
    merged = {**settings.strategy_overrides.get(name, {}), **spec.backtest.params, **params}
    try:
        strategy(**merged)
    except InvalidStrategyParams as exc:
        return TrialOutcome(INFEASIBLE, str(exc), False, None, where)
    config = replace(spec.backtest, params={**spec.backtest.params, **params}, robustness=False, shadow=False)
    stop = asyncio.Event()
    path: list[tuple[datetime, float]] = []
    checkpoints: list[int] = []
    pruned = False

    def on_equity(done: int, total: int, session: datetime, equity: float) -> None:
        nonlocal pruned
        path.append((session, equity))
        if report is None or pruned:
            return
        if not checkpoints:
            checkpoints.extend(sorted({int(total * share) for share in CHECKPOINTS}))
        if done in checkpoints and done >= _MIN_CHECKPOINT_SESSIONS:
            value = objective_of(
                pd.Series([e for _, e in path], index=pd.DatetimeIndex([s for s, _ in path])), spec.objective
            )
            if value is not None and report(done, value):
                pruned = True
                stop.set()

    try:
        result = asyncio.run(run_backtest(settings, config, stop=stop, on_equity=on_equity))
    except InvalidStrategyParams as exc:  # pragma: no cover - validated above; kept for a strategy-level check
        return TrialOutcome(INFEASIBLE, str(exc), False, None, where)
    attrs: dict[str, Any] = {**where, "run_id": result.run_id, **_stats(result)}
    if pruned:
        return TrialOutcome(INFEASIBLE, None, True, result, attrs)
    initial = float(result.initial_cash)
    attrs["returns"] = [float(f"{r:.10g}") for r in daily_returns(result.equity, initial)]
    value = objective_of(
        pd.concat([pd.Series([initial], index=[result.equity.index[0] - pd.Timedelta(days=1)]), result.equity]),
        spec.objective,
    )
    reason = None
    if value is None:
        reason = f"{spec.objective} undefined (flat or too short equity curve)"
    elif len(result.closed_trades) < spec.min_trades:
        reason = f"{len(result.closed_trades)} closed trades, fewer than the minimum {spec.min_trades}"
    elif spec.max_drawdown is not None and (result.metrics.max_drawdown or 0.0) > spec.max_drawdown:
        reason = f"max drawdown {result.metrics.max_drawdown:.2%} above the limit {spec.max_drawdown:.2%}"
    attrs["infeasible"] = reason
    return TrialOutcome(INFEASIBLE if reason or value is None else float(value), reason, False, result, attrs)

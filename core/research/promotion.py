"""``main.py optimize --walk-forward TRAIN:TEST --promote``: record a study's winner as the next champion version of the
strategy's parameters, only when its out-of-sample improvement over the current champion is significant.

**The test.** The challenger's out-of-sample record is the stitched walk-forward curve (each test window traded with
the parameters chosen on the window before it: the out-of-sample record of choosing parameters this way). The
champion (the strategy's current champion version, or, when there is none, its configured parameters: defaults,
``STRATEGY_PARAMS``; the study's ``--param`` values do not apply to it) is backtested, as the daemon trades it, on
the same test windows. On the paired
daily returns ``d_t = r_challenger_t - r_champion_t`` of those sessions, a one-sided paired t-test of ``mean(d) > 0``:
``t = mean(d) / (std(d) / sqrt(n))``, ``p = P(T_{n-1} >= t)``. Promoted when ``p < ALPHA`` (0.05) and the
challenger's out-of-sample mean daily return is positive; otherwise refused, and nothing is recorded.

**The expectation** recorded with the version (what the daemon checks its live record against,
:mod:`core.runtime.promoted`): the challenger's out-of-sample mean daily return and its standard deviation, the
number of sessions, the Sharpe ratio (annualised, sqrt(252)), the max drawdown of the stitched curve, and the band:
at least ``MIN_SESSIONS`` live sessions, a one-sided 95 % lower bound ``mean - 1.645 * std / sqrt(n)`` for the live
mean, and a drawdown limit of ``1.5 x`` the out-of-sample max drawdown.

The parameters recorded are the study's fixed ``--param`` values with the in-sample winner's of the whole study over
them (the study the walk-forward validated).
Idempotent: promoting again from the same study with the same parameters finds the recorded version and changes
nothing.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from config.settings import Settings
from core.persistence.db import open_database
from core.persistence.promotions import active_versions, promotion_by_key, promotion_key, record_promotion
from core.research.objective import daily_returns, evaluate
from core.research.optimize import OptimizeOutcome
from core.runtime.promoted import DRAWDOWN_MULTIPLE, MIN_SESSIONS, Z_95

__all__ = ["ALPHA", "PromotionOutcome", "expectation_of", "paired_test", "promote"]

ALPHA = 0.05


@dataclass(frozen=True)
class PromotionOutcome:
    promoted: bool
    reason: str
    version: int | None = None
    created: bool = False
    test: dict[str, Any] = field(default_factory=dict)
    expectation: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "promoted": self.promoted,
            "reason": self.reason,
            "version": self.version,
            "created": self.created,
            "test": self.test,
            "expectation": self.expectation,
        }


def paired_test(challenger: np.ndarray, champion: np.ndarray) -> dict[str, Any]:
    """One-sided paired t-test of ``mean(challenger - champion) > 0`` (see the module doc)."""
    d = np.asarray(challenger, dtype=float) - np.asarray(champion, dtype=float)
    n = len(d)
    mean = float(d.mean()) if n else 0.0
    sd = float(d.std(ddof=1)) if n > 1 else 0.0
    if n < 2:
        t, p = 0.0, 1.0
    elif sd == 0.0:
        t, p = (math.inf, 0.0) if mean > 0 else (0.0, 1.0)
    else:
        t = mean / (sd / math.sqrt(n))
        p = float(stats.t.sf(t, n - 1))
    return {
        "test": "one-sided paired t-test of daily out-of-sample returns, challenger minus champion",
        "sessions": n,
        "mean_difference": mean,
        "t": t if math.isfinite(t) else None,
        "p_value": p,
        "alpha": ALPHA,
    }


def expectation_of(returns: np.ndarray) -> dict[str, Any]:
    """The out-of-sample expectation and the band the daemon checks (see the module doc)."""
    r = np.asarray(returns, dtype=float)
    mean = float(r.mean()) if len(r) else 0.0
    std = float(r.std(ddof=1)) if len(r) > 1 else 0.0
    equity = np.cumprod(1.0 + r)
    peak = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
    max_dd = float((1.0 - equity / peak).max()) if len(r) else 0.0
    return {
        "mean": mean,
        "std": std,
        "sessions": len(r),
        "sharpe": mean / std * math.sqrt(252) if std > 0 else None,
        "max_drawdown": max_dd,
        "min_sessions": MIN_SESSIONS,
        "z": Z_95,
        "drawdown_multiple": DRAWDOWN_MULTIPLE,
        "drawdown_limit": DRAWDOWN_MULTIPLE * max_dd,
    }


def _champion_returns(settings: Settings, outcome: OptimizeOutcome, params: dict[str, Any]) -> pd.Series:
    """The champion's daily returns on each walk-forward test window (each window from the initial cash)."""
    assert outcome.walk_forward is not None
    study_trial = outcome.spec.trial
    # exactly what the daemon trades: STRATEGY_PARAMS with the champion's parameters over them (no --param of the study)
    trial = replace(study_trial, backtest=replace(study_trial.backtest, params={}))
    parts = []
    with tempfile.TemporaryDirectory(prefix="promotion-") as scratch:
        scratch_settings = settings.model_copy(update={"database_url": f"sqlite:///{Path(scratch) / 'champion.db'}"})
        for window in outcome.walk_forward.windows:
            result = evaluate(scratch_settings, trial.for_range(window.test_start, window.test_end), params).result
            if result is None:
                raise ValueError(f"the champion's parameters {params} are not valid for this strategy")
            initial = float(result.initial_cash)
            parts.append(pd.Series(daily_returns(result.equity, initial), index=result.equity.index))
    return pd.concat(parts) if parts else pd.Series(dtype=float)


def _by_day(series: pd.Series) -> pd.Series:
    return pd.Series(series.to_numpy(), index=[ts.date() for ts in series.index])


def promote(settings: Settings, outcome: OptimizeOutcome, *, at: datetime | None = None) -> PromotionOutcome:
    """Test the study's winner against the champion out of sample and record it when significant."""
    wf, best = outcome.walk_forward, outcome.best
    if best is None:
        return PromotionOutcome(False, "no feasible trial: nothing to promote")
    if wf is None or not len(wf.stitched):
        return PromotionOutcome(False, "promotion needs an out-of-sample record: run with --walk-forward TRAIN:TEST")
    strategy = outcome.spec.trial.backtest.strategy
    assert strategy is not None
    params = {**outcome.spec.trial.backtest.params, **best.params}  # the fixed --param values and the searched ones
    study = outcome.spec.study_name
    engine = open_database(settings.database_url)
    try:
        existing = promotion_by_key(engine, promotion_key(strategy, study, params))
        if existing is not None:
            return PromotionOutcome(
                existing.status == "champion",
                f"already recorded as version {existing.version} ({existing.status}); nothing changed",
                existing.version,
                False,
                existing.test,
                existing.expectation,
            )
        champion = active_versions(engine).get(strategy)
        if champion is not None and champion.params == params:
            return PromotionOutcome(False, f"these parameters are already the champion (version {champion.version})")
        base = dict(champion.params) if champion is not None else {}
        first_cash = outcome.spec.trial.backtest.cash
        start = float(first_cash) if first_cash is not None else float(settings.initial_cash)
        chal = _by_day(pd.Series(daily_returns(wf.stitched, start), index=wf.stitched.index))
        champ = _by_day(_champion_returns(settings, outcome, base))
        common = [d for d in chal.index if d in champ.index]
        test = paired_test(chal.loc[common].to_numpy(), champ.loc[common].to_numpy())
        test["champion"] = f"version {champion.version}" if champion is not None else "configured parameters"
        test["champion_mean"] = float(champ.loc[common].mean()) if common else None
        expectation = expectation_of(chal.loc[common].to_numpy())
        if not (test["p_value"] < ALPHA and expectation["mean"] > 0):
            return PromotionOutcome(
                False,
                f"not significant: p = {test['p_value']:.3f} (one-sided paired t-test over {test['sessions']} "
                f"out-of-sample sessions, needs p < {ALPHA}"
                + (", and a positive out-of-sample mean)" if expectation["mean"] <= 0 else ")"),
                test=test,
                expectation=expectation,
            )
        when = at or datetime.now(UTC)
        reason = f"p = {test['p_value']:.2g} against the {test['champion']} over {test['sessions']} OOS sessions"
        row, created = record_promotion(
            engine, strategy=strategy, params=params, source_study=study, expectation=expectation, test=test,
            at=when, reason=reason,
        )  # fmt: skip
        return PromotionOutcome(
            True, f"promoted as version {row.version}: {reason}", row.version, created, test, expectation
        )
    finally:
        engine.dispose()

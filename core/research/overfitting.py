"""How much of a study's winner is luck: deflated Sharpe ratio, probability of backtest overfitting, parameter
stability. Pure functions of the trials' daily returns and objective values (no I/O, no randomness).

Deflated Sharpe ratio (Bailey & Lopez de Prado, 2014, "The Deflated Sharpe Ratio")
-------------------------------------------------------------------------------------
With ``SR*`` the winner's per-session Sharpe ratio (mean / standard deviation of its session returns, not
annualised), ``T`` its number of returns, ``g3`` their skewness and ``g4`` their kurtosis (3 for a normal law), ``N``
the number of trials and ``V`` the variance of the trials' per-session Sharpe ratios::

    SR0 = sqrt(V) * ((1 - e) * Z^-1(1 - 1/N) + e * Z^-1(1 - 1/(N * exp(1))))     (e: Euler-Mascheroni constant)
    DSR = Z((SR* - SR0) * sqrt(T - 1) / sqrt(1 - g3 * SR* + (g4 - 1) / 4 * SR*^2))

``SR0`` is the Sharpe ratio the best of ``N`` unskilled trials would show by chance; the DSR is the probability
that the winner's true Sharpe ratio is above it. Below 0.95 the winner is not significant at 5 % once the search is
accounted for. ``N`` is the number of trials run (an upper bound of the independent ones: conservative for DSR).

Probability of backtest overfitting (Bailey, Borwein, Lopez de Prado & Zhu, 2017), by CSCV
-------------------------------------------------------------------------------------------
The ``T x N`` matrix of session returns (one column per trial) is cut into ``S`` (even) consecutive blocks of equal
length (the first ``T mod S`` rows dropped). For each of the ``C(S, S/2)`` ways to pick half of the blocks as the
in-sample set (the rest out of sample): the trial with the best in-sample Sharpe ratio is found, its out-of-sample
Sharpe ratio ranked among all trials' (average ranks for ties), ``w = rank / (N + 1)`` and ``logit = ln(w / (1 -
w))``. **PBO** is the share of splits with ``logit <= 0``: the in-sample winner ranked in the bottom half out of
sample. Near 0.5 or above: the search selects noise.

Parameter stability
-------------------
Each trial's point is scaled to ``[0, 1]`` per dimension (log scale for log dimensions; a choice is 0 where equal to
the chosen value, 1 elsewhere). The *neighbours* of the chosen point are the other feasible trials within
``radius`` of it on every dimension (Chebyshev distance). ``neighbour_ratio = median(neighbour objective) / chosen
objective`` (for a positive chosen objective): near 1 a plateau, near 0 or negative a spike that a small change of
parameter destroys.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Any

import numpy as np
from scipy import stats

from strategies.space import Choice, SearchSpace

__all__ = [
    "DeflatedSharpe",
    "Overfitting",
    "PBO",
    "Stability",
    "assess",
    "deflated_sharpe",
    "expected_max_sharpe",
    "pbo_cscv",
    "sharpe_per_period",
    "stability",
]

EULER_GAMMA = 0.5772156649015329
DSR_THRESHOLD = 0.95
PBO_THRESHOLD = 0.5
STABILITY_THRESHOLD = 0.5
_ZERO_STD = 1e-12


def sharpe_per_period(returns: np.ndarray, axis: int = 0) -> np.ndarray:
    """Mean / sample standard deviation (ddof=1) along ``axis``; 0 where the returns are constant."""
    mean = returns.mean(axis=axis)
    std = returns.std(axis=axis, ddof=1)
    return np.where(std > _ZERO_STD, mean / np.where(std > _ZERO_STD, std, 1.0), 0.0)


def expected_max_sharpe(n_trials: int, variance: float) -> float:
    """``SR0``: the expected maximum per-period Sharpe ratio of ``n_trials`` unskilled trials (see the module doc)."""
    if n_trials < 2 or variance <= 0:
        return 0.0
    z = stats.norm.ppf
    return math.sqrt(variance) * (
        (1 - EULER_GAMMA) * z(1 - 1 / n_trials) + EULER_GAMMA * z(1 - 1 / (n_trials * math.e))
    )


@dataclass(frozen=True, slots=True)
class DeflatedSharpe:
    sharpe: float  # the winner's per-session Sharpe ratio
    sharpe_annualised: float
    expected_max_sharpe: float  # SR0, per session
    trials: int
    sharpe_variance: float
    skew: float
    kurtosis: float
    observations: int
    dsr: float
    significant: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def deflated_sharpe(
    best_returns: Sequence[float] | np.ndarray,
    trial_sharpes: Sequence[float] | np.ndarray,
    *,
    n_trials: int | None = None,
    periods_per_year: float = 252.0,
) -> DeflatedSharpe:
    """The deflated Sharpe ratio of the winner's returns given every trial's per-period Sharpe ratio."""
    r = np.asarray(best_returns, dtype=float)
    if r.size < 3:
        raise ValueError(f"need at least 3 returns, got {r.size}")
    sharpes = np.asarray(trial_sharpes, dtype=float)
    n = int(n_trials if n_trials is not None else sharpes.size)
    sr = float(sharpe_per_period(r))
    variance = float(np.var(sharpes, ddof=1)) if sharpes.size >= 2 else 0.0
    sr0 = expected_max_sharpe(n, variance)
    skew = float(stats.skew(r)) if r.std() > _ZERO_STD else 0.0
    kurt = float(stats.kurtosis(r, fisher=False)) if r.std() > _ZERO_STD else 3.0
    denominator = 1 - skew * sr + (kurt - 1) / 4 * sr**2
    z = (sr - sr0) * math.sqrt(r.size - 1) / math.sqrt(max(denominator, 1e-12))
    dsr = float(stats.norm.cdf(z))
    return DeflatedSharpe(
        sharpe=sr,
        sharpe_annualised=sr * math.sqrt(periods_per_year),
        expected_max_sharpe=sr0,
        trials=n,
        sharpe_variance=variance,
        skew=skew,
        kurtosis=kurt,
        observations=int(r.size),
        dsr=dsr,
        significant=dsr >= DSR_THRESHOLD,
    )


@dataclass(frozen=True, slots=True)
class PBO:
    pbo: float
    splits: int  # S, the number of blocks
    combinations: int
    trials: int
    observations: int  # rows used (T minus the dropped remainder)
    logits: list[float]
    oos_loss_share: float  # share of splits where the in-sample winner lost out of sample (Sharpe <= 0)
    overfit: bool

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("logits")
        return out


def pbo_cscv(matrix: np.ndarray, splits: int = 16) -> PBO:
    """Probability of backtest overfitting by combinatorially symmetric cross-validation (see the module doc)."""
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or m.shape[1] < 2:
        raise ValueError(f"need a T x N matrix with N >= 2 trials, got shape {m.shape}")
    if splits < 2 or splits % 2:
        raise ValueError(f"splits must be an even number >= 2, got {splits}")
    t, n = m.shape
    block = t // splits
    if block < 2:
        raise ValueError(f"{t} observations cannot be cut into {splits} blocks of at least 2")
    used = m[t - block * splits :]
    blocks = used.reshape(splits, block, n)
    # per block sums and sums of squares: each half's Sharpe ratio from them, without copying rows
    sums = blocks.sum(axis=1)
    squares = (blocks**2).sum(axis=1)
    chosen = np.array(list(combinations(range(splits), splits // 2)))
    masks = np.zeros((len(chosen), splits))
    np.put_along_axis(masks, chosen, 1.0, axis=1)
    half = block * (splits // 2)
    is_sr = _sharpe_from_sums(masks @ sums, masks @ squares, half)  # combinations x trials
    oos_sr = _sharpe_from_sums((1 - masks) @ sums, (1 - masks) @ squares, half)
    rows = np.arange(len(chosen))
    winner = np.argmax(is_sr, axis=1)
    best_oos = oos_sr[rows, winner][:, np.newaxis]
    # average rank (1 = worst) of the in-sample winner among the out-of-sample Sharpe ratios; ties share their rank
    rank = (oos_sr < best_oos).sum(axis=1) + ((oos_sr == best_oos).sum(axis=1) + 1) / 2
    w = rank / (n + 1)
    logits = [float(x) for x in np.log(w / (1 - w))]
    losses = int(np.count_nonzero(best_oos[:, 0] <= 0))
    total = len(chosen)
    pbo = sum(1 for x in logits if x <= 0) / total
    return PBO(
        pbo=pbo,
        splits=splits,
        combinations=total,
        trials=n,
        observations=block * splits,
        logits=logits,
        oos_loss_share=losses / total,
        overfit=pbo > PBO_THRESHOLD,
    )


def _sharpe_from_sums(s: np.ndarray, sq: np.ndarray, count: int) -> np.ndarray:
    mean = s / count
    var = np.maximum(sq / count - mean**2, 0.0) * count / (count - 1)
    std = np.sqrt(var)
    return np.where(std > _ZERO_STD, mean / np.where(std > _ZERO_STD, std, 1.0), 0.0)


@dataclass(frozen=True, slots=True)
class Stability:
    chosen_value: float
    radius: float
    neighbours: int
    neighbour_median: float | None
    neighbour_ratio: float | None
    fragile: bool | None  # None: no neighbour to judge by
    profiles: dict[str, list[tuple[Any, float]]]  # parameter -> (value, objective) of every feasible trial

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("profiles")
        return out


def _scaled(space: SearchSpace, name: str, value: Any, chosen: Any) -> float:
    dim = space.dimensions[name]
    if isinstance(dim, Choice):
        return 0.0 if value == chosen else 1.0
    low, high = float(dim.low), float(dim.high)
    if high <= low:
        return 0.0
    if dim.log and low > 0:
        return (math.log(float(value)) - math.log(low)) / (math.log(high) - math.log(low))
    return (float(value) - low) / (high - low)


def stability(
    space: SearchSpace,
    chosen: Mapping[str, Any],
    chosen_value: float,
    trials: Sequence[tuple[Mapping[str, Any], float]],
    *,
    radius: float = 0.1,
) -> Stability:
    """The objective around the chosen point (see the module doc); ``trials``: (params, objective) of the feasible
    trials, the chosen one included."""
    names = list(space.dimensions)
    here = {n: _scaled(space, n, chosen[n], chosen[n]) for n in names}
    values = []
    for params, value in trials:
        if all(params.get(n) == chosen[n] for n in names):
            continue
        if all(abs(_scaled(space, n, params[n], chosen[n]) - here[n]) <= radius for n in names):
            values.append(value)
    median = float(np.median(values)) if values else None
    ratio = median / chosen_value if median is not None and chosen_value > 0 else None
    profiles = {
        n: sorted(((p[n], float(v)) for p, v in trials), key=lambda pv: (str(type(pv[0])), pv[0])) for n in names
    }
    return Stability(
        chosen_value=float(chosen_value),
        radius=radius,
        neighbours=len(values),
        neighbour_median=median,
        neighbour_ratio=ratio,
        fragile=None if ratio is None and median is None else (ratio is None or ratio < STABILITY_THRESHOLD),
        profiles=profiles,
    )


@dataclass(frozen=True, slots=True)
class Overfitting:
    deflated: DeflatedSharpe | None
    pbo: PBO | None
    stability: Stability | None
    notes: tuple[str, ...]

    @property
    def flags(self) -> list[str]:
        out = []
        if self.deflated is not None and not self.deflated.significant:
            out.append(
                f"deflated Sharpe ratio {self.deflated.dsr:.2f} < {DSR_THRESHOLD}: the winner's Sharpe ratio is "
                f"not significant once {self.deflated.trials} trials are accounted for"
            )
        if self.pbo is not None and self.pbo.overfit:
            out.append(f"probability of backtest overfitting {self.pbo.pbo:.2f} > {PBO_THRESHOLD}")
        if self.stability is not None and self.stability.fragile:
            ratio = self.stability.neighbour_ratio
            out.append(
                "fragile optimum: neighbouring parameters score "
                + (f"{ratio:.2f} x the chosen objective" if ratio is not None else "no better than zero")
            )
        return out

    @property
    def flagged(self) -> bool:
        return bool(self.flags)

    def as_dict(self) -> dict[str, Any]:
        return {
            "deflated_sharpe": self.deflated.as_dict() if self.deflated else None,
            "pbo": self.pbo.as_dict() if self.pbo else None,
            "stability": self.stability.as_dict() if self.stability else None,
            "flagged": self.flagged,
            "flags": self.flags,
            "notes": list(self.notes),
        }


def assess(
    space: SearchSpace,
    trials: Sequence[tuple[Mapping[str, Any], float, Sequence[float]]],
    best_index: int,
    *,
    splits: int = 16,
    radius: float = 0.1,
    n_trials: int | None = None,
) -> Overfitting:
    """All three statistics for feasible ``trials`` ``(params, objective, session returns)``; ``best_index``: the
    chosen one; ``n_trials``: the trials tried (default: as many as given), the N of the deflation. Trials whose return series differ in length (pruned early, another range) are left out of PBO."""
    notes: list[str] = []
    params, values, returns = zip(*trials, strict=True) if trials else ((), (), ())
    deflated = pbo = None
    if trials and len(returns[best_index]) >= 3:
        sharpes = [float(sharpe_per_period(np.asarray(r, dtype=float))) for r in returns if len(r) >= 2]
        deflated = deflated_sharpe(returns[best_index], sharpes, n_trials=max(n_trials or 0, len(trials)))
    else:
        notes.append("deflated Sharpe ratio skipped: no feasible trial with 3 returns")
    length = len(returns[best_index]) if trials else 0
    same = [np.asarray(r, dtype=float) for r in returns if len(r) == length]
    if len(same) >= 2:
        s = splits
        while s > 2 and length // s < 2:
            s -= 2
        try:
            pbo = pbo_cscv(np.column_stack(same), splits=s)
            if s != splits:
                notes.append(f"PBO with {s} blocks: {length} sessions are too few for {splits}")
        except ValueError as exc:
            notes.append(f"PBO skipped: {exc}")
    else:
        notes.append("PBO skipped: needs at least two feasible trials")
    stab = (
        stability(space, params[best_index], values[best_index], list(zip(params, values, strict=True)), radius=radius)
        if trials
        else None
    )
    return Overfitting(deflated, pbo, stab, tuple(notes))

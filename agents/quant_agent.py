"""Quant agent: turns each BUY/SELL signal into a validated confidence from the strategy's own track record.

Everything here is deterministic and causal: at the decision bar *t* (``SymbolBars.end - 1``) only bars ``<= t`` are
read. History statistics are computed vectorised once per (symbol, strategy, bars frame) through the shared
:class:`FrameCache` and then read at *t* with one ``searchsorted`` (O(log n)); only the small VIF regression is
per-decision work, and it runs for BUY/SELL signals only, memoised per (symbol, strategy, decision index).

Track record (per symbol, per strategy)
---------------------------------------
A non-HOLD signal at bar *i* is **complete** at *t* when ``i + horizon <= t`` (its outcome is known). Its **signed
forward return** is ``r = d × (close[i + horizon] / close[i] − 1)`` with ``d = +1`` for BUY and ``−1`` for SELL (a
SELL wins when the price falls). The record at *t* is the last ``lookback_signals`` (N, default 20) complete signals,
in signal order, ``r_1 … r_n`` with ``n <= N``:

* **hit rate**, shrunk toward 1/2 with a Beta(1, 1) prior: ``(wins + 1) / (n + 2)`` where a win is ``r > 0``;
* **expectancy**: ``mean(r)`` (a fraction per signal; ``None`` when ``n = 0``);
* **Sharpe** of the signal-following returns: ``mean(r) / std(r)`` with the sample standard deviation (ddof = 1),
  per signal and not annualised (signals overlap in time, so ``sqrt(252 / horizon)`` would overstate it). It is the
  Sharpe of ``core.analytics.metrics`` with ``periods_per_year = 1`` and no risk-free rate. ``None`` when ``n < 2`` or the
  returns are constant;
* **maximum drawdown** of the compounded record, as if each signal in turn had been followed with the whole
  capital for ``horizon`` bars: ``E_0 = 1``, ``E_k = E_{k-1} × max(1 + r_k, 0)``, drawdown ``1 − E_k / max_{j<=k} E_j``
  (the starting value counts as a peak), maximum over ``k = 1..n``, in [0, 1]. This is the definition of
  ``core.analytics.metrics.drawdown_series`` applied to that curve. ``None`` when ``n = 0``.

Because the record only depends on *how many* signals are complete, all four statistics are precomputed for every
possible count ``k = 0..K`` (a sliding window over the signed returns, vectorised) and read at
``k = searchsorted(known_at, t, side="right")``.

Volatility regime
-----------------
Realised volatility is the sample standard deviation of daily log returns, annualised by ``sqrt(252)``, over the
last ``vol_recent`` (20) and ``vol_long`` (252) returns ending at *t* (rolling, computed once per symbol and frame).
``vol_ratio = vol_recent / vol_long``; above ``vol_ratio_threshold`` (1.5) the market is in a high-volatility regime
and confidence is multiplied by ``high_vol_factor`` (0.75): the record was mostly earned in calmer conditions. With
less than ``vol_long + 1`` bars the ratio is ``None`` and no adjustment is made.

Multicollinearity
-----------------
The indicator features the signal reports (its ``indicators`` mapping, i.e. the strategy's non-NaN ``ind_*``
columns at *t*) are read over the last ``vif_window`` (60) rows ending at *t*; rows with a NaN are dropped, as are
features constant over the window (they carry no variation to be redundant with). With at least two features and
``max(vif_min_rows, features + 2)`` rows, each feature's variance inflation factor is
``statsmodels.stats.outliers_influence.variance_inflation_factor`` on the design ``[1, features]`` (computed by
:func:`variance_inflation` the same way, tested equal; the constant makes it the usual centred VIF, ``1 / (1 − R²)`` of the feature regressed on the others). ``vif_max > vif_threshold`` (10)
flags redundant features — the strategy's evidence is less independent than it looks — and multiplies confidence by
``collinear_factor`` (0.95). Otherwise no adjustment and ``vif_max`` is ``None``.

Confidence
----------
::

    base        = clip(2 × hit_rate × (0.5 + 0.5 × strength), 0, 1)
    confidence  = base × f_expectancy × f_sharpe × f_drawdown × f_volatility × f_vif          (each f in (0, 1])

    f_expectancy = negative_expectancy_factor (0.8)  if n >= min_record and expectancy < 0          else 1
    f_sharpe     = poor_sharpe_factor (0.85)         if n >= min_record and sharpe < sharpe_floor   else 1
    f_drawdown   = deep_drawdown_factor (0.85)       if n >= min_record and max_drawdown > max_drawdown_limit (0.30) else 1
    f_volatility = high_vol_factor (0.75)            if vol_ratio > vol_ratio_threshold              else 1
    f_vif        = collinear_factor (0.95)           if vif_max > vif_threshold                      else 1

A coin-flip record keeps the base between 0.5 (weakest signal) and 1.0 (strongest); the base is clipped *before* the
factors so a penalty always bites. ``min_record`` (5) keeps one or two unlucky signals from triggering the record
penalties (the shrunk hit rate already handles short records). ``sharpe_floor`` (−0.3) sits below zero on purpose:
a negative Sharpe is already a negative expectancy; below −0.3 over 20 signals (t-statistic ≈ −1.3) the strategy loses
consistently, not through one bad signal.

Review
------
An optional ``review`` hook (an LLM reviewer) receives the deterministic :class:`ValidatedSignal` and returns a
confidence in [0, 1] or ``None`` (abstain). It can only lower confidence: the final value is
``min(deterministic, review)``. A non-number, NaN or value outside [0, 1] is recorded as an invalid review and the
deterministic confidence stands. The hook must turn its own failures (timeouts, bad answers) into ``None``; an
exception it raises propagates (it is a bug, not a vote). Reviews of one iteration run concurrently.

Every component, every factor and both confidences are recorded in the Decision's ``inputs`` and the
ValidatedSignal's ``components`` (plain floats/ints; NaN becomes ``None``).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field, replace
from typing import Any, Protocol
from collections.abc import Awaitable, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from core.kernel.domain import Action, BarsBatch, Decision, Signal, ValidatedSignal, frozen_map
from core.kernel.events import SignalsReady, ValidatedReady
from core.kernel.frame_cache import FrameCache
from core.analytics.metrics import TRADING_DAYS_PER_YEAR
from core.vocabulary import AgentName, DecisionAction

# below this a standard deviation of returns is treated as zero (as in core.analytics.metrics)
_ZERO_STD = 1e-12

Review = Callable[[ValidatedSignal], Awaitable[float | None]]


class SignalFrames(Protocol):
    """What the Quant agent needs from the Strategy agent: the cached signal frame of a strategy over a symbol."""

    def signal_frame_for(self, batch: BarsBatch, symbol: str, strategy_name: str) -> pd.DataFrame: ...


@dataclass(frozen=True, slots=True)
class QuantConfig:
    """Parameters of the Quant agent (see the module docstring for what each one does)."""

    horizon: int = 10
    lookback_signals: int = 20
    min_record: int = 5
    negative_expectancy_factor: float = 0.8
    sharpe_floor: float = -0.3
    poor_sharpe_factor: float = 0.85
    max_drawdown_limit: float = 0.30
    deep_drawdown_factor: float = 0.85
    vol_recent: int = 20
    vol_long: int = 252
    vol_ratio_threshold: float = 1.5
    high_vol_factor: float = 0.75
    vif_window: int = 60
    vif_min_rows: int = 10
    vif_threshold: float = 10.0
    collinear_factor: float = 0.95

    def __post_init__(self) -> None:
        for name in ("horizon", "lookback_signals", "vol_recent", "vif_min_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"QuantConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.min_record < 0:
            raise ValueError(f"QuantConfig.min_record must be >= 0, got {self.min_record!r}")
        if self.vol_long <= self.vol_recent:
            raise ValueError(f"QuantConfig.vol_long ({self.vol_long}) must exceed vol_recent ({self.vol_recent})")
        if self.vif_window < 4:
            raise ValueError(f"QuantConfig.vif_window must be at least 4 rows, got {self.vif_window!r}")
        for name in (
            "negative_expectancy_factor",
            "poor_sharpe_factor",
            "deep_drawdown_factor",
            "high_vol_factor",
            "collinear_factor",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 < value <= 1.0):
                raise ValueError(f"QuantConfig.{name} must be in (0, 1], got {value!r}")
        for name in ("sharpe_floor", "max_drawdown_limit", "vol_ratio_threshold", "vif_threshold"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"QuantConfig.{name} must be finite, got {getattr(self, name)!r}")


# --------------------------------------------------------------------------------------------------- precomputation


@dataclass(frozen=True, slots=True)
class SignalRecord:
    """The track record of one strategy on one symbol, precomputed for every number of complete signals.

    ``signal_idx``/``known_at``/``signed_return`` describe each signal whose outcome exists in the frame (in bar
    order, so ``known_at`` is increasing). The ``by_count`` arrays have ``K + 1`` rows: row ``k`` holds the statistics
    of the record when exactly ``k`` signals are complete (the last ``lookback`` of them).
    """

    signal_idx: np.ndarray
    known_at: np.ndarray
    signed_return: np.ndarray
    n: np.ndarray
    wins: np.ndarray
    expectancy: np.ndarray
    sharpe: np.ndarray
    max_drawdown: np.ndarray

    def completed_at(self, t: int) -> int:
        """How many signals are complete at bar ``t`` (outcome bar ``<= t``)."""
        return int(np.searchsorted(self.known_at, t, side="right"))


def signal_record(actions: np.ndarray, close: np.ndarray, horizon: int, lookback: int) -> SignalRecord:
    """Vectorised :class:`SignalRecord` of a signal column (1 BUY, −1 SELL, 0 HOLD) over closes of the same length."""
    actions = np.asarray(actions)
    close = np.asarray(close, dtype=float)
    if actions.shape != close.shape:
        raise ValueError(f"actions and close must have the same length, got {actions.shape} and {close.shape}")
    idx = np.flatnonzero(actions != 0)
    known = idx + horizon
    keep = known < len(close)
    idx, known = idx[keep], known[keep]
    direction = np.sign(actions[idx]).astype(float)
    r = direction * (close[known] / close[idx] - 1.0)

    # row k of `windows` is r[k - lookback : k], NaN-padded on the left: the record when k signals are complete
    padded = np.concatenate([np.full(lookback, np.nan), r])
    windows = sliding_window_view(padded, lookback)
    valid = ~np.isnan(windows)
    n = valid.sum(axis=1)
    wins = (windows > 0).sum(axis=1)  # NaN > 0 is False
    filled = np.where(valid, windows, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, filled.sum(axis=1) / np.maximum(n, 1), np.nan)
        dev = np.where(valid, windows - mean[:, None], 0.0)
        var = np.where(n > 1, (dev * dev).sum(axis=1) / np.maximum(n - 1, 1), np.nan)
        std = np.sqrt(var)
        sharpe = np.where(std > _ZERO_STD, mean / std, np.nan)
    growth = np.where(valid, np.maximum(1.0 + filled, 0.0), 1.0)
    equity = np.cumprod(np.concatenate([np.ones((len(windows), 1)), growth], axis=1), axis=1)
    peak = np.maximum.accumulate(equity, axis=1)  # >= 1: the start is a peak
    drawdown = np.where(n > 0, (1.0 - equity / peak).max(axis=1), np.nan)
    return SignalRecord(idx, known, r, n, wins, mean, sharpe, drawdown)


@dataclass(frozen=True, slots=True)
class VolatilityProfile:
    """Annualised realised volatility over the recent and the long window, ending at each bar (NaN before)."""

    recent: np.ndarray
    long: np.ndarray


def volatility_profile(close: np.ndarray, recent: int, long: int) -> VolatilityProfile:
    """Rolling sample std (ddof = 1) of daily log returns × sqrt(252); value at ``t`` uses returns up to ``t``."""
    log_returns = pd.Series(np.log(np.asarray(close, dtype=float))).diff()
    scale = math.sqrt(TRADING_DAYS_PER_YEAR)
    vol_recent = log_returns.rolling(recent, min_periods=recent).std().to_numpy() * scale
    vol_long = log_returns.rolling(long, min_periods=long).std().to_numpy() * scale
    return VolatilityProfile(vol_recent, vol_long)


@dataclass(frozen=True, slots=True)
class VifResult:
    by_feature: Mapping[str, float]  # VIF of each feature that entered the regression
    rows: int  # complete rows in the window
    dropped: tuple[str, ...]  # features constant over the window
    note: str  # "ok" or why no VIF was computed

    @property
    def max(self) -> float | None:
        return max(self.by_feature.values()) if self.by_feature else None

    @property
    def worst(self) -> str | None:
        return max(self.by_feature, key=self.by_feature.__getitem__) if self.by_feature else None


def vif_of(values: np.ndarray, names: Sequence[str], *, min_rows: int) -> VifResult:
    """VIF of each column of ``values`` (rows × features, NaN rows dropped, constant columns dropped)."""
    if not names:
        return VifResult({}, 0, (), "no indicator features reported")
    values = np.asarray(values, dtype=float).reshape(-1, len(names))
    rows = values[~np.isnan(values).any(axis=1)]
    std = rows.std(axis=0) if len(rows) else np.zeros(len(names))
    scale = np.maximum(1.0, np.abs(rows).max(axis=0)) if len(rows) else np.ones(len(names))
    varying = std > 1e-12 * scale
    kept = [name for name, v in zip(names, varying, strict=False) if v]
    dropped = tuple(name for name, v in zip(names, varying, strict=False) if not v)
    if len(kept) < 2:
        return VifResult({}, len(rows), dropped, f"{len(kept)} varying feature(s): nothing to be collinear with")
    needed = max(min_rows, len(kept) + 2)
    if len(rows) < needed:
        return VifResult({}, len(rows), dropped, f"{len(rows)} complete rows, {needed} needed")
    design = np.column_stack([np.ones(len(rows)), rows[:, varying]])
    working = _standardised(design)
    vifs = {name: float(_vif_of_standardised(working, j + 1)) for j, name in enumerate(kept)}
    return VifResult(vifs, len(rows), dropped, "ok")


def variance_inflation(design: np.ndarray, column: int) -> np.float64:
    """``statsmodels.stats.outliers_influence.variance_inflation_factor(design, column)`` computed the same way —
    columns standardised, OLS of the column on the others by the pseudo-inverse, centred R² (the design holds a
    constant) clipped below 1 − 1e-15 — without building a statsmodels model or its condition-number diagnostic:
    ~10x faster, which matters when every signal of a backtest is assessed. A test checks the two agree."""
    return _vif_of_standardised(_standardised(design), column)


def _standardised(design: np.ndarray) -> np.ndarray:
    """Columns with a standard deviation above 1e-10 scaled to mean 0 and deviation 1 (statsmodels' ``standardize``)."""
    x = np.asarray(design, dtype=float)
    stds, means = x.std(axis=0), x.mean(axis=0)
    safe = stds > 1e-10
    working = x.copy()
    working[:, safe] = (x[:, safe] - means[safe]) / stds[safe]
    return working


def _vif_of_standardised(working: np.ndarray, column: int) -> np.float64:
    y = working[:, column]
    others = np.delete(working, column, axis=1)
    beta = np.linalg.pinv(others, rcond=1e-15) @ y
    residual = y - others @ beta
    centred = y - y.mean()
    r_squared = np.clip(1.0 - np.sum(residual**2) / np.dot(centred, centred), 0.0, 1.0 - 1e-15)
    return np.float64(1.0) / (np.float64(1.0) - r_squared)


# --------------------------------------------------------------------------------------------------- assessment


def _num(value: float | int | None) -> float | None:
    """A JSON-friendly float: NaN/inf and None become None."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True, slots=True)
class Assessment:
    """Every number behind one validated confidence (deterministic part)."""

    n: int
    wins: int
    hit_rate: float
    expectancy: float | None
    sharpe: float | None
    max_drawdown: float | None
    vol_recent: float | None
    vol_long: float | None
    vol_ratio: float | None
    vif: VifResult
    strength: float
    base_raw: float
    factors: Mapping[str, float]
    confidence: float
    flags: tuple[str, ...] = field(default=())


def assess(
    config: QuantConfig,
    *,
    n: int,
    wins: int,
    expectancy: float | None,
    sharpe: float | None,
    max_drawdown: float | None,
    vol_recent: float | None,
    vol_long: float | None,
    vif: VifResult,
    strength: float,
) -> Assessment:
    """The confidence formula of the module docstring, with every factor and the reason for each penalty."""
    if not 0 <= wins <= n:
        raise ValueError(f"wins must be within [0, n], got wins={wins}, n={n}")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be within [0, 1], got {strength!r}")
    hit_rate = (wins + 1) / (n + 2)
    base_raw = 2.0 * hit_rate * (0.5 + 0.5 * strength)
    vol_ratio = (
        vol_recent / vol_long if vol_recent is not None and vol_long is not None and vol_long > _ZERO_STD else None
    )
    record = n >= config.min_record
    flags: list[str] = []
    factors = {"expectancy": 1.0, "sharpe": 1.0, "drawdown": 1.0, "volatility": 1.0, "vif": 1.0}
    if record and expectancy is not None and expectancy < 0:
        factors["expectancy"] = config.negative_expectancy_factor
        flags.append("negative expectancy")
    if record and sharpe is not None and sharpe < config.sharpe_floor:
        factors["sharpe"] = config.poor_sharpe_factor
        flags.append(f"Sharpe < {config.sharpe_floor:g}")
    if record and max_drawdown is not None and max_drawdown > config.max_drawdown_limit:
        factors["drawdown"] = config.deep_drawdown_factor
        flags.append(f"drawdown > {config.max_drawdown_limit:.0%}")
    if vol_ratio is not None and vol_ratio > config.vol_ratio_threshold:
        factors["volatility"] = config.high_vol_factor
        flags.append("high-volatility regime")
    if vif.max is not None and vif.max > config.vif_threshold:
        factors["vif"] = config.collinear_factor
        flags.append(f"collinear features ({vif.worst})")
    confidence = min(max(base_raw, 0.0), 1.0)
    for value in factors.values():
        confidence *= value
    confidence = min(max(confidence, 0.0), 1.0)
    return Assessment(
        n=n,
        wins=wins,
        hit_rate=hit_rate,
        expectancy=expectancy,
        sharpe=sharpe,
        max_drawdown=max_drawdown,
        vol_recent=vol_recent,
        vol_long=vol_long,
        vol_ratio=vol_ratio,
        vif=vif,
        strength=strength,
        base_raw=base_raw,
        factors=frozen_map(factors),
        confidence=confidence,
        flags=tuple(flags),
    )


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


class QuantAgent:
    name = AgentName.QUANT

    def __init__(
        self,
        strategy_agent: SignalFrames,
        *,
        config: QuantConfig | None = None,
        horizon: int | None = None,
        lookback_signals: int | None = None,
        cache: FrameCache | None = None,
        review: Review | None = None,
        routine_decisions: bool = True,
    ) -> None:
        """``horizon``/``lookback_signals`` override the same fields of ``config`` (kept for the original signature)."""
        config = config or QuantConfig()
        self._routine = routine_decisions  # False: HOLD signals (nothing to validate) leave no decision row
        if horizon is not None:
            config = replace(config, horizon=horizon)
        if lookback_signals is not None:
            config = replace(config, lookback_signals=lookback_signals)
        self._strategies = strategy_agent
        self._config = config
        self._cache = cache or FrameCache()
        self._indicators: dict[str, tuple[pd.DataFrame, Mapping[str, np.ndarray]]] = {}  # see _indicator_arrays
        self._review = review

    @property
    def config(self) -> QuantConfig:
        return self._config

    # ------------------------------------------------------------------------------------------- cached reads

    def record_for(self, batch: BarsBatch, symbol: str, strategy: str) -> SignalRecord:
        """The precomputed track record of ``strategy`` on ``symbol`` (once per bars frame)."""
        sb = batch.bars[symbol]
        c = self._config

        def compute() -> SignalRecord:
            frame = self._strategies.signal_frame_for(batch, symbol, strategy)
            return signal_record(
                frame["action"].to_numpy(), sb.frame["close"].to_numpy(), c.horizon, c.lookback_signals
            )

        return self._cache.get(symbol, ("quant_record", strategy, c.horizon, c.lookback_signals), sb.frame, compute)

    def volatility_for(self, batch: BarsBatch, symbol: str) -> VolatilityProfile:
        sb = batch.bars[symbol]
        c = self._config
        return self._cache.get(
            symbol,
            ("quant_volatility", c.vol_recent, c.vol_long),
            sb.frame,
            lambda: volatility_profile(sb.frame["close"].to_numpy(), c.vol_recent, c.vol_long),
        )

    def vif_for(self, batch: BarsBatch, signal: Signal, t: int) -> VifResult:
        """VIF of the signal's indicator features over the last ``vif_window`` rows ending at ``t`` (memoised)."""
        sb = batch.bars[signal.symbol]
        names = tuple(signal.indicators)
        memo: dict[tuple[int, tuple[str, ...]], VifResult] = self._cache.get(
            signal.symbol, ("quant_vif", signal.strategy, self._config.vif_window), sb.frame, dict
        )
        key = (t, names)
        hit = memo.get(key)
        if hit is None:
            frame = self._strategies.signal_frame_for(batch, signal.symbol, signal.strategy)
            start = max(0, t - self._config.vif_window + 1)
            indicators = self._indicator_arrays(signal.symbol, frame)
            columns = [indicators[name][start : t + 1] for name in names]
            values = np.column_stack(columns) if columns else np.empty((t + 1 - start, 0))
            hit = vif_of(values, names, min_rows=self._config.vif_min_rows)
            memo[key] = hit
        return hit

    def _indicator_arrays(self, symbol: str, frame: pd.DataFrame) -> Mapping[str, np.ndarray]:
        """The ``ind_*`` columns of a signal frame as arrays, kept for the symbol's latest frame only (a pandas column
        lookup per feature per signal adds up; older frames are the Strategy agent's to keep or drop)."""
        held = self._indicators.get(symbol)
        if held is None or held[0] is not frame:
            arrays = {str(c)[4:]: frame[c].to_numpy() for c in frame.columns if str(c).startswith("ind_")}
            held = self._indicators[symbol] = (frame, arrays)
        return held[1]

    def assess(self, batch: BarsBatch, signal: Signal) -> Assessment:
        """The deterministic assessment of ``signal`` at the batch's decision bar for its symbol."""
        sb = batch.bars[signal.symbol]
        t = sb.end - 1
        record = self.record_for(batch, signal.symbol, signal.strategy)
        k = record.completed_at(t)
        vol = self.volatility_for(batch, signal.symbol)
        return assess(
            self._config,
            n=int(record.n[k]),
            wins=int(record.wins[k]),
            expectancy=_num(record.expectancy[k]),
            sharpe=_num(record.sharpe[k]),
            max_drawdown=_num(record.max_drawdown[k]),
            vol_recent=_num(vol.recent[t]),
            vol_long=_num(vol.long[t]),
            vif=self.vif_for(batch, signal, t),
            strength=signal.strength,
        )

    # ------------------------------------------------------------------------------------------- the stage

    def _components(self, a: Assessment) -> dict[str, float | int | None]:
        c = self._config
        return {
            "strength": _num(a.strength),
            "horizon": c.horizon,
            "lookback_signals": c.lookback_signals,
            "signals": a.n,
            "wins": a.wins,
            "hit_rate": _num(a.hit_rate),
            "expectancy": _num(a.expectancy),
            "sharpe": _num(a.sharpe),
            "max_drawdown": _num(a.max_drawdown),
            "vol_recent": _num(a.vol_recent),
            "vol_long": _num(a.vol_long),
            "vol_ratio": _num(a.vol_ratio),
            "vif_max": _num(a.vif.max),
            "vif_rows": a.vif.rows,
            "base_raw": _num(a.base_raw),
            "base_confidence": _num(min(max(a.base_raw, 0.0), 1.0)),
            **{f"factor_{name}": _num(value) for name, value in a.factors.items()},
            "confidence_deterministic": _num(a.confidence),
        }

    def _reason(self, signal: Signal, a: Assessment) -> str:
        c = self._config
        text = (
            f"{signal.strategy} {signal.action.value}: {a.wins}/{a.n} right over {c.horizon} bars (hit {a.hit_rate:.2f}), "
            f"expectancy {_fmt(a.expectancy, '+.2%')}, Sharpe {_fmt(a.sharpe, '.2f')}, maxDD {_fmt(a.max_drawdown, '.1%')}, "
            f"vol ratio {_fmt(a.vol_ratio, '.2f')}, max VIF {_fmt(a.vif.max, '.1f')}, strength {a.strength:.2f}"
        )
        if a.flags:
            text += f"; penalised: {', '.join(a.flags)}"
        return text + f" -> confidence {a.confidence:.2f}"

    async def _reviewed(self, validated: ValidatedSignal) -> tuple[float | None, str]:
        """(review confidence, status) for one signal; the status says how the review was used."""
        assert self._review is not None
        answer = await self._review(validated)
        if answer is None:
            return None, "abstained"
        if (
            isinstance(answer, bool)
            or not isinstance(answer, (int, float))
            or not math.isfinite(answer)
            or not 0.0 <= answer <= 1.0
        ):
            return None, f"invalid answer {answer!r}: deterministic confidence kept"
        answer = float(answer)
        return answer, "lowered" if answer < validated.confidence else "not lower: deterministic confidence kept"

    async def on_signals(self, event: SignalsReady) -> ValidatedReady:
        batch = event.previous.batch if event.previous is not None else None
        assert batch is not None
        decisions: list[Decision | None] = []
        pending: dict[str, tuple[int, ValidatedSignal, dict[str, Any]]] = {}
        for symbol, signal in event.signals.items():
            if signal.action is Action.HOLD:
                if self._routine:
                    decisions.append(
                        Decision(
                            AgentName.QUANT,
                            symbol,
                            DecisionAction.SKIP,
                            "signal is HOLD: nothing to validate",
                            {},
                            strategy=signal.strategy,
                        )
                    )
                continue
            a = self.assess(batch, signal)
            components = self._components(a)
            inputs = {
                **components,
                "vif": {name: _num(v) for name, v in a.vif.by_feature.items()},
                "vif_note": a.vif.note,
                "vif_constant_features": list(a.vif.dropped),
                "penalties": list(a.flags),
            }
            validated = ValidatedSignal(
                signal=signal,
                confidence=a.confidence,
                components=frozen_map(components),
                reason=self._reason(signal, a),
            )
            pending[symbol] = (len(decisions), validated, inputs)
            decisions.append(None)  # filled below, keeping the signals' order

        reviews: dict[str, tuple[float | None, str]] = {}
        if self._review is not None and pending:
            try:
                async with asyncio.TaskGroup() as group:
                    tasks = {symbol: group.create_task(self._reviewed(v)) for symbol, (_, v, _) in pending.items()}
            except (
                ExceptionGroup
            ) as failures:  # a failing reviewer is a bug: surface its own exception, not the wrapper
                if len(failures.exceptions) == 1:
                    raise failures.exceptions[0] from failures
                raise
            reviews = {symbol: task.result() for symbol, task in tasks.items()}

        validated_out: dict[str, ValidatedSignal] = {}
        for symbol, (slot, validated, inputs) in pending.items():
            review, status = reviews.get(symbol, (None, "no reviewer"))
            final = min(validated.confidence, review) if review is not None else validated.confidence
            components = {**validated.components, "review_confidence": review, "confidence": _num(final)}
            reason = validated.reason
            if review is not None and review < validated.confidence:
                reason += f"; review lowered it to {final:.2f}"
            out = replace(validated, confidence=final, components=frozen_map(components), reason=reason)
            validated_out[symbol] = out
            decisions[slot] = Decision(
                AgentName.QUANT,
                symbol,
                DecisionAction.VALIDATED,
                reason,
                {**inputs, "review_confidence": review, "review_status": status, "confidence": _num(final)},
                strategy=validated.signal.strategy,
                confidence=final,
            )
        for symbol, reason in batch.rejected.items():
            decisions.append(Decision(AgentName.QUANT, symbol, DecisionAction.SKIP, f"no usable data: {reason}", {}))
        assert all(d is not None for d in decisions)
        return ValidatedReady(
            iteration_id=event.iteration_id,
            as_of=event.as_of,
            previous=event,
            validated=frozen_map(validated_out),
            decisions=tuple(d for d in decisions if d is not None),
        )

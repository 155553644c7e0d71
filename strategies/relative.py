"""Strategies that compare a symbol with its peers (``Peers.benchmark`` / ``Peers.closes``).

Peer frames are aligned to the symbol's bars *by date*: a peer row dated after the symbol's last bar is never read,
and a date the peer lacks is NaN (no signal can fire on it).  Without the peer input a strategy returns HOLD on
every row (never an error): the agent decides which peers to pass (``needs_benchmark`` / ``needs_universe``).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from strategies import indicators as ind
from strategies.space import FloatRange, IntRange, SearchSpace
from strategies.base import Peers
from strategies.common import (
    BarData,
    BarStrategy,
    Evaluation,
    RiskParams,
    align_rows,
    aligned_close,
    annual_to_period,
    benchmark_field,
    min_bars,
)


def _hold(shape: tuple[int, ...], names: tuple[str, ...]) -> Evaluation:
    none = np.zeros(shape, dtype=bool)
    return Evaluation(none, none.copy(), np.zeros(shape), None, {name: np.full(shape, np.nan) for name in names})


def _benchmark_close(peers: Peers | None, index: pd.Index) -> np.ndarray | None:
    if peers is None or peers.benchmark is None or peers.benchmark.empty:
        return None
    return aligned_close(peers.benchmark, index, "benchmark")


class RelativeStrength(BarStrategy):
    """Relative strength against a benchmark.

    ratio = close / benchmark close (same dates); ratio_roc = ``lookback``-bar rate of change of the ratio (%).
    BUY on the bar ratio_roc crosses above 0 (the symbol starts outperforming over the lookback); SELL on the bar it
    crosses below 0.  No benchmark (``peers`` or ``peers.benchmark`` missing/empty): HOLD on every row, indicator
    columns NaN.  Strength: excess = |ratio_roc| (percentage points), scale 5.
    min_history = max(lookback + 1, atr_length).
    """

    name = "relative_strength"
    description = "price ratio to a benchmark: buy when it starts outperforming, sell when it starts lagging"
    search_space = SearchSpace({"lookback": IntRange(10, 252)})
    needs_benchmark = True
    rules = MappingProxyType(
        {
            "BUY": "ratio to the benchmark turned up over the lookback",
            "SELL": "ratio to the benchmark turned down over the lookback",
        }
    )
    indicator_names = ("ratio", "ratio_roc")

    class Params(RiskParams):
        lookback: int = Field(63, ge=1, le=2000, description="window of the ratio's rate of change")
        benchmark: str = benchmark_field()

    @property
    def min_history(self) -> int:
        return min_bars(self.params.lookback + 1, self.params.atr_length)

    def evaluate(self, data: BarData, peers: Peers | None) -> Evaluation:
        p = self.params
        bench = _benchmark_close(peers, data.index)
        if bench is None:
            return _hold(data.shape, self.indicator_names)
        ratio = data.close / bench
        ratio_roc = ind.roc(ratio, p.lookback)
        buy = ind.crossed_above(ratio_roc, 0.0)
        sell = ind.crossed_below(ratio_roc, 0.0)
        return Evaluation(buy, sell, np.abs(ratio_roc), 5.0, {"ratio": ratio, "ratio_roc": ratio_roc})


@dataclass(frozen=True, slots=True)
class _UniverseMomentum:
    """Row-sorted momenta of every universe column on the universe's own dates, kept for one ``closes`` frame."""

    source: weakref.ReferenceType[pd.DataFrame]
    shape: tuple[int, int]
    index: pd.Index
    ranked: _RankedMomentum


@dataclass(frozen=True, slots=True)
class _RankedMomentum:
    """Momenta of a universe prepared for "how many are higher than x on date t" queries.

    ``keys`` holds, for date position t and each member's momentum m, the complex number ``t + m*1j`` (``+inf``
    for "no momentum"), sorted.  NumPy orders complex numbers by real then imaginary part, so the keys are grouped
    by date with each date's momenta ascending, and one ``searchsorted`` answers every date at once, exactly.
    """

    keys: np.ndarray  # complex128, (dates * width,)
    width: int
    members: np.ndarray  # number of finite momenta per date

    @classmethod
    def from_closes(cls, values: np.ndarray, lookback: int) -> _RankedMomentum:
        dates, width = values.shape
        momentum = np.full(values.shape, np.nan)
        if lookback < dates:
            with np.errstate(divide="ignore", invalid="ignore"):
                # The expression of indicators.roc, so a symbol's own column equals its own momentum bit for bit.
                momentum[lookback:] = 100.0 * (values[lookback:] / values[:-lookback] - 1.0)
        finite = np.isfinite(momentum)
        momentum[~finite] = np.inf
        momentum.sort(axis=1)
        keys = np.empty(values.shape, dtype=np.complex128)  # built part by part: 1j * inf would be nan + inf*j
        keys.real = np.arange(dates, dtype=np.float64)[:, None]
        keys.imag = momentum
        return cls(keys.ravel(), width, np.count_nonzero(finite, axis=1))

    def head(self, n: int) -> _RankedMomentum:
        return _RankedMomentum(self.keys[: n * self.width], self.width, self.members[:n])

    def count_higher(self, value: np.ndarray) -> np.ndarray:
        """Per date, how many members have a momentum strictly greater than ``value`` (NaN value: all of them);
        ``value`` may hold several series (rows), one date per position along its last axis."""
        n = self.members.shape[0]
        position = np.arange(n)
        query = np.empty(value.shape, dtype=np.complex128)
        query.real = position
        query.imag = np.where(np.isnan(value), -np.inf, value)
        at_or_below = np.searchsorted(self.keys, query, side="right") - position * self.width
        return self.members - at_or_below


class SectorRotation(BarStrategy):
    """Cross-sectional momentum rotation over the universe in ``peers.closes`` (which should include the symbol).

    momentum = ``lookback``-bar rate of change (%) of every universe column and of the symbol's own close, on the
    symbol's dates.  rank[t] = 1 + number of universe members with strictly higher momentum; cutoff[t] =
    ``top_n`` or ceil(``top_fraction`` x members with a momentum).  The symbol is "in the top" when rank <= cutoff.
    BUY on the bar it enters the top; SELL on the bar it leaves it.  Rows with fewer than ``min_universe`` ranked
    members, or without the symbol's own momentum, are unknown (no entry/exit can be inferred across them).
    No universe (``peers.closes`` missing or without columns): HOLD everywhere.
    Strength: BUY 0.5 + 0.5 (cutoff - rank) / cutoff; SELL 0.5 + 0.5 (rank - cutoff - 1) / (members - cutoff).
    min_history = max(lookback + 1, atr_length).

    The universe's momentum matrix is computed once per ``closes`` frame (identity-keyed, held through a weak
    reference) and reused for every symbol; peer frames are immutable snapshots in this pipeline.
    """

    name = "sector_rotation"
    description = "buy symbols entering the top momentum ranks of the universe, sell when they drop out"
    search_space = SearchSpace({"lookback": IntRange(10, 252), "top_fraction": FloatRange(0.1, 0.5)})
    needs_universe = True
    rules = MappingProxyType(
        {
            "BUY": "entered the top momentum ranks of the universe",
            "SELL": "dropped out of the top momentum ranks",
        }
    )
    indicator_names = ("momentum", "rank", "cutoff", "universe_size")

    class Params(RiskParams):
        lookback: int = Field(126, ge=1, le=2000, description="momentum window in bars")
        top_fraction: float | None = Field(0.2, gt=0.0, le=1.0, description="top share of the ranked universe")
        top_n: int | None = Field(None, ge=1, le=100_000, description="top count (instead of top_fraction)")
        min_universe: int = Field(3, ge=1, le=100_000, description="fewest ranked members for a ranking to count")

        @model_validator(mode="before")
        @classmethod
        def _top_n_replaces_fraction(cls, data: Any) -> Any:
            if isinstance(data, dict) and data.get("top_n") is not None and "top_fraction" not in data:
                return {**data, "top_fraction": None}
            return data

        @model_validator(mode="after")
        def _exactly_one_cutoff(self) -> SectorRotation.Params:
            if (self.top_fraction is None) == (self.top_n is None):
                raise ValueError(f"set exactly one of top_fraction ({self.top_fraction}) and top_n ({self.top_n})")
            return self

    def __init__(self, **overrides: Any) -> None:
        super().__init__(**overrides)
        self._memo: _UniverseMomentum | None = None

    @property
    def min_history(self) -> int:
        return min_bars(self.params.lookback + 1, self.params.atr_length)

    def _universe(self, closes: pd.DataFrame, index: pd.Index) -> _RankedMomentum:
        memo = self._memo
        if memo is None or memo.source() is not closes or memo.shape != closes.shape:
            ranked = _RankedMomentum.from_closes(closes.to_numpy(dtype=np.float64), self.params.lookback)
            memo = _UniverseMomentum(weakref.ref(closes), closes.shape, closes.index, ranked)
            self._memo = memo
        n = len(index)
        if memo.index.equals(index):
            return memo.ranked
        if len(memo.index) >= n and memo.index[:n].equals(index):
            return memo.ranked.head(n)
        # Different calendars: re-base the universe on the symbol's own dates.
        aligned = align_rows(closes.index, index, "universe", closes.to_numpy(dtype=np.float64))
        return _RankedMomentum.from_closes(aligned, self.params.lookback)

    def evaluate(self, data: BarData, peers: Peers | None) -> Evaluation:
        p = self.params
        n = len(data)
        if peers is None or peers.closes is None or peers.closes.shape[1] == 0:
            return _hold(data.shape, self.indicator_names)
        universe = self._universe(peers.closes, data.index)
        own = ind.roc(data.close, p.lookback)
        rank = (universe.count_higher(own) + 1).astype(np.float64)
        members = universe.members.astype(np.float64)
        if p.top_n is not None:
            cutoff = np.full(n, float(p.top_n))
        else:
            cutoff = np.maximum(np.ceil(p.top_fraction * members - 1e-9), 1.0)
        known = np.isfinite(own) & (members >= p.min_universe)
        in_top = np.where(known, (rank <= cutoff).astype(np.float64), np.nan)
        buy = ind.crossed_above(in_top, 0.5)
        sell = ind.crossed_below(in_top, 0.5)
        strength = np.where(
            buy,
            0.5 + 0.5 * (cutoff - rank) / cutoff,
            0.5 + 0.5 * np.minimum((rank - cutoff - 1.0) / np.maximum(members - cutoff, 1.0), 1.0),
        )
        rank[~known] = np.nan
        return Evaluation(
            buy,
            sell,
            strength,
            None,
            {"momentum": own, "rank": rank, "cutoff": np.where(known, cutoff, np.nan), "universe_size": members},
        )


class DualMomentum(BarStrategy):
    """Antonacci-style dual momentum.

    ret = own ``lookback``-bar return (%), bench = benchmark's return over the same dates (%), hurdle =
    ``risk_free`` (annual) compounded over the lookback (%).  Condition = ret > hurdle (absolute) AND ret > bench
    (relative).  BUY on the bar the condition becomes true (it was false on the previous bar); SELL on the bar the
    absolute momentum crosses below the hurdle (turns negative when risk_free = 0).  No benchmark: HOLD on every
    row (the relative leg cannot be judged, and exits without entries are not produced either).
    Strength: BUY excess = min(ret - hurdle, ret - bench), SELL excess = hurdle - ret; scale 5 (points).
    min_history = max(lookback + 1, atr_length).
    """

    name = "dual_momentum"
    description = "absolute momentum above the risk-free hurdle and beating the benchmark"
    search_space = SearchSpace({"lookback": IntRange(20, 252)})
    needs_benchmark = True
    rules = MappingProxyType(
        {
            "BUY": "positive absolute momentum that also beats the benchmark",
            "SELL": "absolute momentum fell below the hurdle",
        }
    )
    indicator_names = ("return", "benchmark_return", "hurdle")

    class Params(RiskParams):
        lookback: int = Field(252, ge=1, le=2000, description="momentum window in bars")
        risk_free: float = Field(0.0, ge=0.0, le=0.5, description="annual risk-free rate (fraction)")
        benchmark: str = benchmark_field()

    @property
    def min_history(self) -> int:
        return min_bars(self.params.lookback + 1, self.params.atr_length)

    def evaluate(self, data: BarData, peers: Peers | None) -> Evaluation:
        p = self.params
        bench = _benchmark_close(peers, data.index)
        if bench is None:
            return _hold(data.shape, self.indicator_names)
        own_return = ind.roc(data.close, p.lookback)
        bench_return = ind.roc(bench, p.lookback)
        hurdle = annual_to_period(p.risk_free, p.lookback)
        known = np.isfinite(own_return) & np.isfinite(bench_return)
        qualifies = (own_return > hurdle) & (own_return > bench_return)
        state = np.where(known, qualifies.astype(np.float64), np.nan)
        buy = ind.crossed_above(state, 0.5)
        sell = ind.crossed_below(own_return, hurdle)
        excess = np.where(buy, np.minimum(own_return - hurdle, own_return - bench_return), hurdle - own_return)
        return Evaluation(
            buy,
            sell,
            excess,
            5.0,
            {"return": own_return, "benchmark_return": bench_return, "hurdle": np.full(data.shape, hurdle)},
        )

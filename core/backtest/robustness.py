"""Robustness checks of a backtest: bootstrap confidence intervals, walk-forward windows, statistical tests.

Pure functions: no I/O, no clock, no mutation of their inputs; randomness only from a ``numpy.random.Generator``
built from the ``seed`` argument, so the same call gives the same numbers.

Conventions (the statistics follow :mod:`core.analytics.metrics`, which states each formula once)
-------------------------------------------------------------------------------------
* A **return** is a simple return as a fraction (``0.01`` = +1 %); returns below ``-1`` are rejected (equity would
  turn negative).
* **Bootstrap.** Each of the ``n`` runs draws as many returns as the input holds, with replacement, compounds them
  from ``initial`` and measures, on the resampled path:

  - total return ``prod(1 + r) - 1`` (and the final equity ``initial * prod(1 + r)``);
  - Sharpe ``mean(r) / std(r, ddof=1) * sqrt(periods_per_year)`` (risk-free rate 0, as in
    :func:`core.analytics.metrics.compute_metrics`); undefined (left out of the percentiles) when the resampled returns
    are constant. For trades the default ``periods_per_year=None`` gives the **per-trade** (unannualised) ratio:
    trades have no fixed frequency;
  - maximum drawdown ``max_t (1 - E_t / max_{s<=t} E_s)`` over the path **including** the starting point
    ``initial`` (a first losing return is a drawdown).

  Intervals are the 5th, 50th and 95th percentiles over the runs (numpy's default linear interpolation).
  ``positive_share`` is the share of runs whose total return is ``> 0``.
* **Trade bootstrap**: the returns are the effect of each trade on the **whole equity**, applied in sequence.
  Passing :attr:`core.analytics.metrics.ClosedTrade.return_pct` therefore assumes each trade used the whole account; pass
  ``pnl / equity_at_entry`` for a sized book.
* **Daily bootstrap**: ``block=1`` is the i.i.d. bootstrap. ``block > 1`` keeps runs of consecutive days together
  so that autocorrelation and volatility clustering survive resampling: the **stationary** bootstrap (Politis &
  Romano 1994, the default) starts a new block at each day with probability ``1 / block`` (geometric block
  lengths of mean ``block``); the **fixed** (circular block) bootstrap starts a new block every ``block`` days.
  Both wrap around the end of the sample (circular), so every day is equally likely to be drawn.
* **Walk-forward windows** (sub-periods of one run: nothing here re-optimises on the training part, so the "test"
  windows are slices of one run, not out-of-sample evidence; :mod:`core.research.walkforward` is the true
  walk-forward optimisation): windows are positions on a ``DatetimeIndex``; every boundary is an **inclusive** timestamp of
  that index. Only complete windows are produced. An out-of-sample (test) window is measured from the **last
  equity observation before** ``test_start`` (the close the test period starts from) to ``test_end``, so the move
  into the first test day counts and consecutive, non-overlapping test windows compound exactly to the return
  over their union.
* **Tests**: Ljung-Box ``Q`` at ``lags`` via ``statsmodels.stats.diagnostic.acorr_ljungbox`` (null: no
  autocorrelation up to ``lags``); a two-sided one-sample t-test of the mean against 0 via
  ``scipy.stats.ttest_1samp``. A statistic that cannot be computed (constant returns) is ``None``, never NaN.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.diagnostic import acorr_ljungbox

from core.analytics.metrics import TRADING_DAYS_PER_YEAR, ClosedTradeLike, PerformanceMetrics, compute_metrics

PERCENTILES = (5.0, 50.0, 95.0)
# Same threshold as core.analytics.metrics: a standard deviation below it is treated as zero (constant returns).
_ZERO_STD = 1e-12
# Bootstrap runs processed together (128 x 2500 float64 = 2.5 MB per array).
_CHUNK = 128
_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "UTC+00:00", "Z", "Etc/Zulu", "Zulu", "Universal", "Etc/Universal"})

BlockMethod = Literal["stationary", "fixed"]


# ------------------------------------------------------------------------------------------------------ bootstrap


@dataclass(frozen=True, slots=True)
class Interval:
    """The 5th, 50th and 95th percentiles of a statistic over the bootstrap runs."""

    p5: float
    p50: float
    p95: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    """Percentile intervals of a bootstrap (see the module docstring for every definition).

    ``sharpe`` is ``None`` when it is undefined in every run (constant returns); ``sharpe_runs`` counts the runs in
    which it was defined. ``observed_*`` are the same statistics on the original, unresampled sequence.
    """

    kind: Literal["trades", "daily"]
    runs: int
    sample_size: int
    seed: int
    block: int
    block_method: str
    periods_per_year: float | None
    initial: float
    total_return: Interval
    final_equity: Interval
    sharpe: Interval | None
    sharpe_runs: int
    max_drawdown: Interval
    positive_share: float
    observed_total_return: float
    observed_sharpe: float | None
    observed_max_drawdown: float
    observed_final_equity: float

    def as_dict(self) -> dict[str, Any]:
        """Plain nested dict (intervals as ``{"p5", "p50", "p95"}``), the shape the HTML report reads."""
        return asdict(self)


def _as_returns(values: Sequence[float] | np.ndarray | pd.Series, name: str) -> np.ndarray:
    if isinstance(values, pd.DataFrame):
        raise TypeError(f"{name} must be one-dimensional, got a DataFrame")
    if isinstance(values, pd.Series):
        values = values.to_numpy(dtype=float)
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: nothing to resample")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values (drop the leading NaN of pct_change())")
    if (arr < -1.0).any():
        raise ValueError(f"{name} contains a return below -1 (-100 %): equity would turn negative")
    return arr


def _check_runs_seed(n: int, seed: int, initial: float) -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__}")
    if not (math.isfinite(initial) and initial > 0):
        raise ValueError(f"initial must be a positive finite number, got {initial!r}")


def _path_statistics(
    samples: np.ndarray, initial: float, periods_per_year: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Total return, Sharpe (NaN where undefined) and maximum drawdown of each row of resampled returns."""
    growth = samples + 1.0
    np.cumprod(growth, axis=1, out=growth)
    total = growth[:, -1] - 1.0
    # Running peak including the starting point (growth 1.0 = initial equity), so peak >= 1: no division by zero.
    ratio = np.maximum(growth, 1.0)
    np.maximum.accumulate(ratio, axis=1, out=ratio)
    np.divide(growth, ratio, out=ratio)
    max_dd = np.maximum(1.0 - ratio.min(axis=1), 0.0)
    sharpe = np.full(samples.shape[0], np.nan)
    if samples.shape[1] >= 2:
        std = samples.std(axis=1, ddof=1)
        defined = std > _ZERO_STD
        scale = math.sqrt(periods_per_year) if periods_per_year is not None else 1.0
        sharpe[defined] = samples[defined].mean(axis=1) / std[defined] * scale
    return total, sharpe, max_dd


def _interval(values: np.ndarray) -> Interval:
    p5, p50, p95 = np.percentile(values, PERCENTILES)
    return Interval(float(p5), float(p50), float(p95))


def _bootstrap(
    returns: np.ndarray,
    draw: Callable[[int], np.ndarray],
    *,
    runs: int,
    kind: Literal["trades", "daily"],
    seed: int,
    block: int,
    block_method: str,
    periods_per_year: float | None,
    initial: float,
) -> BootstrapResult:
    """Resample ``runs`` paths, ``_CHUNK`` rows at a time (``draw(rows)`` gives the positions of ``rows`` runs).

    Working in chunks keeps the arrays small enough to stay in cache: 1000 x 2500 at once is three 20 MB arrays.
    """
    total = np.empty(runs)
    sharpe = np.empty(runs)
    max_dd = np.empty(runs)
    for first in range(0, runs, _CHUNK):
        rows = min(_CHUNK, runs - first)
        part = slice(first, first + rows)
        total[part], sharpe[part], max_dd[part] = _path_statistics(returns[draw(rows)], initial, periods_per_year)
    defined = sharpe[np.isfinite(sharpe)]
    obs_total, obs_sharpe, obs_dd = _path_statistics(returns[np.newaxis, :], initial, periods_per_year)
    return BootstrapResult(
        kind=kind,
        runs=runs,
        sample_size=int(returns.size),
        seed=int(seed),
        block=int(block),
        block_method=block_method,
        periods_per_year=None if periods_per_year is None else float(periods_per_year),
        initial=float(initial),
        total_return=_interval(total),
        final_equity=_interval(initial * (1.0 + total)),
        sharpe=_interval(defined) if defined.size else None,
        sharpe_runs=int(defined.size),
        max_drawdown=_interval(max_dd),
        positive_share=float(np.count_nonzero(total > 0.0) / total.size),
        observed_total_return=float(obs_total[0]),
        observed_sharpe=float(obs_sharpe[0]) if np.isfinite(obs_sharpe[0]) else None,
        observed_max_drawdown=float(obs_dd[0]),
        observed_final_equity=float(initial * (1.0 + obs_total[0])),
    )


def bootstrap_trades(
    trade_returns: Sequence[float] | np.ndarray | pd.Series,
    *,
    n: int = 1000,
    seed: int,
    initial: float = 1.0,
    periods_per_year: float | None = None,
) -> BootstrapResult:
    """I.i.d. bootstrap of trade returns: ``n`` resampled trade sequences compounded from ``initial``.

    ``periods_per_year=None`` reports the per-trade Sharpe ratio; pass the number of trades per year to annualise.
    """
    _check_runs_seed(n, seed, initial)
    if periods_per_year is not None and not (math.isfinite(periods_per_year) and periods_per_year > 0):
        raise ValueError(f"periods_per_year must be positive or None, got {periods_per_year!r}")
    returns = _as_returns(trade_returns, "trade_returns")
    rng = np.random.default_rng(seed)
    size = returns.size
    return _bootstrap(
        returns, lambda rows: rng.integers(0, size, size=(rows, size)), runs=int(n), kind="trades", seed=seed, block=1, block_method="iid",
        periods_per_year=periods_per_year, initial=initial,
    )  # fmt: skip


def block_indices(
    size: int, runs: int, block: int, rng: np.random.Generator, method: BlockMethod = "stationary"
) -> np.ndarray:
    """``(runs, size)`` positions into a sample of ``size`` for a circular block bootstrap (vectorised).

    A block starts at position 0 and, afterwards, wherever ``new`` is true (probability ``1 / block`` per position
    for the stationary bootstrap, every ``block`` positions for the fixed one); inside a block the positions run on
    consecutively from the block's random start, wrapping around the end of the sample. ``block=1`` is the i.i.d.
    bootstrap.
    """
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block!r}")
    if method not in ("stationary", "fixed"):
        raise ValueError(f"block method must be 'stationary' or 'fixed', got {method!r}")
    starts = rng.integers(0, size, size=(runs, size))
    if block == 1:
        return starts
    positions = np.arange(size)
    if method == "stationary":
        new = rng.random((runs, size)) < 1.0 / block
    else:
        new = np.broadcast_to(positions % block == 0, (runs, size)).copy()
    new[:, 0] = True
    # Position at which the current block began: running maximum of the positions where a block starts.
    block_begin = np.maximum.accumulate(np.where(new, positions, 0), axis=1)
    start_of_block = np.take_along_axis(starts, block_begin, axis=1)
    return (start_of_block + positions - block_begin) % size


def bootstrap_daily(
    daily_returns: Sequence[float] | np.ndarray | pd.Series,
    *,
    n: int = 1000,
    seed: int,
    block: int = 1,
    block_method: BlockMethod = "stationary",
    initial: float = 1.0,
    periods_per_year: float = TRADING_DAYS_PER_YEAR,
) -> BootstrapResult:
    """Bootstrap of daily returns (i.i.d. for ``block=1``, else a circular block bootstrap of mean length ``block``).

    The Sharpe ratio is annualised with ``periods_per_year`` (252 by default).
    """
    _check_runs_seed(n, seed, initial)
    if isinstance(block, bool) or not isinstance(block, int | np.integer) or block < 1:
        raise ValueError(f"block must be a positive integer, got {block!r}")
    if not (math.isfinite(periods_per_year) and periods_per_year > 0):
        raise ValueError(f"periods_per_year must be positive, got {periods_per_year!r}")
    returns = _as_returns(daily_returns, "daily_returns")
    if block_method not in ("stationary", "fixed"):
        raise ValueError(f"block_method must be 'stationary' or 'fixed', got {block_method!r}")
    rng = np.random.default_rng(seed)
    size, length = returns.size, int(block)
    return _bootstrap(
        returns, lambda rows: block_indices(size, rows, length, rng, block_method), runs=int(n), kind="daily", seed=seed, block=int(block),
        block_method="iid" if block == 1 else block_method,
        periods_per_year=periods_per_year, initial=initial,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------- walk-forward


@dataclass(frozen=True, slots=True)
class Window:
    """One walk-forward window; all four bounds are inclusive timestamps of the index it was cut from."""

    train_start: datetime
    train_end: datetime
    test_start: datetime
    test_end: datetime


@dataclass(frozen=True, slots=True)
class WindowResult:
    """Out-of-sample metrics of one test window (``metrics`` from :func:`core.analytics.metrics.compute_metrics`)."""

    window: Window
    metrics: PerformanceMetrics

    @property
    def total_return(self) -> float | None:
        return self.metrics.total_return

    @property
    def sharpe(self) -> float | None:
        return self.metrics.sharpe

    @property
    def max_drawdown(self) -> float | None:
        return self.metrics.max_drawdown

    def as_dict(self) -> dict[str, Any]:
        """One flat row for a table: the window bounds and the headline out-of-sample figures."""
        return {
            "train_start": self.window.train_start,
            "train_end": self.window.train_end,
            "test_start": self.window.test_start,
            "test_end": self.window.test_end,
            "total_return": self.metrics.total_return,
            "sharpe": self.metrics.sharpe,
            "max_drawdown": self.metrics.max_drawdown,
            "num_trades": self.metrics.trades.num_trades,
            "win_rate": self.metrics.trades.win_rate,
        }


@dataclass(frozen=True, slots=True)
class WalkForwardSummary:
    """Aggregate of the out-of-sample windows.

    ``compounded_return`` chains the window returns (``prod(1 + r) - 1``): the return over their union when the
    test windows do not overlap. ``mean_sharpe`` averages the windows whose Sharpe ratio is defined.
    """

    windows: int
    mean_return: float | None
    median_return: float | None
    positive_share: float | None
    compounded_return: float | None
    mean_sharpe: float | None
    worst_drawdown: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_utc_datetime_index(index: object, name: str) -> pd.DatetimeIndex:
    if not isinstance(index, pd.DatetimeIndex):
        raise TypeError(f"{name} must be a DatetimeIndex, got {type(index).__name__}")
    if index.tz is None or str(index.tz) not in _UTC_NAMES:
        raise ValueError(f"{name} must be timezone-aware UTC, got tz={index.tz!r}")
    if not (index.is_monotonic_increasing and index.is_unique):
        raise ValueError(f"{name} must be strictly increasing (sorted, no duplicate timestamps)")
    return index


def walk_forward(index: pd.DatetimeIndex, *, train: int, test: int, step: int | None = None) -> list[Window]:
    """Rolling windows of ``train`` observations followed by ``test`` observations, moved on by ``step``.

    Window ``k`` covers positions ``[k*step, k*step + train)`` for training and ``[k*step + train,
    k*step + train + test)`` for testing; ``step`` defaults to ``test`` (back-to-back, non-overlapping test windows).
    Only windows whose test period fits entirely in ``index`` are returned (possibly none).
    """
    index = _check_utc_datetime_index(index, "index")
    train = _check_positive_int(train, "train")
    test = _check_positive_int(test, "test")
    step = test if step is None else _check_positive_int(step, "step")
    windows: list[Window] = []
    begin = 0
    while begin + train + test <= len(index):
        windows.append(
            Window(
                train_start=index[begin].to_pydatetime(),
                train_end=index[begin + train - 1].to_pydatetime(),
                test_start=index[begin + train].to_pydatetime(),
                test_end=index[begin + train + test - 1].to_pydatetime(),
            )
        )
        begin += step
    return windows


def walk_forward_evaluate(
    equity: pd.Series,
    windows: Sequence[Window],
    *,
    trades: Sequence[ClosedTradeLike] = (),
    periods_per_year: float = TRADING_DAYS_PER_YEAR,
) -> list[WindowResult]:
    """Out-of-sample :func:`core.analytics.metrics.compute_metrics` of ``equity`` over each window's test period.

    The slice runs from the last observation before ``test_start`` (if any) to ``test_end`` inclusive; the trades
    counted in a window are those that **exit** inside ``[test_start, test_end]`` (trades need an ``exit_at``).
    Raises ``ValueError`` when a test window holds no equity observation.
    """
    index = _check_utc_datetime_index(getattr(equity, "index", None), "equity index")
    results: list[WindowResult] = []
    for window in windows:
        start = pd.Timestamp(window.test_start)
        end = pd.Timestamp(window.test_end)
        first = int(index.searchsorted(start, side="left"))
        stop = int(index.searchsorted(end, side="right"))
        if first >= stop:
            raise ValueError(f"no equity observation in the test window {start} .. {end}")
        base = max(first - 1, 0)
        window_trades = [t for t in trades if start <= pd.Timestamp(t.exit_at) <= end]  # type: ignore[attr-defined]
        metrics = compute_metrics(equity.iloc[base:stop], window_trades, periods_per_year=periods_per_year)
        results.append(WindowResult(window=window, metrics=metrics))
    return results


def summarize_walk_forward(results: Sequence[WindowResult]) -> WalkForwardSummary:
    """Mean/median out-of-sample return, share of positive windows and the other aggregates of the summary."""
    returns = [r.total_return for r in results if r.total_return is not None]
    sharpes = [r.sharpe for r in results if r.sharpe is not None]
    drawdowns = [r.max_drawdown for r in results if r.max_drawdown is not None]
    return WalkForwardSummary(
        windows=len(results),
        mean_return=statistics.fmean(returns) if returns else None,
        median_return=statistics.median(returns) if returns else None,
        positive_share=sum(1 for r in returns if r > 0) / len(returns) if returns else None,
        compounded_return=math.prod(1.0 + r for r in returns) - 1.0 if returns else None,
        mean_sharpe=statistics.fmean(sharpes) if sharpes else None,
        worst_drawdown=max(drawdowns) if drawdowns else None,
    )


# ------------------------------------------------------------------------------------------------------- tests


@dataclass(frozen=True, slots=True)
class ReturnTests:
    """Ljung-Box test of autocorrelation up to ``lags`` and a one-sample t-test of the mean return against 0.

    ``None`` for a statistic that cannot be computed (constant returns have no variance).
    """

    ljung_box_stat: float | None
    ljung_box_pvalue: float | None
    t_stat: float | None
    t_pvalue: float | None
    mean: float
    n: int
    lags: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def return_tests(daily_returns: Sequence[float] | np.ndarray | pd.Series, lags: int = 10) -> ReturnTests:
    """Ljung-Box ``Q(lags)`` (statsmodels) and the two-sided one-sample t-test of the mean (scipy).

    Needs more observations than ``lags`` (the autocorrelation at lag ``k`` needs ``k + 1`` values).
    """
    lags = _check_positive_int(lags, "lags")
    if isinstance(daily_returns, pd.Series):
        daily_returns = daily_returns.to_numpy(dtype=float)
    arr = np.asarray(daily_returns, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"daily_returns must be one-dimensional, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("daily_returns contains NaN or infinite values (drop the leading NaN of pct_change())")
    if arr.size <= lags:
        raise ValueError(f"need more than lags={lags} returns, got {arr.size}")
    mean = float(arr.mean())
    if float(arr.std(ddof=1)) <= _ZERO_STD:
        return ReturnTests(None, None, None, None, mean, int(arr.size), lags)
    lb = acorr_ljungbox(arr, lags=[lags], return_df=True)
    t = stats.ttest_1samp(arr, 0.0)
    return ReturnTests(
        ljung_box_stat=float(lb["lb_stat"].iloc[0]),
        ljung_box_pvalue=float(lb["lb_pvalue"].iloc[0]),
        t_stat=float(t.statistic),
        t_pvalue=float(t.pvalue),
        mean=mean,
        n=int(arr.size),
        lags=lags,
    )

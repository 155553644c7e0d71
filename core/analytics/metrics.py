"""Performance metrics of an equity curve and of a list of closed trades.

Pure functions: no I/O, no clock, no mutation of their inputs. Every formula and convention is stated here once;
the tests in ``tests/metrics`` check each of them against numbers worked out by hand.

Inputs
------
* ``equity``: a ``pd.Series`` of account equity indexed by a timezone-aware **UTC** ``DatetimeIndex`` that is
  strictly increasing. Values must be finite and strictly positive (a simple return is undefined from zero
  equity). Anything else raises ``ValueError``/``TypeError``: a malformed input is a bug upstream, not a
  "degenerate" case to paper over.
* ``trades``: closed round trips, :class:`ClosedTrade` or any object with the same attributes
  (see :class:`ClosedTradeLike`). ``pnl`` is money **net of costs**; ``return_pct`` is the trade's net return as a
  **fraction** of its entry notional (``0.05`` means +5 %), despite the historical ``_pct`` suffix.

Conventions
-----------
* Period returns are simple returns ``r_t = E_t / E_{t-1} - 1`` between consecutive observations; ``n`` is their
  number (``len(equity) - 1``).
* ``periods_per_year`` (default **252**, trading days in a year) annualises per-period statistics. It must describe
  the spacing of the equity series (252 for daily bars, 52 for weekly, ...).
* ``risk_free`` is an **annual** rate (default **0**), de-annualised geometrically to a per-period rate
  ``rf_p = (1 + risk_free) ** (1 / periods_per_year) - 1``; excess returns are ``e_t = r_t - rf_p``.
* **Total return** ``E_last / E_first - 1``.
* **Annualised return** (by periods, consistent with the Sharpe ratio):
  ``(1 + total_return) ** (periods_per_year / n) - 1``.
* **CAGR** (by calendar time, robust to gaps in the series): ``(1 + total_return) ** (1 / years) - 1`` with
  ``years = (t_last - t_first) / 365.25 days``. For a daily series without gaps both agree approximately
  (252 trading days ~ 365.25 calendar days). A growth too large for a float is reported as ``math.inf``.
* **Sharpe** ``mean(e) / std(e) * sqrt(periods_per_year)`` with the **sample** standard deviation (``ddof=1``):
  the returns are a sample from which the volatility of the process is estimated, so Bessel's correction removes
  the small-sample bias of the variance; it is also the pandas default and what empyrical/quantstats use. Needs
  ``n >= 2``; ``None`` when the standard deviation is zero (constant returns: the ratio is undefined).
* **Sortino** ``mean(e) / DD * sqrt(periods_per_year)`` where the downside deviation is the target semi-deviation
  ``DD = sqrt( sum_t min(0, e_t) ** 2 / n )``: the target (minimum acceptable return) is the per-period risk-free
  rate, every one of the ``n`` periods is in the denominator (periods above target contribute 0), and the divisor
  is ``n``, not ``n - 1``, because ``DD**2`` is a lower partial moment about a fixed target, not a variance about
  an estimated mean (Sortino & Price 1994; empyrical). Needs ``n >= 2``; ``None`` when no period is below target
  (``DD == 0``: the ratio is undefined, not infinite).
* **Drawdown** at t is the positive fraction below the running peak, ``1 - E_t / max_{s<=t} E_s``, in ``[0, 1)``.
  **Maximum drawdown** is its maximum (``0.0`` for a never-falling or one-point series).
* **Drawdown duration**: an episode starts at the last observation at a running peak before equity falls below
  it and ends at the first observation with ``E_t >= peak`` (recovery), or at the last observation if equity has
  not recovered by then (the unrecovered episode counts, measured to the end). The reported duration is that of the
  **longest** episode (not necessarily the deepest), in periods (observations elapsed) and in calendar days.
* **Historical VaR / CVaR** of **daily** returns: equity is first reduced to one value per UTC calendar day (the
  last observation of that day; a daily series is unchanged), then daily simple returns are sorted ascending,
  ``r_(1) <= ... <= r_(m)``. With ``k = ceil(m * (1 - var_level))`` (at least 1) tail observations,
  ``VaR = -r_(k)`` (the k-th worst return) and ``CVaR = -mean(r_(1..k))`` (expected shortfall: mean of the k worst).
  Both are **signed as losses**: a positive number is a loss fraction (``0.03`` = a 3 % loss); a negative value
  means even the tail return was a gain. ``CVaR >= VaR`` always. No interpolation between order statistics.
* **Trades**: a win is ``pnl > 0``, a loss ``pnl < 0``; a break-even trade (``pnl == 0``) is neither but counts in
  ``num_trades``. ``win_rate = wins / num_trades``. ``gross_profit = sum of winning pnl``; ``gross_loss`` is the
  **magnitude** ``|sum of losing pnl|`` (positive). **Profit factor** ``gross_profit / gross_loss`` from the
  **totals** (never an average of per-trade or per-group ratios): ``math.inf`` when there are wins and no losses,
  ``0.0`` when there are losses and no wins, ``None`` when there are no trades or only break-even trades.
  **Expectancy** ``total_pnl / num_trades`` (money per trade) and ``expectancy_return`` = mean ``return_pct``.
  ``average_win = gross_profit / wins`` and ``average_loss = gross_loss / losses`` (a positive magnitude);
  ``payoff_ratio = average_win / average_loss``.
* **Exposure**: share of the observations of the ``exposure`` series (gross exposure or position count, on the
  same grid as ``equity``) that are non-zero. ``None`` when no series is given or it is empty.

Degenerate inputs never raise ``ZeroDivisionError`` nor return NaN: a statistic that cannot be computed is ``None``.
The one place NaN appears on purpose is :func:`monthly_returns`, a table whose empty cells mean "no data".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from core.kernel.domain import datetime_index, ensure_utc

TRADING_DAYS_PER_YEAR = 252
DAYS_PER_YEAR = 365.25
_SECONDS_PER_DAY = 86_400.0
# Below this, a standard deviation of returns (fractions) is treated as zero: constant returns built by
# repeated multiplication differ from each other by a few ulps, and dividing by that noise is meaningless.
_ZERO_STD = 1e-12
# Guard for ceil(m * (1 - var_level)): 10 * (1 - 0.7) is 3.0000000000000004 in binary floating point.
_CEIL_GUARD = 1e-9
_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "UTC+00:00", "Z", "Etc/Zulu", "Zulu", "Universal", "Etc/Universal"})


class ClosedTradeLike(Protocol):
    """What the metric functions read from a trade; :class:`ClosedTrade` satisfies it."""

    @property
    def symbol(self) -> str: ...
    @property
    def strategy(self) -> str: ...
    @property
    def pnl(self) -> float: ...
    @property
    def return_pct(self) -> float: ...
    @property
    def entry_confidence(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    """One closed round trip. ``pnl`` is net of costs; ``return_pct`` is a fraction (0.05 = +5 %)."""

    symbol: str
    strategy: str
    entry_at: datetime
    exit_at: datetime
    entry_price: float
    exit_price: float
    quantity: float
    pnl: float
    entry_confidence: float | None
    return_pct: float

    def __post_init__(self) -> None:
        ensure_utc(self.entry_at, "entry_at")
        ensure_utc(self.exit_at, "exit_at")
        if self.exit_at < self.entry_at:
            raise ValueError(f"exit_at {self.exit_at!r} is before entry_at {self.entry_at!r}")
        for name in ("entry_price", "exit_price", "quantity", "pnl", "return_pct"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)!r}")
        if self.entry_price <= 0 or self.exit_price <= 0:
            raise ValueError("entry_price and exit_price must be positive")
        if self.quantity == 0:
            raise ValueError("quantity must be non-zero")
        if self.entry_confidence is not None and not 0.0 <= self.entry_confidence <= 1.0:
            raise ValueError(f"entry_confidence must be in [0, 1], got {self.entry_confidence!r}")


@dataclass(frozen=True, slots=True)
class TradeMetrics:
    """Trade-based statistics (see the module docstring for every definition)."""

    num_trades: int
    wins: int
    losses: int
    breakeven: int
    win_rate: float | None
    total_pnl: float
    gross_profit: float
    gross_loss: float
    profit_factor: float | None
    expectancy: float | None
    expectancy_return: float | None
    average_win: float | None
    average_loss: float | None
    payoff_ratio: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class PerformanceMetrics:
    """Equity-curve statistics plus the :class:`TradeMetrics` of all trades."""

    start: datetime | None
    end: datetime | None
    num_observations: int
    num_periods: int
    periods_per_year: float
    risk_free: float
    total_return: float | None
    annualised_return: float | None
    cagr: float | None
    volatility: float | None
    sharpe: float | None
    sortino: float | None
    downside_deviation: float | None
    max_drawdown: float | None
    max_drawdown_duration_periods: int | None
    max_drawdown_duration_days: float | None
    longest_drawdown_recovered: bool | None
    var_level: float
    var: float | None
    cvar: float | None
    exposure: float | None
    trades: TradeMetrics

    def as_dict(self) -> dict[str, Any]:
        """A flat dict: the equity fields followed by the trade fields (their names do not overlap)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "trades"}
        out.update(self.trades.as_dict())
        return out


@dataclass(frozen=True, slots=True)
class DrawdownEpisode:
    """One drawdown: from the peak observation to recovery (or the last observation if unrecovered)."""

    peak_at: datetime
    end_at: datetime
    periods: int
    days: float
    depth: float
    recovered: bool


# --------------------------------------------------------------------------------------------------- validation


def _check_utc_index(series: pd.Series, name: str) -> pd.DatetimeIndex:
    if not isinstance(series, pd.Series):
        raise TypeError(f"{name} must be a pandas Series, got {type(series).__name__}")
    index = series.index
    if not isinstance(index, pd.DatetimeIndex):
        raise TypeError(f"{name} must have a DatetimeIndex, got {type(index).__name__}")
    if index.tz is None or str(index.tz) not in _UTC_NAMES:
        raise ValueError(f"{name} index must be timezone-aware UTC, got tz={index.tz!r}")
    if not (index.is_monotonic_increasing and index.is_unique):
        raise ValueError(f"{name} index must be strictly increasing (sorted, no duplicate timestamps)")
    return index


def _validate_equity(equity: pd.Series) -> pd.Series:
    _check_utc_index(equity, "equity")
    values = pd.to_numeric(equity, errors="raise").astype(float)
    if len(values) and not np.isfinite(values.to_numpy()).all():
        raise ValueError("equity contains NaN or infinite values")
    if len(values) and (values.to_numpy() <= 0).any():
        raise ValueError("equity must be strictly positive for returns to be defined")
    return values


def _validate_parameters(periods_per_year: float, risk_free: float, var_level: float) -> None:
    if not (math.isfinite(periods_per_year) and periods_per_year > 0):
        raise ValueError(f"periods_per_year must be positive, got {periods_per_year!r}")
    if not (math.isfinite(risk_free) and risk_free > -1):
        raise ValueError(f"risk_free must be a finite annual rate > -1, got {risk_free!r}")
    if not 0 < var_level < 1:
        raise ValueError(f"var_level must be in (0, 1), got {var_level!r}")


def _trade_pnls(trades: Iterable[ClosedTradeLike]) -> tuple[np.ndarray, np.ndarray]:
    pnl, ret = [], []
    for trade in trades:
        p, r = float(trade.pnl), float(trade.return_pct)
        if not (math.isfinite(p) and math.isfinite(r)):
            raise ValueError(f"trade pnl/return_pct must be finite, got pnl={p!r}, return_pct={r!r}")
        pnl.append(p)
        ret.append(r)
    return np.asarray(pnl, dtype=float), np.asarray(ret, dtype=float)


# --------------------------------------------------------------------------------------------------- helpers


def _pow_growth(growth: float, exponent: float) -> float:
    """``growth ** exponent`` for growth > 0, ``math.inf`` instead of OverflowError."""
    log_value = math.log(growth) * exponent
    if log_value > 709.0:  # math.exp overflows just above 709.78
        return math.inf
    return math.exp(log_value)


def _period_returns(values: pd.Series) -> np.ndarray:
    arr = values.to_numpy(dtype=float)
    return arr[1:] / arr[:-1] - 1.0


def drawdown_series(equity: pd.Series) -> pd.Series:
    """Drawdown at each observation as a positive fraction below the running peak: ``1 - E_t / max_{s<=t} E_s``.

    Same index as ``equity``; values in ``[0, 1)``; an empty input gives an empty series.
    """
    values = _validate_equity(equity)
    peak = values.cummax()
    return (1.0 - values / peak).rename("drawdown")


def drawdown_episodes(equity: pd.Series) -> list[DrawdownEpisode]:
    """Every drawdown episode in time order (see the module docstring for start/end and the unrecovered case)."""
    values = _validate_equity(equity)
    arr = values.to_numpy(dtype=float)
    index = datetime_index(values)
    episodes: list[DrawdownEpisode] = []
    peak_value = -math.inf
    peak_pos = 0
    in_drawdown = False
    depth = 0.0
    for pos, value in enumerate(arr.tolist()):
        if value >= peak_value:
            if in_drawdown:
                episodes.append(_episode(index, peak_pos, pos, depth, recovered=True))
                in_drawdown = False
            peak_value, peak_pos, depth = value, pos, 0.0
        else:
            in_drawdown = True
            depth = max(depth, float(1.0 - value / peak_value))
    if in_drawdown:
        episodes.append(_episode(index, peak_pos, len(arr) - 1, depth, recovered=False))
    return episodes


def _episode(index: pd.DatetimeIndex, start: int, end: int, depth: float, *, recovered: bool) -> DrawdownEpisode:
    days = (index[end] - index[start]).total_seconds() / _SECONDS_PER_DAY
    return DrawdownEpisode(
        peak_at=index[start].to_pydatetime(),
        end_at=index[end].to_pydatetime(),
        periods=end - start,
        days=days,
        depth=depth,
        recovered=recovered,
    )


def monthly_returns(equity: pd.Series) -> pd.DataFrame:
    """Year x month table of compounded returns (index: year, columns: months 1..12).

    A month's return is ``E_end_of_month / E_base - 1`` where ``E_end_of_month`` is the last observation in that
    UTC calendar month and ``E_base`` is the last observation before the month (for the first month, the first
    observation of the series). A month without observations is NaN — in this table NaN means "no data", on
    purpose — and the next month with data compounds over the gap.
    """
    values = _validate_equity(equity)
    columns = pd.Index(range(1, 13), name="month")
    if len(values) == 0:
        return pd.DataFrame(columns=columns, index=pd.Index([], name="year", dtype=int), dtype=float)
    index = datetime_index(values)
    month_end = values.groupby([index.year, index.month]).last()
    base = month_end.shift(1)
    base.iloc[0] = values.iloc[0]
    returns = month_end / base - 1.0
    returns.index = returns.index.set_names(["year", "month"])
    table = returns.unstack("month").reindex(columns=columns)
    table.index = table.index.astype(int)
    return table.astype(float)


def _daily_returns(values: pd.Series) -> np.ndarray:
    days = datetime_index(values).normalize()
    daily_last = values.groupby(days).last()
    return _period_returns(daily_last)


def historical_var_cvar(returns: Sequence[float] | np.ndarray, var_level: float) -> tuple[float, float] | None:
    """Historical ``(VaR, CVaR)`` of ``returns`` at ``var_level``, signed as losses; ``None`` when empty."""
    if not 0 < var_level < 1:
        raise ValueError(f"var_level must be in (0, 1), got {var_level!r}")
    arr = np.sort(np.asarray(returns, dtype=float))
    if arr.size == 0:
        return None
    if not np.isfinite(arr).all():
        raise ValueError("returns contain NaN or infinite values")
    k = max(1, math.ceil(arr.size * (1.0 - var_level) - _CEIL_GUARD))
    # ``+ 0.0`` turns a -0.0 (a zero return negated) into 0.0
    return float(-arr[k - 1]) + 0.0, float(-arr[:k].mean()) + 0.0


# --------------------------------------------------------------------------------------------------- trades


def trade_metrics(trades: Iterable[ClosedTradeLike]) -> TradeMetrics:
    """Trade-based statistics from totals (see the module docstring)."""
    pnl, ret = _trade_pnls(trades)
    n = int(pnl.size)
    winning = pnl[pnl > 0]
    losing = pnl[pnl < 0]
    wins, losses = int(winning.size), int(losing.size)
    gross_profit = float(winning.sum())
    gross_loss = abs(float(losing.sum()))
    if gross_loss > 0:
        profit_factor: float | None = gross_profit / gross_loss
    elif gross_profit > 0:
        profit_factor = math.inf
    else:
        profit_factor = None  # no trades, or only break-even trades: 0 / 0
    average_win = gross_profit / wins if wins else None
    average_loss = gross_loss / losses if losses else None
    payoff = average_win / average_loss if average_win is not None and average_loss is not None else None
    total = float(pnl.sum())
    return TradeMetrics(
        num_trades=n,
        wins=wins,
        losses=losses,
        breakeven=n - wins - losses,
        win_rate=wins / n if n else None,
        total_pnl=total,
        gross_profit=gross_profit,
        gross_loss=gross_loss,
        profit_factor=profit_factor,
        expectancy=total / n if n else None,
        expectancy_return=float(ret.mean()) if n else None,
        average_win=average_win,
        average_loss=average_loss,
        payoff_ratio=payoff,
    )


def metrics_by(trades: Iterable[ClosedTradeLike], key: Literal["strategy", "symbol"]) -> dict[str, TradeMetrics]:
    """:class:`TradeMetrics` per strategy or per symbol, keys in sorted order."""
    if key not in ("strategy", "symbol"):
        raise ValueError(f"key must be 'strategy' or 'symbol', got {key!r}")
    groups: dict[str, list[ClosedTradeLike]] = {}
    for trade in trades:
        groups.setdefault(str(getattr(trade, key)), []).append(trade)
    return {name: trade_metrics(groups[name]) for name in sorted(groups)}


# --------------------------------------------------------------------------------------------------- equity


def compute_metrics(
    equity: pd.Series,
    trades: Sequence[ClosedTradeLike] = (),
    *,
    periods_per_year: float = TRADING_DAYS_PER_YEAR,
    risk_free: float = 0.0,
    var_level: float = 0.95,
    exposure: pd.Series | None = None,
) -> PerformanceMetrics:
    """All performance metrics of an equity curve and its closed trades (definitions in the module docstring)."""
    _validate_parameters(periods_per_year, risk_free, var_level)
    values = _validate_equity(equity)
    n_obs = len(values)
    returns = _period_returns(values) if n_obs >= 2 else np.empty(0)
    n = int(returns.size)

    total_return = annualised = cagr = None
    if n >= 1:
        growth = float(values.iloc[-1] / values.iloc[0])
        total_return = growth - 1.0
        annualised = _pow_growth(growth, periods_per_year / n) - 1.0
        years = (values.index[-1] - values.index[0]).total_seconds() / (_SECONDS_PER_DAY * DAYS_PER_YEAR)
        cagr = _pow_growth(growth, 1.0 / years) - 1.0

    volatility = sharpe = sortino = downside = None
    if n >= 2:
        rf_period = (1.0 + risk_free) ** (1.0 / periods_per_year) - 1.0
        excess = returns - rf_period
        mean_excess = float(excess.mean())
        std = float(returns.std(ddof=1))  # std(e) == std(r): rf_period is a constant
        volatility = std * math.sqrt(periods_per_year)
        if std > _ZERO_STD:
            sharpe = mean_excess / std * math.sqrt(periods_per_year)
        downside = float(math.sqrt(float(np.square(np.minimum(excess, 0.0)).sum()) / n))
        if downside > _ZERO_STD:
            sortino = mean_excess / downside * math.sqrt(periods_per_year)

    max_dd = dd_periods = dd_days = dd_recovered = None
    if n_obs >= 1:
        max_dd = float(drawdown_series(values).max())
        episodes = drawdown_episodes(values)
        if episodes:
            longest = max(episodes, key=lambda e: (e.periods, e.days))  # first longest on ties
            dd_periods, dd_days, dd_recovered = longest.periods, longest.days, longest.recovered
        else:
            dd_periods, dd_days = 0, 0.0

    var = cvar = None
    if n_obs >= 2:
        tail = historical_var_cvar(_daily_returns(values), var_level)
        if tail is not None:
            var, cvar = tail

    return PerformanceMetrics(
        start=values.index[0].to_pydatetime() if n_obs else None,
        end=values.index[-1].to_pydatetime() if n_obs else None,
        num_observations=n_obs,
        num_periods=n,
        periods_per_year=float(periods_per_year),
        risk_free=float(risk_free),
        total_return=total_return,
        annualised_return=annualised,
        cagr=cagr,
        volatility=volatility,
        sharpe=sharpe,
        sortino=sortino,
        downside_deviation=downside,
        max_drawdown=max_dd,
        max_drawdown_duration_periods=dd_periods,
        max_drawdown_duration_days=dd_days,
        longest_drawdown_recovered=dd_recovered,
        var_level=float(var_level),
        var=var,
        cvar=cvar,
        exposure=_exposure_share(exposure),
        trades=trade_metrics(trades),
    )


def _exposure_share(exposure: pd.Series | None) -> float | None:
    if exposure is None:
        return None
    _check_utc_index(exposure, "exposure")
    arr = pd.to_numeric(exposure, errors="raise").to_numpy(dtype=float)
    if arr.size == 0:
        return None
    if not np.isfinite(arr).all():
        raise ValueError("exposure contains NaN or infinite values")
    return float(np.count_nonzero(arr) / arr.size)

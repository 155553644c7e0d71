"""Value objects of the risk engine: limits, trading state, portfolio and candidate views, sizing result, rule names.

Everything here is frozen and free of I/O. Money is ``float`` inside the engine (as in the rest of the pipeline);
it becomes ``Decimal`` only at the persistence edge.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal
from collections.abc import Mapping, Sequence

import pandas as pd

from core.kernel.domain import ValidatedSignal, frozen_map

UNKNOWN_BUCKET = "unknown"

ConfidenceScaling = Literal["linear", "proportional", "none"]
CONFIDENCE_SCALINGS: frozenset[str] = frozenset({"linear", "proportional", "none"})


class RiskRule(enum.StrEnum):
    """Stable snake_case names of every rule; ``Denial.rule`` and the keys of ``Approval.checks`` use them."""

    # entry pre-checks (evaluated in this order)
    NOT_AN_ENTRY = "not_an_entry"
    STATE = "state"
    MIN_CONFIDENCE = "min_confidence"
    INVALID_EQUITY = "invalid_equity"
    DAILY_LOSS = "daily_loss"
    WEEKLY_DRAWDOWN = "weekly_drawdown"
    ALREADY_LONG = "already_long"
    INVALID_PRICE = "invalid_price"
    INVALID_ATR = "invalid_atr"
    INVALID_STOP = "invalid_stop"
    LIQUIDITY = "liquidity"
    SPREAD = "spread"
    REWARD_RISK = "reward_risk"
    CORRELATION = "correlation"
    # sizing (evaluated in this order)
    NO_CASH = "no_cash"
    KELLY = "kelly"
    ZERO_QUANTITY = "zero_quantity"
    MAX_SHARES = "max_shares"
    MAX_POSITION_PCT = "max_position_pct"
    GROSS_EXPOSURE = "gross_exposure"
    SECTOR_CAP = "sector_cap"
    # exits
    NOT_AN_EXIT = "not_an_exit"
    NO_POSITION = "no_position"
    TIME_STOP = "time_stop"  # an exit the risk rules ask for (Approval.checks["exit_rule"]["rule"])
    # account rules, after sizing (core.risk.account_rules; never applied to exits)
    PDT_GUARD = "pdt_guard"
    GAP_GUARD = "gap_guard"
    # operator control (main.py pause / close): no new entries while paused; an exit the operator asked for
    PAUSED = "paused"
    MANUAL_CLOSE = "manual_close"


class TradingState(enum.StrEnum):
    """ACTIVE: entries and exits. REDUCING: exits, and entries at ``RiskLimits.reducing_size`` of the normal size
    (the daily-loss and weekly-drawdown entry rules still refuse while those limits are hit). LOCKED: exits only, for
    a cool-down of sessions after a drawdown lock, then REDUCING. HALTED: exits only, until a manual reset.
    See :mod:`core.risk.state`."""

    ACTIVE = "active"
    REDUCING = "reducing"
    LOCKED = "locked"
    HALTED = "halted"


def _fraction(name: str, value: float, *, low_open: bool = True, high: float = 1.0) -> None:
    ok = math.isfinite(value) and (value > 0.0 if low_open else value >= 0.0) and value <= high
    if not ok:
        bound = "(0" if low_open else "[0"
        raise ValueError(f"RiskLimits.{name} must be within {bound}, {high}], got {value!r}")


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Every configurable risk limit. Fractions are of current equity unless stated otherwise.

    Sizing
        risk_per_trade        fraction of equity put at risk by one entry (at its stop), before confidence scaling
        stop_atr_multiple     the stop when the strategy gives none: stop_atr_multiple x ATR below the entry price
                              (a strategy's own stop, from its parameters, is used whenever it gives one)
        confidence_scaling    how the validated confidence scales the risk amount:
                              "linear"       scale = min_confidence_scale + (1 - min_confidence_scale)
                                             x (confidence - min_confidence) / (1 - min_confidence)
                                             i.e. 0.5 at min_confidence, 1.0 at confidence 1.0 (default)
                              "proportional" scale = confidence
                              "none"         scale = 1
        min_confidence_scale  the linear scale at min_confidence (0.5 by default)
        kelly_fraction        None disables Kelly; e.g. 0.5 = half Kelly (see ``core.risk.sizing.kelly_estimate``)
        kelly_min_trades      Kelly is only estimated from at least this many realised trades, and shrunk by
                              n / (n + kelly_min_trades); below it the fixed ``risk_per_trade`` applies
        allow_fractional      quantities are whole shares unless True (then floored to ``fractional_step``)
    Clipping caps (reduce the quantity; a quantity clipped to 0 is a denial naming the cap)
        max_shares, max_position_pct (position value / equity), available cash, max_gross_exposure
        ((gross + new) / equity), sector_cap ((bucket + new) / equity)
    Denials
        min_confidence, max_daily_loss (equity vs day start), max_weekly_drawdown (equity vs 5-session high),
        min_avg_dollar_volume, max_spread_pct, min_reward_risk, max_correlation over correlation_lookback rows
        (pairs with fewer than correlation_min_periods overlapping returns are "not applicable"),
        allow_pyramiding (False: a BUY for a symbol already held is refused)
    State machine
        halt_multiple         LOCKED (a crash lock, released after the drawdown lock's cool-down) when the daily
                              loss >= halt_multiple x max_daily_loss or the weekly drawdown >= halt_multiple x
                              max_weekly_drawdown (2.0: 10% with the defaults); None disables it
        reducing_size         in REDUCING, entries are sized with risk_per_trade and max_position_pct scaled by this
                              fraction (0.5: half size)
    Account rules (``core.risk.account_rules``; entries only, the last rules of ``evaluate_entry``)
        pdt_guard             refuse an entry that could become a day trade (it carries stop/target legs working
                              from its fill) when equity < pdt_equity_threshold and the account already has
                              pdt_max_day_trades day trades in the last five sessions (or is flagged a pattern day
                              trader)
        gap_guard             re-check an entry at the price at submission: refused when that price is at or through
                              its stop or at or beyond its target; resized (or refused at 0) when its risk at that
                              price grew past risk_per_trade x equity
    """

    risk_per_trade: float = 0.02
    max_daily_loss: float = 0.05
    max_weekly_drawdown: float = 0.05
    min_confidence: float = 0.3
    max_shares: float = 1000
    max_position_pct: float = 0.20
    stop_atr_multiple: float = 1.5
    max_gross_exposure: float = 1.0
    sector_cap: float = 0.35
    max_correlation: float = 0.8
    correlation_lookback: int = 60
    correlation_min_periods: int = 20
    min_avg_dollar_volume: float = 3_000_000
    max_spread_pct: float = 0.01
    min_reward_risk: float = 1.8
    allow_fractional: bool = False
    fractional_step: float = 1e-6
    allow_pyramiding: bool = False
    kelly_fraction: float | None = None
    kelly_min_trades: int = 20
    confidence_scaling: ConfidenceScaling = "linear"
    min_confidence_scale: float = 0.5
    halt_multiple: float | None = 2.0
    reducing_size: float = 0.5
    pdt_guard: bool = True
    pdt_equity_threshold: float = 25_000.0
    pdt_max_day_trades: int = 3
    gap_guard: bool = True

    def __post_init__(self) -> None:
        _fraction("risk_per_trade", self.risk_per_trade)
        _fraction("max_daily_loss", self.max_daily_loss)
        _fraction("max_weekly_drawdown", self.max_weekly_drawdown)
        _fraction("min_confidence", self.min_confidence, low_open=False)
        _fraction("max_position_pct", self.max_position_pct)
        _fraction("sector_cap", self.sector_cap)
        _fraction("max_correlation", self.max_correlation)
        _fraction("max_spread_pct", self.max_spread_pct)
        _fraction("min_confidence_scale", self.min_confidence_scale)
        _fraction("fractional_step", self.fractional_step)
        _fraction("reducing_size", self.reducing_size)
        if not (math.isfinite(self.max_gross_exposure) and self.max_gross_exposure > 0):
            raise ValueError(f"RiskLimits.max_gross_exposure must be > 0, got {self.max_gross_exposure!r}")
        if not (math.isfinite(self.max_shares) and self.max_shares > 0):
            raise ValueError(f"RiskLimits.max_shares must be > 0, got {self.max_shares!r}")
        if not (math.isfinite(self.stop_atr_multiple) and self.stop_atr_multiple > 0):
            raise ValueError(f"RiskLimits.stop_atr_multiple must be > 0, got {self.stop_atr_multiple!r}")
        if not (math.isfinite(self.min_avg_dollar_volume) and self.min_avg_dollar_volume >= 0):
            raise ValueError(f"RiskLimits.min_avg_dollar_volume must be >= 0, got {self.min_avg_dollar_volume!r}")
        if not (math.isfinite(self.min_reward_risk) and self.min_reward_risk >= 0):
            raise ValueError(f"RiskLimits.min_reward_risk must be >= 0, got {self.min_reward_risk!r}")
        if self.correlation_lookback < 2:
            raise ValueError(f"RiskLimits.correlation_lookback must be >= 2, got {self.correlation_lookback!r}")
        if not 2 <= self.correlation_min_periods <= self.correlation_lookback:
            raise ValueError(
                "RiskLimits.correlation_min_periods must be within [2, correlation_lookback], "
                f"got {self.correlation_min_periods!r} (lookback {self.correlation_lookback!r})"
            )
        if self.kelly_fraction is not None:
            _fraction("kelly_fraction", self.kelly_fraction)
        if self.kelly_min_trades < 1:
            raise ValueError(f"RiskLimits.kelly_min_trades must be >= 1, got {self.kelly_min_trades!r}")
        if self.confidence_scaling not in CONFIDENCE_SCALINGS:
            raise ValueError(
                f"RiskLimits.confidence_scaling must be one of {sorted(CONFIDENCE_SCALINGS)}, "
                f"got {self.confidence_scaling!r}"
            )
        if self.halt_multiple is not None and not (math.isfinite(self.halt_multiple) and self.halt_multiple >= 1.0):
            raise ValueError(f"RiskLimits.halt_multiple must be >= 1 (or None), got {self.halt_multiple!r}")
        if not (math.isfinite(self.pdt_equity_threshold) and self.pdt_equity_threshold >= 0):
            raise ValueError(f"RiskLimits.pdt_equity_threshold must be >= 0, got {self.pdt_equity_threshold!r}")
        if self.pdt_max_day_trades < 0:
            raise ValueError(f"RiskLimits.pdt_max_day_trades must be >= 0, got {self.pdt_max_day_trades!r}")

    @property
    def halt_daily_loss(self) -> float | None:
        return None if self.halt_multiple is None else self.halt_multiple * self.max_daily_loss

    @property
    def halt_weekly_drawdown(self) -> float | None:
        return None if self.halt_multiple is None else self.halt_multiple * self.max_weekly_drawdown

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def freeze_checks(checks: Mapping[Any, Any]) -> Mapping[str, Any]:
    """Read-only top-level mapping with plain ``str`` keys (rule names); values stay JSON-friendly dicts."""
    return frozen_map({str(key): value for key, value in checks.items()})


def normalise_bucket(sector: str | None) -> str:
    """Bucket name used for the sector cap: stripped, lower-case; empty/None -> ``"unknown"``."""
    if sector is None:
        return UNKNOWN_BUCKET
    name = sector.strip().lower()
    return name or UNKNOWN_BUCKET


@dataclass(frozen=True, slots=True)
class PositionView:
    """An open position as Risk sees it. ``market_value`` is signed (negative for a short)."""

    symbol: str
    quantity: float
    market_value: float
    sector: str


@dataclass(frozen=True, slots=True, eq=False)
class PortfolioView:
    """What Risk needs to know about the account, at the decision time (all values passed in; nothing is read).

    cash                    cash available for new orders (net of pending buy orders)
    equity                  cash + market value of positions
    positions               open positions by symbol
    equity_day_start        equity at the start of the current session (None: the daily-loss rule is not applicable)
    equity_week_high        max equity over the last 5 sessions including today (None: weekly rule not applicable)
    returns                 daily returns by symbol (a Series per symbol, each on its own sessions; a DataFrame with
                            a column per symbol reads the same), used for the correlation rule
    realized_trade_returns  outcomes of closed trades (R-multiples or percentages; only signs and ratios matter)
    daytrade_count          day trades in the last five sessions, as the broker reports them (None: not reported)
    pattern_day_trader      the broker's pattern-day-trader flag (None: not reported)

    Compared by identity (it holds pandas objects).
    """

    cash: float
    equity: float
    positions: Mapping[str, PositionView] = field(default_factory=frozen_map)
    equity_day_start: float | None = None
    equity_week_high: float | None = None
    returns: Mapping[str, pd.Series] | pd.DataFrame | None = None
    realized_trade_returns: Sequence[float] = ()
    daytrade_count: int | None = None
    pattern_day_trader: bool | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Candidate:
    """An entry candidate: the validated BUY signal plus the market facts Risk needs about its symbol.

    ``spread_pct`` is (ask - bid) / mid of the latest quote as a fraction. None or NaN: no quote exists (a backtest,
    or the quote source has none for the symbol): the spread rule is recorded as not applicable, with
    ``spread_note`` saying why. ``quote_error``: the quote source was asked and failed, or its quote is unusable
    (one-sided, crossed): the spread rule refuses the entry (it fails closed). ``quote`` (bid, ask, at) is recorded
    with the spread check.
    ``returns`` are the symbol's daily returns (same frequency and index type as the series of
    ``PortfolioView.returns``).
    ``submission_price``: the price a market buy sent now would pay (the live quote's ask; in a backtest the simulated
    broker's fill price, the next session's open), read by the gap guard; None: unknown, ``submission_source`` says
    why. Compared by identity (it holds a Series).
    """

    signal: ValidatedSignal
    atr: float
    avg_dollar_volume: float
    spread_pct: float | None
    sector: str
    returns: pd.Series | None = None
    spread_note: str = "no quote"
    quote_error: str | None = None
    quote: Mapping[str, Any] | None = None  # the quote behind spread_pct (bid, ask, at), recorded with the rule
    submission_price: float | None = None
    submission_source: str = "no price at submission"

    @property
    def symbol(self) -> str:
        return self.signal.signal.symbol

    @property
    def price(self) -> float:
        return float(self.signal.signal.price)


@dataclass(frozen=True, slots=True)
class SizingResult:
    """Outcome of :func:`core.risk.sizing.size_position`.

    quantity            0 when refused (then ``binding_rule`` names the rule that made it 0)
    risk_amount         money put at risk at the stop before rounding/clipping (equity x risk fraction x scale;
                        with a fixed quantity: that quantity x stop distance)
    stop_price          the strategy's stop, or entry price - stop_atr_multiple x ATR when it gives none (None when
                        neither is usable)
    stop_distance       entry price - stop_price
    stop_source         "strategy" or "atr" (which of the two the stop is)
    kelly_fraction_used fraction of equity Kelly allows (after the multiplier and shrinkage, before the cap by
                        ``risk_per_trade``); None when Kelly is disabled or the sample is too small
    risk_fraction       the fraction of equity actually used: min(risk_per_trade, kelly_fraction_used)
    confidence_scale    the confidence scaling factor applied
    binding_rule        the rule that set the final quantity ("risk" when no cap clipped it)
    notes               readable sentences, one per sizing step
    checks              per-rule numbers (JSON-friendly dicts), merged into ``Approval.checks``
    """

    quantity: float
    risk_amount: float
    stop_price: float | None
    stop_distance: float | None
    kelly_fraction_used: float | None
    notes: tuple[str, ...] = ()
    risk_fraction: float = 0.0
    confidence_scale: float = 0.0
    binding_rule: str = "risk"
    checks: Mapping[str, Any] = field(default_factory=frozen_map)
    stop_source: str = "atr"

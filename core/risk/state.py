"""The trading-state machine: ACTIVE -> REDUCING -> HALTED, driven by daily loss and weekly drawdown.

Transitions (``next_state``), evaluated once per iteration by the Risk agent before it looks at signals:

    HALTED   -> HALTED    always (sticky); only ``reset_state`` (a manual, operator action) leaves it
    any      -> HALTED    daily loss >= halt_daily_loss or weekly drawdown >= halt_weekly_drawdown
    ACTIVE   -> REDUCING  daily loss >= max_daily_loss or weekly drawdown >= max_weekly_drawdown
    REDUCING -> REDUCING  while either limit is still hit, and for the rest of the session even once back within
                          limits (no intraday flip-flopping around the threshold)
    REDUCING -> ACTIVE    on the first evaluation of a new session (``new_session=True``, passed in by the caller,
                          which owns the clock) when both limits are back within range
    ACTIVE   -> ACTIVE    otherwise

    daily loss      = (equity_day_start - equity) / equity_day_start   (not applicable without a positive start)
    weekly drawdown = (equity_week_high - equity) / equity_week_high   (not applicable without a positive high)
"""

from __future__ import annotations

from dataclasses import dataclass

from core.risk.models import PortfolioView, RiskLimits, TradingState


@dataclass(frozen=True, slots=True)
class LossMetrics:
    """Losses as positive fractions (a gain gives a negative number); None when not computable."""

    daily_loss: float | None
    weekly_drawdown: float | None


def _drop(reference: float | None, equity: float) -> float | None:
    if reference is None:
        return None
    reference = float(reference)
    if not reference > 0:  # also rejects NaN
        return None
    return (reference - float(equity)) / reference


def loss_metrics(portfolio: PortfolioView) -> LossMetrics:
    return LossMetrics(
        daily_loss=_drop(portfolio.equity_day_start, portfolio.equity),
        weekly_drawdown=_drop(portfolio.equity_week_high, portfolio.equity),
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _hit(value: float | None, limit: float | None) -> bool:
    return value is not None and limit is not None and value >= limit


def next_state(
    current: TradingState,
    portfolio: PortfolioView,
    limits: RiskLimits,
    *,
    new_session: bool = False,
) -> tuple[TradingState, str]:
    """The state for this iteration and a readable reason with the numbers (see module docstring)."""
    current = TradingState(current)
    if current is TradingState.HALTED:
        return TradingState.HALTED, "HALTED is sticky: trading stays halted until a manual reset_state()"

    m = loss_metrics(portfolio)
    figures = (
        f"daily loss {_pct(m.daily_loss)} (limit {limits.max_daily_loss:.2%}), "
        f"weekly drawdown {_pct(m.weekly_drawdown)} (limit {limits.max_weekly_drawdown:.2%})"
    )
    if _hit(m.daily_loss, limits.halt_daily_loss) or _hit(m.weekly_drawdown, limits.halt_weekly_drawdown):
        return TradingState.HALTED, (
            f"{current.value} -> halted: daily loss {_pct(m.daily_loss)} (halt at {_pct(limits.halt_daily_loss)}), "
            f"weekly drawdown {_pct(m.weekly_drawdown)} (halt at {_pct(limits.halt_weekly_drawdown)})"
        )
    breached = _hit(m.daily_loss, limits.max_daily_loss) or _hit(m.weekly_drawdown, limits.max_weekly_drawdown)
    if current is TradingState.ACTIVE:
        if breached:
            return TradingState.REDUCING, f"active -> reducing: {figures}"
        return TradingState.ACTIVE, f"active: within limits: {figures}"
    # REDUCING
    if breached:
        return TradingState.REDUCING, f"reducing: a loss limit is still hit: {figures}"
    if not new_session:
        return TradingState.REDUCING, f"reducing until a new session although back within limits: {figures}"
    return TradingState.ACTIVE, f"reducing -> active: new session and within limits: {figures}"


def reset_state(current: TradingState, *, reason: str) -> tuple[TradingState, str]:
    """Manual operator reset to ACTIVE (the only way out of HALTED). ``reason`` is required for the audit trail.

    The next ``next_state`` call re-applies the loss limits, so a reset while still beyond them goes straight back
    to REDUCING/HALTED."""
    if not reason or not reason.strip():
        raise ValueError("reset_state needs a non-empty reason (who reset and why)")
    return TradingState.ACTIVE, f"manual reset {TradingState(current).value} -> active: {reason.strip()}"

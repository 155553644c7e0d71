"""Position sizing: fixed-fractional risk at an ATR stop, scaled by confidence, optionally capped by fractional Kelly,
then clipped by the share, position, cash, gross-exposure and sector caps.

Formulas (all pure; see ``RiskLimits`` for the knobs)::

    stop_price    = the strategy's stop (signal.stop, from its own parameters), or, when it gives none,
                    price - stop_atr_multiple * ATR
    stop_distance = price - stop_price
    scale         = confidence scaling (RiskLimits.confidence_scaling; "linear" by default:
                    0.5 at min_confidence rising linearly to 1.0 at confidence 1.0)
    risk_fraction = risk_per_trade, or min(risk_per_trade, kelly) when Kelly applies
    risk_amount   = equity * risk_fraction * scale
    quantity      = floor(risk_amount / stop_distance)  (whole shares, or floored to fractional_step);
                    a fixed quantity (backtests' fixed-qty / fixed-fraction sizing) replaces it
    then          quantity = min(quantity, max_shares,
                                 floor((max_position_pct * equity - existing position value) / price),
                                 floor(cash / price),
                                 floor((max_gross_exposure * equity - gross) / price),
                                 floor((sector_cap * equity - bucket exposure) / price))

Kelly (``kelly_estimate``), from realised trade outcomes r_i (R-multiples or percentages)::

    p  = wins / (wins + losses)                      (scratch trades, r == 0, count in n but not in p)
    b  = mean(winning r) / mean(|losing r|)
    f* = p - (1 - p) / b                             (= p when there is no loss)
    kelly = max(0, f*) * kelly_fraction * n / (n + kelly_min_trades)     only when n >= kelly_min_trades

Below ``kelly_min_trades`` Kelly is not estimated and the fixed ``risk_per_trade`` applies (shrinking an empty sample
to zero risk would stop a fresh account from ever trading). Kelly can only lower the risk, never raise it above
``risk_per_trade``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypeGuard
from collections.abc import Sequence

from core.risk.exposure import exposure_by_bucket, gross_exposure, position_value
from core.risk.models import (
    Candidate,
    PortfolioView,
    RiskLimits,
    RiskRule,
    SizingResult,
    freeze_checks,
    normalise_bucket,
)


def confidence_scale(confidence: float, limits: RiskLimits) -> float:
    """Multiplier in [0, 1] applied to the risk amount (see ``RiskLimits.confidence_scaling``)."""
    if not math.isfinite(confidence):
        raise ValueError(f"confidence must be finite, got {confidence!r}")
    if limits.confidence_scaling == "none":
        return 1.0
    if limits.confidence_scaling == "proportional":
        return min(1.0, max(0.0, confidence))
    # linear: min_confidence_scale at min_confidence, 1.0 at confidence 1.0
    if limits.min_confidence >= 1.0:
        return 1.0 if confidence >= 1.0 else 0.0
    floor = limits.min_confidence_scale
    scale = floor + (1.0 - floor) * (confidence - limits.min_confidence) / (1.0 - limits.min_confidence)
    return min(1.0, max(0.0, scale))


@dataclass(frozen=True, slots=True)
class KellyEstimate:
    """Kelly statistics of the realised trades; ``fraction`` is None when Kelly is not applied."""

    applied: bool
    reason: str
    trades: int
    wins: int = 0
    losses: int = 0
    win_rate: float | None = None
    payoff: float | None = None
    full_kelly: float | None = None
    shrinkage: float | None = None
    fraction: float | None = None

    def as_check(self) -> dict[str, Any]:
        return {
            "status": "applied" if self.applied else "not_applicable",
            "reason": self.reason,
            "trades": self.trades,
            "wins": self.wins,
            "losses": self.losses,
            "win_rate": self.win_rate,
            "payoff": self.payoff,
            "full_kelly": self.full_kelly,
            "shrinkage": self.shrinkage,
            "fraction": self.fraction,
        }


def kelly_estimate(trade_returns: Sequence[float], limits: RiskLimits) -> KellyEstimate:
    """Fractional, sample-shrunk Kelly fraction of equity to risk (see module docstring)."""
    outcomes = [float(r) for r in trade_returns]
    bad = [r for r in outcomes if not math.isfinite(r)]
    if bad:
        raise ValueError(f"realized_trade_returns must be finite, got {len(bad)} non-finite value(s)")
    n = len(outcomes)
    if limits.kelly_fraction is None:
        return KellyEstimate(applied=False, reason="Kelly sizing disabled (kelly_fraction is None)", trades=n)
    if n < limits.kelly_min_trades:
        return KellyEstimate(
            applied=False,
            reason=f"{n} realised trades < kelly_min_trades {limits.kelly_min_trades}; fixed risk_per_trade used",
            trades=n,
        )
    wins = [r for r in outcomes if r > 0]
    losses = [-r for r in outcomes if r < 0]
    payoff: float | None
    if not wins and not losses:
        win_rate, payoff, full = None, None, 0.0
        why = "no winning or losing trade: no edge"
    elif not losses:
        win_rate, payoff, full = 1.0, None, 1.0
        why = "no losing trade: f* = p = 1"
    elif not wins:
        win_rate, payoff, full = 0.0, 0.0, -1.0
        why = "no winning trade: no edge"
    else:
        win_rate = len(wins) / (len(wins) + len(losses))
        payoff = (sum(wins) / len(wins)) / (sum(losses) / len(losses))
        full = win_rate - (1.0 - win_rate) / payoff
        why = f"f* = p - (1 - p) / b = {win_rate:.4f} - {1.0 - win_rate:.4f} / {payoff:.4f} = {full:.4f}"
    shrinkage = n / (n + limits.kelly_min_trades)
    fraction = max(0.0, full) * limits.kelly_fraction * shrinkage
    reason = f"{why}; x kelly_fraction {limits.kelly_fraction} x shrinkage {n}/({n}+{limits.kelly_min_trades}) = {fraction:.6f}"
    return KellyEstimate(
        applied=True,
        reason=reason,
        trades=n,
        wins=len(wins),
        losses=len(losses),
        win_rate=win_rate,
        payoff=payoff,
        full_kelly=full,
        shrinkage=shrinkage,
        fraction=fraction,
    )


def _quantize(k: int, limits: RiskLimits) -> float:
    if not limits.allow_fractional:
        return int(k)
    return round(k * limits.fractional_step, 12)


def max_units(budget: float, unit_cost: float, limits: RiskLimits) -> float:
    """Largest quantity q on the quantity grid (whole shares, or multiples of ``fractional_step``) with
    ``q * unit_cost <= budget`` in floating point. 0 when the budget is not positive."""
    if not (math.isfinite(unit_cost) and unit_cost > 0):
        raise ValueError(f"unit cost must be finite and > 0, got {unit_cost!r}")
    if math.isnan(budget) or budget <= 0:
        return 0
    if math.isinf(budget):
        raise ValueError("budget must be finite")
    step = 1.0 if not limits.allow_fractional else limits.fractional_step
    k = math.floor(budget / unit_cost / step)
    for _ in range(128):
        if k <= 0:
            return 0
        q = _quantize(k, limits)
        if q * unit_cost <= budget:
            return q
        k = min(k - 1, math.floor(k * (1.0 - 1e-12)))
    raise ArithmeticError(f"could not floor {budget!r} / {unit_cost!r} onto the quantity grid")  # pragma: no cover


def _fmt(q: float) -> str:
    return f"{q:g}" if isinstance(q, float) else str(q)


def _finite(value: float | None) -> TypeGuard[float]:
    return value is not None and math.isfinite(float(value))


def size_position(
    candidate: Candidate,
    portfolio: PortfolioView,
    limits: RiskLimits,
    *,
    quantity: float | None = None,
    mode: str = "risk",
) -> SizingResult:
    """Size a long entry for ``candidate``. Never raises for bad market data: a quantity of 0 comes back with
    ``binding_rule`` naming the rule (invalid_price, invalid_stop, invalid_atr, invalid_equity, no_cash, kelly,
    zero_quantity, max_shares, max_position_pct, gross_exposure, sector_cap).

    The stop is the strategy's own (``signal.stop``) when it gives one; otherwise ``stop_atr_multiple`` x ATR below
    the price. ``quantity``: a fixed quantity wanted instead of the risk-based one (``mode`` names the sizing, e.g.
    ``fixed-qty``); it is floored to the quantity grid and clipped by the same caps."""
    price = candidate.price
    atr = float(candidate.atr)
    equity = float(portfolio.equity)
    cash = float(portfolio.cash)
    checks: dict[str, Any] = {}
    notes: list[str] = []
    source = "atr"

    def refused(rule: RiskRule, note: str, **extra: Any) -> SizingResult:
        notes.append(note)
        return SizingResult(
            quantity=0,
            risk_amount=extra.get("risk_amount", 0.0),
            stop_price=extra.get("stop_price"),
            stop_distance=extra.get("stop_distance"),
            kelly_fraction_used=extra.get("kelly_used"),
            notes=tuple(notes),
            risk_fraction=extra.get("risk_fraction", 0.0),
            confidence_scale=extra.get("scale", 0.0),
            binding_rule=rule.value,
            checks=freeze_checks(checks),
            stop_source=source,
        )

    if not (math.isfinite(price) and price > 0):
        checks[RiskRule.INVALID_PRICE] = {"status": "fail", "price": price}
        return refused(RiskRule.INVALID_PRICE, f"price {price!r} is not a positive finite number")
    strategy_stop = candidate.signal.signal.stop
    if _finite(strategy_stop):
        source = "strategy"
        stop_price = float(strategy_stop)
        stop_distance = price - stop_price
        if not 0 < stop_price < price:
            checks[RiskRule.INVALID_STOP] = {"status": "fail", "stop_price": stop_price, "price": price}
            return refused(
                RiskRule.INVALID_STOP, f"strategy stop {stop_price:g} is not between 0 and the price {price:g}"
            )
        checks[RiskRule.INVALID_STOP] = {
            "status": "pass",
            "stop_source": source,
            "stop_price": stop_price,
            "stop_distance": stop_distance,
        }
    else:
        if not (math.isfinite(atr) and atr > 0):
            checks[RiskRule.INVALID_ATR] = {"status": "fail", "atr": atr}
            return refused(
                RiskRule.INVALID_ATR, f"ATR {atr!r} is not a positive finite number (the strategy gave no stop)"
            )
        stop_distance = limits.stop_atr_multiple * atr
        stop_price = price - stop_distance
        if stop_price <= 0:
            checks[RiskRule.INVALID_ATR] = {
                "status": "fail",
                "atr": atr,
                "stop_atr_multiple": limits.stop_atr_multiple,
                "stop_distance": stop_distance,
                "price": price,
            }
            return refused(
                RiskRule.INVALID_ATR,
                f"stop distance {limits.stop_atr_multiple} x ATR {atr:g} = {stop_distance:g} is not below price {price:g}",
                stop_distance=stop_distance,
            )
        checks[RiskRule.INVALID_STOP] = {
            "status": "pass",
            "stop_source": source,
            "stop_price": stop_price,
            "stop_distance": stop_distance,
            "atr": atr,
            "stop_atr_multiple": limits.stop_atr_multiple,
        }
    stop_text = (
        f"strategy stop {stop_price:g}" if source == "strategy" else f"stop {limits.stop_atr_multiple:g} x ATR {atr:g}"
    )
    stops = {"stop_price": stop_price, "stop_distance": stop_distance}

    if not (math.isfinite(equity) and equity > 0):
        checks[RiskRule.INVALID_EQUITY] = {"status": "fail", "equity": equity}
        return refused(RiskRule.INVALID_EQUITY, f"equity {equity!r} is not positive", **stops)
    if not (math.isfinite(cash) and cash > 0):
        checks[RiskRule.NO_CASH] = {"status": "fail", "cash": cash, "price": price}
        return refused(RiskRule.NO_CASH, f"no cash available ({cash:,.2f}) for a unit at price {price:g}", **stops)

    if quantity is not None:
        if not (math.isfinite(float(quantity)) and quantity > 0):
            raise ValueError(f"size_position: quantity must be a positive number, got {quantity!r}")
        raw = max_units(float(quantity), 1.0, limits)
        risk_amount = raw * stop_distance
        checks[RiskRule.KELLY] = {"status": "not_applicable", "reason": f"{mode} sizing"}
        kelly = None
        risk_fraction = risk_amount / equity
        scale = 1.0
        sizing = {
            "status": "pass",
            "mode": mode,
            "requested_quantity": quantity,
            "equity": equity,
            "risk_amount": risk_amount,
            "stop_source": source,
            "stop_distance": stop_distance,
            "risk_quantity": raw,
        }
        notes.append(f"{mode} sizing: {_fmt(raw)} wanted; {stop_text}: {risk_amount:,.2f} at risk")
    else:
        kelly = kelly_estimate(portfolio.realized_trade_returns, limits)
        checks[RiskRule.KELLY] = kelly.as_check()
        notes.append(f"Kelly: {kelly.reason}")
        risk_fraction = limits.risk_per_trade
        if kelly.applied:
            assert kelly.fraction is not None
            if kelly.fraction <= 0:
                checks[RiskRule.KELLY]["status"] = "fail"
                return refused(
                    RiskRule.KELLY,
                    f"Kelly finds no edge in {kelly.trades} realised trades ({kelly.wins} wins, {kelly.losses} losses, "
                    f"f* = {kelly.full_kelly:.4f}): risk fraction 0",
                    kelly_used=kelly.fraction,
                    **stops,
                )
            risk_fraction = min(limits.risk_per_trade, kelly.fraction)

        scale = confidence_scale(candidate.signal.confidence, limits)
        risk_amount = equity * risk_fraction * scale
        raw = max_units(risk_amount, stop_distance, limits)
        sizing = {
            "status": "pass",
            "mode": "risk",
            "equity": equity,
            "risk_per_trade": limits.risk_per_trade,
            "risk_fraction": risk_fraction,
            "confidence": candidate.signal.confidence,
            "confidence_scaling": limits.confidence_scaling,
            "confidence_scale": scale,
            "risk_amount": risk_amount,
            "stop_source": source,
            "stop_atr_multiple": limits.stop_atr_multiple,
            "atr": atr,
            "stop_distance": stop_distance,
            "risk_quantity": raw,
        }
        notes.append(
            f"risk {equity:,.2f} x {risk_fraction:.4%} x confidence scale {scale:.4f} = {risk_amount:,.2f}; "
            f"{stop_text}: distance {stop_distance:g}; quantity {_fmt(raw)}"
        )
    checks["sizing"] = sizing
    kelly_used = kelly.fraction if kelly is not None and kelly.applied else None
    common = dict(risk_amount=risk_amount, risk_fraction=risk_fraction, scale=scale, kelly_used=kelly_used, **stops)
    if raw <= 0:
        sizing["status"] = "fail"
        checks[RiskRule.ZERO_QUANTITY] = {"status": "fail", "risk_amount": risk_amount, "stop_distance": stop_distance}
        return refused(
            RiskRule.ZERO_QUANTITY,
            f"risk amount {risk_amount:,.2f} buys less than one unit at stop distance {stop_distance:g}",
            **common,
        )

    bucket = normalise_bucket(candidate.sector)
    existing = position_value(portfolio, candidate.symbol) if limits.allow_pyramiding else 0.0
    gross = gross_exposure(portfolio)
    bucket_value = exposure_by_bucket(portfolio).get(bucket, 0.0)
    pos_limit = limits.max_position_pct * equity
    gross_limit = limits.max_gross_exposure * equity
    sector_limit = limits.sector_cap * equity
    caps: list[tuple[RiskRule, float, dict[str, Any], str]] = [
        (
            RiskRule.MAX_SHARES,
            max_units(float(limits.max_shares), 1.0, limits),
            {"max_shares": limits.max_shares},
            f"max_shares {limits.max_shares:g}",
        ),
        (
            RiskRule.MAX_POSITION_PCT,
            max_units(pos_limit - existing, price, limits),
            {
                "max_position_pct": limits.max_position_pct,
                "equity": equity,
                "existing_value": existing,
                "limit_value": pos_limit,
                "price": price,
            },
            f"position cap {limits.max_position_pct:.2%} x equity {equity:,.2f} = {pos_limit:,.2f}"
            f" (already held {existing:,.2f})",
        ),
        (
            RiskRule.NO_CASH,
            max_units(cash, price, limits),
            {"cash": cash, "price": price},
            f"available cash {cash:,.2f}",
        ),
        (
            RiskRule.GROSS_EXPOSURE,
            max_units(gross_limit - gross, price, limits),
            {
                "max_gross_exposure": limits.max_gross_exposure,
                "equity": equity,
                "gross_exposure": gross,
                "limit_value": gross_limit,
                "price": price,
            },
            f"gross exposure {gross:,.2f} of a {limits.max_gross_exposure:.2%} x equity {equity:,.2f}"
            f" = {gross_limit:,.2f} cap",
        ),
        (
            RiskRule.SECTOR_CAP,
            max_units(sector_limit - bucket_value, price, limits),
            {
                "sector": bucket,
                "sector_cap": limits.sector_cap,
                "equity": equity,
                "bucket_exposure": bucket_value,
                "limit_value": sector_limit,
                "price": price,
            },
            f"sector {bucket!r} exposure {bucket_value:,.2f} of a {limits.sector_cap:.2%} x equity {equity:,.2f}"
            f" = {sector_limit:,.2f} cap",
        ),
    ]
    quantity = raw
    binding = "risk" if mode == "risk" else mode
    for rule, cap_quantity, values, limit_text in caps:
        before = quantity
        clipped = cap_quantity < quantity
        if clipped:
            quantity = cap_quantity
            binding = rule.value
        checks[rule] = {
            "status": "fail" if quantity <= 0 else ("clipped" if clipped else "pass"),
            **values,
            "max_quantity": cap_quantity,
            "quantity_before": before,
            "quantity_after": quantity,
        }
        if clipped:
            notes.append(f"{rule.value} clipped quantity {_fmt(before)} -> {_fmt(quantity)} ({limit_text})")
        if quantity <= 0:
            return refused(rule, f"{limit_text} leaves no room for one unit at price {price:g}", **common)

    notes.append(f"final quantity {_fmt(quantity)} (binding: {binding})")
    return SizingResult(
        quantity=quantity,
        risk_amount=risk_amount,
        stop_price=stop_price,
        stop_distance=stop_distance,
        kelly_fraction_used=kelly_used,
        notes=tuple(notes),
        risk_fraction=risk_fraction,
        confidence_scale=scale,
        binding_rule=binding,
        checks=freeze_checks(checks),
        stop_source=source,
    )

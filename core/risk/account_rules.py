"""The account's rules, checked on an approved entry after sizing: the pattern-day-trader guard and the overnight-gap
guard. Pure: every input is passed in. Exits are never checked here: a position can always be closed, and a
same-session stop keeps protecting it even when closing it makes a day trade.

Pattern-day-trader guard (``RiskLimits.pdt_guard``, rule ``pdt_guard``)
    FINRA's pattern-day-trader rule: a margin account under $25,000 of equity that makes a fourth day trade within five
    sessions is flagged and may no longer day trade. An entry carrying stop/target legs (a bracket) can be closed by
    them in the session it fills, so it is a potential day trade. With equity below ``pdt_equity_threshold`` and the
    broker's ``daytrade_count`` (last five sessions, today's included) already at ``pdt_max_day_trades`` (3), or the
    account already flagged, such an entry is refused. Equity at or above the threshold, or an entry without legs,
    passes. A broker that reports no count (None) makes the rule not applicable (recorded with the reason).

Overnight-gap guard (``RiskLimits.gap_guard``, rule ``gap_guard``)
    An entry is decided on the last completed session's bars and sent later (the daemon runs after the next open; a
    backtest's order fills at the next open). At the price at submission (``Candidate.submission_price``: the live
    quote's ask, in a backtest the simulated broker's fill price at the next open):

    * at or below the entry's stop, or at or above its target: refused (the trade it was decided for is gone);
    * risk (price at submission - stop) x quantity above the per-trade limit ``risk_per_trade`` x equity (in REDUCING
      the reduced limit; never below the risk the entry was approved with): the quantity is cut to the largest one
      within the limit, or the entry refused when that is 0;
    * no price at submission: not applicable (recorded with the reason).
"""

from __future__ import annotations

import math
from dataclasses import replace
from decimal import Decimal
from typing import Any
from collections.abc import Mapping

from core.kernel.domain import Approval, Denial, OrderIntent, OrderType, frozen_map
from core.risk.models import Candidate, PortfolioView, RiskLimits, RiskRule, TradingState, freeze_checks
from core.risk.sizing import max_units

_EPSILON = 1e-9


def potential_day_trade(intent: OrderIntent) -> bool:
    """An entry that may be closed in the session it fills: it carries a stop-loss or take-profit working from its
    fill (a bracket)."""
    return intent.order_type is OrderType.BRACKET and (intent.stop_loss is not None or intent.take_profit is not None)


def pdt_check(intent: OrderIntent, portfolio: PortfolioView, limits: RiskLimits) -> tuple[str, str, dict[str, Any]]:
    """The pattern-day-trader guard for one entry: ``(status, sentence, values)`` with status ``pass``, ``fail`` or
    ``not_applicable``."""
    equity = float(portfolio.equity)
    count = portfolio.daytrade_count
    flagged = bool(portfolio.pattern_day_trader)
    values: dict[str, Any] = {
        "equity": equity,
        "equity_threshold": limits.pdt_equity_threshold,
        "daytrade_count": count,
        "max_day_trades": limits.pdt_max_day_trades,
        "pattern_day_trader": portfolio.pattern_day_trader,
        "potential_day_trade": potential_day_trade(intent),
    }
    if not limits.pdt_guard:
        return "not_applicable", "the pattern-day-trader guard is off (PDT_GUARD=false)", values
    if count is None and portfolio.pattern_day_trader is None:
        return "not_applicable", "the broker reports no day-trade count", values
    if equity >= limits.pdt_equity_threshold:
        return (
            "pass",
            f"equity {equity:,.2f} is at or above {limits.pdt_equity_threshold:,.0f}: day trades allowed",
            values,
        )
    if not potential_day_trade(intent):
        return "pass", "the entry carries no leg that could close it in the same session", values
    if flagged:
        return (
            "fail",
            f"the account is flagged as a pattern day trader with equity {equity:,.2f} below "
            f"{limits.pdt_equity_threshold:,.0f}: an entry whose stop/target could close it today would be a day "
            "trade",
            values,
        )
    if count is not None and count >= limits.pdt_max_day_trades:
        return (
            "fail",
            f"{count} day trades in the last 5 sessions and equity {equity:,.2f} below "
            f"{limits.pdt_equity_threshold:,.0f}: an entry whose stop/target could close it today could be day trade "
            f"number {count + 1}, which flags the account as a pattern day trader",
            values,
        )
    return "pass", f"{count} day trades in the last 5 sessions (at most {limits.pdt_max_day_trades})", values


def gap_check(
    intent: OrderIntent, candidate: Candidate, portfolio: PortfolioView, limits: RiskLimits, state: TradingState
) -> tuple[str, str, dict[str, Any], float]:
    """The overnight-gap guard for one entry: ``(status, sentence, values, quantity)`` with status ``pass``,
    ``clipped`` (resized to ``quantity``), ``fail`` or ``not_applicable``."""
    quantity = float(intent.quantity)
    price = candidate.submission_price
    stop, target = intent.stop_loss, intent.take_profit
    values: dict[str, Any] = {
        "decided_price": float(intent.reference_price),
        "submission_price": price,
        "submission_source": candidate.submission_source,
        "stop": stop,
        "target": target,
        "quantity": quantity,
    }
    if not limits.gap_guard:
        return "not_applicable", "the overnight-gap guard is off (GAP_GUARD=false)", values, quantity
    if price is None or not (math.isfinite(price) and price > 0):
        return "not_applicable", candidate.submission_source, values, quantity
    if stop is not None and price <= stop:
        return (
            "fail",
            f"the price at submission {price:g} ({candidate.submission_source}) is already at or through the stop "
            f"{stop:g} (decided at {intent.reference_price:g})",
            values,
            quantity,
        )
    if target is not None and price >= target:
        return (
            "fail",
            f"the price at submission {price:g} ({candidate.submission_source}) is already at or beyond the target "
            f"{target:g} (decided at {intent.reference_price:g})",
            values,
            quantity,
        )
    if stop is None:
        return "pass", "no stop: the risk at submission is not measured", values, quantity
    equity = float(portfolio.equity)
    reducing = TradingState(state) is TradingState.REDUCING and limits.reducing_size < 1.0
    per_trade = limits.risk_per_trade * limits.reducing_size if reducing else limits.risk_per_trade
    decided_risk = max(0.0, (float(intent.reference_price) - stop) * quantity)
    allowed = max(equity * per_trade, decided_risk)
    risk = (price - stop) * quantity
    values.update(risk=risk, decided_risk=decided_risk, risk_limit=allowed, risk_per_trade=per_trade, equity=equity)
    if risk <= allowed * (1 + _EPSILON):
        return "pass", f"risk at submission {risk:,.2f} within the limit {allowed:,.2f}", values, quantity
    resized = float(max_units(allowed, price - stop, limits))
    values["resized_quantity"] = resized
    if resized <= 0:
        return (
            "fail",
            f"risk at submission ({price:g} - {stop:g}) x {quantity:g} = {risk:,.2f} is above the per-trade limit "
            f"{allowed:,.2f}, and not one share fits within it",
            values,
            quantity,
        )
    return (
        "clipped",
        f"risk at submission ({price:g} - {stop:g}) x {quantity:g} = {risk:,.2f} is above the per-trade limit "
        f"{allowed:,.2f}: resized to {resized:g}",
        values,
        resized,
    )


def apply_account_rules(
    approval: Approval, candidate: Candidate, portfolio: PortfolioView, limits: RiskLimits, state: TradingState
) -> Approval | Denial:
    """The approved entry after the account rules: unchanged (their checks added), resized by the gap guard, or
    refused by either (a ``Denial`` naming ``pdt_guard`` or ``gap_guard`` with its numbers)."""
    intent = approval.intent
    symbol = intent.symbol
    checks = dict(approval.checks)
    status, sentence, values = pdt_check(intent, portfolio, limits)
    if status == "fail":
        return Denial(symbol, RiskRule.PDT_GUARD.value, f"{RiskRule.PDT_GUARD}: {sentence}", frozen_map(values))
    checks[RiskRule.PDT_GUARD.value] = {"status": status, "reason": sentence, **values}
    status, sentence, values, quantity = gap_check(intent, candidate, portfolio, limits, state)
    if status == "fail":
        return Denial(symbol, RiskRule.GAP_GUARD.value, f"{RiskRule.GAP_GUARD}: {sentence}", frozen_map(values))
    checks[RiskRule.GAP_GUARD.value] = {"status": status, "reason": sentence, **values}
    if status != "clipped":
        return replace(approval, checks=freeze_checks(checks))
    if isinstance(intent.quantity, int) or quantity.is_integer():
        quantity = int(quantity)
    reason = f"BUY {quantity:g} {symbol} ({RiskRule.GAP_GUARD}: {sentence}); decided as: {approval.reason}"
    resized = replace(intent, quantity=quantity, reason=reason)
    return Approval(intent=resized, reason=reason, checks=freeze_checks(checks))


def submission_fields(spread_fields: Mapping[str, Any], market_buy_price: Decimal | float | None) -> dict[str, Any]:
    """A candidate's ``submission_price`` / ``submission_source``: the ask of its usable live quote (``spread_fields``
    as the Risk agent gives the Candidate: a ``quote`` without ``quote_error``), else ``market_buy_price`` (the
    simulated broker's fill price for a market buy sent now: a backtest's next open), else None with why."""
    quote = spread_fields.get("quote")
    if quote is not None and spread_fields.get("quote_error") is None:
        return {
            "submission_price": float(quote["ask"]),
            "submission_source": f"the latest quote's ask at {quote['at']}",
        }
    if market_buy_price is not None:
        return {
            "submission_price": float(market_buy_price),
            "submission_source": "the simulated broker's fill price for a market buy sent now (the next open)",
        }
    reason = spread_fields.get("quote_error") or spread_fields.get("spread_note") or "no quote"
    return {"submission_price": None, "submission_source": f"no price at submission: {reason}"}

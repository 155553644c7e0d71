"""The entry decision of one candidate under a sizing mode, with the limits on or off. Pure: every input is passed in.

Sizing modes (backtests may swap the sizing): ``risk`` (the risk-based size of :func:`size_position`),
``fixed-qty:N`` (N shares) and ``fixed-fraction:F`` (F of equity at the price); a fixed quantity is still clipped by
``max_shares`` and the position, cash, gross and sector caps, and is cut to ``reducing_size`` while REDUCING.

Limits off (``enforce=False``): the position rules still apply (no second buy while long), then the sizing alone
(the wanted quantity clipped to the affordable one), with the strategy's stop and target (:func:`entry_intent`).
"""

from __future__ import annotations

import math

from core.kernel.domain import Approval, Denial, OrderIntent, OrderType, Side, frozen_map
from core.risk.models import Candidate, PortfolioView, RiskLimits, RiskRule, TradingState
from core.risk.rules import evaluate_entry, position_rules
from core.risk.sizing import size_position

Sizing = tuple[str, float | None]  # (mode, value) of parse_sizing


def parse_sizing(text: str) -> Sizing:
    """``risk`` | ``fixed-qty:N`` | ``fixed-fraction:F`` -> (mode, value); raises ValueError naming the problem."""
    if text == "risk":
        return "risk", None
    mode, _, raw = text.partition(":")
    if mode not in ("fixed-qty", "fixed-fraction") or not raw:
        raise ValueError(f"sizing must be 'risk', 'fixed-qty:N' or 'fixed-fraction:F', got {text!r}")
    value = float(raw)
    if mode == "fixed-qty" and (value < 1 or value != int(value)):
        raise ValueError(f"fixed-qty needs a positive whole number of shares, got {raw!r}")
    if mode == "fixed-fraction" and not 0 < value <= 1:
        raise ValueError(f"fixed-fraction needs a fraction of equity in (0, 1], got {raw!r}")
    return mode, value


def wanted_quantity(
    sizing: Sizing,
    candidate: Candidate,
    portfolio: PortfolioView,
    limits: RiskLimits,
    state: TradingState,
    *,
    enforce: bool = True,
) -> int | None:
    """The quantity of the fixed sizing modes (None for risk sizing); REDUCING (limits on) cuts it to
    ``reducing_size``."""
    mode, value = sizing
    if mode == "risk":
        return None
    assert value is not None
    if mode == "fixed-qty":
        wanted = int(value)
    else:
        wanted = int(math.floor(value * portfolio.equity / candidate.price)) if candidate.price > 0 else 0
    if enforce and state is TradingState.REDUCING:  # REDUCING: entries at reducing_size
        wanted = int(math.floor(wanted * limits.reducing_size))
    return wanted


def entry_intent(candidate: Candidate, quantity: int, reason: str, limits: RiskLimits) -> OrderIntent:
    """A limits-off entry: the strategy's stop (else ``stop_atr_multiple`` x ATR) and target, no gate."""
    signal = candidate.signal.signal
    if signal.stop is not None and math.isfinite(signal.stop) and 0 < signal.stop < candidate.price:
        stop: float | None = signal.stop
    elif math.isfinite(candidate.atr) and candidate.atr > 0:
        stop = candidate.price - limits.stop_atr_multiple * candidate.atr
    else:
        stop = None
    target = signal.target if signal.target is not None and signal.target > candidate.price else None
    return OrderIntent(
        symbol=signal.symbol,
        side=Side.BUY,
        quantity=quantity,
        order_type=OrderType.BRACKET if stop is not None and target is not None else OrderType.MARKET,
        reference_price=candidate.price,
        strategy=signal.strategy,
        confidence=candidate.signal.confidence,
        reason=reason,
        stop_loss=stop,
        take_profit=target,
    )


def decide_entry(
    candidate: Candidate,
    portfolio: PortfolioView,
    limits: RiskLimits,
    state: TradingState,
    sizing: Sizing,
    *,
    enforce: bool = True,
) -> Approval | Denial:
    """Approve or deny one entry candidate under ``sizing``: every rule (:func:`evaluate_entry`) with the limits
    on, the position rules and the sizing alone with them off."""
    symbol = candidate.signal.signal.symbol
    mode = sizing[0]
    wanted = wanted_quantity(sizing, candidate, portfolio, limits, state, enforce=enforce)
    if enforce:
        if wanted is not None and wanted <= 0:
            return Denial(
                symbol,
                RiskRule.ZERO_QUANTITY.value,
                f"zero_quantity: {mode} sizing wants 0 shares of {symbol}",
                {"equity": portfolio.equity, "price": candidate.price},
            )
        return evaluate_entry(candidate, portfolio, limits, state, quantity=wanted, sizing_mode=mode)
    # limits off: the position rules still apply (no second buy while long), then the sizing alone
    refused = position_rules(candidate, portfolio, limits)
    if refused is not None:
        return refused
    if wanted is None:
        sized = size_position(candidate, portfolio, limits)
        quantity = int(sized.quantity)
        if quantity <= 0:
            return Denial(
                symbol,
                sized.binding_rule or "zero_quantity",
                "; ".join(sized.notes) or "sized to 0 shares",
                dict(sized.checks),
            )
        return Approval(
            entry_intent(candidate, quantity, f"risk sizing (limits off): {quantity} shares", limits),
            "limits off",
            frozen_map(dict(sized.checks)),
        )
    affordable = int(math.floor(portfolio.cash / candidate.price)) if candidate.price > 0 else 0
    quantity = max(0, min(wanted, affordable))
    if quantity <= 0:
        return Denial(symbol, "no_cash", f"no_cash: {mode} sizing leaves 0 affordable shares", {"cash": portfolio.cash})
    return Approval(
        entry_intent(candidate, quantity, f"{mode} sizing (limits off): {quantity} shares", limits), "limits off"
    )

"""Entry and exit decisions: every rule evaluated in a fixed order; the first refusal becomes a ``Denial`` naming the
rule with its numbers; an approval carries every rule's numbers in ``Approval.checks`` (JSON-friendly dicts keyed by
rule name, each with a ``status`` of "pass", "clipped", "applied" or "not_applicable").

Entry order: not_an_entry, state, min_confidence, invalid_equity, daily_loss, weekly_drawdown, already_long,
invalid_price, invalid_atr (only when the strategy gives no stop), liquidity, spread (not applicable without a
quote; refused when the quote source failed), reward_risk (the strategy's target against the stop the entry
carries), correlation, then sizing (invalid_stop / invalid_atr, no_cash when cash <= 0, kelly, zero_quantity, then
the clipping caps max_shares, max_position_pct, no_cash (cash / price), gross_exposure, sector_cap; see
``core.risk.sizing``), then the account rules pdt_guard and gap_guard (which may resize the entry; see
``core.risk.account_rules``). ``checks`` also holds "sizing" (the risk arithmetic) and "sizing_notes" (readable
sizing steps and the binding rule).

The stop of an entry is the strategy's own (``Signal.stop``, from its parameters); ``stop_atr_multiple`` x ATR only
when the strategy gives none. Reward:risk is judged on that stop and the strategy's target.

Position rules (``position_rules``: a BUY, a valid price, no second buy while long) are not limits: they stay on when
a backtest switches the limits off.

Batches: evaluate the candidates of one iteration one after another, passing the view returned by
``apply_approval`` to the next, so that cash, the exposure caps and the correlation limit hold for the batch, not
only per order.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from core.kernel.domain import (
    Action,
    Approval,
    Denial,
    OrderIntent,
    OrderType,
    Position,
    Side,
    Signal,
    ValidatedSignal,
    frozen_map,
)
from core.errors import TraderError
from core.risk.models import (
    Candidate,
    PortfolioView,
    PositionView,
    RiskLimits,
    RiskRule,
    TradingState,
    freeze_checks,
)
from core.risk.account_rules import apply_account_rules
from core.risk.sizing import _finite, size_position
from core.risk.state import loss_metrics


class _Refused(TraderError):
    """Internal control flow: carries the Denial out of the rule sequence (never escapes this module)."""

    def __init__(self, denial: Denial) -> None:
        super().__init__(denial.reason)
        self.denial = denial


class _Checks:
    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.items: dict[str, dict[str, Any]] = {}

    def ok(self, rule: RiskRule | str, status: str = "pass", /, **values: Any) -> None:
        self.items[str(rule)] = {"status": status, **values}

    def na(self, rule: RiskRule | str, why: str, /, **values: Any) -> None:
        self.items[str(rule)] = {"status": "not_applicable", "reason": why, **values}

    def refuse(self, rule: RiskRule | str, sentence: str, /, **values: Any) -> None:
        self.items[str(rule)] = {"status": "fail", **values}
        raise _Refused(
            Denial(symbol=self.symbol, rule=str(rule), reason=f"{rule}: {sentence}", values=frozen_map(values))
        )


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two complete (NaN-free) float arrays of one length, by the arithmetic of pandas'
    ``Series.corr`` (centred, each scaled by its largest magnitude, dot products over n - 1, clipped to [-1, 1]):
    the same operations in the same order, so the same float; NaN when undefined (fewer than 2 values, a constant
    series). A test checks it against ``Series.corr``."""
    if len(a) < 2:
        return math.nan
    a = a - a.mean()
    b = b - b.mean()
    a_scale = np.max(np.abs(a))
    b_scale = np.max(np.abs(b))
    if a_scale == 0 or b_scale == 0:
        return math.nan
    a = a / a_scale
    b = b / b_scale
    fact = len(a) - 1
    divisor = np.sqrt(np.dot(a, a) / fact)
    if divisor == 0:
        return math.nan
    result = np.dot(a, b) / fact / divisor
    divisor = np.sqrt(np.dot(b, b) / fact)
    if divisor == 0:
        return math.nan
    return float(np.clip(result / divisor, -1.0, 1.0))


def _overlap(own: pd.Series, held: pd.Series, lookback: int) -> tuple[np.ndarray, np.ndarray]:
    """The two series' values on the sessions both have, NaN rows dropped, the last ``lookback`` rows (the inner
    join of the two indexes, in order). Series on one index (the usual case: the same sessions) are read as arrays;
    others are joined by pandas."""
    if own.index.equals(held.index):
        a, b = own.to_numpy(dtype=float), held.to_numpy(dtype=float)
        complete = ~(np.isnan(a) | np.isnan(b))
        if not complete.all():
            a, b = a[complete], b[complete]
        return a[-lookback:], b[-lookback:]
    joined = (
        pd.concat([own.astype(float).rename("candidate"), held.astype(float).rename("held")], axis=1, join="inner")
        .dropna()
        .tail(lookback)
    )
    return joined["candidate"].to_numpy(dtype=float), joined["held"].to_numpy(dtype=float)


def _correlations(candidate: Candidate, portfolio: PortfolioView, limits: RiskLimits) -> dict[str, dict[str, Any]]:
    """|correlation| of the candidate's daily returns with each open position's, over the last
    ``correlation_lookback`` overlapping observations (pairs with fewer than ``correlation_min_periods`` are n/a)."""
    pairs: dict[str, dict[str, Any]] = {}
    frame = portfolio.returns
    own = candidate.returns
    for symbol in sorted(portfolio.positions):
        if symbol == candidate.symbol or portfolio.positions[symbol].quantity == 0:
            continue
        if own is None or frame is None or symbol not in frame:
            pairs[symbol] = {"status": "not_applicable", "reason": "no returns series"}
            continue
        mine, held = _overlap(own, frame[symbol], limits.correlation_lookback)
        observations = len(mine)
        if observations < limits.correlation_min_periods:
            pairs[symbol] = {
                "status": "not_applicable",
                "reason": "too few overlapping returns",
                "observations": observations,
            }
            continue
        corr = _pearson(mine, held)
        if not math.isfinite(corr):
            pairs[symbol] = {
                "status": "not_applicable",
                "reason": "correlation undefined (constant returns)",
                "observations": observations,
            }
            continue
        status = "fail" if abs(corr) > limits.max_correlation else "pass"
        pairs[symbol] = {"status": status, "correlation": corr, "observations": observations}
    return pairs


def evaluate_entry(
    candidate: Candidate,
    portfolio: PortfolioView,
    limits: RiskLimits,
    state: TradingState,
    *,
    quantity: float | None = None,
    sizing_mode: str = "risk",
) -> Approval | Denial:
    """Approve (with a sized ``OrderIntent``) or deny a long entry. Pure: every input is passed in.

    ``quantity``: a fixed quantity wanted instead of risk sizing (``sizing_mode`` names it, e.g. ``fixed-qty``); it
    passes every rule and is clipped by the same caps (max_shares, position, cash, gross, sector)."""
    signal = candidate.signal.signal
    symbol = signal.symbol
    price = float(signal.price)
    confidence = float(candidate.signal.confidence)
    checks = _Checks(symbol)
    try:
        if signal.action is not Action.BUY:
            checks.refuse(
                RiskRule.NOT_AN_ENTRY,
                f"signal action is {signal.action.value}, entries are BUY signals",
                action=signal.action.value,
            )
        checks.ok(RiskRule.NOT_AN_ENTRY, action=signal.action.value)

        state = TradingState(state)
        if state not in (TradingState.ACTIVE, TradingState.REDUCING):
            checks.refuse(
                RiskRule.STATE, f"trading state is {state.value}; entries need active or reducing", state=state.value
            )
        checks.ok(RiskRule.STATE, state=state.value, size=1.0 if state is TradingState.ACTIVE else limits.reducing_size)

        if confidence < limits.min_confidence:
            checks.refuse(
                RiskRule.MIN_CONFIDENCE,
                f"confidence {confidence:.4f} is below the minimum {limits.min_confidence:.4f}",
                confidence=confidence,
                min_confidence=limits.min_confidence,
            )
        checks.ok(RiskRule.MIN_CONFIDENCE, confidence=confidence, min_confidence=limits.min_confidence)

        equity = float(portfolio.equity)
        if not (math.isfinite(equity) and equity > 0):
            checks.refuse(RiskRule.INVALID_EQUITY, f"equity {equity!r} is not positive", equity=equity)
        checks.ok(RiskRule.INVALID_EQUITY, equity=equity)

        metrics = loss_metrics(portfolio)
        if metrics.daily_loss is None:
            checks.na(RiskRule.DAILY_LOSS, "no equity at the start of the day", equity=equity)
        elif metrics.daily_loss >= limits.max_daily_loss:
            checks.refuse(
                RiskRule.DAILY_LOSS,
                f"equity {equity:,.2f} is {metrics.daily_loss:.2%} below the day start "
                f"{float(portfolio.equity_day_start or 0):,.2f} (limit {limits.max_daily_loss:.2%})",
                equity=equity,
                equity_day_start=float(portfolio.equity_day_start or 0),
                daily_loss=metrics.daily_loss,
                max_daily_loss=limits.max_daily_loss,
            )
        else:
            checks.ok(
                RiskRule.DAILY_LOSS,
                equity=equity,
                equity_day_start=float(portfolio.equity_day_start or 0),
                daily_loss=metrics.daily_loss,
                max_daily_loss=limits.max_daily_loss,
            )

        if metrics.weekly_drawdown is None:
            checks.na(RiskRule.WEEKLY_DRAWDOWN, "no 5-session equity high", equity=equity)
        elif metrics.weekly_drawdown >= limits.max_weekly_drawdown:
            checks.refuse(
                RiskRule.WEEKLY_DRAWDOWN,
                f"equity {equity:,.2f} is {metrics.weekly_drawdown:.2%} below the 5-session high "
                f"{float(portfolio.equity_week_high or 0):,.2f} (limit {limits.max_weekly_drawdown:.2%})",
                equity=equity,
                equity_week_high=float(portfolio.equity_week_high or 0),
                weekly_drawdown=metrics.weekly_drawdown,
                max_weekly_drawdown=limits.max_weekly_drawdown,
            )
        else:
            checks.ok(
                RiskRule.WEEKLY_DRAWDOWN,
                equity=equity,
                equity_week_high=float(portfolio.equity_week_high or 0),
                weekly_drawdown=metrics.weekly_drawdown,
                max_weekly_drawdown=limits.max_weekly_drawdown,
            )

        _already_long(checks, candidate, portfolio, limits)
        _valid_price(checks, price)

        atr = float(candidate.atr)
        if not _finite(signal.stop):  # the fallback stop needs the ATR; the stop-below-zero case is refused by sizing
            if not (math.isfinite(atr) and atr > 0):
                checks.refuse(
                    RiskRule.INVALID_ATR,
                    f"ATR {atr!r} is not a positive finite number (the strategy gave no stop)",
                    atr=atr,
                )
        else:
            checks.ok(RiskRule.INVALID_ATR, "not_applicable", reason="the strategy gives its own stop", atr=atr)

        adv = float(candidate.avg_dollar_volume)
        if not math.isfinite(adv) or adv < limits.min_avg_dollar_volume:
            checks.refuse(
                RiskRule.LIQUIDITY,
                f"average dollar volume {adv:,.0f} is below the minimum {limits.min_avg_dollar_volume:,.0f}",
                avg_dollar_volume=adv,
                min_avg_dollar_volume=limits.min_avg_dollar_volume,
            )
        checks.ok(RiskRule.LIQUIDITY, avg_dollar_volume=adv, min_avg_dollar_volume=limits.min_avg_dollar_volume)

        spread = float(candidate.spread_pct) if _finite(candidate.spread_pct) else None
        quote = {"quote": dict(candidate.quote)} if candidate.quote is not None else {}
        if candidate.quote_error is not None:
            checks.refuse(
                RiskRule.SPREAD,
                f"no usable quote to judge the spread: {candidate.quote_error}",
                quote_error=candidate.quote_error,
                max_spread_pct=limits.max_spread_pct,
                **quote,
            )
        if spread is None:
            checks.na(RiskRule.SPREAD, candidate.spread_note, max_spread_pct=limits.max_spread_pct)
        elif spread > limits.max_spread_pct:
            checks.refuse(
                RiskRule.SPREAD,
                f"spread {spread:.4%} is wider than the maximum {limits.max_spread_pct:.4%}",
                spread_pct=spread,
                max_spread_pct=limits.max_spread_pct,
                **quote,
            )
        else:
            checks.ok(RiskRule.SPREAD, spread_pct=spread, max_spread_pct=limits.max_spread_pct, **quote)

        take_profit = _reward_risk(checks, signal, price, _stop_used(candidate, limits), limits)

        pairs = _correlations(candidate, portfolio, limits)
        failing = {s: v for s, v in pairs.items() if v["status"] == "fail"}
        if failing:
            worst = max(failing, key=lambda s: abs(failing[s]["correlation"]))
            corr = failing[worst]["correlation"]
            checks.refuse(
                RiskRule.CORRELATION,
                f"|correlation| of {symbol} with {worst} (held or approved earlier this iteration) is {abs(corr):.4f} over "
                f"{failing[worst]['observations']} daily returns (maximum {limits.max_correlation:.4f})",
                held_symbol=worst,
                correlation=corr,
                observations=failing[worst]["observations"],
                max_correlation=limits.max_correlation,
                lookback=limits.correlation_lookback,
            )
        if not pairs:
            checks.na(RiskRule.CORRELATION, "no other open position", max_correlation=limits.max_correlation)
        else:
            checks.ok(
                RiskRule.CORRELATION,
                max_correlation=limits.max_correlation,
                lookback=limits.correlation_lookback,
                pairs=pairs,
            )

        sizing = size_position(candidate, portfolio, reduced_limits(limits, state), quantity=quantity, mode=sizing_mode)
        checks.items.update(sizing.checks)
        if sizing.quantity <= 0:
            rule = sizing.binding_rule
            values = {k: v for k, v in sizing.checks.get(rule, {}).items() if k != "status"}
            checks.refuse(rule, sizing.notes[-1] if sizing.notes else "quantity 0", **values)
    except _Refused as refused:
        return refused.denial

    assert sizing.stop_price is not None
    order_type = OrderType.BRACKET if take_profit is not None else OrderType.MARKET
    quantity = sizing.quantity
    stop_how = "the strategy's" if sizing.stop_source == "strategy" else f"{limits.stop_atr_multiple:g} x ATR"
    if sizing_mode == "risk":
        risk_text = (
            f"risk {sizing.risk_amount:,.2f} ({sizing.risk_fraction:.2%} of equity x confidence scale "
            f"{sizing.confidence_scale:.3f})"
        )
    else:
        risk_text = f"{sizing_mode} sizing, {sizing.risk_amount:,.2f} at risk"
    reason = (
        f"BUY {quantity:g} {symbol} @ ~{price:g}: {risk_text}, "
        f"stop {sizing.stop_price:g} ({stop_how}), binding limit: {sizing.binding_rule}"
    )
    if state is TradingState.REDUCING:
        reason += f"; reducing: {limits.reducing_size:g} x the normal size"
    intent = OrderIntent(
        symbol=symbol,
        side=Side.BUY,
        quantity=quantity,  # type: ignore[arg-type]  # int unless limits.allow_fractional (fractional shares)
        order_type=order_type,
        reference_price=price,
        strategy=signal.strategy,
        confidence=confidence,
        reason=reason,
        stop_loss=sizing.stop_price,
        take_profit=take_profit,
    )
    checks.items["sizing_notes"] = {"status": "pass", "notes": list(sizing.notes), "binding_rule": sizing.binding_rule}
    approval = Approval(intent=intent, reason=reason, checks=freeze_checks(checks.items))
    return apply_account_rules(approval, candidate, portfolio, limits, state)


def reduced_limits(limits: RiskLimits, state: TradingState) -> RiskLimits:
    """The limits an entry is sized with: in REDUCING, ``risk_per_trade`` and ``max_position_pct`` scaled by
    ``reducing_size``; otherwise ``limits`` unchanged."""
    if TradingState(state) is not TradingState.REDUCING or limits.reducing_size >= 1.0:
        return limits
    return replace(
        limits,
        risk_per_trade=limits.risk_per_trade * limits.reducing_size,
        max_position_pct=limits.max_position_pct * limits.reducing_size,
    )


def _stop_used(candidate: Candidate, limits: RiskLimits) -> float | None:
    """The stop the entry will carry: the strategy's own, else ``stop_atr_multiple`` x ATR below the price."""
    signal = candidate.signal.signal
    if _finite(signal.stop):
        return float(signal.stop)
    atr = float(candidate.atr)
    if math.isfinite(atr) and atr > 0:
        return candidate.price - limits.stop_atr_multiple * atr
    return None


def _reward_risk(checks: _Checks, signal: Signal, price: float, stop: float | None, limits: RiskLimits) -> float | None:
    """Reward/risk of the strategy's target against the stop the entry carries (the strategy's own, or the ATR
    fallback); returns the take-profit price to attach (or None when the strategy gives no target)."""
    target = float(signal.target) if _finite(signal.target) else None
    source = "strategy" if _finite(signal.stop) else "atr"
    if stop is None or target is None:
        checks.na(
            RiskRule.REWARD_RISK,
            "strategy gave no target" if target is None else "no usable stop",
            stop=stop,
            target=target,
            min_reward_risk=limits.min_reward_risk,
        )
        return None
    risk = price - stop
    reward = target - price
    if risk <= 0:
        checks.refuse(
            RiskRule.REWARD_RISK,
            f"strategy stop {stop:g} is not below the price {price:g}",
            price=price,
            stop=stop,
            target=target,
            min_reward_risk=limits.min_reward_risk,
        )
    ratio = reward / risk
    if ratio < limits.min_reward_risk:
        checks.refuse(
            RiskRule.REWARD_RISK,
            f"reward/risk ({target:g} - {price:g}) / ({price:g} - {stop:g}) = {ratio:.4f} "
            f"is below the minimum {limits.min_reward_risk:g}",
            price=price,
            stop=stop,
            target=target,
            reward_risk=ratio,
            stop_source=source,
            min_reward_risk=limits.min_reward_risk,
        )
    checks.ok(
        RiskRule.REWARD_RISK,
        price=price,
        stop=stop,
        target=target,
        reward_risk=ratio,
        stop_source=source,
        min_reward_risk=limits.min_reward_risk,
    )
    return target


def _already_long(checks: _Checks, candidate: Candidate, portfolio: PortfolioView, limits: RiskLimits) -> None:
    symbol = candidate.symbol
    held = portfolio.positions.get(symbol)
    held_quantity = 0.0 if held is None else float(held.quantity)
    if held_quantity > 0 and not limits.allow_pyramiding:
        checks.refuse(
            RiskRule.ALREADY_LONG,
            f"already long {held_quantity:g} {symbol}; adding to a position is not allowed",
            held_quantity=held_quantity,
            held_value=float(held.market_value) if held else 0.0,
        )
    checks.ok(RiskRule.ALREADY_LONG, held_quantity=held_quantity, allow_pyramiding=limits.allow_pyramiding)


def _valid_price(checks: _Checks, price: float) -> None:
    if not (math.isfinite(price) and price > 0):
        checks.refuse(RiskRule.INVALID_PRICE, f"price {price!r} is not a positive finite number", price=price)
    checks.ok(RiskRule.INVALID_PRICE, price=price)


def position_rules(candidate: Candidate, portfolio: PortfolioView, limits: RiskLimits) -> Denial | None:
    """The rules about positions, which stay on when the risk limits are switched off (backtests'
    ``--no-risk-limits``): the signal is a BUY, its price is a positive number, and no second buy while long
    (unless ``allow_pyramiding``). None when they pass; the Denial naming the rule otherwise."""
    signal = candidate.signal.signal
    checks = _Checks(candidate.symbol)
    try:
        if signal.action is not Action.BUY:
            checks.refuse(
                RiskRule.NOT_AN_ENTRY,
                f"signal action is {signal.action.value}, entries are BUY signals",
                action=signal.action.value,
            )
        _already_long(checks, candidate, portfolio, limits)
        _valid_price(checks, float(signal.price))
    except _Refused as refused:
        return refused.denial
    return None


def _held_quantity(position: PositionView | Position | float | None) -> float:
    if position is None:
        return 0.0
    if isinstance(position, (PositionView, Position)):
        return float(position.quantity)
    if isinstance(position, bool) or not isinstance(position, (int, float)):
        raise TypeError(
            f"evaluate_exit: position must be a PositionView, a Position, a quantity or None, "
            f"got {type(position).__name__}"
        )
    return float(position)


def evaluate_exit(
    symbol: str,
    position: PositionView | Position | float | None,
    signal: Signal | ValidatedSignal,
    state: TradingState,
    reason: str,
    *,
    exit_rule: RiskRule | None = None,
) -> Approval | Denial:
    """Approve closing the whole long position in ``symbol`` (market SELL), or deny.

    ``position`` is the held position (``PositionView`` or the broker's ``Position``) or just its quantity.

    Allowed in every trading state: a drawdown lock or halt stops new entries, never the way out. ``signal`` must be
    a SELL for ``symbol`` unless ``exit_rule`` names the risk rule that wants the exit (``RiskRule.TIME_STOP``): then
    the signal's action does not matter (the strategy may still say BUY or HOLD) and ``checks["exit_rule"]`` records
    the rule. ``reason`` says why the exit is wanted (strategy exit, time stop, manual...). The intent's confidence is
    the validated confidence, or the
    raw signal strength when a plain ``Signal`` is given."""
    raw = signal.signal if isinstance(signal, ValidatedSignal) else signal
    confidence = signal.confidence if isinstance(signal, ValidatedSignal) else raw.strength
    if raw.symbol != symbol:
        raise ValueError(f"evaluate_exit: signal is for {raw.symbol!r}, not {symbol!r}")
    if isinstance(position, (PositionView, Position)) and position.symbol != symbol:
        raise ValueError(f"evaluate_exit: position is for {position.symbol!r}, not {symbol!r}")
    checks = _Checks(symbol)
    try:
        if exit_rule is not None:
            checks.ok(
                "exit_rule", "applied", rule=RiskRule(exit_rule).value, reason=reason, signal_action=raw.action.value
            )
        elif raw.action is not Action.SELL:
            checks.refuse(
                RiskRule.NOT_AN_EXIT,
                f"signal action is {raw.action.value}, exits are SELL signals",
                action=raw.action.value,
            )
        else:
            checks.ok(RiskRule.NOT_AN_EXIT, action=raw.action.value)
        state = TradingState(state)
        checks.ok(RiskRule.STATE, state=state.value)
        quantity = _held_quantity(position)
        if not (math.isfinite(quantity) and quantity > 0):
            checks.refuse(
                RiskRule.NO_POSITION, f"no long position in {symbol} to sell (quantity {quantity:g})", quantity=quantity
            )
        checks.ok(RiskRule.NO_POSITION, quantity=quantity)
    except _Refused as refused:
        return refused.denial

    sell_quantity: float = quantity
    if sell_quantity.is_integer():
        sell_quantity = int(sell_quantity)
    why = f"SELL {sell_quantity:g} {symbol} (close position) in state {state.value}: {reason}"
    intent = OrderIntent(
        symbol=symbol,
        side=Side.SELL,
        quantity=sell_quantity,  # type: ignore[arg-type]
        order_type=OrderType.MARKET,
        reference_price=float(raw.price),
        strategy=raw.strategy,
        confidence=float(confidence),
        reason=why,
    )
    return Approval(intent=intent, reason=why, checks=freeze_checks(checks.items))


def apply_approval(
    portfolio: PortfolioView, approval: Approval, sector: str, returns: pd.Series | None = None
) -> PortfolioView:
    """The portfolio as it will be once ``approval`` fills at its reference price (cash and the position updated,
    and, for an entry, the symbol's daily ``returns`` added to ``portfolio.returns``).

    For batches: evaluate candidates one after another against the view returned here, so that cash, gross, sector
    and position limits, and the correlation limit, hold for the batch as a whole: each candidate is checked against
    the open positions and the entries already approved in the same iteration."""
    intent = approval.intent
    signed = intent.quantity if intent.side is Side.BUY else -intent.quantity
    value = signed * intent.reference_price
    positions = dict(portfolio.positions)
    existing = positions.get(intent.symbol)
    quantity = (existing.quantity if existing else 0) + signed
    market_value = (existing.market_value if existing else 0.0) + value
    if quantity == 0:
        positions.pop(intent.symbol, None)
    else:
        positions[intent.symbol] = PositionView(
            symbol=intent.symbol,
            quantity=quantity,
            market_value=market_value,
            sector=existing.sector if existing else sector,
        )
    frame = portfolio.returns
    if returns is not None and intent.side is Side.BUY:
        # each symbol keeps its own series (and index): the correlation rule joins two series at a time
        if isinstance(frame, pd.DataFrame):
            by_symbol = {str(s): frame[s] for s in frame.columns}
        else:
            by_symbol = dict(frame) if frame is not None else {}
        by_symbol.pop(intent.symbol, None)
        by_symbol[intent.symbol] = returns.astype(float).rename(intent.symbol)
        frame = frozen_map(by_symbol)
    return replace(portfolio, cash=portfolio.cash - value, positions=frozen_map(positions), returns=frame)

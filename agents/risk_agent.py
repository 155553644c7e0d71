"""Risk agent: the only road to execution. Sizes entries, applies every limit, records every refusal with its rule.

The rules themselves live in the pure engine ``core.risk``; this agent assembles the candidate and portfolio views
from the batch, the broker account and the run's equity history, and turns the engine's answers into events.

It also owns the trading state (ACTIVE / REDUCING / HALTED, persisted so a restart keeps it) and two circuit
breakers: data quality under ``data_quality_min`` stops new entries for the iteration (only when at least two
symbols have data problems: see ``BarsBatch.breaker_quality``; a symbol whose data are flagged opens no position
either way, rule ``symbol_data``), and equity
``drawdown_halt`` below its high-water mark HALTS trading until a manual reset (``python main.py reset``).

Backtests may swap the sizing (``fixed-qty:N``, ``fixed-fraction:F``) and switch the limits off
(``enforce_limits=False``: sizing still applies, the gates do not).
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import pandas_ta as ta

from core.brokers.base import AccountState, Broker
from core.domain import Action, Approval, BarsBatch, Decision, Denial, OrderIntent, OrderType, Side, SymbolBars, frozen_map
from core.events import ApprovedReady, ExecutedReady, ValidatedReady
from core.frame_cache import FrameCache
from core.positions import PositionManager, RealizedReturns
from core.risk import (
    Candidate,
    PortfolioView,
    PositionView,
    RiskLimits,
    TradingState,
    apply_approval,
    evaluate_entry,
    evaluate_exit,
    next_state,
    reset_state,
    size_position,
)
from utils.circuit_breaker import BreakerEvent, BreakerState, LatchingBreaker, ThresholdBreaker, drain_rows

# run's recent equity values, oldest first (previous iterations' closes)
EquityHistory = Callable[[], Sequence[float]]


def parse_sizing(text: str) -> tuple[str, float | None]:
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


class RiskAgent:
    name = "risk"

    def __init__(
        self,
        broker: Broker,
        limits: RiskLimits,
        *,
        equity_history: EquityHistory,
        clock: Callable[[], datetime],
        sectors: Mapping[str, str] | None = None,
        atr_period: int = 14,
        liquidity_window: int = 20,
        correlation_window: int = 60,
        data_quality_min: float = 0.8,
        drawdown_halt: float = 0.10,
        saved_state: Mapping[str, Any] | None = None,
        sizing: str = "risk",
        enforce_limits: bool = True,
        positions: PositionManager | None = None,
        cache: FrameCache | None = None,
        routine_decisions: bool = True,
    ) -> None:
        """``routine_decisions``: record a "skip" for HOLD signals and excluded symbols (the daemon does)."""
        self._routine = routine_decisions
        self._broker = broker
        self.limits = limits
        self._equity_history = equity_history
        self._sectors = {k.upper(): v for k, v in (sectors or {}).items()}
        self._atr_period = atr_period
        self._liquidity_window = liquidity_window
        self._correlation_window = correlation_window
        self._drawdown_halt = drawdown_halt
        self._sizing = parse_sizing(sizing)
        self._enforce = enforce_limits
        self._cache = cache or FrameCache()
        self._positions = positions
        self.realized = RealizedReturns()  # closed-trade returns for fractional Kelly (RiskLimits.kelly_fraction)
        self._events: list[BreakerEvent] = []
        self._quality = ThresholdBreaker("data_quality", data_quality_min, compare="below", clock=clock, on_transition=self._events.append)
        self._drawdown = LatchingBreaker("equity_drawdown", clock=clock, on_transition=self._events.append)
        self.state = TradingState.ACTIVE
        self.state_reason = "start"
        self.high_water_mark: float | None = None
        if saved_state:
            self.restore(saved_state)

    # --- persisted state ---------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "reason": self.state_reason,
            "high_water_mark": self.high_water_mark,
            "data_quality": self._quality.snapshot(),
            "equity_drawdown": self._drawdown.snapshot(),
        }

    def restore(self, saved: Mapping[str, Any]) -> None:
        self.state = TradingState(saved.get("state", "active"))
        self.state_reason = str(saved.get("reason", "restored"))
        hwm = saved.get("high_water_mark")
        self.high_water_mark = float(hwm) if hwm is not None else None
        if saved.get("data_quality"):
            self._quality.restore(saved["data_quality"])
        if saved.get("equity_drawdown"):
            self._drawdown.restore(saved["equity_drawdown"])

    @staticmethod
    def reset_saved(saved: Mapping[str, Any], *, reason: str, equity: float | None, clock: Callable[[], datetime]) -> dict[str, Any]:
        """The manual reset: ACTIVE again, the drawdown latch cleared and the high-water mark set to ``equity``."""
        state, why = reset_state(TradingState(saved.get("state", "active")), reason=reason)
        latch = LatchingBreaker("equity_drawdown", clock=clock, on_transition=None)
        if saved.get("equity_drawdown"):
            latch.restore(saved["equity_drawdown"])
            if latch.tripped:
                latch.reset(reason)
        return {**dict(saved), "state": state.value, "reason": why, "high_water_mark": equity, "equity_drawdown": latch.snapshot()}

    def sector(self, symbol: str) -> str:
        return self._sectors.get(symbol.upper(), "unknown")

    def _features(self, sb: SymbolBars) -> dict[str, np.ndarray]:
        def compute() -> dict[str, np.ndarray]:
            f = sb.frame
            atr = ta.atr(f["high"], f["low"], f["close"], length=self._atr_period)
            dollar_volume = (f["close"] * f["volume"]).rolling(self._liquidity_window, min_periods=self._liquidity_window).mean()
            returns = f["close"].pct_change(fill_method=None)
            nan = np.full(len(f), np.nan)
            return {
                "atr": atr.to_numpy(dtype=float) if atr is not None else nan,
                "adv": dollar_volume.to_numpy(dtype=float),
                "ret": returns.to_numpy(dtype=float),
            }

        return self._cache.get(sb.symbol, "risk_features", sb.frame, compute)

    def atr_at(self, sb: SymbolBars) -> float:
        """The ATR at the decision bar (shared with the position manager's trailing stops)."""
        return float(self._features(sb)["atr"][sb.end - 1])

    def _returns(self, sb: SymbolBars) -> pd.Series:
        start = max(0, sb.end - self._correlation_window)
        return pd.Series(self._features(sb)["ret"][start : sb.end], index=sb.frame.index[start : sb.end])

    def _portfolio(self, account: AccountState, batch: BarsBatch) -> PortfolioView:
        history = [float(x) for x in self._equity_history()]
        equity = float(account.equity)
        week = history[-4:] + [equity]
        positions = {
            s: PositionView(symbol=s, quantity=float(p.quantity), market_value=float(p.market_value), sector=self.sector(s))
            for s, p in account.positions.items()
            if p.quantity
        }
        return PortfolioView(
            cash=float(account.cash),
            equity=equity,
            positions=positions,
            equity_day_start=history[-1] if history else None,
            equity_week_high=max(week),
            returns=None,  # filled by _with_returns before the first entry is evaluated (only entries need it)
            realized_trade_returns=tuple(self.realized.returns),
        )

    def _with_returns(self, portfolio: PortfolioView, account: AccountState, batch: BarsBatch) -> PortfolioView:
        """The view with the held positions' daily returns (for the correlation rule)."""
        columns = {s: self._returns(batch.bars[s]) for s, p in account.positions.items() if p.quantity and s in batch.bars}
        return replace(portfolio, returns=pd.DataFrame(columns) if columns else None)

    def _update_state(self, portfolio: PortfolioView, quality: float) -> None:
        equity = portfolio.equity
        self.high_water_mark = equity if self.high_water_mark is None else max(self.high_water_mark, equity)
        self._quality.evaluate(quality)
        drawdown = 1.0 - equity / self.high_water_mark if self.high_water_mark > 0 else 0.0
        if drawdown >= self._drawdown_halt and not self._drawdown.tripped:
            self._drawdown.trip(
                f"equity {equity:,.2f} is {drawdown:.2%} below its high-water mark {self.high_water_mark:,.2f} "
                f"(halt at {self._drawdown_halt:.0%})"
            )
        if self._drawdown.tripped:
            if self.state is not TradingState.HALTED:
                self.state, self.state_reason = TradingState.HALTED, f"halted by the equity drawdown breaker: {self._drawdown.reason}"
            return
        # one iteration per session: every iteration starts a new session for the REDUCING -> ACTIVE check
        self.state, self.state_reason = next_state(self.state, portfolio, self.limits, new_session=True)

    def _intent(self, candidate: Candidate, quantity: int, reason: str) -> OrderIntent:
        signal = candidate.signal.signal
        stop = candidate.price - self.limits.stop_atr_multiple * candidate.atr if math.isfinite(candidate.atr) and candidate.atr > 0 else None
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

    def _fixed_quantity(self, candidate: Candidate, portfolio: PortfolioView) -> int:
        mode, value = self._sizing
        assert value is not None
        wanted = int(value) if mode == "fixed-qty" else int(math.floor(value * portfolio.equity / candidate.price))
        affordable = int(math.floor(portfolio.cash / candidate.price)) if candidate.price > 0 else 0
        return max(0, min(wanted, affordable))

    def _entry(self, candidate: Candidate, portfolio: PortfolioView) -> Approval | Denial:
        symbol = candidate.signal.signal.symbol
        if self._enforce:
            result = evaluate_entry(candidate, portfolio, self.limits, self.state)
            if isinstance(result, Denial) or self._sizing[0] == "risk":
                return result
            quantity = self._fixed_quantity(candidate, portfolio)
            if quantity <= 0:
                return Denial(symbol, "no_cash", f"no_cash: {self._sizing[0]} sizing leaves 0 affordable shares", {"cash": portfolio.cash})
            return replace(result, intent=replace(result.intent, quantity=quantity), reason=f"{result.reason}; {self._sizing[0]} sizing: {quantity} shares")
        if self._sizing[0] == "risk":
            sizing = size_position(candidate, portfolio, self.limits)
            quantity = int(sizing.quantity)
            if quantity <= 0:
                return Denial(symbol, sizing.binding_rule or "zero_quantity", "; ".join(sizing.notes) or "sized to 0 shares", dict(sizing.checks))
            return Approval(self._intent(candidate, quantity, f"risk sizing (limits off): {quantity} shares"), "limits off", frozen_map(dict(sizing.checks)))
        quantity = self._fixed_quantity(candidate, portfolio)
        if quantity <= 0:
            return Denial(symbol, "no_cash", f"no_cash: {self._sizing[0]} sizing leaves 0 affordable shares", {"cash": portfolio.cash})
        return Approval(self._intent(candidate, quantity, f"{self._sizing[0]} sizing (limits off): {quantity} shares"), "limits off")

    def on_executed(self, event: ExecutedReady) -> None:
        """Learn the iteration's fills: closed trades feed the fractional-Kelly estimate of later iterations."""
        self.realized.apply(event.fills)

    @staticmethod
    def _append(
        result: Approval | Denial,
        symbol: str,
        signal: Any,
        validated: Any,
        state_info: Mapping[str, Any],
        approvals: list[Approval],
        denials: list[Denial],
        decisions: list[Decision],
    ) -> bool:
        """Record one answer of the engine as an approval or a denial, with its decision. True when approved."""
        confidence = validated.confidence if validated is not None else None
        if isinstance(result, Approval):
            approvals.append(result)
            decisions.append(
                Decision(
                    "risk",
                    symbol,
                    "approved",
                    result.reason,
                    {**state_info, "quantity": result.intent.quantity, "side": result.intent.side.value, "checks": dict(result.checks)},
                    strategy=signal.strategy,
                    confidence=confidence,
                )
            )
            return True
        denials.append(result)
        decisions.append(
            Decision(
                "risk",
                symbol,
                f"denied:{result.rule}",
                result.reason,
                {**state_info, "rule": result.rule, "values": dict(result.values)},
                strategy=signal.strategy,
                confidence=confidence,
            )
        )
        return False

    async def on_validated(self, event: ValidatedReady) -> ApprovedReady:
        signals_event = event.previous
        assert signals_event is not None and signals_event.previous is not None
        batch = signals_event.previous.batch
        assert batch is not None
        account = await self._broker.account()
        portfolio = self._portfolio(account, batch)
        self._update_state(portfolio, batch.breaker_quality)
        quality_gate = self._enforce and self._quality.state is not BreakerState.CLOSED
        time_stops = self._positions.time_stops(PositionManager.plans(account), batch) if self._positions is not None else {}
        approvals: list[Approval] = []
        denials: list[Denial] = []
        decisions: list[Decision] = []
        with_returns = False
        state_info = {
            "state": self.state.value,
            "state_reason": self.state_reason,
            "equity": portfolio.equity,
            "cash": portfolio.cash,
            "high_water_mark": self.high_water_mark,
            "data_quality": batch.data_quality,
        }

        for symbol in list(batch.bars) + [s for s in batch.rejected]:
            signal = signals_event.signals.get(symbol)
            if symbol in batch.rejected:
                if self._routine:
                    decisions.append(Decision("risk", symbol, "skip", f"no data: {batch.rejected[symbol]}", state_info))
                continue
            assert signal is not None
            position = account.positions.get(symbol)
            flag = batch.entry_blocked.get(symbol)
            info = {**state_info, "data_flag": flag} if flag is not None else state_info  # managed on its last good bar
            if symbol in time_stops and signal.action is not Action.SELL:
                result = evaluate_exit(symbol, position.quantity, signal, self.state if self._enforce else TradingState.ACTIVE, time_stops[symbol])
                self._append(result, symbol, signal, None, info, approvals, denials, decisions)
                continue
            if signal.action is Action.HOLD:
                if self._routine:
                    decisions.append(Decision("risk", symbol, "skip", "signal is HOLD: no order", info, strategy=signal.strategy))
                continue
            validated = event.validated.get(symbol)
            result: Approval | Denial
            if signal.action is Action.SELL:
                if position is None or position.quantity <= 0:
                    decisions.append(
                        Decision("risk", symbol, "skip", "SELL signal but no position to exit (long-only)", info, strategy=signal.strategy)
                    )
                    continue
                result = evaluate_exit(symbol, position.quantity, signal, self.state if self._enforce else TradingState.ACTIVE, f"exit on {signal.strategy} SELL")
            elif flag is not None:
                result = Denial(
                    symbol,
                    "symbol_data",
                    f"symbol_data: no new entries in {symbol} while its data are flagged ({flag})",
                    {"data_flag": flag},
                )
            elif quality_gate:
                result = Denial(
                    symbol,
                    "data_quality",
                    f"data_quality: only {batch.data_quality:.0%} of symbols had usable bars (minimum {self._quality.threshold:.0%}): no new entries this iteration",
                    {"data_quality": batch.data_quality, "minimum": self._quality.threshold},
                )
            else:
                assert validated is not None
                if self._enforce and not with_returns:  # only the correlation limit reads them
                    portfolio, with_returns = self._with_returns(portfolio, account, batch), True
                sb = batch.bars[symbol]
                features = self._features(sb)
                i = sb.end - 1
                atr, adv = features["atr"][i], features["adv"][i]
                candidate = Candidate(
                    signal=validated,
                    atr=float(atr),
                    avg_dollar_volume=float(adv) if adv == adv else 0.0,
                    spread_pct=None,
                    sector=self.sector(symbol),
                    returns=self._returns(sb) if self._enforce else None,
                )
                result = self._entry(candidate, portfolio)
            if self._append(result, symbol, signal, validated, info, approvals, denials, decisions) and signal.action is Action.BUY:
                # later candidates of this batch see this entry's cash and exposure
                portfolio = apply_approval(portfolio, approvals[-1], self.sector(symbol))
        events = drain_rows(self._events)
        return ApprovedReady(
            iteration_id=event.iteration_id,
            as_of=event.as_of,
            previous=event,
            approvals=tuple(approvals),
            denials=tuple(denials),
            decisions=tuple(decisions),
            breaker_events=events,
        )

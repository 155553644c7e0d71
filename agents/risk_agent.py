"""Risk agent: the only road to execution. Sizes entries, applies every limit, records every refusal with its rule.

The rules themselves live in the pure engine ``core.risk``; this agent assembles the candidate and portfolio views
from the batch, the broker account and the run's equity history, and turns the engine's answers into events.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import pandas_ta as ta

from core.brokers.base import AccountState, Broker
from core.domain import Action, Approval, BarsBatch, Decision, Denial, SymbolBars
from core.events import ApprovedReady, ValidatedReady
from core.frame_cache import FrameCache
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
)

# run's recent equity values, oldest first (previous iterations' closes)
EquityHistory = Callable[[], Sequence[float]]


class RiskAgent:
    name = "risk"

    def __init__(
        self,
        broker: Broker,
        limits: RiskLimits,
        *,
        equity_history: EquityHistory,
        sectors: Mapping[str, str] | None = None,
        atr_period: int = 14,
        liquidity_window: int = 20,
        correlation_window: int = 60,
        state: TradingState = TradingState.ACTIVE,
        cache: FrameCache | None = None,
    ) -> None:
        self._broker = broker
        self.limits = limits
        self._equity_history = equity_history
        self._sectors = {k.upper(): v for k, v in (sectors or {}).items()}
        self._atr_period = atr_period
        self._liquidity_window = liquidity_window
        self._correlation_window = correlation_window
        self.state = state
        self._cache = cache or FrameCache()

    def sector(self, symbol: str) -> str:
        return self._sectors.get(symbol.upper(), "unknown")

    def _features(self, sb: SymbolBars) -> pd.DataFrame:
        def compute() -> pd.DataFrame:
            f = sb.frame
            atr = ta.atr(f["high"], f["low"], f["close"], length=self._atr_period)
            dollar_volume = (f["close"] * f["volume"]).rolling(self._liquidity_window, min_periods=self._liquidity_window).mean()
            returns = f["close"].pct_change(fill_method=None)
            return pd.DataFrame({"atr": atr, "adv": dollar_volume, "ret": returns}, index=f.index)

        return self._cache.get(sb.symbol, "risk_features", sb.frame, compute)

    def _portfolio(self, account: AccountState, batch: BarsBatch) -> PortfolioView:
        history = [float(x) for x in self._equity_history()]
        equity = float(account.equity)
        day_start = history[-1] if history else None
        week = history[-4:] + [equity]
        positions = {
            s: PositionView(symbol=s, quantity=float(p.quantity), market_value=float(p.market_value), sector=self.sector(s))
            for s, p in account.positions.items()
            if p.quantity
        }
        returns = None
        if positions:
            cols = {}
            for s in positions:
                sb = batch.bars.get(s)
                if sb is not None:
                    r = self._features(sb)["ret"].iloc[max(0, sb.end - self._correlation_window) : sb.end]
                    cols[s] = r
            returns = pd.DataFrame(cols) if cols else None
        return PortfolioView(
            cash=float(account.cash),
            equity=equity,
            positions=positions,
            equity_day_start=day_start,
            equity_week_high=max(week),
            returns=returns,
            realized_trade_returns=(),
        )

    async def on_validated(self, event: ValidatedReady) -> ApprovedReady:
        signals_event = event.previous
        assert signals_event is not None and signals_event.previous is not None
        batch = signals_event.previous.batch
        assert batch is not None
        account = await self._broker.account()
        portfolio = self._portfolio(account, batch)
        # one iteration per session: every iteration starts a new session for the REDUCING -> ACTIVE check
        self.state, state_reason = next_state(self.state, portfolio, self.limits, new_session=True)
        approvals: list[Approval] = []
        denials: list[Denial] = []
        decisions: list[Decision] = []
        state_info = {"state": self.state.value, "state_reason": state_reason, "equity": portfolio.equity, "cash": portfolio.cash}

        for symbol in list(batch.bars) + [s for s in batch.rejected]:
            signal = signals_event.signals.get(symbol)
            if symbol in batch.rejected:
                decisions.append(Decision("risk", symbol, "skip", f"no data: {batch.rejected[symbol]}", state_info))
                continue
            assert signal is not None
            position = account.positions.get(symbol)
            if signal.action is Action.HOLD:
                decisions.append(Decision("risk", symbol, "skip", "signal is HOLD: no order", state_info, strategy=signal.strategy))
                continue
            validated = event.validated.get(symbol)
            if signal.action is Action.SELL:
                if position is None or position.quantity <= 0:
                    decisions.append(
                        Decision("risk", symbol, "skip", "SELL signal but no position to exit (long-only)", state_info, strategy=signal.strategy)
                    )
                    continue
                result = evaluate_exit(symbol, position.quantity, signal, self.state, f"exit on {signal.strategy} SELL")
            else:
                assert validated is not None
                sb = batch.bars[symbol]
                features = self._features(sb)
                i = sb.end - 1
                returns = features["ret"].iloc[max(0, sb.end - self._correlation_window) : sb.end]
                candidate = Candidate(
                    signal=validated,
                    atr=float(features["atr"].iat[i]) if not np.isnan(features["atr"].iat[i]) else float("nan"),
                    avg_dollar_volume=float(features["adv"].iat[i]) if not np.isnan(features["adv"].iat[i]) else 0.0,
                    spread_pct=None,
                    sector=self.sector(symbol),
                    returns=returns,
                )
                result = evaluate_entry(candidate, portfolio, self.limits, self.state)
            confidence = validated.confidence if validated is not None else None
            if isinstance(result, Approval):
                approvals.append(result)
                if signal.action is Action.BUY:  # later candidates of this batch see this entry's cash and exposure
                    portfolio = apply_approval(portfolio, result, self.sector(symbol))
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
            else:
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
        return ApprovedReady(
            iteration_id=event.iteration_id,
            as_of=event.as_of,
            previous=event,
            approvals=tuple(approvals),
            denials=tuple(denials),
            decisions=tuple(decisions),
        )

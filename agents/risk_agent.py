"""Risk agent: the only road to execution. Sizes entries, applies every limit, records every refusal with its rule.

The rules themselves live in the pure engine ``core.risk`` (the sizing modes and the entry decision in
``core.risk.entries``, the portfolio view in ``core.risk.portfolio``, the ATR / dollar volume / returns over the shared
frame cache in ``core.risk.features``, the trading-state machine and its record in ``core.risk.state``); this agent
feeds it the batch, the broker account, the live quotes and the run's equity history, and turns its answers into
decisions and events.

It also owns the trading state (ACTIVE / REDUCING / LOCKED / HALTED, persisted so a restart keeps it; see
:mod:`core.risk.state`) and the data-quality breaker: data quality under ``data_quality_min`` stops new entries for
the iteration (only when at least two symbols have data problems: see ``BarsBatch.breaker_quality``; a symbol whose
data are flagged opens no position either way, rule ``symbol_data``). The drawdown protections: equity
``DrawdownRules.lock`` below its lock reference LOCKS new entries for ``lock_sessions`` sessions, then trading resumes
through REDUCING (reduced size); equity ``DrawdownRules.halt`` below its high-water mark HALTS trading until a manual
reset (``python main.py reset``). Exits and stops keep running in every state. Every change of the trading state is
recorded as a ``breaker_events`` row named ``trading_state`` whose ``details`` hold the session, equity, high-water
mark, lock reference and drawdown.

Backtests may swap the sizing (``fixed-qty:N``, ``fixed-fraction:F``: the wanted quantity, still clipped by
``MAX_SHARES`` and the position, cash, gross and sector caps) and switch the limits off (``enforce_limits=False``:
sizing still applies, the limits do not; the position rules - no second buy while long - stay on).

The spread rule reads live quotes: with a ``quotes`` source (the daemon on Alpaca) one batched latest-quote request
per iteration for the symbols with a BUY signal; a failed request refuses those entries (the rule fails closed).
Without a source (backtests, replays) the rule is recorded as not applicable with ``no_quotes_reason``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from collections.abc import Callable, Mapping, Sequence

import pandas as pd
from loguru import logger

from core.brokers.base import AccountState, Broker
from core.data.quotes import QuoteSource, QuotesResult
from core.kernel.domain import (
    Action,
    Approval,
    BarsBatch,
    Decision,
    Denial,
    Side,
    Signal,
    SymbolBars,
    ValidatedSignal,
)
from core.kernel.events import ApprovedReady, DataReady, ExecutedReady, SignalsReady, ValidatedReady
from core.kernel.frame_cache import FrameCache
from core.risk import features as risk_features
from core.risk.account_rules import submission_fields
from core.risk.positions import PositionManager, RealizedReturns
from core.risk import (
    Candidate,
    DrawdownRules,
    PortfolioView,
    Protection,
    RiskLimits,
    TradingState,
    RiskRule,
    Transition,
    advance,
    apply_approval,
    decide_entry,
    evaluate_exit,
    parse_sizing,
    portfolio_view,
    reset_saved,
    restore_protection,
    sector_of,
    transition_record,
    with_returns,
)
from core.vocabulary import AgentName, DecisionAction, denied
from utils.circuit_breaker import BreakerEvent, BreakerState, ThresholdBreaker, drain_rows

# run's recent equity values, oldest first (previous iterations' closes)
EquityHistory = Callable[[], Sequence[float]]


class RiskAgent:
    name = AgentName.RISK

    def __init__(
        self,
        broker: Broker,
        limits: RiskLimits,
        *,
        equity_history: EquityHistory,
        clock: Callable[[], datetime],
        sectors: Mapping[str, str] | None = None,
        atr_period: int = risk_features.ATR_PERIOD,
        liquidity_window: int = risk_features.ADV_WINDOW,
        correlation_window: int = 60,
        data_quality_min: float = 0.8,
        drawdown: DrawdownRules | None = None,
        saved_state: Mapping[str, Any] | None = None,
        sizing: str = "risk",
        enforce_limits: bool = True,
        positions: PositionManager | None = None,
        cache: FrameCache | None = None,
        routine_decisions: bool = True,
        quotes: QuoteSource | None = None,
        no_quotes_reason: str = "no live quote source",
    ) -> None:
        """``routine_decisions``: record a "skip" for HOLD signals and excluded symbols (the daemon does);
        ``quotes``: the latest-quote source of the spread rule (None: the rule is not applicable, ``no_quotes_reason``
        says why)."""
        self._routine = routine_decisions
        self._quotes = quotes
        self._no_quotes_reason = no_quotes_reason
        self._broker = broker
        self.limits = limits
        self._equity_history = equity_history
        self._sectors = {k.upper(): v for k, v in (sectors or {}).items()}
        self._atr_period = atr_period
        self._liquidity_window = liquidity_window
        self._correlation_window = correlation_window
        self.drawdown = drawdown if drawdown is not None else DrawdownRules()
        self._sizing = parse_sizing(sizing)
        self._enforce = enforce_limits
        self._cache = cache or FrameCache()
        self._positions = positions
        self.realized = RealizedReturns()  # closed-trade returns for fractional Kelly (RiskLimits.kelly_fraction)
        self._events: list[BreakerEvent] = []
        self._quality = ThresholdBreaker(
            "data_quality", data_quality_min, compare="below", clock=clock, on_transition=self._events.append
        )
        self._transitions: list[dict[str, Any]] = []
        self.protection = Protection()
        # operator control, set by the daemon's command handling before each iteration (core.runtime.commands):
        # entries refused with this reason (rule ``paused``) while set; held positions to exit (symbol -> why)
        self.entries_paused: str | None = None
        self.manual_exits: dict[str, str] = {}
        if saved_state:
            self.restore(saved_state)

    @property
    def state(self) -> TradingState:
        return self.protection.state

    @property
    def state_reason(self) -> str:
        return self.protection.reason

    @property
    def high_water_mark(self) -> float | None:
        return self.protection.high_water_mark

    # --- persisted state ---------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {**self.protection.as_dict(), "data_quality": self._quality.snapshot()}

    def restore(self, saved: Mapping[str, Any]) -> None:
        protection = restore_protection(saved)
        if saved.get("data_quality"):
            self._quality.restore(saved["data_quality"])
        self.protection = protection

    @staticmethod
    def reset_saved(
        saved: Mapping[str, Any], *, reason: str, equity: float | None, clock: Callable[[], datetime]
    ) -> dict[str, Any]:
        """The manual reset: ACTIVE again, the high-water mark and the lock reference set to ``equity``."""
        return reset_saved(saved, reason=reason, equity=equity, at=clock())

    def sector(self, symbol: str) -> str:
        return sector_of(symbol, self._sectors)

    def atr_at(self, sb: SymbolBars) -> float:
        """The ATR at the decision bar."""
        return risk_features.atr_at(self._cache, sb, self._atr_period)

    def _returns(self, sb: SymbolBars) -> pd.Series:
        return risk_features.returns_window(self._cache, sb, self._correlation_window)

    def _portfolio(self, account: AccountState) -> PortfolioView:
        return portfolio_view(account, self._equity_history(), self._sectors, self.realized.returns)

    def _update_state(self, portfolio: PortfolioView, quality: float, as_of: datetime) -> None:
        """The trading state for this iteration (``core.risk.state.step``); a change is recorded and logged. With
        the limits off (``enforce_limits=False``) there is no trading state to keep: it stays ACTIVE, unrecorded."""
        self._quality.evaluate(quality)
        if not self._enforce:
            return
        self.protection, transition = advance(self.protection, portfolio, self.limits, self.drawdown, at=as_of)
        if transition is not None:
            self._record(transition, as_of)

    def advance_quiet(self, account: AccountState, batch: BarsBatch, as_of: datetime) -> bool:
        """The Risk stage of an iteration in which every signal is HOLD (a backtest's skipped session), applied only
        when it decides nothing and changes nothing but the session counters: no time stop due, the data-quality
        breaker stays CLOSED and, with the limits on, the state is ACTIVE before and after with no transition. Returns
        False (and changes nothing) when the iteration has to go through :meth:`on_validated`."""
        quality = batch.breaker_quality
        if self._quality.state is not BreakerState.CLOSED or self._quality.would_trip(quality):
            return False
        if self.manual_exits or self.entries_paused is not None:
            return False  # the operator asked for something: the full stage
        if self._positions is not None and account.positions:
            if self._positions.time_stops(PositionManager.plans(account), batch):
                return False
        if self._enforce:
            if self.protection.state is not TradingState.ACTIVE:
                return False
            protection, transition = advance(
                self.protection, self._portfolio(account), self.limits, self.drawdown, at=as_of
            )
            if transition is not None or protection.state is not TradingState.ACTIVE:
                return False
            self.protection = protection
        self._quality.evaluate(quality)
        return True

    def _record(self, transition: Transition, at: datetime) -> None:
        self._transitions.append(transition_record(transition, at))
        loud = transition.event in ("lock", "halt")
        logger.log(
            "WARNING" if loud else "INFO",
            "trading state {} -> {} ({}): {}",
            transition.from_state.value,
            transition.to_state.value,
            transition.event,
            transition.reason,
        )

    async def _latest_quotes(self, symbols: Sequence[str]) -> QuotesResult | None:
        """One batched request for the entry candidates' quotes (None without a source or without candidates)."""
        if self._quotes is None or not symbols or not self._enforce:
            return None
        return await asyncio.to_thread(self._quotes.latest_quotes, list(symbols))

    def _spread_fields(self, symbol: str, quotes: QuotesResult | None) -> dict[str, Any]:
        """The Candidate's spread_pct / spread_note / quote_error / quote for ``symbol``."""
        if quotes is None:
            return {"spread_pct": None, "spread_note": self._no_quotes_reason}
        if quotes.error is not None:
            return {"spread_pct": None, "quote_error": f"the latest-quote request failed: {quotes.error}"}
        quote = quotes.quotes.get(symbol)
        if quote is None:
            return {
                "spread_pct": None,
                "spread_note": f"no quote for {symbol} from {quotes.source or 'the quote source'}",
            }
        if quote.problem is not None:
            return {"spread_pct": None, "quote_error": quote.problem, "quote": quote.as_dict()}
        return {"spread_pct": quote.spread_pct, "quote": quote.as_dict()}

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
                    AgentName.RISK,
                    symbol,
                    DecisionAction.APPROVED,
                    result.reason,
                    {
                        **state_info,
                        "quantity": result.intent.quantity,
                        "side": result.intent.side.value,
                        "checks": dict(result.checks),
                    },
                    strategy=signal.strategy,
                    confidence=confidence,
                )
            )
            return True
        denials.append(result)
        decisions.append(
            Decision(
                AgentName.RISK,
                symbol,
                denied(result.rule),
                result.reason,
                {**state_info, "rule": result.rule, "values": dict(result.values)},
                strategy=signal.strategy,
                confidence=confidence,
            )
        )
        return False

    async def on_validated(self, event: ValidatedReady) -> ApprovedReady:
        signals_event, data = event.find(SignalsReady), event.find(DataReady)
        assert signals_event is not None and data is not None
        batch = data.batch
        assert batch is not None
        review = await self._begin(batch, signals_event.signals, event.as_of)
        for symbol in list(batch.bars) + [s for s in batch.rejected]:
            self._review_symbol(review, symbol, signals_event.signals.get(symbol), event.validated.get(symbol))
        events = drain_rows(self._events) + tuple(self._transitions)
        self._transitions.clear()
        return ApprovedReady(
            iteration_id=event.iteration_id,
            as_of=event.as_of,
            previous=event,
            approvals=tuple(review.approvals),
            denials=tuple(review.denials),
            decisions=tuple(review.decisions),
            breaker_events=events,
        )

    async def _begin(self, batch: BarsBatch, signals: Mapping[str, Signal], as_of: datetime) -> _Review:
        """The iteration's starting point: the account, the trading state stepped to ``as_of``, the data-quality
        gate, the time stops due, and the live quotes of the symbols that may enter."""
        account = await self._broker.account()
        portfolio = self._portfolio(account)
        self._update_state(portfolio, batch.breaker_quality, as_of)
        quality_gate = self._enforce and self._quality.state is not BreakerState.CLOSED
        time_stops = (
            self._positions.time_stops(PositionManager.plans(account), batch) if self._positions is not None else {}
        )
        # the exits due whatever the signal: time stops, and the closes the operator asked for (main.py close)
        exits = {s: (RiskRule.TIME_STOP, why) for s, why in time_stops.items()}
        exits.update(
            {s: (RiskRule.MANUAL_CLOSE, why) for s, why in self.manual_exits.items() if s in account.positions}
        )
        state_info = {
            "state": self.state.value,
            "state_reason": self.state_reason,
            "equity": portfolio.equity,
            "cash": portfolio.cash,
            "high_water_mark": self.high_water_mark,
            "data_quality": batch.data_quality,
        }
        entry_symbols = [
            s
            for s, sig in signals.items()
            if s in batch.bars
            and sig.action is Action.BUY
            and s not in exits
            and self.entries_paused is None
            and not quality_gate
            and s not in batch.entry_blocked
            and self.state in (TradingState.ACTIVE, TradingState.REDUCING)
        ]
        quotes = await self._latest_quotes(entry_symbols)
        return _Review(batch, account, portfolio, state_info, exits, quality_gate, quotes)

    def _skip(self, review: _Review, symbol: str, reason: str, info: Mapping[str, Any], signal: Signal | None) -> None:
        review.decisions.append(
            Decision(
                AgentName.RISK,
                symbol,
                DecisionAction.SKIP,
                reason,
                info,
                strategy=signal.strategy if signal is not None else None,
            )
        )

    def _review_symbol(
        self, review: _Review, symbol: str, signal: Signal | None, validated: ValidatedSignal | None
    ) -> None:
        """One symbol's answer: a skip (no data, HOLD, nothing to sell), an exit (time stop or SELL) or an entry
        judged by the engine; an approved entry updates the portfolio the later symbols are judged against."""
        batch = review.batch
        if symbol in batch.rejected:
            if self._routine:
                self._skip(review, symbol, f"no data: {batch.rejected[symbol]}", review.state_info, None)
            return
        assert signal is not None
        if signal.action is Action.HOLD and not self._routine and symbol not in review.exits:
            return  # the common case of a backtest: nothing to decide and nothing recorded
        position = review.account.positions.get(symbol)
        flag = batch.entry_blocked.get(symbol)
        # a flagged symbol is managed on its last good bar
        info = {**review.state_info, "data_flag": flag} if flag is not None else review.state_info
        state = self.state if self._enforce else TradingState.ACTIVE
        due = review.exits.get(symbol)
        if due is not None and (signal.action is not Action.SELL or due[0] is RiskRule.MANUAL_CLOSE):
            assert position is not None  # a time stop or a manual close is only ever due on a held position
            result = evaluate_exit(symbol, position.quantity, signal, state, due[1], exit_rule=due[0])
            self._append(result, symbol, signal, None, info, review.approvals, review.denials, review.decisions)
            return
        if signal.action is Action.HOLD:
            if self._routine:
                self._skip(review, symbol, "signal is HOLD: no order", info, signal)
            return
        if signal.action is Action.SELL:
            if position is None or position.quantity <= 0:
                self._skip(review, symbol, "SELL signal but no position to exit (long-only)", info, signal)
                return
            result = evaluate_exit(symbol, position.quantity, signal, state, f"exit on {signal.strategy} SELL")
            self._append(result, symbol, signal, validated, info, review.approvals, review.denials, review.decisions)
            return
        self._review_entry(review, symbol, signal, validated, flag, info)

    def _review_entry(
        self,
        review: _Review,
        symbol: str,
        signal: Signal,
        validated: ValidatedSignal | None,
        flag: str | None,
        info: Mapping[str, Any],
    ) -> None:
        """A BUY: refused while the symbol's data are flagged or the data-quality gate is open, else the engine's
        answer on the candidate (ATR, liquidity, sector, returns, spread)."""
        batch = review.batch
        candidate: Candidate | None = None
        result: Approval | Denial
        if flag is not None:
            result = Denial(
                symbol,
                "symbol_data",
                f"symbol_data: no new entries in {symbol} while its data are flagged ({flag})",
                {"data_flag": flag},
            )
        elif self.entries_paused is not None:
            result = Denial(symbol, RiskRule.PAUSED, f"paused: {self.entries_paused}", {})
        elif review.quality_gate:
            result = Denial(
                symbol,
                "data_quality",
                f"data_quality: only {batch.data_quality:.0%} of symbols had usable bars (minimum {self._quality.threshold:.0%}): no new entries this iteration",
                {"data_quality": batch.data_quality, "minimum": self._quality.threshold},
            )
        else:
            assert validated is not None
            if self._enforce and not review.returns_added:  # only the correlation limit reads them
                review.portfolio = with_returns(review.portfolio, review.account, batch, self._returns)
                review.returns_added = True
            sb = batch.bars[symbol]
            spread = self._spread_fields(symbol, review.quotes)
            fill_price = getattr(self._broker, "market_buy_price", None)  # simulated: a backtest's next open
            candidate = Candidate(
                signal=validated,
                atr=self.atr_at(sb),
                avg_dollar_volume=risk_features.adv_at(self._cache, sb, self._liquidity_window),
                sector=self.sector(symbol),
                returns=self._returns(sb) if self._enforce else None,
                **spread,
                **submission_fields(spread, fill_price(symbol) if fill_price is not None else None),
            )
            result = decide_entry(
                candidate, review.portfolio, self.limits, self.state, self._sizing, enforce=self._enforce
            )
        if self._append(result, symbol, signal, validated, info, review.approvals, review.denials, review.decisions):
            assert candidate is not None  # only the engine approves
            # later candidates of this batch see this entry's cash, exposure and returns (correlation)
            entry = review.approvals[-1].intent.side is Side.BUY
            review.portfolio = apply_approval(
                review.portfolio, review.approvals[-1], self.sector(symbol), candidate.returns if entry else None
            )


@dataclass(slots=True)
class _Review:
    """One iteration's working state while the Risk agent judges its symbols in order."""

    batch: BarsBatch
    account: AccountState
    portfolio: PortfolioView
    state_info: dict[str, Any]
    exits: Mapping[str, tuple[RiskRule, str]]  # due whatever the signal: the rule and why
    quality_gate: bool
    quotes: QuotesResult | None
    returns_added: bool = False
    approvals: list[Approval] = field(default_factory=list)
    denials: list[Denial] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)

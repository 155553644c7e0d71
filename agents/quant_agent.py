"""Quant agent: turns each BUY/SELL signal into a validated confidence from the strategy's own track record.

A thin adapter over the pure engine :mod:`core.quant` (whose docstrings specify the track record, the volatility
regime, the VIF and the confidence formula): on each ``SignalsReady`` it reads the precomputed record and volatility of
each BUY/SELL signal's (symbol, strategy) from the runtime's shared :class:`FrameCache`, memoises the VIF per
(symbol, strategy, decision index), asks :mod:`core.quant` for the assessment, and emits one Decision per symbol and a
``ValidatedReady``. The strategy's signal columns come from the same cache: the arrays the Strategy agent computed for
today's signal (:func:`strategies.frames.signal_arrays`, under the same key, so they are never computed twice), else
the signal frame through :func:`strategies.frames.signal_frame`; the agent is built from the strategy registry and that
cache, never from the Strategy agent.

Review
------
An optional ``review`` hook (an LLM reviewer) receives the deterministic :class:`ValidatedSignal` and returns a
confidence in [0, 1] or ``None`` (abstain). It can only lower confidence: the final value is
``min(deterministic, review)``. A non-number, NaN or value outside [0, 1] is recorded as an invalid review and the
deterministic confidence stands. The hook must turn its own failures (timeouts, bad answers) into ``None``; an
exception it raises propagates (it is a bug, not a vote). Reviews of one iteration run concurrently.

Every component, every factor and both confidences are recorded in the Decision's ``inputs`` and the
ValidatedSignal's ``components`` (plain floats/ints; NaN becomes ``None``).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any
from collections.abc import Awaitable, Callable, Mapping

import numpy as np
import pandas as pd

from core.kernel.domain import Action, BarsBatch, Decision, Signal, ValidatedSignal, frozen_map
from core.kernel.events import DataReady, SignalsReady, ValidatedReady
from core.kernel.frame_cache import FrameCache
from core.quant import (
    Assessment,
    QuantConfig,
    SignalRecord,
    VifResult,
    VolatilityProfile,
    assessment_at,
    components,
    decision_inputs,
    judge_review,
    num,
    reason,
    signal_record,
    vif_at,
    volatility_profile,
)
from core.vocabulary import AgentName, DecisionAction
from strategies.base import Strategy
from strategies.frames import PeersMemo, signal_arrays_key, signal_frame

Review = Callable[[ValidatedSignal], Awaitable[float | None]]


class QuantAgent:
    name = AgentName.QUANT

    def __init__(
        self,
        registry: Mapping[str, Strategy],
        *,
        config: QuantConfig | None = None,
        horizon: int | None = None,
        lookback_signals: int | None = None,
        cache: FrameCache | None = None,
        benchmark_symbol: str = "SPY",
        review: Review | None = None,
        routine_decisions: bool = True,
    ) -> None:
        """``registry``: the registered strategies by name; ``cache``: the runtime's shared frame cache (the Strategy
        agent's, so both read one copy of each signal frame); ``benchmark_symbol``: the Strategy agent's, for the
        peers of a signal frame this agent has to compute itself. ``horizon``/``lookback_signals`` override the same
        fields of ``config`` (kept for the original signature)."""
        config = config or QuantConfig()
        self._routine = routine_decisions  # False: HOLD signals (nothing to validate) leave no decision row
        if horizon is not None:
            config = replace(config, horizon=horizon)
        if lookback_signals is not None:
            config = replace(config, lookback_signals=lookback_signals)
        self._registry = registry
        self._config = config
        self._cache = cache or FrameCache()
        self._peers = PeersMemo(benchmark_symbol)
        self._columns: dict[str, tuple[pd.DataFrame, Mapping[str, np.ndarray]]] = {}  # see _signal_columns
        self._review = review

    @property
    def config(self) -> QuantConfig:
        return self._config

    # ------------------------------------------------------------------------------------------- cached reads

    def _signal_frame(self, batch: BarsBatch, symbol: str, strategy: str) -> pd.DataFrame:
        """The shared cached signal frame of ``strategy`` over ``symbol``'s bars (peers built only on a miss)."""
        return signal_frame(self._cache, batch.bars[symbol], self._registry[strategy], lambda: self._peers(batch.bars))

    def _signal_columns(self, batch: BarsBatch, symbol: str, strategy: str) -> Mapping[str, np.ndarray]:
        """The columns of ``strategy``'s signal frame over ``symbol``'s bars as arrays by column name: the Strategy
        agent's cached arrays when it computed them (the same values and dtypes as the frame's columns; nothing is
        assembled or converted), else the cached signal frame's columns (kept for the symbol's latest frame only: a
        pandas column lookup per feature per signal adds up; older frames are the shared cache's to keep or drop)."""
        sb = batch.bars[symbol]
        arrays: Mapping[str, np.ndarray] | None = self._cache.peek(symbol, signal_arrays_key(strategy), sb.frame)
        if arrays is not None:
            return arrays
        frame = self._signal_frame(batch, symbol, strategy)
        held = self._columns.get(symbol)
        if held is None or held[0] is not frame:
            held = self._columns[symbol] = (frame, {str(c): frame[c].to_numpy() for c in frame.columns})
        return held[1]

    def record_for(self, batch: BarsBatch, symbol: str, strategy: str) -> SignalRecord:
        """The precomputed track record of ``strategy`` on ``symbol`` (once per bars frame)."""
        sb = batch.bars[symbol]
        c = self._config

        def compute() -> SignalRecord:
            actions = self._signal_columns(batch, symbol, strategy)["action"]
            return signal_record(actions, sb.frame["close"].to_numpy(), c.horizon, c.lookback_signals)

        return self._cache.get(symbol, ("quant_record", strategy, c.horizon, c.lookback_signals), sb.frame, compute)

    def volatility_for(self, batch: BarsBatch, symbol: str) -> VolatilityProfile:
        sb = batch.bars[symbol]
        c = self._config
        return self._cache.get(
            symbol,
            ("quant_volatility", c.vol_recent, c.vol_long),
            sb.frame,
            lambda: volatility_profile(sb.frame["close"].to_numpy(), c.vol_recent, c.vol_long),
        )

    def vif_for(self, batch: BarsBatch, signal: Signal, t: int) -> VifResult:
        """VIF of the signal's indicator features over the last ``vif_window`` rows ending at ``t`` (memoised)."""
        sb = batch.bars[signal.symbol]
        names = tuple(signal.indicators)
        memo: dict[tuple[int, tuple[str, ...]], VifResult] = self._cache.get(
            signal.symbol, ("quant_vif", signal.strategy, self._config.vif_window), sb.frame, dict
        )
        key = (t, names)
        hit = memo.get(key)
        if hit is None:
            columns = self._signal_columns(batch, signal.symbol, signal.strategy)
            indicators = {name: columns[f"ind_{name}"] for name in names}
            hit = vif_at(indicators, names, t, window=self._config.vif_window, min_rows=self._config.vif_min_rows)
            memo[key] = hit
        return hit

    def assess(self, batch: BarsBatch, signal: Signal) -> Assessment:
        """The deterministic assessment of ``signal`` at the batch's decision bar for its symbol."""
        t = batch.bars[signal.symbol].end - 1
        return assessment_at(
            self._config,
            self.record_for(batch, signal.symbol, signal.strategy),
            self.volatility_for(batch, signal.symbol),
            self.vif_for(batch, signal, t),
            t,
            signal.strength,
        )

    # ------------------------------------------------------------------------------------------- the stage

    async def _reviewed(self, validated: ValidatedSignal) -> tuple[float | None, str]:
        """(review confidence, status) for one signal; the status says how the review was used."""
        assert self._review is not None
        return judge_review(await self._review(validated), validated.confidence)

    async def on_signals(self, event: SignalsReady) -> ValidatedReady:
        data = event.find(DataReady)
        batch = data.batch if data is not None else None
        assert batch is not None
        decisions: list[Decision | None] = []
        pending: dict[str, tuple[int, ValidatedSignal, dict[str, Any]]] = {}
        for symbol, signal in event.signals.items():
            if signal.action is Action.HOLD:
                if self._routine:
                    decisions.append(
                        Decision(
                            AgentName.QUANT,
                            symbol,
                            DecisionAction.SKIP,
                            "signal is HOLD: nothing to validate",
                            {},
                            strategy=signal.strategy,
                        )
                    )
                continue
            a = self.assess(batch, signal)
            parts = components(self._config, a)
            validated = ValidatedSignal(
                signal=signal,
                confidence=a.confidence,
                components=frozen_map(parts),
                reason=reason(self._config, signal, a),
            )
            inputs = decision_inputs(a, parts)
            pending[symbol] = (len(decisions), validated, inputs)
            decisions.append(None)  # filled below, keeping the signals' order

        reviews: dict[str, tuple[float | None, str]] = {}
        if self._review is not None and pending:
            try:
                async with asyncio.TaskGroup() as group:
                    tasks = {symbol: group.create_task(self._reviewed(v)) for symbol, (_, v, _) in pending.items()}
            except (
                ExceptionGroup
            ) as failures:  # a failing reviewer is a bug: surface its own exception, not the wrapper
                if len(failures.exceptions) == 1:
                    raise failures.exceptions[0] from failures
                raise
            reviews = {symbol: task.result() for symbol, task in tasks.items()}

        validated_out: dict[str, ValidatedSignal] = {}
        for symbol, (slot, validated, inputs) in pending.items():
            review, status = reviews.get(symbol, (None, "no reviewer"))
            final = min(validated.confidence, review) if review is not None else validated.confidence
            parts = {**validated.components, "review_confidence": review, "confidence": num(final)}
            why = validated.reason
            if review is not None and review < validated.confidence:
                why += f"; review lowered it to {final:.2f}"
            out = replace(validated, confidence=final, components=frozen_map(parts), reason=why)
            validated_out[symbol] = out
            decisions[slot] = Decision(
                AgentName.QUANT,
                symbol,
                DecisionAction.VALIDATED,
                why,
                {**inputs, "review_confidence": review, "review_status": status, "confidence": num(final)},
                strategy=validated.signal.strategy,
                confidence=final,
            )
        for symbol, problem in batch.rejected.items():
            decisions.append(Decision(AgentName.QUANT, symbol, DecisionAction.SKIP, f"no usable data: {problem}", {}))
        assert all(d is not None for d in decisions)
        return ValidatedReady(
            iteration_id=event.iteration_id,
            as_of=event.as_of,
            previous=event,
            validated=frozen_map(validated_out),
            decisions=tuple(d for d in decisions if d is not None),
        )

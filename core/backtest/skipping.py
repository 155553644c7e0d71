"""Quiet sessions of a backtest: sessions in which nothing can happen go through a short path with the same records.

A session is **quiet** when, after the Data agent has screened its bars (the real stage, which always runs):

* the Data stage reported nothing: no decision, no degraded reason, no rejected or flagged symbol, some usable bars;
* an earlier iteration was recorded and the latest one ``ok`` (the broker has synced once; nothing carried over
  from a failure);
* the pinned strategy signals HOLD for every usable symbol at the session's bar (read from its precomputed, causal
  signal frame);
* the broker's sync on the session's bars (the Execution agent's own, run first as in every iteration) reported
  nothing: no fill, no order change, no note. Positions may be open and orders working (bracket legs, stops):
  none was reached within the bar;
* the Risk agent decides nothing and changes nothing but its session counters
  (:meth:`agents.risk_agent.RiskAgent.advance_quiet`): no time stop due, the data-quality breaker stays closed, the
  trading state stays ACTIVE with no transition, all on the account after the sync.

A quiet session then skips the Strategy, Quant and Risk stages and the bus: the Execution agent has synced the
broker on the bars (marks, cursors), moves trailing stops and reports the equity with its own code, and the Audit agent
records the iteration from the same chain of events the full pipeline would have built (a HOLD for every usable
symbol, no approval, no order), so the iteration, equity snapshot, report, state and read-model rows are the ones a
full run writes. With ``routine_decisions=False`` (a backtest's default) a quiet session has no decision row in either
mode. With the shadow ledger on, the Strategy agent gives the session's ledger from its cached matrices
(:meth:`agents.strategy_agent.StrategyAgent.shadow_of`): the same rows as its stage would record.

Never quiet (every session goes through the pipeline, as with ``--verify``): the routine decisions recorded
(``--record-all``: HOLD rows per symbol and session), the LLM allowed, no pinned strategy (the selector's choice needs
the market context) or a pinned strategy that reads the benchmark or the universe (its frame depends on the batch it
was first computed with).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from core.kernel.domain import Action, BarsBatch, Signal, frozen_map
from core.kernel.events import ApprovedReady, DataReady, IterationStarted, SignalsReady, ValidatedReady
from strategies.base import Peers, Strategy

__all__ = ["QuietSessions", "skip_blocker"]


def skip_blocker(*, verify: bool, routine_decisions: bool, llm: bool, strategy: Strategy | None) -> str | None:
    """Why no session of this run may be skipped (None when quiet sessions are skipped)."""
    if verify:
        return "verify mode: every session is processed"
    if routine_decisions:
        return "routine decisions are recorded for every symbol and session"
    if llm:
        return "the LLM may select strategies"
    if strategy is None:
        return "no pinned strategy: the selector's choice depends on the session's market context"
    if strategy.needs_benchmark or strategy.needs_universe:
        return f"{strategy.name} reads the benchmark or the universe"
    return None


class QuietSessions:
    """The Data stage's handler of a backtest that skips quiet sessions (see the module docstring).

    Subscribed to ``IterationStarted`` in place of the Data agent's handler (and to ``DataReady`` in place of the
    Execution agent's): it runs the Data agent, returns its ``DataReady`` for the full pipeline, or runs the short
    path and returns nothing. ``skipped`` counts the sessions
    that took the short path."""

    def __init__(self, agents: Mapping[str, Any], broker: Any, strategy: Strategy) -> None:
        self._data = agents["data"]
        self._execution = agents["execution"]
        self._strategy_agent = agents["strategy"]
        self._risk = agents["risk"]
        self._audit = agents["audit"]
        self._broker = broker
        self._strategy = strategy
        self._actions: dict[str, tuple[object, np.ndarray]] = {}  # symbol -> (frame, action codes)
        self._synced: str | None = None  # the iteration whose broker sync on_iteration ran
        self.skipped = 0

    def _actions_of(self, symbol: str, frame: Any) -> np.ndarray:
        held = self._actions.get(symbol)
        if held is None or held[0] is not frame:
            # the strategy reads neither the benchmark nor the universe (skip_blocker): no peers needed
            codes = self._strategy.compute(frame, Peers(benchmark=None, closes=None))["action"].to_numpy()
            held = self._actions[symbol] = (frame, np.asarray(codes, dtype=float))
        return held[1]

    def _all_hold(self, batch: BarsBatch) -> bool:
        for symbol, sb in batch.bars.items():
            if self._actions_of(symbol, sb.frame)[sb.end - 1] != 0:
                return False
        return True

    async def on_iteration(self, event: IterationStarted) -> DataReady | None:
        ready = self._data.on_iteration(event)
        batch = ready.batch
        if (
            ready.decisions
            or ready.degraded
            or batch is None
            or not batch.bars
            or batch.rejected
            or batch.entry_blocked
            or self._audit.last_status != "ok"  # the first iteration, or one after a failure
            or not self._all_hold(batch)
        ):
            return ready
        # the broker syncs on the bars first, as in every iteration (before the Risk stage reads the account)
        self._synced = ready.iteration_id
        await self._execution.on_data(ready)
        synced = self._execution.synced(ready.iteration_id)
        if synced is None or synced.fills or synced.orders or synced.notes:
            return ready
        account = await self._broker.account()
        if not self._risk.advance_quiet(account, batch, event.as_of):
            return ready
        await self._short_path(ready, batch)
        self.skipped += 1
        return None

    async def on_data(self, event: DataReady) -> None:
        """The Execution agent's handler of ``DataReady``, unless :meth:`on_iteration` has already synced the broker
        for this iteration."""
        if event.iteration_id != self._synced:
            await self._execution.on_data(event)

    async def _short_path(self, ready: DataReady, batch: BarsBatch) -> None:
        """The events the full pipeline builds for a quiet session, with the Execution and Audit agents' own work."""
        name = self._strategy.name
        signals = SignalsReady(
            iteration_id=ready.iteration_id,
            as_of=ready.as_of,
            previous=ready,
            signals=frozen_map(
                {
                    s: Signal(s, name, Action.HOLD, 0.0, sb.last_close, ready.as_of, reason=f"{name}: HOLD")
                    for s, sb in batch.bars.items()
                }
            ),
            # the ledger of every strategy, from the Strategy agent's own matrices (the rows its stage would record)
            shadow=self._strategy_agent.shadow_of(batch, name) if self._strategy_agent.records_shadow else (),
        )
        validated = ValidatedReady(iteration_id=ready.iteration_id, as_of=ready.as_of, previous=signals)
        approved = ApprovedReady(iteration_id=ready.iteration_id, as_of=ready.as_of, previous=validated)
        executed = await self._execution.on_approved(approved)
        await self._audit.on_executed(executed)
        self._risk.on_executed(executed)

"""Strategy agent: picks a registered strategy per symbol and computes its signal at the decision time.

Signals are deterministic code. The *choice* of strategy comes from the LLM selector when one is configured (one call
per iteration for all symbols, cached per symbol per session), otherwise from the deterministic, context-aware
selector. An LLM answer that is unusable for a symbol — a name outside the registry, a strategy the symbol lacks the
history or peers for, a missing symbol, a failed call — is recorded as an ABSTAIN decision with its reason and replaced
by the deterministic choice. A circuit breaker switches to deterministic selection after repeated LLM failures and
retries after a cool-down. Every iteration also records the shadow ledger: what every registered strategy would have
signalled for every symbol.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
from loguru import logger

from core.kernel.domain import Action, BarsBatch, Decision, Signal, SymbolBars, datetime_index, frozen_map, utc_from_int
from core.kernel.events import DataReady, SignalsReady
from core.kernel.frame_cache import FrameCache
from core.kernel.shadow import NOT_ELIGIBLE, ShadowBlock
from core.llm import LLMSelector
from core.vocabulary import AgentName, DecisionAction
from strategies.base import ACTION_BY_CODE, Peers, Strategy
from strategies.common import BarData, batch_groups
from strategies.context import MarketContext, context_arrays, context_arrays_many
from strategies.frames import PeersMemo, signal_arrays, signal_arrays_key, signal_frame_key
from strategies.selector import StrategySelector
from utils.circuit_breaker import BreakerEvent, ConsecutiveFailureBreaker, drain_rows


def _column_values(column: pd.Series) -> np.ndarray:
    """A column as a numpy array; a categorical one (the context's regime) as objects that share the category strings
    instead of one new string per row (140 KB per 10-year symbol, 70 MB over 500 symbols)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        categories = np.asarray(column.cat.categories, dtype=object)
        codes = column.cat.codes.to_numpy()
        values = np.empty(len(codes), dtype=object)
        present = codes >= 0
        values[present] = categories[codes[present]]
        values[~present] = np.nan
        return values
    return column.to_numpy()


@dataclass(frozen=True, slots=True)
class _Columns:
    """A computed frame's columns as numpy arrays: reading one row costs microseconds, not a pandas row lookup."""

    index: pd.DatetimeIndex
    arrays: dict[str, np.ndarray]
    stamps: np.ndarray  # index.asi8, read as utc_from_int(stamps[i], unit) without boxing a Timestamp
    unit: str
    indicators: tuple[tuple[str, np.ndarray], ...]  # the "ind_*" columns, by indicator name

    @classmethod
    def of(cls, frame: pd.DataFrame) -> _Columns:
        return cls.from_arrays(frame, {str(c): _column_values(frame[c]) for c in frame.columns})

    @classmethod
    def from_arrays(cls, frame: pd.DataFrame, arrays: dict[str, np.ndarray]) -> _Columns:
        """Columns computed as arrays over ``frame``'s rows (no frame built, no pandas column lookups)."""
        indicators = tuple((name[4:], values) for name, values in arrays.items() if name.startswith("ind_"))
        index = datetime_index(frame)
        return cls(index, arrays, index.asi8, index.unit, indicators)

    def timestamp(self, i: int) -> datetime:
        return utc_from_int(int(self.stamps[i]), self.unit)


@dataclass(frozen=True, slots=True)
class _Choice:
    session: date
    strategy: str
    why: str | Callable[[], str]  # the reason, or how to write it (written only for the decisions that show it)
    source: str  # "llm:<provider>" or "deterministic"
    llm_note: str | None  # the LLM's answer or abstention reason, when one was consulted

    @property
    def reason(self) -> str:
        return self.why if isinstance(self.why, str) else self.why()


def _context_at(symbol: str, ctx: _Columns, i: int) -> MarketContext:
    """Row ``i`` of a cached (causal) context frame as a :class:`MarketContext`."""
    a = ctx.arrays
    return MarketContext(
        symbol=symbol,
        volatility=float(a["volatility"][i]),
        trend_strength=float(a["trend_strength"][i]),
        volume_ratio=float(a["volume_ratio"][i]),
        regime=str(a["regime"][i]),
        as_of=ctx.timestamp(i),
    )


def _signal_at(
    strategy: Strategy, symbol: str, cols: _Columns, i: int, price: float, *, hold_detail: bool = True
) -> Signal:
    """Row ``i`` of a cached signal frame as a :class:`Signal` (same result as ``strategies.base.signal_at``).

    ``hold_detail=False``: a HOLD carries no indicator snapshot and a short reason (a backtest that records no routine
    decisions reads nothing else of a HOLD; formatting 20 symbols' indicators every session is a measurable share)."""
    a = cols.arrays
    action = ACTION_BY_CODE[int(a["action"][i])]
    if action is Action.HOLD and not hold_detail:
        name = strategy.name
        return Signal(
            symbol=symbol,
            strategy=name,
            action=action,
            strength=0.0,
            price=price,
            as_of=cols.timestamp(i),
            reason=f"{name}: HOLD",
        )
    indicators = {}
    for name, values in cols.indicators:
        value = values[i]
        if value == value:  # not NaN
            indicators[name] = float(value)
    stop, target = float(a["stop"][i]), float(a["target"][i])
    return Signal(
        symbol=symbol,
        strategy=strategy.name,
        action=action,
        strength=float(min(max(a["strength"][i], 0.0), 1.0)) if action is not Action.HOLD else 0.0,
        price=price,
        as_of=cols.timestamp(i),
        stop=stop if stop == stop else None,
        target=target if target == target else None,
        indicators=indicators,
        reason=strategy.reason(action, indicators),
    )


@dataclass(frozen=True, slots=True)
class _ShadowMatrix:
    strategies: tuple[tuple[str, int, bool, bool], ...]  # name, min_history, needs_benchmark, needs_universe
    codes: np.ndarray  # strategies x bars, int8 action codes (-1, 0, 1)
    strengths: np.ndarray  # strategies x bars, float strengths


class _Contexts:
    """Each symbol's market context at its decision bar, computed on first use (a HOLD in a backtest needs none)."""

    def __init__(self, batch: BarsBatch, cache: FrameCache) -> None:
        self._batch = batch
        self._cache = cache
        self._done: dict[str, MarketContext] = {}

    def __getitem__(self, symbol: str) -> MarketContext:
        found = self._done.get(symbol)
        if found is None:
            sb = self._batch.bars[symbol]
            ctx = self._cache.get(
                symbol, "context", sb.frame, lambda: _Columns.from_arrays(sb.frame, context_arrays(sb.frame))
            )
            found = self._done[symbol] = _context_at(symbol, ctx, sb.end - 1)
        return found

    def prefill(self, symbols: list[str]) -> None:
        """Compute the context frames the cache lacks for ``symbols`` together, symbols on the same dates in one
        pass (:func:`context_arrays_many`, each bit for bit its own); the rows are then read as before."""
        bars = self._batch.bars
        missing = {
            symbol: bars[symbol].frame
            for symbol in symbols
            if self._cache.peek(symbol, "context", bars[symbol].frame) is None
        }
        if len(missing) < 2:
            return
        for group in batch_groups(missing):
            for chunk in _chunks(group, len(missing[group[0]])):
                if len(chunk) < 2:
                    continue
                frames = [missing[symbol] for symbol in chunk]
                for symbol, frame, arrays in zip(chunk, frames, context_arrays_many(frames), strict=True):
                    columns = _Columns.from_arrays(frame, arrays)
                    self._cache.put(symbol, "context", frame, columns)


KEEP_SIGNAL_FRAMES = 3
# symbols evaluated together (shadow ledger, contexts): numpy's cost on a short series is mostly per call (~1-5 us,
# against ~1 ns per bar), so a live iteration's 500 fresh 300-bar frames are evaluated in stacks of SHADOW_STACK. A
# long frame (a backtest's whole history, computed once per run) gains nothing from stacking and its temporaries would
# grow with the stack: frames over STACK_MAX_BARS are evaluated one by one (measured on the 20-stock, 10-year
# backtest: the same CPU, 48 MB more peak memory when stacked).
SHADOW_STACK = 128
STACK_MAX_BARS = 1_000


def _chunks(group: list[str], bars: int) -> list[list[str]]:
    size = SHADOW_STACK if bars <= STACK_MAX_BARS else 1
    return [group[start : start + size] for start in range(0, len(group), size)]


class StrategyAgent:
    name = AgentName.STRATEGY

    def __init__(
        self,
        registry: Mapping[str, Strategy],
        selector: StrategySelector,
        *,
        benchmark_symbol: str = "SPY",
        cache: FrameCache | None = None,
        llm: LLMSelector | None = None,
        llm_breaker: ConsecutiveFailureBreaker | None = None,
        breaker_events: list[BreakerEvent] | None = None,
        shadow: bool = True,
        routine_decisions: bool = True,
    ) -> None:
        """``breaker_events``: the list the LLM breaker's ``on_transition`` appends to (drained every iteration)."""
        if llm is not None and llm_breaker is None:
            raise ValueError("an LLM selector needs its circuit breaker")
        self._registry = registry
        self._selector = selector
        self._benchmark = benchmark_symbol
        self._cache = cache or FrameCache()
        self._peers = PeersMemo(benchmark_symbol)
        self._llm = llm
        self._breaker = llm_breaker
        self._shadow = shadow
        self._routine = routine_decisions  # False: HOLD signals leave no decision row (a backtest's default)
        self._choices: dict[str, _Choice] = {}
        self._recent: dict[str, list[str]] = {}  # per symbol, the strategies chosen lately, oldest first
        self._breaker_events: list[BreakerEvent] = breaker_events if breaker_events is not None else []

    @property
    def registry(self) -> Mapping[str, Strategy]:
        return self._registry

    @property
    def uses_llm(self) -> bool:
        return self._llm is not None

    def _columns(self, sb: SymbolBars, strategy: Strategy, peers: Peers) -> _Columns:
        return self._cache.get(
            sb.symbol,
            ("signal_columns", strategy.name),
            sb.frame,
            lambda: _Columns.from_arrays(sb.frame, signal_arrays(self._cache, sb, strategy, peers)),
        )

    def _eligible(self, name: str, available: int, has_benchmark: bool, has_universe: bool) -> str | None:
        """Why ``name`` cannot run for a symbol right now, or None when it can."""
        strategy = self._registry.get(name)
        if strategy is None:
            return f"{name!r} is not a registered strategy"
        if strategy.min_history >= available:
            return f"{name} needs more than {strategy.min_history} bars, {available} available"
        if strategy.needs_benchmark and not has_benchmark:
            return f"{name} needs the benchmark {self._benchmark}, which has no usable bars"
        if strategy.needs_universe and not has_universe:
            return f"{name} needs a universe of several symbols"
        return None

    async def _llm_choices(
        self, batch: BarsBatch, contexts: dict[str, MarketContext], pending: list[str], decisions: list[Decision]
    ) -> tuple[dict[str, tuple[str, str, str]], list[dict[str, Any]], dict[str, str]]:
        """Ask the LLM about ``pending`` symbols. Returns (accepted choices, call records, abstention reasons)."""
        assert self._llm is not None and self._breaker is not None
        if not self._breaker.allow():
            reason = f"LLM selection paused by circuit breaker ({self._breaker.reason})"
            for symbol in pending:
                decisions.append(
                    Decision(AgentName.SELECTOR, symbol, DecisionAction.ABSTAIN, reason, {"source": "breaker"})
                )
            return {}, [], {s: reason for s in pending}
        allowed = list(self._registry)
        descriptions = {name: s.description for name, s in self._registry.items()}
        outcome = await self._llm.select({s: contexts[s].as_dict() for s in pending}, allowed, descriptions)
        calls = [{**c.to_dict(), "purpose": "selection"} for c in outcome.calls]
        if any(c.outcome.value in ("ok", "partial") for c in outcome.calls):
            self._breaker.record_success()
        elif outcome.calls and all(c.outcome.value != "budget_exceeded" for c in outcome.calls):
            self._breaker.record_failure("; ".join(sorted({f"{c.provider}: {c.outcome.value}" for c in outcome.calls})))
        accepted: dict[str, tuple[str, str, str]] = {}
        abstained: dict[str, str] = {}
        providers = {c.provider for c in outcome.calls if c.outcome.value in ("ok", "partial")}
        source = "llm:" + ",".join(sorted(providers)) if providers else "llm"
        for symbol in pending:
            choice = outcome.choices.get(symbol)
            if choice is None:
                abstained[symbol] = "the LLM selector returned nothing for this symbol"
            elif choice.abstained or choice.strategy is None:
                abstained[symbol] = choice.reason or "abstained without a reason"
            else:
                sb = batch.bars[symbol]
                problem = self._eligible(choice.strategy, sb.end, *self._peer_flags(batch))
                if problem is not None:
                    abstained[symbol] = f"chose {choice.strategy} but {problem}"
                else:
                    accepted[symbol] = (choice.strategy, f"{source}: {choice.reason}", source)
        for symbol in pending:
            if symbol in accepted:
                decisions.append(
                    Decision(
                        AgentName.SELECTOR,
                        symbol,
                        DecisionAction.CHOSE,
                        accepted[symbol][1],
                        {"strategy": accepted[symbol][0]},
                        strategy=accepted[symbol][0],
                    )
                )
            else:
                decisions.append(
                    Decision(AgentName.SELECTOR, symbol, DecisionAction.ABSTAIN, abstained[symbol], {"source": source})
                )
        return accepted, calls, abstained

    def _peer_flags(self, batch: BarsBatch) -> tuple[bool, bool]:
        peers = self._peers(batch.bars)
        return peers.benchmark is not None, peers.closes is not None and peers.closes.shape[1] > 1

    async def on_data(self, event: DataReady) -> SignalsReady:
        batch = event.batch
        assert batch is not None
        peers = self._peers(batch.bars)
        has_benchmark, has_universe = self._peer_flags(batch)
        signals: dict[str, Signal] = {}
        decisions: list[Decision] = []
        session = event.as_of.date()
        contexts = _Contexts(batch, self._cache)

        pending = [s for s in batch.bars if (c := self._choices.get(s)) is None or c.session != session]
        if self._llm is not None or getattr(self._selector, "needs_context", True):
            contexts.prefill(pending)
        llm_calls: list[dict[str, Any]] = []
        if self._llm is not None and pending:
            accepted, llm_calls, abstained = await self._llm_choices(
                batch, {s: contexts[s] for s in pending}, pending, decisions
            )
        else:
            accepted, abstained = {}, {}
        for symbol in pending:
            if symbol in accepted:
                name, why, source = accepted[symbol]
                self._choices[symbol] = _Choice(session, name, why, source, None)
                continue
            # a selector that ignores the market context (a backtest's fixed strategy) is not handed one
            context = contexts[symbol] if getattr(self._selector, "needs_context", True) else None
            deferred = getattr(self._selector, "choose_deferred", None)
            chooser = deferred if deferred is not None else self._selector.choose
            name, why = chooser(
                context, batch.bars[symbol].end, benchmark_available=has_benchmark, universe_available=has_universe
            )
            note = abstained.get(symbol)
            self._choices[symbol] = _Choice(
                session, name, why, "deterministic", f"LLM abstained: {note}" if note else None
            )

        if self._shadow:
            self._shadow_matrices(batch, peers)
        for symbol, sb in batch.bars.items():
            i = sb.end - 1
            choice = self._choices[symbol]
            strategy = self._registry[choice.strategy]
            signal = _signal_at(
                strategy, symbol, self._columns(sb, strategy, peers), i, sb.last_close, hold_detail=self._routine
            )
            self._keep_recent(symbol, choice.strategy)
            signals[symbol] = signal
            if self._routine or signal.action is not Action.HOLD:
                decisions.append(
                    self._decision(symbol, choice, signal, contexts[symbol], batch.entry_blocked.get(symbol))
                )
        for symbol, reason in batch.rejected.items():
            decisions.append(Decision(AgentName.STRATEGY, symbol, DecisionAction.SKIP, f"no usable data: {reason}", {}))
        for e in self._breaker_events:
            logger.warning("breaker {}: {} -> {} ({})", e.name, e.from_state, e.to_state, e.reason)
        events = drain_rows(self._breaker_events)
        return SignalsReady(
            iteration_id=event.iteration_id,
            as_of=event.as_of,
            previous=event,
            signals=frozen_map(signals),
            decisions=tuple(decisions),
            llm_calls=tuple(llm_calls),
            shadow=self._shadow_block(batch, peers, has_benchmark, has_universe) if self._shadow else (),
            breaker_events=events,
        )

    @staticmethod
    def _decision(
        symbol: str, choice: _Choice, signal: Signal, context: MarketContext, data_flag: str | None = None
    ) -> Decision:
        """``data_flag``: why the symbol's data are flagged (the signal is computed on its last good bar, which
        manages open positions; entries are refused by Risk)."""
        selection = {"source": choice.source, "why": choice.reason}
        if choice.llm_note:
            selection["llm"] = choice.llm_note
        prefix = f"{choice.llm_note}; deterministic fallback " if choice.llm_note else ""
        suffix = (
            f"; on the last good bar {signal.as_of.date()} (data flagged: {data_flag})" if data_flag is not None else ""
        )
        return Decision(
            AgentName.STRATEGY,
            symbol,
            signal.action.value,
            f"{prefix}selected {choice.strategy} ({choice.reason}); {signal.reason}{suffix}",
            {
                **({"data_flag": data_flag} if data_flag is not None else {}),
                "context": context.as_dict(),
                "selection": selection,
                "indicators": dict(signal.indicators),
                "strength": signal.strength,
                "stop": signal.stop,
                "target": signal.target,
                "price": signal.price,
            },
            strategy=choice.strategy,
        )

    def _keep_recent(self, symbol: str, strategy: str) -> None:
        """Keep the full signal frames of the symbol's KEEP_SIGNAL_FRAMES most recently chosen strategies cached, and
        drop older ones: over 500 symbols x 10 years, every strategy a symbol was ever given would otherwise stay in
        memory (a choice that comes back recomputes its frame, in milliseconds)."""
        recent = self._recent.setdefault(symbol, [])
        if recent and recent[-1] == strategy:
            return
        if strategy in recent:
            recent.remove(strategy)
        recent.append(strategy)
        while len(recent) > KEEP_SIGNAL_FRAMES:
            old = recent.pop(0)
            self._cache.discard(symbol, signal_frame_key(old))
            self._cache.discard(symbol, signal_arrays_key(old))
            self._cache.discard(symbol, ("signal_columns", old))

    @property
    def records_shadow(self) -> bool:
        return self._shadow

    def shadow_of(self, batch: BarsBatch, strategy: str) -> ShadowBlock | tuple[()]:
        """The shadow ledger :meth:`on_data` records for ``batch`` when every symbol's strategy is ``strategy`` (a
        backtest's quiet session with a pinned strategy, whose other stages are skipped): the same rows."""
        peers = self._peers(batch.bars)
        has_benchmark, has_universe = self._peer_flags(batch)
        self._shadow_matrices(batch, peers)
        return self._shadow_block(batch, peers, has_benchmark, has_universe, selected=strategy)

    def _shadow_block(
        self, batch: BarsBatch, peers: Peers, has_benchmark: bool, has_universe: bool, *, selected: str | None = None
    ) -> ShadowBlock | tuple[()]:
        """What every eligible registered strategy signals for every symbol at its bar (the shadow ledger): one column
        of each symbol's cached matrix, ineligible strategies (history, peers: the test of _eligible()) marked."""
        bars = batch.bars
        if not bars:
            return ()
        symbols = list(bars)
        matrices: list[_ShadowMatrix] = []
        for symbol, sb in bars.items():
            matrix = self._cache.peek(symbol, "shadow_matrix", sb.frame)
            if matrix is None:
                matrix = self._shadow_matrix(sb, peers)
                self._cache.put(symbol, "shadow_matrix", sb.frame, matrix)
            matrices.append(matrix)
        meta = matrices[0].strategies
        codes = np.empty((len(symbols), len(meta)), dtype=np.int8)
        strengths = np.empty(codes.shape)
        ends = np.empty(len(symbols), dtype=np.int64)
        for r, (sb, matrix) in enumerate(zip(bars.values(), matrices, strict=True)):
            if matrix.strategies != meta:  # never with one registry; kept exact should it happen
                raise ValueError(f"shadow matrices of {symbols[0]} and {sb.symbol} list different strategies")
            i = sb.end - 1
            codes[r] = matrix.codes[:, i]
            strengths[r] = matrix.strengths[:, i]
            ends[r] = sb.end
        min_history = np.array([m[1] for m in meta], dtype=np.int64)
        blocked = np.array([(b and not has_benchmark) or (u and not has_universe) for _, _, b, u in meta], dtype=bool)
        codes[(min_history[None, :] >= ends[:, None]) | blocked[None, :]] = NOT_ELIGIBLE
        chosen = [self._choices[s].strategy for s in symbols] if selected is None else [selected] * len(symbols)
        closes = [sb.last_close for sb in bars.values()]
        return ShadowBlock([m[0] for m in meta], symbols, chosen, closes, codes, strengths)

    def _shadow_matrices(self, batch: BarsBatch, peers: Peers) -> None:
        """Compute the shadow matrices the cache lacks, every strategy over all symbols whose frames share their
        dates at once (:meth:`Strategy.signal_arrays_many`: each symbol's rows bit for bit its own computation; a
        live iteration's 500 fresh frames cost ten evaluations instead of 5,000)."""
        missing = {
            symbol: sb.frame
            for symbol, sb in batch.bars.items()
            if self._cache.peek(symbol, "shadow_matrix", sb.frame) is None
        }
        if len(missing) < 2:
            return
        for symbol in missing:  # a matrix of an older frame is never read again: free it before building the new
            self._cache.discard(symbol, "shadow_matrix")
        meta = tuple(
            (name, s.min_history, bool(s.needs_benchmark), bool(s.needs_universe)) for name, s in self._registry.items()
        )
        chunks = (chunk for group in batch_groups(missing) for chunk in _chunks(group, len(missing[group[0]])))
        for group in chunks:
            if len(group) < 2:
                continue  # computed alone by _shadow_block
            frames = [missing[symbol] for symbol in group]
            data = BarData.stack(frames)
            # symbols x strategies x bars, filled one strategy at a time (only its two columns are kept)
            codes = np.zeros((len(frames), len(meta), len(frames[0])), dtype=np.int8)
            strengths = np.zeros(codes.shape)
            for j, strategy in enumerate(self._registry.values()):
                columns = strategy.signal_matrix(frames, peers, data=data, indicators=False)
                codes[:, j, :] = columns["action"]
                strengths[:, j, :] = columns["strength"]
            for k, symbol in enumerate(group):
                matrix = _ShadowMatrix(meta, codes[k], strengths[k])
                self._cache.put(symbol, "shadow_matrix", frames[k], matrix)

    def _shadow_matrix(self, sb: SymbolBars, peers: Peers) -> _ShadowMatrix:
        """Every registered strategy's action code and strength at every bar of the frame (strategies x bars).

        Only these two columns are kept: a strategy's full signal frame (stops, targets, indicators) stays cached only
        once it is chosen for the symbol, so 500 symbols x 10 strategies of 10-year frames do not all stay in memory.
        """
        strategies, codes, strengths = [], [], []
        data = BarData(sb.frame)  # one extraction and one ATR per length for the ten strategies
        for name, strategy in self._registry.items():
            cols = self._cache.peek(sb.symbol, ("signal_columns", name), sb.frame)
            arrays = (
                cols.arrays
                if cols is not None
                else strategy.signal_arrays(sb.frame, peers, data=data, indicators=False)
            )
            strategies.append(
                (name, strategy.min_history, bool(strategy.needs_benchmark), bool(strategy.needs_universe))
            )
            codes.append(np.asarray(arrays["action"], dtype=np.int8))
            strengths.append(np.asarray(arrays["strength"], dtype=float))
        n = len(sb.frame)
        return _ShadowMatrix(
            tuple(strategies),
            np.vstack(codes) if codes else np.zeros((0, n), dtype=np.int8),
            np.vstack(strengths) if strengths else np.zeros((0, n)),
        )

"""Data agent: loads every symbol's daily bars for the iteration, validates them and publishes ``data_ready``.

Each symbol ends up in one of four places of the :class:`core.kernel.domain.BarsBatch` (see core/data/validation.py for the
rules):

* usable: every rule passes; the strategies may open a position.
* flagged (``entry_blocked``, still in ``bars``): a recent missing or stale bar, a bad bar anywhere in the history,
  or a latest bar awaiting confirmation. No new entry in that symbol, but its open positions are managed as usual
  (exits, stops, targets, trailing stops, marks) on the last good bar, and every decision about it says so. A
  symbol the provider fails to serve is flagged on the last bars it did serve.
* rejected: nothing usable (still warming up with fewer bars than the strategies need, an unreadable frame, or
  never served at all).
* not listed: no bar yet at the decision time; the symbol trades later. Not bad data, not counted anywhere.

The iteration's data quality is the share of listed, warmed-up symbols with no data problem. An iteration in which
no symbol is usable because of data problems is degraded (``DataReady.degraded``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from loguru import logger

from core.kernel.calendar import MarketCalendar
from core.data.base import BarProvider
from core.data import validation as rules
from core.data.validation import DEFAULT_GAP_SESSIONS, BatchValidation, FrameChecks, VisibleCutoff, validate_batch
from core.kernel.domain import (
    NOT_DATA_PROBLEMS,
    NOT_LISTED,
    PROVIDER,
    WARM_UP,
    BarsBatch,
    Decision,
    SymbolBars,
    bar_arrays,
    frozen_map,
)
from core.kernel.events import DataReady, IterationStarted
from core.vocabulary import AgentName, DecisionAction


_ALL_PASSED = BatchValidation(passed={}, rejected={}, quality=1.0)
# the reason category of a symbol with several problems: the most serious one
_PRECEDENCE = (
    rules.LAYOUT,
    rules.INCREASING_TIMESTAMPS,
    rules.FINITE_VALUES,
    rules.POSITIVE_PRICES,
    rules.OHLC_CONSISTENCY,
    rules.NON_NEGATIVE_VOLUME,
    rules.ABSURD_VALUES,
    rules.PRICE_SPIKE,
    rules.PRICE_JUMP,
    rules.NON_SESSION_DATES,
    rules.FRESHNESS,
    rules.MISSING_SESSIONS,
)
_UNUSABLE = frozenset({rules.LAYOUT, rules.INCREASING_TIMESTAMPS})


def _category(found: set[str]) -> str:
    if rules.MIN_HISTORY in found:
        return WARM_UP
    return next((rule for rule in _PRECEDENCE if rule in found), sorted(found)[0])


class DataAgent:
    name = AgentName.DATA

    def __init__(
        self,
        provider: BarProvider,
        symbols: Sequence[str],
        *,
        min_history: int,
        calendar: MarketCalendar | None,
        gap_sessions: int = DEFAULT_GAP_SESSIONS,
        routine_decisions: bool = True,
    ) -> None:
        """``gap_sessions``: sessions during which a missing, stale or off-session bar blocks a symbol's entries.
        ``routine_decisions``: record an "ok" decision for every usable symbol (the daemon does; a backtest may
        record only the exclusions, which carry the information)."""
        if gap_sessions < 1:
            raise ValueError(f"gap_sessions must be at least 1, got {gap_sessions}")
        self._provider = provider
        self._symbols = list(symbols)
        self._min_history = min_history
        self._calendar = calendar
        self._gap_sessions = gap_sessions
        self._frames: dict[str, pd.DataFrame] = {}
        self._arrays: dict[str, Mapping[str, np.ndarray]] = {}
        self._checks: dict[str, FrameChecks | None] = {}
        self._last_end: dict[
            str, tuple[pd.DataFrame, int, int]
        ] = {}  # frame, cutoff day, visible rows: the next search starts there
        self._last_good: dict[str, SymbolBars] = {}  # each symbol's latest managed bars (for a provider failure)
        self._last_category: dict[str, str | None] = {}
        # per symbol, the full validation of a frame whose only problems are bad bars in its history: (frame, key,
        # problems, reason); reused while no new bad bar shows up (re-validating 20 years every session is slow)
        self._history_problems: dict[str, tuple[pd.DataFrame, tuple[int, int, int], list, str]] = {}
        self._routine = routine_decisions
        self.exclusion_counts: Counter[str] = Counter()  # symbol-iterations excluded or flagged, by reason category

    def _stable(self, symbol: str, frame: pd.DataFrame) -> pd.DataFrame:
        """The previous frame object when the provider's bars are unchanged, so per-frame caches downstream hit.

        A provider may hand out a fresh copy every call; comparing costs ~60 µs per symbol, recomputing the
        indicators of a 20-year history costs milliseconds.
        """
        previous = self._frames.get(symbol)
        if previous is not None and (previous is frame or previous.equals(frame)):
            return previous
        self._frames[symbol] = frame
        self._arrays[symbol] = bar_arrays(frame)
        self._checks[symbol] = FrameChecks.of(frame, self._calendar)
        return frame

    def on_iteration(self, event: IterationStarted) -> DataReady:
        as_of = event.as_of
        # the whole history the provider holds: a moving window would defeat the per-frame indicator caches
        result = self._provider.history(self._symbols, end=as_of)
        served_by: Mapping[str, str] = getattr(result, "served_by", {}) or {}
        failed: dict[str, str] = {}
        not_listed: list[str] = []
        to_validate: dict[str, pd.DataFrame] = {}
        known_bad: dict[str, tuple[pd.DataFrame, tuple[int, int, int], list, str]] = {}
        full: dict[str, tuple[pd.DataFrame, int, FrameChecks | None]] = {}
        cutoff = VisibleCutoff.at(as_of, self._calendar)  # once per iteration, not per symbol
        latest = cutoff.latest_session_day
        for symbol in self._symbols:
            frame = result.frames.get(symbol)
            if frame is None:
                failed[symbol] = result.errors.get(symbol, "provider returned no bars")
                continue
            frame = self._stable(symbol, frame)
            checks = self._checks.get(symbol)
            if checks is not None:
                last = self._last_end.get(symbol)
                known = last[2] if last is not None and last[0] is frame and last[1] <= cutoff.cutoff_day else 0
                end = checks.rows_through(cutoff.cutoff_day, known)
                self._last_end[symbol] = (frame, cutoff.cutoff_day, end)
            else:
                end = cutoff.rows(frame.index) if frame.index.is_monotonic_increasing else len(frame)
            if end == 0:
                not_listed.append(symbol)
                continue
            full[symbol] = (frame, end, checks)
            if checks is not None and checks.recent_clean(
                end, min_history=self._min_history, latest_session_day=latest, gap_sessions=self._gap_sessions
            ):
                if checks.history_clean(end):
                    continue  # every rule passes: no need to slice and re-validate
                cached = self._history_problems.get(symbol)
                if cached is not None and cached[0] is frame and cached[1] == checks.history_key(end):
                    known_bad[symbol] = cached  # the same bad bars as last time: the same problems
                    continue
            to_validate[symbol] = frame.iloc[:end] if checks is not None else frame
        checked = (
            validate_batch(
                to_validate,
                as_of=as_of,
                min_history=self._min_history,
                calendar=self._calendar,
                gap_sessions=self._gap_sessions,
            )
            if to_validate
            else _ALL_PASSED
        )
        bars: dict[str, SymbolBars] = {}
        blocked: dict[str, str] = {}
        rejected: dict[str, str] = {}
        categories: dict[str, str] = {}
        decisions: list[Decision] = []
        latest_day: int | None = None
        exact_latest = True
        usable = 0
        not_listed_set = set(not_listed)
        for symbol in self._symbols:
            provider_name = served_by.get(symbol, result.provider or self._provider.name)
            if symbol in not_listed_set:
                categories[symbol] = NOT_LISTED
                if self._routine:
                    decisions.append(
                        Decision(
                            AgentName.DATA,
                            symbol,
                            DecisionAction.NOT_LISTED,
                            "no bar yet: the symbol is not listed at this date",
                            {"provider": provider_name},
                        )
                    )
                continue
            if symbol in failed:
                reason = failed[symbol]
                categories[symbol] = PROVIDER
                previous = self._last_good.get(symbol)
                if previous is None:
                    rejected[symbol] = reason
                    decisions.append(
                        Decision(
                            AgentName.DATA,
                            symbol,
                            DecisionAction.REJECTED,
                            reason,
                            {"provider": provider_name, "category": PROVIDER},
                        )
                    )
                    continue
                sb = previous
                why = f"{reason}; positions managed on the last bars served, up to {sb.last_timestamp.date()}"
                blocked[symbol] = why
                bars[symbol] = sb
                exact_latest = False
                decisions.append(self._flagged(symbol, sb, why, PROVIDER, [PROVIDER]))
                continue
            frame, end, checks = full[symbol]
            problems = checked.problems.get(symbol)
            reason = checked.rejected.get(symbol, "")
            good = checked.ends.get(symbol, 0)
            if symbol in known_bad:
                _, _, problems, reason = known_bad[symbol]
                good = checks.good_end(end) if checks is not None else 0
            elif problems and checks is not None and all(p.rule in rules.BAD_BAR_RULES for p in problems):
                self._history_problems[symbol] = (frame, checks.history_key(end), problems, reason)
            if problems:
                found = {p.rule for p in problems}
                category = _category(found)
                categories[symbol] = category
                if category == WARM_UP or found & _UNUSABLE or checks is None or good <= 0:
                    rejected[symbol] = reason
                    decisions.append(
                        Decision(
                            AgentName.DATA,
                            symbol,
                            DecisionAction.REJECTED,
                            reason,
                            {"provider": provider_name, "bars": end, "rules": sorted(found), "category": category},
                        )
                    )
                    continue
                end = good
                blocked[symbol] = reason
            sb = SymbolBars(symbol=symbol, frame=frame, end=end, provider=provider_name, arrays=self._arrays[symbol])
            bars[symbol] = sb
            self._last_good[symbol] = sb
            if checks is not None:  # the session the batch decides on, from the per-frame day numbers
                day = int(checks.days[end - 1])
                latest_day = day if latest_day is None or day > latest_day else latest_day
            else:
                exact_latest = False  # a frame without per-frame checks: BarsBatch works the day out itself
            if problems:
                decisions.append(
                    self._flagged(symbol, sb, blocked[symbol], categories[symbol], sorted({p.rule for p in problems}))
                )
                continue
            usable += 1
            if not self._routine:
                continue
            decisions.append(
                Decision(
                    AgentName.DATA,
                    symbol,
                    DecisionAction.OK,
                    f"{end} bars up to {sb.last_timestamp.date()} from {provider_name}",
                    {
                        "provider": provider_name,
                        "bars": end,
                        "last_bar": sb.last_timestamp.date().isoformat(),
                        "close": sb.last_close,
                    },
                )
            )
        eligible = usable + sum(1 for c in categories.values() if c not in NOT_DATA_PROBLEMS)
        quality = usable / eligible if eligible else 1.0
        self.exclusion_counts.update(categories.values())
        self._log_changes(categories, rejected, blocked)
        degraded: tuple[str, ...] = ()
        troubled = {s: c for s, c in categories.items() if c not in NOT_DATA_PROBLEMS}
        if troubled and usable == 0:
            by_reason = Counter(troubled.values())
            degraded = (
                "no usable data: no symbol can open a position ("
                + ", ".join(f"{reason} {count}" for reason, count in sorted(by_reason.items()))
                + ")",
            )
        batch = BarsBatch(
            iteration_id=event.iteration_id,
            as_of=as_of,
            bars=frozen_map(bars),
            rejected=frozen_map(rejected),
            data_quality=quality,
            latest_day=latest_day if exact_latest else None,
            entry_blocked=frozen_map(blocked),
            exclusions=frozen_map(categories),
            not_listed=tuple(not_listed),
        )
        return DataReady(
            iteration_id=event.iteration_id,
            as_of=as_of,
            previous=event,
            batch=batch,
            decisions=tuple(decisions),
            degraded=degraded,
        )

    @staticmethod
    def _flagged(symbol: str, sb: SymbolBars, reason: str, category: str, found: list[str]) -> Decision:
        last = sb.last_timestamp.date().isoformat()
        return Decision(
            AgentName.DATA,
            symbol,
            DecisionAction.FLAGGED,
            f"{reason}; no new entries, open positions managed on the bar of {last}",
            {
                "provider": sb.provider,
                "bars": sb.end,
                "last_good_bar": last,
                "close": sb.last_close,
                "rules": found,
                "category": category,
            },
        )

    def _log_changes(
        self, categories: Mapping[str, str], rejected: Mapping[str, str], blocked: Mapping[str, str]
    ) -> None:
        """One warning when a symbol gets a data problem or changes problem, one note when it recovers (not one
        line per symbol and session)."""
        for symbol in self._symbols:
            now = categories.get(symbol)
            before = self._last_category.get(symbol)
            if now == before:
                continue
            self._last_category[symbol] = now
            if now is None:
                if before not in (None, *NOT_DATA_PROBLEMS):
                    logger.info("data: {} usable again", symbol)
            elif now not in NOT_DATA_PROBLEMS:
                if symbol in blocked:
                    logger.warning(
                        "data: {} flagged (no new entries, positions still managed): {}", symbol, blocked[symbol]
                    )
                else:
                    logger.warning("data: {} excluded: {}", symbol, rejected.get(symbol, now))

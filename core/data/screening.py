"""Screening an iteration's bars: which symbols are usable, flagged (entries blocked, positions still managed),
rejected or not listed yet, with the Data agent's decisions about each (the rules are in core/data/validation.py).

:class:`BarScreen` keeps the per-frame memos that make this cheap session after session (the previous frame object
while the provider's bars are unchanged, the per-frame checks, where the last visible-rows search ended, the
validation of a history whose only problems are old bad bars, each symbol's last good bars); ``screen()`` is the
whole per-iteration work. When the same frames come back (a backtest's snapshot: only the decision time moves), a
:class:`_Table` of every frame's verdicts for every visible-row count answers a session for all symbols in a few array
operations; only the symbols it does not find clean go through the per-symbol path. The Data agent adapts it to the
bus.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from core.data import validation as rules
from core.data.base import ProviderResult
from core.data.validation import (
    CLEAN,
    DEFAULT_GAP_SESSIONS,
    NOT_CLEAN,
    RECENT_CLEAN,
    UNDECIDED,
    WARMING,
    BatchValidation,
    FrameChecks,
    Problem,
    VisibleCutoff,
    validate_batch,
    warm_up_problem,
)
from core.kernel.calendar import MarketCalendar
from core.kernel.domain import (
    NOT_DATA_PROBLEMS,
    NOT_LISTED,
    PROVIDER,
    WARM_UP,
    Decision,
    SymbolBars,
    bar_arrays,
    datetime_index,
    known_bars,
)
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

# a history whose only problems are bad bars: (frame, history key, problems, reason)
HistoryProblems = tuple[pd.DataFrame, tuple[int, int, int], list, str]


def category_of(found: set[str]) -> str:
    """The reason category of a symbol whose bars broke the rules in ``found``: the most serious one."""
    if rules.MIN_HISTORY in found:
        return WARM_UP
    return next((rule for rule in _PRECEDENCE if rule in found), sorted(found)[0])


def flagged_decision(symbol: str, sb: SymbolBars, reason: str, category: str, found: list[str]) -> Decision:
    """The decision about a symbol kept on its last good bars with entries blocked."""
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


@dataclass(slots=True)
class _Located:
    """Where each symbol stands before validation."""

    failed: dict[str, str] = field(default_factory=dict)
    not_listed: list[str] = field(default_factory=list)
    to_validate: dict[str, pd.DataFrame] = field(default_factory=dict)
    known_bad: dict[str, HistoryProblems] = field(default_factory=dict)
    full: dict[str, tuple[pd.DataFrame, int, FrameChecks | None]] = field(default_factory=dict)
    clean: set[str] = field(default_factory=set)  # every rule passes: usable without validation
    # too few bars yet and nothing else wrong: the one problem validate_batch would report
    warming: dict[str, list[Problem]] = field(default_factory=dict)


_Frames = tuple[pd.DataFrame | None, ...]  # per symbol of a screen: the (stable) frame served, or None


def _same(a: _Frames, b: _Frames) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


@dataclass(slots=True)
class _Answers:
    """A :class:`_Table`'s answers for one decision time, per symbol of the screen."""

    ends: list[int]  # visible rows (-1 for a symbol the table has no frame of)
    codes: list[int]  # FrameChecks.verdicts' verdict (UNDECIDED for a symbol the table has no frame of)
    closes: list[float]  # the close of the last visible row (meaningful for CLEAN symbols)
    todo: list[int]  # positions of the symbols not CLEAN: screened one by one
    latest_day: int | None  # the latest day the CLEAN symbols show


class _Table:
    """The per-end verdicts (:meth:`FrameChecks.verdicts`) of an unchanged set of frames, stacked across symbols, so
    that a session's visible rows and verdicts for every symbol are a few array operations.

    Built when a screen sees the same frame objects two sessions in a row (a backtest's snapshot, or a provider whose
    bars did not change); a live iteration with fresh bars never pays for it."""

    __slots__ = (
        "frames", "arrays", "_covered", "_whole", "_keys", "_offsets", "_starts", "_verdicts", "_vstarts", "_closes",
    )  # fmt: skip

    def __init__(
        self,
        frames: _Frames,
        checks: Sequence[FrameChecks | None],
        arrays: Sequence[Mapping[str, np.ndarray] | None],
        *,
        min_history: int,
        gap_sessions: int,
    ) -> None:
        self.frames = frames
        self.arrays = tuple(arrays)
        covered: list[int] = []
        tables: list[np.ndarray] = []
        days: list[np.ndarray] = []
        closes: list[np.ndarray] = []
        for i, (frame, check, columns) in enumerate(zip(frames, checks, arrays, strict=True)):
            if frame is not None and check is not None and columns is not None and len(check.days):
                covered.append(i)
                tables.append(check.verdicts(min_history=min_history, gap_sessions=gap_sessions))
                # symbol j's days shifted by j << 32: one sorted array, one search for every symbol's visible rows
                days.append(check.days.astype(np.int64) + (np.int64(len(days)) << 32))
                closes.append(columns["close"])
        count = len(covered)
        self._covered = np.asarray(covered, dtype=np.int64)
        self._whole = 0 < count == len(frames)  # a table of every symbol
        self._offsets = np.arange(count, dtype=np.int64) << 32
        lengths = np.asarray([len(d) for d in days], dtype=np.int64)
        self._starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64) if count else self._offsets
        self._vstarts = self._starts + np.arange(count, dtype=np.int64)  # n + 1 verdicts per symbol
        self._keys = np.concatenate(days) if count else np.zeros(0, np.int64)
        self._verdicts = np.concatenate(tables) if count else np.zeros(0, np.int8)
        self._closes = np.concatenate(closes) if count else np.zeros(0)

    def at(self, cutoff: VisibleCutoff, calendar: bool) -> _Answers | None:
        """The answers at ``cutoff``; None when the table cannot give them (a calendar but no latest session)."""
        latest = cutoff.latest_session_day
        if calendar and latest is None:
            return None
        if not self._whole:
            return self._some_at(cutoff.cutoff_day, latest if calendar else None)
        rows = np.searchsorted(self._keys, self._offsets + cutoff.cutoff_day, side="right") - self._starts
        verdict = self._verdicts[self._vstarts + rows]
        last_row = self._starts + rows - 1  # rows == 0 (the previous symbol's last row): NOT_CLEAN anyway
        last = self._keys[last_row] - self._offsets
        if calendar:  # a latest bar older than the latest completed session is stale
            verdict[last < latest] = NOT_CLEAN
        todo = np.flatnonzero(verdict != CLEAN).tolist()
        if len(todo) == len(verdict):
            latest_day = None
        elif todo:
            latest_day = int(last[verdict == CLEAN].max())
        else:
            latest_day = int(last.max())
        return _Answers(rows.tolist(), verdict.tolist(), self._closes[last_row].tolist(), todo, latest_day)

    def _some_at(self, cutoff_day: int, latest: int | None) -> _Answers:
        """:meth:`at` when some symbols have no frame or no per-frame checks."""
        size = len(self.frames)
        ends = np.full(size, -1, dtype=np.int64)
        codes = np.full(size, UNDECIDED, dtype=np.int8)
        closes = np.zeros(size)
        latest_day = None
        if len(self._covered):
            rows = np.searchsorted(self._keys, self._offsets + cutoff_day, side="right") - self._starts
            verdict = self._verdicts[self._vstarts + rows]
            last_row = self._starts + rows - 1
            last = self._keys[last_row] - self._offsets
            if latest is not None:
                verdict[last < latest] = NOT_CLEAN
            clean = verdict == CLEAN
            if clean.any():
                latest_day = int(last[clean].max())
            ends[self._covered] = rows
            codes[self._covered] = verdict
            closes[self._covered] = self._closes[last_row]
        todo = np.flatnonzero(codes != CLEAN).tolist()
        return _Answers(ends.tolist(), codes.tolist(), closes.tolist(), todo, latest_day)


@dataclass(slots=True)
class Screening:
    """One iteration's outcome: the batch's parts and the Data agent's decisions."""

    bars: dict[str, SymbolBars] = field(default_factory=dict)
    blocked: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    categories: dict[str, str] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)
    not_listed: tuple[str, ...] = ()
    latest_day: int | None = None
    exact_latest: bool = True
    usable: int = 0

    @property
    def quality(self) -> float:
        """Clean symbols over listed, warmed-up symbols (1.0 when there are none)."""
        eligible = self.usable + sum(1 for c in self.categories.values() if c not in NOT_DATA_PROBLEMS)
        return self.usable / eligible if eligible else 1.0

    @property
    def troubled(self) -> dict[str, str]:
        """The symbols with a data problem (not "not listed", not "warming up") and its category."""
        return {s: c for s, c in self.categories.items() if c not in NOT_DATA_PROBLEMS}

    def _see_day(self, checks: FrameChecks | None, end: int) -> None:
        if checks is not None:  # the session the batch decides on, from the per-frame day numbers
            day = int(checks.days[end - 1])
            self.latest_day = day if self.latest_day is None or day > self.latest_day else self.latest_day
        else:
            self.exact_latest = False  # a frame without per-frame checks: BarsBatch works the day out itself


class BarScreen:
    """Screens each iteration's bars for a fixed list of symbols, memoising per frame (see the module docstring)."""

    def __init__(
        self,
        symbols: Sequence[str],
        *,
        min_history: int,
        calendar: MarketCalendar | None,
        gap_sessions: int = DEFAULT_GAP_SESSIONS,
        routine_decisions: bool = True,
    ) -> None:
        if gap_sessions < 1:
            raise ValueError(f"gap_sessions must be at least 1, got {gap_sessions}")
        self._symbols = list(symbols)
        self._min_history = min_history
        self._calendar = calendar
        self._gap_sessions = gap_sessions
        self._routine = routine_decisions
        self._frames: dict[str, pd.DataFrame] = {}
        self._arrays: dict[str, Mapping[str, np.ndarray]] = {}
        self._checks: dict[str, FrameChecks | None] = {}
        # frame, cutoff day, visible rows: the next search starts there
        self._last_end: dict[str, tuple[pd.DataFrame, int, int]] = {}
        self._last_good: dict[str, SymbolBars] = {}  # each symbol's latest managed bars (for a provider failure)
        # per symbol, the full validation of a frame whose only problems are bad bars in its history; reused while
        # no new bad bar shows up (re-validating 20 years every session is slow)
        self._history_problems: dict[str, HistoryProblems] = {}
        self._previous: _Frames = ()  # the frames of the previous iteration
        self._table: _Table | None = None  # the verdicts of frames served unchanged (see _Table)
        self._tables = True  # False: every session by the per-symbol checks (tests compare both)

    @property
    def symbols(self) -> list[str]:
        return list(self._symbols)

    def _stable(self, symbol: str, frame: pd.DataFrame) -> pd.DataFrame:
        """The previous frame object when the provider's bars are unchanged, so per-frame caches downstream hit.

        A provider may hand out a fresh copy every call; comparing costs ~60 µs per symbol, recomputing the
        indicators of a 20-year history costs milliseconds.
        """
        previous = self._frames.get(symbol)
        if previous is not None and (previous is frame or previous.equals(frame)):
            return previous
        self._frames[symbol] = frame
        self._table = None  # built on the frames replaced
        self._arrays[symbol] = bar_arrays(frame)
        self._checks[symbol] = FrameChecks.of(frame, self._calendar)
        return frame

    def screen(self, result: ProviderResult, as_of: datetime, provider_name: str) -> Screening:
        """Screen the provider's ``result`` for the decision at ``as_of``; ``provider_name`` names the source of
        symbols the result does not attribute."""
        cutoff = VisibleCutoff.at(as_of, self._calendar)  # once per iteration, not per symbol
        frames = self._stable_frames(result)
        table = self._table_of(frames)
        answers = table.at(cutoff, self._calendar is not None) if table is not None else None
        located = self._locate(result, frames, cutoff, answers, as_of)
        checked = (
            validate_batch(
                located.to_validate,
                as_of=as_of,
                min_history=self._min_history,
                calendar=self._calendar,
                gap_sessions=self._gap_sessions,
            )
            if located.to_validate
            else _ALL_PASSED
        )
        served_by: Mapping[str, str] = getattr(result, "served_by", {}) or {}
        out = Screening(not_listed=tuple(located.not_listed))
        not_listed = set(located.not_listed)
        clean = located.clean
        default_source = result.provider or provider_name
        codes: list[int] | None = None
        if answers is not None and table is not None:
            # the symbols the table finds clean: their bars straight from its answers
            codes, ends, closes, arrays = answers.codes, answers.ends, answers.closes, table.arrays
            out.latest_day = answers.latest_day
            if not answers.todo and not self._routine and not served_by:  # every symbol clean: nothing to decide
                out.bars = {
                    s: known_bars(s, f, e, default_source, a, c)  # type: ignore[arg-type]
                    for s, f, e, a, c in zip(self._symbols, frames, ends, arrays, closes, strict=True)
                }
                out.usable = len(out.bars)
                self._last_good.update(out.bars)
                return out
        for i, symbol in enumerate(self._symbols):
            source = served_by.get(symbol, default_source) if served_by else default_source
            if codes is not None and codes[i] == CLEAN:
                sb = known_bars(symbol, frames[i], ends[i], source, arrays[i], closes[i])  # type: ignore[arg-type]
                out.bars[symbol] = sb
                out.usable += 1
                if self._routine:
                    out.decisions.append(_ok_decision(symbol, sb, source))
            elif symbol in clean:
                frame, end, checks = located.full[symbol]
                self._usable(out, symbol, source, frame, end, checks)
            elif symbol in not_listed:
                self._not_listed(out, symbol, source)
            elif symbol in located.failed:
                self._failed(out, symbol, located.failed[symbol], source)
            else:
                self._served(out, symbol, source, located, checked)
        self._last_good.update(out.bars)  # each symbol's latest managed bars (a failed one's are already its last)
        return out

    def _stable_frames(self, result: ProviderResult) -> _Frames:
        """Per symbol, the frame served (the previous object when unchanged, see :meth:`_stable`) or None."""
        frames = result.frames
        table = self._table
        if table is not None and all(frames.get(s) is f for s, f in zip(self._symbols, table.frames, strict=True)):
            return table.frames  # the very objects of the table: nothing to compare
        stable = []
        for symbol in self._symbols:
            frame = frames.get(symbol)
            stable.append(None if frame is None else self._stable(symbol, frame))
        return tuple(stable)

    def _table_of(self, frames: _Frames) -> _Table | None:
        """The verdict table of ``frames``: kept while they are unchanged, built when they repeat the previous
        iteration's."""
        if not self._tables:
            return None
        table = self._table
        if table is not None and (table.frames is frames or _same(table.frames, frames)):
            return table
        previous, self._previous = self._previous, frames
        if not _same(previous, frames):
            return None
        served = [(s, f is not None) for s, f in zip(self._symbols, frames, strict=True)]
        self._table = _Table(
            frames,
            [self._checks.get(s) if f else None for s, f in served],
            [self._arrays.get(s) if f else None for s, f in served],
            min_history=self._min_history,
            gap_sessions=self._gap_sessions,
        )
        return self._table

    def _locate(
        self,
        result: ProviderResult,
        frames: _Frames,
        cutoff: VisibleCutoff,
        answers: _Answers | None,
        as_of: datetime,
    ) -> _Located:
        """Split the symbols into failed, not listed, clean (nothing to validate), known-bad (same bad bars as last
        time) and to-validate (sliced to the bars visible at ``cutoff``). ``answers``: the visible rows and verdicts
        of a :class:`_Table` (its CLEAN symbols are left out)."""
        located = _Located()
        latest = cutoff.latest_session_day
        symbols = self._symbols
        ends, codes = (answers.ends, answers.codes) if answers is not None else ([], [])
        for i in answers.todo if answers is not None else range(len(symbols)):  # the table's CLEAN ones: done
            symbol, frame = symbols[i], frames[i]
            if frame is None:
                located.failed[symbol] = result.errors.get(symbol, "provider returned no bars")
                continue
            checks = self._checks.get(symbol)
            end = ends[i] if answers is not None else -1
            if end >= 0:
                code = codes[i]
            elif checks is not None:
                code = UNDECIDED
                last = self._last_end.get(symbol)
                known = last[2] if last is not None and last[0] is frame and last[1] <= cutoff.cutoff_day else 0
                end = checks.rows_through(cutoff.cutoff_day, known)
                self._last_end[symbol] = (frame, cutoff.cutoff_day, end)
            else:
                code = NOT_CLEAN
                end = cutoff.rows(datetime_index(frame)) if frame.index.is_monotonic_increasing else len(frame)
            if end == 0:
                located.not_listed.append(symbol)
                continue
            located.full[symbol] = (frame, end, checks)
            if code == UNDECIDED:
                code = NOT_CLEAN
                if checks is not None and checks.recent_clean(
                    end, min_history=self._min_history, latest_session_day=latest, gap_sessions=self._gap_sessions
                ):
                    code = CLEAN if checks.history_clean(end) else RECENT_CLEAN
            if code == CLEAN:
                located.clean.add(symbol)  # every rule passes: no need to slice and re-validate
                continue
            if code == WARMING and checks is not None:  # what validate_batch would find: only too few bars
                located.warming[symbol] = [
                    warm_up_problem(symbol, end, int(checks.days[end - 1]), as_of, self._min_history)
                ]
                continue
            if code == RECENT_CLEAN and checks is not None:
                cached = self._history_problems.get(symbol)
                if cached is not None and cached[0] is frame and cached[1] == checks.history_key(end):
                    located.known_bad[symbol] = cached  # the same bad bars as last time: the same problems
                    continue
            located.to_validate[symbol] = frame.iloc[:end] if checks is not None else frame
        return located

    def _not_listed(self, out: Screening, symbol: str, source: str) -> None:
        out.categories[symbol] = NOT_LISTED
        if self._routine:
            out.decisions.append(
                Decision(
                    AgentName.DATA,
                    symbol,
                    DecisionAction.NOT_LISTED,
                    "no bar yet: the symbol is not listed at this date",
                    {"provider": source},
                )
            )

    def _failed(self, out: Screening, symbol: str, reason: str, source: str) -> None:
        """A symbol the provider did not serve: rejected, or flagged on the last bars it did serve."""
        out.categories[symbol] = PROVIDER
        previous = self._last_good.get(symbol)
        if previous is None:
            out.rejected[symbol] = reason
            out.decisions.append(
                Decision(
                    AgentName.DATA,
                    symbol,
                    DecisionAction.REJECTED,
                    reason,
                    {"provider": source, "category": PROVIDER},
                )
            )
            return
        why = f"{reason}; positions managed on the last bars served, up to {previous.last_timestamp.date()}"
        out.blocked[symbol] = why
        out.bars[symbol] = previous
        out.exact_latest = False
        out.decisions.append(flagged_decision(symbol, previous, why, PROVIDER, [PROVIDER]))

    def _served(self, out: Screening, symbol: str, source: str, located: _Located, checked: BatchValidation) -> None:
        """A symbol with bars: usable, flagged on its last good bar, or rejected."""
        frame, end, checks = located.full[symbol]
        problems = checked.problems.get(symbol)
        reason = checked.rejected.get(symbol, "")
        good = checked.ends.get(symbol, 0)
        if symbol in located.known_bad:
            _, _, problems, reason = located.known_bad[symbol]
            good = checks.good_end(end) if checks is not None else 0
        elif symbol in located.warming:
            problems = located.warming[symbol]
            reason = "; ".join(p.message for p in problems)
        elif problems and checks is not None and all(p.rule in rules.BAD_BAR_RULES for p in problems):
            self._history_problems[symbol] = (frame, checks.history_key(end), problems, reason)
        found: set[str] = {p.rule for p in problems} if problems else set()
        if problems:
            category = category_of(found)
            out.categories[symbol] = category
            if category == WARM_UP or found & _UNUSABLE or checks is None or good <= 0:
                out.rejected[symbol] = reason
                out.decisions.append(
                    Decision(
                        AgentName.DATA,
                        symbol,
                        DecisionAction.REJECTED,
                        reason,
                        {"provider": source, "bars": end, "rules": sorted(found), "category": category},
                    )
                )
                return
            end = good
            out.blocked[symbol] = reason
        if not problems:
            self._usable(out, symbol, source, frame, end, checks)
            return
        sb = SymbolBars(symbol=symbol, frame=frame, end=end, provider=source, arrays=self._arrays[symbol])
        out.bars[symbol] = sb
        out._see_day(checks, end)
        out.decisions.append(flagged_decision(symbol, sb, out.blocked[symbol], out.categories[symbol], sorted(found)))

    def _usable(
        self, out: Screening, symbol: str, source: str, frame: pd.DataFrame, end: int, checks: FrameChecks | None
    ) -> None:
        """A symbol whose first ``end`` rows pass every rule."""
        sb = SymbolBars(symbol=symbol, frame=frame, end=end, provider=source, arrays=self._arrays[symbol])
        out.bars[symbol] = sb
        out._see_day(checks, end)
        out.usable += 1
        if self._routine:
            out.decisions.append(_ok_decision(symbol, sb, source))


def _ok_decision(symbol: str, sb: SymbolBars, source: str) -> Decision:
    """The routine decision about a usable symbol."""
    return Decision(
        AgentName.DATA,
        symbol,
        DecisionAction.OK,
        f"{sb.end} bars up to {sb.last_timestamp.date()} from {source}",
        {
            "provider": source,
            "bars": sb.end,
            "last_bar": sb.last_timestamp.date().isoformat(),
            "close": sb.last_close,
        },
    )

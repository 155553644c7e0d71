"""Data-quality rules for daily bars, vectorised with numpy over the window that matters.

Only the bars visible at the decision time are checked (a file provider's frame may run past ``as_of``), and of
those only the last ``lookback`` rows: older history has already been used and checked, and re-checking 25 years
per symbol per iteration would dominate a replay. ``min_history`` counts every visible row.

Rules (one :class:`Problem` per broken rule, naming the first offending date and its values):

``layout``              the frame has a tz-aware UTC ``DatetimeIndex`` and the columns open, high, low, close, volume
``finite_values``       no NaN or infinite values
``positive_prices``     open, high, low and close are > 0
``ohlc_consistency``    low <= open, low <= close, open <= high, close <= high (hence low <= high)
``non_negative_volume`` volume >= 0
``increasing_timestamps`` timestamps unique and strictly increasing
``min_history``         at least ``min_history`` visible bars
``missing_sessions``    no exchange session missing among the last ``gap_lookback`` (20) bars (needs a calendar): a
                        feed gap pauses the symbol for a month of sessions, not for the whole 300-bar window
``non_session_dates``   no bar dated on a day the exchange was closed (needs a calendar)
``freshness``           the latest session completed by ``as_of`` is present (needs a calendar)

``validate_batch`` runs each rule once over every symbol's window concatenated (one numpy pass per rule for the whole
universe) and builds messages only for symbols that break a rule; ``validate_bars`` is a batch of one, so both report
identically. A session is completed once its close has passed; without a calendar the visible rows are those dated on or
before ``as_of``'s UTC date and the three calendar rules are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from core.calendar import MarketCalendar
from core.domain import BAR_COLUMNS, ensure_utc

LAYOUT = "layout"
FINITE_VALUES = "finite_values"
POSITIVE_PRICES = "positive_prices"
OHLC_CONSISTENCY = "ohlc_consistency"
NON_NEGATIVE_VOLUME = "non_negative_volume"
INCREASING_TIMESTAMPS = "increasing_timestamps"
MIN_HISTORY = "min_history"
MISSING_SESSIONS = "missing_sessions"
NON_SESSION_DATES = "non_session_dates"
FRESHNESS = "freshness"
RULES = (
    LAYOUT,
    FINITE_VALUES,
    POSITIVE_PRICES,
    OHLC_CONSISTENCY,
    NON_NEGATIVE_VOLUME,
    INCREASING_TIMESTAMPS,
    MIN_HISTORY,
    MISSING_SESSIONS,
    NON_SESSION_DATES,
    FRESHNESS,
)
DEFAULT_LOOKBACK = 300
DEFAULT_GAP_LOOKBACK = 20  # rows in which a missing session rejects the symbol

_EPOCH_DAY = date(1970, 1, 1)
_UNIT_PER_DAY = {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000, "ns": 86_400_000_000_000}
_COLUMNS = list(BAR_COLUMNS)


def day_numbers(index: pd.DatetimeIndex) -> np.ndarray:
    """A UTC bars index as int64 days since 1970-01-01 (the calendar's ``session_days`` unit)."""
    return index.asi8 // _UNIT_PER_DAY[index.unit]
_PRICES = ("open", "high", "low", "close")


@dataclass(frozen=True, slots=True)
class Problem:
    rule: str
    message: str


@dataclass(frozen=True, slots=True)
class BatchValidation:
    """Frames that passed every rule (unchanged, full length), a reason per rejected symbol, and the pass share."""

    passed: Mapping[str, pd.DataFrame]
    rejected: Mapping[str, str]
    quality: float
    problems: Mapping[str, list[Problem]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Context:
    """Per-call facts shared by every symbol of a batch."""

    as_of: datetime
    cutoff_day: int  # last visible session date, days since the epoch
    latest_session_day: int | None  # latest completed session (None without a calendar)
    calendar: MarketCalendar | None
    min_history: int
    lookback: int
    gap_lookback: int = DEFAULT_GAP_LOOKBACK


def _day(value: int) -> date:
    return _EPOCH_DAY + timedelta(days=int(value))


def _context(
    as_of: datetime, calendar: MarketCalendar | None, min_history: int, lookback: int, gap_lookback: int = DEFAULT_GAP_LOOKBACK
) -> _Context:
    ensure_utc(as_of, "as_of")
    if min_history < 0 or lookback < 1 or gap_lookback < 2:
        raise ValueError(
            f"validate_bars: min_history must be >= 0, lookback >= 1 and gap_lookback >= 2, got {min_history}, {lookback}, {gap_lookback}"
        )
    if calendar is None:
        cutoff = (as_of.date() - _EPOCH_DAY).days
        latest = None
    else:
        cutoff = latest = (calendar.previous_completed_session(as_of).date - _EPOCH_DAY).days
    return _Context(as_of, cutoff, latest, calendar, min_history, lookback, gap_lookback)


def visible_rows(index: pd.DatetimeIndex, as_of: datetime, calendar: MarketCalendar | None) -> int:
    """How many leading rows of a sorted bars index are visible at ``as_of`` (sessions completed by then)."""
    ctx = _context(as_of, calendar, 0, 1)
    per_day = _UNIT_PER_DAY[index.unit]
    return int(np.searchsorted(index.asi8, (ctx.cutoff_day + 1) * per_day, side="left"))


def validate_bars(
    symbol: str,
    frame: pd.DataFrame,
    *,
    as_of: datetime,
    min_history: int,
    calendar: MarketCalendar | None,
    lookback: int = DEFAULT_LOOKBACK,
    gap_lookback: int = DEFAULT_GAP_LOOKBACK,
) -> list[Problem]:
    """Every rule ``frame`` breaks as seen at ``as_of`` (an empty list when the bars are usable)."""
    return _validate_many({symbol: frame}, _context(as_of, calendar, min_history, lookback, gap_lookback))[symbol]


def validate_batch(
    frames: Mapping[str, pd.DataFrame],
    *,
    as_of: datetime,
    min_history: int,
    calendar: MarketCalendar | None,
    lookback: int = DEFAULT_LOOKBACK,
    gap_lookback: int = DEFAULT_GAP_LOOKBACK,
) -> BatchValidation:
    """Validate every symbol; ``quality`` is the share that passed (1.0 for an empty batch: nothing failed).

    The rules run once over all symbols' windows concatenated (one numpy pass per rule, not one per symbol);
    messages are built only for the symbols that break a rule.
    """
    found = _validate_many(frames, _context(as_of, calendar, min_history, lookback, gap_lookback))
    passed = {symbol: frame for symbol, frame in frames.items() if not found[symbol]}
    problems = {symbol: items for symbol, items in found.items() if items}
    rejected = {symbol: "; ".join(p.message for p in items) for symbol, items in problems.items()}
    quality = len(passed) / len(frames) if frames else 1.0
    return BatchValidation(passed=passed, rejected=rejected, quality=quality, problems=problems)


@dataclass(frozen=True, slots=True)
class _Window:
    """The checked rows of one symbol: session days (int64 days since the epoch) and float64 OHLCV values."""

    symbol: str
    days: np.ndarray
    values: np.ndarray
    total: int  # every visible row, for min_history


def _extract(symbol: str, frame: pd.DataFrame, ctx: _Context) -> _Window | Problem:
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None or str(index.tz) != "UTC":
        found = type(index).__name__ if not isinstance(index, pd.DatetimeIndex) else f"DatetimeIndex tz={index.tz}"
        return Problem(LAYOUT, f"{symbol} {LAYOUT}: index must be a tz-aware UTC DatetimeIndex, got {found}")
    columns = tuple(frame.columns)
    exact = columns == BAR_COLUMNS
    if not exact:
        missing = [name for name in _COLUMNS if name not in columns]
        if missing:
            return Problem(LAYOUT, f"{symbol} {LAYOUT}: missing column(s) {', '.join(missing)}")

    per_day = _UNIT_PER_DAY[index.unit]
    stamps = index.asi8
    limit = (ctx.cutoff_day + 1) * per_day  # first instant that is not visible
    rows: slice | np.ndarray
    if index.is_monotonic_increasing:
        end = int(np.searchsorted(stamps, limit, side="left"))
        rows = slice(max(0, end - ctx.lookback), end)
        total = end
    else:
        visible = np.flatnonzero(stamps < limit)
        total = len(visible)
        rows = visible[-ctx.lookback :]
    # A frame holding one float64 block hands out a view: no copy of the (possibly 25-year) history.
    values = frame.to_numpy() if exact else frame[_COLUMNS].to_numpy()
    try:
        window = np.asarray(values[rows], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        return Problem(LAYOUT, f"{symbol} {LAYOUT}: columns {', '.join(_COLUMNS)} must be numeric ({exc})")
    return _Window(symbol, stamps[rows] // per_day, window, total)


def _validate_many(frames: Mapping[str, pd.DataFrame], ctx: _Context) -> dict[str, list[Problem]]:
    found: dict[str, list[Problem]] = {symbol: [] for symbol in frames}
    windows: list[_Window] = []
    for symbol, frame in frames.items():
        extracted = _extract(symbol, frame, ctx)
        if isinstance(extracted, Problem):
            found[symbol].append(extracted)
        else:
            windows.append(extracted)
    if not windows:
        return found

    lengths = np.array([len(w.days) for w in windows], dtype=np.int64)
    totals = np.array([w.total for w in windows], dtype=np.int64)
    filled = [i for i, n in enumerate(lengths) if n]
    if filled:
        _row_rules([windows[i] for i in filled], lengths[filled], found)
    for i in np.flatnonzero(totals < ctx.min_history):
        w = windows[i]
        last = f"last bar {_day(w.days[-1])}" if len(w.days) else "no bars"
        found[w.symbol].append(
            Problem(
                MIN_HISTORY,
                f"{w.symbol} {MIN_HISTORY}: {w.total} bar(s) visible as of {ctx.as_of.isoformat()} ({last}), "
                f"need {ctx.min_history}",
            )
        )
    if ctx.calendar is not None and ctx.latest_session_day is not None:
        _calendar_rules(windows, lengths, ctx, ctx.calendar, ctx.latest_session_day, found)
    return found


def _segments(flags: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per symbol (segment of the concatenated rows), whether any row is flagged. Segments are non-empty."""
    return np.logical_or.reduceat(flags, starts)


def _row_rule_flags(values: np.ndarray) -> list[tuple[str, np.ndarray, str, tuple[str, ...]]]:
    """Each row-local rule over OHLCV rows: (rule, rows breaking it, what the message says, columns it shows)."""
    finite = np.isfinite(values)
    prices_finite = finite[:, :4]
    o, h, lo, c, v = values.T
    with np.errstate(invalid="ignore"):
        return [
            (FINITE_VALUES, ~finite.all(axis=1), "with NaN or infinite values", tuple(_COLUMNS)),
            (POSITIVE_PRICES, (prices_finite & (values[:, :4] <= 0)).any(axis=1), "with a price <= 0", _PRICES),
            (
                OHLC_CONSISTENCY,
                prices_finite.all(axis=1) & ((lo > o) | (lo > c) | (o > h) | (c > h) | (lo > h)),
                "breaking low <= open, close <= high",
                _PRICES,
            ),
            (NON_NEGATIVE_VOLUME, finite[:, 4] & (v < 0), "with negative volume", ("volume",)),
        ]


def _row_rules(windows: list[_Window], lengths: np.ndarray, found: dict[str, list[Problem]]) -> None:
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    values = np.concatenate([w.values for w in windows])
    days = np.concatenate([w.days for w in windows])
    rules = _row_rule_flags(values)
    not_after = np.zeros(len(days), dtype=bool)
    not_after[1:] = days[1:] <= days[:-1]
    not_after[starts] = False  # the first row of a symbol has no predecessor in its own window

    broken = {rule: _segments(flags, starts) for rule, flags, _, _ in rules}
    broken_order = _segments(not_after, starts)
    for k in np.flatnonzero(np.logical_or.reduce([*broken.values(), broken_order])):
        w, lo_row, hi_row = windows[k], int(starts[k]), int(starts[k] + lengths[k])
        for rule, flags, what, show in rules:
            if broken[rule][k]:
                bad = flags[lo_row:hi_row]
                i = int(np.argmax(bad))
                shown = ", ".join(f"{name}={float(w.values[i, _COLUMNS.index(name)])!r}" for name in show)
                found[w.symbol].append(
                    Problem(
                        rule,
                        f"{w.symbol} {rule}: {int(np.count_nonzero(bad))} bar(s) {what}; first {_day(w.days[i])} "
                        f"({shown})",
                    )
                )
        if broken_order[k]:
            bad = not_after[lo_row:hi_row]
            i = int(np.argmax(bad))
            kind = "duplicate" if w.days[i] == w.days[i - 1] else "out of order"
            found[w.symbol].append(
                Problem(
                    INCREASING_TIMESTAMPS,
                    f"{w.symbol} {INCREASING_TIMESTAMPS}: {int(np.count_nonzero(bad))} bar(s) not after the previous "
                    f"one; first {_day(w.days[i])} follows {_day(w.days[i - 1])} ({kind})",
                )
            )


def _calendar_rules(
    windows: list[_Window],
    lengths: np.ndarray,
    ctx: _Context,
    calendar: MarketCalendar,
    latest: int,
    found: dict[str, list[Problem]],
) -> None:
    sessions = calendar.session_days
    first_known, last_known = (calendar.start - _EPOCH_DAY).days, (calendar.end - _EPOCH_DAY).days
    filled = np.flatnonzero(lengths)
    if len(filled):
        starts = np.r_[0, np.cumsum(lengths[filled])[:-1]]
        days = np.concatenate([windows[i].days for i in filled])
        known = (days >= first_known) & (days <= last_known)
        position = np.minimum(np.searchsorted(sessions, days), len(sessions) - 1)
        on_session = sessions[position] == days
        off_session = known & ~on_session
        # Missing sessions are looked for among each symbol's gap_lookback latest bars only (by date: each
        # symbol's days sorted, so that an out-of-order window is judged like its sorted self).
        sizes = lengths[filled]
        segment = np.repeat(np.arange(len(sizes)), sizes)
        by_date = days[np.lexsort((days, segment))]
        offset = np.arange(len(days)) - np.repeat(starts, sizes)
        in_gap_sorted = offset >= np.repeat(np.maximum(0, sizes - ctx.gap_lookback), sizes)
        # Days outside the calendar's range cannot be judged: clamp each symbol's span into the known range.
        big, small = np.iinfo(np.int64).max, np.iinfo(np.int64).min
        first = np.clip(np.minimum.reduceat(np.where(in_gap_sorted, by_date, big), starts), first_known, last_known)
        last = np.clip(np.maximum.reduceat(np.where(in_gap_sorted, by_date, small), starts), first_known, last_known)
        expected = np.searchsorted(sessions, last, side="right") - np.searchsorted(sessions, first, side="left")
        known_sorted = (by_date >= first_known) & (by_date <= last_known)
        position_sorted = np.minimum(np.searchsorted(sessions, by_date), len(sessions) - 1)
        on_sorted = known_sorted & (sessions[position_sorted] == by_date)
        present = np.add.reduceat((on_sorted & in_gap_sorted).astype(np.int64), starts)
        suspicious = (present != expected) | _segments(off_session, starts)
        for j in np.flatnonzero(suspicious):
            problems = _session_details(windows[filled[j]], sessions, first_known, last_known, ctx.gap_lookback)
            found[windows[filled[j]].symbol].extend(problems)

    for w in windows:
        if not len(w.days):
            found[w.symbol].append(
                Problem(FRESHNESS, f"{w.symbol} {FRESHNESS}: no bars; latest completed session is {_day(latest)}")
            )
            continue
        last_bar = int(w.days.max())
        if last_bar < latest:
            behind = int(
                np.searchsorted(sessions, latest, side="right") - np.searchsorted(sessions, last_bar, side="right")
            )
            found[w.symbol].append(
                Problem(
                    FRESHNESS,
                    f"{w.symbol} {FRESHNESS}: latest completed session {_day(latest)} (as of {ctx.as_of.isoformat()}) "
                    f"has no bar; last bar {_day(last_bar)}, {behind} session(s) behind",
                )
            )


def _session_details(w: _Window, sessions: np.ndarray, first_known: int, last_known: int, gap_lookback: int) -> list[Problem]:
    """Missing sessions (among the last ``gap_lookback`` rows) and non-session dates (in the whole window) of one
    symbol whose counts did not match the calendar."""
    checked = np.unique(w.days)
    checked = checked[(checked >= first_known) & (checked <= last_known)]
    recent = np.unique(np.sort(w.days)[-gap_lookback:])
    recent = recent[(recent >= first_known) & (recent <= last_known)]
    problems: list[Problem] = []
    if not len(checked):
        return problems
    missing = np.empty(0, dtype=np.int64)
    if len(recent):
        span = sessions[
            int(np.searchsorted(sessions, recent[0], side="left")) : int(np.searchsorted(sessions, recent[-1], "right"))
        ]
        missing = np.setdiff1d(span, recent, assume_unique=True)
    if len(missing):
        problems.append(
            Problem(
                MISSING_SESSIONS,
                f"{w.symbol} {MISSING_SESSIONS}: {len(missing)} session(s) without a bar between "
                f"{_day(recent[0])} and {_day(recent[-1])} (the last {gap_lookback} bars); first {_day(missing[0])}",
            )
        )
    position = np.minimum(np.searchsorted(sessions, checked), len(sessions) - 1)
    extra = checked[sessions[position] != checked]
    if len(extra):
        problems.append(
            Problem(
                NON_SESSION_DATES,
                f"{w.symbol} {NON_SESSION_DATES}: {len(extra)} bar(s) on days the exchange was closed; "
                f"first {_day(extra[0])} ({_day(extra[0]):%A})",
            )
        )
    return problems


# ---------------------------------------------------------------------------------------------- per-frame checks


@dataclass(frozen=True, slots=True)
class FrameChecks:
    """Every row-level rule evaluated once over a whole (immutable) frame, as prefix counts.

    The daemon and the backtester see the same frame grow one visible row per session. Re-running the rules over a
    300-row window every iteration is wasted work: with prefix counts, "does the window ``[end - lookback, end)``
    break any rule?" is a handful of array reads. Only a window that does break a rule goes through
    :func:`validate_batch` again, which builds the exact messages; so results are identical to validating the visible
    rows every time (tested), only cheaper.
    """

    days: np.ndarray  # int64 days since the epoch per row
    bad_rows: np.ndarray  # prefix count of rows breaking a row rule (finite, positive, OHLC, volume)
    not_after: np.ndarray  # prefix count of rows not after their predecessor
    off_session: np.ndarray  # prefix count of rows on a known non-session day
    on_session: np.ndarray  # prefix count of rows on a known session day
    calendar: MarketCalendar | None
    sessions_before: np.ndarray  # per row: sessions strictly before its day (clamped to the calendar's range)
    sessions_through: np.ndarray  # per row: sessions up to and including its day (clamped likewise)

    @classmethod
    def of(cls, frame: pd.DataFrame, calendar: MarketCalendar | None) -> "FrameChecks | None":
        """The checks of ``frame``, or None when it cannot take the fast path (layout problems, unsorted index):
        such frames are validated in full every time, which also reports the problem."""
        index = frame.index
        if not isinstance(index, pd.DatetimeIndex) or index.tz is None or str(index.tz) != "UTC":
            return None
        if tuple(frame.columns) != BAR_COLUMNS or not index.is_monotonic_increasing:
            return None
        try:
            values = np.asarray(frame.to_numpy(), dtype=np.float64)
        except (TypeError, ValueError):
            return None
        days = day_numbers(index)
        bad = np.logical_or.reduce([flags for _, flags, _, _ in _row_rule_flags(values)])
        not_after = np.zeros(len(days), dtype=bool)
        not_after[1:] = days[1:] <= days[:-1]
        if calendar is not None:
            sessions = calendar.session_days
            first_known, last_known = (calendar.start - _EPOCH_DAY).days, (calendar.end - _EPOCH_DAY).days
            known = (days >= first_known) & (days <= last_known)
            position = np.minimum(np.searchsorted(sessions, days), len(sessions) - 1)
            on = sessions[position] == days
            on_session, off_session = known & on, known & ~on
            clamped = np.clip(days, first_known, last_known)
            before = np.searchsorted(sessions, clamped, side="left")
            through = np.searchsorted(sessions, clamped, side="right")
        else:
            on_session = off_session = np.zeros(len(days), dtype=bool)
            before = through = np.zeros(len(days), dtype=np.int64)

        def prefix(flags: np.ndarray) -> np.ndarray:
            out = np.zeros(len(flags) + 1, dtype=np.int32)  # int32: 500 symbols x 25 years stay a few MB
            np.cumsum(flags, out=out[1:])
            return out

        return cls(
            days.astype(np.int32), prefix(bad), prefix(not_after), prefix(off_session), prefix(on_session), calendar,
            before.astype(np.int32), through.astype(np.int32),
        )  # fmt: skip

    def rows_through(self, cutoff_day: int, known: int = 0) -> int:
        """How many leading rows are dated on or before ``cutoff_day`` (:meth:`VisibleCutoff.rows` of this frame).

        ``known``: a row count already known to be dated on or before ``cutoff_day`` (the answer for an earlier
        cutoff): a clock moving a session at a time then costs a step or two instead of a search."""
        days = self.days
        n = len(days)
        end = known
        while end < n and end - known < 4 and days[end] <= cutoff_day:
            end += 1
        if end < n and end - known == 4 and days[end] <= cutoff_day:
            return int(np.searchsorted(days, cutoff_day, side="right"))  # far ahead: search
        return end

    def clean(
        self, end: int, *, min_history: int, lookback: int, latest_session_day: int | None, gap_lookback: int = DEFAULT_GAP_LOOKBACK
    ) -> bool:
        """Whether the first ``end`` rows pass every rule of :func:`validate_batch` (same lookback window)."""
        if end <= 0 or end < min_history:
            return False  # the full validation reports it (or, with no calendar, finds nothing to break)
        lo = max(0, end - lookback)
        if self.bad_rows[end] != self.bad_rows[lo] or self.not_after[end] != self.not_after[lo + 1]:
            return False
        calendar = self.calendar
        if calendar is None or latest_session_day is None:
            return True
        if self.off_session[end] != self.off_session[lo]:
            return False
        # sessions the calendar has between the gap window's first and last day (sorted: its first and last row)
        gap = max(0, end - min(lookback, gap_lookback))
        expected = self.sessions_through[end - 1] - self.sessions_before[gap]
        if self.on_session[end] - self.on_session[gap] != expected:
            return False
        return int(self.days[end - 1]) >= latest_session_day


@dataclass(frozen=True, slots=True)
class VisibleCutoff:
    """What is visible at one decision time, computed once per iteration for every symbol."""

    cutoff_day: int  # last visible day, days since the epoch
    latest_session_day: int | None  # latest completed session (None without a calendar)

    @classmethod
    def at(cls, as_of: datetime, calendar: MarketCalendar | None) -> "VisibleCutoff":
        ctx = _context(as_of, calendar, 0, 1)
        return cls(ctx.cutoff_day, ctx.latest_session_day)

    def rows(self, index: pd.DatetimeIndex) -> int:
        """Same as :func:`visible_rows` for this decision time."""
        return int(np.searchsorted(index.asi8, (self.cutoff_day + 1) * _UNIT_PER_DAY[index.unit], side="left"))


def latest_session_day(as_of: datetime, calendar: MarketCalendar | None) -> int | None:
    """The latest completed session at ``as_of`` in days since the epoch (None without a calendar)."""
    return VisibleCutoff.at(as_of, calendar).latest_session_day

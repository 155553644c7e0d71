"""Data-quality rules for daily bars, vectorised with numpy.

Only the bars visible at the decision time are checked (a file provider's frame may run past ``as_of``), and all of
them: the indicators (ATR's smoothing, long moving averages) read a symbol's whole history, so a corrupt bar anywhere
in it is caught, not only in a recent window. :class:`FrameChecks` keeps that cheap: every rule is evaluated once per
frame as prefix counts, so an iteration asks "is anything wrong up to row ``end``?" in a handful of array reads.

Rules (one :class:`Problem` per broken rule, naming the first offending date and its values). Two kinds:

*Bad bars* (anywhere in the visible history; while one is visible the symbol opens no new positions):

``layout``              the frame has a tz-aware UTC ``DatetimeIndex`` and the columns open, high, low, close, volume
``finite_values``       no NaN or infinite values
``positive_prices``     open, high, low and close are > 0
``ohlc_consistency``    low <= open, low <= close, open <= high, close <= high (hence low <= high)
``non_negative_volume`` volume >= 0
``absurd_values``       prices <= ``MAX_PRICE`` (1e8) and volume <= ``MAX_VOLUME`` (1e14): a 1e300 bar is corrupt
``increasing_timestamps`` timestamps unique and strictly increasing
``price_spike``         no one-bar spike: a close that moves by at least ``SPIKE_MIN_FACTOR`` (3x up or down to a
                        third) *and* ``SPIKE_VOL_MULTIPLE`` (10) times the symbol's mean absolute daily log move over the
                        previous ``SPIKE_VOL_WINDOW`` (20) bars, and whose next close moves back at least half of it (in
                        log terms). Real crashes do not revert the next day like that: the bundled data (AIG's -61% of
                        2008-09-15 included) and the 59-symbol universe raise none.

*Recent problems* (they matter for a few sessions; ``gap_sessions``, 3 by default, the ``DATA_GAP_SESSIONS`` setting):

``price_jump``          the latest bar moves like a spike (above) and the next bar, which would show whether it
                        reverts, is not there yet: the bar is not used until it is confirmed
``missing_sessions``    a session without a bar among the last ``gap_sessions`` exchange sessions (needs a calendar)
``non_session_dates``   a bar dated on a day the exchange was closed, among the bars of those sessions (needs a calendar)
``freshness``           the latest session completed by ``as_of`` has a bar (needs a calendar)
``min_history``         at least ``min_history`` visible bars (a symbol still warming up; not a data problem)

:func:`validate_batch` also says, per symbol, how many leading rows end with the *last good bar* (``ends``): a bad or
unconfirmed latest bar is left out, so held positions are managed and marked on the bar before it. Everything before
the first bar is "not listed yet", which is not a problem at all (the Data agent never validates an empty history).

``validate_batch`` runs each row rule once over every symbol's rows concatenated and builds messages only for symbols
that break a rule; ``validate_bars`` is a batch of one, so both report identically. A session is completed once its
close has passed; without a calendar the visible rows are those dated on or before ``as_of``'s UTC date and the three
calendar rules are skipped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from core.kernel.calendar import MarketCalendar
from core.kernel.domain import BAR_COLUMNS, ensure_utc

LAYOUT = "layout"
FINITE_VALUES = "finite_values"
POSITIVE_PRICES = "positive_prices"
OHLC_CONSISTENCY = "ohlc_consistency"
NON_NEGATIVE_VOLUME = "non_negative_volume"
ABSURD_VALUES = "absurd_values"
INCREASING_TIMESTAMPS = "increasing_timestamps"
PRICE_SPIKE = "price_spike"
PRICE_JUMP = "price_jump"
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
    ABSURD_VALUES,
    INCREASING_TIMESTAMPS,
    PRICE_SPIKE,
    PRICE_JUMP,
    MIN_HISTORY,
    MISSING_SESSIONS,
    NON_SESSION_DATES,
    FRESHNESS,
)
BAD_BAR_RULES = frozenset(
    {
        FINITE_VALUES,
        POSITIVE_PRICES,
        OHLC_CONSISTENCY,
        NON_NEGATIVE_VOLUME,
        ABSURD_VALUES,
        INCREASING_TIMESTAMPS,
        PRICE_SPIKE,
    }
)
DEFAULT_GAP_SESSIONS = 3  # sessions during which a missing, stale or off-session bar blocks the symbol's entries
MAX_PRICE = 1e8
MAX_VOLUME = 1e14
SPIKE_MIN_FACTOR = 3.0
SPIKE_VOL_MULTIPLE = 10.0
SPIKE_VOL_WINDOW = 20
_SPIKE_FLOOR = math.log(SPIKE_MIN_FACTOR)

_EPOCH_DAY = date(1970, 1, 1)
# FrameChecks.verdicts: per visible-row count, which rules pass
CLEAN, RECENT_CLEAN, NOT_CLEAN, UNDECIDED, WARMING = 2, 1, 0, -1, 3
_UNIT_PER_DAY = {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000, "ns": 86_400_000_000_000}
_COLUMNS = list(BAR_COLUMNS)
_PRICES = ("open", "high", "low", "close")


def day_numbers(index: pd.DatetimeIndex) -> np.ndarray:
    """A UTC bars index as int64 days since 1970-01-01 (the calendar's ``session_days`` unit)."""
    return index.asi8 // _UNIT_PER_DAY[index.unit]


@dataclass(frozen=True, slots=True)
class Problem:
    rule: str
    message: str


@dataclass(frozen=True, slots=True)
class BatchValidation:
    """Frames that passed every rule (unchanged, full length), a reason per symbol with a problem, the pass share,
    and for every symbol with a problem the rows through its last good bar (``ends``; 0: none)."""

    passed: Mapping[str, pd.DataFrame]
    rejected: Mapping[str, str]
    quality: float
    problems: Mapping[str, list[Problem]] = field(default_factory=dict)
    ends: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Context:
    """Per-call facts shared by every symbol of a batch."""

    as_of: datetime
    cutoff_day: int  # last visible session date, days since the epoch
    latest_session_day: int | None  # latest completed session (None without a calendar)
    calendar: MarketCalendar | None
    min_history: int
    gap_sessions: int = DEFAULT_GAP_SESSIONS


def _day(value: int) -> date:
    return _EPOCH_DAY + timedelta(days=int(value))


def _context(
    as_of: datetime, calendar: MarketCalendar | None, min_history: int, gap_sessions: int = DEFAULT_GAP_SESSIONS
) -> _Context:
    ensure_utc(as_of, "as_of")
    if min_history < 0 or gap_sessions < 1:
        raise ValueError(
            f"validate_bars: min_history must be >= 0 and gap_sessions >= 1, got {min_history}, {gap_sessions}"
        )
    if calendar is None:
        cutoff = (as_of.date() - _EPOCH_DAY).days
        latest = None
    else:
        cutoff = latest = (calendar.previous_completed_session(as_of).date - _EPOCH_DAY).days
    return _Context(as_of, cutoff, latest, calendar, min_history, gap_sessions)


def visible_rows(index: pd.DatetimeIndex, as_of: datetime, calendar: MarketCalendar | None) -> int:
    """How many leading rows of a sorted bars index are visible at ``as_of`` (sessions completed by then)."""
    ctx = _context(as_of, calendar, 0)
    per_day = _UNIT_PER_DAY[index.unit]
    return int(np.searchsorted(index.asi8, (ctx.cutoff_day + 1) * per_day, side="left"))


def validate_bars(
    symbol: str,
    frame: pd.DataFrame,
    *,
    as_of: datetime,
    min_history: int,
    calendar: MarketCalendar | None,
    gap_sessions: int = DEFAULT_GAP_SESSIONS,
) -> list[Problem]:
    """Every rule ``frame`` breaks as seen at ``as_of`` (an empty list when the bars are usable)."""
    return _validate_many({symbol: frame}, _context(as_of, calendar, min_history, gap_sessions))[0][symbol]


def validate_batch(
    frames: Mapping[str, pd.DataFrame],
    *,
    as_of: datetime,
    min_history: int,
    calendar: MarketCalendar | None,
    gap_sessions: int = DEFAULT_GAP_SESSIONS,
) -> BatchValidation:
    """Validate every symbol; ``quality`` is the share that passed (1.0 for an empty batch: nothing failed).

    The row rules run once over all symbols' rows concatenated (one numpy pass per rule, not one per symbol);
    messages are built only for the symbols that break a rule.
    """
    found, ends = _validate_many(frames, _context(as_of, calendar, min_history, gap_sessions))
    passed = {symbol: frame for symbol, frame in frames.items() if not found[symbol]}
    problems = {symbol: items for symbol, items in found.items() if items}
    rejected = {symbol: "; ".join(p.message for p in items) for symbol, items in problems.items()}
    quality = len(passed) / len(frames) if frames else 1.0
    return BatchValidation(
        passed=passed, rejected=rejected, quality=quality, problems=problems, ends={s: ends.get(s, 0) for s in problems}
    )


@dataclass(frozen=True, slots=True)
class _Window:
    """The visible rows of one symbol: session days (int64 days since the epoch) and float64 OHLCV values."""

    symbol: str
    days: np.ndarray
    values: np.ndarray
    total: int  # every visible row, for min_history
    ordered: bool  # the frame's index is sorted (its visible rows are its leading rows)


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
    ordered = bool(index.is_monotonic_increasing)
    if ordered:
        rows = slice(0, int(np.searchsorted(stamps, limit, side="left")))
    else:
        rows = np.flatnonzero(stamps < limit)
    # A frame holding one float64 block hands out a view: no copy of the history.
    values = frame.to_numpy() if exact else frame[_COLUMNS].to_numpy()
    try:
        window = np.asarray(values[rows], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        return Problem(LAYOUT, f"{symbol} {LAYOUT}: columns {', '.join(_COLUMNS)} must be numeric ({exc})")
    days = stamps[rows] // per_day
    return _Window(symbol, days, window, len(days), ordered)


def warm_up_problem(symbol: str, bars: int, last_day: int | None, as_of: datetime, min_history: int) -> Problem:
    """The :data:`MIN_HISTORY` problem of ``bars`` visible bars, the latest dated ``last_day`` (None: no bars)."""
    last = f"last bar {_day(last_day)}" if last_day is not None else "no bars"
    return Problem(
        MIN_HISTORY,
        f"{symbol} {MIN_HISTORY}: {bars} bar(s) visible as of {as_of.isoformat()} ({last}), need {min_history}",
    )


def _validate_many(
    frames: Mapping[str, pd.DataFrame], ctx: _Context
) -> tuple[dict[str, list[Problem]], dict[str, int]]:
    found: dict[str, list[Problem]] = {symbol: [] for symbol in frames}
    ends: dict[str, int] = {}
    windows: list[_Window] = []
    for symbol, frame in frames.items():
        extracted = _extract(symbol, frame, ctx)
        if isinstance(extracted, Problem):
            found[symbol].append(extracted)
        else:
            windows.append(extracted)
    if not windows:
        return found, ends

    lengths = np.array([len(w.days) for w in windows], dtype=np.int64)
    filled = [i for i, n in enumerate(lengths) if n]
    bad_rows: dict[str, np.ndarray] = {}
    if filled:
        bad_rows = _row_rules([windows[i] for i in filled], lengths[filled], found)
    if filled:
        sized = lengths[filled]
        starts = np.r_[0, np.cumsum(sized)[:-1]]
        spikes, jumps = _moves(np.concatenate([windows[i].values[:, 3] for i in filled]), starts)
        for j, i in enumerate(filled):
            w, lo_row, hi_row = windows[i], int(starts[j]), int(starts[j] + sized[j])
            spike, jump = spikes[lo_row:hi_row], jumps[lo_row:hi_row]
            if spike.any():
                found[w.symbol].append(_spike_problem(w, spike))
            if jump[-1]:
                found[w.symbol].append(_jump_problem(w))
            ends[w.symbol] = _good_end(w, bad_rows.get(w.symbol), spike, jump)
    for w in windows:
        if w.total < ctx.min_history:
            last = int(w.days.max()) if len(w.days) else None
            found[w.symbol].append(warm_up_problem(w.symbol, w.total, last, ctx.as_of, ctx.min_history))
    if ctx.calendar is not None and ctx.latest_session_day is not None:
        suspects = _calendar_suspects(
            [windows[i] for i in filled], lengths[filled], ctx, ctx.calendar, ctx.latest_session_day
        )
        for w in [w for w in windows if not len(w.days)] + [
            windows[i] for i, bad in zip(filled, suspects, strict=False) if bad
        ]:
            found[w.symbol].extend(_calendar_problems(w, ctx, ctx.calendar, ctx.latest_session_day))
    return found, ends


def _calendar_suspects(
    windows: list[_Window], lengths: np.ndarray, ctx: _Context, calendar: MarketCalendar, latest: int
) -> np.ndarray:
    """Per (non-empty) window, whether a calendar rule may be broken: one vectorised pass over every symbol; the
    exact problems are then worked out for the suspects only."""
    if not windows:
        return np.zeros(0, dtype=bool)
    sessions = calendar.session_days
    first_known, last_known = (calendar.start - _EPOCH_DAY).days, (calendar.end - _EPOCH_DAY).days
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    days = np.concatenate([w.days for w in windows])
    first, last = np.minimum.reduceat(days, starts), np.maximum.reduceat(days, starts)
    latest_pos = int(np.searchsorted(sessions, latest, side="right")) - 1
    window_day = int(sessions[max(latest_pos - ctx.gap_sessions + 1, 0)])
    known = (days >= first_known) & (days <= last_known)
    position = np.minimum(np.searchsorted(sessions, days), len(sessions) - 1)
    on = known & (sessions[position] == days)
    recent = days >= window_day
    on_recent = np.add.reduceat((on & recent).astype(np.int64), starts)
    off_recent = np.add.reduceat((known & ~on & recent).astype(np.int64), starts)
    first_pos = np.searchsorted(sessions, np.maximum(first, first_known), side="left")
    expected = latest_pos - np.maximum(np.maximum(latest_pos - ctx.gap_sessions + 1, first_pos), 0) + 1
    return (last < latest) | (off_recent > 0) | (on_recent != expected)


def _good_end(w: _Window, bad: np.ndarray | None, spike: np.ndarray, jump: np.ndarray) -> int:
    """Rows through the last good bar: an unconfirmed jump on the latest bar and any bad bar before it left out."""
    if not w.ordered:
        return 0  # an unsorted frame has no meaningful "first n rows"
    end = len(w.days)
    if end and jump[end - 1]:
        end -= 1
    while end > 0 and ((bad is not None and bad[end - 1]) or spike[end - 1]):
        end -= 1
    return end


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
            (
                ABSURD_VALUES,
                (prices_finite & (values[:, :4] > MAX_PRICE)).any(axis=1) | (finite[:, 4] & (v > MAX_VOLUME)),
                f"with a price above {MAX_PRICE:g} or a volume above {MAX_VOLUME:g}",
                tuple(_COLUMNS),
            ),
        ]


def price_moves(close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a close series (oldest first): ``(spike, jump)``.

    ``jump[i]``: the move into row ``i`` (log of close / previous close) is at least ``ln(SPIKE_MIN_FACTOR)`` and
    ``SPIKE_VOL_MULTIPLE`` times the mean absolute move of the ``SPIKE_VOL_WINDOW`` moves before it (causal), and
    does not itself undo a spike. ``spike[i]``: row ``i`` jumps and row ``i + 1`` moves back at least half of it
    (opposite sign, ``|move_i + move_i+1| <= |move_i| / 2``). Moves into or out of a non-positive or non-finite close
    count as 0 (the row rules report those bars).
    """
    return _moves(close, np.zeros(1, dtype=np.int64))


def _moves(close: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`price_moves` of several series concatenated (``starts``: each series' first row), in one pass."""
    n = len(close)
    spike = np.zeros(n, dtype=bool)
    jump = np.zeros(n, dtype=bool)
    if n < 2:
        return spike, jump
    first = np.zeros(n, dtype=bool)
    first[starts] = True  # a series' first row has no move into it
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(np.where(np.isfinite(close) & (close > 0), close, np.nan))
    move = np.zeros(n)
    move[1:] = logs[1:] - logs[:-1]
    move[first | ~np.isfinite(move)] = 0.0
    size = np.abs(move)
    total = np.concatenate(([0.0], np.cumsum(size)))
    row = np.arange(n)
    lengths = np.diff(np.append(starts, n))
    lo = np.maximum(np.repeat(starts, lengths) + 1, row - SPIKE_VOL_WINDOW)  # the window's first move (a row index)
    count = row - lo
    mean = np.divide(total[row] - total[np.minimum(lo, n)], count, out=np.zeros(n), where=count > 0)
    big = ~first & (size >= np.maximum(_SPIKE_FLOOR, SPIKE_VOL_MULTIPLE * mean))
    spike[:-1] = big[:-1] & ~first[1:] & (move[:-1] * move[1:] < 0) & (np.abs(move[:-1] + move[1:]) <= 0.5 * size[:-1])
    undoes = np.zeros(n, dtype=bool)
    undoes[1:] = spike[:-1] & ~first[1:]  # this move takes back the previous row's spike
    jump[:] = big & ~undoes
    return spike, jump


def _spike_problem(w: _Window, spike: np.ndarray) -> Problem:
    i = int(np.argmax(spike))
    close = w.values[:, 3]
    return Problem(
        PRICE_SPIKE,
        f"{w.symbol} {PRICE_SPIKE}: {int(np.count_nonzero(spike))} bar(s) whose close jumps and reverts the next bar; "
        f"first {_day(w.days[i])} (close={float(close[i])!r} after {float(close[i - 1])!r}, then {float(close[i + 1])!r})",
    )


def _jump_problem(w: _Window) -> Problem:
    close = w.values[:, 3]
    return Problem(
        PRICE_JUMP,
        f"{w.symbol} {PRICE_JUMP}: the latest bar {_day(w.days[-1])} moves the close {float(close[-2])!r} -> "
        f"{float(close[-1])!r}, a one-bar spike unless the next bar confirms it; not used until then",
    )


def _row_rules(windows: list[_Window], lengths: np.ndarray, found: dict[str, list[Problem]]) -> dict[str, np.ndarray]:
    """Report the row rules; returns, for symbols with a bad row, which of their rows are bad."""
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    values = np.concatenate([w.values for w in windows])
    days = np.concatenate([w.days for w in windows])
    rules = _row_rule_flags(values)
    not_after = np.zeros(len(days), dtype=bool)
    not_after[1:] = days[1:] <= days[:-1]
    not_after[starts] = False  # the first row of a symbol has no predecessor in its own window

    broken = {rule: _segments(flags, starts) for rule, flags, _, _ in rules}
    broken_order = _segments(not_after, starts)
    bad_rows: dict[str, np.ndarray] = {}
    for k in np.flatnonzero(np.logical_or.reduce([*broken.values(), broken_order])):
        w, lo_row, hi_row = windows[k], int(starts[k]), int(starts[k] + lengths[k])
        bad_rows[w.symbol] = np.logical_or.reduce([flags[lo_row:hi_row] for _, flags, _, _ in rules])
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
    return bad_rows


def _calendar_problems(w: _Window, ctx: _Context, calendar: MarketCalendar, latest: int) -> list[Problem]:
    """Freshness, and missing sessions and off-session bars among the last ``gap_sessions`` sessions."""
    if not len(w.days):
        return [Problem(FRESHNESS, f"{w.symbol} {FRESHNESS}: no bars; latest completed session is {_day(latest)}")]
    sessions = calendar.session_days
    first_known, last_known = (calendar.start - _EPOCH_DAY).days, (calendar.end - _EPOCH_DAY).days
    days = np.unique(w.days)  # sorted, duplicates reported by increasing_timestamps
    first_bar, last_bar = int(days[0]), int(days[-1])
    problems: list[Problem] = []
    latest_pos = int(np.searchsorted(sessions, latest, side="right")) - 1
    first_pos = int(np.searchsorted(sessions, max(first_bar, first_known), side="left"))
    window_pos = max(latest_pos - ctx.gap_sessions + 1, first_pos, 0)  # the window's first session with a bar due
    recent = days[days >= int(sessions[max(latest_pos - ctx.gap_sessions + 1, 0)])]
    span = sessions[window_pos : int(np.searchsorted(sessions, min(last_bar, latest), side="right"))]
    missing = np.setdiff1d(span, recent, assume_unique=True)
    if len(missing):
        problems.append(
            Problem(
                MISSING_SESSIONS,
                f"{w.symbol} {MISSING_SESSIONS}: {len(missing)} session(s) without a bar among the last "
                f"{ctx.gap_sessions} sessions up to {_day(latest)}; first {_day(missing[0])}",
            )
        )
    known = recent[(recent >= first_known) & (recent <= last_known)]
    position = np.minimum(np.searchsorted(sessions, known), len(sessions) - 1)
    extra = known[sessions[position] != known]
    if len(extra):
        problems.append(
            Problem(
                NON_SESSION_DATES,
                f"{w.symbol} {NON_SESSION_DATES}: {len(extra)} bar(s) on days the exchange was closed among the last "
                f"{ctx.gap_sessions} sessions; first {_day(extra[0])} ({_day(extra[0]):%A})",
            )
        )
    if last_bar < latest:
        behind = int(
            np.searchsorted(sessions, latest, side="right") - np.searchsorted(sessions, last_bar, side="right")
        )
        problems.append(
            Problem(
                FRESHNESS,
                f"{w.symbol} {FRESHNESS}: latest completed session {_day(latest)} (as of {ctx.as_of.isoformat()}) "
                f"has no bar; last bar {_day(last_bar)}, {behind} session(s) behind",
            )
        )
    return problems


# ---------------------------------------------------------------------------------------------- per-frame checks


@dataclass(frozen=True, slots=True)
class FrameChecks:
    """Every rule evaluated once over a whole (immutable) frame, as prefix counts.

    The daemon and the backtester see the same frame grow one visible row per session. With prefix counts, "do the
    first ``end`` rows break any rule?" is a handful of array reads, however long the history. Only a frame that does
    break a rule goes through :func:`validate_batch` again, which builds the exact messages; so results are identical
    to validating the visible rows every time (tested), only cheaper.
    """

    days: np.ndarray  # int32 days since the epoch per row
    bad_rows: np.ndarray  # prefix count of rows breaking a row rule (finite, positive, OHLC, volume, absurd)
    spikes: np.ndarray  # prefix count of spike rows (a spike at row i is known once row i + 1 is visible)
    jumps: np.ndarray  # per row: the move into it jumps (a spike unless the next row shows otherwise)
    not_after: np.ndarray  # prefix count of rows not after their predecessor
    off_session: np.ndarray  # prefix count of rows on a known non-session day
    on_session: np.ndarray  # prefix count of rows on a known session day
    calendar: MarketCalendar | None
    session_pos: np.ndarray  # per row: index of the first calendar session on or after its day (clamped)

    @classmethod
    def of(cls, frame: pd.DataFrame, calendar: MarketCalendar | None) -> FrameChecks | None:
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
        spike, jump = price_moves(values[:, 3])
        not_after = np.zeros(len(days), dtype=bool)
        not_after[1:] = days[1:] <= days[:-1]
        if calendar is not None:
            sessions = calendar.session_days
            first_known, last_known = (calendar.start - _EPOCH_DAY).days, (calendar.end - _EPOCH_DAY).days
            known = (days >= first_known) & (days <= last_known)
            position = np.minimum(np.searchsorted(sessions, days), len(sessions) - 1)
            on = sessions[position] == days
            on_session, off_session = known & on, known & ~on
            session_pos = np.searchsorted(sessions, np.clip(days, first_known, last_known), side="left")
        else:
            on_session = off_session = np.zeros(len(days), dtype=bool)
            session_pos = np.zeros(len(days), dtype=np.int64)

        def prefix(flags: np.ndarray) -> np.ndarray:
            out = np.zeros(len(flags) + 1, dtype=np.int32)  # int32: 500 symbols x 25 years stay a few MB
            np.cumsum(flags, out=out[1:])
            return out

        return cls(
            days.astype(np.int32), prefix(bad), prefix(spike), jump, prefix(not_after), prefix(off_session),
            prefix(on_session), calendar, session_pos.astype(np.int32),
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
        self, end: int, *, min_history: int, latest_session_day: int | None, gap_sessions: int = DEFAULT_GAP_SESSIONS
    ) -> bool:
        """Whether the first ``end`` rows pass every rule of :func:`validate_batch`."""
        return self.history_clean(end) and self.recent_clean(
            end, min_history=min_history, latest_session_day=latest_session_day, gap_sessions=gap_sessions
        )

    def history_clean(self, end: int) -> bool:
        """No bad bar (row rules, order, a confirmed spike) among the first ``end`` rows."""
        return end > 0 and not (self.bad_rows[end] or self.not_after[end] or self.spikes[end - 1])

    def history_key(self, end: int) -> tuple[int, int, int]:
        """What the bad-bar messages of the first ``end`` rows depend on: the same key, the same messages."""
        return int(self.bad_rows[end]), int(self.spikes[end - 1]), int(self.not_after[end])

    def recent_clean(
        self, end: int, *, min_history: int, latest_session_day: int | None, gap_sessions: int = DEFAULT_GAP_SESSIONS
    ) -> bool:
        """Whether the rules about the latest rows pass: enough history, no unconfirmed jump, and (with a calendar)
        a bar for each of the last ``gap_sessions`` sessions and none on a closed day among them."""
        if end <= 0 or end < min_history or self.jumps[end - 1]:
            return False  # the full validation reports it (or, with no calendar, finds nothing to break)
        calendar = self.calendar
        if calendar is None or latest_session_day is None:
            return True
        if int(self.days[end - 1]) < latest_session_day:
            return False  # stale
        # the last gap_sessions sessions (from the first bar at the earliest) each have exactly one bar
        latest_pos = int(self.session_pos[end - 1])
        window_pos = max(latest_pos - gap_sessions + 1, int(self.session_pos[0]), 0)
        window_day = int(calendar.session_days[max(latest_pos - gap_sessions + 1, 0)])
        days, k = self.days, end
        while k > 0 and days[k - 1] >= window_day:  # a few rows back: no search through the whole history
            k -= 1
        if self.off_session[end] != self.off_session[k]:
            return False
        return int(self.on_session[end] - self.on_session[k]) == latest_pos - window_pos + 1

    def verdicts(self, *, min_history: int, gap_sessions: int = DEFAULT_GAP_SESSIONS) -> np.ndarray:
        """:meth:`history_clean` and :meth:`recent_clean` for every ``end`` of the frame at once (``int8``, one entry
        per ``end`` from 0 to the frame's length), for a decision whose latest completed session is the day of row
        ``end - 1`` or earlier (``days[end - 1] >= latest_session_day``, or no calendar):

        * :data:`CLEAN` (2): both pass, every rule of :func:`validate_batch` does;
        * :data:`RECENT_CLEAN` (1): the recent rules pass, a bad bar lies in the history;
        * :data:`WARMING` (3): fewer than ``min_history`` rows, every other rule passes (the only problem
          :func:`validate_batch` reports is :func:`warm_up_problem`);
        * :data:`NOT_CLEAN` (0): a recent rule fails;
        * :data:`UNDECIDED` (-1): an edge the table does not cover (a bar after the calendar's last session): ask
          :meth:`recent_clean` and :meth:`history_clean`.

        A decision with a later latest completed session has a stale latest bar: its recent rules fail whatever the
        table says. Computed once per frame, each ``end`` is then an array read instead of the two calls (equal for
        every ``end``: tested)."""
        n = len(self.days)
        out = np.zeros(n + 1, dtype=np.int8)
        if n == 0:
            return out
        ends = np.arange(1, n + 1)
        recent = ~self.jumps.astype(bool)  # and enough history: below
        undecided = np.zeros(n, dtype=bool)
        calendar = self.calendar
        if calendar is not None:
            sessions = calendar.session_days
            latest_pos = self.session_pos.astype(np.int64)  # per end: the session of row end - 1
            first = latest_pos - gap_sessions + 1
            window_pos = np.maximum(np.maximum(first, int(self.session_pos[0])), 0)
            window_at = np.maximum(first, 0)
            undecided = window_at >= len(sessions)  # recent_clean would fail to read the calendar there
            window_day = sessions[np.where(undecided, 0, window_at)]
            # the first of the last rows dated on or after the window's first day (days are sorted)
            k = np.minimum(np.searchsorted(self.days, window_day, side="left"), ends)
            on = self.on_session.astype(np.int64)
            recent &= (self.off_session[ends] == self.off_session[k]) & (
                on[ends] - on[k] == latest_pos - window_pos + 1
            )
        history = (self.bad_rows[1:] == 0) & (self.not_after[1:] == 0) & (self.spikes[:-1] == 0)
        passed = np.where(
            ends >= min_history, np.where(history, CLEAN, RECENT_CLEAN), np.where(history, WARMING, NOT_CLEAN)
        )
        out[1:] = np.where(undecided, UNDECIDED, np.where(recent, passed, NOT_CLEAN))
        return out

    def good_end(self, end: int) -> int:
        """Rows through the last good bar among the first ``end`` (as :func:`validate_batch`'s ``ends``)."""
        visible = end
        if end > 0 and self.jumps[end - 1]:
            end -= 1
        # a spike at row j is known only once row j + 1 is visible
        while end > 0 and (
            self.bad_rows[end] != self.bad_rows[end - 1] or (end < visible and self.spikes[end] != self.spikes[end - 1])
        ):
            end -= 1
        return end


@dataclass(frozen=True, slots=True)
class VisibleCutoff:
    """What is visible at one decision time, computed once per iteration for every symbol."""

    cutoff_day: int  # last visible day, days since the epoch
    latest_session_day: int | None  # latest completed session (None without a calendar)

    @classmethod
    def at(cls, as_of: datetime, calendar: MarketCalendar | None) -> VisibleCutoff:
        ctx = _context(as_of, calendar, 0)
        return cls(ctx.cutoff_day, ctx.latest_session_day)

    def rows(self, index: pd.DatetimeIndex) -> int:
        """Same as :func:`visible_rows` for this decision time."""
        return int(np.searchsorted(index.asi8, (self.cutoff_day + 1) * _UNIT_PER_DAY[index.unit], side="left"))


def latest_session_day(as_of: datetime, calendar: MarketCalendar | None) -> int | None:
    """The latest completed session at ``as_of`` in days since the epoch (None without a calendar)."""
    return VisibleCutoff.at(as_of, calendar).latest_session_day

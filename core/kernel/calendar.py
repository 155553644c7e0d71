"""The NYSE market calendar: sessions, open/close times in UTC, early closes, and the daemon's next run time.

``MarketCalendar`` wraps ``exchange_calendars``' XNYS calendar. Building that calendar takes a noticeable fraction
of a second, so build one ``MarketCalendar`` in the composition root (or a session-scoped test fixture) and pass it
to whoever needs it. On construction the schedule is copied into sorted numpy arrays, so every query afterwards is
a binary search (microseconds) and never touches pandas.

All inputs and outputs are timezone-aware UTC datetimes or plain ``date`` objects naming a session; Eastern time is
only produced by the rendering helpers. Nothing in here reads the wall clock: the time is always passed in.
"""

from __future__ import annotations

import functools
import os
import tempfile
import warnings
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import numpy as np
import pandas as pd

from core.kernel.domain import ensure_utc
from core.errors import ConfigurationError

EASTERN = ZoneInfo("America/New_York")
DEFAULT_START = date(1990, 1, 1)
DEFAULT_END = date(2040, 12, 31)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NS_PER_US = 1_000
_NS_PER_DAY = 86_400 * 1_000_000_000


class CalendarError(ConfigurationError, ValueError):
    """A calendar query that cannot be answered (a date outside the calendar's range, or not a session)."""


@dataclass(frozen=True, slots=True)
class Session:
    """One trading session: its date and its open and close as timezone-aware UTC datetimes."""

    date: date
    open_utc: datetime
    close_utc: datetime
    early_close: bool

    @property
    def open_eastern(self) -> datetime:
        return self.open_utc.astimezone(EASTERN)

    @property
    def close_eastern(self) -> datetime:
        return self.close_utc.astimezone(EASTERN)

    @property
    def timestamp(self) -> pd.Timestamp:
        """The session's bar timestamp in the normalised bars layout (UTC midnight of the session date)."""
        return pd.Timestamp(self.date.isoformat(), tz=UTC)

    def describe(self) -> str:
        """E.g. ``2025-11-28 09:30-13:00 EST (early close)``."""
        suffix = " (early close)" if self.early_close else ""
        return (
            f"{self.date.isoformat()} {self.open_eastern:%H:%M}-{self.close_eastern:%H:%M} "
            f"{self.close_eastern.tzname()}{suffix}"
        )


def _to_ns(at: datetime, name: str) -> int:
    """Nanoseconds since the Unix epoch of a UTC-aware datetime (exact integer arithmetic, no float rounding)."""
    ensure_utc(at, name)
    delta = at - _EPOCH
    return (delta // timedelta(microseconds=1)) * _NS_PER_US + getattr(at, "nanosecond", 0)


def _from_ns(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(value) // _NS_PER_US)


def _utc_ns(values: pd.Series) -> np.ndarray:
    """A tz-aware UTC datetime Series as int64 nanoseconds since the epoch."""
    return values.dt.tz_convert(None).to_numpy().astype("datetime64[ns]").astype(np.int64)


def to_eastern(at: datetime) -> datetime:
    """The same instant in New York local time."""
    return ensure_utc(at, "at").astimezone(EASTERN)


def format_eastern(at: datetime) -> str:
    """Render a UTC instant in New York time for logs and reports, e.g. ``2025-11-28 13:00 EST``."""
    local = to_eastern(at)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def _build_schedule(exchange: str, start: date, end: date) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    with warnings.catch_warnings():
        # exchange_calendars 4.x reads ``Series.values`` on tz-aware series, which pandas 3.1 deprecates;
        # the values it gets are still correct UTC instants. Silence exactly that notice, only while building.
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray that drops timezone")
        calendar = xcals.get_calendar(exchange, start=start.isoformat(), end=end.isoformat())
    # Session dates as int64 days since the epoch; opens/closes as int64 nanoseconds since the epoch (UTC).
    days = calendar.sessions.values.astype("datetime64[D]").astype(np.int64)
    opens = _utc_ns(calendar.opens)
    closes = _utc_ns(calendar.closes)
    early_days = calendar.early_closes.values.astype("datetime64[D]").astype(np.int64)
    early = np.isin(days, early_days)
    return days, opens, closes, early


def _schedule_file(directory: Path, exchange: str, start: date, end: date) -> Path:
    return directory / f"{exchange}-{start.isoformat()}-{end.isoformat()}-xcals{xcals.__version__}.npz"


def _load_schedule(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = (stored["days"], stored["opens"], stored["closes"], stored["early"])
    except (OSError, KeyError, ValueError):
        return None
    days, opens, closes, early = arrays
    if not (len(days) == len(opens) == len(closes) == len(early)) or days.dtype != np.int64 or early.dtype != bool:
        return None
    return days, opens, closes, early


def _store_schedule(path: Path, arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> None:
    """Atomic (temporary file, then ``os.replace``); a directory that cannot be written is skipped silently."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    except OSError:
        return
    try:
        with os.fdopen(descriptor, "wb") as handle:
            days, opens, closes, early = arrays
            np.savez(handle, days=days, opens=opens, closes=closes, early=early)
        os.replace(name, path)
    except OSError:
        Path(name).unlink(missing_ok=True)


@functools.lru_cache(maxsize=8)
def _schedule(
    exchange: str, start: date, end: date, cache_dir: Path | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, pd.DatetimeIndex]:
    """The exchange's sessions between ``start`` and ``end`` as read-only arrays (see :class:`MarketCalendar`).

    Building an exchange_calendars calendar takes 0.15-0.3 s; the arrays are immutable, so every MarketCalendar of the
    same range in a process shares one copy (a backtest builds its own; tests build many). With ``cache_dir`` the
    arrays are also kept on disk, keyed by exchange, range and exchange_calendars version, so a later process reads
    them in a millisecond instead of building the calendar again."""
    path = _schedule_file(cache_dir, exchange, start, end) if cache_dir is not None else None
    arrays = _load_schedule(path) if path is not None else None
    if arrays is None:
        arrays = _build_schedule(exchange, start, end)
        if path is not None:
            _store_schedule(path, arrays)
    days, opens, closes, early = arrays
    for array in arrays:
        array.setflags(write=False)
    index = pd.DatetimeIndex(days.astype("datetime64[D]").astype("datetime64[ns]"), name="timestamp").tz_localize(UTC)
    return days, opens, closes, early, index


class MarketCalendar:
    """NYSE (XNYS) sessions between ``start`` and ``end`` inclusive.

    Queries outside that range raise :class:`CalendarError` naming the range, instead of silently answering
    "closed". The default range covers the bundled 1998 sample data and the live daemon for years to come; a replay
    or backtest over older data builds one that starts with its data (:meth:`covering`).
    """

    @classmethod
    def covering(cls, first: date, exchange: str = "XNYS", cache_dir: Path | None = None) -> MarketCalendar:
        """A calendar from ``first`` (or :data:`DEFAULT_START`, whichever is earlier) to :data:`DEFAULT_END`: data
        going back to 1962 is replayed on the exchange's 1962 sessions instead of failing with a CalendarError."""
        return cls(start=min(first, DEFAULT_START), end=DEFAULT_END, exchange=exchange, cache_dir=cache_dir)

    def __init__(
        self,
        start: date = DEFAULT_START,
        end: date = DEFAULT_END,
        exchange: str = "XNYS",
        cache_dir: Path | None = None,
    ) -> None:
        """``cache_dir``: a directory where the schedule is kept across processes (see :func:`_schedule`)."""
        if end <= start:
            raise CalendarError(f"MarketCalendar: end {end} must be after start {start}")
        self.exchange = exchange
        self.start = start
        self.end = end
        directory = Path(cache_dir) if cache_dir is not None else None
        self._days, self._opens, self._closes, self._early, self._session_index = _schedule(
            exchange, start, end, directory
        )

    # ------------------------------------------------------------------ raw arrays (read-only, for vectorised callers)

    @property
    def session_days(self) -> np.ndarray:
        """Every session date as int64 days since 1970-01-01, sorted; read-only."""
        return self._days

    @property
    def first_session(self) -> date:
        return self._date_at(0)

    @property
    def last_session(self) -> date:
        return self._date_at(len(self._days) - 1)

    # ------------------------------------------------------------------ queries by instant

    def is_open(self, at: datetime) -> bool:
        """True while the market is in a session at ``at`` (open inclusive, close exclusive)."""
        ns = self._checked_ns(at, "at")
        i = int(np.searchsorted(self._opens, ns, side="right")) - 1
        return i >= 0 and ns < self._closes[i]

    def session_for(self, at: datetime) -> Session | None:
        """The session on ``at``'s New York calendar date, or ``None`` when that date is not a trading day."""
        self._checked_ns(at, "at")
        return self.session_on(to_eastern(at).date())

    def next_session(self, at: datetime) -> Session:
        """The first session that opens strictly after ``at`` (a session in progress at ``at`` is not "next")."""
        ns = self._checked_ns(at, "at")
        i = int(np.searchsorted(self._opens, ns, side="right"))
        return self._session_at(i, f"no session opens after {at.isoformat()}")

    def previous_completed_session(self, at: datetime) -> Session:
        """The latest session whose close is at or before ``at`` (its daily bar is final)."""
        ns = self._checked_ns(at, "at")
        i = int(np.searchsorted(self._closes, ns, side="right")) - 1
        return self._session_at(i, f"no session closed at or before {at.isoformat()}")

    def next_run_time(self, at: datetime, offset: timedelta, anchor: Literal["open", "close"] = "open") -> datetime:
        """The earliest session ``anchor`` (open or close) plus ``offset`` strictly after ``at``.

        With ``at`` before today's open + offset this is today's; otherwise the next session's, skipping weekends
        and holidays. Early closes are honoured when ``anchor="close"``.
        """
        if anchor not in ("open", "close"):
            raise CalendarError(f"next_run_time: anchor must be 'open' or 'close', got {anchor!r}")
        ns = self._checked_ns(at, "at")
        offset_ns = (offset // timedelta(microseconds=1)) * _NS_PER_US
        anchors = self._opens if anchor == "open" else self._closes
        i = int(np.searchsorted(anchors, ns - offset_ns, side="right"))
        if i >= len(anchors):
            raise CalendarError(
                f"next_run_time: no session {anchor} + {offset} after {at.isoformat()} within the calendar "
                f"({self.start}..{self.end})"
            )
        return _from_ns(int(anchors[i]) + offset_ns)

    # ------------------------------------------------------------------ queries by date

    def is_session(self, day: date) -> bool:
        value = self._checked_day(day)
        i = int(np.searchsorted(self._days, value))
        return i < len(self._days) and self._days[i] == value

    def session_on(self, day: date) -> Session | None:
        """The session on ``day``, or ``None`` when the exchange is closed that day."""
        value = self._checked_day(day)
        i = int(np.searchsorted(self._days, value))
        if i < len(self._days) and self._days[i] == value:
            return self._session_at(i, "")
        return None

    def session(self, day: date) -> Session:
        """The session on ``day``; raises :class:`CalendarError` when the exchange is closed that day."""
        found = self.session_on(day)
        if found is None:
            raise CalendarError(f"{self.exchange}: {day.isoformat()} is not a trading session")
        return found

    def sessions_between(self, start: date, end: date) -> list[date]:
        """Session dates with ``start <= date <= end``."""
        lo, hi = self._range(start, end)
        return [self._date_at(i) for i in range(lo, hi)]

    def sessions_index(self, start: date, end: date) -> pd.DatetimeIndex:
        """Sessions with ``start <= date <= end`` as UTC-midnight timestamps (the bars index layout)."""
        lo, hi = self._range(start, end)
        return self._session_index[lo:hi]

    def sessions_from(self, start: date, count: int) -> pd.DatetimeIndex:
        """The first ``count`` sessions on or after ``start`` as UTC-midnight timestamps."""
        if count < 0:
            raise CalendarError(f"sessions_from: count must be >= 0, got {count}")
        lo = int(np.searchsorted(self._days, self._checked_day(start)))
        if lo + count > len(self._days):
            raise CalendarError(
                f"sessions_from: {count} sessions from {start} run past the calendar's last session {self.last_session}"
            )
        return self._session_index[lo : lo + count]

    # ------------------------------------------------------------------ internals

    def _range(self, start: date, end: date) -> tuple[int, int]:
        lo = int(np.searchsorted(self._days, self._checked_day(start), side="left"))
        hi = int(np.searchsorted(self._days, self._checked_day(end), side="right"))
        return lo, max(lo, hi)

    def _checked_day(self, day: date) -> int:
        if isinstance(day, datetime):
            raise TypeError(f"expected a date, got the datetime {day!r}; pass .date() of its New York time")
        if not self.start <= day <= self.end:
            raise CalendarError(f"{self.exchange} calendar covers {self.start}..{self.end}; {day} is outside it")
        return (day - date(1970, 1, 1)).days

    def _checked_ns(self, at: datetime, name: str) -> int:
        ns = _to_ns(at, name)
        day = ns // _NS_PER_DAY
        # One day of slack on each side: New York dates straddle two UTC dates.
        first, last = (self.start - date(1970, 1, 1)).days, (self.end - date(1970, 1, 1)).days
        if not first - 1 <= day <= last + 1:
            raise CalendarError(
                f"{self.exchange} calendar covers {self.start}..{self.end}; {name}={at.isoformat()} is outside it"
            )
        return ns

    def _date_at(self, i: int) -> date:
        return date(1970, 1, 1) + timedelta(days=int(self._days[i]))

    def _session_at(self, i: int, missing: str) -> Session:
        if not 0 <= i < len(self._days):
            raise CalendarError(f"{self.exchange} calendar ({self.start}..{self.end}): {missing}")
        return Session(
            date=self._date_at(i),
            open_utc=_from_ns(int(self._opens[i])),
            close_utc=_from_ns(int(self._closes[i])),
            early_close=bool(self._early[i]),
        )

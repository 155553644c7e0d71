"""The bar screen's verdict tables (built when the same frames come back session after session) must give the very
screening the per-symbol checks give: every bar, exclusion, reason and decision, including when frames change."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

import pandas as pd
import pytest

from core.data.base import ProviderResult
from core.data.screening import BarScreen, Screening
from core.kernel.calendar import MarketCalendar
from core.kernel.domain import SymbolBars, bar_arrays, known_bars
from tests.data.test_frame_verdicts import troubled_synthetic
from tests.data.test_validation_fast_path import corrupted


def summary(out: Screening) -> dict[str, Any]:
    return {
        "bars": [(s, id(sb.frame), sb.end, sb.provider, sb.last_close) for s, sb in out.bars.items()],
        "blocked": list(out.blocked.items()),
        "rejected": list(out.rejected.items()),
        "categories": list(out.categories.items()),
        "decisions": [(d.agent, d.symbol, d.action, d.reason, dict(d.inputs)) for d in out.decisions],
        "not_listed": out.not_listed,
        "latest_day": out.latest_day,
        "exact_latest": out.exact_latest,
        "usable": out.usable,
        "quality": out.quality,
    }


def sessions(calendar: MarketCalendar, start: date, end: date) -> list[datetime]:
    return [datetime.combine(d.date(), time(22), UTC) for d in calendar.sessions_index(start, end)]


@pytest.mark.parametrize("routine", [True, False])
def test_screen_with_tables_equals_the_per_symbol_checks_session_after_session(
    real_frames: dict[str, pd.DataFrame], calendar: MarketCalendar, routine: bool
) -> None:
    aapl, rows = corrupted(real_frames["AAPL"])
    frames = {
        "AAPL": aapl,
        "SPY": real_frames["SPY"],
        "LATE": real_frames["IWM"].loc["2009-11-20":],  # listed during the run
        "SYN": troubled_synthetic(calendar),
        "WARM": real_frames["BAC"].loc["2015-02-01":],  # warming up during the run
    }
    other = real_frames["IBM"]
    symbols = [*frames, "GONE"]  # GONE: never served
    around = aapl.index[rows[3]].date()
    days = sessions(calendar, around - pd.Timedelta(days=60), around + pd.Timedelta(days=140))
    days += sessions(calendar, date(2015, 1, 1), date(2016, 12, 31))
    days += days[-30:-20]  # the clock going back
    fast = BarScreen(symbols, min_history=30, calendar=calendar, gap_sessions=3, routine_decisions=routine)
    slow = BarScreen(symbols, min_history=30, calendar=calendar, gap_sessions=3, routine_decisions=routine)
    slow._tables = False
    used = 0
    for k, as_of in enumerate(days):
        served = dict(frames)
        errors = {"GONE": "no such symbol"}
        if k % 50 in (7, 8):  # a provider failure for two sessions
            del served["SPY"]
            errors["SPY"] = "timeout"
        if k % 40 == 13:  # fresh copies of the same bars
            served = {s: f.copy() for s, f in served.items()}
        if k % 90 in (30, 31, 32):  # another frame for a while, then the first one again
            served["AAPL"] = other
        result = ProviderResult(frames=served, errors=errors, provider="files")
        expected = summary(slow.screen(result, as_of, "files"))
        assert summary(fast.screen(result, as_of, "files")) == expected, (k, as_of)
        used += fast._table is not None
    assert used > len(days) // 2  # the tables did answer most sessions


def test_screen_without_a_calendar_with_tables_equals_the_per_symbol_checks(
    real_frames: dict[str, pd.DataFrame],
) -> None:
    frames = {"SPY": corrupted(real_frames["SPY"])[0], "AIG": real_frames["AIG"]}
    fast = BarScreen(list(frames), min_history=10, calendar=None)
    slow = BarScreen(list(frames), min_history=10, calendar=None)
    slow._tables = False
    result = ProviderResult(frames=frames, provider="files")
    for day in real_frames["SPY"].index[::9]:
        as_of = datetime.combine(day.date(), time(22), UTC)
        assert summary(fast.screen(result, as_of, "files")) == summary(slow.screen(result, as_of, "files")), as_of
    assert fast._table is not None


def test_a_table_is_kept_while_frames_are_unchanged_and_dropped_when_one_changes(
    real_frames: dict[str, pd.DataFrame], calendar: MarketCalendar
) -> None:
    frames = {"SPY": real_frames["SPY"], "AIG": real_frames["AIG"]}
    screen = BarScreen(list(frames), min_history=10, calendar=calendar)
    days = sessions(calendar, date(2012, 1, 3), date(2012, 1, 31))
    screen.screen(ProviderResult(frames=frames), days[0], "files")
    assert screen._table is None  # a live iteration with fresh bars never builds one
    screen.screen(ProviderResult(frames={s: f.copy() for s, f in frames.items()}), days[1], "files")
    table = screen._table
    assert table is not None and table.frames == (frames["SPY"], frames["AIG"])  # equal copies: the same frames
    screen.screen(ProviderResult(frames=frames), days[2], "files")
    assert screen._table is table
    changed = {**frames, "AIG": real_frames["AIG"].iloc[:-1]}
    screen.screen(ProviderResult(frames=changed), days[3], "files")
    assert screen._table is None
    screen.screen(ProviderResult(frames=frames), days[4], "files")
    assert screen._table is None  # back to the first frames: new again, not the dropped table's
    screen.screen(ProviderResult(frames=frames), days[5], "files")
    assert screen._table is not None and screen._table is not table


def test_known_bars_equal_the_constructed_ones(real_frames: dict[str, pd.DataFrame]) -> None:
    frame = real_frames["SPY"]
    arrays = bar_arrays(frame)
    for end in (1, 2, 500, len(frame)):
        built = SymbolBars(symbol="SPY", frame=frame, end=end, provider="files", arrays=arrays)
        known = known_bars("SPY", frame, end, "files", arrays, float(arrays["close"][end - 1]))
        assert type(known) is SymbolBars and known == built and hash(repr(known)) == hash(repr(built))
        assert known.last_close == built.last_close and known.last_timestamp == built.last_timestamp
        with pytest.raises(AttributeError):
            known.end = 3  # type: ignore[misc]  # frozen as the constructed one


def test_screen_when_every_symbol_is_clean_then_the_bars_come_straight_from_the_table(
    real_frames: dict[str, pd.DataFrame], calendar: MarketCalendar
) -> None:
    frames = {s: real_frames[s] for s in ("SPY", "AIG", "IBM")}
    fast = BarScreen(list(frames), min_history=10, calendar=calendar, routine_decisions=False)
    slow = BarScreen(list(frames), min_history=10, calendar=calendar, routine_decisions=False)
    slow._tables = False
    result = ProviderResult(frames=frames, provider="files")
    for as_of in sessions(calendar, date(2013, 1, 2), date(2013, 3, 29)):
        out = fast.screen(result, as_of, "files")
        assert summary(out) == summary(slow.screen(result, as_of, "files")) and out.usable == 3
    kept = [
        {s: (id(sb.frame), sb.end, sb.provider, sb.last_close) for s, sb in screen._last_good.items()}
        for screen in (fast, slow)
    ]
    assert kept[0] == kept[1]  # each symbol's last good bars, for a later provider failure

"""FrameChecks (the per-frame prefix counts the Data agent uses) must agree with validate_bars on every window."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import numpy as np
import pandas as pd
import pytest

from core.kernel.calendar import MarketCalendar
from core.data.validation import (
    FrameChecks,
    VisibleCutoff,
    latest_session_day,
    validate_bars,
    validate_batch,
    visible_rows,
)


def corrupted(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[int]]:
    """AAPL with one problem of each row and calendar rule, far enough apart that windows see one or two."""
    f = frame.copy(deep=True)
    n = len(f)
    rows = [n // 8, 2 * n // 8, 3 * n // 8, 4 * n // 8, 5 * n // 8, 6 * n // 8, 7 * n // 8, 7 * n // 8 + 40]
    f.iloc[rows[6], :4] = f.iloc[rows[6], :4] * 30  # a one-bar spike
    f.iloc[rows[7], :4] = 1e300  # an absurd bar
    f.iloc[rows[0], f.columns.get_loc("close")] = np.nan
    f.iloc[rows[1], f.columns.get_loc("volume")] = -5.0
    f.iloc[rows[2], f.columns.get_loc("low")] = f.iloc[rows[2], f.columns.get_loc("high")] * 1.5  # low above high
    saturday = f.index[rows[3]] + pd.Timedelta(days=(5 - f.index[rows[3]].weekday()) % 7 or 7)
    extra = f.iloc[[rows[3]]].copy()
    extra.index = pd.DatetimeIndex([saturday])
    f = pd.concat([f.drop(index=f.index[rows[4]]), extra]).sort_index()  # a dropped session and a Saturday bar
    duplicate = f.iloc[[rows[5]]]
    f = pd.concat([f.iloc[: rows[5] + 1], duplicate, f.iloc[rows[5] + 1 :]])  # a duplicated bar
    return f, rows


@pytest.mark.parametrize(("min_history", "gap"), [(0, 3), (250, 3), (250, 10)])
def test_fast_checks_agree_with_full_validation_on_every_window(
    real_frames: dict[str, pd.DataFrame], calendar: MarketCalendar, min_history: int, gap: int
) -> None:
    frame, rows = corrupted(real_frames["AAPL"])
    checks = FrameChecks.of(frame, calendar)
    assert checks is not None
    days = sorted({d.date() for d in frame.index})
    # every session near a corruption (it becomes visible, or leaves the gap window), and every 7th elsewhere
    near = {k for r in rows for edge in (r, r + gap) for k in range(edge - 3, edge + 4)}
    picked = [d for k, d in enumerate(days) if k in near or k % 7 == 0 or k < 5 or k > len(days) - 3]
    verdicts = {True: 0, False: 0}
    for day in picked:
        for as_of in (datetime.combine(day + timedelta(days=1), time(12), UTC), datetime.combine(day, time(22), UTC)):
            end = visible_rows(frame.index, as_of, calendar)
            assert checks.rows_through(VisibleCutoff.at(as_of, calendar).cutoff_day) == end
            full = validate_bars(
                "AAPL", frame, as_of=as_of, min_history=min_history, calendar=calendar, gap_sessions=gap
            )
            fast = checks.clean(
                end, min_history=min_history, latest_session_day=latest_session_day(as_of, calendar), gap_sessions=gap
            )
            assert fast == (full == []), (as_of, end, [p.message for p in full])
            if full and end:
                batch = validate_batch(
                    {"AAPL": frame.iloc[:end]},
                    as_of=as_of,
                    min_history=min_history,
                    calendar=calendar,
                    gap_sessions=gap,
                )
                assert checks.good_end(end) == batch.ends["AAPL"], (as_of, end)
            verdicts[fast] += 1
    assert verdicts[True] > 50 and verdicts[False] > 50  # both verdicts were exercised


def test_rows_through_from_a_known_count_agrees_with_a_search(
    real_frames: dict[str, pd.DataFrame], calendar: MarketCalendar
) -> None:
    """Moving forward a day, a week or years at a time from the previous answer (duplicated and weekend rows included)."""
    frame, _ = corrupted(real_frames["AAPL"])
    checks = FrameChecks.of(frame, calendar)
    assert checks is not None
    days = checks.days.astype(np.int64)
    rng = np.random.default_rng(3)
    cutoff, known, steps = int(days[0]) - 10, 0, 0
    while cutoff <= int(days[-1]) + 10:
        cutoff += int(rng.choice([0, 1, 2, 3, 7, 400], p=[0.1, 0.5, 0.15, 0.1, 0.1, 0.05]))
        expected = int(np.searchsorted(days, cutoff, side="right"))
        assert checks.rows_through(cutoff, known) == expected == checks.rows_through(cutoff), cutoff
        known, steps = expected, steps + 1
    assert steps > 300


def test_fast_checks_without_a_calendar_agree(real_frames: dict[str, pd.DataFrame]) -> None:
    frame, _ = corrupted(real_frames["SPY"])
    checks = FrameChecks.of(frame, None)
    assert checks is not None
    for k in range(1, len(frame), 5):
        as_of = datetime.combine(frame.index[k - 1].date() + timedelta(days=1), time(12), UTC)
        end = visible_rows(frame.index, as_of, None)
        full = validate_bars("SPY", frame, as_of=as_of, min_history=10, calendar=None)
        assert checks.clean(end, min_history=10, latest_session_day=None) == (full == []), as_of


def test_frames_that_need_the_full_path_get_no_fast_checks(
    real_frames: dict[str, pd.DataFrame], calendar: MarketCalendar
) -> None:
    frame = real_frames["IBM"]
    assert FrameChecks.of(frame.iloc[::-1], calendar) is None  # unsorted
    assert FrameChecks.of(frame[["close", "open", "high", "low", "volume"]], calendar) is None  # column order
    assert FrameChecks.of(frame.tz_localize(None), calendar) is None  # naive index

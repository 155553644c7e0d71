"""FrameChecks.verdicts (every visible-row count at once) must equal history_clean and recent_clean for every end."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from core.data.synthetic import generate_bars
from core.data.validation import CLEAN, NOT_CLEAN, RECENT_CLEAN, UNDECIDED, WARMING, FrameChecks
from core.kernel.calendar import MarketCalendar
from tests.data.test_validation_fast_path import corrupted


def troubled_synthetic(calendar: MarketCalendar) -> pd.DataFrame:
    """Synthetic bars with holes (single and runs of missing sessions), spikes, a jump, a stale stretch, weekend and
    duplicated bars, a bad row, and bars after the calendar's last session."""
    index = calendar.sessions_index(date(2015, 1, 1), date(2016, 12, 31))
    frame = generate_bars("SYN", index, seed=11).astype(float)
    n = len(frame)
    close = frame.columns.get_loc("close")
    frame.iloc[40, :4] = frame.iloc[40, :4] * 3.0  # a spike
    frame.iloc[200, :4] = frame.iloc[200, :4] * 0.2  # a spike
    frame.iloc[300:, :4] = frame.iloc[300:, :4] * 4.0  # a jump that holds
    frame.iloc[120, close] = -1.0  # a bad row
    frame = frame.drop(index=frame.index[[60, 90, 91, 92, 150, 151, 152, 153, 154, 155, 156, 157]])  # holes
    saturday = frame.index[250] + pd.Timedelta(days=(5 - frame.index[250].weekday()) % 7 or 7)
    extra = frame.iloc[[250]].copy()
    extra.index = pd.DatetimeIndex([saturday])
    duplicate = frame.iloc[[400]]
    frame = pd.concat([frame.iloc[:401], duplicate, frame.iloc[401:], extra]).sort_index(kind="stable")
    last = calendar.session_days[-1]
    after = pd.DatetimeIndex(
        [pd.Timestamp(int(last) + k, unit="D", tz="UTC") for k in (1, 2, 5)]
    )  # beyond the calendar's schedule
    tail = pd.DataFrame(np.tile(frame.iloc[[-1]].to_numpy(), (3, 1)), index=after, columns=frame.columns)
    frame = pd.concat([frame, tail])
    assert len(frame) > n - 12
    return frame


def assert_verdicts_equal(checks: FrameChecks, min_history: int, gap: int) -> dict[int, int]:
    table = checks.verdicts(min_history=min_history, gap_sessions=gap)
    n = len(checks.days)
    assert table.shape == (n + 1,) and table[0] == NOT_CLEAN
    seen = {CLEAN: 0, RECENT_CLEAN: 0, NOT_CLEAN: 0, UNDECIDED: 0, WARMING: 0}
    for end in range(0, n + 1):
        verdict = int(table[end])
        seen[verdict] += 1
        if verdict == UNDECIDED:
            continue
        # the latest completed session no later than the last visible bar: the table's assumption
        latest = int(checks.days[end - 1]) if end and checks.calendar is not None else None
        recent = checks.recent_clean(end, min_history=min_history, latest_session_day=latest, gap_sessions=gap)
        history = checks.history_clean(end)
        expected = (CLEAN if history else RECENT_CLEAN) if recent else NOT_CLEAN
        if end < min_history and history and end:  # warming up: would every other rule pass?
            if checks.recent_clean(end, min_history=0, latest_session_day=latest, gap_sessions=gap):
                expected = WARMING
        assert verdict == expected, (end, min_history, gap)
        if latest is not None and end:  # an earlier latest session gives the same answer; a later one, stale
            for earlier in (latest - 1, latest - 30):
                assert recent == checks.recent_clean(
                    end, min_history=min_history, latest_session_day=earlier, gap_sessions=gap
                )
            assert not checks.recent_clean(
                end, min_history=min_history, latest_session_day=latest + 1, gap_sessions=gap
            )
    return seen


@pytest.mark.parametrize(("min_history", "gap"), [(0, 1), (1, 3), (250, 3), (30, 10)])
def test_verdicts_on_the_bundled_bars_equal_the_scalar_checks_for_every_end(
    real_frames: dict[str, pd.DataFrame], calendar: MarketCalendar, min_history: int, gap: int
) -> None:
    for symbol in ("AAPL", "IWM"):
        checks = FrameChecks.of(real_frames[symbol], calendar)
        assert checks is not None
        assert_verdicts_equal(checks, min_history, gap)
    frame, _ = corrupted(real_frames["AAPL"])
    checks = FrameChecks.of(frame, calendar)
    assert checks is not None
    seen = assert_verdicts_equal(checks, min_history, gap)
    assert seen[CLEAN] > 100 and seen[RECENT_CLEAN] > 100 and seen[NOT_CLEAN] > 0


@pytest.mark.parametrize(("min_history", "gap"), [(0, 1), (20, 3), (20, 10)])
def test_verdicts_on_synthetic_bars_with_holes_spikes_and_stale_bars_equal_the_scalar_checks(
    calendar: MarketCalendar, min_history: int, gap: int
) -> None:
    frame = troubled_synthetic(calendar)
    checks = FrameChecks.of(frame, calendar)
    assert checks is not None
    seen = assert_verdicts_equal(checks, min_history, gap)
    assert seen[CLEAN] > 50 and seen[RECENT_CLEAN] > 50 and seen[NOT_CLEAN] > 5
    undecided = np.flatnonzero(checks.verdicts(min_history=min_history, gap_sessions=gap) == UNDECIDED)
    assert all(checks.days[end - 1] > calendar.session_days[-1] for end in undecided)  # only past the schedule


def test_verdicts_without_a_calendar_equal_the_scalar_checks(real_frames: dict[str, pd.DataFrame]) -> None:
    frame, _ = corrupted(real_frames["SPY"])
    checks = FrameChecks.of(frame, None)
    assert checks is not None
    seen = assert_verdicts_equal(checks, 10, 3)
    assert seen[CLEAN] and seen[RECENT_CLEAN] and seen[NOT_CLEAN] and not seen[UNDECIDED]


def test_verdicts_of_an_empty_frame(calendar: MarketCalendar, real_frames: dict[str, pd.DataFrame]) -> None:
    checks = FrameChecks.of(real_frames["SPY"].iloc[:0], calendar)
    assert checks is not None
    assert checks.verdicts(min_history=1).tolist() == [NOT_CLEAN]


@pytest.mark.parametrize("gap", [1, 3])
def test_a_warming_verdict_means_the_full_validation_finds_only_too_few_bars(
    real_frames: dict[str, pd.DataFrame], calendar: MarketCalendar, gap: int
) -> None:
    """WARMING lets the screen skip validate_batch: its one problem must be the one validate_batch reports."""
    from datetime import UTC, datetime, time

    from core.data.validation import MIN_HISTORY, validate_batch, warm_up_problem

    frame = troubled_synthetic(calendar).iloc[:80]
    checks = FrameChecks.of(frame, calendar)
    assert checks is not None
    table = checks.verdicts(min_history=60, gap_sessions=gap)
    warming = 0
    for end in range(1, 80):
        as_of = datetime.combine(frame.index[end - 1].date(), time(22), UTC)
        found = validate_batch(
            {"SYN": frame.iloc[:end]}, as_of=as_of, min_history=60, calendar=calendar, gap_sessions=gap
        ).problems.get("SYN", [])
        if table[end] == WARMING:
            warming += 1
            assert found == [warm_up_problem("SYN", end, int(checks.days[end - 1]), as_of, 60)], end
        else:
            assert not found or [p.rule for p in found] != [MIN_HISTORY], end
    assert warming > 20

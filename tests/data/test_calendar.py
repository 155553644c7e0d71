"""MarketCalendar on known NYSE dates: holidays, early closes, DST changes, weekends, run-time scheduling."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from core.kernel.calendar import CalendarError, MarketCalendar, Session, format_eastern, to_eastern


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_session_on_thanksgiving_2025_when_market_closed_then_none(calendar: MarketCalendar) -> None:
    assert calendar.session_on(date(2025, 11, 27)) is None
    assert not calendar.is_session(date(2025, 11, 27))
    assert not calendar.is_open(utc(2025, 11, 27, 16, 0))


def test_session_on_day_after_thanksgiving_then_early_close_at_1300_eastern(calendar: MarketCalendar) -> None:
    session = calendar.session(date(2025, 11, 28))
    assert session == Session(date(2025, 11, 28), utc(2025, 11, 28, 14, 30), utc(2025, 11, 28, 18, 0), True)
    assert session.close_eastern.hour == 13
    assert calendar.is_open(utc(2025, 11, 28, 17, 59))
    assert not calendar.is_open(utc(2025, 11, 28, 18, 0))
    assert "(early close)" in session.describe()


def test_session_on_independence_day_2025_then_closed(calendar: MarketCalendar) -> None:
    assert calendar.session_on(date(2025, 7, 4)) is None
    with pytest.raises(CalendarError, match="2025-07-04 is not a trading session"):
        calendar.session(date(2025, 7, 4))
    assert calendar.session(date(2025, 7, 3)).early_close


def test_is_open_on_a_weekend_then_false_and_session_for_is_none(calendar: MarketCalendar) -> None:
    saturday = utc(2025, 3, 8, 16, 0)
    assert not calendar.is_open(saturday)
    assert calendar.session_for(saturday) is None
    assert calendar.next_session(saturday).date == date(2025, 3, 10)


def test_open_after_spring_dst_change_then_1330_utc(calendar: MarketCalendar) -> None:
    assert calendar.session(date(2025, 3, 7)).open_utc == utc(2025, 3, 7, 14, 30)
    assert calendar.session(date(2025, 3, 10)).open_utc == utc(2025, 3, 10, 13, 30)
    assert calendar.session(date(2025, 3, 10)).close_utc == utc(2025, 3, 10, 20, 0)


def test_open_after_autumn_dst_change_then_1430_utc(calendar: MarketCalendar) -> None:
    assert calendar.session(date(2025, 10, 31)).open_utc == utc(2025, 10, 31, 13, 30)
    assert calendar.session(date(2025, 11, 3)).open_utc == utc(2025, 11, 3, 14, 30)


def test_is_open_at_the_boundaries_then_open_inclusive_close_exclusive(calendar: MarketCalendar) -> None:
    assert not calendar.is_open(utc(2025, 11, 3, 14, 29, 59))
    assert calendar.is_open(utc(2025, 11, 3, 14, 30))
    assert calendar.is_open(utc(2025, 11, 3, 20, 59, 59))
    assert not calendar.is_open(utc(2025, 11, 3, 21, 0))


def test_session_for_uses_the_new_york_date_not_the_utc_date(calendar: MarketCalendar) -> None:
    # 02:00 UTC on Tuesday is still Monday evening in New York.
    session = calendar.session_for(utc(2025, 11, 4, 2, 0))
    assert session is not None and session.date == date(2025, 11, 3)


def test_previous_completed_session_when_in_session_then_the_day_before(calendar: MarketCalendar) -> None:
    assert calendar.previous_completed_session(utc(2025, 11, 28, 17, 0)).date == date(2025, 11, 26)
    assert calendar.previous_completed_session(utc(2025, 11, 28, 18, 0)).date == date(2025, 11, 28)
    assert calendar.previous_completed_session(utc(2025, 12, 1, 10, 0)).date == date(2025, 11, 28)


def test_next_session_when_in_progress_then_the_following_one(calendar: MarketCalendar) -> None:
    assert calendar.next_session(utc(2025, 11, 26, 15, 0)).date == date(2025, 11, 28)
    assert calendar.next_session(utc(2025, 11, 26, 14, 0)).date == date(2025, 11, 26)


def test_next_run_time_before_todays_open_plus_offset_then_today(calendar: MarketCalendar) -> None:
    assert calendar.next_run_time(utc(2025, 11, 3, 14, 0), timedelta(minutes=15)) == utc(2025, 11, 3, 14, 45)


def test_next_run_time_exactly_at_the_run_time_then_next_session(calendar: MarketCalendar) -> None:
    assert calendar.next_run_time(utc(2025, 11, 3, 14, 45), timedelta(minutes=15)) == utc(2025, 11, 4, 14, 45)


def test_next_run_time_across_a_weekend_then_monday(calendar: MarketCalendar) -> None:
    friday_evening = utc(2025, 3, 7, 22, 0)
    # Monday 2025-03-10 is after the spring DST change: 09:45 EDT is 13:45 UTC.
    assert calendar.next_run_time(friday_evening, timedelta(minutes=15)) == utc(2025, 3, 10, 13, 45)


def test_next_run_time_across_thanksgiving_then_friday_open(calendar: MarketCalendar) -> None:
    wednesday_after_open = utc(2025, 11, 26, 16, 0)
    assert calendar.next_run_time(wednesday_after_open, timedelta(minutes=5)) == utc(2025, 11, 28, 14, 35)


def test_next_run_time_anchored_on_close_then_honours_the_early_close(calendar: MarketCalendar) -> None:
    run = calendar.next_run_time(utc(2025, 11, 26, 22, 0), timedelta(minutes=10), anchor="close")
    assert run == utc(2025, 11, 28, 18, 10)


def test_sessions_between_a_holiday_week_then_skips_the_holiday(calendar: MarketCalendar) -> None:
    days = calendar.sessions_between(date(2025, 11, 24), date(2025, 11, 30))
    assert days == [date(2025, 11, 24), date(2025, 11, 25), date(2025, 11, 26), date(2025, 11, 28)]
    index = calendar.sessions_index(date(2025, 11, 24), date(2025, 11, 30))
    assert [ts.date() for ts in index] == days
    assert str(index.tz) == "UTC" and index.name == "timestamp"


def test_sessions_from_1998_then_matches_the_calendar(calendar: MarketCalendar) -> None:
    index = calendar.sessions_from(date(1998, 1, 1), 3)
    assert [ts.date() for ts in index] == [date(1998, 1, 2), date(1998, 1, 5), date(1998, 1, 6)]


def test_sessions_after_9_11_then_market_closed_for_four_sessions(calendar: MarketCalendar) -> None:
    days = calendar.sessions_between(date(2001, 9, 10), date(2001, 9, 17))
    assert days == [date(2001, 9, 10), date(2001, 9, 17)]


def test_query_outside_the_calendar_range_then_calendar_error_naming_the_range() -> None:
    small = MarketCalendar(start=date(2020, 1, 1), end=date(2021, 12, 31))
    with pytest.raises(CalendarError, match=r"2020-01-01\.\.2021-12-31"):
        small.is_open(utc(2025, 1, 2, 15, 0))
    with pytest.raises(CalendarError, match="outside"):
        small.sessions_between(date(2019, 1, 1), date(2020, 6, 1))


def test_naive_or_non_utc_datetime_then_value_error(calendar: MarketCalendar) -> None:
    with pytest.raises(ValueError, match="UTC"):
        calendar.is_open(datetime(2025, 11, 3, 15, 0))
    with pytest.raises(ValueError, match="UTC"):
        calendar.is_open(datetime(2025, 11, 3, 10, 0, tzinfo=timezone(timedelta(hours=-5))))


def test_eastern_rendering_then_shows_local_time_and_zone() -> None:
    assert format_eastern(utc(2025, 11, 28, 18, 0)) == "2025-11-28 13:00 EST"
    assert format_eastern(utc(2025, 7, 1, 13, 30)) == "2025-07-01 09:30 EDT"
    assert to_eastern(utc(2025, 7, 1, 13, 30)).hour == 9

"""validate_bars / validate_batch: each rule on the real bundled bars corrupted in exactly that one way."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from core.kernel.calendar import MarketCalendar
from core.data import validation as v
from core.data.validation import Problem, validate_bars, validate_batch, visible_rows

# Before the open on 2021-04-01: the latest completed session is 2021-03-31, the last bundled bar.
AS_OF = datetime(2021, 4, 1, 12, 0, tzinfo=UTC)
ROW = -20  # a recent bar (bad bars are caught anywhere in the history)


@pytest.fixture
def aapl(real_frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return real_frames["AAPL"].copy(deep=True)


def check(frame: pd.DataFrame, calendar: MarketCalendar, min_history: int = 250) -> list[Problem]:
    return validate_bars("AAPL", frame, as_of=AS_OF, min_history=min_history, calendar=calendar)


def rules(problems: list[Problem]) -> set[str]:
    return {p.rule for p in problems}


def day(frame: pd.DataFrame, row: int) -> str:
    return str(frame.index[row].date())


def test_clean_real_frames_pass_every_rule(real_frames: dict[str, pd.DataFrame], calendar: MarketCalendar) -> None:
    for symbol, frame in real_frames.items():
        assert validate_bars(symbol, frame, as_of=AS_OF, min_history=250, calendar=calendar) == [], symbol


def test_positive_prices_when_a_bar_is_zero_then_only_that_rule_fails(
    aapl: pd.DataFrame, calendar: MarketCalendar
) -> None:
    aapl.iloc[ROW, :4] = 0.0  # all four prices equal: still consistent, just not positive
    problems = check(aapl, calendar)
    assert rules(problems) == {v.POSITIVE_PRICES}
    assert day(aapl, ROW) in problems[0].message and "open=0.0" in problems[0].message


def test_ohlc_consistency_when_high_and_low_swapped_then_only_that_rule_fails(
    aapl: pd.DataFrame, calendar: MarketCalendar
) -> None:
    high, low = aapl["high"].iat[ROW], aapl["low"].iat[ROW]
    aapl.iloc[ROW, aapl.columns.get_loc("high")] = low
    aapl.iloc[ROW, aapl.columns.get_loc("low")] = high
    problems = check(aapl, calendar)
    assert rules(problems) == {v.OHLC_CONSISTENCY}
    assert day(aapl, ROW) in problems[0].message and f"high={float(low)!r}" in problems[0].message


def test_ohlc_consistency_when_close_above_high_then_fails(aapl: pd.DataFrame, calendar: MarketCalendar) -> None:
    aapl.iloc[ROW, aapl.columns.get_loc("close")] = aapl["high"].iat[ROW] * 1.01
    assert rules(check(aapl, calendar)) == {v.OHLC_CONSISTENCY}


def test_non_negative_volume_when_volume_negative_then_only_that_rule_fails(
    aapl: pd.DataFrame, calendar: MarketCalendar
) -> None:
    aapl.iloc[ROW, aapl.columns.get_loc("volume")] = -100.0
    problems = check(aapl, calendar)
    assert rules(problems) == {v.NON_NEGATIVE_VOLUME}
    assert day(aapl, ROW) in problems[0].message and "volume=-100.0" in problems[0].message


def test_zero_volume_is_allowed(aapl: pd.DataFrame, calendar: MarketCalendar) -> None:
    aapl.iloc[ROW, aapl.columns.get_loc("volume")] = 0.0
    assert check(aapl, calendar) == []


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_finite_values_when_a_value_is_nan_or_inf_then_only_that_rule_fails(
    aapl: pd.DataFrame, calendar: MarketCalendar, bad: float
) -> None:
    aapl.iloc[ROW, aapl.columns.get_loc("close")] = bad
    problems = check(aapl, calendar)
    assert rules(problems) == {v.FINITE_VALUES}
    assert day(aapl, ROW) in problems[0].message and f"close={bad!r}" in problems[0].message


def test_increasing_timestamps_when_a_bar_is_duplicated_then_only_that_rule_fails(
    aapl: pd.DataFrame, calendar: MarketCalendar
) -> None:
    corrupted = pd.concat([aapl.iloc[: ROW + 1], aapl.iloc[ROW:]])
    problems = check(corrupted, calendar)
    assert rules(problems) == {v.INCREASING_TIMESTAMPS}
    assert f"{day(aapl, ROW)} follows {day(aapl, ROW)} (duplicate)" in problems[0].message


def test_increasing_timestamps_when_two_bars_out_of_order_then_only_that_rule_fails(
    aapl: pd.DataFrame, calendar: MarketCalendar
) -> None:
    order = np.arange(len(aapl))
    order[[ROW - 1, ROW]] = order[[ROW, ROW - 1]]
    problems = check(aapl.iloc[order], calendar)
    assert rules(problems) == {v.INCREASING_TIMESTAMPS}
    assert f"{day(aapl, ROW - 1)} follows {day(aapl, ROW)} (out of order)" in problems[0].message


def test_min_history_when_too_few_bars_visible_then_only_that_rule_fails(
    aapl: pd.DataFrame, calendar: MarketCalendar
) -> None:
    problems = check(aapl.iloc[-100:], calendar, min_history=250)
    assert rules(problems) == {v.MIN_HISTORY}
    assert "100 bar(s) visible" in problems[0].message and "need 250" in problems[0].message


def test_min_history_counts_all_visible_rows_not_just_the_window(aapl: pd.DataFrame, calendar: MarketCalendar) -> None:
    assert check(aapl, calendar, min_history=len(aapl)) == []
    assert rules(check(aapl, calendar, min_history=len(aapl) + 1)) == {v.MIN_HISTORY}


def test_missing_sessions_when_a_recent_bar_is_dropped_then_only_that_rule_fails(
    aapl: pd.DataFrame, calendar: MarketCalendar
) -> None:
    dropped = aapl.index[-2]
    problems = check(aapl.drop(index=dropped), calendar)
    assert rules(problems) == {v.MISSING_SESSIONS}
    assert f"first {dropped.date()}" in problems[0].message


def test_missing_sessions_only_counts_within_the_last_gap_sessions(
    aapl: pd.DataFrame, calendar: MarketCalendar
) -> None:
    """A feed gap blocks a symbol's entries while it is among the last gap_sessions (3) sessions, not for a month."""
    older = aapl.drop(index=aapl.index[-5])  # five sessions back
    assert check(older, calendar) == []
    recent = aapl.drop(index=aapl.index[-3])
    [problem] = check(recent, calendar)
    assert problem.rule == v.MISSING_SESSIONS and "among the last 3 sessions" in problem.message
    wider = validate_bars("AAPL", older, as_of=AS_OF, min_history=250, calendar=calendar, gap_sessions=10)
    assert rules(wider) == {v.MISSING_SESSIONS} and f"first {aapl.index[-5].date()}" in wider[0].message


def test_non_session_dates_when_a_recent_saturday_bar_is_added_then_only_that_rule_fails(
    aapl: pd.DataFrame, calendar: MarketCalendar
) -> None:
    saturday = pd.Timestamp("2021-03-27", tz=UTC)
    extra = aapl.loc[[pd.Timestamp("2021-03-26", tz=UTC)]].set_axis(pd.DatetimeIndex([saturday], name="timestamp"))
    with_saturday = pd.concat([aapl, extra]).sort_index()
    problems = validate_bars("AAPL", with_saturday, as_of=AS_OF, min_history=250, calendar=calendar, gap_sessions=5)
    assert rules(problems) == {v.NON_SESSION_DATES}
    assert "2021-03-27 (Saturday)" in problems[0].message
    assert check(with_saturday, calendar) == []  # the last 3 sessions (03-29 .. 03-31) have no such bar


def test_freshness_when_latest_completed_session_missing_then_only_that_rule_fails(
    aapl: pd.DataFrame, calendar: MarketCalendar
) -> None:
    problems = check(aapl.iloc[:-1], calendar)
    assert rules(problems) == {v.FRESHNESS}
    assert "2021-03-31" in problems[0].message and "last bar 2021-03-30, 1 session(s) behind" in problems[0].message


def test_freshness_when_as_of_is_during_a_session_then_today_is_not_yet_required(
    aapl: pd.DataFrame, calendar: MarketCalendar
) -> None:
    during_session = datetime(2021, 3, 31, 17, 0, tzinfo=UTC)  # 13:00 EDT on the last bundled day
    frame = aapl.iloc[:-1]
    assert validate_bars("AAPL", frame, as_of=during_session, min_history=250, calendar=calendar) == []


def test_bars_after_as_of_are_not_validated(aapl: pd.DataFrame, calendar: MarketCalendar) -> None:
    as_of = datetime(2020, 6, 2, 21, 0, tzinfo=UTC)
    future_row = aapl.index.get_loc(pd.Timestamp("2020-06-10", tz=UTC))
    aapl.iloc[future_row, :4] = -1.0
    assert validate_bars("AAPL", aapl, as_of=as_of, min_history=250, calendar=calendar) == []
    assert visible_rows(aapl.index, as_of, calendar) == aapl.index.get_loc(pd.Timestamp("2020-06-02", tz=UTC)) + 1


def test_a_bad_bar_anywhere_in_the_visible_history_is_caught(aapl: pd.DataFrame, calendar: MarketCalendar) -> None:
    """The indicators (ATR's smoothing above all) read the whole history: so does validation."""
    aapl.iloc[-4000, :4] = -1.0
    problems = check(aapl, calendar)
    assert rules(problems) == {v.POSITIVE_PRICES} and day(aapl, -4000) in problems[0].message


def test_a_1e300_bar_400_bars_back_when_validated_then_absurd_values_and_a_spike(
    aapl: pd.DataFrame, calendar: MarketCalendar
) -> None:
    aapl.iloc[-400, :4] = 1e300
    problems = check(aapl, calendar)
    assert rules(problems) == {v.ABSURD_VALUES, v.PRICE_SPIKE}
    assert all(day(aapl, -400) in p.message for p in problems)


def test_a_one_bar_30x_spike_when_the_next_bar_reverts_then_price_spike(
    aapl: pd.DataFrame, calendar: MarketCalendar
) -> None:
    aapl.iloc[-50, :4] = aapl.iloc[-50, :4] * 30
    [problem] = check(aapl, calendar)
    assert problem.rule == v.PRICE_SPIKE and f"first {day(aapl, -50)}" in problem.message


def test_a_30x_latest_bar_when_not_yet_confirmed_then_price_jump_and_the_good_end_leaves_it_out(
    aapl: pd.DataFrame, calendar: MarketCalendar
) -> None:
    aapl.iloc[-1, :4] = aapl.iloc[-1, :4] * 30
    result = validate_batch({"AAPL": aapl}, as_of=AS_OF, min_history=250, calendar=calendar)
    assert rules(result.problems["AAPL"]) == {v.PRICE_JUMP}
    assert result.ends["AAPL"] == len(aapl) - 1


@pytest.mark.parametrize("where", ["data/daily", "universe"])
def test_real_data_when_validated_in_full_then_no_outlier_or_bad_bar(
    where: str, calendar: MarketCalendar, real_frames: dict[str, pd.DataFrame]
) -> None:
    """The crashes of 2000, 2008 and 2020 (AIG -61% on 2008-09-15, AAPL -52% on 2000-09-29) are not spikes."""
    from pathlib import Path

    from core.data.files import read_bars_file

    if where == "data/daily":
        frames = real_frames
    else:
        universe = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "universe"
        if not universe.is_dir():
            pytest.skip(f"{universe} is absent")
        frames = {}
        for path in sorted(universe.glob("*/*.us.txt")):
            frames[path.name.split(".")[0].upper()] = v_read(path, read_bars_file)
    for symbol, frame in frames.items():
        spike, jump = v.price_moves(frame["close"].to_numpy())
        assert not spike.any() and not jump.any(), (symbol, frame.index[spike | jump])
        values = frame.to_numpy(dtype=float)
        assert not any(flags.any() for _, flags, _, _ in v._row_rule_flags(values)), symbol


def v_read(path, read):  # type: ignore[no-untyped-def]
    """The universe's ``*.us.txt`` files are CSV: read them under a .csv name (a symlink in a temporary place)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        link = Path(tmp) / f"{path.name}.csv"
        link.symlink_to(path)
        return read(link)


def test_layout_when_index_is_naive_then_layout_problem(aapl: pd.DataFrame, calendar: MarketCalendar) -> None:
    problems = check(aapl.tz_localize(None), calendar)
    assert rules(problems) == {v.LAYOUT} and "UTC" in problems[0].message


def test_layout_when_a_column_is_missing_then_layout_problem(aapl: pd.DataFrame, calendar: MarketCalendar) -> None:
    problems = check(aapl.drop(columns=["volume"]), calendar)
    assert rules(problems) == {v.LAYOUT} and "volume" in problems[0].message


def test_without_calendar_then_calendar_rules_are_skipped(aapl: pd.DataFrame) -> None:
    gappy = aapl.drop(index=aapl.index[ROW]).iloc[:-1]
    assert validate_bars("AAPL", gappy, as_of=AS_OF, min_history=250, calendar=None) == []


def test_validate_bars_with_naive_as_of_then_value_error(aapl: pd.DataFrame, calendar: MarketCalendar) -> None:
    with pytest.raises(ValueError, match="as_of"):
        validate_bars("AAPL", aapl, as_of=datetime(2021, 4, 1), min_history=1, calendar=calendar)


def test_validate_batch_when_one_symbol_corrupt_then_rejected_with_reason_and_quality(
    real_frames: dict[str, pd.DataFrame], calendar: MarketCalendar
) -> None:
    frames = dict(real_frames)
    broken = frames["BAC"].copy()
    broken.iloc[ROW, broken.columns.get_loc("volume")] = -5.0
    frames["BAC"] = broken
    result = validate_batch(frames, as_of=AS_OF, min_history=250, calendar=calendar)
    assert set(result.rejected) == {"BAC"}
    assert result.rejected["BAC"].startswith("BAC non_negative_volume") and day(broken, ROW) in result.rejected["BAC"]
    assert set(result.passed) == set(real_frames) - {"BAC"}
    assert result.passed["SPY"] is frames["SPY"]
    assert result.quality == pytest.approx(5 / 6)
    assert rules(result.problems["BAC"]) == {v.NON_NEGATIVE_VOLUME}


def test_validate_batch_when_empty_then_quality_one() -> None:
    result = validate_batch({}, as_of=AS_OF, min_history=1, calendar=None)
    assert result.passed == {} and result.rejected == {} and result.quality == 1.0


def test_validate_batch_reports_each_symbol_exactly_as_validate_bars_does(
    real_frames: dict[str, pd.DataFrame], calendar: MarketCalendar
) -> None:
    # Several corruptions at once, including at the first and last rows of symbols' windows, so that rules run
    # over all symbols concatenated cannot leak a problem across a symbol boundary.
    frames = {symbol: frame.copy() for symbol, frame in real_frames.items()}
    frames["AAPL"].iloc[-1, :4] = 0.0  # last row of the first symbol
    frames["AIG"].iloc[-300, frames["AIG"].columns.get_loc("volume")] = -1.0  # first row of its window
    frames["BAC"] = frames["BAC"].drop(index=frames["BAC"].index[-2])
    frames["IBM"] = pd.concat([frames["IBM"].iloc[:-1], frames["IBM"].iloc[-2:]])  # duplicate last-but-one
    frames["EMPTY"] = frames["SPY"].iloc[:0]
    result = validate_batch(frames, as_of=AS_OF, min_history=250, calendar=calendar)
    for symbol, frame in frames.items():
        alone = validate_bars(symbol, frame, as_of=AS_OF, min_history=250, calendar=calendar)
        assert result.problems.get(symbol, []) == alone, symbol
    assert {s: rules(p) for s, p in result.problems.items()} == {
        "AAPL": {v.POSITIVE_PRICES},
        "AIG": {v.NON_NEGATIVE_VOLUME},
        "BAC": {v.MISSING_SESSIONS},
        "IBM": {v.INCREASING_TIMESTAMPS},
        "EMPTY": {v.MIN_HISTORY, v.FRESHNESS},
    }
    assert set(result.passed) == {"IWM", "SPY"}


def test_price_moves_of_symbols_concatenated_equal_each_symbol_alone(real_frames: dict[str, pd.DataFrame]) -> None:
    closes = [frame["close"].to_numpy().copy() for frame in real_frames.values()]
    closes[0][100] *= 30  # a spike
    closes[1][-1] *= 0.02  # a jump on the last row, just before the next symbol's first row
    closes[2][0] = np.nan
    starts = np.r_[0, np.cumsum([len(c) for c in closes])[:-1]]
    spike, jump = v._moves(np.concatenate(closes), starts)
    for close, lo in zip(closes, starts, strict=False):
        alone = v.price_moves(close)
        assert (spike[lo : lo + len(close)] == alone[0]).all() and (jump[lo : lo + len(close)] == alone[1]).all()
    assert spike[starts[0] + 100] and jump[starts[1] + len(closes[1]) - 1]

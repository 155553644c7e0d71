"""Data agent: the batch it publishes (visible rows, the session it decides on)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pandas as pd
import pytest

from agents.data_agent import DataAgent
from core.kernel.calendar import MarketCalendar
from core.data.files import FileProvider
from core.kernel.domain import BarsBatch
from core.kernel.events import IterationStarted
from tests.conftest import BUNDLED_DAILY

CALENDAR = MarketCalendar()


class _Cut(FileProvider):
    """The bundled bars with one symbol's history ending earlier (a feed that stopped)."""

    def history(self, symbols, *, end):  # type: ignore[no-untyped-def]
        result = super().history(symbols, end=end)
        frames = dict(result.frames)
        frames["IBM"] = frames["IBM"].loc[frames["IBM"].index <= pd.Timestamp("2020-06-01", tz="UTC")]
        return replace(result, frames=frames)


def test_the_batch_names_the_latest_session_any_symbol_shows_as_the_visible_bars_do() -> None:
    agent = DataAgent(_Cut(BUNDLED_DAILY), ["AAPL", "IBM", "SPY"], min_history=20, calendar=None)
    for day, seq in ((date(2020, 6, 10), 1), (date(2020, 6, 11), 2), (date(2020, 6, 15), 3)):
        as_of = CALENDAR.session(day).close_utc
        batch = agent.on_iteration(IterationStarted(iteration_id=f"it-{seq}", as_of=as_of, seq=seq)).batch
        assert batch is not None and batch.latest_day is not None
        shown = max(sb.last_timestamp.date() for sb in batch.bars.values())
        assert batch.session_day() == shown == day
        assert batch.bars["IBM"].last_timestamp.date() == date(2020, 6, 1)  # the stopped feed does not set the session
        without = replace(batch, latest_day=None)  # a batch built by hand works the day out from its bars
        assert without.session_day() == day


# ------------------------------------------------------------------------- flagged, not listed, broad failure

AS_OF = CALENDAR.session(date(2020, 6, 15)).close_utc


class _Altered(FileProvider):
    """The bundled bars with some symbols altered: a session dropped, the start trimmed, or no bars served."""

    def __init__(self, directory, *, drop=None, listed_from=None, fail=()):  # type: ignore[no-untyped-def]
        super().__init__(directory)
        self.drop, self.listed_from, self.fail = drop or {}, listed_from or {}, set(fail)

    def history(self, symbols, end, start=None):  # type: ignore[no-untyped-def]
        result = super().history(symbols, end=end)
        frames, errors = dict(result.frames), dict(result.errors)
        for symbol, day in self.drop.items():
            frames[symbol] = frames[symbol].drop(index=pd.Timestamp(day, tz="UTC"))
        for symbol, day in self.listed_from.items():
            frames[symbol] = frames[symbol].loc[frames[symbol].index >= pd.Timestamp(day, tz="UTC")]
        for symbol in self.fail & set(frames):
            del frames[symbol]
            errors[symbol] = "files: disk unreadable"
        return replace(result, frames=frames, errors=errors)


def _batch(agent: DataAgent, as_of=AS_OF, seq: int = 1):  # type: ignore[no-untyped-def]
    event = agent.on_iteration(IterationStarted(iteration_id=f"it-{seq}", as_of=as_of, seq=seq))
    return event, event.batch


def test_a_recent_missing_session_when_two_symbols_then_the_symbol_is_flagged_managed_and_the_breaker_not_tripped() -> (
    None
):
    provider = _Altered(BUNDLED_DAILY, drop={"AAPL": "2020-06-12"})
    agent = DataAgent(provider, ["AAPL", "SPY"], min_history=20, calendar=CALENDAR)
    event, batch = _batch(agent)
    assert set(batch.bars) == {"AAPL", "SPY"}  # AAPL's positions are still managed on its bars
    assert set(batch.entry_blocked) == {"AAPL"} and "missing_sessions" in batch.entry_blocked["AAPL"]
    assert batch.bars["AAPL"].last_timestamp.date() == date(2020, 6, 15)
    assert batch.data_quality == 0.5 and batch.data_problems == 1
    assert batch.breaker_quality == 1.0  # one symbol's trouble does not stop the other's entries
    assert event.degraded == ()
    [flagged] = [d for d in event.decisions if d.symbol == "AAPL"]
    assert flagged.action == "flagged" and flagged.inputs["category"] == "missing_sessions"
    # three sessions later the gap no longer matters
    later = CALENDAR.session(date(2020, 6, 17)).close_utc
    _, batch = _batch(agent, later, 2)
    assert batch.entry_blocked == {} and batch.data_quality == 1.0


def test_a_bad_latest_bar_when_flagged_then_the_symbol_is_managed_on_the_bar_before_it() -> None:
    class _BadLast(FileProvider):
        def history(self, symbols, end, start=None):  # type: ignore[no-untyped-def]
            result = super().history(symbols, end=end)
            frame = result.frames["AAPL"].copy()
            frame.loc[pd.Timestamp("2020-06-15", tz="UTC"), "close"] = float("nan")
            return replace(result, frames={**result.frames, "AAPL": frame})

    agent = DataAgent(_BadLast(BUNDLED_DAILY), ["AAPL", "SPY"], min_history=20, calendar=CALENDAR)
    _, batch = _batch(agent)
    assert "finite_values" in batch.entry_blocked["AAPL"]
    assert batch.bars["AAPL"].last_timestamp.date() == date(2020, 6, 12)  # the last good bar: its mark, its signals


def test_a_symbol_not_listed_yet_when_batched_then_neither_rejected_nor_counted() -> None:
    provider = _Altered(BUNDLED_DAILY, listed_from={"IBM": "2020-07-01"})
    agent = DataAgent(provider, ["AAPL", "IBM"], min_history=20, calendar=CALENDAR, routine_decisions=False)
    event, batch = _batch(agent)
    assert batch.not_listed == ("IBM",) and "IBM" not in batch.rejected and "IBM" not in batch.bars
    assert batch.data_quality == 1.0 and batch.exclusions == {"IBM": "not_listed"}
    assert event.degraded == () and event.decisions == ()  # nothing worth a row in a backtest


def test_a_symbol_warming_up_when_batched_then_rejected_as_warm_up_and_not_counted_against_quality() -> None:
    provider = _Altered(BUNDLED_DAILY, listed_from={"IBM": "2020-06-01"})
    agent = DataAgent(provider, ["AAPL", "IBM"], min_history=20, calendar=CALENDAR)
    _, batch = _batch(agent)
    assert set(batch.rejected) == {"IBM"} and batch.exclusions == {"IBM": "warm_up"}
    assert batch.data_quality == 1.0


def test_a_provider_failure_when_the_symbol_had_bars_then_it_is_managed_on_the_last_bars_served() -> None:
    provider = _Altered(BUNDLED_DAILY)
    agent = DataAgent(provider, ["AAPL", "SPY"], min_history=20, calendar=CALENDAR)
    _batch(agent)
    provider.fail = {"AAPL"}
    event, batch = _batch(agent, CALENDAR.session(date(2020, 6, 16)).close_utc, 2)
    assert "AAPL" in batch.bars and batch.bars["AAPL"].last_timestamp.date() == date(2020, 6, 15)
    assert batch.exclusions["AAPL"] == "provider" and "disk unreadable" in batch.entry_blocked["AAPL"]
    assert agent.exclusion_counts == {"provider": 1}


def test_no_usable_symbol_when_every_file_misses_the_latest_session_then_the_iteration_is_degraded() -> None:
    provider = _Altered(BUNDLED_DAILY, drop={"AAPL": "2020-06-15", "SPY": "2020-06-15"})
    agent = DataAgent(provider, ["AAPL", "SPY"], min_history=20, calendar=CALENDAR)
    event, batch = _batch(agent)
    assert set(batch.bars) == {"AAPL", "SPY"} and set(batch.entry_blocked) == {"AAPL", "SPY"}
    assert batch.data_quality == 0.0 and batch.breaker_quality == 0.0  # two symbols in trouble: a broad failure
    assert event.degraded and event.degraded[0].startswith("no usable data") and "freshness 2" in event.degraded[0]


@pytest.mark.parametrize(
    ("universe", "troubled", "tripped"),
    [
        (1, 1, False),
        (2, 1, False),
        (2, 2, True),
        (3, 1, False),
        (3, 2, True),
        (5, 1, False),
        (5, 2, True),
        (10, 2, False),
        (10, 3, True),
    ],
)
def test_breaker_quality_when_symbols_are_in_trouble_then_trips_on_broad_failure_only(
    universe: int, troubled: int, tripped: bool
) -> None:
    exclusions = {f"S{i}": "missing_sessions" for i in range(troubled)} | {"LATE": "not_listed", "NEW": "warm_up"}
    batch = BarsBatch(
        iteration_id="it", as_of=AS_OF, bars={}, data_quality=(universe - troubled) / universe, exclusions=exclusions
    )
    assert (batch.breaker_quality < 0.8) is tripped


def test_an_old_bad_bar_when_sessions_pass_then_the_symbol_stays_flagged_and_a_new_bad_bar_updates_the_reason() -> None:
    class _TwoBad(FileProvider):
        def history(self, symbols, end, start=None):  # type: ignore[no-untyped-def]
            result = super().history(symbols, end=end)
            frame = result.frames["AAPL"].copy()
            frame.loc[pd.Timestamp("2010-03-01", tz="UTC"), "volume"] = -1.0
            frame.loc[pd.Timestamp("2020-06-17", tz="UTC"), "volume"] = -2.0
            return replace(result, frames={**result.frames, "AAPL": frame})

    agent = DataAgent(_TwoBad(BUNDLED_DAILY), ["AAPL", "SPY"], min_history=20, calendar=CALENDAR)
    reasons = []
    for seq, day in enumerate((date(2020, 6, 15), date(2020, 6, 16), date(2020, 6, 17), date(2020, 6, 18)), start=1):
        _, batch = _batch(agent, CALENDAR.session(day).close_utc, seq)
        assert batch.exclusions == {"AAPL": "non_negative_volume"}
        reasons.append(batch.entry_blocked["AAPL"])
        # managed on its last good bar: the day's own bar unless that bar is the bad one
        expected = date(2020, 6, 16) if day == date(2020, 6, 17) else day
        assert batch.bars["AAPL"].last_timestamp.date() == expected
    assert reasons[0] == reasons[1] and "1 bar(s) with negative volume; first 2010-03-01" in reasons[0]
    assert "2 bar(s) with negative volume; first 2010-03-01" in reasons[2] == reasons[3]


def test_log_when_a_problem_starts_persists_and_ends_then_one_warning_and_one_note() -> None:
    from loguru import logger

    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="INFO", format="{message}")
    try:
        provider = _Altered(BUNDLED_DAILY)
        agent = DataAgent(provider, ["AAPL", "SPY"], min_history=20, calendar=CALENDAR)
        days = [date(2020, 6, d) for d in (15, 16, 17, 18, 19)]
        for seq, day in enumerate(days):
            provider.fail = {"AAPL"} if seq in (1, 2, 3) else set()  # fails three sessions, then serves again
            _batch(agent, CALENDAR.session(day).close_utc, seq)
    finally:
        logger.remove(sink)
    data_lines = [line for line in lines if line.startswith("data: ")]
    assert len(data_lines) == 2, data_lines
    assert data_lines[0].startswith("data: AAPL flagged") and data_lines[1] == "data: AAPL usable again"
    assert agent.exclusion_counts == {"provider": 3}

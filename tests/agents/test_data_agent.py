"""Data agent: the batch it publishes (visible rows, the session it decides on)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pandas as pd

from agents.data_agent import DataAgent
from core.calendar import MarketCalendar
from core.data.files import FileProvider
from core.events import IterationStarted
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

"""The bar screen on its own (the Data agent's behaviour is specified in tests/agents/test_data_agent.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.data import validation as rules
from core.data.files import FileProvider
from core.data.screening import BarScreen, Screening, category_of
from core.kernel.calendar import MarketCalendar
from core.kernel.domain import NOT_LISTED, PROVIDER, WARM_UP
from tests.conftest import BUNDLED_DAILY


def test_category_when_several_rules_break_then_the_most_serious_one_names_it() -> None:
    assert category_of({rules.MISSING_SESSIONS, rules.POSITIVE_PRICES}) == rules.POSITIVE_PRICES
    assert category_of({rules.MIN_HISTORY, rules.LAYOUT}) == WARM_UP


def test_quality_when_some_symbols_are_not_listed_or_warming_up_then_only_data_problems_count() -> None:
    screening = Screening(usable=2, categories={"A": NOT_LISTED, "B": WARM_UP, "C": PROVIDER})
    assert screening.quality == pytest.approx(2 / 3)
    assert screening.troubled == {"C": PROVIDER}
    assert Screening().quality == 1.0


def test_screen_when_bundled_bars_are_clean_then_every_symbol_is_usable_with_one_ok_decision_each() -> None:
    symbols = ["AAPL", "SPY"]
    provider = FileProvider(BUNDLED_DAILY)
    screen = BarScreen(symbols, min_history=50, calendar=MarketCalendar())
    as_of = datetime(2015, 6, 2, 20, 0, tzinfo=UTC)
    out = screen.screen(provider.history(symbols, end=as_of), as_of, provider.name)
    assert sorted(out.bars) == symbols and out.usable == 2 and out.quality == 1.0
    assert [d.action for d in out.decisions] == ["ok", "ok"]
    assert all(sb.last_timestamp.date().isoformat() == "2015-06-02" for sb in out.bars.values())


def test_screen_when_the_gap_setting_is_below_one_session_then_it_is_refused() -> None:
    with pytest.raises(ValueError, match="gap_sessions"):
        BarScreen(["SPY"], min_history=1, calendar=None, gap_sessions=0)

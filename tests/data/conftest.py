"""Fixtures shared by the market-data tests: the bundled daily bars and one market calendar per session."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from core.kernel.calendar import MarketCalendar
from core.data.files import FileProvider

REPO_ROOT = Path(__file__).resolve().parents[2]
REAL_SYMBOLS = ("AAPL", "AIG", "BAC", "IBM", "IWM", "SPY")


def real_daily_dir() -> Path | None:
    """The bundled sample bars (data/daily), else the shared copy beside the project; None when neither exists."""
    for candidate in (REPO_ROOT / "data" / "daily", REPO_ROOT.parent / "shared" / "data" / "daily"):
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture(scope="session")
def daily_dir() -> Path:
    found = real_daily_dir()
    if found is None:
        pytest.skip("no real daily bars: neither data/daily nor ../shared/data/daily exists")
    return found


@pytest.fixture(scope="session")
def calendar() -> MarketCalendar:
    """Built once: exchange_calendars takes a noticeable fraction of a second to construct XNYS."""
    return MarketCalendar()


@pytest.fixture(scope="session")
def real_frames(daily_dir: Path) -> dict[str, pd.DataFrame]:
    """The real bars of every bundled symbol, normalised by FileProvider (tests copy before corrupting)."""
    result = FileProvider(daily_dir).history(REAL_SYMBOLS, end=datetime(2021, 4, 1, tzinfo=UTC))
    assert not result.errors, result.errors
    return dict(result.frames)

"""Fixtures of the strategy suite: the bundled daily bars (skipped with a reason when absent) and their peers."""

from __future__ import annotations

import pandas as pd
import pytest

from strategies.base import Peers
from tests.strategies.helpers import REPO_ROOT, SYMBOLS, daily_dir, read_bars


@pytest.fixture(scope="session")
def real_bars() -> dict[str, pd.DataFrame]:
    directory = daily_dir()
    if directory is None:
        pytest.skip(
            f"daily bars not found in {REPO_ROOT / 'data' / 'daily'} nor {REPO_ROOT.parent / 'shared' / 'data' / 'daily'}"
        )
    return {symbol: read_bars(directory / f"{symbol}.csv") for symbol in SYMBOLS}


@pytest.fixture(scope="session")
def real_peers(real_bars: dict[str, pd.DataFrame]) -> Peers:
    """SPY as the benchmark and all six symbols' closes as the universe."""
    closes = pd.DataFrame({symbol: frame["close"] for symbol, frame in real_bars.items()})
    return Peers(benchmark=real_bars["SPY"], closes=closes)

"""Fixtures of the strategy suite: the bundled daily bars and seeded synthetic random walks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from strategies.base import Peers

REPO_ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = ("AAPL", "AIG", "BAC", "IBM", "IWM", "SPY")


def daily_dir() -> Path | None:
    """repo_root/data/daily when the project bundles the bars, else ../shared/data/daily beside the repo."""
    for candidate in (REPO_ROOT / "data" / "daily", REPO_ROOT.parent / "shared" / "data" / "daily"):
        if all((candidate / f"{symbol}.csv").is_file() for symbol in SYMBOLS):
            return candidate
    return None


def read_bars(path: Path) -> pd.DataFrame:
    raw = pd.read_csv(path)
    index = pd.DatetimeIndex(pd.to_datetime(raw["Date"]), name="timestamp").tz_localize("UTC").normalize()
    return pd.DataFrame(
        {column.lower(): raw[column].astype("float64").to_numpy() for column in ("Open", "High", "Low", "Close", "Volume")},
        index=index,
    )


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
    closes = pd.DataFrame({symbol: frame["close"] for symbol, frame in real_bars.items()})
    return Peers(benchmark=real_bars["SPY"], closes=closes)


def random_walk_bars(n: int, seed: int, start: str = "2015-01-02") -> pd.DataFrame:
    """Seeded geometric random walk OHLCV on business days (UTC midnight), the layout of provider frames."""
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0002, 0.02, n)))
    open_ = close * np.exp(rng.normal(0.0, 0.006, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.01, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.01, n)))
    volume = rng.lognormal(12.0, 0.5, n).round()
    index = pd.bdate_range(start, periods=n, tz="UTC", name="timestamp")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index)


def random_universe(n: int, symbols: int, seed: int) -> dict[str, pd.DataFrame]:
    return {f"R{k}": random_walk_bars(n, seed * 1000 + k) for k in range(symbols)}

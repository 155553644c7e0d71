"""Bar factories of the strategy suite: the bundled daily CSVs and seeded synthetic random walks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = ("AAPL", "AIG", "BAC", "IBM", "IWM", "SPY")

# Short windows so that synthetic series of a few hundred bars produce many signals of every kind.
SHORT = {
    "trend_following": {"fast": 5, "slow": 20},
    "momentum_rotation": {"lookback": 10},
    "mean_reversion": {"rsi_length": 5, "oversold": 35, "overbought": 65},
    "breakout": {"length": 5},
    "volatility_breakout": {"length": 5, "k": 0.8},
    "relative_strength": {"lookback": 10},
    "sector_rotation": {"lookback": 10, "top_n": 2},
    "dual_momentum": {"lookback": 20},
    "moving_average_envelope": {"length": 10, "pct": 0.03},
    "bollinger_bands": {"length": 10, "std_dev": 1.5},
}


def daily_dir() -> Path | None:
    """repo_root/data/daily when the project bundles the bars, else ../shared/data/daily beside the repo."""
    for candidate in (REPO_ROOT / "data" / "daily", REPO_ROOT.parent / "shared" / "data" / "daily"):
        if all((candidate / f"{symbol}.csv").is_file() for symbol in SYMBOLS):
            return candidate
    return None


def read_bars(path: Path) -> pd.DataFrame:
    """A Date,Open,High,Low,Close,Volume CSV as a provider-layout frame (UTC midnight index, float64 columns)."""
    raw = pd.read_csv(path)
    index = pd.DatetimeIndex(pd.to_datetime(raw["Date"]), name="timestamp").tz_localize("UTC").normalize()
    return pd.DataFrame(
        {c.lower(): raw[c].astype("float64").to_numpy() for c in ("Open", "High", "Low", "Close", "Volume")},
        index=index,
    )


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

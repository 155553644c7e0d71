"""Synthetic bar files for the research tests: a planted signal the search must find, and pure noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

BASE_MOVE = 0.10  # every ordinary session moves the close by +/-0.10 ...
WICK = 0.10  # ... with 0.10 of wick either side: a true range of 0.30, the steady ATR
TRUE_JUMP = 1.05  # 3.5 ATR: followed by a steady rise (a winner for any k below 3.5)
DECOY_JUMP = 0.75  # 2.5 ATR: followed by a steady fall (a loser for any k below 2.5)
DRIFT = 0.12
DRIFT_SESSIONS = 12
SPACING = 30
PLANTED_K = (2.5, 3.5)  # volatility_breakout k (length=10) that buys every true jump and no decoy


def _write(directory: Path, symbol: str, closes: np.ndarray, dates: pd.DatetimeIndex) -> None:
    opens = np.concatenate([[closes[0]], closes[:-1]])
    frame = pd.DataFrame(
        {
            "Date": dates.strftime("%Y-%m-%d"),
            "Open": opens,
            "High": np.maximum(opens, closes) + WICK,
            "Low": np.minimum(opens, closes) - WICK,
            "Close": closes,
            "Volume": 1_000_000,
        }
    )
    directory.mkdir(parents=True, exist_ok=True)
    frame.to_csv(directory / f"{symbol}.csv", index=False, float_format="%.4f")


def planted(directory: Path, *, symbols: int = 2, sessions: int = 520, seed: int = 7) -> Path:
    """Bars where ``volatility_breakout`` with ``length=10`` is profitable exactly for ``k`` in :data:`PLANTED_K`:
    quiet sessions (true range 0.30) interrupted every :data:`SPACING` sessions by a jump of 3.5 ATR followed by a
    rise, or of 2.5 ATR followed by a fall, in random order."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2019-01-02", periods=sessions)
    for s in range(symbols):
        moves = np.where(np.arange(sessions) % 2 == 0, BASE_MOVE, -BASE_MOVE) * rng.choice([1, -1])
        start = 40 + 7 * s
        for event in range(start, sessions - DRIFT_SESSIONS - 1, SPACING):
            real = rng.random() < 0.5
            moves[event] = TRUE_JUMP if real else DECOY_JUMP
            drift = DRIFT if real else -DRIFT
            moves[event + 1 : event + 1 + DRIFT_SESSIONS] = drift
        closes = 100.0 + np.cumsum(moves)
        _write(directory, f"P{s}", closes, dates)
    return directory


def noise(directory: Path, *, symbols: int = 3, sessions: int = 600, seed: int = 11) -> Path:
    """Geometric random walks (no edge for any strategy): daily returns N(0, 1.5 %)."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2019-01-02", periods=sessions)
    for s in range(symbols):
        closes = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.015, sessions)))
        opens = np.concatenate([[closes[0]], closes[:-1]]) * np.exp(rng.normal(0, 0.003, sessions))
        high = np.maximum(opens, closes) * (1 + np.abs(rng.normal(0, 0.005, sessions)))
        low = np.minimum(opens, closes) * (1 - np.abs(rng.normal(0, 0.005, sessions)))
        frame = pd.DataFrame(
            {
                "Date": dates.strftime("%Y-%m-%d"),
                "Open": opens,
                "High": high,
                "Low": low,
                "Close": closes,
                "Volume": 1_000_000,
            }
        )
        directory.mkdir(parents=True, exist_ok=True)
        frame.to_csv(directory / f"N{s}.csv", index=False, float_format="%.4f")
    return directory

"""Market context of one symbol: volatility, trend strength, volume activity and a regime label.

``context_frame(bars)`` is vectorised and causal (row *t* uses rows ``<= t`` only) and gives the context of every
row; ``context_at(symbol, bars, i)`` packages row ``i`` as a :class:`MarketContext` for the strategy selector.

Definitions (defaults in :class:`ContextRules`):
    volatility      annualised standard deviation of daily log returns over 20 bars (x sqrt(252))
    trend_strength  ADX(14), Wilder (as pandas-ta); 0-100, above ~25 is a trend
    volume_ratio    average volume over 20 bars / average volume over 60 bars
    regime          "volatile"       if volatility >= volatile_level, or >= volatile_ratio x its 252-bar level;
                    else "trending_up" / "trending_down" if ADX >= trend_threshold (+DI >= -DI: up);
                    else "ranging" (also when the ADX is not defined yet: too little history).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from collections.abc import Sequence

import numpy as np
import pandas as pd

from core.kernel.domain import ensure_utc, session_timestamp
from strategies import indicators as ind

REGIMES: Final[tuple[str, ...]] = ("trending_up", "trending_down", "ranging", "volatile")
CONTEXT_COLUMNS: Final[tuple[str, ...]] = (
    "volatility",
    "long_volatility",
    "trend_strength",
    "plus_di",
    "minus_di",
    "volume_ratio",
    "regime",
)


@dataclass(frozen=True, slots=True)
class ContextRules:
    """Windows and thresholds of the context computation (immutable; pass a modified copy to change them)."""

    adx_length: int = 14
    volatility_window: int = 20
    long_volatility_window: int = 252
    volume_short: int = 20
    volume_long: int = 60
    trend_threshold: float = 25.0
    volatile_level: float = 0.60
    volatile_ratio: float = 1.75
    periods_per_year: int = 252

    def __post_init__(self) -> None:
        for name in ("adx_length", "volume_short", "volume_long", "periods_per_year"):
            if getattr(self, name) < 1:
                raise ValueError(f"ContextRules.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("volatility_window", "long_volatility_window"):
            if getattr(self, name) < 2:
                raise ValueError(f"ContextRules.{name} must be >= 2, got {getattr(self, name)}")
        if self.volume_short >= self.volume_long:
            raise ValueError(
                f"ContextRules.volume_short ({self.volume_short}) must be below volume_long ({self.volume_long})"
            )
        for name in ("trend_threshold", "volatile_level", "volatile_ratio"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"ContextRules.{name} must be a positive number, got {value}")


DEFAULT_CONTEXT_RULES: Final = ContextRules()


@dataclass(frozen=True, slots=True)
class MarketContext:
    """The context of one symbol at one decision time.  NaN fields mean "not enough history to say"."""

    symbol: str
    volatility: float
    trend_strength: float
    volume_ratio: float
    regime: str
    as_of: datetime | None = None

    def __post_init__(self) -> None:
        if self.regime not in REGIMES:
            raise ValueError(f"regime must be one of {REGIMES}, got {self.regime!r}")
        if self.as_of is not None:
            ensure_utc(self.as_of, "as_of")

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view (NaN -> None, ``as_of`` as ISO-8601)."""

        def number(value: float) -> float | None:
            return float(value) if math.isfinite(value) else None

        return {
            "symbol": self.symbol,
            "regime": self.regime,
            "volatility": number(self.volatility),
            "trend_strength": number(self.trend_strength),
            "volume_ratio": number(self.volume_ratio),
            "as_of": self.as_of.isoformat() if self.as_of is not None else None,
        }


def _column(bars: pd.DataFrame, name: str) -> np.ndarray:
    if name not in bars.columns:
        return np.full(len(bars), np.nan)
    return bars[name].to_numpy(dtype=np.float64)


_REGIME_NAMES = np.array(REGIMES, dtype=object)


def _price_columns(bars: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """high, low, close and volume (NaN when absent) as float64 arrays; views of the frame's one float64 block when
    it has that layout (the provider's), which costs a microsecond instead of a pandas column lookup each."""
    names = ("high", "low", "close", "volume")
    positions = [bars.columns.get_loc(c) if c in bars.columns else None for c in names]
    if all(isinstance(j, int) for j in positions[:3]) and (positions[3] is None or isinstance(positions[3], int)):
        values = bars.to_numpy()
        if values.dtype == np.float64:
            high, low, close, volume = (
                values[:, j] if isinstance(j, int) else np.full(len(bars), np.nan) for j in positions
            )
            return high, low, close, volume
    high, low, close, volume = (_column(bars, c) for c in names)
    return high, low, close, volume


def context_arrays(bars: pd.DataFrame, rules: ContextRules = DEFAULT_CONTEXT_RULES) -> dict[str, np.ndarray]:
    """:func:`context_frame`'s columns as numpy arrays (``regime``: objects, the :data:`REGIMES` strings shared by
    every row), without building the frame: the Strategy agent reads one row of each symbol's context per session."""
    missing = [c for c in ("high", "low", "close") if c not in bars.columns]
    if missing:
        raise ValueError(f"bars frame lacks required column(s) {missing}; has {list(bars.columns)}")
    return _context_columns(*_price_columns(bars), rules)


def context_arrays_many(
    frames: Sequence[pd.DataFrame], rules: ContextRules = DEFAULT_CONTEXT_RULES
) -> list[dict[str, np.ndarray]]:
    """:func:`context_arrays` of several frames on the same dates (equal indexes), computed once over their stacked
    prices: each frame's arrays are bit for bit its own (the indicator kernels treat every row as alone). The arrays
    are rows of arrays the frames share (read them, do not write to them)."""
    for bars in frames:
        missing = [c for c in ("high", "low", "close") if c not in bars.columns]
        if missing:
            raise ValueError(f"bars frame lacks required column(s) {missing}; has {list(bars.columns)}")
    if len(frames) == 1:
        return [context_arrays(frames[0], rules)]
    columns = [_price_columns(bars) for bars in frames]
    high, low, close, volume = (np.stack([c[k] for c in columns]) for k in range(4))
    stacked = _context_columns(high, low, close, volume, rules)
    return [{name: values[row] for name, values in stacked.items()} for row in range(len(frames))]


def _context_columns(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, rules: ContextRules
) -> dict[str, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        log_return = np.log(close / ind.shift(close, 1))
        log_return[~np.isfinite(log_return)] = np.nan
        annualise = math.sqrt(rules.periods_per_year)
        volatility = ind.rolling_std(log_return, rules.volatility_window, ddof=1) * annualise
        long_volatility = ind.rolling_std(log_return, rules.long_volatility_window, ddof=1) * annualise
        trend_strength, plus_di, minus_di = ind.adx(high, low, close, rules.adx_length)
        volume_ratio = ind.sma(volume, rules.volume_short) / ind.sma(volume, rules.volume_long)
        volume_ratio[~np.isfinite(volume_ratio)] = np.nan

        volatile = (volatility >= rules.volatile_level) | (volatility >= rules.volatile_ratio * long_volatility)
        trending = trend_strength >= rules.trend_threshold
        codes = np.select(
            [volatile, trending & (plus_di >= minus_di), trending],
            [REGIMES.index("volatile"), REGIMES.index("trending_up"), REGIMES.index("trending_down")],
            default=REGIMES.index("ranging"),
        ).astype(np.int8)
    return {
        "volatility": volatility,
        "long_volatility": long_volatility,
        "trend_strength": trend_strength,
        "plus_di": plus_di,
        "minus_di": minus_di,
        "volume_ratio": volume_ratio,
        "regime_code": codes,
        "regime": _REGIME_NAMES[codes],
    }


def context_frame(bars: pd.DataFrame, rules: ContextRules = DEFAULT_CONTEXT_RULES) -> pd.DataFrame:
    """The context of every row of ``bars`` (columns :data:`CONTEXT_COLUMNS`), causal row by row."""
    arrays = context_arrays(bars, rules)
    codes = arrays.pop("regime_code")
    del arrays["regime"]
    return pd.DataFrame(
        {**arrays, "regime": pd.Categorical.from_codes(codes, categories=pd.Index(REGIMES))},
        index=bars.index,
    )


def context_at(
    symbol: str, bars_frame: pd.DataFrame, i: int, rules: ContextRules = DEFAULT_CONTEXT_RULES
) -> MarketContext:
    """The :class:`MarketContext` of row ``i`` of ``bars_frame``, computed from rows ``<= i`` only."""
    n = len(bars_frame)
    position = i + n if i < 0 else i
    if not 0 <= position < n:
        raise IndexError(f"row {i} is outside the {n} bars of {symbol}")
    visible = bars_frame.iloc[: position + 1]
    row = context_frame(visible, rules).iloc[-1]
    timestamp = visible.index[-1]
    as_of = session_timestamp(timestamp) if isinstance(timestamp, pd.Timestamp) and timestamp.tz is not None else None
    return MarketContext(
        symbol=symbol,
        volatility=float(row["volatility"]),
        trend_strength=float(row["trend_strength"]),
        volume_ratio=float(row["volume_ratio"]),
        regime=str(row["regime"]),
        as_of=as_of,
    )

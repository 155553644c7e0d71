"""Seeded, reproducible synthetic daily bars on NYSE sessions, with trending, ranging and volatile regimes.

Every symbol's path is a pure function of ``(seed, symbol, regimes)`` and the session positions: the symbol name is
mixed into the seed with BLAKE2b (not the per-process salted ``hash()``), so a run is repeatable across processes and
machines. Each ingredient (regime blocks, returns, gaps, wicks, volume) draws from its own child random stream and
is generated in time order, so a longer path extends a shorter one without changing its bars: the bars of a date do
not depend on how far the provider was asked to generate.

Bars are valid by construction: positive prices, ``low <= min(open, close)``, ``max(open, close) <= high``, volume
at least 1 share.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from core.kernel.calendar import MarketCalendar
from core.data.base import ProviderResult
from core.kernel.domain import BAR_COLUMNS, ensure_utc

MIN_BLOCK = 20
MAX_BLOCK = 120
_AR_KERNEL = 80  # ranging regimes: AR(1) truncated after this many lags (phi**80 is negligible)
_HORIZON_HEADROOM = 260  # sessions generated beyond the requested end when the provider extends a path


@dataclass(frozen=True, slots=True)
class Regime:
    """Parameters of one market regime, per session.

    ``drift``: expected log return per session (trending regimes pick an up or down direction per block, up with
    probability ``up_probability``). ``volatility``: standard deviation of the log return. ``mean_reversion``: in
    ``[0, 1)``; above zero the price oscillates around the level where the block began (an AR(1) with coefficient
    ``1 - mean_reversion``) instead of wandering. ``tail_df``: Student-t degrees of freedom for fat tails (``None``
    = normal). ``volume_factor`` scales traded volume. ``weight``: relative chance of the regime being picked for a
    block.
    """

    name: str
    drift: float
    volatility: float
    mean_reversion: float = 0.0
    tail_df: float | None = None
    volume_factor: float = 1.0
    up_probability: float = 0.5
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("Regime.name must not be empty")
        if self.volatility <= 0:
            raise ValueError(f"Regime {self.name}: volatility must be positive, got {self.volatility}")
        if not 0.0 <= self.mean_reversion < 1.0:
            raise ValueError(f"Regime {self.name}: mean_reversion must be in [0, 1), got {self.mean_reversion}")
        if self.tail_df is not None and self.tail_df <= 2:
            raise ValueError(f"Regime {self.name}: tail_df must be > 2 (finite variance), got {self.tail_df}")
        if self.volume_factor <= 0 or self.weight <= 0:
            raise ValueError(f"Regime {self.name}: volume_factor and weight must be positive")
        if not 0.0 <= self.up_probability <= 1.0:
            raise ValueError(f"Regime {self.name}: up_probability must be in [0, 1], got {self.up_probability}")


TRENDING = Regime("trending", drift=0.0012, volatility=0.011, up_probability=0.65)
RANGING = Regime("ranging", drift=0.0, volatility=0.009, mean_reversion=0.08, volume_factor=0.8)
VOLATILE = Regime("volatile", drift=0.0, volatility=0.028, tail_df=4.0, volume_factor=1.8)
DEFAULT_REGIMES: tuple[Regime, ...] = (TRENDING, RANGING, VOLATILE)


def symbol_seed(seed: int, symbol: str, stream: str = "") -> np.random.SeedSequence:
    """A seed sequence derived deterministically (BLAKE2b) from ``seed``, the upper-cased symbol and a stream label."""
    digest = hashlib.blake2b(f"{int(seed)}\x1f{symbol.upper()}\x1f{stream}".encode(), digest_size=16).digest()
    return np.random.SeedSequence(int.from_bytes(digest, "big"))


def _resolve(regime: Regime | str | None, regimes: Sequence[Regime]) -> tuple[Regime, ...]:
    if not regimes:
        raise ValueError("at least one regime is required")
    if regime is None:
        return tuple(regimes)
    if isinstance(regime, Regime):
        return (regime,)
    for candidate in regimes:
        if candidate.name == regime:
            return (candidate,)
    raise ValueError(f"unknown regime {regime!r}; known: {', '.join(r.name for r in regimes)}")


_STREAMS = ("block_length", "block_regime", "block_direction", "shock", "gap", "wick", "volume", "base")


def _rng(seed: int, symbol: str, stream: str) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(symbol_seed(seed, symbol, stream)))


def _streams(seed: int, symbol: str) -> dict[str, np.random.Generator]:
    """One independent generator per ingredient, so each draws exactly one value per session in time order."""
    return {name: _rng(seed, symbol, name) for name in _STREAMS}


def _blocks(
    streams: dict[str, np.random.Generator], n: int, regimes: Sequence[Regime]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-session regime code, block number and trend direction (+1/-1), in blocks of MIN_BLOCK..MAX_BLOCK."""
    count = n // MIN_BLOCK + 1
    lengths = streams["block_length"].integers(MIN_BLOCK, MAX_BLOCK + 1, size=count)
    weights = np.array([r.weight for r in regimes], dtype=np.float64)
    codes = streams["block_regime"].choice(len(regimes), size=count, p=weights / weights.sum())
    up = np.array([r.up_probability for r in regimes])[codes]
    directions = np.where(streams["block_direction"].random(count) < up, 1.0, -1.0)
    block_ids = np.repeat(np.arange(count), lengths)[:n]
    return codes[block_ids], block_ids, directions[block_ids]


def generate_regimes(
    symbol: str, n: int, seed: int, regime: Regime | str | None = None, regimes: Sequence[Regime] = DEFAULT_REGIMES
) -> np.ndarray:
    """The regime name of each of the first ``n`` sessions of ``symbol``'s path (as used by :func:`generate_bars`)."""
    chosen = _resolve(regime, regimes)
    codes, _, _ = _blocks(_streams(seed, symbol), n, chosen)
    return np.array([r.name for r in chosen], dtype=object)[codes]


def generate_bars(
    symbol: str,
    sessions_index: pd.DatetimeIndex,
    seed: int,
    regime: Regime | str | None = None,
    regimes: Sequence[Regime] = DEFAULT_REGIMES,
) -> pd.DataFrame:
    """Synthetic OHLCV bars for ``symbol`` on ``sessions_index`` (UTC-midnight session timestamps).

    ``regime=None`` switches among ``regimes`` in blocks of 20-120 sessions; a regime (or its name) holds it for the
    whole path. The same arguments always give the same frame; the first ``k`` bars do not depend on how many
    sessions follow them. Vectorised: 500 symbols x 10 years take well under a second or two.
    """
    index = pd.DatetimeIndex(sessions_index)
    if index.tz is None or str(index.tz) != "UTC":
        raise ValueError(f"generate_bars({symbol}): sessions_index must be tz-aware UTC, got tz={index.tz}")
    if not index.is_monotonic_increasing or index.has_duplicates:
        raise ValueError(f"generate_bars({symbol}): sessions_index must be strictly increasing")
    chosen = _resolve(regime, regimes)
    n = len(index)
    if n == 0:
        return pd.DataFrame({c: np.empty(0) for c in BAR_COLUMNS}, index=index.rename("timestamp"))
    streams = _streams(seed, symbol)
    codes, block_ids, directions = _blocks(streams, n, chosen)

    def per_session(attribute: str) -> np.ndarray:
        return np.array([getattr(r, attribute) for r in chosen], dtype=np.float64)[codes]

    volatility = per_session("volatility")

    # Unit-variance shocks: normal, or Student-t (rescaled to unit variance) where the regime has fat tails.
    # Every stream draws one value per session in time order, which keeps paths prefix-stable.
    shocks = streams["shock"].standard_normal(n)
    for code, r in enumerate(chosen):
        if r.tail_df is None:
            continue
        chi_square = _rng(seed, symbol, f"tail:{r.name}").chisquare(r.tail_df, n)
        mask = codes == code
        scale = np.sqrt((r.tail_df - 2.0) / r.tail_df)
        shocks[mask] = shocks[mask] / np.sqrt(chi_square[mask] / r.tail_df) * scale

    returns = per_session("drift") * directions + volatility * shocks

    # Ranging regimes: the log price is the level where the block began plus a stationary AR(1) deviation.
    for code, r in enumerate(chosen):
        if r.mean_reversion <= 0:
            continue
        mask = codes == code
        kernel = (1.0 - r.mean_reversion) ** np.arange(_AR_KERNEL)
        deviation = np.convolve(r.volatility * shocks, kernel)[:n]
        steps = np.diff(deviation, prepend=0.0)
        block_start = np.r_[True, block_ids[1:] != block_ids[:-1]]
        steps[block_start] = deviation[block_start]
        returns[mask] = steps[mask]

    first_price = float(np.exp(streams["base"].uniform(np.log(10.0), np.log(400.0))))
    base_volume = float(np.exp(streams["base"].uniform(np.log(2e5), np.log(5e7))))

    log_close = np.log(first_price) + np.cumsum(returns)
    close = np.exp(log_close)
    previous = np.exp(np.r_[np.log(first_price), log_close[:-1]])
    open_ = previous * np.exp(streams["gap"].standard_normal(n) * 0.35 * volatility)
    wicks = np.abs(streams["wick"].standard_normal((n, 2))) * 0.6 * volatility[:, None]
    # exp(-x) <= 1 <= exp(x) and float multiplication is monotone, so low <= open, close <= high holds exactly.
    high = np.maximum(open_, close) * np.exp(wicks[:, 0])
    low = np.minimum(open_, close) * np.exp(-wicks[:, 1])
    move = np.abs(returns)
    noise = np.exp(streams["volume"].standard_normal(n) * 0.25)
    volume = np.maximum(1.0, np.round(base_volume * per_session("volume_factor") * noise * (1.0 + 8.0 * move)))
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume},
        index=index.rename("timestamp"),
        columns=list(BAR_COLUMNS),
    )


class SyntheticProvider:
    """:class:`core.data.base.BarProvider` of synthetic bars from ``start`` on the calendar's sessions.

    With ``sessions`` the path is exactly that many sessions long; with ``None`` it runs up to the last session
    completed by the requested ``end``. Frames never extend past that session (a bar exists once its session has
    closed), and begin at ``start`` of the request when given. Generated paths are cached per symbol and extended in
    chunks, so repeated calls are cheap.
    """

    def __init__(
        self,
        seed: int,
        start: date,
        sessions: int | None = None,
        *,
        calendar: MarketCalendar,
        regimes: Sequence[Regime] = DEFAULT_REGIMES,
        name: str = "synthetic",
    ) -> None:
        if sessions is not None and sessions <= 0:
            raise ValueError(f"SyntheticProvider: sessions must be positive or None, got {sessions}")
        _resolve(None, regimes)
        self.seed = seed
        self.start = start
        self.sessions = sessions
        self.calendar = calendar
        self.regimes = tuple(regimes)
        self.name = name
        self._fixed_index = calendar.sessions_from(start, sessions) if sessions is not None else None
        self._paths: dict[str, pd.DataFrame] = {}

    def history(self, symbols: Sequence[str], end: datetime, start: datetime | None = None) -> ProviderResult:
        ensure_utc(end, "end")
        last = pd.Timestamp(self.calendar.previous_completed_session(end).date.isoformat(), tz="UTC")
        first = pd.Timestamp(ensure_utc(start, "start")).normalize() if start is not None else None
        frames: dict[str, pd.DataFrame] = {}
        errors: dict[str, str] = {}
        for symbol in dict.fromkeys(symbols):
            if not symbol or not symbol.strip():
                errors[symbol] = f"{self.name}: empty symbol name"
                continue
            path = self._path(symbol, last)
            stop = path.index.searchsorted(last, side="right")
            begin = path.index.searchsorted(first) if first is not None else 0
            frame = path.iloc[begin:stop]
            if frame.empty:
                errors[symbol] = (
                    f"{self.name}: no synthetic sessions for {symbol} between "
                    f"{(first.date() if first is not None else self.start)} and {last.date()} "
                    f"(path starts {self.start})"
                )
                continue
            frames[symbol] = frame.copy(deep=False)
        return ProviderResult(frames=frames, errors=errors, provider=self.name)

    def _path(self, symbol: str, last: pd.Timestamp) -> pd.DataFrame:
        key = symbol.upper()
        cached = self._paths.get(key)
        if self._fixed_index is not None:
            if cached is None:
                cached = generate_bars(key, self._fixed_index, self.seed, regimes=self.regimes)
                self._paths[key] = cached
            return cached
        if cached is not None and (len(cached) and cached.index[-1] >= last):
            return cached
        if last.date() < self.start:
            index = self.calendar.sessions_index(self.start, self.start)[:0]
        else:
            # Prefix-stable generation: extending the path with headroom never changes the bars already served.
            horizon = min(last.date() + timedelta(days=_HORIZON_HEADROOM * 7 // 5), self.calendar.end)
            index = self.calendar.sessions_index(self.start, horizon)
        path = generate_bars(key, index, self.seed, regimes=self.regimes)
        self._paths[key] = path
        return path

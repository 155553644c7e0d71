"""Hand-built bars, signal frames and a registry of strategies with fixed signal frames for the Quant agent's tests."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime
from collections.abc import Hashable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from core.kernel.domain import Action, BarsBatch, Signal, SymbolBars, frozen_map, session_timestamp
from core.kernel.events import DataReady, IterationStarted, SignalsReady
from core.kernel.frame_cache import FrameCache
from strategies.base import Peers, Strategy, StrategyParams

ACTIONS = {1: Action.BUY, -1: Action.SELL, 0: Action.HOLD}
AS_OF = datetime(2030, 1, 1, 21, tzinfo=UTC)


def bars(close: Sequence[float], start: str = "2020-01-01") -> pd.DataFrame:
    close = np.asarray(close, dtype=float)
    index = pd.bdate_range(start, periods=len(close), tz="UTC", name="timestamp")
    return pd.DataFrame(
        {"open": close, "high": close * 1.01, "low": close * 0.99, "close": close, "volume": np.full(len(close), 1e6)},
        index=index,
    )


def signal_frame(
    frame: pd.DataFrame, actions: Sequence[int], strength: float = 0.5, **indicators: Sequence[float]
) -> pd.DataFrame:
    """A strategy's output frame: the given actions (padded with HOLD to the bars' length) and ind_* columns."""
    n = len(frame)
    codes = np.zeros(n, dtype=np.int8)
    codes[: len(actions)] = actions
    out = pd.DataFrame(
        {"action": codes, "strength": np.where(codes != 0, strength, 0.0), "stop": np.nan, "target": np.nan},
        index=frame.index,
    )
    for name, values in indicators.items():
        column = np.full(n, np.nan)
        column[: len(values)] = values
        out[f"ind_{name}"] = column
    return out


class FixedStrategy(Strategy):
    """A registered strategy whose signal frame over a bars frame is given by the test: the one of ``frames`` (by
    symbol) built on that bars frame's index object (as :func:`signal_frame` builds it). Each computation is recorded
    in ``calls`` as (symbol, strategy name)."""

    description = "signal frames fixed by the test"
    Params = StrategyParams

    def __init__(self, name: str, frames: Mapping[str, pd.DataFrame], calls: list[tuple[str, str]]) -> None:
        super().__init__()
        self.name = name  # type: ignore[misc]
        self._frames = frames
        self._calls = calls

    @property
    def min_history(self) -> int:
        return 0

    def compute(self, bars: pd.DataFrame, peers: Peers | None = None) -> pd.DataFrame:
        found = [(symbol, frame) for symbol, frame in self._frames.items() if frame.index is bars.index]
        if len(found) != 1:
            raise LookupError(f"{len(found)} fixed signal frames of {self.name} fit these bars, expected one")
        self._calls.append((found[0][0], self.name))
        return found[0][1]


@dataclass
class FakeStrategies(Mapping[str, Strategy]):
    """A strategy registry serving fixed signal frames, by (symbol, strategy name); ``calls`` records every signal
    frame computed (a frame read from the cache is not computed again)."""

    frames: dict[tuple[str, str], pd.DataFrame]
    calls: list[tuple[str, str]] = field(default_factory=list)

    def _strategies(self) -> dict[str, Strategy]:
        names = dict.fromkeys(name for _, name in self.frames)
        return {
            name: FixedStrategy(name, {s: f for (s, n), f in self.frames.items() if n == name}, self.calls)
            for name in names
        }

    def __getitem__(self, name: str) -> Strategy:
        return self._strategies()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._strategies())

    def __len__(self) -> int:
        return len(self._strategies())


class CountingCache(FrameCache):
    """A :class:`FrameCache` that records the (symbol, key) of every lookup, hit or miss."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups: list[tuple[str, Hashable]] = []

    def get(self, symbol, key, frame, compute):  # type: ignore[no-untyped-def]
        self.lookups.append((symbol, key))
        return super().get(symbol, key, frame, compute)


def signal_at(symbol: str, strategy: str, frame: pd.DataFrame, signals: pd.DataFrame, t: int) -> Signal:
    code = int(signals["action"].iat[t])
    indicators = {
        c[4:]: float(signals[c].iat[t])
        for c in signals.columns
        if c.startswith("ind_") and not math.isnan(signals[c].iat[t])
    }
    return Signal(
        symbol=symbol,
        strategy=strategy,
        action=ACTIONS[code],
        strength=float(signals["strength"].iat[t]) if code else 0.0,
        price=float(frame["close"].iat[t]),
        as_of=session_timestamp(frame.index[t]),
        indicators=indicators,
    )


def signals_ready(
    bars_by_symbol: Mapping[str, tuple[pd.DataFrame, int]],
    signals: Mapping[str, Signal],
    rejected: Mapping[str, str] | None = None,
) -> SignalsReady:
    """A SignalsReady whose batch shows ``end`` rows of each frame (decision bar ``end - 1``)."""
    batch = BarsBatch(
        iteration_id="it-1",
        as_of=AS_OF,
        bars=frozen_map({s: SymbolBars(s, frame, end, "test") for s, (frame, end) in bars_by_symbol.items()}),
        rejected=frozen_map(rejected or {}),
    )
    started = IterationStarted(iteration_id="it-1", as_of=AS_OF, seq=1)
    data = DataReady(iteration_id="it-1", as_of=AS_OF, previous=started, batch=batch)
    return SignalsReady(iteration_id="it-1", as_of=AS_OF, previous=data, signals=frozen_map(signals))


@dataclass(frozen=True)
class Reference:
    n: int
    wins: int
    expectancy: float | None
    sharpe: float | None
    max_drawdown: float | None


def reference_record(actions: Sequence[int], close: Sequence[float], t: int, horizon: int, lookback: int) -> Reference:
    """The track record at ``t`` by the plain definition, looking only at bars ``<= t`` (a loop, no precomputation)."""
    complete = [i for i in range(t + 1) if actions[i] != 0 and i + horizon <= t][-lookback:] if lookback else []
    r = [(1 if actions[i] > 0 else -1) * (close[i + horizon] / close[i] - 1.0) for i in complete]
    if not r:
        return Reference(0, 0, None, None, None)
    sharpe = None
    if len(r) >= 2 and statistics.stdev(r) > 1e-12:
        sharpe = statistics.mean(r) / statistics.stdev(r)
    equity, peak, worst = 1.0, 1.0, 0.0
    for x in r:
        equity *= max(1.0 + x, 0.0)
        peak = max(peak, equity)
        worst = max(worst, 1.0 - equity / peak)
    return Reference(len(r), sum(x > 0 for x in r), statistics.mean(r), sharpe, worst)

"""Hand-built bars, signal frames and a minimal strategy-agent stand-in for the Quant agent's tests."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from core.kernel.domain import Action, BarsBatch, Signal, SymbolBars, frozen_map, session_timestamp
from core.kernel.events import DataReady, IterationStarted, SignalsReady

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


@dataclass
class FakeStrategies:
    """Stands in for the StrategyAgent: serves fixed signal frames and counts how often each is asked for."""

    frames: dict[tuple[str, str], pd.DataFrame]
    calls: list[tuple[str, str]] = field(default_factory=list)

    @property
    def registry(self) -> Mapping[str, object]:
        return {name: object() for _, name in self.frames}

    def signal_frame_for(self, batch: BarsBatch, symbol: str, strategy_name: str) -> pd.DataFrame:
        self.calls.append((symbol, strategy_name))
        return self.frames[(symbol, strategy_name)]


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

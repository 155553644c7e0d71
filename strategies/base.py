"""The strategy interface.

A strategy is a pure, vectorised, causal function of daily bars: ``compute(bars, peers)`` returns a frame aligned
with ``bars`` whose row *t* depends only on rows ``<= t`` (tested for every strategy by appending future bars).
The Strategy agent computes a symbol's frame once over its history and reads the row at the decision time.

Returned frame columns:
    action    int8   1 = BUY, -1 = SELL, 0 = HOLD (HOLD on every row before ``min_history``)
    strength  float  in [0, 1]; 0 on HOLD rows
    stop      float  suggested stop price (NaN when not applicable)
    target    float  suggested target price (NaN when not applicable)
    ind_*     float  the indicator values that justified the signal (names without the prefix are reported)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError

from core.kernel.domain import Action, Signal, session_timestamp
from core.errors import ConfigurationError
from strategies.space import SearchSpace

SIGNAL_COLUMNS = ("action", "strength", "stop", "target")
ACTION_BY_CODE = {1: Action.BUY, -1: Action.SELL, 0: Action.HOLD}


class StrategyParams(BaseModel):
    """Base class of every strategy's parameters: frozen, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class InvalidStrategyParams(ConfigurationError, ValueError):
    """Raised with a message naming the strategy and the offending parameter."""


@dataclass(frozen=True, slots=True)
class Peers:
    """Cross-sectional inputs some strategies need.

    ``benchmark``: the benchmark symbol's bars (same layout as any bars frame) or None.
    ``closes``: close prices of the whole universe, one column per symbol, indexed by session date (UTC).
    """

    benchmark: pd.DataFrame | None = None
    closes: pd.DataFrame | None = None


class Strategy(ABC):
    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[StrategyParams]]
    needs_benchmark: ClassVar[bool] = False
    needs_universe: ClassVar[bool] = False
    # what an optimiser may vary (see strategies.space); an empty space: nothing to search
    search_space: ClassVar[SearchSpace] = SearchSpace({})

    def __init__(self, **overrides: Any) -> None:
        try:
            self.params = self.Params(**overrides)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'params'}: {err['msg']}" for err in exc.errors()
            )
            raise InvalidStrategyParams(f"strategy {self.name!r}: invalid parameters: {problems}") from None

    @property
    @abstractmethod
    def min_history(self) -> int:
        """Bars needed before the first non-HOLD signal, derived from the parameters."""

    @abstractmethod
    def compute(self, bars: pd.DataFrame, peers: Peers | None = None) -> pd.DataFrame:
        """Vectorised, causal signal frame aligned with ``bars`` (see module docstring)."""

    def signal_arrays(
        self, bars: pd.DataFrame, peers: Peers | None = None, *, data: Any = None, indicators: bool = True
    ) -> dict[str, np.ndarray]:
        """:meth:`compute`'s columns as numpy arrays (``data``: shared per-frame inputs a subclass may reuse;
        ``indicators=False``: the ``ind_*`` columns may be left out). Subclasses compute them without the frame."""
        frame = self.compute(bars, peers)
        names = [str(c) for c in frame.columns]
        return {c: frame[c].to_numpy() for c in names if indicators or not c.startswith("ind_")}

    def signal_arrays_many(
        self, frames: Sequence[pd.DataFrame], peers: Peers | None = None, *, data: Any = None, indicators: bool = True
    ) -> list[dict[str, np.ndarray]]:
        """:meth:`signal_arrays` of several bars frames on the same dates (equal indexes), in their order: the same
        values, bit for bit. ``data``: their shared stacked inputs. This default computes them one at a time."""
        return [self.signal_arrays(frame, peers, indicators=indicators) for frame in frames]

    def signal_matrix(
        self, frames: Sequence[pd.DataFrame], peers: Peers | None = None, *, data: Any = None, indicators: bool = False
    ) -> dict[str, np.ndarray]:
        """:meth:`signal_arrays_many` as one 2-D array per column (row ``k``: ``frames[k]``'s array)."""
        many = self.signal_arrays_many(frames, peers, data=data, indicators=indicators)
        return {name: np.stack([arrays[name] for arrays in many]) for name in many[0]} if many else {}

    def reason(self, action: Action, indicators: Mapping[str, float]) -> str:
        """Human-readable justification of a signal from its indicator values (override for nicer text)."""
        shown = ", ".join(f"{k}={v:.4g}" for k, v in indicators.items())
        return f"{self.name}: {action.value} ({shown})" if shown else f"{self.name}: {action.value}"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "min_history": self.min_history,
            "params": self.params.model_dump(),
            "needs_benchmark": self.needs_benchmark,
            "needs_universe": self.needs_universe,
        }


def empty_signal_frame(index: pd.Index) -> pd.DataFrame:
    n = len(index)
    return pd.DataFrame(
        {
            "action": np.zeros(n, dtype=np.int8),
            "strength": np.zeros(n),
            "stop": np.full(n, np.nan),
            "target": np.full(n, np.nan),
        },
        index=index,
    )


def signal_at(strategy: Strategy, symbol: str, frame: pd.DataFrame, i: int, price: float) -> Signal:
    """Build the :class:`Signal` of row ``i`` of a computed signal frame (``price``: the close at row ``i``)."""
    row = frame.iloc[i]
    code = int(row["action"])
    action = ACTION_BY_CODE[code]
    indicators: Mapping[str, float] = {
        col[4:]: float(row[col]) for col in frame.columns if col.startswith("ind_") and pd.notna(row[col])
    }
    stop = float(row["stop"]) if pd.notna(row["stop"]) else None
    target = float(row["target"]) if pd.notna(row["target"]) else None
    strength = float(np.clip(row["strength"], 0.0, 1.0)) if action is not Action.HOLD else 0.0
    return Signal(
        symbol=symbol,
        strategy=strategy.name,
        action=action,
        strength=strength,
        price=price,
        as_of=session_timestamp(frame.index[i]),
        stop=stop,
        target=target,
        indicators=indicators,
        reason=strategy.reason(action, indicators),
    )

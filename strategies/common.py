"""Shared machinery of the ten strategies: risk parameters, bar extraction, peer alignment and frame assembly.

:class:`BarStrategy` implements :meth:`Strategy.compute` once (template method): it pulls numpy arrays out of the
bars frame, asks the subclass for an :class:`Evaluation` (BUY/SELL masks, strength, indicator arrays), forces HOLD
before ``min_history``, attaches ATR-based stop/target levels and builds the signal frame documented in
:mod:`strategies.base`.

Stops and targets come from each strategy's own parameters and structure; the Risk agent uses the stop to size and
protect the entry and judges reward:risk on the target against it:
    stop (every strategy)   BUY close - stop_atr * ATR(atr_length);  SELL close + stop_atr * ATR
    target, by default      BUY close + reward_risk * stop_atr * ATR;  SELL close - reward_risk * stop_atr * ATR
                            (``RiskParams``: an R multiple, so reward:risk is the ``reward_risk`` parameter)
    target, structural      the price level the rule itself aims at (``Evaluation.target``): the mean-reversion
                            strategies (moving_average_envelope, bollinger_bands) target the moving average they
                            expect the close to return to (``StopParams``: no ``reward_risk``), so their
                            reward:risk is whatever the market gives and the Risk agent's minimum can refuse it.
So ``stop < close`` on BUY rows and ``stop > close`` on SELL rows, with the target beyond the close (the SELL levels
are those of a short; a long-only consumer treats SELL as an exit and may ignore them).  When the ATR is not a
positive finite number (flat or missing bars) both are NaN.  HOLD rows always have NaN stop/target and strength 0.

Strength: ``squash(excess, scale) = 0.5 + 0.5 * tanh(excess / scale)``: a bare crossing is worth 0.5 and a signal
that is decisively past its threshold approaches 1.  Each strategy documents its ``excess`` and ``scale``.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from pydantic import ConfigDict, Field

from core.kernel.domain import Action
from strategies import indicators as ind
from strategies.base import SIGNAL_COLUMNS, Peers, Strategy, StrategyParams


class StopParams(StrategyParams):
    """Parameters every strategy shares: the ATR stop (the strategies with a structural target have only these)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    atr_length: int = Field(14, ge=1, le=1000, description="ATR window of the stop (and of an R-multiple target)")
    stop_atr: float = Field(2.0, gt=0.0, le=50.0, description="stop distance in ATRs")


class RiskParams(StopParams):
    """Stop and an R-multiple target: the strategies without a price level of their own to aim at."""

    reward_risk: float = Field(2.0, gt=0.0, le=50.0, description="target distance as a multiple of the stop distance")


def benchmark_field() -> Any:
    """The ``benchmark`` parameter of the strategies that compare a symbol with a benchmark."""
    return Field(
        "SPY",
        min_length=1,
        max_length=16,
        pattern=r"^[A-Za-z0-9.^=\-]+$",
        description="symbol whose bars the agent passes as peers.benchmark",
    )


def squash(excess: np.ndarray, scale: float) -> np.ndarray:
    """Map a non-negative distance past a threshold to a strength in [0.5, 1]; NaN maps to 0.5."""
    with np.errstate(invalid="ignore"):
        value = 0.5 + 0.5 * np.tanh(np.maximum(excess, 0.0) / scale)
    return np.where(np.isnan(value), 0.5, value)


class BarData:
    """Numpy views of the ``high``, ``low`` and ``close`` of one bars frame, extracted once per
    :meth:`BarStrategy.compute` call.  Read-only: they may be views of the caller's frame.

    :meth:`stack`: several frames on the same dates, one row per frame (``close`` etc. are then 2-D, bars along the
    last axis); a strategy's rule evaluates every row at once, each row exactly as alone."""

    __slots__ = ("index", "close", "high", "low", "_atr")

    @classmethod
    def stack(cls, frames: list[pd.DataFrame]) -> BarData:
        """The frames' prices as rows of 2-D arrays (the frames must share one index; see :func:`batch_groups`)."""
        data = cls.__new__(cls)
        data.index = frames[0].index
        singles = [cls(frame) for frame in frames]
        data.close = np.stack([d.close for d in singles])
        data.high = np.stack([d.high for d in singles])
        data.low = np.stack([d.low for d in singles])
        data._atr = {}
        return data

    def __init__(self, bars: pd.DataFrame) -> None:
        if not isinstance(bars, pd.DataFrame):
            raise TypeError(f"bars must be a pandas DataFrame, got {type(bars).__name__}")
        columns = bars.columns
        try:
            positions = [columns.get_loc(name) for name in ("close", "high", "low")]
        except KeyError:
            missing = [c for c in ("high", "low", "close") if c not in columns]
            raise ValueError(f"bars frame lacks required column(s) {missing}; has {list(columns)}") from None
        if not all(isinstance(j, int) for j in positions):
            raise ValueError(f"bars frame has duplicate price columns: {list(columns)}")
        self.index = bars.index
        values = bars.to_numpy()  # a view when the frame is one float64 block (the provider layout)
        if values.dtype == np.float64:
            self.close, self.high, self.low = (values[:, j] for j in positions)
        else:
            self.close, self.high, self.low = (bars[c].to_numpy(dtype=np.float64) for c in ("close", "high", "low"))
        self._atr: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.close.shape[-1]

    @property
    def shape(self) -> tuple[int, ...]:
        """``(bars,)`` for one frame, ``(frames, bars)`` for a stack."""
        return tuple(self.close.shape)

    def atr(self, length: int) -> np.ndarray:
        """ATR(length), computed once per call and shared by the signal rule and the stop (do not mutate)."""
        cached = self._atr.get(length)
        if cached is None:
            cached = ind.atr(self.high, self.low, self.close, length)
            self._atr[length] = cached
        return cached


def batch_groups(frames: Mapping[str, pd.DataFrame]) -> list[list[str]]:
    """The keys of ``frames`` in groups of frames on identical dates (same length and equal indexes), each group in
    the mapping's order: the frames :meth:`BarStrategy.signal_arrays_many` can evaluate together."""
    by_shape: dict[tuple[Any, ...], list[list[str]]] = {}
    groups: list[list[str]] = []
    for key, frame in frames.items():
        index = frame.index
        n = len(index)
        shape = (n, index[0], index[-1]) if n else (0,)
        for group in by_shape.setdefault(shape, []):
            first = frames[group[0]].index
            if first is index or first.equals(index):
                group.append(key)
                break
        else:
            group = [key]
            by_shape[shape].append(group)
            groups.append(group)
    return groups


def aligned_close(frame: pd.DataFrame, index: pd.Index, what: str) -> np.ndarray:
    """The ``close`` of a peer frame on the dates of ``index`` (NaN where the peer has no bar).

    Alignment is by date, so a peer frame that extends past the bars' last date cannot leak the future.
    """
    columns = frame.columns
    if "close" not in columns:
        raise ValueError(f"{what} frame has no 'close' column; has {list(columns)}")
    position = columns.get_loc("close")
    values = frame.to_numpy() if isinstance(position, int) else None
    if values is not None and values.dtype == np.float64:
        close = values[:, position]  # a view when the frame is one float64 block
    else:
        close = frame["close"].to_numpy(dtype=np.float64)
    return align_rows(frame.index, index, what, close)


def _tz_of(index: pd.Index) -> str | None:
    if isinstance(index, pd.DatetimeIndex):
        return "naive" if index.tz is None else str(index.tz)
    return None


def align_rows(source: pd.Index, target: pd.Index, what: str, values: np.ndarray) -> np.ndarray:
    """Rows of ``values`` (indexed by ``source``) taken at the labels of ``target``; missing labels are NaN."""
    n = len(target)
    if source.equals(target):
        return values
    if len(source) >= n and source[:n].equals(target):
        return values[:n]
    if _tz_of(source) != _tz_of(target):
        raise ValueError(
            f"{what} index ({source.dtype}) and bars index ({target.dtype}) are in different time zones; "
            "cannot align them by date"
        )
    positions = source.get_indexer(target)
    out = values[positions].astype(np.float64, copy=True)
    out[positions < 0] = np.nan
    return out


# pandas' internal constructor from column arrays (used by pandas itself for years): ~20 us per signal frame versus
# ~90 us through the public dict constructor, which matters at 10 strategies x 500 symbols per iteration.  The
# public path is kept as the fallback should a pandas release drop it; both are tested to build identical frames.
_FROM_ARRAYS = getattr(pd.DataFrame, "_from_arrays", None)


def assemble_frame(
    index: pd.Index, columns: pd.Index, arrays: list[np.ndarray], *, public_api: bool = False
) -> pd.DataFrame:
    """A frame from equal-length 1-D numpy arrays (one per column, in ``columns`` order).

    The frame owns its data: pandas consolidates same-dtype columns into one freshly allocated block (at least two
    float columns are always passed), and the public path copies explicitly.
    """
    if _FROM_ARRAYS is not None and not public_api:
        return _FROM_ARRAYS(arrays, columns=columns, index=index, verify_integrity=False)
    return pd.DataFrame(dict(zip(columns, arrays, strict=False)), index=index, copy=True)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What a strategy's rule produced, before the shared post-processing.

    ``buy``/``sell``: boolean masks (a row in both is dropped to HOLD).  ``excess``: per-row distance past the
    threshold, turned into strength with :func:`squash` and ``scale``; with ``scale=None`` it already is the
    strength (clipped to [0, 1]).  ``target``: per-row price the rule aims at (structural target); None: the
    ``reward_risk`` R multiple of the stop distance.  Only the rows that end up as signals are read.
    """

    buy: np.ndarray
    sell: np.ndarray
    excess: np.ndarray
    scale: float | None
    indicators: Mapping[str, np.ndarray] = field(default_factory=dict)
    target: np.ndarray | None = None


class BarStrategy(Strategy):
    """Template for the ten strategies; subclasses implement :meth:`evaluate` and :attr:`min_history`."""

    #: rule text per action for :meth:`reason`
    rules: ClassVar[Mapping[str, str]] = MappingProxyType({})
    #: names (without ``ind_``) of the indicator columns, in output order; fixed per class
    indicator_names: ClassVar[tuple[str, ...]] = ()

    params: Any
    _frame_columns: ClassVar[pd.Index]
    _column_names: ClassVar[tuple[str, ...]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names = (*SIGNAL_COLUMNS, *(f"ind_{name}" for name in (*cls.indicator_names, "atr")))
        if len(set(names)) != len(names):
            raise TypeError(f"{cls.__name__}: indicator names {cls.indicator_names} collide with the signal columns")
        cls._frame_columns = pd.Index(names)
        cls._column_names = names  # a tuple: iterating a pandas string index costs microseconds per label

    @abstractmethod
    def evaluate(self, data: BarData, peers: Peers | None) -> Evaluation:
        """The strategy's rule on one symbol's bars (numpy arrays); called inside ``np.errstate(all ignored)``."""

    def compute(self, bars: pd.DataFrame, peers: Peers | None = None) -> pd.DataFrame:
        data = BarData(bars)
        return assemble_frame(data.index, self._frame_columns, self._columns(data, peers, indicators=True))

    def signal_arrays(
        self, bars: pd.DataFrame, peers: Peers | None = None, *, data: Any = None, indicators: bool = True
    ) -> dict[str, np.ndarray]:
        """:meth:`compute`'s columns as numpy arrays, without building the frame (the same values, bit for bit).

        ``data``: a :class:`BarData` of ``bars`` shared by several strategies over the same frame (its ATRs are then
        computed once); ``indicators=False``: only the four signal columns (the shadow ledger reads no indicators).
        The arrays are the caller's: none is a view of the bars frame or of another strategy's arrays."""
        if data is None:
            data = BarData(bars)
        columns = self._columns(data, peers, indicators=indicators)
        if indicators:  # indicators may be views of the bars, of memoised peer arrays or of ``data``'s ATRs
            columns[4:] = [c.copy() for c in columns[4:]]
        return dict(zip(self._column_names, columns, strict=False))

    def signal_arrays_many(
        self, frames: Sequence[pd.DataFrame], peers: Peers | None = None, *, data: Any = None, indicators: bool = True
    ) -> list[dict[str, np.ndarray]]:
        """:meth:`signal_arrays` of several frames on the same dates in one evaluation of the rule over their stacked
        prices (:meth:`BarData.stack`): each frame's arrays equal its own :meth:`signal_arrays`, bit for bit. Each
        frame's arrays are rows of arrays shared with the others' (read them; do not write to them)."""
        if len(frames) == 1 and data is None:
            return [self.signal_arrays(frames[0], peers, indicators=indicators)]
        matrix = self.signal_matrix(frames, peers, data=data, indicators=indicators)
        return [{name: values[row] for name, values in matrix.items()} for row in range(len(frames))]

    def signal_matrix(
        self, frames: Sequence[pd.DataFrame], peers: Peers | None = None, *, data: Any = None, indicators: bool = False
    ) -> dict[str, np.ndarray]:
        """The rule evaluated once over the frames' stacked prices: one 2-D array per column, row ``k`` bit for bit
        ``signal_arrays(frames[k])``'s array (the frames must share their dates, see :func:`batch_groups`)."""
        if data is None:
            data = BarData.stack(list(frames))
        columns = self._columns(data, peers, indicators=indicators)
        if indicators:  # indicators may be views of the bars, of memoised peer arrays, of ``data``'s ATRs
            columns[4:] = [np.array(c) for c in columns[4:]]
        return dict(zip(self._column_names, columns, strict=False))

    def _columns(self, data: BarData, peers: Peers | None, *, indicators: bool) -> list[np.ndarray]:
        """The signal frame's columns in ``_frame_columns`` order (only the first four with ``indicators=False``)."""
        shape = data.shape  # (bars,) or, for a stack of frames, (frames, bars): every array below is flat
        n = shape[-1]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            evaluation = self.evaluate(data, peers)
            close = data.close.reshape(-1)
            buy = evaluation.buy.reshape(-1)
            sell = evaluation.sell.reshape(-1)
            rows = np.flatnonzero(buy | sell)
            rows = rows[(rows % n if len(shape) > 1 else rows) >= self.min_history]
            is_buy = buy[rows]
            keep = (is_buy != sell[rows]) & np.isfinite(close[rows])
            rows, is_buy = rows[keep], is_buy[keep]
            direction = np.where(is_buy, 1.0, -1.0)

            size = close.shape[0]
            action = np.zeros(size, dtype=np.int8)
            action[rows] = direction
            strength = np.zeros(size)
            excess = evaluation.excess.reshape(-1)[rows]
            if evaluation.scale is None:
                strength[rows] = np.where(np.isfinite(excess), np.clip(excess, 0.0, 1.0), 0.5)
            else:
                strength[rows] = squash(excess, evaluation.scale)

            p = self.params
            risk_atr = data.atr(p.atr_length)
            stop_distance = p.stop_atr * risk_atr.reshape(-1)[rows]
            usable = np.isfinite(stop_distance) & (stop_distance > 0.0)
            signal_close = close[rows]
            stop = np.full(size, np.nan)
            target = np.full(size, np.nan)
            stop[rows] = np.where(usable, signal_close - direction * stop_distance, np.nan)
            if evaluation.target is None:
                target[rows] = np.where(usable, signal_close + direction * p.reward_risk * stop_distance, np.nan)
            else:
                aim = np.asarray(evaluation.target, dtype=np.float64).reshape(-1)[rows]
                target[rows] = np.where(usable & np.isfinite(aim), aim, np.nan)

        columns: list[np.ndarray] = [c.reshape(shape) for c in (action, strength, stop, target)]
        if not indicators:
            return columns
        for name in self.indicator_names:
            values = np.asarray(evaluation.indicators[name], dtype=np.float64)
            if values.shape != shape:
                if len(shape) == 1 or values.shape != (n,):
                    raise ValueError(f"{self.name}: indicator {name!r} has shape {values.shape}, expected {shape}")
                values = np.broadcast_to(values, shape)  # a per-date series shared by every frame of a stack
            infinite = np.isinf(values)
            columns.append(np.where(infinite, np.nan, values) if infinite.any() else values)
        columns.append(risk_atr)
        return columns

    def reason(self, action: Action, indicators: Mapping[str, float]) -> str:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in indicators.items())
        rule = self.rules.get(action.value, "")
        text = f"{self.name}: {action.value}"
        if rule:
            text += f" ({rule})"
        return f"{text}; {shown}" if shown else text


def min_bars(*requirements: int) -> int:
    return int(max(requirements))


def annual_to_period(rate: float, bars: int, bars_per_year: int = 252) -> float:
    """An annual rate expressed over ``bars`` daily bars, in percent (compounded)."""
    return 100.0 * (math.pow(1.0 + rate, bars / bars_per_year) - 1.0)

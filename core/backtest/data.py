"""The bars of a backtest as one snapshot: :class:`SnapshotProvider`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime

import pandas as pd

from core.data.base import ProviderResult
from core.kernel.domain import ensure_utc

__all__ = ["SnapshotProvider"]


class SnapshotProvider:
    """The bars of a backtest, read once and cut at its last session: every call serves the same frame objects.

    :class:`FileProvider` re-checks every file (one ``stat`` per symbol) and hands out a fresh shallow copy on each
    call, which makes the Data agent compare the copy with the previous frame to keep its caches warm; over a
    backtest the files are a fixed snapshot, so both are wasted work (500 symbols x 2,500 sessions). Frames are
    never mutated by the pipeline; a frame ends at ``end`` so that nothing after the backtest is ever computed on.
    Column labels become a plain ``object`` index: iterating pandas 3's default Arrow-backed string index costs
    ~5 us, and the validation does it for every symbol of every session.
    """

    def __init__(self, frames: Mapping[str, pd.DataFrame], *, end: date, name: str = "files") -> None:
        limit = pd.Timestamp(end, tz=UTC) + pd.Timedelta(days=1)
        self.name = name
        self._frames = {
            s: f.iloc[: int(f.index.searchsorted(limit, side="left"))].set_axis(
                pd.Index(list(f.columns), dtype=object), axis=1
            )
            for s, f in frames.items()
        }
        self._answers: dict[tuple[str, ...], ProviderResult] = {}

    def history(self, symbols: Sequence[str], end: datetime, start: datetime | None = None) -> ProviderResult:
        ensure_utc(end, "end")
        if start is None:  # the Data agent's call, every session: the snapshot never changes, nor does the answer
            key = tuple(symbols)
            cached = self._answers.get(key)
            if cached is None:
                cached = self._answers[key] = self._history(key, None)
            return cached
        return self._history(symbols, pd.Timestamp(ensure_utc(start, "start")).normalize())

    def _history(self, symbols: Sequence[str], first: pd.Timestamp | None) -> ProviderResult:
        frames: dict[str, pd.DataFrame] = {}
        errors: dict[str, str] = {}
        for symbol in dict.fromkeys(symbols):
            frame = self._frames.get(symbol)
            if frame is None or frame.empty:
                errors[symbol] = f"{self.name}: no bars for {symbol} in the backtest's data"
                continue
            frames[symbol] = frame if first is None else frame.iloc[int(frame.index.searchsorted(first)) :]
        return ProviderResult(frames=frames, errors=errors, provider=self.name)

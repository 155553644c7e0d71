"""Data agent: loads every symbol's daily bars for the iteration, validates them and publishes ``data_ready``.

A symbol whose bars are missing or break a validation rule (see core/data/validation.py) is excluded with the
recorded reason; the others go on. The iteration's data-quality score is the share of symbols that passed.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from loguru import logger

from core.calendar import MarketCalendar
from core.data.base import BarProvider
from core.data.validation import BatchValidation, FrameChecks, VisibleCutoff, validate_batch
from core.domain import BarsBatch, Decision, SymbolBars, bar_arrays, frozen_map
from core.events import DataReady, IterationStarted


_ALL_PASSED = BatchValidation(passed={}, rejected={}, quality=1.0)


class DataAgent:
    name = "data"

    def __init__(
        self,
        provider: BarProvider,
        symbols: Sequence[str],
        *,
        min_history: int,
        calendar: MarketCalendar | None,
        validation_lookback: int = 300,
        routine_decisions: bool = True,
    ) -> None:
        """``routine_decisions``: record an "ok" decision for every usable symbol (the daemon does; a backtest may
        record only the exclusions, which carry the information)."""
        self._provider = provider
        self._symbols = list(symbols)
        self._min_history = min_history
        self._calendar = calendar
        self._lookback = validation_lookback
        self._frames: dict[str, pd.DataFrame] = {}
        self._arrays: dict[str, Mapping[str, np.ndarray]] = {}
        self._checks: dict[str, FrameChecks | None] = {}
        self._last_end: dict[str, tuple[pd.DataFrame, int, int]] = {}  # frame, cutoff day, visible rows: the next search starts there
        self._routine = routine_decisions

    def _stable(self, symbol: str, frame: pd.DataFrame) -> pd.DataFrame:
        """The previous frame object when the provider's bars are unchanged, so per-frame caches downstream hit.

        A provider may hand out a fresh copy every call; comparing costs ~60 µs per symbol, recomputing the
        indicators of a 20-year history costs milliseconds.
        """
        previous = self._frames.get(symbol)
        if previous is not None and (previous is frame or previous.equals(frame)):
            return previous
        self._frames[symbol] = frame
        self._arrays[symbol] = bar_arrays(frame)
        self._checks[symbol] = FrameChecks.of(frame, self._calendar)
        return frame

    def on_iteration(self, event: IterationStarted) -> DataReady:
        as_of = event.as_of
        # the whole history the provider holds: a moving window would defeat the per-frame indicator caches
        result = self._provider.history(self._symbols, end=as_of)
        served_by: Mapping[str, str] = getattr(result, "served_by", {}) or {}
        rejected: dict[str, str] = {}
        visible: dict[str, pd.DataFrame] = {}
        full: dict[str, tuple[pd.DataFrame, int, FrameChecks | None]] = {}
        cutoff = VisibleCutoff.at(as_of, self._calendar)  # once per iteration, not per symbol
        latest = cutoff.latest_session_day
        for symbol in self._symbols:
            frame = result.frames.get(symbol)
            if frame is None:
                rejected[symbol] = result.errors.get(symbol, "provider returned no bars")
                continue
            frame = self._stable(symbol, frame)
            checks = self._checks.get(symbol)
            if checks is not None:
                last = self._last_end.get(symbol)
                known = last[2] if last is not None and last[0] is frame and last[1] <= cutoff.cutoff_day else 0
                end = checks.rows_through(cutoff.cutoff_day, known)
                self._last_end[symbol] = (frame, cutoff.cutoff_day, end)
            else:
                end = cutoff.rows(frame.index)
            full[symbol] = (frame, end, checks)
            if checks is not None and checks.clean(
                end, min_history=self._min_history, lookback=self._lookback, latest_session_day=latest
            ):
                continue  # every rule passes: no need to slice and re-validate the window
            visible[symbol] = frame.iloc[:end]
        checked = (
            validate_batch(visible, as_of=as_of, min_history=self._min_history, calendar=self._calendar, lookback=self._lookback)
            if visible
            else _ALL_PASSED
        )
        bars: dict[str, SymbolBars] = {}
        decisions: list[Decision] = []
        latest_day: int | None = None
        exact_latest = True
        for symbol in self._symbols:
            provider_name = served_by.get(symbol, result.provider or self._provider.name)
            if symbol in rejected:
                decisions.append(Decision("data", symbol, "rejected", rejected[symbol], {"provider": provider_name}))
                continue
            frame, end, checks = full[symbol]
            if symbol in checked.rejected:
                reason = checked.rejected[symbol]
                rejected[symbol] = reason
                decisions.append(
                    Decision("data", symbol, "rejected", reason, {"provider": provider_name, "bars": end, "rules": [p.rule for p in checked.problems.get(symbol, ())]})
                )
                continue
            sb = SymbolBars(symbol=symbol, frame=frame, end=end, provider=provider_name, arrays=self._arrays[symbol])
            bars[symbol] = sb
            if checks is not None:  # the session the batch decides on, from the per-frame day numbers
                day = int(checks.days[end - 1])
                latest_day = day if latest_day is None or day > latest_day else latest_day
            else:
                exact_latest = False  # a frame without per-frame checks: BarsBatch works the day out itself
            if not self._routine:
                continue
            decisions.append(
                Decision(
                    "data",
                    symbol,
                    "ok",
                    f"{end} bars up to {sb.last_timestamp.date()} from {provider_name}",
                    {"provider": provider_name, "bars": end, "last_bar": sb.last_timestamp.date().isoformat(), "close": sb.last_close},
                )
            )
        quality = len(bars) / len(self._symbols) if self._symbols else 0.0
        for symbol, reason in rejected.items():
            logger.warning("data: {} excluded: {}", symbol, reason)
        batch = BarsBatch(
            iteration_id=event.iteration_id,
            as_of=as_of,
            bars=frozen_map(bars),
            rejected=frozen_map(rejected),
            data_quality=quality,
            latest_day=latest_day if exact_latest else None,
        )
        return DataReady(iteration_id=event.iteration_id, as_of=as_of, previous=event, batch=batch, decisions=tuple(decisions))

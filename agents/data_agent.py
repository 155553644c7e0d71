"""Data agent: loads every symbol's daily bars for the iteration, validates them and publishes ``data_ready``."""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import pandas as pd
from loguru import logger

from core.data.base import BarProvider
from core.domain import BarsBatch, Decision, SymbolBars, frozen_map
from core.events import DataReady, IterationStarted

# (symbol, visible frame, as_of) -> problems (empty when the bars pass)
BarsValidator = Callable[[str, pd.DataFrame, object], Sequence[str]]


class DataAgent:
    name = "data"

    def __init__(
        self,
        provider: BarProvider,
        symbols: Sequence[str],
        *,
        min_history: int,
        validator: BarsValidator | None = None,
    ) -> None:
        self._provider = provider
        self._symbols = list(symbols)
        self._min_history = min_history
        self._validator = validator

    def on_iteration(self, event: IterationStarted) -> DataReady:
        as_of = event.as_of
        result = self._provider.history(self._symbols, end=as_of)
        cutoff = pd.Timestamp(as_of)
        bars: dict[str, SymbolBars] = {}
        rejected: dict[str, str] = {}
        decisions: list[Decision] = []
        served_by: Mapping[str, str] = getattr(result, "served_by", {}) or {}
        for symbol in self._symbols:
            provider_name = served_by.get(symbol, result.provider or self._provider.name)
            frame = result.frames.get(symbol)
            if frame is None:
                reason = result.errors.get(symbol, "provider returned no bars")
                rejected[symbol] = reason
                decisions.append(Decision("data", symbol, "rejected", reason, {"provider": provider_name}))
                continue
            end = int(frame.index.searchsorted(cutoff, side="right"))
            problems: list[str] = []
            if end < self._min_history:
                problems.append(f"insufficient history: {end} bars up to {as_of.date()}, need {self._min_history}")
            elif self._validator is not None:
                problems.extend(self._validator(symbol, frame.iloc[:end], as_of))
            if problems:
                reason = "; ".join(problems)
                rejected[symbol] = reason
                decisions.append(Decision("data", symbol, "rejected", reason, {"provider": provider_name, "bars": end}))
                continue
            sb = SymbolBars(symbol=symbol, frame=frame, end=end, provider=provider_name)
            bars[symbol] = sb
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
            iteration_id=event.iteration_id, as_of=as_of, bars=frozen_map(bars), rejected=frozen_map(rejected), data_quality=quality
        )
        return DataReady(iteration_id=event.iteration_id, as_of=as_of, previous=event, batch=batch, decisions=tuple(decisions))

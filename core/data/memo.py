"""In-memory TTL cache in front of any provider.

Bars of a completed session do not change, so within the TTL a repeated request for the same symbols, as of the same
latest completed session, is served from memory (the provider that originally served each symbol stays recorded).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from collections.abc import Callable, Sequence

import pandas as pd

from core.kernel.calendar import MarketCalendar
from core.data.base import BarProvider, ProviderResult
from core.data.cache import TTLCache
from core.data.chain import ChainResult


class MemoizingProvider:
    def __init__(
        self, provider: BarProvider, *, ttl: timedelta, now: Callable[[], datetime], calendar: MarketCalendar
    ) -> None:
        self._provider = provider
        self._calendar = calendar
        self._cache: TTLCache[tuple[str, object, object], tuple[pd.DataFrame, str]] = TTLCache(
            ttl, now, max_entries=10_000
        )
        self.name = provider.name
        self.hits = 0
        self.misses = 0

    def history(self, symbols: Sequence[str], end: datetime, start: datetime | None = None) -> ChainResult:
        session = self._calendar.previous_completed_session(end).date
        frames: dict[str, pd.DataFrame] = {}
        served_by: dict[str, str] = {}
        missing: list[str] = []
        for symbol in symbols:
            hit = self._cache.get((symbol, session, start))
            if hit is None:
                missing.append(symbol)
            else:
                frames[symbol], served_by[symbol] = hit
        self.hits += len(frames)
        errors: dict[str, str] = {}
        fallbacks: dict[str, str] = {}
        unknown: frozenset[str] = frozenset()
        if missing:
            self.misses += len(missing)
            fresh: ProviderResult = self._provider.history(missing, end=end, start=start)
            fresh_served = getattr(fresh, "served_by", None) or {}
            fallbacks = dict(getattr(fresh, "fallbacks", None) or {})
            for symbol, frame in fresh.frames.items():
                source = fresh_served.get(symbol, fresh.provider or self._provider.name)
                self._cache.set((symbol, session, start), (frame, source))
                frames[symbol], served_by[symbol] = frame, source
            errors = dict(fresh.errors)
            unknown = frozenset(getattr(fresh, "unknown", frozenset()))
        return ChainResult(
            frames=frames, errors=errors, provider=self.name, unknown=unknown, served_by=served_by, fallbacks=fallbacks
        )

"""Data agent: loads every symbol's daily bars for the iteration, validates them and publishes ``data_ready``.

Each symbol ends up in one of four places of the :class:`core.kernel.domain.BarsBatch` (see core/data/validation.py for the
rules):

* usable: every rule passes; the strategies may open a position.
* flagged (``entry_blocked``, still in ``bars``): a recent missing or stale bar, a bad bar anywhere in the history,
  or a latest bar awaiting confirmation. No new entry in that symbol, but its open positions are managed as usual
  (exits, stops, targets, trailing stops, marks) on the last good bar, and every decision about it says so. A
  symbol the provider fails to serve is flagged on the last bars it did serve.
* rejected: nothing usable (still warming up with fewer bars than the strategies need, an unreadable frame, or
  never served at all).
* not listed: no bar yet at the decision time; the symbol trades later. Not bad data, not counted anywhere.

The iteration's data quality is the share of listed, warmed-up symbols with no data problem. An iteration in which
no symbol is usable because of data problems is degraded (``DataReady.degraded``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from loguru import logger

from core.data.base import BarProvider
from core.data.screening import BarScreen, Screening
from core.data.validation import DEFAULT_GAP_SESSIONS
from core.kernel.calendar import MarketCalendar
from core.kernel.domain import NOT_DATA_PROBLEMS, BarsBatch, frozen_map
from core.kernel.events import DataReady, IterationStarted
from core.vocabulary import AgentName


class DataAgent:
    name = AgentName.DATA

    def __init__(
        self,
        provider: BarProvider,
        symbols: Sequence[str],
        *,
        min_history: int,
        calendar: MarketCalendar | None,
        gap_sessions: int = DEFAULT_GAP_SESSIONS,
        routine_decisions: bool = True,
    ) -> None:
        """``gap_sessions``: sessions during which a missing, stale or off-session bar blocks a symbol's entries.
        ``routine_decisions``: record an "ok" decision for every usable symbol (the daemon does; a backtest may
        record only the exclusions, which carry the information)."""
        self._provider = provider
        self._symbols = list(symbols)
        self._screen = BarScreen(
            symbols,
            min_history=min_history,
            calendar=calendar,
            gap_sessions=gap_sessions,
            routine_decisions=routine_decisions,
        )
        self._last_category: dict[str, str | None] = {}
        self._categories: Mapping[str, str] = {}  # the previous iteration's categories (nothing to log while equal)
        self.exclusion_counts: Counter[str] = Counter()  # symbol-iterations excluded or flagged, by reason category

    def on_iteration(self, event: IterationStarted) -> DataReady:
        # the whole history the provider holds: a moving window would defeat the per-frame indicator caches
        result = self._provider.history(self._symbols, end=event.as_of)
        screened = self._screen.screen(result, event.as_of, self._provider.name)
        self.exclusion_counts.update(screened.categories.values())
        self._log_changes(screened.categories, screened.rejected, screened.blocked)
        batch = BarsBatch(
            iteration_id=event.iteration_id,
            as_of=event.as_of,
            bars=frozen_map(screened.bars),
            rejected=frozen_map(screened.rejected),
            data_quality=screened.quality,
            latest_day=screened.latest_day if screened.exact_latest else None,
            entry_blocked=frozen_map(screened.blocked),
            exclusions=frozen_map(screened.categories),
            not_listed=screened.not_listed,
        )
        return DataReady(
            iteration_id=event.iteration_id,
            as_of=event.as_of,
            previous=event,
            batch=batch,
            decisions=tuple(screened.decisions),
            degraded=_degraded(screened),
        )

    def _log_changes(
        self, categories: Mapping[str, str], rejected: Mapping[str, str], blocked: Mapping[str, str]
    ) -> None:
        """One warning when a symbol gets a data problem or changes problem, one note when it recovers (not one
        line per symbol and session)."""
        if categories == self._categories:
            return  # every symbol's category is the one already logged
        self._categories = dict(categories)
        for symbol in self._symbols:
            now = categories.get(symbol)
            before = self._last_category.get(symbol)
            if now == before:
                continue
            self._last_category[symbol] = now
            if now is None:
                if before not in (None, *NOT_DATA_PROBLEMS):
                    logger.info("data: {} usable again", symbol)
            elif now not in NOT_DATA_PROBLEMS:
                if symbol in blocked:
                    logger.warning(
                        "data: {} flagged (no new entries, positions still managed): {}", symbol, blocked[symbol]
                    )
                else:
                    logger.warning("data: {} excluded: {}", symbol, rejected.get(symbol, now))


def _degraded(screened: Screening) -> tuple[str, ...]:
    """Why the iteration is degraded: symbols have data problems and none is usable."""
    troubled = screened.troubled
    if not troubled or screened.usable:
        return ()
    by_reason = Counter(troubled.values())
    listed = ", ".join(f"{reason} {count}" for reason, count in sorted(by_reason.items()))
    return (f"no usable data: no symbol can open a position ({listed})",)

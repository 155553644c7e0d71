"""Which configured model to ask first: by measured success and latency.

Every call record already carries its outcome and latency. :class:`ProviderRanking` keeps the last ``window``
calls of each provider/model and orders the providers by

1. success rate (a usable answer with at least one valid choice), in steps of 10 % so that noise does not reorder;
2. median latency (faster first);
3. the configured order (the tie-breaker, and the whole order until every provider has ``min_samples`` calls).

A call refused by the budget is no measurement and is ignored. ``seed`` loads past records (the daemon's recent
calls from the database) so the order survives a restart.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from statistics import median
from typing import TypeVar

from core.llm.telemetry import CallOutcome, LLMCallRecord

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class ProviderScore:
    key: str
    samples: int
    success_rate: float | None
    median_latency_ms: float | None


class ProviderRanking:
    def __init__(self, *, window: int = 50, min_samples: int = 5) -> None:
        if window < 1 or min_samples < 1:
            raise ValueError("window and min_samples must be positive")
        self._window = window
        self._min_samples = min_samples
        self._calls: dict[str, deque[tuple[bool, float]]] = {}

    @staticmethod
    def key(provider: str, model: str) -> str:
        return f"{provider}/{model}"

    def observe(self, provider: str, model: str, outcome: CallOutcome | str, latency_ms: float) -> None:
        outcome = CallOutcome(outcome)
        if outcome is CallOutcome.BUDGET_EXCEEDED:
            return
        calls = self._calls.setdefault(self.key(provider, model), deque(maxlen=self._window))
        calls.append((outcome.answered, float(latency_ms)))

    def seed(self, records: Iterable[LLMCallRecord]) -> None:
        for record in sorted(records, key=lambda r: r.started_at):
            self.observe(record.provider, record.model, record.outcome, record.latency_ms)

    def score(self, provider: str, model: str) -> ProviderScore:
        key = self.key(provider, model)
        calls = self._calls.get(key, ())
        if not calls:
            return ProviderScore(key, 0, None, None)
        ok = sum(1 for answered, _ in calls if answered)
        return ProviderScore(key, len(calls), ok / len(calls), median(latency for _, latency in calls))

    def order(self, providers: Sequence[P], key_of: Callable[[P], tuple[str, str]]) -> list[P]:
        """``providers`` reordered (stable); unchanged until each has ``min_samples`` measured calls."""
        scores = [self.score(*key_of(p)) for p in providers]
        if any(s.samples < self._min_samples for s in scores):
            return list(providers)
        ranked = sorted(
            range(len(providers)),
            key=lambda i: (-round((scores[i].success_rate or 0.0) * 10), scores[i].median_latency_ms or 0.0, i),
        )
        return [providers[i] for i in ranked]

"""Daily LLM budget: a cap on calls and on estimated USD per UTC day.

A "call" is one provider attempt-group, i.e. one :class:`~core.llm.telemetry.LLMCallRecord` that reached the
network (records with outcome ``budget_exceeded`` are not calls). The budget is checked *before* a call, and the cost
of a call is only known after it, so the USD cap can be overshot by at most one call. Calls whose model is missing
from the price table add no USD (their records carry ``cost_usd=None``) but still count against ``max_calls``;
:attr:`BudgetUsage.unpriced_calls` says how many there were.

The daemon restarts: seed today's usage from persisted records with :meth:`DailyBudget.restore` or
:meth:`DailyBudget.restore_from_records`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from collections.abc import Callable, Iterable

from core.kernel.domain import ensure_utc
from core.llm.telemetry import CallOutcome, LLMCallRecord


@dataclass(frozen=True, slots=True)
class BudgetUsage:
    day: date
    calls: int
    usd: Decimal
    unpriced_calls: int
    max_calls: int
    max_usd: Decimal


class DailyBudget:
    def __init__(self, max_calls: int, max_usd: Decimal, clock: Callable[[], datetime]) -> None:
        if isinstance(max_calls, bool) or not isinstance(max_calls, int) or max_calls < 0:
            raise ValueError(f"max_calls must be a non-negative int, got {max_calls!r}")
        if isinstance(max_usd, float) or not isinstance(max_usd, (Decimal, int)) or isinstance(max_usd, bool):
            raise TypeError(f"max_usd must be a Decimal (not {type(max_usd).__name__})")
        max_usd = Decimal(max_usd)
        if not max_usd.is_finite() or max_usd < 0:
            raise ValueError(f"max_usd must be a finite, non-negative amount, got {max_usd}")
        self._max_calls = max_calls
        self._max_usd = max_usd
        self._clock = clock
        self._day = self._today()
        self._calls = 0
        self._usd = Decimal(0)
        self._unpriced = 0

    def _today(self) -> date:
        return ensure_utc(self._clock(), "budget clock").date()

    def _roll(self) -> date:
        today = self._today()
        if today != self._day:
            self._day = today
            self._calls = 0
            self._usd = Decimal(0)
            self._unpriced = 0
        return today

    def exceeded_reason(self) -> str | None:
        """``None`` when another call is allowed today, otherwise why not (starting with "budget exceeded: ")."""
        day = self._roll()
        if self._calls >= self._max_calls:
            return f"budget exceeded: {self._calls}/{self._max_calls} LLM calls used on {day.isoformat()} (UTC)"
        if self._usd >= self._max_usd:
            return (
                f"budget exceeded: ${self._usd} of ${self._max_usd} estimated LLM spend used on {day.isoformat()} (UTC)"
            )
        return None

    def record(self, cost_usd: Decimal | None) -> None:
        """Account one call that reached the network; ``None`` = price unknown."""
        self._roll()
        self._calls += 1
        if cost_usd is None:
            self._unpriced += 1
        else:
            if cost_usd < 0:
                raise ValueError("a call cannot have a negative cost")
            self._usd += cost_usd

    def restore(self, calls_today: int, usd_today: Decimal, unpriced_calls: int = 0) -> None:
        """Set (not add) today's usage, e.g. from the database after a restart."""
        if isinstance(calls_today, bool) or not isinstance(calls_today, int) or calls_today < 0:
            raise ValueError(f"calls_today must be a non-negative int, got {calls_today!r}")
        if isinstance(usd_today, float) or not isinstance(usd_today, (Decimal, int)):
            raise TypeError("usd_today must be a Decimal")
        usd_today = Decimal(usd_today)
        if not usd_today.is_finite() or usd_today < 0:
            raise ValueError(f"usd_today must be finite and non-negative, got {usd_today}")
        self._roll()
        self._calls = calls_today
        self._usd = usd_today
        self._unpriced = unpriced_calls

    def restore_from_records(self, records: Iterable[LLMCallRecord]) -> None:
        """Set today's usage from persisted call records (records of other UTC days are ignored)."""
        today = self._roll()
        calls, usd, unpriced = 0, Decimal(0), 0
        for record in records:
            if record.started_at.date() != today or record.outcome == CallOutcome.BUDGET_EXCEEDED:
                continue
            calls += 1
            if record.cost_usd is None:
                unpriced += 1
            else:
                usd += record.cost_usd
        self.restore(calls, usd, unpriced)

    def usage(self) -> BudgetUsage:
        day = self._roll()
        return BudgetUsage(day, self._calls, self._usd, self._unpriced, self._max_calls, self._max_usd)

    def __repr__(self) -> str:
        return (
            f"DailyBudget(day={self._day.isoformat()}, calls={self._calls}/{self._max_calls}, "
            f"usd={self._usd}/{self._max_usd})"
        )

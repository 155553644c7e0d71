"""The LLM's books for one run: one budget for selection and narration, whether prompts are blinded, and the
notice given when the budget switches the run to deterministic choices.

* The daemon on live data spends a wall-clock budget per UTC day (``LLM_DAILY_MAX_CALLS``/``_USD``), restored from
  the calls already recorded today (selection and narration alike), so a restart does not reset it.
* A replay, a backtest or any run not on live data spends a budget per *simulated* day
  (``LLM_SIM_DAILY_MAX_CALLS``/``_USD``), starting empty: a two-year replay gets the same allowance on its last
  session as on its first, and a second run the same day does not start partly spent.
* Prompts about past dates are blinded (``LLM_BLIND_PAST``, on by default); turning it off prints a warning and is
  recorded in the run's ``config``.
* The first time the budget refuses a call the run prints it once and records it in the run's ``config``
  (``llm_budget_switch``); every refused call is also an ``llm_calls`` row with outcome ``budget_exceeded``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from decimal import Decimal
from typing import Any

from loguru import logger

from config.settings import Settings
from core.kernel.clock import Clock, LiveClock
from core.llm import CallOutcome, DailyBudget, PriceTable
from core.llm.ranking import ProviderRanking
from core.persistence.repository import Repository


@dataclass
class LLMBooks:
    budget: DailyBudget
    prices: PriceTable
    blind: bool
    live: bool
    ranking: ProviderRanking | None
    run_id: str
    repository: Repository
    clock: Clock
    switched: list[str] = field(default_factory=list)

    def on_budget_switch(self, reason: str) -> None:
        """Print and record the first budget refusal of the run (later ones only leave their call rows)."""
        if self.switched:
            return
        self.switched.append(reason)
        scope = "per UTC day" if self.live else "per simulated day"
        message = f"LLM budget reached ({scope}): {reason}; deterministic choices until the budget allows calls"
        logger.warning("{}", message)
        if not self.live:
            print(message, flush=True)
        self.repository.note_run_config(
            self.run_id, {"llm_budget_switch": {"at": self.clock.now().isoformat(), "reason": reason, "scope": scope}}
        )


def llm_books(
    settings: Settings, *, kind: str, clock: Clock, wall: Clock, repository: Repository, run_id: str
) -> LLMBooks:
    live = kind == "daemon" and isinstance(clock, LiveClock)
    if live:
        budget = DailyBudget(settings.llm_daily_max_calls, Decimal(str(settings.llm_daily_max_usd)), wall.now)
        now = wall.now()
        calls, usd = repository.llm_usage_since(datetime.combine(now.date(), time.min, tzinfo=UTC), purpose=None)
        budget.restore(calls, usd)
    else:
        budget = DailyBudget(settings.llm_sim_daily_max_calls, Decimal(str(settings.llm_sim_daily_max_usd)), clock.now)
    blind = not live and settings.llm_blind_past
    ranking = ProviderRanking() if settings.llm_provider_order == "measured" else None
    if ranking is not None and live:  # the daemon's measurements survive a restart
        for provider, model, outcome, latency_ms in repository.recent_llm_outcomes():
            if outcome in CallOutcome.__members__.values():
                ranking.observe(provider, model, outcome, latency_ms)
    return LLMBooks(budget, PriceTable.load(), blind, live, ranking, run_id, repository, clock)


def note_llm_run(books: LLMBooks, settings: Settings) -> None:
    """Record how this run uses the LLM (prompts blinded or not, which budget); warn about unblinded past dates."""
    prompts = "live" if books.live else ("blinded" if books.blind else "unblinded")
    if prompts == "unblinded":
        message = (
            "WARNING: LLM_BLIND_PAST=false: prompts about past dates carry tickers and dates; the model may know "
            "what came next (look-ahead through its memory). Recorded with the run."
        )
        logger.warning("{}", message)
        print(message, flush=True)
    usage = books.budget.usage()
    budget: dict[str, Any] = {
        "scope": "per UTC day" if books.live else "per simulated day",
        "max_calls": usage.max_calls,
        "max_usd": str(usage.max_usd),
    }
    books.repository.note_run_config(books.run_id, {"llm_prompts": prompts, "llm_budget": budget})

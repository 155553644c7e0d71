"""The backtest's strategy selector besides the daemon's: :class:`RecordedSelector` replays an earlier run's choices."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date
from typing import Any

from sqlalchemy import select

from core.backtest.config import BacktestError
from core.persistence.db import open_database
from core.persistence.models import DecisionRow, Run
from core.vocabulary import AgentName
from strategies.context import MarketContext
from strategies.selector import DeterministicSelector

__all__ = ["RecordedSelector"]


class RecordedSelector:
    """Replays the strategy choices a previous run recorded, per symbol and session date.

    The choices are the ``strategy`` agent's decisions of that run (the strategy actually used, whoever chose it),
    else its ``selector`` decisions that chose one. A symbol and day without a recorded choice falls back to the
    deterministic selector, and the reason says so.
    """

    needs_context = True  # the recorded choices are keyed by the context's symbol and date

    def __init__(self, run_id: str, choices: Mapping[tuple[str, date], str], fallback: DeterministicSelector) -> None:
        self.run_id = run_id
        self._choices = dict(choices)
        self._fallback = fallback

    def __len__(self) -> int:
        return len(self._choices)

    @classmethod
    def load(cls, database_url: str, run_id: str, registry: Mapping[str, Any]) -> RecordedSelector:
        engine = open_database(database_url)
        try:
            from sqlalchemy.orm import Session

            with Session(engine) as session:
                if session.get(Run, run_id) is None:
                    raise BacktestError(f"--selector recorded:{run_id}: no run {run_id!r} in the database")
                rows = session.execute(
                    select(DecisionRow.as_of, DecisionRow.symbol, DecisionRow.agent, DecisionRow.strategy)
                    .where(
                        DecisionRow.run_id == run_id,
                        DecisionRow.agent.in_((AgentName.STRATEGY, AgentName.SELECTOR)),
                        DecisionRow.strategy.is_not(None),
                    )
                    .order_by(DecisionRow.id)
                ).all()
        finally:
            engine.dispose()
        choices: dict[tuple[str, date], str] = {}
        from_selector: dict[tuple[str, date], str] = {}
        for as_of, symbol, agent, strategy in rows:
            if strategy is None:  # excluded by the query; narrows the column's type
                continue
            key = (symbol, as_of.astimezone(UTC).date())
            (choices if agent == AgentName.STRATEGY else from_selector)[key] = strategy
        for key, strategy in from_selector.items():
            choices.setdefault(key, strategy)
        if not choices:
            raise BacktestError(f"--selector recorded:{run_id}: the run recorded no strategy choices")
        unknown = sorted({name for name in choices.values() if name not in registry})
        if unknown:
            raise BacktestError(f"--selector recorded:{run_id}: recorded strategies {unknown} are not registered")
        return cls(run_id, choices, DeterministicSelector(registry))

    def choose(
        self,
        context: MarketContext | None,
        available_history: int,
        *,
        benchmark_available: bool = False,
        universe_available: bool = False,
    ) -> tuple[str, str]:
        if context is None:
            raise ValueError("RecordedSelector looks the choice up by the market context's symbol and date; got None")
        day = context.as_of.date() if context.as_of is not None else None
        name = self._choices.get((context.symbol, day)) if day is not None else None
        if name is not None:
            return name, f"recorded choice of run {self.run_id} for {day}"
        name, why = self._fallback.choose(
            context, available_history, benchmark_available=benchmark_available, universe_available=universe_available
        )
        return name, f"no choice recorded by run {self.run_id} for {context.symbol} on {day}: deterministic: {why}"

"""What a backtest returns: :class:`BacktestResult` with its :class:`TradeRecord` entries and :class:`Robustness`
checks (the fields are defined in :mod:`core.backtest.runner`'s docstring)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from core.kernel.domain import NOT_DATA_PROBLEMS
from core.analytics.metrics import ClosedTrade, PerformanceMetrics
from core.analytics.reporting import RoundTrip
from core.risk import TradingState, sessions_in
from utils.jsonable import jsonable

__all__ = ["BacktestResult", "Robustness", "TradeRecord"]


@dataclass(frozen=True, slots=True)
class TradeRecord:
    """One entry of the run (a flat-to-flat round trip); ``exit_*`` and ``pnl`` are ``None`` while still open."""

    symbol: str
    strategy: str
    entry_at: datetime
    entry_price: float
    exit_at: datetime | None
    exit_price: float | None
    quantity: int
    open_quantity: int
    commissions: float
    pnl: float | None
    return_pct: float | None

    @classmethod
    def of(cls, trip: RoundTrip) -> TradeRecord:
        exit_price = trip.exit_price
        pnl = trip.pnl
        return cls(
            symbol=trip.symbol,
            strategy=trip.strategy,
            entry_at=trip.entry_at,
            entry_price=float(trip.entry_price),
            exit_at=trip.exit_at,
            exit_price=float(exit_price) if exit_price is not None and trip.closed else None,
            quantity=int(trip.bought),
            open_quantity=int(trip.open_quantity),
            commissions=float(trip.commissions),
            pnl=float(pnl) if pnl is not None else None,
            return_pct=trip.return_pct,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "strategy": self.strategy,
            "entry_at": self.entry_at,
            "entry_price": self.entry_price,
            "exit_at": self.exit_at,
            "exit_price": self.exit_price,
            "quantity": self.quantity,
            "open_quantity": self.open_quantity,
            "commissions": self.commissions,
            "pnl": self.pnl,
            "return_pct": self.return_pct,
        }


@dataclass(frozen=True, slots=True)
class Robustness:
    bootstrap: dict[str, Any]
    walk_forward: list[Any]
    walk_forward_summary: Any
    tests: Any
    notes: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "bootstrap": {label: result.as_dict() for label, result in self.bootstrap.items()},
            "walk_forward": [r.as_dict() for r in self.walk_forward],
            "walk_forward_summary": self.walk_forward_summary.as_dict()
            if self.walk_forward_summary is not None
            else None,
            "tests": self.tests.as_dict() if self.tests is not None else None,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class BacktestResult:
    run_id: str
    status: str
    database: str
    data_dir: Path
    symbols: tuple[str, ...]
    start: date
    end: date
    initial_cash: Decimal
    final_equity: Decimal
    iterations: int
    degraded_iterations: int
    bars: int
    rejected_bars: int
    elapsed_s: float
    trades: list[TradeRecord]
    closed_trades: list[ClosedTrade]
    equity: pd.Series
    metrics: PerformanceMetrics
    per_strategy: dict[str, Any]
    benchmark_symbol: str | None
    benchmark: pd.Series | None
    benchmark_metrics: PerformanceMetrics | None
    settings: dict[str, Any]
    shadow: list[dict[str, Any]] | None = None
    robustness: Robustness | None = None
    timings: dict[str, float] = field(default_factory=dict)
    trading_episodes: list[dict[str, Any]] = field(default_factory=list)
    final_state: str = TradingState.ACTIVE.value
    denied: dict[str, int] = field(default_factory=dict)
    llm: dict[str, Any] = field(default_factory=dict)  # LLM vs deterministic choices, calls and cost (with --llm)
    exclusions_by_reason: dict[str, int] = field(default_factory=dict)  # symbol-sessions by reason category

    @property
    def sessions_locked(self) -> int:
        return sessions_in(self.trading_episodes, TradingState.LOCKED.value)

    @property
    def sessions_halted(self) -> int:
        return sessions_in(self.trading_episodes, TradingState.HALTED.value)

    @property
    def data_problem_sessions(self) -> int:
        """Symbol-sessions with a real data problem (not counting not-listed and warming-up symbols)."""
        return sum(n for reason, n in self.exclusions_by_reason.items() if reason not in NOT_DATA_PROBLEMS)

    def as_json(self) -> dict[str, Any]:
        """The ``--json`` object (JSON-ready: ISO times, floats, an infinite ratio as ``"inf"``)."""
        out: dict[str, Any] = {
            "run_id": self.run_id,
            "status": self.status,
            "final_equity": float(self.final_equity),
            "initial_cash": float(self.initial_cash),
            "start": self.start,
            "end": self.end,
            "symbols": list(self.symbols),
            "iterations": self.iterations,
            "degraded_iterations": self.degraded_iterations,
            "bars": self.bars,
            "rejected_bars": self.rejected_bars,
            "exclusions_by_reason": dict(self.exclusions_by_reason),
            "data_problem_sessions": self.data_problem_sessions,
            "elapsed_s": round(self.elapsed_s, 3),
            "timings_s": {phase: round(seconds, 3) for phase, seconds in self.timings.items()},
            "trades": [t.as_dict() for t in self.trades],
            "metrics": self.metrics.as_dict(),
            "per_strategy": {name: m.as_dict() for name, m in self.per_strategy.items()},
            "benchmark": None,
            "settings": self.settings,
            "trading_state": self.final_state,
            "trading_episodes": self.trading_episodes,
            "sessions_locked": self.sessions_locked,
            "sessions_halted": self.sessions_halted,
            "denied_by_rule": self.denied,
        }
        if self.benchmark_symbol is not None and self.benchmark_metrics is not None:
            m = self.benchmark_metrics
            out["benchmark"] = {
                "symbol": self.benchmark_symbol,
                "total_return": m.total_return,
                "cagr": m.cagr,
                "sharpe": m.sharpe,
                "max_drawdown": m.max_drawdown,
            }
        if self.llm:
            out["llm"] = dict(self.llm)
        if self.shadow is not None:
            out["shadow"] = self.shadow
        if self.robustness is not None:
            out["robustness"] = self.robustness.as_dict()
        return jsonable(out, decimals="float", infinities="text")

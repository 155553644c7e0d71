"""The queries behind each panel of the dashboard.

Plain functions, no Streamlit: each takes a SQLAlchemy :class:`~sqlalchemy.orm.Session` (on the read-only engine of
:mod:`core.dashboard.readonly`) and a run id, reads, and returns a ``pandas.DataFrame``, a small dataclass or a
dict. Nothing here writes. Money stays ``Decimal`` as read from the database (object columns in the frames);
:func:`as_float` converts a column for charts only.

What is reused rather than re-implemented:

* :func:`core.analytics.reporting.performance` (headline metrics), :func:`core.analytics.reporting.risk_view` (trading state, refusals
  by rule) and :func:`core.analytics.reporting.breakers` (circuit breakers);
* :func:`core.analytics.reporting.rebuild_round_trips` (the closed round trips and their P&L, as ``query_trades.py trades``);
* :func:`core.analytics.metrics.drawdown_series` (the drawdown curve);
* :func:`core.analytics.reporting.llm_usage` and :func:`core.analytics.reporting.shadow_stats`, behind ``query_trades.py llm|shadow``
  (LLM usage by model, abstentions by reason, the shadow ledger's selector-versus-fixed comparison);
* :func:`core.runtime.health.health_report` (the same verdict as ``python main.py health``).

The benchmark
-------------
The database stores no bars, but every iteration records the close each symbol had: the shadow ledger
(``shadow_matrices.closes``) and the Data agent's decision (``decisions.inputs["close"]``, kept even when the shadow
ledger is off). The buy-and-hold benchmark of a symbol is that close, matched to the equity snapshots by iteration
and rebased to the run's first equity, like the benchmark line of the backtest HTML report
(:mod:`core.backtest.report`).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.analytics import reporting
from core.dashboard.formatting import session_date
from core.analytics.metrics import drawdown_series
from core.persistence.models import (
    AuditReportRow,
    DaemonStateRow,
    DecisionRow,
    EquitySnapshotRow,
    FillRow,
    Iteration,
    OrderRow,
    PositionRow,
    Run,
)
from core.vocabulary import AgentName, StateKey

if TYPE_CHECKING:
    from config.settings import Settings

_ZERO = Decimal("0")
HEARTBEAT_KEY: str = StateKey.HEARTBEAT.value
DEFAULT_BENCHMARK = "SPY"


# --------------------------------------------------------------------------------------------------- helpers


def as_float(series: pd.Series) -> pd.Series:
    """A money column (``Decimal`` objects, ``None``) as floats, for charts only."""
    return pd.Series([float(v) if v is not None else float("nan") for v in series], index=series.index, dtype=float)


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns)


def _get_run(session: Session, run_id: str) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise LookupError(f"no run {run_id!r} in the database")
    return run


# --------------------------------------------------------------------------------------------------- runs

RUN_COLUMNS = [
    "run_id", "kind", "status", "started_at", "finished_at", "iterations", "degraded", "failed",
    "first_session", "last_session", "initial_cash", "symbols",
]  # fmt: skip


def list_runs(session: Session, run_id: str | None = None) -> pd.DataFrame:
    """Every run, newest first, with its iteration counts and the sessions it covered (:func:`core.analytics.reporting.run_list`:
    one aggregate query). With ``run_id``, only that run."""
    return _frame(reporting.run_list(session, run_id), RUN_COLUMNS)


def default_run_id(session: Session) -> str | None:
    """The run the dashboard opens on: the latest daemon run, else the latest run of any kind (``None``: no runs)."""
    for kind in ("daemon", None):
        try:
            return reporting.latest_run_id(session, kind=kind)
        except LookupError:
            continue
    return None


def run_summary(session: Session, run_id: str) -> dict[str, Any]:
    run = _get_run(session, run_id)
    config = run.config if isinstance(run.config, dict) else {}
    return {
        "run_id": run.id,
        "kind": run.kind,
        "status": run.status,
        "broker": run.broker,
        "data_provider": run.data_provider,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "initial_cash": run.initial_cash,
        "symbols": list(run.symbols.get("symbols", [])) if isinstance(run.symbols, dict) else [],
        "benchmark_symbol": str(config.get("benchmark_symbol") or DEFAULT_BENCHMARK).upper(),
    }


# --------------------------------------------------------------------------------------------------- equity


@dataclass(frozen=True)
class EquityCurve:
    """The run's equity curve (one row per snapshot, oldest first) with its drawdown and the benchmark.

    ``frame`` columns: ``at`` (UTC), ``iteration_id``, ``equity``/``cash``/``market_value`` (``Decimal``),
    ``positions``, ``drawdown`` (float, a positive fraction below the running peak), ``benchmark`` (float: the
    benchmark's buy-and-hold value rebased to the first equity; NaN where its close is unknown).
    """

    run_id: str
    frame: pd.DataFrame
    initial_cash: Decimal
    first_equity: Decimal | None
    final_equity: Decimal | None
    final_at: datetime | None
    total_return: float | None  # final / first equity - 1
    max_drawdown: float | None
    benchmark_symbol: str | None
    benchmark_return: float | None  # last / first known close - 1
    metrics: dict[str, Any] = field(default_factory=dict)  # core.analytics.reporting.performance()["metrics"]


def benchmark_closes(session: Session, run_id: str, symbol: str) -> dict[str, float]:
    """``iteration_id -> close`` of ``symbol`` in the run: from the shadow ledger, else from the Data agent's
    decisions (``inputs["close"]``)."""
    sym = symbol.strip().upper()
    closes = {
        entry.iteration_id: entry.close
        for entry in reporting.shadow_entries(session, run_id=run_id, symbol=sym)
        if entry.close is not None and entry.close > 0
    }
    if closes:
        return closes
    for iteration_id, inputs in session.execute(
        select(DecisionRow.iteration_id, DecisionRow.inputs).where(
            DecisionRow.run_id == run_id, DecisionRow.agent == AgentName.DATA, DecisionRow.symbol == sym
        )
    ):
        close = inputs.get("close") if isinstance(inputs, dict) else None
        if isinstance(close, (int, float)) and close > 0:
            closes[iteration_id] = float(close)
    return closes


EQUITY_COLUMNS = ["at", "iteration_id", "equity", "cash", "market_value", "positions", "drawdown", "benchmark"]


def equity_curve(session: Session, run_id: str, benchmark_symbol: str | None = None) -> EquityCurve:
    """Equity, drawdown and buy-and-hold benchmark of one run. Snapshots sharing a timestamp keep the last one
    recorded (as :func:`core.analytics.reporting.performance` does). ``benchmark_symbol`` defaults to the run's configured
    ``BENCHMARK_SYMBOL``."""
    summary = run_summary(session, run_id)
    symbol = (benchmark_symbol or summary["benchmark_symbol"]).strip().upper()
    snapshots = session.scalars(
        select(EquitySnapshotRow)
        .where(EquitySnapshotRow.run_id == run_id)
        .order_by(EquitySnapshotRow.at, EquitySnapshotRow.id)
    ).all()
    by_time: dict[datetime, EquitySnapshotRow] = {}
    for s in snapshots:
        by_time[s.at] = s  # the last one recorded wins
    rows: list[dict[str, Any]] = [
        {
            "at": s.at,
            "iteration_id": s.iteration_id,
            "equity": s.equity,
            "cash": s.cash,
            "market_value": s.market_value,
            "positions": s.positions,
        }
        for s in by_time.values()
    ]
    frame = _frame(rows, EQUITY_COLUMNS[:6])
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    equity = pd.Series(as_float(frame["equity"]).to_numpy(), index=pd.DatetimeIndex(frame["at"]), dtype=float)
    frame["drawdown"] = drawdown_series(equity).to_numpy() if len(frame) else pd.Series(dtype=float)

    closes = benchmark_closes(session, run_id, symbol) if len(frame) else {}
    bench = pd.Series([closes.get(i, float("nan")) for i in frame["iteration_id"]], dtype=float)
    known = bench.dropna()
    benchmark_return = None
    if len(known):
        first_close = float(known.iloc[0])
        frame["benchmark"] = (bench / first_close * float(equity.iloc[known.index[0]])).to_numpy()
        benchmark_return = float(known.iloc[-1] / first_close - 1.0) if len(known) > 1 else 0.0
    else:
        frame["benchmark"] = float("nan")

    first = rows[0]["equity"] if rows else None
    last = rows[-1]["equity"] if rows else None
    metrics: dict[str, Any] = {}
    if rows:
        metrics = reporting.performance(session, run_id=run_id)["metrics"]
    return EquityCurve(
        run_id=run_id,
        frame=frame[EQUITY_COLUMNS],
        initial_cash=summary["initial_cash"],
        first_equity=first,
        final_equity=last,
        final_at=rows[-1]["at"] if rows else None,
        total_return=float(last / first - 1) if first else None,
        max_drawdown=float(frame["drawdown"].max()) if rows else None,
        benchmark_symbol=symbol if len(known) else None,
        benchmark_return=benchmark_return,
        metrics=metrics,
    )


# --------------------------------------------------------------------------------------------------- positions

POSITION_COLUMNS = [
    "symbol", "quantity", "average_price", "last_price", "market_value", "stop_price", "target_price",
    "unrealized_pnl", "unrealized_pct", "opened_at", "updated_at",
]  # fmt: skip


@dataclass(frozen=True)
class Positions:
    frame: pd.DataFrame  # one row per open position (POSITION_COLUMNS), money in Decimal
    market_value: Decimal
    unrealized_pnl: Decimal
    as_of: datetime | None  # the latest update of the positions (the mark's time)


def open_positions(session: Session, run_id: str) -> Positions:
    """The run's open positions as of its latest iteration, with their protective stop and take-profit target.

    Unrealised P&L = (mark - average price) x quantity, the mark being the position's ``last_price`` (the close the
    run last saw), else ``market_value / quantity``."""
    _get_run(session, run_id)
    rows: list[dict[str, Any]] = []
    for p in session.scalars(select(PositionRow).where(PositionRow.run_id == run_id).order_by(PositionRow.symbol)):
        if p.quantity == 0:
            continue
        mark = p.last_price if p.last_price is not None else p.market_value / p.quantity
        pnl = (mark - p.average_price) * p.quantity
        cost = p.average_price * p.quantity
        rows.append(
            {
                "symbol": p.symbol,
                "quantity": p.quantity,
                "average_price": p.average_price,
                "last_price": mark,
                "market_value": p.market_value,
                "stop_price": p.stop_price,
                "target_price": p.target_price,
                "unrealized_pnl": pnl,
                "unrealized_pct": float(pnl / cost) if cost else None,
                "opened_at": p.opened_at,
                "updated_at": p.updated_at,
            }
        )
    return Positions(
        frame=_frame(rows, POSITION_COLUMNS),
        market_value=sum((r["market_value"] for r in rows), _ZERO),
        unrealized_pnl=sum((r["unrealized_pnl"] for r in rows), _ZERO),
        as_of=max((r["updated_at"] for r in rows), default=None),
    )


# --------------------------------------------------------------------------------------------------- orders, fills

ORDER_COLUMNS = [
    "submitted_at", "symbol", "side", "type", "quantity", "limit_price", "stop_price", "status", "filled_quantity",
    "average_fill_price", "strategy", "reason", "client_order_id",
]  # fmt: skip
FILL_COLUMNS = [
    "filled_at",
    "symbol",
    "side",
    "quantity",
    "price",
    "value",
    "commission",
    "strategy",
    "client_order_id",
]


def activity_counts(session: Session, run_id: str) -> dict[str, Any]:
    """Totals of the run: ``orders``, ``fills``, ``orders_by_status`` and ``iterations``."""
    _get_run(session, run_id)
    by_status = dict(
        session.execute(
            select(OrderRow.status, func.count()).where(OrderRow.run_id == run_id).group_by(OrderRow.status)
        ).all()
    )
    return {
        "orders": int(sum(by_status.values())),
        "fills": int(session.scalar(select(func.count()).select_from(FillRow).where(FillRow.run_id == run_id)) or 0),
        "orders_by_status": {k: int(v) for k, v in sorted(by_status.items())},
        "iterations": int(
            session.scalar(select(func.count()).select_from(Iteration).where(Iteration.run_id == run_id)) or 0
        ),
    }


def recent_orders(session: Session, run_id: str, limit: int = 50) -> pd.DataFrame:
    """The run's latest ``limit`` orders, newest first."""
    stmt = (
        select(OrderRow)
        .where(OrderRow.run_id == run_id)
        .order_by(OrderRow.submitted_at.desc(), OrderRow.id.desc())
        .limit(limit)
    )
    rows = [
        {
            "submitted_at": o.submitted_at,
            "symbol": o.symbol,
            "side": o.side,
            "type": o.order_type,
            "quantity": o.quantity,
            "limit_price": o.limit_price,
            "stop_price": o.stop_price,
            "status": o.status,
            "filled_quantity": o.filled_quantity,
            "average_fill_price": o.average_fill_price,
            "strategy": o.strategy,
            "reason": o.reason,
            "client_order_id": o.client_order_id,
        }
        for o in session.scalars(stmt)
    ]
    return _frame(rows, ORDER_COLUMNS)


def recent_fills(session: Session, run_id: str, limit: int = 50) -> pd.DataFrame:
    """The run's latest ``limit`` fills with their order's strategy, newest first."""
    stmt = (
        select(FillRow, OrderRow.strategy)
        .join(OrderRow, OrderRow.client_order_id == FillRow.client_order_id)
        .where(FillRow.run_id == run_id)
        .order_by(FillRow.filled_at.desc(), FillRow.id.desc())
        .limit(limit)
    )
    rows = [
        {
            "filled_at": f.filled_at,
            "symbol": f.symbol,
            "side": f.side,
            "quantity": f.quantity,
            "price": f.price,
            "value": f.quantity * f.price,
            "commission": f.commission,
            "strategy": strategy,
            "client_order_id": f.client_order_id,
        }
        for f, strategy in session.execute(stmt)
    ]
    return _frame(rows, FILL_COLUMNS)


ROUND_TRIP_COLUMNS = [
    "symbol", "strategy", "entry_at", "entry_price", "exit_at", "exit_price", "quantity", "pnl", "return_pct",
    "holding_sessions", "exit_reason", "commissions", "fills", "exit_order_id",
]  # fmt: skip
_STOP_TYPES = frozenset({"stop", "stop_limit", "trailing_stop"})


def exit_reason(order_type: str, reason: str, client_order_id: str) -> str:
    """Why a round trip closed, from the order of its last fill: ``stop`` (the protective stop-loss leg or any stop
    order), ``target`` (the take-profit leg), ``time`` (the position manager's time stop), ``signal`` (the strategy's
    SELL) or ``other`` (anything else, e.g. an operator's flatten)."""
    text = (reason or "").lower()
    if "time stop" in text:
        return "time"
    if order_type in _STOP_TYPES or text.startswith("stop-loss"):
        return "stop"
    if text.startswith("take-profit") or client_order_id.endswith("-tp"):
        return "target"
    if "exit on " in text:
        return "signal"
    return "other"


def round_trips(session: Session, run_id: str, limit: int | None = None) -> pd.DataFrame:
    """The run's closed round trips (flat to flat, :func:`core.analytics.reporting.rebuild_round_trips`), newest exit first.

    Per trip: entry/exit time (first buy fill / the fill that flattened it) and average price, quantity, ``pnl``
    (net of both sides' commissions, ``Decimal``), ``return_pct`` (P&L / entry cost), ``holding_sessions`` (the run's
    sessions after the entry's New York date up to the exit's: 0 for a same-day exit), ``exit_reason``
    (:func:`exit_reason`) and the strategy that opened it."""
    _get_run(session, run_id)
    book = reporting.rebuild_round_trips(session, run_id=run_id)
    closed = sorted(book.closed, key=lambda t: (t.exit_at, t.entry_at, t.symbol), reverse=True)
    if limit is not None:
        closed = closed[:limit]
    exit_ids = sorted({t.fills[-1].client_order_id for t in closed})
    orders: dict[str, tuple[str, str]] = {}
    for start in range(0, len(exit_ids), 500):
        for cid, order_type, reason in session.execute(
            select(OrderRow.client_order_id, OrderRow.order_type, OrderRow.reason).where(
                OrderRow.client_order_id.in_(exit_ids[start : start + 500])
            )
        ):
            orders[cid] = (order_type, reason)
    sessions = sorted(
        {session_date(at) for at in session.scalars(select(Iteration.as_of).where(Iteration.run_id == run_id))}
    )
    rows = []
    for t in closed:
        assert t.exit_at is not None
        cid = t.fills[-1].client_order_id
        order_type, reason = orders.get(cid, ("", ""))
        entered, exited = session_date(t.entry_at), session_date(t.exit_at)
        rows.append(
            {
                "symbol": t.symbol,
                "strategy": t.strategy,
                "entry_at": t.entry_at,
                "entry_price": t.entry_price,
                "exit_at": t.exit_at,
                "exit_price": t.exit_price,
                "quantity": t.bought,
                "pnl": t.pnl,
                "return_pct": t.return_pct,
                "holding_sessions": bisect_right(sessions, exited) - bisect_right(sessions, entered),
                "exit_reason": exit_reason(order_type, reason, cid),
                "commissions": t.commissions,
                "fills": len(t.fills),
                "exit_order_id": cid,
            }
        )
    return _frame(rows, ROUND_TRIP_COLUMNS)


# --------------------------------------------------------------------------------------------------- decisions

DECISION_COLUMNS = ["as_of", "agent", "symbol", "action", "strategy", "confidence", "reason", "iteration_id"]


def decision_agents(session: Session, run_id: str) -> list[str]:
    """The agents that decided in the run, in pipeline order."""
    agents = session.scalars(select(DecisionRow.agent).where(DecisionRow.run_id == run_id).distinct()).all()
    order = reporting.PIPELINE_ORDER
    return sorted(agents, key=lambda a: (order.index(a) if a in order else len(order), a))


def recent_decisions(session: Session, run_id: str, limit: int = 20) -> dict[str, pd.DataFrame]:
    """``agent -> its latest `limit` decisions`` (newest first), agents in pipeline order."""
    _get_run(session, run_id)
    out: dict[str, pd.DataFrame] = {}
    for agent in decision_agents(session, run_id):
        stmt = (
            select(DecisionRow)
            .where(DecisionRow.run_id == run_id, DecisionRow.agent == agent)
            .order_by(DecisionRow.as_of.desc(), DecisionRow.id.desc())
            .limit(limit)
        )
        rows = [
            {
                "as_of": d.as_of,
                "agent": d.agent,
                "symbol": d.symbol,
                "action": d.action,
                "strategy": d.strategy,
                "confidence": d.confidence,
                "reason": d.reason,
                "iteration_id": d.iteration_id,
            }
            for d in session.scalars(stmt)
        ]
        out[agent] = _frame(rows, DECISION_COLUMNS)
    return out


REFUSAL_COLUMNS = ["rule", "count", "symbols", "latest", "example"]


def refusals_by_rule(session: Session, run_id: str) -> pd.DataFrame:
    """The Risk agent's refusals (``denied:<rule>``) of the run per rule, most frequent first
    (:func:`core.analytics.reporting.risk_view`)."""
    refusals = reporting.risk_view(session, run_id=run_id)["refusals"]
    rows = [
        {
            "rule": r["rule"],
            "count": r["count"],
            "symbols": ", ".join(r["symbols"]),
            "latest": r["latest"],
            "example": f"{r['example_symbol']}: {r['example_reason']}",
        }
        for r in refusals
    ]
    return _frame(rows, REFUSAL_COLUMNS)


# --------------------------------------------------------------------------------------------------- state, breakers

BREAKER_COLUMNS = ["name", "state", "reason", "changed_at", "trips", "last_trip_at", "updated_at"]
BREAKER_EVENT_COLUMNS = ["at", "name", "from_state", "to_state", "reason"]


@dataclass(frozen=True)
class TradingState:
    state: str  # active / reducing / halted / unknown
    reason: str
    updated_at: datetime | None
    high_water_mark: Any
    equity: Decimal | None  # the run's latest equity
    gross_exposure: Decimal
    gross_share: float | None
    exposure: pd.DataFrame  # sector, symbols, value, share
    breakers: pd.DataFrame  # BREAKER_COLUMNS, current state of every breaker
    breaker_events: pd.DataFrame  # BREAKER_EVENT_COLUMNS, newest first


def trading_state(session: Session, run_id: str) -> TradingState:
    """The trading state the Risk agent persisted for the run (a replay's or backtest's own, the daemon's for a
    daemon run), its exposure by sector, and the circuit breakers with their trip/recovery history
    (:func:`core.analytics.reporting.risk_view`, :func:`core.analytics.reporting.breakers`)."""
    risk = reporting.risk_view(session, run_id=run_id)
    state = risk["state"]
    brk = reporting.breakers(session, run_id=run_id)
    exposure = _frame(
        [
            {"sector": b["sector"], "symbols": ", ".join(b["symbols"]), "value": b["value"], "share": b["share"]}
            for b in risk["exposure"]
        ],
        ["sector", "symbols", "value", "share"],
    )
    breakers = _frame([{k: c.get(k) for k in BREAKER_COLUMNS} for c in brk["current"]], BREAKER_COLUMNS)
    events = _frame([{k: e[k] for k in BREAKER_EVENT_COLUMNS} for e in reversed(brk["events"])], BREAKER_EVENT_COLUMNS)
    return TradingState(
        state=str(state.get("state", "unknown")),
        reason=str(state.get("reason") or ""),
        updated_at=state.get("updated_at"),
        high_water_mark=state.get("high_water_mark"),
        equity=risk["equity"],
        gross_exposure=risk["gross_exposure"],
        gross_share=risk["gross_share"],
        exposure=exposure,
        breakers=breakers,
        breaker_events=events,
    )


@dataclass(frozen=True)
class StateBanner:
    """The banner over the run shown: its own trading state, why, and how loud (``success`` for ACTIVE only,
    ``error`` for HALTED and LOCKED, ``warning`` for any other state: REDUCING, unknown...)."""

    state: str  # upper case
    reason: str
    level: str  # success / warning / error
    updated_at: datetime | None

    @property
    def text(self) -> str:
        return f"Trading {self.state}" + (f": {self.reason}" if self.reason else "")


_RED_STATES = frozenset({"halted", "locked"})


def state_banner(session: Session, run_id: str) -> StateBanner:
    """The trading state of the run (:func:`trading_state`) as a banner."""
    ts = trading_state(session, run_id)
    state = ts.state.strip().lower()
    level = "success" if state == "active" else "error" if state in _RED_STATES else "warning"
    return StateBanner(state=state.upper(), reason=ts.reason, level=level, updated_at=ts.updated_at)


# --------------------------------------------------------------------------------------------------- LLM, shadow


LLM_COLUMNS = [
    "purpose", "provider", "model", "calls", "outcomes", "retries", "input_tokens", "output_tokens", "cost_usd",
    "unpriced_calls", "latency_p50_ms", "latency_p95_ms", "latency_max_ms",
]  # fmt: skip


@dataclass(frozen=True)
class LLMUsage:
    calls: int
    cost_usd: Decimal
    unpriced_calls: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    abstentions: int
    by_model: pd.DataFrame  # one row per purpose/provider/model (query_trades.py llm)
    abstention_reasons: pd.DataFrame  # reason, count


def llm_usage(session: Session, run_id: str) -> LLMUsage:
    """LLM calls of the run (count, cost, latency percentiles, outcomes by model) and the selector's abstentions
    (``decisions`` with ``agent = 'selector'``, ``action = 'abstain'``), from ``query_trades.py llm``. Latencies
    leave out calls refused by the budget (never sent), as that query does."""
    from core.persistence.models import LLMCallRow

    _get_run(session, run_id)
    report = reporting.llm_usage(session, run_id=run_id)
    rows = session.execute(select(LLMCallRow.latency_ms, LLMCallRow.outcome).where(LLMCallRow.run_id == run_id)).all()
    latencies = [latency for latency, outcome in rows if outcome != "budget_exceeded"]
    by_model = _frame(report["calls"], LLM_COLUMNS)
    reasons = pd.DataFrame(report["abstentions"], columns=["reason", "count"])
    return LLMUsage(
        calls=int(sum(c["calls"] for c in report["calls"])),
        cost_usd=sum((c["cost_usd"] for c in report["calls"]), _ZERO),
        unpriced_calls=int(sum(c["unpriced_calls"] for c in report["calls"])),
        latency_p50_ms=reporting.percentile(latencies, 0.5),
        latency_p95_ms=reporting.percentile(latencies, 0.95),
        abstentions=int(reasons["count"].sum()) if len(reasons) else 0,
        by_model=by_model,
        abstention_reasons=reasons,
    )


SHADOW_COLUMNS = [
    "strategy", "evaluated", "buy", "sell", "hold", "buy_fwd_return_avg", "buy_hit_rate", "sell_fwd_return_avg",
    "sell_hit_rate", "horizon_bars",
]  # fmt: skip


def shadow_comparison(session: Session, run_id: str, horizon: int = 10) -> pd.DataFrame:
    """The shadow ledger: for the selector's choices (row ``selector``, first) and every fixed strategy, how often
    it signalled and the average forward return ``horizon`` bars after its BUY/SELL signals
    (``query_trades.py shadow``)."""
    _get_run(session, run_id)
    return _frame(reporting.shadow_stats(session, run_id=run_id, horizon=horizon), SHADOW_COLUMNS)


# --------------------------------------------------------------------------------------------------- audit, health


def latest_narrative(session: Session, run_id: str) -> dict[str, Any] | None:
    """The run's latest audit report (``kind`` ``template`` or ``llm``, its text, time and iteration)."""
    report = session.scalars(
        select(AuditReportRow)
        .where(AuditReportRow.run_id == run_id)
        .order_by(AuditReportRow.at.desc(), AuditReportRow.id.desc())
        .limit(1)
    ).first()
    if report is None:
        return None
    return {"at": report.at, "kind": report.kind, "text": report.text, "iteration_id": report.iteration_id}


def daemon_health(session: Session, settings: Settings, now: datetime) -> dict[str, Any]:
    """The verdict of ``python main.py health`` (:func:`core.runtime.health.health_report`): healthy when the daemon's last heartbeat
    is not older than its next scheduled run plus ``HEALTH_GRACE_MINUTES`` and trading is not HALTED. Adds
    ``heartbeat`` (the raw heartbeat row: run, iteration, session, status) when there is one. Database-wide: the
    daemon's heartbeat, whatever run is shown."""
    from core.kernel.calendar import MarketCalendar
    from core.persistence.repository import Repository
    from core.runtime.health import health_report

    report = dict(health_report(settings, Repository(session.get_bind()), MarketCalendar(), now))  # type: ignore[arg-type]
    row = session.get(DaemonStateRow, HEARTBEAT_KEY)
    report["heartbeat"] = dict(row.value) if row is not None else None
    return report

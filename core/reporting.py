"""Read-only reports over the trading database: round trips, performance, calibration, breakers, risk, reconciliation
and the "why" of one symbol on one day.

Pure query functions: each takes a SQLAlchemy ``Session`` and filters, reads, and returns plain values (dicts,
dataclasses, :class:`~core.metrics.ClosedTrade`). No writes, no clock. Metrics are never re-implemented here: they
come from :mod:`core.metrics` and :mod:`core.calibration`. Money stays ``Decimal`` as read from the database and is
converted to ``float`` only where a metric function needs it.

Filters
-------
* ``run_id``: one run. ``None`` means every run, except for the per-run reports (:func:`performance`,
  :func:`risk_view`) where it means the **latest** run (by ``runs.started_at``). An unknown run id raises
  ``LookupError``.
* ``symbol``: case-insensitive.
* ``start`` / ``end``: inclusive UTC calendar dates (``end`` covers the whole day).

Round trips (long-only, average cost)
-------------------------------------
Fills are replayed in order (``filled_at``, then insertion order) per run and symbol:

* a **trip opens** with the buy fill that takes the position from 0 to > 0; the order of that fill is the trip's
  **entry order**: its ``strategy`` is the trip's strategy and its ``iteration_id`` gives the **entry confidence**
  (``decisions.confidence`` of the ``risk`` decision of that iteration and symbol; the ``quant`` decision's when the
  risk one carries none);
* further buys while the position is open **scale in** (same trip); sells **scale out**;
* the trip **closes** with the fill that brings the position back to exactly 0.

A partially closed position is therefore **not** split: all the buys and sells between flat and flat make **one**
:class:`ClosedTrade` with ``quantity`` = total bought (= total sold), ``entry_price`` = average cost
(``sum(buy qty x price) / bought``), ``exit_price`` = average exit (``sum(sell qty x price) / sold``),
``entry_at`` = first buy fill, ``exit_at`` = the fill that flattened it. Its ``pnl`` is net of both sides'
commissions, ``sum(sell notional) - sum(buy notional) - sum(commissions)`` (for a closed trip this equals the sum
of the average-cost realised P&L of each partial exit, minus commissions), and ``return_pct = pnl / entry cost``
with entry cost = ``sum(buy notional)`` (commissions excluded, as in :mod:`core.metrics`). While a trip is still
open, :attr:`RoundTrip.realized_pnl` holds the average-cost P&L of the exits so far, net of the commissions paid so
far. Date filters on closed trades select by the **exit** date (a trade belongs to the period in which it closed).

Positions live per run (a replay starts flat), so each run is rebuilt on its own. A sell larger than the position
rebuilt for its run (e.g. shares carried over from an earlier daemon run) cannot belong to a trip of that run: the
excess is not invented into a trade, it is listed in :attr:`RoundTripBook.unmatched` (and reported by
:func:`performance`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session

from core.calibration import CalibrationReport, calibration_report
from core.domain import to_price
from core.metrics import TRADING_DAYS_PER_YEAR, ClosedTrade, compute_metrics, metrics_by
from core.persistence.models import (
    BreakerEventRow,
    DaemonStateRow,
    DecisionRow,
    EquitySnapshotRow,
    FillRow,
    Iteration,
    LLMCallRow,
    OrderRow,
    PositionRow,
    ReconciliationRow,
    Run,
    ShadowSignalRow,
)
from core.risk import load_sector_map, sector_of

PIPELINE_ORDER: tuple[str, ...] = ("data", "selector", "strategy", "quant", "risk", "execution")
RISK_STATE_KEY = "risk:state"
BREAKER_PREFIX = "breaker:"
DENIED_PREFIX = "denied:"
_ZERO = Decimal("0")
_CHUNK = 500  # bound on the size of an IN (...) list


# --------------------------------------------------------------------------------------------------- filters


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _window(stmt: Select[Any], column: Any, start: date | None, end: date | None) -> Select[Any]:
    if start is not None:
        stmt = stmt.where(column >= _day_start(start))
    if end is not None:
        stmt = stmt.where(column < _day_start(end + timedelta(days=1)))
    return stmt


def _in_window(at: datetime, start: date | None, end: date | None) -> bool:
    day = at.astimezone(UTC).date()
    return (start is None or day >= start) and (end is None or day <= end)


def _norm_symbol(symbol: str | None) -> str | None:
    return symbol.strip().upper() if symbol else None


def latest_run_id(session: Session, *, kind: str | None = None) -> str:
    """The id of the most recently started run (of ``kind``, e.g. ``"daemon"``, when given; ties: the greater id).
    ``LookupError`` when the database holds none. The one "latest run" query (CLI ``--run latest``, the reports'
    default, the dashboard's first run)."""
    stmt = select(Run.id)
    if kind is not None:
        stmt = stmt.where(Run.kind == kind)
    run_id = session.scalar(stmt.order_by(Run.started_at.desc(), Run.id.desc()).limit(1))
    if run_id is None:
        raise LookupError("the database holds no runs yet" if kind is None else f"the database holds no {kind} run yet")
    return run_id


def run_list(session: Session, run_id: str | None = None) -> list[dict[str, Any]]:
    """Every run (daemon sessions, replays, demos, backtests), newest first (ties: the greater id first), with its
    iteration counts by status (``degraded``: completed and recorded without something it needed; ``failed``: a
    handler raised) and the first and last session it covered. One aggregate query, whatever the number of runs and
    iterations. With ``run_id``, only that run (an empty list when there is none)."""
    stats_stmt = select(
        Iteration.run_id,
        func.count().label("iterations"),
        func.sum(case((Iteration.status == "degraded", 1), else_=0)).label("degraded"),
        func.sum(case((Iteration.status == "failed", 1), else_=0)).label("failed"),
        func.min(Iteration.as_of).label("first"),
        func.max(Iteration.as_of).label("last"),
    ).group_by(Iteration.run_id)
    if run_id is not None:
        stats_stmt = stats_stmt.where(Iteration.run_id == run_id)
    stats = stats_stmt.subquery()
    stmt = (
        select(Run, stats.c.iterations, stats.c.degraded, stats.c.failed, stats.c.first, stats.c.last)
        .outerjoin(stats, stats.c.run_id == Run.id)
        .order_by(Run.started_at.desc(), Run.id.desc())
    )
    if run_id is not None:
        stmt = stmt.where(Run.id == run_id)
    return [
        {
            "run_id": run.id,
            "kind": run.kind,
            "status": run.status,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "iterations": int(iterations or 0),
            "degraded": int(degraded or 0),
            "failed": int(failed or 0),
            "first_session": pd.Timestamp(first).date() if first is not None else None,
            "last_session": pd.Timestamp(last).date() if last is not None else None,
            "initial_cash": run.initial_cash,
            "symbols": ", ".join(run.symbols.get("symbols", [])) if isinstance(run.symbols, dict) else "",
            "broker": run.broker,
            "data": run.data_provider,
        }
        for run, iterations, degraded, failed, first, last in session.execute(stmt)
    ]


def _one_run(session: Session, run_id: str | None) -> Run:
    run = session.get(Run, run_id if run_id is not None else latest_run_id(session))
    if run is None:
        raise LookupError(f"no run {run_id!r} in the database")
    return run


def _check_run(session: Session, run_id: str | None) -> None:
    if run_id is not None and session.get(Run, run_id) is None:
        raise LookupError(f"no run {run_id!r} in the database")


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(values), _CHUNK):
        yield values[i : i + _CHUNK]


# --------------------------------------------------------------------------------------------------- round trips


@dataclass(frozen=True, slots=True)
class TripFill:
    """One fill as seen by the round-trip rebuild (``quantity`` is the part that belongs to the trip)."""

    fill_id: str
    client_order_id: str
    side: str
    quantity: Decimal
    price: Decimal
    commission: Decimal
    filled_at: datetime


@dataclass(frozen=True, slots=True)
class RoundTrip:
    """One flat-to-flat cycle of a symbol in a run (closed) or the current cycle (open). Money in ``Decimal``."""

    run_id: str
    symbol: str
    strategy: str
    entry_order_id: str
    entry_iteration_id: str
    entry_confidence: float | None
    fills: tuple[TripFill, ...]
    bought: Decimal
    bought_value: Decimal
    sold: Decimal
    sold_value: Decimal
    commissions: Decimal
    average_cost: Decimal  # average cost of the shares still held (of the whole position while nothing was sold)
    realized_pnl: Decimal  # average-cost P&L of the exits so far, net of every commission paid so far

    @property
    def entry_at(self) -> datetime:
        return self.fills[0].filled_at

    @property
    def open_quantity(self) -> Decimal:
        return self.bought - self.sold

    @property
    def closed(self) -> bool:
        return self.open_quantity == 0

    @property
    def exit_at(self) -> datetime | None:
        return self.fills[-1].filled_at if self.closed else None

    @property
    def entry_price(self) -> Decimal:
        return self.bought_value / self.bought

    @property
    def exit_price(self) -> Decimal | None:
        return self.sold_value / self.sold if self.sold else None

    @property
    def pnl(self) -> Decimal | None:
        """Net P&L of a closed trip (``None`` while open; see :attr:`realized_pnl`)."""
        return self.sold_value - self.bought_value - self.commissions if self.closed else None

    @property
    def return_pct(self) -> float | None:
        pnl = self.pnl
        return float(pnl / self.bought_value) if pnl is not None else None

    def to_closed_trade(self) -> ClosedTrade:
        if not self.closed:
            raise ValueError(f"the {self.symbol} trip opened at {self.entry_at.isoformat()} is still open")
        pnl, exit_price, exit_at, ret = self.pnl, self.exit_price, self.exit_at, self.return_pct
        assert pnl is not None and exit_price is not None and exit_at is not None and ret is not None
        return ClosedTrade(
            symbol=self.symbol,
            strategy=self.strategy,
            entry_at=self.entry_at,
            exit_at=exit_at,
            entry_price=float(self.entry_price),
            exit_price=float(exit_price),
            quantity=float(self.bought),
            pnl=float(pnl),
            entry_confidence=self.entry_confidence,
            return_pct=ret,
        )

    def summary(self) -> dict[str, Any]:
        """A plain dict of the trip for reports (average prices rounded to 0.0001; money exact)."""
        return {
            "status": "closed" if self.closed else "open position",
            "run_id": self.run_id,
            "symbol": self.symbol,
            "strategy": self.strategy,
            "entry_order_id": self.entry_order_id,
            "entry_confidence": self.entry_confidence,
            "entry_at": self.entry_at,
            "entry_price": to_price(self.entry_price),
            "quantity": self.bought,
            "open_quantity": self.open_quantity,
            "exit_at": self.exit_at,
            "exit_price": to_price(self.exit_price) if self.exit_price is not None else None,
            "commissions": self.commissions,
            "pnl": self.pnl,
            "return_pct": self.return_pct,
            "realized_pnl": self.realized_pnl,
            "average_cost": to_price(self.average_cost),
            "fills": len(self.fills),
        }


@dataclass(frozen=True, slots=True)
class UnmatchedSell:
    """Quantity sold beyond the position rebuilt for its run (no trip of that run can hold it)."""

    run_id: str
    symbol: str
    fill_id: str
    client_order_id: str
    quantity: Decimal
    filled_at: datetime


@dataclass(frozen=True, slots=True)
class RoundTripBook:
    trips: tuple[RoundTrip, ...]
    unmatched: tuple[UnmatchedSell, ...] = ()

    @property
    def closed(self) -> tuple[RoundTrip, ...]:
        return tuple(t for t in self.trips if t.closed)

    @property
    def open(self) -> tuple[RoundTrip, ...]:
        return tuple(t for t in self.trips if not t.closed)


@dataclass
class _Builder:
    run_id: str
    symbol: str
    strategy: str
    entry_order_id: str
    entry_iteration_id: str
    fills: list[TripFill] = field(default_factory=list)
    bought: Decimal = _ZERO
    bought_value: Decimal = _ZERO
    sold: Decimal = _ZERO
    sold_value: Decimal = _ZERO
    commissions: Decimal = _ZERO
    average_cost: Decimal = _ZERO
    realized: Decimal = _ZERO

    @property
    def held(self) -> Decimal:
        return self.bought - self.sold

    def buy(self, f: TripFill) -> None:
        held = self.held
        self.average_cost = (held * self.average_cost + f.quantity * f.price) / (held + f.quantity)
        self.bought += f.quantity
        self.bought_value += f.quantity * f.price
        self._add(f)

    def sell(self, f: TripFill) -> None:
        self.sold += f.quantity
        self.sold_value += f.quantity * f.price
        self.realized += f.quantity * (f.price - self.average_cost)
        self._add(f)

    def _add(self, f: TripFill) -> None:
        self.commissions += f.commission
        self.realized -= f.commission
        self.fills.append(f)

    def freeze(self, confidence: float | None) -> RoundTrip:
        return RoundTrip(
            run_id=self.run_id,
            symbol=self.symbol,
            strategy=self.strategy,
            entry_order_id=self.entry_order_id,
            entry_iteration_id=self.entry_iteration_id,
            entry_confidence=confidence,
            fills=tuple(self.fills),
            bought=self.bought,
            bought_value=self.bought_value,
            sold=self.sold,
            sold_value=self.sold_value,
            commissions=self.commissions,
            average_cost=self.average_cost,
            realized_pnl=self.realized,
        )


def _entry_confidences(session: Session, keys: set[tuple[str, str]]) -> dict[tuple[str, str], float | None]:
    """``(iteration_id, symbol) -> confidence``: the risk decision's, else the quant decision's, else None."""
    found: dict[tuple[str, str, str], float | None] = {}
    iterations = sorted({k[0] for k in keys})
    for chunk in _chunks(iterations):
        rows = session.execute(
            select(DecisionRow.iteration_id, DecisionRow.symbol, DecisionRow.agent, DecisionRow.confidence).where(
                DecisionRow.iteration_id.in_(chunk), DecisionRow.agent.in_(("risk", "quant"))
            )
        )
        for iteration_id, symbol, agent, confidence in rows:
            found[(iteration_id, symbol, agent)] = confidence
    out: dict[tuple[str, str], float | None] = {}
    for iteration_id, symbol in keys:
        risk = found.get((iteration_id, symbol, "risk"))
        out[(iteration_id, symbol)] = risk if risk is not None else found.get((iteration_id, symbol, "quant"))
    return out


def rebuild_round_trips(session: Session, *, run_id: str | None = None, symbol: str | None = None) -> RoundTripBook:
    """Every trip (closed and open) of the selected runs/symbol, rebuilt from the fills (see the module docstring)."""
    _check_run(session, run_id)
    stmt = (
        select(FillRow, OrderRow.strategy, OrderRow.iteration_id)
        .join(OrderRow, OrderRow.client_order_id == FillRow.client_order_id)
        .order_by(FillRow.run_id, FillRow.symbol, FillRow.filled_at, FillRow.id)
    )
    if run_id is not None:
        stmt = stmt.where(FillRow.run_id == run_id)
    if (sym := _norm_symbol(symbol)) is not None:
        stmt = stmt.where(FillRow.symbol == sym)

    builders: list[_Builder] = []
    unmatched: list[UnmatchedSell] = []
    current: dict[tuple[str, str], _Builder] = {}
    for fill, strategy, order_iteration in session.execute(stmt):
        key = (fill.run_id, fill.symbol)
        trip_fill = TripFill(
            fill.fill_id, fill.client_order_id, fill.side, fill.quantity, fill.price, fill.commission, fill.filled_at
        )
        open_trip = current.get(key)
        if fill.side == "buy":
            if open_trip is None:
                open_trip = _Builder(fill.run_id, fill.symbol, strategy, fill.client_order_id, order_iteration)
                current[key] = open_trip
                builders.append(open_trip)
            open_trip.buy(trip_fill)
            continue
        if fill.side != "sell":
            raise ValueError(f"fill {fill.fill_id}: unknown side {fill.side!r}")
        held = open_trip.held if open_trip is not None else _ZERO
        excess = fill.quantity - held
        if excess > 0:
            unmatched.append(UnmatchedSell(fill.run_id, fill.symbol, fill.fill_id, fill.client_order_id, excess, fill.filled_at))
        if open_trip is None or held == 0:
            continue
        if excess > 0:  # only the held part belongs to the trip, with its share of the commission
            trip_fill = TripFill(
                fill.fill_id, fill.client_order_id, fill.side, held, fill.price,
                fill.commission * held / fill.quantity, fill.filled_at,
            )
        open_trip.sell(trip_fill)
        if open_trip.held == 0:
            del current[key]

    confidences = _entry_confidences(session, {(b.entry_iteration_id, b.symbol) for b in builders})
    trips = [b.freeze(confidences[(b.entry_iteration_id, b.symbol)]) for b in builders]
    trips.sort(key=lambda t: (t.entry_at, t.symbol, t.run_id))
    return RoundTripBook(tuple(trips), tuple(unmatched))


def _closed_in_window(book: RoundTripBook, start: date | None, end: date | None) -> list[RoundTrip]:
    trips = [t for t in book.closed if t.exit_at is not None and _in_window(t.exit_at, start, end)]
    return sorted(trips, key=lambda t: (t.exit_at, t.entry_at, t.symbol))


def round_trips(
    session: Session,
    *,
    run_id: str | None = None,
    symbol: str | None = None,
    start: date | None = None,
    end: date | None = None,
) -> list[ClosedTrade]:
    """Closed round trips (oldest exit first) whose exit date is within ``start``..``end``."""
    book = rebuild_round_trips(session, run_id=run_id, symbol=symbol)
    return [t.to_closed_trade() for t in _closed_in_window(book, start, end)]


# --------------------------------------------------------------------------------------------------- performance


def performance(
    session: Session,
    *,
    run_id: str | None = None,
    symbol: str | None = None,
    start: date | None = None,
    end: date | None = None,
    periods_per_year: float = TRADING_DAYS_PER_YEAR,
    risk_free: float = 0.0,
    var_level: float = 0.95,
) -> dict[str, Any]:
    """Metrics of one run (default: the latest): :func:`core.metrics.compute_metrics` over the run's equity
    snapshots in the window and its closed round trips, plus trade metrics by strategy and by symbol.

    Exposure is the share of snapshots with at least one open position. With ``symbol``, only the trades are
    filtered: the equity curve (and with it return, Sharpe, drawdown, exposure) stays the account's.
    Snapshots sharing a timestamp keep the last one recorded.
    """
    run = _one_run(session, run_id)
    stmt = _window(
        select(EquitySnapshotRow.at, EquitySnapshotRow.equity, EquitySnapshotRow.positions).where(
            EquitySnapshotRow.run_id == run.id
        ),
        EquitySnapshotRow.at,
        start,
        end,
    ).order_by(EquitySnapshotRow.at, EquitySnapshotRow.id)
    rows = session.execute(stmt).all()
    index = pd.DatetimeIndex([at for at, _, _ in rows], tz=UTC) if rows else pd.DatetimeIndex([], tz=UTC)
    equity = pd.Series([float(e) for _, e, _ in rows], index=index, dtype=float)
    exposure = pd.Series([1 if p > 0 else 0 for _, _, p in rows], index=index, dtype=float)
    keep = ~index.duplicated(keep="last")
    equity, exposure = equity[keep], exposure[keep]

    book = rebuild_round_trips(session, run_id=run.id, symbol=symbol)
    trips = _closed_in_window(book, start, end)
    trades = [t.to_closed_trade() for t in trips]
    metrics = compute_metrics(
        equity, trades, periods_per_year=periods_per_year, risk_free=risk_free, var_level=var_level, exposure=exposure
    )
    return {
        "run_id": run.id,
        "kind": run.kind,
        "symbol": _norm_symbol(symbol),
        "window": {"start": start, "end": end},
        "initial_cash": run.initial_cash,
        "first_equity": rows[0][1] if rows else None,
        "last_equity": rows[-1][1] if rows else None,
        "metrics": metrics.as_dict(),
        "by_strategy": {k: v.as_dict() for k, v in metrics_by(trades, "strategy").items()},
        "by_symbol": {k: v.as_dict() for k, v in metrics_by(trades, "symbol").items()},
        "open_trips": [t.summary() for t in book.open],
        "unmatched_sells": [
            {"symbol": u.symbol, "fill_id": u.fill_id, "quantity": u.quantity, "filled_at": u.filled_at}
            for u in book.unmatched
        ],
    }


def calibration(
    session: Session,
    *,
    run_id: str | None = None,
    symbol: str | None = None,
    start: date | None = None,
    end: date | None = None,
    bins: int = 5,
) -> CalibrationReport:
    """Brier score and reliability table of the entry confidences of the closed round trips."""
    return calibration_report(round_trips(session, run_id=run_id, symbol=symbol, start=start, end=end), bins=bins)


# --------------------------------------------------------------------------------------------------- breakers


def breakers(
    session: Session,
    *,
    run_id: str | None = None,
    name: str | None = None,
    start: date | None = None,
    end: date | None = None,
) -> dict[str, Any]:
    """Circuit breakers: ``current`` (persisted ``breaker:*`` states, plus breakers known only from events, whose
    state is their last event's ``to_state``) and ``events`` (the trip/recovery history, oldest first).

    ``trips`` counts the events into ``open`` within the filters. ``daemon_state`` is not per run: the current
    states are the database's, whatever ``run_id``.
    """
    _check_run(session, run_id)
    stmt = _window(select(BreakerEventRow), BreakerEventRow.at, start, end).order_by(BreakerEventRow.at, BreakerEventRow.id)
    if run_id is not None:
        stmt = stmt.where(BreakerEventRow.run_id == run_id)
    if name is not None:
        stmt = stmt.where(BreakerEventRow.name == name)
    events = [
        {
            "at": e.at,
            "name": e.name,
            "from_state": e.from_state,
            "to_state": e.to_state,
            "reason": e.reason,
            "run_id": e.run_id,
        }
        for e in session.scalars(stmt)
    ]
    current: dict[str, dict[str, Any]] = {}
    prefix = BREAKER_PREFIX
    if run_id is not None and session.scalar(select(DaemonStateRow.key).where(DaemonStateRow.key.startswith(f"{run_id}:{BREAKER_PREFIX}")).limit(1)):
        prefix = f"{run_id}:{BREAKER_PREFIX}"  # a replay's or backtest's own breakers
    state_rows = session.scalars(select(DaemonStateRow).where(DaemonStateRow.key.startswith(prefix)).order_by(DaemonStateRow.key))
    for row in state_rows:
        breaker = row.key[len(prefix) :]
        if name is not None and breaker != name:
            continue
        value = dict(row.value)
        current[breaker] = {
            "name": breaker,
            "state": str(value.get("state", "unknown")),
            "reason": value.get("reason") or "",
            "changed_at": value.get("changed_at"),
            "updated_at": row.updated_at,
            "source": "daemon_state",
            "snapshot": value,
        }
    for e in events:
        if e["name"] not in current:
            current[e["name"]] = {
                "name": e["name"], "state": "unknown", "reason": "", "changed_at": None,
                "updated_at": None, "source": "events", "snapshot": {},
            }
        entry = current[e["name"]]
        if entry["source"] == "events":  # no persisted state: the last event tells the state
            entry.update(state=e["to_state"], reason=e["reason"], changed_at=e["at"])
    for breaker, entry in current.items():
        trips = [e for e in events if e["name"] == breaker and e["to_state"] == "open"]
        entry["trips"] = len(trips)
        entry["last_trip_at"] = trips[-1]["at"] if trips else None
    return {"current": [current[k] for k in sorted(current)], "events": events}


# --------------------------------------------------------------------------------------------------- risk


def risk_view(
    session: Session,
    *,
    run_id: str | None = None,
    symbol: str | None = None,
    start: date | None = None,
    end: date | None = None,
    sector_map: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The risk picture of one run (default: the latest).

    * ``state``: ``daemon_state["risk:state"]`` (``state`` ``"unknown"`` when absent); ``last_decision_state`` is
      the trading state the Risk agent recorded with its latest decision of the run, for comparison.
    * ``exposure``: the run's latest positions grouped by sector bucket (``sector_map``, default
      ``config/sectors.json``): market value and share of the run's latest equity.
    * ``refusals``: risk decisions ``denied:<rule>`` of the run (window/symbol filters), per rule: count, symbols,
      latest date and the reason of the latest one as example; most frequent first.
    """
    run = _one_run(session, run_id)
    sym = _norm_symbol(symbol)
    sectors = sector_map if sector_map is not None else load_sector_map()

    # replays and backtests keep their state under "<run id>:risk:state"; the daemon's is the plain key
    row = (session.get(DaemonStateRow, f"{run_id}:{RISK_STATE_KEY}") if run_id is not None else None) or session.get(
        DaemonStateRow, RISK_STATE_KEY
    )
    if row is None:
        state: dict[str, Any] = {"state": "unknown", "reason": f"no {RISK_STATE_KEY!r} in daemon_state", "updated_at": None}
    else:
        value = dict(row.value)
        state = {**value, "state": str(value.get("state", "unknown")), "reason": value.get("reason") or "", "updated_at": row.updated_at}
    last = session.scalars(
        select(DecisionRow)
        .where(DecisionRow.run_id == run.id, DecisionRow.agent == "risk")
        .order_by(DecisionRow.as_of.desc(), DecisionRow.id.desc())
        .limit(1)
    ).first()
    last_decision_state = (
        {"state": last.inputs.get("state"), "reason": last.inputs.get("state_reason"), "as_of": last.as_of}
        if last is not None and "state" in last.inputs
        else None
    )

    snapshot = session.scalars(
        select(EquitySnapshotRow)
        .where(EquitySnapshotRow.run_id == run.id)
        .order_by(EquitySnapshotRow.at.desc(), EquitySnapshotRow.id.desc())
        .limit(1)
    ).first()
    equity = snapshot.equity if snapshot is not None else None
    pos_stmt = select(PositionRow).where(PositionRow.run_id == run.id).order_by(PositionRow.symbol)
    if sym is not None:
        pos_stmt = pos_stmt.where(PositionRow.symbol == sym)
    buckets: dict[str, dict[str, Any]] = {}
    gross = _ZERO
    for p in session.scalars(pos_stmt):
        bucket = sector_of(p.symbol, sectors)
        entry = buckets.setdefault(bucket, {"sector": bucket, "symbols": [], "value": _ZERO})
        entry["symbols"].append(p.symbol)
        entry["value"] += p.market_value
        gross += p.market_value
    exposure = []
    for entry in sorted(buckets.values(), key=lambda b: (-b["value"], b["sector"])):
        entry["share"] = float(entry["value"] / equity) if equity else None
        exposure.append(entry)

    den_stmt = _window(
        select(DecisionRow).where(
            DecisionRow.run_id == run.id, DecisionRow.agent == "risk", DecisionRow.action.startswith(DENIED_PREFIX)
        ),
        DecisionRow.as_of,
        start,
        end,
    ).order_by(DecisionRow.as_of, DecisionRow.id)
    if sym is not None:
        den_stmt = den_stmt.where(DecisionRow.symbol == sym)
    groups: dict[str, dict[str, Any]] = {}
    for d in session.scalars(den_stmt):
        rule = d.action[len(DENIED_PREFIX) :]
        g = groups.setdefault(rule, {"rule": rule, "count": 0, "symbols": set()})
        g["count"] += 1
        g["symbols"].add(d.symbol)
        g.update(latest=d.as_of, example_symbol=d.symbol, example_reason=d.reason)  # rows come oldest first
    refusals = [
        {**g, "symbols": sorted(g["symbols"])} for g in sorted(groups.values(), key=lambda g: (-g["count"], g["rule"]))
    ]
    return {
        "run_id": run.id,
        "state": state,
        "last_decision_state": last_decision_state,
        "equity": equity,
        "equity_at": snapshot.at if snapshot is not None else None,
        "gross_exposure": gross,
        "gross_share": float(gross / equity) if equity else None,
        "exposure": exposure,
        "refusals": refusals,
    }


# --------------------------------------------------------------------------------------------------- reconcile


def reconcile_view(
    session: Session,
    *,
    run_id: str | None = None,
    symbol: str | None = None,
    start: date | None = None,
    end: date | None = None,
) -> list[dict[str, Any]]:
    """Reconciliation events (database vs broker discrepancies and what was done), oldest first."""
    _check_run(session, run_id)
    stmt = _window(select(ReconciliationRow), ReconciliationRow.at, start, end).order_by(ReconciliationRow.at, ReconciliationRow.id)
    if run_id is not None:
        stmt = stmt.where(ReconciliationRow.run_id == run_id)
    if (sym := _norm_symbol(symbol)) is not None:
        stmt = stmt.where(ReconciliationRow.symbol == sym)
    return [
        {
            "at": r.at,
            "kind": r.kind,
            "symbol": r.symbol,
            "resolution": r.resolution,
            "details": dict(r.details),
            "run_id": r.run_id,
        }
        for r in session.scalars(stmt)
    ]


# --------------------------------------------------------------------------------------------------- why


def _pipeline_rank(agent: str) -> int:
    return PIPELINE_ORDER.index(agent) if agent in PIPELINE_ORDER else len(PIPELINE_ORDER)


def why(session: Session, symbol: str, day: date, *, run_id: str | None = None) -> dict[str, Any]:
    """Everything behind one symbol on one session date (the UTC date of ``decisions.as_of``, the session close).

    Without ``run_id``, the latest run that decided about the symbol that day. Returns ``decisions`` (pipeline
    order: data, selector, strategy, quant, risk, execution), ``llm_calls`` of those iterations, ``orders`` submitted
    in them for the symbol, their ``fills`` (any iteration), and ``outcome``: ``status`` ``"closed"`` (the round trip
    the entry opened, with exit date/price/pnl), ``"open position"``, ``"no order"`` (with the reason of the last
    stage that stopped it), or for orders that opened no trip ``"added to position"``, ``"exit"`` or
    ``"not filled"``. ``LookupError`` when nothing was decided about the symbol that day.
    """
    sym = _norm_symbol(symbol)
    if not sym:
        raise ValueError("why() needs a symbol")
    _check_run(session, run_id)
    lo, hi = _day_start(day), _day_start(day + timedelta(days=1))
    base = select(DecisionRow).where(DecisionRow.symbol == sym, DecisionRow.as_of >= lo, DecisionRow.as_of < hi)
    if run_id is None:
        run_id = session.scalar(
            select(DecisionRow.run_id)
            .join(Run, Run.id == DecisionRow.run_id)
            .where(DecisionRow.symbol == sym, DecisionRow.as_of >= lo, DecisionRow.as_of < hi)
            .order_by(Run.started_at.desc(), Run.id.desc())
            .limit(1)
        )
        if run_id is None:
            raise LookupError(f"no decision about {sym} on {day.isoformat()} in any run")
    rows = sorted(
        session.scalars(base.where(DecisionRow.run_id == run_id)),
        key=lambda d: (d.as_of, d.iteration_id, _pipeline_rank(d.agent), d.id),
    )
    if not rows:
        raise LookupError(f"no decision about {sym} on {day.isoformat()} in run {run_id}")
    iterations = list(dict.fromkeys(d.iteration_id for d in rows))
    decisions = [
        {
            "as_of": d.as_of,
            "iteration_id": d.iteration_id,
            "agent": d.agent,
            "action": d.action,
            "strategy": d.strategy,
            "confidence": d.confidence,
            "reason": d.reason,
            "inputs": dict(d.inputs),
        }
        for d in rows
    ]
    llm_calls = []
    for c in session.scalars(select(LLMCallRow).where(LLMCallRow.iteration_id.in_(iterations)).order_by(LLMCallRow.started_at, LLMCallRow.id)):
        symbols = list(c.symbols.get("symbols", [])) if isinstance(c.symbols, Mapping) else []
        llm_calls.append(
            {
                "started_at": c.started_at,
                "iteration_id": c.iteration_id,
                "purpose": c.purpose,
                "provider": c.provider,
                "model": c.model,
                "prompt_version": c.prompt_version,
                "outcome": c.outcome,
                "input_tokens": c.input_tokens,
                "output_tokens": c.output_tokens,
                "cost_usd": c.cost_usd,
                "latency_ms": c.latency_ms,
                "retries": c.retries,
                "symbols": symbols,
                "about_symbol": sym in symbols,
                "validation_errors": list(c.validation_errors.get("errors", [])) if isinstance(c.validation_errors, Mapping) else [],
                "error": c.error,
            }
        )
    order_rows = session.scalars(
        select(OrderRow)
        .where(OrderRow.run_id == run_id, OrderRow.symbol == sym, OrderRow.iteration_id.in_(iterations))
        .order_by(OrderRow.submitted_at, OrderRow.id)
    ).all()
    orders = [
        {
            "submitted_at": o.submitted_at,
            "client_order_id": o.client_order_id,
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
            "iteration_id": o.iteration_id,
        }
        for o in order_rows
    ]
    order_ids = [o.client_order_id for o in order_rows]
    fills = [
        {
            "filled_at": f.filled_at,
            "client_order_id": f.client_order_id,
            "side": f.side,
            "quantity": f.quantity,
            "price": f.price,
            "commission": f.commission,
            "fill_id": f.fill_id,
            "iteration_id": f.iteration_id,
        }
        for f in session.scalars(
            select(FillRow).where(FillRow.client_order_id.in_(order_ids)).order_by(FillRow.filled_at, FillRow.id)
        )
    ] if order_ids else []
    return {
        "symbol": sym,
        "date": day,
        "run_id": run_id,
        "iterations": iterations,
        "decisions": decisions,
        "llm_calls": llm_calls,
        "orders": orders,
        "fills": fills,
        "outcome": _outcome(session, run_id, sym, order_rows, decisions),
    }


def _outcome(
    session: Session, run_id: str, symbol: str, orders: Sequence[OrderRow], decisions: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    if not orders:
        stoppers = [d for d in decisions if not (d["agent"] == "execution" and d["action"] == "none")]
        last = stoppers[-1] if stoppers else decisions[-1]
        return {"status": "no order", "stage": last["agent"], "action": last["action"], "reason": last["reason"]}
    book = rebuild_round_trips(session, run_id=run_id, symbol=symbol)
    ids = {o.client_order_id for o in orders}
    for trip in book.trips:
        if trip.entry_order_id in ids:
            return trip.summary()
    for trip in book.trips:
        touched = [f for f in trip.fills if f.client_order_id in ids]
        if touched:
            status = "added to position" if any(f.side == "buy" for f in touched) else "exit"
            return {**trip.summary(), "status": status, "trip_status": "closed" if trip.closed else "open position"}
    first = orders[0]
    return {
        "status": "not filled",
        "client_order_id": first.client_order_id,
        "order_status": first.status,
        "reason": first.reason,
    }


# ------------------------------------------------------------------------------------------ LLM usage, shadow ledger


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo), 1)


def _run_filter(stmt: Select[Any], model: Any, column: Any, run_id: str | None, start: date | None, end: date | None,
                symbol: str | None) -> Select[Any]:  # fmt: skip
    symbol = _norm_symbol(symbol)
    if symbol is not None and hasattr(model, "symbol"):
        stmt = stmt.where(model.symbol == symbol)
    if run_id is not None:
        stmt = stmt.where(model.run_id == run_id)
    return _window(stmt, column, start, end)


def llm_usage(
    session: Session, *, run_id: str | None = None, start: date | None = None, end: date | None = None, symbol: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """LLM calls by purpose/provider/model (count, outcomes, tokens, cost, latency percentiles) and the selector's
    abstentions by reason (``query_trades.py llm`` and the dashboard)."""
    stmt = _run_filter(select(LLMCallRow), LLMCallRow, LLMCallRow.started_at, run_id, start, end, symbol)
    groups: dict[tuple[str, str, str], list[LLMCallRow]] = {}
    for call in session.scalars(stmt.order_by(LLMCallRow.started_at)):
        groups.setdefault((call.purpose, call.provider, call.model), []).append(call)
    calls: list[dict[str, Any]] = []
    for (purpose, provider, model), rows in sorted(groups.items()):
        latencies = [r.latency_ms for r in rows if r.outcome != "budget_exceeded"]
        costs = [r.cost_usd for r in rows if r.cost_usd is not None]
        outcomes: dict[str, int] = {}
        for r in rows:
            outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
        calls.append(
            {
                "purpose": purpose,
                "provider": provider,
                "model": model,
                "calls": len(rows),
                "outcomes": ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())),
                "retries": sum(r.retries for r in rows),
                "input_tokens": sum(r.input_tokens for r in rows),
                "output_tokens": sum(r.output_tokens for r in rows),
                "cost_usd": sum(costs, Decimal("0")),
                "unpriced_calls": sum(1 for r in rows if r.cost_usd is None and r.outcome != "budget_exceeded"),
                "latency_p50_ms": percentile(latencies, 0.5),
                "latency_p95_ms": percentile(latencies, 0.95),
                "latency_max_ms": round(max(latencies), 1) if latencies else None,
            }
        )
    abst = _run_filter(select(DecisionRow), DecisionRow, DecisionRow.as_of, run_id, start, end, symbol).where(
        DecisionRow.agent == "selector", DecisionRow.action == "abstain"
    )
    reasons: dict[str, int] = {}
    for d in session.scalars(abst):
        reasons[d.reason] = reasons.get(d.reason, 0) + 1
    abstentions = [{"reason": r, "count": n} for r, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))]
    return {"calls": calls, "abstentions": abstentions}


def shadow_stats(
    session: Session,
    *,
    run_id: str | None = None,
    start: date | None = None,
    end: date | None = None,
    symbol: str | None = None,
    horizon: int = 5,
) -> list[dict[str, Any]]:
    """Per strategy of the shadow ledger: how often it would have signalled, and the average forward return
    ``horizon`` bars after its BUY/SELL signals, beside the same figures for the strategies the selector actually
    chose (``selector``, listed first). ``query_trades.py shadow`` and the dashboard."""
    stmt = _run_filter(select(ShadowSignalRow), ShadowSignalRow, ShadowSignalRow.as_of, run_id, start, end, symbol).order_by(
        ShadowSignalRow.run_id, ShadowSignalRow.symbol, ShadowSignalRow.as_of
    )
    series: dict[tuple[str, str], list[ShadowSignalRow]] = {}
    for row in session.scalars(stmt):
        series.setdefault((row.run_id, row.symbol), []).append(row)
    stats: dict[str, dict[str, Any]] = {}

    def note(name: str, action: str, forward: float | None) -> None:
        st = stats.setdefault(name, {"strategy": name, "evaluated": 0, "buy": 0, "sell": 0, "hold": 0, "_buy_fwd": [], "_sell_fwd": []})
        st[action.lower()] += 1
        if forward is not None and action != "HOLD":
            st[f"_{action.lower()}_fwd"].append(forward)

    for rows in series.values():
        for i, row in enumerate(rows):
            forward = rows[i + horizon].close / row.close - 1.0 if i + horizon < len(rows) and row.close else None
            for name, (action, _strength) in row.signals.items():
                note(name, action, forward)
                stats[name]["evaluated"] += 1
            chosen = row.signals.get(row.selected)
            if chosen is not None:
                note("selector", chosen[0], forward)
                stats["selector"]["evaluated"] += 1
    out: list[dict[str, Any]] = []
    for name, st in sorted(stats.items(), key=lambda kv: (kv[0] != "selector", kv[0])):
        buy, sell = st.pop("_buy_fwd"), st.pop("_sell_fwd")
        st["buy_fwd_return_avg"] = round(sum(buy) / len(buy), 5) if buy else None
        st["buy_hit_rate"] = round(sum(1 for x in buy if x > 0) / len(buy), 3) if buy else None
        st["sell_fwd_return_avg"] = round(sum(sell) / len(sell), 5) if sell else None
        st["sell_hit_rate"] = round(sum(1 for x in sell if x < 0) / len(sell), 3) if sell else None
        st["horizon_bars"] = horizon
        out.append(st)
    return out

"""Round trips rebuilt from the fills of the ledger.

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
with entry cost = ``sum(buy notional)`` (commissions excluded, as in :mod:`core.analytics.metrics`). While a trip is still
open, :attr:`RoundTrip.realized_pnl` holds the average-cost P&L of the exits so far, net of the commissions paid so
far. Date filters on closed trades select by the **exit** date (a trade belongs to the period in which it closed).

Positions live per run (a replay starts flat), so each run is rebuilt on its own. A sell larger than the position
rebuilt for its run (e.g. shares carried over from an earlier daemon run) cannot belong to a trip of that run: the
excess is not invented into a trade, it is listed in :attr:`RoundTripBook.unmatched` (and reported by
:func:`~core.analytics.reporting.performance_report.performance`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.kernel.domain import to_price
from core.analytics.metrics import ClosedTrade
from core.persistence.models import DecisionRow, FillRow, OrderRow
from core.analytics.reporting.filters import _ZERO, _check_run, _chunks, _in_window, _norm_symbol


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
    # plain columns, not FillRow entities: a backtest reads thousands of fills back and ORM identity-mapped objects
    # cost several times the row itself; the values (and their types) are the same
    stmt = (
        select(
            FillRow.run_id,
            FillRow.symbol,
            FillRow.fill_id,
            FillRow.client_order_id,
            FillRow.side,
            FillRow.quantity,
            FillRow.price,
            FillRow.commission,
            FillRow.filled_at,
            OrderRow.strategy,
            OrderRow.iteration_id,
        )
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
    for fill in session.execute(stmt):
        strategy, order_iteration = fill.strategy, fill.iteration_id
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
            unmatched.append(
                UnmatchedSell(fill.run_id, fill.symbol, fill.fill_id, fill.client_order_id, excess, fill.filled_at)
            )
        if open_trip is None or held == 0:
            continue
        if excess > 0:  # only the held part belongs to the trip, with its share of the commission
            trip_fill = TripFill(
                fill.fill_id,
                fill.client_order_id,
                fill.side,
                held,
                fill.price,
                fill.commission * held / fill.quantity,
                fill.filled_at,
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

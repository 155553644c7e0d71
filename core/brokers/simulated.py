"""A simulated, long-only cash broker that fills orders on the iteration's daily bars.

The daemon, the paper runner, the replay demo and the backtester all talk to this class through the
:class:`core.brokers.base.Broker` protocol. It never reads a clock: time comes from ``batch.as_of`` (``sync``) and
from the ``now`` argument (``submit``, ``cancel``, ``replace_stop``); fills are stamped with the timestamp of the bar
they happened on.

Conventions (each one is exercised by ``tests/brokers``)
--------------------------------------------------------

Timing
    * ``fill_model="next-open"`` (default): an order may only fill on bars strictly after its *anchor*, the later of
      the symbol's last visible bar at submission and the submission date (``now`` truncated to midnight UTC). With
      daily bars that is the next session; its first chance is that session's open. A fill found by a later ``sync``
      is stamped with its bar's timestamp (session date, midnight UTC), i.e. after ``submitted_at``.
    * ``fill_model="same-close"``: at submission the order is tried once against the close of the symbol's last
      visible bar, as if that close were an opening price (a market order fills there; a limit or stop only if the
      close is through its price). Whatever is not filled keeps working from the next bar as above. Same-close fills
      are stamped ``now``. The close used is the symbol's latest known one, even if the symbol was missing from the
      most recent batch.
    * ``sync`` processes, for every symbol in the batch, every visible bar after the last one it processed, in time
      order across symbols, so missed iterations skip no bar. Symbols missing from a batch keep their orders working.
      A symbol seen for the first time has no orders (submission needs a price), so its history is not replayed.
    * Orders are good-till-cancelled; nothing expires.

Execution on one bar (two phases, sells before buys within each phase, then submission order)
    1. *Open*: market orders (and triggered stops) fill at the open; a limit whose price the open is already
       through fills at the open (never worse than the limit); a stop the open has gapped through fills at the open.
    2. *Intrabar*: a limit whose price lies within the bar's range fills at the limit (a touch is enough);
       a stop whose price lies within the range triggers and fills at the stop price. Stops are processed before
       limits, so when one bar touches both a bracket's stop-loss and its take-profit the stop wins (conservative).
    Slippage (:mod:`core.brokers.costs`) applies to every market-style price (market orders, the open, a triggered
    stop); a limit-style fill is never worse than its limit price (no slippage when filling at the limit).
    Bar prices (floats) become ``Decimal`` exactly (:func:`core.domain.data_price`): with zero slippage a market order
    fills at the data's own open, however many decimals it has. Prices the broker computes (slippage-adjusted fills,
    stop and limit levels of intents) are on the 0.0001 grid (:func:`core.domain.to_price`).

Order types (from :class:`core.domain.OrderIntent`)
    * ``MARKET``; ``LIMIT`` (needs ``limit_price``); ``STOP`` (needs ``stop_price``). A non-bracket intent's
      ``stop_loss``/``take_profit`` are ignored: a ``MARKET`` intent carrying them is a plain market order.
    * ``BRACKET`` (buy only; needs ``stop_loss < take_profit``): the entry is a limit order when ``limit_price`` is
      given, else a market order (the parent ``Order`` shows the entry limit as ``limit_price`` and the
      stop-loss as ``stop_price``; its take-profit lives on the ``-tp`` leg). When the entry fills, two children
      are created: ``"<id>-sl"`` (sell STOP at ``stop_loss``) and ``"<id>-tp"`` (sell LIMIT at ``take_profit``)
      for the filled quantity (grown by later partial entry fills). They are active from the bar *after* the entry
      fill and are one-cancels-other: the first fill of either leg cancels the other leg and any unfilled remainder
      of the entry. Cancelling a working bracket entry cancels its children too (the already-filled shares then have
      no protection); cancelling a filled entry raises, so cancel the legs by their own ids. Children are always
      capped at the shares held: when the position shrinks, a leg's quantity shrinks with it, and a leg with nothing
      left to protect is cancelled. ``replace_stop`` moves a stop in place (see its docstring).

Cash and positions (long-only cash account)
    * At submission a buy is REJECTED (``Order.reason`` says why) when its estimated cost exceeds the cash not already
      reserved by other working buys. Estimate: quantity × (last close + slippage) + full commission; a limit buy is
      estimated at its limit price; a buy stop at max(stop, last close) + slippage.
    * At fill time the cash is checked again: the fill is **reduced to the largest affordable quantity** and the
      unaffordable remainder is terminated (REJECTED when nothing was filled yet, else CANCELED), with a reason.
    * A sell is REJECTED at submission when it exceeds the shares held minus the shares of other working plain sells
      (bracket legs do not count: they are capped at fill time instead). At fill time every sell is capped at the
      shares held and the remainder is terminated as above: the broker never goes short.
    * Partial fills: with ``max_volume_share`` set, all of this broker's fills on one symbol and bar together take at
      most floor(volume × share) shares; the rest of an order stays working (PARTIALLY_FILLED) for later bars.
      A triggered stop that could not fill completely keeps filling at later opens.

Money
    * Fill prices are quantised to 0.0001; commissions to the cent. Cash moves by exactly ``quantity × fill price``
      plus or minus the commission (so cash is exact and can carry four decimals).
    * Commissions price whole orders: a partial fill is charged the increase of the order's cumulative commission
      (so a per-order minimum is charged once).
    * Positions use **average cost**. A position's cost basis is the sum of its buy notionals (commissions are *not*
      capitalised); selling ``q`` of ``Q`` shares removes ``basis × q / Q`` (rounded to 0.0001; all of it for a full
      exit) and realises ``proceeds − removed basis``. ``Position.average_price`` is basis / quantity rounded to
      0.0001 (display); the exact basis drives the P&L.
    * Marks: ``Position.last_price`` is the latest visible close seen by ``sync``.
    * Identities (exact ``Decimal`` equalities, tested with hypothesis)::

          equity == cash + Σ quantity × last_price
          equity − initial_cash == realized_pnl + unrealized_pnl − total_commissions

      where ``realized_pnl`` is gross of commissions and includes closed positions, ``unrealized_pnl`` is
      Σ (quantity × last_price − cost basis) and ``total_commissions`` is every commission ever charged.

Reporting
    ``sync`` returns everything that happened at the broker since the previous ``sync``: fills (including same-close
    fills made inside ``submit``) and every order that changed (submitted, rejected, filled, cancelled, modified or
    created as a bracket child), each once with its latest state.

Persistence
    ``snapshot()`` returns the whole state as plain JSON-compatible data (decimals as strings, times as ISO 8601);
    ``restore(state)`` on a broker built with the same costs and fill rules rebuilds it exactly, including working
    orders, bracket legs, volume already used on the latest bar and the not-yet-reported fills.

Identifiers are deterministic (no randomness): ``broker_order_id`` is ``"sim-<n>"``, a fill id is
``"<client_order_id>-<k>"`` for the order's k-th fill.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from types import MappingProxyType
from typing import Any, Literal, Mapping

import numpy as np
import pandas as pd

from core.brokers.base import AccountState, BrokerError, SyncResult
from core.brokers.costs import (
    CommissionModel,
    SlippageModel,
    ZeroCommission,
    ZeroSlippage,
)
from core.domain import (
    PRICE_QUANTUM,
    BarsBatch,
    Fill,
    Order,
    OrderIntent,
    OrderStatus,
    OrderType,
    Position,
    Side,
    data_price,
    ensure_utc,
    session_timestamp,
    stamp_of,
    timestamp_at,
    to_price,
)

__all__ = ["FILL_MODELS", "FillModel", "SNAPSHOT_VERSION", "SimulatedBroker"]

FillModel = Literal["next-open", "same-close"]
FILL_MODELS: tuple[str, ...] = ("next-open", "same-close")
SNAPSHOT_VERSION = 1

_ZERO = Decimal("0")
_WORKING = frozenset({OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED})
_OPEN = "open"
_INTRABAR = "intrabar"
_ENTRY = "entry"
_STOP_LOSS = "stop_loss"
_TAKE_PROFIT = "take_profit"


@dataclass(slots=True)
class _Record:
    """The broker's private bookkeeping for one order (the public view is ``order``)."""

    order: Order
    seq: int
    kind: OrderType  # execution style: MARKET, LIMIT or STOP (a bracket parent's entry style)
    anchor: pd.Timestamp  # the order may only fill on bars strictly after this timestamp
    limit: Decimal | None = None
    stop: Decimal | None = None
    triggered: bool = False  # a stop whose price was reached: the remainder executes as a market order
    role: str = ""  # "", "entry" (bracket parent), "stop_loss", "take_profit"
    parent: str | None = None
    children: tuple[str, str] | None = None
    bracket_stop: Decimal | None = None
    bracket_target: Decimal | None = None
    gross: Decimal = _ZERO  # Σ quantity × price over this order's fills
    commission: Decimal = _ZERO  # cumulative commission charged to this order
    fills: int = 0

    @property
    def working(self) -> bool:
        return self.order.status in _WORKING

    @property
    def remaining(self) -> int:
        return self.order.quantity - self.order.filled_quantity


@dataclass(slots=True)
class _Holding:
    quantity: int
    basis: Decimal
    opened_at: datetime
    realized: Decimal = _ZERO


@dataclass(frozen=True, slots=True)
class _Spec:
    """An intent translated into execution terms, or the reason it cannot be accepted."""

    kind: OrderType
    limit: Decimal | None = None
    stop: Decimal | None = None
    bracket_stop: Decimal | None = None
    bracket_target: Decimal | None = None
    refusal: str | None = None


class _Mark:
    """The latest visible bar of a symbol: its session, close and volume. The close is kept as the bar's float and
    turned into a price-grid ``Decimal`` on first use (most marks are replaced the next session unread)."""

    __slots__ = ("ts", "_price", "_close", "volume")

    def __init__(self, ts: pd.Timestamp, close: Decimal | float, volume: float) -> None:
        self.ts = ts
        self.volume = volume
        if isinstance(close, Decimal):
            self._price, self._close = float(close), close
        else:
            self._price, self._close = close, None

    @property
    def close(self) -> Decimal:
        close = self._close
        if close is None:
            close = self._close = data_price(self._price)
        return close


@dataclass(frozen=True, slots=True)
class _Bar:
    ts: pd.Timestamp
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: float


def _finite_positive(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def _is_utc_index(index: pd.Index) -> bool:
    tz = getattr(index, "tz", None)
    return tz is not None and _is_utc_tz(tz)


@functools.lru_cache(maxsize=64)
def _is_utc_tz(tz: Any) -> bool:
    return all(pd.Timestamp(day, tz=tz).utcoffset() == timedelta(0) for day in ("2024-01-15", "2024-07-15"))


def _float_or_none(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _from_iso(value: str | None) -> datetime | None:
    return None if value is None else ensure_utc(datetime.fromisoformat(value))


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _undec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


class SimulatedBroker:
    """In-process broker implementing :class:`core.brokers.base.Broker`; see the module docstring for the rules."""

    def __init__(
        self,
        initial_cash: Decimal,
        *,
        commission: CommissionModel | None = None,
        slippage: SlippageModel | None = None,
        fill_model: FillModel = "next-open",
        max_volume_share: float | None = None,
        name: str = "simulated",
        started_at: datetime | None = None,
    ) -> None:
        if isinstance(initial_cash, bool) or not isinstance(initial_cash, (Decimal, int)):
            raise TypeError(f"initial_cash must be a Decimal, got {type(initial_cash).__name__}")
        if not Decimal(initial_cash).is_finite() or initial_cash < 0:
            raise ValueError(f"initial_cash must be a finite, non-negative amount, got {initial_cash!r}")
        if fill_model not in FILL_MODELS:
            raise ValueError(f"fill_model must be one of {FILL_MODELS}, got {fill_model!r}")
        if max_volume_share is not None and not (math.isfinite(max_volume_share) and 0 < max_volume_share <= 1):
            raise ValueError(f"max_volume_share must be within (0, 1] or None, got {max_volume_share!r}")
        commission = ZeroCommission() if commission is None else commission
        slippage = ZeroSlippage() if slippage is None else slippage
        if not isinstance(commission, CommissionModel):
            raise TypeError(f"commission must implement CommissionModel, got {type(commission).__name__}")
        if not isinstance(slippage, SlippageModel):
            raise TypeError(f"slippage must implement SlippageModel, got {type(slippage).__name__}")

        self.name = name
        self._commission = commission
        self._slippage = slippage
        self._fill_model: str = fill_model
        self._max_volume_share = max_volume_share
        self._share = None if max_volume_share is None else Decimal(repr(float(max_volume_share)))

        self._initial_cash = Decimal(initial_cash)
        self._cash = Decimal(initial_cash)
        self._total_commissions = _ZERO
        self._realized_total = _ZERO
        self._as_of: datetime | None = None if started_at is None else ensure_utc(started_at, "started_at")
        self._seq = 0
        self._records: dict[str, _Record] = {}
        self._open: dict[str, None] = {}  # working client order ids, insertion-ordered
        self._holdings: dict[str, _Holding] = {}
        self._cursors: dict[str, pd.Timestamp] = {}  # last processed bar per symbol
        self._marks: dict[str, _Mark] = {}  # latest visible bar per symbol
        self._checked_frames: dict[str, pd.DataFrame] = {}  # the frame whose index sync() last validated, per symbol
        self._stamps: dict[str, tuple[pd.DataFrame, np.ndarray, str, Any]] = {}  # frame, index.asi8, unit, tz
        self._used: dict[str, tuple[pd.Timestamp, int]] = {}  # volume already taken on a symbol's latest bar
        self._fills: list[Fill] = []
        self._reported_fills = 0
        self._changed: dict[str, None] = {}
        self._version = 0  # bumped by every method that may change the account (see account())
        self._account: tuple[int, AccountState] | None = None

    # ------------------------------------------------------------------ Broker protocol

    async def sync(self, batch: BarsBatch) -> SyncResult:
        """Fill working orders on every new visible bar of the batch, mark positions, report what changed."""
        self._version += 1
        checked = self._checked_frames
        for symbol, bars in batch.bars.items():  # validate everything before changing any state
            if checked.get(symbol) is bars.frame:
                continue  # this frame object was checked before (frames are immutable)
            index = bars.frame.index
            if not isinstance(index, pd.DatetimeIndex) or not _is_utc_index(index):
                raise ValueError(f"{symbol}: bars need a tz-aware UTC DatetimeIndex, got {index.dtype}")
        for symbol, bars in batch.bars.items():
            checked[symbol] = bars.frame
        self._advance_clock(batch.as_of)
        notes: list[str] = []
        with_orders = {self._records[cid].order.symbol for cid in self._open}
        events: dict[pd.Timestamp, dict[str, _Bar]] = {}
        for symbol in sorted(batch.bars):
            bars = batch.bars[symbol]
            frame = bars.frame
            end = min(bars.end, len(frame))
            if end <= 0:
                notes.append(f"{symbol}: no visible bars")
                continue
            index = frame.index
            stamps = self._stamps.get(symbol)
            if stamps is None or stamps[0] is not frame:
                stamps = self._stamps[symbol] = (frame, index.asi8, index.unit, index.tz)
            last_ts = stamp_of(int(stamps[1][end - 1]), stamps[2], stamps[3])
            cursor = self._cursors.get(symbol)
            if cursor is not None and last_ts < cursor:
                notes.append(f"{symbol}: batch ends at {last_ts.date()}, before the processed {cursor.date()}")
            if cursor is not None and symbol in with_orders and last_ts > cursor:
                start = int(index.searchsorted(cursor, side="right"))
                self._collect_bars(symbol, frame, start, end, events, notes, bars.arrays)
            self._cursors[symbol] = last_ts if cursor is None else max(cursor, last_ts)
            self._update_mark(symbol, frame, end, notes, bars.arrays, last_ts)

        for ts in sorted(events):
            self._process_bars(ts, events[ts])

        fills = tuple(self._fills[self._reported_fills :])
        self._reported_fills = len(self._fills)
        orders = tuple(self._records[cid].order for cid in self._changed)
        self._changed.clear()
        return SyncResult(fills=fills, orders=orders, notes=tuple(notes))

    async def submit(self, intent: OrderIntent, client_order_id: str, now: datetime) -> Order:
        """Accept (SUBMITTED), or refuse with a reason (REJECTED), one order. Idempotent per ``client_order_id``."""
        self._version += 1
        ensure_utc(now, "now")
        if not client_order_id:
            raise BrokerError("client_order_id must be a non-empty string")
        existing = self._records.get(client_order_id)
        if existing is not None:
            return existing.order
        self._advance_clock(now)
        self._seq += 1
        spec = self._parse(intent, client_order_id)
        mark = self._marks.get(intent.symbol)
        anchor = pd.Timestamp(now).normalize()
        if mark is not None and mark.ts > anchor:
            anchor = mark.ts
        order = Order(
            client_order_id=client_order_id,
            symbol=intent.symbol,
            side=intent.side,
            quantity=intent.quantity,
            order_type=intent.order_type,
            status=OrderStatus.NEW,
            submitted_at=now,
            strategy=intent.strategy,
            reason=intent.reason,
            broker_order_id=f"sim-{self._seq}",
            limit_price=None if spec.limit is None else float(spec.limit),
            stop_price=_float_or_none(spec.stop if spec.bracket_stop is None else spec.bracket_stop),
        )
        record = _Record(
            order=order,
            seq=self._seq,
            kind=spec.kind,
            anchor=anchor,
            limit=spec.limit,
            stop=spec.stop,
            role=_ENTRY if intent.order_type is OrderType.BRACKET else "",
            bracket_stop=spec.bracket_stop,
            bracket_target=spec.bracket_target,
        )
        self._records[client_order_id] = record
        self._changed[client_order_id] = None

        refusal = spec.refusal
        if refusal is None and mark is None:
            refusal = f"no market data for {intent.symbol}: cannot price the order"
        if refusal is None:
            refusal = self._check_resources(record)
        if refusal is not None:
            record.order = order.transition(OrderStatus.REJECTED, now, reason=f"rejected: {refusal}")
            return record.order

        record.order = order.transition(OrderStatus.SUBMITTED, now)
        self._open[client_order_id] = None
        if self._fill_model == "same-close":
            assert mark is not None
            price = self._quote_at_open(record, mark.close)
            if price is not None:
                self._execute(record, price, mark.ts, mark.volume, at=now, child_anchor=record.anchor)
        return record.order

    async def cancel(self, client_order_id: str, now: datetime) -> Order:
        """Cancel a working order (a bracket entry's children too). Cancelling a cancelled order returns it as is."""
        self._version += 1
        ensure_utc(now, "now")
        record = self._record(client_order_id)
        status = record.order.status
        if status is OrderStatus.CANCELED:
            return record.order
        if not record.working:
            raise BrokerError(f"order {client_order_id} is {status.value} and cannot be cancelled")
        self._advance_clock(now)
        self._cancel(record, "canceled by client", now)
        for child_id in record.children or ():
            child = self._records[child_id]
            if child.working:
                self._cancel(child, f"parent {client_order_id} canceled", now)
        return record.order

    async def account(self) -> AccountState:
        """The account now. Several agents ask every iteration; the (immutable) answer is reused until a method
        that can change it (sync, submit, cancel, replace_stop, restore) runs."""
        if self._as_of is None:
            raise BrokerError("the simulated broker has no time yet: call sync() first or pass started_at")
        cached = self._account
        if cached is not None and cached[0] == self._version:
            return cached[1]
        positions = self._positions()
        market_value = sum((p.market_value for p in positions.values()), _ZERO)
        state = AccountState(
            at=self._as_of,
            cash=self._cash,
            positions=MappingProxyType(positions),  # shared by every caller until the next change: read-only
            equity=self._cash + market_value,
            open_orders=tuple(self._records[cid].order for cid in self._open),
        )
        self._account = (self._version, state)
        return state

    # ------------------------------------------------------------------ extras of the simulated broker

    async def replace_stop(self, client_order_id: str, new_stop: float | Decimal, now: datetime) -> Order:
        """Move the stop price of a working stop order in place (one atomic modify, never cancel + resubmit).

        ``client_order_id`` is a stop order's id (a bracket's ``"<id>-sl"`` leg or a plain STOP order) or a bracket
        entry's id: before the entry has filled that changes the planned stop-loss, afterwards its stop leg.
        Raises :class:`BrokerError` for unknown, finished or non-stop orders, a triggered stop, a non-positive price,
        or a bracket stop at or above the bracket's take-profit.
        """
        self._version += 1
        ensure_utc(now, "now")
        record = self._record(client_order_id)
        raw = new_stop if isinstance(new_stop, Decimal) else Decimal(repr(float(new_stop)))
        if not raw.is_finite() or raw <= 0:
            raise BrokerError(f"stop price must be positive, got {new_stop!r}")
        stop = to_price(raw)
        if record.role == _ENTRY:
            if record.children is not None:
                return await self.replace_stop(record.children[0], stop, now)
            if not record.working:
                raise BrokerError(f"bracket {client_order_id} is {record.order.status.value}: nothing to modify")
            assert record.bracket_target is not None
            if stop >= record.bracket_target:
                raise BrokerError(f"stop {stop} must stay below the take-profit {record.bracket_target}")
            self._advance_clock(now)
            record.bracket_stop = stop
            record.order = replace(record.order, stop_price=float(stop), updated_at=now)
            self._changed[client_order_id] = None
            return record.order
        if record.kind is not OrderType.STOP or record.order.order_type is not OrderType.STOP:
            raise BrokerError(f"order {client_order_id} is not a stop order")
        if not record.working:
            raise BrokerError(f"order {client_order_id} is {record.order.status.value}: nothing to modify")
        if record.triggered:
            raise BrokerError(f"stop {client_order_id} has already triggered and is executing")
        if record.role == _STOP_LOSS:
            assert record.parent is not None
            parent = self._records[record.parent]
            assert parent.bracket_target is not None
            if stop >= parent.bracket_target:
                raise BrokerError(f"stop {stop} must stay below the take-profit {parent.bracket_target}")
            parent.bracket_stop = stop
            if parent.working:  # a finished entry is history: the leg is the live stop
                parent.order = replace(parent.order, stop_price=float(stop), updated_at=now)
                self._changed[parent.order.client_order_id] = None
        self._advance_clock(now)
        record.stop = stop
        record.order = replace(record.order, stop_price=float(stop), updated_at=now)
        self._changed[client_order_id] = None
        return record.order

    def order(self, client_order_id: str) -> Order:
        """The current state of one order; raises :class:`BrokerError` for an unknown id."""
        return self._record(client_order_id).order

    async def order_by_client_id(
        self, client_order_id: str, *, intent: OrderIntent | None = None, submitted_at: datetime | None = None
    ) -> Order | None:
        """The order with this client id, or None when this broker never accepted it (e.g. the process died
        between writing the intent and submitting; the restored account is the one recorded with the ledger)."""
        record = self._records.get(client_order_id)
        return None if record is None else record.order

    submission_window = timedelta(0)
    """An in-process broker answers at once: an order it does not hold was never accepted."""

    def fills(self) -> tuple[Fill, ...]:
        """Every fill since the broker started (in execution order)."""
        return tuple(self._fills)

    @property
    def initial_cash(self) -> Decimal:
        return self._initial_cash

    @property
    def total_commissions(self) -> Decimal:
        return self._total_commissions

    @property
    def realized_pnl(self) -> Decimal:
        """Realised P&L of every sale so far, gross of commissions, closed positions included."""
        return self._realized_total

    @property
    def unrealized_pnl(self) -> Decimal:
        """Σ (quantity × last price − cost basis) over open positions (exact cost basis, not the rounded average)."""
        return sum(
            (self._mark_price(symbol, h) * h.quantity - h.basis for symbol, h in self._holdings.items()),
            _ZERO,
        )

    def snapshot(self, history: int | None = None) -> dict[str, Any]:
        """The state as a JSON-serialisable dict (decimals as strings, times as ISO 8601).

        ``history=None``: everything. ``history=N`` bounds the snapshot, for a long-lived account persisted every
        iteration: every working order, every order with a change not yet reported, the ``N`` most recent other
        orders (``submit`` stays idempotent for those ids), the bracket families of all these, every fill not yet
        reported and the ``N`` most recent reported ones. The account itself (cash, holdings, marks) is complete; what
        is left out is history the ledger already holds."""
        records = self._records
        fills = self._fills
        reported = self._reported_fills
        if history is not None:
            if history < 0:
                raise ValueError(f"history must be >= 0, got {history}")
            keep = set(self._open) | set(self._changed)
            closed = sorted((r for cid, r in records.items() if cid not in keep), key=lambda r: r.seq)
            keep.update(r.order.client_order_id for r in closed[len(closed) - history :] if history)
            for cid in list(keep):  # whole bracket families: legs reach their parent and siblings by id
                record = records[cid]
                family = records.get(record.parent) if record.parent is not None else record
                if family is not None:
                    keep.add(family.order.client_order_id)
                    keep.update(family.children or ())
            records = {cid: r for cid, r in records.items() if cid in keep}
            first = max(0, reported - history)
            fills = fills[first:]
            reported -= first
        return {
            "version": SNAPSHOT_VERSION,
            "config": self._config(),
            "initial_cash": str(self._initial_cash),
            "cash": str(self._cash),
            "total_commissions": str(self._total_commissions),
            "realized_total": str(self._realized_total),
            "as_of": _iso(self._as_of),
            "seq": self._seq,
            "orders": [self._record_to_dict(r) for r in sorted(records.values(), key=lambda r: r.seq)],
            "open": list(self._open),
            "holdings": {
                s: {
                    "quantity": h.quantity,
                    "basis": str(h.basis),
                    "opened_at": _iso(h.opened_at),
                    "realized": str(h.realized),
                }
                for s, h in self._holdings.items()
            },
            "cursors": {s: ts.isoformat() for s, ts in self._cursors.items()},
            "marks": {
                s: {"ts": m.ts.isoformat(), "close": str(m.close), "volume": m.volume} for s, m in self._marks.items()
            },
            "used": {s: {"ts": ts.isoformat(), "quantity": q} for s, (ts, q) in self._used.items()},
            "fills": [
                {
                    "fill_id": f.fill_id,
                    "client_order_id": f.client_order_id,
                    "symbol": f.symbol,
                    "side": f.side.value,
                    "quantity": f.quantity,
                    "price": str(f.price),
                    "commission": str(f.commission),
                    "filled_at": _iso(f.filled_at),
                }
                for f in fills
            ],
            "reported_fills": reported,
            "changed": list(self._changed),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Replace this broker's state with a :meth:`snapshot`. The cost models and fill rules must match."""
        self._version += 1
        if state.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported snapshot version {state.get('version')!r}, expected {SNAPSHOT_VERSION}")
        if state["config"] != self._config():
            raise ValueError(f"snapshot was taken with {state['config']}, this broker is {self._config()}")
        records = {d["order"]["client_order_id"]: self._record_from_dict(d) for d in state["orders"]}
        open_ids = list(state["open"])
        for cid in open_ids:
            if cid not in records or not records[cid].working:
                raise ValueError(f"snapshot lists {cid!r} as working but its order is not")
        self._initial_cash = Decimal(state["initial_cash"])
        self._cash = Decimal(state["cash"])
        self._total_commissions = Decimal(state["total_commissions"])
        self._realized_total = Decimal(state["realized_total"])
        self._as_of = _from_iso(state["as_of"])
        self._seq = int(state["seq"])
        self._records = records
        self._open = dict.fromkeys(open_ids)
        self._holdings = {
            s: _Holding(
                quantity=int(h["quantity"]),
                basis=Decimal(h["basis"]),
                opened_at=_from_iso(h["opened_at"]),  # type: ignore[arg-type]
                realized=Decimal(h["realized"]),
            )
            for s, h in state["holdings"].items()
        }
        self._cursors = {s: pd.Timestamp(ts) for s, ts in state["cursors"].items()}
        self._marks = {
            s: _Mark(pd.Timestamp(m["ts"]), Decimal(m["close"]), float(m["volume"])) for s, m in state["marks"].items()
        }
        self._used = {s: (pd.Timestamp(u["ts"]), int(u["quantity"])) for s, u in state["used"].items()}
        self._fills = [
            Fill(
                fill_id=f["fill_id"],
                client_order_id=f["client_order_id"],
                symbol=f["symbol"],
                side=Side(f["side"]),
                quantity=int(f["quantity"]),
                price=Decimal(f["price"]),
                commission=Decimal(f["commission"]),
                filled_at=_from_iso(f["filled_at"]),  # type: ignore[arg-type]
            )
            for f in state["fills"]
        ]
        self._reported_fills = int(state["reported_fills"])
        self._changed = dict.fromkeys(state["changed"])

    # ------------------------------------------------------------------ submission helpers

    def _parse(self, intent: OrderIntent, client_order_id: str) -> _Spec:
        spec = _Spec
        kind = intent.order_type
        if kind is OrderType.MARKET:
            return spec(OrderType.MARKET)
        if kind is OrderType.LIMIT:
            if not _finite_positive(intent.limit_price):
                why = f"limit order needs a positive limit_price, got {intent.limit_price!r}"
                return spec(OrderType.LIMIT, refusal=why)
            return spec(OrderType.LIMIT, limit=to_price(intent.limit_price))  # type: ignore[arg-type]
        if kind is OrderType.STOP:
            if not _finite_positive(intent.stop_price):
                why = f"stop order needs a positive stop_price, got {intent.stop_price!r}"
                return spec(OrderType.STOP, refusal=why)
            return spec(OrderType.STOP, stop=to_price(intent.stop_price))  # type: ignore[arg-type]
        if kind is OrderType.BRACKET:
            entry = OrderType.LIMIT if intent.limit_price is not None else OrderType.MARKET
            if intent.side is not Side.BUY:
                return spec(entry, refusal="bracket orders must be buys (long-only account)")
            if not (_finite_positive(intent.stop_loss) and _finite_positive(intent.take_profit)):
                return spec(entry, refusal=f"bracket needs positive stop_loss and take_profit, got "
                            f"{intent.stop_loss!r} and {intent.take_profit!r}")
            stop_loss, take_profit = to_price(intent.stop_loss), to_price(intent.take_profit)  # type: ignore[arg-type]
            if stop_loss >= take_profit:
                return spec(entry, refusal=f"bracket stop_loss {stop_loss} must be below take_profit {take_profit}")
            if entry is OrderType.LIMIT and not _finite_positive(intent.limit_price):
                return spec(entry, refusal=f"bracket limit_price must be positive, got {intent.limit_price!r}")
            for suffix in ("-sl", "-tp"):
                if client_order_id + suffix in self._records:
                    return spec(entry, refusal=f"child id {client_order_id + suffix!r} is already in use")
            limit = to_price(intent.limit_price) if entry is OrderType.LIMIT else None  # type: ignore[arg-type]
            return spec(entry, limit=limit, bracket_stop=stop_loss, bracket_target=take_profit)
        return spec(OrderType.MARKET, refusal=f"unsupported order type {kind!r}")

    def _check_resources(self, record: _Record) -> str | None:
        order = record.order
        if order.side is Side.BUY:
            cost = self._estimated_cost(record, order.quantity)
            reserved = sum(
                (self._estimated_cost(r, r.remaining) for r in self._working_records()
                 if r.order.side is Side.BUY and r is not record),
                _ZERO,
            )
            available = self._cash - reserved
            if cost > available:
                return (f"insufficient cash: {order.quantity} {order.symbol} estimated at {cost}, "
                        f"available {available} (cash {self._cash}, reserved by working buys {reserved})")
            return None
        held = self._held(order.symbol)
        committed = sum(
            r.remaining for r in self._working_records()
            if r.order.symbol == order.symbol and r.order.side is Side.SELL and r.parent is None and r is not record
        )
        if order.quantity > held - committed:
            return (f"sell of {order.quantity} {order.symbol} exceeds the {held - committed} shares available "
                    f"(held {held}, committed to working sells {committed}); short selling is not allowed")
        return None

    def _estimated_price(self, record: _Record) -> Decimal:
        close = self._marks[record.order.symbol].close
        side = record.order.side
        if record.kind is OrderType.LIMIT:
            assert record.limit is not None
            return record.limit
        if record.kind is OrderType.STOP and not record.triggered:
            assert record.stop is not None
            return self._slippage.apply(max(record.stop, close), side)
        return self._slippage.apply(close, side)

    def _estimated_cost(self, record: _Record, quantity: int) -> Decimal:
        notional = self._estimated_price(record) * quantity
        fee = self._commission.commission(record.order.filled_quantity + quantity, record.gross + notional)
        return notional + fee - record.commission

    # ------------------------------------------------------------------ bar processing

    def _collect_bars(
        self,
        symbol: str,
        frame: pd.DataFrame,
        start: int,
        end: int,
        events: dict[pd.Timestamp, dict[str, _Bar]],
        notes: list[str],
        arrays: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        if arrays is None:
            arrays = {c: frame[c].to_numpy(dtype=float) for c in ("open", "high", "low", "close", "volume")}
        columns = [arrays[c][start:end] for c in ("open", "high", "low", "close", "volume")]
        for i, ts in enumerate(frame.index[start:end]):
            o, h, low, c, v = (float(col[i]) for col in columns)
            if not all(math.isfinite(x) for x in (o, h, low, c)):
                notes.append(f"{symbol}: bar {ts.date()} has non-finite prices; no fills on it")
                continue
            events.setdefault(ts, {})[symbol] = _Bar(ts, data_price(o), data_price(h), data_price(low), data_price(c), v)

    def _update_mark(
        self,
        symbol: str,
        frame: pd.DataFrame,
        end: int,
        notes: list[str],
        arrays: Mapping[str, np.ndarray] | None = None,
        ts: pd.Timestamp | None = None,
    ) -> None:
        if ts is None:
            ts = timestamp_at(frame.index, end - 1)
        if arrays is not None:
            close, volume = float(arrays["close"][end - 1]), float(arrays["volume"][end - 1])
        else:
            close, volume = float(frame["close"].iat[end - 1]), float(frame["volume"].iat[end - 1])
        volume = volume if math.isfinite(volume) and volume > 0 else 0.0
        previous = self._marks.get(symbol)
        if previous is not None and ts < previous.ts:
            return
        if not math.isfinite(close) or close <= 0:
            notes.append(f"{symbol}: last close on {ts.date()} is unusable ({close!r}); mark unchanged")
            return
        self._marks[symbol] = _Mark(ts, close, volume)

    def _process_bars(self, ts: pd.Timestamp, bars: Mapping[str, _Bar]) -> None:
        at = session_timestamp(ts)
        for phase in (_OPEN, _INTRABAR):
            for side in (Side.SELL, Side.BUY):
                candidates = [
                    r for r in self._working_records() if r.order.side is side and r.order.symbol in bars
                ]
                if phase == _INTRABAR:  # stops first: a bar touching a bracket's stop and target hits the stop
                    candidates.sort(key=lambda r: (0 if r.kind is OrderType.STOP else 1, r.seq))
                else:
                    candidates.sort(key=lambda r: r.seq)
                for record in candidates:
                    if not record.working or record.anchor >= ts:
                        continue
                    bar = bars[record.order.symbol]
                    if phase == _OPEN:
                        price = self._quote_at_open(record, bar.open)
                    else:
                        price = self._quote_intrabar(record, bar)
                    if price is not None:
                        self._execute(record, price, ts, bar.volume, at=at, child_anchor=ts)

    def _quote_at_open(self, record: _Record, level: Decimal) -> Decimal | None:
        """Fill price when the market opens (or, same-close, stands) at ``level``; ``None`` if the order waits."""
        side = record.order.side
        buy = side is Side.BUY
        if record.kind is OrderType.MARKET or (record.kind is OrderType.STOP and record.triggered):
            return self._slippage.apply(level, side)
        if record.kind is OrderType.LIMIT:
            assert record.limit is not None
            if (level <= record.limit) if buy else (level >= record.limit):
                price = self._slippage.apply(level, side)
                return min(price, record.limit) if buy else max(price, record.limit)
            return None
        assert record.stop is not None
        if (level >= record.stop) if buy else (level <= record.stop):
            record.triggered = True
            return self._slippage.apply(level, side)
        return None

    def _quote_intrabar(self, record: _Record, bar: _Bar) -> Decimal | None:
        buy = record.order.side is Side.BUY
        if record.kind is OrderType.MARKET or (record.kind is OrderType.STOP and record.triggered):
            return None  # market-style orders only execute at an open
        if record.kind is OrderType.LIMIT:
            assert record.limit is not None
            reached = bar.low <= record.limit if buy else bar.high >= record.limit
            return record.limit if reached else None
        assert record.stop is not None
        if (bar.high >= record.stop) if buy else (bar.low <= record.stop):
            record.triggered = True
            return self._slippage.apply(record.stop, record.order.side)
        return None

    def _execute(
        self,
        record: _Record,
        price: Decimal,
        ts: pd.Timestamp,
        volume: float,
        *,
        at: datetime,
        child_anchor: pd.Timestamp,
    ) -> None:
        """Fill as much of ``record`` as volume, shares held and cash allow at ``price``."""
        order = record.order
        quantity = record.remaining
        capacity = self._capacity_left(order.symbol, ts, volume)
        if capacity is not None:
            quantity = min(quantity, capacity)
        shortfall: str | None = None
        if order.side is Side.SELL:
            held = self._held(order.symbol)
            if held < quantity:
                shortfall = f"only {held} {order.symbol} held when {quantity} were to be sold (no shorting)"
                quantity = held
        else:
            affordable = self._affordable(record, quantity, price)
            if affordable < quantity:
                shortfall = (f"insufficient cash at fill: {quantity} {order.symbol} @ {price} would cost "
                             f"{self._fill_cost(record, quantity, price)}, cash {self._cash}; filled {affordable}")
                quantity = affordable
        if quantity > 0:
            self._consume(order.symbol, ts, quantity)
            self._fill(record, quantity, price, at, child_anchor)
        if shortfall is not None and record.working:
            self._terminate(record, shortfall, at)

    def _capacity_left(self, symbol: str, ts: pd.Timestamp, volume: float) -> int | None:
        if self._share is None:
            return None
        if not math.isfinite(volume) or volume <= 0:
            return 0
        total = int((Decimal(repr(volume)) * self._share).to_integral_value(rounding=ROUND_FLOOR))
        used = self._used.get(symbol)
        taken = used[1] if used is not None and used[0] == ts else 0
        return max(total - taken, 0)

    def _consume(self, symbol: str, ts: pd.Timestamp, quantity: int) -> None:
        if self._share is None:
            return
        used = self._used.get(symbol)
        taken = used[1] if used is not None and used[0] == ts else 0
        self._used[symbol] = (ts, taken + quantity)

    def _fill_cost(self, record: _Record, quantity: int, price: Decimal) -> Decimal:
        notional = price * quantity
        fee = self._commission.commission(record.order.filled_quantity + quantity, record.gross + notional)
        return notional + fee - record.commission

    def _affordable(self, record: _Record, quantity: int, price: Decimal) -> int:
        """Largest ``n <= quantity`` whose cost fits in the cash (cost is non-decreasing in ``n``)."""
        if self._fill_cost(record, quantity, price) <= self._cash:
            return quantity
        low, high = 0, quantity  # cost(low) fits (or low == 0), cost(high) does not
        while high - low > 1:
            middle = (low + high) // 2
            if self._fill_cost(record, middle, price) <= self._cash:
                low = middle
            else:
                high = middle
        return low

    def _fill(self, record: _Record, quantity: int, price: Decimal, at: datetime, child_anchor: pd.Timestamp) -> None:
        order = record.order
        notional = price * quantity
        filled = order.filled_quantity + quantity
        cumulative_fee = self._commission.commission(filled, record.gross + notional)
        fee = cumulative_fee - record.commission
        if fee < 0:
            raise ValueError(f"commission model {self._commission!r} decreased with a larger order ({fee})")
        record.gross += notional
        record.commission = cumulative_fee
        record.fills += 1
        self._total_commissions += fee
        if order.side is Side.BUY:
            self._cash -= notional + fee
            holding = self._holdings.get(order.symbol)
            if holding is None:
                self._holdings[order.symbol] = _Holding(quantity, notional, at)
            else:
                holding.quantity += quantity
                holding.basis += notional
        else:
            self._cash += notional - fee
            holding = self._holdings[order.symbol]
            if quantity == holding.quantity:
                removed = holding.basis
            else:
                removed = (holding.basis * quantity / holding.quantity).quantize(PRICE_QUANTUM)
            realized = notional - removed
            holding.quantity -= quantity
            holding.basis -= removed
            holding.realized += realized
            self._realized_total += realized
            if holding.quantity == 0:
                del self._holdings[order.symbol]
        self._fills.append(
            Fill(
                fill_id=f"{order.client_order_id}-{record.fills}",
                client_order_id=order.client_order_id,
                symbol=order.symbol,
                side=order.side,
                quantity=quantity,
                price=price,
                commission=fee,
                filled_at=at,
            )
        )
        status = OrderStatus.FILLED if filled == order.quantity else OrderStatus.PARTIALLY_FILLED
        record.order = order.transition(
            status, at, filled_quantity=filled, average_fill_price=float(to_price(record.gross / filled))
        )
        self._changed[order.client_order_id] = None
        if status is OrderStatus.FILLED:
            self._open.pop(order.client_order_id, None)

        if record.role == _ENTRY:
            self._grow_children(record, quantity, at, child_anchor)
        elif record.role in (_STOP_LOSS, _TAKE_PROFIT):
            self._one_cancels_other(record, at)
        if order.side is Side.SELL:
            self._cap_children(order.symbol, at)

    def _grow_children(self, parent: _Record, quantity: int, at: datetime, anchor: pd.Timestamp) -> None:
        if parent.children is not None:
            for child_id in parent.children:
                child = self._records[child_id]
                if child.working:
                    child.order = replace(child.order, quantity=child.order.quantity + quantity, updated_at=at)
                    self._changed[child_id] = None
            return
        p = parent.order
        assert parent.bracket_stop is not None and parent.bracket_target is not None
        legs = (
            (_STOP_LOSS, "-sl", OrderType.STOP, None, parent.bracket_stop, f"stop-loss of {p.client_order_id}"),
            (_TAKE_PROFIT, "-tp", OrderType.LIMIT, parent.bracket_target, None, f"take-profit of {p.client_order_id}"),
        )
        ids = []
        for role, suffix, kind, limit, stop, reason in legs:
            self._seq += 1
            child_id = p.client_order_id + suffix
            child = Order(
                client_order_id=child_id,
                symbol=p.symbol,
                side=Side.SELL,
                quantity=quantity,
                order_type=kind,
                status=OrderStatus.NEW,
                submitted_at=at,
                strategy=p.strategy,
                reason=reason,
                broker_order_id=f"sim-{self._seq}",
                limit_price=None if limit is None else float(limit),
                stop_price=None if stop is None else float(stop),
            ).transition(OrderStatus.SUBMITTED, at)
            self._records[child_id] = _Record(
                order=child, seq=self._seq, kind=kind, anchor=anchor, limit=limit, stop=stop, role=role,
                parent=p.client_order_id,
            )
            self._open[child_id] = None
            self._changed[child_id] = None
            ids.append(child_id)
        parent.children = (ids[0], ids[1])

    def _one_cancels_other(self, leg: _Record, at: datetime) -> None:
        assert leg.parent is not None
        parent = self._records[leg.parent]
        for sibling_id in parent.children or ():
            sibling = self._records[sibling_id]
            if sibling is not leg and sibling.working:
                self._cancel(sibling, f"one-cancels-other: {leg.order.client_order_id} filled", at)
        if parent.working:
            self._cancel(parent, f"bracket exit {leg.order.client_order_id} filled; entry remainder canceled", at)

    def _cap_children(self, symbol: str, at: datetime) -> None:
        held = self._held(symbol)
        for record in self._working_records():
            if record.parent is None or record.order.symbol != symbol or record.remaining <= held:
                continue
            if held == 0:
                self._cancel(record, f"position in {symbol} closed: nothing left to protect", at)
            else:
                record.order = replace(record.order, quantity=record.order.filled_quantity + held, updated_at=at)
                self._changed[record.order.client_order_id] = None

    def _terminate(self, record: _Record, reason: str, at: datetime) -> None:
        status = OrderStatus.REJECTED if record.order.filled_quantity == 0 else OrderStatus.CANCELED
        prefix = "rejected" if status is OrderStatus.REJECTED else "remainder canceled"
        record.order = record.order.transition(status, at, reason=f"{prefix}: {reason}")
        self._open.pop(record.order.client_order_id, None)
        self._changed[record.order.client_order_id] = None

    def _cancel(self, record: _Record, reason: str, at: datetime) -> None:
        record.order = record.order.transition(OrderStatus.CANCELED, at, reason=reason)
        self._open.pop(record.order.client_order_id, None)
        self._changed[record.order.client_order_id] = None

    # ------------------------------------------------------------------ small helpers

    def _advance_clock(self, at: datetime) -> None:
        ensure_utc(at)
        if self._as_of is None or at > self._as_of:
            self._as_of = at

    def _record(self, client_order_id: str) -> _Record:
        record = self._records.get(client_order_id)
        if record is None:
            raise BrokerError(f"unknown order {client_order_id!r}")
        return record

    def _working_records(self) -> list[_Record]:
        return [self._records[cid] for cid in self._open]

    def _held(self, symbol: str) -> int:
        holding = self._holdings.get(symbol)
        return 0 if holding is None else holding.quantity

    def _mark_price(self, symbol: str, holding: _Holding) -> Decimal:
        mark = self._marks.get(symbol)
        return mark.close if mark is not None else to_price(holding.basis / holding.quantity)

    def _positions(self) -> dict[str, Position]:
        return {
            symbol: Position(
                symbol=symbol,
                quantity=h.quantity,
                average_price=to_price(h.basis / h.quantity),
                opened_at=h.opened_at,
                realized_pnl=h.realized,
                last_price=self._mark_price(symbol, h),
            )
            for symbol, h in sorted(self._holdings.items())
        }

    def _config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "fill_model": self._fill_model,
            "max_volume_share": self._max_volume_share,
            "commission": self._commission.describe(),
            "slippage": self._slippage.describe(),
        }

    @staticmethod
    def _record_to_dict(record: _Record) -> dict[str, Any]:
        o = record.order
        return {
            "order": {
                "client_order_id": o.client_order_id,
                "symbol": o.symbol,
                "side": o.side.value,
                "quantity": o.quantity,
                "order_type": o.order_type.value,
                "status": o.status.value,
                "submitted_at": _iso(o.submitted_at),
                "strategy": o.strategy,
                "reason": o.reason,
                "broker_order_id": o.broker_order_id,
                "limit_price": o.limit_price,
                "stop_price": o.stop_price,
                "filled_quantity": o.filled_quantity,
                "average_fill_price": o.average_fill_price,
                "updated_at": _iso(o.updated_at),
            },
            "seq": record.seq,
            "kind": record.kind.value,
            "anchor": record.anchor.isoformat(),
            "limit": _dec(record.limit),
            "stop": _dec(record.stop),
            "triggered": record.triggered,
            "role": record.role,
            "parent": record.parent,
            "children": None if record.children is None else list(record.children),
            "bracket_stop": _dec(record.bracket_stop),
            "bracket_target": _dec(record.bracket_target),
            "gross": str(record.gross),
            "commission": str(record.commission),
            "fills": record.fills,
        }

    @staticmethod
    def _record_from_dict(data: Mapping[str, Any]) -> _Record:
        o = data["order"]
        order = Order(
            client_order_id=o["client_order_id"],
            symbol=o["symbol"],
            side=Side(o["side"]),
            quantity=int(o["quantity"]),
            order_type=OrderType(o["order_type"]),
            status=OrderStatus(o["status"]),
            submitted_at=_from_iso(o["submitted_at"]),  # type: ignore[arg-type]
            strategy=o["strategy"],
            reason=o["reason"],
            broker_order_id=o["broker_order_id"],
            limit_price=o["limit_price"],
            stop_price=o["stop_price"],
            filled_quantity=int(o["filled_quantity"]),
            average_fill_price=o["average_fill_price"],
            updated_at=_from_iso(o["updated_at"]),
        )
        children = data["children"]
        return _Record(
            order=order,
            seq=int(data["seq"]),
            kind=OrderType(data["kind"]),
            anchor=pd.Timestamp(data["anchor"]),
            limit=_undec(data["limit"]),
            stop=_undec(data["stop"]),
            triggered=bool(data["triggered"]),
            role=data["role"],
            parent=data["parent"],
            children=None if children is None else (children[0], children[1]),
            bracket_stop=_undec(data["bracket_stop"]),
            bracket_target=_undec(data["bracket_target"]),
            gross=Decimal(data["gross"]),
            commission=Decimal(data["commission"]),
            fills=int(data["fills"]),
        )

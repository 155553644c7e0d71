"""The :class:`SimulatedBroker` itself: construction, the Broker protocol, the extras and submission checks."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import pandas as pd

from core.brokers.base import AccountState, BrokerError, SyncResult
from core.brokers.costs import CommissionModel, SlippageModel, ZeroCommission, ZeroSlippage
from core.brokers.simulated.book import (
    FILL_MODELS,
    _ENTRY,
    _STOP_LOSS,
    _ZERO,
    FillModel,
    _Bar,
    _Holding,
    _Mark,
    _Record,
    _Spec,
    _finite_positive,
    _FrameView,
    _float_or_none,
    _is_utc_index,
)
from core.brokers.simulated.brackets import _Brackets
from core.brokers.simulated.ledger import _Ledger
from core.brokers.simulated.matching import _Matching
from core.brokers.simulated.snapshot import _Snapshot
from core.kernel.domain import (
    BarsBatch,
    Fill,
    Order,
    OrderIntent,
    OrderStatus,
    OrderType,
    Side,
    data_price,
    datetime_index,
    ensure_utc,
    stamp_of,
    to_price,
)


class SimulatedBroker(_Matching, _Ledger, _Brackets, _Snapshot):
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
        self._position_cache: dict[str, Any] = {}  # see _Ledger._positions
        self._cursors: dict[str, pd.Timestamp] = {}  # last processed bar per symbol
        self._marks: dict[str, _Mark] = {}  # latest visible bar per symbol
        self._checked_frames: dict[str, pd.DataFrame] = {}  # the frame whose index sync() last validated, per symbol
        self._frames: dict[str, _FrameView] = {}  # what sync() reads of each symbol's latest frame
        self._used: dict[str, tuple[pd.Timestamp, int]] = {}  # volume already taken on a symbol's latest bar
        self._fills: list[Fill] = []
        self._reported_fills = 0
        self._changed: dict[str, None] = {}
        self._version = 0  # bumped by every method that may change the account (see account())
        self._account: tuple[int, AccountState] | None = None
        self._sessions: list[date] = []
        self._day_trades: list[tuple[date, str]] = []
        self._bought_in: dict[str, date] = {}
        self._pattern_day_trader = False

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
        latest: pd.Timestamp | None = None
        views, cursors, marks = self._frames, self._cursors, self._marks
        for symbol in sorted(batch.bars):
            bars = batch.bars[symbol]
            frame = bars.frame
            view = views.get(symbol)
            if view is None or view.frame is not frame:
                view = views[symbol] = _FrameView(frame)  # index checked above
            end = bars.end if bars.end < view.rows else view.rows
            if end <= 0:
                notes.append(f"{symbol}: no visible bars")
                continue
            last_ts = stamp_of(int(view.asi8[end - 1]), view.unit, view.tz)
            cursor = cursors.get(symbol)
            if cursor is None:
                cursors[symbol] = last_ts
            elif last_ts < cursor:
                notes.append(f"{symbol}: batch ends at {last_ts.date()}, before the processed {cursor.date()}")
            elif last_ts > cursor:
                if symbol in with_orders:
                    self._collect_bars(symbol, frame, view.after(cursor), end, events, notes, bars.arrays, view)
                cursors[symbol] = last_ts
            if latest is None or last_ts > latest:
                latest = last_ts
            # the mark: the latest visible bar (as _update_mark, inline: this runs for every symbol every session)
            arrays = bars.arrays
            if arrays is None:
                self._update_mark(symbol, frame, end, notes, None, last_ts)
                continue
            close, volume = float(arrays["close"][end - 1]), float(arrays["volume"][end - 1])
            previous = marks.get(symbol)
            if previous is not None and last_ts < previous.ts:
                continue
            if not math.isfinite(close) or close <= 0:
                notes.append(f"{symbol}: last close on {last_ts.date()} is unusable ({close!r}); mark unchanged")
                continue
            marks[symbol] = _Mark(last_ts, close, volume if math.isfinite(volume) and volume > 0 else 0.0)

        for ts in sorted(events):
            self._see_session(ts.date())
            self._process_bars(ts, events[ts])
        if latest is not None:
            self._see_session(latest.date())

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
            daytrade_count=self._daytrade_count(),
            pattern_day_trader=self._pattern_day_trader,
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

    def market_buy_price(self, symbol: str) -> Decimal | None:
        """The price a market buy of ``symbol`` submitted now would fill at, slippage included: with ``next-open`` the
        open of the first bar after the symbol's last visible one (a backtest's bars hold it; the live daemon's do not:
        None), with ``same-close`` the last visible close. None without a usable price. The gap guard's price at
        submission in a backtest, where no live quote exists."""
        mark = self._marks.get(symbol)
        if mark is None:
            return None
        if self._fill_model == "same-close":
            return self._slippage.apply(mark.close, Side.BUY)
        frame = self._checked_frames.get(symbol)
        if frame is None:
            return None
        anchor = mark.ts
        if self._as_of is not None:
            anchor = max(anchor, pd.Timestamp(self._as_of).normalize())
        index = datetime_index(frame)
        row = int(index.searchsorted(anchor, side="right"))
        if row >= len(frame):
            return None
        level = float(frame["open"].iat[row])  # type: ignore[arg-type]  # pandas-stubs: iat is not typed by the column's dtype
        if not (math.isfinite(level) and level > 0):
            return None
        return self._slippage.apply(data_price(level), Side.BUY)

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
            return spec(OrderType.LIMIT, limit=to_price(intent.limit_price))
        if kind is OrderType.STOP:
            if not _finite_positive(intent.stop_price):
                why = f"stop order needs a positive stop_price, got {intent.stop_price!r}"
                return spec(OrderType.STOP, refusal=why)
            return spec(OrderType.STOP, stop=to_price(intent.stop_price))
        if kind is OrderType.BRACKET:
            entry = OrderType.LIMIT if intent.limit_price is not None else OrderType.MARKET
            if intent.side is not Side.BUY:
                return spec(entry, refusal="bracket orders must be buys (long-only account)")
            if not (_finite_positive(intent.stop_loss) and _finite_positive(intent.take_profit)):
                return spec(
                    entry,
                    refusal=f"bracket needs positive stop_loss and take_profit, got "
                    f"{intent.stop_loss!r} and {intent.take_profit!r}",
                )
            stop_loss, take_profit = to_price(intent.stop_loss), to_price(intent.take_profit)
            if stop_loss >= take_profit:
                return spec(entry, refusal=f"bracket stop_loss {stop_loss} must be below take_profit {take_profit}")
            if entry is OrderType.LIMIT and not _finite_positive(intent.limit_price):
                return spec(entry, refusal=f"bracket limit_price must be positive, got {intent.limit_price!r}")
            for suffix in ("-sl", "-tp"):
                if client_order_id + suffix in self._records:
                    return spec(entry, refusal=f"child id {client_order_id + suffix!r} is already in use")
            limit = to_price(intent.limit_price) if intent.limit_price is not None else None  # entry is LIMIT
            return spec(entry, limit=limit, bracket_stop=stop_loss, bracket_target=take_profit)
        return spec(OrderType.MARKET, refusal=f"unsupported order type {kind!r}")

    def _check_resources(self, record: _Record) -> str | None:
        order = record.order
        if order.side is Side.BUY:
            cost = self._estimated_cost(record, order.quantity)
            reserved = sum(
                (
                    self._estimated_cost(r, r.remaining)
                    for r in self._working_records()
                    if r.order.side is Side.BUY and r is not record
                ),
                _ZERO,
            )
            available = self._cash - reserved
            if cost > available:
                return (
                    f"insufficient cash: {order.quantity} {order.symbol} estimated at {cost}, "
                    f"available {available} (cash {self._cash}, reserved by working buys {reserved})"
                )
            return None
        held = self._held(order.symbol)
        committed = sum(
            r.remaining
            for r in self._working_records()
            if r.order.symbol == order.symbol and r.order.side is Side.SELL and r.parent is None and r is not record
        )
        if order.quantity > held - committed:
            return (
                f"sell of {order.quantity} {order.symbol} exceeds the {held - committed} shares available "
                f"(held {held}, committed to working sells {committed}); short selling is not allowed"
            )
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

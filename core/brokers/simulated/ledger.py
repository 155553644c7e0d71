"""Part of :class:`.SimulatedBroker`: cash, positions and average-cost P&L as fills are booked."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pandas as pd

from core.brokers.simulated.book import _ENTRY, _STOP_LOSS, _TAKE_PROFIT, _Holding, _Record
from core.brokers.simulated.state import _BrokerState
from core.kernel.domain import PRICE_QUANTUM, Fill, OrderStatus, Position, Side, to_price


class _Ledger(_BrokerState):
    """The cash account of :class:`.SimulatedBroker`: booking fills, positions and marks."""

    # ------------------------------------------------------------------ booking fills

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

    # ------------------------------------------------------------------ day trades

    def _see_session(self, session: date) -> None:
        """A session's bars were seen: keep the last five sessions and the day trades within them."""
        sessions = self._sessions
        if session in sessions or (sessions and session < sessions[0]):
            return
        sessions.append(session)
        sessions.sort()
        del sessions[:-5]
        oldest = sessions[0]
        self._day_trades = [t for t in self._day_trades if t[0] >= oldest]

    def _count_day_trade(self, symbol: str, side: Side, session: date) -> None:
        """After a fill on ``session``: a sale of a symbol bought in the same session is a day trade (one per symbol
        and session); a fourth within five sessions flags the account as a pattern day trader."""
        if side is Side.BUY:
            self._bought_in[symbol] = session
            return
        if self._bought_in.get(symbol) != session or (session, symbol) in self._day_trades:
            return
        self._see_session(session)
        self._day_trades.append((session, symbol))
        if self._daytrade_count() > 3:
            self._pattern_day_trader = True

    def _daytrade_count(self) -> int:
        """Day trades in the last five sessions seen (the current one included)."""
        oldest = self._sessions[0] if self._sessions else date.min
        return sum(1 for session, _ in self._day_trades if session >= oldest)

    def _held(self, symbol: str) -> int:
        holding = self._holdings.get(symbol)
        return 0 if holding is None else holding.quantity

    def _mark_price(self, symbol: str, holding: _Holding) -> Decimal:
        mark = self._marks.get(symbol)
        return mark.close if mark is not None else to_price(holding.basis / holding.quantity)

    def _positions(self) -> dict[str, Position]:
        """Every holding as a :class:`Position`. A holding and mark unchanged since the last call (the very same
        quantity, cost basis, opening time, realised P&L and mark objects) gives back the same (immutable) Position;
        the average price is recomputed only when the quantity or the cost basis changed."""
        cache = self._position_cache
        positions: dict[str, Position] = {}
        for symbol, h in sorted(self._holdings.items()):
            mark = self._marks.get(symbol)
            hit = cache.get(symbol)
            if hit is not None and hit[0] == h.quantity and hit[1] is h.basis:
                if hit[2] is mark and hit[3] is h.opened_at and hit[4] is h.realized:
                    positions[symbol] = hit[6]
                    continue
                average = hit[5]
            else:
                average = to_price(h.basis / h.quantity)
            position = Position(
                symbol=symbol,
                quantity=h.quantity,
                average_price=average,
                opened_at=h.opened_at,
                realized_pnl=h.realized,
                last_price=mark.close if mark is not None else to_price(h.basis / h.quantity),  # as _mark_price
            )
            cache[symbol] = (h.quantity, h.basis, mark, h.opened_at, h.realized, average, position)
            positions[symbol] = position
        return positions

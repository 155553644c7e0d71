"""Part of :class:`.SimulatedBroker`: the whole state as JSON-compatible data and back."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, overload
from collections.abc import Mapping

import pandas as pd

from core.brokers.simulated.book import _Holding, _Mark, _Record
from core.brokers.simulated.state import _BrokerState
from core.kernel.domain import Fill, Order, OrderStatus, OrderType, Side, ensure_utc


SNAPSHOT_VERSION = 1


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@overload
def _from_iso(value: str) -> datetime: ...
@overload
def _from_iso(value: str | None) -> datetime | None: ...
def _from_iso(value: str | None) -> datetime | None:
    return None if value is None else ensure_utc(datetime.fromisoformat(value))


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _undec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


class _Snapshot(_BrokerState):
    """``snapshot()`` / ``restore()`` of :class:`.SimulatedBroker`."""

    # ------------------------------------------------------------------ persistence

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
            "sessions": [d.isoformat() for d in self._sessions],
            "day_trades": [[d.isoformat(), symbol] for d, symbol in self._day_trades],
            "bought_in": {s: d.isoformat() for s, d in self._bought_in.items()},
            "pattern_day_trader": self._pattern_day_trader,
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
        self._position_cache = {}
        self._holdings = {
            s: _Holding(
                quantity=int(h["quantity"]),
                basis=Decimal(h["basis"]),
                opened_at=_from_iso(h["opened_at"]),
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
                filled_at=_from_iso(f["filled_at"]),
            )
            for f in state["fills"]
        ]
        self._reported_fills = int(state["reported_fills"])
        self._changed = dict.fromkeys(state["changed"])
        # the day-trade count (absent from snapshots taken before it was kept: none counted)
        self._sessions = [date.fromisoformat(d) for d in state.get("sessions", [])]
        self._day_trades = [(date.fromisoformat(d), symbol) for d, symbol in state.get("day_trades", [])]
        self._bought_in = {s: date.fromisoformat(d) for s, d in state.get("bought_in", {}).items()}
        self._pattern_day_trader = bool(state.get("pattern_day_trader", False))

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
            submitted_at=_from_iso(o["submitted_at"]),
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

"""What an iteration's facts carry for its narrative: the real content, not only counts.

:func:`iteration_content` adds to the audit facts the session date, the symbols, the orders submitted and the
fills (symbol, side, quantity, price), the change of equity since the previous iteration (P&L), the exposure
(gross market value, its share of equity, the position sizes) and the risk state (a lock or a halt, with its
reason). Values are strings or ints so that a narrative renders them exactly as recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

__all__ = ["iteration_content"]

_CENT = Decimal("0.01")


def _money(value: Decimal) -> str:
    return format(value.quantize(_CENT), ",.2f")


def _side(value: Any) -> str:
    return str(getattr(value, "value", value)).lower()


def iteration_content(
    *,
    as_of: datetime,
    symbols: Iterable[str],
    orders: Iterable[Any],
    fills: Iterable[Any],
    account: Any | None,
    equity: Any | None,
    previous_equity: float | Decimal | None,
    state: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Extra facts (see the module doc); ``account``/``equity``: the broker's account and equity snapshot."""
    content: dict[str, Any] = {
        "session": as_of.date().isoformat(),
        "symbols": sorted(symbols),
        "orders": [
            {"symbol": o.symbol, "side": _side(o.side), "qty": int(o.quantity), "type": _side(o.order_type)}
            for o in orders
        ],
        "fill_details": [
            {"symbol": f.symbol, "side": _side(f.side), "qty": int(f.quantity), "price": _money(Decimal(f.price))}
            for f in fills
        ],
    }
    if equity is not None and previous_equity is not None:
        before = Decimal(str(previous_equity))
        change = Decimal(equity.equity) - before
        content["pnl"] = {
            "change": _money(change),
            "change_pct": str((change / before * 100).quantize(_CENT)) if before else None,
            "previous_equity": _money(before),
        }
    if account is not None:
        gross = sum((abs(p.market_value) for p in account.positions.values()), Decimal(0))
        total = Decimal(account.equity)
        content["exposure"] = {
            "gross": _money(gross),
            "gross_pct_of_equity": str((gross / total * 100).quantize(_CENT)) if total else None,
            "positions": {s: int(p.quantity) for s, p in sorted(account.positions.items())},
        }
    risk = _risk_state(state)
    if risk is not None:
        content["trading_state"] = risk
    return content


def _risk_state(state: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The Risk agent's protection state from the persisted snapshots (key ``risk:state``, maybe namespaced)."""
    for key, value in (state or {}).items():
        if str(key).endswith("risk:state") and isinstance(value, Mapping) and "state" in value:
            locked = str(value["state"]).lower() in ("locked", "halted")
            return {"state": str(value["state"]), "locked": locked, "reason": value.get("reason")}
    return None

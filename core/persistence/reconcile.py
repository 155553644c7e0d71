"""Reconciliation of the database with the broker, at start-up and every iteration.

Compared: positions at start-up (the ledger's positions for this broker, i.e. every fill its daemon runs recorded plus
earlier reconciliation adjustments, moved by the fills the start-up catch-up found but not yet recorded: orders that
were in doubt and executions while the daemon was down) against the broker's; and open orders every iteration
(working orders at the broker that neither the ledger, nor the iteration's own orders, nor an order still in doubt
explains, e.g. placed by hand). Only real discrepancies are recorded, each with what was done about it; they are
shown by ``scripts/query_trades.py reconcile``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from collections.abc import Callable, Iterable, Sequence

from loguru import logger

from core.brokers.base import AccountState
from core.kernel.domain import Fill, Side
from core.persistence.repository import Repository


def compare_positions(ledger: dict[str, Decimal], account: AccountState) -> list[dict[str, Any]]:
    events = []
    broker = {s: Decimal(p.quantity) for s, p in account.positions.items() if p.quantity}
    for symbol in sorted(set(ledger) | set(broker)):
        mine, theirs = ledger.get(symbol, Decimal(0)), broker.get(symbol, Decimal(0))
        if mine == theirs:
            continue
        if not mine:
            kind, resolution = "unknown_position", "adopted: the broker's position is recorded and managed from now on"
        elif not theirs:
            kind, resolution = "missing_position", "flagged: closed outside the daemon; recorded as closed"
        else:
            kind, resolution = "quantity_mismatch", "adopted the broker's quantity; flagged for review"
        events.append(
            {
                "kind": kind,
                "symbol": symbol,
                "details": {"ledger": str(mine), "broker": str(theirs)},
                "resolution": resolution,
            }
        )
    return events


def compare_orders(
    known_ids: set[str], account: AccountState, parent_of: Callable[[str], str | None] | None = None
) -> list[dict[str, Any]]:
    """Working orders at the broker that are neither known nor a leg (or replacement) of a known order."""
    return [
        {
            "kind": "unknown_order",
            "symbol": o.symbol,
            "details": {
                "client_order_id": o.client_order_id,
                "side": o.side.value,
                "quantity": o.quantity,
                "status": o.status.value,
            },
            "resolution": "flagged: a working order the daemon did not place; left untouched",
        }
        for o in account.open_orders
        if o.client_order_id not in known_ids
        and not _is_leg_of(o.client_order_id, known_ids)
        and not (parent_of is not None and parent_of(o.client_order_id) in known_ids)
    ]


def _is_leg_of(client_order_id: str, known_ids: set[str]) -> bool:
    base = client_order_id.rsplit("-", 1)[0]
    return base in known_ids or any(client_order_id.startswith(k + "-") for k in known_ids if len(k) >= 8)


class Reconciler:
    """``parent_of``: the broker's view of which entry an order is a bracket leg of (Alpaca names legs itself)."""

    def __init__(
        self,
        repository: Repository,
        broker_name: str,
        run_id: str,
        *,
        parent_of: Callable[[str], str | None] | None = None,
        on_found: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> None:
        """``on_found``: called with the discrepancies each check found (when it found any), once recorded."""
        self._parent_of = parent_of
        self.on_found = on_found
        self._repository = repository
        self._broker_name = broker_name
        self._run_id = run_id
        self._flagged: set[str] = set()

    def at_startup(
        self,
        account: AccountState,
        now: datetime,
        *,
        unrecorded_fills: Sequence[Fill] = (),
        own: Iterable[str] = (),
        skip_symbols: Iterable[str] = (),
    ) -> list[dict[str, Any]]:
        """``unrecorded_fills``: fills the broker reported at start-up that the first iteration will record;
        ``own``: client ids of orders the daemon placed that the database does not hold yet; ``skip_symbols``:
        symbols with an order still in doubt (its lookup failed): their position cannot be judged yet."""
        ledger = self._repository.ledger_positions(self._broker_name, exclude_run=self._run_id)
        for fill in unrecorded_fills:
            signed = Decimal(fill.quantity) if fill.side is Side.BUY else -Decimal(fill.quantity)
            ledger[fill.symbol] = ledger.get(fill.symbol, Decimal(0)) + signed
        events = compare_positions({s: q for s, q in ledger.items() if q}, account)
        skipped = set(skip_symbols)
        if skipped:
            logger.warning(
                "reconciliation: positions of {} not compared: an order is still in doubt", ", ".join(sorted(skipped))
            )
            events = [e for e in events if e["symbol"] not in skipped]
        events += self._new_unknown_orders(account, own)
        self._record(events, now)
        return events

    def every_iteration(self, account: AccountState, now: datetime, *, own: Iterable[str] = ()) -> list[dict[str, Any]]:
        """``own``: client ids of the orders this iteration placed (submitted, or a stop it replaced), which the
        database does not hold yet. An order the broker merely reported (e.g. found by a poll, placed by hand) is not
        the daemon's: it is flagged the first time it is seen working."""
        events = self._new_unknown_orders(account, own)
        self._record(events, now)
        return events

    def _new_unknown_orders(self, account: AccountState, own: Iterable[str]) -> list[dict[str, Any]]:
        if not account.open_orders:  # nothing working at the broker: nothing to look up in the ledger
            return []
        known = self._repository.client_order_ids(self._broker_name) | set(own)
        known |= {p.client_order_id for p in self._repository.pending_intents(self._broker_name)}
        events = [
            e
            for e in compare_orders(known, account, self._parent_of)
            if e["details"]["client_order_id"] not in self._flagged
        ]
        self._flagged.update(e["details"]["client_order_id"] for e in events)
        return events

    def _record(self, events: list[dict[str, Any]], now: datetime) -> None:
        for e in events:
            logger.warning("reconciliation: {} {}: {} ({})", e["kind"], e["symbol"], e["details"], e["resolution"])
        self._repository.record_reconciliation(self._run_id, now, events)
        if events and self.on_found is not None:
            self.on_found(events)

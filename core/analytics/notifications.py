"""Notification messages, built by pure functions from what the daemon records.

:func:`iteration_notes` turns one iteration's record (the Audit agent's
:class:`~core.persistence.repository.IterationRecord`, with the reconciliation discrepancies found during it) into
:class:`Note` lines of a :class:`Kind` each: entries and exits with price, size, reason and strategy; stop and target
fills; drawdown locks, halts, releases and resets; breaker trips and recoveries; reconciliation discrepancies; data
problems; a failed or degraded iteration; and the end-of-session summary. :func:`bundle` makes the one message of the
iteration out of them. The daemon's start, stop and crash, an unhealthy health check and a manual reset are messages
of their own (:func:`lifecycle_message`). Delivery (apprise) is an adapter: :mod:`core.notify`.

Times are shown in New York time; amounts with thousands separators and cents.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from core.kernel.domain import TERMINAL_ORDER_STATUSES, Decision, Order, OrderType, Position, Side
from core.persistence.repository import IterationRecord
from core.vocabulary import ALL_NOTIFY_KINDS as ALL_KINDS
from core.vocabulary import NotifyKind as Kind
from core.vocabulary import parse_notify_kinds as parse_kinds

__all__ = [
    "ALL_KINDS",
    "IMMEDIATE_KINDS",
    "Kind",
    "Message",
    "Note",
    "bundle",
    "discrepancy_notes",
    "iteration_notes",
    "lifecycle_message",
    "parse_kinds",
    "session_summary",
    "working_orders",
]

NEW_YORK = ZoneInfo("America/New_York")
TRADING_STATE = "trading_state"  # the breaker_events name of the Risk agent's state transitions
IMMEDIATE_KINDS = frozenset({Kind.START, Kind.STOP, Kind.CRASH, Kind.HEALTH})


@dataclass(frozen=True, slots=True)
class Note:
    """One line of a notification."""

    kind: Kind
    text: str


@dataclass(frozen=True, slots=True)
class Message:
    """One notification: a title and a body; ``kinds``: what it bundles (for the record and the switches)."""

    title: str
    body: str
    kinds: tuple[Kind, ...]
    failure: bool = False  # a crash, an unhealthy check, a failed iteration: sent as a failure notification


def _ny(at: datetime) -> str:
    return at.astimezone(NEW_YORK).strftime("%Y-%m-%d %H:%M %Z")


def _money(value: Decimal | float | None) -> str:
    return "n/a" if value is None else f"{Decimal(str(value)):,.2f}"


def _signed(value: Decimal | float) -> str:
    amount = Decimal(str(value))
    return f"{'+' if amount >= 0 else '-'}{abs(amount):,.2f}"


def _price(value: Decimal | float | None) -> str:
    return "n/a" if value is None else f"{float(value):,.4f}".rstrip("0").rstrip(".")


def _is_protective(order: Order) -> str | None:
    """``stop-loss`` / ``take-profit`` / ``trailing stop`` for a protective leg of a position, else None."""
    reason = order.reason.lower()
    if reason.startswith("stop-loss") or order.client_order_id.endswith("-sl"):
        return "stop-loss"
    if reason.startswith("take-profit") or order.client_order_id.endswith("-tp"):
        return "take-profit"
    if order.order_type is OrderType.STOP and order.side is Side.SELL:
        return "stop"
    return None


def _submitted_ids(decisions: Sequence[Decision]) -> list[str]:
    """The client order ids the Execution agent submitted this iteration, in order."""
    ids = []
    for d in decisions:
        if d.agent == "execution" and d.action == "submitted":
            coid = d.inputs.get("client_order_id")
            if isinstance(coid, str):
                ids.append(coid)
    return ids


def _order_notes(record: IterationRecord) -> list[Note]:
    by_id = {o.client_order_id: o for o in record.orders}
    notes = []
    for coid in _submitted_ids(record.decisions):
        order = by_id.get(coid)
        if order is None or _is_protective(order) is not None:
            continue
        kind = Kind.ENTRY if order.side is Side.BUY else Kind.EXIT
        label = "ENTRY" if kind is Kind.ENTRY else "EXIT"
        limit = f" limit {_price(order.limit_price)}" if order.limit_price is not None else ""
        status = order.status.value
        notes.append(
            Note(
                kind,
                f"{label} {order.symbol}: {order.side.value.upper()} {order.quantity} ({order.order_type.value}{limit},"
                f" {status}) - strategy {order.strategy or 'n/a'}; {order.reason}",
            )
        )
    return notes


def _fill_notes(record: IterationRecord, orders: Mapping[str, Order]) -> list[Note]:
    notes = []
    for fill in record.fills:
        order = orders.get(fill.client_order_id)
        protective = _is_protective(order) if order is not None else None
        if protective is None and order is None:
            suffix = fill.client_order_id.rsplit("-", 1)[-1]
            protective = {"sl": "stop-loss", "tp": "take-profit"}.get(suffix)
        strategy = f" - strategy {order.strategy}" if order is not None and order.strategy else ""
        value = fill.price * fill.quantity
        text = (
            f"{fill.symbol}: {fill.side.value.upper()} {fill.quantity} @ {_price(fill.price)} "
            f"(value {_money(value)}, commission {_money(fill.commission)}){strategy}"
        )
        if protective is not None:
            notes.append(Note(Kind.FILL, f"{protective.upper()} FILLED {text}"))
        elif fill.side is Side.BUY:
            notes.append(Note(Kind.ENTRY, f"ENTRY FILLED {text}"))
        else:
            notes.append(Note(Kind.EXIT, f"EXIT FILLED {text}"))
    return notes


def _breaker_notes(events: Iterable[Mapping[str, Any]]) -> list[Note]:
    notes = []
    for e in events:
        name, to_state, reason = str(e.get("name")), str(e.get("to_state")), str(e.get("reason") or "")
        if name == TRADING_STATE:
            details = e.get("details") or {}
            event = str(details.get("event") or to_state) if isinstance(details, Mapping) else to_state
            word = {"lock": "LOCKED", "halt": "HALTED", "reset": "RESET"}.get(event, event.upper())
            notes.append(Note(Kind.PROTECTION, f"TRADING {word} ({e.get('from_state')} -> {to_state}): {reason}"))
        elif name == "manual_reset":
            notes.append(Note(Kind.PROTECTION, f"TRADING RESET ({e.get('from_state')} -> {to_state}): {reason}"))
        else:
            what = (
                "TRIPPED"
                if to_state in ("open", "lost")
                else ("RECOVERED" if to_state in ("closed", "held") else to_state)
            )
            notes.append(Note(Kind.BREAKER, f"BREAKER {name} {what} ({e.get('from_state')} -> {to_state}): {reason}"))
    return notes


def discrepancy_notes(discrepancies: Iterable[Mapping[str, Any]]) -> list[Note]:
    """One note per reconciliation discrepancy (``reconciliation_events`` rows: kind, symbol, details, resolution)."""
    return [
        Note(
            Kind.RECONCILIATION,
            f"RECONCILIATION {d.get('kind')} {d.get('symbol')}: "
            + ", ".join(f"{k} {v}" for k, v in (d.get("details") or {}).items())
            + f" - {d.get('resolution')}",
        )
        for d in discrepancies
    ]


def _data_notes(record: IterationRecord) -> list[Note]:
    facts = record.report_facts
    notes = []
    rejected: Mapping[str, str] = facts.get("rejected") or {}
    flagged: Mapping[str, str] = facts.get("flagged") or {}
    if record.symbols_total == 0 or record.symbols_ok == 0:
        notes.append(
            Note(
                Kind.DATA,
                f"NO USABLE DATA: {record.symbols_ok} of {record.symbols_total} symbols clean; no new entries",
            )
        )
    for symbol, why in sorted(rejected.items()):
        notes.append(Note(Kind.DATA, f"DATA {symbol} excluded: {why}"))
    for symbol, why in sorted(flagged.items()):
        notes.append(Note(Kind.DATA, f"DATA {symbol} flagged (positions managed, no new entry): {why}"))
    return notes


def _health_notes(record: IterationRecord) -> list[Note]:
    if record.status == "ok":
        return []
    return [Note(Kind.HEALTH, f"ITERATION {record.status.upper()}: {record.error or 'no reason recorded'}")]


def working_orders(known: Mapping[str, Order]) -> list[Order]:
    """The orders of ``known`` (client id -> latest state) still working at the broker."""
    return sorted(
        (o for o in known.values() if o.status not in TERMINAL_ORDER_STATUSES),
        key=lambda o: (o.symbol, o.client_order_id),
    )


def _unrealised(p: Position) -> Decimal | None:
    if p.last_price is None:
        return None
    return (p.last_price - p.average_price) * p.quantity


def session_summary(record: IterationRecord, *, day_start_equity: Decimal | None, working: Sequence[Order]) -> Note:
    """The end-of-session summary: equity, the day's P&L against ``day_start_equity`` (the last equity of the previous
    session; None: unknown), the open positions with their unrealised P&L, and ``working`` orders."""
    equity = record.equity.equity if record.equity is not None else None
    day = (
        f"{_signed(equity - day_start_equity)} ({(equity / day_start_equity - 1) * 100:+.2f}%)"
        if equity is not None and day_start_equity
        else "n/a"
    )
    lines = [f"SUMMARY {record.as_of.astimezone(NEW_YORK):%Y-%m-%d}: equity {_money(equity)}, day P&L {day}"]
    if record.equity is not None:
        lines[0] += f", cash {_money(record.equity.cash)}"
    positions = [p for p in (record.positions or {}).values() if p.quantity]
    if record.positions is None:
        lines.append("  positions: unknown (the account could not be read)")
    elif not positions:
        lines.append("  positions: none")
    for p in sorted(positions, key=lambda p: p.symbol):
        pnl = _unrealised(p)
        levels = record.position_levels.get(p.symbol, {})
        stop = f", stop {_price(levels.get('stop'))}" if levels.get("stop") is not None else ""
        target = f", target {_price(levels.get('target'))}" if levels.get("target") is not None else ""
        lines.append(
            f"  {p.symbol} {p.quantity} @ {_price(p.average_price)}, last {_price(p.last_price)}, "
            f"unrealised {_signed(pnl) if pnl is not None else 'n/a'}{stop}{target}"
        )
    lines.append(
        f"  orders working: {len(working)}"
        + (
            ": " + ", ".join(f"{o.symbol} {o.side.value} {o.quantity} {o.order_type.value}" for o in working)
            if working
            else ""
        )
    )
    return Note(Kind.SUMMARY, "\n".join(lines))


def iteration_notes(
    record: IterationRecord,
    *,
    discrepancies: Sequence[Mapping[str, Any]] = (),
    orders: Mapping[str, Order] | None = None,
    summary: bool = False,
    day_start_equity: Decimal | None = None,
) -> list[Note]:
    """Every note of one iteration, in a fixed order: health, data, protection and breakers, reconciliation, orders
    submitted, fills, then (``summary``) the end-of-session summary. ``orders``: the latest state of every order known
    (client id -> order, this iteration's included), to classify fills and count working orders."""
    known = dict(orders) if orders is not None else {}
    known.update({o.client_order_id: o for o in record.orders})
    notes = [
        *_health_notes(record),
        *_data_notes(record),
        *_breaker_notes(record.breaker_events),
        *discrepancy_notes(discrepancies),
        *_order_notes(record),
        *_fill_notes(record, known),
    ]
    if summary:
        notes.append(session_summary(record, day_start_equity=day_start_equity, working=working_orders(known)))
    return notes


def bundle(record: IterationRecord, notes: Sequence[Note], *, label: str = "") -> Message | None:
    """The iteration's one message (None when no note is left)."""
    if not notes:
        return None
    kinds = tuple(dict.fromkeys(n.kind for n in notes))
    prefix = f"[{label}] " if label else ""
    counts = ", ".join(f"{sum(1 for n in notes if n.kind is k)} {k.value}" for k in kinds)
    return Message(
        title=f"{prefix}iteration {_ny(record.as_of)}: {counts}",
        body="\n".join(n.text for n in notes),
        kinds=kinds,
        failure=record.status == "failed",
    )


def lifecycle_message(kind: Kind, at: datetime, text: str, *, label: str = "") -> Message:
    """A message sent at once: the daemon started, stopped or crashed, a health check failed, a manual reset."""
    prefix = f"[{label}] " if label else ""
    what = {
        Kind.START: "daemon started",
        Kind.STOP: "daemon stopped",
        Kind.CRASH: "daemon CRASHED",
        Kind.HEALTH: "health check UNHEALTHY",
        Kind.PROTECTION: "trading state reset",
    }.get(kind, kind.value)
    return Message(
        title=f"{prefix}{what} {_ny(at)}",
        body=text,
        kinds=(kind,),
        failure=kind in (Kind.CRASH, Kind.HEALTH),
    )

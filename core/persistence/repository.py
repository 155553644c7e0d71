"""The repository: every write of an iteration happens in one transaction (all or nothing)."""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo
from decimal import Decimal
from typing import Any, NamedTuple, cast
from collections.abc import Callable, Iterable, Mapping, Sequence

from sqlalchemy import CursorResult, Engine, Table, bindparam, event, func, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from core.kernel.domain import (
    EXACT,
    Decision,
    EquitySnapshot,
    Fill,
    Order,
    OrderIntent,
    OrderStatus,
    OrderType,
    Position,
    Side,
    to_money,
    to_price,
)
from core.persistence.models import (
    Base,
    AuditReportRow,
    BreakerEventRow,
    DaemonStateRow,
    DecisionRow,
    EquitySnapshotRow,
    FillRow,
    Iteration,
    OrderRow,
    LLMCallRow,
    NotificationRow,
    OrderIntentRow,
    PositionRow,
    ReconciliationRow,
    Run,
    ShadowMatrixRow,
)
from core.persistence.shadow import pack_shadow
from utils.jsonable import jsonable


def _table(model: type[Base]) -> Table:
    """The model's table: ``__table__`` is typed as any FROM clause, the metadata holds the very ``Table``."""
    return model.metadata.tables[model.__tablename__]


class _BulkInsert:
    """An INSERT of given columns run as one ``executemany`` of the driver: the statement compiled once, each row's
    values put through the columns' own bind processors (the very ones SQLAlchemy applies), without SQLAlchemy's
    per-statement and per-row parameter handling. Only for statements whose compiled parameters are exactly the
    given columns, in SQLite's positional style (see :func:`_insert`)."""

    __slots__ = ("sql", "keys", "processors", "_pairs")

    def __init__(self, sql: str, keys: tuple[str, ...], processors: Sequence[Callable[[Any], Any] | None]) -> None:
        self.sql, self.keys, self.processors = sql, keys, processors
        self._pairs = tuple(zip(keys, processors, strict=True))

    def parameters(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]] | None:
        """Every row's values in the statement's order, processed; None when a row has other columns or a value
        cannot be processed (SQLAlchemy then runs the statement and raises its usual error)."""
        pairs, width = self._pairs, len(self.keys)
        out: list[tuple[Any, ...]] = []
        for row in rows:
            if len(row) != width:
                return None
            try:
                out.append(tuple(row[k] if p is None else p(row[k]) for k, p in pairs))
            except Exception:  # a missing column or a value a processor refuses: SQLAlchemy reports it as usual
                return None
        return out


# per dialect object (its options, such as the JSON serializer, are part of the processors), per table and columns
_BULK: weakref.WeakKeyDictionary[Dialect, dict[tuple[str, tuple[str, ...]], _BulkInsert | None]] = (
    weakref.WeakKeyDictionary()
)


def _bulk_insert(table: Table, keys: tuple[str, ...], dialect: Dialect) -> _BulkInsert | None:
    """The direct INSERT of ``keys`` into ``table`` (memoised), or None when SQLAlchemy would bind anything else
    (a column default, another parameter style): then the statement runs through SQLAlchemy as usual."""
    plans = _BULK.setdefault(dialect, {})
    memo = (table.name, keys)
    if memo not in plans:
        plan: _BulkInsert | None = None
        compiled = table.insert().compile(dialect=dialect, column_keys=list(keys))
        if dialect.paramstyle == "qmark" and compiled.positiontup is not None and tuple(compiled.positiontup) == keys:
            processors = [table.c[k].type.dialect_impl(dialect).bind_processor(dialect) for k in keys]
            plan = _BulkInsert(compiled.string, keys, processors)
        plans[memo] = plan
    return plans[memo]


def _insert(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """``session.execute(table.insert(), rows)``; on SQLite as one direct ``executemany`` (:class:`_BulkInsert`),
    which stores the same values."""
    _insert_chunks(session, table, [_encoded(table, rows, session.connection().dialect)])


def _encoded(table: Table, rows: Sequence[Mapping[str, Any]], dialect: Dialect) -> _Chunk:
    """``rows`` of ``table`` as the driver's values when they can be written directly (SQLite), else as they are."""
    plan = _bulk_insert(table, tuple(rows[0]), dialect) if dialect.name == "sqlite" else None
    parameters = plan.parameters(rows) if plan is not None else None
    if plan is None or parameters is None:
        return _Chunk(None, list(rows))
    return _Chunk(plan, parameters)


def _insert_chunks(session: Session, table: Table, chunks: Sequence[_Chunk]) -> None:
    """Insert the chunks' rows in order: consecutive chunks of one direct statement as one ``executemany``, the
    others through SQLAlchemy (one statement per run of such chunks)."""
    k = 0
    while k < len(chunks):
        plan = chunks[k].plan
        run: list[Any] = []
        while k < len(chunks) and chunks[k].plan is plan:
            run.extend(chunks[k].rows)
            k += 1
        if plan is None:
            session.execute(table.insert(), run)
        else:
            session.connection().exec_driver_sql(plan.sql, run)


class _Chunk(NamedTuple):
    """One iteration's rows of one table: the driver's values of ``plan`` or, without a plan, the rows' mappings."""

    plan: _BulkInsert | None
    rows: list[Any]


class _OrderOf(NamedTuple):
    """Where an order was recorded (the run and iteration of the record that carried it)."""

    run_id: str
    iteration_id: str


class _PositionsAt(NamedTuple):
    """A record's positions and their exit levels, with its run, iteration and time (the ``positions`` table)."""

    run_id: str
    iteration_id: str
    as_of: datetime
    positions: Mapping[str, Position]
    position_levels: Mapping[str, Mapping[str, float | None]]


@dataclass(frozen=True, slots=True)
class PreparedIteration:
    """An iteration record's rows, ready to write (:meth:`Repository.prepare_iteration`)."""

    recorded_at: datetime
    tables: Mapping[str, _Chunk]
    orders: Sequence[tuple[_OrderOf, Order]]
    positions: _PositionsAt | None
    state: Mapping[str, Mapping[str, Any]]


class IterationBatch:
    """Prepared iterations waiting for one transaction, merged as they are added: each table's rows in record order
    (one list per run of rows of the same direct statement), the orders in order, the latest positions and the latest
    value of each state key, which is what writing the iterations one after the other leaves. A batch kept open across
    many iterations therefore holds a few lists of plain values, not an object per row."""

    __slots__ = ("count", "recorded_at", "tables", "orders", "positions", "state")

    def __init__(self) -> None:
        self.count = 0
        self.recorded_at: datetime | None = None
        self.tables: dict[str, list[_Chunk]] = {}
        self.orders: list[tuple[_OrderOf, Order]] = []
        self.positions: _PositionsAt | None = None
        self.state: dict[str, Mapping[str, Any]] = {}

    def __len__(self) -> int:
        return self.count

    def add(self, prepared: PreparedIteration) -> None:
        self.count += 1
        self.recorded_at = prepared.recorded_at
        for name, chunk in prepared.tables.items():
            chunks = self.tables.setdefault(name, [])
            if chunks and chunks[-1].plan is chunk.plan:
                chunks[-1].rows.extend(chunk.rows)
            else:
                chunks.append(_Chunk(chunk.plan, list(chunk.rows)))
        self.orders.extend(prepared.orders)
        if prepared.positions is not None:  # the table holds the current positions: only the latest matters
            self.positions = prepared.positions
        self.state.update(prepared.state)  # later iterations' values win, as separate transactions would leave them


_ITERATIONS = _table(Iteration)
_DECISIONS = _table(DecisionRow)
_FILLS = _table(FillRow)
_POSITIONS = _table(PositionRow)
_EQUITY = _table(EquitySnapshotRow)
_REPORTS = _table(AuditReportRow)
_LLM_CALLS = _table(LLMCallRow)
_SHADOW = _table(ShadowMatrixRow)
_BREAKERS = _table(BreakerEventRow)
_STATE = _table(DaemonStateRow)
_ORDERS = _table(OrderRow)
_EASTERN = ZoneInfo("America/New_York")  # the exchange's time: a session's date
_INTENTS = _table(OrderIntentRow)
_TABLES = {t.name: t for t in (_ITERATIONS, _DECISIONS, _FILLS, _EQUITY, _REPORTS, _LLM_CALLS, _SHADOW, _BREAKERS)}
INTENT_PENDING, INTENT_RECORDED, INTENT_NEVER_ACCEPTED = "pending", "recorded", "never_accepted"
_POSITION_KINDS = ("unknown_position", "missing_position", "quantity_mismatch")
_ORDER_STATE = ("broker_order_id", "status", "filled_quantity", "average_fill_price", "updated_at")


_LLM_COLUMNS = (
    "purpose",
    "provider",
    "model",
    "prompt_version",
    "prompt_hash",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "latency_ms",
    "retries",
    "outcome",
    "validation_errors",
    "symbols",
    "error",
    "started_at",
)


def _price_or_none(value: float | None) -> Decimal | None:
    return to_price(value) if value is not None else None


def jsonable_row(call: Mapping[str, Any]) -> dict[str, Any]:
    """An LLM call record (``LLMCallRecord.to_dict()`` plus ``purpose``) as an ``llm_calls`` row."""
    row = {k: call.get(k) for k in _LLM_COLUMNS}
    row["validation_errors"] = {"errors": list(call.get("validation_errors") or ())}
    row["symbols"] = {"symbols": list(call.get("symbols") or ())}
    row["purpose"] = call.get("purpose") or "selection"
    started = row["started_at"]
    if isinstance(started, str):
        row["started_at"] = datetime.fromisoformat(started)
    cost = row["cost_usd"]
    row["cost_usd"] = Decimal(str(cost)) if cost is not None else None
    row["outcome"] = str(row["outcome"])
    return row


@dataclass(frozen=True, slots=True)
class PendingIntent:
    """An order intent whose outcome at the broker is not yet in the ledger (see ``order_intents``)."""

    client_order_id: str
    intent: OrderIntent
    run_id: str
    iteration_id: str
    created_at: datetime
    lookups: int
    last_error: str | None


def _decimal_or_none(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(repr(float(value)))


@dataclass(frozen=True, slots=True)
class IterationRecord:
    run_id: str
    iteration_id: str
    seq: int
    as_of: datetime
    recorded_at: datetime
    status: str
    error: str | None
    symbols_total: int
    symbols_ok: int
    data_quality: float
    decisions: Sequence[Decision] = ()
    orders: Sequence[Order] = ()
    fills: Sequence[Fill] = ()
    positions: Mapping[str, Position] | None = None
    equity: EquitySnapshot | None = None
    report_kind: str | None = None
    report_text: str | None = None
    report_facts: Mapping[str, Any] = field(default_factory=dict)
    signals: int = 0
    approvals: int = 0
    denials: int = 0
    orders_submitted: int = 0
    llm_calls: Sequence[Mapping[str, Any]] = ()
    shadow: Sequence[Mapping[str, Any]] = ()
    breaker_events: Sequence[Mapping[str, Any]] = ()
    state: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    position_levels: Mapping[str, Mapping[str, float | None]] = field(default_factory=dict)


class Repository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._last_state: dict[str, Any] = {}
        event.listen(self._sessions, "after_commit", self._remember_state)

    def _remember_state(self, session: Session) -> None:
        for row in session.info.pop("state_written", ()):
            self._last_state[row["key"]] = row["value"]

    def session(self) -> Session:
        return self._sessions()

    # --- runs ----------------------------------------------------------------------------------------
    def create_run(
        self,
        run_id: str,
        *,
        kind: str,
        broker: str,
        data_provider: str,
        started_at: datetime,
        initial_cash: Decimal,
        symbols: Sequence[str],
        config: Mapping[str, Any],
    ) -> None:
        with self._sessions.begin() as session:
            session.add(
                Run(
                    id=run_id,
                    kind=kind,
                    broker=broker,
                    data_provider=data_provider,
                    started_at=started_at,
                    finished_at=None,
                    status="running",
                    initial_cash=initial_cash,
                    symbols={"symbols": list(symbols)},
                    config=jsonable(dict(config)),
                )
            )

    def note_run_config(self, run_id: str, values: Mapping[str, Any]) -> None:
        """Merge ``values`` into the run's ``config`` JSON (how the run was conducted: an LLM budget switch, the
        prompt blinding)."""
        with self._sessions.begin() as session:
            run = session.get(Run, run_id)
            if run is not None:
                run.config = {**(run.config or {}), **jsonable(dict(values))}

    def finish_run(self, run_id: str, *, status: str, at: datetime) -> None:
        with self._sessions.begin() as session:
            session.execute(update(Run).where(Run.id == run_id).values(status=status, finished_at=at))

    def mark_killed_runs(self, at: datetime) -> list[str]:
        """Runs still ``running`` are marked ``killed`` (finished at ``at``, when this was detected). Call only while
        holding the database's daemon lock: every run holds it while it runs, so no run left ``running`` is alive."""
        with self._sessions.begin() as session:
            ids = list(session.scalars(select(Run.id).where(Run.status == "running").order_by(Run.started_at)))
            if ids:
                session.execute(update(Run).where(Run.id.in_(ids)).values(status="killed", finished_at=at))
        return ids

    # --- iterations ----------------------------------------------------------------------------------
    def record_iteration(self, record: IterationRecord) -> None:
        """Write the iteration, its decisions, orders, fills, positions, equity and report atomically."""
        self.record_iterations([record])

    def record_iterations(self, records: Iterable[IterationRecord]) -> None:
        """Several iterations in one transaction (backtests batch their writes): one executemany per table."""
        batch = IterationBatch()
        for r in records:
            batch.add(self.prepare_iteration(r))
        self.write_iterations(batch)

    def write_iterations(self, batch: IterationBatch) -> None:
        """Write a batch of prepared iterations (:meth:`prepare_iteration`) in one transaction (nothing when empty)."""
        if not batch:
            return
        with self._sessions.begin() as session:
            self._write_iterations(session, batch)

    def prepare_iteration(self, r: IterationRecord) -> PreparedIteration:
        """The rows ``r`` writes, each table's built and (on SQLite) already encoded as the driver's values (see
        :class:`_BulkInsert`): a batch waiting for its transaction then holds text, numbers and bytes rather than
        the record's objects. Writing them (:meth:`IterationBatch.add`, :meth:`write_iterations`) stores what
        writing ``r`` stores."""
        dialect = self.engine.dialect
        rows: dict[str, list[dict[str, Any]]] = {
            _ITERATIONS.name: [
                {
                    "id": r.iteration_id,
                    "run_id": r.run_id,
                    "seq": r.seq,
                    "as_of": r.as_of,
                    "recorded_at": r.recorded_at,
                    "status": r.status,
                    "error": r.error,
                    "symbols_total": r.symbols_total,
                    "symbols_ok": r.symbols_ok,
                    "data_quality": r.data_quality,
                    "signals": r.signals,
                    "approvals": r.approvals,
                    "denials": r.denials,
                    "orders": r.orders_submitted,
                    "fills": len(r.fills),
                }
            ],
            _DECISIONS.name: [
                {
                    "run_id": r.run_id,
                    "iteration_id": r.iteration_id,
                    "as_of": r.as_of,
                    "agent": d.agent,
                    "symbol": d.symbol,
                    "action": d.action,
                    "strategy": d.strategy,
                    "confidence": d.confidence,
                    "reason": d.reason,
                    "inputs": jsonable(d.inputs),
                }
                for d in r.decisions
            ],
            _FILLS.name: [
                {
                    "fill_id": f.fill_id,
                    "client_order_id": f.client_order_id,
                    "run_id": r.run_id,
                    "iteration_id": r.iteration_id,
                    "symbol": f.symbol,
                    "side": f.side.value,
                    "quantity": Decimal(f.quantity),
                    "price": f.price,
                    "commission": f.commission,
                    "filled_at": f.filled_at,
                }
                for f in r.fills
            ],
            _EQUITY.name: [
                {
                    "run_id": r.run_id,
                    "iteration_id": r.iteration_id,
                    "at": r.equity.at,
                    "cash": to_money(r.equity.cash, EXACT),
                    "market_value": to_money(r.equity.market_value, EXACT),
                    "equity": to_money(r.equity.equity, EXACT),
                    "positions": r.equity.positions,
                }
            ]
            if r.equity is not None
            else [],
            _REPORTS.name: [
                {
                    "run_id": r.run_id,
                    "iteration_id": r.iteration_id,
                    "at": r.as_of,
                    "kind": r.report_kind or "template",
                    "text": r.report_text,
                    "facts": jsonable(dict(r.report_facts)),
                }
            ]
            if r.report_text is not None
            else [],
            _LLM_CALLS.name: [
                {"run_id": r.run_id, "iteration_id": r.iteration_id, **jsonable_row(c)} for c in r.llm_calls
            ],
            _SHADOW.name: [  # one packed row per iteration (core.persistence.shadow)
                {"run_id": r.run_id, "iteration_id": r.iteration_id, "as_of": r.as_of, **pack_shadow(r.shadow)}
            ]
            if r.shadow
            else [],
            _BREAKERS.name: [{"run_id": r.run_id, "details": None, **dict(e)} for e in r.breaker_events],
        }
        return PreparedIteration(
            recorded_at=r.recorded_at,
            tables={
                name: _encoded(_TABLES[name], table_rows, dialect) for name, table_rows in rows.items() if table_rows
            },
            orders=[(_OrderOf(r.run_id, r.iteration_id), o) for o in r.orders],
            positions=_PositionsAt(r.run_id, r.iteration_id, r.as_of, r.positions, r.position_levels)
            if r.positions is not None
            else None,
            state=r.state,
        )

    def _write_iterations(self, session: Session, batch: IterationBatch) -> None:
        def insert(table: Table) -> None:  # the batch's rows of ``table``, in record order
            _insert_chunks(session, table, batch.tables.get(table.name, ()))

        assert batch.recorded_at is not None
        insert(_ITERATIONS)  # first: the other rows reference their iteration
        insert(_DECISIONS)
        if batch.orders:
            self._upsert_orders(session, batch.orders)
            self._settle_recorded_intents(session, {o.client_order_id for _, o in batch.orders}, batch.recorded_at)
        insert(_FILLS)
        if batch.positions is not None:
            self._replace_positions(session, batch.positions)
        for table in (_EQUITY, _REPORTS, _LLM_CALLS, _SHADOW, _BREAKERS):
            insert(table)
        if batch.state:
            self._upsert_state(session, batch.state, batch.recorded_at)

    @staticmethod
    def _replace_positions(session: Session, r: _PositionsAt) -> None:
        assert r.positions is not None
        session.execute(_POSITIONS.delete().where(_POSITIONS.c.run_id == r.run_id))
        rows = [
            {
                "run_id": r.run_id,
                "symbol": p.symbol,
                "quantity": Decimal(p.quantity),
                "average_price": p.average_price,
                "last_price": p.last_price,
                "market_value": to_money(p.market_value, EXACT),
                "realized_pnl": to_money(p.realized_pnl, EXACT),
                "opened_at": p.opened_at,
                "updated_at": r.as_of,
                "iteration_id": r.iteration_id,
                "stop_price": _price_or_none(r.position_levels.get(p.symbol, {}).get("stop")),
                "target_price": _price_or_none(r.position_levels.get(p.symbol, {}).get("target")),
            }
            for p in r.positions.values()
            if p.quantity != 0
        ]
        if rows:
            session.execute(_POSITIONS.insert(), rows)

    def _upsert_orders(self, session: Session, pairs: Sequence[tuple[_OrderOf, Order]]) -> None:
        """Insert new orders and update known ones, in record order: one SELECT, then one executemany per kind of
        statement. An order first seen in this batch is inserted with its latest state."""
        ids = list({o.client_order_id for _, o in pairs})
        existing: set[str] = set()
        for k in range(0, len(ids), 500):
            chunk = ids[k : k + 500]
            existing.update(
                session.scalars(select(OrderRow.client_order_id).where(OrderRow.client_order_id.in_(chunk)))
            )
        inserts: dict[str, dict[str, Any]] = {}
        updates: dict[str, dict[str, Any]] = {}
        for r, o in pairs:
            values = {
                "broker_order_id": o.broker_order_id,
                "status": o.status.value,
                "filled_quantity": Decimal(o.filled_quantity),
                "average_fill_price": to_price(o.average_fill_price) if o.average_fill_price is not None else None,
                "updated_at": o.updated_at or o.submitted_at,
            }
            coid = o.client_order_id
            if coid in existing:
                updates[coid] = {"key": coid, **values}
            elif coid in inserts:
                inserts[coid].update(values)
            else:
                inserts[coid] = {
                    "client_order_id": coid,
                    "run_id": r.run_id,
                    "iteration_id": r.iteration_id,
                    "symbol": o.symbol,
                    "side": o.side.value,
                    "order_type": o.order_type.value,
                    "quantity": Decimal(o.quantity),
                    "limit_price": to_price(o.limit_price) if o.limit_price is not None else None,
                    "stop_price": to_price(o.stop_price) if o.stop_price is not None else None,
                    "submitted_at": o.submitted_at,
                    "strategy": o.strategy,
                    "reason": o.reason,
                    **values,
                }
        if inserts:
            _insert(session, _ORDERS, list(inserts.values()))
        if updates:
            session.execute(
                _ORDERS.update()
                .where(_ORDERS.c.client_order_id == bindparam("key"))
                .values({name: bindparam(name) for name in _ORDER_STATE}),
                list(updates.values()),
            )

    @staticmethod
    def _settle_recorded_intents(session: Session, client_order_ids: set[str], at: datetime) -> None:
        """Intents whose order is written in this transaction are settled in it too (any earlier verdict, such as
        ``never_accepted``, yields to the order the broker turned out to have)."""
        ids = sorted(client_order_ids)
        for k in range(0, len(ids), 500):
            session.execute(
                _INTENTS.update()
                .where(_INTENTS.c.client_order_id.in_(ids[k : k + 500]), _INTENTS.c.status != INTENT_RECORDED)
                .values(status=INTENT_RECORDED, resolved_at=at)
            )

    # --- orders in doubt (written before submission) ---------------------------------------------------
    def record_intent(
        self, *, run_id: str, iteration_id: str, broker: str, client_order_id: str, intent: OrderIntent, at: datetime
    ) -> None:
        """Write (and commit) an order the daemon is about to submit, before the request leaves the process.

        A second submission of the same client order id (a retried or restarted iteration) keeps the one row: an
        already recorded intent stays recorded, any other becomes pending again."""
        values = {
            "client_order_id": client_order_id,
            "broker": broker,
            "run_id": run_id,
            "iteration_id": iteration_id,
            "symbol": intent.symbol,
            "side": intent.side.value,
            "order_type": intent.order_type.value,
            "quantity": Decimal(intent.quantity)
            if not isinstance(intent.quantity, float)
            else Decimal(repr(intent.quantity)),
            "limit_price": _decimal_or_none(intent.limit_price),
            "stop_price": _decimal_or_none(intent.stop_price),
            "stop_loss": _decimal_or_none(intent.stop_loss),
            "take_profit": _decimal_or_none(intent.take_profit),
            "reference_price": Decimal(repr(float(intent.reference_price))),
            "strategy": intent.strategy,
            "confidence": float(intent.confidence),
            "reason": intent.reason,
            "created_at": at,
            "status": INTENT_PENDING,
            "lookups": 0,
            "last_error": None,
            "resolved_at": None,
        }
        with self._sessions.begin() as session:
            status = session.scalar(select(_INTENTS.c.status).where(_INTENTS.c.client_order_id == client_order_id))
            if status is None:
                session.execute(_INTENTS.insert(), [values])
            elif status != INTENT_RECORDED:
                session.execute(
                    _INTENTS.update()
                    .where(_INTENTS.c.client_order_id == client_order_id)
                    .values(
                        status=INTENT_PENDING, resolved_at=None, created_at=at, run_id=run_id, iteration_id=iteration_id
                    )
                )

    def pending_intents(self, broker: str) -> list[PendingIntent]:
        """The broker's intents still in doubt, oldest first."""
        with self.session() as session:
            rows = session.scalars(
                select(OrderIntentRow)
                .where(OrderIntentRow.broker == broker, OrderIntentRow.status == INTENT_PENDING)
                .order_by(OrderIntentRow.id)
            ).all()
        return [
            PendingIntent(
                client_order_id=r.client_order_id,
                intent=OrderIntent(
                    symbol=r.symbol,
                    side=Side(r.side),
                    quantity=int(r.quantity) if r.quantity == r.quantity.to_integral_value() else r.quantity,  # type: ignore[arg-type]
                    order_type=OrderType(r.order_type),
                    reference_price=float(r.reference_price),
                    strategy=r.strategy,
                    confidence=r.confidence,
                    reason=r.reason,
                    stop_loss=float(r.stop_loss) if r.stop_loss is not None else None,
                    take_profit=float(r.take_profit) if r.take_profit is not None else None,
                    limit_price=float(r.limit_price) if r.limit_price is not None else None,
                    stop_price=float(r.stop_price) if r.stop_price is not None else None,
                ),
                run_id=r.run_id,
                iteration_id=r.iteration_id,
                created_at=r.created_at,
                lookups=r.lookups,
                last_error=r.last_error,
            )
            for r in rows
        ]

    def note_intent_lookup(self, client_order_id: str, *, error: str | None) -> None:
        """Count one lookup of a pending intent that did not settle it, with the error if the lookup failed."""
        with self._sessions.begin() as session:
            session.execute(
                _INTENTS.update()
                .where(_INTENTS.c.client_order_id == client_order_id)
                .values(lookups=_INTENTS.c.lookups + 1, last_error=error)
            )

    def settle_intent_never_accepted(self, client_order_id: str, at: datetime, note: str) -> None:
        """The broker has no order with this client id after the submission window: it was never accepted."""
        with self._sessions.begin() as session:
            session.execute(
                _INTENTS.update()
                .where(_INTENTS.c.client_order_id == client_order_id, _INTENTS.c.status == INTENT_PENDING)
                .values(status=INTENT_NEVER_ACCEPTED, resolved_at=at, lookups=_INTENTS.c.lookups + 1, last_error=note)
            )

    def intents(self, broker: str | None = None) -> list[dict[str, Any]]:
        """Every intent (client order id, symbol, side, status, lookups, last error), oldest first."""
        with self.session() as session:
            stmt = select(OrderIntentRow).order_by(OrderIntentRow.id)
            if broker is not None:
                stmt = stmt.where(OrderIntentRow.broker == broker)
            return [
                {
                    "client_order_id": r.client_order_id,
                    "symbol": r.symbol,
                    "side": r.side,
                    "status": r.status,
                    "lookups": r.lookups,
                    "last_error": r.last_error,
                    "created_at": r.created_at,
                    "resolved_at": r.resolved_at,
                }
                for r in session.scalars(stmt)
            ]

    # --- small persisted state ------------------------------------------------------------------------
    def _upsert_state(self, session: Session, values: Mapping[str, Mapping[str, Any]], at: datetime) -> None:
        """INSERT ... ON CONFLICT (key) DO UPDATE for every changed key, in one statement (SQLite and PostgreSQL)."""
        rows = []
        for key, value in values.items():
            plain = jsonable(dict(value))
            if self._last_state.get(key) == plain:
                continue  # unchanged since this process last wrote it
            rows.append({"key": str(key), "value": plain, "updated_at": at})
        if not rows:
            return
        dialect = session.get_bind().dialect.name
        make_insert = sqlite_insert if dialect == "sqlite" else pg_insert
        stmt = make_insert(_STATE)
        stmt = stmt.on_conflict_do_update(
            index_elements=[_STATE.c.key], set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at}
        )
        session.execute(stmt, rows)
        # remembered only once the transaction commits (see _sessions.begin in the callers)
        session.info.setdefault("state_written", []).extend(rows)

    def _put_state(self, session: Session, key: str, value: Mapping[str, Any], at: datetime) -> None:
        self._last_state.pop(key, None)
        self._upsert_state(session, {key: value}, at)

    def put_state(self, key: str, value: Mapping[str, Any], at: datetime) -> None:
        with self._sessions.begin() as session:
            self._put_state(session, key, value, at)

    def get_state(self, key: str) -> tuple[dict[str, Any], datetime] | None:
        with self.session() as session:
            row = session.get(DaemonStateRow, str(key))
            return (dict(row.value), row.updated_at) if row is not None else None

    def record_breaker_events(self, run_id: str, events: Sequence[Mapping[str, Any]]) -> None:
        if events:
            with self._sessions.begin() as session:
                session.execute(_BREAKERS.insert(), [{"run_id": run_id, "details": None, **dict(e)} for e in events])

    def trading_transitions(self, run_id: str, name: str = "trading_state") -> list[tuple[date, str, str, str]]:
        """The run's recorded trading-state changes, oldest first: ``(session date, from_state, to_state, reason)``
        (the session from the row's ``details``, else the row's time in New York)."""
        with self.session() as session:
            rows = session.execute(
                select(
                    BreakerEventRow.at,
                    BreakerEventRow.details,
                    BreakerEventRow.from_state,
                    BreakerEventRow.to_state,
                    BreakerEventRow.reason,
                )
                .where(BreakerEventRow.run_id == run_id, BreakerEventRow.name == name)
                .order_by(BreakerEventRow.at, BreakerEventRow.id)
            ).all()
        out = []
        for at, details, from_state, to_state, reason in rows:
            day = (
                date.fromisoformat(str(details["session"]))
                if details and details.get("session")
                else at.astimezone(_EASTERN).date()
            )
            out.append((day, from_state, to_state, reason))
        return out

    def record_llm_calls(self, run_id: str, iteration_id: str | None, calls: Sequence[Mapping[str, Any]]) -> None:
        if calls:
            with self._sessions.begin() as session:
                session.execute(
                    _LLM_CALLS.insert(),
                    [{"run_id": run_id, "iteration_id": iteration_id, **jsonable_row(c)} for c in calls],
                )

    def llm_usage_since(self, since: datetime, purpose: str | None = "selection") -> tuple[int, Decimal]:
        """Calls made and dollars spent since ``since`` (for restoring the daily LLM budget after a restart);
        ``purpose=None``: every purpose (selection and narrative share one budget)."""
        with self.session() as session:
            stmt = select(LLMCallRow.cost_usd, LLMCallRow.outcome).where(LLMCallRow.started_at >= since)
            if purpose is not None:
                stmt = stmt.where(LLMCallRow.purpose == purpose)
            rows = session.execute(stmt).all()
        calls = sum(1 for _, outcome in rows if outcome != "budget_exceeded")
        return calls, sum((c for c, _ in rows if c is not None), Decimal("0"))

    def recent_llm_outcomes(self, limit: int = 200) -> list[tuple[str, str, str, float]]:
        """The latest ``limit`` selection calls, oldest first, as (provider, model, outcome, latency_ms): what the
        provider ranking measures, restored after a restart."""
        with self.session() as session:
            rows = session.execute(
                select(LLMCallRow.provider, LLMCallRow.model, LLMCallRow.outcome, LLMCallRow.latency_ms)
                .where(LLMCallRow.purpose == "selection")
                .order_by(LLMCallRow.started_at.desc(), LLMCallRow.id.desc())
                .limit(limit)
            ).all()
        return [(p, m, o, float(latency)) for p, m, o, latency in reversed(rows)]

    def record_reconciliation(self, run_id: str, at: datetime, events: Sequence[Mapping[str, Any]]) -> None:
        if events:
            with self._sessions.begin() as session:
                session.execute(
                    _table(ReconciliationRow).insert(),
                    [
                        {
                            "run_id": run_id,
                            "at": at,
                            "symbol": e.get("symbol"),
                            "kind": e["kind"],
                            "details": jsonable(e.get("details", {})),
                            "resolution": e["resolution"],
                        }
                        for e in events
                    ],
                )

    def record_notifications(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Notification outcomes (``notifications`` columns: run_id, created_at, finished_at, kinds, title, body,
        status, error)."""
        if rows:
            with self._sessions.begin() as session:
                session.execute(_table(NotificationRow).insert(), [dict(r) for r in rows])

    def notification_counts(self, run_id: str | None = None) -> dict[str, int]:
        """How many notifications were recorded by status (``sent``, ``failed``, ``dropped``), of ``run_id`` or all."""
        query = select(NotificationRow.status, func.count()).group_by(NotificationRow.status)
        if run_id is not None:
            query = query.where(NotificationRow.run_id == run_id)
        with self.session() as session:
            return {status: int(n) for status, n in session.execute(query).all()}

    # --- reads used by agents ------------------------------------------------------------------------
    def equity_history(self, run_id: str, limit: int = 10) -> list[tuple[datetime, Decimal]]:
        """The run's latest equity snapshots, oldest first."""
        with self.session() as session:
            rows = session.execute(
                select(EquitySnapshotRow.at, EquitySnapshotRow.equity)
                .where(EquitySnapshotRow.run_id == run_id)
                .order_by(EquitySnapshotRow.at.desc())
                .limit(limit)
            ).all()
        return [(at, equity) for at, equity in reversed(rows)]

    def mark_iteration(self, iteration_id: str, *, status: str, error: str) -> bool:
        """Flag an already-recorded iteration (e.g. a handler failed beside the main chain). False if not recorded."""
        with self._sessions.begin() as session:
            result = session.execute(
                update(Iteration).where(Iteration.id == iteration_id).values(status=status, error=error)
            )
            return bool(cast(CursorResult[Any], result).rowcount)  # an UPDATE's result is a CursorResult

    # --- the broker's ledger (restarts and reconciliation) -------------------------------------------------
    def broker_ledger(self, broker_name: str) -> tuple[list[Order], list[Fill]]:
        """Every order and fill recorded for runs that used ``broker_name`` (to resume a broker after a restart)."""
        with self.session() as session:
            runs = select(Run.id).where(Run.broker == broker_name)
            order_rows = session.scalars(select(OrderRow).where(OrderRow.run_id.in_(runs)).order_by(OrderRow.id)).all()
            fill_rows = session.scalars(select(FillRow).where(FillRow.run_id.in_(runs)).order_by(FillRow.id)).all()
        orders = [
            Order(
                client_order_id=o.client_order_id,
                symbol=o.symbol,
                side=Side(o.side),
                quantity=int(o.quantity),
                order_type=OrderType(o.order_type),
                status=OrderStatus(o.status),
                submitted_at=o.submitted_at,
                strategy=o.strategy,
                reason=o.reason,
                broker_order_id=o.broker_order_id,
                limit_price=float(o.limit_price) if o.limit_price is not None else None,
                stop_price=float(o.stop_price) if o.stop_price is not None else None,
                filled_quantity=int(o.filled_quantity),
                average_fill_price=float(o.average_fill_price) if o.average_fill_price is not None else None,
                updated_at=o.updated_at,
            )
            for o in order_rows
        ]
        fills = [
            Fill(
                f.fill_id,
                f.client_order_id,
                f.symbol,
                Side(f.side),
                int(f.quantity),
                f.price,
                f.commission,
                f.filled_at,
            )
            for f in fill_rows
        ]
        return orders, fills

    def client_order_ids(self, broker_name: str) -> set[str]:
        with self.session() as session:
            runs = select(Run.id).where(Run.broker == broker_name)
            return set(session.scalars(select(OrderRow.client_order_id).where(OrderRow.run_id.in_(runs))))

    def ledger_positions(self, broker_name: str, *, exclude_run: str | None = None) -> dict[str, Decimal]:
        """The positions the ledger holds on ``broker_name``: every fill the daemon's runs recorded on it (signed),
        plus the adjustments earlier reconciliations made (an adopted or closed-outside position moves the ledger to
        the broker's quantity). Exact whatever the timing of the last recorded snapshot; non-zero symbols only."""
        held: dict[str, Decimal] = {}
        with self.session() as session:
            runs = select(Run.id).where(Run.broker == broker_name, Run.kind == "daemon")
            if exclude_run is not None:
                runs = runs.where(Run.id != exclude_run)
            for symbol, side, quantity in session.execute(
                select(FillRow.symbol, FillRow.side, FillRow.quantity).where(FillRow.run_id.in_(runs))
            ):
                held[symbol] = held.get(symbol, Decimal(0)) + (quantity if side == Side.BUY.value else -quantity)
            for symbol, details in session.execute(
                select(ReconciliationRow.symbol, ReconciliationRow.details)
                .where(ReconciliationRow.run_id.in_(runs), ReconciliationRow.kind.in_(_POSITION_KINDS))
                .order_by(ReconciliationRow.id)
            ):
                if symbol is None:
                    continue
                adjustment = Decimal(str(details.get("broker", "0"))) - Decimal(str(details.get("ledger", "0")))
                held[symbol] = held.get(symbol, Decimal(0)) + adjustment
        return {s: q for s, q in held.items() if q}

"""The repository's direct SQLite ``executemany`` (``_insert``) stores exactly what SQLAlchemy's own INSERT stores, for
every table the iteration writes and every kind of column value; rows it cannot take go through SQLAlchemy."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Float, Integer, LargeBinary, create_engine
from sqlalchemy.orm import Session

from core.persistence import repository
from core.persistence.models import Base
from core.persistence.types import Money, UTCDateTime

TABLES = ("iterations", "decisions", "fills", "orders", "equity_snapshots", "audit_reports", "llm_calls",
          "shadow_matrices", "breaker_events")  # fmt: skip
EASTERN = timezone(timedelta(hours=-5))


def _value(column: Any, k: int) -> Any:
    kind = column.type
    if column.nullable and k % 3 == 2:
        return None
    if isinstance(kind, UTCDateTime):
        return datetime(2020, 1, 2, 21, 0, 0, 123456 * (k % 2), tzinfo=UTC if k % 2 else EASTERN)
    if isinstance(kind, Money):
        return [Decimal("1.2345"), 2.5, 7, Decimal("-0.000001")][k % 4]
    if isinstance(kind, JSON):
        return [{"a": [1, None, 2.5], "b": "é"}, None, [], "text"][k % 4]
    if isinstance(kind, LargeBinary):
        return bytes([k, 0, 255])
    if isinstance(kind, Float):
        return [0.1, 1e-300, -2.0][k % 3]
    if isinstance(kind, Integer):
        return k
    return f"{column.name}-{k}"


def _rows(table: Any) -> list[dict[str, Any]]:
    columns = [c for c in table.columns if not (c.primary_key and isinstance(c.type, Integer))]
    return [{c.name: _value(c, k) for c in columns} for k in range(6)]


def _stored(path: Path, table: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(path)
    try:
        return con.execute(f'SELECT * FROM "{table}" ORDER BY rowid').fetchall()
    finally:
        con.close()


def test_insert_when_direct_on_sqlite_then_the_stored_rows_equal_sqlalchemys(tmp_path: Path) -> None:
    direct, usual = tmp_path / "direct.db", tmp_path / "usual.db"
    dialects = []
    for path in (direct, usual):
        engine = create_engine(f"sqlite:///{path}")  # no foreign keys enforced: the rows stand alone
        dialects.append(engine.dialect)
        Base.metadata.create_all(engine)
        with Session(engine) as session, session.begin():
            for name in TABLES:
                table = Base.metadata.tables[name]
                if path == direct:
                    repository._insert(session, table, _rows(table))
                else:
                    session.execute(table.insert(), _rows(table))
        engine.dispose()
    for name in TABLES:
        stored = _stored(direct, name)
        assert len(stored) == 6
        assert stored == _stored(usual, name), name
    assert dialects[1] not in repository._BULK  # the usual path built no direct statement
    plans = [plan for (name, _), plan in repository._BULK[dialects[0]].items() if name in TABLES]
    assert len(plans) == len(TABLES) and None not in plans  # every table went the direct way


def test_insert_when_rows_differ_in_their_columns_then_sqlalchemy_takes_them(tmp_path: Path) -> None:
    path = tmp_path / "mixed.db"
    engine = create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    table = Base.metadata.tables["breaker_events"]
    at = datetime(2020, 1, 2, tzinfo=UTC)
    rows = [
        {"run_id": "r", "name": "a", "from_state": "x", "to_state": "y", "reason": "", "at": at, "details": None},
        {"run_id": "r", "name": "b", "from_state": "x", "to_state": "y", "reason": "", "at": at, "details": None,
         "extra": 1},  # a column the table does not have: SQLAlchemy ignores it
    ]  # fmt: skip
    assert repository._bulk_insert(table, tuple(rows[0]), engine.dialect).parameters(rows) is None  # type: ignore[union-attr]
    with Session(engine) as session, session.begin():
        repository._insert(session, table, rows)
    engine.dispose()
    assert [r[2] for r in _stored(path, "breaker_events")] == ["a", "b"]


def test_prepared_iterations_when_written_in_one_batch_then_the_ledger_equals_one_transaction_each(
    tmp_path: Path,
) -> None:
    """A batch of prepared iterations (what the Audit agent keeps until its flush) writes the rows that recording
    each iteration on its own writes; on SQLite what it keeps is the driver's plain values (no record objects)."""
    from core.kernel.domain import Decision, EquitySnapshot, Fill, Order, OrderStatus, OrderType, Position, Side
    from core.persistence.db import open_database
    from core.persistence.repository import IterationBatch, IterationRecord, Repository

    def records() -> list[IterationRecord]:
        out = []
        for k in range(4):
            at = datetime(2021, 3, 22 + k, 20, 0, tzinfo=UTC)
            order = Order("o-1", "AAPL", Side.BUY, 10, OrderType.MARKET, OrderStatus.SUBMITTED if k < 2 else
                          OrderStatus.FILLED, at, "s", "r", filled_quantity=0 if k < 2 else 10)  # fmt: skip
            out.append(
                IterationRecord(
                    run_id="run-1",
                    iteration_id=f"it-{k}",
                    seq=k + 1,
                    as_of=at,
                    recorded_at=at,
                    status="ok",
                    error=None,
                    symbols_total=2,
                    symbols_ok=2,
                    data_quality=1.0,
                    decisions=[Decision("risk", "AAPL", "approved", "why", {"x": [1.5, None], "n": float("nan")})],
                    orders=[order] if k in (1, 2) else [],
                    fills=[Fill(f"f-{k}", "o-1", "AAPL", Side.BUY, 10, Decimal("12.5"), Decimal("1"), at)]
                    if k == 2
                    else [],
                    positions={"AAPL": Position("AAPL", 10, Decimal("12.5"), at)} if k >= 2 else {},
                    equity=EquitySnapshot(at, Decimal("1000"), Decimal("125"), Decimal("1125"), 1),
                    report_kind="template",
                    report_text=f"text {k}",
                    report_facts={"k": k},
                    shadow=[{"symbol": "AAPL", "selected": "x", "close": 12.5, "signals": {"x": ["BUY", 0.5]}}],
                    state={"risk:state": {"k": k}},
                )  # fmt: skip
            )
        return out

    paths = []
    for batched in (True, False):
        path = tmp_path / f"{batched}.db"
        repo = Repository(open_database(f"sqlite:///{path}"))
        repo.create_run("run-1", kind="replay", broker="simulated", data_provider="files",
                        started_at=datetime(2021, 3, 1, tzinfo=UTC), initial_cash=Decimal(1000), symbols=["AAPL"],
                        config={})  # fmt: skip
        if batched:
            prepared = [repo.prepare_iteration(r) for r in records()]
            for p in prepared:
                for chunk in p.tables.values():
                    assert chunk.plan is not None
                    plain = (str, int, float, bytes, memoryview, type(None))  # memoryview: the driver's BLOB
                    assert all(type(v) in plain for row in chunk.rows for v in row)
            batch = IterationBatch()
            for p in prepared:
                batch.add(p)
            assert len(batch) == 4
            repo.write_iterations(batch)
        else:
            for r in records():
                repo.record_iteration(r)
        repo.engine.dispose()
        paths.append(path)
    for table in (*TABLES, "positions", "daemon_state"):
        rows = _stored(paths[0], table)
        if table not in ("llm_calls", "breaker_events"):
            assert rows, table
        assert rows == _stored(paths[1], table), table

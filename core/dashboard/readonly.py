"""Open the trading database read-only for the dashboard.

* SQLite: the file is opened through a URI with ``mode=ro`` (the SQLite library itself refuses every write) and
  ``PRAGMA query_only`` is set on each connection as a second guard. The file must already exist: a read-only
  open never creates an empty database in its place. No ``journal_mode`` pragma is issued (changing it would be
  a write); a database in WAL mode is read concurrently with a running daemon.
* PostgreSQL: every transaction of the session starts read-only (``-c default_transaction_read_only=on`` in the
  connection options), so the server rejects any INSERT/UPDATE/DELETE/DDL.

Nothing here migrates or creates tables: the schema is the daemon's business (``open_database``). A database
without the ``runs`` table is reported as holding no trading data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine.url import URL
from sqlalchemy.exc import SQLAlchemyError

from core.persistence.db import DatabaseUnavailable, _first_line, normalise_url, safe_url, sqlite_file

__all__ = ["DatabaseUnavailable", "open_readonly", "sqlite_path"]


def sqlite_path(url: str | URL) -> Path | None:
    """The absolute file path of a SQLite URL (``None`` for other back-ends); relative paths are taken from the cwd."""
    parsed = url if isinstance(url, URL) else normalise_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    path = sqlite_file(parsed)  # the file SQLite itself would open (``file:`` URIs included)
    if path is None:
        raise DatabaseUnavailable("the dashboard needs a database file, not an in-memory SQLite database")
    return path.resolve()


def _sqlite_readonly(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def create_readonly_engine(url: str) -> Engine:
    """The read-only engine (no connection is made yet; see :func:`open_readonly`)."""
    parsed = normalise_url(url)
    path = sqlite_path(parsed)
    if path is not None:
        if not path.is_file():
            raise DatabaseUnavailable(
                f"no database at {path} (run `make demo`, a replay or the daemon first, or pass --db)"
            )
        ro = URL.create("sqlite", database=f"file:{quote(str(path))}", query={"mode": "ro", "uri": "true"})
        engine = create_engine(ro, connect_args={"timeout": 5})
        event.listen(engine, "connect", _sqlite_readonly)
        return engine
    return create_engine(
        parsed,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5, "options": "-c default_transaction_read_only=on"},
    )


def open_readonly(url: str) -> Engine:
    """A read-only engine on ``url`` whose server answers and which holds the trading tables.

    Raises :class:`DatabaseUnavailable` with a message that never shows a password.
    """
    engine = create_readonly_engine(url)
    shown = safe_url(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            has_runs = inspect(connection).has_table("runs")
    except SQLAlchemyError as exc:
        engine.dispose()
        raise DatabaseUnavailable(f"cannot open database {shown} read-only: {_first_line(exc)}") from None
    if not has_runs:
        engine.dispose()
        raise DatabaseUnavailable(f"{shown} holds no trading data (no 'runs' table): run a replay or the daemon first")
    return engine

"""Engine creation, schema migration at start-up, and the one-daemon-per-database lock."""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.engine.url import URL
from sqlalchemy.exc import SQLAlchemyError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached or prepared; the message says where and why (never a password)."""


class DaemonAlreadyRunning(RuntimeError):
    """Another daemon holds the lock of this database."""


def normalise_url(url: str) -> URL:
    """``postgresql://`` / ``postgres://`` use psycopg 3; relative SQLite paths stay relative to the cwd."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def safe_url(url: str | URL) -> str:
    """The URL with any password hidden, fit for logs and error messages."""
    parsed = url if isinstance(url, URL) else normalise_url(url)
    return parsed.render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def create_db_engine(url: str) -> Engine:
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 5})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": 5})


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def migrate(engine: Engine) -> None:
    """Apply every Alembic migration up to head (idempotent)."""
    try:
        with engine.begin() as connection:
            cfg = _alembic_config()
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(f"cannot prepare database {safe_url(engine.url)}: {exc.__class__.__name__}: {_first_line(exc)}") from None


def check_connection(engine: Engine) -> None:
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(f"cannot connect to database {safe_url(engine.url)}: {_first_line(exc)}") from None


def open_database(url: str) -> Engine:
    """Create the engine, check that the server answers and bring the schema to head."""
    engine = create_db_engine(url)
    check_connection(engine)
    migrate(engine)
    return engine


def _first_line(exc: BaseException) -> str:
    message = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return message[0] if message else exc.__class__.__name__


class DaemonLock:
    """Exclusive per-database lock, released automatically if the process dies.

    SQLite file: ``flock`` on ``<db>.lock``. PostgreSQL: a session advisory lock held on a dedicated connection.
    In-memory SQLite: nothing to share, no lock.
    """

    _PG_KEY = int.from_bytes(hashlib.sha256(b"agent-trader-daemon").digest()[:8], "big", signed=True)

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._fd: int | None = None
        self._connection: Connection | None = None

    def acquire(self) -> None:
        url = self._engine.url
        if url.get_backend_name() == "sqlite":
            database = url.database
            if not database or database == ":memory:" or database.startswith("file:"):
                return
            lock_path = Path(database).expanduser().resolve().with_name(Path(database).name + ".lock")
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise DaemonAlreadyRunning(
                    f"another daemon is already running on {safe_url(url)} (lock {lock_path} is held); "
                    "stop it first or point DATABASE_URL at another database"
                ) from None
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            self._fd = fd
            return
        connection = self._engine.connect()
        got = connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._PG_KEY}).scalar()
        connection.commit()
        if not got:
            connection.close()
            raise DaemonAlreadyRunning(
                f"another daemon is already running on {safe_url(url)} (advisory lock held); "
                "stop it first or point DATABASE_URL at another database"
            )
        self._connection = connection

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        if self._connection is not None:
            self._connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._PG_KEY})
            self._connection.commit()
            self._connection.close()
            self._connection = None

    def __enter__(self) -> "DaemonLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

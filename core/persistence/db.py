"""Engine creation, schema migration at start-up, and the one-daemon-per-database lock.

Every connection carries time limits, so a lock held by someone else cannot block the daemon forever: PostgreSQL
``statement_timeout`` and ``lock_timeout`` (set on each new connection), SQLite ``busy_timeout``.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import re
import threading
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from alembic import command
from alembic.config import Config
from loguru import logger
from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.engine.url import URL
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from core.errors import ConfigurationError, LockConflict, StorageUnavailable

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
DEFAULT_STATEMENT_TIMEOUT_S = 60.0
DEFAULT_LOCK_TIMEOUT_S = 10.0


class DatabaseUnavailable(StorageUnavailable, RuntimeError):
    """The database cannot be reached or prepared; the message says where and why (never a password)."""


class DatabaseMissing(DatabaseUnavailable):
    """A SQLite database file that must already exist does not (a new, empty ledger is not created in its place)."""


class InvalidDatabaseUrl(ConfigurationError, ValueError):
    """``DATABASE_URL`` cannot be parsed, or names a database the command cannot use (e.g. in-memory SQLite)."""


class DaemonAlreadyRunning(LockConflict, RuntimeError):
    """Another daemon holds the lock of this database."""


class DaemonLockLost(DaemonAlreadyRunning):
    """The daemon's lock was lost while it ran (its PostgreSQL session ended and another process now holds the lock,
    or the SQLite file was removed or replaced): it must stop before trading."""


def normalise_url(url: str) -> URL:
    """``postgresql://`` / ``postgres://`` use psycopg 3; relative SQLite paths stay relative to the cwd.

    Raises :class:`InvalidDatabaseUrl` (one line, no password) for a string SQLAlchemy cannot parse."""
    try:
        parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    except (ArgumentError, ValueError) as exc:
        shown = url.split("@", 1)[-1] if "@" in url else url  # never echo a password
        raise InvalidDatabaseUrl(
            f"{shown!r} is not a database URL ({_first_line(exc)}); expected e.g. sqlite:///var/trading.db "
            "(three slashes for a relative path, four for an absolute one) or postgresql://user@host/db"
        ) from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def safe_url(url: str | URL) -> str:
    """The URL with any password hidden, fit for logs and error messages."""
    parsed = url if isinstance(url, URL) else normalise_url(url)
    return parsed.render_as_string(hide_password=True)


def _truthy(value: Any) -> bool:
    if isinstance(value, tuple):
        value = value[-1] if value else ""
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def sqlite_file(url: str | URL) -> Path | None:
    """The absolute path of the file a SQLite URL opens, exactly as the SQLite library resolves it (not following
    symbolic links); ``None`` for an in-memory database. Raises ``ValueError`` for a non-SQLite URL.

    ``sqlite:///rel.db`` and ``sqlite:////abs.db`` are plain paths (relative to the cwd). With ``?uri=true`` the
    database part is a SQLite URI: ``file:rel.db``, ``file:///abs.db``, ``file://localhost/abs.db``, percent-encoded,
    its own query (``mode=memory`` is in-memory). Without ``uri=true`` a name such as ``file:x.db`` is a literal
    file name in the cwd, which is what SQLite opens then."""
    parsed = url if isinstance(url, URL) else normalise_url(url)
    if parsed.get_backend_name() != "sqlite":
        raise ValueError(f"not a SQLite URL: {safe_url(parsed)}")
    database = parsed.database or ""
    if not database or database == ":memory:":
        return None
    if _truthy(parsed.query.get("uri", "false")) and database.startswith("file:"):
        rest = database[len("file:") :]
        rest, _, query = rest.partition("?")
        rest = rest.partition("#")[0]
        options = dict(part.partition("=")[::2] for part in query.split("&") if part)
        mode = options.get("mode") or str(parsed.query.get("mode", ""))
        if mode == "memory":
            return None
        if rest.startswith("//"):  # file://authority/path: only an empty authority or localhost is valid
            authority, slash, path = rest[2:].partition("/")
            if authority not in ("", "localhost"):
                raise InvalidDatabaseUrl(f"SQLite URI authority {authority!r} is not supported (use file:///path)")
            rest = slash + path
        name = unquote(rest)
        if not name or name == ":memory:":
            return None
        return Path(os.path.abspath(name))
    return Path(os.path.abspath(database))


def is_in_memory(url: str | URL) -> bool:
    parsed = url if isinstance(url, URL) else normalise_url(url)
    return parsed.get_backend_name() == "sqlite" and sqlite_file(parsed) is None


def _sqlite_pragmas(busy_timeout_ms: int) -> Any:
    def pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    return pragmas


def _pg_timeouts(statement_ms: int, lock_ms: int) -> Any:
    def set_timeouts(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET statement_timeout = {int(statement_ms)}")
        cursor.execute(f"SET lock_timeout = {int(lock_ms)}")
        cursor.close()
        dbapi_connection.commit()

    return set_timeouts


def create_db_engine(
    url: str,
    *,
    statement_timeout_s: float = DEFAULT_STATEMENT_TIMEOUT_S,
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    create: bool = True,
) -> Engine:
    """The engine, without connecting (``create=False``: a SQLite file's directory is not created either). PostgreSQL connections get ``statement_timeout`` and ``lock_timeout`` and TCP
    keep-alives; SQLite connections wait at most ``lock_timeout_s`` for another writer (``busy_timeout``)."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_file(parsed)
        if path is not None and create:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": lock_timeout_s})
        event.listen(engine, "connect", _sqlite_pragmas(int(lock_timeout_s * 1000)))
        return engine
    engine = create_engine(
        parsed,
        pool_pre_ping=True,
        connect_args={
            "connect_timeout": 5,
            "keepalives": 1,
            "keepalives_idle": 60,
            "keepalives_interval": 10,
            "keepalives_count": 6,
        },
    )
    event.listen(engine, "connect", _pg_timeouts(int(statement_timeout_s * 1000), int(lock_timeout_s * 1000)))
    return engine


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


_REVISION = re.compile(r"^(down_revision|revision)\s*(?::[^=]*)?=\s*['\"]?([^'\"\s]*)['\"]?\s*$", re.MULTILINE)


@functools.lru_cache(maxsize=1)
def head_revision() -> str | None:
    """The head of the migration chain, read from the version files' ``revision``/``down_revision`` lines without
    loading Alembic's environment; ``None`` when it cannot be told that way (several heads, an unusual file): then the
    migration runs as usual."""
    return _head_of(MIGRATIONS_DIR)


def _head_of(migrations: Path) -> str | None:
    """The head revision of the migration files under ``migrations`` (see :func:`head_revision`)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted((migrations / "versions").glob("*.py")):
        found = dict((name, value) for name, value in _REVISION.findall(path.read_text(encoding="utf-8")))
        if "revision" not in found or "down_revision" not in found:
            return None
        revisions.add(found["revision"])
        if found["down_revision"] not in ("", "None"):
            parents.add(found["down_revision"])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _at_head(connection: Connection) -> bool:
    """Whether the database's recorded revision is already the head (nothing to migrate)."""
    head = head_revision()
    if head is None or not inspect(connection).has_table("alembic_version"):
        return False
    versions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return versions == [head]


def migrate(engine: Engine) -> None:
    """Apply every Alembic migration up to head (idempotent). A database already at head is left alone without
    loading Alembic's environment (a backtest opens its database every run). On PostgreSQL the statement time limit is
    lifted for the migration (a schema change on a big table may take long); the lock time limit stays."""
    try:
        with engine.begin() as connection:
            if _at_head(connection):
                return
            if engine.dialect.name == "postgresql":
                connection.execute(text("SET LOCAL statement_timeout = 0"))
            cfg = _alembic_config()
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(
            f"cannot prepare database {safe_url(engine.url)}: {exc.__class__.__name__}: {_first_line(exc)}"
        ) from None


def schema_cache_dir(cache_dir: str | Path) -> Path:
    """Where :func:`open_database` keeps the schema templates under a cache directory (``BAR_CACHE_DIR``)."""
    return Path(cache_dir) / "schemas"


def schema_key(migrations: Path = MIGRATIONS_DIR) -> str | None:
    """What a new database's schema depends on: the head revision and a digest of every migration file, of the
    environment that runs them and of the column types they import (``types.py`` beside ``migrations``), so an edited
    migration never reuses a template built from the old one; ``None`` when the head cannot be told from the files."""
    head = head_revision() if migrations == MIGRATIONS_DIR else _head_of(migrations)
    versions = sorted((migrations / "versions").glob("*.py"))
    if head is None:
        return None
    digest = hashlib.sha256()
    for path in [migrations / "env.py", migrations.parent / "types.py", *versions]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{head}-{digest.hexdigest()[:16]}"


def schema_template(directory: Path) -> Path | None:
    """A SQLite database holding only the schema at head (the migrations run on an empty file), built once per
    :func:`schema_key` in ``directory`` and reused; ``None`` when no key can be told. Built under a temporary name and
    renamed into place, so a reader never sees a half-built template."""
    key = schema_key()
    if key is None:
        return None
    path = directory / f"schema-sqlite-{key}.db"
    if path.is_file():
        return path
    directory.mkdir(parents=True, exist_ok=True)
    building = directory / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    leftovers = (building, Path(f"{building}-wal"), Path(f"{building}-shm"))
    try:
        for leftover in leftovers:
            leftover.unlink(missing_ok=True)
        engine = create_db_engine(f"sqlite:///{building}")
        try:
            migrate(engine)
            with engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            engine.dispose()  # the last connection closed: the write-ahead log is folded in and removed
        if Path(f"{building}-wal").exists():
            raise OSError(f"the write-ahead log of {building} was not folded in")
        os.replace(building, path)
    finally:
        for leftover in leftovers:
            leftover.unlink(missing_ok=True)
    return path


def _create_from_template(path: Path, directory: Path) -> None:
    """Create the new SQLite database ``path`` as a copy of the schema template (see :func:`schema_template`): the
    same schema and revision as running every migration on it, without running them. The copy is written under a
    temporary name and linked into place only if ``path`` still does not exist; on any problem nothing is created
    and the migrations run as usual."""
    try:
        template = schema_template(directory)
        if template is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        copy = path.parent / f".{path.name}.{os.getpid()}.{threading.get_ident()}.new"
        copy.unlink(missing_ok=True)
        try:
            # created with SQLite's own mode for a new database file (0644, less the umask)
            descriptor = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            with os.fdopen(descriptor, "wb") as out:
                out.write(template.read_bytes())
            os.link(copy, path)  # fails if another process created the database meanwhile: that one is kept
        except FileExistsError:
            pass
        finally:
            copy.unlink(missing_ok=True)
    except (OSError, SQLAlchemyError, DatabaseUnavailable) as exc:
        logger.debug("schema template not used for {}: {}", path, exc)


def check_connection(engine: Engine) -> None:
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(f"cannot connect to database {safe_url(engine.url)}: {_first_line(exc)}") from None


def open_database(
    url: str,
    *,
    create: bool = True,
    statement_timeout_s: float = DEFAULT_STATEMENT_TIMEOUT_S,
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    schema_cache: Path | None = None,
) -> Engine:
    """Create the engine, check that the server answers and bring the schema to head.

    ``create=False``: a SQLite file that does not exist is an error (:class:`DatabaseMissing`) instead of a new, empty
    ledger. Time limits: see :func:`create_db_engine`. ``schema_cache``: a directory where a new SQLite database's
    schema is kept as a template file and copied instead of running every migration (plain file URLs only; see
    :func:`schema_template`)."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_file(parsed)
        if not create and path is not None and not path.is_file():
            raise DatabaseMissing(f"no database at {path} (DATABASE_URL={safe_url(parsed)})")
        if create and schema_cache is not None and path is not None and not parsed.query and not path.exists():
            _create_from_template(path, Path(schema_cache))
    engine = create_db_engine(
        url, statement_timeout_s=statement_timeout_s, lock_timeout_s=lock_timeout_s, create=create
    )
    try:
        check_connection(engine)
        migrate(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def _first_line(exc: BaseException) -> str:
    """The first line of the driver's message (SQLAlchemy's own adds the statement and parameters)."""
    message = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return message[0] if message else exc.__class__.__name__


# --- SQLite: one flock per database *file* (device, inode), whatever path, link or URL spelling reaches it -----------
#
# The lock is a ``flock`` on the database file itself, so every name of the file (a relative or absolute path, a
# symbolic or hard link, a ``file:`` URI) meets the same lock. SQLite locks with POSIX ``fcntl`` locks, which on Linux
# are independent of ``flock``. POSIX locks have one trap: closing *any* descriptor of a file drops every POSIX lock the
# process holds on it (SQLite's own included). So the descriptor used for ``flock`` is opened once per file and process
# and closed only once unlocked and no other descriptor of this process refers to the file (no SQLite connection is
# open on it): at release, or at a later acquire.

_FILE_LOCKS = threading.Lock()
_FILE_FDS: dict[tuple[int, int], int] = {}
_FILES_HELD: set[tuple[int, int]] = set()


def _open_files() -> dict[tuple[int, int], int] | None:
    """How many descriptors of this process refer to each (device, inode) (``None``: cannot tell, no ``/proc``)."""
    try:
        entries = os.listdir("/proc/self/fd")
    except OSError:
        return None
    counts: dict[tuple[int, int], int] = {}
    for entry in entries:
        try:
            st = os.stat(f"/proc/self/fd/{entry}")
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor, among others)
        key = (st.st_dev, st.st_ino)
        counts[key] = counts.get(key, 0) + 1
    return counts


def _close_idle_descriptors() -> None:
    """Close the lock descriptors of files not locked now and opened by nothing else in this process (no SQLite
    connection could lose its locks). Called with ``_FILE_LOCKS`` held."""
    idle = [key for key in _FILE_FDS if key not in _FILES_HELD]
    if not idle:
        return
    counts = _open_files()
    if counts is None:
        return  # cannot tell: keep them open (one descriptor per database file, reused by the next acquire)
    for key in idle:
        if counts.get(key, 0) <= 1:
            os.close(_FILE_FDS.pop(key))


class DaemonLock:
    """Exclusive per-database lock, released automatically if the process dies.

    SQLite file: ``flock`` on the database file itself, keyed on its (device, inode): two spellings of one file, or
    two hard links to it, meet the same lock. PostgreSQL: a session advisory lock held on a dedicated connection;
    :meth:`verify` checks every iteration that the session still holds it. In-memory SQLite: nothing to share, no lock
    (the commands that keep a ledger refuse an in-memory database).
    """

    _PG_KEY = int.from_bytes(hashlib.sha256(b"agent-trader-daemon").digest()[:8], "big", signed=True)

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._file: tuple[Path, tuple[int, int]] | None = None
        self._connection: Connection | None = None
        self._backend_pid: int | None = None

    @property
    def backend_pid(self) -> int | None:
        """The PostgreSQL backend process holding the advisory lock (``None`` on SQLite or when not held)."""
        return self._backend_pid

    def _refused(self, how: str) -> DaemonAlreadyRunning:
        return DaemonAlreadyRunning(
            f"another daemon is already running on {safe_url(self._engine.url)} ({how}); "
            "stop it first or point DATABASE_URL at another database"
        )

    def acquire(self) -> None:
        url = self._engine.url
        if url.get_backend_name() == "sqlite":
            path = sqlite_file(url)
            if path is not None:
                self._acquire_file(path)
            return
        self._acquire_pg()

    # --- SQLite -------------------------------------------------------------------------------------------------
    def _acquire_file(self, path: Path) -> None:
        real = Path(os.path.realpath(path))
        try:
            st = os.stat(real)
        except FileNotFoundError:
            raise DatabaseMissing(f"no database at {real} to lock") from None
        key = (st.st_dev, st.st_ino)
        with _FILE_LOCKS:
            if key in _FILES_HELD:
                raise self._refused(f"this process already holds the lock of {real}")
            _close_idle_descriptors()
            fd = _FILE_FDS.get(key)
            if fd is None:
                try:
                    fd = os.open(real, os.O_RDONLY | os.O_CLOEXEC)
                except OSError as exc:
                    raise DatabaseUnavailable(f"cannot open {real} to lock it: {exc.strerror or exc}") from None
                opened = os.fstat(fd)
                if (opened.st_dev, opened.st_ino) != key:  # replaced between stat and open: lock what was opened
                    key = (opened.st_dev, opened.st_ino)
                _FILE_FDS[key] = fd
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise self._refused(f"the database file {real} is locked by another process") from None
            _FILES_HELD.add(key)
        self._file = (real, key)

    def _release_file(self) -> None:
        assert self._file is not None
        _, key = self._file
        self._file = None
        with _FILE_LOCKS:
            _FILES_HELD.discard(key)
            fd = _FILE_FDS.get(key)
            if fd is None:
                return
            fcntl.flock(fd, fcntl.LOCK_UN)
            _close_idle_descriptors()

    def _verify_file(self) -> None:
        assert self._file is not None
        real, key = self._file
        try:
            st = os.stat(real)
        except FileNotFoundError:
            raise DaemonLockLost(
                f"the database file {real} was removed while the daemon ran; stopping before trading"
            ) from None
        if (st.st_dev, st.st_ino) != key:
            raise DaemonLockLost(
                f"the database file {real} was replaced by another file while the daemon ran; stopping before trading"
            )

    # --- PostgreSQL ---------------------------------------------------------------------------------------------
    def _acquire_pg(self) -> None:
        try:
            connection = self._engine.connect()
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(
                f"cannot connect to database {safe_url(self._engine.url)}: {_first_line(exc)}"
            ) from None
        try:
            if (connection.dialect.server_version_info or (0,)) >= (14,):
                # the lock connection idles between iterations: a server-wide idle timeout must not end it
                connection.execute(text("SET idle_session_timeout = 0"))
            got = connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._PG_KEY}).scalar()
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar()
            connection.commit()
        except SQLAlchemyError as exc:
            connection.close()
            raise DatabaseUnavailable(
                f"cannot take the daemon lock on {safe_url(self._engine.url)}: {_first_line(exc)}"
            ) from None
        if not got:
            connection.close()
            raise self._refused("advisory lock held")
        self._connection = connection
        self._backend_pid = int(pid) if pid is not None else None

    def _holds_pg_lock(self) -> bool:
        """Whether the lock connection is alive and its session still holds the advisory lock (asked of pg_locks)."""
        assert self._connection is not None
        key = self._PG_KEY & 0xFFFFFFFFFFFFFFFF
        try:
            held = self._connection.execute(
                text(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND pid = pg_backend_pid() AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                    "AND classid = CAST(:hi AS oid) AND objid = CAST(:lo AS oid) AND objsubid = 1)"
                ),
                {"hi": key >> 32, "lo": key & 0xFFFFFFFF},
            ).scalar()
            self._connection.commit()
        except SQLAlchemyError as exc:
            logger.warning("daemon lock connection lost ({}: {})", exc.__class__.__name__, _first_line(exc))
            self._drop_connection()
            return False
        if not held:
            logger.warning("daemon lock connection is alive but its session no longer holds the advisory lock")
        return bool(held)

    def _drop_connection(self) -> None:
        connection, self._connection, self._backend_pid = self._connection, None, None
        if connection is None:
            return
        try:
            connection.invalidate()  # the session is gone: do not return it to the pool
            connection.close()
        except SQLAlchemyError as exc:
            logger.debug("closing the dead lock connection: {}", _first_line(exc))

    def verify(self) -> str | None:
        """Check that the lock is still this process's, before an iteration trades.

        Returns ``None`` when it is; a message saying so when it had been lost and was taken again (PostgreSQL: the
        lock's session ended and nobody else held the lock). Raises :class:`DaemonLockLost` when another process now
        holds it (or the SQLite file was removed or replaced), :class:`DatabaseUnavailable` when the server cannot be
        reached to take it again."""
        if self._file is not None:
            self._verify_file()
            return None
        if self._connection is None:
            if self._engine.url.get_backend_name() == "sqlite":
                return None  # in-memory: no lock to keep
        elif self._holds_pg_lock():
            return None
        old_pid = self._backend_pid
        self._drop_connection()
        try:
            self._acquire_pg()
        except DaemonAlreadyRunning:
            raise DaemonLockLost(
                f"the daemon lock on {safe_url(self._engine.url)} was lost (its database session ended) and another "
                "process holds it now; stopping before trading"
            ) from None
        return f"daemon lock re-acquired on a new database session (backend {self._backend_pid}; the previous session{'' if old_pid is None else f' {old_pid}'} ended)"

    def release(self) -> None:
        if self._file is not None:
            self._release_file()
        connection = self._connection
        if connection is not None:
            try:
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._PG_KEY})
                connection.commit()
                connection.close()
            except SQLAlchemyError as exc:  # the session is gone, and its lock with it
                logger.warning("releasing the daemon lock: its connection is gone ({})", _first_line(exc))
                self._drop_connection()
            self._connection = None
            self._backend_pid = None

    def __enter__(self) -> DaemonLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

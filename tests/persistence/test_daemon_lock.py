"""The one-daemon-per-database lock: keyed on the real SQLite file whatever the URL spelling, checked before every
daemon iteration, and on PostgreSQL re-taken (or given up, stopping the daemon) when its session is terminated — against
real SQLite files, real PostgreSQL sessions and the real wiring (``core.runtime.app.build_app`` / ``main.main``)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

import main
from core.runtime.app import build_app
from core.runtime.profile import DAEMON
from core.kernel.calendar import MarketCalendar
from core.kernel.clock import SimulatedClock
from core.persistence.db import DaemonAlreadyRunning, DaemonLock, DaemonLockLost, normalise_url, open_database
from core.persistence.models import BreakerEventRow, Iteration, Run
from core.persistence.repository import Repository
from tests.conftest import REPO_ROOT, make_settings, start_offline_daemon

HOLDER = (
    "import sys\n"
    "from core.persistence.db import DaemonLock, open_database\n"
    "lock = DaemonLock(open_database(sys.argv[1]))\n"
    "lock.acquire()\n"
    "print('locked', flush=True)\n"
    "sys.stdin.read()\n"
)


@contextmanager
def _held_by_another_process(url: str, cwd: Path) -> Iterator[None]:
    """A second process that takes the daemon lock on ``url`` and holds it until the block ends."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url], cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=60)


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("DATA_PROVIDER", "synthetic")


def _spellings(tmp_path: Path) -> dict[str, str]:
    real = tmp_path / "ledger" / "trading.db"
    open_database(f"sqlite:///{real}").dispose()
    (tmp_path / "elsewhere").mkdir()
    os.link(real, tmp_path / "elsewhere" / "hard-link.db")
    os.symlink(real, tmp_path / "elsewhere" / "sym-link.db")
    return {
        "path": f"sqlite:///{real}",
        "file-uri": f"sqlite:///file:{real}?mode=rwc&uri=true",
        "file-uri-localhost": f"sqlite:///file://localhost{real}?uri=true",
        "relative": "sqlite:///ledger/trading.db",
        "hard-link": f"sqlite:///{tmp_path / 'elsewhere' / 'hard-link.db'}",
        "symlink": f"sqlite:///{tmp_path / 'elsewhere' / 'sym-link.db'}",
    }


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("path", "file-uri"),
        ("file-uri", "path"),
        ("path", "file-uri-localhost"),
        ("path", "hard-link"),
        ("hard-link", "path"),
        ("path", "symlink"),
        ("relative", "path"),
    ],
)
def test_second_daemon_when_its_url_names_the_same_sqlite_file_differently_then_it_refuses_with_exit_4(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    offline: None,
    first: str,
    second: str,
) -> None:
    urls = _spellings(tmp_path)
    monkeypatch.chdir(tmp_path)
    with _held_by_another_process(urls[first], cwd=tmp_path):
        assert main.main(["run", "--offline", "--once", "--db", urls[second]]) == 4
    err = capsys.readouterr().err
    assert "already running" in err and "Traceback" not in err
    with Session(create_engine(urls["path"])) as s:
        assert s.scalar(select(func.count()).select_from(Iteration)) == 0  # the second daemon traded nothing


def test_daemon_when_the_lock_holder_has_gone_then_the_same_file_under_another_name_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline: None
) -> None:
    urls = _spellings(tmp_path)
    with _held_by_another_process(urls["hard-link"], cwd=tmp_path):
        pass
    assert main.main(["run", "--offline", "--once", "--db", urls["file-uri"]]) == 0


def _app(settings_url: str, tmp_path: Path, day: date = date(2024, 3, 28)):
    calendar = MarketCalendar()
    settings = make_settings(
        tmp_path,
        database_url=settings_url,
        data_provider="synthetic",
        broker="simulated",
        symbols=["AAPL", "IBM", "SPY"],
    )
    return build_app(settings, profile=DAEMON, clock=SimulatedClock(calendar.session(day).close_utc), calendar=calendar)


def _count(url: str, model: type) -> int:
    engine = create_engine(normalise_url(url))
    try:
        with Session(engine) as s:
            return s.scalar(select(func.count()).select_from(model)) or 0
    finally:
        engine.dispose()


def _lock_events(url: str) -> list[tuple[str, str, str]]:
    engine = create_engine(normalise_url(url))
    try:
        with Session(engine) as s:
            rows = s.scalars(
                select(BreakerEventRow).where(BreakerEventRow.name == "daemon_lock").order_by(BreakerEventRow.id)
            ).all()
            return [(r.from_state, r.to_state, r.reason) for r in rows]
    finally:
        engine.dispose()


def test_daemon_when_its_sqlite_file_is_replaced_then_it_stops_before_the_next_iteration(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    app = _app(url, tmp_path)
    try:
        asyncio.run(app.orchestrator.run_iteration())
        open_database(f"sqlite:///{tmp_path / 'other.db'}").dispose()
        os.replace(tmp_path / "other.db", tmp_path / "d.db")  # the daemon's name now reaches another file
        with pytest.raises(DaemonLockLost, match="replaced"):
            asyncio.run(app.orchestrator.run_iteration())
    finally:
        app.close("lock_lost")


# --- PostgreSQL: the advisory lock's session is terminated (idle killer, pgbouncer, fail-over) --------------------------


def _lock_backends(url: str) -> list[int]:
    """Backends holding an advisory lock in this test's database, asked of the server from outside the daemon."""
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchall()
    return [int(r[0]) for r in rows]


def _terminate(url: str, pid: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0] is True
    for _ in range(100):  # the server ends the backend asynchronously
        if pid not in _lock_backends(url):
            return
        time.sleep(0.05)
    raise AssertionError(f"backend {pid} still holds its lock")


@pytest.mark.postgres
def test_daemon_when_its_lock_session_is_terminated_and_another_daemon_took_the_lock_then_it_stops_before_trading(
    postgres_url: str, tmp_path: Path
) -> None:
    app = _app(postgres_url, tmp_path)
    second = None
    try:
        asyncio.run(app.orchestrator.run_iteration())
        (pid,) = _lock_backends(postgres_url)
        _terminate(postgres_url, pid)
        second = DaemonLock(open_database(postgres_url))
        second.acquire()  # a second daemon starts while the first sleeps

        with pytest.raises(DaemonLockLost, match="another process holds it"):
            asyncio.run(app.orchestrator.run_iteration())
        assert _count(postgres_url, Iteration) == 1  # no iteration started: nothing fetched, decided or traded
        assert [(f, t) for f, t, _ in _lock_events(postgres_url)] == [("held", "lost")]
    finally:
        app.close("lock_lost")
        if second is not None:
            second.release()


@pytest.mark.postgres
def test_daemon_when_its_lock_session_is_terminated_and_nobody_else_holds_the_lock_then_it_retakes_it_and_goes_on(
    postgres_url: str, tmp_path: Path
) -> None:
    app = _app(postgres_url, tmp_path)
    try:
        asyncio.run(app.orchestrator.run_iteration())
        (pid,) = _lock_backends(postgres_url)
        _terminate(postgres_url, pid)

        asyncio.run(app.orchestrator.run_iteration())
        assert _count(postgres_url, Iteration) == 2
        (event,) = _lock_events(postgres_url)
        assert event[:2] == ("lost", "held") and "re-acquired" in event[2]
        (new_pid,) = _lock_backends(postgres_url)
        assert new_pid != pid
        with pytest.raises(DaemonAlreadyRunning):  # the lock is really held again
            DaemonLock(open_database(postgres_url)).acquire()
    finally:
        app.close("finished")


@pytest.mark.postgres
def test_running_daemon_when_its_lock_session_is_terminated_and_a_second_daemon_starts_then_it_exits_4_before_trading(
    postgres_url: str, tmp_path: Path
) -> None:
    """``main.py run --offline`` in its own process, an iteration every 5 s: after its first iteration the lock's session
    is terminated and the test takes the lock; at its next wake-up the daemon exits 4 and records why."""
    proc = start_offline_daemon(postgres_url, tmp_path)
    second = None
    try:
        for _ in range(1200):  # wait for the first iteration (start-up included)
            if proc.poll() is not None or (_lock_backends(postgres_url) and _count(postgres_url, Iteration) >= 1):
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        (pid,) = _lock_backends(postgres_url)
        _terminate(postgres_url, pid)
        second = DaemonLock(open_database(postgres_url))
        second.acquire()
        iterations_when_taken = _count(postgres_url, Iteration)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if second is not None:
            second.release()
    assert proc.returncode == 4, err[-2000:]
    assert "another process holds it" in err and "Traceback" not in err
    assert _count(postgres_url, Iteration) == iterations_when_taken  # nothing ran after the lock was lost
    engine = create_engine(normalise_url(postgres_url))
    with Session(engine) as s:
        assert s.scalars(select(Run.status)).all() == ["lock_lost"]
    engine.dispose()
    assert [(f, t) for f, t, _ in _lock_events(postgres_url)] == [("held", "lost")]


# --- runs left `running` by a process that died ---------------------------------------------------------------------


def test_start_when_runs_were_left_running_by_a_killed_process_then_they_are_marked_killed(
    tmp_path: Path, offline: None
) -> None:
    from datetime import UTC, datetime
    from decimal import Decimal

    url = f"sqlite:///{tmp_path / 'k.db'}"
    repo = Repository(open_database(url))
    started = datetime(2024, 1, 2, 21, tzinfo=UTC)
    repo.create_run(
        "daemon-old",
        kind="daemon",
        broker="simulated",
        data_provider="synthetic",
        started_at=started,
        initial_cash=Decimal(1),
        symbols=["AAPL"],
        config={},
    )
    repo.engine.dispose()

    before = datetime.now(UTC)
    assert main.main(["run", "--offline", "--once", "--db", url]) == 0
    with Session(create_engine(url)) as s:
        runs = {r.id: r for r in s.scalars(select(Run))}
    old = runs.pop("daemon-old")
    assert old.status == "killed" and old.finished_at is not None and old.finished_at >= before
    assert [r.status for r in runs.values()] == ["finished"]


def test_lock_release_when_a_sqlite_connection_of_this_process_is_open_then_its_own_locks_survive(
    tmp_path: Path,
) -> None:
    """The lock's descriptor is on the database file itself; closing it would drop every POSIX lock this process holds
    on the file (SQLite's included). Taking and releasing the lock beside an open connection must leave those intact."""
    from sqlalchemy import text

    db = tmp_path / "p.db"
    engine = open_database(f"sqlite:///{db}")
    inode = os.stat(db).st_ino

    def posix_locks() -> list[str]:
        with open("/proc/locks") as f:
            return [
                " ".join(line.split()[1:3] + line.split()[5:])
                for line in f
                if f":{inode} " in line and line.split()[4] == str(os.getpid()) and "POSIX" in line
            ]

    with engine.connect() as connection:
        connection.execute(text("SELECT count(*) FROM runs")).scalar()  # a WAL reader keeps a shared lock on the file
        before = posix_locks()
        assert before
        for _ in range(3):
            lock = DaemonLock(open_database(f"sqlite:///{db}"))
            lock.acquire()
            lock.release()
        assert posix_locks() == before
    engine.dispose()

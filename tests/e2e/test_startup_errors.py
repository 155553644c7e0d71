"""Start-up and database faults through ``main.main`` (the real CLI): settings that would crash later are refused naming
the variable (exit 2); database faults give one line and exit 3, never a traceback; a mistyped SQLite path never
becomes a new, empty ledger; an in-memory database is refused where a ledger must outlive the process; a table lock
cannot block the daemon forever."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

import main
from config.settings import SettingsError, load_settings
from core.persistence.db import open_database
from core.persistence.models import Iteration, Run
from tests.conftest import REPO_ROOT, start_offline_daemon


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("DATA_PROVIDER", "synthetic")


def _one_line_error(err: str, *, logged_tracebacks: bool = False) -> str:
    """The single ``error:`` line, the last thing written (the console log before it may show a handler's traceback
    when ``logged_tracebacks``; the error itself never does)."""
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], err[-3000:]
    assert logged_tracebacks or "Traceback" not in err, err[-3000:]
    return errors[0]


# --- settings accepted today that crash later -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("INITIAL_CASH", "inf"),
        ("INITIAL_CASH", "nan"),
        ("INITIAL_CASH", "1e300"),
        ("COMMISSION_MINIMUM", "inf"),
        ("LLM_DAILY_MAX_USD", "Infinity"),
        ("BROKER_BACKOFF_SECONDS", "1000000000000000"),
        ("LLM_BREAKER_COOLDOWN_SECONDS", "1000000000000000"),
        ("MAX_SHARES", "1000000000000000"),
        ("DB_LOCK_TIMEOUT_SECONDS", "0"),
    ],
)
def test_start_when_a_setting_is_infinite_or_absurd_then_it_is_refused_naming_the_variable(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings(_env_file=None)


def test_replay_when_initial_cash_is_infinite_then_exit_2_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INITIAL_CASH", "inf")
    assert main.main(["replay", "--quiet", "--db", f"sqlite:///{tmp_path / 'r.db'}"]) == 2
    assert "INITIAL_CASH" in _one_line_error(capsys.readouterr().err)


def test_any_command_when_log_dir_cannot_be_written_then_one_line_naming_it_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the log directory should be")
    monkeypatch.setenv("LOG_DIR", str(blocker / "logs"))
    assert main.main(["status", "--at", "2024-03-28T15:00:00"]) == 2
    assert "LOG_DIR" in _one_line_error(capsys.readouterr().err)


# --- DATABASE_URL that cannot hold a ledger -----------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["sqlite:/x.db", "sqlite:x.db", "postgresql://trader:s3cret@db:notaport/trading"])
def test_command_when_database_url_is_malformed_then_one_line_naming_it_and_exit_2(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main.main(["replay", "--quiet", "--db", url]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "DATABASE_URL" in line and "s3cret" not in line


@pytest.mark.parametrize(
    "url",
    ["sqlite:///:memory:", "sqlite://", "sqlite:///file::memory:?uri=true", "sqlite:///file:x?mode=memory&uri=true"],
)
@pytest.mark.parametrize("command", [["run", "--offline", "--once"], ["replay", "--quiet"]])
def test_daemon_or_replay_when_the_database_is_in_memory_then_refused_with_exit_2(
    url: str, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main.main([*command, "--db", url]) == 2
    assert "DATABASE_URL" in _one_line_error(capsys.readouterr().err)


def test_daemon_when_an_explicit_sqlite_file_does_not_exist_then_it_refuses_unless_create_db(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    typo = tmp_path / "var" / "tradng.db"
    assert main.main(["run", "--offline", "--once", "--db", f"sqlite:///{typo}"]) == 3
    line = _one_line_error(capsys.readouterr().err)
    assert str(typo) in line and "--create-db" in line
    assert not typo.exists() and not typo.parent.exists()  # nothing created, not even the directory

    assert main.main(["run", "--offline", "--once", "--create-db", "--db", f"sqlite:///{typo}"]) == 0
    assert main.main(["run", "--offline", "--once", "--db", f"sqlite:///{typo}"]) == 0  # it exists now


def test_health_when_the_sqlite_file_does_not_exist_then_one_line_exit_3_and_nothing_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere" / "trading.db"
    assert main.main(["health", "--db", f"sqlite:///{missing}"]) == 3
    assert str(missing) in _one_line_error(capsys.readouterr().err)
    assert not missing.exists() and not missing.parent.exists()


# --- database faults: one line, exit 3 ----------------------------------------------------------------------------------


def test_daemon_when_the_database_faults_at_start_up_then_one_line_and_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "broken.db"
    open_database(f"sqlite:///{db}").dispose()
    with sqlite3.connect(db) as conn:  # schema at head on paper, but a table is gone
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("DROP TABLE daemon_state")
    assert main.main(["run", "--offline", "--once", "--db", f"sqlite:///{db}"]) == 3
    assert "daemon_state" in _one_line_error(capsys.readouterr().err)


def test_daemon_when_the_database_faults_while_closing_its_run_then_one_line_and_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "faulty.db"
    open_database(f"sqlite:///{db}").dispose()
    with sqlite3.connect(db) as conn:  # every write to a run's end fails, as a full disk or a dropped server would
        conn.execute(
            "CREATE TRIGGER fail_finish BEFORE UPDATE OF status ON runs BEGIN SELECT RAISE(ABORT, 'simulated disk fault'); END"
        )
    assert main.main(["run", "--offline", "--once", "--db", f"sqlite:///{db}"]) == 3
    assert "simulated disk fault" in _one_line_error(capsys.readouterr().err)
    with Session(create_engine(f"sqlite:///{db}")) as s:
        assert s.scalar(select(func.count()).select_from(Iteration)) == 1  # the iteration itself was recorded


# --- PostgreSQL: a table lock held by someone else cannot block the daemon forever --------------------------------------


def _daemon_process(url: str, tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
    env.update(DATA_PROVIDER="synthetic", LOG_DIR=str(tmp_path / "logs"), DATABASE_URL=url, **extra)
    return subprocess.run(
        [sys.executable, "main.py", "run", "--offline", "--once"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.mark.postgres
@pytest.mark.parametrize(("table", "code"), [("runs", 3), ("iterations", 5)])
def test_daemon_when_another_session_holds_a_table_lock_then_it_fails_within_the_lock_timeout_with_one_line(
    postgres_url: str, tmp_path: Path, table: str, code: int
) -> None:
    """``runs`` is written at start-up (exit 3: database unavailable); ``iterations`` when an iteration is recorded
    (exit 5: the iteration could not be recorded, nothing traded after it)."""
    open_database(postgres_url).dispose()
    with psycopg.connect(postgres_url) as blocker:
        blocker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")  # held until the block ends
        done = _daemon_process(postgres_url, tmp_path, DB_LOCK_TIMEOUT_SECONDS="1")
        blocker.rollback()
    assert done.returncode == code, done.stderr[-3000:]
    assert "lock timeout" in _one_line_error(done.stderr, logged_tracebacks=table == "iterations")
    with Session(create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))) as s:
        assert s.scalar(select(func.count()).select_from(Iteration)) == 0
        statuses = s.scalars(select(Run.status)).all()
    assert statuses == ([] if table == "runs" else ["failed"])


# --- replay on synthetic data -------------------------------------------------------------------------------------------


def test_replay_when_data_provider_is_synthetic_then_it_runs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DATA_DIR")}
    env.update(DATA_PROVIDER="synthetic", LOG_DIR=str(tmp_path / "logs"))
    done = subprocess.run(
        [sys.executable, "main.py", "replay", "--quiet", "--start", "2024-01-02", "--end", "2024-02-29", "--db", f"sqlite:///{tmp_path / 's.db'}"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Done: 41 iterations" in done.stdout


def test_query_trades_when_the_database_is_a_sqlite_uri_then_it_reads_it_and_a_missing_one_is_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from scripts import query_trades

    db = tmp_path / "q.db"
    open_database(f"sqlite:///{db}").dispose()
    assert query_trades.main(["runs", "--db", f"sqlite:///file:{db}?mode=ro&uri=true"]) == 0
    missing = tmp_path / "typo" / "q.db"
    assert query_trades.main(["runs", "--db", f"sqlite:///file:{missing}?uri=true"]) == 3
    assert str(missing) in _one_line_error(capsys.readouterr().err)
    assert not missing.parent.exists()


@pytest.mark.postgres
def test_running_daemon_when_its_database_becomes_unavailable_between_iterations_then_one_line_and_exit_3(
    postgres_url: str, tmp_path: Path
) -> None:
    """After the first iteration every session of the daemon is ended and the database refuses new ones: at its next
    wake-up the daemon cannot confirm its lock, and stops before the iteration with one line, exit 3."""
    import time

    from sqlalchemy.engine import make_url

    name = make_url(postgres_url).database
    open_database(postgres_url).dispose()
    proc = start_offline_daemon(postgres_url, tmp_path)
    try:
        engine = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
        for _ in range(1200):  # wait for the first iteration (start-up included)
            with Session(engine) as s:
                if proc.poll() is not None or (s.scalar(select(func.count()).select_from(Iteration)) or 0) >= 1:
                    break
            time.sleep(0.1)
        engine.dispose()
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        with psycopg.connect(postgres_url, dbname="postgres", autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 3, err[-3000:]
    line = _one_line_error(err)
    assert name in line and "not currently accepting connections" in line

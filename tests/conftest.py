"""Shared fixtures: isolated settings, the bundled data, SQLite and PostgreSQL databases.

PostgreSQL: tests marked ``postgres`` use a server at ``TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``), each in a fresh database created and dropped around the test. Where no
server answers they skip with the reason; with ``REQUIRE_POSTGRES=1`` (set by ``.ci/run`` under CI) they fail instead.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from collections.abc import Iterator

import pytest

from config.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"
BUNDLED_DAILY = REPO_ROOT / "data" / "daily"
PG_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")

SETTINGS_ENV = [name.upper() for name in Settings.model_fields]


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's settings: every settings variable is cleared."""
    for name in SETTINGS_ENV:
        monkeypatch.delenv(name, raising=False)


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": f"sqlite:///{tmp_path / 'trading.db'}",
        "log_dir": tmp_path / "logs",
        "data_dir": BUNDLED_DAILY,
        "bar_cache_dir": tmp_path / "bars",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings_factory(tmp_path: Path):
    def factory(**overrides: object) -> Settings:
        return make_settings(tmp_path, **overrides)

    return factory


def _pg_reason() -> str | None:
    import psycopg

    try:
        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # any failure means "no usable server": reported as the skip reason
        return f"no PostgreSQL server at {PG_URL}: {exc.__class__.__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return None


@pytest.fixture(scope="session")
def postgres_server() -> str:
    reason = _pg_reason()
    if reason is not None:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    return PG_URL


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"trader_test_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db.sqlite'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def bundled_daily() -> Path:
    if not BUNDLED_DAILY.exists():
        pytest.skip(f"bundled data missing at {BUNDLED_DAILY}")
    return BUNDLED_DAILY


def start_offline_daemon(database_url: str, tmp_path: Path, *, iterations: int = 50) -> subprocess.Popen[str]:
    """``main.py run --offline`` on synthetic bars against ``database_url``, in a subprocess, one iteration every 5 s
    (time for a test to act between two of them); the caller waits for it, or kills it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "SCHEDULE", "LOOP_INTERVAL"))}
    env.update(
        DATA_PROVIDER="synthetic",
        SCHEDULE="interval",
        LOOP_INTERVAL_SECONDS="5",
        LOG_DIR=str(tmp_path / "logs"),
        DATABASE_URL=database_url,
    )
    return subprocess.Popen(
        [sys.executable, "main.py", "run", "--offline", "--iterations", str(iterations)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

"""Operation: circuit breakers, the persisted trading state, health, reset and secret redaction — through the real
wiring (``main.main``), on the bundled bars or synthetic data."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

import main
from core.persistence.db import open_database
from core.persistence.models import BreakerEventRow, DaemonStateRow, DecisionRow, Run
from core.persistence.repository import Repository
from tests.conftest import BUNDLED_DAILY


def _session(url: str) -> Session:
    return Session(create_engine(url))


@pytest.fixture(autouse=True)
def _logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("DATA_DIR", str(BUNDLED_DAILY))


def test_low_data_quality_stops_new_entries_and_the_breaker_trip_is_recorded_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "daily"
    shutil.copytree(BUNDLED_DAILY, data)
    (data / "AIG.csv").write_text(
        "Date,Open\n"
    )  # unreadable files: excluded every session (a missing one stops start-up)
    (data / "BAC.csv").write_text("Date,Open\nx,y\n")
    monkeypatch.setenv("DATA_DIR", str(data))
    url = f"sqlite:///{tmp_path / 'q.db'}"
    assert main.main(["replay", "--start", "2019-01-01", "--end", "2020-12-31", "--quiet", "--db", url]) == 0
    with _session(url) as s:
        risk = s.scalars(
            select(DecisionRow).where(DecisionRow.agent == "risk", DecisionRow.action.like("denied:%"))
        ).all()
        buys = [d for d in risk if d.action == "denied:data_quality"]
        assert buys and all("67%" in d.reason for d in buys)
        approved_buys = s.scalars(
            select(DecisionRow).where(DecisionRow.agent == "risk", DecisionRow.action == "approved")
        ).all()
        assert all(d.inputs["side"] == "sell" for d in approved_buys)  # exits only
        trips = s.scalars(select(BreakerEventRow).where(BreakerEventRow.name == "data_quality")).all()
        assert [t.to_state for t in trips] == ["open"]


def test_equity_drawdown_halt_when_reached_then_halted_for_the_rest_of_the_run_recorded_and_run_status_halted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DRAWDOWN_LOCK", "0")
    monkeypatch.setenv("DRAWDOWN_HALT", "0.002")
    url = f"sqlite:///{tmp_path / 'dd.db'}"
    assert main.main(["replay", "--start", "2020-01-01", "--end", "2020-12-31", "--quiet", "--db", url]) == 0
    out = capsys.readouterr().out
    assert "trading state at the end: HALTED" in out and "*** ended HALTED" in out and "HALTED 2020-" in out
    with _session(url) as s:
        (halt,) = s.scalars(select(BreakerEventRow).where(BreakerEventRow.name == "trading_state")).all()
        assert halt.to_state == "halted" and "high-water mark" in halt.reason
        assert halt.details["event"] == "halt" and halt.details["equity"] < halt.details["high_water_mark"]
        after = s.scalars(select(DecisionRow).where(DecisionRow.agent == "risk", DecisionRow.as_of > halt.at)).all()
        assert after and {d.inputs["state"] for d in after} == {"halted"}
        assert not [d for d in after if d.action == "approved" and d.inputs.get("side") == "buy"]
        state = [r for r in s.scalars(select(DaemonStateRow)) if r.key.endswith("risk:state")]
        assert state and state[0].value["state"] == "halted"
        assert s.scalar(select(Run.status)) == "halted"


def _daemon_once(url: str) -> int:
    return main.main(["run", "--offline", "--once", "--create-db", "--db", url])


def test_halted_state_survives_a_restart_until_a_manual_reset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATA_PROVIDER", "synthetic")
    url = f"sqlite:///{tmp_path / 'daemon.db'}"
    assert _daemon_once(url) == 0
    repo = Repository(open_database(url))
    saved, _ = repo.get_state("risk:state")  # type: ignore[misc]
    assert saved["state"] == "active"
    repo.put_state("risk:state", {**saved, "state": "halted", "reason": "test halt"}, datetime.now(UTC))
    assert _daemon_once(url) == 0  # restart: still halted
    assert repo.get_state("risk:state")[0]["state"] == "halted"  # type: ignore[index]
    assert main.main(["health", "--db", url]) == 1
    assert "halted" in capsys.readouterr().out
    assert main.main(["reset", "--reason", "operator checked the account", "--db", url]) == 0
    assert repo.get_state("risk:state")[0]["state"] == "active"  # type: ignore[index]
    assert _daemon_once(url) == 0
    assert repo.get_state("risk:state")[0]["state"] == "active"  # type: ignore[index]
    with _session(url) as s:
        resets = s.scalars(select(BreakerEventRow).where(BreakerEventRow.name == "manual_reset")).all()
        assert [r.reason for r in resets] == ["operator checked the account"]


def test_health_is_unhealthy_without_a_heartbeat_healthy_after_an_iteration_and_stale_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATA_PROVIDER", "synthetic")
    url = f"sqlite:///{tmp_path / 'h.db'}"
    open_database(url)
    assert main.main(["health", "--db", url]) == 1
    assert "no heartbeat" in capsys.readouterr().out
    assert _daemon_once(url) == 0
    capsys.readouterr()
    assert main.main(["health", "--json", "--db", url]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["healthy"] is True and report["trading_state"] == "active"
    repo = Repository(open_database(url))
    beat, _ = repo.get_state("heartbeat")  # type: ignore[misc]
    old = datetime.now(UTC) - timedelta(days=10)
    repo.put_state("heartbeat", {**beat, "at": old.isoformat()}, old)
    assert main.main(["health", "--db", url]) == 1
    assert "stale" in capsys.readouterr().out


def test_secrets_never_reach_the_logs_even_in_tracebacks(tmp_path: Path) -> None:
    from loguru import logger

    from utils.logging import configure_logging

    secret = "sk-live-CANARY-0123456789abcdef"
    configure_logging(level="DEBUG", log_dir=tmp_path / "redact", secrets=[secret], console=False)
    try:
        logger.info("calling with key {}", secret)
        try:
            raise RuntimeError(f"auth failed for {secret}")
        except RuntimeError:
            logger.exception("request failed")
        logger.complete()
    finally:
        configure_logging(level="WARNING", log_dir=None, console=True)
    text = "".join(p.read_text() for p in (tmp_path / "redact").glob("*.log"))
    assert "RuntimeError" in text and "Traceback" in text
    assert secret not in text and text.count("***REDACTED***") >= 2


def test_offline_daemon_restart_keeps_the_simulated_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from decimal import Decimal

    from core.persistence.models import EquitySnapshotRow

    monkeypatch.setenv("DATA_PROVIDER", "synthetic")
    url = f"sqlite:///{tmp_path / 'acct.db'}"
    assert _daemon_once(url) == 0
    repo = Repository(open_database(url))
    state, _ = repo.get_state("broker:simulated")  # type: ignore[misc]
    state = {**state, "cash": "12345.67", "initial_cash": state["initial_cash"]}
    repo.put_state("broker:simulated", state, datetime.now(UTC))
    assert _daemon_once(url) == 0
    with _session(url) as s:
        snaps = s.scalars(select(EquitySnapshotRow).order_by(EquitySnapshotRow.id)).all()
        assert snaps[-1].cash == Decimal("12345.67")  # the second run continued the persisted account


@pytest.mark.postgres
def test_a_database_password_never_lands_in_the_database(postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """PostgreSQL with a password in DATABASE_URL (the local server trusts, so any password connects): the run row's
    recorded configuration keeps the URL with the password masked, and nothing else in the database holds it."""
    from sqlalchemy.engine import make_url

    password = "pw-" + "9f3c1e77ab"
    url = make_url(postgres_url).set(password=password).render_as_string(hide_password=False)
    assert main.main(["replay", "--start", "2020-01-02", "--end", "2020-01-31", "--quiet", "--db", url]) == 0
    engine = create_engine(url)
    with engine.connect() as conn:
        tables = [r[0] for r in conn.exec_driver_sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        dumps = {t: "\n".join(str(tuple(row)) for row in conn.exec_driver_sql(f'SELECT * FROM "{t}"')) for t in tables}
    engine.dispose()
    assert "runs" in dumps and "***" in dumps["runs"]  # the URL is recorded, masked
    assert not [t for t, text in dumps.items() if password in text]
    assert password not in capsys.readouterr().out

"""Drawdown protections that resume, through the real wiring (``main.main``) on the bundled bars: the drawdown lock
of a default backtest and of the demo is released after its cool-down and trading resumes; a run that ends halted
says so; the daemon's lock is released by sessions passing, its halt only by ``main.py reset``."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

import main
from core.persistence.db import open_database
from core.persistence.models import BreakerEventRow, DecisionRow, FillRow, Run
from core.persistence.repository import Repository
from tests.conftest import BUNDLED_DAILY


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("DATA_DIR", str(BUNDLED_DAILY))


def _rows(url: str, run_id: str) -> list[BreakerEventRow]:
    with Session(create_engine(url)) as s:
        return list(
            s.scalars(
                select(BreakerEventRow)
                .where(BreakerEventRow.run_id == run_id, BreakerEventRow.name == "trading_state")
                .order_by(BreakerEventRow.at, BreakerEventRow.id)
            )
        )


def test_default_2010_2020_backtest_when_the_drawdown_lock_trips_then_released_after_the_cooldown_and_entries_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'bt.db'}"
    assert main.main(["backtest", "--start", "2010-01-01", "--end", "2020-12-31", "--json", "--db", url]) == 0
    result = json.loads(capsys.readouterr().out)

    assert result["status"] == "finished" and result["trading_state"] != "halted"
    episodes = result["trading_episodes"]
    locked = [e for e in episodes if e["state"] == "locked"]
    assert locked and all(set(e) == {"state", "start", "end", "sessions", "reason"} for e in episodes)
    first = locked[0]
    assert first["start"].startswith("2011-") and first["end"] is not None and first["sessions"] == 20
    assert "from the lock reference" in first["reason"]
    assert result["sessions_locked"] == sum(e["sessions"] for e in locked) and result["sessions_halted"] == 0
    assert result["denied_by_rule"]["state"] > 0  # entries refused while locked
    # trading resumed: entries after the lock's last session, years of them
    entries_after = [t for t in result["trades"] if t["entry_at"][:10] > first["end"]]
    assert len(entries_after) >= 10 and max(t["entry_at"] for t in entries_after) > "2015-01-01"

    rows = _rows(url, result["run_id"])
    events = [(r.from_state, r.to_state, r.details["event"]) for r in rows]
    assert ("active", "locked", "lock") in events and ("locked", "reducing", "release") in events
    lock = next(r for r in rows if r.details["event"] == "lock")
    assert lock.details["session"] == first["start"]
    assert lock.details["equity"] < lock.details["high_water_mark"] and lock.details["drawdown"] > 0.10
    release = next(r for r in rows if r.details["event"] == "release")
    assert release.details["lock_reference"] == pytest.approx(
        release.details["equity"]
    )  # the reference reset at release
    with Session(create_engine(url)) as s:
        assert s.scalar(select(Run.status).where(Run.id == result["run_id"])) == "finished"


def test_backtest_when_it_ends_halted_then_status_halted_in_json_runs_table_and_console(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DRAWDOWN_LOCK", "0.04")
    monkeypatch.setenv("DRAWDOWN_LOCK_SESSIONS", "5")
    monkeypatch.setenv("DRAWDOWN_HALT", "0.06")
    url = database_url  # SQLite and PostgreSQL
    args = ["backtest", "--start", "2010-01-01", "--end", "2012-12-31", "--db", url]
    assert main.main(args + ["--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "halted" and result["trading_state"] == "halted"
    last = result["trading_episodes"][-1]
    assert last["state"] == "halted" and last["end"] is None and last["sessions"] == result["sessions_halted"] > 100
    assert "below its high-water mark" in last["reason"]
    # no entry decided once halted (an order of the session before fills at the halt session's open)
    assert not [t for t in result["trades"] if t["entry_at"][:10] > last["start"]]
    assert any(r.details["event"] == "halt" for r in _rows(url, result["run_id"]))

    assert main.main(args) == 0
    out = capsys.readouterr().out
    assert "(halted)" in out.splitlines()[0]
    assert f"HALTED {last['start']} .. end of run, still in force" in out and "*** ended HALTED" in out
    with Session(create_engine(url)) as s:
        assert set(s.scalars(select(Run.status))) == {"halted"}


def test_demo_when_the_2020_crash_drawdown_locks_then_it_trades_again_after_the_cooldown_and_prints_the_episode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    assert main.main(["demo", "--quiet", "--db", url]) == 0
    out = capsys.readouterr().out
    assert re.search(r"LOCKED 2020-0[3-4]-\d\d \.\. 2020-\d\d-\d\d \(20 sessions\)", out) and "ended HALTED" not in out
    assert "SPY buy & hold" in out and "Risk refusals by rule: " in out and " state " in out
    (run_id,) = [line.split("run ")[-1].rstrip(")") for line in out.splitlines() if line.startswith("Replaying")]
    rows = _rows(url, run_id)
    release = next(r for r in rows if r.details["event"] == "release")
    with Session(create_engine(url)) as s:
        buys_after = s.scalars(
            select(FillRow).where(FillRow.run_id == run_id, FillRow.side == "buy", FillRow.filled_at > release.at)
        ).all()
        assert buys_after  # new entries after the lock was released
        assert s.scalar(select(Run.status).where(Run.id == run_id)) == "finished"


def _daemon_once(url: str) -> int:
    return main.main(["run", "--create-db", "--offline", "--once", "--db", url])


def _after_one_offline_daemon_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Repository, dict]:
    """A daemon database after one ``run --offline --once`` on synthetic data: its URL, a repository on it and the
    risk state that run saved."""
    monkeypatch.setenv("DATA_PROVIDER", "synthetic")
    url = f"sqlite:///{tmp_path / 'daemon.db'}"
    assert _daemon_once(url) == 0
    repo = Repository(open_database(url))
    saved, _ = repo.get_state("risk:state")  # type: ignore[misc]
    return url, repo, saved


def test_daemon_when_locked_for_the_cooldown_then_the_next_session_releases_it_without_a_reset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, repo, saved = _after_one_offline_daemon_run(tmp_path, monkeypatch)
    equity = saved["high_water_mark"]
    locked = {
        **saved,
        "state": "locked",
        "reason": "drawdown lock (test)",
        "sessions": 20,
        "session": "2000-01-03",
        "lock_reference": equity,
    }
    repo.put_state("risk:state", locked, datetime.now(UTC))
    assert _daemon_once(url) == 0  # a new session: the 21st since the lock, past DRAWDOWN_LOCK_SESSIONS (20)
    state = repo.get_state("risk:state")[0]  # type: ignore[index]
    assert state["state"] == "reducing" and state["recovering"] is True
    with Session(create_engine(url)) as s:
        (release,) = s.scalars(select(BreakerEventRow).where(BreakerEventRow.name == "trading_state")).all()
        assert (release.from_state, release.to_state, release.details["event"]) == ("locked", "reducing", "release")
        assert release.details["session"] == date.fromisoformat(state["session"]).isoformat()


def test_daemon_when_halted_then_sessions_passing_do_not_release_it_and_main_reset_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url, repo, saved = _after_one_offline_daemon_run(tmp_path, monkeypatch)
    far_above = saved["high_water_mark"] * 10  # equity 90% below this mark: any evaluation against it halts
    halted = {
        **saved,
        "state": "halted",
        "reason": "halt (test)",
        "sessions": 500,
        "session": "2000-01-03",
        "high_water_mark": far_above,
        "lock_reference": far_above,
    }
    repo.put_state("risk:state", halted, datetime.now(UTC))
    capsys.readouterr()
    assert _daemon_once(url) == 0
    assert repo.get_state("risk:state")[0]["state"] == "halted"  # type: ignore[index]
    assert "Trading is HALTED: halt (test)" in capsys.readouterr().out  # the daemon's console says it
    with Session(create_engine(url)) as s:
        last = s.scalars(select(DecisionRow).where(DecisionRow.agent == "risk").order_by(DecisionRow.id.desc())).first()
        assert last is None or last.inputs["state"] == "halted"
        # the run that ended halted says so in its status, like a replay's or a backtest's
        assert [r.status for r in s.scalars(select(Run).order_by(Run.started_at))] == ["finished", "halted"]
    capsys.readouterr()
    assert main.main(["reset", "--reason", "operator reviewed the halt", "--db", url]) == 0
    state = repo.get_state("risk:state")[0]  # type: ignore[index]
    assert (
        state["state"] == "active"
        and state["high_water_mark"] < far_above
        and state["lock_reference"] == state["high_water_mark"]
    )
    assert _daemon_once(url) == 0  # not halted again at once: the marks were reset to the equity
    assert repo.get_state("risk:state")[0]["state"] == "active"  # type: ignore[index]

"""End-to-end: the replay through ``main.main`` — the same wiring the daemon uses — on the real bundled bars."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

import main
from core.persistence.db import normalise_url
from core.persistence.models import DecisionRow, EquitySnapshotRow, FillRow, Iteration, OrderRow, Run
from tests.conftest import BUNDLED_DAILY, REPO_ROOT

SYMBOLS = ["AAPL", "AIG", "BAC", "IBM", "IWM", "SPY"]
AGENTS = {"data", "strategy", "quant", "risk", "execution"}


def _session(url: str) -> Session:
    return Session(create_engine(normalise_url(url)))


def _replay(url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *extra: str, **env: str) -> int:
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("DATA_DIR", env.pop("DATA_DIR", str(BUNDLED_DAILY)))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return main.main(["replay", "--start", "2020-01-01", "--end", "2020-12-31", "--quiet", "--db", url, *extra])


RUN_ID = re.compile(r"(replay|demo|daemon|backtest)-\d{8}T\d{6}-[0-9a-f]{6}")


def _ledger(url: str) -> dict[str, list[tuple]]:
    """Fills, equity and decisions with the run id (which names each run uniquely) masked."""
    with _session(url) as s:
        return {
            "fills": [
                (f.symbol, f.side, f.quantity, f.price, f.commission, f.filled_at)
                for f in s.scalars(select(FillRow).order_by(FillRow.filled_at, FillRow.symbol))
            ],
            "equity": [
                (e.at, e.cash, e.equity) for e in s.scalars(select(EquitySnapshotRow).order_by(EquitySnapshotRow.at))
            ],
            "decisions": [
                (d.as_of, d.agent, d.symbol, d.action, d.strategy, d.confidence, RUN_ID.sub("<run>", d.reason))
                for d in s.scalars(
                    select(DecisionRow).order_by(DecisionRow.as_of, DecisionRow.agent, DecisionRow.symbol)
                )
            ],
        }


@pytest.mark.slow
def test_replay_of_a_year_trades_and_records_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'e2e.db'}"
    assert _replay(url, monkeypatch, tmp_path) == 0
    out = capsys.readouterr().out
    assert "Database:" in out and "query_trades.py" in out
    with _session(url) as s:
        iterations = s.scalars(select(Iteration)).all()
        assert len(iterations) == 253  # NYSE sessions in 2020
        assert all(i.status == "ok" for i in iterations)
        assert s.scalar(select(func.count()).select_from(EquitySnapshotRow)) == len(iterations)
        assert s.scalar(select(func.count()).select_from(FillRow)) > 0
        # every agent decided about every symbol in every iteration
        per_iteration = s.execute(
            select(DecisionRow.iteration_id, DecisionRow.agent, DecisionRow.symbol).where(DecisionRow.agent.in_(AGENTS))
        ).all()
        assert len(per_iteration) == len(iterations) * len(AGENTS) * len(SYMBOLS)
        assert {a for _, a, _ in per_iteration} == AGENTS
        denials = s.scalars(select(DecisionRow).where(DecisionRow.action.like("denied:%"))).all()
        assert denials and all(d.reason for d in denials)
        run = s.scalars(select(Run)).one()
        assert run.status == "finished" and run.kind == "replay"
        # every fill belongs to an order that records it as filled
        for order in s.scalars(select(OrderRow).where(OrderRow.status == "filled")):
            filled = s.scalars(select(FillRow).where(FillRow.client_order_id == order.client_order_id)).all()
            assert sum(f.quantity for f in filled) == order.filled_quantity


@pytest.mark.slow
def test_async_and_sync_bus_modes_give_identical_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = f"sqlite:///{tmp_path / 'async.db'}"
    b = f"sqlite:///{tmp_path / 'sync.db'}"
    assert _replay(a, monkeypatch, tmp_path, BUS_MODE="async") == 0
    assert _replay(b, monkeypatch, tmp_path, BUS_MODE="sync") == 0
    left, right = _ledger(a), _ledger(b)
    assert left["fills"] and left == right


@pytest.mark.slow
@pytest.mark.postgres
def test_postgresql_replay_writes_the_same_rows_as_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_url: str
) -> None:
    lite = f"sqlite:///{tmp_path / 'lite.db'}"
    assert _replay(lite, monkeypatch, tmp_path) == 0
    assert _replay(postgres_url, monkeypatch, tmp_path) == 0
    assert _ledger(lite) == _ledger(postgres_url)


def test_a_malformed_data_file_excludes_that_symbol_with_a_reason_and_the_rest_trade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "daily"
    shutil.copytree(BUNDLED_DAILY, data)
    (data / "BAC.csv").write_text("Date,Open,High\nnot,a,file\n")
    (data / "AIG.csv").write_text("")  # empty (a missing file would stop start-up: see test_data_problems.py)
    monkeypatch.setenv("DATA_DIR", str(data))
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))
    url = f"sqlite:///{tmp_path / 'bad2.db'}"
    assert main.main(["replay", "--start", "2020-06-01", "--end", "2020-06-30", "--quiet", "--db", url]) == 0
    with _session(url) as s:
        rejected = s.scalars(
            select(DecisionRow).where(DecisionRow.agent == "data", DecisionRow.action == "rejected")
        ).all()
        reasons = {d.symbol: d.reason for d in rejected}
        assert set(reasons) == {"AIG", "BAC"}
        assert "BAC.csv" in reasons["BAC"] and "AIG" in reasons["AIG"]
        ok = s.scalars(select(DecisionRow.symbol).where(DecisionRow.agent == "data", DecisionRow.action == "ok")).all()
        assert set(ok) == {"AAPL", "IBM", "IWM", "SPY"}
        quality = s.scalars(select(Iteration.data_quality)).all()
        assert quality and all(abs(q - 4 / 6) < 1e-9 for q in quality)


def test_invalid_setting_stops_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MAX_DAILY_LOSS", "-1")
    assert main.main(["replay", "--quiet"]) == 2
    assert "MAX_DAILY_LOSS" in capsys.readouterr().err


def test_unreachable_database_exits_non_zero_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))
    code = main.main(["replay", "--quiet", "--db", "postgresql://nobody:pw@127.0.0.1:1/none"])
    assert code == 3
    err = capsys.readouterr().err
    assert "cannot connect" in err and "pw@" not in err


def test_daemon_without_keys_explains_what_it_needs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))
    assert main.main(["--db", f"sqlite:///{tmp_path / 'x.db'}"]) == 2
    err = capsys.readouterr().err
    assert "ALPACA_API_KEY" in err and "make demo" in err


def test_offline_daemon_runs_one_iteration_on_synthetic_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("DATA_PROVIDER", "synthetic")
    url = f"sqlite:///{tmp_path / 'daemon.db'}"
    assert main.main(["run", "--offline", "--once", "--create-db", "--db", url]) == 0
    with _session(url) as s:
        run = s.scalars(select(Run)).one()
        assert (run.kind, run.status) == ("daemon", "finished")
        assert s.scalar(select(func.count()).select_from(Iteration)) == 1
        assert s.scalar(select(func.count()).select_from(EquitySnapshotRow)) == 1


@pytest.mark.slow
def test_sigterm_finishes_the_current_iteration_and_exits_zero(tmp_path: Path) -> None:
    db = tmp_path / "term.db"
    env = {k: v for k, v in os.environ.items() if k.upper() not in {"DATABASE_URL", "BUS_MODE"}}
    env.update({"LOG_DIR": str(tmp_path / "logs"), "DATA_DIR": str(BUNDLED_DAILY), "PYTHONUNBUFFERED": "1"})
    proc = subprocess.Popen(
        [
            sys.executable,
            "main.py",
            "replay",
            "--start",
            "2000-01-01",
            "--end",
            "2021-03-31",
            "--db",
            f"sqlite:///{db}",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    line = ""
    while time.monotonic() < deadline:  # wait for the first progress line: iterations are being recorded
        line = proc.stdout.readline()
        if "sessions" in line and "/" in line:
            break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    url = f"sqlite:///{db}"
    with _session(url) as s:
        run = s.scalars(select(Run)).one()
        assert run.status == "interrupted"
        n = s.scalar(select(func.count()).select_from(Iteration))
        assert 0 < n < 5000
        # nothing half-written: every recorded iteration has its equity snapshot and its decisions
        assert s.scalar(select(func.count()).select_from(EquitySnapshotRow)) == n
        # (IWM starts trading on 2000-05-26: before that only the Data agent says it is not listed yet)
        not_listed = s.scalar(select(func.count()).select_from(DecisionRow).where(DecisionRow.action == "not_listed"))
        recorded = s.scalar(select(func.count()).select_from(DecisionRow).where(DecisionRow.agent.in_(AGENTS)))
        assert recorded == n * len(AGENTS) * len(SYMBOLS) - not_listed * (len(AGENTS) - 1)


def test_second_daemon_on_the_same_database_exits_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from core.persistence.db import DaemonLock, open_database

    url = f"sqlite:///{tmp_path / 'locked.db'}"
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))
    with DaemonLock(open_database(url)):
        assert main.main(["replay", "--quiet", "--start", "2021-01-04", "--end", "2021-01-08", "--db", url]) == 4
    assert "already running" in capsys.readouterr().err


def test_query_trades_reads_the_replay_in_every_format(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from scripts import query_trades

    url = f"sqlite:///{tmp_path / 'q.db'}"
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("DATA_DIR", str(BUNDLED_DAILY))
    assert main.main(["replay", "--start", "2020-01-01", "--end", "2020-06-30", "--quiet", "--db", url]) == 0
    capsys.readouterr()
    assert query_trades.main(["trades", "--db", url, "--json"]) == 0
    trades = json.loads(capsys.readouterr().out)
    assert trades and {"symbol", "side", "quantity", "price", "filled_at", "strategy"} <= set(trades[0])
    symbol = trades[0]["symbol"]
    assert query_trades.main(["trades", "--db", url, "--json", "--symbol", symbol.lower()]) == 0
    assert {t["symbol"] for t in json.loads(capsys.readouterr().out)} == {symbol}
    assert (
        query_trades.main(
            ["decisions", "--db", url, "--csv", "--agent", "risk", "--start", "2020-03-02", "--end", "2020-03-02"]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("as_of,symbol,agent") and len(lines) == 1 + len(SYMBOLS)
    assert query_trades.main(["equity", "--db", url, "--limit", "3"]) == 0
    table = capsys.readouterr().out
    assert "equity" in table and "(3 rows)" in table
    assert query_trades.main(["orders", "--db", url, "--run", "latest", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)
    assert query_trades.main(["runs", "--db", url]) == 0
    assert "replay" in capsys.readouterr().out
    assert query_trades.main(["trades", "--db", f"sqlite:///{tmp_path / 'missing.db'}"]) == 3

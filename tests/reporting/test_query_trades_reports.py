"""The report sub-commands of scripts/query_trades.py on the hand-built ledger: --json parsed back, text by default."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from core.persistence.db import open_database
from core.persistence.models import Iteration
from core.persistence.repository import Repository
from scripts import query_trades
from tests.reporting.factories import RUN_1, RUN_2, build_ledger


@pytest.fixture
def url(tmp_path: Path) -> str:
    return build_ledger(f"sqlite:///{tmp_path / 'ledger.db'}").url


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    assert query_trades.main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _text(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert query_trades.main(list(argv)) == 0
    return capsys.readouterr().out


def test_performance_json_defaults_to_the_latest_run(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    report = _json(capsys, "performance", "--db", url)

    assert report["run_id"] == RUN_1
    assert report["metrics"]["profit_factor"] == pytest.approx(8.8)
    assert report["metrics"]["num_trades"] == 3
    assert report["by_strategy"]["mean_reversion"]["profit_factor"] == "inf"  # strict JSON has no Infinity
    assert Decimal(report["last_equity"]) == Decimal("101000")
    assert _json(capsys, "performance", "--db", url, "--run", RUN_2)["metrics"]["num_trades"] == 1


def test_performance_text_shows_metrics_and_groups(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = _text(capsys, "performance", "--db", url)
    assert f"Performance of run {RUN_1}" in out
    assert "profit factor" in out and "8.800" in out
    assert "By strategy:" in out and "trend_following" in out and "By symbol:" in out
    assert "Open positions" in out and "SPY" in out


def test_calibration_json_and_text(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    report = _json(capsys, "calibration", "--db", url)
    assert (report["total_trades"], report["scored_trades"], report["skipped_trades"]) == (4, 3, 1)
    assert report["brier_score"] == pytest.approx(0.27)
    assert [b["count"] for b in report["reliability"]] == [0, 0, 0, 1, 2]
    out = _text(capsys, "calibration", "--db", url, "--run", RUN_1, "--bins", "2")
    assert "Brier score 0.2700" in out and "[0.50, 1.00]" in out
    with pytest.raises(SystemExit):
        query_trades.main(["calibration", "--db", url, "--bins", "0"])


def test_breakers_json_and_text(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    report = _json(capsys, "breakers", "--db", url, "--run", "latest")
    assert {c["name"]: c["state"] for c in report["current"]} == {"data_feed": "closed", "llm_selection": "open"}
    assert [e["to_state"] for e in report["events"]] == ["open", "half_open", "closed", "open"]
    out = _text(capsys, "breakers", "--db", url, "--name", "broker")
    assert "Current states:" in out and "broker timeouts" in out and "Events (trips and recoveries):" in out


def test_risk_json_and_text(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    report = _json(capsys, "risk", "--db", url)
    assert report["state"]["state"] == "reducing"
    assert [(r["rule"], r["count"]) for r in report["refusals"]] == [
        ("already_long", 2),
        ("sector_cap", 1),
        ("state", 1),
    ]
    assert {b["sector"]: Decimal(b["value"]) for b in report["exposure"]} == {
        "broad_market": Decimal("2100"),
        "unknown": Decimal("300"),
    }
    out = _text(capsys, "risk", "--db", url)
    assert "Trading state: reducing" in out and "Refusals by rule:" in out and "already_long" in out


def test_risk_with_a_sector_map_file(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sectors = tmp_path / "sectors.json"
    sectors.write_text(json.dumps({"sectors": {"SPY": "index", "IWM": "small_caps", "XYZ": "index"}}))
    report = _json(capsys, "risk", "--db", url, "--sectors", str(sectors))
    assert {b["sector"]: Decimal(b["value"]) for b in report["exposure"]} == {
        "index": Decimal("1350"),
        "small_caps": Decimal("1050"),
    }


def test_reconcile_json_is_an_array_and_text_a_table(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    rows = _json(capsys, "reconcile", "--db", url, "--symbol", "SPY")
    assert [(r["kind"], r["details"]["broker"], r["resolution"]) for r in rows] == [
        ("position_mismatch", 12, "adopted the broker quantity")
    ]
    out = _text(capsys, "reconcile", "--db", url)
    assert "unknown_position" in out and "(2 rows)" in out


def test_why_json_and_text(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    report = _json(capsys, "why", "AAPL", "2024-03-01", "--db", url)
    assert [d["agent"] for d in report["decisions"]] == ["data", "selector", "strategy", "quant", "risk", "execution"]
    assert report["outcome"]["status"] == "closed"
    assert Decimal(report["outcome"]["pnl"]) == Decimal("-22.50")
    assert report["outcome"]["exit_at"].startswith("2024-03-07")
    out = _text(capsys, "why", "aapl", "2024-03-01", "--db", url)
    for section in ("Decisions (pipeline order):", "LLM calls:", "Orders:", "Fills:", "Outcome:"):
        assert section in out
    assert "groq:llama-test" in out and "r1-AAPL-buy" in out
    assert "exited 2024-03-07" in out and "pnl -22.50" in out
    assert "no order: risk denied:state" in _text(capsys, "why", "IBM", "2024-03-06", "--db", url)


def test_why_when_nothing_decided_exits_3_with_a_message(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert query_trades.main(["why", "AAPL", "2024-03-02", "--db", url]) == 3
    assert "no decision about AAPL on 2024-03-02" in capsys.readouterr().err
    assert query_trades.main(["performance", "--db", url, "--run", "nope"]) == 2  # an unknown run id is a usage error
    assert "--run nope: no such run" in capsys.readouterr().err


def test_existing_sub_commands_still_print_json_arrays(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("trades", "orders", "decisions", "equity", "runs"):
        rows = _json(capsys, command, "--db", url)
        assert isinstance(rows, list) and rows, command
    trades = _json(capsys, "trades", "--db", url, "--symbol", "aapl", "--run", RUN_1)
    assert [(t["side"], t["quantity"]) for t in trades] == [
        ("buy", "100"),
        ("sell", "40"),
        ("buy", "20"),
        ("sell", "80"),
    ]


def test_risk_with_an_unreadable_sector_map_is_a_usage_error(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"sectors": []}')
    with pytest.raises(SystemExit) as exit_info:
        query_trades.main(["risk", "--db", url, "--sectors", str(bad)])
    assert exit_info.value.code == 2
    assert "cannot use sector map" in capsys.readouterr().err


def test_runs_when_the_ledger_holds_many_runs_then_one_query_lists_them_with_degraded_apart_from_failed(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    repo = Repository(open_database(url))
    t0 = datetime(2024, 1, 2, tzinfo=UTC)
    statuses = ["ok", "degraded", "degraded", "failed"]
    for n in range(6):
        run_id = f"daemon-{n}"
        repo.create_run(run_id, kind="daemon", broker="simulated", data_provider="files", started_at=t0 + timedelta(hours=n),
                        initial_cash=Decimal("1000"), symbols=["SPY"], config={})  # fmt: skip
        with repo.session() as session, session.begin():
            for seq, status in enumerate(statuses, start=1):
                at = t0 + timedelta(days=seq)
                session.add(Iteration(id=f"{run_id}-{seq:06d}", run_id=run_id, seq=seq, as_of=at, recorded_at=at, status=status,
                                      error=None if status == "ok" else "x", symbols_total=1, symbols_ok=1, data_quality=1.0,
                                      signals=0, approvals=0, denials=0, orders=0, fills=0))  # fmt: skip
    statements: list[str] = []
    event.listen(repo.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

    with Session(repo.engine) as session:
        rows = query_trades.query_runs(session, argparse.Namespace(), None)

    assert len(statements) == 1  # not one query per run
    assert [r["run_id"] for r in rows] == [f"daemon-{n}" for n in range(6)]  # oldest first
    assert {(r["iterations"], r["degraded"], r["failed"]) for r in rows} == {(4, 2, 1)}
    assert (rows[0]["first_session"], rows[0]["last_session"]) == (date(2024, 1, 3), date(2024, 1, 6))
    repo.engine.dispose()

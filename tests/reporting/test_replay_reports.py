"""The reports over a database built the real way: a replay of 2020-H1 through ``main.main`` on the bundled bars."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

import main
from core.persistence.db import normalise_url
from core.persistence.models import DecisionRow, EquitySnapshotRow, FillRow, OrderRow, Run
from core.analytics.reporting import (
    PIPELINE_ORDER,
    calibration,
    performance,
    rebuild_round_trips,
    risk_view,
    round_trips,
    why,
)
from scripts import query_trades
from tests.conftest import BUNDLED_DAILY, SETTINGS_ENV


@pytest.fixture(scope="module")
def replay_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    if not BUNDLED_DAILY.exists():
        pytest.skip(f"bundled data missing at {BUNDLED_DAILY}")
    tmp = tmp_path_factory.mktemp("replay")
    url = f"sqlite:///{tmp / 'replay.db'}"
    with pytest.MonkeyPatch.context() as mp:  # the autouse env isolation is per test: do it here for the module
        for name in SETTINGS_ENV:
            mp.delenv(name, raising=False)
        mp.setenv("LOG_DIR", str(tmp / "logs"))
        mp.setenv("DATA_DIR", str(BUNDLED_DAILY))
        assert main.main(["replay", "--start", "2020-01-01", "--end", "2020-06-30", "--quiet", "--db", url]) == 0
    return url


@pytest.fixture
def session(replay_url: str) -> Iterator[Session]:
    engine = create_engine(normalise_url(replay_url))
    with Session(engine) as s:
        yield s
    engine.dispose()


def test_replay_round_trips_account_for_every_fill_and_the_equity_change(session: Session) -> None:
    book = rebuild_round_trips(session)
    fills = session.scalars(select(FillRow)).all()
    assert book.closed, "the 2020-H1 replay trades"
    assert book.unmatched == ()
    assert sum(len(t.fills) for t in book.trips) == len(fills)
    last = session.scalars(select(EquitySnapshotRow).order_by(EquitySnapshotRow.at.desc()).limit(1)).one()
    assert len(book.open) == last.positions
    if last.positions == 0:  # flat at the end: the net trade pnl is the whole equity change (equity rounded to cents)
        run = session.scalars(select(Run)).one()
        net = sum((t.pnl for t in book.closed), Decimal("0"))
        assert abs(net - (last.equity - run.initial_cash)) <= Decimal("0.01")


def test_replay_entry_confidence_is_the_risk_approval_of_the_entry_iteration(session: Session) -> None:
    for trip in rebuild_round_trips(session).trips:
        entry = session.scalars(select(OrderRow).where(OrderRow.client_order_id == trip.entry_order_id)).one()
        assert entry.side == "buy" and entry.strategy == trip.strategy
        approval = session.scalars(
            select(DecisionRow).where(
                DecisionRow.iteration_id == entry.iteration_id,
                DecisionRow.symbol == trip.symbol,
                DecisionRow.agent == "risk",
            )
        ).one()
        assert approval.action == "approved"
        assert trip.entry_confidence == approval.confidence


def test_replay_performance_and_calibration_agree_with_the_round_trips(session: Session) -> None:
    trades = round_trips(session)
    report = performance(session)
    m = report["metrics"]
    assert m["num_trades"] == len(trades)
    assert m["total_pnl"] == pytest.approx(sum(t.pnl for t in trades))
    assert m["num_observations"] == 125  # NYSE sessions in 2020-H1
    assert 0.0 < m["exposure"] < 1.0
    assert sum(g["num_trades"] for g in report["by_strategy"].values()) == len(trades)
    assert sum(g["num_trades"] for g in report["by_symbol"].values()) == len(trades)
    cal = calibration(session)
    assert cal.total_trades == len(trades) and cal.skipped_trades == 0
    assert cal.hit_rate == pytest.approx(m["win_rate"])


def test_replay_why_on_the_first_entry_day_follows_it_to_its_exit(session: Session) -> None:
    first = round_trips(session)[0]
    entry = rebuild_round_trips(session, symbol=first.symbol).trips[0]
    order = session.scalars(select(OrderRow).where(OrderRow.client_order_id == entry.entry_order_id)).one()
    report = why(session, first.symbol, order.submitted_at.date())

    agents = [d["agent"] for d in report["decisions"]]
    assert agents == [a for a in PIPELINE_ORDER if a in agents] and {
        "data",
        "strategy",
        "quant",
        "risk",
        "execution",
    } <= set(agents)
    assert entry.entry_order_id in [o["client_order_id"] for o in report["orders"]]
    assert entry.entry_order_id in [f["client_order_id"] for f in report["fills"]]
    out = report["outcome"]
    assert out["status"] == "closed" and out["entry_order_id"] == entry.entry_order_id
    assert out["exit_at"] == first.exit_at and float(out["pnl"]) == pytest.approx(first.pnl)


def test_replay_risk_view_counts_every_refusal(session: Session) -> None:
    report = risk_view(session)
    denials = session.scalars(
        select(DecisionRow).where(DecisionRow.agent == "risk", DecisionRow.action.like("denied:%"))
    ).all()
    assert sum(r["count"] for r in report["refusals"]) == len(denials) > 0
    assert {r["rule"] for r in report["refusals"]} == {d.action.split(":", 1)[1] for d in denials}
    assert report["state"]["state"] in {"unknown", "active", "reducing", "locked", "halted"}
    assert report["last_decision_state"]["state"] in {"active", "reducing", "locked", "halted"}


@pytest.mark.parametrize(
    ("argv", "kind"),
    [
        (["performance"], dict),
        (["calibration"], dict),
        (["breakers"], dict),
        (["risk"], dict),
        (["reconcile"], list),
        (["why", "AAPL", "2020-03-02"], dict),
    ],
)
def test_replay_every_report_sub_command_prints_json_and_text(
    replay_url: str, argv: list[str], kind: type, capsys: pytest.CaptureFixture[str]
) -> None:
    assert query_trades.main([*argv, "--db", replay_url, "--json"]) == 0
    assert isinstance(json.loads(capsys.readouterr().out), kind)
    assert query_trades.main([*argv, "--db", replay_url]) == 0
    assert capsys.readouterr().out.strip()


def test_replay_why_json_names_the_session_date(replay_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert query_trades.main(["why", "SPY", "2020-03-02", "--db", replay_url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["date"] == date(2020, 3, 2).isoformat()
    assert all(d["as_of"].startswith("2020-03-02") for d in report["decisions"])
    assert len({d["agent"] for d in report["decisions"]}) == len(report["decisions"])  # one decision per agent

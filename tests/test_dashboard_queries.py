"""The queries behind the dashboard's panels, over a database written the real way (a replay and a backtest of
2018-H1 on the bundled bars), on SQLite and PostgreSQL; every figure is checked against the tables directly.
Also: the dashboard's engine is read-only, the health verdict, ``main.py dashboard`` and the Streamlit script."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, insert, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

import main
from core.analytics import reporting
from core.runtime.health import health_report
from core.kernel.calendar import MarketCalendar
from core.dashboard import formatting as fmt
from core.dashboard import queries as q
from core.dashboard.readonly import DatabaseUnavailable, open_readonly
from core.persistence.db import normalise_url, open_database
from core.persistence.models import (
    AuditReportRow,
    BreakerEventRow,
    DaemonStateRow,
    DecisionRow,
    EquitySnapshotRow,
    FillRow,
    Iteration,
    LLMCallRow,
    OrderRow,
    PositionRow,
    Run,
)
from core.persistence.repository import Repository
from tests.conftest import BUNDLED_DAILY, SETTINGS_ENV, make_settings

START, END = "2018-01-01", "2018-06-30"


@dataclass(frozen=True)
class Built:
    url: str
    replay: str
    backtest: str


def _build(url: str, tmp: Path) -> Built:
    """A replay of 2018-H1 (six symbols) and a backtest of the same period (three symbols) into ``url``, plus LLM
    calls and selector abstentions added to the replay (deterministic replays make none)."""
    with pytest.MonkeyPatch.context() as mp:  # the autouse env isolation is per test: do it here for the module
        for name in SETTINGS_ENV:
            mp.delenv(name, raising=False)
        mp.setenv("LOG_DIR", str(tmp / "logs"))
        mp.setenv("DATA_DIR", str(BUNDLED_DAILY))
        assert main.main(["replay", "--start", START, "--end", END, "--quiet", "--db", url]) == 0
        assert main.main(["backtest", "--start", START, "--end", END, "--symbols", "AAPL,SPY,IBM", "--db", url]) == 0
    engine = create_engine(normalise_url(url))
    with Session(engine) as s:
        replay = s.scalars(select(Run.id).where(Run.kind == "replay")).one()
        backtest = s.scalars(select(Run.id).where(Run.kind == "backtest")).one()
        iterations = s.scalars(select(Iteration.id).where(Iteration.run_id == replay).order_by(Iteration.seq)).all()
        at = datetime(2018, 3, 1, 21, tzinfo=UTC)
        calls = [  # (outcome, cost, latency ms)
            ("ok", Decimal("0.0010"), 100.0),
            ("ok", Decimal("0.0020"), 200.0),
            ("invalid", None, 300.0),
            ("budget_exceeded", None, 0.0),
        ]
        s.execute(
            insert(LLMCallRow),
            [
                {
                    "run_id": replay,
                    "iteration_id": iterations[i],
                    "purpose": "selection",
                    "provider": "groq",
                    "model": "test-model",
                    "prompt_version": "v1",
                    "prompt_hash": "h",
                    "input_tokens": 10,
                    "output_tokens": 5,
                    "cost_usd": cost,
                    "latency_ms": latency,
                    "retries": 0,
                    "outcome": outcome,
                    "validation_errors": {"errors": []},
                    "symbols": {"symbols": ["SPY"]},
                    "error": None,
                    "started_at": at + timedelta(days=i),
                }
                for i, (outcome, cost, latency) in enumerate(calls)
            ],
        )
        s.execute(
            insert(DecisionRow),
            [
                {
                    "run_id": replay,
                    "iteration_id": iterations[i],
                    "as_of": at + timedelta(days=i),
                    "agent": "selector",
                    "symbol": "SPY",
                    "action": "abstain",
                    "strategy": None,
                    "confidence": None,
                    "reason": "LLM answer failed validation",
                    "inputs": {},
                }
                for i in (2, 3)
            ],
        )
        s.commit()
    engine.dispose()
    return Built(url, replay, backtest)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    if not BUNDLED_DAILY.exists():
        pytest.skip(f"bundled data missing at {BUNDLED_DAILY}")
    tmp = tmp_path_factory.mktemp(f"dashboard-{request.param}")
    if request.param == "sqlite":
        yield _build(f"sqlite:///{tmp / 'dash.db'}", tmp)
        return
    import psycopg
    from sqlalchemy.engine import make_url

    server = request.getfixturevalue("postgres_server")
    name = f"trader_dash_{secrets.token_hex(6)}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _build(make_url(server).set(database=name).render_as_string(hide_password=False), tmp)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def ro_engine(built: Built) -> Iterator[Engine]:
    engine = open_readonly(built.url)
    yield engine
    engine.dispose()


@pytest.fixture
def s(ro_engine: Engine) -> Iterator[Session]:
    with Session(ro_engine) as session:
        yield session


# --------------------------------------------------------------------------------------------------- runs


def test_runs_are_listed_newest_first_with_their_iteration_counts(built: Built, s: Session) -> None:
    runs = q.list_runs(s)
    assert list(runs["run_id"]) == [built.backtest, built.replay]  # the backtest started last
    assert list(runs["kind"]) == ["backtest", "replay"]
    for row in runs.itertuples():
        count = s.scalar(select(func.count()).select_from(Iteration).where(Iteration.run_id == row.run_id))
        first, last = s.execute(
            select(func.min(Iteration.as_of), func.max(Iteration.as_of)).where(Iteration.run_id == row.run_id)
        ).one()
        assert row.iterations == count == 125  # NYSE sessions in 2018-H1
        assert row.failed == row.degraded == 0
        assert (str(row.first_session), str(row.last_session)) == ("2018-01-02", "2018-06-29")
        assert row.initial_cash == Decimal("100000")
    one = q.list_runs(s, built.replay)
    assert one.to_dict("records") == runs[runs["run_id"] == built.replay].to_dict("records")
    assert q.default_run_id(s) == built.backtest  # no daemon run: the latest run
    assert q.run_summary(s, built.replay)["symbols"] == ["AAPL", "AIG", "BAC", "IBM", "IWM", "SPY"]
    with pytest.raises(LookupError):
        q.run_summary(s, "no-such-run")


def test_default_run_is_the_latest_daemon_run_even_when_a_replay_started_later(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    repo = Repository(open_database(url))
    t0 = datetime(2024, 1, 2, tzinfo=UTC)
    for run_id, kind, at in (
        ("daemon-old", "daemon", t0),
        ("daemon-new", "daemon", t0 + timedelta(days=1)),
        ("replay-later", "replay", t0 + timedelta(days=2)),
    ):
        repo.create_run(
            run_id,
            kind=kind,
            broker="simulated",
            data_provider="files",
            started_at=at,
            initial_cash=Decimal("1000"),
            symbols=["SPY"],
            config={},
        )
    repo.engine.dispose()
    engine = open_readonly(url)
    with Session(engine) as session:
        assert q.default_run_id(session) == "daemon-new"
        assert list(q.list_runs(session)["run_id"]) == ["replay-later", "daemon-new", "daemon-old"]
        assert q.list_runs(session)["iterations"].tolist() == [0, 0, 0]
    engine.dispose()


def test_runs_when_iterations_were_degraded_or_failed_then_counted_apart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'statuses.db'}"
    repo = Repository(open_database(url))
    t0 = datetime(2024, 1, 2, tzinfo=UTC)
    repo.create_run(
        "daemon-x",
        kind="daemon",
        broker="simulated",
        data_provider="files",
        started_at=t0,
        initial_cash=Decimal("1000"),
        symbols=["SPY"],
        config={},
    )
    with repo.session() as session, session.begin():
        for seq, status in enumerate(["ok", "degraded", "degraded", "failed"], start=1):
            session.add(
                Iteration(
                    id=f"daemon-x-{seq:06d}",
                    run_id="daemon-x",
                    seq=seq,
                    as_of=t0 + timedelta(days=seq),
                    recorded_at=t0 + timedelta(days=seq),
                    status=status,
                    error=None if status == "ok" else "x",
                    symbols_total=1,
                    symbols_ok=1,
                    data_quality=1.0,
                    signals=0,
                    approvals=0,
                    denials=0,
                    orders=0,
                    fills=0,
                )
            )
    repo.engine.dispose()
    engine = open_readonly(url)
    with Session(engine) as session:
        [row] = q.list_runs(session).to_dict("records")
        assert (row["iterations"], row["degraded"], row["failed"]) == (4, 2, 1)
    engine.dispose()


# --------------------------------------------------------------------------------------------------- equity


def _csv_closes(symbol: str) -> dict[str, float]:
    lines = (BUNDLED_DAILY / f"{symbol}.csv").read_text().splitlines()
    header = lines[0].split(",")
    at, close = header.index("Date"), header.index("Close")
    return {cells[at]: float(cells[close]) for cells in (line.split(",") for line in lines[1:])}


@pytest.mark.parametrize("which", ["replay", "backtest"])
def test_equity_curve_final_equity_drawdown_and_benchmark_match_the_tables(
    built: Built, s: Session, which: str
) -> None:
    run_id = getattr(built, which)
    snaps = s.scalars(
        select(EquitySnapshotRow).where(EquitySnapshotRow.run_id == run_id).order_by(EquitySnapshotRow.at)
    ).all()
    curve = q.equity_curve(s, run_id)
    assert len(curve.frame) == len(snaps) == 125
    assert curve.final_equity == snaps[-1].equity and isinstance(curve.final_equity, Decimal)
    assert curve.first_equity == snaps[0].equity
    assert list(curve.frame["equity"]) == [x.equity for x in snaps]
    assert curve.total_return == pytest.approx(float(snaps[-1].equity / snaps[0].equity - 1))
    # drawdown by hand: the fall below the running peak, in Decimal
    peak, worst, by_hand = Decimal("0"), Decimal("0"), []
    for x in snaps:
        peak = max(peak, x.equity)
        by_hand.append(float(1 - x.equity / peak))
        worst = max(worst, 1 - x.equity / peak)
    assert curve.max_drawdown == pytest.approx(float(worst), abs=1e-12)
    assert curve.frame["drawdown"].tolist() == pytest.approx(by_hand, abs=1e-12)
    assert curve.max_drawdown == pytest.approx(curve.metrics["max_drawdown"])
    # the benchmark: SPY's close in the bundled data file, by session date
    closes = _csv_closes("SPY")
    first, last = closes[snaps[0].at.date().isoformat()], closes[snaps[-1].at.date().isoformat()]
    assert curve.benchmark_symbol == "SPY"
    assert curve.benchmark_return == pytest.approx(last / first - 1)
    assert curve.frame["benchmark"].iloc[0] == pytest.approx(float(snaps[0].equity))
    assert curve.frame["benchmark"].iloc[-1] == pytest.approx(float(snaps[0].equity) * last / first)
    # another symbol of the run, chosen in the sidebar
    ibm = q.equity_curve(s, run_id, "ibm")
    assert ibm.benchmark_symbol == "IBM" and ibm.benchmark_return != curve.benchmark_return
    assert q.equity_curve(s, run_id, "NOPE").benchmark_symbol is None


def test_the_shadow_ledger_and_the_data_agent_record_the_same_closes(built: Built, s: Session) -> None:
    shadow = q.benchmark_closes(s, built.replay, "SPY")
    from_decisions = {
        d.iteration_id: d.inputs["close"]
        for d in s.scalars(
            select(DecisionRow).where(
                DecisionRow.run_id == built.replay, DecisionRow.agent == "data", DecisionRow.symbol == "SPY"
            )
        )
    }
    assert len(shadow) == 125 and shadow.keys() == from_decisions.keys()
    assert shadow == pytest.approx(from_decisions)
    assert q.benchmark_closes(s, built.replay, "ZZZZ") == {}


def test_the_benchmark_falls_back_to_the_data_agents_closes_without_a_shadow_ledger(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'noshadow.db'}"
    repo = Repository(open_database(url))
    t0 = datetime(2024, 1, 2, 21, tzinfo=UTC)
    repo.create_run(
        "r",
        kind="replay",
        broker="simulated",
        data_provider="files",
        started_at=t0,
        initial_cash=Decimal("1000"),
        symbols=["SPY"],
        config={},
    )
    with repo.session() as session:
        for i, close in enumerate((100.0, 110.0)):
            at = t0 + timedelta(days=i)
            session.execute(insert(Iteration).values(
                id=f"r-{i}", run_id="r", seq=i, as_of=at, recorded_at=at, status="ok", error=None, symbols_total=1,
                symbols_ok=1, data_quality=1.0,
            ))  # fmt: skip
            session.execute(insert(DecisionRow).values(
                run_id="r", iteration_id=f"r-{i}", as_of=at, agent="data", symbol="SPY", action="ok", strategy=None,
                confidence=None, reason="ok", inputs={"close": close},
            ))  # fmt: skip
            session.execute(insert(EquitySnapshotRow).values(
                run_id="r", iteration_id=f"r-{i}", at=at, cash=Decimal("1000"), market_value=Decimal("0"),
                equity=Decimal("1000"), positions=0,
            ))  # fmt: skip
        session.commit()
    repo.engine.dispose()
    engine = open_readonly(url)
    with Session(engine) as session:
        assert q.benchmark_closes(session, "r", "spy") == {"r-0": 100.0, "r-1": 110.0}
        curve = q.equity_curve(session, "r")
        assert curve.benchmark_symbol == "SPY" and curve.benchmark_return == pytest.approx(0.10)
        assert curve.frame["benchmark"].tolist() == pytest.approx([1000.0, 1100.0])
        assert curve.max_drawdown == 0.0 and curve.final_equity == Decimal("1000")
    engine.dispose()


# --------------------------------------------------------------------------------------------------- positions, orders


def test_open_positions_carry_stop_target_and_unrealised_pnl(built: Built, s: Session) -> None:
    rows = s.scalars(select(PositionRow).where(PositionRow.run_id == built.replay)).all()
    positions = q.open_positions(s, built.replay)
    assert rows, "2018-H1 ends with an open position"
    assert len(positions.frame) == len(rows)
    for p, row in zip(positions.frame.itertuples(), sorted(rows, key=lambda r: r.symbol), strict=False):
        assert (p.symbol, p.quantity, p.average_price, p.last_price) == (
            row.symbol,
            row.quantity,
            row.average_price,
            row.last_price,
        )
        assert p.unrealized_pnl == (row.last_price - row.average_price) * row.quantity
        # the protective legs are the open stop and take-profit orders of the bracket
        legs = {
            o.order_type: o
            for o in s.scalars(
                select(OrderRow).where(
                    OrderRow.run_id == built.replay, OrderRow.symbol == row.symbol, OrderRow.status == "submitted"
                )
            )
        }
        assert p.stop_price == legs["stop"].stop_price and p.target_price == legs["limit"].limit_price
        assert p.stop_price < p.average_price < p.target_price
    assert positions.unrealized_pnl == sum((r.last_price - r.average_price) * r.quantity for r in rows)
    assert positions.market_value == sum(r.market_value for r in rows)


def test_order_and_fill_counts_and_the_most_recent_rows(built: Built, s: Session) -> None:
    for run_id in (built.replay, built.backtest):
        counts = q.activity_counts(s, run_id)
        assert counts["orders"] == s.scalar(select(func.count()).select_from(OrderRow).where(OrderRow.run_id == run_id))
        assert counts["fills"] == s.scalar(select(func.count()).select_from(FillRow).where(FillRow.run_id == run_id))
        assert counts["fills"] > 0 and counts["iterations"] == 125
        assert sum(counts["orders_by_status"].values()) == counts["orders"]
        assert counts["orders_by_status"]["filled"] == s.scalar(
            select(func.count()).select_from(OrderRow).where(OrderRow.run_id == run_id, OrderRow.status == "filled")
        )
        orders = q.recent_orders(s, run_id, limit=5)
        assert len(orders) == 5 and orders["submitted_at"].is_monotonic_decreasing
        latest = s.scalar(select(func.max(OrderRow.submitted_at)).where(OrderRow.run_id == run_id))
        assert orders["submitted_at"].iloc[0] == latest
        all_fills = q.recent_fills(s, run_id, limit=1000)
        assert len(all_fills) == counts["fills"]
        assert all(
            v == qty * price
            for v, qty, price in zip(all_fills["value"], all_fills["quantity"], all_fills["price"], strict=False)
        )
        assert set(all_fills["client_order_id"]) <= set(
            s.scalars(select(OrderRow.client_order_id).where(OrderRow.run_id == run_id))
        )


def test_round_trips_when_a_run_closed_trades_then_each_row_has_its_pnl_exit_reason_and_holding_sessions(
    built: Built, s: Session
) -> None:
    for run_id in (built.replay, built.backtest):
        trips = q.round_trips(s, run_id)
        closed = reporting.round_trips(s, run_id=run_id)  # what `query_trades.py trades` lists
        assert len(trips) == len(closed) > 0
        assert sorted(zip(trips["symbol"], trips["entry_at"], trips["exit_at"], strict=False)) == sorted(
            (t.symbol, t.entry_at, t.exit_at) for t in closed
        )
        assert list(trips["exit_at"]) == sorted(trips["exit_at"], reverse=True)  # newest exit first
        sessions = sorted(
            {a.date() for a in s.scalars(select(Iteration.as_of).where(Iteration.run_id == run_id))}
        )  # 20:00/21:00 UTC
        for row in trips.itertuples():
            fills = s.scalars(
                select(FillRow).where(FillRow.run_id == run_id, FillRow.symbol == row.symbol,
                                      FillRow.filled_at >= row.entry_at, FillRow.filled_at <= row.exit_at)
            ).all()  # fmt: skip
            bought = [f for f in fills if f.side == "buy"]
            sold = [f for f in fills if f.side == "sell"]
            assert sum(f.quantity for f in bought) == sum(f.quantity for f in sold) == row.quantity
            cost = sum(f.quantity * f.price for f in bought)
            assert row.pnl == sum(f.quantity * f.price for f in sold) - cost - sum(f.commission for f in fills)
            assert isinstance(row.pnl, Decimal) and row.return_pct == pytest.approx(float(row.pnl / cost))
            assert row.entry_price == cost / row.quantity
            # the order of the closing fill says why the trade ended
            last = s.scalars(select(OrderRow).where(OrderRow.client_order_id == row.exit_order_id)).one()
            expected = {"stop": "stop", "limit": "target", "market": "signal"}[last.order_type]
            assert row.exit_reason == expected, (last.order_type, last.reason)
            # sessions after the entry's date up to the exit's (fills of daily bars are stamped at midnight UTC)
            assert row.holding_sessions == sum(1 for d in sessions if row.entry_at.date() < d <= row.exit_at.date())
    replay = q.round_trips(s, built.replay)
    assert set(replay["exit_reason"]) == {"stop", "target", "signal"}  # 2018-H1 ends trades all three ways
    iwm = replay[replay["symbol"] == "IWM"].iloc[0]
    assert (str(iwm.entry_at.date()), str(iwm.exit_at.date()), iwm.holding_sessions) == ("2018-02-06", "2018-02-09", 3)
    assert q.round_trips(s, built.replay, limit=2).to_dict("records") == replay.head(2).to_dict("records")


@pytest.mark.parametrize(
    ("order_type", "reason", "client_order_id", "expected"),
    [
        ("stop", "stop-loss of r-20180205-IWM-buy", "r-20180205-IWM-buy-sl", "stop"),
        ("trailing_stop", "", "alpaca-leg", "stop"),
        ("limit", "take-profit of r-20180205-IWM-buy", "r-20180205-IWM-buy-tp", "target"),
        ("market", "SELL 140 IWM (close position) in state active: exit on volatility_breakout SELL", "r-1", "signal"),
        (
            "market",
            "SELL 140 IWM (close position) in state reducing: time stop: held 10 sessions (limit 10)",
            "r-2",
            "time",
        ),
        ("market", "operator flatten", "r-3", "other"),
    ],
)
def test_exit_reason_when_order_known_then_names_stop_target_signal_or_time(
    order_type: str, reason: str, client_order_id: str, expected: str
) -> None:
    assert q.exit_reason(order_type, reason, client_order_id) == expected


# --------------------------------------------------------------------------------------------------- decisions


def test_recent_decisions_per_agent_are_that_agents_newest(built: Built, s: Session) -> None:
    decisions = q.recent_decisions(s, built.replay, limit=7)
    agents = set(s.scalars(select(DecisionRow.agent).where(DecisionRow.run_id == built.replay).distinct()))
    assert set(decisions) == agents and "selector" in agents
    assert list(decisions)[:6] == ["data", "selector", "strategy", "quant", "risk", "execution"]  # pipeline order
    for agent, frame in decisions.items():
        total = s.scalar(
            select(func.count())
            .select_from(DecisionRow)
            .where(DecisionRow.run_id == built.replay, DecisionRow.agent == agent)
        )
        assert len(frame) == min(7, total)
        assert set(frame["agent"]) == {agent} and frame["as_of"].is_monotonic_decreasing
        newest = s.scalar(
            select(func.max(DecisionRow.as_of)).where(DecisionRow.run_id == built.replay, DecisionRow.agent == agent)
        )
        assert frame["as_of"].iloc[0] == newest


def test_refusals_by_rule_equal_a_direct_count(built: Built, s: Session) -> None:
    for run_id in (built.replay, built.backtest):
        direct = dict(
            s.execute(
                select(DecisionRow.action, func.count())
                .where(DecisionRow.run_id == run_id, DecisionRow.agent == "risk", DecisionRow.action.like("denied:%"))
                .group_by(DecisionRow.action)
            ).all()
        )
        refusals = q.refusals_by_rule(s, run_id)
        assert {f"denied:{r}": c for r, c in zip(refusals["rule"], refusals["count"], strict=False)} == direct
        assert list(refusals["count"]) == sorted(refusals["count"], reverse=True)
    assert len(q.refusals_by_rule(s, built.replay)) >= 2  # 2018-H1 refuses for several rules


# --------------------------------------------------------------------------------------------------- state


def test_trading_state_and_breakers_are_the_runs_own(built: Built, s: Session) -> None:
    for run_id in (built.replay, built.backtest):
        saved = s.get(DaemonStateRow, f"{run_id}:risk:state")
        assert saved is not None
        state = q.trading_state(s, run_id)
        assert state.state == saved.value["state"] == "active"
        assert state.reason == saved.value["reason"]
        assert state.high_water_mark == saved.value["high_water_mark"]
        keys = s.scalars(select(DaemonStateRow.key).where(DaemonStateRow.key.like(f"{run_id}:breaker:%"))).all()
        assert sorted(state.breakers["name"]) == sorted(k.rsplit(":", 1)[1] for k in keys)
        assert len(state.breaker_events) == s.scalar(
            select(func.count()).select_from(BreakerEventRow).where(BreakerEventRow.run_id == run_id)
        )
        last = s.scalars(
            select(EquitySnapshotRow)
            .where(EquitySnapshotRow.run_id == run_id)
            .order_by(EquitySnapshotRow.at.desc())
            .limit(1)
        ).one()
        assert state.equity == last.equity
        assert state.gross_exposure == sum(
            p.market_value for p in s.scalars(select(PositionRow).where(PositionRow.run_id == run_id))
        )


def _state_db(tmp_path: Path, states: dict[str, str], *, daemon_healthy: bool = False) -> str:
    """A database with one backtest run per ``run_id -> trading state`` (one session each, an equity snapshot), and
    with ``daemon_healthy`` a daemon whose fresh heartbeat and own state say healthy and ACTIVE."""
    url = f"sqlite:///{tmp_path / 'states.db'}"
    repo = Repository(open_database(url))
    now = datetime.now(UTC)
    t0 = datetime(2024, 3, 4, 21, tzinfo=UTC)
    for n, (run_id, state) in enumerate(states.items()):
        repo.create_run(run_id, kind="backtest", broker="simulated", data_provider="files", started_at=t0 + timedelta(minutes=n),
                        initial_cash=Decimal("1000"), symbols=["SPY"], config={})  # fmt: skip
        with repo.session() as session:
            session.execute(insert(Iteration).values(
                id=f"{run_id}-1", run_id=run_id, seq=1, as_of=t0, recorded_at=t0, status="ok", error=None, symbols_total=1,
                symbols_ok=1, data_quality=1.0,
            ))  # fmt: skip
            session.execute(insert(EquitySnapshotRow).values(
                run_id=run_id, iteration_id=f"{run_id}-1", at=t0, cash=Decimal("1000"), market_value=Decimal("0"),
                equity=Decimal("1000"), positions=0,
            ))  # fmt: skip
            session.commit()
        repo.put_state(f"{run_id}:risk:state", {"state": state, "reason": f"{state}: because of {run_id}"}, t0)
    if daemon_healthy:
        repo.put_state("heartbeat", {"run_id": "daemon-x", "iteration_id": "daemon-x-1", "as_of": t0.isoformat(),
                                     "at": (now - timedelta(minutes=1)).isoformat(), "status": "ok"}, now)  # fmt: skip
        repo.put_state("risk:state", {"state": "active", "reason": "within limits"}, now)
    repo.engine.dispose()
    return url


def test_state_banner_is_green_only_when_the_runs_state_is_active(tmp_path: Path) -> None:
    url = _state_db(
        tmp_path, {"bt-active": "active", "bt-reducing": "reducing", "bt-locked": "locked", "bt-halted": "halted"}
    )
    engine = open_readonly(url)
    with Session(engine) as session:
        banners = {
            run_id: q.state_banner(session, run_id) for run_id in ("bt-active", "bt-reducing", "bt-locked", "bt-halted")
        }
    engine.dispose()
    assert {r: (b.state, b.level) for r, b in banners.items()} == {
        "bt-active": ("ACTIVE", "success"), "bt-reducing": ("REDUCING", "warning"),
        "bt-locked": ("LOCKED", "error"), "bt-halted": ("HALTED", "error"),
    }  # fmt: skip
    assert banners["bt-halted"].text == "Trading HALTED: halted: because of bt-halted"


def test_the_app_when_a_halted_run_is_shown_under_a_healthy_daemon_then_the_banner_is_red_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamlit.testing.v1 import AppTest

    from core.dashboard import app_path

    url = _state_db(tmp_path, {"bt-halted": "halted", "bt-active": "active"}, daemon_healthy=True)
    monkeypatch.setenv("DATABASE_URL", url)
    at = AppTest.from_file(str(app_path()), default_timeout=60)
    at.query_params["run"] = "bt-halted"
    at.run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == ["This run: Trading HALTED: halted: because of bt-halted"]
    assert [x.value for x in at.success] == []  # nothing green above a halted run, though the daemon is healthy
    assert any(c.value.startswith("Daemon healthy") for c in at.caption)
    at = AppTest.from_file(str(app_path()), default_timeout=60)
    at.query_params["run"] = "bt-active"
    at.run()
    assert [x.value for x in at.success] == ["This run: Trading ACTIVE: active: because of bt-active"] and not at.error


# --------------------------------------------------------------------------------------------------- LLM, shadow


def test_llm_usage_counts_calls_cost_latency_and_abstentions(built: Built, s: Session) -> None:
    usage = q.llm_usage(s, built.replay)
    assert usage.calls == 4
    assert usage.cost_usd == Decimal("0.003")
    assert usage.unpriced_calls == 1  # the invalid answer; the budget refusal was never sent
    assert usage.latency_p50_ms == 200.0  # of 100, 200, 300 (the budget refusal has no latency)
    assert usage.latency_p95_ms == 290.0
    assert usage.abstentions == 2
    assert usage.abstention_reasons.to_dict("records") == [{"reason": "LLM answer failed validation", "count": 2}]
    assert usage.by_model[["provider", "model", "calls"]].to_dict("records") == [
        {"provider": "groq", "model": "test-model", "calls": 4}
    ]
    none = q.llm_usage(s, built.backtest)
    assert (none.calls, none.cost_usd, none.latency_p50_ms, none.abstentions) == (0, Decimal("0"), None, 0)


def test_shadow_comparison_counts_every_strategys_signals(built: Built, s: Session) -> None:
    rows = reporting.shadow_entries(s, run_id=built.backtest)
    table = q.shadow_comparison(s, built.backtest)
    assert table["strategy"].iloc[0] == "selector"
    assert len(rows) == 3 * 125
    for r in table.itertuples():
        if r.strategy == "selector":
            actions = [row.signals[row.selected][0] for row in rows if row.selected in row.signals]
        else:
            actions = [row.signals[r.strategy][0] for row in rows if r.strategy in row.signals]
        assert r.evaluated == len(actions)
        assert (r.buy, r.sell, r.hold) == (actions.count("BUY"), actions.count("SELL"), actions.count("HOLD"))
    assert set(table["strategy"]) - {"selector"} == {name for row in rows for name in row.signals}


# --------------------------------------------------------------------------------------------------- audit, health


def test_latest_narrative_is_the_last_audit_report(built: Built, s: Session) -> None:
    for run_id in (built.replay, built.backtest):
        last = s.scalars(
            select(AuditReportRow).where(AuditReportRow.run_id == run_id).order_by(AuditReportRow.at.desc()).limit(1)
        ).one()
        narrative = q.latest_narrative(s, run_id)
        assert narrative is not None
        assert (narrative["text"], narrative["kind"], narrative["iteration_id"]) == (
            last.text,
            last.kind,
            last.iteration_id,
        )
        # the narrative states the same equity the panel shows
        final = q.equity_curve(s, run_id).final_equity
        assert f"equity {fmt.money(final)}" in narrative["text"]
    assert q.latest_narrative(s, "no-such-run") is None


def test_daemon_health_is_main_health_on_the_heartbeat(database_url: str, tmp_path: Path) -> None:
    repo = Repository(open_database(database_url))
    settings = make_settings(tmp_path, database_url=database_url)
    now = datetime(2024, 3, 5, 15, tzinfo=UTC)  # a Tuesday afternoon
    engine = open_readonly(database_url)
    try:
        with Session(engine) as session:
            report = q.daemon_health(session, settings, now)
        assert report["healthy"] is False and report["heartbeat"] is None
        assert report["problems"][0].startswith("no heartbeat")
        beat = {"run_id": "daemon-x", "iteration_id": "daemon-x-000001", "as_of": "2024-03-04T21:00:00+00:00",
                "at": (now - timedelta(hours=1)).isoformat(), "status": "ok"}  # fmt: skip
        repo.put_state("heartbeat", beat, now)
        repo.put_state("risk:state", {"state": "active", "reason": "within limits"}, now)
        with Session(engine) as session:
            report = q.daemon_health(session, settings, now)
        assert report["healthy"] is True and report["problems"] == []
        assert report["heartbeat"] == beat and report["trading_state"] == "active"
        assert report == {**health_report(settings, repo, MarketCalendar(), now), "heartbeat": beat}
        with Session(engine) as session:
            stale = q.daemon_health(session, settings, now + timedelta(days=10))
        assert stale["healthy"] is False and stale["problems"][0].startswith("stale")
        repo.put_state("risk:state", {"state": "halted", "reason": "equity drawdown"}, now)
        with Session(engine) as session:
            halted = q.daemon_health(session, settings, now)
        assert halted["healthy"] is False and "halted" in halted["problems"][0]
    finally:
        engine.dispose()
        repo.engine.dispose()


# --------------------------------------------------------------------------------------------------- read-only


def test_a_write_through_the_dashboards_engine_fails(database_url: str) -> None:
    writable = open_database(database_url)
    engine = open_readonly(database_url)
    now = datetime.now(UTC)
    try:
        with pytest.raises(DBAPIError) as caught:
            with engine.begin() as conn:
                conn.execute(insert(DaemonStateRow).values(key="dashboard-write", value={}, updated_at=now))
        assert "read" in str(caught.value).lower() and "only" in str(caught.value).lower()
        with pytest.raises(DBAPIError):
            with engine.begin() as conn:
                conn.execute(text("CREATE TABLE dashboard_probe (x INTEGER)"))
        with pytest.raises(DBAPIError):
            with engine.begin() as conn:
                conn.execute(text("DELETE FROM runs"))
        with Session(writable) as s:
            assert s.get(DaemonStateRow, "dashboard-write") is None
        with engine.connect() as conn:  # reading works
            assert conn.execute(select(func.count()).select_from(Run)).scalar() == 0
    finally:
        engine.dispose()
        writable.dispose()


def test_read_only_open_never_creates_or_migrates_a_database(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    with pytest.raises(DatabaseUnavailable, match="no database at"):
        open_readonly(f"sqlite:///{missing}")
    assert not missing.exists()
    empty = tmp_path / "empty.db"
    create_engine(f"sqlite:///{empty}").connect().close()
    with pytest.raises(DatabaseUnavailable, match="no 'runs' table"):
        open_readonly(f"sqlite:///{empty}")
    with pytest.raises(DatabaseUnavailable) as caught:
        open_readonly("postgresql://someone:s3cret-pw@127.0.0.1:1/none")
    assert "s3cret-pw" not in str(caught.value) and "***" in str(caught.value)
    with pytest.raises(DatabaseUnavailable):
        open_readonly("sqlite:///:memory:")


def test_read_only_sqlite_handles_paths_with_spaces_and_relative_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "a dir #1"
    folder.mkdir()
    open_database(f"sqlite:///{folder / 'db file.db'}").dispose()
    engine = open_readonly(f"sqlite:///{folder / 'db file.db'}")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Run)).scalar() == 0
    engine.dispose()
    monkeypatch.chdir(folder)
    engine = open_readonly("sqlite:///db file.db")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Run)).scalar() == 0
    engine.dispose()


# --------------------------------------------------------------------------------------------------- command, app


def test_main_dashboard_checks_the_database_then_execs_streamlit_without_the_url_on_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))
    assert main.main(["dashboard", "--db", f"sqlite:///{tmp_path / 'nothing.db'}"]) == main.EXIT_DB
    assert "no database at" in capsys.readouterr().err
    assert not (tmp_path / "nothing.db").exists()
    assert main.main(["dashboard", "--db", "postgresql://u:pw-secret@127.0.0.1:1/x"]) == main.EXIT_DB
    assert "pw-secret" not in capsys.readouterr().err

    url = f"sqlite:///{tmp_path / 'ok.db'}"
    open_database(url).dispose()
    settings = make_settings(tmp_path, database_url=url)
    seen: dict[str, object] = {}
    args = main.build_parser().parse_args(["dashboard", "--port", "8123", "--host", "0.0.0.0", "--refresh", "7"])
    main._dashboard(settings, args, exec_=lambda path, argv, env: seen.update(path=path, argv=argv, env=env))
    argv = seen["argv"]
    assert isinstance(argv, list) and argv[:4] == [main.sys.executable, "-m", "streamlit", "run"]
    assert argv[4].endswith("core/dashboard/app.py")
    for option, value in (
        ("--server.headless", "true"),
        ("--server.port", "8123"),
        ("--server.address", "0.0.0.0"),
        ("--browser.gatherUsageStats", "false"),
    ):
        assert argv[argv.index(option) + 1] == value
    assert argv[argv.index("--") + 1 :] == ["--refresh", "7"]
    assert all(url not in a for a in argv)
    assert seen["env"]["DATABASE_URL"] == url  # type: ignore[index]
    assert "http://0.0.0.0:8123/" in capsys.readouterr().out
    assert "dashboard" in main.COMMANDS


def test_the_streamlit_script_renders_every_panel(built: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app itself, run by Streamlit's test harness (no browser): the metrics show the replay's numbers."""
    from streamlit.testing.v1 import AppTest

    from core.dashboard import app_path

    monkeypatch.setenv("DATABASE_URL", built.url)
    at = AppTest.from_file(str(app_path()), default_timeout=60)
    at.query_params["run"] = built.replay
    at.run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    engine = create_engine(normalise_url(built.url))
    with Session(engine) as s:
        last = s.scalars(
            select(EquitySnapshotRow)
            .where(EquitySnapshotRow.run_id == built.replay)
            .order_by(EquitySnapshotRow.at.desc())
            .limit(1)
        ).one()
        fills = s.scalar(select(func.count()).select_from(FillRow).where(FillRow.run_id == built.replay))
        orders = s.scalar(select(func.count()).select_from(OrderRow).where(OrderRow.run_id == built.replay))
        reason = q.trading_state(s, built.replay).reason
        closed = len(q.round_trips(s, built.replay))
    engine.dispose()
    assert metrics["Final equity"] == fmt.money(last.equity)
    assert metrics["Fills"] == str(fills) and metrics["Orders"] == str(orders)
    assert metrics["Trading state"] == "ACTIVE"
    assert metrics["LLM calls"] == "4" and metrics["Abstentions"] == "2"
    assert any("no heartbeat" in e.value for e in at.error)
    assert [h.value for h in at.subheader] == [
        "Equity", "Open positions", "Closed trades (round trips)", "Orders and fills", "Decisions and refusals",
        "Trading state and circuit breakers", "LLM usage and the shadow ledger", "Latest audit narrative",
    ]  # fmt: skip
    assert [x.value for x in at.success] == [f"This run: Trading ACTIVE: {reason}"]
    # times in New York time with the zone, the UTC time beside them
    assert "started " in at.caption[0].value and at.caption[0].value.split("started ")[1][:20].endswith(
        (" EST", " EDT")
    )
    trips = next(d.value for d in at.dataframe if "exit_reason" in d.value.columns)
    assert list(trips.columns) == ["symbol", "entry_at", "entry_price", "exit_at", "exit_price", "quantity", "pnl",
                                   "return_pct", "holding_sessions", "exit_reason", "strategy"]  # fmt: skip
    assert len(trips) == closed > 0
    orders = next(d.value for d in at.dataframe if "submitted_at" in d.value.columns)
    assert orders["submitted_at"].iloc[0].endswith((" EST", " EDT")) or len(orders["submitted_at"].iloc[0]) == 10
    assert orders["submitted_at_utc"].iloc[0].endswith(" UTC")
    assert at.title[0].value == f"Replay run {built.replay}"
    assert at.sidebar.selectbox[0].value == built.replay


# --------------------------------------------------------------------------------------------------- formatting


@pytest.mark.parametrize(
    ("value", "ny", "utc"),
    [
        (datetime(2021, 3, 31, 20, tzinfo=UTC), "2021-03-31 16:00 EDT", "2021-03-31 20:00 UTC"),
        (datetime(2021, 1, 4, 14, 30), "2021-01-04 09:30 EST", "2021-01-04 14:30 UTC"),  # naive (SQLite): UTC
        ("2021-01-04T21:00:00+00:00", "2021-01-04 16:00 EST", "2021-01-04 21:00 UTC"),
        (
            datetime(2018, 2, 6, tzinfo=UTC),
            "2018-02-06",
            "2018-02-06 00:00 UTC",
        ),  # a daily bar's date, not 19:00 the day before
        (None, "–", "–"),
    ],
)
def test_times_are_shown_in_new_york_time_with_the_zone_and_utc_beside(value: object, ny: str, utc: str) -> None:
    assert fmt.when(value) == ny  # type: ignore[arg-type]
    assert fmt.when_utc(value) == utc  # type: ignore[arg-type]


def test_table_when_utc_cols_then_a_utc_column_follows_the_kept_columns() -> None:
    import pandas as pd

    frame = pd.DataFrame({"at": [datetime(2021, 3, 31, 20, tzinfo=UTC)], "symbol": ["SPY"], "drop": [1]})
    out = fmt.table(frame, time_cols=("at",), utc_cols=("at",), columns=("symbol", "at"))
    assert out.to_dict("records") == [{"symbol": "SPY", "at": "2021-03-31 16:00 EDT", "at_utc": "2021-03-31 20:00 UTC"}]

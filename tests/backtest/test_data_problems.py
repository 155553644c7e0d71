"""Trading on real data with holes and bad bars: ``main.py backtest`` over copies of the bundled bars, altered in
``tmp_path`` (a session missing from every file, a symbol listed later, a typo, a 1e300 bar, a 30x spike, bars from
1962)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from config.settings import Settings
from core.kernel.calendar import MarketCalendar
from core.data.synthetic import generate_bars
from core.persistence.db import normalise_url
from core.persistence.models import DecisionRow, EquitySnapshotRow, FillRow, Iteration, OrderRow
from tests.backtest.helpers import backtest_cli
from tests.conftest import BUNDLED_DAILY, make_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
# the moving-average crossover other backtesters run: entries and exits on its signals only (no stop orders)
SMA = ["--strategy", "trend_following", "--param", "fast=10", "--param", "slow=30", "--no-risk-limits",
       "--sizing", "fixed-qty:10", "--no-brackets", "--commission", "0", "--slippage", "0"]  # fmt: skip
CALENDAR = MarketCalendar()
PRICES = ["Open", "High", "Low", "Close"]


def _backtest(settings: Settings, data: Path, *argv: str, limits: bool = False) -> dict[str, Any]:
    """``limits``: with the risk limits (and the data-quality breaker) on."""
    config = [a for a in SMA if a != "--no-risk-limits"] if limits else SMA
    code, out, err = backtest_cli(settings, "--data-dir", str(data), *config, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def _copy(tmp_path: Path, symbols: list[str]) -> Path:
    target = tmp_path / "bars"
    target.mkdir()
    for symbol in symbols:
        shutil.copy(BUNDLED_DAILY / f"{symbol}.csv", target / f"{symbol}.csv")
    return target


def _edit(path: Path, change) -> None:  # type: ignore[no-untyped-def]
    frame = pd.read_csv(path)
    change(frame)
    frame.to_csv(path, index=False)


def _aapl_and_spy_with_aapl_prices(tmp_path: Path, rows, change) -> Path:  # type: ignore[no-untyped-def]
    """Copies of AAPL's and SPY's bars in which AAPL's open/high/low/close on ``rows(frame)`` (a row label or a mask)
    become ``change(those prices)``."""
    data = _copy(tmp_path, ["AAPL", "SPY"])

    def edit(f: pd.DataFrame) -> None:
        where = rows(f)
        f.loc[where, PRICES] = change(f.loc[where, PRICES])

    _edit(data / "AAPL.csv", edit)
    return data


def _rows(settings: Settings, model, *where):  # type: ignore[no-untyped-def]
    with Session(create_engine(normalise_url(settings.database_url))) as s:
        return s.scalars(select(model).where(*where)).all()


@pytest.fixture
def bundled() -> None:
    if not (BUNDLED_DAILY / "AAPL.csv").exists():
        pytest.skip(f"bundled data missing at {BUNDLED_DAILY}")


# ------------------------------------------------------------------------- one session missing from every file

GAP = date(2010, 11, 15)  # a Monday; five positions are open, exits and entries follow within the next 20 sessions
COMMON = ["AAPL", "AIG", "BAC", "IBM", "SPY"]


@pytest.fixture(scope="module")
def gap_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict[str, Any], Path, list[date], list[date]]:
    """One backtest over the five common-dates symbols with GAP deleted from every file (shared by the tests below)."""
    if not (BUNDLED_DAILY / "AAPL.csv").exists():
        pytest.skip(f"bundled data missing at {BUNDLED_DAILY}")
    tmp_path = tmp_path_factory.mktemp("gap")
    data = _copy(tmp_path, COMMON)
    for symbol in COMMON:
        _edit(data / f"{symbol}.csv", lambda f: f.drop(index=f.index[f["Date"] == GAP.isoformat()], inplace=True))
    settings = make_settings(tmp_path)
    result = _backtest(settings, data, "--start", "2010-06-01", "--end", "2011-03-31")
    sessions = CALENDAR.sessions_between(GAP, date(2011, 3, 31))
    return settings, result, data, sessions[:3], sessions[3:20]  # the gap session and the two after it; the old month


def test_backtest_when_a_session_is_missing_from_every_file_then_held_positions_still_exit_during_the_gap_window(
    gap_run,
) -> None:  # type: ignore[no-untyped-def]
    settings, result, _, blocked, after = gap_run
    fills = _rows(settings, FillRow, FillRow.run_id == result["run_id"], FillRow.side == "sell")
    assert len([f for f in fills if blocked[0] < f.filled_at.date() <= after[-1]]) >= 3


def test_backtest_when_a_session_is_missing_from_every_file_then_entries_resume_after_3_sessions(gap_run) -> None:  # type: ignore[no-untyped-def]
    settings, result, _, blocked, after = gap_run
    buys = [
        f.filled_at.date() for f in _rows(settings, FillRow, FillRow.run_id == result["run_id"], FillRow.side == "buy")
    ]
    assert [d for d in buys if blocked[-1] < d <= after[-1]]  # within the month the old rule paused everything
    assert not [d for d in buys if blocked[0] < d <= blocked[-1]]  # none filled on the signals of the flagged sessions


def test_backtest_when_a_session_is_missing_from_every_file_then_every_snapshot_marks_at_its_own_close(gap_run) -> None:  # type: ignore[no-untyped-def]
    settings, result, data, blocked, after = gap_run
    run = result["run_id"]
    closes = {s: pd.read_csv(data / f"{s}.csv", index_col="Date", parse_dates=True)["Close"] for s in COMMON}
    held: dict[str, int] = {}
    fills = sorted(_rows(settings, FillRow, FillRow.run_id == run), key=lambda f: f.filled_at)
    checked = 0
    for snap in sorted(_rows(settings, EquitySnapshotRow, EquitySnapshotRow.run_id == run), key=lambda s: s.at):
        day = snap.at.date()
        while fills and fills[0].filled_at.date() <= day:
            f = fills.pop(0)
            held[f.symbol] = held.get(f.symbol, 0) + (f.quantity if f.side == "buy" else -f.quantity)
        if not blocked[0] <= day <= after[-1]:
            continue
        # the last known close (the gap session has none: the close before it)
        expected = sum(
            q * Decimal(repr(float(closes[s].loc[: pd.Timestamp(day)].iloc[-1]))) for s, q in held.items() if q
        )
        assert snap.market_value == pytest.approx(expected, abs=Decimal("0.01")), day
        checked += 1 if any(held.values()) else 0
    assert checked >= 15


def test_backtest_when_a_session_is_missing_from_every_file_then_the_3_sessions_without_usable_data_are_degraded(
    gap_run,
) -> None:  # type: ignore[no-untyped-def]
    settings, result, _, blocked, _ = gap_run
    assert result["degraded_iterations"] == 3
    iterations = _rows(settings, Iteration, Iteration.run_id == result["run_id"], Iteration.status == "degraded")
    assert sorted(i.as_of.date() for i in iterations) == blocked
    assert all(i.error.startswith("no usable data") for i in iterations)
    # the gap session itself (every file stale), then a missing session among the last 3 for two sessions
    assert result["exclusions_by_reason"] == {"freshness": 5, "missing_sessions": 10}


# ------------------------------------------------------------------------------- a symbol listed later


def test_backtest_when_one_of_four_symbols_is_listed_later_then_the_others_trade_and_it_trades_once_listed(
    settings_factory, tmp_path: Path, bundled: None
) -> None:
    data = _copy(tmp_path, ["AAPL", "AIG", "IBM", "SPY"])
    _edit(data / "SPY.csv", lambda f: f.drop(index=f.index[f["Date"] < "2010-06-01"], inplace=True))
    settings = settings_factory()
    result = _backtest(settings, data, "--start", "2010-01-01", "--end", "2011-06-30", limits=True)

    entries: dict[str, str] = {}  # first entry date per symbol
    for t in result["trades"]:
        entries[t["symbol"]] = min(entries.get(t["symbol"], "9999"), t["entry_at"][:10])
    assert min(entries[s] for s in ("AAPL", "AIG", "IBM")) < "2010-06-01"  # no wait for the late symbol
    assert "2010-06-01" < entries["SPY"]  # and it trades once listed and warmed up
    reasons = result["exclusions_by_reason"]
    assert reasons["not_listed"] > 90 and reasons["warm_up"] > 0 and set(reasons) == {"not_listed", "warm_up"}
    assert result["degraded_iterations"] == 0
    denials = _rows(
        settings, DecisionRow, DecisionRow.run_id == result["run_id"], DecisionRow.action == "denied:data_quality"
    )
    assert denials == []


# --------------------------------------------------------------------------------------- a typo in SYMBOLS


def test_replay_when_symbols_has_a_typo_then_exit_2_with_one_line_naming_symbols_and_the_symbol(
    tmp_path: Path, bundled: None
) -> None:
    env = {"PATH": "/usr/bin:/bin", "SYMBOLS": "AAPL,APPL,SPY", "DATA_DIR": str(BUNDLED_DAILY), "LOG_DIR": str(tmp_path / "logs"),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'r.db'}"}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "main.py", "replay", "--quiet"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: SYMBOLS:") and "APPL" in lines[0], proc.stderr


def test_backtest_when_symbols_has_a_typo_then_exit_2_naming_the_symbol(settings_factory, bundled: None) -> None:
    code, out, err = backtest_cli(settings_factory(), "--symbols", "AAPL,APPL", "--json")
    assert code == 2 and out == ""
    assert err.startswith("error: --symbols: no bars for APPL") and err.count("\n") == 1


# -------------------------------------------------------------------------------------------- bad bars


def test_backtest_when_a_1e300_bar_sits_400_bars_back_then_the_symbol_opens_no_position(
    settings_factory, tmp_path: Path, bundled: None
) -> None:
    start = "2012-01-01"
    data = _aapl_and_spy_with_aapl_prices(
        tmp_path, lambda f: int(f.index[f["Date"] >= start][0]) - 400, lambda _: 1e300
    )
    settings = settings_factory()
    result = _backtest(settings, data, "--start", start, "--end", "2012-12-31")
    assert {t["symbol"] for t in result["trades"]} == {"SPY"}
    refused = _rows(
        settings, DecisionRow, DecisionRow.run_id == result["run_id"], DecisionRow.action == "denied:symbol_data"
    )
    assert refused and all(d.symbol == "AAPL" and "absurd_values" in d.reason for d in refused)
    assert result["exclusions_by_reason"]["absurd_values"] == result["iterations"]


def test_backtest_when_a_one_bar_30x_spike_then_it_is_caught_and_not_traded_on(
    settings_factory, tmp_path: Path, bundled: None
) -> None:
    spike = "2012-06-14"
    data = _aapl_and_spy_with_aapl_prices(tmp_path, lambda f: f["Date"] == spike, lambda prices: prices * 30)
    settings = settings_factory()
    result = _backtest(settings, data, "--start", "2012-01-01", "--end", "2012-12-31")
    aapl = [t for t in result["trades"] if t["symbol"] == "AAPL"]
    assert aapl and all(t["entry_at"][:10] <= spike for t in aapl)  # entries before it; none on or after it
    orders = _rows(
        settings, OrderRow, OrderRow.run_id == result["run_id"], OrderRow.symbol == "AAPL", OrderRow.side == "buy"
    )
    assert all(o.submitted_at.date().isoformat() < spike for o in orders)
    assert result["exclusions_by_reason"]["price_jump"] == 1  # the day it was the latest bar
    assert result["exclusions_by_reason"]["price_spike"] > 100  # every session after the next bar reverted it
    flagged = _rows(
        settings,
        DecisionRow,
        DecisionRow.run_id == result["run_id"],
        DecisionRow.agent == "data",
        DecisionRow.symbol == "AAPL",
    )
    assert flagged and {d.action for d in flagged} == {"flagged"}


# ----------------------------------------------------------------------------------------- bars from 1962


def test_backtest_when_the_data_start_in_1962_then_the_calendar_covers_them(settings_factory, tmp_path: Path) -> None:
    calendar = MarketCalendar(start=date(1962, 1, 1))
    sessions = calendar.sessions_index(date(1962, 1, 2), date(1982, 12, 31))
    data = tmp_path / "old"
    data.mkdir()
    frame = generate_bars("IBM", sessions, seed=3)
    frame.index = frame.index.strftime("%Y-%m-%d")
    frame.rename_axis("Date").to_csv(data / "IBM.csv")
    settings = settings_factory()
    result = _backtest(settings, data, "--start", "1980-01-01")
    assert result["start"] == "1980-01-02" and result["end"] == "1982-12-31"
    assert result["iterations"] == len(calendar.sessions_between(date(1980, 1, 1), date(1982, 12, 31)))
    assert result["degraded_iterations"] == 0 and result["trades"]
    assert datetime.fromisoformat(result["trades"][0]["entry_at"]).astimezone(UTC).year >= 1980


def test_daemon_offline_when_symbols_has_a_typo_then_exit_2_before_any_iteration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], bundled: None
) -> None:
    import main

    monkeypatch.setenv("SYMBOLS", "AAPL,APPL")
    monkeypatch.setenv("DATA_DIR", str(BUNDLED_DAILY))
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))
    url = f"sqlite:///{tmp_path / 'd.db'}"
    assert main.main(["run", "--offline", "--once", "--db", url]) == 2
    err = capsys.readouterr().err
    assert "error: SYMBOLS: no data provider knows APPL" in err
    assert not (tmp_path / "d.db").exists()  # refused before any database, run or iteration was made


def test_backtest_summary_when_symbols_wait_and_data_have_problems_then_it_says_so_by_reason(
    settings_factory, tmp_path: Path, bundled: None
) -> None:
    data = _copy(tmp_path, ["AAPL", "IBM", "SPY"])
    _edit(data / "SPY.csv", lambda f: f.drop(index=f.index[f["Date"] < "2012-03-01"], inplace=True))
    _edit(data / "IBM.csv", lambda f: f.drop(index=f.index[f["Date"] == "2012-06-14"], inplace=True))
    code, out, err = backtest_cli(
        settings_factory(), "--data-dir", str(data), *SMA, "--start", "2012-01-01", "--end", "2012-12-31"
    )
    assert code == 0, err
    [line] = [x for x in out.splitlines() if "exclusions (symbol-sessions)" in x]
    waiting, problems = line.split("; data problems: ")
    assert "not_listed 40" in waiting and "warm_up " in waiting  # SPY before 2012-03-01, then its first 30 bars
    assert "freshness 1" in problems and "missing_sessions 2" in problems  # IBM's missing 2012-06-14

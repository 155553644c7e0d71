"""Risk gates and position rules that must bite in a backtest on the bundled bars, through the real wiring:
the time stop closes positions, ``--no-risk-limits`` keeps the position rules, fixed sizing respects the caps,
the spread rule says "not applicable" where no quote exists, and the commission is capped."""

from __future__ import annotations

import argparse
import io
import json
from collections import defaultdict
from datetime import date, datetime
from typing import Any

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from config.settings import Settings
from core.backtest.cli import add_backtest_parser, run_backtest_command
from core.kernel.calendar import MarketCalendar
from core.persistence.db import normalise_url
from core.persistence.models import DecisionRow, FillRow, OrderRow


def _json(settings: Settings, *argv: str) -> dict[str, Any]:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db")
    parser = argparse.ArgumentParser()
    add_backtest_parser(parser.add_subparsers(dest="command"), [common])
    args = parser.parse_args(["backtest", *argv, "--json"])
    out, err = io.StringIO(), io.StringIO()
    assert run_backtest_command(args, settings, stdout=out, stderr=err) == 0, err.getvalue()
    return json.loads(out.getvalue())


def _session(settings: Settings) -> Session:
    return Session(create_engine(normalise_url(settings.database_url)))


def test_time_stop_when_three_sessions_then_every_position_is_closed_by_the_fourth_session_with_a_recorded_exit(
    settings_factory,
) -> None:
    settings = settings_factory(time_stop_sessions=3)
    result = _json(settings, "--symbols", "AAPL,AIG,BAC,IBM,SPY", "--start", "2019-01-01", "--end", "2020-12-31")

    calendar = MarketCalendar()
    closed = [t for t in result["trades"] if t["exit_at"] is not None]
    assert len(closed) >= 10
    for trade in closed:
        entry, exit_ = (datetime.fromisoformat(trade[k]).date() for k in ("entry_at", "exit_at"))
        held = len(calendar.sessions_between(entry, exit_)) - 1
        assert held <= 3 + 1, trade  # decided after the 3rd session's bar, filled at the next open
    last = date.fromisoformat(result["end"])
    for trade in result["trades"]:
        if trade["exit_at"] is None:  # still open at the end: entered within the last sessions only
            entry = datetime.fromisoformat(trade["entry_at"]).date()
            assert len(calendar.sessions_between(entry, last)) - 1 <= 3, trade
    with _session(settings) as s:
        risk = s.scalars(
            select(DecisionRow).where(DecisionRow.run_id == result["run_id"], DecisionRow.agent == "risk")
        ).all()
    exits = [d for d in risk if d.action == "approved" and d.inputs.get("side") == "sell" and "time stop" in d.reason]
    assert exits, "no time-stop exit was approved"
    assert all(d.inputs["checks"]["exit_rule"]["rule"] == "time_stop" for d in exits)
    assert not [d for d in risk if d.action == "denied:not_an_exit"]


def _buys_while_long(settings: Settings, run_id: str) -> list[tuple[str, datetime]]:
    with _session(settings) as s:
        fills = s.scalars(select(FillRow).where(FillRow.run_id == run_id).order_by(FillRow.filled_at, FillRow.id)).all()
    held: dict[str, float] = defaultdict(float)
    doubled = []
    for f in fills:
        if f.side == "buy":
            if held[f.symbol] > 0:
                doubled.append((f.symbol, f.filled_at))
            held[f.symbol] += float(f.quantity)
        else:
            held[f.symbol] -= float(f.quantity)
    return doubled


def test_no_risk_limits_when_the_strategy_signals_buy_while_long_then_no_second_buy(settings_factory) -> None:
    settings = settings_factory()
    # a volatility breakout judges every bar on its own: with k=0.5 it signals BUY again and again while long
    result = _json(
        settings, "--symbols", "AAPL,BAC,IBM", "--start", "2019-01-01", "--end", "2020-12-31", "--strategy",
        "volatility_breakout", "--param", "k=0.5", "--no-risk-limits", "--sizing", "fixed-qty:10",
        "--commission", "0", "--slippage", "0",
    )  # fmt: skip

    assert len(result["trades"]) >= 5
    assert _buys_while_long(settings, result["run_id"]) == []
    with _session(settings) as s:
        refused = s.scalars(
            select(DecisionRow).where(
                DecisionRow.run_id == result["run_id"], DecisionRow.action == "denied:already_long"
            )
        ).all()
    assert refused  # the strategy did ask, and the position rule said no


def test_fixed_qty_when_above_max_shares_with_limits_on_then_orders_stay_within_max_shares_and_the_position_cap(
    settings_factory,
) -> None:
    settings = settings_factory(max_shares=1000)
    result = _json(
        settings, "--symbols", "BAC,AIG", "--start", "2019-01-01", "--end", "2020-12-31", "--sizing", "fixed-qty:5000"
    )

    with _session(settings) as s:
        buys = s.scalars(select(OrderRow).where(OrderRow.run_id == result["run_id"], OrderRow.side == "buy")).all()
        approvals = s.scalars(
            select(DecisionRow).where(
                DecisionRow.run_id == result["run_id"], DecisionRow.agent == "risk", DecisionRow.action == "approved"
            )
        ).all()
    assert buys
    assert max(o.quantity for o in buys) <= 1000
    entries = [a for a in approvals if a.inputs.get("side") == "buy"]
    assert entries
    for a in entries:
        checks = a.inputs["checks"]
        assert checks["sizing"]["mode"] == "fixed-qty" and checks["sizing"]["requested_quantity"] == 5000
        cap = checks["max_position_pct"]
        assert a.inputs["quantity"] * cap["price"] <= cap["limit_value"] + 1e-6  # 20% of equity at most


def test_fixed_qty_when_limits_are_off_then_only_cash_limits_the_quantity(settings_factory) -> None:
    settings = settings_factory(max_shares=1000)
    result = _json(
        settings, "--symbols", "BAC", "--start", "2019-01-01", "--end", "2019-12-31", "--strategy", "trend_following",
        "--param", "fast=10", "--param", "slow=30", "--no-risk-limits", "--sizing", "fixed-qty:2000",
    )  # fmt: skip
    with _session(settings) as s:
        buys = s.scalars(select(OrderRow).where(OrderRow.run_id == result["run_id"], OrderRow.side == "buy")).all()
    assert buys and {o.quantity for o in buys} == {2000}  # limits off: MAX_SHARES does not apply


def test_backtest_when_no_quote_exists_then_the_spread_check_is_recorded_not_applicable(settings_factory) -> None:
    settings = settings_factory()
    result = _json(settings, "--symbols", "AAPL,SPY", "--start", "2019-01-01", "--end", "2019-12-31")

    with _session(settings) as s:
        approvals = s.scalars(
            select(DecisionRow).where(
                DecisionRow.run_id == result["run_id"], DecisionRow.agent == "risk", DecisionRow.action == "approved"
            )
        ).all()
    entries = [a for a in approvals if a.inputs.get("side") == "buy"]
    assert entries
    for a in entries:
        spread = a.inputs["checks"]["spread"]
        assert spread["status"] == "not_applicable"
        assert "no live quote" in spread["reason"]


def test_commission_when_per_share_fee_would_exceed_the_cap_then_capped_at_one_percent_of_the_trade(
    settings_factory,
) -> None:
    # 1999 AAPL (split-adjusted ~$0.3-1): 0.005 per share used to cost several percent of the trade value
    settings = settings_factory()
    result = _json(
        settings, "--symbols", "AAPL", "--start", "1999-01-01", "--end", "2000-12-31", "--strategy", "trend_following",
        "--param", "fast=10", "--param", "slow=30", "--no-risk-limits", "--sizing", "fixed-fraction:0.1",
        "--fill", "same-close", "--slippage", "0",
    )  # fmt: skip
    assert result["settings"]["commission"] == {
        "model": "per_share",
        "per_share": "0.005",
        "minimum": "1.0",
        "max_pct": "0.01",
    }
    with _session(settings) as s:
        fills = s.scalars(select(FillRow).where(FillRow.run_id == result["run_id"])).all()
    assert fills
    for f in fills:
        assert float(f.commission) <= float(f.price * f.quantity) * 0.01 + 0.005
    assert any(0.005 > float(f.price) * 0.01 for f in fills)  # the cap did bind

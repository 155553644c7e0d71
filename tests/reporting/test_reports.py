"""performance / calibration / breakers / risk / reconcile / why over the hand-built ledger (numbers by hand)."""

from __future__ import annotations

import math
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy.orm import Session

from core.analytics.reporting import PIPELINE_ORDER, breakers, calibration, performance, reconcile_view, risk_view, why
from tests.reporting.factories import D1, D2, D3, D4, D5, RUN_1, RUN_2, Ledger, build_ledger, close_of, open_of


@pytest.fixture
def session(database_url: str):
    led = build_ledger(database_url)
    with led.repo.session() as s:
        yield s


# --------------------------------------------------------------------------------------------------- performance


def test_performance_when_no_run_given_then_latest_run_and_profit_factor_from_totals(session: Session) -> None:
    report = performance(session)

    assert report["run_id"] == RUN_1  # started after run-2
    m = report["metrics"]
    assert m["num_trades"] == 3
    assert m["total_pnl"] == pytest.approx(-22.5 + 98 + 100)
    assert m["gross_profit"] == pytest.approx(198.0) and m["gross_loss"] == pytest.approx(22.5)
    assert m["profit_factor"] == pytest.approx(198 / 22.5)  # 8.8, from the totals
    assert m["win_rate"] == pytest.approx(2 / 3)


def test_performance_equity_metrics_come_from_the_runs_snapshots(session: Session) -> None:
    m = performance(session, run_id=RUN_1)["metrics"]

    assert m["num_observations"] == 5
    assert m["total_return"] == pytest.approx(101_000 / 100_000 - 1)
    assert m["max_drawdown"] == pytest.approx(1 - 100_200 / 100_500)
    assert m["exposure"] == pytest.approx(4 / 5)  # positions 0, 3, 1, 2, 3
    assert (m["start"], m["end"]) == (close_of(D1), close_of(D5))


def test_performance_groups_trades_by_strategy_and_by_symbol(session: Session) -> None:
    report = performance(session, run_id=RUN_1)

    by_strategy = report["by_strategy"]
    assert set(by_strategy) == {"mean_reversion", "trend_following"}
    assert by_strategy["trend_following"]["num_trades"] == 2
    assert by_strategy["trend_following"]["profit_factor"] == pytest.approx(100 / 22.5)
    assert by_strategy["mean_reversion"]["profit_factor"] == math.inf  # a win and no loss
    assert report["by_symbol"]["AAPL"]["profit_factor"] == 0.0
    assert [t["symbol"] for t in report["open_trips"]] == ["SPY"]
    assert report["last_equity"] == Decimal("101000")


def test_performance_of_another_run_reports_its_unmatched_sells(session: Session) -> None:
    report = performance(session, run_id=RUN_2)

    assert report["metrics"]["num_trades"] == 1 and report["metrics"]["total_pnl"] == pytest.approx(50.0)
    assert report["metrics"]["total_return"] == pytest.approx(50_050 / 50_000 - 1)
    assert [(u["fill_id"], u["quantity"]) for u in report["unmatched_sells"]] == [("f-xyz-3", Decimal("5"))]


def test_performance_window_limits_snapshots_and_trades(session: Session) -> None:
    report = performance(session, run_id=RUN_1, start=D2, end=D3)

    m = report["metrics"]
    assert m["num_observations"] == 2
    assert m["total_return"] == pytest.approx(100_200 / 100_500 - 1)
    assert m["num_trades"] == 2  # BAC and IBM closed on D3; AAPL closed on D5


def test_performance_when_database_holds_no_run_then_lookup_error(tmp_path) -> None:
    led = Ledger(f"sqlite:///{tmp_path / 'empty.db'}")
    with led.repo.session() as s, pytest.raises(LookupError, match="no runs"):
        performance(s)


# --------------------------------------------------------------------------------------------------- calibration


def test_calibration_scores_the_entry_confidences_of_closed_trades(session: Session) -> None:
    report = calibration(session)

    # AAPL 0.8 lost, BAC 0.6 won, IBM 0.9 won; XYZ (run-2) has no confidence
    assert (report.total_trades, report.scored_trades, report.skipped_trades) == (4, 3, 1)
    assert report.brier_score == pytest.approx(((0.8 - 0) ** 2 + (0.6 - 1) ** 2 + (0.9 - 1) ** 2) / 3)  # 0.27
    assert report.hit_rate == pytest.approx(2 / 3)
    counts = [(b.lower, b.count) for b in report.reliability]
    assert counts == [(0.0, 0), (0.2, 0), (0.4, 0), (0.6, 1), (0.8, 2)]
    top = report.reliability[-1]
    assert top.mean_confidence == pytest.approx(0.85) and top.hit_rate == pytest.approx(0.5)


def test_calibration_follows_the_filters(session: Session) -> None:
    assert calibration(session, run_id=RUN_2).scored_trades == 0
    only_bac = calibration(session, symbol="BAC", bins=2)
    assert only_bac.brier_score == pytest.approx((0.6 - 1) ** 2)
    assert [b.count for b in only_bac.reliability] == [0, 1]


# --------------------------------------------------------------------------------------------------- breakers


def test_breakers_lists_current_states_and_the_trip_recovery_history(session: Session) -> None:
    report = breakers(session)

    current = {c["name"]: c for c in report["current"]}
    assert set(current) == {"broker", "data_feed", "llm_selection"}
    assert (current["llm_selection"]["state"], current["llm_selection"]["source"]) == ("open", "daemon_state")
    assert current["llm_selection"]["trips"] == 2 and current["llm_selection"]["last_trip_at"] == close_of(D5)
    assert (current["data_feed"]["state"], current["data_feed"]["trips"]) == ("closed", 0)
    # known only from its events (no persisted state): the last event tells the state
    assert (current["broker"]["state"], current["broker"]["source"]) == ("open", "events")
    llm = [(e["from_state"], e["to_state"]) for e in report["events"] if e["name"] == "llm_selection"]
    assert llm == [("closed", "open"), ("open", "half_open"), ("half_open", "closed"), ("closed", "open")]


def test_breakers_filters_events_by_run_and_name(session: Session) -> None:
    report = breakers(session, run_id=RUN_2)
    assert [e["name"] for e in report["events"]] == ["broker"]
    only = breakers(session, name="llm_selection", start=D3, end=D4)
    assert [c["name"] for c in only["current"]] == ["llm_selection"]
    assert [e["to_state"] for e in only["events"]] == ["half_open", "closed"]
    assert only["current"][0]["trips"] == 0


# --------------------------------------------------------------------------------------------------- risk


def test_risk_view_reads_the_state_and_groups_exposure_by_sector(session: Session) -> None:
    report = risk_view(session)

    assert report["run_id"] == RUN_1
    assert report["state"]["state"] == "reducing" and "daily loss" in report["state"]["reason"]
    assert report["last_decision_state"]["state"] == "reducing"
    assert report["equity"] == Decimal("101000")
    exposure = {b["sector"]: b for b in report["exposure"]}
    assert set(exposure) == {"broad_market", "unknown"}  # SPY + IWM (config/sectors.json), XYZ is not mapped
    assert exposure["broad_market"]["symbols"] == ["IWM", "SPY"]
    assert exposure["broad_market"]["value"] == Decimal("2100")  # 10 x 105 + 5 x 210
    assert exposure["broad_market"]["share"] == pytest.approx(2100 / 101_000)
    assert exposure["unknown"]["value"] == Decimal("300")
    assert report["gross_exposure"] == Decimal("2400")


def test_risk_view_groups_refusals_by_rule_with_an_example_and_the_latest_date(session: Session) -> None:
    refusals = risk_view(session)["refusals"]

    assert [(r["rule"], r["count"]) for r in refusals] == [("already_long", 2), ("sector_cap", 1), ("state", 1)]
    already = refusals[0]
    assert already["latest"] == close_of(D3)
    assert already["example_reason"] == "already long 60 AAPL"  # the most recent one
    assert already["symbols"] == ["AAPL"]
    assert [r["rule"] for r in risk_view(session, start=D4)["refusals"]] == ["state"]


def test_risk_view_with_a_custom_sector_map_and_without_a_recorded_state(tmp_path) -> None:
    led = build_ledger(f"sqlite:///{tmp_path / 'r.db'}")
    with led.repo.session() as s:
        report = risk_view(s, run_id=RUN_2, sector_map={"XYZ": "technology"})
    assert report["state"]["state"] == "reducing"  # daemon_state is the database's, not the run's
    assert report["exposure"] == []  # run-2 recorded no positions
    assert report["refusals"] == []

    empty = Ledger(f"sqlite:///{tmp_path / 'e.db'}")
    empty.run("only", close_of(D1))
    with empty.repo.session() as s:
        assert risk_view(s)["state"]["state"] == "unknown"


# --------------------------------------------------------------------------------------------------- reconcile


def test_reconcile_view_lists_events_with_filters(session: Session) -> None:
    rows = reconcile_view(session)
    assert [(r["run_id"], r["kind"], r["symbol"]) for r in rows] == [
        (RUN_2, "unknown_position", "XYZ"),
        (RUN_1, "position_mismatch", "SPY"),
    ]
    assert rows[1]["details"] == {"database": 10, "broker": 12}
    assert [r["kind"] for r in reconcile_view(session, symbol="spy")] == ["position_mismatch"]
    assert reconcile_view(session, run_id=RUN_1, start=date(2024, 3, 8)) == []


# --------------------------------------------------------------------------------------------------- why


def test_why_on_an_entry_day_shows_the_pipeline_llm_call_order_fill_and_round_trip(session: Session) -> None:
    report = why(session, "aapl", D1)

    assert (report["symbol"], report["run_id"]) == ("AAPL", RUN_1)
    assert [d["agent"] for d in report["decisions"]] == list(PIPELINE_ORDER)
    risk = report["decisions"][4]
    assert (risk["action"], risk["confidence"], risk["inputs"]["quantity"]) == ("approved", 0.8, 100)
    assert [(c["outcome"], c["about_symbol"]) for c in report["llm_calls"]] == [("ok", True)]  # not the next day's
    assert [(o["client_order_id"], o["status"]) for o in report["orders"]] == [("r1-AAPL-buy", "filled")]
    assert [f["fill_id"] for f in report["fills"]] == ["f-aapl-1"]  # filled in the next iteration
    out = report["outcome"]
    assert out["status"] == "closed"
    assert (out["exit_at"], out["exit_price"], out["pnl"]) == (open_of(D5), Decimal("10.0000"), Decimal("-22.50"))


def test_why_when_the_entry_is_still_held_then_open_position(session: Session) -> None:
    out = why(session, "SPY", D3)["outcome"]
    assert (out["status"], out["open_quantity"], out["entry_confidence"]) == ("open position", Decimal("10"), 0.55)


def test_why_when_risk_refused_then_no_order_with_the_refusal(session: Session) -> None:
    out = why(session, "IBM", D4)["outcome"]
    assert out == {
        "status": "no order",
        "stage": "risk",
        "action": "denied:state",
        "reason": "trading state is reducing; entries need active",
    }


def test_why_on_an_exit_day_and_on_an_unfilled_order(session: Session) -> None:
    exit_out = why(session, "AAPL", D3)["outcome"]
    assert (exit_out["status"], exit_out["trip_status"], exit_out["entry_order_id"]) == (
        "exit",
        "closed",
        "r1-AAPL-buy",
    )
    unfilled = why(session, "BAC", D4)["outcome"]
    assert (unfilled["status"], unfilled["order_status"]) == ("not filled", "canceled")


def test_why_when_nothing_was_decided_that_day_then_lookup_error(session: Session) -> None:
    with pytest.raises(LookupError, match="AAPL on 2024-03-02"):
        why(session, "AAPL", date(2024, 3, 2))
    with pytest.raises(LookupError, match="no run"):
        why(session, "AAPL", D1, run_id="nope")
    assert why(session, "AAPL", D2, run_id=RUN_1)["decisions"][0]["agent"] == "data"

"""The account rules, the last rules of an entry: the pattern-day-trader guard (no entry that could make a fourth day
trade in five sessions under $25,000 of equity) and the overnight-gap guard (the price at submission through the
stop or the target refuses the entry; risk grown past the per-trade limit resizes it)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.kernel.domain import Approval, Denial, OrderType
from core.risk import RiskLimits, TradingState, evaluate_entry, evaluate_exit
from core.risk.account_rules import submission_fields
from core.kernel.domain import Action, Signal
from datetime import UTC, datetime
from tests.risk.factories import make_candidate, make_portfolio

LIMITS = RiskLimits()
ACTIVE = TradingState.ACTIVE


def _bracket_candidate(**kw):
    return make_candidate(price=20.0, stop=18.0, target=26.0, **kw)


def _small_account(count: int | None, *, flagged: bool | None = False, cash: float = 20_000.0):
    return replace(make_portfolio(cash=cash), daytrade_count=count, pattern_day_trader=flagged)


# ------------------------------------------------------------------------------------------ pattern day trader


def test_entry_with_legs_when_three_day_trades_and_equity_under_25000_then_denied_by_the_pdt_guard() -> None:
    result = evaluate_entry(_bracket_candidate(), _small_account(3), LIMITS, ACTIVE)

    assert isinstance(result, Denial)
    assert result.rule == "pdt_guard"
    assert result.values["daytrade_count"] == 3
    assert result.values["equity"] == 20_000.0
    assert "3 day trades in the last 5 sessions" in result.reason


def test_entry_with_legs_when_two_day_trades_then_approved_with_the_check_recorded() -> None:
    result = evaluate_entry(_bracket_candidate(), _small_account(2), LIMITS, ACTIVE)

    assert isinstance(result, Approval)
    assert result.intent.order_type is OrderType.BRACKET
    assert result.checks["pdt_guard"]["status"] == "pass"
    assert result.checks["pdt_guard"]["daytrade_count"] == 2


def test_entry_when_three_day_trades_but_equity_at_25000_then_approved() -> None:
    result = evaluate_entry(_bracket_candidate(), _small_account(3, cash=25_000.0), LIMITS, ACTIVE)

    assert isinstance(result, Approval)
    assert result.checks["pdt_guard"]["status"] == "pass"


def test_entry_when_the_account_is_flagged_a_pattern_day_trader_under_25000_then_denied() -> None:
    result = evaluate_entry(_bracket_candidate(), _small_account(0, flagged=True), LIMITS, ACTIVE)

    assert isinstance(result, Denial) and result.rule == "pdt_guard"
    assert "flagged as a pattern day trader" in result.reason


def test_entry_without_legs_when_three_day_trades_then_approved_it_cannot_close_the_same_session() -> None:
    result = evaluate_entry(make_candidate(price=20.0, stop=18.0), _small_account(3), LIMITS, ACTIVE)

    assert isinstance(result, Approval) and result.intent.order_type is OrderType.MARKET
    assert result.checks["pdt_guard"]["potential_day_trade"] is False


def test_broker_reporting_no_day_trade_count_then_the_pdt_guard_is_not_applicable() -> None:
    result = evaluate_entry(_bracket_candidate(), _small_account(None, flagged=None), LIMITS, ACTIVE)

    assert isinstance(result, Approval)
    assert result.checks["pdt_guard"]["status"] == "not_applicable"
    assert result.checks["pdt_guard"]["reason"] == "the broker reports no day-trade count"


def test_pdt_guard_switched_off_then_the_entry_is_approved() -> None:
    result = evaluate_entry(_bracket_candidate(), _small_account(3), RiskLimits(pdt_guard=False), ACTIVE)

    assert isinstance(result, Approval)
    assert result.checks["pdt_guard"]["status"] == "not_applicable"


def test_exit_when_three_day_trades_under_25000_then_still_approved() -> None:
    signal = Signal("AAPL", "test_strategy", Action.SELL, 0.9, 20.0, datetime(2024, 1, 2, 21, tzinfo=UTC))
    result = evaluate_exit("AAPL", 100.0, signal, ACTIVE, "exit")

    assert isinstance(result, Approval) and result.intent.quantity == 100


# ------------------------------------------------------------------------------------------ overnight gap


def _at_submission(price: float | None, **kw):
    return replace(_bracket_candidate(**kw), submission_price=price, submission_source="test price")


def test_price_at_submission_through_the_stop_then_denied_by_the_gap_guard() -> None:
    result = evaluate_entry(_at_submission(17.5), make_portfolio(), LIMITS, ACTIVE)

    assert isinstance(result, Denial)
    assert result.rule == "gap_guard"
    assert (result.values["submission_price"], result.values["stop"]) == (17.5, 18.0)
    assert "already at or through the stop 18" in result.reason


def test_price_at_submission_beyond_the_target_then_denied_by_the_gap_guard() -> None:
    result = evaluate_entry(_at_submission(26.5), make_portfolio(), LIMITS, ACTIVE)

    assert isinstance(result, Denial) and result.rule == "gap_guard"
    assert "beyond the target 26" in result.reason


def test_price_at_submission_above_the_decision_when_risk_exceeds_the_limit_then_resized_within_it() -> None:
    portfolio = make_portfolio()  # equity 100,000: at most 2,000 at risk
    decided = evaluate_entry(_bracket_candidate(), portfolio, LIMITS, ACTIVE)
    result = evaluate_entry(_at_submission(21.0), portfolio, LIMITS, ACTIVE)

    assert isinstance(decided, Approval) and isinstance(result, Approval)
    assert decided.intent.quantity == 1000  # (20 - 18) x 1000 = 2,000
    assert result.intent.quantity == 666  # floor(2,000 / (21 - 18))
    check = result.checks["gap_guard"]
    assert check["status"] == "clipped"
    assert check["risk"] == pytest.approx(3000.0)
    assert check["risk_limit"] == pytest.approx(2000.0)
    assert result.intent.reason.startswith("BUY 666 AAPL (gap_guard:")


def test_price_at_submission_when_risk_grows_and_not_one_share_fits_then_denied() -> None:
    limits = RiskLimits(risk_per_trade=0.0001)  # 10.00 at risk on 100,000: 5 shares at a 2.00 stop distance
    result = evaluate_entry(_at_submission(25.0), make_portfolio(), limits, ACTIVE)  # 7.00 a share now

    assert isinstance(result, Approval) and result.intent.quantity == 1
    small = replace(limits, risk_per_trade=0.00003)  # 3.00 at risk: one share at 2.00, none at 7.00
    denied = evaluate_entry(_at_submission(25.0), make_portfolio(), small, ACTIVE)
    assert isinstance(denied, Denial) and denied.rule == "gap_guard"
    assert "not one share fits" in denied.reason


def test_price_at_submission_below_the_decision_above_the_stop_then_unchanged() -> None:
    decided = evaluate_entry(_bracket_candidate(), make_portfolio(), LIMITS, ACTIVE)
    result = evaluate_entry(_at_submission(19.0), make_portfolio(), LIMITS, ACTIVE)

    assert isinstance(decided, Approval) and isinstance(result, Approval)
    assert result.intent == decided.intent
    assert result.checks["gap_guard"]["status"] == "pass"


def test_no_price_at_submission_then_the_gap_guard_is_not_applicable_with_the_reason() -> None:
    result = evaluate_entry(_bracket_candidate(), make_portfolio(), LIMITS, ACTIVE)

    assert isinstance(result, Approval)
    assert result.checks["gap_guard"]["status"] == "not_applicable"
    assert result.checks["gap_guard"]["reason"] == "no price at submission"


def test_gap_guard_switched_off_then_an_entry_through_its_stop_is_approved() -> None:
    result = evaluate_entry(_at_submission(17.5), make_portfolio(), RiskLimits(gap_guard=False), ACTIVE)

    assert isinstance(result, Approval)
    assert result.checks["gap_guard"]["status"] == "not_applicable"


def test_submission_price_then_the_quote_ask_first_the_simulated_fill_price_next_else_none_with_why() -> None:
    quote = {"spread_pct": 0.001, "quote": {"bid": 20.0, "ask": 20.02, "at": "2024-01-02T15:00:00+00:00"}}
    assert submission_fields(quote, 19.5)["submission_price"] == 20.02
    assert submission_fields({"spread_pct": None, "spread_note": "no quote"}, 19.5)["submission_price"] == 19.5
    unknown = submission_fields({"spread_pct": None, "spread_note": "no live quote in a backtest"}, None)
    assert unknown == {
        "submission_price": None,
        "submission_source": "no price at submission: no live quote in a backtest",
    }

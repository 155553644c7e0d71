"""The entry decision under a sizing mode (``risk``, ``fixed-qty:N``, ``fixed-fraction:F``), with the limits on or
off, and the order intent of a limits-off entry (the strategy's stop and target)."""

from __future__ import annotations

import pytest

from core.kernel.domain import Approval, Denial, OrderType, Side
from core.risk import (
    RiskLimits,
    TradingState,
    decide_entry,
    entry_intent,
    evaluate_entry,
    parse_sizing,
    size_position,
    wanted_quantity,
)

from tests.risk.factories import make_candidate, make_portfolio, position

LIMITS = RiskLimits()
ACTIVE, REDUCING = TradingState.ACTIVE, TradingState.REDUCING


# ------------------------------------------------------------------------------------------------- parse_sizing


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("risk", ("risk", None)), ("fixed-qty:25", ("fixed-qty", 25.0)), ("fixed-fraction:0.1", ("fixed-fraction", 0.1))],
)
def test_parse_sizing_when_valid_then_mode_and_value(text: str, parsed: tuple[str, float | None]) -> None:
    assert parse_sizing(text) == parsed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kelly", "sizing must be"),
        ("fixed-qty", "sizing must be"),
        ("fixed-qty:0", "positive whole number"),
        ("fixed-qty:2.5", "positive whole number"),
        ("fixed-fraction:0", "fraction of equity"),
        ("fixed-fraction:1.5", "fraction of equity"),
    ],
)
def test_parse_sizing_when_invalid_then_value_error_names_the_problem(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_sizing(text)


# ------------------------------------------------------------------------------------------------ wanted_quantity


def test_wanted_quantity_when_risk_sizing_then_none() -> None:
    assert wanted_quantity(("risk", None), make_candidate(), make_portfolio(), LIMITS, ACTIVE) is None


def test_wanted_quantity_when_fixed_qty_then_that_many_shares() -> None:
    assert wanted_quantity(("fixed-qty", 25.0), make_candidate(), make_portfolio(), LIMITS, ACTIVE) == 25


def test_wanted_quantity_when_fixed_fraction_then_the_fraction_of_equity_at_the_price_floored() -> None:
    # 10% of 100,000 = 10,000 at 30.00 -> 333.3 -> 333 shares
    candidate = make_candidate(price=30.0)
    assert wanted_quantity(("fixed-fraction", 0.1), candidate, make_portfolio(), LIMITS, ACTIVE) == 333


def test_wanted_quantity_when_reducing_with_limits_on_then_cut_to_reducing_size_and_with_limits_off_not() -> None:
    limits = RiskLimits(reducing_size=0.5)
    candidate, portfolio = make_candidate(), make_portfolio()
    assert wanted_quantity(("fixed-qty", 25.0), candidate, portfolio, limits, REDUCING) == 12  # floor(12.5)
    assert wanted_quantity(("fixed-qty", 25.0), candidate, portfolio, limits, REDUCING, enforce=False) == 25


def test_wanted_quantity_when_the_price_is_not_positive_then_zero_shares() -> None:
    candidate = make_candidate(price=0.0)
    assert wanted_quantity(("fixed-fraction", 0.1), candidate, make_portfolio(), LIMITS, ACTIVE) == 0


# -------------------------------------------------------------------------------------------------- entry_intent


def test_entry_intent_when_the_strategy_gives_stop_and_target_then_a_bracket_at_those_levels() -> None:
    candidate = make_candidate(price=20.0, stop=18.0, target=26.0, confidence=0.7)
    order = entry_intent(candidate, 40, "why", LIMITS)
    assert (order.symbol, order.side, order.quantity, order.order_type) == ("AAPL", Side.BUY, 40, OrderType.BRACKET)
    assert (order.stop_loss, order.take_profit, order.reference_price) == (18.0, 26.0, 20.0)
    assert (order.strategy, order.confidence, order.reason) == ("test_strategy", 0.7, "why")


def test_entry_intent_when_the_strategy_stop_is_not_below_the_price_then_the_atr_stop() -> None:
    order = entry_intent(make_candidate(price=20.0, atr=2.0, stop=21.0), 1, "why", RiskLimits(stop_atr_multiple=1.5))
    assert order.stop_loss == pytest.approx(17.0)  # 20 - 1.5 x 2
    assert order.take_profit is None and order.order_type is OrderType.MARKET


def test_entry_intent_when_no_stop_can_be_set_then_a_market_order_without_levels() -> None:
    order = entry_intent(make_candidate(price=20.0, atr=float("nan"), target=19.0), 1, "why", LIMITS)
    assert order.stop_loss is None and order.take_profit is None  # a target below the price is dropped
    assert order.order_type is OrderType.MARKET


# -------------------------------------------------------------------------------------------------- decide_entry


def test_decide_entry_with_limits_on_and_risk_sizing_then_the_same_answer_as_evaluate_entry() -> None:
    candidate = make_candidate(stop=18.0, target=26.0)
    portfolio = make_portfolio()
    assert decide_entry(candidate, portfolio, LIMITS, ACTIVE, ("risk", None)) == evaluate_entry(
        candidate, portfolio, LIMITS, ACTIVE
    )


def test_decide_entry_with_limits_on_and_a_fixed_size_of_zero_then_denied_zero_quantity() -> None:
    candidate = make_candidate(price=20.0, stop=18.0, target=26.0)
    portfolio = make_portfolio(cash=100.0)  # 1% of 100 at 20.00 -> 0 shares
    result = decide_entry(candidate, portfolio, LIMITS, ACTIVE, ("fixed-fraction", 0.01))
    assert isinstance(result, Denial) and result.rule == "zero_quantity"
    assert result.reason == "zero_quantity: fixed-fraction sizing wants 0 shares of AAPL"
    assert dict(result.values) == {"equity": 100.0, "price": 20.0}


def test_decide_entry_with_limits_on_and_fixed_qty_then_evaluate_entry_with_that_quantity() -> None:
    candidate = make_candidate(stop=18.0, target=26.0)
    portfolio = make_portfolio()
    result = decide_entry(candidate, portfolio, LIMITS, ACTIVE, ("fixed-qty", 7.0))
    assert isinstance(result, Approval) and result.intent.quantity == 7
    assert result == evaluate_entry(candidate, portfolio, LIMITS, ACTIVE, quantity=7, sizing_mode="fixed-qty")


def test_decide_entry_with_limits_off_when_already_long_then_the_position_rule_still_refuses() -> None:
    portfolio = make_portfolio(positions=[position("AAPL", 2_000.0, "technology", price=20.0)])
    result = decide_entry(make_candidate(), portfolio, LIMITS, ACTIVE, ("fixed-qty", 5.0), enforce=False)
    assert isinstance(result, Denial) and result.rule == "already_long"


def test_decide_entry_with_limits_off_and_fixed_qty_then_clipped_to_the_affordable_shares_only() -> None:
    # 5,000 shares wanted (over max_shares and max_position_pct, which are off) but only 1,000 / 20.00 = 50 affordable
    result = decide_entry(
        make_candidate(price=20.0, stop=18.0, target=26.0),
        make_portfolio(cash=1_000.0, equity=100_000.0),
        LIMITS,
        ACTIVE,
        ("fixed-qty", 5000.0),
        enforce=False,
    )
    assert isinstance(result, Approval) and result.reason == "limits off"
    assert result.intent.quantity == 50 and result.intent.reason == "fixed-qty sizing (limits off): 50 shares"
    assert (result.intent.stop_loss, result.intent.take_profit) == (18.0, 26.0)


def test_decide_entry_with_limits_off_when_nothing_is_affordable_then_denied_no_cash() -> None:
    result = decide_entry(
        make_candidate(price=20.0), make_portfolio(cash=10.0), LIMITS, ACTIVE, ("fixed-qty", 5.0), enforce=False
    )
    assert isinstance(result, Denial) and result.rule == "no_cash"
    assert result.reason == "no_cash: fixed-qty sizing leaves 0 affordable shares" and result.values["cash"] == 10.0


def test_decide_entry_with_limits_off_and_risk_sizing_then_the_risk_size_with_its_checks() -> None:
    candidate = make_candidate(price=20.0, atr=2.0, stop=18.0, target=26.0)
    result = decide_entry(candidate, make_portfolio(), LIMITS, REDUCING, ("risk", None), enforce=False)
    assert isinstance(result, Approval) and result.reason == "limits off"
    quantity = result.intent.quantity
    assert quantity > 0 and result.intent.reason == f"risk sizing (limits off): {quantity} shares"
    assert result.checks  # the sizing's checks are kept


def test_decide_entry_with_limits_off_and_risk_sizing_to_zero_then_denied_by_the_binding_rule() -> None:
    candidate, portfolio = make_candidate(price=20.0, atr=2.0, stop=18.0), make_portfolio(cash=5.0)
    result = decide_entry(candidate, portfolio, LIMITS, ACTIVE, ("risk", None), enforce=False)
    sized = size_position(candidate, portfolio, LIMITS)  # risking 0.10 with a 2.00 stop: 0 shares
    assert isinstance(result, Denial) and result.rule == sized.binding_rule == "zero_quantity"
    assert result.reason == "; ".join(sized.notes) and dict(result.values) == dict(sized.checks)

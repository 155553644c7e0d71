"""One test per refusal rule, plus what an approval carries. Default limits; a BUY of AAPL at 20 with ATR 2 sizes
to 666 shares on a 100,000 all-cash account (see test_sizing.py)."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from core.kernel.domain import Action, Approval, Denial, OrderType, Position, Side
from core.risk import RiskLimits, RiskRule, TradingState, evaluate_entry, evaluate_exit

from tests.risk.factories import AS_OF, make_candidate, make_portfolio, make_signal, make_validated, position, sessions

LIMITS = RiskLimits()
ACTIVE = TradingState.ACTIVE


def deny(candidate=None, portfolio=None, limits=LIMITS, state=ACTIVE, **kwargs) -> Denial:
    decision = evaluate_entry(candidate or make_candidate(), portfolio or make_portfolio(), limits, state, **kwargs)
    assert isinstance(decision, Denial), decision
    assert decision.reason.startswith(f"{decision.rule}: ")
    return decision


def approve(candidate=None, portfolio=None, limits=LIMITS, state=ACTIVE, **kwargs) -> Approval:
    decision = evaluate_entry(candidate or make_candidate(), portfolio or make_portfolio(), limits, state, **kwargs)
    assert isinstance(decision, Approval), decision
    return decision


# --- approval ---------------------------------------------------------------------------------------------------


def test_entry_when_every_rule_passes_then_approval_with_sized_intent_and_all_checks():
    decision = approve(make_candidate(spread_pct=0.002, stop=17.0, target=26.0))

    intent = decision.intent
    assert (intent.symbol, intent.side, intent.quantity) == ("AAPL", Side.BUY, 666)  # 2,000 at risk / 3 per share
    assert intent.order_type is OrderType.BRACKET
    assert intent.stop_loss == 17.0  # the strategy's stop, used for sizing
    assert intent.take_profit == 26.0  # the strategy's target
    assert intent.reference_price == 20.0
    assert intent.strategy == "test_strategy"
    assert set(decision.checks) >= {
        "not_an_entry",
        "state",
        "min_confidence",
        "invalid_equity",
        "daily_loss",
        "weekly_drawdown",
        "already_long",
        "invalid_price",
        "invalid_atr",
        "liquidity",
        "spread",
        "reward_risk",
        "correlation",
        "kelly",
        "sizing",
        "max_shares",
        "max_position_pct",
        "no_cash",
        "gross_exposure",
        "sector_cap",
    }
    assert decision.checks["reward_risk"] == {
        "status": "pass",
        "price": 20.0,
        "stop": 17.0,
        "target": 26.0,
        "reward_risk": 2.0,
        "min_reward_risk": 1.8,
        "stop_source": "strategy",
    }  # (26 - 20) / (20 - 17)
    assert decision.checks["spread"]["spread_pct"] == 0.002
    assert decision.checks["sizing"]["risk_amount"] == 2_000.0
    assert all(check["status"] != "fail" for check in decision.checks.values())


def test_entry_when_strategy_gives_no_target_then_reward_risk_not_applicable_and_market_order():
    decision = approve(make_candidate(stop=18.0, target=None))

    assert decision.checks["reward_risk"]["status"] == "not_applicable"
    assert decision.intent.order_type is OrderType.MARKET
    assert decision.intent.take_profit is None
    assert decision.intent.stop_loss == 18.0  # the strategy's stop


def test_entry_when_the_strategy_gives_a_stop_then_it_is_the_stop_and_sizes_the_position():
    # ATR 2: the fallback stop would be 20 - 1.5 x 2 = 17; the strategy's own stop is 19 (0.5 ATR)
    decision = approve(make_candidate(stop=19.0, target=24.0))

    assert decision.intent.stop_loss == 19.0
    assert decision.checks["sizing"]["stop_source"] == "strategy"
    assert decision.checks["sizing"]["stop_distance"] == 1.0
    assert decision.checks["sizing"]["risk_quantity"] == 2_000  # 2,000 at risk / 1 per share (then capped)


def test_entry_when_the_strategy_gives_no_stop_then_the_atr_multiple_is_the_stop():
    decision = approve(make_candidate(stop=None, target=26.0))

    assert decision.intent.stop_loss == 17.0  # 20 - 1.5 x ATR 2
    assert decision.checks["sizing"]["stop_source"] == "atr"
    assert decision.checks["reward_risk"]["reward_risk"] == pytest.approx(2.0)  # judged on that stop: 6 / 3
    assert deny(make_candidate(stop=None, target=24.0)).rule == "reward_risk"  # 4 / 3 < 1.8


def test_entry_when_fixed_quantity_exceeds_max_shares_then_clipped_to_max_shares_and_the_caps():
    decision = approve(
        make_candidate(price=20.0, stop=17.0),
        limits=RiskLimits(max_shares=500),
        quantity=5_000,
        sizing_mode="fixed-qty",
    )
    assert decision.intent.quantity == 500
    assert decision.checks["max_shares"]["status"] == "clipped"
    assert decision.checks["sizing"]["mode"] == "fixed-qty"
    decision = approve(
        make_candidate(price=20.0, stop=17.0), quantity=5_000, sizing_mode="fixed-qty"
    )  # max_shares 1000, position cap 20%
    assert decision.intent.quantity == 1_000  # 20% of 100,000 at 20 = 1,000 shares = max_shares


def test_position_rules_when_already_long_then_already_long_even_without_limits():
    from core.risk import position_rules

    held = make_portfolio(cash=80_000.0, positions=[position("AAPL", 20_000, "technology", price=20.0)])
    denial = position_rules(make_candidate(), held, LIMITS)
    assert denial is not None and denial.rule == "already_long"
    assert position_rules(make_candidate(), make_portfolio(), LIMITS) is None
    assert position_rules(make_candidate(), held, RiskLimits(allow_pyramiding=True)) is None


def test_entry_when_the_quote_source_failed_then_spread_refuses():
    denial = deny(make_candidate(quote_error="the latest-quote request failed: timed out"))
    assert denial.rule == "spread"
    assert "timed out" in denial.reason


def test_entry_when_no_quote_then_spread_not_applicable():
    decision = approve(make_candidate(spread_pct=None))
    assert decision.checks["spread"]["status"] == "not_applicable"


# --- one test per denial -----------------------------------------------------------------------------------------


def test_entry_when_signal_is_sell_then_not_an_entry():
    denial = deny(make_candidate(action=Action.SELL))
    assert denial.rule == "not_an_entry"
    assert denial.values["action"] == "SELL"


@pytest.mark.parametrize("state", [TradingState.LOCKED, TradingState.HALTED])
def test_entry_when_state_locked_or_halted_then_state_denial(state):
    denial = deny(state=state)
    assert denial.rule == "state"
    assert denial.values["state"] == state.value


def test_entry_when_state_reducing_then_approved_at_reducing_size():
    full, reduced = approve(), approve(state=TradingState.REDUCING)
    assert reduced.checks["state"]["size"] == LIMITS.reducing_size
    assert reduced.intent.quantity == pytest.approx(full.intent.quantity * LIMITS.reducing_size, abs=1)


def test_entry_when_confidence_below_minimum_then_min_confidence():
    denial = deny(make_candidate(confidence=0.29))
    assert denial.rule == "min_confidence"
    assert dict(denial.values) == {"confidence": 0.29, "min_confidence": 0.3}


def test_entry_when_equity_not_positive_then_invalid_equity():
    denial = deny(portfolio=make_portfolio(cash=0.0, equity=0.0))
    assert denial.rule == "invalid_equity"


def test_entry_when_equity_five_percent_below_day_start_then_daily_loss():
    # (100,000 - 95,000) / 100,000 = 5% >= 5%
    denial = deny(portfolio=make_portfolio(cash=95_000.0, equity_day_start=100_000.0))
    assert denial.rule == "daily_loss"
    assert denial.values["daily_loss"] == pytest.approx(0.05)
    assert denial.values["equity_day_start"] == 100_000.0
    assert denial.values["max_daily_loss"] == 0.05


def test_entry_when_daily_loss_just_under_limit_then_allowed():
    # (100,000 - 95,001) / 100,000 = 4.999% < 5%
    decision = approve(portfolio=make_portfolio(cash=95_001.0, equity_day_start=100_000.0))
    assert decision.checks["daily_loss"]["daily_loss"] == pytest.approx(0.04999)


def test_entry_when_equity_five_percent_below_week_high_then_weekly_drawdown():
    # (105,000 - 99,750) / 105,000 = 5,250 / 105,000 = 5%
    denial = deny(portfolio=make_portfolio(cash=99_750.0, equity_day_start=99_750.0, equity_week_high=105_000.0))
    assert denial.rule == "weekly_drawdown"
    assert denial.values["weekly_drawdown"] == pytest.approx(0.05)


def test_entry_when_already_holding_symbol_then_already_long():
    portfolio = make_portfolio(cash=90_000.0, positions=[position("AAPL", 10_000, "technology")])
    denial = deny(portfolio=portfolio)
    assert denial.rule == "already_long"
    assert denial.values["held_quantity"] == 100.0


def test_entry_when_pyramiding_allowed_then_existing_value_counts_in_position_cap():
    # already 10,000 of AAPL; 20% cap = 20,000 -> room 10,000 / 20 = 500 shares (< 666)
    portfolio = make_portfolio(cash=90_000.0, positions=[position("AAPL", 10_000, "technology")])
    decision = approve(portfolio=portfolio, limits=RiskLimits(allow_pyramiding=True))
    assert decision.intent.quantity == 500
    assert decision.checks["max_position_pct"]["existing_value"] == 10_000.0


def test_entry_when_price_not_finite_then_invalid_price():
    denial = deny(make_candidate(price=math.nan))
    assert denial.rule == "invalid_price"


@pytest.mark.parametrize("atr", [math.nan, 0.0, -0.5])
def test_entry_when_atr_invalid_then_invalid_atr(atr):
    denial = deny(make_candidate(atr=atr))
    assert denial.rule == "invalid_atr"


def test_entry_when_dollar_volume_below_minimum_then_liquidity():
    denial = deny(make_candidate(avg_dollar_volume=2_999_999.0))
    assert denial.rule == "liquidity"
    assert dict(denial.values) == {"avg_dollar_volume": 2_999_999.0, "min_avg_dollar_volume": 3_000_000}


def test_entry_when_spread_wider_than_maximum_then_spread():
    denial = deny(make_candidate(spread_pct=0.012))
    assert denial.rule == "spread"
    assert dict(denial.values) == {"spread_pct": 0.012, "max_spread_pct": 0.01}


def test_entry_when_strategy_reward_risk_too_low_then_reward_risk():
    # (23 - 20) / (20 - 18) = 1.5 < 1.8
    denial = deny(make_candidate(stop=18.0, target=23.0))
    assert denial.rule == "reward_risk"
    assert denial.values["reward_risk"] == 1.5
    assert "1.5000" in denial.reason


def test_entry_when_strategy_stop_not_below_price_then_reward_risk():
    denial = deny(make_candidate(stop=20.0, target=30.0))
    assert denial.rule == "reward_risk"
    assert denial.values["stop"] == 20.0


def _alternating(n: int, period: int) -> np.ndarray:
    """+1%/-1% square wave with the given half period (two such waves with periods 1 and 2 are uncorrelated)."""
    return np.array([0.01 if (i // period) % 2 == 0 else -0.01 for i in range(n)])


def test_entry_when_returns_move_with_a_held_position_then_correlation():
    idx = sessions(60)
    held = pd.Series(_alternating(60, 1), index=idx)
    candidate_returns = 2.0 * held  # correlation exactly 1
    portfolio = make_portfolio(
        cash=80_000.0, positions=[position("MSFT", 20_000, "technology")], returns=pd.DataFrame({"MSFT": held})
    )
    denial = deny(make_candidate(returns=candidate_returns), portfolio)

    assert denial.rule == "correlation"
    assert denial.values["held_symbol"] == "MSFT"
    assert denial.values["correlation"] == pytest.approx(1.0)
    assert denial.values["observations"] == 60


def test_entry_when_returns_move_against_a_held_position_then_correlation_uses_absolute_value():
    idx = sessions(60)
    held = pd.Series(_alternating(60, 1), index=idx)
    portfolio = make_portfolio(
        cash=80_000.0, positions=[position("MSFT", 20_000, "technology")], returns=pd.DataFrame({"MSFT": held})
    )
    denial = deny(make_candidate(returns=-held), portfolio)
    assert denial.values["correlation"] == pytest.approx(-1.0)


def test_entry_when_correlated_only_before_the_lookback_then_allowed():
    # 100 sessions: the first 40 identical, the last 60 orthogonal square waves (correlation 0 over 60 = 15 x 4)
    idx = sessions(100)
    held = pd.Series(np.concatenate([_alternating(40, 1), _alternating(60, 1)]), index=idx)
    mine = pd.Series(np.concatenate([_alternating(40, 1), _alternating(60, 2)]), index=idx)
    portfolio = make_portfolio(
        cash=80_000.0, positions=[position("MSFT", 20_000, "technology")], returns=pd.DataFrame({"MSFT": held})
    )
    decision = approve(make_candidate(returns=mine), portfolio)

    pair = decision.checks["correlation"]["pairs"]["MSFT"]
    assert pair["observations"] == 60
    assert pair["correlation"] == pytest.approx(0.0, abs=1e-12)
    # the same data over a 100-session lookback is correlated 0.4 (40 matching + 60 orthogonal) -- still allowed
    # at 0.8 but denied at 0.3
    denial = deny(
        make_candidate(returns=mine), portfolio, limits=RiskLimits(correlation_lookback=100, max_correlation=0.3)
    )
    assert denial.rule == "correlation"
    assert denial.values["correlation"] == pytest.approx(0.4)


def test_entry_when_too_few_overlapping_returns_then_correlation_not_applicable():
    idx = sessions(10)
    held = pd.Series(_alternating(10, 1), index=idx)
    portfolio = make_portfolio(
        cash=80_000.0, positions=[position("MSFT", 20_000, "technology")], returns=pd.DataFrame({"MSFT": held})
    )
    decision = approve(make_candidate(returns=held), portfolio)
    assert decision.checks["correlation"]["pairs"]["MSFT"]["status"] == "not_applicable"
    assert decision.checks["correlation"]["pairs"]["MSFT"]["observations"] == 10


def test_entry_when_no_cash_then_no_cash():
    denial = deny(portfolio=make_portfolio(cash=0.0, positions=[position("XOM", 100_000, "energy")]))
    assert denial.rule == "no_cash"
    assert denial.values["cash"] == 0.0


def test_entry_when_cash_below_one_share_then_no_cash_with_numbers():
    # cash 10 < price 20: the cash cap clips 666 -> 0
    portfolio = make_portfolio(cash=10.0, positions=[position("XOM", 99_990, "energy")])
    denial = deny(portfolio=portfolio, limits=RiskLimits(max_gross_exposure=2.0))
    assert denial.rule == "no_cash"
    assert denial.values["cash"] == 10.0
    assert denial.values["price"] == 20.0
    assert denial.values["quantity_before"] == 666
    assert denial.values["max_quantity"] == 0


def test_entry_when_risk_buys_less_than_one_share_then_zero_quantity():
    denial = deny(make_candidate(price=5_000.0, atr=2_000.0), limits=RiskLimits(max_position_pct=1.0))
    assert denial.rule == "zero_quantity"
    assert denial.values["risk_amount"] == 2_000.0
    assert denial.values["stop_distance"] == 3_000.0


def test_entry_when_one_share_exceeds_position_cap_then_max_position_pct():
    # price 30,000 > 20% x 100,000 = 20,000; ATR 100 -> 2,000 / 150 = 13 risk shares -> 0
    denial = deny(make_candidate(price=30_000.0, atr=100.0))
    assert denial.rule == "max_position_pct"
    assert denial.values["limit_value"] == 20_000.0


def test_entry_when_max_shares_below_one_then_max_shares():
    denial = deny(limits=RiskLimits(max_shares=0.5))
    assert denial.rule == "max_shares"


def test_entry_when_gross_exposure_full_then_gross_exposure():
    portfolio = make_portfolio(cash=50_000.0, positions=[position("XOM", 50_000, "energy")])
    denial = deny(portfolio=portfolio, limits=RiskLimits(max_gross_exposure=0.5))
    assert denial.rule == "gross_exposure"
    assert denial.values["gross_exposure"] == 50_000.0
    assert denial.values["limit_value"] == 50_000.0


def test_entry_when_sector_bucket_full_then_sector_cap():
    portfolio = make_portfolio(cash=65_000.0, positions=[position("MSFT", 35_000, "technology")])
    denial = deny(portfolio=portfolio)
    assert denial.rule == "sector_cap"
    assert denial.values["sector"] == "technology"
    assert denial.values["bucket_exposure"] == 35_000.0
    assert denial.values["limit_value"] == 35_000.0


def test_every_denial_rule_name_is_a_known_rule():
    # the rule names tested above are the stable RiskRule values
    assert {r.value for r in RiskRule} >= {
        "min_confidence",
        "state",
        "daily_loss",
        "weekly_drawdown",
        "liquidity",
        "spread",
        "reward_risk",
        "correlation",
        "already_long",
        "no_cash",
        "invalid_atr",
        "zero_quantity",
        "kelly",
        "max_shares",
        "max_position_pct",
        "gross_exposure",
        "sector_cap",
    }


# --- exits -------------------------------------------------------------------------------------------------------


def test_exit_when_holding_and_sell_signal_then_sell_whole_position():
    held = position("AAPL", 2_000, "technology", price=20.0)  # 100 shares
    decision = evaluate_exit(
        "AAPL", held, make_validated(confidence=0.7, action=Action.SELL, price=21.0), ACTIVE, "strategy exit"
    )
    assert isinstance(decision, Approval)
    assert (decision.intent.side, decision.intent.quantity) == (Side.SELL, 100)
    assert isinstance(decision.intent.quantity, int)
    assert decision.intent.order_type is OrderType.MARKET
    assert decision.intent.reference_price == 21.0
    assert decision.intent.confidence == 0.7
    assert "strategy exit" in decision.reason


def test_exit_when_given_broker_position_or_bare_quantity_then_same_sell():
    broker_position = Position(symbol="AAPL", quantity=100, average_price=Decimal("20"), opened_at=AS_OF)
    sell = make_signal(action=Action.SELL, price=21.0)
    for held in (broker_position, 100, 100.0):
        decision = evaluate_exit("AAPL", held, sell, TradingState.REDUCING, "strategy exit")
        assert isinstance(decision, Approval)
        assert decision.intent.quantity == 100 and isinstance(decision.intent.quantity, int)


def test_exit_when_quantity_zero_then_no_position():
    decision = evaluate_exit("AAPL", 0, make_signal(action=Action.SELL), ACTIVE, "strategy exit")
    assert isinstance(decision, Denial) and decision.rule == "no_position"


def test_exit_when_no_position_then_no_position():
    decision = evaluate_exit("AAPL", None, make_signal(action=Action.SELL), ACTIVE, "strategy exit")
    assert isinstance(decision, Denial)
    assert decision.rule == "no_position"
    assert decision.values["quantity"] == 0.0


def test_exit_when_signal_is_buy_then_not_an_exit():
    held = position("AAPL", 2_000, "technology", price=20.0)
    decision = evaluate_exit("AAPL", held, make_signal(action=Action.BUY), ACTIVE, "strategy exit")
    assert isinstance(decision, Denial)
    assert decision.rule == "not_an_exit"


def test_exit_when_signal_for_another_symbol_then_value_error():
    held = position("AAPL", 2_000, "technology", price=20.0)
    with pytest.raises(ValueError, match="IBM"):
        evaluate_exit("AAPL", held, make_signal(symbol="IBM", action=Action.SELL), ACTIVE, "x")


def test_exit_when_a_time_stop_asks_then_approved_whatever_the_signal_and_the_rule_recorded():
    held = position("AAPL", 2_000, "technology", price=20.0)  # 100 shares
    for action in (Action.BUY, Action.HOLD):
        decision = evaluate_exit(
            "AAPL",
            held,
            make_signal(action=action),
            ACTIVE,
            "time stop: held 3 sessions (limit 3)",
            exit_rule=RiskRule.TIME_STOP,
        )
        assert isinstance(decision, Approval)
        assert (decision.intent.side, decision.intent.quantity) == (Side.SELL, 100)
        assert decision.checks["exit_rule"] == {
            "status": "applied",
            "rule": "time_stop",
            "reason": "time stop: held 3 sessions (limit 3)",
            "signal_action": action.value,
        }
    halted = evaluate_exit(
        "AAPL", held, make_signal(action=Action.HOLD), TradingState.HALTED, "time stop", exit_rule=RiskRule.TIME_STOP
    )
    assert isinstance(halted, Approval)  # a halt stops entries, never the way out
    without = evaluate_exit("AAPL", held, make_signal(action=Action.HOLD), ACTIVE, "time stop")
    assert isinstance(without, Denial) and without.rule == "not_an_exit"  # only a named rule may exit without a SELL

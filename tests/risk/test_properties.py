"""Property tests: over random portfolios, prices, ATRs, confidences and limits, no approved order breaks a limit
(each limit recomputed from the approved quantity), and quantities are never negative or fractional when fractions
are not allowed.

Comparisons that add or subtract money in a different order than the engine allow one part in 1e12 of equity for
floating-point rounding (a millionth of a cent on a million-dollar account), nothing more."""

from __future__ import annotations

import math

from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from core.kernel.domain import Approval, Denial, frozen_map
from core.risk import (
    Candidate,
    PortfolioView,
    PositionView,
    RiskLimits,
    RiskRule,
    TradingState,
    evaluate_entry,
    exposure_by_bucket,
    gross_exposure,
    normalise_bucket,
    size_position,
)

from tests.risk.factories import make_validated

SYMBOLS = ["AAPL", "AIG", "BAC", "IBM", "IWM", "SPY", "MSFT", "XOM"]
SECTORS = ["technology", "financials", "broad_market", "energy", "Technology", ""]
NEW_SYMBOLS = ["NVDA", "AMZN", "GOOGL", "SPY"]  # mostly not held: entries reach sizing
RULES = {rule.value for rule in RiskRule}

limits_st = st.builds(
    RiskLimits,
    risk_per_trade=st.floats(0.001, 0.1),
    max_shares=st.integers(1, 5_000),
    max_position_pct=st.floats(0.01, 1.0),
    stop_atr_multiple=st.floats(0.5, 4.0),
    max_gross_exposure=st.floats(0.1, 3.0),
    sector_cap=st.floats(0.01, 1.0),
    min_confidence=st.floats(0.0, 0.5),
    allow_fractional=st.booleans(),
    allow_pyramiding=st.booleans(),
    kelly_fraction=st.none() | st.floats(0.1, 1.0),
    kelly_min_trades=st.integers(1, 30),
    confidence_scaling=st.sampled_from(["linear", "proportional", "none"]),
    max_daily_loss=st.just(0.05),
    max_weekly_drawdown=st.just(0.05),
)


@st.composite
def portfolios(draw) -> PortfolioView:
    held = draw(st.lists(st.sampled_from(SYMBOLS), max_size=5, unique=True))
    positions = {}
    for symbol in held:
        value = draw(st.floats(1.0, 500_000.0))
        price = draw(st.floats(1.0, 1_000.0))
        positions[symbol] = PositionView(
            symbol=symbol, quantity=value / price, market_value=value, sector=draw(st.sampled_from(SECTORS))
        )
    cash = draw(st.floats(0.0, 1_000_000.0))
    equity = cash + sum(p.market_value for p in positions.values())
    assume(equity > 0)
    return PortfolioView(
        cash=cash,
        equity=equity,
        positions=frozen_map(positions),
        equity_day_start=draw(st.none() | st.floats(equity * 0.9, equity * 1.06)),
        equity_week_high=draw(st.none() | st.floats(equity, equity * 1.06)),
        returns=None,
        realized_trade_returns=draw(st.lists(st.floats(-3.0, 3.0), max_size=40)),
    )


@st.composite
def candidates(draw, plausible: bool = False) -> Candidate:
    """``plausible`` keeps most inputs inside the gates so that most examples reach sizing and get approved."""
    price = draw(st.floats(0.5, 5_000.0))
    if plausible:
        confidence = draw(st.floats(0.5, 1.0))
        atr = draw(st.floats(0.001, 0.5).map(lambda f: f * price / 4))
        adv, spread = draw(st.floats(3e6, 1e10)), draw(st.none() | st.floats(0.0, 0.01))
    else:
        confidence = draw(st.floats(0.0, 1.0))
        atr = draw(st.floats(0.001, 500.0) | st.sampled_from([math.nan, 0.0, -1.0]))
        adv, spread = draw(st.floats(1e6, 1e10)), draw(st.none() | st.floats(0.0, 0.02))
    return Candidate(
        signal=make_validated(
            confidence=confidence, symbol=draw(st.sampled_from(NEW_SYMBOLS if plausible else SYMBOLS)), price=price
        ),
        atr=atr,
        avg_dollar_volume=adv,
        spread_pct=spread,
        sector=draw(st.sampled_from(SECTORS)),
        returns=None,
    )


def _on_grid(quantity: float, limits: RiskLimits) -> bool:
    if not limits.allow_fractional:
        return isinstance(quantity, int) and not isinstance(quantity, bool)
    steps = quantity / limits.fractional_step
    return abs(steps - round(steps)) < 1e-6


@settings(max_examples=500, deadline=None)
@given(candidate=candidates(), portfolio=portfolios(), limits=limits_st)
def test_approved_entry_never_breaks_a_limit(candidate, portfolio, limits):
    _assert_within_limits(candidate, portfolio, limits)


@settings(max_examples=500, deadline=None)
@given(candidate=candidates(plausible=True), portfolio=portfolios(), limits=limits_st)
def test_approved_entry_never_breaks_a_limit_when_inputs_mostly_pass_the_gates(candidate, portfolio, limits):
    _assert_within_limits(candidate, portfolio, limits)


def _assert_within_limits(candidate: Candidate, portfolio: PortfolioView, limits: RiskLimits) -> None:
    decision = evaluate_entry(candidate, portfolio, limits, TradingState.ACTIVE)
    event(f"denied: {decision.rule}" if isinstance(decision, Denial) else "approved")

    if isinstance(decision, Denial):
        assert decision.rule in RULES
        assert decision.reason.startswith(f"{decision.rule}: ")
        assert len(decision.values) > 0
        return

    assert isinstance(decision, Approval)
    intent = decision.intent
    q, price, equity = intent.quantity, intent.reference_price, portfolio.equity
    value = q * price
    eps = 1e-12 * equity
    symbol = candidate.symbol
    held = portfolio.positions.get(symbol)
    existing = abs(held.market_value) if held is not None else 0.0
    stop_distance = limits.stop_atr_multiple * candidate.atr

    assert q > 0 and _on_grid(q, limits)
    if portfolio.equity_day_start is not None:
        assert (portfolio.equity_day_start - equity) / portfolio.equity_day_start < limits.max_daily_loss
    if portfolio.equity_week_high is not None:
        assert (portfolio.equity_week_high - equity) / portfolio.equity_week_high < limits.max_weekly_drawdown
    assert candidate.signal.confidence >= limits.min_confidence
    assert math.isfinite(candidate.atr) and candidate.atr > 0
    assert held is None or held.quantity <= 0 or limits.allow_pyramiding
    assert q <= limits.max_shares
    assert value + (existing if limits.allow_pyramiding else 0.0) <= limits.max_position_pct * equity + eps
    assert value <= portfolio.cash
    assert gross_exposure(portfolio) + value <= limits.max_gross_exposure * equity + eps
    bucket = normalise_bucket(candidate.sector)
    assert exposure_by_bucket(portfolio).get(bucket, 0.0) + value <= limits.sector_cap * equity + eps
    # money at risk at the stop never exceeds the per-trade risk (nor the Kelly fraction when Kelly applies)
    assert q * stop_distance <= equity * limits.risk_per_trade + eps
    assert intent.stop_loss is not None and 0 < intent.stop_loss < price
    assert q * (price - intent.stop_loss) <= equity * limits.risk_per_trade * (1 + 1e-9)
    kelly = decision.checks["kelly"]
    if kelly["status"] == "applied":
        assert q * stop_distance <= equity * kelly["fraction"] + eps
    if candidate.spread_pct is not None:
        assert candidate.spread_pct <= limits.max_spread_pct
    assert candidate.avg_dollar_volume >= limits.min_avg_dollar_volume
    event(f"binding: {decision.checks['sizing_notes']['binding_rule']}")
    for check in decision.checks.values():
        assert check["status"] in {"pass", "clipped", "applied", "not_applicable"}


@settings(max_examples=300, deadline=None)
@given(candidate=candidates(), portfolio=portfolios(), limits=limits_st)
def test_sized_quantity_is_never_negative_and_whole_unless_fractional(candidate, portfolio, limits):
    result = size_position(candidate, portfolio, limits)
    assert result.quantity >= 0
    assert _on_grid(result.quantity, limits) or result.quantity == 0
    if not limits.allow_fractional:
        assert isinstance(result.quantity, int)
    if result.quantity == 0:
        assert result.binding_rule in RULES
    assert result.risk_amount <= portfolio.equity * limits.risk_per_trade * (1 + 1e-12)


@settings(max_examples=200, deadline=None)
@given(
    candidate=candidates(),
    portfolio=portfolios(),
    limits=limits_st,
    state=st.sampled_from([TradingState.LOCKED, TradingState.HALTED]),
)
def test_no_entry_is_ever_approved_when_locked_or_halted(candidate, portfolio, limits, state):
    decision = evaluate_entry(candidate, portfolio, limits, state)
    assert isinstance(decision, Denial)
    assert decision.rule == "state"


@settings(max_examples=200, deadline=None)
@given(candidate=candidates(), portfolio=portfolios(), limits=limits_st)
def test_an_entry_approved_when_reducing_never_risks_more_than_reducing_size_of_the_normal_risk(
    candidate, portfolio, limits
):
    decision = evaluate_entry(candidate, portfolio, limits, TradingState.REDUCING)
    if isinstance(decision, Denial):
        assert decision.rule != "state"
        return
    risk = decision.checks["sizing"]["risk_amount"]
    assert risk <= portfolio.equity * limits.risk_per_trade * limits.reducing_size * (1 + 1e-9)

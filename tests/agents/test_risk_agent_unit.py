"""The Risk agent through its public interface (``on_validated``, ``state``, ``snapshot``/``restore``) with real
collaborators: the simulated broker (positions come from real orders filled on real bars), real bundled bars from
data/daily and the real risk engine."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pandas as pd
import pytest

from agents.risk_agent import RiskAgent
from core.brokers.simulated import SimulatedBroker
from core.data.files import read_bars_file
from core.kernel.domain import Action, BarsBatch, Fill, Side, Signal, SymbolBars, ValidatedSignal, frozen_map
from core.kernel.events import DataReady, ExecutedReady, SignalsReady, ValidatedReady
from core.risk import RiskLimits, TradingState
from tests.brokers.factories import intent
from tests.conftest import BUNDLED_DAILY

DAY = date(2021, 3, 10)
AS_OF = datetime.combine(DAY, time(21), tzinfo=UTC)
EQUITY = Decimal(100_000)


def _bars(symbol: str, day: date = DAY) -> SymbolBars:
    frame = read_bars_file(BUNDLED_DAILY / f"{symbol}.csv")
    end = int(frame.index.get_loc(pd.Timestamp(day, tz=UTC))) + 1
    return SymbolBars(symbol, frame, end, "files")


def _signal(sb: SymbolBars, action: Action) -> Signal:
    close = sb.last_close
    if action is Action.BUY:
        return Signal(sb.symbol, "breakout", action, 0.9, close, AS_OF, stop=close * 0.95, target=close * 1.15)
    return Signal(sb.symbol, "breakout", action, 0.9, close, AS_OF)


def _event(actions: dict[str, Action], **batch_fields) -> ValidatedReady:  # type: ignore[no-untyped-def]
    bars = {s: _bars(s) for s in actions}
    batch = BarsBatch("it-1", AS_OF, bars, **batch_fields)
    signals = {s: _signal(sb, actions[s]) for s, sb in bars.items()}
    ready = SignalsReady(
        iteration_id="it-1",
        as_of=AS_OF,
        previous=DataReady(iteration_id="it-1", as_of=AS_OF, batch=batch),
        signals=signals,
    )
    validated = {s: ValidatedSignal(sig, 0.9) for s, sig in signals.items() if sig.action is not Action.HOLD}
    return ValidatedReady(iteration_id="it-1", as_of=AS_OF, previous=ready, validated=validated)


async def _broker_holding(symbol: str | None = None, quantity: int = 10) -> SimulatedBroker:
    """A simulated broker that bought ``quantity`` shares of ``symbol`` at the close before DAY (filled at DAY's open)."""
    broker = SimulatedBroker(EQUITY, started_at=datetime(2021, 3, 8, 21, tzinfo=UTC))
    if symbol is None:
        return broker
    before = _bars(symbol, date(2021, 3, 9))
    await broker.sync(BarsBatch("it-0", datetime(2021, 3, 9, 21, tzinfo=UTC), {symbol: before}))
    await broker.submit(
        intent(symbol, Side.BUY, quantity, reference_price=before.last_close),
        "pos-1",
        datetime(2021, 3, 9, 21, tzinfo=UTC),
    )
    await broker.sync(BarsBatch("it-1", AS_OF, {symbol: _bars(symbol)}))
    held = (await broker.account()).positions[symbol]
    assert held.quantity == quantity
    return broker


def _agent(broker: SimulatedBroker, limits: RiskLimits | None = None, **kwargs) -> RiskAgent:  # type: ignore[no-untyped-def]
    return RiskAgent(
        broker, limits or RiskLimits(max_correlation=1.0), equity_history=lambda: [], clock=lambda: AS_OF, **kwargs
    )


def _saved(state: TradingState) -> dict:  # type: ignore[type-arg]
    """A persisted trading state of DAY's session (the same session: a LOCK is not yet due for release)."""
    return {
        "state": state.value,
        "reason": f"set by the test: {state.value}",
        "high_water_mark": float(EQUITY),
        "lock_reference": float(EQUITY),
        "sessions": 1,
        "recovering": state is TradingState.REDUCING,
        "session": DAY.isoformat(),
    }


# ------------------------------------------------------------------------------------------------- entries


async def test_on_validated_when_a_buy_fits_every_limit_then_approved_and_sized_within_the_limits() -> None:
    limits = RiskLimits(max_correlation=1.0)
    agent = _agent(await _broker_holding(), limits)

    out = await agent.on_validated(_event({"IWM": Action.BUY}))

    assert out.denials == ()
    (approval,) = out.approvals
    order = approval.intent
    assert order.symbol == "IWM" and order.side is Side.BUY
    assert 0 < order.quantity <= limits.max_shares
    assert order.quantity * order.reference_price <= limits.max_position_pct * float(EQUITY) + 1e-6
    assert order.stop_loss is not None and order.stop_loss < order.reference_price
    (decision,) = [d for d in out.decisions if d.symbol == "IWM"]
    assert decision.action == "approved" and decision.inputs["state"] == "active"


@pytest.mark.parametrize("state", [TradingState.LOCKED, TradingState.HALTED])
async def test_on_validated_when_the_trading_state_forbids_entries_then_the_buy_is_denied_by_rule_state(
    state: TradingState,
) -> None:
    agent = _agent(await _broker_holding(), saved_state=_saved(state))

    out = await agent.on_validated(_event({"IWM": Action.BUY}))

    assert out.approvals == ()
    (denial,) = out.denials
    assert denial.rule == "state"
    assert agent.state is state


# ------------------------------------------------------------------------------------------------- exits


@pytest.mark.parametrize(
    "state", [TradingState.ACTIVE, TradingState.REDUCING, TradingState.LOCKED, TradingState.HALTED]
)
async def test_on_validated_when_a_held_symbol_signals_sell_then_the_exit_is_approved_in_every_trading_state(
    state: TradingState,
) -> None:
    agent = _agent(await _broker_holding("IWM", 10), saved_state=_saved(state))

    out = await agent.on_validated(_event({"IWM": Action.SELL}))

    assert out.denials == ()
    (approval,) = out.approvals
    assert approval.intent.side is Side.SELL and approval.intent.quantity == 10
    (decision,) = [d for d in out.decisions if d.symbol == "IWM"]
    assert decision.action == "approved" and decision.inputs["state"] == state.value


# ------------------------------------------------------------------------------------------------- data quality


async def test_on_validated_when_one_symbol_of_three_has_data_problems_then_the_breaker_stays_closed_and_clean_entries_pass() -> (
    None
):
    agent = _agent(await _broker_holding(), data_quality_min=0.8)
    event = _event(
        {"IWM": Action.BUY, "SPY": Action.HOLD},
        rejected=frozen_map({"AAPL": "files: disk unreadable"}),
        exclusions=frozen_map({"AAPL": "provider"}),
        data_quality=2 / 3,
    )

    out = await agent.on_validated(event)

    assert [a.intent.symbol for a in out.approvals] == ["IWM"]
    assert not [d for d in out.denials if d.rule == "data_quality"]


async def test_on_validated_when_two_symbols_have_data_problems_below_the_minimum_then_entries_are_denied_by_data_quality() -> (
    None
):
    agent = _agent(await _broker_holding(), data_quality_min=0.8)
    event = _event(
        {"IWM": Action.BUY, "SPY": Action.HOLD},
        rejected=frozen_map({"AAPL": "files: disk unreadable", "IBM": "files: disk unreadable"}),
        exclusions=frozen_map({"AAPL": "provider", "IBM": "provider"}),
        data_quality=0.5,
    )

    out = await agent.on_validated(event)

    assert out.approvals == ()
    (denial,) = out.denials
    assert denial.symbol == "IWM" and denial.rule == "data_quality"
    assert denial.values == {"data_quality": 0.5, "minimum": 0.8}
    assert [e for e in out.breaker_events if e.get("name") == "data_quality"]  # the trip is recorded


async def test_on_validated_when_a_symbol_is_flagged_then_its_entry_is_denied_symbol_data_and_its_exit_still_approved() -> (
    None
):
    flag = "missing_sessions: no bar for 2021-03-09"
    blocked = {"entry_blocked": frozen_map({"IWM": flag}), "exclusions": frozen_map({"IWM": "missing_sessions"})}
    entry_agent = _agent(await _broker_holding())
    exit_agent = _agent(await _broker_holding("IWM", 10))

    entry = await entry_agent.on_validated(_event({"IWM": Action.BUY, "SPY": Action.BUY}, **blocked))
    exit_ = await exit_agent.on_validated(_event({"IWM": Action.SELL}, **blocked))

    denied = {d.symbol: d for d in entry.denials}
    assert denied["IWM"].rule == "symbol_data" and denied["IWM"].values == {"data_flag": flag}
    assert [a.intent.symbol for a in entry.approvals] == ["SPY"]  # one flagged symbol does not stop the others
    (approval,) = exit_.approvals
    assert approval.intent.symbol == "IWM" and approval.intent.side is Side.SELL and approval.intent.quantity == 10
    (decision,) = [d for d in exit_.decisions if d.symbol == "IWM"]
    assert decision.inputs["data_flag"] == flag


# ------------------------------------------------------------------------------------------------- persisted state


async def test_snapshot_when_restored_into_a_new_agent_then_the_trading_state_and_breaker_are_the_same() -> None:
    first = _agent(await _broker_holding(), saved_state=_saved(TradingState.LOCKED))
    await first.on_validated(
        _event(
            {"IWM": Action.HOLD},
            rejected=frozen_map({"AAPL": "x", "IBM": "y"}),
            exclusions=frozen_map({"AAPL": "provider", "IBM": "provider"}),
            data_quality=1 / 3,
        )
    )
    saved = first.snapshot()

    second = _agent(await _broker_holding())
    second.restore(saved)

    assert second.state is TradingState.LOCKED
    assert second.state_reason == first.state_reason
    assert second.high_water_mark == first.high_water_mark
    assert second.snapshot() == saved
    assert saved["data_quality"]["state"] != "closed"  # the tripped data-quality breaker survives too


def test_restore_when_the_saved_state_is_unknown_then_a_value_error_names_the_field() -> None:
    agent = _agent(SimulatedBroker(EQUITY, started_at=AS_OF))
    with pytest.raises(ValueError, match="trading state 'frozen'"):
        agent.restore({**_saved(TradingState.ACTIVE), "state": "frozen"})
    assert agent.state is TradingState.ACTIVE  # nothing half-applied


async def test_on_validated_when_the_data_recover_after_a_trip_then_the_breaker_closes_and_entries_are_approved_again() -> (
    None
):
    agent = _agent(await _broker_holding(), data_quality_min=0.8)
    broad = {
        "rejected": frozen_map({"AAPL": "files: disk unreadable", "IBM": "files: disk unreadable"}),
        "exclusions": frozen_map({"AAPL": "provider", "IBM": "provider"}),
        "data_quality": 0.5,
    }
    tripped = await agent.on_validated(_event({"IWM": Action.BUY}, **broad))

    recovered = await agent.on_validated(_event({"IWM": Action.BUY}))

    assert [d.rule for d in tripped.denials] == ["data_quality"]
    assert [a.intent.symbol for a in recovered.approvals] == ["IWM"]
    (closed,) = [e for e in recovered.breaker_events if e.get("name") == "data_quality"]
    assert closed["to_state"] == "closed"


async def test_restore_when_the_latch_of_earlier_versions_was_tripped_then_halted_until_a_manual_reset() -> None:
    saved = {**_saved(TradingState.ACTIVE), "equity_drawdown": {"state": "open", "reason": "equity 70% of its peak"}}
    agent = _agent(await _broker_holding(), saved_state=saved)
    assert agent.state is TradingState.HALTED
    assert agent.state_reason == "halted by the equity drawdown breaker: equity 70% of its peak"

    reset = RiskAgent.reset_saved(saved, reason="operator checked", equity=90_000.0, clock=lambda: AS_OF)
    again = _agent(await _broker_holding(), saved_state=reset)

    assert again.state is TradingState.ACTIVE and again.high_water_mark == 90_000.0
    assert "equity_drawdown" not in reset
    out = await again.on_validated(_event({"IWM": Action.BUY}))
    assert [a.intent.symbol for a in out.approvals] == ["IWM"]


# ------------------------------------------------------------------------------------------- trading-state record


async def test_on_validated_when_equity_crashes_below_the_day_start_then_locked_and_recorded_once_as_a_breaker_event() -> (
    None
):
    broker = await _broker_holding()
    agent = RiskAgent(
        broker, RiskLimits(max_correlation=1.0), equity_history=lambda: [125_000.0], clock=lambda: AS_OF
    )  # a 20% daily loss: the crash lock

    first = await agent.on_validated(_event({"IWM": Action.BUY}))
    second = await agent.on_validated(_event({"IWM": Action.BUY}))

    assert agent.state is TradingState.LOCKED
    (row,) = [e for e in first.breaker_events if e.get("name") == "trading_state"]
    assert (row["from_state"], row["to_state"], row["at"]) == ("active", "locked", AS_OF)
    assert row["reason"] == agent.state_reason
    assert row["details"]["event"] == "lock" and row["details"]["session"] == DAY.isoformat()
    assert row["details"]["equity"] == float(EQUITY)
    assert [d.rule for d in first.denials] == ["state"]
    assert [e for e in second.breaker_events if e.get("name") == "trading_state"] == []  # no change, no row


async def test_on_validated_with_the_limits_off_when_equity_crashes_then_no_trading_state_is_kept_or_recorded() -> None:
    agent = RiskAgent(
        await _broker_holding(),
        RiskLimits(),
        equity_history=lambda: [125_000.0],
        clock=lambda: AS_OF,
        enforce_limits=False,
        sizing="fixed-qty:7",
    )

    out = await agent.on_validated(_event({"IWM": Action.BUY}))

    assert agent.state is TradingState.ACTIVE
    assert [e for e in out.breaker_events if e.get("name") == "trading_state"] == []
    (approval,) = out.approvals
    assert approval.intent.quantity == 7 and approval.reason == "limits off"


def test_sizing_when_not_a_known_mode_then_the_agent_refuses_to_start() -> None:
    with pytest.raises(ValueError, match="sizing must be"):
        _agent(SimulatedBroker(EQUITY, started_at=AS_OF), sizing="kelly")


# ------------------------------------------------------------------------------------------------- on_executed


async def test_on_executed_when_a_trade_closes_then_its_return_feeds_the_next_iterations_kelly_estimate() -> None:
    agent = _agent(await _broker_holding(), RiskLimits(max_correlation=1.0, kelly_fraction=0.5, kelly_min_trades=2))
    t = datetime(2021, 3, 1, 21, tzinfo=UTC)
    fills = [
        Fill("f1", "o1", "SPY", Side.BUY, 10, Decimal("100"), Decimal("1"), t),
        Fill("f2", "o1", "SPY", Side.SELL, 10, Decimal("110"), Decimal("1"), t + timedelta(days=1)),
        Fill("f3", "o2", "IBM", Side.BUY, 10, Decimal("100"), Decimal("0"), t + timedelta(days=2)),
        Fill("f4", "o2", "IBM", Side.SELL, 10, Decimal("95"), Decimal("0"), t + timedelta(days=3)),
    ]
    before = await agent.on_validated(_event({"IWM": Action.BUY}))

    agent.on_executed(ExecutedReady(iteration_id="it-0", as_of=AS_OF, fills=fills))
    after = await agent.on_validated(_event({"IWM": Action.BUY}))

    assert agent.realized.returns == [pytest.approx(98 / 1000), pytest.approx(-0.05)]  # net of commissions
    assert before.approvals[0].checks["kelly"]["status"] == "not_applicable"  # no closed trade yet
    assert after.approvals[0].checks["kelly"]["status"] != "not_applicable"
    assert after.approvals[0].checks["kelly"]["trades"] == 2

"""The Strategy agent's selection: LLM choices over the real SDK clients (fake transports), abstentions that fall
back to the deterministic choice, the per-session cache, the circuit breaker and the shadow ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from agents.data_agent import DataAgent
from agents.strategy_agent import StrategyAgent
from core.kernel.calendar import MarketCalendar
from core.data.files import FileProvider
from core.kernel.events import IterationStarted
from core.kernel.frame_cache import FrameCache
from strategies.frames import peers_of, signal_frame
from strategies.registry import build_registry
from strategies.selector import DeterministicSelector
from tests.conftest import BUNDLED_DAILY
from tests.llm.fakes import FakeClock, GROQ_KEY, make_rig
from utils.circuit_breaker import BreakerState, ConsecutiveFailureBreaker

SYMBOLS = ["AAPL", "IBM", "SPY"]
CALENDAR = MarketCalendar()


def _data_ready(day: str, seq: int = 1):
    as_of = CALENDAR.session(datetime.fromisoformat(day).date()).close_utc
    agent = DataAgent(FileProvider(BUNDLED_DAILY), SYMBOLS, min_history=20, calendar=CALENDAR)
    return agent.on_iteration(IterationStarted(iteration_id=f"it-{seq}", as_of=as_of, seq=seq))


def _agent(rig, clock: FakeClock, events: list) -> StrategyAgent:
    registry = build_registry()
    breaker = ConsecutiveFailureBreaker(
        "llm_selection", threshold=2, cooldown=timedelta(minutes=15), clock=clock, on_transition=events.append
    )
    return StrategyAgent(
        registry, DeterministicSelector(registry), llm=rig.selector, llm_breaker=breaker, breaker_events=events
    )


def _by(decisions, agent):
    return {d.symbol: d for d in decisions if d.agent == agent}


async def test_llm_choice_is_used_and_its_call_is_recorded() -> None:
    clock = FakeClock(datetime(2020, 6, 1, 21, tzinfo=UTC))
    rig = make_rig(
        lambda symbols, allowed: {
            "choices": [{"symbol": s, "strategy": "mean_reversion", "reason": "ranging"} for s in symbols]
        },
        clock=clock,
    )
    agent = _agent(rig, clock, [])
    signals = await agent.on_data(_data_ready("2020-06-01"))
    assert {s.strategy for s in signals.signals.values()} == {"mean_reversion"}
    chosen = _by(signals.decisions, "selector")
    assert {d.action for d in chosen.values()} == {"chose"} and set(chosen) == set(SYMBOLS)
    assert _by(signals.decisions, "strategy")["AAPL"].inputs["selection"]["source"] == "llm:groq"
    (call,) = signals.llm_calls
    assert (
        call["provider"] == "groq"
        and call["input_tokens"] > 0
        and call["outcome"] == "ok"
        and call["purpose"] == "selection"
    )
    assert GROQ_KEY not in str(call)


async def test_an_answer_outside_the_closed_set_is_an_abstention_with_a_deterministic_fallback() -> None:
    clock = FakeClock(datetime(2020, 6, 1, 21, tzinfo=UTC))
    rig = make_rig(
        lambda symbols, allowed: {
            "choices": [{"symbol": s, "strategy": "HOLD" if s == "IBM" else "breakout", "reason": "x"} for s in symbols]
        },
        clock=clock,
    )
    agent = _agent(rig, clock, [])
    signals = await agent.on_data(_data_ready("2020-06-01"))
    selector = _by(signals.decisions, "selector")
    assert selector["IBM"].action == "abstain" and "HOLD" in selector["IBM"].reason
    strategy = _by(signals.decisions, "strategy")
    ibm = strategy["IBM"]
    assert ibm.strategy in build_registry() and ibm.inputs["selection"]["source"] == "deterministic"
    assert "LLM abstained" in ibm.reason and "deterministic fallback" in ibm.reason
    assert strategy["AAPL"].strategy == "breakout"
    assert signals.signals["IBM"].action.value in {"BUY", "SELL", "HOLD"}


async def test_choices_are_cached_for_the_session_and_refreshed_on_the_next() -> None:
    clock = FakeClock(datetime(2020, 6, 1, 21, tzinfo=UTC))
    rig = make_rig(
        lambda symbols, allowed: {
            "choices": [{"symbol": s, "strategy": "bollinger_bands", "reason": "r"} for s in symbols]
        },
        clock=clock,
    )
    agent = _agent(rig, clock, [])
    await agent.on_data(_data_ready("2020-06-01", 1))
    again = await agent.on_data(_data_ready("2020-06-01", 2))
    assert rig.groq_wire.count == 1 and again.llm_calls == ()
    assert {s.strategy for s in again.signals.values()} == {"bollinger_bands"}
    await agent.on_data(_data_ready("2020-06-02", 3))
    assert rig.groq_wire.count == 2


async def test_repeated_llm_failures_trip_the_breaker_then_a_trial_after_the_cool_down() -> None:
    clock = FakeClock(datetime(2020, 6, 1, 21, tzinfo=UTC))
    rig = make_rig(lambda body: httpx.Response(500, json={"error": {"message": "down"}}), clock=clock)
    events: list = []
    agent = _agent(rig, clock, events)
    days = ["2020-06-01", "2020-06-02", "2020-06-03", "2020-06-04"]
    results = []
    for n, day in enumerate(days[:3], start=1):
        results.append(await agent.on_data(_data_ready(day, n)))
    calls_when_open = rig.groq_wire.count
    # two failed iterations opened the breaker: the third made no call and says why
    assert [e["to_state"] for e in results[1].breaker_events] == [str(BreakerState.OPEN)]
    assert results[2].llm_calls == ()
    assert "circuit breaker" in _by(results[2].decisions, "selector")["AAPL"].reason
    for r in results:  # every symbol still got a valid strategy from the deterministic selector
        assert all(d.strategy in build_registry() for d in _by(r.decisions, "strategy").values())
    clock.advance(minutes=16)
    trial = await agent.on_data(_data_ready(days[3], 4))
    assert rig.groq_wire.count > calls_when_open  # half-open: one trial call went out
    assert str(BreakerState.HALF_OPEN) in [e["to_state"] for e in trial.breaker_events]


async def test_shadow_ledger_records_every_eligible_strategy_for_every_symbol() -> None:
    registry = build_registry()
    cache = FrameCache()
    agent = StrategyAgent(registry, DeterministicSelector(registry), cache=cache)
    signals = await agent.on_data(_data_ready("2020-06-01"))
    assert {row["symbol"] for row in signals.shadow} == set(SYMBOLS)
    batch = signals.previous.batch
    for row in signals.shadow:
        assert set(row["signals"]) == set(registry)  # 20 years of history: every strategy is eligible
        assert row["selected"] in registry
        sb = batch.bars[row["symbol"]]
        assert row["close"] == sb.last_close
        for name, (action, strength) in row["signals"].items():  # each strategy's own signal frame at the bar
            frame = signal_frame(cache, sb, registry[name], peers_of(batch.bars, "SPY"))
            code = int(frame["action"].iloc[sb.end - 1])
            assert action == {1: "BUY", -1: "SELL", 0: "HOLD"}[code]
            assert strength == (round(float(frame["strength"].iloc[sb.end - 1]), 4) if code else 0.0)


async def test_shadow_ledger_leaves_out_strategies_without_enough_history() -> None:
    registry = build_registry()
    agent = StrategyAgent(registry, DeterministicSelector(registry))
    ready = _data_ready("1998-06-01")  # five months into the bundled data
    signals = await agent.on_data(ready)
    for row in signals.shadow:
        available = ready.batch.bars[row["symbol"]].end
        expected = {name for name, s in registry.items() if s.min_history < available}
        assert set(row["signals"]) == expected, (row["symbol"], available)
    assert any(set(row["signals"]) != set(registry) for row in signals.shadow)  # some were left out


class _Cycling:
    """A selector that gives each symbol a different strategy every session, round robin over the registry."""

    def __init__(self, names: list[str]) -> None:
        self._names = names
        self._calls = 0

    def choose(self, context, available_history, *, benchmark_available=False, universe_available=False):
        self._calls += 1
        return self._names[self._calls % len(self._names)], "round robin"


async def test_dropping_old_signal_frames_changes_no_signal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the last KEEP_SIGNAL_FRAMES chosen strategies' frames stay cached per symbol; a strategy chosen again is
    recomputed, and every signal is the same as with everything kept."""
    import agents.strategy_agent as module

    registry = build_registry()
    names = [n for n, s in registry.items() if not s.needs_universe and not s.needs_benchmark][:5]
    days = ["2020-06-01", "2020-06-02", "2020-06-03", "2020-06-04", "2020-06-05", "2020-06-08", "2020-06-09"]
    readies = [_data_ready(day, k + 1) for k, day in enumerate(days)]

    async def signals(keep: int) -> list[dict]:
        monkeypatch.setattr(module, "KEEP_SIGNAL_FRAMES", keep)
        agent = StrategyAgent(registry, _Cycling(names), shadow=False)
        out = []
        for ready in readies:
            event = await agent.on_data(ready)
            out.append(
                {
                    s: (sig.strategy, sig.action, sig.strength, sig.stop, sig.target, dict(sig.indicators))
                    for s, sig in event.signals.items()
                }
            )
        cached = {
            (symbol, key) for (symbol, key) in agent._cache._store if isinstance(key, tuple) and key[0] == "signals"
        }
        return out, cached

    kept_all, many = await signals(100)
    evicting, few = await signals(1)
    assert evicting == kept_all
    symbols = {symbol for symbol, _ in many}
    assert len(many) == len(symbols) * len(names) and len(few) == len(symbols)  # one frame per symbol kept


async def test_a_hold_carries_its_indicators_only_when_routine_decisions_are_recorded() -> None:
    """The daemon (routine decisions recorded) gets every signal in full; a lean backtest's HOLD carries only its action,
    price and a short reason, and every BUY/SELL is identical in both."""
    registry = build_registry()
    days = ["2020-06-01", "2020-06-02", "2020-06-03", "2020-06-04", "2020-06-05"]
    full_agent = StrategyAgent(registry, DeterministicSelector(registry), shadow=False)
    lean_agent = StrategyAgent(registry, DeterministicSelector(registry), shadow=False, routine_decisions=False)
    holds = 0
    for k, day in enumerate(days):
        ready = _data_ready(day, k + 1)
        full, lean = (await full_agent.on_data(ready)).signals, (await lean_agent.on_data(ready)).signals
        assert set(full) == set(lean) == set(SYMBOLS)
        for symbol, signal in full.items():
            other = lean[symbol]
            assert (other.strategy, other.action, other.price, other.as_of) == (
                signal.strategy,
                signal.action,
                signal.price,
                signal.as_of,
            )
            if signal.action.value == "HOLD":
                holds += 1
                assert signal.indicators and signal.reason.startswith(f"{signal.strategy}: HOLD")
                assert dict(other.indicators) == {} and other.reason == f"{signal.strategy}: HOLD"
                assert other.strength == 0.0 and other.stop is None and other.target is None
            else:
                assert (dict(other.indicators), other.reason, other.strength, other.stop, other.target) == (
                    dict(signal.indicators),
                    signal.reason,
                    signal.strength,
                    signal.stop,
                    signal.target,
                )
    assert holds > 0


async def test_shadow_and_contexts_computed_for_many_symbols_at_once_then_equal_to_one_symbol_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Symbols whose frames share their dates get their shadow matrices and market contexts in one pass over stacked
    arrays; every shadow row, signal and decision (contexts included) is the same as computed symbol by symbol."""
    from datetime import date

    import agents.strategy_agent as module
    from core.data.synthetic import SyntheticProvider

    symbols = ["SPY", *(f"S{k:02d}" for k in range(9))]
    sessions = CALENDAR.sessions_from(date(2019, 1, 2), 320)
    provider = SyntheticProvider(5, date(2019, 1, 2), 320, calendar=CALENDAR)
    data = DataAgent(provider, symbols, min_history=20, calendar=CALENDAR)
    readies = [
        data.on_iteration(IterationStarted(iteration_id=f"it-{k}", as_of=CALENDAR.session(s.date()).close_utc, seq=k))
        for k, s in enumerate(sessions[-3:], start=1)
    ]

    async def run(stack: int) -> list[tuple]:
        monkeypatch.setattr(module, "SHADOW_STACK", stack)
        registry = build_registry()
        agent = StrategyAgent(registry, DeterministicSelector(registry))
        out = []
        for ready in readies:
            event = await agent.on_data(ready)
            out.append((event.shadow, dict(event.signals), event.decisions))
        return out

    together, alone = await run(128), await run(1)
    assert together == alone
    assert len(together[-1][0]) == len(symbols) and all(row["signals"] for row in together[-1][0])

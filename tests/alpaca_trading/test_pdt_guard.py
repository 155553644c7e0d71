"""The pattern-day-trader guard through the real Risk and Execution agents and the real AlpacaBroker, against the
local fake of Alpaca's trading API: the account reports ``daytrade_count`` 3; under $25,000 of equity the bracket
entry is refused (it could be closed the same session: a fourth day trade) while the exit of a held position is
still sent; at $25,000 or more the entry goes."""

from __future__ import annotations

from datetime import UTC, date
from decimal import Decimal
from collections.abc import Callable

import pandas as pd
import pytest

from agents.execution_agent import ExecutionAgent
from agents.risk_agent import RiskAgent
from core.brokers.alpaca import AlpacaBroker
from core.data.files import read_bars_file
from core.kernel.domain import Action, BarsBatch, Signal, SymbolBars, ValidatedSignal
from core.kernel.events import ApprovedReady, DataReady, ExecutedReady, SignalsReady, ValidatedReady
from core.risk import RiskLimits
from tests.alpaca_trading.conftest import START
from tests.conftest import BUNDLED_DAILY
from tests.fakes.alpaca_server import FakeAlpacaServer
from tests.fakes.alpaca_trading import FakeTradingApi, ManualClock, TradingSpec

pytestmark = pytest.mark.shared

DAY = date(2020, 3, 10)


@pytest.fixture
def alpaca(
    server: FakeAlpacaServer, trading_spec: TradingSpec, clock: ManualClock, request: pytest.FixtureRequest
) -> FakeTradingApi:
    """The fake account with ``cash`` from the test's parameter (20,000 by default): below the $25,000 line."""
    return FakeTradingApi.install(server, trading_spec, clock=clock, cash=getattr(request, "param", Decimal(20_000)))


def _bars(symbol: str) -> SymbolBars:
    frame = read_bars_file(BUNDLED_DAILY / f"{symbol}.csv")
    end = int(frame.index.get_loc(pd.Timestamp(DAY, tz=UTC))) + 1
    return SymbolBars(symbol, frame, end, "files")


def _event() -> ValidatedReady:
    """IWM: a BUY with a stop and a target (a bracket entry); SPY: a SELL of the held position."""
    bars = {s: _bars(s) for s in ("IWM", "SPY")}
    iwm, spy = bars["IWM"].last_close, bars["SPY"].last_close
    signals = {
        "IWM": Signal("IWM", "breakout", Action.BUY, 0.9, iwm, START, stop=iwm * 0.95, target=iwm * 1.15),
        "SPY": Signal("SPY", "breakout", Action.SELL, 0.9, spy, START),
    }
    data = DataReady(iteration_id="it-1", as_of=START, batch=BarsBatch("it-1", START, bars))
    ready = SignalsReady(iteration_id="it-1", as_of=START, previous=data, signals=signals)
    validated = {s: ValidatedSignal(sig, 0.9) for s, sig in signals.items()}
    return ValidatedReady(iteration_id="it-1", as_of=START, previous=ready, validated=validated)


async def _iteration(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, clock: ManualClock
) -> tuple[ApprovedReady, ExecutedReady]:
    """Hold 10 SPY, report 3 day trades in the last 5 sessions, then run Risk and Execution on one iteration."""
    held = alpaca.create_order(symbol="SPY", qty=10)
    alpaca.fill(held.id, "280")
    alpaca.set_price("SPY", str(round(_bars("SPY").last_close, 2)))
    alpaca.set_price("IWM", str(round(_bars("IWM").last_close, 2)))
    alpaca.set_day_trades(3)
    broker = make_broker()
    await broker.sync()
    risk = RiskAgent(broker, RiskLimits(max_correlation=1.0), equity_history=lambda: [], clock=clock)
    approved = await risk.on_validated(_event())
    executed = await ExecutionAgent(broker, order_prefix="paper").on_approved(approved)
    return approved, executed


async def test_three_day_trades_under_25000_then_the_entry_is_denied_and_the_exit_still_sent(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, clock: ManualClock
) -> None:
    approved, executed = await _iteration(make_broker, alpaca, clock)

    (denial,) = approved.denials
    assert (denial.symbol, denial.rule) == ("IWM", "pdt_guard")
    assert denial.values["daytrade_count"] == 3 and denial.values["equity"] < 25_000
    assert [d.action for d in approved.decisions if d.symbol == "IWM"] == ["denied:pdt_guard"]
    assert [(o.symbol, o.side.value) for o in executed.orders] == [("SPY", "sell")]
    sent = [(o.symbol, o.side) for o in alpaca.top_level_orders() if o.id != alpaca.orders()[0].id]
    assert sent == [("SPY", "sell")]  # the exit reached Alpaca; no IWM order did


@pytest.mark.parametrize("alpaca", [Decimal(100_000)], indirect=True)
async def test_three_day_trades_with_equity_of_25000_or_more_then_the_entry_is_sent(
    make_broker: Callable[..., AlpacaBroker], alpaca: FakeTradingApi, clock: ManualClock
) -> None:
    approved, executed = await _iteration(make_broker, alpaca, clock)

    assert approved.denials == ()
    entry = next(a for a in approved.approvals if a.intent.symbol == "IWM")
    assert entry.checks["pdt_guard"]["status"] == "pass"
    assert entry.checks["pdt_guard"]["daytrade_count"] == 3
    assert sorted((o.symbol, o.side.value) for o in executed.orders) == [("IWM", "buy"), ("SPY", "sell")]
    iwm = [o for o in alpaca.top_level_orders() if o.symbol == "IWM"]
    assert len(iwm) == 1 and iwm[0].order_class == "bracket"

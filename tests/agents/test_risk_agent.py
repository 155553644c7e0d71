"""The Risk agent over one iteration of real bundled bars: the entries of one iteration are checked one after another
against the open positions AND the entries already approved (correlation, sector bucket), and the spread rule runs
on live quotes fetched in one batched request through the real Alpaca data client against the local fake server."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal
from collections.abc import Iterator, Mapping

import pandas as pd
import pytest

from agents.risk_agent import RiskAgent
from core.brokers.simulated import SimulatedBroker
from core.data.alpaca import AlpacaBarProvider
from core.data.files import read_bars_file
from core.kernel.domain import Action, Approval, BarsBatch, Denial, Signal, SymbolBars, ValidatedSignal
from core.kernel.events import ApprovedReady, DataReady, SignalsReady, ValidatedReady
from core.risk import RiskLimits
from strategies import indicators as ind
from tests.conftest import BUNDLED_DAILY
from tests.fakes.alpaca_server import (
    MARKET_DATA_SPEC_PATH,
    QUOTES_LATEST_PATH,
    FakeAlpacaServer,
    OpenApiSpec,
    StockLatestQuotesEndpoint,
    server_error,
)
from utils.rate_limiter import SlidingWindowRateLimiter

DAY = date(2020, 3, 10)  # the day: highly correlated entries signalled together
KEY, SECRET = "PKRISKQUOTES01", "riskQuotesSecret-77"


def _bars(symbol: str, day: date) -> SymbolBars:
    frame = read_bars_file(BUNDLED_DAILY / f"{symbol}.csv")
    end = int(frame.index.get_loc(pd.Timestamp(day, tz=UTC))) + 1
    return SymbolBars(symbol, frame, end, "files")


def _buy(sb: SymbolBars, as_of: datetime) -> Signal:
    """A BUY at the close with the strategies' default levels: stop 2 ATR below, target 2 x that above."""
    f = sb.visible()
    atr = float(ind.atr(f["high"].to_numpy(float), f["low"].to_numpy(float), f["close"].to_numpy(float), 14)[-1])
    close = sb.last_close
    return Signal(sb.symbol, "breakout", Action.BUY, 0.9, close, as_of, stop=close - 2 * atr, target=close + 4 * atr)


def _event(symbols: list[str], day: date = DAY) -> ValidatedReady:
    as_of = datetime.combine(day, time(21), tzinfo=UTC)
    bars = {s: _bars(s, day) for s in symbols}
    batch = BarsBatch("it-1", as_of, bars)
    signals = {s: _buy(sb, as_of) for s, sb in bars.items()}
    data = DataReady(iteration_id="it-1", as_of=as_of, batch=batch)
    ready = SignalsReady(iteration_id="it-1", as_of=as_of, previous=data, signals=signals)
    validated = {s: ValidatedSignal(sig, 0.9) for s, sig in signals.items()}
    return ValidatedReady(iteration_id="it-1", as_of=as_of, previous=ready, validated=validated)


def _agent(
    limits: RiskLimits, sectors: Mapping[str, str] | None = None, at: datetime | None = None, **kwargs
) -> RiskAgent:
    at = at or datetime.combine(DAY, time(21), tzinfo=UTC)
    return RiskAgent(
        SimulatedBroker(Decimal(100_000), started_at=at), limits, equity_history=lambda: [], clock=lambda: at,
        sectors=sectors, **kwargs,
    )  # fmt: skip


async def _decide(agent: RiskAgent, symbols: list[str]) -> tuple[dict[str, Approval], dict[str, Denial], ApprovedReady]:
    out = await agent.on_validated(_event(symbols))
    return {a.intent.symbol: a for a in out.approvals}, {d.symbol: d for d in out.denials}, out


# ------------------------------------------------------------------------------------------------- one iteration


async def test_two_correlated_candidates_in_one_iteration_when_the_first_is_approved_then_the_second_is_denied_by_correlation() -> (
    None
):
    approved, denied, _ = await _decide(_agent(RiskLimits()), ["IWM", "SPY"])

    assert set(approved) == {"IWM"}
    assert denied["SPY"].rule == "correlation"
    assert denied["SPY"].values["held_symbol"] == "IWM"  # the entry approved a moment earlier, not a held position
    assert abs(denied["SPY"].values["correlation"]) > 0.8
    assert denied["SPY"].values["observations"] >= 20


async def test_two_candidates_of_one_sector_bucket_when_the_first_fills_it_then_the_second_is_denied_by_the_sector_cap() -> (
    None
):
    limits = RiskLimits(max_correlation=1.0, sector_cap=0.2)  # correlation off; the bucket holds one 20% position
    approved, denied, _ = await _decide(
        _agent(limits, {"IWM": "us equity index", "SPY": "us equity index"}), ["IWM", "SPY"]
    )

    assert set(approved) == {"IWM"}
    assert denied["SPY"].rule == "sector_cap"
    assert denied["SPY"].values["sector"] == "us equity index"
    assert denied["SPY"].values["bucket_exposure"] == pytest.approx(
        approved["IWM"].intent.quantity * approved["IWM"].intent.reference_price
    )


async def test_backtest_agent_without_a_quote_source_then_spread_not_applicable_with_the_reason() -> None:
    agent = _agent(
        RiskLimits(max_correlation=1.0), no_quotes_reason="no live quote in a backtest: historical bars only"
    )
    approved, _, _ = await _decide(agent, ["IWM"])

    assert approved["IWM"].checks["spread"] == {
        "status": "not_applicable",
        "reason": "no live quote in a backtest: historical bars only",
        "max_spread_pct": 0.01,
    }


# ------------------------------------------------------------------------------------------------- live quotes


@pytest.fixture
def fake_quotes() -> Iterator[tuple[FakeAlpacaServer, StockLatestQuotesEndpoint]]:
    if not MARKET_DATA_SPEC_PATH.is_file():
        pytest.skip(f"needs Alpaca's official spec at {MARKET_DATA_SPEC_PATH} (../shared is absent)")
    server = FakeAlpacaServer(api_key=KEY, secret_key=SECRET).start()
    endpoint = StockLatestQuotesEndpoint.install(server, OpenApiSpec.load(MARKET_DATA_SPEC_PATH))
    try:
        yield server, endpoint
    finally:
        server.stop()
    server.assert_clean()


@pytest.fixture
def quote_source(fake_quotes) -> Iterator[AlpacaBarProvider]:
    server, _ = fake_quotes
    provider = AlpacaBarProvider(
        KEY, SECRET, url_override=server.base_url, limiter=SlidingWindowRateLimiter(200, 60.0), timeout_s=5.0
    )
    try:
        yield provider
    finally:
        provider.close()


async def test_spread_rule_on_live_quotes_when_one_is_wide_and_one_tight_then_the_wide_is_denied_and_the_tight_approved(
    fake_quotes, quote_source: AlpacaBarProvider
) -> None:
    server, quotes = fake_quotes
    quotes.set_quote("IWM", 139.95, 140.00)  # 0.036%
    quotes.set_quote("SPY", 270.00, 276.00)  # 2.2% > 1%
    agent = _agent(RiskLimits(max_correlation=1.0), quotes=quote_source)
    approved, denied, _ = await _decide(agent, ["IWM", "SPY"])

    assert set(approved) == {"IWM"}
    spread = approved["IWM"].checks["spread"]
    assert spread["status"] == "pass"
    assert spread["spread_pct"] == pytest.approx(0.05 / 139.975)
    assert spread["quote"]["bid"] == 139.95 and spread["quote"]["ask"] == 140.00
    assert denied["SPY"].rule == "spread"
    assert denied["SPY"].values["spread_pct"] == pytest.approx(6.0 / 273.0)
    requests = server.requests_to("GET", QUOTES_LATEST_PATH)
    assert len(requests) == 1  # one batched request for the iteration's candidates
    assert set((requests[0].param("symbols") or "").split(",")) == {"IWM", "SPY"}


async def test_spread_rule_when_the_quote_request_fails_then_entries_are_refused_not_waved_through(
    fake_quotes, quote_source: AlpacaBarProvider
) -> None:
    server, _ = fake_quotes
    server.script("GET", QUOTES_LATEST_PATH, *[server_error(500)] * 3)  # a 5xx is retried twice, then it fails
    approved, denied, _ = await _decide(_agent(RiskLimits(max_correlation=1.0), quotes=quote_source), ["IWM"])

    assert approved == {}
    assert denied["IWM"].rule == "spread"
    assert "latest-quote request failed" in denied["IWM"].reason and "HTTP 500" in denied["IWM"].reason


async def test_spread_rule_when_the_quote_is_one_sided_then_refused_and_when_absent_then_not_applicable(
    fake_quotes, quote_source: AlpacaBarProvider
) -> None:
    _, quotes = fake_quotes
    quotes.set_quote("IWM", 0.0, 140.00)  # no bid
    approved, denied, _ = await _decide(_agent(RiskLimits(max_correlation=1.0), quotes=quote_source), ["IWM", "SPY"])

    assert denied["IWM"].rule == "spread" and "one-sided" in denied["IWM"].reason
    assert approved["SPY"].checks["spread"]["status"] == "not_applicable"  # the source has no quote for SPY
    assert "no quote for SPY" in approved["SPY"].checks["spread"]["reason"]


# ------------------------------------------------------------------------------------------------- the strategy's levels


def _signal_event(symbol: str, strategy_name: str, params: dict, pick) -> tuple[ValidatedReady, Signal]:
    """The event of the session of ``pick(buy_rows)`` of a real strategy's frame on the bundled bars."""
    from strategies.base import signal_at
    from strategies.registry import STRATEGY_CLASSES

    strategy = STRATEGY_CLASSES[strategy_name](**params)
    frame = read_bars_file(BUNDLED_DAILY / f"{symbol}.csv")
    signals = strategy.compute(frame)
    row = pick([i for i in range(len(signals)) if signals["action"].iat[i] == 1 and frame.index[i].year >= 2005])
    day = frame.index[row].date()
    as_of = datetime.combine(day, time(21), tzinfo=UTC)
    signal = signal_at(strategy, symbol, signals, row, float(frame["close"].iat[row]))
    batch = BarsBatch("it-1", as_of, {symbol: SymbolBars(symbol, frame, row + 1, "files")})
    ready = SignalsReady(
        iteration_id="it-1",
        as_of=as_of,
        previous=DataReady(iteration_id="it-1", as_of=as_of, batch=batch),
        signals={symbol: signal},
    )
    event = ValidatedReady(
        iteration_id="it-1", as_of=as_of, previous=ready, validated={symbol: ValidatedSignal(signal, 0.9)}
    )
    return event, signal


async def test_stop_atr_parameter_when_changed_then_the_entry_stop_and_the_size_follow_it() -> None:
    stops, quantities = {}, {}
    for stop_atr in (1.0, 3.0):
        event, signal = _signal_event("IBM", "breakout", {"stop_atr": stop_atr}, lambda rows: rows[0])
        agent = _agent(RiskLimits(max_correlation=1.0, min_reward_risk=0.0), at=event.as_of)
        out = await agent.on_validated(event)
        (approval,) = out.approvals
        assert approval.intent.stop_loss == pytest.approx(
            signal.stop
        )  # the strategy's own stop, not STOP_ATR_MULTIPLE's
        assert approval.checks["sizing"]["stop_source"] == "strategy"
        stops[stop_atr], quantities[stop_atr] = approval.intent.stop_loss, approval.checks["sizing"]["risk_quantity"]
    price = signal.price
    assert price - stops[3.0] == pytest.approx(3.0 * (price - stops[1.0]))  # three times as far below the price
    assert quantities[1.0] > quantities[3.0]  # the same money at risk buys fewer shares behind a wider stop


async def test_reversion_target_when_the_mean_is_closer_than_the_minimum_reward_risk_then_denied_by_reward_risk() -> (
    None
):
    # Bollinger BUYs target the middle band: with a 3-ATR stop, reward:risk is what the market gives, often < 1.8
    from strategies.registry import STRATEGY_CLASSES

    frame = read_bars_file(BUNDLED_DAILY / "SPY.csv")
    strategy = STRATEGY_CLASSES["bollinger_bands"](stop_atr=3.0)
    signals = strategy.compute(frame)
    close = frame["close"].to_numpy()
    ratio = (signals["target"].to_numpy() - close) / (close - signals["stop"].to_numpy())
    low = [
        i
        for i in range(len(signals))
        if signals["action"].iat[i] == 1 and frame.index[i].year >= 2005 and ratio[i] < 1.8
    ]
    assert low, "no Bollinger BUY with reward:risk below 1.8 on SPY"

    event, signal = _signal_event("SPY", "bollinger_bands", {"stop_atr": 3.0}, lambda rows: low[0])
    agent = _agent(RiskLimits(max_correlation=1.0), at=event.as_of)
    out = await agent.on_validated(event)

    assert out.approvals == ()
    (denial,) = out.denials
    assert denial.rule == "reward_risk"
    assert denial.values["target"] == pytest.approx(signal.target) and denial.values["stop"] == pytest.approx(
        signal.stop
    )
    assert denial.values["reward_risk"] < 1.8


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::Warning")
def test_risk_atr_when_computed_then_equal_to_the_pandas_ta_reference_on_the_bundled_bars() -> None:
    pandas_ta = pytest.importorskip("pandas_ta")  # the test reference only; the agent uses strategies.indicators
    agent = _agent(RiskLimits())
    for symbol in ("AAPL", "AIG", "SPY"):
        frame = read_bars_file(BUNDLED_DAILY / f"{symbol}.csv")
        reference = pandas_ta.atr(frame["high"], frame["low"], frame["close"], length=14).to_numpy()
        for end in (20, 500, len(frame)):
            assert agent.atr_at(SymbolBars(symbol, frame, end, "files")) == pytest.approx(reference[end - 1], rel=1e-12)

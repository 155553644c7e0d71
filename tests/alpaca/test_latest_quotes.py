"""``AlpacaBarProvider.latest_quotes``: alpaca-py's ``StockLatestQuoteRequest`` against the fake market-data server
(``GET /v2/stocks/quotes/latest``, requests and answers checked against Alpaca's official spec)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from tests.alpaca.conftest import API_KEY, SECRET_KEY
from tests.fakes.alpaca_server import (
    QUOTES_LATEST_PATH,
    StockBarsEndpoint,
    StockLatestQuotesEndpoint,
    server_error,
    synthetic_daily_bars,
)


@pytest.fixture
def quotes_endpoint(fake_alpaca, market_data_spec) -> StockLatestQuotesEndpoint:
    return StockLatestQuotesEndpoint.install(fake_alpaca, market_data_spec)


def test_latest_quotes_when_several_symbols_then_one_request_and_bid_ask_time_per_symbol(
    fake_alpaca, quotes_endpoint, make_provider
) -> None:
    at = datetime(2024, 3, 1, 14, 45, 12, tzinfo=UTC)
    quotes_endpoint.set_quote("AAPL", 172.62, 172.70, at)
    quotes_endpoint.set_quote("MSFT", 410.00, 410.10, at)
    provider = make_provider()

    result = provider.latest_quotes(["AAPL", "MSFT", "NOPE"])

    assert result.error is None and set(result.quotes) == {"AAPL", "MSFT"}  # no quote for NOPE: absent
    aapl = result.quotes["AAPL"]
    assert (aapl.bid, aapl.ask, aapl.at) == (172.62, 172.70, at)
    assert aapl.spread_pct == pytest.approx(0.08 / 172.66)
    requests = fake_alpaca.requests_to("GET", QUOTES_LATEST_PATH)
    assert len(requests) == 1
    assert requests[0].param("symbols") == "AAPL,MSFT,NOPE" and requests[0].param("feed") == "iex"


def test_latest_quotes_when_the_server_fails_then_an_error_naming_the_status_without_the_secret(
    fake_alpaca, quotes_endpoint, make_provider
) -> None:
    fake_alpaca.script(
        "GET", QUOTES_LATEST_PATH, *[server_error(500, f"upstream down {SECRET_KEY}")] * 3
    )  # a 5xx is retried twice
    result = make_provider().latest_quotes(["AAPL"])

    assert result.quotes == {} and result.error is not None
    assert "server error (HTTP 500)" in result.error
    assert SECRET_KEY not in result.error and API_KEY not in result.error


def test_latest_quotes_when_the_quote_is_one_sided_or_crossed_then_no_spread_and_the_problem_named(
    quotes_endpoint, make_provider
) -> None:
    quotes_endpoint.set_quote("AAPL", 0.0, 172.70)
    quotes_endpoint.set_quote("MSFT", 410.20, 410.10)
    quotes = make_provider().latest_quotes(["AAPL", "MSFT"]).quotes

    assert quotes["AAPL"].spread_pct is None and "one-sided" in (quotes["AAPL"].problem or "")
    assert quotes["MSFT"].spread_pct is None and "crossed" in (quotes["MSFT"].problem or "")


def test_fake_bars_endpoint_also_serves_quotes_around_the_last_close(
    fake_alpaca, market_data_spec, make_provider
) -> None:
    bars = StockBarsEndpoint.install(fake_alpaca, market_data_spec)
    bars.add_bars("AAA", synthetic_daily_bars("AAA", date(2024, 1, 2), date(2024, 1, 31)))
    close = bars.bars("AAA")[-1]["c"]

    quote = make_provider().latest_quotes(["AAA"]).quotes["AAA"]
    assert quote.bid < close < quote.ask
    assert quote.spread_pct == pytest.approx(0.0002, rel=0.01)  # 2 bps by default

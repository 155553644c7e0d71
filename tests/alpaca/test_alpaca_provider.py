"""AlpacaBarProvider through the real alpaca-py client against the fake server (checked against the official spec)."""

from __future__ import annotations

import json
import socket
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import pytest

from core.data.alpaca import AlpacaBarProvider, normalise_alpaca_bars
from utils.deadline import deadline_scope
from core.data.base import BarProvider, DataError
from tests.alpaca.conftest import FakeTime, MemoryBarCache
from tests.fakes.alpaca_server import (
    BARS_PATH,
    FakeAlpacaServer,
    Hang,
    Reply,
    StockBarsEndpoint,
    bar_time,
    empty_body,
    malformed_json,
    server_error,
    synthetic_daily_bars,
    too_many_requests,
    weekday_sessions,
)
from utils.rate_limiter import SlidingWindowRateLimiter

pytestmark = pytest.mark.shared

SYMBOLS = ["AAPL", "MSFT", "SPY"]
FIRST = date(2024, 1, 2)
LAST = date(2024, 3, 29)  # the range crosses the switch to daylight saving time on 2024-03-10
START = datetime(2024, 1, 2, tzinfo=UTC)
END = datetime(2024, 3, 29, 22, 0, tzinfo=UTC)

ProviderFactory = Callable[..., AlpacaBarProvider]


def expected_frame(symbol: str, sessions: Sequence[date]) -> pd.DataFrame:
    """The normalised frame for the fake's bars, built from the session dates (not from the wire timestamps)."""
    bars = synthetic_daily_bars(symbol, sessions[0], sessions[-1], sessions=sessions)
    index = pd.DatetimeIndex([pd.Timestamp(day) for day in sessions], name="timestamp").as_unit("ns").tz_localize(UTC)
    data = {
        name: [float(bar[key]) for bar in bars]
        for name, key in zip(("open", "high", "low", "close", "volume"), "ohlcv", strict=False)
    }
    return pd.DataFrame(data, index=index)


def load_bars(
    endpoint: StockBarsEndpoint, symbols: Sequence[str], first: date = FIRST, last: date = LAST
) -> list[date]:
    sessions = weekday_sessions(first, last)
    for symbol in symbols:
        endpoint.add_bars(symbol, synthetic_daily_bars(symbol, first, last, sessions=sessions))
    return sessions


def assert_layout(frame: pd.DataFrame) -> None:
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert str(frame.index.tz) == "UTC"
    assert frame.index.name == "timestamp"
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert all(dtype == np.float64 for dtype in frame.dtypes)
    assert frame.index.is_monotonic_increasing and frame.index.is_unique
    assert (frame.index == frame.index.normalize()).all()


def bars_requests(server: FakeAlpacaServer) -> list:
    return server.requests_to("GET", BARS_PATH)


# ------------------------------------------------------------------------------------------ happy paths


def test_history_with_several_symbols_then_one_batched_request_and_normalised_frames(
    fake_alpaca: FakeAlpacaServer, bars_endpoint: StockBarsEndpoint, make_provider: ProviderFactory
) -> None:
    sessions = load_bars(bars_endpoint, SYMBOLS)
    provider = make_provider()

    result = provider.history(SYMBOLS, END, START)

    requests = bars_requests(fake_alpaca)
    assert len(requests) == 1
    sent = requests[0]
    assert sorted(sent.param("symbols").split(",")) == SYMBOLS
    assert (sent.param("timeframe"), sent.param("feed"), sent.param("adjustment")) == ("1Day", "iex", "all")
    assert provider.requests_made == 1
    assert result.errors == {}
    assert result.provider == "alpaca"
    assert list(result.frames) == SYMBOLS
    for symbol in SYMBOLS:
        assert_layout(result.frames[symbol])
        pd.testing.assert_frame_equal(result.frames[symbol], expected_frame(symbol, sessions), check_freq=False)


def test_history_when_bars_straddle_daylight_saving_then_all_are_midnight_utc_of_the_session(
    bars_endpoint: StockBarsEndpoint, make_provider: ProviderFactory
) -> None:
    sessions = load_bars(bars_endpoint, ["AAPL"], date(2024, 3, 6), date(2024, 3, 14))
    wire_times = {bar["t"][11:] for bar in bars_endpoint.bars("AAPL")}

    result = make_provider().history(["AAPL"], END, datetime(2024, 3, 6, tzinfo=UTC))

    assert wire_times == {"05:00:00Z", "04:00:00Z"}  # EST then EDT midnights
    assert [ts.date() for ts in result.frames["AAPL"].index] == sessions
    assert (result.frames["AAPL"].index.hour == 0).all()


def test_history_when_answer_spans_pages_then_follows_next_page_token(
    fake_alpaca: FakeAlpacaServer, market_data_spec, make_provider: ProviderFactory
) -> None:
    endpoint = StockBarsEndpoint.install(fake_alpaca, market_data_spec, max_page_size=25)
    sessions = load_bars(endpoint, SYMBOLS)  # 3 x 64 bars = 192 bars = 8 pages of at most 25

    result = make_provider().history(SYMBOLS, END, START)

    requests = bars_requests(fake_alpaca)
    assert len(requests) == 8
    assert requests[0].param("page_token") is None
    tokens = [r.param("page_token") for r in requests[1:]]
    assert all(tokens) and len(set(tokens)) == 7
    assert {(r.param("symbols"), r.param("start"), r.param("end")) for r in requests} == {
        (requests[0].param("symbols"), requests[0].param("start"), requests[0].param("end"))
    }
    assert result.errors == {}
    for symbol in SYMBOLS:
        pd.testing.assert_frame_equal(result.frames[symbol], expected_frame(symbol, sessions), check_freq=False)


def test_history_when_a_symbol_is_absent_from_the_answer_then_it_gets_an_error_and_others_are_served(
    bars_endpoint: StockBarsEndpoint, make_provider: ProviderFactory
) -> None:
    load_bars(bars_endpoint, ["AAPL"])

    result = make_provider().history(["AAPL", "NOPE"], END, START)

    assert list(result.frames) == ["AAPL"]
    assert set(result.errors) == {"NOPE"}
    assert result.errors["NOPE"].startswith("alpaca: no bars returned for NOPE")


def test_history_with_no_symbols_then_no_request(
    fake_alpaca: FakeAlpacaServer, bars_endpoint: StockBarsEndpoint, make_provider: ProviderFactory
) -> None:
    result = make_provider().history([], END)

    assert (dict(result.frames), dict(result.errors)) == ({}, {})
    assert bars_requests(fake_alpaca) == []


def test_history_without_start_then_requests_the_default_lookback(
    fake_alpaca: FakeAlpacaServer, bars_endpoint: StockBarsEndpoint, make_provider: ProviderFactory
) -> None:
    load_bars(bars_endpoint, ["AAPL"])

    make_provider(default_lookback=timedelta(days=30)).history(["AAPL"], END)

    (sent,) = bars_requests(fake_alpaca)
    assert sent.param("start") == "2024-02-28T05:00:00+00:00"  # midnight New York of END - 30 days


def test_provider_satisfies_the_bar_provider_protocol(make_provider: ProviderFactory) -> None:
    assert isinstance(make_provider(), BarProvider)


# ------------------------------------------------------------------------------------------ failures


def test_history_when_429_then_success_then_waits_retry_after_in_the_shared_limiter(
    fake_alpaca: FakeAlpacaServer,
    bars_endpoint: StockBarsEndpoint,
    make_provider: ProviderFactory,
    limiter: SlidingWindowRateLimiter,
    fake_time: FakeTime,
) -> None:
    sessions = load_bars(bars_endpoint, ["AAPL"])
    fake_alpaca.script("GET", BARS_PATH, too_many_requests(retry_after=0.2))

    result = make_provider().history(["AAPL"], END, START)

    assert result.errors == {}
    pd.testing.assert_frame_equal(result.frames["AAPL"], expected_frame("AAPL", sessions), check_freq=False)
    assert len(bars_requests(fake_alpaca)) == 2
    assert fake_time.sleeps == [pytest.approx(0.2)]  # the retry waited the server's Retry-After, in our limiter
    assert limiter.granted_total == 2


def test_history_when_429_persists_then_every_symbol_errors_after_the_retries(
    fake_alpaca: FakeAlpacaServer,
    bars_endpoint: StockBarsEndpoint,
    make_provider: ProviderFactory,
    fake_time: FakeTime,
) -> None:
    load_bars(bars_endpoint, SYMBOLS)
    fake_alpaca.script("GET", BARS_PATH, *[too_many_requests(retry_after=0.5)] * 3)

    result = make_provider(retry_attempts=2).history(SYMBOLS, END, START)

    assert dict(result.frames) == {}
    assert set(result.errors) == set(SYMBOLS)
    assert all(reason.startswith("alpaca: rate limited (HTTP 429)") for reason in result.errors.values())
    assert len(bars_requests(fake_alpaca)) == 3  # first attempt + 2 retries
    assert fake_time.sleeps == [pytest.approx(0.5), pytest.approx(0.5)]


@pytest.mark.parametrize(
    ("reply", "fragment"),
    [
        (server_error(500), "server error (HTTP 500): internal server error"),
        (Reply(502, body=b"<html>Bad Gateway</html>", content_type="text/html"), "server error (HTTP 502)"),
        (Reply(503, body=b"", content_type="text/plain"), "server error (HTTP 503)"),
        (Reply(400, json={"message": "invalid timeframe"}), "request refused (HTTP 400): invalid timeframe"),
    ],
)
def test_history_when_server_answers_an_error_then_every_symbol_errors_and_nothing_raises(
    fake_alpaca: FakeAlpacaServer,
    bars_endpoint: StockBarsEndpoint,
    make_provider: ProviderFactory,
    reply: Reply,
    fragment: str,
) -> None:
    load_bars(bars_endpoint, SYMBOLS)
    transient = reply.status >= 500
    fake_alpaca.script("GET", BARS_PATH, *[reply] * (3 if transient else 1))

    result = make_provider().history(SYMBOLS, END, START)

    assert dict(result.frames) == {}
    assert set(result.errors) == set(SYMBOLS)
    assert all(fragment in reason for reason in result.errors.values()), result.errors
    assert len(bars_requests(fake_alpaca)) == (3 if transient else 1)  # 5xx: the first attempt and 2 retries; 4xx: none


def test_history_when_a_5xx_passes_then_the_retry_serves_the_bars(
    fake_alpaca: FakeAlpacaServer, bars_endpoint: StockBarsEndpoint, make_provider: ProviderFactory, fake_time: FakeTime
) -> None:
    load_bars(bars_endpoint, SYMBOLS)
    fake_alpaca.script("GET", BARS_PATH, server_error(500), Hang(0.0))

    result = make_provider().history(SYMBOLS, END, START)

    assert result.errors == {} and set(result.frames) == set(SYMBOLS)
    assert len(bars_requests(fake_alpaca)) == 3
    assert fake_time.sleeps == [pytest.approx(0.5), pytest.approx(1.0)]  # capped exponential back-off, in the limiter


def test_history_when_server_hangs_then_the_timeout_cuts_it(
    fake_alpaca: FakeAlpacaServer, bars_endpoint: StockBarsEndpoint, make_provider: ProviderFactory
) -> None:
    # Without a timeout the fake would drop the connection after 10 s: a connection error, not a timeout.
    load_bars(bars_endpoint, SYMBOLS)
    fake_alpaca.script("GET", BARS_PATH, *[Hang(10.0)] * 3)

    result = make_provider(timeout_s=0.5).history(SYMBOLS, END, START)

    assert dict(result.frames) == {}
    assert result.errors == {symbol: "alpaca: request timed out (timeout 0.5s)" for symbol in SYMBOLS}


def test_history_when_server_drops_the_connection_then_every_symbol_errors(
    fake_alpaca: FakeAlpacaServer, bars_endpoint: StockBarsEndpoint, make_provider: ProviderFactory
) -> None:
    load_bars(bars_endpoint, SYMBOLS)
    fake_alpaca.script("GET", BARS_PATH, *[Hang(0.0)] * 3)

    result = make_provider().history(SYMBOLS, END, START)

    assert set(result.errors) == set(SYMBOLS)
    assert all(reason.startswith("alpaca: connection failed") for reason in result.errors.values())


@pytest.mark.parametrize(
    ("reply", "fragment"),
    [(empty_body(), "empty response body"), (malformed_json(), "malformed JSON response body")],
)
def test_history_when_body_is_empty_or_malformed_then_every_symbol_errors(
    fake_alpaca: FakeAlpacaServer,
    bars_endpoint: StockBarsEndpoint,
    make_provider: ProviderFactory,
    reply: Reply,
    fragment: str,
) -> None:
    load_bars(bars_endpoint, SYMBOLS)
    fake_alpaca.script("GET", BARS_PATH, reply)

    result = make_provider().history(SYMBOLS, END, START)

    assert dict(result.frames) == {}
    assert set(result.errors) == set(SYMBOLS)
    assert all(fragment in reason for reason in result.errors.values()), result.errors


def test_history_when_nothing_listens_then_every_symbol_errors(make_provider: ProviderFactory) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed when the block ends: nothing listens there

    result = make_provider(url_override=f"http://127.0.0.1:{port}").history(["AAPL"], END, START)

    assert result.errors["AAPL"].startswith("alpaca: connection failed")


def test_history_when_credentials_are_refused_then_errors_name_the_status(
    bars_endpoint: StockBarsEndpoint, make_provider: ProviderFactory
) -> None:
    load_bars(bars_endpoint, ["AAPL"])

    result = make_provider(secret_key="wrong-secret-value").history(["AAPL"], END, START)

    assert result.errors == {"AAPL": "alpaca: authentication or permission refused (HTTP 401): unauthorized."}


def test_history_when_a_bar_is_malformed_then_that_symbol_errors(
    fake_alpaca: FakeAlpacaServer, bars_endpoint: StockBarsEndpoint, make_provider: ProviderFactory
) -> None:
    load_bars(bars_endpoint, ["AAPL"])
    # Off-spec on purpose, so sent as raw bytes (JSON replies must match the spec): "t" is not a date.
    bad = dict(synthetic_daily_bars("MSFT", FIRST, FIRST)[0], t="2024-13-45T05:00:00Z")
    body = {"bars": {"AAPL": bars_endpoint.bars("AAPL"), "MSFT": [bad]}, "next_page_token": None}
    fake_alpaca.script("GET", BARS_PATH, Reply(200, body=json.dumps(body).encode()))

    result = make_provider().history(["AAPL", "MSFT"], END, START)

    assert list(result.frames) == ["AAPL"]
    assert "MSFT" in result.errors


def test_history_when_the_cache_fails_then_the_error_propagates(
    bars_endpoint: StockBarsEndpoint, make_provider: ProviderFactory
) -> None:
    class BrokenCache(MemoryBarCache):
        def merge(self, symbol: str, frame: pd.DataFrame) -> pd.DataFrame:
            raise RuntimeError("disk full")

    load_bars(bars_endpoint, ["AAPL"])

    with pytest.raises(RuntimeError, match="disk full"):
        make_provider(cache=BrokenCache()).history(["AAPL"], END, START)


@pytest.mark.parametrize(
    ("kwargs", "exception"),
    [
        ({"end": datetime(2024, 3, 1)}, ValueError),
        ({"end": END, "start": datetime(2024, 1, 1)}, ValueError),
        ({"end": START, "start": END}, ValueError),
        ({"end": END, "symbols": "AAPL"}, TypeError),
        ({"end": END, "symbols": ["AAPL", ""]}, ValueError),
    ],
)
def test_history_when_arguments_invalid_then_raises(
    fake_alpaca: FakeAlpacaServer, make_provider: ProviderFactory, kwargs: dict, exception: type
) -> None:
    kwargs.setdefault("symbols", ["AAPL"])

    with pytest.raises(exception):
        make_provider().history(**kwargs)

    assert bars_requests(fake_alpaca) == []


@pytest.mark.parametrize("kwargs", [{"feed": "nasdaq"}, {"adjustment": "everything"}, {"api_key": ""}])
def test_constructor_when_options_invalid_then_raises(make_provider: ProviderFactory, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        make_provider(**kwargs)


def test_normalise_alpaca_bars_when_a_field_is_missing_then_raises_data_error() -> None:
    bar = synthetic_daily_bars("AAPL", FIRST, FIRST)[0]
    del bar["c"]

    with pytest.raises(DataError, match="missing field"):
        normalise_alpaca_bars([bar], "alpaca AAPL")


def test_normalise_alpaca_bars_when_a_date_repeats_then_the_last_bar_wins() -> None:
    first, second = synthetic_daily_bars("AAPL", FIRST, FIRST)[0], synthetic_daily_bars("MSFT", FIRST, FIRST)[0]

    frame = normalise_alpaca_bars([first, second], "alpaca AAPL")

    assert len(frame) == 1
    assert frame["close"].iloc[0] == second["c"]


# ------------------------------------------------------------------------------------------ incremental fetch


CACHE_METHODS = ("load", "merge", "last_timestamp")


@pytest.fixture(params=["memory", "disk"])
def bar_cache(request: pytest.FixtureRequest, tmp_path: Path):
    """The in-test cache, and the real ``DiskBarCache`` (Parquet round trips included)."""
    if request.param == "memory":
        return MemoryBarCache()
    cache_module = pytest.importorskip("core.data.cache")
    cache = cache_module.DiskBarCache(tmp_path / "bars")
    missing = [name for name in CACHE_METHODS if not callable(getattr(cache, name, None))]
    if missing:
        pytest.skip(f"core.data.cache.DiskBarCache lacks {', '.join(missing)}() of core.data.alpaca.BarCache")
    return cache


def test_disk_bar_cache_satisfies_the_bar_cache_protocol(tmp_path: Path) -> None:
    cache_module = pytest.importorskip("core.data.cache")
    cache = cache_module.DiskBarCache(tmp_path)
    missing = [name for name in CACHE_METHODS if not callable(getattr(cache, name, None))]
    if missing:
        pytest.skip(f"core.data.cache.DiskBarCache lacks {', '.join(missing)}() of core.data.alpaca.BarCache")
    assert cache.load("AAPL") is None and cache.last_timestamp("AAPL") is None


def test_history_when_cache_is_current_then_no_request(
    fake_alpaca: FakeAlpacaServer, bars_endpoint: StockBarsEndpoint, make_provider: ProviderFactory, bar_cache
) -> None:
    sessions = load_bars(bars_endpoint, SYMBOLS)
    provider = make_provider(cache=bar_cache)
    cold = provider.history(SYMBOLS, END, START)

    warm = provider.history(SYMBOLS, END, START)

    assert len(bars_requests(fake_alpaca)) == 1  # the cold call only
    assert warm.errors == {}
    for symbol in SYMBOLS:
        pd.testing.assert_frame_equal(warm.frames[symbol], cold.frames[symbol], check_freq=False)
        pd.testing.assert_frame_equal(warm.frames[symbol], expected_frame(symbol, sessions), check_freq=False)


def test_history_when_end_is_a_weekend_after_the_cached_friday_then_no_request(
    fake_alpaca: FakeAlpacaServer, bars_endpoint: StockBarsEndpoint, make_provider: ProviderFactory, bar_cache
) -> None:
    load_bars(bars_endpoint, ["AAPL"])  # LAST is Friday 2024-03-29
    provider = make_provider(cache=bar_cache)
    provider.history(["AAPL"], END, START)

    result = provider.history(["AAPL"], datetime(2024, 3, 31, 18, 0, tzinfo=UTC), START)

    assert len(bars_requests(fake_alpaca)) == 1
    assert result.frames["AAPL"].index[-1].date() == LAST


def test_history_when_new_sessions_exist_then_requests_only_from_the_last_cached_session(
    fake_alpaca: FakeAlpacaServer, bars_endpoint: StockBarsEndpoint, make_provider: ProviderFactory, bar_cache
) -> None:
    load_bars(bars_endpoint, SYMBOLS)
    provider = make_provider(cache=bar_cache)
    provider.history(SYMBOLS, END, START)
    newer = load_bars(bars_endpoint, SYMBOLS, date(2024, 4, 1), date(2024, 4, 5))
    later_end = datetime(2024, 4, 5, 22, 0, tzinfo=UTC)

    result = provider.history(SYMBOLS, later_end, START)

    requests = bars_requests(fake_alpaca)
    assert len(requests) == 2
    assert requests[1].param("start") == "2024-03-29T04:00:00+00:00"  # midnight New York of the last cached day
    assert sorted(requests[1].param("symbols").split(",")) == SYMBOLS
    assert result.errors == {}
    for symbol in SYMBOLS:
        expected = pd.concat([expected_frame(symbol, weekday_sessions(FIRST, LAST)), expected_frame(symbol, newer)])
        pd.testing.assert_frame_equal(result.frames[symbol], expected, check_freq=False)


def test_history_when_only_some_symbols_are_stale_then_only_they_are_requested_from_the_earliest_gap(
    fake_alpaca: FakeAlpacaServer, bars_endpoint: StockBarsEndpoint, make_provider: ProviderFactory, bar_cache
) -> None:
    sessions = load_bars(bars_endpoint, SYMBOLS)
    provider = make_provider(cache=bar_cache)
    provider.history(["AAPL"], END, START)  # AAPL current
    provider.history(["MSFT"], datetime(2024, 3, 15, 22, 0, tzinfo=UTC), START)  # MSFT up to Friday 03-15
    provider.history(["SPY"], datetime(2024, 3, 22, 22, 0, tzinfo=UTC), START)  # SPY up to Friday 03-22

    result = provider.history(SYMBOLS, END, START)

    last = bars_requests(fake_alpaca)[-1]
    assert len(bars_requests(fake_alpaca)) == 4
    assert sorted(last.param("symbols").split(",")) == ["MSFT", "SPY"]
    assert last.param("start") == bar_time(date(2024, 3, 15)).replace("Z", "+00:00")
    assert result.errors == {}
    for symbol in SYMBOLS:
        pd.testing.assert_frame_equal(result.frames[symbol], expected_frame(symbol, sessions), check_freq=False)


def test_history_when_start_is_before_the_cached_bars_then_backfills_once(
    fake_alpaca: FakeAlpacaServer, bars_endpoint: StockBarsEndpoint, make_provider: ProviderFactory, bar_cache
) -> None:
    sessions = load_bars(bars_endpoint, ["AAPL"])
    provider = make_provider(cache=bar_cache)
    provider.history(["AAPL"], END, datetime(2024, 2, 1, tzinfo=UTC))

    backfilled = provider.history(["AAPL"], END, START)
    again = provider.history(["AAPL"], END, START)

    assert len(bars_requests(fake_alpaca)) == 2
    pd.testing.assert_frame_equal(backfilled.frames["AAPL"], expected_frame("AAPL", sessions), check_freq=False)
    pd.testing.assert_frame_equal(again.frames["AAPL"], expected_frame("AAPL", sessions), check_freq=False)


def test_history_when_a_symbol_has_no_bars_before_start_then_it_is_not_requested_again(
    fake_alpaca: FakeAlpacaServer, bars_endpoint: StockBarsEndpoint, make_provider: ProviderFactory, bar_cache
) -> None:
    load_bars(bars_endpoint, ["IPO"], date(2024, 2, 12), LAST)  # listed after the backtest's start
    provider = make_provider(cache=bar_cache)
    provider.history(["IPO"], END, START)

    provider.history(["IPO"], END, START)

    assert len(bars_requests(fake_alpaca)) == 1


def test_history_when_the_refresh_fails_then_errors_and_the_cache_is_kept(
    fake_alpaca: FakeAlpacaServer, bars_endpoint: StockBarsEndpoint, make_provider: ProviderFactory, bar_cache
) -> None:
    load_bars(bars_endpoint, ["AAPL"])
    provider = make_provider(cache=bar_cache)
    provider.history(["AAPL"], datetime(2024, 3, 15, 22, 0, tzinfo=UTC), START)
    fake_alpaca.script("GET", BARS_PATH, *[server_error(500)] * 3)

    failed = provider.history(["AAPL"], END, START)
    recovered = provider.history(["AAPL"], END, START)

    assert "AAPL" not in failed.frames
    assert "HTTP 500" in failed.errors["AAPL"]
    assert recovered.errors == {}
    assert recovered.frames["AAPL"].index[-1].date() == LAST


def test_history_when_is_session_knows_the_holiday_then_no_request_on_it(
    fake_alpaca: FakeAlpacaServer, bars_endpoint: StockBarsEndpoint, make_provider: ProviderFactory, bar_cache
) -> None:
    load_bars(bars_endpoint, ["AAPL"])  # up to Friday 03-29; Monday 04-01 brings nothing new
    holiday = date(2024, 4, 1)
    monday_evening = datetime(2024, 4, 1, 22, 0, tzinfo=UTC)
    with_calendar = make_provider(cache=bar_cache, is_session=lambda day: day.weekday() < 5 and day != holiday)
    with_calendar.history(["AAPL"], END, START)

    with_calendar.history(["AAPL"], monday_evening, START)
    assert len(bars_requests(fake_alpaca)) == 1

    weekdays_only = make_provider(cache=bar_cache)
    result = weekdays_only.history(["AAPL"], monday_evening, START)  # thinks Monday is a session: asks once
    assert len(bars_requests(fake_alpaca)) == 2
    assert result.errors == {}
    assert result.frames["AAPL"].index[-1].date() == LAST


def test_history_with_the_market_calendar_then_no_request_on_an_exchange_holiday(
    fake_alpaca: FakeAlpacaServer, bars_endpoint: StockBarsEndpoint, make_provider: ProviderFactory, bar_cache
) -> None:
    calendar_module = pytest.importorskip("core.kernel.calendar")
    calendar = calendar_module.MarketCalendar(date(2023, 1, 1), date(2025, 12, 31))
    good_friday = date(2024, 3, 29)
    assert not calendar.is_session(good_friday)
    sessions = [day for day in weekday_sessions(FIRST, good_friday) if calendar.is_session(day)]
    for symbol in ("AAPL", "MSFT"):
        bars_endpoint.add_bars(symbol, synthetic_daily_bars(symbol, FIRST, sessions[-1], sessions=sessions))
    provider = make_provider(cache=bar_cache, is_session=calendar.is_session)
    provider.history(["AAPL", "MSFT"], datetime(2024, 3, 28, 22, 0, tzinfo=UTC), START)

    result = provider.history(["AAPL", "MSFT"], datetime(2024, 3, 29, 22, 0, tzinfo=UTC), START)

    assert len(bars_requests(fake_alpaca)) == 1
    assert result.errors == {}
    for symbol in ("AAPL", "MSFT"):
        pd.testing.assert_frame_equal(result.frames[symbol], expected_frame(symbol, sessions), check_freq=False)


def test_history_when_429_asks_for_an_hour_inside_a_deadline_then_errors_at_once_and_the_iteration_is_degraded(
    fake_alpaca: FakeAlpacaServer, bars_endpoint: StockBarsEndpoint, make_provider: ProviderFactory, fake_time: FakeTime
) -> None:
    load_bars(bars_endpoint, SYMBOLS)
    fake_alpaca.script("GET", BARS_PATH, *[too_many_requests(retry_after=3600)] * 4)

    with deadline_scope(5.0) as deadline:
        result = make_provider().history(SYMBOLS, END, START)

    assert set(result.errors) == set(SYMBOLS)
    assert all("deadline" in reason for reason in result.errors.values()), result.errors
    assert len(bars_requests(fake_alpaca)) == 1 and fake_time.sleeps == []  # no wait beyond the deadline was started
    assert len(deadline.notes) == 1 and deadline.notes[0].startswith("market data unavailable: alpaca:")

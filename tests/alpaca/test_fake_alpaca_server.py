"""The fake Alpaca server itself: spec checks (so it cannot drift), pagination, scripts, routing, credentials."""

from __future__ import annotations

from datetime import UTC, date, datetime
from collections.abc import Iterator

import pytest
import requests
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.data.models import BarSet
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame

from tests.alpaca.conftest import API_KEY, SECRET_KEY
from tests.fakes.alpaca_server import (
    BARS_PATH,
    TRADING_SPEC_PATH,
    FakeAlpacaServer,
    OpenApiSpec,
    Reply,
    StockBarsEndpoint,
    server_error,
    synthetic_daily_bars,
    too_many_requests,
)

pytestmark = pytest.mark.shared

AUTH = {"APCA-API-KEY-ID": API_KEY, "APCA-API-SECRET-KEY": SECRET_KEY}
DAILY = {"timeframe": "1Day"}


def get_bars(server: FakeAlpacaServer, **params: object) -> requests.Response:
    return requests.get(server.base_url + BARS_PATH, params=params, headers=AUTH, timeout=5)


@pytest.fixture
def trading_spec() -> OpenApiSpec:
    if not TRADING_SPEC_PATH.is_file():
        pytest.skip(f"needs Alpaca's official spec at {TRADING_SPEC_PATH} (../shared is absent)")
    return OpenApiSpec.load(TRADING_SPEC_PATH)


@pytest.fixture
def open_server() -> Iterator[FakeAlpacaServer]:
    server = FakeAlpacaServer().start()
    try:
        yield server
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------ spec checks


def test_reply_when_it_violates_the_response_schema_then_recorded_and_answered_500(
    fake_alpaca: FakeAlpacaServer, market_data_spec: OpenApiSpec
) -> None:
    bar = synthetic_daily_bars("AAPL", date(2024, 1, 2), date(2024, 1, 2))[0]
    del bar["vw"]
    fake_alpaca.route("GET", BARS_PATH, lambda r: Reply(200, json={"bars": {"AAPL": [bar]}}), spec=market_data_spec)

    response = get_bars(fake_alpaca, symbols="AAPL", **DAILY)
    problems = fake_alpaca.problems
    fake_alpaca.clear_problems()

    assert response.status_code == 500
    assert any("'vw' is a required property" in p for p in problems)
    assert any("'next_page_token' is a required property" in p for p in problems)


def test_reply_when_status_is_not_declared_for_the_operation_then_recorded(
    fake_alpaca: FakeAlpacaServer, bars_endpoint: StockBarsEndpoint
) -> None:
    fake_alpaca.script("GET", BARS_PATH, server_error(504))  # the bars operation declares 400/401/403/429/500

    response = get_bars(fake_alpaca, symbols="AAPL", **DAILY)
    problems = fake_alpaca.problems
    fake_alpaca.clear_problems()

    assert response.status_code == 500
    assert problems and "status 504 is not declared" in problems[0]


def test_reply_when_a_declared_header_has_the_wrong_type_then_recorded(
    fake_alpaca: FakeAlpacaServer, bars_endpoint: StockBarsEndpoint
) -> None:
    fake_alpaca.script("GET", BARS_PATH, Reply(429, json={"message": "slow"}, headers={"X-RateLimit-Reset": "soon"}))

    get_bars(fake_alpaca, symbols="AAPL", **DAILY)
    problems = fake_alpaca.problems
    fake_alpaca.clear_problems()

    assert problems and "X-RateLimit-Reset" in problems[0]


def test_scripted_faults_from_the_helpers_are_valid_against_the_spec(
    fake_alpaca: FakeAlpacaServer, bars_endpoint: StockBarsEndpoint
) -> None:
    fake_alpaca.script("GET", BARS_PATH, too_many_requests(0.2, reset_epoch=1_704_207_612), server_error(500))

    statuses = [get_bars(fake_alpaca, symbols="AAPL", **DAILY).status_code for _ in range(2)]

    assert statuses == [429, 500]  # and the fixture's teardown finds no problems


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"symbols": "AAPL"}, "missing required query parameter 'timeframe'"),
        ({"timeframe": "1Day"}, "missing required query parameter 'symbols'"),
        ({"symbols": "AAPL", "timeframe": "1Day", "limit": "0"}, "parameter 'limit'"),
        ({"symbols": "AAPL", "timeframe": "1Day", "limit": "20000"}, "parameter 'limit'"),
        ({"symbols": "AAPL", "timeframe": "1Day", "limit": "ten"}, "'ten' is not an integer"),
        ({"symbols": "AAPL", "timeframe": "1Day", "feed": "nasdaq"}, "parameter 'feed'"),
        ({"symbols": "AAPL", "timeframe": "1Day", "start": "yesterday"}, "parameter 'start'"),
        ({"symbols": "AAPL", "timeframe": "1Day", "colour": "blue"}, "undeclared query parameter 'colour'"),
    ],
)
def test_request_when_it_violates_the_operation_parameters_then_recorded_and_answered_400(
    fake_alpaca: FakeAlpacaServer, bars_endpoint: StockBarsEndpoint, params: dict, fragment: str
) -> None:
    response = get_bars(fake_alpaca, **params)
    problems = fake_alpaca.problems
    fake_alpaca.clear_problems()

    assert response.status_code == 400
    assert any(fragment in p for p in problems), problems


def test_the_specs_own_example_served_by_the_fake_loads_into_alpaca_py_models(
    fake_alpaca: FakeAlpacaServer, market_data_spec: OpenApiSpec
) -> None:
    example = market_data_spec.example("GET", BARS_PATH)
    example = {**example, "next_page_token": None}  # one page: the SDK would otherwise follow the token
    fake_alpaca.route("GET", BARS_PATH, lambda r: Reply(200, json=example), spec=market_data_spec)
    client = StockHistoricalDataClient(API_KEY, SECRET_KEY, url_override=fake_alpaca.base_url)

    bars = client.get_stock_bars(StockBarsRequest(symbol_or_symbols=["AAPL"], timeframe=TimeFrame.Day))

    assert isinstance(bars, BarSet)
    assert bars["AAPL"][0].close == example["bars"]["AAPL"][0]["c"]
    assert bars["AAPL"][0].timestamp == datetime(2022, 1, 3, 9, 0, tzinfo=UTC)


# ------------------------------------------------------------------------------------------ bars endpoint


def test_bars_endpoint_pages_through_symbols_in_order_with_tokens(
    fake_alpaca: FakeAlpacaServer, bars_endpoint: StockBarsEndpoint
) -> None:
    first, last = date(2024, 1, 2), date(2024, 1, 12)  # 9 sessions
    for symbol in ("MSFT", "AAPL"):
        bars_endpoint.add_bars(symbol, synthetic_daily_bars(symbol, first, last))
    pages, token = [], None
    while True:
        params = {"symbols": "MSFT,AAPL,NONE", "limit": 4, **DAILY}
        if token:
            params["page_token"] = token
        body = get_bars(fake_alpaca, **params).json()
        pages.append(body["bars"])
        token = body["next_page_token"]
        if token is None:
            break

    assert [sum(len(v) for v in page.values()) for page in pages] == [4, 4, 4, 4, 2]
    assert list(pages[0]) == ["AAPL"] and list(pages[2]) == ["AAPL", "MSFT"]  # sorted by symbol, then time
    served = {s: [b for page in pages for b in page.get(s, [])] for s in ("AAPL", "MSFT")}
    assert served == {s: bars_endpoint.bars(s) for s in ("AAPL", "MSFT")}


def test_bars_endpoint_filters_by_start_and_end_inclusive(
    fake_alpaca: FakeAlpacaServer, bars_endpoint: StockBarsEndpoint
) -> None:
    bars_endpoint.add_bars("AAPL", synthetic_daily_bars("AAPL", date(2024, 1, 2), date(2024, 1, 12)))

    body = get_bars(
        fake_alpaca, symbols="AAPL", start="2024-01-04T05:00:00Z", end="2024-01-09T05:00:00Z", **DAILY
    ).json()

    assert [bar["t"][:10] for bar in body["bars"]["AAPL"]] == ["2024-01-04", "2024-01-05", "2024-01-08", "2024-01-09"]


def test_bars_endpoint_when_page_token_is_garbage_then_400(
    fake_alpaca: FakeAlpacaServer, bars_endpoint: StockBarsEndpoint
) -> None:
    assert get_bars(fake_alpaca, symbols="AAPL", page_token="%%%", **DAILY).status_code == 400


# ------------------------------------------------------------------------------------------ router


def test_request_without_matching_credentials_then_401(fake_alpaca: FakeAlpacaServer, bars_endpoint) -> None:
    response = requests.get(
        fake_alpaca.base_url + BARS_PATH,
        params={"symbols": "AAPL", **DAILY},
        headers={"APCA-API-KEY-ID": API_KEY, "APCA-API-SECRET-KEY": "nope"},
        timeout=5,
    )

    assert response.status_code == 401
    assert fake_alpaca.requests[-1].header("APCA-API-SECRET-KEY") == "nope"  # the log keeps what was sent


def test_scripts_are_served_first_in_first_out_then_the_handler_resumes(open_server: FakeAlpacaServer) -> None:
    open_server.route("GET", "/v2/thing", lambda r: Reply(200, json={"from": "handler"}))
    open_server.script("GET", "/v2/thing", Reply(201, json={"from": "script 1"}), Reply(202, json={"from": "script 2"}))

    bodies = [requests.get(open_server.base_url + "/v2/thing", timeout=5).json()["from"] for _ in range(3)]

    assert bodies == ["script 1", "script 2", "handler"]
    assert open_server.pending_script("GET", "/v2/thing") == 0


def test_route_templates_capture_path_parameters_and_serve_trading_spec_examples(
    open_server: FakeAlpacaServer, trading_spec: OpenApiSpec
) -> None:
    template = "/v2/orders/{order_id}"
    example = trading_spec.example("GET", template, name="Equity")
    open_server.route(
        "GET", template, lambda r: Reply(200, json={**example, "id": r.path_params["order_id"]}), spec=trading_spec
    )

    response = requests.get(open_server.base_url + "/v2/orders/61e69015-8549-4bfd-b9c3-01e75843f47d", timeout=5)

    assert response.status_code == 200, open_server.problems
    assert response.json()["id"] == "61e69015-8549-4bfd-b9c3-01e75843f47d"
    assert open_server.requests_to("GET", template)[0].path_params == {
        "order_id": "61e69015-8549-4bfd-b9c3-01e75843f47d"
    }
    open_server.assert_clean()


def test_route_when_the_spec_has_no_such_operation_then_refused(
    open_server: FakeAlpacaServer, market_data_spec: OpenApiSpec
) -> None:
    with pytest.raises(KeyError, match="no operation"):
        open_server.route("POST", BARS_PATH, lambda r: Reply(200, json={}), spec=market_data_spec)


def test_handler_crash_is_recorded_as_a_problem(open_server: FakeAlpacaServer) -> None:
    def broken(request):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("boom")

    open_server.route("GET", "/v2/broken", broken)

    response = requests.get(open_server.base_url + "/v2/broken", timeout=5)

    assert response.status_code == 500
    with pytest.raises(AssertionError, match="ZeroDivisionError: boom"):
        open_server.assert_clean()


def test_unknown_path_is_404_and_logged(open_server: FakeAlpacaServer) -> None:
    response = requests.get(open_server.base_url + "/v2/nowhere?x=1", timeout=5)

    assert response.status_code == 404
    assert open_server.requests[-1].path == "/v2/nowhere"
    assert open_server.requests[-1].param("x") == "1"


def test_request_body_is_checked_against_the_operation_request_body(
    open_server: FakeAlpacaServer, trading_spec: OpenApiSpec
) -> None:
    example = trading_spec.example("GET", "/v2/orders/{order_id}", name="Equity")
    open_server.route("POST", "/v2/orders", lambda r: Reply(200, json=example), spec=trading_spec)

    good = requests.post(
        open_server.base_url + "/v2/orders",
        json={"symbol": "AAPL", "qty": "1", "side": "buy", "type": "market", "time_in_force": "day"},
        timeout=5,
    )
    bad = requests.post(open_server.base_url + "/v2/orders", json={"symbol": "AAPL", "side": "sideways"}, timeout=5)
    problems = open_server.problems
    open_server.clear_problems()

    assert good.status_code == 200
    assert bad.status_code == 400
    assert problems and all("request body" in p for p in problems)

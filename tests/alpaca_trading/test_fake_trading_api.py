"""The fake trading API stays honest: its spec tolerances are narrow and its replies are checked."""

from __future__ import annotations

import json

import pytest
import requests

from tests.alpaca_trading.conftest import API_KEY, SECRET_KEY
from tests.fakes.alpaca_server import FakeAlpacaServer, Reply
from tests.fakes.alpaca_trading import ORDER_PATH, ORDERS_PATH, FakeTradingApi, TradingSpec

pytestmark = pytest.mark.shared


def test_boolean_query_values_from_alpaca_py_are_accepted_but_other_words_are_not(trading_spec: TradingSpec) -> None:
    assert trading_spec.request_problems("GET", ORDERS_PATH, {"nested": ("True",), "status": ("all",)}) == []
    assert trading_spec.request_problems("GET", ORDERS_PATH, {"nested": ("yes",)})
    assert trading_spec.request_problems("GET", ORDERS_PATH, {"status": ("whatever",)})
    assert trading_spec.request_problems("GET", ORDERS_PATH, {"colour": ("red",)})


def test_numbers_are_accepted_for_decimal_fields_but_the_rest_of_the_body_is_still_checked(
    trading_spec: TradingSpec,
) -> None:
    body = {
        "symbol": "AAPL",
        "qty": 10.0,
        "side": "buy",
        "type": "market",
        "time_in_force": "gtc",
        "order_class": "bracket",
        "take_profit": {"limit_price": 110.5},
        "stop_loss": {"stop_price": 95},
    }
    assert trading_spec.body_problems("POST", ORDERS_PATH, json.dumps(body).encode()) == []
    assert trading_spec.body_problems("POST", ORDERS_PATH, json.dumps({**body, "side": "long"}).encode())
    assert trading_spec.body_problems("POST", ORDERS_PATH, json.dumps({**body, "client_order_id": "x" * 129}).encode())
    assert trading_spec.body_problems("PATCH", ORDER_PATH, json.dumps({"stop_price": 97.5}).encode()) == []
    assert trading_spec.body_problems("PATCH", ORDER_PATH, json.dumps({"time_in_force": "forever"}).encode())


def test_undeclared_error_statuses_are_checked_against_the_generic_error_schema(trading_spec: TradingSpec) -> None:
    assert trading_spec.response_problems("POST", ORDERS_PATH, 500, {"code": 50010000, "message": "boom"}) == []
    assert trading_spec.response_problems("POST", ORDERS_PATH, 500, {"message": 42})
    assert trading_spec.response_problems(
        "POST", ORDERS_PATH, 429, {"message": "slow down"}, {"X-RateLimit-Remaining": "many"}
    )
    # Declared statuses keep the spec's own check: an order with an unknown status is a violation.
    assert trading_spec.response_problems(
        "GET", ORDER_PATH, 200, {"status": "teleported", "type": "market", "time_in_force": "day", "notional": None}
    )


def test_a_reply_that_violates_the_spec_is_recorded_and_answered_500(
    trading_spec: TradingSpec, server: FakeAlpacaServer, alpaca: FakeTradingApi
) -> None:
    server.route("GET", ORDER_PATH, lambda request: Reply(200, json={"status": "teleported"}), spec=trading_spec)

    answer = requests.get(
        f"{server.base_url}/v2/orders/0000a1fa-0000-0000-0000-000000000001",
        headers={"APCA-API-KEY-ID": API_KEY, "APCA-API-SECRET-KEY": SECRET_KEY},
        timeout=5,
    )

    assert answer.status_code == 500
    assert any("teleported" in problem for problem in server.problems)
    server.clear_problems()  # expected here; every other test fails at teardown on any problem

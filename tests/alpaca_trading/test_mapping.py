"""Pure helpers of the Alpaca broker: status table, price rounding, deterministic ids, masking."""

from __future__ import annotations

from decimal import Decimal

import pytest
from alpaca.trading.enums import OrderStatus as AlpacaStatus

from core.brokers.alpaca import (
    ALPACA_STATUS_MAP,
    MAX_CLIENT_ORDER_ID,
    fill_id,
    map_alpaca_status,
    mask_account_number,
    replacement_client_order_id,
    round_price,
)
from core.kernel.domain import OrderStatus


def test_status_map_covers_every_status_alpaca_py_knows() -> None:
    assert {s.value for s in AlpacaStatus} <= set(ALPACA_STATUS_MAP)


@pytest.mark.parametrize(
    ("status", "filled", "qty", "expected"),
    [
        ("new", "0", "10", OrderStatus.SUBMITTED),
        ("accepted", "0", "10", OrderStatus.SUBMITTED),
        ("pending_new", "0", "10", OrderStatus.SUBMITTED),
        ("held", "0", "10", OrderStatus.SUBMITTED),
        ("done_for_day", "0", "10", OrderStatus.SUBMITTED),
        ("done_for_day", "3", "10", OrderStatus.PARTIALLY_FILLED),
        ("pending_cancel", "3", "10", OrderStatus.PARTIALLY_FILLED),
        ("partially_filled", "3", "10", OrderStatus.PARTIALLY_FILLED),
        ("calculated", "10", "10", OrderStatus.FILLED),
        ("filled", "10", "10", OrderStatus.FILLED),
        ("canceled", "0", "10", OrderStatus.CANCELED),
        ("canceled", "4", "10", OrderStatus.CANCELED),
        ("replaced", "0", "10", OrderStatus.CANCELED),
        ("expired", "0", "10", OrderStatus.EXPIRED),
        ("rejected", "0", "10", OrderStatus.REJECTED),
    ],
)
def test_map_alpaca_status(status: str, filled: str, qty: str, expected: OrderStatus) -> None:
    assert map_alpaca_status(status, Decimal(filled), Decimal(qty)) is expected


@pytest.mark.parametrize(
    ("filled", "qty", "expected"),
    [("0", "10", OrderStatus.SUBMITTED), ("4", "10", OrderStatus.PARTIALLY_FILLED), ("10", "10", OrderStatus.FILLED)],
)
def test_map_alpaca_status_when_unknown_then_a_working_order_in_doubt(
    filled: str, qty: str, expected: OrderStatus
) -> None:
    assert map_alpaca_status("teleported", Decimal(filled), Decimal(qty)) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (95.123, Decimal("95.12")),
        (95.125, Decimal("95.13")),
        (Decimal("110.455"), Decimal("110.46")),
        (1.0, Decimal("1.00")),
        (0.45678, Decimal("0.4568")),
        (0.99996, Decimal("1.0000")),
    ],
)
def test_round_price(value: float | Decimal, expected: Decimal) -> None:
    assert round_price(value) == expected


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_round_price_when_not_positive_finite_then_value_error(bad: float) -> None:
    with pytest.raises(ValueError):
        round_price(bad)


def test_fill_id_is_deterministic_and_bounded() -> None:
    assert fill_id("abc", Decimal("4")) == "abc@4"
    assert fill_id("abc", Decimal("2.50")) == "abc@2.5"
    long_id = "x" * MAX_CLIENT_ORDER_ID
    assert fill_id(long_id, Decimal(7)) == fill_id(long_id, Decimal(7))
    assert len(fill_id(long_id, Decimal(7))) == MAX_CLIENT_ORDER_ID
    assert fill_id(long_id, Decimal(7)) != fill_id("x" * (MAX_CLIENT_ORDER_ID - 1) + "y", Decimal(7))


def test_replacement_client_order_id_counts_up_and_stays_within_128() -> None:
    assert replacement_client_order_id("leg-uuid") == "leg-uuid-r1"
    assert replacement_client_order_id("leg-uuid-r1") == "leg-uuid-r2"
    assert replacement_client_order_id("leg-uuid-r9") == "leg-uuid-r10"
    long_id = "y" * MAX_CLIENT_ORDER_ID
    assert len(replacement_client_order_id(long_id)) <= MAX_CLIENT_ORDER_ID
    assert replacement_client_order_id(long_id) == replacement_client_order_id(long_id)


def test_mask_account_number_shows_only_the_last_four() -> None:
    assert mask_account_number("PA3FAKE51234") == "****1234"
    assert mask_account_number("1234") == "****"
    assert mask_account_number(None) == "****"

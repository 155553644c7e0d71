from __future__ import annotations

import json

import pytest

from core.kernel.domain import Approval
from core.risk import (
    DEFAULT_SECTOR_MAP_PATH,
    RiskLimits,
    SectorMapError,
    TradingState,
    apply_approval,
    evaluate_entry,
    exposure_by_bucket,
    gross_exposure,
    load_sector_map,
    parse_sector_map,
    sector_of,
)

from tests.risk.factories import make_candidate, make_portfolio, position


def test_exposure_by_bucket_when_positions_then_gross_money_per_normalised_bucket():
    portfolio = make_portfolio(
        cash=10_000.0,
        positions=[
            position("AAPL", 20_000, "technology"),
            position("MSFT", 15_000, "Technology"),
            position("XOM", -5_000, "energy"),  # a short counts at its absolute value
            position("ZZZZ", 1_000, ""),
        ],
    )
    assert exposure_by_bucket(portfolio) == {"technology": 35_000.0, "energy": 5_000.0, "unknown": 1_000.0}
    assert gross_exposure(portfolio) == 41_000.0


def test_exposure_by_bucket_when_no_positions_then_empty():
    assert exposure_by_bucket(make_portfolio()) == {}


def test_sector_map_file_when_loaded_then_contains_required_symbols():
    sectors = load_sector_map()
    assert len(sectors) >= 60
    assert sectors["AAPL"] == "technology"
    assert sectors["IBM"] == "technology"
    assert sectors["BAC"] == "financials"
    assert sectors["AIG"] == "financials"
    assert sectors["SPY"] == "broad_market"
    assert sectors["IWM"] == "broad_market"
    allowed = {
        "technology",
        "communication_services",
        "consumer_discretionary",
        "consumer_staples",
        "energy",
        "financials",
        "health_care",
        "industrials",
        "materials",
        "real_estate",
        "utilities",
        "broad_market",
        "fixed_income",
        "commodities",
    }
    assert set(sectors.values()) <= allowed


def test_sector_map_file_is_plain_json_with_upper_case_symbols():
    document = json.loads(DEFAULT_SECTOR_MAP_PATH.read_text(encoding="utf-8"))
    assert all(symbol == symbol.upper() for symbol in document["sectors"])


def test_sector_of_when_unknown_symbol_then_unknown_bucket():
    sectors = parse_sector_map({"sectors": {"aapl": "Technology"}})
    assert sector_of("AAPL", sectors) == "technology"
    assert sector_of("nope", sectors) == "unknown"


@pytest.mark.parametrize("document", [[], {"sectors": []}, {"sectors": {"AAPL": ""}}, {"sectors": {"": "x"}}])
def test_parse_sector_map_when_malformed_then_error(document):
    with pytest.raises(SectorMapError):
        parse_sector_map(document)


def test_apply_approval_when_batch_in_one_sector_then_second_entry_clipped_by_sector_cap():
    # AAPL: 666 x 20 = 13,320 approved. Then MSFT (technology, price 50, ATR 5 -> stop 7.5 -> 2,000 / 7.5 = 266
    # shares = 13,300) against the updated view: 20,000 pct cap ok; sector room 35,000 - 13,320 = 21,680 -> ok.
    # A third, NVDA at 20 (666 shares = 13,320): sector room 35,000 - 26,620 = 8,380 / 20 = 419 shares.
    limits = RiskLimits()
    view = make_portfolio()
    first = evaluate_entry(make_candidate(symbol="AAPL"), view, limits, TradingState.ACTIVE)
    assert isinstance(first, Approval) and first.intent.quantity == 666
    view = apply_approval(view, first, "technology")
    assert view.cash == 100_000.0 - 13_320.0
    assert view.equity == 100_000.0  # a fill at the reference price does not change equity

    second = evaluate_entry(make_candidate(symbol="MSFT", price=50.0, atr=5.0), view, limits, TradingState.ACTIVE)
    assert isinstance(second, Approval) and second.intent.quantity == 266
    view = apply_approval(view, second, "technology")
    assert exposure_by_bucket(view) == {"technology": 26_620.0}

    third = evaluate_entry(make_candidate(symbol="NVDA"), view, limits, TradingState.ACTIVE)
    assert isinstance(third, Approval)
    assert third.intent.quantity == 419
    assert third.checks["sector_cap"]["status"] == "clipped"

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from core.llm import DEFAULT_PRICES_PATH, PriceTable, PriceTableError


def test_shipped_price_table_loads_is_marked_as_an_estimate_and_prices_the_default_models():
    raw = json.loads(DEFAULT_PRICES_PATH.read_text())
    table = PriceTable.load(DEFAULT_PRICES_PATH)

    assert "ESTIMATE" in raw["_note"]
    assert table.price("groq", "openai/gpt-oss-120b") is not None
    assert table.price("anthropic", "claude-haiku-4-5") is not None


def test_cost_is_exact_decimal_per_million_tokens():
    table = PriceTable.from_mapping({"providers": {"groq": {"m": {"input": "0.15", "output": 0.6}}}})

    assert table.cost("groq", "m", 1_000_000, 1_000_000) == Decimal("0.75")
    assert table.cost("groq", "m", 1, 0) == Decimal("0.00000015")


def test_unknown_model_costs_none_and_dated_snapshots_fall_back_to_their_alias():
    table = PriceTable.from_mapping({"providers": {"anthropic": {"claude-haiku-4-5": {"input": 1, "output": 5}}}})

    assert table.cost("anthropic", "claude-unknown", 10, 10) is None
    assert table.cost("groq", "claude-haiku-4-5", 10, 10) is None
    assert table.cost("anthropic", "claude-haiku-4-5-20251001", 1_000_000, 0) == Decimal("1")


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"providers": {"groq": {"m": {"input": -1, "output": 1}}}}), "greater than or equal"),
        (json.dumps({"providers": {"groq": {"m": {"input": 1}}}}), "output"),
        (json.dumps({"providers": {}, "surprise": 1}), "surprise"),
        (json.dumps({"providers": {}, "currency": "EUR"}), "currency must be USD"),
    ],
)
def test_invalid_price_file_is_rejected_with_a_message(tmp_path, content, fragment):
    path = tmp_path / "prices.json"
    path.write_text(content)

    with pytest.raises(PriceTableError, match=fragment):
        PriceTable.load(path)


def test_missing_price_file_is_rejected(tmp_path):
    with pytest.raises(PriceTableError, match="cannot read"):
        PriceTable.load(tmp_path / "absent.json")

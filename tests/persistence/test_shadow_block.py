"""The shadow ledger handed over as columns (``ShadowBlock``) reads as the per-symbol mappings and packs into the
same bytes as they do: strategy order of first appearance, ineligible strategies, HOLD strengths, rounding."""

from __future__ import annotations

import numpy as np
import pytest

from core.kernel.shadow import NOT_ELIGIBLE, ShadowBlock
from core.persistence.shadow import pack_shadow


def _block() -> ShadowBlock:
    rng = np.random.default_rng(3)
    strategies = ["a", "b", "c", "d", "e"]
    codes = rng.choice(np.array([-1, 0, 1], dtype=np.int8), size=(6, 5))
    codes[0, [1, 3]] = NOT_ELIGIBLE  # the first symbol lacks b and d: they appear after c and e in the storage
    codes[2, :] = NOT_ELIGIBLE  # a symbol eligible for nothing
    codes[:, 4] = NOT_ELIGIBLE  # a strategy nobody is eligible for: left out
    codes[0, 4] = NOT_ELIGIBLE
    strengths = rng.uniform(0.0, 1.0, size=(6, 5))
    strengths[1, 0] = 0.123456789  # rounded to 4 decimals where read
    codes[1, 0] = 1
    return ShadowBlock(
        strategies, list("UVWXYZ"), ["a", "c", "a", "b", "a", "c"], rng.uniform(10, 20, 6), codes, strengths
    )


def test_block_when_read_then_it_is_the_per_symbol_mappings() -> None:
    block = _block()
    rows = list(block)
    assert len(rows) == len(block) == 6
    assert rows[0]["symbol"] == "U" and set(rows[0]["signals"]) == {"a", "c"}
    assert rows[2]["signals"] == {}
    assert rows[1]["signals"]["a"] == ["BUY", 0.1235]
    for row in rows:
        for action, strength in row["signals"].values():
            assert action in ("BUY", "SELL", "HOLD") and (strength == 0.0 if action == "HOLD" else 0 < strength < 1)
    assert block == rows and block[1:3] == rows[1:3]


def test_block_when_packed_then_the_same_bytes_as_its_mappings() -> None:
    block = _block()
    packed, from_rows = pack_shadow(block), pack_shadow(list(block))
    assert packed == from_rows
    assert packed["strategies"] == ["a", "c", "b", "d"]  # first appearance, never-eligible "e" left out


def test_block_when_shapes_disagree_then_refused() -> None:
    with pytest.raises(ValueError, match="shadow block"):
        ShadowBlock(["a"], ["X", "Y"], ["a", "a"], [1.0, 2.0], np.zeros((2, 2), dtype=np.int8), np.zeros((2, 2)))

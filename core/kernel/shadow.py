"""One iteration's shadow ledger as columns: what every registered strategy signals for every symbol.

The Strategy agent fills a :class:`ShadowBlock` from its cached per-symbol matrices (a column of each per symbol and
session) instead of building one mapping per symbol; the ledger's storage packs it without reading it back symbol by
symbol (:meth:`ShadowBlock.packed`). It still reads as the sequence of per-symbol mappings the ledger has always
been (``{"symbol", "selected", "close", "signals": {strategy: [action, strength]}}``, a strategy the symbol is not
eligible for absent, a strength rounded to 4 decimals and 0.0 on a HOLD), built on demand.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, overload

import numpy as np

NOT_ELIGIBLE = -128  # the code of a strategy the symbol is not eligible for (history or peers)
_ACTION = {1: "BUY", -1: "SELL", 0: "HOLD"}


class ShadowBlock(Sequence[Mapping[str, Any]]):
    """``symbols`` x ``strategies`` action codes (1, -1, 0 or :data:`NOT_ELIGIBLE`) and strengths (as computed: the
    rounding to 4 decimals happens when read), with each symbol's selected strategy and close."""

    __slots__ = ("strategies", "symbols", "selected", "closes", "codes", "strengths")

    def __init__(
        self,
        strategies: Sequence[str],
        symbols: Sequence[str],
        selected: Sequence[str],
        closes: Sequence[float],
        codes: np.ndarray,
        strengths: np.ndarray,
    ) -> None:
        shape = (len(symbols), len(strategies))
        if codes.shape != shape or strengths.shape != shape or len(selected) != shape[0] or len(closes) != shape[0]:
            raise ValueError(f"shadow block: codes {codes.shape}, strengths {strengths.shape}, expected {shape}")
        self.strategies = tuple(strategies)
        self.symbols = tuple(symbols)
        self.selected = tuple(selected)
        self.closes = tuple(float(c) for c in closes)
        self.codes = codes
        self.strengths = strengths

    def __len__(self) -> int:
        return len(self.symbols)

    @overload
    def __getitem__(self, i: int) -> Mapping[str, Any]: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[Mapping[str, Any]]: ...
    def __getitem__(self, i: int | slice) -> Mapping[str, Any] | Sequence[Mapping[str, Any]]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        codes, strengths = self.codes[i].tolist(), self.strengths[i].tolist()
        signals = {
            name: [_ACTION[code], round(strength, 4) if code else 0.0]
            for name, code, strength in zip(self.strategies, codes, strengths, strict=True)
            if code != NOT_ELIGIBLE
        }
        return {"symbol": self.symbols[i], "selected": self.selected[i], "close": self.closes[i], "signals": signals}

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ShadowBlock({len(self.symbols)} symbols x {len(self.strategies)} strategies)"

    def packed(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """``(strategies, codes, strengths)`` as the ledger's storage lays them out from the per-symbol mappings:
        the strategies in order of first appearance (symbol by symbol, each symbol's in registry order), never
        eligible ones left out; codes :data:`NOT_ELIGIBLE` where a symbol is not eligible, strengths rounded to 4
        decimals (Python's ``round``, as the mappings), 0.0 on a HOLD or where not eligible."""
        eligible = self.codes != NOT_ELIGIBLE
        ever = np.flatnonzero(eligible.any(axis=0))
        first = eligible[:, ever].argmax(axis=0)
        order = ever[np.lexsort((ever, first))]
        codes = self.codes[:, order]
        strengths = np.zeros(codes.shape, dtype=np.float64)
        for i, k in zip(*np.nonzero((codes != 0) & (codes != NOT_ELIGIBLE)), strict=True):
            strengths[i, k] = round(float(self.strengths[i, order[k]]), 4)
        return [self.strategies[k] for k in order.tolist()], np.ascontiguousarray(codes), strengths

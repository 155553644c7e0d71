"""The shadow ledger's storage: one row per iteration holding every symbol's signals from every strategy as packed
matrices (``shadow_matrices``), instead of a row per symbol with a JSON document (``shadow_signals``, still read for
the runs recorded before).

The Strategy agent hands each iteration's ledger as one mapping per symbol, ``{"symbol", "selected", "close",
"signals": {strategy: [action, strength]}}`` (a strategy the symbol is not eligible for is absent);
:func:`pack_shadow` turns an iteration's mappings into a row's columns and :func:`unpack_shadow` gives them back
exactly (the same strategies, actions, strengths and closes, float for float).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np

from core.kernel.shadow import NOT_ELIGIBLE, ShadowBlock
from core.persistence.models import ShadowMatrixRow, ShadowSignalRow

_CODE = {"BUY": 1, "SELL": -1, "HOLD": 0}
_ACTION = {1: "BUY", -1: "SELL", 0: "HOLD"}
_FLOAT = np.dtype("<f8")


class ShadowEntry(NamedTuple):
    """One symbol's shadow signals in one iteration (what a ``shadow_signals`` row held)."""

    run_id: str
    iteration_id: str
    as_of: datetime
    symbol: str
    selected: str
    close: float
    signals: dict[str, list[Any]]


def pack_shadow(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``shadow_matrices`` columns (without ids and time) of one iteration's ledger ``rows``."""
    if isinstance(rows, ShadowBlock):  # the Strategy agent's columns: the same bytes, without a mapping per symbol
        return _pack_block(rows)
    strategies: dict[str, int] = {}
    for row in rows:
        for name in row["signals"]:
            if name not in strategies:
                strategies[name] = len(strategies)
    width = len(strategies)
    # the two matrices row by row as flat lists, made arrays once (assigning numpy elements one by one costs more)
    codes = [NOT_ELIGIBLE] * (len(rows) * width)
    strengths = [0.0] * (len(rows) * width)
    base = 0
    for row in rows:
        for name, (action, strength) in row["signals"].items():
            k = base + strategies[name]
            codes[k] = _CODE[action]
            strengths[k] = strength
        base += width
    return {
        "strategies": list(strategies),
        "symbols": [str(row["symbol"]) for row in rows],
        "selected": [str(row["selected"]) for row in rows],
        "closes": np.asarray([float(row["close"]) for row in rows], dtype=_FLOAT).tobytes(),
        "codes": np.array(codes, dtype=np.int8).tobytes(),
        "strengths": np.array(strengths, dtype=_FLOAT).tobytes(),
    }


def _pack_block(block: ShadowBlock) -> dict[str, Any]:
    names, codes, strengths = block.packed()
    return {
        "strategies": names,
        "symbols": list(block.symbols),
        "selected": list(block.selected),
        "closes": np.asarray(block.closes, dtype=_FLOAT).tobytes(),
        "codes": codes.tobytes(),
        "strengths": strengths.astype(_FLOAT, copy=False).tobytes(),
    }


def unpack_shadow(row: ShadowMatrixRow, symbol: str | None = None) -> list[ShadowEntry]:
    """The per-symbol entries of a packed row (only ``symbol``'s when given), in the recorded order."""
    names, symbols = list(row.strategies), list(row.symbols)
    shape = (len(symbols), len(names))
    codes = np.frombuffer(row.codes, dtype=np.int8).reshape(shape)
    strengths = np.frombuffer(row.strengths, dtype=_FLOAT).reshape(shape)
    closes = np.frombuffer(row.closes, dtype=_FLOAT)
    out: list[ShadowEntry] = []
    for i, sym in enumerate(symbols):
        if symbol is not None and sym != symbol:
            continue
        signals = {
            name: [_ACTION[code], strength]
            for name, code, strength in zip(names, codes[i].tolist(), strengths[i].tolist(), strict=True)
            if code != NOT_ELIGIBLE
        }
        out.append(
            ShadowEntry(row.run_id, row.iteration_id, row.as_of, sym, row.selected[i], float(closes[i]), signals)
        )
    return out


def legacy_entry(row: ShadowSignalRow) -> ShadowEntry:
    """A ``shadow_signals`` row (runs recorded before the packed table) as an entry."""
    return ShadowEntry(
        row.run_id, row.iteration_id, row.as_of, row.symbol, row.selected, float(row.close), dict(row.signals)
    )


def entries(
    packed: Iterable[ShadowMatrixRow], legacy: Iterable[ShadowSignalRow] = (), symbol: str | None = None
) -> list[ShadowEntry]:
    """Every entry of ``packed`` and ``legacy`` rows (``symbol``'s only when given), ordered by run, symbol and
    time (the order the readers of the per-symbol rows asked the database for)."""
    found = [legacy_entry(r) for r in legacy if symbol is None or r.symbol == symbol]
    for row in packed:
        found.extend(unpack_shadow(row, symbol))
    found.sort(key=lambda e: (e.run_id, e.symbol, e.as_of))
    return found

"""Per-symbol memo of values computed over a bars frame, invalidated when the frame object changes.

Providers hand out the same immutable frame object until they have new bars, so a vectorised computation over a
symbol's whole history runs once and is then read at the decision index (see strategies/base.py on causality).
"""

from __future__ import annotations

from typing import Any, TypeVar
from collections.abc import Callable, Hashable

import pandas as pd

T = TypeVar("T")


class FrameCache:
    def __init__(self) -> None:
        self._store: dict[tuple[str, Hashable], tuple[pd.DataFrame, Any]] = {}

    def get(self, symbol: str, key: Hashable, frame: pd.DataFrame, compute: Callable[[], T]) -> T:
        slot = (symbol, key)
        hit = self._store.get(slot)
        if hit is not None and hit[0] is frame:
            return hit[1]
        value = compute()
        self._store[slot] = (frame, value)
        return value

    def peek(self, symbol: str, key: Hashable, frame: pd.DataFrame) -> Any | None:
        """The value cached for ``frame``, or None (nothing is computed or stored)."""
        hit = self._store.get((symbol, key))
        return hit[1] if hit is not None and hit[0] is frame else None

    def put(self, symbol: str, key: Hashable, frame: pd.DataFrame, value: Any) -> None:
        """Store ``value`` as computed over ``frame`` (values computed for several symbols at once)."""
        self._store[(symbol, key)] = (frame, value)

    def discard(self, symbol: str, key: Hashable) -> None:
        self._store.pop((symbol, key), None)

    def clear(self) -> None:
        self._store.clear()

"""Plain JSON values from the project's objects: the one converter for the ledger's JSON columns and the backtest's
result and report files.

Two uses need two answers for two kinds of value, chosen by the caller:

- ``decimals="text"`` (the ledger's default) keeps a ``Decimal`` exact as its plain digits (``"1.2500"``);
  ``decimals="float"`` (a backtest result, read by people and plotting code) makes it a float.
- ``infinities="null"`` (the default) stores an infinite float as ``null`` like NaN; ``infinities="text"`` keeps its
  sign as ``"inf"``/``"-inf"`` (a profit factor without losing trades is infinite, not unknown).

Everything else is the same for both: NaN becomes ``None``; dates, times and timestamps ISO 8601 text; enums their
value; numpy scalars and arrays Python numbers and lists; mappings dicts with text keys; tuples, lists and sets
lists; paths and any other object their ``str``.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from pathlib import PurePath
from typing import Any, Literal
from collections.abc import Mapping

__all__ = ["jsonable"]


def jsonable(
    value: Any, *, decimals: Literal["text", "float"] = "text", infinities: Literal["null", "text"] = "null"
) -> Any:
    """``value`` as plain JSON types (``json.dumps(..., allow_nan=False)`` accepts the result); see the module doc."""
    if decimals == "text" and infinities == "null":
        return _ledger(value)
    return _convert(value, decimals, infinities)


def _ledger(value: Any) -> Any:
    """:func:`jsonable` with the ledger's defaults. The plain types (exactly ``str``, ``int``, ``bool``, ``None``,
    ``float``, ``dict``, ``list``, ``tuple``: most of what the ledger stores) are told by their type alone and converted
    here with the same answer; anything else goes through :func:`_convert`."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return value if value - value == 0.0 else None  # NaN and the infinities: None
    if kind is dict:
        return {(k if type(k) is str else str(k)): (v if type(v) is str else _ledger(v)) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_ledger(v) for v in value]
    return _convert(value, "text", "null")


def _convert(value: Any, decimals: Literal["text", "float"], infinities: Literal["null", "text"]) -> Any:
    if isinstance(value, Enum):
        return jsonable(value.value, decimals=decimals, infinities=infinities)
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, Decimal):
        if decimals == "text" and value.is_finite():
            return format(value, "f")
        value = float(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return ("inf" if value > 0 else "-inf") if infinities == "text" else None
        return float(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, decimals=decimals, infinities=infinities) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v, decimals=decimals, infinities=infinities) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    if callable(getattr(value, "tolist", None)):  # numpy scalars and arrays, pandas series: Python values
        return jsonable(value.tolist(), decimals=decimals, infinities=infinities)
    return str(value)

"""The one JSON converter (utils/jsonable.py): the ledger's default and the backtest result's profile."""

from __future__ import annotations

import enum
import json
import math
from datetime import UTC, date, time
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd

from utils.jsonable import jsonable


class _Colour(enum.Enum):
    RED = "red"


def test_jsonable_when_storing_in_the_ledger_then_decimals_stay_exact_text_and_infinities_become_null() -> None:
    value = {"qty": Decimal("1.2500"), "pf": math.inf, "nan": float("nan"), "side": _Colour.RED, "tags": frozenset({"a"}),
             "at": pd.Timestamp("2020-01-02 21:00", tz=UTC), "open": time(9, 30), 3: np.int64(4), "path": Path("/x/y"),
             "arr": np.array([1.5, 2.5]), "other": object}  # fmt: skip

    out = jsonable(value)

    assert out == {"qty": "1.2500", "pf": None, "nan": None, "side": "red", "tags": ["a"], "at": "2020-01-02T21:00:00+00:00",
                   "open": "09:30:00", "3": 4, "path": "/x/y", "arr": [1.5, 2.5], "other": str(object)}  # fmt: skip
    json.dumps(out, allow_nan=False)


def test_jsonable_when_writing_a_backtest_result_then_decimals_are_floats_and_infinities_keep_their_sign() -> None:
    out = jsonable({"cash": Decimal("1.25"), "pf": math.inf, "loss": -math.inf, "day": date(2020, 1, 2), "ok": np.bool_(True)},
                   decimals="float", infinities="text")  # fmt: skip

    assert out == {"cash": 1.25, "pf": "inf", "loss": "-inf", "day": "2020-01-02", "ok": True}
    assert json.loads(json.dumps(out, allow_nan=False)) == out


class _Side(enum.StrEnum):
    BUY = "buy"


class _Size(enum.IntEnum):
    ONE = 1


def test_jsonable_when_values_are_plain_types_then_the_fast_path_gives_the_general_answer() -> None:
    """The ledger's default path tells the plain types by their exact type: every value, nested or not, converts (and
    serialises) exactly as the general conversion does it."""
    from utils.jsonable import _convert

    values = [
        {"a": 1, "b": 2.5, "c": None, "d": True, "e": "x", "f": [1, (2, 3)], "g": {"h": math.nan, "i": -math.inf}},
        {2: "int key", True: "bool key", None: "none key", 2.5: "float key", _Side.BUY: "enum key"},
        [math.inf, -0.0, 1e308, 10**30, False, "", {}, [], ()],
        {"nested": [{"deep": [Decimal("1.50"), np.float64(math.nan), np.int64(3), _Colour.RED, _Size.ONE]}]},
        {"proxy": __import__("types").MappingProxyType({"k": 1.0}), "set": {3}, "day": date(2020, 1, 2)},
        _Side.BUY,
        np.float64(2.5),
        float("nan"),
        "plain",
        7,
        None,
    ]
    for value in values:
        fast, general = jsonable(value), _convert(value, "text", "null")
        assert json.dumps(fast) == json.dumps(general)
        assert type(fast) is type(general)

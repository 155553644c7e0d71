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

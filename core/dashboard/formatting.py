"""How the dashboard writes numbers and times (no Streamlit: the browser test formats its expectations the same way).

Money: thousands separators and two decimals, ``1,234,567.89`` (``Decimal`` rounded half-even, never through a
float). Fractions as percentages with two decimals, ``-1.58%``. Times in UTC, ``2018-06-29 20:00 UTC``. ``None``
and NaN as an en dash.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Iterable

import pandas as pd

DASH = "–"
_CENT = Decimal("0.01")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT


def money(value: Decimal | float | int | None) -> str:
    if _missing(value):
        return DASH
    amount = value if isinstance(value, Decimal) else Decimal(repr(float(value)))
    return f"{amount.quantize(_CENT, rounding=ROUND_HALF_EVEN):,.2f}"


def price(value: Decimal | float | None) -> str:
    """Prices keep up to four decimals (the precision orders are priced at)."""
    if _missing(value):
        return DASH
    amount = value if isinstance(value, Decimal) else Decimal(repr(float(value)))
    return f"{amount.quantize(Decimal('0.0001'), rounding=ROUND_HALF_EVEN):,.4f}"


def quantity(value: Decimal | float | int | None) -> str:
    if _missing(value):
        return DASH
    amount = value if isinstance(value, Decimal) else Decimal(repr(float(value)))
    return f"{amount.normalize():,f}" if amount != amount.to_integral() else f"{int(amount):,}"


def pct(value: float | None, signed: bool = False) -> str:
    if _missing(value):
        return DASH
    return f"{value * 100:+.2f}%" if signed else f"{value * 100:.2f}%"


def number(value: float | int | None, decimals: int = 2) -> str:
    if _missing(value):
        return DASH
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:,.{decimals}f}"


def when(value: datetime | date | str | None) -> str:
    if _missing(value):
        return DASH
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        stamp = pd.Timestamp(value)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        return stamp.strftime("%Y-%m-%d %H:%M UTC")
    return value.isoformat()


def table(
    frame: pd.DataFrame,
    *,
    money_cols: Iterable[str] = (),
    price_cols: Iterable[str] = (),
    qty_cols: Iterable[str] = (),
    pct_cols: Iterable[str] = (),
    time_cols: Iterable[str] = (),
    number_cols: Iterable[str] = (),
) -> pd.DataFrame:
    """A copy of ``frame`` with the named columns written as text, for display."""
    out = frame.copy()
    for cols, fmt in (
        (money_cols, money), (price_cols, price), (qty_cols, quantity), (pct_cols, pct), (time_cols, when),
        (number_cols, number),
    ):  # fmt: skip
        for col in cols:
            if col in out.columns:
                out[col] = [fmt(v) for v in out[col]]
    return out

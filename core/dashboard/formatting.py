"""How the dashboard writes numbers and times (no Streamlit: the browser test formats its expectations the same way).

Money: thousands separators and two decimals, ``1,234,567.89`` (``Decimal`` rounded half-even, never through a
float). Fractions as percentages with two decimals, ``-1.58%``. ``None`` and NaN as an en dash.

Times: in New York time with the zone, ``2021-03-31 16:00 EDT`` (:func:`when`); the UTC instant is available as
``2021-03-31 20:00 UTC`` (:func:`when_utc`, the tables' ``UTC`` columns and the charts' tooltips). Naive datetimes
(SQLite returns them) are UTC. A timestamp at exactly midnight UTC is the date label of a daily bar (the bundled
and cached daily bars are stamped so, and so are the simulated broker's fills and positions on them): it is shown
as that date, ``2018-02-06``, since converting it would put it on the previous New York evening.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from collections.abc import Callable, Iterable

import pandas as pd

from core.kernel.calendar import EASTERN

DASH = "–"
_CENT = Decimal("0.01")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT


def money(value: Decimal | float | int | None) -> str:
    if value is None or _missing(value):
        return DASH
    amount = value if isinstance(value, Decimal) else Decimal(repr(float(value)))
    return f"{amount.quantize(_CENT, rounding=ROUND_HALF_EVEN):,.2f}"


def price(value: Decimal | float | None) -> str:
    """Prices keep up to four decimals (the precision orders are priced at)."""
    if value is None or _missing(value):
        return DASH
    amount = value if isinstance(value, Decimal) else Decimal(repr(float(value)))
    return f"{amount.quantize(Decimal('0.0001'), rounding=ROUND_HALF_EVEN):,.4f}"


def quantity(value: Decimal | float | int | None) -> str:
    if value is None or _missing(value):
        return DASH
    amount = value if isinstance(value, Decimal) else Decimal(repr(float(value)))
    return f"{amount.normalize():,f}" if amount != amount.to_integral() else f"{int(amount):,}"


def pct(value: float | None, signed: bool = False) -> str:
    if value is None or _missing(value):
        return DASH
    return f"{value * 100:+.2f}%" if signed else f"{value * 100:.2f}%"


def number(value: float | int | None, decimals: int = 2) -> str:
    if _missing(value):
        return DASH
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:,.{decimals}f}"


def _utc_stamp(value: datetime | date | str | None) -> pd.Timestamp | date | str | None:
    """``value`` as a UTC timestamp (a ``date`` stays a date; an unparseable string is returned as is)."""
    if _missing(value):
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        stamp = pd.Timestamp(value)
        return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return value


def is_bar_date(stamp: pd.Timestamp) -> bool:
    """A UTC timestamp at exactly midnight: a daily bar's date label rather than a time of day."""
    return (stamp.hour, stamp.minute, stamp.second, stamp.microsecond, stamp.nanosecond) == (0, 0, 0, 0, 0)


def session_date(value: datetime) -> date:
    """The New York date of an instant (a daily bar's own date for a midnight-UTC bar stamp)."""
    stamp = _utc_stamp(value)
    assert isinstance(stamp, pd.Timestamp), f"not a timestamp: {value!r}"
    return stamp.date() if is_bar_date(stamp) else stamp.tz_convert(EASTERN).date()


def _time_text(value: datetime | date | str | None, instant: Callable[[pd.Timestamp], str]) -> str:
    """``value`` as text: a datetime (or an ISO string of one) through ``instant`` with its UTC timestamp, a date in
    ISO form, a missing value as the dash and an unparseable string as is."""
    stamp = _utc_stamp(value)
    if stamp is None:
        return DASH
    if isinstance(stamp, str):
        return stamp
    if isinstance(stamp, pd.Timestamp):
        return instant(stamp)
    return stamp.isoformat()


def _new_york_text(stamp: pd.Timestamp) -> str:
    if is_bar_date(stamp):
        return stamp.strftime("%Y-%m-%d")
    local = stamp.tz_convert(EASTERN)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def when(value: datetime | date | str | None) -> str:
    """New York time with its zone, ``2021-03-31 16:00 EDT`` (a midnight-UTC bar stamp: its date)."""
    return _time_text(value, _new_york_text)


def when_utc(value: datetime | date | str | None) -> str:
    """The same instant in UTC, ``2021-03-31 20:00 UTC``."""
    return _time_text(value, lambda stamp: stamp.strftime("%Y-%m-%d %H:%M UTC"))


def table(
    frame: pd.DataFrame,
    *,
    money_cols: Iterable[str] = (),
    price_cols: Iterable[str] = (),
    qty_cols: Iterable[str] = (),
    pct_cols: Iterable[str] = (),
    time_cols: Iterable[str] = (),
    number_cols: Iterable[str] = (),
    utc_cols: Iterable[str] = (),
    columns: Iterable[str] | None = None,
) -> pd.DataFrame:
    """A copy of ``frame`` with the named columns written as text, for display: times in New York time, and for each
    of ``utc_cols`` (time columns) an extra ``<col>_utc`` column, last, with the UTC time. ``columns``: keep only
    these (in this order; the ``_utc`` columns follow)."""
    out = frame.copy()
    utc = [c for c in utc_cols if c in out.columns]
    for col in utc:
        out[f"{col}_utc"] = [when_utc(v) for v in out[col]]
    for cols, fmt in (
        (money_cols, money), (price_cols, price), (qty_cols, quantity), (pct_cols, pct), (time_cols, when),
        (number_cols, number),
    ):  # fmt: skip
        for col in cols:
            if col in out.columns:
                out[col] = [fmt(v) for v in out[col]]
    if columns is not None:
        out = out[[c for c in columns if c in out.columns] + [f"{c}_utc" for c in utc]]
    return out

"""The memoised timestamp helpers the hot path uses give exactly what pandas gives."""

from __future__ import annotations

import zoneinfo

import pandas as pd
import pytest

from core.kernel.domain import session_timestamp, timestamp_at, utc_from_int


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("tz", ["UTC", "America/New_York"])
def test_timestamp_at_equals_index_lookup(unit: str, tz: str) -> None:
    index = pd.DatetimeIndex(["1969-12-31 23:00", "2019-01-02", "2019-07-02 13:00:00.123456"], tz="UTC")
    index = index.tz_convert(zoneinfo.ZoneInfo(tz) if tz != "UTC" else "UTC").as_unit(unit)
    for i in range(len(index)):
        got, expected = timestamp_at(index, i), index[i]
        assert got == expected and got.isoformat() == expected.isoformat() and str(got.tz) == str(expected.tz)


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_utc_from_int_equals_session_timestamp(unit: str) -> None:
    index = pd.DatetimeIndex(["1969-12-31 13:00:00.123456", "2019-01-02", "2040-02-29"], tz="UTC").as_unit(unit)
    for i in range(len(index)):
        assert utc_from_int(int(index.asi8[i]), index.unit) == session_timestamp(index[i])

"""The simulated broker's per-frame view (what sync reads of a bars frame): its lookups equal pandas' own."""

from __future__ import annotations

import pandas as pd
import pytest

from core.brokers.simulated.book import _FrameView


def _frame(index: pd.DatetimeIndex) -> pd.DataFrame:
    return pd.DataFrame({"close": range(len(index))}, index=index)


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_frame_view_when_looking_up_the_row_after_a_timestamp_then_it_equals_pandas_searchsorted(unit: str) -> None:
    days = pd.to_datetime(["2019-12-30", "2020-01-02", "2020-01-02", "2020-01-03", "2020-01-06"], utc=True)
    index = pd.DatetimeIndex(days).as_unit(unit)
    view = _FrameView(_frame(index))
    probes = [pd.Timestamp(t, tz="UTC") for t in ("2019-01-01", "2020-01-02", "2020-01-02 00:00:00.000000001",
                                                    "2020-01-04", "2021-01-01", "1960-05-05 12:00")]  # fmt: skip
    probes += [p.as_unit(u, round_ok=True) for p in probes for u in ("s", "ms", "us", "ns")]
    probes += list(index) + [pd.Timestamp("2020-01-02 05:00", tz="America/New_York")]
    for probe in probes:
        try:
            expected: int | type[Exception] = int(index.searchsorted(probe, side="right"))
        except ValueError as exc:  # a timestamp finer than the index's unit: pandas refuses to round it
            expected = type(exc)
        if isinstance(expected, int):
            assert view.after(probe) == expected, probe
        else:
            with pytest.raises(expected):
                view.after(probe)
    assert [view.stamp(i) for i in range(len(index))] == list(index)
    assert view.rows == len(index)


def test_frame_view_when_the_timestamp_is_naive_then_it_fails_as_pandas_does() -> None:
    view = _FrameView(_frame(pd.DatetimeIndex(pd.to_datetime(["2020-01-02"], utc=True))))
    with pytest.raises(TypeError):
        view.after(pd.Timestamp("2020-01-02"))

"""FileProvider: file-name matching, column spellings, adjusted closes, bad files, and the in-memory cache."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.data.base import BarProvider, DataError
from core.data.files import FileProvider

END = datetime(2021, 4, 1, tzinfo=UTC)
CSV_HEADER = "Date,Open,High,Low,Close,Volume\n"
ROWS = [
    ("2021-03-29", 121.65, 122.58, 120.73, 121.39, 80819203),
    ("2021-03-30", 120.11, 120.40, 118.86, 119.90, 85671919),
    ("2021-03-31", 121.65, 123.52, 121.15, 122.15, 118323826),
]


def expected_frame() -> pd.DataFrame:
    index = pd.DatetimeIndex([r[0] for r in ROWS], name="timestamp").tz_localize(UTC).as_unit("ns")
    data = np.array([r[1:] for r in ROWS], dtype=np.float64)
    return pd.DataFrame(data, index=index, columns=["open", "high", "low", "close", "volume"])


def write_csv(path: Path, header: str = CSV_HEADER, rows: list[tuple] = ROWS) -> Path:
    path.write_text(header + "".join(",".join(str(v) for v in row) + "\n" for row in rows))
    return path


def assert_layout(frame: pd.DataFrame) -> None:
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert str(frame.index.tz) == "UTC" and frame.index.name == "timestamp"
    assert (frame.index == frame.index.normalize()).all()
    assert frame.index.is_monotonic_increasing and frame.index.is_unique
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert (frame.dtypes == np.float64).all()


def test_file_provider_satisfies_the_bar_provider_protocol(tmp_path: Path) -> None:
    assert isinstance(FileProvider(tmp_path), BarProvider)


def test_history_on_real_bundled_bars_then_normalised_full_history(daily_dir: Path) -> None:
    result = FileProvider(daily_dir).history(["SPY", "IWM"], END)
    assert result.errors == {} and result.provider == "files"
    spy = result.frames["SPY"]
    assert_layout(spy)
    assert spy.index[0] == pd.Timestamp("1998-01-02", tz=UTC)
    assert spy.index[-1] == pd.Timestamp("2021-03-31", tz=UTC)
    assert result.frames["IWM"].index[0] == pd.Timestamp("2000-05-26", tz=UTC)


@pytest.mark.parametrize("file_name", ["aapl.CSV", "AAPL.csv", "Aapl.Csv"])
def test_history_when_file_name_case_differs_then_symbol_found(tmp_path: Path, file_name: str) -> None:
    write_csv(tmp_path / file_name)
    result = FileProvider(tmp_path).history(["AAPL", "aapl"], END)
    assert result.errors == {}
    pd.testing.assert_frame_equal(result.frames["AAPL"], expected_frame())
    pd.testing.assert_frame_equal(result.frames["aapl"], expected_frame())


@pytest.mark.parametrize(
    "header",
    [
        "date,open,high,low,close,volume\n",
        "timestamp,o,h,l,c,v\n",
        "Datetime,OPEN,High,LOW,Close,Vol\n",
        " Date , Open , High , Low , Close , Volume \n",
        ",Open,High,Low,Close,Volume\n",  # an unnamed index column, as DataFrame.to_csv() writes it
    ],
)
def test_history_when_columns_are_spelled_differently_then_same_frame(tmp_path: Path, header: str) -> None:
    write_csv(tmp_path / "X.csv", header=header)
    result = FileProvider(tmp_path).history(["X"], END)
    assert result.errors == {}
    pd.testing.assert_frame_equal(result.frames["X"], expected_frame())


def test_history_when_extra_columns_and_reordered_then_they_are_ignored(tmp_path: Path) -> None:
    rows = [(r[0], r[5], r[4], r[1], r[2], r[3], 0) for r in ROWS]
    write_csv(tmp_path / "X.csv", header="Date,Volume,Close,Open,High,Low,OpenInt\n", rows=rows)
    result = FileProvider(tmp_path).history(["X"], END)
    pd.testing.assert_frame_equal(result.frames["X"], expected_frame())


def test_history_from_parquet_with_a_date_index_then_same_frame(tmp_path: Path) -> None:
    raw = pd.DataFrame(
        [r[1:] for r in ROWS],
        columns=["Open", "High", "Low", "Close", "Volume"],
        index=pd.DatetimeIndex([r[0] for r in ROWS], name="Date"),
    )
    raw.to_parquet(tmp_path / "spy.parquet")
    result = FileProvider(tmp_path).history(["SPY"], END)
    assert result.errors == {}
    pd.testing.assert_frame_equal(result.frames["SPY"], expected_frame())


def test_history_when_timestamps_carry_mixed_new_york_offsets_then_session_dates(tmp_path: Path) -> None:
    rows = [
        ("2021-03-12T00:00:00-05:00", 1.0, 2.0, 0.5, 1.5, 10),
        ("2021-03-15T00:00:00-04:00", 1.0, 2.0, 0.5, 1.5, 10),  # after the DST change
    ]
    write_csv(tmp_path / "X.csv", rows=rows)
    frame = FileProvider(tmp_path).history(["X"], END).frames["X"]
    assert list(frame.index) == [pd.Timestamp("2021-03-12", tz=UTC), pd.Timestamp("2021-03-15", tz=UTC)]


def test_history_when_timestamps_are_utc_midnight_then_the_utc_date_is_kept(tmp_path: Path) -> None:
    # The normalised layout written back out with DataFrame.to_csv(): "2021-03-29 00:00:00+00:00".
    expected_frame().to_csv(tmp_path / "X.csv")
    pd.testing.assert_frame_equal(FileProvider(tmp_path).history(["X"], END).frames["X"], expected_frame())


def test_history_when_timestamps_are_close_times_in_utc_then_new_york_session_date(tmp_path: Path) -> None:
    rows = [("2021-03-12T21:00:00Z", 1.0, 2.0, 0.5, 1.5, 10), ("2021-03-15T20:00:00Z", 1.0, 2.0, 0.5, 1.5, 10)]
    write_csv(tmp_path / "X.csv", rows=rows)
    frame = FileProvider(tmp_path).history(["X"], END).frames["X"]
    assert list(frame.index) == [pd.Timestamp("2021-03-12", tz=UTC), pd.Timestamp("2021-03-15", tz=UTC)]


def test_history_when_rows_are_newest_first_then_sorted_ascending(tmp_path: Path) -> None:
    write_csv(tmp_path / "X.csv", rows=list(reversed(ROWS)))
    pd.testing.assert_frame_equal(FileProvider(tmp_path).history(["X"], END).frames["X"], expected_frame())


def test_history_when_adjusted_close_present_then_prices_scaled_by_its_factor(tmp_path: Path) -> None:
    rows = [(r[0], *r[1:5], r[4] * 0.5, r[5]) for r in ROWS]
    write_csv(tmp_path / "X.csv", header="Date,Open,High,Low,Close,Adj Close,Volume\n", rows=rows)
    frame = FileProvider(tmp_path).history(["X"], END).frames["X"]
    expected = expected_frame()
    for column in ("open", "high", "low", "close"):
        np.testing.assert_allclose(frame[column].to_numpy(), expected[column].to_numpy() * 0.5, rtol=1e-12)
    np.testing.assert_array_equal(frame["volume"].to_numpy(), expected["volume"].to_numpy())


def test_history_on_real_reference_file_with_adj_close_then_close_is_adjusted(tmp_path: Path) -> None:
    reference = Path(__file__).resolve().parents[3] / "shared" / "data" / "reference" / "orcl-1995-2014.txt"
    if not reference.is_file():
        pytest.skip(f"reference sample {reference} is not available")
    (tmp_path / "ORCL.csv").write_bytes(reference.read_bytes())
    raw = pd.read_csv(reference)
    frame = FileProvider(tmp_path).history(["ORCL"], END).frames["ORCL"]
    np.testing.assert_allclose(frame["close"].to_numpy(), raw["Adj Close"].to_numpy())
    factor = raw["Adj Close"] / raw["Close"]
    np.testing.assert_allclose(frame["high"].to_numpy(), (raw["High"] * factor).to_numpy())


@pytest.mark.parametrize(
    ("file_name", "content", "reason"),
    [
        ("BAD.csv", "", "empty file"),
        ("BAD.csv", CSV_HEADER, "no rows"),
        ("BAD.csv", "Date,Open,High,Low,Close\n2021-03-29,1,2,0.5,1.5\n", "missing required column(s) volume"),
        ("BAD.csv", CSV_HEADER + "yesterday,1,2,0.5,1.5,10\n", "unparseable date 'yesterday'"),
        (
            "BAD.csv",
            CSV_HEADER + "2021-03-29,1,2,abc,1.5,10\n",
            "non-numeric value 'abc' in column 'Low' on 2021-03-29",
        ),
        ("BAD.csv", CSV_HEADER + "2021-03-29,1,2,0.5,1.5,10\n2021-03-29,1,2,0.5,1.5,10\n", "repeated date"),
        ("BAD.parquet", "this is not parquet", "not a readable Parquet file"),
    ],
)
def test_history_when_one_file_is_bad_then_it_is_reported_by_name_and_others_load(
    tmp_path: Path, file_name: str, content: str, reason: str
) -> None:
    (tmp_path / file_name).write_text(content)
    write_csv(tmp_path / "GOOD.csv")
    result = FileProvider(tmp_path).history(["BAD", "GOOD"], END)
    pd.testing.assert_frame_equal(result.frames["GOOD"], expected_frame())
    assert "BAD" not in result.frames
    assert file_name in result.errors["BAD"]
    assert reason in result.errors["BAD"]


def test_history_when_symbol_has_no_file_then_error_names_directory(tmp_path: Path) -> None:
    result = FileProvider(tmp_path).history(["NOPE"], END)
    assert result.frames == {}
    assert "no file for NOPE" in result.errors["NOPE"] and str(tmp_path) in result.errors["NOPE"]


def test_history_when_csv_and_parquet_both_exist_then_ambiguity_reported(tmp_path: Path) -> None:
    write_csv(tmp_path / "X.csv")
    expected_frame().to_parquet(tmp_path / "x.parquet")
    error = FileProvider(tmp_path).history(["X"], END).errors["X"]
    assert "X.csv" in error and "x.parquet" in error


def test_history_when_directory_is_missing_then_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        FileProvider(tmp_path / "absent").history(["X"], END)


def test_history_with_start_then_frame_begins_at_start(tmp_path: Path) -> None:
    write_csv(tmp_path / "X.csv")
    provider = FileProvider(tmp_path)
    frame = provider.history(["X"], END, start=datetime(2021, 3, 30, 15, 0, tzinfo=UTC)).frames["X"]
    assert list(frame.index.date.astype(str)) == ["2021-03-30", "2021-03-31"]
    late = provider.history(["X"], END, start=datetime(2021, 4, 10, tzinfo=UTC))
    assert "no bars on or after 2021-04-10" in late.errors["X"]


def test_history_repeated_when_file_unchanged_then_served_from_memory(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "X.csv")
    provider = FileProvider(tmp_path)
    provider.history(["X"], END)
    stat = path.stat()
    # Same size and modification time but different bytes: only a re-read would notice.
    path.write_text(path.read_text().replace("121.65", "999.99"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    frame = provider.history(["X"], END).frames["X"]
    assert frame["open"].iloc[0] == 121.65


def test_history_when_file_modified_then_reloaded(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "X.csv")
    provider = FileProvider(tmp_path)
    provider.history(["X"], END)
    stat = path.stat()
    path.write_text(path.read_text().replace("121.65", "999.99"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert provider.history(["X"], END).frames["X"]["open"].iloc[0] == 999.99


def test_history_when_file_added_later_then_found(tmp_path: Path) -> None:
    provider = FileProvider(tmp_path)
    assert "Y" in provider.history(["Y"], END).errors
    write_csv(tmp_path / "Y.csv")
    # A directory's mtime may not tick within coarse filesystem resolution: force a visible change.
    stat = tmp_path.stat()
    os.utime(tmp_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert "Y" in provider.history(["Y"], END).frames


def test_history_when_caller_edits_returned_frame_then_cache_unaffected(tmp_path: Path) -> None:
    write_csv(tmp_path / "X.csv")
    provider = FileProvider(tmp_path)
    first = provider.history(["X"], END).frames["X"]
    first.iloc[0, 0] = -1.0
    assert provider.history(["X"], END).frames["X"].iloc[0, 0] == 121.65

"""The columnar cache of parsed bar files: a second read comes from the cache and gives the same frames; a changed
source file is parsed again; a broken cache entry is a miss; a backtest run twice over the same files gives the same
result with the cache warm."""

from __future__ import annotations

import asyncio
import os
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd

from config.settings import Settings
from core.backtest.runner import BacktestConfig, run_backtest
from core.data.cache import BarFileCache
from core.data.files import FileProvider, read_bars_file

FAR = datetime(2100, 1, 1, tzinfo=UTC)


def _copy(bundled: Path, target: Path, *names: str) -> Path:
    target.mkdir()
    for name in names:
        shutil.copy(bundled / name, target / name)
    return target


def test_second_provider_reads_the_cache_and_gets_identical_frames(tmp_path: Path, bundled_daily: Path) -> None:
    data = _copy(bundled_daily, tmp_path / "data", "AAPL.csv", "IBM.csv")
    cache = BarFileCache(tmp_path / "cache")
    first = FileProvider(data, cache=cache).history(["AAPL", "IBM"], end=FAR)
    entries = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(entries) == 2 and all(name.endswith(".arrow") for name in entries)

    # the cache is what the second process reads: the CSV files are unreadable as CSV now, same size and mtime
    for name in ("AAPL.csv", "IBM.csv"):
        path = data / name
        stat = path.stat()
        path.write_bytes(b"\0" * stat.st_size)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = FileProvider(data, cache=cache).history(["AAPL", "IBM"], end=FAR)
    assert second.errors == {}
    for symbol in ("AAPL", "IBM"):
        expected = read_bars_file(bundled_daily / f"{symbol}.csv")
        pd.testing.assert_frame_equal(first.frames[symbol], expected, check_exact=True)
        pd.testing.assert_frame_equal(second.frames[symbol], expected, check_exact=True)
        assert second.frames[symbol].columns.dtype == expected.columns.dtype
        assert second.frames[symbol].index.name == expected.index.name


def test_a_changed_source_file_invalidates_its_entry(tmp_path: Path, bundled_daily: Path) -> None:
    data = _copy(bundled_daily, tmp_path / "data", "IBM.csv")
    cache = BarFileCache(tmp_path / "cache")
    before = FileProvider(data, cache=cache).history(["IBM"], end=FAR).frames["IBM"]
    lines = (data / "IBM.csv").read_text().splitlines(keepends=True)
    (data / "IBM.csv").write_text("".join(lines[:-10]))  # ten bars fewer
    after = FileProvider(data, cache=cache).history(["IBM"], end=FAR).frames["IBM"]
    assert len(after) == len(before) - 10
    pd.testing.assert_frame_equal(after, before.iloc[:-10], check_exact=True, check_freq=False)
    # the entry was replaced, not added beside the stale one
    assert len(list((tmp_path / "cache").glob("*.arrow"))) == 1
    again = FileProvider(data, cache=cache).history(["IBM"], end=FAR).frames["IBM"]
    pd.testing.assert_frame_equal(again, after, check_exact=True)


def test_a_broken_cache_entry_is_a_miss(tmp_path: Path, bundled_daily: Path) -> None:
    data = _copy(bundled_daily, tmp_path / "data", "SPY.csv")
    cache = BarFileCache(tmp_path / "cache")
    FileProvider(data, cache=cache).history(["SPY"], end=FAR)
    cache.path_for(data / "SPY.csv").write_bytes(b"not arrow")
    frame = FileProvider(data, cache=cache).history(["SPY"], end=FAR).frames["SPY"]
    pd.testing.assert_frame_equal(frame, read_bars_file(bundled_daily / "SPY.csv"), check_exact=True)


def test_a_backtest_run_twice_gives_the_same_result_with_the_cache_warm(tmp_path: Path, bundled_daily: Path) -> None:
    data = _copy(bundled_daily, tmp_path / "data", "AAPL.csv", "BAC.csv", "SPY.csv")
    config = BacktestConfig(data_dir=data, start=date(2003, 1, 2), end=date(2004, 6, 30))
    results = []
    for run in ("cold", "warm"):
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            database_url=f"sqlite:///{tmp_path / run}.db",
            log_dir=tmp_path / "logs",
            bar_cache_dir=tmp_path / "bars",
        )
        results.append(asyncio.run(run_backtest(settings, config)))
        assert len(list((tmp_path / "bars" / "files").glob("*.arrow"))) == 3
    cold, warm = results
    assert warm.final_equity == cold.final_equity
    assert [t.as_dict() for t in warm.trades] == [t.as_dict() for t in cold.trades]
    pd.testing.assert_series_equal(warm.equity, cold.equity, check_exact=True)
    assert warm.exclusions_by_reason == cold.exclusions_by_reason

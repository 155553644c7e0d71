"""DiskBarCache (merge, last timestamp, atomic writes) and TTLCache (expiry by an injected clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from core.data import cache as cache_module
from core.data.cache import CacheError, DiskBarCache, TTLCache
from core.data.files import FileProvider


def bars(days: list[str], close: float) -> pd.DataFrame:
    index = pd.DatetimeIndex(days, name="timestamp").tz_localize(UTC)
    n = len(days)
    return pd.DataFrame(
        {
            "open": [close] * n,
            "high": [close + 1] * n,
            "low": [close - 1] * n,
            "close": [close] * n,
            "volume": [1e6] * n,
        },
        index=index,
    )


@pytest.fixture
def real_tail(real_frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return real_frames["SPY"].iloc[-30:]


def test_read_when_nothing_cached_then_none(tmp_path: Path) -> None:
    disk = DiskBarCache(tmp_path / "cache")
    assert disk.read("SPY") is None and disk.load("SPY") is None
    assert disk.last_timestamp("SPY") is None


def test_merge_into_empty_cache_then_round_trips_real_bars(tmp_path: Path, real_tail: pd.DataFrame) -> None:
    disk = DiskBarCache(tmp_path / "cache")
    disk.merge("spy", real_tail)
    stored = disk.read("SPY")
    assert stored is not None
    pd.testing.assert_frame_equal(stored, real_tail, check_index_type=False, check_freq=False)
    assert (tmp_path / "cache" / "SPY.parquet").is_file()
    assert disk.last_timestamp("SPY") == real_tail.index[-1]


def test_merge_overlapping_bars_then_union_sorted_and_newest_wins(tmp_path: Path) -> None:
    disk = DiskBarCache(tmp_path)
    disk.merge("X", bars(["2021-03-29", "2021-03-30", "2021-03-31"], close=10.0))
    merged = disk.merge("X", bars(["2021-04-01", "2021-03-31"], close=20.0))
    assert [str(d.date()) for d in merged.index] == ["2021-03-29", "2021-03-30", "2021-03-31", "2021-04-01"]
    assert merged["close"].tolist() == [10.0, 10.0, 20.0, 20.0]
    stored = disk.read("X")
    assert stored is not None and stored["close"].tolist() == [10.0, 10.0, 20.0, 20.0]
    assert disk.last_timestamp("X") == pd.Timestamp("2021-04-01", tz=UTC)


def test_merge_when_write_fails_then_previous_file_intact_and_no_temp_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = DiskBarCache(tmp_path)
    disk.merge("X", bars(["2021-03-29"], close=10.0))
    before = (tmp_path / "X.parquet").read_bytes()

    def failing_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(cache_module.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        disk.merge("X", bars(["2021-03-30"], close=11.0))
    assert (tmp_path / "X.parquet").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["X.parquet"]


def test_read_when_cache_file_corrupt_then_cache_error_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "X.parquet").write_text("garbage")
    with pytest.raises(CacheError, match=r"X\.parquet.*unreadable"):
        DiskBarCache(tmp_path).read("X")


def test_merge_when_bars_are_not_normalised_then_cache_error(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="UTC"):
        DiskBarCache(tmp_path).merge("X", bars(["2021-03-29"], close=1.0).tz_localize(None))


def test_path_for_rejects_symbols_that_escape_the_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a usable symbol"):
        DiskBarCache(tmp_path).path_for("../etc/passwd")


class FakeClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def advance(self, delta: timedelta) -> None:
        self.at += delta


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2025, 1, 2, 15, 0, tzinfo=UTC))


def test_ttl_cache_serves_until_ttl_then_expires(clock: FakeClock) -> None:
    cache: TTLCache[str, int] = TTLCache(timedelta(seconds=60), clock.now)
    cache.set("quote", 1)
    clock.advance(timedelta(seconds=59))
    assert cache.get("quote") == 1 and "quote" in cache and len(cache) == 1
    clock.advance(timedelta(seconds=1))
    assert cache.get("quote") is None and "quote" not in cache and len(cache) == 0


def test_ttl_cache_set_again_then_ttl_restarts(clock: FakeClock) -> None:
    cache: TTLCache[str, int] = TTLCache(timedelta(seconds=60), clock.now)
    cache.set("a", 1)
    clock.advance(timedelta(seconds=50))
    cache.set("a", 2)
    clock.advance(timedelta(seconds=50))
    assert cache.get("a") == 2


def test_ttl_cache_get_or_set_then_factory_called_only_when_expired(clock: FakeClock) -> None:
    cache: TTLCache[str, int] = TTLCache(timedelta(minutes=5), clock.now)
    calls: list[int] = []

    def factory() -> int:
        calls.append(1)
        return len(calls)

    assert cache.get_or_set("k", factory) == 1
    assert cache.get_or_set("k", factory) == 1
    clock.advance(timedelta(minutes=5))
    assert cache.get_or_set("k", factory) == 2
    assert len(calls) == 2


def test_ttl_cache_max_entries_then_oldest_evicted(clock: FakeClock) -> None:
    cache: TTLCache[str, int] = TTLCache(timedelta(hours=1), clock.now, max_entries=2)
    cache.set("a", 1)
    cache.set("b", 2)
    cache.set("c", 3)
    assert cache.get("a") is None and cache.get("b") == 2 and cache.get("c") == 3


def test_ttl_cache_when_clock_is_naive_then_value_error() -> None:
    cache: TTLCache[str, int] = TTLCache(timedelta(seconds=1), lambda: datetime(2025, 1, 2, 15, 0))
    with pytest.raises(ValueError, match="UTC"):
        cache.set("a", 1)


def test_ttl_cache_with_non_positive_ttl_then_value_error(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="ttl must be positive"):
        TTLCache(timedelta(0), clock.now)


def test_file_provider_reads_a_disk_cache_directory(tmp_path: Path, real_tail: pd.DataFrame) -> None:
    DiskBarCache(tmp_path).merge("SPY", real_tail)
    served = FileProvider(tmp_path).history(["spy"], datetime(2021, 4, 1, tzinfo=UTC))
    assert served.errors == {}
    pd.testing.assert_frame_equal(served.frames["spy"], real_tail, check_freq=False)

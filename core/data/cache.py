"""Caches for bars: a Parquet file per symbol on disk, and a small in-memory TTL cache with an injected clock.

``DiskBarCache`` lets a remote provider fetch only the bars it does not have yet: read :meth:`DiskBarCache.last_timestamp`,
fetch from there, then :meth:`DiskBarCache.merge` the new bars in. Writes are atomic (temporary file in the same
directory, then ``os.replace``), so a crash mid-write leaves the previous file intact, never a truncated one.

``BarFileCache`` keeps the normalised frame of each bar *file* (CSV or Parquet, as read by :mod:`core.data.files`) as
an Arrow IPC file, so that a repeated backtest over the same files reads columns instead of parsing text again. An
entry is keyed by the source file's resolved path and stamped with its modification time and size: a changed
source is parsed again and its entry replaced. A missing, stale or unreadable entry is a miss, never an error.

``TTLCache`` never reads the wall clock: it asks the ``now`` callable it was given (``clock.now`` in the daemon, a
fake in tests).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Hashable
from datetime import datetime, timedelta
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
import pyarrow
import pyarrow.feather

from core.data.base import DataError
from core.kernel.domain import BAR_COLUMNS, ensure_utc

_SYMBOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")
_COLUMNS = list(BAR_COLUMNS)


class CacheError(DataError):
    """A cache file exists but cannot be read, or bars cannot be cached; the message names the file and why."""


def _check_layout(symbol: str, frame: pd.DataFrame, what: str) -> None:
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None or str(index.tz) != "UTC":
        raise CacheError(f"{what} for {symbol}: index must be a tz-aware UTC DatetimeIndex, got {index.dtype}")
    missing = [c for c in _COLUMNS if c not in frame.columns]
    if missing:
        raise CacheError(f"{what} for {symbol}: missing column(s) {', '.join(missing)}")


class DiskBarCache:
    """One Parquet file per symbol (``<directory>/<SYMBOL>.parquet``) in the normalised bars layout."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path_for(self, symbol: str) -> Path:
        if not _SYMBOL.match(symbol) or ".." in symbol:
            raise ValueError(f"DiskBarCache: {symbol!r} is not a usable symbol for a file name")
        return self.directory / f"{symbol.upper()}.parquet"

    def load(self, symbol: str) -> pd.DataFrame | None:
        """The cached bars of ``symbol``, or ``None`` when nothing is cached for it yet.

        (``load`` is the name ``core.data.alpaca.BarCache`` expects; ``read`` is the same method.)
        """
        path = self.path_for(symbol)
        try:
            frame = pd.read_parquet(path)
        except FileNotFoundError:
            return None
        except (pyarrow.ArrowException, OSError) as exc:
            raise CacheError(f"cache file {path} for {symbol} is unreadable: {exc}") from exc
        _check_layout(symbol, frame, f"cache file {path}")
        frame.index.name = "timestamp"
        return frame[_COLUMNS].astype("float64")

    read = load

    def last_timestamp(self, symbol: str) -> pd.Timestamp | None:
        """The newest cached bar's timestamp (fetch only what comes after it), or ``None`` when nothing is cached."""
        frame = self.read(symbol)
        if frame is None or frame.empty:
            return None
        return frame.index[-1]

    def merge(self, symbol: str, frame: pd.DataFrame) -> pd.DataFrame:
        """Merge ``frame`` into the cached file and return the merged frame.

        Bars for a timestamp already cached replace the cached ones (the newer fetch wins, e.g. a corrected bar);
        the result is sorted and unique by timestamp and written atomically.
        """
        _check_layout(symbol, frame, "bars to cache")
        incoming = frame[_COLUMNS].astype("float64")
        incoming.index = pd.DatetimeIndex(incoming.index).as_unit("ns").rename("timestamp")
        cached = self.read(symbol)
        if cached is not None and not cached.empty:
            cached.index = pd.DatetimeIndex(cached.index).as_unit("ns")
            combined = pd.concat([cached, incoming])
        else:
            combined = incoming
        merged = combined[~combined.index.duplicated(keep="last")].sort_index(kind="stable")
        self._write_atomic(self.path_for(symbol), merged)
        return merged

    def symbols(self) -> list[str]:
        """Symbols with a cache file, upper-case, sorted."""
        if not self.directory.is_dir():
            return []
        return sorted(p.stem.upper() for p in self.directory.glob("*.parquet"))

    def _write_atomic(self, path: Path, frame: pd.DataFrame) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(dir=self.directory, prefix=f".{path.stem}.", suffix=".tmp")
        temporary = Path(name)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                frame.to_parquet(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise


class BarFileCache:
    """Normalised bar frames of source files, one Arrow IPC file each under ``directory`` (see the module docstring).

    The frame is stored as int64 nanoseconds since the epoch (``timestamp``) and float64 bar columns, and rebuilt on
    read exactly as :func:`core.data.files.normalise_bars` builds it (a UTC ``DatetimeIndex`` named ``timestamp``, the
    columns of :data:`core.kernel.domain.BAR_COLUMNS`): a cached frame equals a freshly parsed one.
    """

    VERSION = b"1"  # bump when the stored layout changes: older entries become misses

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path_for(self, source: Path) -> Path:
        key = hashlib.sha256(os.fsencode(Path(source).resolve())).hexdigest()[:24]
        return self.directory / f"{key}.arrow"

    @staticmethod
    def _stamp(source: Path, stat: os.stat_result) -> dict[bytes, bytes]:
        return {
            b"bars_cache_version": BarFileCache.VERSION,
            b"source": os.fsencode(Path(source).resolve()),
            b"mtime_ns": str(stat.st_mtime_ns).encode(),
            b"size": str(stat.st_size).encode(),
        }

    def read(self, source: Path, stat: os.stat_result) -> pd.DataFrame | None:
        """The cached frame of ``source`` as it was when ``stat`` was taken, or ``None`` (a miss)."""
        try:
            table = pyarrow.feather.read_table(self.path_for(source), memory_map=False)
        except (FileNotFoundError, pyarrow.ArrowException, OSError):
            return None
        metadata = table.schema.metadata or {}
        stamp = self._stamp(source, stat)
        if any(metadata.get(key) != value for key, value in stamp.items()):
            return None
        try:
            index = pd.DatetimeIndex(
                table.column("timestamp").to_numpy().view("datetime64[ns]"), name="timestamp"
            ).tz_localize("UTC")
            values = {name: table.column(name).to_numpy().astype(np.float64, copy=False) for name in _COLUMNS}
        except (KeyError, pyarrow.ArrowException, ValueError):
            return None
        return pd.DataFrame(values, index=index, columns=list(_COLUMNS))

    def write(self, source: Path, stat: os.stat_result, frame: pd.DataFrame) -> None:
        """Store ``frame`` (the normalised bars of ``source`` when ``stat`` was taken), atomically; a cache that cannot
        be written (read-only disk, full disk) is skipped silently: the run goes on with the parsed frame."""
        _check_layout(str(source), frame, "bars to cache")
        index = cast(pd.DatetimeIndex, frame.index)  # _check_layout: a UTC DatetimeIndex
        arrays = {"timestamp": pyarrow.array(index.as_unit("ns").asi8, type=pyarrow.int64())}
        arrays.update({name: pyarrow.array(frame[name].to_numpy(dtype=np.float64)) for name in _COLUMNS})
        table = pyarrow.table(arrays).replace_schema_metadata(self._stamp(source, stat))
        path = self.path_for(source)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            descriptor, name = tempfile.mkstemp(dir=self.directory, prefix=f".{path.stem}.", suffix=".tmp")
        except OSError:
            return
        temporary = Path(name)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                pyarrow.feather.write_feather(table, handle, compression="uncompressed")
            os.replace(temporary, path)
        except (OSError, pyarrow.ArrowException):
            temporary.unlink(missing_ok=True)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise


class TTLCache[K: Hashable, V]:
    """A mapping whose entries expire ``ttl`` after they were set, by the injected clock ``now``.

    An entry set at ``t`` is served while ``now() < t + ttl``. With ``max_entries`` the oldest entry is evicted when
    the cache is full. Expired entries are dropped when touched and when new entries are set (oldest first; a clock
    that steps backwards only delays that clean-up, ``get`` still refuses an expired entry).
    """

    def __init__(self, ttl: timedelta, now: Callable[[], datetime], max_entries: int | None = None) -> None:
        if ttl <= timedelta(0):
            raise ValueError(f"TTLCache: ttl must be positive, got {ttl}")
        if max_entries is not None and max_entries <= 0:
            raise ValueError(f"TTLCache: max_entries must be positive or None, got {max_entries}")
        self.ttl = ttl
        self._now = now
        self.max_entries = max_entries
        self._entries: OrderedDict[K, tuple[datetime, V]] = OrderedDict()

    def _time(self) -> datetime:
        return ensure_utc(self._now(), "TTLCache clock value")

    def set(self, key: K, value: V) -> None:
        now = self._time()
        self._prune(now)
        self._entries.pop(key, None)
        self._entries[key] = (now + self.ttl, value)
        if self.max_entries is not None:
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def get(self, key: K, default: V | None = None) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return default
        expires, value = entry
        if self._time() >= expires:
            del self._entries[key]
            return default
        return value

    def get_or_set(self, key: K, factory: Callable[[], V]) -> V:
        """The live value for ``key``, or ``factory()`` stored and returned when absent or expired."""
        entry = self._entries.get(key)
        if entry is not None and self._time() < entry[0]:
            return entry[1]
        value = factory()
        self.set(key, value)
        return value

    def pop(self, key: K) -> V | None:
        entry = self._entries.pop(key, None)
        return None if entry is None else entry[1]

    def clear(self) -> None:
        self._entries.clear()

    def __contains__(self, key: object) -> bool:
        entry = self._entries.get(cast(K, key))
        return entry is not None and self._time() < entry[0]

    def __len__(self) -> int:
        """Live entries only."""
        self._prune(self._time())
        return len(self._entries)

    def _prune(self, now: datetime) -> None:
        # Entries sit in the order they were set and share one ttl, so the expired ones are at the front.
        while self._entries:
            key, (expires, _) = next(iter(self._entries.items()))
            if now < expires:
                break
            del self._entries[key]

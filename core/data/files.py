"""Bars from a directory of per-symbol CSV or Parquet files (``AAPL.csv``, ``spy.PARQUET``...).

The replay and the backtester call :meth:`FileProvider.history` once per iteration, thousands of times, so each file
is parsed once and its normalised frame kept in memory, keyed by the file's path, modification time and size: a
repeated call costs one ``stat`` per symbol. A file that changes on disk is re-read on the next call.

:func:`normalise_bars` turns a raw OHLCV table with loosely spelled columns into the layout of
:class:`core.data.base.ProviderResult`; other providers may reuse it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow

from core.data.base import DataError, ProviderResult
from core.data.cache import BarFileCache
from core.kernel.domain import BAR_COLUMNS, ensure_utc

SUFFIXES = (".csv", ".parquet")
INDEX_NAME = "timestamp"
INDEX_UNIT = "ns"

# Accepted spellings, compared after lower-casing and turning spaces/dashes/dots into underscores; first match wins.
COLUMN_ALIASES: Mapping[str, tuple[str, ...]] = {
    "timestamp": ("date", "timestamp", "datetime", "time", "ts"),
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "adj_close": ("adj_close", "adjclose", "adjusted_close"),
    "volume": ("volume", "vol", "v"),
}
_EARLIEST = np.datetime64("1850-01-01", "D")
_LATEST = np.datetime64("2200-12-31", "D")
_REQUIRED = ("timestamp", "open", "high", "low", "close", "volume")


class BarFormatError(DataError):
    """A table of bars cannot be normalised; the message names the source and says why."""


def _canonical(name: object) -> str:
    return re.sub(r"[\s\-.]+", "_", str(name).strip().lower())


def _match_columns(columns: Sequence[object]) -> dict[str, object]:
    by_canonical: dict[str, object] = {}
    for column in columns:
        by_canonical.setdefault(_canonical(column), column)
    found: dict[str, object] = {}
    for field_name, aliases in COLUMN_ALIASES.items():
        for alias in aliases:
            if alias in by_canonical:
                found[field_name] = by_canonical[alias]
                break
    if "timestamp" not in found and columns:
        # Files written by ``DataFrame.to_csv()`` with an unnamed index: ",Open,High,..." -> "Unnamed: 0".
        first = columns[0]
        if str(first).strip() == "" or str(first).startswith("Unnamed: 0"):
            found["timestamp"] = first
    return found


def _parse_dates(values: pd.Series, fmt: str | None) -> pd.Series:
    try:
        return pd.to_datetime(values, errors="coerce", format=fmt)
    except ValueError:
        # Mixed UTC offsets (EST and EDT in one file): parse as instants instead.
        return pd.to_datetime(values, errors="coerce", format=fmt, utc=True)


def _session_dates(values: pd.Series, source: str, column: object) -> pd.DatetimeIndex:
    """Parse a date column into UTC-midnight session timestamps.

    Naive values are taken at face value (their calendar date is the session date). Timezone-aware values at UTC
    midnight are already in the normalised layout and keep their UTC date; any other instant is read as New York
    time, so ``2025-01-02T00:00Z``, ``2025-01-02T00:00-05:00`` (Alpaca's daily stamps) and ``2025-01-02T21:00Z``
    (a close time) are all the session 2025-01-02.
    """
    if pd.api.types.is_numeric_dtype(values.dtype):
        raise BarFormatError(f"{source}: date column {column!r} holds numbers, expected dates such as 2025-01-02")
    parsed = _parse_dates(values, fmt=None)
    bad = parsed.isna().to_numpy() & values.notna().to_numpy()
    if bad.any():
        # Fast path inferred one format from the first value; retry element by element for mixed spellings.
        parsed = _parse_dates(values, fmt="mixed")
        bad = parsed.isna().to_numpy() & values.notna().to_numpy()
    missing = values.isna().to_numpy()
    if bad.any() or missing.any():
        row = int(np.flatnonzero(bad | missing)[0])
        raise BarFormatError(
            f"{source}: unparseable date {values.iloc[row]!r} in column {column!r} at data row {row + 1}"
        )
    if parsed.dt.tz is not None:
        instants = parsed.dt.tz_convert("UTC")
        utc_dates = instants.dt.tz_localize(None).dt.normalize()
        new_york_dates = instants.dt.tz_convert("America/New_York").dt.tz_localize(None).dt.normalize()
        parsed = utc_dates.where(instants.dt.tz_localize(None) == utc_dates, new_york_dates)
    days = parsed.to_numpy().astype("datetime64[D]")
    outside = (days < _EARLIEST) | (days > _LATEST)
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        raise BarFormatError(
            f"{source}: date {values.iloc[row]!r} in column {column!r} at data row {row + 1} is outside "
            f"{_EARLIEST}..{_LATEST}"
        )
    days = days.astype(f"datetime64[{INDEX_UNIT}]")
    return pd.DatetimeIndex(days, name=INDEX_NAME).tz_localize(UTC)


def _numeric(values: pd.Series, source: str, column: object, dates: pd.DatetimeIndex) -> np.ndarray:
    """Float64 values; blank cells become NaN (left for validation), text that is not a number is an error."""
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    converted = pd.to_numeric(values, errors="coerce")
    bad = converted.isna().to_numpy() & values.notna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise BarFormatError(
            f"{source}: non-numeric value {values.iloc[row]!r} in column {column!r} on {dates[row].date()}"
        )
    return converted.to_numpy(dtype=np.float64, na_value=np.nan)


def normalise_bars(raw: pd.DataFrame, source: str) -> pd.DataFrame:
    """Normalise a raw OHLCV table into the provider layout (see :class:`core.data.base.ProviderResult`).

    Column names are matched case-insensitively against :data:`COLUMN_ALIASES`; extra columns are ignored. A
    date-like index (as Parquet files often store it) is used when no date column exists. When an adjusted close is
    present, open/high/low are scaled by ``adj_close / close`` and the adjusted close becomes ``close``; volume is
    left as reported. Rows are sorted by date. Raises :class:`BarFormatError` naming ``source`` and the reason when
    the table is empty, lacks a required column, has unparseable dates or non-numeric prices, or repeats a date.
    """
    if isinstance(raw.index, pd.DatetimeIndex) or _canonical(raw.index.name) in COLUMN_ALIASES["timestamp"]:
        raw = raw.reset_index()
    if raw.empty:
        raise BarFormatError(f"{source}: no rows (columns: {', '.join(map(str, raw.columns)) or 'none'})")
    columns = _match_columns(list(raw.columns))
    missing = [name for name in _REQUIRED if name not in columns]
    if missing:
        raise BarFormatError(
            f"{source}: missing required column(s) {', '.join(missing)}; found {', '.join(map(str, raw.columns))}"
        )
    dates = _session_dates(raw[columns["timestamp"]], source, columns["timestamp"])
    values = {name: _numeric(raw[columns[name]], source, columns[name], dates) for name in BAR_COLUMNS}
    if "adj_close" in columns:
        adjusted = _numeric(raw[columns["adj_close"]], source, columns["adj_close"], dates)
        close = values["close"]
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(close > 0, adjusted / close, np.nan)
        for name in ("open", "high", "low"):
            values[name] = values[name] * factor
        values["close"] = adjusted
    frame = pd.DataFrame(values, index=dates, columns=list(BAR_COLUMNS))
    if not frame.index.is_monotonic_increasing:
        frame = frame.sort_index(kind="stable")
    duplicated = frame.index.duplicated()
    if duplicated.any():
        first = frame.index[np.flatnonzero(duplicated)[0]]
        raise BarFormatError(
            f"{source}: {int(duplicated.sum())} repeated date(s), first {first.date()}; cannot tell which bar is right"
        )
    return frame


def read_bars_file(path: Path) -> pd.DataFrame:
    """Read and normalise one CSV or Parquet file; raises :class:`BarFormatError` naming the file and the reason."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            raw = pd.read_csv(path)
        elif suffix == ".parquet":
            raw = pd.read_parquet(path)
        else:
            raise BarFormatError(f"{path}: unsupported file type {path.suffix!r}; expected one of {SUFFIXES}")
    except pd.errors.EmptyDataError as exc:
        raise BarFormatError(f"{path}: empty file ({exc})") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise BarFormatError(f"{path}: not a readable CSV file ({exc})") from exc
    except pyarrow.ArrowException as exc:
        raise BarFormatError(f"{path}: not a readable Parquet file ({exc})") from exc
    except OSError as exc:
        raise BarFormatError(f"{path}: cannot read ({exc})") from exc
    return normalise_bars(raw, str(path))


@dataclass(frozen=True, slots=True)
class _Loaded:
    mtime_ns: int
    size: int
    frame: pd.DataFrame | None
    error: str | None


class FileProvider:
    """:class:`core.data.base.BarProvider` over a directory holding one ``SYMBOL.csv`` or ``SYMBOL.parquet`` per symbol.

        File names match symbols case-insensitively. Frames hold every bar in the file (they may extend beyond ``end``);
        with ``start`` they begin at ``start``'s date. With a :class:`core.data.cache.BarFileCache` the normalised
    frames are also kept on disk across processes (a repeated backtest reads them instead of parsing the files). A missing, empty or malformed file puts that symbol in ``errors``
        with the file name and the reason; only a missing directory raises :class:`DataError`.
    """

    def __init__(self, directory: Path, name: str = "files", cache: BarFileCache | None = None) -> None:
        self.directory = Path(directory)
        self.name = name
        self.cache = cache
        self._listing_mtime: int | None = None
        self._listing: dict[str, list[Path]] = {}
        self._loaded: dict[Path, _Loaded] = {}

    def history(self, symbols: Sequence[str], end: datetime, start: datetime | None = None) -> ProviderResult:
        ensure_utc(end, "end")
        start_ts = pd.Timestamp(ensure_utc(start, "start")).normalize() if start is not None else None
        listing = self._files_by_symbol()
        frames: dict[str, pd.DataFrame] = {}
        errors: dict[str, str] = {}
        unknown: set[str] = set()
        for symbol in dict.fromkeys(symbols):
            candidates = listing.get(symbol.casefold(), [])
            if not candidates:
                unknown.add(symbol)
                errors[symbol] = (
                    f"{self.name}: no file for {symbol} in {self.directory} (looked for {symbol}.csv or {symbol}.parquet, "
                    "any case)"
                )
                continue
            if len(candidates) > 1:
                names = ", ".join(sorted(p.name for p in candidates))
                errors[symbol] = f"{self.name}: several files for {symbol} in {self.directory}: {names}; keep one"
                continue
            loaded = self._load(candidates[0])
            if loaded.frame is None:
                errors[symbol] = f"{self.name}: {loaded.error}"
                continue
            frame = loaded.frame
            if start_ts is not None:
                frame = frame.iloc[frame.index.searchsorted(start_ts) :]
                if frame.empty:
                    errors[symbol] = f"{self.name}: {candidates[0]} has no bars on or after {start_ts.date()}"
                    continue
            # A shallow copy shares the data (copy-on-write) but keeps a caller's edits out of the cache.
            frames[symbol] = frame.copy(deep=False)
        return ProviderResult(frames=frames, errors=errors, provider=self.name, unknown=frozenset(unknown))

    def _files_by_symbol(self) -> dict[str, list[Path]]:
        try:
            mtime = os.stat(self.directory).st_mtime_ns
        except FileNotFoundError as exc:
            raise DataError(f"{self.name}: data directory {self.directory} does not exist") from exc
        if not self.directory.is_dir():
            raise DataError(f"{self.name}: {self.directory} is not a directory")
        if mtime != self._listing_mtime:
            listing: dict[str, list[Path]] = {}
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    path = Path(entry.path)
                    if path.suffix.lower() in SUFFIXES and entry.is_file():
                        listing.setdefault(path.stem.casefold(), []).append(path)
            self._listing, self._listing_mtime = listing, mtime
        return self._listing

    def _load(self, path: Path) -> _Loaded:
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            return _Loaded(-1, -1, None, f"{path} disappeared while reading")
        cached = self._loaded.get(path)
        if cached is not None and cached.mtime_ns == stat.st_mtime_ns and cached.size == stat.st_size:
            return cached
        try:
            frame = self.cache.read(path, stat) if self.cache is not None else None
            if frame is None:
                frame = read_bars_file(path)
                if self.cache is not None:
                    self.cache.write(path, stat, frame)
            loaded = _Loaded(stat.st_mtime_ns, stat.st_size, frame, None)
        except BarFormatError as exc:
            loaded = _Loaded(stat.st_mtime_ns, stat.st_size, None, str(exc))
        self._loaded[path] = loaded
        return loaded

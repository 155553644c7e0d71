"""Daily bars from Alpaca's market-data API through alpaca-py's ``StockHistoricalDataClient``.

One :meth:`AlpacaBarProvider.history` call makes at most one batched ``GET /v2/stocks/bars`` for all the symbols
that need data (alpaca-py follows ``next_page_token`` itself, so a large answer may take several pages). With a
cache, symbols whose cached bars already reach the last session on or before ``end`` are not requested at all, and
the others are requested from the earliest date any of them is missing; the answer is merged into the cache.

Failures are translated at this edge. HTTP 5xx/408 answers, timeouts and connection errors are retried
(``transient_retries`` times, with back-off) and 429s after the server's ``Retry-After``, all within the iteration
deadline (:mod:`utils.http`, :mod:`utils.deadline`). A failure of the whole request that outlives them (or a 4xx,
an empty or malformed body) puts every requested symbol in ``errors`` with the reason, so a fallback chain can take
over; it does not raise. A transient one (429, 5xx, 408, timeout, connection, deadline) is also noted as the
iteration's degraded reason. Unknown exceptions (programming errors, a failing cache)
propagate. Credentials never appear in reasons, logs or reprs.

Every HTTP request, retries included, first takes a slot from the account's shared rate limiter; a 429 pauses
every caller of that limiter for the server's ``Retry-After`` (see :mod:`utils.http`).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, time as dtime, timedelta
from typing import Any, NamedTuple, Protocol
from collections.abc import Callable, Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.enums import Adjustment, DataFeed
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.data.requests import StockBarsRequest, StockLatestQuoteRequest
from alpaca.data.timeframe import TimeFrame
from loguru import logger

from core.data.base import DataError, ProviderResult
from core.data.quotes import Quote, QuotesResult
from core.kernel.domain import BAR_COLUMNS, ensure_utc
from utils.deadline import note_degraded
from utils.http import (
    DeadlineExceeded,
    InvalidResponseBody,
    RequestLimiter,
    SessionOwner,
    TimeoutAdapter,
    configure_alpaca_client,
)

__all__ = ["AlpacaBarProvider", "BarCache", "is_weekday", "normalise_alpaca_bars"]

NEW_YORK = ZoneInfo("America/New_York")
INDEX_NAME = "timestamp"
INDEX_UNIT = "ns"
_WIRE_FIELDS = {"t": "timestamp", "o": "open", "h": "high", "l": "low", "c": "close", "v": "volume"}
_MAX_REASON_DETAIL = 200


class BarCache(Protocol):
    """What the provider needs from a bar cache (``core.data.cache.DiskBarCache`` satisfies it)."""

    def load(self, symbol: str) -> pd.DataFrame | None: ...

    def merge(self, symbol: str, frame: pd.DataFrame) -> pd.DataFrame: ...

    def last_timestamp(self, symbol: str) -> pd.Timestamp | None: ...


def is_weekday(day: date) -> bool:
    """Default session test: Monday to Friday. Exchange holidays are not known here (pass a calendar's test);
    on a holiday the cost is one request that returns the last known bar again."""
    return day.weekday() < 5


def _ny_date(moment: datetime) -> date:
    """The New York calendar date of a UTC instant: the session a daily bar opening then belongs to."""
    return moment.astimezone(NEW_YORK).date()


def _ny_midnight(day: date) -> datetime:
    """Midnight America/New_York of ``day`` as a UTC datetime: the ``t`` Alpaca gives that day's daily bar."""
    return datetime.combine(day, dtime(0, 0), tzinfo=NEW_YORK).astimezone(UTC)


def normalise_alpaca_bars(raw_bars: Sequence[Mapping[str, object]], source: str) -> pd.DataFrame:
    """Turn Alpaca wire bars (``{"t", "o", "h", "l", "c", "v", ...}``) into the provider layout.

    ``t`` of a daily bar is midnight America/New_York of the session; it becomes midnight UTC of the same date.
    Rows are sorted; when a date repeats, the last row wins. Raises :class:`DataError` naming ``source`` when a
    bar is not an object, lacks a field, or holds a value that is not a timestamp / finite number.
    """
    if not raw_bars:
        raise DataError(f"{source}: no bars")
    count = len(raw_bars)
    try:
        stamps: list[Any] = [bar["t"] for bar in raw_bars]  # wire values: to_datetime checks them
        values = {
            name: np.fromiter((bar[key] for bar in raw_bars), dtype=np.float64, count=count)
            for key, name in _WIRE_FIELDS.items()
            if key != "t"
        }
        instants = pd.to_datetime(stamps, utc=True, format="ISO8601")
    except KeyError as exc:
        raise DataError(f"{source}: bars missing field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:  # a bar that is not an object, a null, text where a number belongs
        raise DataError(f"{source}: unparseable bar values ({type(exc).__name__})") from None
    local_days = instants.tz_convert(NEW_YORK).tz_localize(None).to_numpy().astype("datetime64[D]")
    index = pd.DatetimeIndex(local_days.astype(f"datetime64[{INDEX_UNIT}]"), name=INDEX_NAME).tz_localize(UTC)
    frame = pd.DataFrame(values, index=index, columns=list(BAR_COLUMNS))
    if not np.isfinite(frame.to_numpy()).all():
        raise DataError(f"{source}: non-finite price or volume")
    if not frame.index.is_monotonic_increasing:
        frame = frame.sort_index(kind="stable")
    if frame.index.has_duplicates:
        frame = frame[~frame.index.duplicated(keep="last")]
    return frame


class _Response(NamedTuple):
    """The outcome of one alpaca-py data request: the JSON body (``raw``, symbol -> bars or quote), or the reason it
    failed (``failure``) and whether it may succeed later (``transient``: 429, 5xx, 408, timeout, connection error or
    the iteration's deadline)."""

    raw: dict[str, Any] | None
    failure: str | None = None
    transient: bool = False


class AlpacaBarProvider(SessionOwner):
    """``BarProvider`` for Alpaca daily bars (see the module docstring).

    ``limiter`` is the account's shared rate limiter. ``cache`` is optional; without one every call requests
    ``start`` (or ``end - default_lookback``) to ``end``. ``is_session`` decides which dates are trading sessions
    (default: weekdays; pass an exchange calendar's test to avoid a request on holidays). ``retry_attempts`` is
    how often a 429 is retried after the first attempt, each retry waiting in the limiter for ``Retry-After``.
    ``history`` is synchronous (the ``BarProvider`` contract): from asyncio code run it with ``asyncio.to_thread``;
    the limiter is thread-safe and shared with the coroutines that use ``acquire_async``. The free plan cannot query
    the most recent 15 minutes of SIP data: with ``feed="sip"`` pass an ``end`` at least 15 minutes back.
    """

    def __init__(
        self,
        api_key: str,
        secret_key: str,
        *,
        feed: str = "iex",
        adjustment: str = "all",
        timeout_s: float = 10.0,
        url_override: str | None = None,
        limiter: RequestLimiter,
        cache: BarCache | None = None,
        name: str = "alpaca",
        default_lookback: timedelta = timedelta(days=550),
        is_session: Callable[[date], bool] = is_weekday,
        retry_attempts: int = 3,
        max_retry_after_s: float = 60.0,
        wall_clock: Callable[[], float] = time.time,
        transient_retries: int = 2,
    ) -> None:
        if not isinstance(api_key, str) or not api_key or not isinstance(secret_key, str) or not secret_key:
            raise ValueError("api_key and secret_key must be non-empty strings")
        try:
            self._feed = DataFeed(feed)
        except ValueError:
            raise ValueError(f"unknown Alpaca feed {feed!r}; expected one of {[f.value for f in DataFeed]}") from None
        try:
            self._adjustment = Adjustment(adjustment)
        except ValueError:
            raise ValueError(
                f"unknown Alpaca adjustment {adjustment!r}; expected one of {[a.value for a in Adjustment]}"
            ) from None
        if default_lookback <= timedelta(0):
            raise ValueError(f"default_lookback must be positive, got {default_lookback!r}")
        self.name = name
        self._secrets = (api_key, secret_key)
        self._timeout_s = float(timeout_s)
        self._url = url_override
        self._cache = cache
        self._default_lookback = default_lookback
        self._is_session = is_session
        # Earliest date each symbol has been requested from by this provider (with a cache): a symbol listed after
        # a backtest's start would otherwise look uncovered, and be requested again, on every call.
        self._requested_from: dict[str, date] = {}
        self._client = StockHistoricalDataClient(
            api_key=api_key, secret_key=secret_key, raw_data=True, url_override=url_override
        )
        self._adapter: TimeoutAdapter = configure_alpaca_client(
            self._client,
            timeout=self._timeout_s,
            limiter=limiter,
            retry_attempts=retry_attempts,
            retry_codes=(429,),
            require_json_object=True,
            max_retry_after_s=max_retry_after_s,
            wall_clock=wall_clock,
            transient_retries=transient_retries,
        )

    # ------------------------------------------------------------------ public

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, feed={self._feed.value!r}, "
            f"adjustment={self._adjustment.value!r}, url={self._url or 'default'!r}, cached={self._cache is not None})"
        )

    def history(self, symbols: Sequence[str], end: datetime, start: datetime | None = None) -> ProviderResult:
        """Daily bars for ``symbols`` up to at least the last session on or before ``end`` (see the class doc).

        A daily bar is included when it opens (midnight New York) at or before ``end``. With a cache the frames
        are the whole cached history (they may start before ``start``); without one, what the request returned.
        """
        ensure_utc(end, "end")
        if start is not None:
            ensure_utc(start, "start")
            if start > end:
                raise ValueError(f"start {start.isoformat()} is after end {end.isoformat()}")
        wanted = _unique_symbols(symbols)
        frames: dict[str, pd.DataFrame] = {}
        errors: dict[str, str] = {}
        if not wanted:
            return ProviderResult(frames=frames, errors=errors, provider=self.name)

        first_wanted = _ny_date(start) if start is not None else _ny_date(end - self._default_lookback)
        last_session = self._last_session_on_or_before(_ny_date(end))
        fetch_from: dict[str, date] = {}
        for symbol in wanted:
            cached = self._cache.load(symbol) if self._cache is not None else None
            needed = self._needed_from(symbol, cached, start, first_wanted, last_session)
            if needed is None:
                frames[symbol] = cached  # type: ignore[assignment]  # current: _needed_from saw a non-empty frame
            else:
                fetch_from[symbol] = needed

        unknown: set[str] = set()
        if fetch_from:
            self._fetch_into(fetch_from, end, frames, errors, unknown)
        ordered = {symbol: frames[symbol] for symbol in wanted if symbol in frames}
        return ProviderResult(frames=ordered, errors=errors, provider=self.name, unknown=frozenset(unknown))

    def latest_quotes(self, symbols: Sequence[str]) -> QuotesResult:
        """The latest best bid and ask of ``symbols`` in one batched ``GET /v2/stocks/quotes/latest`` (alpaca-py's
        ``StockLatestQuoteRequest``, on this provider's feed). A symbol Alpaca has no quote for is absent from
        ``quotes``; a failed request (after the 429 retries) comes back as ``error`` with the reason, never raised."""
        wanted = _unique_symbols(symbols)
        if not wanted:
            return QuotesResult(source=self.name)
        request = StockLatestQuoteRequest(symbol_or_symbols=wanted, feed=self._feed)
        logger.debug("{}: requesting the latest quotes of {} symbol(s)", self.name, len(wanted))
        raw, failure, _transient = self._call(self._client.get_stock_latest_quote, request, "quotes")
        if failure is not None:
            logger.warning("{}: latest-quote request for {} symbol(s) failed: {}", self.name, len(wanted), failure)
            return QuotesResult(error=failure, source=self.name)
        assert raw is not None
        quotes: dict[str, Quote] = {}
        for symbol in wanted:
            item = raw.get(symbol)
            if item is None:
                continue
            try:
                at = pd.Timestamp(item["t"]).tz_convert(UTC).to_pydatetime()
                quotes[symbol] = Quote(symbol, float(item["bp"]), float(item["ap"]), at)
            except (KeyError, TypeError, ValueError) as exc:
                return QuotesResult(
                    error=f"{self.name}: unparseable quote of {symbol} ({type(exc).__name__}: {exc})"[
                        :_MAX_REASON_DETAIL
                    ],
                    source=self.name,
                )
        return QuotesResult(quotes=quotes, source=self.name)

    # ------------------------------------------------------------------ planning

    def _last_session_on_or_before(self, day: date) -> date:
        for _ in range(30):
            if self._is_session(day):
                return day
            day -= timedelta(days=1)
        raise ValueError(f"is_session reports no session in the 30 days up to {day.isoformat()}")

    def _first_session_on_or_after(self, day: date) -> date:
        for _ in range(30):
            if self._is_session(day):
                return day
            day += timedelta(days=1)
        raise ValueError(f"is_session reports no session in the 30 days from {day.isoformat()}")

    def _needed_from(
        self,
        symbol: str,
        cached: pd.DataFrame | None,
        start: datetime | None,
        first_wanted: date,
        last_session: date,
    ) -> date | None:
        """The date to request ``symbol`` from, or None when the cached frame already covers the call."""
        if cached is None or cached.empty:
            return first_wanted
        cached_first = cached.index[0].date()
        cached_last = cached.index[-1].date()
        if start is not None and cached_first > self._first_session_on_or_after(first_wanted):
            requested_from = self._requested_from.get(symbol)
            if requested_from is None or requested_from > first_wanted:
                return first_wanted
        if cached_last >= last_session:
            return None
        # Re-request the last cached session too: a bar cached while its session was still open gets its final
        # values, and the answer proves the symbol is still served.
        return cached_last

    # ------------------------------------------------------------------ fetching

    def _fetch_into(
        self,
        fetch_from: Mapping[str, date],
        end: datetime,
        frames: dict[str, pd.DataFrame],
        errors: dict[str, str],
        unknown: set[str] | None = None,
    ) -> None:
        """``unknown`` collects the symbols the feed answered for with no bar at all over the window."""
        symbols = list(fetch_from)
        first = min(fetch_from.values())
        request_start = _ny_midnight(first)
        window = f"{first.isoformat()}..{end.isoformat()}"
        logger.debug("{}: requesting daily bars for {} symbol(s) over {}", self.name, len(symbols), window)
        request = StockBarsRequest(
            symbol_or_symbols=symbols,
            timeframe=TimeFrame.Day,
            start=request_start,
            end=end,
            feed=self._feed,
            adjustment=self._adjustment,
        )
        raw, failure, transient = self._get_bars(request)
        if failure is not None:
            logger.warning("{}: bars request for {} symbol(s) failed: {}", self.name, len(symbols), failure)
            if transient:
                note_degraded(f"market data unavailable: {failure}")
            for symbol in symbols:
                errors[symbol] = failure
            return
        assert raw is not None
        for symbol in symbols:
            bars = raw.get(symbol)
            if not bars:
                errors[symbol] = f"{self.name}: no bars returned for {symbol} over {window}"
                if unknown is not None:
                    unknown.add(symbol)
                continue
            try:
                frame = normalise_alpaca_bars(bars, f"{self.name} {symbol}")
            except DataError as exc:
                errors[symbol] = str(exc)
                continue
            if self._cache is not None:
                frame = self._cache.merge(symbol, frame)
                previous = self._requested_from.get(symbol)
                self._requested_from[symbol] = first if previous is None else min(previous, first)
            frames[symbol] = frame

    def _get_bars(self, request: StockBarsRequest) -> _Response:
        """Run the request; return ``(raw_bars, None, False)`` or ``(None, reason, transient)`` for an HTTP-level
        failure (``transient``: 429, 5xx, 408, timeout, connection error or the deadline)."""
        return self._call(self._client.get_stock_bars, request, "bars")

    def _call[R](self, method: Callable[[R], object], request: R, what: str) -> _Response:
        """Run one alpaca-py data request: its body, or the reason of an HTTP-level failure."""
        try:
            raw = method(request)
        except DeadlineExceeded as exc:
            return _Response(None, f"{self.name}: {self._redact(str(exc))[:_MAX_REASON_DETAIL]}", True)
        except requests.Timeout:
            return _Response(None, f"{self.name}: request timed out (timeout {self._timeout_s:g}s)", True)
        except InvalidResponseBody as exc:
            return _Response(None, f"{self.name}: {self._redact(str(exc))}", False)
        except requests.ConnectionError as exc:
            return _Response(None, f"{self.name}: connection failed ({type(exc).__name__})", True)
        except requests.RequestException as exc:
            return _Response(None, f"{self.name}: HTTP transport error ({type(exc).__name__})", True)
        except APIError as exc:
            status = exc.status_code
            return _Response(
                None, self._describe_api_error(exc), status is None or status in (408, 429) or status >= 500
            )
        except ValueError as exc:
            # alpaca-py's own check of a 2xx body's shape ("does not match any known keys").
            return _Response(
                None,
                f"{self.name}: unexpected response shape ({self._redact(str(exc))[:_MAX_REASON_DETAIL]})",
                False,
            )
        if not isinstance(raw, dict):
            return _Response(None, f"{self.name}: unexpected response shape ({what} are {type(raw).__name__})", False)
        return _Response(raw)

    def _describe_api_error(self, exc: APIError) -> str:
        status = exc.status_code
        detail = _api_error_detail(str(exc))
        if status == 429:
            kind = "rate limited"
        elif status in (401, 403):
            kind = "authentication or permission refused"
        elif status is not None and status >= 500:
            kind = "server error"
        else:
            kind = "request refused"
        text = f"{self.name}: {kind} (HTTP {status})"
        if detail:
            text += f": {self._redact(detail)[:_MAX_REASON_DETAIL]}"
        return text

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def _api_error_detail(body: str) -> str:
    """The ``message`` of a JSON error body, else the body text itself (whitespace collapsed)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
        return parsed["message"]
    return " ".join(body.split())


def _unique_symbols(symbols: Iterable[str]) -> list[str]:
    if isinstance(symbols, str):
        raise TypeError("symbols must be a sequence of strings, not a single string")
    seen: dict[str, None] = {}
    for symbol in symbols:
        if not isinstance(symbol, str) or not symbol.strip():
            raise ValueError(f"invalid symbol {symbol!r}")
        seen.setdefault(symbol, None)
    return list(seen)

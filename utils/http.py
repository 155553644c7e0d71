"""``requests`` plumbing: a default timeout, a shared rate limiter and 429 ``Retry-After`` handling.

alpaca-py talks HTTP through one ``requests.Session`` per client (``RESTClient._session``) and sets **no
timeout**, so a hung connection blocks forever. :class:`TimeoutAdapter` is mounted on that session: every request
gets a default ``(connect, read)`` timeout, waits for a slot from the account's shared rate limiter before it is
sent, and an HTTP 429 pauses every caller of the limiter until the server's ``Retry-After`` has elapsed.

alpaca-py retries 429 (and 504) itself, three times with a fixed 3 s sleep. :func:`configure_alpaca_client` sets
that sleep to 0 so the pause is governed by our limiter (which knows the server's ``Retry-After`` and is shared by
every client of the account) instead of by a fixed guess in one client.

Transient failures of idempotent requests (``GET``/``HEAD``: HTTP 5xx and 408, timeouts, connection errors) are
retried here, ``transient_retries`` times after the first attempt, with a capped exponential back-off (or the
server's ``Retry-After``), each wait at most ``max_retry_after_s``. Other methods are never re-sent here: a lost
``POST /v2/orders`` answer is the broker's to resolve by client order id.

The iteration deadline (:mod:`utils.deadline`) bounds all of it: a request's timeout is cut to the time left, a
back-off or a limiter wait (e.g. a 429's ``Retry-After: 3600``) that would end after the deadline is not started,
and :class:`DeadlineExceeded` (a ``requests.RequestException`` and a :class:`~utils.deadline.TemporaryError`) is
raised instead, or the last failure is returned as it is.
"""

from __future__ import annotations

import email.utils
import json
import math
import threading
import time
from typing import Any, Protocol, Self
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import urlsplit

import requests
from loguru import logger
from requests.adapters import HTTPAdapter

from core.errors import ExternalError
from utils import deadline as _deadline
from utils.deadline import DeadlineReached
from utils.rate_limiter import LimiterWaitTooLong

__all__ = [
    "DeadlineExceeded",
    "InvalidResponseBody",
    "RequestLimiter",
    "Timeout",
    "TimeoutAdapter",
    "configure_alpaca_client",
    "install_timeouts",
    "retry_after_seconds",
]

Timeout = float | tuple[float, float]

TRANSIENT_STATUSES = frozenset({408, 500, 502, 503, 504})
"""HTTP statuses worth retrying (besides 429, which the SDK retries through the limiter)."""
_IDEMPOTENT = frozenset({"GET", "HEAD"})
_MIN_USEFUL_S = 0.05  # less time than this left before the deadline: do not start a request


class RequestLimiter(Protocol):
    """What the adapter needs from a rate limiter (see :class:`utils.rate_limiter.SlidingWindowRateLimiter`)."""

    def acquire(self, max_wait: float | None = None) -> float: ...

    def penalise(self, retry_after_s: float) -> None: ...


class InvalidResponseBody(requests.RequestException, ExternalError):
    """A successful (2xx) response whose body is empty, not JSON, or not a JSON object.

    Raised from the adapter only when it was built with ``require_json_object=True`` (market-data clients,
    whose every 2xx answer is a JSON object). It is a ``requests.RequestException``, so it travels through the
    SDK exactly like a transport error instead of surfacing later as an unrelated ``TypeError``.
    """


class DeadlineExceeded(requests.RequestException, DeadlineReached):
    """The iteration deadline came before this request could be sent or answered (see :mod:`utils.deadline`)."""


def _normalise_timeout(timeout: Timeout) -> tuple[float, float]:
    if isinstance(timeout, tuple):
        if len(timeout) != 2:
            raise ValueError(f"timeout must be seconds or a (connect, read) pair, got {timeout!r}")
        connect, read = timeout
    else:
        connect = read = timeout
    for part in (connect, read):
        if isinstance(part, bool) or not isinstance(part, (int, float)) or not math.isfinite(part) or part <= 0:
            raise ValueError(f"timeout values must be positive finite seconds, got {timeout!r}")
    return float(connect), float(read)


def retry_after_seconds(
    headers: Mapping[str, str],
    *,
    wall_clock: Callable[[], float] | None = time.time,
    undated_s: float | None = None,
) -> float | None:
    """Seconds the server asks us to wait, from ``retry-after-ms``, else ``Retry-After``, else ``X-RateLimit-Reset``.

    The one parser of these headers (Alpaca's HTTP adapter and the LLM providers both use it). ``retry-after-ms``
    (Anthropic, OpenAI-style APIs) is milliseconds; ``Retry-After`` may be delta-seconds (fractions accepted) or an
    HTTP-date; ``X-RateLimit-Reset`` (what Alpaca documents) is a UNIX epoch. Dates are turned into a delay with the
    injected ``wall_clock``; without one (``None``) a date yields ``undated_s``. Header names match in any case.
    Returns None when no header is present or parseable; negative delays become 0.
    """
    raw_ms = _header(headers, "retry-after-ms")
    if raw_ms is not None:
        try:
            millis = float(raw_ms.strip())
        except ValueError:
            millis = math.nan
        if math.isfinite(millis):
            return max(millis / 1000.0, 0.0)
    raw = _header(headers, "Retry-After")
    if raw is not None:
        text = raw.strip()
        try:
            seconds: float | None = float(text)
        except ValueError:
            seconds = None
            try:
                when = email.utils.parsedate_to_datetime(text)
            except (TypeError, ValueError, IndexError):
                when = None
            if when is not None and when.tzinfo is not None:
                seconds = undated_s if wall_clock is None else when.timestamp() - wall_clock()
        if seconds is not None and math.isfinite(seconds):
            return max(seconds, 0.0)
    reset = _header(headers, "X-RateLimit-Reset")
    if reset is not None:
        try:
            epoch = float(reset.strip())
        except ValueError:
            return None
        if math.isfinite(epoch):
            if wall_clock is None:
                return undated_s
            return max(epoch - wall_clock(), 0.0)
    return None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """``headers[name]`` in any letter case (``requests``/``httpx`` headers already match so; plain dicts may not)."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    return next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == lowered), None)


class TimeoutAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` with a default timeout, an optional shared rate limiter and 429 handling.

    - ``timeout``: seconds or ``(connect, read)``; applied whenever the caller passes no timeout.
    - ``limiter``: every request (each retry included) waits for ``limiter.acquire()`` before it is sent.
    - HTTP 429: ``limiter.penalise(delay)`` with the server's ``Retry-After`` (else ``X-RateLimit-Reset``, else
      ``default_retry_after_s``), capped at ``max_retry_after_s`` so a bogus header cannot stall the daemon.
      The 429 response itself is returned unchanged; the caller's retry then waits in ``acquire()``.
    - ``require_json_object``: a 2xx response (other than 204) must carry a JSON object, else
      :class:`InvalidResponseBody` is raised.
    - ``transient_retries``: how often an idempotent request (GET/HEAD) that met a 5xx/408, a timeout or a connection
      error is sent again, after ``backoff_s`` * 2^(n-1) seconds (or the server's ``Retry-After``), each wait capped at
      ``max_retry_after_s``; ``sleep`` performs the wait (default: the limiter's ``pause``, else ``time.sleep``).
    - the iteration deadline (:mod:`utils.deadline`) bounds every timeout, back-off and limiter wait.
    - ``requests_sent`` counts requests handed to the transport (retries included, whatever their outcome).
    """

    def __init__(
        self,
        timeout: Timeout,
        *,
        limiter: RequestLimiter | None = None,
        default_retry_after_s: float = 1.0,
        max_retry_after_s: float = 60.0,
        require_json_object: bool = False,
        wall_clock: Callable[[], float] = time.time,
        transient_retries: int = 0,
        backoff_s: float = 0.5,
        sleep: Callable[[float], object] | None = None,
        **kwargs: Any,
    ) -> None:
        self._timeout = _normalise_timeout(timeout)
        if not (math.isfinite(default_retry_after_s) and default_retry_after_s >= 0):
            raise ValueError(f"default_retry_after_s must be >= 0, got {default_retry_after_s!r}")
        if not (math.isfinite(max_retry_after_s) and max_retry_after_s >= 0):
            raise ValueError(f"max_retry_after_s must be >= 0, got {max_retry_after_s!r}")
        if isinstance(transient_retries, bool) or not isinstance(transient_retries, int) or transient_retries < 0:
            raise ValueError(f"transient_retries must be a non-negative integer, got {transient_retries!r}")
        if not (math.isfinite(backoff_s) and backoff_s >= 0):
            raise ValueError(f"backoff_s must be >= 0, got {backoff_s!r}")
        self._limiter = limiter
        self._default_retry_after_s = float(default_retry_after_s)
        self._max_retry_after_s = float(max_retry_after_s)
        self._require_json_object = require_json_object
        self._wall_clock = wall_clock
        self._transient_retries = transient_retries
        self._backoff_s = float(backoff_s)
        self._sleep: Callable[[float], object] = sleep or getattr(limiter, "pause", None) or time.sleep
        self._count_lock = threading.Lock()
        self._requests_sent = 0
        self._rate_limited = 0
        super().__init__(**kwargs)

    @property
    def timeout(self) -> tuple[float, float]:
        return self._timeout

    @property
    def requests_sent(self) -> int:
        with self._count_lock:
            return self._requests_sent

    @property
    def rate_limited_responses(self) -> int:
        """How many HTTP 429 answers this adapter has seen."""
        with self._count_lock:
            return self._rate_limited

    def __repr__(self) -> str:
        return f"{type(self).__name__}(timeout={self._timeout}, limiter={self._limiter!r})"

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        if timeout is None:
            timeout = self._timeout
        retryable = (request.method or "GET").upper() in _IDEMPOTENT
        attempt = 0
        while True:
            attempt += 1
            bounded, cut = self._bounded_timeout(timeout, request)
            self._acquire(request)
            with self._count_lock:
                self._requests_sent += 1
            try:
                response = super().send(
                    request, stream=stream, timeout=bounded, verify=verify, cert=cert, proxies=proxies
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                if cut and isinstance(exc, requests.Timeout):
                    raise DeadlineExceeded(
                        f"no answer from {request.method} {_describe(request)} before the {_scope_label()} deadline",
                        request=request,
                    ) from None
                if (
                    retryable
                    and attempt <= self._transient_retries
                    and self._back_off(attempt, None, request, type(exc).__name__)
                ):
                    continue
                raise
            status = response.status_code
            if status == 429:
                self._on_rate_limited(request, response)
                return response
            if retryable and status in TRANSIENT_STATUSES and attempt <= self._transient_retries:
                hinted = retry_after_seconds(response.headers, wall_clock=self._wall_clock)
                if self._back_off(attempt, hinted, request, f"HTTP {status}"):
                    _ = response.content  # drain the error body so the connection is reused, not reset
                    response.close()
                    continue
            if self._require_json_object and 200 <= status < 300 and status != 204:
                self._check_json_object(request, response)
            return response

    def _bounded_timeout(self, timeout: Any, request: requests.PreparedRequest) -> tuple[Any, bool]:
        """The request's timeout cut to the time left before the deadline, and whether it was cut."""
        left = _deadline.remaining()
        if left is None:
            return timeout, False
        if left < _MIN_USEFUL_S:
            raise DeadlineExceeded(
                f"{request.method} {_describe(request)} not sent: the {_scope_label()} deadline has passed",
                request=request,
            )
        if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
            return (timeout, False) if timeout <= left else (left, True)
        if isinstance(timeout, tuple) and len(timeout) == 2 and all(isinstance(t, (int, float)) for t in timeout):
            connect, read = timeout
            if connect <= left and read <= left:
                return timeout, False
            return (min(connect, left), min(read, left)), True
        return timeout, False

    def _acquire(self, request: requests.PreparedRequest) -> None:
        if self._limiter is None:
            return
        left = _deadline.remaining()
        if left is None:
            self._limiter.acquire()
            return
        try:
            self._limiter.acquire(max_wait=max(left - _MIN_USEFUL_S, 0.0))
        except LimiterWaitTooLong as exc:
            raise DeadlineExceeded(
                f"{request.method} {_describe(request)} not sent: the rate limit (Alpaca's Retry-After or the request "
                f"window) asks for {exc.wait_s:.1f}s more, beyond the {_scope_label()} deadline ({max(left, 0.0):.1f}s left)",
                request=request,
            ) from None

    def _back_off(self, attempt: int, hinted: float | None, request: requests.PreparedRequest, why: str) -> bool:
        """Wait before retry ``attempt``; False (no wait) when the deadline leaves no time for it and a retry."""
        delay = hinted if hinted is not None else self._backoff_s * 2 ** (attempt - 1)
        delay = min(delay, self._max_retry_after_s)
        left = _deadline.remaining()
        if left is not None and delay + _MIN_USEFUL_S >= left:
            logger.warning(
                "{} {}: {}; no retry: the {} deadline is {:.1f}s away",
                request.method,
                _describe(request),
                why,
                _scope_label(),
                max(left, 0.0),
            )
            return False
        logger.warning(
            "{} {}: {}; retry {} of {} in {:.2f}s",
            request.method,
            _describe(request),
            why,
            attempt,
            self._transient_retries,
            delay,
        )
        if delay > 0:
            self._sleep(delay)
        return True

    def _on_rate_limited(self, request: requests.PreparedRequest, response: requests.Response) -> None:
        with self._count_lock:
            self._rate_limited += 1
        delay = retry_after_seconds(response.headers, wall_clock=self._wall_clock)
        source = "server"
        if delay is None:
            delay, source = self._default_retry_after_s, "default"
        if delay > self._max_retry_after_s:
            logger.warning("HTTP 429 asked for a {:.1f}s pause; capping it at {:.1f}s", delay, self._max_retry_after_s)
            delay = self._max_retry_after_s
        logger.warning(
            "HTTP 429 from {} {}: {} for {:.2f}s ({} delay)",
            request.method,
            _describe(request),
            "pausing every caller of the shared limiter" if self._limiter is not None else "no limiter to pause",
            delay,
            source,
        )
        if self._limiter is not None:
            self._limiter.penalise(delay)

    def _check_json_object(self, request: requests.PreparedRequest, response: requests.Response) -> None:
        body = response.content
        where = f"{request.method} {_describe(request)} (HTTP {response.status_code})"
        if not body or not body.strip():
            raise InvalidResponseBody(f"empty response body from {where}", request=request, response=response)
        try:
            parsed = json.loads(body)
        except ValueError:  # json.JSONDecodeError and UnicodeDecodeError are both ValueErrors
            raise InvalidResponseBody(
                f"malformed JSON response body from {where}", request=request, response=response
            ) from None
        if not isinstance(parsed, dict):
            raise InvalidResponseBody(
                f"response body from {where} is JSON {type(parsed).__name__}, expected an object",
                request=request,
                response=response,
            )


def _scope_label() -> str:
    scope = _deadline.current()
    return scope.label if scope is not None else "iteration"


def _describe(request: requests.PreparedRequest) -> str:
    """Scheme, host and path of a request, without the query string or any user-info (proxy credentials written in
    the base URL): neither belongs in logs and messages."""
    parts = urlsplit(request.url or "")
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path}"


def install_timeouts(
    session: requests.Session,
    timeout: Timeout,
    *,
    limiter: RequestLimiter | None = None,
    prefixes: Iterable[str] = ("http://", "https://"),
    **adapter_kwargs: Any,
) -> TimeoutAdapter:
    """Mount one :class:`TimeoutAdapter` on ``session`` for ``prefixes`` and return it."""
    adapter = TimeoutAdapter(timeout, limiter=limiter, **adapter_kwargs)
    for prefix in prefixes:
        session.mount(prefix, adapter)
    return adapter


_ALPACA_CLIENT_ATTRIBUTES = ("_session", "_retry", "_retry_wait", "_retry_codes")


def configure_alpaca_client(
    client: Any,
    *,
    timeout: Timeout,
    limiter: RequestLimiter,
    retry_attempts: int = 3,
    retry_codes: Iterable[int] = (429,),
    transient_retries: int = 2,
    **adapter_kwargs: Any,
) -> TimeoutAdapter:
    """Give an alpaca-py REST client (``TradingClient``, ``StockHistoricalDataClient``...) our HTTP policy.

    alpaca-py 0.44 ``RESTClient`` keeps ``_session`` (a ``requests.Session``), ``_retry`` (retries after the
    first attempt), ``_retry_wait`` (fixed seconds slept before each retry, default 3) and ``_retry_codes``
    (default ``[429, 504]``); the data client's constructor does not expose them. We mount a
    :class:`TimeoutAdapter` on the session and set ``_retry_wait`` to 0: the wait before a retried 429 then
    happens in the shared limiter, for as long as the server's ``Retry-After`` says, and blocks every other
    caller of the account too. ``retry_codes`` defaults to 429 only: an immediate retry of a 504 would just
    hammer a struggling gateway: 5xx/408 answers, timeouts and connection errors of *idempotent* requests are retried
    by the adapter instead (``transient_retries`` times, with back-off, within the iteration deadline).
    Raises ``TypeError`` if the SDK no longer has these attributes.
    """
    missing = [name for name in _ALPACA_CLIENT_ATTRIBUTES if not hasattr(client, name)]
    if missing or not isinstance(getattr(client, "_session", None), requests.Session):
        raise TypeError(
            f"{type(client).__name__} does not look like an alpaca-py RESTClient "
            f"(missing or unexpected: {', '.join(missing) or '_session'}); re-check utils/http.py against the SDK"
        )
    if isinstance(retry_attempts, bool) or not isinstance(retry_attempts, int) or retry_attempts < 0:
        raise ValueError(f"retry_attempts must be a non-negative integer, got {retry_attempts!r}")
    codes = [int(code) for code in retry_codes]
    client._retry = retry_attempts
    client._retry_wait = 0
    client._retry_codes = codes
    return install_timeouts(
        client._session, timeout, limiter=limiter, transient_retries=transient_retries, **adapter_kwargs
    )


class SessionOwner:
    """Housekeeping for an object holding an SDK client whose requests ``_session`` is mounted on a
    :class:`TimeoutAdapter` (``_adapter``): its requests counted, the session closed by ``close()`` or a ``with``
    block."""

    _adapter: TimeoutAdapter
    _client: Any

    @property
    def requests_made(self) -> int:
        """HTTP requests sent so far (every page and every retry counts)."""
        return self._adapter.requests_sent

    def close(self) -> None:
        self._client._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

"""What a selection provider is, and the machinery the concrete providers share.

A provider sends one rendered :class:`~core.llm.prompts.SelectionRequest` to one model and returns the raw
structured payload (JSON text or a decoded object) with the token usage, or raises :class:`ProviderCallError` with
an outcome and a redacted message. It does not judge the answer: :mod:`core.llm.validation` does.

Retries: the SDKs are built with ``max_retries=0`` and :func:`run_with_retries` does the retrying so that every
retry is counted in the call record. 429/408/409/5xx/connection errors are retried with capped exponential backoff
(no jitter: one daemon, deterministic tests); a ``retry-after`` (or ``retry-after-ms``) header is honoured, and
when it asks for longer than ``RetryPolicy.max_delay_s`` the call is *not* retried (we would only be refused again)
and the fallback provider gets its chance instead. Timeouts are not retried by default: a second provider is a
better use of the iteration's time than the same slow one.
"""

from __future__ import annotations

import abc
import asyncio
import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol, runtime_checkable
from collections.abc import Awaitable, Callable

from core.errors import ExternalError, TemporaryError
from core.llm.prompts import SelectionRequest, clean_text
from core.llm.telemetry import CallOutcome
from utils.http import retry_after_seconds

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], datetime]
REDACTED = "[REDACTED]"
MAX_MESSAGE_CHARS = 300

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})


@dataclass(frozen=True, slots=True)
class ProviderReply:
    payload: Any  # JSON text (Groq message content) or decoded object (Anthropic tool input)
    input_tokens: int
    output_tokens: int
    retries: int


class ProviderCallError(ExternalError):
    """The provider produced no usable payload. ``str(exc)`` is redacted and bounded."""

    def __init__(
        self,
        outcome: CallOutcome,
        message: str,
        *,
        retries: int = 0,
        input_tokens: int = 0,
        output_tokens: int = 0,
    ) -> None:
        super().__init__(message)
        self.outcome = CallOutcome(outcome)
        self.message = message
        self.retries = retries
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens


class TemporaryProviderCallError(ProviderCallError, TemporaryError):
    """The provider stayed unavailable (timeout, connection error, 429, 408, 5xx) through the bounded retries."""


class AttemptFailure(ExternalError):
    """One failed HTTP attempt, already translated from the SDK's exception. Not retried (an invalid answer, a 4xx);
    :class:`TemporaryAttemptFailure` is the retryable kind."""

    def __init__(
        self,
        outcome: CallOutcome,
        message: str,
        *,
        retry_after_s: float | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
    ) -> None:
        super().__init__(message)
        self.outcome = CallOutcome(outcome)
        self.message = message
        self.retry_after_s = retry_after_s
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens

    @property
    def retryable(self) -> bool:
        """A failure worth retrying is a :class:`~core.errors.TemporaryError`, as for the broker and market data."""
        return isinstance(self, TemporaryError)


class TemporaryAttemptFailure(AttemptFailure, TemporaryError):
    """One attempt failed for now (timeout, connection error, 429, 408, 5xx): retried within the policy."""


@runtime_checkable
class SelectionProvider(Protocol):
    @property
    def name(self) -> str:
        """Provider name as used in the price table ("groq", "anthropic")."""
        ...

    @property
    def model(self) -> str: ...

    async def complete(self, request: SelectionRequest) -> ProviderReply:
        """One attempt-group (request + bounded retries). Raises :class:`ProviderCallError` on failure."""
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 2
    base_delay_s: float = 0.5
    max_delay_s: float = 5.0
    retry_timeouts: bool = False

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if not (0 <= self.base_delay_s <= self.max_delay_s) or not math.isfinite(self.max_delay_s):
            raise ValueError("need 0 <= base_delay_s <= max_delay_s < inf")

    def backoff(self, retry_index: int) -> float:
        return min(self.base_delay_s * (2**retry_index), self.max_delay_s)


async def run_with_retries(
    attempt: Callable[[], Awaitable[tuple[Any, int, int]]],
    *,
    policy: RetryPolicy,
    sleep: Sleep,
) -> ProviderReply:
    """Run ``attempt`` (returning ``(payload, input_tokens, output_tokens)``) with bounded, counted retries."""
    retries = 0
    tokens_in = tokens_out = 0
    while True:
        try:
            payload, used_in, used_out = await attempt()
        except AttemptFailure as failure:
            tokens_in += failure.input_tokens
            tokens_out += failure.output_tokens
            message = failure.message
            retry = isinstance(failure, TemporaryError) and retries < policy.max_retries
            if failure.outcome is CallOutcome.TIMEOUT and not policy.retry_timeouts:
                retry = False
            delay = policy.backoff(retries)
            if retry and failure.retry_after_s is not None:
                if failure.retry_after_s > policy.max_delay_s:
                    retry = False
                    message += f" (retry-after {failure.retry_after_s:g}s exceeds the {policy.max_delay_s:g}s cap; not retried)"
                else:
                    delay = max(failure.retry_after_s, 0.0)
            if not retry:
                if failure.retryable and retries >= policy.max_retries and policy.max_retries > 0:
                    message += f" (gave up after {retries} retries)"
                error = TemporaryProviderCallError if isinstance(failure, TemporaryError) else ProviderCallError
                raise error(
                    failure.outcome, message, retries=retries, input_tokens=tokens_in, output_tokens=tokens_out
                ) from None
            await sleep(delay)
            retries += 1
            continue
        return ProviderReply(payload, tokens_in + used_in, tokens_out + used_out, retries)


# ----------------------------------------------------------------------------------------------------------------
# Redaction and SDK error translation (Groq and Anthropic SDKs share the same exception layout)
# ----------------------------------------------------------------------------------------------------------------


class Redactor:
    """Removes a secret from any text before it leaves the provider. Its repr shows nothing."""

    __slots__ = ("_secret",)

    def __init__(self, secret: str | None) -> None:
        self._secret = secret or None

    def __call__(self, text: str) -> str:
        if self._secret and self._secret in text:
            text = text.replace(self._secret, REDACTED)
        return text

    def __repr__(self) -> str:
        return "Redactor(***)"


def bounded(text: str, redact: Redactor, limit: int = MAX_MESSAGE_CHARS) -> str:
    # redact before and after cleaning: cleaning could join a key split by control characters
    return redact(clean_text(redact(text), limit))


@dataclass(frozen=True, slots=True)
class SdkErrorTypes:
    timeout: type[BaseException]
    connection: type[BaseException]
    status: type[BaseException]
    response_validation: type[BaseException]


def _error_parts(body: Any) -> tuple[str | None, str | None, str | None]:
    """(type, message, code) from ``{"error": {...}}`` bodies (Groq and Anthropic both nest under "error")."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return None, (body if isinstance(body, str) else None), None
    etype = err.get("type") if isinstance(err.get("type"), str) else None
    emsg = err.get("message") if isinstance(err.get("message"), str) else None
    code = err.get("code") if isinstance(err.get("code"), str) else None
    details = err.get("details")
    if code is None and isinstance(details, dict) and isinstance(details.get("error_code"), str):
        code = details["error_code"]
    return etype, emsg, code


def status_error_text(exc: BaseException) -> str:
    """``HTTP <status> [<code or type>][: <message>]`` for an SDK's status error (Anthropic, Groq), unredacted and
    unbounded: pass it through :func:`bounded` before it is stored or shown."""
    status = int(getattr(exc, "status_code", 0) or 0)
    etype, emsg, code = _error_parts(getattr(exc, "body", None))
    text = f"HTTP {status}"
    if code:
        text += f" {code}"
    elif etype:
        text += f" {etype}"
    if emsg:
        text += f": {emsg}"
    return text


def translate_sdk_error(
    exc: BaseException,
    types: SdkErrorTypes,
    *,
    redact: Redactor,
    clock: Clock | None,
    policy: RetryPolicy,
) -> AttemptFailure | None:
    """Map an SDK exception onto an :class:`AttemptFailure`; ``None`` for exceptions we do not know (re-raise)."""
    if isinstance(exc, types.response_validation):
        return AttemptFailure(CallOutcome.INVALID, "response did not match the SDK's schema")
    if isinstance(exc, types.timeout):
        return TemporaryAttemptFailure(CallOutcome.TIMEOUT, "request timed out")
    if isinstance(exc, types.connection):
        cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else "unknown cause"
        return TemporaryAttemptFailure(CallOutcome.CONNECTION_ERROR, f"connection error ({cause})")
    if isinstance(exc, types.status):
        status = int(getattr(exc, "status_code", 0) or 0)
        code = _error_parts(getattr(exc, "body", None))[2]
        message = bounded(status_error_text(exc), redact)
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None) or {}
        now = clock() if clock is not None else None
        wall_clock = None if now is None else now.timestamp  # without a clock an HTTP-date waits the policy's cap
        retry_after = retry_after_seconds(headers, wall_clock=wall_clock, undated_s=policy.max_delay_s)
        if code == "json_validate_failed":
            return AttemptFailure(CallOutcome.INVALID, message)
        if status == 429:
            return TemporaryAttemptFailure(CallOutcome.RATE_LIMITED, message, retry_after_s=retry_after)
        kind = TemporaryAttemptFailure if status in RETRYABLE_STATUS or status >= 500 else AttemptFailure
        return kind(CallOutcome.HTTP_ERROR, message, retry_after_s=retry_after)
    return None


def non_negative_int(value: Any) -> int:
    """Token counts from a leniently-built SDK model: anything but a non-negative int counts as 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


DEFAULT_SLEEP: Sleep = asyncio.sleep


def sdk_key(api_key: Any, vendor: str, timeout_s: float) -> str:
    """The API key as text (a ``SecretStr`` unwrapped), refusing an empty key or a non-positive timeout."""
    key = api_key.get_secret_value() if hasattr(api_key, "get_secret_value") else api_key
    if not isinstance(key, str) or not key.strip():
        raise ValueError(f"{vendor} API key is empty")
    if not (timeout_s > 0):
        raise ValueError("timeout_s must be > 0")
    return key


class SdkSelectionProvider(abc.ABC):
    """What the Groq and Anthropic providers share: an SDK client built with ``max_retries=0``, our retries (counted)
    around each call, the SDK's errors translated to :class:`AttemptFailure` with secrets redacted.

    A subclass names its vendor (``vendor``), its SDK's error types (``errors`` and the base ``api_error``) and
    implements ``_params`` (the request), ``_create`` (one SDK call) and ``_extract`` (the answer and its tokens)."""

    vendor: ClassVar[str]
    errors: ClassVar[SdkErrorTypes]
    api_error: ClassVar[type[BaseException]]

    def __init__(
        self,
        client: Any,
        *,
        model: str,
        redactor: Redactor,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Sleep = DEFAULT_SLEEP,
        clock: Clock | None = None,
    ) -> None:
        if not model:
            raise ValueError(f"{self.vendor} model name is required")
        self._client = client
        self._model = model
        self._redact = redactor
        self._retry = retry
        self._sleep = sleep
        self._clock = clock

    @property
    def name(self) -> str:
        return self.vendor

    @property
    def model(self) -> str:
        return self._model

    async def aclose(self) -> None:
        await self._client.close()

    @abc.abstractmethod
    def _params(self, request: SelectionRequest) -> dict[str, Any]:
        """The SDK call's keyword arguments for ``request``."""

    @abc.abstractmethod
    async def _create(self, params: dict[str, Any]) -> Any:
        """One call of the SDK (no retries: ours are around it)."""

    @abc.abstractmethod
    def _extract(self, response: Any, request: SelectionRequest) -> tuple[Any, int, int]:
        """The answer and its input/output tokens; raises :class:`AttemptFailure` for an unusable one."""

    async def complete(self, request: SelectionRequest) -> ProviderReply:
        params = self._params(request)

        async def attempt() -> tuple[Any, int, int]:
            try:
                response = await self._create(params)
            except self.api_error as exc:
                failure = translate_sdk_error(
                    exc, self.errors, redact=self._redact, clock=self._clock, policy=self._retry
                )
                if failure is None:
                    raise
                raise failure from None
            except (json.JSONDecodeError, RecursionError, UnicodeDecodeError):
                raise AttemptFailure(CallOutcome.INVALID, "response body is not valid JSON") from None
            return self._extract(response, request)

        return await run_with_retries(attempt, policy=self._retry, sleep=self._sleep)

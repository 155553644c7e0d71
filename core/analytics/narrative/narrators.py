"""Narrators: the template narrator and the Claude narrator whose answer is kept only when it is faithful.

See the package doc (:mod:`core.analytics.narrative`) for the overall flow and :mod:`core.analytics.narrative.facts` for the check.
"""

from __future__ import annotations

import asyncio
import enum
import json
import math
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, Protocol
from collections.abc import Callable, Mapping

import httpx2
from loguru import logger
from pydantic import SecretStr

from core.llm.providers import Redactor, bounded, non_negative_int, status_error_text
from core.analytics.narrative.facts import validate_narrative

if TYPE_CHECKING:
    import anthropic

__all__ = [
    "SYSTEM_PROMPT",
    "AnthropicNarrator",
    "NarrativeCall",
    "NarrativeOutcome",
    "NarrativeResult",
    "Narrator",
    "Template",
    "TemplateNarrator",
    "build_anthropic_narrator",
    "facts_prompt",
]


class NarrativeOutcome(enum.StrEnum):
    OK = "ok"  # faithful narrative, used
    UNFAITHFUL = "unfaithful"  # a number/date not in the facts
    EMPTY = "empty"  # no text in the answer
    TRUNCATED = "truncated"  # stop_reason=max_tokens
    REFUSED = "refused"  # stop_reason=refusal
    HTTP_ERROR = "http_error"  # non-2xx (after the SDK's retries), 529 overloaded included
    RATE_LIMITED = "rate_limited"  # 429 after the SDK's retries
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    INVALID_RESPONSE = "invalid_response"  # body not JSON / not a message


@dataclass(frozen=True, slots=True)
class NarrativeCall:
    """One narration request. ``error`` (redacted, bounded) is set when the call itself failed."""

    model: str
    input_tokens: int
    output_tokens: int
    latency_ms: float
    outcome: NarrativeOutcome
    error: str | None
    started_at: datetime

    def __post_init__(self) -> None:
        _require_utc(self.started_at, "NarrativeCall.started_at")
        object.__setattr__(self, "outcome", NarrativeOutcome(self.outcome))

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "latency_ms": self.latency_ms,
            "outcome": self.outcome.value,
            "error": self.error,
            "started_at": self.started_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class NarrativeResult:
    """The text to record. ``kind="template"`` means the deterministic text; then ``rejected_text`` is the LLM's
    narrative that was refused (``None`` when there was none) and ``reason`` says why."""

    kind: Literal["llm", "template"]
    text: str
    rejected_text: str | None
    reason: str
    call: NarrativeCall | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "text": self.text,
            "rejected_text": self.rejected_text,
            "reason": self.reason,
            "call": self.call.to_dict() if self.call is not None else None,
        }


Template = Callable[[Mapping[str, Any]], str]


class Narrator(Protocol):
    async def narrate(self, facts: Mapping[str, Any]) -> NarrativeResult: ...


class TemplateNarrator:
    """No LLM: always the deterministic template text."""

    def __init__(self, template: Template, *, reason: str = "no LLM narrator configured") -> None:
        self._template = template
        self._reason = reason

    async def narrate(self, facts: Mapping[str, Any]) -> NarrativeResult:
        return NarrativeResult("template", self._template(facts), None, self._reason, None)


SYSTEM_PROMPT = """\
You write the audit summary of one iteration of an automated paper-trading system for its operator.
Write 3 to 6 plain-English sentences describing the facts you are given. Plain text only: no markdown, no lists,
no headings.
Rules for numbers, which are checked automatically:
- Use only numbers, dates and times that appear in the facts. You may round a number to fewer decimals (keep at
  least two significant digits) or write a fraction as a percentage; never compute new numbers (no sums,
  differences, ratios or averages).
- Write numbers with digits, never as words. Write dates exactly as YYYY-MM-DD.
- Do not mention identifiers such as the iteration id.
Do not speculate, predict or give advice."""


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


def facts_prompt(facts: Mapping[str, Any]) -> str:
    """The user message: the facts as a JSON block."""
    block = json.dumps(facts, sort_keys=True, indent=1, ensure_ascii=False, default=_json_default)
    return f"Facts of the iteration (JSON):\n```json\n{block}\n```\nWrite the summary."


def _require_utc(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got {value!r}")
    if value.utcoffset() != timedelta(0):
        raise ValueError(f"{what} must be in UTC, got {value.isoformat()}")
    return value


class AnthropicNarrator:
    """Claude writes the narrative; :func:`validate_narrative` decides whether it is kept.

    ``clock`` gives the (UTC) start time of each call, ``monotonic`` (seconds) its latency. ``timeout_s`` bounds
    the whole call, the SDK's own retries included. SDK errors are turned into a template result with the reason;
    any other exception (a bug) propagates.
    """

    def __init__(
        self,
        client: anthropic.AsyncAnthropic,
        model: str,
        *,
        template: Template,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float],
        max_tokens: int = 400,
        timeout_s: float = 20,
        redactor: Redactor | None = None,
    ) -> None:
        if not model:
            raise ValueError("anthropic model name is required")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}")
        if not (isinstance(timeout_s, (int, float)) and math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"timeout_s must be a positive number, got {timeout_s!r}")
        self._client = client
        self._model = model
        self._template = template
        self._clock = clock
        self._monotonic = monotonic
        self._max_tokens = max_tokens
        self._timeout_s = float(timeout_s)
        self._redact = redactor or Redactor(None)

    @property
    def model(self) -> str:
        return self._model

    def __repr__(self) -> str:
        return f"AnthropicNarrator(model={self._model!r}, max_tokens={self._max_tokens}, timeout_s={self._timeout_s})"

    async def aclose(self) -> None:
        await self._client.close()

    async def narrate(self, facts: Mapping[str, Any]) -> NarrativeResult:
        import anthropic  # loaded with the first narration, not with every command (over a second of imports)

        started_at = _require_utc(self._clock(), "clock()")
        t0 = self._monotonic()
        tokens_in = tokens_out = 0
        outcome: NarrativeOutcome
        error: str | None = None
        text = ""
        rejected: str | None = None
        reason: str
        try:
            async with asyncio.timeout(self._timeout_s):
                response = await self._client.messages.create(
                    model=self._model,
                    max_tokens=self._max_tokens,
                    system=SYSTEM_PROMPT,
                    messages=[{"role": "user", "content": facts_prompt(facts)}],
                    timeout=self._timeout_s,
                )
        except (TimeoutError, anthropic.APITimeoutError):
            outcome, error = NarrativeOutcome.TIMEOUT, f"no answer within {self._timeout_s:g} s"
        except anthropic.APIConnectionError as exc:
            cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else "unknown cause"
            outcome, error = NarrativeOutcome.CONNECTION_ERROR, f"connection error ({cause})"
        except anthropic.RateLimitError as exc:
            outcome, error = NarrativeOutcome.RATE_LIMITED, bounded(status_error_text(exc), self._redact)
        except anthropic.APIStatusError as exc:
            outcome, error = NarrativeOutcome.HTTP_ERROR, bounded(status_error_text(exc), self._redact)
        except (anthropic.APIResponseValidationError, json.JSONDecodeError, UnicodeDecodeError):
            outcome, error = NarrativeOutcome.INVALID_RESPONSE, "response is not a valid message"
        else:
            usage = getattr(response, "usage", None)
            tokens_in = non_negative_int(getattr(usage, "input_tokens", 0))
            tokens_out = non_negative_int(getattr(usage, "output_tokens", 0))
            outcome, text, error = self._read(response)
        latency_ms = max(0.0, (self._monotonic() - t0) * 1000.0)

        if outcome is NarrativeOutcome.OK:
            check = validate_narrative(text, facts)
            if check.ok:
                reason = f"faithful: {check.reason}"
            else:
                outcome, rejected = NarrativeOutcome.UNFAITHFUL, text
                reason = f"unfaithful: {check.reason}"
        elif outcome in (NarrativeOutcome.TRUNCATED, NarrativeOutcome.REFUSED):
            rejected = text or None
            reason = f"{outcome.value}: {error}"
        else:
            reason = f"{outcome.value}: {error}"

        call = NarrativeCall(
            model=self._model,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            latency_ms=latency_ms,
            outcome=outcome,
            error=error,
            started_at=started_at,
        )
        if outcome is NarrativeOutcome.OK:
            return NarrativeResult("llm", text, None, reason, call)
        logger.warning("narrative: template used ({})", reason)
        return NarrativeResult("template", self._template(facts), rejected, reason, call)

    @staticmethod
    def _read(response: Any) -> tuple[NarrativeOutcome, str, str | None]:
        raw_stop = getattr(response, "stop_reason", None)
        stop = raw_stop if isinstance(raw_stop, str) else "unknown"
        content = getattr(response, "content", None)
        blocks = content if isinstance(content, list) else []
        parts = [
            block.text
            for block in blocks
            if getattr(block, "type", None) == "text" and isinstance(getattr(block, "text", None), str)
        ]
        text = "\n".join(p.strip() for p in parts if p.strip()).strip()
        if stop == "refusal":
            return NarrativeOutcome.REFUSED, text, "the model refused (stop_reason=refusal)"
        if stop == "max_tokens":
            return NarrativeOutcome.TRUNCATED, text, "answer truncated (stop_reason=max_tokens)"
        if not text:
            return NarrativeOutcome.EMPTY, "", f"no text in the answer (stop_reason={stop})"
        return NarrativeOutcome.OK, text, None


def build_anthropic_narrator(
    api_key: SecretStr | str,
    model: str,
    *,
    template: Template,
    clock: Callable[[], datetime],
    monotonic: Callable[[], float],
    base_url: str | None = None,
    http_client: httpx2.AsyncClient | None = None,
    timeout_s: float = 20,
    max_tokens: int = 400,
    max_retries: int = 1,
) -> AnthropicNarrator:
    """An ``AsyncAnthropic`` client (``max_retries`` small: narration is optional) wrapped as a narrator.

    ``http_client`` must be an ``httpx2.AsyncClient`` (the 2.x SDK is built on httpx2). The key never appears in
    the narrator's repr or in recorded errors.
    """
    key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
    if not isinstance(key, str) or not key.strip():
        raise ValueError("anthropic API key is empty")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or not 0 <= max_retries <= 3:
        raise ValueError(f"max_retries must be an integer in 0..3, got {max_retries!r}")
    if not (isinstance(timeout_s, (int, float)) and math.isfinite(timeout_s) and timeout_s > 0):
        raise ValueError(f"timeout_s must be a positive number, got {timeout_s!r}")
    import anthropic

    client = anthropic.AsyncAnthropic(
        api_key=key,
        base_url=base_url,
        timeout=float(timeout_s),
        max_retries=max_retries,
        http_client=http_client,
    )
    return AnthropicNarrator(
        client,
        model,
        template=template,
        clock=clock,
        monotonic=monotonic,
        max_tokens=max_tokens,
        timeout_s=timeout_s,
        redactor=Redactor(key),
    )

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

from core.analytics.narrative.binding import bind_narrative, named_figures
from core.llm.budget import DailyBudget
from core.llm.prompts import prompt_hash
from core.llm.providers import (
    DEFAULT_SLEEP,
    AttemptFailure,
    ProviderCallError,
    Redactor,
    RetryPolicy,
    SdkErrorTypes,
    Sleep,
    non_negative_int,
    run_with_retries,
    translate_sdk_error,
)
from core.llm.telemetry import CallOutcome, PriceTable

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
    "NARRATIVE_PROMPT_VERSION",
    "build_anthropic_narrator",
    "facts_prompt",
]


class NarrativeOutcome(enum.StrEnum):
    OK = "ok"  # faithful narrative, used
    UNFAITHFUL = "unfaithful"  # a figure not bound to a named fact, or bound next to the wrong words
    EMPTY = "empty"  # no text in the answer
    TRUNCATED = "truncated"  # stop_reason=max_tokens
    REFUSED = "refused"  # stop_reason=refusal
    HTTP_ERROR = "http_error"  # non-2xx (after the retries), 529 overloaded included
    RATE_LIMITED = "rate_limited"  # 429 after the retries
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    INVALID_RESPONSE = "invalid_response"  # body not JSON / not a message
    BUDGET_EXCEEDED = "budget_exceeded"  # the LLM budget refused: no call made


NARRATIVE_PROMPT_VERSION = "audit-narrative/v2"


@dataclass(frozen=True, slots=True)
class NarrativeCall:
    """One narration request. ``error`` (redacted, bounded) is set when the call itself failed. ``retries``: the
    HTTP requests beyond the first; ``prompt_hash``: SHA-256 of the system and user prompt actually sent;
    ``cost_usd``: from the price table (``None``: model not priced)."""

    model: str
    input_tokens: int
    output_tokens: int
    latency_ms: float
    outcome: NarrativeOutcome
    error: str | None
    started_at: datetime
    retries: int = 0
    prompt_hash: str = ""
    cost_usd: Decimal | None = None
    provider: str = "anthropic"
    prompt_version: str = NARRATIVE_PROMPT_VERSION

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
            "retries": self.retries,
            "prompt_hash": self.prompt_hash,
            "cost_usd": None if self.cost_usd is None else str(self.cost_usd),
        }

    def as_llm_call(self, validation_errors: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
        """The ``llm_calls`` row of this call (the same shape as a selection call's record, purpose ``narrative``)."""
        return {
            "purpose": "narrative",
            "provider": self.provider,
            "model": self.model,
            "prompt_version": self.prompt_version,
            "prompt_hash": self.prompt_hash,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": self.cost_usd,
            "latency_ms": self.latency_ms,
            "retries": self.retries,
            "outcome": self.outcome.value,
            "validation_errors": list(validation_errors),
            "symbols": [],
            "error": self.error,
            "started_at": self.started_at,
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

    def llm_calls(self) -> list[dict[str, Any]]:
        """The ``llm_calls`` rows of this narration (none when no call was attempted)."""
        if self.call is None:
            return []
        return [self.call.as_llm_call([self.reason] if self.kind == "template" else [])]


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
Rules for figures, which are checked automatically:
- Never write a digit, a number word, a date or a time yourself. Every figure is a reference to a named fact,
  written as {name} exactly as listed under "Figures" (for example "Risk approved {approvals} orders"); the system
  replaces each reference with the recorded value.
- Put each reference in the same clause as the word for what it counts: "{fills} fills", "equity of {equity}",
  "{denials_by_rule.max_positions} denied under max_positions". A reference next to the wrong words is rejected.
- Never compute new figures (no sums, differences, ratios or averages); if a figure is not listed, leave it out.
- Symbols, sides and rule names may be written as plain words.
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
    """The user message: the facts as a JSON block and the figures the narrative may reference, by name."""
    block = json.dumps(facts, sort_keys=True, indent=1, ensure_ascii=False, default=_json_default)
    figures = "\n".join(f"{{{name}}} = {value}" for name, value in named_figures(facts).items())
    return (
        f"Facts of the iteration (JSON):\n```json\n{block}\n```\n"
        f"Figures (reference them as {{name}}; write no figure yourself):\n{figures}\n"
        "Write the summary."
    )


def _content_key(facts: Mapping[str, Any]) -> str:
    """The facts without what differs between two iterations of one session that tell the same story."""
    kept = {k: v for k, v in facts.items() if k not in ("iteration_id", "as_of", "narrative")}
    return json.dumps(kept, sort_keys=True, ensure_ascii=False, default=_json_default)


def _require_utc(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got {value!r}")
    if value.utcoffset() != timedelta(0):
        raise ValueError(f"{what} must be in UTC, got {value.isoformat()}")
    return value


class AnthropicNarrator:
    """Claude writes the narrative with ``{name}`` references; :func:`bind_narrative` decides whether it is kept.

    On the books like selection: the call is priced (``prices``), counted against ``budget`` (the same LLM budget
    as selection), retried by :func:`~core.llm.providers.run_with_retries` with the SDK's own retries off (so every
    retry is counted), and recorded with the hash of the prompt actually sent. One narration per session: a later
    iteration of the same session whose facts tell the same story reuses the narrative without a call; one with new
    facts gets the template (reason says so).

    ``clock`` gives the (UTC) start time of each call, ``monotonic`` (seconds) its latency. ``timeout_s`` bounds
    the whole call, retries included. SDK errors are turned into a template result with the reason; any other
    exception (a bug) propagates.
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
        prices: PriceTable | None = None,
        budget: DailyBudget | None = None,
        retry: RetryPolicy = RetryPolicy(max_retries=1),
        sleep: Sleep = DEFAULT_SLEEP,
        on_budget_switch: Callable[[str], None] | None = None,
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
        self._prices = prices or PriceTable.load()
        self._budget = budget
        self._retry = retry
        self._sleep = sleep
        self._on_budget_switch = on_budget_switch
        self._sessions: dict[str, tuple[str, NarrativeResult]] = {}  # session → (content key, its narration)

    @property
    def model(self) -> str:
        return self._model

    def __repr__(self) -> str:
        return f"AnthropicNarrator(model={self._model!r}, max_tokens={self._max_tokens}, timeout_s={self._timeout_s})"

    async def aclose(self) -> None:
        await self._client.close()

    async def narrate(self, facts: Mapping[str, Any]) -> NarrativeResult:
        session = str(facts.get("session") or str(facts.get("as_of") or "")[:10])
        key = _content_key(facts)
        done = self._sessions.get(session)
        if done is not None and session:
            first_key, first = done
            if first_key == key and first.kind == "llm":
                return NarrativeResult("llm", first.text, None, f"narrated earlier this session ({session})", None)
            reason = f"one narration per session: {session} was narrated by an earlier iteration"
            return NarrativeResult("template", self._template(facts), None, reason, None)
        result = await self._narrate(facts)
        if session and result.call is not None and result.call.outcome is not NarrativeOutcome.BUDGET_EXCEEDED:
            self._sessions = {session: (key, result)}  # only the current session is kept
        return result

    async def _narrate(self, facts: Mapping[str, Any]) -> NarrativeResult:
        import anthropic  # loaded with the first narration, not with every command (over a second of imports)

        started_at = _require_utc(self._clock(), "clock()")
        user = facts_prompt(facts)
        sent_hash = prompt_hash(SYSTEM_PROMPT, user)
        if self._budget is not None:
            refusal = self._budget.exceeded_reason()
            if refusal is not None:
                if self._on_budget_switch is not None:
                    self._on_budget_switch(refusal)
                call = NarrativeCall(
                    self._model, 0, 0, 0.0, NarrativeOutcome.BUDGET_EXCEEDED, refusal, started_at, 0, sent_hash,
                    Decimal(0),
                )  # fmt: skip
                return NarrativeResult("template", self._template(facts), None, refusal, call)
        errors = SdkErrorTypes(
            timeout=anthropic.APITimeoutError,
            connection=anthropic.APIConnectionError,
            status=anthropic.APIStatusError,
            response_validation=anthropic.APIResponseValidationError,
        )
        attempts = 0

        async def attempt() -> tuple[Any, int, int]:
            nonlocal attempts
            attempts += 1
            try:
                response = await self._client.messages.create(
                    model=self._model,
                    max_tokens=self._max_tokens,
                    system=SYSTEM_PROMPT,
                    messages=[{"role": "user", "content": user}],
                    timeout=self._timeout_s,
                )
            except anthropic.APIError as exc:
                failure = translate_sdk_error(exc, errors, redact=self._redact, clock=self._clock, policy=self._retry)
                if failure is None:
                    raise
                raise failure from None
            except (json.JSONDecodeError, RecursionError, UnicodeDecodeError):
                raise AttemptFailure(CallOutcome.INVALID, "response is not a valid message") from None
            usage = getattr(response, "usage", None)
            return (
                response,
                non_negative_int(getattr(usage, "input_tokens", 0)),
                non_negative_int(getattr(usage, "output_tokens", 0)),
            )

        t0 = self._monotonic()
        tokens_in = tokens_out = retries = 0
        error: str | None = None
        text = ""
        rejected: str | None = None
        try:
            async with asyncio.timeout(self._timeout_s):
                reply = await run_with_retries(attempt, policy=self._retry, sleep=self._sleep)
        except TimeoutError:
            outcome, error, retries = NarrativeOutcome.TIMEOUT, f"no answer within {self._timeout_s:g} s", attempts - 1
        except ProviderCallError as exc:
            outcome, error = _OUTCOMES[exc.outcome], exc.message
            if exc.outcome is CallOutcome.INVALID:
                error = "response is not a valid message"
            tokens_in, tokens_out, retries = exc.input_tokens, exc.output_tokens, exc.retries
        else:
            tokens_in, tokens_out, retries = reply.input_tokens, reply.output_tokens, reply.retries
            outcome, text, error = self._read(reply.payload)
        latency_ms = max(0.0, (self._monotonic() - t0) * 1000.0)
        cost = self._prices.cost("anthropic", self._model, tokens_in, tokens_out)
        if self._budget is not None:
            self._budget.record(cost)

        if outcome is NarrativeOutcome.OK:
            bound = bind_narrative(text, facts)
            if bound.ok:
                reason = f"faithful: {bound.reason}"
                text = bound.text
            else:
                outcome, rejected = NarrativeOutcome.UNFAITHFUL, text
                reason = f"unfaithful: {bound.reason}"
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
            retries=max(retries, 0),
            prompt_hash=sent_hash,
            cost_usd=cost,
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


_OUTCOMES = {
    CallOutcome.TIMEOUT: NarrativeOutcome.TIMEOUT,
    CallOutcome.CONNECTION_ERROR: NarrativeOutcome.CONNECTION_ERROR,
    CallOutcome.RATE_LIMITED: NarrativeOutcome.RATE_LIMITED,
    CallOutcome.HTTP_ERROR: NarrativeOutcome.HTTP_ERROR,
    CallOutcome.INVALID: NarrativeOutcome.INVALID_RESPONSE,
}


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
    prices: PriceTable | None = None,
    budget: DailyBudget | None = None,
    sleep: Sleep = DEFAULT_SLEEP,
    on_budget_switch: Callable[[str], None] | None = None,
) -> AnthropicNarrator:
    """An ``AsyncAnthropic`` client (SDK retries off; ``max_retries`` of ours, counted, small: narration is
    optional) wrapped as a narrator.

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
        max_retries=0,
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
        prices=prices,
        budget=budget,
        retry=RetryPolicy(max_retries=max_retries),
        sleep=sleep,
        on_budget_switch=on_budget_switch,
    )

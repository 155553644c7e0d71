"""Groq selection provider: chat completions with ``response_format`` = strict JSON schema.

Reasoning models (``openai/gpt-oss-*``, ``qwen/qwen3*``): their reasoning tokens count against
``max_completion_tokens``, so a tight cap ends answers at ``finish_reason=length``. The provider sends a
``reasoning_effort`` (``low`` unless configured) and adds room for the reasoning to the answer's allowance
(:func:`output_budget`).

Strict mode (constrained decoding) is only available on some Groq models (``openai/gpt-oss-20b`` and
``openai/gpt-oss-120b`` at the time of writing); pass ``strict=False`` for others (best-effort schema following;
our validation catches whatever the model gets wrong). A generation that fails Groq's own schema check comes back
as HTTP 400 ``json_validate_failed`` and is reported as outcome ``invalid``.
"""

from __future__ import annotations

from typing import Any

import groq
import httpx
from pydantic import SecretStr

from core.llm.prompts import SelectionRequest
from core.llm.providers import (
    DEFAULT_SLEEP,
    AttemptFailure,
    Clock,
    Redactor,
    RetryPolicy,
    SdkErrorTypes,
    SdkSelectionProvider,
    Sleep,
    non_negative_int,
    sdk_key,
)
from core.llm.telemetry import CallOutcome

GROQ_ERRORS = SdkErrorTypes(
    timeout=groq.APITimeoutError,
    connection=groq.APIConnectionError,
    status=groq.APIStatusError,
    response_validation=groq.APIResponseValidationError,
)
ReasoningEffort = str  # "none" | "default" | "low" | "medium" | "high" (model-dependent)
REASONING_MODELS = ("openai/gpt-oss-", "qwen/qwen3", "deepseek-r1")
DEFAULT_REASONING_EFFORT = "low"  # a choice among a few strategies needs little thinking; "medium" doubles latency
# reasoning tokens count against max_completion_tokens: room for them on top of the answer's own allowance
REASONING_HEADROOM = {"none": 0, "low": 1024, "default": 2048, "medium": 4096, "high": 8192}


def is_reasoning_model(model: str) -> bool:
    return model.lower().startswith(REASONING_MODELS) or "deepseek-r1" in model.lower()


def output_budget(model: str, answer_tokens: int, effort: ReasoningEffort | None) -> int:
    """max_completion_tokens: the answer's allowance (it grows with the symbol count, see
    :func:`~core.llm.prompts.output_token_allowance`) plus the reasoning headroom of a reasoning model."""
    if not is_reasoning_model(model):
        return answer_tokens
    return answer_tokens + REASONING_HEADROOM.get(effort or DEFAULT_REASONING_EFFORT, REASONING_HEADROOM["default"])


class GroqSelectionProvider(SdkSelectionProvider):
    """Implements :class:`~core.llm.providers.SelectionProvider` over an ``AsyncGroq`` client."""

    vendor = "groq"
    errors = GROQ_ERRORS
    api_error = groq.APIError

    def __init__(
        self,
        client: groq.AsyncGroq,
        *,
        model: str,
        redactor: Redactor,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Sleep = DEFAULT_SLEEP,
        clock: Clock | None = None,
        strict: bool = True,
        temperature: float = 0.0,
        reasoning_effort: ReasoningEffort | None = None,
        max_output_tokens: int | None = None,
    ) -> None:
        super().__init__(client, model=model, redactor=redactor, retry=retry, sleep=sleep, clock=clock)
        self._strict = strict
        self._temperature = temperature
        self._reasoning_effort = reasoning_effort
        self._max_output_tokens = max_output_tokens

    def __repr__(self) -> str:
        return f"GroqSelectionProvider(model={self._model!r}, strict={self._strict}, base_url={str(self._client.base_url)!r})"

    def _params(self, request: SelectionRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self._model,
            "messages": [
                {"role": "system", "content": request.system},
                {"role": "user", "content": request.user},
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": request.tool_name,
                    "description": "One strategy choice per symbol.",
                    "strict": self._strict,
                    "schema": dict(request.schema),
                },
            },
            "temperature": self._temperature,
        }
        effort = self._reasoning_effort
        if effort is None and is_reasoning_model(self._model):
            effort = DEFAULT_REASONING_EFFORT
        answer = self._max_output_tokens or request.max_output_tokens
        params["max_completion_tokens"] = output_budget(self._model, answer, effort)
        if effort is not None:
            params["reasoning_effort"] = effort
        return params

    async def _create(self, params: dict[str, Any]) -> Any:
        return await self._client.chat.completions.create(**params)

    def _extract(self, response: Any, request: SelectionRequest) -> tuple[Any, int, int]:
        return _extract(response)


def _extract(response: Any) -> tuple[Any, int, int]:
    """Message content of the first choice; the SDK builds models leniently, so check every step."""
    usage = getattr(response, "usage", None)
    tokens_in = non_negative_int(getattr(usage, "prompt_tokens", 0))
    tokens_out = non_negative_int(getattr(usage, "completion_tokens", 0))

    def invalid(message: str) -> AttemptFailure:
        return AttemptFailure(CallOutcome.INVALID, message, input_tokens=tokens_in, output_tokens=tokens_out)

    choices = getattr(response, "choices", None)
    if not isinstance(choices, list) or not choices:
        raise invalid("response has no choices")
    first = choices[0]
    finish_reason = getattr(first, "finish_reason", None)
    finish = finish_reason if isinstance(finish_reason, str) else "unknown"
    if finish == "length":
        raise invalid("answer truncated (finish_reason=length)")
    content = getattr(getattr(first, "message", None), "content", None)
    if not isinstance(content, str) or not content.strip():
        raise invalid(f"response has no text content (finish_reason={finish})")
    return content, tokens_in, tokens_out


def build_groq_provider(
    api_key: SecretStr | str,
    model: str,
    timeout_s: float,
    base_url: str | None = None,
    http_client: httpx.AsyncClient | None = None,
    *,
    retry: RetryPolicy = RetryPolicy(),
    sleep: Sleep = DEFAULT_SLEEP,
    clock: Clock | None = None,
    strict: bool = True,
    temperature: float = 0.0,
    reasoning_effort: ReasoningEffort | None = None,
    max_output_tokens: int | None = None,
) -> GroqSelectionProvider:
    """An ``AsyncGroq`` client with ``max_retries=0`` (retries are ours, counted) wrapped as a provider.

    ``clock`` is only used to interpret an HTTP-date ``retry-after``; without it such a header waits the cap.
    """
    key = sdk_key(api_key, "groq", timeout_s)
    client = groq.AsyncGroq(
        api_key=key,
        base_url=base_url,
        timeout=timeout_s,
        max_retries=0,
        http_client=http_client,
    )
    return GroqSelectionProvider(
        client,
        model=model,
        redactor=Redactor(key),
        retry=retry,
        sleep=sleep,
        clock=clock,
        strict=strict,
        temperature=temperature,
        reasoning_effort=reasoning_effort,
        max_output_tokens=max_output_tokens,
    )

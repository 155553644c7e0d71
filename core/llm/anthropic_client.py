"""Anthropic selection provider: Messages API with one strict tool and forced ``tool_choice``.

The anthropic 2.x SDK is built on httpx2 (not httpx): an injected ``http_client`` must be an
``httpx2.AsyncClient``. Forced tool choice cannot be combined with extended thinking, so none is requested; the
2.x ``messages.create`` takes no sampling parameters (no ``temperature``), so none are sent.
"""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2
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

ANTHROPIC_ERRORS = SdkErrorTypes(
    timeout=anthropic.APITimeoutError,
    connection=anthropic.APIConnectionError,
    status=anthropic.APIStatusError,
    response_validation=anthropic.APIResponseValidationError,
)
TOOL_DESCRIPTION = "Record one strategy choice, from the allowed strategy names, for every symbol in the market data."


class AnthropicSelectionProvider(SdkSelectionProvider):
    """Implements :class:`~core.llm.providers.SelectionProvider` over an ``AsyncAnthropic`` client."""

    vendor = "anthropic"
    errors = ANTHROPIC_ERRORS
    api_error = anthropic.APIError

    def __init__(
        self,
        client: anthropic.AsyncAnthropic,
        *,
        model: str,
        redactor: Redactor,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Sleep = DEFAULT_SLEEP,
        clock: Clock | None = None,
        strict_tool: bool = True,
        max_output_tokens: int | None = None,
    ) -> None:
        super().__init__(client, model=model, redactor=redactor, retry=retry, sleep=sleep, clock=clock)
        self._strict_tool = strict_tool
        self._max_output_tokens = max_output_tokens

    def __repr__(self) -> str:
        return (
            f"AnthropicSelectionProvider(model={self._model!r}, strict_tool={self._strict_tool}, "
            f"base_url={str(self._client.base_url)!r})"
        )

    def _params(self, request: SelectionRequest) -> dict[str, Any]:
        tool: dict[str, Any] = {
            "name": request.tool_name,
            "description": TOOL_DESCRIPTION,
            "input_schema": dict(request.schema),
        }
        if self._strict_tool:
            tool["strict"] = True
        return {
            "model": self._model,
            "max_tokens": self._max_output_tokens or request.max_output_tokens,
            "system": request.system,
            "messages": [{"role": "user", "content": request.user}],
            "tools": [tool],
            "tool_choice": {"type": "tool", "name": request.tool_name},
        }

    async def _create(self, params: dict[str, Any]) -> Any:
        return await self._client.messages.create(**params)

    def _extract(self, response: Any, request: SelectionRequest) -> tuple[Any, int, int]:
        return _extract(response, request.tool_name)


def _extract(response: Any, tool_name: str) -> tuple[Any, int, int]:
    """The forced tool call's ``input``; the SDK builds models leniently, so check every step."""
    usage = getattr(response, "usage", None)
    tokens_in = non_negative_int(getattr(usage, "input_tokens", 0))
    tokens_out = non_negative_int(getattr(usage, "output_tokens", 0))

    def invalid(message: str) -> AttemptFailure:
        return AttemptFailure(CallOutcome.INVALID, message, input_tokens=tokens_in, output_tokens=tokens_out)

    raw_stop = getattr(response, "stop_reason", None)
    stop = raw_stop if isinstance(raw_stop, str) else "unknown"
    if stop == "max_tokens":
        raise invalid("answer truncated (stop_reason=max_tokens)")
    if stop == "refusal":
        raise invalid("the model refused to answer (stop_reason=refusal)")
    content = getattr(response, "content", None)
    blocks = content if isinstance(content, list) else []
    for block in blocks:
        if getattr(block, "type", None) == "tool_use" and getattr(block, "name", None) == tool_name:
            if not hasattr(block, "input"):
                raise invalid(f"tool call {tool_name!r} has no input")
            return block.input, tokens_in, tokens_out
    raise invalid(f"response has no {tool_name!r} tool call (stop_reason={stop})")


def build_anthropic_provider(
    api_key: SecretStr | str,
    model: str,
    timeout_s: float,
    base_url: str | None = None,
    http_client: httpx2.AsyncClient | None = None,
    *,
    retry: RetryPolicy = RetryPolicy(),
    sleep: Sleep = DEFAULT_SLEEP,
    clock: Clock | None = None,
    strict_tool: bool = True,
    max_output_tokens: int | None = None,
) -> AnthropicSelectionProvider:
    """An ``AsyncAnthropic`` client with ``max_retries=0`` (retries are ours, counted) wrapped as a provider.

    ``clock`` is only used to interpret an HTTP-date ``retry-after``; without it such a header waits the cap.
    """
    key = sdk_key(api_key, "anthropic", timeout_s)
    client = anthropic.AsyncAnthropic(
        api_key=key,
        base_url=base_url,
        timeout=timeout_s,
        max_retries=0,
        http_client=http_client,
    )
    return AnthropicSelectionProvider(
        client,
        model=model,
        redactor=Redactor(key),
        retry=retry,
        sleep=sleep,
        clock=clock,
        strict_tool=strict_tool,
        max_output_tokens=max_output_tokens,
    )

"""Fake transports and helpers for the LLM tests.

The real SDK clients (``AsyncGroq`` on httpx, ``AsyncAnthropic`` on httpx2) are used; only the transport is fake.
A *model* here is a function ``(symbols, allowed) -> answer`` turned into an HTTP handler that reads the symbols and
allowed names back from the request's schema, so the fake only knows what really went over the wire.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from collections.abc import Callable, Sequence

import httpx
import httpx2

from core.llm import (
    DailyBudget,
    LLMSelector,
    PriceTable,
    RetryPolicy,
    build_anthropic_provider,
    build_groq_provider,
)

GROQ_KEY = "gsk_test_SECRET_groq_key_0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-test-SECRET-anthropic-key-0123456789"
GROQ_MODEL = "openai/gpt-oss-120b"
ANTHROPIC_MODEL = "claude-haiku-4-5"
ALLOWED = ("trend_following", "mean_reversion", "breakout")
DESCRIPTIONS = {
    "trend_following": "Rides persistent trends (SMA crossover with ADX filter).",
    "mean_reversion": "Fades stretched moves back to the mean (RSI/Bollinger).",
    "breakout": "Buys range breakouts on rising volume.",
}
T0 = datetime(2025, 3, 3, 14, 30, tzinfo=UTC)

Answer = Callable[[Sequence[str], Sequence[str]], Any]


def context(i: int = 0, regime: str = "trending") -> dict[str, float | str]:
    return {"volatility": 0.2 + i / 1000, "trend_strength": 0.5, "volume_ratio": 1.1, "regime": regime}


def contexts(n: int) -> dict[str, dict[str, float | str]]:
    return {f"S{i:03d}": context(i) for i in range(n)}


def answer_all(strategy: str = "trend_following") -> Answer:
    return lambda symbols, allowed: {
        "choices": [{"symbol": s, "strategy": strategy, "reason": f"{s} trend_strength=0.5"} for s in symbols]
    }


# ---------------------------------------------------------------------------------------------------------------- time


class FakeClock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


class FakeMonotonic:
    """Advances by ``step`` seconds on every read, so latencies are deterministic and non-zero."""

    def __init__(self, step: float = 0.25) -> None:
        self.t = 1000.0
        self.step = step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


@dataclass
class RecordingSleep:
    delays: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


# ---------------------------------------------------------------------------------------------------------------- wire


def groq_schema(body: dict[str, Any]) -> dict[str, Any]:
    return body["response_format"]["json_schema"]["schema"]


def anthropic_schema(body: dict[str, Any]) -> dict[str, Any]:
    return body["tools"][0]["input_schema"]


def asked_from_schema(schema: dict[str, Any]) -> tuple[list[str], list[str]]:
    item = schema["properties"]["choices"]["items"]["properties"]
    return item["symbol"]["enum"], item["strategy"]["enum"]


def groq_completion(
    content: str | None, *, prompt_tokens: int = 1200, completion_tokens: int = 300, finish_reason: str = "stop"
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_741_000_000,
        "model": GROQ_MODEL,
        "choices": [{"index": 0, "finish_reason": finish_reason, "message": {"role": "assistant", "content": content}}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def anthropic_message(
    tool_input: Any = None,
    *,
    input_tokens: int = 1500,
    output_tokens: int = 400,
    with_tool: bool = True,
    stop_reason: str = "tool_use",
    text: str | None = None,
) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if text is not None:
        content.append({"type": "text", "text": text})
    if with_tool:
        content.append({"type": "tool_use", "id": "toolu_1", "name": "choose_strategies", "input": tool_input})
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": ANTHROPIC_MODEL,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "content": content,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


@dataclass
class Wire:
    """Requests seen by a fake transport (decoded JSON bodies and headers)."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.bodies)


Step = Callable[[dict[str, Any]], Any]  # body → httpx(2).Response or raises


def groq_handler(steps: Sequence[Step | Answer] | Answer, wire: Wire) -> Callable[[httpx.Request], httpx.Response]:
    """``steps``: one per request (the last repeats). A step returning a response is used as is; a 2-arg *Answer*
    becomes a 200 completion whose content is ``json.dumps(answer)`` (or the string itself)."""
    seq = list(steps) if isinstance(steps, (list, tuple)) else [steps]

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        wire.bodies.append(body)
        wire.headers.append(dict(request.headers))
        wire.urls.append(str(request.url))
        step = seq[min(len(wire.bodies) - 1, len(seq) - 1)]
        result = _run_step(step, body, groq_schema)
        if isinstance(result, httpx.Response):
            return result
        content = result if isinstance(result, str) or result is None else json.dumps(result)
        return httpx.Response(200, json=groq_completion(content))

    return handle


def anthropic_handler(
    steps: Sequence[Step | Answer] | Answer, wire: Wire
) -> Callable[[httpx2.Request], httpx2.Response]:
    seq = list(steps) if isinstance(steps, (list, tuple)) else [steps]

    def handle(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        wire.bodies.append(body)
        wire.headers.append(dict(request.headers))
        wire.urls.append(str(request.url))
        step = seq[min(len(wire.bodies) - 1, len(seq) - 1)]
        result = _run_step(step, body, anthropic_schema)
        if isinstance(result, httpx2.Response):
            return result
        return httpx2.Response(200, json=anthropic_message(result))

    return handle


def _run_step(step: Any, body: dict[str, Any], schema_of: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    import inspect

    required = [p for p in inspect.signature(step).parameters.values() if p.default is inspect.Parameter.empty]
    if len(required) == 2:
        symbols, allowed = asked_from_schema(schema_of(body))
        return step(symbols, allowed)
    return step(body)


# ---------------------------------------------------------------------------------------------------------------- wiring


def price_table() -> PriceTable:
    return PriceTable.from_mapping(
        {
            "providers": {
                "groq": {GROQ_MODEL: {"input": "0.15", "output": "0.60"}},
                "anthropic": {ANTHROPIC_MODEL: {"input": "1.00", "output": "5.00"}},
            }
        }
    )


@dataclass
class Rig:
    selector: LLMSelector
    groq_wire: Wire
    anthropic_wire: Wire
    sleep: RecordingSleep
    clock: FakeClock
    budget: DailyBudget


def make_rig(
    groq_steps: Any = None,
    anthropic_steps: Any = None,
    *,
    chunk_size: int = 40,
    max_calls: int = 1000,
    max_usd: Decimal = Decimal("100"),
    retry: RetryPolicy = RetryPolicy(),
    groq_model: str = GROQ_MODEL,
    clock: FakeClock | None = None,
    blind: bool = False,
    ranking: Any = None,
    on_budget_switch: Any = None,
) -> Rig:
    """A selector over real SDK clients and fake transports. ``None`` steps = that provider is not configured."""
    clock = clock or FakeClock()
    sleep = RecordingSleep()
    groq_wire, anthropic_wire = Wire(), Wire()
    providers = []
    if groq_steps is not None:
        providers.append(
            build_groq_provider(
                GROQ_KEY,
                groq_model,
                timeout_s=10.0,
                http_client=httpx.AsyncClient(transport=httpx.MockTransport(groq_handler(groq_steps, groq_wire))),
                retry=retry,
                sleep=sleep,
                clock=clock,
            )
        )
    if anthropic_steps is not None:
        providers.append(
            build_anthropic_provider(
                ANTHROPIC_KEY,
                ANTHROPIC_MODEL,
                timeout_s=10.0,
                http_client=httpx2.AsyncClient(
                    transport=httpx2.MockTransport(anthropic_handler(anthropic_steps, anthropic_wire))
                ),
                retry=retry,
                sleep=sleep,
                clock=clock,
            )
        )
    budget = DailyBudget(max_calls=max_calls, max_usd=max_usd, clock=clock)
    selector = LLMSelector(
        providers,
        budget=budget,
        prices=price_table(),
        chunk_size=chunk_size,
        clock=clock,
        monotonic=FakeMonotonic(),
        blind=blind,
        ranking=ranking,
        on_budget_switch=on_budget_switch,
    )
    return Rig(selector, groq_wire, anthropic_wire, sleep, clock, budget)

"""A local HTTP server that speaks the Groq chat-completions and the Anthropic Messages APIs, for the real SDK clients.

``GROQ_BASE_URL=http://127.0.0.1:PORT`` and ``ANTHROPIC_BASE_URL=http://127.0.0.1:PORT`` point the daemon at it.
Answers are valid by default: a strategy from the request's own schema for every symbol it asks about, and, for a
narration (a Messages request without tools), a narrative written with ``{name}`` references.

Token usage is *realistic*, not constant: input tokens are the request's characters / 4 (system, messages and the
schema or tool definition, as the providers count them, roughly), output tokens the answer's characters / 4, and a
reasoning model (``openai/gpt-oss-*``) adds reasoning tokens that grow with the symbol count (about 60 + 12 per
symbol at ``reasoning_effort=low``, twice that at medium). Every request body is kept in ``bodies``.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

NARRATIVE = (
    "Risk approved {approvals} orders and denied {denials}; {fills} fills were recorded and equity stands at ${equity}."
)
REASONING_PER_SYMBOL = {"low": 12, "default": 18, "medium": 24, "high": 48}


def tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


Strategy = Callable[[str, list[str]], str]  # (symbol, allowed) -> strategy name


def first_allowed(symbol: str, allowed: list[str]) -> str:
    return allowed[sum(map(ord, symbol)) % len(allowed)]


@dataclass
class FakeLLM:
    pick: Strategy = first_allowed
    narrative: str = NARRATIVE
    bodies: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def groq(self, body: dict[str, Any]) -> dict[str, Any]:
        schema = body["response_format"]["json_schema"]["schema"]
        item = schema["properties"]["choices"]["items"]["properties"]
        symbols, allowed = item["symbol"]["enum"], item["strategy"]["enum"]
        answer = {
            "choices": [
                {"symbol": s, "strategy": self.pick(s, allowed), "reason": f"{s}: trend and volatility fit"}
                for s in symbols
            ]
        }
        content = json.dumps(answer)
        prompt = "".join(m["content"] for m in body["messages"]) + json.dumps(body["response_format"])
        reasoning = 0
        if str(body.get("model", "")).startswith("openai/gpt-oss"):
            reasoning = 60 + REASONING_PER_SYMBOL.get(body.get("reasoning_effort") or "default", 18) * len(symbols)
        completion = tokens(content) + reasoning
        return {
            "id": f"chatcmpl-{len(self.bodies)}",
            "object": "chat.completion",
            "created": 1_741_000_000,
            "model": body.get("model"),
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": {
                "prompt_tokens": tokens(prompt),
                "completion_tokens": completion,
                "total_tokens": tokens(prompt) + completion,
                "completion_tokens_details": {"reasoning_tokens": reasoning},
            },
        }

    def anthropic(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = str(body.get("system", "")) + "".join(str(m["content"]) for m in body["messages"])
        if body.get("tools"):
            tool = body["tools"][0]
            prompt += json.dumps(tool)
            item = tool["input_schema"]["properties"]["choices"]["items"]["properties"]
            symbols, allowed = item["symbol"]["enum"], item["strategy"]["enum"]
            answer = {
                "choices": [{"symbol": s, "strategy": self.pick(s, allowed), "reason": f"{s}: fit"} for s in symbols]
            }
            content = [{"type": "tool_use", "id": "toolu_1", "name": tool["name"], "input": answer}]
            out, stop = tokens(json.dumps(answer)), "tool_use"
        else:
            content, out, stop = [{"type": "text", "text": self.narrative}], tokens(self.narrative), "end_turn"
        return {
            "id": f"msg_{len(self.bodies)}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model"),
            "stop_reason": stop,
            "stop_sequence": None,
            "content": content,
            "usage": {"input_tokens": tokens(prompt), "output_tokens": out},
        }

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                fake.bodies.append(body)
                fake.paths.append(self.path)
                answer = fake.groq(body) if self.path.endswith("/chat/completions") else fake.anthropic(body)
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


@contextmanager
def serve_fake_llm(fake: FakeLLM | None = None) -> Iterator[tuple[FakeLLM, str]]:
    """``(fake, base_url)`` served on 127.0.0.1 in a thread, shut down afterwards."""
    fake = fake or FakeLLM()
    server = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()

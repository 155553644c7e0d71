"""A local HTTP receiver for apprise's JSON webhook (``json://127.0.0.1:PORT/path``): it keeps every POST, and can
answer 500 or hang until released."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Receiver:
    port: int
    mode: str = "ok"  # ok | error (HTTP 500) | hang (no answer until ``release`` is set)
    posts: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    received: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.port}/{path.lstrip('/')}"

    @property
    def bodies(self) -> list[str]:
        return [p["message"] for p in self.posts]

    def titles(self) -> list[str]:
        return [p["title"] for p in self.posts]


@contextmanager
def receiver(mode: str = "ok") -> Iterator[Receiver]:
    state = Receiver(port=0, mode=mode)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length") or 0)
            payload = json.loads(self.rfile.read(length) or b"{}")
            state.paths.append(self.path)
            if state.mode == "hang":
                state.received.set()
                state.release.wait(30)
                return
            state.posts.append(payload)
            state.received.set()
            self.send_response(500 if state.mode == "error" else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # silent
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()

"""A fake Alpaca HTTP server on 127.0.0.1 for driving the real alpaca-py clients in tests.

The server is a small router: ``route(method, "/v2/orders/{order_id}", handler, spec=...)`` registers a handler
that receives a :class:`RecordedRequest` and returns a :class:`Reply` (or a :class:`Hang`). On top of the handlers:

- a request log (``requests``, ``requests_to(method, template)``) recording every request, auth headers included;
- scripted actions (``script(method, template, *actions)``) consumed first-in first-out before the handler runs,
  for faults such as a 429 with ``Retry-After``, a 500, a hung connection, an empty or malformed body;
- credentials: with ``api_key``/``secret_key`` set, requests without the matching ``APCA-API-*`` headers get 401
  (checked against the spec only where the operation declares 401: most trading operations do not);
- the official OpenAPI spec: when a route has ``spec=OpenApiSpec``, query parameters are checked against the
  operation's parameters, and **every JSON reply** is checked against the spec (status declared for the operation,
  body valid against the response schema with ``$ref`` resolved, declared headers well-typed). A violation is
  recorded in ``problems`` and answered with a plain-text 500, so the fake cannot drift from the real API
  unnoticed. Deliberately broken bodies (empty, malformed) are raw bytes, not JSON replies, and are not checked.

:class:`StockBarsEndpoint` implements ``GET /v2/stocks/bars`` (multi-symbol, ``start``/``end``, ``limit``,
``page_token``/``next_page_token`` pagination, results sorted by symbol then time) over an in-memory data set;
:class:`StockLatestQuotesEndpoint` implements ``GET /v2/stocks/quotes/latest`` (set quotes, or quotes derived from
the bars' last closes).
Trading endpoints can be added the same way with a spec loaded from ``trading-api.json``.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import re
import threading
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import MappingProxyType
from typing import Any
from collections.abc import Callable, Iterable, Mapping, Sequence
from urllib.parse import parse_qs, quote, urlsplit
from zoneinfo import ZoneInfo

import numpy as np
from loguru import logger
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

__all__ = [
    "ABSENT",
    "BARS_PATH",
    "FakeAlpacaServer",
    "Hang",
    "MARKET_DATA_SPEC_PATH",
    "OpenApiSpec",
    "RecordedRequest",
    "Reply",
    "SHARED_DIR",
    "QUOTES_LATEST_PATH",
    "StockBarsEndpoint",
    "StockLatestQuotesEndpoint",
    "TRADING_SPEC_PATH",
    "bar_time",
    "empty_body",
    "malformed_json",
    "server_error",
    "synthetic_daily_bars",
    "too_many_requests",
    "weekday_sessions",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR = REPO_ROOT.parent / "shared"
MARKET_DATA_SPEC_PATH = SHARED_DIR / "specs" / "alpaca" / "market-data-api.json"
TRADING_SPEC_PATH = SHARED_DIR / "specs" / "alpaca" / "trading-api.json"
BARS_PATH = "/v2/stocks/bars"
NEW_YORK = ZoneInfo("America/New_York")

_HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


class _Absent:
    """Marker for "no JSON body" in :class:`Reply` (``None`` is a valid JSON body: ``null``)."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


# ====================================================================================== OpenAPI spec checks


def _pointer(*segments: str | int) -> str:
    """A JSON pointer fragment (``#/a/b~1c``), percent-encoded as ``referencing`` expects."""
    escaped = (str(segment).replace("~", "~0").replace("/", "~1") for segment in segments)
    return "#" + quote("/" + "/".join(escaped), safe="/~")


class OpenApiSpec:
    """An OpenAPI 3.0 document able to check requests and responses of its operations.

    ``$ref`` are resolved through a ``referencing`` registry holding the whole document, and values are checked
    with ``openapi-schema-validator``'s OAS 3.0 validator (``nullable``, formats such as ``date-time``).
    """

    def __init__(self, document: Mapping[str, Any], uri: str) -> None:
        if not str(document.get("openapi", "")).startswith("3.0"):
            raise ValueError(f"{uri}: expected an OpenAPI 3.0 document, got {document.get('openapi')!r}")
        self._document = document
        self._uri = uri
        self._registry = Registry().with_resource(uri, Resource.from_contents(document, default_specification=DRAFT4))
        self._resolver = self._registry.resolver(base_uri=uri)
        self._validators: dict[str, OAS30Validator] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path) -> OpenApiSpec:
        path = Path(path)
        with path.open(encoding="utf-8") as handle:
            document = json.load(handle)
        return cls(document, path.resolve().as_uri())

    @property
    def document(self) -> Mapping[str, Any]:
        return self._document

    # ---------------------------------------------------------------- lookups

    def _resolve(self, node: Any, pointer: str) -> tuple[Any, str]:
        """Follow ``$ref`` chains from ``node`` (found at ``pointer``); return the target and its pointer."""
        for _ in range(32):
            if not (isinstance(node, Mapping) and isinstance(node.get("$ref"), str)):
                return node, pointer
            ref = node["$ref"]
            if not ref.startswith("#"):
                raise ValueError(f"only local $ref are supported, got {ref!r}")
            node = self._resolver.lookup(ref).contents
            pointer = ref
        raise ValueError(f"$ref chain too long at {pointer}")

    def operation(self, method: str, template: str) -> Mapping[str, Any]:
        try:
            return self._document["paths"][template][method.lower()]
        except KeyError:
            raise KeyError(f"the spec has no operation {method.upper()} {template}") from None

    def _validator(self, pointer: str) -> OAS30Validator:
        with self._lock:
            validator = self._validators.get(pointer)
            if validator is None:
                validator = OAS30Validator(
                    {"$ref": self._uri + pointer}, registry=self._registry, format_checker=oas30_format_checker
                )
                self._validators[pointer] = validator
            return validator

    def _errors(self, pointer: str, value: Any, where: str) -> list[str]:
        problems = []
        for error in sorted(self._validator(pointer).iter_errors(value), key=lambda e: list(e.absolute_path)):
            location = "/".join(str(part) for part in error.absolute_path) or "(root)"
            problems.append(f"{where}: {location}: {error.message}")
        return problems

    def example(self, method: str, template: str, status: int | str = 200, name: str | None = None) -> Any:
        """The example body the spec gives for a response (first example unless ``name`` is given)."""
        operation = self.operation(method, template)
        pointer = _pointer("paths", template, method.lower(), "responses", str(status))
        response, _ = self._resolve(operation["responses"][str(status)], pointer)
        media = response["content"]["application/json"]
        if "example" in media:
            return media["example"]
        examples = media["examples"]
        chosen = examples[name] if name is not None else next(iter(examples.values()))
        chosen, _ = self._resolve(chosen, "")
        return chosen["value"]

    # ---------------------------------------------------------------- requests

    def _parameters(self, method: str, template: str) -> list[tuple[Mapping[str, Any], str]]:
        """Path-level then operation-level parameters, resolved, with the pointer of each one's schema."""
        path_item = self._document["paths"][template]
        found: dict[tuple[str, str], tuple[Mapping[str, Any], str]] = {}
        for owner, base in ((path_item, ("paths", template)), (self.operation(method, template), None)):
            if base is None:
                base = ("paths", template, method.lower())
            for index, raw in enumerate(owner.get("parameters", [])):
                parameter, pointer = self._resolve(raw, _pointer(*base, "parameters", index))
                found[(parameter["in"], parameter["name"])] = (parameter, pointer)
        return list(found.values())

    def request_problems(self, method: str, template: str, query: Mapping[str, Sequence[str]]) -> list[str]:
        """Undeclared, missing required, or ill-typed query parameters of a request to an operation."""
        where = f"{method.upper()} {template} request"
        problems: list[str] = []
        declared = set()
        for parameter, pointer in self._parameters(method, template):
            if parameter["in"] != "query":
                continue
            name = parameter["name"]
            declared.add(name)
            values = query.get(name)
            if not values:
                if parameter.get("required"):
                    problems.append(f"{where}: missing required query parameter {name!r}")
                continue
            if len(values) > 1:
                problems.append(f"{where}: query parameter {name!r} given {len(values)} times")
            schema_pointer = pointer + quote("/schema", safe="/~")
            schema, _ = self._resolve(parameter.get("schema", {}), schema_pointer)
            value, error = _coerce(values[-1], schema)
            if error:
                problems.append(f"{where}: query parameter {name!r}: {error}")
                continue
            problems.extend(self._errors(schema_pointer, value, f"{where} parameter {name!r}"))
        for name in query:
            if name not in declared:
                problems.append(f"{where}: undeclared query parameter {name!r}")
        return problems

    def body_problems(self, method: str, template: str, body: bytes) -> list[str]:
        """Check a request body against the operation's JSON ``requestBody`` (if it declares one)."""
        where = f"{method.upper()} {template} request body"
        operation = self.operation(method, template)
        if "requestBody" not in operation:
            return [f"{where}: the operation takes no body"] if body else []
        pointer = _pointer("paths", template, method.lower(), "requestBody")
        request_body, pointer = self._resolve(operation["requestBody"], pointer)
        media = (request_body.get("content") or {}).get("application/json")
        if not body:
            return [f"{where}: required body missing"] if request_body.get("required") else []
        if media is None or "schema" not in media:
            return []
        try:
            value = json.loads(body)
        except ValueError:
            return [f"{where}: not JSON"]
        return self._errors(pointer + quote("/content/application~1json/schema", safe="/~"), value, where)

    # ---------------------------------------------------------------- responses

    def response_problems(
        self,
        method: str,
        template: str,
        status: int,
        body: Any,
        headers: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Check a JSON reply: status declared, body valid against the response schema, headers well-typed."""
        where = f"{method.upper()} {template} -> {status}"
        operation = self.operation(method, template)
        responses = operation.get("responses", {})
        key = str(status) if str(status) in responses else ("default" if "default" in responses else None)
        if key is None:
            return [f"{where}: status {status} is not declared for this operation (declared: {', '.join(responses)})"]
        response_pointer = _pointer("paths", template, method.lower(), "responses", key)
        response, response_pointer = self._resolve(responses[key], response_pointer)
        problems: list[str] = []
        content = response.get("content") or {}
        media = content.get("application/json")
        if media is not None and "schema" in media:
            schema_pointer = response_pointer + quote("/content/application~1json/schema", safe="/~")
            problems.extend(self._errors(schema_pointer, body, where))
        elif content and "application/json" not in content:
            problems.append(f"{where}: a JSON body, but the spec declares only {', '.join(content)}")
        for name, raw_header in (response.get("headers") or {}).items():
            value = _header(headers or {}, name)
            if value is None:
                continue
            header_pointer = response_pointer + quote(
                "/headers/" + name.replace("~", "~0").replace("/", "~1"), safe="/~"
            )
            header, header_pointer = self._resolve(raw_header, header_pointer)
            schema_pointer = header_pointer + quote("/schema", safe="/~")
            schema, _ = self._resolve(header.get("schema", {}), schema_pointer)
            coerced, error = _coerce(value, schema)
            if error:
                problems.append(f"{where}: header {name}: {error}")
            else:
                problems.extend(self._errors(schema_pointer, coerced, f"{where} header {name}"))
        return problems


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def _coerce(text: str, schema: Mapping[str, Any]) -> tuple[Any, str | None]:
    """Turn a query/header string into the JSON value its (resolved) schema describes."""
    kind = schema.get("type")
    if kind == "integer":
        try:
            return int(text), None
        except ValueError:
            return None, f"{text!r} is not an integer"
    if kind == "number":
        try:
            return float(text), None
        except ValueError:
            return None, f"{text!r} is not a number"
    if kind == "boolean":
        if text in ("true", "false"):
            return text == "true", None
        return None, f"{text!r} is not a boolean"
    if kind == "array":
        return text.split(","), None
    return text, None


# ====================================================================================== requests and replies


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    params: Mapping[str, tuple[str, ...]]
    headers: Mapping[str, str]
    body: bytes
    route: str | None = None
    path_params: Mapping[str, str] = field(default_factory=dict)
    received_at: float = 0.0

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.params.get(name)
        return values[-1] if values else default

    def header(self, name: str) -> str | None:
        return _header(self.headers, name)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class Reply:
    """What the fake answers: a JSON body (checked against the spec) or raw bytes (never checked)."""

    status: int = 200
    json: Any = ABSENT
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/json; charset=UTF-8"

    def __post_init__(self) -> None:
        if self.json is not ABSENT and self.body:
            raise ValueError("a Reply has either a JSON body or raw bytes, not both")


@dataclass(frozen=True, slots=True)
class Hang:
    """Hold the request for ``seconds`` (or until the server stops), then send ``then`` or drop the connection."""

    seconds: float
    then: Reply | None = None


Action = Reply | Hang
Handler = Callable[[RecordedRequest], Action]


def too_many_requests(retry_after: float | None = 0.2, *, reset_epoch: int | None = None) -> Reply:
    """HTTP 429 as Alpaca sends it (JSON message), with an optional ``Retry-After`` and ``X-RateLimit-Reset``."""
    headers = {"X-RateLimit-Limit": "200", "X-RateLimit-Remaining": "0"}
    if retry_after is not None:
        headers["Retry-After"] = f"{retry_after:g}"
    if reset_epoch is not None:
        headers["X-RateLimit-Reset"] = str(reset_epoch)
    return Reply(429, json={"message": "too many requests."}, headers=headers)


def server_error(status: int = 500, message: str = "internal server error") -> Reply:
    return Reply(status, json={"message": message})


def empty_body(status: int = 200) -> Reply:
    return Reply(status, body=b"")


def malformed_json(status: int = 200) -> Reply:
    return Reply(status, body=b'{"bars": {"AAPL": [{"t": "2024-01-02T05:00:00Z", "o": 1.0,')


# ====================================================================================== the server


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Handler
    spec: OpenApiSpec | None


def _template_pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[A-Za-z_][A-Za-z0-9_]*\})", template)
    regex = "".join(
        f"(?P<{part[1:-1]}>[^/]+)" if part.startswith("{") and part.endswith("}") else re.escape(part) for part in parts
    )
    return re.compile(f"^{regex}$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self.server.fake._dispatch(self)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        logger.debug("fake alpaca: {}", format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fake: FakeAlpacaServer) -> None:
        self.fake = fake
        super().__init__(address, _Handler)


class FakeAlpacaServer:
    """A threaded HTTP server on ``host:0`` with routes, scripted actions, a request log and spec checks."""

    def __init__(self, *, api_key: str | None = None, secret_key: str | None = None, host: str = "127.0.0.1") -> None:
        if (api_key is None) != (secret_key is None):
            raise ValueError("give both api_key and secret_key, or neither")
        self._credentials = (api_key, secret_key) if api_key is not None else None
        self._host = host
        self._lock = threading.Lock()
        self._routes: list[_Route] = []
        self._scripts: dict[tuple[str, str], list[Action]] = {}
        self._log: list[RecordedRequest] = []
        self._problems: list[str] = []
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> FakeAlpacaServer:
        if self._server is not None:
            raise RuntimeError("server already started")
        self._stopping.clear()
        self._server = _Server((self._host, 0), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-alpaca", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()  # releases hung handlers at once
        self._server.shutdown()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeAlpacaServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` without ``/v2``: what alpaca-py's ``url_override`` expects."""
        if self._server is None:
            raise RuntimeError("server not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # ---------------------------------------------------------------- configuration

    def route(self, method: str, template: str, handler: Handler, *, spec: OpenApiSpec | None = None) -> None:
        """Serve ``method template`` (``{name}`` segments match one path segment) with ``handler``.

        With ``spec``, the operation must exist in it; requests and JSON replies are then checked against it.
        A later route for the same method and template replaces the earlier one.
        """
        method = method.upper()
        if method not in _HTTP_METHODS:
            raise ValueError(f"unsupported method {method!r}")
        if spec is not None:
            spec.operation(method, template)  # KeyError when the spec has no such operation
        entry = _Route(method, template, _template_pattern(template), handler, spec)
        with self._lock:
            self._routes = [r for r in self._routes if (r.method, r.template) != (method, template)] + [entry]

    def script(self, method: str, template: str, *actions: Action) -> None:
        """Queue actions answered, in order, by the next requests to a route, before its handler is used."""
        with self._lock:
            self._scripts.setdefault((method.upper(), template), []).extend(actions)

    def pending_script(self, method: str, template: str) -> int:
        with self._lock:
            return len(self._scripts.get((method.upper(), template), []))

    # ---------------------------------------------------------------- inspection

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._log)

    def requests_to(self, method: str, template: str) -> list[RecordedRequest]:
        method = method.upper()
        with self._lock:
            return [r for r in self._log if r.method == method and r.route == template]

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    @property
    def problems(self) -> list[str]:
        """Spec violations and handler crashes seen so far."""
        with self._lock:
            return list(self._problems)

    def clear_problems(self) -> None:
        with self._lock:
            self._problems.clear()

    def assert_clean(self) -> None:
        problems = self.problems
        if problems:
            raise AssertionError("fake Alpaca server problems:\n  " + "\n  ".join(problems))

    # ---------------------------------------------------------------- serving

    def _problem(self, text: str) -> None:
        logger.error("fake alpaca: {}", text)
        with self._lock:
            self._problems.append(text)

    def _match(self, method: str, path: str) -> tuple[_Route | None, dict[str, str]]:
        with self._lock:
            routes = list(self._routes)
        for route in routes:
            if route.method == method:
                matched = route.pattern.match(path)
                if matched:
                    return route, matched.groupdict()
        return None, {}

    def _dispatch(self, handler: _Handler) -> None:
        method = handler.command.upper()
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        route, path_params = self._match(method, parts.path)
        request = RecordedRequest(
            method=method,
            path=parts.path,
            params=MappingProxyType({k: tuple(v) for k, v in parse_qs(parts.query, keep_blank_values=True).items()}),
            headers=MappingProxyType(dict(handler.headers.items())),
            body=body,
            route=route.template if route else None,
            path_params=MappingProxyType(path_params),
            received_at=time.monotonic(),
        )
        with self._lock:
            self._log.append(request)
        if route is None:
            self._write(handler, Reply(404, body=b"fake alpaca: no route", content_type="text/plain"))
            return
        action, check = self._action(route, request)
        if isinstance(action, Hang):
            released = self._stopping.wait(action.seconds)
            if action.then is None or released:
                handler.close_connection = True
                return
            action = action.then
        if check and action.json is not ABSENT and route.spec is not None:
            problems = route.spec.response_problems(method, route.template, action.status, action.json, action.headers)
            if problems:
                for problem in problems:
                    self._problem(f"reply violates the spec: {problem}")
                action = Reply(500, body=b"fake alpaca: reply violates the spec", content_type="text/plain")
        self._write(handler, action)

    def _action(self, route: _Route, request: RecordedRequest) -> tuple[Action, bool]:
        """The action for a request, and whether its JSON reply must be checked against the spec."""
        if self._credentials is not None:
            key, secret = self._credentials
            if request.header("APCA-API-KEY-ID") != key or request.header("APCA-API-SECRET-KEY") != secret:
                # Alpaca answers 401 to bad credentials on every endpoint, but most trading operations do not
                # declare it: checked only where the spec declares it.
                declared = route.spec is not None and "401" in route.spec.operation(route.method, route.template).get(
                    "responses", {}
                )
                return Reply(401, json={"message": "unauthorized."}), declared
        if route.spec is not None:
            problems = route.spec.request_problems(request.method, route.template, request.params)
            problems += route.spec.body_problems(request.method, route.template, request.body)
            if problems:
                for problem in problems:
                    self._problem(problem)
                return Reply(400, json={"message": "; ".join(problems)}), False
        with self._lock:
            queue = self._scripts.get((route.method, route.template))
            scripted = queue.pop(0) if queue else None
        if scripted is not None:
            return scripted, True
        try:
            action = route.handler(request)
        except Exception as exc:  # a crash of test code: recorded, answered, and reported by assert_clean()
            self._problem(f"handler for {route.method} {route.template} raised {type(exc).__name__}: {exc}")
            return Reply(500, body=b"fake alpaca: handler crashed", content_type="text/plain"), False
        if not isinstance(action, (Reply, Hang)):
            self._problem(f"handler for {route.method} {route.template} returned {type(action).__name__}")
            return Reply(500, body=b"fake alpaca: handler returned no Reply", content_type="text/plain"), False
        return action, True

    def _write(self, handler: _Handler, reply: Reply) -> None:
        payload = json.dumps(reply.json).encode() if reply.json is not ABSENT else reply.body
        try:
            handler.send_response(reply.status)
            handler.send_header("Content-Type", reply.content_type)
            handler.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(payload)
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True  # the client gave up (e.g. after its timeout)


# ====================================================================================== market data


def weekday_sessions(first: date, last: date) -> list[date]:
    """Monday-to-Friday dates from ``first`` to ``last`` inclusive."""
    days = []
    day = first
    while day <= last:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return days


def bar_time(day: date) -> str:
    """The ``t`` Alpaca gives a daily bar: midnight America/New_York, written in UTC (``...T05:00:00Z``)."""
    moment = datetime(day.year, day.month, day.day, tzinfo=NEW_YORK).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def synthetic_daily_bars(symbol: str, first: date, last: date, *, sessions: Iterable[date] | None = None) -> list[dict]:
    """Deterministic daily bars in Alpaca's wire format (a random walk seeded by the symbol) for weekdays."""
    days = list(sessions) if sessions is not None else weekday_sessions(first, last)
    rng = np.random.default_rng(zlib.crc32(symbol.encode()))
    base = 20.0 + (zlib.crc32(symbol.encode()) % 400)
    closes = base * np.exp(np.cumsum(rng.normal(0.0, 0.015, len(days))))
    opens = closes * (1 + rng.normal(0.0, 0.004, len(days)))
    highs = np.maximum(opens, closes) * (1 + np.abs(rng.normal(0.0, 0.006, len(days))))
    lows = np.minimum(opens, closes) * (1 - np.abs(rng.normal(0.0, 0.006, len(days))))
    volumes = rng.integers(100_000, 5_000_000, len(days))
    bars = []
    for i, day in enumerate(days):
        o, h, lo, c = (round(float(x[i]), 4) for x in (opens, highs, lows, closes))
        bars.append(
            {
                "t": bar_time(day),
                "o": o,
                "h": h,
                "l": lo,
                "c": c,
                "v": int(volumes[i]),
                "n": int(volumes[i] // 100),
                "vw": round((o + h + lo + c) / 4, 4),
            }
        )
    return bars


def _parse_instant(text: str, *, end_of_day: bool) -> datetime:
    """RFC-3339 or ``YYYY-MM-DD`` (a date means the start, or the end, of that New York day)."""
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        day = date.fromisoformat(text)
        if end_of_day:
            day += timedelta(days=1)
        moment = datetime(day.year, day.month, day.day, tzinfo=NEW_YORK).astimezone(UTC)
        return moment - timedelta(microseconds=1) if end_of_day else moment
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without offset: {text!r}")
    return moment.astimezone(UTC)


def _epoch(t: str) -> float:
    return datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()


class StockBarsEndpoint:
    """Handler for ``GET /v2/stocks/bars`` over an in-memory data set of wire-format bars.

    Serves daily bars only (``timeframe=1Day``/``1D``), ascending. Results are ordered by symbol then time; a page
    holds at most ``min(limit, max_page_size)`` bars (``limit`` defaults to 1000 as in the API) and, when more
    remain, an opaque ``next_page_token`` to pass back as ``page_token``. Symbols without bars in the window are
    absent from ``bars``, as with the real API.
    """

    def __init__(self, bars: Mapping[str, Sequence[Mapping[str, Any]]] | None = None, *, max_page_size: int = 10_000):
        if max_page_size < 1:
            raise ValueError("max_page_size must be >= 1")
        self.max_page_size = max_page_size
        self.quotes: StockLatestQuotesEndpoint | None = None
        self._lock = threading.Lock()
        self._bars: dict[str, list[dict]] = {}
        self._times: dict[str, list[float]] = {}
        for symbol, rows in (bars or {}).items():
            self.add_bars(symbol, rows)

    @classmethod
    def install(
        cls,
        server: FakeAlpacaServer,
        spec: OpenApiSpec | None,
        bars: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
        *,
        max_page_size: int = 10_000,
        quotes: bool = True,
    ) -> StockBarsEndpoint:
        """Serve the bars; with ``quotes`` (default) also ``GET /v2/stocks/quotes/latest`` from the same data (a
        :class:`StockLatestQuotesEndpoint`, kept as ``endpoint.quotes``), as the real API serves both."""
        endpoint = cls(bars, max_page_size=max_page_size)
        server.route("GET", BARS_PATH, endpoint, spec=spec)
        if quotes:
            endpoint.quotes = StockLatestQuotesEndpoint.install(server, spec, endpoint)
        return endpoint

    def add_bars(self, symbol: str, rows: Iterable[Mapping[str, Any]]) -> None:
        """Add (or replace, by ``t``) bars of ``symbol``."""
        with self._lock:
            merged = {bar["t"]: dict(bar) for bar in self._bars.get(symbol, [])}
            merged.update({bar["t"]: dict(bar) for bar in rows})
            ordered = sorted(merged.values(), key=lambda bar: _epoch(bar["t"]))
            self._bars[symbol] = ordered
            self._times[symbol] = [_epoch(bar["t"]) for bar in ordered]

    def bars(self, symbol: str) -> list[dict]:
        with self._lock:
            return [dict(bar) for bar in self._bars.get(symbol, [])]

    @staticmethod
    def _token(symbol: str, after: float) -> str:
        """Opaque to clients; like the real API's token it names the last symbol and time returned."""
        return base64.urlsafe_b64encode(json.dumps([symbol, after]).encode()).decode()

    @staticmethod
    def _untoken(token: str) -> tuple[str, float]:
        symbol, after = json.loads(base64.urlsafe_b64decode(token.encode()))
        if not isinstance(symbol, str) or not isinstance(after, (int, float)):
            raise ValueError("bad token")
        return symbol, float(after)

    def __call__(self, request: RecordedRequest) -> Reply:
        symbols = sorted({s for s in (request.param("symbols") or "").split(",") if s})
        if not symbols:
            return Reply(400, json={"message": "missing symbols"})
        if request.param("timeframe") not in ("1Day", "1D"):
            return Reply(400, json={"message": f"fake serves daily bars only, got {request.param('timeframe')!r}"})
        if request.param("sort", "asc") != "asc":
            return Reply(400, json={"message": "fake serves sort=asc only"})
        try:
            start = _parse_instant(request.param("start"), end_of_day=False) if request.param("start") else None
            end = _parse_instant(request.param("end"), end_of_day=True) if request.param("end") else None
        except ValueError as exc:
            return Reply(400, json={"message": f"invalid start or end: {exc}"})
        page_size = min(int(request.param("limit") or 1000), self.max_page_size)
        resume: tuple[str, float] | None = None
        if request.param("page_token"):
            try:
                resume = self._untoken(request.param("page_token") or "")
            except (ValueError, binascii.Error):
                return Reply(400, json={"message": "invalid page_token"})

        out: dict[str, list[dict]] = {}
        taken = 0
        last: tuple[str, float] | None = None
        next_token = None
        with self._lock:
            for symbol in symbols:
                if resume is not None and symbol < resume[0]:
                    continue
                times = self._times.get(symbol, [])
                lo = bisect.bisect_left(times, start.timestamp()) if start else 0
                hi = bisect.bisect_right(times, end.timestamp()) if end else len(times)
                if resume is not None and symbol == resume[0]:
                    lo = max(lo, bisect.bisect_right(times, resume[1]))
                if lo >= hi:
                    continue
                if taken == page_size:
                    assert last is not None
                    next_token = self._token(*last)
                    break
                count = min(hi - lo, page_size - taken)
                out[symbol] = [dict(bar) for bar in self._bars[symbol][lo : lo + count]]
                taken += count
                last = (symbol, times[lo + count - 1])
                if lo + count < hi:
                    next_token = self._token(*last)
                    break
        return Reply(200, json={"bars": out, "next_page_token": next_token})


QUOTES_LATEST_PATH = "/v2/stocks/quotes/latest"


class StockLatestQuotesEndpoint:
    """Handler for ``GET /v2/stocks/quotes/latest`` (multi-symbol; ``feed`` accepted as the spec allows).

    Quotes come from :meth:`set_quote`; with ``bars`` (a :class:`StockBarsEndpoint`), a symbol without a set quote
    is quoted around its last bar's close with a ``default_spread_bps`` spread, stamped at that bar's time. A
    symbol with neither is absent from ``quotes``, as with the real API. Every answer is checked against the spec.
    """

    def __init__(self, bars: StockBarsEndpoint | None = None, *, default_spread_bps: float = 2.0) -> None:
        self._bars = bars
        self.default_spread_bps = default_spread_bps
        self._lock = threading.Lock()
        self._quotes: dict[str, dict] = {}

    @classmethod
    def install(
        cls, server: FakeAlpacaServer, spec: OpenApiSpec | None, bars: StockBarsEndpoint | None = None, **kwargs: Any
    ) -> StockLatestQuotesEndpoint:
        endpoint = cls(bars, **kwargs)
        server.route("GET", QUOTES_LATEST_PATH, endpoint, spec=spec)
        return endpoint

    def set_quote(self, symbol: str, bid: float, ask: float, at: datetime | None = None) -> None:
        """Serve ``bid``/``ask`` for ``symbol`` (0 = no bid, or no ask, as in the API)."""
        moment = (at or datetime.now(UTC)).astimezone(UTC)
        wire = {
            "ap": ask, "as": 1, "ax": "V", "bp": bid, "bs": 1, "bx": "V", "c": ["R"],
            "t": moment.isoformat().replace("+00:00", "Z"), "z": "C",
        }  # fmt: skip
        with self._lock:
            self._quotes[symbol] = wire

    def _derived(self, symbol: str) -> dict | None:
        if self._bars is None:
            return None
        rows = self._bars.bars(symbol)
        if not rows:
            return None
        close = float(rows[-1]["c"])
        half = close * self.default_spread_bps / 20_000.0
        return {
            "ap": round(close + half, 4), "as": 1, "ax": "V", "bp": round(close - half, 4), "bs": 1, "bx": "V",
            "c": ["R"], "t": rows[-1]["t"], "z": "C",
        }  # fmt: skip

    def __call__(self, request: RecordedRequest) -> Reply:
        symbols = [s for s in (request.param("symbols") or "").split(",") if s]
        if not symbols:
            return Reply(400, json={"message": "missing symbols"})
        out: dict[str, dict] = {}
        with self._lock:
            explicit = {s: dict(self._quotes[s]) for s in symbols if s in self._quotes}
        for symbol in symbols:
            quote = explicit.get(symbol) or self._derived(symbol)
            if quote is not None:
                out[symbol] = quote
        return Reply(200, json={"quotes": out})

"""Keeping configured secrets out of the database: one scrubber at the boundary every write crosses.

:func:`install_database_scrubber` hooks the engine's ``before_cursor_execute``: every parameter of every statement
that writes (INSERT, UPDATE, ...) is searched for the configured secret values (API keys, passwords and tokens of
URL settings, see ``Settings.secret_values``) and each occurrence is replaced by ``***`` before the driver sees it.
Strings, JSON already serialised to text (SQLite) and JSON objects the driver serialises itself (psycopg's ``Json``
wrappers on PostgreSQL) are covered, at any depth. So text that came from outside - an LLM answer echoing a key in a
decision reason, an audit narrative, an error message - cannot reach a table through any repository method.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from collections.abc import Iterable

from sqlalchemy import Engine, event

__all__ = ["REDACTED", "SecretScrubber", "install_database_scrubber", "scrub_library_logs"]

REDACTED = "***"
_MIN_SECRET_LENGTH = 4  # shorter values would redact ordinary text


class SecretScrubber:
    """Replaces every configured secret value (and its JSON-escaped form) in text and nested structures."""

    def __init__(self, secrets: Iterable[str]) -> None:
        values: set[str] = set()
        for secret in secrets:
            if not secret or len(secret) < _MIN_SECRET_LENGTH:
                continue
            values.add(secret)
            escaped = json.dumps(secret)[1:-1]  # how the secret appears inside serialised JSON
            if escaped != secret:
                values.add(escaped)
        self._secrets = sorted(values, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self._secrets)} values)"

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value

    def value(self, value: Any) -> Any:
        """``value`` with every secret replaced: strings, bytes, dicts (keys too), lists and tuples, recursively."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, (bytes, bytearray)):
            try:
                decoded = bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                return value
            scrubbed = self.text(decoded)
            return value if scrubbed == decoded else scrubbed.encode("utf-8")
        if isinstance(value, dict):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.value(v) for v in value)
        wrapped = getattr(value, "obj", _MISSING)  # psycopg.types.json.Json / Jsonb: the object it will serialise
        if wrapped is not _MISSING and hasattr(value, "dumps"):
            scrubbed = self.value(wrapped)
            return value if scrubbed == wrapped else type(value)(scrubbed, value.dumps)
        return value


_MISSING = object()
_READS = ("SELECT", "PRAGMA", "SHOW", "EXPLAIN")


def install_database_scrubber(engine: Engine, secrets: Iterable[str]) -> SecretScrubber | None:
    """Scrub ``secrets`` from the parameters of every write statement run on ``engine`` (see the module docstring).

    Returns the scrubber, or None when there is nothing to scrub (no hook is installed then).
    """
    scrubber = SecretScrubber(secrets)
    if not scrubber:
        return None

    @event.listens_for(engine, "before_cursor_execute", retval=True)
    def _scrub(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> tuple[str, Any]:
        if statement.lstrip()[:7].upper().startswith(_READS) or not parameters:
            return statement, parameters
        if executemany:
            return statement, type(parameters)(_scrub_one(scrubber, p) for p in parameters) if isinstance(
                parameters, (list, tuple)
            ) else parameters
        return statement, _scrub_one(scrubber, parameters)

    return scrubber


def _scrub_one(scrubber: SecretScrubber, parameters: Any) -> Any:
    if isinstance(parameters, dict):
        return {k: scrubber.value(v) for k, v in parameters.items()}
    if isinstance(parameters, (list, tuple)):
        return type(parameters)(scrubber.value(v) for v in parameters)
    return parameters


class _ScrubbingFilter(logging.Filter):
    """Replaces the secrets of a :class:`SecretScrubber` in a standard-library log record's message."""

    def __init__(self, scrubber: SecretScrubber) -> None:
        super().__init__()
        self.scrubber = scrubber

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = self.scrubber.text(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


def scrub_library_logs(secrets: Iterable[str], names: Iterable[str], *, silence: Iterable[str] = ()) -> None:
    """Scrub ``secrets`` from the records of the standard-library loggers ``names`` (a third-party client's debug
    lines that name a URL with its token); the loggers of ``silence`` no longer pass their records on to the root
    logger at all. Calling it again replaces the secrets."""
    scrubber = SecretScrubber(secrets)
    quiet = set(silence)
    for name in [*names, *quiet]:
        library = logging.getLogger(name)
        if name in quiet:
            library.propagate = False
        for old in [f for f in library.filters if isinstance(f, _ScrubbingFilter)]:
            library.removeFilter(old)
        library.addFilter(_ScrubbingFilter(scrubber))

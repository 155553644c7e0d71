"""Logging with loguru: console + daily-rotated file, the iteration id on every line, secrets redacted.

Redaction happens in a patcher, before any sink formats the record: every configured secret value is replaced in the
message, and an exception's traceback is rendered to text, redacted, and carried in ``extra["traceback"]`` instead
of the raw exception (whose repr could hold a key). ``diagnose=False`` keeps variable values out of tracebacks.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING
from collections.abc import Iterable

from loguru import logger

if TYPE_CHECKING:
    from loguru import Record

FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS!UTC}Z | {level: <7} | it={extra[iteration]} | {name}:{line} | {message}"
REDACTED = "***REDACTED***"


class Redactor:
    """Replaces every configured secret value in a log record's message and exception text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def __call__(self, record: Record) -> None:
        record["message"] = self.redact(record["message"])
        exception = record["exception"]
        if exception is not None:
            text = "".join(traceback.format_exception(exception.type, exception.value, exception.traceback))
            record["extra"]["traceback"] = self.redact(text).rstrip("\n")
            record["exception"] = None


def _format(record: Record) -> str:
    text = FORMAT
    if record["extra"].get("traceback"):
        text += "\n{extra[traceback]}"
    return text + "\n"


def configure_logging(
    *,
    level: str = "INFO",
    log_dir: Path | None = None,
    retention_days: int = 30,
    secrets: Iterable[str] = (),
    console: bool = True,
    file_level: str = "DEBUG",
    json_lines: bool = False,
) -> Redactor:
    redactor = Redactor(secrets)
    logger.remove()
    logger.configure(extra={"iteration": "-"}, patcher=redactor)
    if console:
        logger.add(sys.stderr, level=level, format=_format, backtrace=False, diagnose=False)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        logger.add(
            log_dir / ("trader_{time:YYYY-MM-DD}.jsonl" if json_lines else "trader_{time:YYYY-MM-DD}.log"),
            level=file_level,
            format=_format if not json_lines else "{message}",
            serialize=json_lines,
            rotation="00:00",
            retention=f"{retention_days} days",
            backtrace=False,
            diagnose=False,
            encoding="utf-8",
        )
    return redactor

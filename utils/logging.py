"""Logging with loguru: console + daily-rotated file, the iteration id on every line, secrets redacted."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterable

from loguru import logger

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

    def __call__(self, record: dict[str, Any]) -> None:
        if self._secrets:
            record["message"] = self.redact(record["message"])


def configure_logging(
    *,
    level: str = "INFO",
    log_dir: Path | None = None,
    retention_days: int = 30,
    secrets: Iterable[str] = (),
    console: bool = True,
    file_level: str = "DEBUG",
) -> Redactor:
    redactor = Redactor(secrets)
    logger.remove()
    logger.configure(extra={"iteration": "-"}, patcher=redactor)  # type: ignore[arg-type]

    def _format(record: dict[str, Any]) -> str:
        text = FORMAT + "\n"
        if record["exception"] is not None:
            text += "{exception}\n"
        return text

    def _redacting_sink_filter(record: dict[str, Any]) -> bool:
        return True

    if console:
        logger.add(sys.stderr, level=level, format=_format, filter=_redacting_sink_filter, backtrace=False, diagnose=False)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        logger.add(
            log_dir / "trader_{time:YYYY-MM-DD}.log",
            level=file_level,
            format=_format,
            rotation="00:00",
            retention=f"{retention_days} days",
            enqueue=False,
            backtrace=False,
            diagnose=False,
            encoding="utf-8",
        )
    return redactor

"""Small pieces shared by the command-line entry points (main.py, the backtest CLI, scripts/query_trades.py)."""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import sys
from datetime import date
from pathlib import Path

from loguru import logger


def iso_date(value: str) -> date:
    """argparse type: an ISO date, with a clear message when it is not one."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date (YYYY-MM-DD): {value!r}") from None


def install_stop_handlers(stop: asyncio.Event, what: str = "the current iteration") -> list[signal.Signals]:
    """SIGINT/SIGTERM set ``stop`` (the loop finishes ``what`` and returns). Returns the signals installed; where the
    platform or thread cannot take handlers, none are installed and the default behaviour stays."""
    loop = asyncio.get_running_loop()

    def finish(received: signal.Signals) -> None:
        logger.warning("{} received: finishing {}", received.name, what)
        stop.set()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, finish, sig)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signal support: keep the default
            continue
        installed.append(sig)
    return installed


def interpreter_command(script: str | os.PathLike[str] | None = None) -> str:
    """The start of a command line that runs ``script`` (or, without one, ``python``) with *this* interpreter, written
    so that it can be pasted into a shell in the current directory: paths under the current directory are relative
    (``.venv/bin/python scripts/query_trades.py``), others absolute, each shell-quoted."""
    parts = [_pasteable(Path(sys.executable))]
    if script is not None:
        parts.append(_pasteable(Path(script)))
    return " ".join(parts)


def _pasteable(path: Path) -> str:
    # keep a venv's bin/python as it is (resolving it would leave the venv for the base interpreter)
    absolute = Path(os.path.abspath(path))
    try:
        relative = absolute.relative_to(Path.cwd())
    except ValueError:
        return shlex.quote(str(absolute))
    return shlex.quote(str(relative))


def db_argument(url: str, default: str) -> str:
    """`` --db URL`` for a printed command when ``url`` is not ``default`` (empty otherwise). A URL with a password is
    given as ``--db "$DATABASE_URL"``: the password is never printed."""
    if url == default:
        return ""
    from sqlalchemy.engine import make_url

    if make_url(url).password:
        return ' --db "$DATABASE_URL"'
    return " --db " + shlex.quote(url)

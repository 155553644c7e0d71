"""Small pieces shared by the command-line entry points (main.py, the backtest CLI, scripts/query_trades.py)."""

from __future__ import annotations

import argparse
import asyncio
import signal
from datetime import date

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
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, lambda s=sig: (logger.warning("{} received: finishing {}", s.name, what), stop.set()))
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signal support: keep the default
            continue
        installed.append(sig)
    return installed

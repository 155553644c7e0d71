"""The backtest's text progress bar: :class:`ProgressBar`."""

from __future__ import annotations

import sys
from typing import TextIO

from core.runtime.orchestrator import IterationOutcome

__all__ = ["ProgressBar"]


class ProgressBar:
    """A one-line text progress bar (``on_progress`` callback of :func:`core.runtime.orchestrator.run_replay`).

    Redrawn with a carriage return when the whole percentage changes; a newline after the last session.
    """

    def __init__(self, stream: TextIO | None = None, width: int = 30, label: str = "backtest") -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._width = width
        self._label = label
        self._last = -1

    def __call__(self, n: int, total: int, outcome: IterationOutcome) -> None:
        percent = int(100 * n / total) if total else 100
        if percent == self._last and n != total:
            return
        self._last = percent
        filled = int(self._width * n / total) if total else self._width
        bar = "#" * filled + "." * (self._width - filled)
        self._stream.write(f"\r{self._label} [{bar}] {percent:3d}% {n}/{total} sessions {outcome.as_of.date()}")
        if n == total:
            self._stream.write("\n")
        self._stream.flush()

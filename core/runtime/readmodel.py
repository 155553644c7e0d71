"""The runtime's read model: what the agents may read about the run so far, kept by the runtime rather than by an
agent, so that no agent reads another's attributes.

It is a view of the ledger: seeded from the database when the application is built, then kept up to date with every
iteration record the Audit agent writes. A backtest's Audit agent buffers several iterations per transaction; the read
model sees each record as soon as it is buffered, so what it answers never waits on a flush.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from core.persistence.repository import IterationRecord, Repository

__all__ = ["EQUITY_WINDOW", "ReadModel"]

EQUITY_WINDOW = 10  # equity values kept: enough for the Risk agent's daily and weekly loss limits


class ReadModel:
    """The run's latest equity values (oldest first), for the Risk agent's daily and weekly loss limits."""

    def __init__(self, run_id: str, *, equity: Iterable[float] = (), equity_window: int = EQUITY_WINDOW) -> None:
        """``equity``: the values already recorded for ``run_id``, oldest first (only the last ``equity_window`` are
        kept)."""
        if equity_window < 1:
            raise ValueError("equity_window must be at least 1")
        self.run_id = run_id
        self._equity: deque[float] = deque(equity, maxlen=equity_window)

    @classmethod
    def from_ledger(cls, repository: Repository, run_id: str, *, equity_window: int = EQUITY_WINDOW) -> ReadModel:
        """Seeded with what the ledger holds for ``run_id``: its latest ``equity_window`` equity snapshots."""
        history = repository.equity_history(run_id, limit=equity_window)
        return cls(run_id, equity=(float(e) for _, e in history), equity_window=equity_window)

    def observe(self, record: IterationRecord) -> None:
        """Take in an iteration record of the run as the Audit agent writes it (records of other runs are ignored);
        an iteration recorded without equity adds nothing."""
        if record.run_id == self.run_id and record.equity is not None:
            self._equity.append(float(record.equity.equity))

    def recent_equity(self) -> list[float]:
        """The run's latest equity values, oldest first (a copy)."""
        return list(self._equity)

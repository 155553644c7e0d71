"""What the orchestrator needs from the agents it reports through, as small Protocols.

The orchestrator runs the iteration on the bus and, when the pipeline did not finish cleanly, has the iteration
recorded; these are exactly the members it uses. The Audit agent is an :class:`AuditPort` and the Execution agent an
:class:`ExecutionPort` (structurally: they import nothing from here), so ``core.runtime.orchestrator`` depends on no
agent module and a test can drive it with small stand-ins.
"""

from __future__ import annotations

from typing import Protocol
from collections.abc import Sequence

from core.brokers.base import SyncResult
from core.kernel.bus import HandlerFailure, PublishReport


class AuditPort(Protocol):
    """Records iterations (the Audit agent). ``last_*`` describe the latest iteration it recorded."""

    @property
    def last_iteration_id(self) -> str | None: ...

    @property
    def last_status(self) -> str | None: ...

    @property
    def last_error(self) -> str | None: ...

    @property
    def last_summary(self) -> str | None: ...

    async def record_incomplete(
        self,
        report: PublishReport,
        failures: Sequence[HandlerFailure],
        *,
        status: str,
        broker_report: SyncResult | None,
    ) -> None:
        """Record an iteration whose pipeline stopped early, with ``status`` (``failed`` or ``degraded``) and what
        the broker reported in it (``broker_report``)."""
        ...

    def mark_failed(self, iteration_id: str, error: str, *, status: str) -> None:
        """Flag an already-recorded iteration with ``status`` and ``error``."""
        ...


class ExecutionPort(Protocol):
    """Holds what the broker reported and accepted during an iteration (the Execution agent)."""

    def discard(self, iteration_id: str) -> SyncResult | None:
        """Hand over (and forget) what the broker reported and accepted in an iteration that failed before its
        execution stage completed."""
        ...

"""The iteration deadline's backstop: a handler still running after ITERATION_DEADLINE_SECONDS (plus a grace) is
cancelled and the iteration is recorded ``degraded`` with what it had done; the next iteration runs normally."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.runtime.app import build_app, build_simulated_broker, replay_sessions, simulated_clock_for
from core.runtime.profile import REPLAY
from core.kernel.calendar import MarketCalendar
from core.kernel.domain import BarsBatch
from core.runtime.orchestrator import backstop_grace
from core.persistence.models import Iteration
from tests.conftest import make_settings


class HangsOnce:
    """The simulated broker, except that its first sync never answers (a wait nothing else bounds)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.name = inner.name
        self.syncs = 0

    async def sync(self, batch: BarsBatch) -> Any:
        self.syncs += 1
        if self.syncs == 1:
            await asyncio.sleep(3600)
        return await self._inner.sync(batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def test_run_iteration_when_a_handler_outlives_the_deadline_then_it_is_cancelled_and_recorded_degraded(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, iteration_deadline_seconds=1, symbols=["AAPL", "SPY"])
    calendar = MarketCalendar()
    sessions = replay_sessions(calendar, date(2021, 3, 1), date(2021, 3, 2))
    clock = simulated_clock_for(sessions)
    broker = HangsOnce(build_simulated_broker(settings))
    app = build_app(settings, profile=REPLAY, clock=clock, broker=broker, calendar=calendar, take_lock=False)  # type: ignore[arg-type]
    try:
        first = await asyncio.wait_for(app.orchestrator.run_iteration(), timeout=30)
        clock.advance_to(sessions[1])
        second = await asyncio.wait_for(app.orchestrator.run_iteration(), timeout=30)
    finally:
        app.close()

    assert backstop_grace(1.0) == 1.0
    assert first.status == "degraded" and "iteration deadline" in (first.error or "")
    assert second.status == "ok"
    with Session(app.engine) as s:
        rows = s.scalars(select(Iteration).order_by(Iteration.seq)).all()
    assert [(r.status, r.symbols_total) for r in rows] == [("degraded", 2), ("ok", 2)]  # the data the first one had

#!/usr/bin/env python3
"""Benchmark: replay every bundled bar (6 symbols, 1998-2021, ~35,000 symbol-days) through the full pipeline.

Prints the wall time of the replay (after imports and database set-up), the symbol-days (bars) per second and the
iterations per second, for the async and the sync bus. Uses a temporary SQLite database; run with
``python scripts/bench_replay.py [--mode async|sync|both] [--start YYYY-MM-DD] [--end YYYY-MM-DD]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config.settings import BUNDLED_DATA_DIR, BusMode, Settings  # noqa: E402
from core.kernel.calendar import MarketCalendar  # noqa: E402
from core.kernel.domain import datetime_index  # noqa: E402
from core.runtime.app import build_app, build_provider, replay_sessions, simulated_clock_for  # noqa: E402
from core.runtime.profile import REPLAY  # noqa: E402
from core.runtime.orchestrator import run_replay  # noqa: E402
from utils.logging import configure_logging  # noqa: E402


async def _bench(mode: str, start: date, end: date, workdir: Path) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=f"sqlite:///{workdir / f'bench-{mode}.db'}",
        bus_mode=BusMode(mode),
        data_dir=BUNDLED_DATA_DIR,
        log_dir=workdir,
    )
    calendar = MarketCalendar()
    provider = build_provider(settings, calendar)
    sessions = replay_sessions(calendar, start, end)
    clock = simulated_clock_for(sessions)
    app = build_app(settings, profile=REPLAY, clock=clock, provider=provider, calendar=calendar)
    t0 = time.perf_counter()
    outcomes = await run_replay(app.orchestrator, clock.advance_to, sessions, stop=asyncio.Event())
    elapsed = time.perf_counter() - t0
    app.close()
    frames = provider.history(settings.symbols, end=sessions[-1]).frames
    days = [datetime_index(f).date for f in frames.values()]
    bars = sum(int(((d >= start) & (d <= end)).sum()) for d in days)
    ok = sum(1 for o in outcomes if o.status == "ok")
    print(
        f"{mode:>5} bus: {len(outcomes)} iterations ({ok} ok), {bars} symbol-days in {elapsed:.2f}s "
        f"-> {bars / elapsed:,.0f} bars/s, {len(outcomes) / elapsed:,.0f} iterations/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["async", "sync", "both"], default="both")
    parser.add_argument("--start", type=date.fromisoformat, default=date(1998, 1, 1))
    parser.add_argument("--end", type=date.fromisoformat, default=date(2021, 3, 31))
    args = parser.parse_args()
    configure_logging(level="ERROR", log_dir=None)
    modes = ["async", "sync"] if args.mode == "both" else [args.mode]
    with tempfile.TemporaryDirectory() as tmp:
        for mode in modes:
            asyncio.run(_bench(mode, args.start, args.end, Path(tmp)))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Benchmark: one live iteration of the real pipeline over a synthetic universe, LLM off, shadow ledger on.

    python scripts/bench_iteration.py [--symbols 500] [--bars 300] [--seed 7] [--no-shadow]

Builds the application with ``core.runtime.app.build_app`` (replay profile: the simulated broker, a temporary SQLite
database) over :class:`core.data.synthetic.SyntheticProvider` bars (``--symbols`` symbols, SPY among them, ``--bars``
sessions each), then loads what ``main.py run`` loads at start-up before its first iteration (scipy.signal, timed and printed on
its own) and times two iterations: the first of the process at the close of session ``--bars - 1`` (first calls:
the frame caches are empty), and the next session's at the close of session
``--bars`` (``--bars`` bars per symbol), as a running daemon's iteration sees it: new bars, so new frames, every
agent, the shadow ledger and the audit transaction. Prints each iteration's process CPU time
(``time.process_time``), its wall time and the process's peak resident memory, beside the targets (under 1 s of CPU,
under 400 MB).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config.settings import Settings, Toggle  # noqa: E402
from core.data.synthetic import SyntheticProvider  # noqa: E402
from core.kernel.calendar import MarketCalendar  # noqa: E402
from core.kernel.clock import SimulatedClock  # noqa: E402
from core.runtime.app import build_app  # noqa: E402
from core.runtime.profile import REPLAY  # noqa: E402
from strategies.indicators import preload as preload_indicators  # noqa: E402
from utils.logging import configure_logging  # noqa: E402

CPU_TARGET_S = 1.0
RSS_TARGET_MB = 400.0


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def universe(count: int) -> list[str]:
    return ["SPY", *(f"S{k:04d}" for k in range(count - 1))]


async def _iteration(symbols: list[str], bars: int, seed: int, shadow: bool, workdir: Path) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=f"sqlite:///{workdir / 'bench-iteration.db'}",
        symbols=symbols,
        shadow_ledger=shadow,
        llm_selection=Toggle.OFF,
        log_dir=workdir,
    )
    calendar = MarketCalendar()
    provider = SyntheticProvider(seed, date(2019, 1, 2), bars, calendar=calendar)
    sessions = calendar.sessions_from(date(2019, 1, 2), bars)
    clock = SimulatedClock(calendar.session(sessions[-2].date()).close_utc)
    app = build_app(settings, profile=REPLAY, clock=clock, provider=provider, calendar=calendar, allow_llm=False)
    provider.history(symbols, end=clock.now())  # the bars exist before the iteration (a provider's cache is warm)
    cpu = time.process_time()
    preload_indicators()  # as `main.py run` does at start-up, before its first iteration
    warm_up = time.process_time() - cpu
    rows = []
    for label, session in (("first iteration of the process", sessions[-2]), ("next session", sessions[-1])):
        clock.advance_to(calendar.session(session.date()).close_utc)
        wall, cpu = time.perf_counter(), time.process_time()
        outcome = await app.orchestrator.run_iteration()
        cpu = time.process_time() - cpu
        wall = time.perf_counter() - wall
        rows.append((label, outcome.status, cpu, wall, _peak_rss_mb()))
    app.close()
    print(f"{len(symbols)} symbols, LLM off, shadow {'on' if shadow else 'off'}; one iteration on fresh frames:")
    print(f"  daemon start-up warm-up (scipy.signal, once per process): CPU {warm_up:6.3f} s")
    for label, status, cpu, wall, peak in rows:
        print(
            f"  {label:31s} ({status}): CPU {cpu:6.3f} s (target < {CPU_TARGET_S:.0f} s: "
            f"{'met' if cpu < CPU_TARGET_S else 'NOT met'}), wall {wall:6.3f} s, peak RSS {peak:6.1f} MB "
            f"(target < {RSS_TARGET_MB:.0f} MB: {'met' if peak < RSS_TARGET_MB else 'NOT met'})"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--bars", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-shadow", action="store_true", help="leave the shadow ledger off")
    args = parser.parse_args(argv)
    configure_logging(level="ERROR", log_dir=None)
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_iteration(universe(args.symbols), args.bars, args.seed, not args.no_shadow, Path(tmp)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

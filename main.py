"""agent-trader: the six-agent trading daemon.

    python main.py                      run the daemon (paper trading; needs Alpaca keys)
    python main.py run --offline        the same loop on the configured offline data and the simulated broker
    python main.py replay [--start D] [--end D]   replay bundled bars through the simulated clock and broker
    python main.py demo                 replay the last two years of the bundled data and show how to inspect it
    python main.py strategies [--json]  list the registered strategies

Exit codes: 0 done, 1 unexpected error, 2 invalid configuration or usage, 3 database unavailable,
4 another daemon already runs on the database, 5 persistence failure during a run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Sequence

from loguru import logger

from config.settings import Settings, SettingsError, load_settings
from core.app import App, build_app, build_provider, replay_sessions, simulated_clock_for
from core.calendar import MarketCalendar
from core.data.base import BarProvider
from core.clock import LiveClock, SimulatedClock
from core.orchestrator import IterationOutcome, PersistenceFailure, run_live, run_replay
from core.persistence.db import DaemonAlreadyRunning, DatabaseUnavailable, safe_url
from utils.logging import configure_logging

COMMANDS = ("run", "replay", "demo", "strategies")
EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_DB, EXIT_LOCKED, EXIT_PERSIST = 0, 1, 2, 3, 4, 5

NEEDS_KEYS = """\
The daemon paper-trades through Alpaca and needs, in the environment or .env:
  ALPACA_API_KEY=...      your Alpaca paper account's key id
  ALPACA_SECRET_KEY=...   its secret
(GROQ_API_KEY / ANTHROPIC_API_KEY are optional: without them strategy selection is deterministic.)

Without keys you can run everything offline:
  make demo                                  replay two years of bundled real bars (simulated clock and broker)
  python main.py replay --start 2015-01-01   replay any range of the bundled data
  DATA_PROVIDER=synthetic python main.py run --offline --once
                                             the live loop on synthetic bars and the simulated broker
"""


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date (YYYY-MM-DD): {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", help="database URL (overrides DATABASE_URL)")
    parser = argparse.ArgumentParser(prog="main.py", description="Event-driven multi-agent trading daemon.")
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", parents=[common], help="run the daemon (default command)")
    run.add_argument("--once", action="store_true", help="run one iteration and exit")
    run.add_argument("--iterations", type=int, metavar="N", help="run N iterations and exit")
    run.add_argument("--offline", action="store_true", help="configured offline data provider + simulated broker")

    for name, help_text in (("replay", "replay a date range of the data through the simulated clock and broker"),
                            ("demo", "replay the last two years of the bundled data")):
        p = sub.add_parser(name, parents=[common], help=help_text)
        p.add_argument("--start", type=_date, help="first session (default: two years before --end)")
        p.add_argument("--end", type=_date, help="last session (default: the data's last date)")
        p.add_argument("--quiet", action="store_true", help="no progress lines")

    strategies = sub.add_parser("strategies", help="list the registered strategies")
    strategies.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _install_stop_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, lambda s=sig: (logger.warning("{} received: finishing the current iteration", s.name), stop.set()))
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-POSIX platforms
            pass


def _replay_range(app_settings: Settings, provider: BarProvider, start: date | None, end: date | None) -> tuple[date, date]:
    probe = provider.history(app_settings.symbols, end=datetime(2100, 1, 1, tzinfo=UTC))
    if not probe.frames:
        raise SettingsError(f"DATA_DIR: no usable bars for {', '.join(app_settings.symbols)}: {dict(probe.errors)}")
    last = max(f.index[-1] for f in probe.frames.values()).date()
    first = min(f.index[0] for f in probe.frames.values()).date()
    end = end or last
    start = start or max(first, end - timedelta(days=730))
    if start > end:
        raise SettingsError(f"--start {start} is after --end {end}")
    return start, end


async def _replay(settings: Settings, start: date | None, end: date | None, *, kind: str, quiet: bool) -> tuple[App, list[IterationOutcome], float]:
    calendar = MarketCalendar()
    provider = build_provider(settings, calendar)
    start, end = _replay_range(settings, provider, start, end)
    sessions = replay_sessions(calendar, start, end)
    clock = simulated_clock_for(sessions)
    app = build_app(settings, kind=kind, clock=clock, provider=provider, calendar=calendar)
    stop = asyncio.Event()
    _install_stop_handlers(stop)
    step = max(1, len(sessions) // 10)
    started = time.perf_counter()

    def progress(n: int, total: int, outcome: IterationOutcome) -> None:
        if not quiet and (n % step == 0 or n == total):
            print(f"  {outcome.as_of.date()}  {n}/{total} sessions  {outcome.summary or outcome.status}", flush=True)

    status = "finished"
    try:
        assert isinstance(clock, SimulatedClock)
        print(f"Replaying {len(sessions)} sessions {start} .. {end} for {', '.join(settings.symbols)} (run {app.run_id})", flush=True)
        outcomes = await run_replay(app.orchestrator, clock.advance_to, sessions, stop=stop, on_progress=progress)
        await app.bus.close()
        if stop.is_set():
            status = "interrupted"
    except BaseException:
        status = "failed"
        raise
    finally:
        app.close(status)
    return app, outcomes, time.perf_counter() - started


def _print_inspection(settings: Settings, app: App, outcomes: Sequence[IterationOutcome], elapsed: float) -> None:
    db = safe_url(settings.database_url)
    failed = sum(1 for o in outcomes if o.status != "ok")
    print()
    print(f"Done: {len(outcomes)} iterations in {elapsed:.1f}s ({failed} degraded), run {app.run_id}")
    if outcomes:
        print(f"Last: {outcomes[-1].summary}")
    print(f"Database: {db}")
    db_flag = "" if settings.database_url == Settings.model_fields["database_url"].default else f" --db '{db}'"
    print("Inspect it with:")
    for cmd in ("trades", "orders", "decisions --symbol AAPL --limit 20", "decisions --action 'denied:*'", "equity --limit 10"):
        print(f"  python scripts/query_trades.py {cmd} --run {app.run_id}{db_flag}")
    print(f"  python scripts/query_trades.py runs{db_flag}")


async def _run_daemon(settings: Settings, args: argparse.Namespace) -> int:
    if not args.offline and not settings.has_alpaca_keys:
        print(NEEDS_KEYS, file=sys.stderr)
        return EXIT_CONFIG
    if not args.offline:
        print(
            "Alpaca paper trading is not wired into this build yet (the Alpaca broker arrives with the execution work).\n"
            "Run with --offline to use the configured offline data and the simulated broker.",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    clock = LiveClock()
    app = build_app(settings, kind="daemon", clock=clock)
    stop = asyncio.Event()
    _install_stop_handlers(stop)
    iterations = 1 if args.once else args.iterations
    interval = timedelta(seconds=settings.loop_interval_seconds)
    status = "finished"
    try:
        print(f"Daemon started: mode {settings.trading_mode.value} (offline, simulated broker), run {app.run_id}", flush=True)
        await run_live(app.orchestrator, next_run=lambda now: now + interval, stop=stop, iterations=iterations)
        await app.bus.close()
        if stop.is_set():
            status = "stopped"
    except BaseException:
        status = "failed"
        raise
    finally:
        app.close(status)
    return EXIT_OK


def _strategies(as_json: bool) -> int:
    from strategies.registry import build_registry, describe_registry

    described = describe_registry(build_registry())
    if as_json:
        print(json.dumps(described, indent=2, default=str))
        return EXIT_OK
    for item in described:
        params = ", ".join(f"{k}={v}" for k, v in item["params"].items())
        print(f"{item['name']:<24} min_history={item['min_history']:<5} {params}")
        print(f"{'':<24} {item['description']}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(a in COMMANDS for a in argv) and not any(a in ("-h", "--help") for a in argv):
        argv.insert(0, "run")
    args = build_parser().parse_args(argv)
    command = args.command
    if command == "strategies":
        return _strategies(args.json)
    try:
        overrides = {"database_url": args.db} if args.db else {}
        settings = load_settings(**overrides)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(
        level=settings.log_level if command == "run" else "WARNING",
        log_dir=settings.log_dir,
        retention_days=settings.log_retention_days,
        secrets=settings.secret_values,
    )
    try:
        if command == "run":
            return asyncio.run(_run_daemon(settings, args))
        app, outcomes, elapsed = asyncio.run(_replay(settings, args.start, args.end, kind=command, quiet=args.quiet))
        _print_inspection(settings, app, outcomes, elapsed)
        return EXIT_OK
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except DatabaseUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DB
    except DaemonAlreadyRunning as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except PersistenceFailure as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PERSIST


if __name__ == "__main__":
    sys.exit(main())

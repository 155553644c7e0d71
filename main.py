"""agent-trader: the six-agent trading daemon.

    python main.py                      run the daemon (paper trading; needs Alpaca keys)
    python main.py run --offline        the same loop on the configured offline data and the simulated broker
    python main.py replay [--start D] [--end D]   replay bundled bars through the simulated clock and broker
    python main.py demo                 replay the last two years of the bundled data and show how to inspect it
    python main.py strategies [--json]  list the registered strategies
    python main.py dashboard [--db URL] [--port 8501] [--host 127.0.0.1]   the read-only monitoring dashboard
    python main.py pause | resume | close SYMBOL | close --all [--now]   steer a running daemon (see status)

Exit codes: 0 done, 1 unexpected error or the broker unreachable at start-up, 2 invalid configuration or usage
(API keys refused, paper/live mismatch, live not confirmed), 3 database unavailable, 4 another daemon already runs
on the database, 5 persistence failure during a run. They come from the class of the error (core.errors.EXIT_CODES).
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import os
import sys
import time
from datetime import UTC, date, datetime, timedelta
from collections.abc import Callable, Sequence


from config.settings import (
    PROJECT_ROOT,
    BrokerName,
    DataProviderName,
    Settings,
    SettingsError,
    TradingMode,
    load_settings,
    unknown_env_file_keys,
)
from core.runtime.app import (
    App,
    build_app,
    check_trading_endpoint,
    build_provider,
    replay_sessions,
    simulated_clock_for,
)
from core.kernel.calendar import MarketCalendar, format_eastern
from core.data.base import BarProvider, DataError, ProviderResult
from core.data.validation import latest_session_day
from core.kernel.clock import LiveClock, SimulatedClock
from core.runtime.orchestrator import IterationOutcome, run_live, run_replay
from core.runtime.order_updates import following_order_updates, gated
from core.runtime.commands import POLL_SECONDS, DaemonControl
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from agents.risk_agent import RiskAgent
from core.kernel.calendar import EASTERN
from core.risk import TRADING_STATE_EVENT, TradingState, describe_episode, sessions_in, trading_episodes
from core.analytics.reporting import selection_mix
from core.brokers.base import BrokerAuthError, BrokerError, BrokerModeMismatch
from core.errors import (
    EXIT_CODES,
    EXIT_ERROR,
    EXIT_OK,
    ConfigurationError,
    LedgerWriteFailed,
    LockConflict,
    StorageUnavailable,
    exit_code_for,
)
from utils.deadline import deadline_scope
from core.backtest.cli import add_backtest_parser, run_backtest_command
from core.research.cli import add_optimize_parser, run_optimize_command
from core.persistence.db import (
    DaemonAlreadyRunning,
    DaemonLock,
    DaemonLockLost,
    DatabaseMissing,
    _first_line,
    is_in_memory,
    open_database,
    safe_url,
)
from core.persistence.models import BreakerEventRow, DecisionRow, EquitySnapshotRow, FillRow, Run
from core.persistence.repository import Repository
from core.runtime.profile import DAEMON, RunProfile
from core.runtime.health import health_report, schedule_for  # noqa: F401  (main.health_report is public API)
from core.vocabulary import DENIED_PREFIX, AgentName, NotifyKind, StateKey, state_key
from utils.cli import db_argument, install_stop_handlers, interpreter_command, iso_date
from utils.logging import configure_logging
from loguru import logger

COMMANDS = (
    "run", "replay", "demo", "backtest", "optimize", "strategies", "status", "health", "reset", "dashboard", "pause", "resume", "close",
)  # fmt: skip
# the exit codes of the checks made here without an exception; everything else takes its code from the error's class
EXIT_CONFIG, EXIT_DB, EXIT_LOCKED, EXIT_PERSIST = (
    EXIT_CODES[kind] for kind in (ConfigurationError, StorageUnavailable, LockConflict, LedgerWriteFailed)
)

NEEDS_KEYS = """\
The daemon paper-trades through Alpaca and needs, in the environment or .env:
  ALPACA_API_KEY=...      your Alpaca paper account's key id
  ALPACA_SECRET_KEY=...   its secret
(GROQ_API_KEY / ANTHROPIC_API_KEY are optional: without them strategy selection is deterministic.)

Without keys you can run everything offline:
  {main} demo
      replay two years of bundled real bars (simulated clock and broker; `make demo` installs first)
  {main} replay --start 2015-01-01
      replay any range of the bundled data
  DATA_PROVIDER=synthetic {main} run --offline --once
      the live loop on synthetic bars and the simulated broker
With keys, BROKER=simulated runs the daemon on Alpaca's bars with the simulated broker.
"""


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", help="database URL (overrides DATABASE_URL)")
    parser = argparse.ArgumentParser(prog="main.py", description="Event-driven multi-agent trading daemon.")
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", parents=[common], help="run the daemon (default command)")
    run.add_argument("--once", action="store_true", help="run one iteration and exit")
    run.add_argument("--iterations", type=int, metavar="N", help="run N iterations and exit")
    run.add_argument("--offline", action="store_true", help="configured offline data provider + simulated broker")
    run.add_argument("--confirm-live", metavar="ACCOUNT", help="live trading only: the whole account number")
    run.add_argument(
        "--create-db",
        action="store_true",
        help="start a new, empty ledger when the SQLite file DATABASE_URL names does not exist",
    )

    for name, help_text in (
        ("replay", "replay a date range of the data through the simulated clock and broker"),
        ("demo", "replay the last two years of the bundled data"),
    ):
        p = sub.add_parser(name, parents=[common], help=help_text)
        p.add_argument("--start", type=iso_date, help="first session (default: two years before --end)")
        p.add_argument("--end", type=iso_date, help="last session (default: the data's last date)")
        p.add_argument("--quiet", action="store_true", help="no progress lines")
        p.add_argument(
            "--llm", action="store_true", help="allow live LLM strategy selection (off by default in replays)"
        )

    status = sub.add_parser(
        "status", parents=[common], help="market open/closed, the current or next session, the next iteration"
    )
    status.add_argument("--at", help="ISO time to evaluate (default: now); naive times are UTC")
    status.add_argument("--json", action="store_true", help="print JSON")

    health = sub.add_parser(
        "health", parents=[common], help="exit 0 when the daemon is fresh and not halted, 1 otherwise"
    )
    health.add_argument("--json", action="store_true", help="print JSON")
    reset = sub.add_parser(
        "reset", parents=[common], help="manual reset of a HALTED/REDUCING daemon to ACTIVE (daemon stopped)"
    )
    reset.add_argument("--reason", required=True, help="who resets and why (recorded)")
    # control commands: recorded in the database, picked up by the daemon at its next iteration or while it sleeps
    pause = sub.add_parser("pause", parents=[common], help="no new entries (exits, stops, position management go on)")
    pause.add_argument("--reason", help="why (recorded with the command)")
    resume = sub.add_parser("resume", parents=[common], help="allow new entries again after a pause")
    resume.add_argument("--reason", help="why (recorded with the command)")
    close = sub.add_parser("close", parents=[common], help="exit a position (or all) at the next opportunity")
    close.add_argument("symbol", nargs="?", help="the symbol to close")
    close.add_argument("--all", action="store_true", help="close every open position")
    close.add_argument("--now", action="store_true", help="at once when the market is open (else the next iteration)")
    close.add_argument("--reason", help="why (recorded with the command)")

    add_backtest_parser(sub, parents=[common])
    add_optimize_parser(sub, parents=[common])

    dashboard = sub.add_parser(
        "dashboard", parents=[common], help="the read-only monitoring dashboard (Streamlit) on http://HOST:PORT/"
    )
    dashboard.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    dashboard.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    dashboard.add_argument(
        "--refresh", type=int, default=30, metavar="SECONDS", help="panel refresh interval (default 30; 0: off)"
    )

    strategies = sub.add_parser("strategies", help="list the registered strategies")
    strategies.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _data_source(settings: Settings) -> str:
    """The setting that names where bars come from, for error messages."""
    if settings.data_provider is DataProviderName.FILES:
        return f"DATA_DIR={settings.data_dir}"
    return f"DATA_PROVIDER={settings.data_provider.value}"


def _probe(settings: Settings, provider: BarProvider, end: datetime) -> ProviderResult:
    """The symbols' bars up to ``end``. A provider that cannot serve them at all is a configuration error, and so is a
    symbol it does not know at all (a typo in SYMBOLS would otherwise be an excluded symbol every session, holding the
    data quality down); one whose file cannot be read is the Data agent's to exclude, with the reason, every session."""
    try:
        probe = provider.history(settings.symbols, end=end)
    except DataError as exc:
        raise SettingsError(f"{_data_source(settings)}: {exc}") from None
    unknown = _unknown_message(settings.symbols, probe)
    if unknown is not None:
        raise SettingsError(unknown)
    return probe


def _unknown_message(symbols: Sequence[str], probe: ProviderResult) -> str | None:
    """A one-line message naming the symbols of SYMBOLS no data provider knows (no file, no bar at all), or None."""
    unknown = [s for s in symbols if s in getattr(probe, "unknown", ())]
    if not unknown:
        return None
    return f"SYMBOLS: no data provider knows {', '.join(unknown)}: {probe.errors.get(unknown[0], 'no bars')}"


def _offline_probe(settings: Settings, provider: BarProvider) -> ProviderResult:
    """Every bar up to now of an offline provider (a far-future end would take the synthetic provider past the
    exchange calendar's range); no usable bar at all is a configuration error."""
    probe = _probe(settings, provider, LiveClock().now())
    if not probe.frames:
        raise SettingsError(
            f"{_data_source(settings)}: no usable bars for {', '.join(settings.symbols)}: {dict(probe.errors)}"
        )
    return probe


def _replay_range(probe: ProviderResult, start: date | None, end: date | None) -> tuple[date, date]:
    last = max(f.index[-1] for f in probe.frames.values()).date()
    first = min(f.index[0] for f in probe.frames.values()).date()
    end = end or last
    start = start or max(first, end - timedelta(days=730))
    if start > end:
        raise SettingsError(f"--start {start} is after --end {end}")
    return start, end


async def _replay(
    settings: Settings, start: date | None, end: date | None, *, kind: str, quiet: bool, llm: bool = False
) -> tuple[App, list[IterationOutcome], float]:
    calendar = MarketCalendar()
    provider = build_provider(settings, calendar)
    probe = _offline_probe(settings, provider)
    first = min(f.index[0] for f in probe.frames.values()).date()
    if first < calendar.start:  # data older than the default calendar (IBM from 1962): sessions back to its start
        calendar = MarketCalendar.covering(first)
        provider = build_provider(settings, calendar)
    start, end = _replay_range(probe, start, end)
    sessions = replay_sessions(calendar, start, end)
    clock = simulated_clock_for(sessions)
    app = build_app(
        settings, profile=RunProfile.for_kind(kind), clock=clock, provider=provider, calendar=calendar, allow_llm=llm
    )
    stop = asyncio.Event()
    install_stop_handlers(stop)
    step = max(1, len(sessions) // 10)
    started = time.perf_counter()

    def progress(n: int, total: int, outcome: IterationOutcome) -> None:
        if not quiet and (n % step == 0 or n == total):
            print(f"  {outcome.as_of.date()}  {n}/{total} sessions  {outcome.summary or outcome.status}", flush=True)

    status = "finished"
    try:
        assert isinstance(clock, SimulatedClock)
        print(
            f"Replaying {len(sessions)} sessions {start} .. {end} for {', '.join(settings.symbols)} (run {app.run_id})",
            flush=True,
        )
        outcomes = await run_replay(app.orchestrator, clock.advance_to, sessions, stop=stop, on_progress=progress)
        await app.bus.close()
        if stop.is_set():
            status = "interrupted"
        elif app.agents[AgentName.RISK].state is TradingState.HALTED:
            status = "halted"  # the run ends halted: say so in its status
    except BaseException:
        status = "failed"
        raise
    finally:
        _close(app, status)
    return app, outcomes, time.perf_counter() - started


def _buy_and_hold(provider: BarProvider, symbol: str, first: date, last: date) -> float | None:
    """The benchmark's return from its close on ``first`` (or the last close before) to ``last`` (None: no bars)."""
    found = provider.history([symbol], end=datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=UTC))
    frame = found.frames.get(symbol)
    if frame is None or frame.empty:
        return None
    closes = frame["close"]
    dates = [d.date() for d in closes.index]
    before = [
        c for d, c in zip(dates, closes, strict=False) if d <= first
    ]  # the first session's close, as the backtest's benchmark
    upto = [c for d, c in zip(dates, closes, strict=False) if d <= last]
    if not before or not upto:
        return None
    return float(upto[-1]) / float(before[-1]) - 1.0


def _close(app: App, status: str) -> None:
    """Record the run's end. When the database fails here after the run itself failed, the first error is the one
    reported (the run stays ``running`` in the database and the next start marks it ``killed``)."""
    failing = sys.exc_info()[1] is not None
    try:
        app.close(status)
    except SQLAlchemyError as exc:
        if not failing:
            raise
        logger.error("could not record the end of run {} ({}): {}", app.run_id, status, _first_line(exc))


def _print_inspection(settings: Settings, app: App, outcomes: Sequence[IterationOutcome], elapsed: float) -> None:
    db = safe_url(settings.database_url)
    failed = sum(1 for o in outcomes if o.status != "ok")
    print()
    print(f"Done: {len(outcomes)} iterations in {elapsed:.1f}s ({failed} degraded), run {app.run_id}")
    if outcomes:
        print(f"Last: {outcomes[-1].summary}")
    repository = Repository(open_database(settings.database_url))
    with repository.session() as session:
        fills = session.scalar(select(func.count()).select_from(FillRow).where(FillRow.run_id == app.run_id)) or 0
        denied = session.execute(
            select(DecisionRow.action, func.count())
            .where(
                DecisionRow.run_id == app.run_id,
                DecisionRow.agent == AgentName.RISK,
                DecisionRow.action.like(f"{DENIED_PREFIX}%"),
            )
            .group_by(DecisionRow.action)
            .order_by(func.count().desc(), DecisionRow.action)
        ).all()
        trips = session.execute(
            select(BreakerEventRow.name, BreakerEventRow.at, BreakerEventRow.reason)
            .where(BreakerEventRow.run_id == app.run_id, BreakerEventRow.to_state == "open")
            .order_by(BreakerEventRow.at)
        ).all()
        first_last = session.execute(
            select(func.min(EquitySnapshotRow.at), func.max(EquitySnapshotRow.at)).where(
                EquitySnapshotRow.run_id == app.run_id
            )
        ).first()
        equities = {
            at: float(e)
            for at, e in session.execute(
                select(EquitySnapshotRow.at, EquitySnapshotRow.equity).where(
                    EquitySnapshotRow.run_id == app.run_id,
                    EquitySnapshotRow.at.in_([t for t in (first_last or ()) if t is not None]),
                )
            )
        }
        mix = selection_mix(session, app.run_id)
    saved = repository.get_state(state_key(StateKey.RISK_STATE, f"{app.run_id}:"))
    days = [o.as_of.astimezone(EASTERN).date() for o in outcomes]
    episodes = trading_episodes(repository.trading_transitions(app.run_id, TRADING_STATE_EVENT), days)
    repository.engine.dispose()
    state = saved[0]["state"].upper() if saved else "unknown"
    print(f"Fills: {fills}; trading state at the end: {state}")
    if mix[0] or mix[1] or mix[3]:
        print(
            f"Strategy selection: LLM choices {mix[0]}, deterministic {mix[1]}; {mix[3]} LLM calls, ${mix[2]} estimated"
        )
    if first_last and first_last[0] is not None and days:
        start_equity, end_equity = float(settings.initial_cash), equities[first_last[1]]
        line = f"Equity: {start_equity:,.2f} -> {end_equity:,.2f} ({end_equity / start_equity - 1:+.2%})"
        held = _buy_and_hold(app.provider, settings.benchmark_symbol, days[0], days[-1])
        if held is not None:
            line += f"; {settings.benchmark_symbol} buy & hold {days[0]} .. {days[-1]}: {held:+.2%}"
        print(line)
    if episodes:
        print(
            f"Trading state: {sessions_in(episodes, 'locked')} of {len(days)} sessions LOCKED, "
            f"{sessions_in(episodes, 'halted')} HALTED ({len(episodes)} episodes):"
        )
        for episode in episodes:
            print(f"  {describe_episode(episode)}")
    if denied:
        print("Risk refusals by rule: " + ", ".join(f"{action.removeprefix('denied:')} {n}" for action, n in denied))
    if state == "HALTED":
        print(
            f"*** ended HALTED: no new entries since {episodes[-1]['start'] if episodes else 'the halt'}; "
            "a daemon in this state needs `python main.py reset --reason ...` ***"
        )
    for name, at, reason in trips:
        print(f"  breaker {name} tripped {at.date()}: {reason}")
    print(f"Database: {db}")
    for line in inspection_commands(settings, app.run_id):
        print(line)


def inspection_commands(settings: Settings, run_id: str) -> list[str]:
    """The follow-up commands after a replay, runnable as printed from the current directory: this interpreter,
    this database."""
    db_flag = db_argument(settings.database_url, Settings.model_fields["database_url"].default)
    query = interpreter_command(PROJECT_ROOT / "scripts" / "query_trades.py")
    symbol = settings.symbols[0] if settings.symbols else "AAPL"
    lines = ["Inspect it with:"]
    for cmd in (
        "trades",
        "performance",
        f"decisions --symbol {symbol} --limit 20",
        "decisions --action 'denied:*'",
        "risk",
        "breakers",
        "shadow",
    ):
        lines.append(f"  {query} {cmd} --run {run_id}{db_flag}")
    lines.append(f"  {query} runs{db_flag}")
    if "$DATABASE_URL" in db_flag:
        lines.append("  (the database URL holds a password, not printed: set DATABASE_URL to it first)")
    return lines


async def _run_daemon(settings: Settings, args: argparse.Namespace) -> int:
    if args.offline:
        if settings.data_provider is DataProviderName.ALPACA:
            print("error: --offline needs DATA_PROVIDER=files or synthetic (DATA_PROVIDER is alpaca)", file=sys.stderr)
            return EXIT_CONFIG
        settings = settings.model_copy(update={"broker": BrokerName.SIMULATED})
    needs_keys = settings.broker is BrokerName.ALPACA or settings.data_provider is DataProviderName.ALPACA
    if needs_keys and not settings.has_alpaca_keys:
        print(NEEDS_KEYS.format(main=interpreter_command(PROJECT_ROOT / "main.py")), file=sys.stderr)
        return EXIT_CONFIG
    if settings.trading_mode is TradingMode.LIVE and settings.broker is BrokerName.ALPACA and not settings.live_allowed:
        print(
            "error: TRADING_MODE=live also needs LIVE_ALLOWED=true (two separate opt-ins); refusing to start",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    if settings.broker is BrokerName.ALPACA:
        check_trading_endpoint(settings)  # the paper guard first, before any data or database is touched
    clock = LiveClock()
    calendar = MarketCalendar()
    provider = None
    if settings.data_provider is DataProviderName.FILES:
        provider = build_provider(settings, calendar)
        stale = stale_data_reason(settings, provider, calendar, clock.now())
        if stale is not None:
            print(f"error: {stale}", file=sys.stderr)
            return EXIT_CONFIG
    # a mistyped DATABASE_URL must not silently start an empty ledger: only the default database is created unasked
    create = args.create_db or settings.database_url == Settings.model_fields["database_url"].default
    try:
        app = build_app(settings, profile=DAEMON, clock=clock, calendar=calendar, provider=provider, create_db=create)
    except DatabaseMissing as exc:
        print(
            f"error: {exc}: check DATABASE_URL/--db, or pass --create-db to start a new, empty ledger there",
            file=sys.stderr,
        )
        return exit_code_for(exc)
    from strategies.indicators import preload as preload_indicators

    preload_indicators()  # scipy.signal at start-up, not in the first iteration after the close
    try:
        # the start-up requests get the same retries and deadline as an iteration's
        with deadline_scope(settings.iteration_deadline_seconds, label="start-up"):
            unknown = _unknown_symbols(app.provider, settings.symbols, clock.now())
            if unknown:
                app.close("refused")
                print(f"error: {unknown}", file=sys.stderr)
                return EXIT_CONFIG
            identify = getattr(app.broker, "identify", None)
            if identify is not None:
                identity = await identify()  # refuses a paper broker on a live account and vice versa
                label = app.broker.label(identity)  # type: ignore[attr-defined]
            else:
                identity, label = None, f"{app.broker.name} account"
            if settings.trading_mode is TradingMode.LIVE and settings.broker is BrokerName.ALPACA:
                if not _confirm_live(label, identity.number if identity is not None else "", args.confirm_live):
                    app.close("refused")
                    return EXIT_CONFIG
            if (
                app.reconciler is not None
            ):  # orders in doubt resolved, what happened while down caught up, then compared
                found = await app.agents[AgentName.EXECUTION].start(clock.now())
                print(
                    f"Reconciliation at start-up: {len(found)} discrepancies"
                    + (" (see query_trades.py reconcile)" if found else ""),
                    flush=True,
                )
    except BrokerAuthError as exc:
        app.close("refused")
        print(
            f"error: Alpaca rejected the API keys (HTTP {exc.status or 401}): check ALPACA_API_KEY and ALPACA_SECRET_KEY "
            f"(paper keys for TRADING_MODE=paper); nothing was traded",
            file=sys.stderr,
        )
        return exit_code_for(exc)
    except BrokerModeMismatch as exc:
        app.close("refused")
        print(f"error: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    except BrokerError as exc:
        app.close("failed")
        print(
            f"error: the broker is unavailable at start-up ({exc}); nothing was traded, try again later",
            file=sys.stderr,
        )
        return exit_code_for(exc)
    except BaseException:
        app.close("failed")
        raise
    stop = asyncio.Event()
    install_stop_handlers(stop)
    iterations = 1 if args.once else args.iterations
    next_run = schedule_for(settings, calendar)
    status = "finished"
    crash: BaseException | None = None
    try:
        started = f"Daemon started: mode {settings.trading_mode.value.upper()}, {label}, data {app.provider.name}, run {app.run_id}"
        print(started, flush=True)
        _notify(app, NotifyKind.START, f"{started}; next iteration {format_eastern(next_run(clock.now()))}")
        control = DaemonControl(
            app.repository,
            app.agents[AgentName.RISK],
            app.broker,
            calendar,
            run_id=app.run_id,
            symbols=settings.symbols,
            now=clock.now,
        )  # main.py pause / resume / close, picked before every iteration and while sleeping
        # order updates as they happen (BROKER=alpaca, ALPACA_TRADE_STREAM): recorded between iterations, never during
        async with following_order_updates(
            settings,
            app.broker,
            app.repository,
            app.orchestrator,
            enabled=iterations != 1,
            guard=app.lock.verify if app.lock is not None else None,
        ) as updates:
            await run_live(
                gated(app.orchestrator, updates),
                next_run=next_run,
                stop=stop,
                iterations=iterations,
                control=control,
                poll_s=POLL_SECONDS,
            )
        await app.bus.close()
        if app.agents[AgentName.RISK].state is TradingState.HALTED:
            status = "halted"  # the run ends halted: say so in its status, and on the console
            print(f"Trading is HALTED: {app.agents[AgentName.RISK].state_reason}", flush=True)
        elif stop.is_set():
            status = "stopped"
    except DaemonLockLost as exc:
        status, crash = "lock_lost", exc
        raise
    except BaseException as exc:
        status, crash = "failed", exc
        raise
    finally:
        if crash is not None:
            first = (str(crash).strip().splitlines() or [""])[0]
            _notify(app, NotifyKind.CRASH, f"run {app.run_id} ended {status}: {type(crash).__name__}: {first}")
        else:
            _notify(app, NotifyKind.STOP, f"run {app.run_id} ended {status}")
        _close(app, status)
    return EXIT_OK


def _notify(app: App, kind: NotifyKind, text: str) -> None:
    """Queue a start, stop or crash notification (sent at once; :meth:`App.close` waits for it, bounded)."""
    if app.notifier is not None:
        app.notifier.lifecycle(kind, app.wall_clock.now(), text)


def _notify_once(settings: Settings, repository: Repository | None, kind: NotifyKind, text: str) -> None:
    """A notification outside a run (an unhealthy health check, a manual reset), delivered before returning
    (bounded by NOTIFY_TIMEOUT_SECONDS) and recorded when ``repository`` is writable."""
    from core.notify import build_notifier

    clock = LiveClock()
    notifier = build_notifier(settings, clock=clock.now, repository=repository, run_id=None)
    if notifier is not None:
        notifier.lifecycle(kind, clock.now(), text)
        notifier.close()


def _unknown_symbols(provider: BarProvider, symbols: Sequence[str], now: datetime) -> str | None:
    """A one-line message naming the symbols of SYMBOLS no data provider knows (no file, no bar at all), or None.

    A provider that fails for another reason (a timeout) does not stop start-up: the Data agent handles it."""
    try:
        probe = provider.history(symbols, end=now)
    except DataError as exc:  # the source is unavailable as a whole: not a verdict on the symbols
        print(f"warning: could not check SYMBOLS at start-up: {exc}", file=sys.stderr)
        return None
    return _unknown_message(symbols, probe)


def stale_data_reason(settings: Settings, provider: BarProvider, calendar: MarketCalendar, now: datetime) -> str | None:
    """Why the live loop cannot run on ``provider``'s bars at ``now`` (None when it can): no symbol has a bar for the
    latest completed session, so every iteration would exclude every symbol as stale."""
    latest = latest_session_day(now, calendar)
    if latest is None:
        return None
    latest_day = date(1970, 1, 1) + timedelta(days=latest)
    probe = _probe(settings, provider, now)
    last_bars = [frame.index[-1].date() for frame in probe.frames.values() if len(frame)]
    if any(day >= latest_day for day in last_bars):
        return None
    main_py = interpreter_command(PROJECT_ROOT / "main.py")
    newest = f"its newest bar is {max(last_bars)}" if last_bars else f"it has no bars for {', '.join(settings.symbols)}"
    return (
        f"{_data_source(settings)} cannot serve the live loop: {newest}, the latest completed session is {latest_day}, "
        f"so every symbol would be excluded as stale; replay the data instead ({main_py} replay) "
        f"or run the live loop on synthetic bars (DATA_PROVIDER=synthetic {main_py} run --offline)"
    )


def _confirm_live(label: str, account_number: str, confirmation: str | None) -> bool:
    """The third opt-in for live trading: the account's *whole* number, given with ``--confirm-live ACCOUNT`` or typed
    at an interactive prompt. Anything else refuses, and a refusal shows no digit of the account number (nor what was
    typed)."""
    expected = account_number.strip().upper()

    def matches(text: str) -> bool:
        return bool(expected) and hmac.compare_digest(text.strip().upper().encode(), expected.encode())

    if confirmation is not None:
        if matches(confirmation):
            return True
        print(
            "error: --confirm-live does not match the LIVE account's number (the whole number is required); not starting",
            file=sys.stderr,
        )
        return False
    if not sys.stdin.isatty():
        print(
            "error: LIVE trading needs --confirm-live <the whole account number> when not interactive; not starting",
            file=sys.stderr,
        )
        return False
    answer = input(f"LIVE trading with real money on {label}. Type the whole account number to continue: ")
    if matches(answer):
        return True
    print("error: confirmation did not match the account number; not starting", file=sys.stderr)
    return False


def status_report(settings: Settings, calendar: MarketCalendar, at: datetime) -> dict[str, object]:
    """Whether the market is open at ``at``, the current or next session (Eastern time), and the next iteration."""
    session = calendar.session_for(at)
    is_open = calendar.is_open(at)
    current = session if session is not None and at < session.close_utc else None
    upcoming = current or calendar.next_session(at)
    next_iteration = schedule_for(settings, calendar)(at)
    return {
        "at": at.isoformat(),
        "at_eastern": format_eastern(at),
        "market_open": bool(is_open),
        "session": "current" if current is not None else "next",
        "session_date": upcoming.date.isoformat(),
        "open_eastern": format_eastern(upcoming.open_utc),
        "close_eastern": format_eastern(upcoming.close_utc),
        "early_close": bool(upcoming.early_close),
        "next_iteration": next_iteration.isoformat(),
        "next_iteration_eastern": format_eastern(next_iteration),
        "schedule": settings.schedule.value,
    }


def _status(settings: Settings, at_text: str | None, as_json: bool) -> int:
    if at_text:
        try:
            at = datetime.fromisoformat(at_text)
        except ValueError:
            print(f"error: --at: not an ISO time: {at_text!r}", file=sys.stderr)
            return EXIT_CONFIG
        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    else:
        at = LiveClock().now()
    report = status_report(settings, MarketCalendar(), at)
    if settings.has_alpaca_keys and not at_text:
        report["alpaca_clock"] = asyncio.run(_alpaca_clock(settings))
    report["daemon"] = _daemon_status(settings)
    if as_json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    print(f"At {report['at_eastern']}: market {'OPEN' if report['market_open'] else 'closed'}")
    kind = "Current" if report["session"] == "current" else "Next"
    early = " (early close)" if report["early_close"] else ""
    print(
        f"{kind} session {report['session_date']}: open {report['open_eastern']}, close {report['close_eastern']}{early}"
    )
    print(f"Next iteration ({report['schedule']} schedule): {report['next_iteration_eastern']}")
    alpaca = report.get("alpaca_clock")
    if isinstance(alpaca, dict):
        if "error" in alpaca:
            print(f"Alpaca clock: unavailable ({alpaca['error']})")
        else:
            agree = "agrees" if alpaca["is_open"] == report["market_open"] else "DISAGREES with the exchange calendar"
            print(
                f"Alpaca clock ({agree}): market {'OPEN' if alpaca['is_open'] else 'closed'}; next open {alpaca['next_open_eastern']}, next close {alpaca['next_close_eastern']}"
            )
    _print_daemon_status(report["daemon"])  # type: ignore[arg-type]
    return EXIT_OK


async def _alpaca_clock(settings: Settings) -> dict[str, object]:
    """Alpaca's own clock (GET /v2/clock) beside the exchange calendar, when keys are configured."""
    from core.brokers.alpaca import AlpacaBroker
    from core.runtime.app import build_broker
    from utils.rate_limiter import SlidingWindowRateLimiter

    broker = build_broker(
        settings.model_copy(update={"broker": BrokerName.ALPACA}),
        LiveClock(),
        SlidingWindowRateLimiter(settings.alpaca_rate_limit_per_minute, 60.0),
    )
    assert isinstance(broker, AlpacaBroker)  # BROKER=alpaca
    try:
        clock = await broker.market_clock()
    except BrokerError as exc:
        return {"error": str(exc)}
    finally:
        broker.close()
    return {
        "is_open": clock.is_open,
        "next_open": clock.next_open.isoformat(),
        "next_close": clock.next_close.isoformat(),
        "next_open_eastern": format_eastern(clock.next_open),
        "next_close_eastern": format_eastern(clock.next_close),
    }


def _health(settings: Settings, as_json: bool) -> int:
    from core.dashboard.readonly import open_readonly

    engine = open_readonly(settings.database_url)  # never creates (nor migrates) a database; missing -> exit 3
    try:
        report = health_report(settings, Repository(engine), MarketCalendar(), LiveClock().now())
    finally:
        engine.dispose()
    if as_json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print("healthy" if report["healthy"] else "UNHEALTHY: " + "; ".join(report["problems"]))  # type: ignore[arg-type]
        for key in ("last_heartbeat", "last_iteration", "last_status", "data_quality", "next_due", "trading_state"):
            if key in report:
                print(f"  {key}: {report[key]}")
    if not report["healthy"]:
        _notify_once(settings, None, NotifyKind.HEALTH, "; ".join(report["problems"]))  # type: ignore[arg-type]
    return EXIT_OK if report["healthy"] else EXIT_ERROR


def _reset(settings: Settings, reason: str) -> int:
    """Reset the daemon's trading state to ACTIVE; refused while a daemon holds the database."""
    engine = open_database(settings.database_url, create=False)  # a mistyped path is an error, not a new database
    lock = DaemonLock(engine)
    try:
        try:
            lock.acquire()
        except DaemonAlreadyRunning as exc:
            print(
                "error: a daemon is running on this database: stop it first, then reset (its state lives in memory too)",
                file=sys.stderr,
            )
            return exit_code_for(exc)
        repository = Repository(engine)
        saved = repository.get_state(StateKey.RISK_STATE)
        if saved is None:
            print("nothing to reset: no daemon trading state recorded on this database")
            return EXIT_OK
        if str(saved[0].get("state")) == "active":
            # nothing latched: a reset would only move the high-water mark (and hide a drawdown), so it does nothing
            print("trading state is ACTIVE; nothing to reset (the high-water mark is unchanged)")
            return EXIT_OK
        now = LiveClock().now()
        with repository.session() as session:
            latest = session.execute(
                select(Run.id, EquitySnapshotRow.equity)
                .join(EquitySnapshotRow, EquitySnapshotRow.run_id == Run.id)
                .where(Run.kind == "daemon")
                .order_by(EquitySnapshotRow.at.desc())
                .limit(1)
            ).first()
        equity = float(latest[1]) if latest is not None else None
        new = RiskAgent.reset_saved(saved[0], reason=reason, equity=equity, clock=lambda: now)
        repository.put_state(StateKey.RISK_STATE, new, now)
        if latest is not None:
            repository.record_breaker_events(
                latest[0],
                [
                    {
                        "name": "manual_reset",
                        "from_state": str(saved[0].get("state")),
                        "to_state": "active",
                        "reason": reason,
                        "at": now,
                    }
                ],
            )
        print(f"trading state: {saved[0].get('state')} -> active ({new['reason']}); high-water mark reset to {equity}")
        _notify_once(
            settings,
            repository,
            NotifyKind.PROTECTION,
            f"TRADING RESET ({saved[0].get('state')} -> active): {reason}; high-water mark reset to {equity}",
        )
        return EXIT_OK
    finally:
        lock.release()
        engine.dispose()


def _control(settings: Settings, args: argparse.Namespace) -> int:
    """``pause`` / ``resume`` / ``close``: record the command for the daemon (running or not) on this database."""
    from core.runtime.commands import daemon_running, submit

    command_args: dict[str, object] = {"reason": args.reason} if args.reason else {}
    if args.command == "close":
        if bool(args.symbol) == bool(args.all):
            print("error: close: give one SYMBOL or --all", file=sys.stderr)
            return EXIT_CONFIG
        command_args.update({"all": True} if args.all else {"symbols": [args.symbol.strip().upper()]})
        command_args["now"] = bool(args.now)
    engine = open_database(settings.database_url, create=False)  # a mistyped path is an error, not a new database
    try:
        repository = Repository(engine)
        command_id, status, message = submit(
            repository, args.command, command_args, symbols=settings.symbols, now=LiveClock().now()
        )
        if status == "rejected":
            print(f"error: command {command_id} {args.command} rejected: {message}", file=sys.stderr)
            return EXIT_CONFIG
        running = daemon_running(engine)
    finally:
        engine.dispose()
    when = (
        "the daemon picks it up within seconds (it polls while it sleeps) or at its next iteration"
        if running
        else "no daemon runs on this database now: the next start picks it up"
    )
    print(f"command {command_id} {args.command} {message}: pending; {when}")
    print(f"follow it with: {interpreter_command(PROJECT_ROOT / 'main.py')} status")
    return EXIT_OK


def _daemon_status(settings: Settings) -> dict[str, object]:
    """The daemon's state on the configured database for ``status`` (an ``error`` entry when it cannot be read)."""
    from core.dashboard.readonly import open_readonly
    from core.runtime.commands import control_report, daemon_running

    try:
        engine = open_readonly(settings.database_url)  # never creates (nor migrates) a database
    except StorageUnavailable as exc:
        return {"error": str(exc)}
    try:
        return control_report(Repository(engine), running=daemon_running(engine), now=LiveClock().now())
    except SQLAlchemyError as exc:
        return {"error": f"cannot read the daemon's state: {_first_line(exc)}"}
    finally:
        engine.dispose()


def _print_daemon_status(daemon: dict[str, object]) -> None:
    if "error" in daemon:
        print(f"Daemon: {daemon['error']}")
        return
    running = {True: "running", False: "not running", None: "unknown"}[daemon["running"]]  # type: ignore[index]
    paused = f"PAUSED ({daemon['paused_reason']})" if daemon["paused"] else "not paused"
    print(f"Daemon: {running}; {paused}; trading state {daemon['trading_state']}")
    if "last_iteration" in daemon:
        print(
            f"  last iteration {daemon['last_iteration']} at {daemon['last_iteration_eastern']}: "
            f"{daemon['last_iteration_status']}"
        )
    if daemon.get("equity") is not None:
        print(f"  equity {float(str(daemon['equity'])):,.2f}")
    for key, label in (("positions", "open positions"), ("orders_working", "orders working")):
        items = daemon.get(key) or []
        print(f"  {label}: {len(items)}")  # type: ignore[arg-type]
        for item in items:  # type: ignore[attr-defined]
            print("    " + " ".join(str(v) for v in item.values()))
    if daemon.get("closes_queued"):
        print(f"  closes queued for the next iteration: {', '.join(daemon['closes_queued'])}")  # type: ignore[arg-type]
    pending = daemon.get("pending_commands") or []
    print(f"  pending commands: {len(pending)}")  # type: ignore[arg-type]
    for c in pending:  # type: ignore[attr-defined]
        print(f"    #{c['id']} {c['kind']} {json.dumps(c['args'])} by {c['requested_by']} at {c['requested_eastern']}")
    done = [c for c in daemon.get("recent_commands") or [] if c["status"] != "pending"]  # type: ignore[attr-defined]
    if done:
        print("  recent commands:")
    for c in done:
        print(f"    #{c['id']} {c['kind']} {c['status']}: {c['outcome']}")


def dashboard_command(host: str, port: int, refresh: int) -> list[str]:
    """``streamlit run core/dashboard/app.py`` with the server options (the database URL goes in the environment,
    never on a command line that ``ps`` shows)."""
    from core.dashboard import app_path

    return [
        sys.executable, "-m", "streamlit", "run", str(app_path()),
        "--server.headless", "true", "--server.port", str(port), "--server.address", host,
        "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
        "--", "--refresh", str(max(0, refresh)),
    ]  # fmt: skip


def _dashboard(settings: Settings, args: argparse.Namespace, exec_: Callable[..., object] = os.execve) -> int:
    """Check the port and that the database opens read-only, then replace this process with the Streamlit server."""
    from core.dashboard.readonly import open_readonly

    if not 1 <= args.port <= 65535:
        print(f"error: --port {args.port}: must be a TCP port, 1-65535", file=sys.stderr)
        return EXIT_CONFIG

    open_readonly(settings.database_url).dispose()  # DatabaseUnavailable -> exit 3 with a clear message
    command = dashboard_command(args.host, args.port, args.refresh)
    print(
        f"Dashboard on http://{args.host}:{args.port}/ over {safe_url(settings.database_url)} (read-only); Ctrl-C stops it",
        flush=True,
    )
    exec_(command[0], command, {**os.environ, "DATABASE_URL": settings.database_url})
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
    for warning in unknown_env_file_keys():
        print(f"warning: {warning}", file=sys.stderr)
    try:
        overrides = {"database_url": args.db} if args.db else {}
        settings = load_settings(**overrides)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    if command in ("run", "replay", "demo") and is_in_memory(settings.database_url):
        print(
            f"error: DATABASE_URL: {settings.database_url} is an in-memory database: the ledger would vanish at exit; "
            "use a file (sqlite:///path) or PostgreSQL",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    try:
        configure_logging(
            level=settings.log_level if command == "run" else "WARNING",
            log_dir=settings.log_dir,
            retention_days=settings.log_retention_days,
            secrets=settings.secret_values,
            json_lines=settings.log_json,
        )
    except OSError as exc:
        configure_logging(level="WARNING", log_dir=None)
        print(f"error: LOG_DIR: cannot write log files in {settings.log_dir}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        if command == "run":
            return asyncio.run(_run_daemon(settings, args))
        if command == "status":
            return _status(settings, args.at, args.json)
        if command == "backtest":
            return run_backtest_command(args, settings)
        if command == "optimize":
            return run_optimize_command(args, settings)
        if command == "health":
            return _health(settings, args.json)
        if command == "reset":
            return _reset(settings, args.reason)
        if command in ("pause", "resume", "close"):
            return _control(settings, args)
        if command == "dashboard":
            return _dashboard(settings, args)
        app, outcomes, elapsed = asyncio.run(
            _replay(settings, args.start, args.end, kind=command, quiet=args.quiet, llm=args.llm)
        )
        _print_inspection(settings, app, outcomes, elapsed)
        return EXIT_OK
    except LedgerWriteFailed as exc:  # the driver's message may go on with the statement and its parameters
        print(f"error: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return exit_code_for(exc)
    except (ConfigurationError, StorageUnavailable, LockConflict) as exc:  # one line; the code comes from the class
        print(f"error: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    except SQLAlchemyError as exc:  # the database failed outside an iteration's recording (start-up, reconciliation...)
        print(
            f"error: database {safe_url(settings.database_url)} failed: {exc.__class__.__name__}: {_first_line(exc)}",
            file=sys.stderr,
        )
        return EXIT_DB


if __name__ == "__main__":
    sys.exit(main())

"""agent-trader: the six-agent trading daemon.

    python main.py                      run the daemon (paper trading; needs Alpaca keys)
    python main.py run --offline        the same loop on the configured offline data and the simulated broker
    python main.py replay [--start D] [--end D]   replay bundled bars through the simulated clock and broker
    python main.py demo                 replay the last two years of the bundled data and show how to inspect it
    python main.py strategies [--json]  list the registered strategies
    python main.py dashboard [--db URL] [--port 8501] [--host 127.0.0.1]   the read-only monitoring dashboard

Exit codes: 0 done, 1 unexpected error, 2 invalid configuration or usage, 3 database unavailable,
4 another daemon already runs on the database, 5 persistence failure during a run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import UTC, date, datetime, timedelta
from typing import Callable, Sequence


from config.settings import BrokerName, DataProviderName, Settings, SettingsError, TradingMode, load_settings
from core.app import App, MissingKeys, build_app, build_provider, replay_sessions, simulated_clock_for
from core.calendar import MarketCalendar, format_eastern
from core.data.base import BarProvider
from core.clock import LiveClock, SimulatedClock
from core.orchestrator import IterationOutcome, PersistenceFailure, run_live, run_replay
from sqlalchemy import func, select

from agents.risk_agent import RiskAgent
from core.brokers.base import BrokerError
from core.backtest.cli import add_backtest_parser, run_backtest_command
from core.persistence.db import DaemonAlreadyRunning, DaemonLock, DatabaseUnavailable, open_database, safe_url
from core.persistence.models import BreakerEventRow, EquitySnapshotRow, FillRow, Run
from core.persistence.repository import Repository
from core.health import health_report, schedule_for  # noqa: F401  (main.health_report is public API)
from utils.cli import install_stop_handlers, iso_date
from utils.logging import configure_logging

COMMANDS = ("run", "replay", "demo", "backtest", "strategies", "status", "health", "reset", "dashboard")
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
    run.add_argument("--confirm-live", metavar="ACCOUNT", help="live trading only: the account number (or its last 4 digits)")

    for name, help_text in (("replay", "replay a date range of the data through the simulated clock and broker"),
                            ("demo", "replay the last two years of the bundled data")):
        p = sub.add_parser(name, parents=[common], help=help_text)
        p.add_argument("--start", type=iso_date, help="first session (default: two years before --end)")
        p.add_argument("--end", type=iso_date, help="last session (default: the data's last date)")
        p.add_argument("--quiet", action="store_true", help="no progress lines")
        p.add_argument("--llm", action="store_true", help="allow live LLM strategy selection (off by default in replays)")

    status = sub.add_parser("status", parents=[common], help="market open/closed, the current or next session, the next iteration")
    status.add_argument("--at", help="ISO time to evaluate (default: now); naive times are UTC")
    status.add_argument("--json", action="store_true", help="print JSON")

    health = sub.add_parser("health", parents=[common], help="exit 0 when the daemon is fresh and not halted, 1 otherwise")
    health.add_argument("--json", action="store_true", help="print JSON")
    reset = sub.add_parser("reset", parents=[common], help="manual reset of a HALTED/REDUCING daemon to ACTIVE (daemon stopped)")
    reset.add_argument("--reason", required=True, help="who resets and why (recorded)")

    add_backtest_parser(sub, parents=[common])

    dashboard = sub.add_parser("dashboard", parents=[common], help="the read-only monitoring dashboard (Streamlit) on http://HOST:PORT/")
    dashboard.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    dashboard.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    dashboard.add_argument("--refresh", type=int, default=30, metavar="SECONDS", help="panel refresh interval (default 30; 0: off)")

    strategies = sub.add_parser("strategies", help="list the registered strategies")
    strategies.add_argument("--json", action="store_true", help="print JSON")
    return parser


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


async def _replay(
    settings: Settings, start: date | None, end: date | None, *, kind: str, quiet: bool, llm: bool = False
) -> tuple[App, list[IterationOutcome], float]:
    calendar = MarketCalendar()
    provider = build_provider(settings, calendar)
    start, end = _replay_range(settings, provider, start, end)
    sessions = replay_sessions(calendar, start, end)
    clock = simulated_clock_for(sessions)
    app = build_app(settings, kind=kind, clock=clock, provider=provider, calendar=calendar, allow_llm=llm)
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
    repository = Repository(open_database(settings.database_url))
    with repository.session() as session:
        fills = session.scalar(select(func.count()).select_from(FillRow).where(FillRow.run_id == app.run_id)) or 0
        trips = session.execute(
            select(BreakerEventRow.name, BreakerEventRow.at, BreakerEventRow.reason)
            .where(BreakerEventRow.run_id == app.run_id, BreakerEventRow.to_state == "open")
            .order_by(BreakerEventRow.at)
        ).all()
    saved = repository.get_state(f"{app.run_id}:risk:state")
    repository.engine.dispose()
    print(f"Fills: {fills}; trading state at the end: {saved[0]['state'].upper() if saved else 'unknown'}")
    for name, at, reason in trips:
        print(f"  breaker {name} tripped {at.date()}: {reason}")
    print(f"Database: {db}")
    db_flag = "" if settings.database_url == Settings.model_fields["database_url"].default else f" --db '{db}'"
    print("Inspect it with:")
    for cmd in ("trades", "performance", "decisions --symbol AAPL --limit 20", "decisions --action 'denied:*'", "risk", "breakers", "shadow"):
        print(f"  python scripts/query_trades.py {cmd} --run {app.run_id}{db_flag}")
    print(f"  python scripts/query_trades.py runs{db_flag}")


async def _run_daemon(settings: Settings, args: argparse.Namespace) -> int:
    if args.offline:
        if settings.data_provider is DataProviderName.ALPACA:
            print("error: --offline needs DATA_PROVIDER=files or synthetic (DATA_PROVIDER is alpaca)", file=sys.stderr)
            return EXIT_CONFIG
        settings = settings.model_copy(update={"broker": BrokerName.SIMULATED})
    needs_keys = settings.broker is BrokerName.ALPACA or settings.data_provider is DataProviderName.ALPACA
    if needs_keys and not settings.has_alpaca_keys:
        print(NEEDS_KEYS, file=sys.stderr)
        return EXIT_CONFIG
    if settings.trading_mode is TradingMode.LIVE and settings.broker is BrokerName.ALPACA and not settings.live_allowed:
        print("error: TRADING_MODE=live also needs LIVE_ALLOWED=true (two separate opt-ins); refusing to start", file=sys.stderr)
        return EXIT_CONFIG
    clock = LiveClock()
    calendar = MarketCalendar()
    app = build_app(settings, kind="daemon", clock=clock, calendar=calendar)
    try:
        label = await app.broker.account_label() if hasattr(app.broker, "account_label") else f"{app.broker.name} account"
        if settings.trading_mode is TradingMode.LIVE and settings.broker is BrokerName.ALPACA:
            if not _confirm_live(label, args.confirm_live):
                app.close("refused")
                return EXIT_CONFIG
        if app.reconciler is not None:  # orders in doubt resolved, what happened while down caught up, then compared
            found = await app.agents["execution"].start(clock.now())
            print(f"Reconciliation at start-up: {len(found)} discrepancies" + (" (see query_trades.py reconcile)" if found else ""), flush=True)
    except BaseException:
        app.close("failed")
        raise
    stop = asyncio.Event()
    install_stop_handlers(stop)
    iterations = 1 if args.once else args.iterations
    next_run = schedule_for(settings, calendar)
    status = "finished"
    try:
        print(
            f"Daemon started: mode {settings.trading_mode.value.upper()}, {label}, data {app.provider.name}, run {app.run_id}",
            flush=True,
        )
        await run_live(app.orchestrator, next_run=next_run, stop=stop, iterations=iterations)
        await app.bus.close()
        if stop.is_set():
            status = "stopped"
    except BaseException:
        status = "failed"
        raise
    finally:
        app.close(status)
    return EXIT_OK


def _confirm_live(label: str, confirmation: str | None) -> bool:
    """The third opt-in for live trading: ``--confirm-live ACCOUNT`` naming the account's last four digits (or the
    full number), or typing them at an interactive prompt. Anything else refuses."""
    digits = "".join(ch for ch in label.split("****")[-1][:4] if ch.isdigit())
    if confirmation is not None:
        if digits and confirmation.strip().endswith(digits):
            return True
        print(f"error: --confirm-live {confirmation!r} does not name this account ({label})", file=sys.stderr)
        return False
    if not sys.stdin.isatty():
        print(f"error: LIVE trading on {label} needs --confirm-live <account number> when not interactive", file=sys.stderr)
        return False
    answer = input(f"LIVE trading with real money on {label}. Type the account's last four digits to continue: ")
    if digits and answer.strip() == digits:
        return True
    print("error: confirmation did not match; not starting", file=sys.stderr)
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
    if as_json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    print(f"At {report['at_eastern']}: market {'OPEN' if report['market_open'] else 'closed'}")
    kind = "Current" if report["session"] == "current" else "Next"
    early = " (early close)" if report["early_close"] else ""
    print(f"{kind} session {report['session_date']}: open {report['open_eastern']}, close {report['close_eastern']}{early}")
    print(f"Next iteration ({report['schedule']} schedule): {report['next_iteration_eastern']}")
    alpaca = report.get("alpaca_clock")
    if isinstance(alpaca, dict):
        if "error" in alpaca:
            print(f"Alpaca clock: unavailable ({alpaca['error']})")
        else:
            agree = "agrees" if alpaca["is_open"] == report["market_open"] else "DISAGREES with the exchange calendar"
            print(f"Alpaca clock ({agree}): market {'OPEN' if alpaca['is_open'] else 'closed'}; next open {alpaca['next_open_eastern']}, next close {alpaca['next_close_eastern']}")
    return EXIT_OK


async def _alpaca_clock(settings: Settings) -> dict[str, object]:
    """Alpaca's own clock (GET /v2/clock) beside the exchange calendar, when keys are configured."""
    from core.app import build_broker
    from utils.rate_limiter import SlidingWindowRateLimiter

    broker = build_broker(
        settings.model_copy(update={"broker": BrokerName.ALPACA}),
        LiveClock(),
        SlidingWindowRateLimiter(settings.alpaca_rate_limit_per_minute, 60.0),
    )
    try:
        clock = await broker.market_clock()  # type: ignore[attr-defined]
    except BrokerError as exc:
        return {"error": str(exc)}
    finally:
        broker.close()  # type: ignore[attr-defined]
    return {
        "is_open": clock.is_open,
        "next_open": clock.next_open.isoformat(),
        "next_close": clock.next_close.isoformat(),
        "next_open_eastern": format_eastern(clock.next_open),
        "next_close_eastern": format_eastern(clock.next_close),
    }


def _health(settings: Settings, as_json: bool) -> int:
    engine = open_database(settings.database_url)
    try:
        report = health_report(settings, Repository(engine), MarketCalendar(), LiveClock().now())
    finally:
        engine.dispose()
    if as_json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print("healthy" if report["healthy"] else "UNHEALTHY: " + "; ".join(report["problems"]))  # type: ignore[arg-type]
        for key in ("last_heartbeat", "last_iteration", "last_status", "next_due", "trading_state"):
            if key in report:
                print(f"  {key}: {report[key]}")
    return EXIT_OK if report["healthy"] else EXIT_ERROR


def _reset(settings: Settings, reason: str) -> int:
    """Reset the daemon's trading state to ACTIVE; refused while a daemon holds the database."""
    engine = open_database(settings.database_url)
    lock = DaemonLock(engine)
    try:
        try:
            lock.acquire()
        except DaemonAlreadyRunning:
            print("error: a daemon is running on this database: stop it first, then reset (its state lives in memory too)", file=sys.stderr)
            return EXIT_LOCKED
        repository = Repository(engine)
        saved = repository.get_state("risk:state")
        if saved is None:
            print("nothing to reset: no daemon trading state recorded on this database")
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
        repository.put_state("risk:state", new, now)
        if latest is not None:
            repository.record_breaker_events(
                latest[0],
                [{"name": "manual_reset", "from_state": str(saved[0].get("state")), "to_state": "active", "reason": reason, "at": now}],
            )
        print(f"trading state: {saved[0].get('state')} -> active ({new['reason']}); high-water mark reset to {equity}")
        return EXIT_OK
    finally:
        lock.release()
        engine.dispose()


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
    """Check that the database opens read-only, then replace this process with the Streamlit server."""
    from core.dashboard.readonly import open_readonly

    open_readonly(settings.database_url).dispose()  # DatabaseUnavailable -> exit 3 with a clear message
    command = dashboard_command(args.host, args.port, args.refresh)
    print(f"Dashboard on http://{args.host}:{args.port}/ over {safe_url(settings.database_url)} (read-only); Ctrl-C stops it", flush=True)
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
        json_lines=settings.log_json,
    )
    try:
        if command == "run":
            return asyncio.run(_run_daemon(settings, args))
        if command == "status":
            return _status(settings, args.at, args.json)
        if command == "backtest":
            return run_backtest_command(args, settings)
        if command == "health":
            return _health(settings, args.json)
        if command == "reset":
            return _reset(settings, args.reason)
        if command == "dashboard":
            return _dashboard(settings, args)
        app, outcomes, elapsed = asyncio.run(_replay(settings, args.start, args.end, kind=command, quiet=args.quiet, llm=args.llm))
        _print_inspection(settings, app, outcomes, elapsed)
        return EXIT_OK
    except (SettingsError, MissingKeys) as exc:
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

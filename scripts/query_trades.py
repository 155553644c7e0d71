#!/usr/bin/env python3
"""Inspect what the daemon did: fills, orders, decisions, equity and runs; reports on performance, calibration,
circuit breakers, risk, reconciliation, and why a symbol was (not) traded on a day.

    python scripts/query_trades.py trades [--symbol AAPL] [--start 2020-01-01] [--end 2020-12-31] [--run latest]
    python scripts/query_trades.py orders | decisions | equity | runs | llm | shadow
    ... --json (a JSON array of objects) | --csv | readable table (default)

    python scripts/query_trades.py performance [--run latest] [--start ..] [--end ..] [--symbol AAPL]
    python scripts/query_trades.py calibration [--bins 5] | breakers [--name llm_selection] | risk | reconcile
    python scripts/query_trades.py why AAPL 2020-03-02
    ... --json (one JSON object; money as decimal strings, an infinite ratio as "inf") | readable text (default)

    ... --db sqlite:///path/to.db | --db postgresql://user@host/db   (default: DATABASE_URL / .env)
    ... --run ID | latest | all   listings: the latest run by default, named on the first line (`runs`: every run)

Round trips (performance, calibration, why) are rebuilt from the fills, long-only and at average cost: one trade
from flat to flat, scale-ins and partial exits included; see core/analytics/reporting/trips.py.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.errors import ConfigurationError  # noqa: E402
from sqlalchemy import inspect  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from config.settings import SettingsError, load_settings  # noqa: E402
from utils.cli import interpreter_command, iso_date  # noqa: E402
from core.analytics import reporting  # noqa: E402
from core.analytics.reporting import listings  # noqa: E402
from core.analytics.reporting.output import (  # noqa: E402
    json_ready,
    plain,
    render_breakers,
    render_calibration,
    render_csv,
    render_json,
    render_performance,
    render_reconcile,
    render_risk,
    render_table,
    render_why,
)
from core.risk import SectorMapError, load_sector_map  # noqa: E402
from core.persistence.db import (  # noqa: E402
    DatabaseUnavailable,
    InvalidDatabaseUrl,
    check_connection,
    create_db_engine,
    normalise_url,
    safe_url,
    sqlite_file,
)
from core.persistence.models import Run  # noqa: E402

Row = dict[str, Any]


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not (math.isfinite(number) and number > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value!r}")
    return number


def _sector_map(value: str) -> Any:
    try:
        return load_sector_map(value)
    except (OSError, SectorMapError) as exc:
        raise argparse.ArgumentTypeError(f"cannot use sector map {value!r}: {exc}") from None


class UnknownRun(ConfigurationError, LookupError):
    """``--run ID`` names no run in the database (a usage error: exit 2)."""


def _resolve_run(session: Session, run: str | None) -> str | None:
    if run in (None, "all"):
        return None
    if run == "latest":
        return reporting.latest_run_id(session)
    if session.get(Run, run) is None:
        raise UnknownRun(
            f"--run {run}: no such run in this database (list them with: {interpreter_command(Path(__file__))} runs)"
        )
    return run


def _scope_line(requested: str | None, run_id: str | None) -> str | None:
    """What a listing shows, when it is not a run the user named: the latest run by default."""
    if requested == "latest" and run_id is not None:
        return f"run: {run_id} (latest; --run all for every run)"
    if requested == "all":
        return "run: all runs (--run latest or --run ID for one)"
    return None


def _window(args: argparse.Namespace, run_id: str | None) -> dict[str, Any]:
    """The listing filters of the command line, as keyword arguments of :mod:`core.analytics.reporting.listings`."""
    return {
        "run_id": run_id,
        "symbol": getattr(args, "symbol", None),
        "start": args.start,
        "end": args.end,
        "limit": args.limit,
    }


def query_trades(session: Session, args: argparse.Namespace, run_id: str | None) -> list[Row]:
    return listings.list_trades(session, **_window(args, run_id))


def query_orders(session: Session, args: argparse.Namespace, run_id: str | None) -> list[Row]:
    return listings.list_orders(session, **_window(args, run_id), status=args.status)


def query_decisions(session: Session, args: argparse.Namespace, run_id: str | None) -> list[Row]:
    return listings.list_decisions(
        session, **_window(args, run_id), agent=args.agent, action=args.action, with_inputs=args.json
    )


def query_equity(session: Session, args: argparse.Namespace, run_id: str | None) -> list[Row]:
    return listings.list_equity(session, **_window(args, run_id))


def query_runs(session: Session, args: argparse.Namespace, run_id: str | None) -> list[Row]:
    """The runs, oldest first (:func:`core.analytics.reporting.run_list`: one aggregate query for all of them)."""
    return listings.list_runs(session, run_id)


def query_llm(session: Session, args: argparse.Namespace, run_id: str | None) -> dict[str, list[Row]]:
    """LLM calls by provider/model (count, outcomes, tokens, cost, latency percentiles) and abstentions by reason."""
    return reporting.llm_usage(
        session, run_id=run_id, start=args.start, end=args.end, symbol=getattr(args, "symbol", None)
    )


def query_shadow(session: Session, args: argparse.Namespace, run_id: str | None) -> list[Row]:
    """Per strategy: how often it would have signalled, and the average forward return after its BUY/SELL signals,
    beside the same figures for the strategies the selector actually chose (``selector``)."""
    return reporting.shadow_stats(
        session,
        run_id=run_id,
        start=args.start,
        end=args.end,
        symbol=getattr(args, "symbol", None),
        horizon=args.horizon,
    )


QUERIES: dict[str, Callable[[Session, argparse.Namespace, str | None], list[Row]]] = {
    "trades": query_trades,
    "orders": query_orders,
    "decisions": query_decisions,
    "equity": query_equity,
    "runs": query_runs,
    "llm": query_llm,  # type: ignore[dict-item]
    "shadow": query_shadow,
}


# --------------------------------------------------------------------------------------------------- reports
# performance / calibration / breakers / risk / reconcile / why: one object each (core.analytics.reporting), printed as
# readable text by default or as one JSON document with --json.


def report_performance(session: Session, args: argparse.Namespace, run_id: str | None) -> dict[str, Any]:
    return reporting.performance(
        session,
        run_id=run_id,
        symbol=args.symbol,
        start=args.start,
        end=args.end,
        periods_per_year=args.periods_per_year,
    )


def report_calibration(session: Session, args: argparse.Namespace, run_id: str | None) -> Any:
    return reporting.calibration(
        session, run_id=run_id, symbol=args.symbol, start=args.start, end=args.end, bins=args.bins
    )


def report_breakers(session: Session, args: argparse.Namespace, run_id: str | None) -> dict[str, Any]:
    return reporting.breakers(session, run_id=run_id, name=args.name, start=args.start, end=args.end)


def report_risk(session: Session, args: argparse.Namespace, run_id: str | None) -> dict[str, Any]:
    return reporting.risk_view(
        session, run_id=run_id, symbol=args.symbol, start=args.start, end=args.end, sector_map=args.sectors
    )


def report_reconcile(session: Session, args: argparse.Namespace, run_id: str | None) -> list[Row]:
    return reporting.reconcile_view(session, run_id=run_id, symbol=args.symbol, start=args.start, end=args.end)


def report_why(session: Session, args: argparse.Namespace, run_id: str | None) -> dict[str, Any]:
    return reporting.why(session, args.why_symbol, args.day, run_id=run_id)


@dataclass(frozen=True)
class Report:
    query: Callable[[Session, argparse.Namespace, str | None], Any]
    render: Callable[[Any], str]


REPORTS: dict[str, Report] = {
    "performance": Report(report_performance, render_performance),
    "calibration": Report(report_calibration, render_calibration),
    "breakers": Report(report_breakers, render_breakers),
    "risk": Report(report_risk, render_risk),
    "reconcile": Report(report_reconcile, render_reconcile),
    "why": Report(report_why, render_why),
}


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", help="database URL (default: DATABASE_URL from the environment / .env)")
    common.add_argument("--symbol", help="only this symbol")
    common.add_argument("--start", type=iso_date, help="from this date (inclusive)")
    common.add_argument("--end", type=iso_date, help="to this date (inclusive)")
    common.add_argument("--run", help="run id, 'latest' (default; `runs`: 'all') or 'all'")
    common.add_argument("--limit", type=int, help="only the most recent N rows")
    fmt = common.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print a JSON array of objects")
    fmt.add_argument("--csv", action="store_true", help="print CSV")
    parser = argparse.ArgumentParser(
        prog="query_trades.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("trades", parents=[common], help="fills with their order's strategy")
    orders = sub.add_parser("orders", parents=[common], help="orders and their status")
    orders.add_argument("--status", help="only orders in this status (e.g. filled, rejected)")
    decisions = sub.add_parser("decisions", parents=[common], help="every agent's decision per symbol")
    decisions.add_argument(
        "--agent", choices=["data", "strategy", "quant", "risk", "execution"], help="only this agent"
    )
    decisions.add_argument("--action", help="action pattern, e.g. 'denied:*' or BUY")
    sub.add_parser("equity", parents=[common], help="equity snapshots")
    sub.add_parser("runs", parents=[common], help="runs (daemon sessions, replays, backtests): every run unless --run")
    sub.add_parser(
        "llm", parents=[common], help="LLM calls: count, tokens, cost, latency percentiles; abstentions by reason"
    )
    shadow = sub.add_parser("shadow", parents=[common], help="per-strategy shadow signals vs the selector's choices")
    shadow.add_argument("--horizon", type=int, default=10, help="bars ahead for the forward return (default 10)")

    report = argparse.ArgumentParser(add_help=False)
    report.add_argument("--db", help="database URL (default: DATABASE_URL from the environment / .env)")
    report.add_argument("--json", action="store_true", help="print one JSON document")
    any_run = argparse.ArgumentParser(add_help=False)
    any_run.add_argument("--run", default="all", help="run id, 'latest' or 'all' (default)")
    window = argparse.ArgumentParser(add_help=False)
    window.add_argument("--start", type=iso_date, help="from this date (inclusive)")
    window.add_argument("--end", type=iso_date, help="to this date (inclusive)")
    symbol = argparse.ArgumentParser(add_help=False)
    symbol.add_argument("--symbol", help="only this symbol")
    one_run = "run id or 'latest' (default; 'all' also means the latest: computed one run at a time)"

    performance = sub.add_parser(
        "performance",
        parents=[report, window, symbol],
        help="metrics of one run: return, Sharpe, Sortino, drawdown, VaR, exposure, trades (by strategy, by symbol)",
    )
    performance.add_argument(
        "--periods-per-year", type=_positive_float, default=252.0, help="equity snapshots per year (default 252: daily)"
    )
    performance.add_argument("--run", default="latest", help=one_run)
    calibration = sub.add_parser(
        "calibration",
        parents=[report, any_run, window, symbol],
        help="entry confidence vs outcome of closed round trips",
    )
    calibration.add_argument("--bins", type=_positive_int, default=5, help="reliability bins over [0, 1] (default 5)")
    breakers = sub.add_parser(
        "breakers", parents=[report, any_run, window], help="circuit breakers: current states and trip/recovery history"
    )
    breakers.add_argument("--name", help="only this breaker (e.g. llm_selection)")
    risk = sub.add_parser(
        "risk", parents=[report, window, symbol], help="trading state, exposure by sector, refusals by rule"
    )
    risk.add_argument("--run", default="latest", help=one_run)
    risk.add_argument("--sectors", type=_sector_map, help="sector map JSON (default config/sectors.json)")
    sub.add_parser(
        "reconcile", parents=[report, any_run, window, symbol], help="reconciliation events (database vs broker)"
    )
    why = sub.add_parser(
        "why", parents=[report], help="every decision, LLM call, order, fill and the outcome for SYMBOL on DATE"
    )
    why.add_argument("why_symbol", metavar="SYMBOL")
    why.add_argument("day", metavar="DATE", type=iso_date, help="session date YYYY-MM-DD")
    why.add_argument(
        "--run", default="all", help="run id or 'latest'; default: the latest run that decided about SYMBOL on DATE"
    )
    return parser


def database_url(args: argparse.Namespace) -> str:
    if args.db:
        return args.db
    return load_settings().database_url


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.run is None:  # listings show the latest run; `runs` lists them all
        args.run = "all" if args.command == "runs" else "latest"
    try:
        url = database_url(args)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        parsed = normalise_url(url)
        path = sqlite_file(parsed) if parsed.get_backend_name() == "sqlite" else None
    except InvalidDatabaseUrl as exc:
        print(f"error: DATABASE_URL: {exc}", file=sys.stderr)
        return 2
    if path is not None and not path.is_file():  # never create a database to query it
        print(f"error: no database at {path} (run `make demo` or the daemon first, or pass --db)", file=sys.stderr)
        return 3
    engine = create_db_engine(url, create=False)
    try:
        check_connection(engine)
        if not inspect(engine).has_table("runs"):
            print(f"error: {safe_url(url)} holds no trading data (no 'runs' table)", file=sys.stderr)
            return 3
        with Session(engine) as session:
            run_id = _resolve_run(session, args.run)
            if args.command in REPORTS:
                result = REPORTS[args.command].query(session, args, run_id)
            else:
                rows = QUERIES[args.command](session, args, run_id)
    except DatabaseUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except UnknownRun as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    finally:
        engine.dispose()
    scope = _scope_line(args.run, run_id) if args.command not in ("runs", "why", "performance", "risk") else None
    if scope is not None:  # on stderr when the output is JSON/CSV for a program
        print(scope, file=sys.stderr if args.json or getattr(args, "csv", False) else sys.stdout)
    if args.command in REPORTS:
        print(json.dumps(json_ready(result), indent=2) if args.json else REPORTS[args.command].render(result))
        return 0
    sections = rows if isinstance(rows, dict) else None
    if args.json:
        print(
            json.dumps({k: [{c: plain(v) for c, v in r.items()} for r in rs] for k, rs in sections.items()}, indent=2)
            if sections
            else render_json(rows)
        )
    elif args.csv:
        for name, rs in (sections or {"": rows}).items():
            if name:
                sys.stdout.write(f"# {name}\n")
            sys.stdout.write(render_csv(rs))
    else:
        for name, rs in (sections or {"": rows}).items():
            if name:
                print(f"\n{name}:")
            print(render_table(rs))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Inspect what the daemon did: fills, orders, decisions, equity and runs.

    python scripts/query_trades.py trades [--symbol AAPL] [--start 2020-01-01] [--end 2020-12-31] [--run latest]
    python scripts/query_trades.py orders | decisions | equity | runs
    ... --json (a JSON array of objects) | --csv | readable table (default)
    ... --db sqlite:///path/to.db | --db postgresql://user@host/db   (default: DATABASE_URL / .env)
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import io
import json
import sys
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Select, inspect, select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from config.settings import SettingsError, load_settings  # noqa: E402
from core.persistence.db import DatabaseUnavailable, check_connection, create_db_engine, normalise_url, safe_url  # noqa: E402
from core.persistence.models import DecisionRow, EquitySnapshotRow, FillRow, Iteration, OrderRow, Run  # noqa: E402

Row = dict[str, Any]


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date (YYYY-MM-DD): {value!r}") from None


def _start(d: date | None) -> datetime | None:
    return datetime.combine(d, time.min, tzinfo=UTC) if d else None


def _end(d: date | None) -> datetime | None:
    return datetime.combine(d + timedelta(days=1), time.min, tzinfo=UTC) if d else None


def _resolve_run(session: Session, run: str | None) -> str | None:
    if run in (None, "all"):
        return None
    if run == "latest":
        latest = session.scalar(select(Run.id).order_by(Run.started_at.desc()).limit(1))
        if latest is None:
            raise LookupError("the database holds no runs yet")
        return latest
    return run


def _filters(stmt: Select[Any], model: Any, ts_column: Any, args: argparse.Namespace, run_id: str | None) -> Select[Any]:
    if getattr(args, "symbol", None):
        stmt = stmt.where(model.symbol == args.symbol.upper())
    if run_id is not None:
        stmt = stmt.where(model.run_id == run_id)
    if args.start:
        stmt = stmt.where(ts_column >= _start(args.start))
    if args.end:
        stmt = stmt.where(ts_column < _end(args.end))
    return stmt


def _limit(stmt: Select[Any], ts_column: Any, args: argparse.Namespace) -> Select[Any]:
    """Oldest first; with --limit N, the most recent N (still printed oldest first)."""
    if args.limit:
        return stmt.order_by(ts_column.desc()).limit(args.limit)
    return stmt.order_by(ts_column)


def query_trades(session: Session, args: argparse.Namespace, run_id: str | None) -> list[Row]:
    stmt = select(FillRow, OrderRow.strategy, OrderRow.order_type, OrderRow.reason).join(
        OrderRow, OrderRow.client_order_id == FillRow.client_order_id
    )
    stmt = _limit(_filters(stmt, FillRow, FillRow.filled_at, args, run_id), FillRow.filled_at, args)
    rows = []
    for fill, strategy, order_type, reason in session.execute(stmt):
        rows.append(
            {
                "filled_at": fill.filled_at,
                "symbol": fill.symbol,
                "side": fill.side,
                "quantity": fill.quantity,
                "price": fill.price,
                "value": (fill.quantity * fill.price).quantize(Decimal("0.01")),
                "commission": fill.commission,
                "strategy": strategy,
                "order_type": order_type,
                "client_order_id": fill.client_order_id,
                "run_id": fill.run_id,
            }
        )
    return _ordered(rows, "filled_at", args)


def query_orders(session: Session, args: argparse.Namespace, run_id: str | None) -> list[Row]:
    stmt = _limit(_filters(select(OrderRow), OrderRow, OrderRow.submitted_at, args, run_id), OrderRow.submitted_at, args)
    if args.status:
        stmt = stmt.where(OrderRow.status == args.status)
    rows = [
        {
            "submitted_at": o.submitted_at,
            "symbol": o.symbol,
            "side": o.side,
            "type": o.order_type,
            "quantity": o.quantity,
            "status": o.status,
            "filled": o.filled_quantity,
            "avg_price": o.average_fill_price,
            "strategy": o.strategy,
            "client_order_id": o.client_order_id,
            "reason": o.reason,
            "run_id": o.run_id,
        }
        for o in session.scalars(stmt)
    ]
    return _ordered(rows, "submitted_at", args)


def query_decisions(session: Session, args: argparse.Namespace, run_id: str | None) -> list[Row]:
    stmt = _filters(select(DecisionRow), DecisionRow, DecisionRow.as_of, args, run_id)
    if args.agent:
        stmt = stmt.where(DecisionRow.agent == args.agent)
    stmt = stmt.order_by(DecisionRow.as_of, DecisionRow.id) if not args.limit else stmt.order_by(DecisionRow.as_of.desc(), DecisionRow.id.desc())
    rows: list[Row] = []
    for d in session.scalars(stmt):
        if args.action and not fnmatch.fnmatchcase(d.action, args.action):
            continue
        rows.append(
            {
                "as_of": d.as_of,
                "symbol": d.symbol,
                "agent": d.agent,
                "action": d.action,
                "strategy": d.strategy,
                "confidence": round(d.confidence, 4) if d.confidence is not None else None,
                "reason": d.reason,
                **({"inputs": d.inputs} if args.json else {}),
                "iteration_id": d.iteration_id,
            }
        )
        if args.limit and len(rows) >= args.limit:
            break
    return _ordered(rows, "as_of", args)


def query_equity(session: Session, args: argparse.Namespace, run_id: str | None) -> list[Row]:
    stmt = _limit(_filters(select(EquitySnapshotRow), EquitySnapshotRow, EquitySnapshotRow.at, args, run_id), EquitySnapshotRow.at, args)
    rows = [
        {
            "at": e.at,
            "equity": e.equity.quantize(Decimal("0.01")),
            "cash": e.cash.quantize(Decimal("0.01")),
            "market_value": e.market_value.quantize(Decimal("0.01")),
            "positions": e.positions,
            "iteration_id": e.iteration_id,
        }
        for e in session.scalars(stmt)
    ]
    return _ordered(rows, "at", args)


def query_runs(session: Session, args: argparse.Namespace, run_id: str | None) -> list[Row]:
    stmt = select(Run).order_by(Run.started_at)
    if run_id is not None:
        stmt = stmt.where(Run.id == run_id)
    rows = []
    for r in session.scalars(stmt):
        counts = session.execute(
            select(Iteration.status, Iteration.as_of).where(Iteration.run_id == r.id).order_by(Iteration.as_of)
        ).all()
        rows.append(
            {
                "run_id": r.id,
                "kind": r.kind,
                "status": r.status,
                "started_at": r.started_at,
                "finished_at": r.finished_at,
                "iterations": len(counts),
                "failed": sum(1 for s, _ in counts if s != "ok"),
                "first_session": counts[0][1].date() if counts else None,
                "last_session": counts[-1][1].date() if counts else None,
                "broker": r.broker,
                "data": r.data_provider,
            }
        )
    return rows


def _ordered(rows: list[Row], key: str, args: argparse.Namespace) -> list[Row]:
    return sorted(rows, key=lambda r: r[key]) if args.limit else rows


QUERIES: dict[str, Callable[[Session, argparse.Namespace, str | None], list[Row]]] = {
    "trades": query_trades,
    "orders": query_orders,
    "decisions": query_decisions,
    "equity": query_equity,
    "runs": query_runs,
}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else format(value, "f")
    return value


def _cell(value: Any, width: int = 60) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M") if (value.hour, value.minute) != (0, 0) else value.strftime("%Y-%m-%d")
    text = str(_plain(value))
    return text if len(text) <= width else text[: width - 1] + "…"


def render_table(rows: Sequence[Row]) -> str:
    if not rows:
        return "(no rows)"
    columns = list(rows[0].keys())
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells)
    lines.append(f"({len(rows)} rows)")
    return "\n".join(lines)


def render_csv(rows: Sequence[Row]) -> str:
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0].keys()), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _plain(v) if not isinstance(v, (dict, list)) else json.dumps(v) for k, v in row.items()})
    return out.getvalue()


def render_json(rows: Sequence[Row]) -> str:
    return json.dumps([{k: _plain(v) for k, v in r.items()} for r in rows], indent=2, default=str)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", help="database URL (default: DATABASE_URL from the environment / .env)")
    common.add_argument("--symbol", help="only this symbol")
    common.add_argument("--start", type=_date, help="from this date (inclusive)")
    common.add_argument("--end", type=_date, help="to this date (inclusive)")
    common.add_argument("--run", default="all", help="run id, 'latest' or 'all' (default)")
    common.add_argument("--limit", type=int, help="only the most recent N rows")
    fmt = common.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print a JSON array of objects")
    fmt.add_argument("--csv", action="store_true", help="print CSV")
    parser = argparse.ArgumentParser(prog="query_trades.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("trades", parents=[common], help="fills with their order's strategy")
    orders = sub.add_parser("orders", parents=[common], help="orders and their status")
    orders.add_argument("--status", help="only orders in this status (e.g. filled, rejected)")
    decisions = sub.add_parser("decisions", parents=[common], help="every agent's decision per symbol")
    decisions.add_argument("--agent", choices=["data", "strategy", "quant", "risk", "execution"], help="only this agent")
    decisions.add_argument("--action", help="action pattern, e.g. 'denied:*' or BUY")
    sub.add_parser("equity", parents=[common], help="equity snapshots")
    sub.add_parser("runs", parents=[common], help="runs (daemon sessions, replays)")
    return parser


def database_url(args: argparse.Namespace) -> str:
    if args.db:
        return args.db
    return load_settings().database_url


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        url = database_url(args)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        if not Path(parsed.database).expanduser().exists():
            print(f"error: no database at {parsed.database} (run `make demo` or the daemon first, or pass --db)", file=sys.stderr)
            return 3
    engine = create_db_engine(url)
    try:
        check_connection(engine)
        if not inspect(engine).has_table("runs"):
            print(f"error: {safe_url(url)} holds no trading data (no 'runs' table)", file=sys.stderr)
            return 3
        with Session(engine) as session:
            run_id = _resolve_run(session, args.run)
            rows = QUERIES[args.command](session, args, run_id)
    except DatabaseUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    finally:
        engine.dispose()
    if args.json:
        print(render_json(rows))
    elif args.csv:
        sys.stdout.write(render_csv(rows))
    else:
        print(render_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

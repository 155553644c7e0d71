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
from core.persistence.models import (  # noqa: E402
    DecisionRow,
    EquitySnapshotRow,
    FillRow,
    Iteration,
    LLMCallRow,
    OrderRow,
    Run,
    ShadowSignalRow,
)

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


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo), 1)


def query_llm(session: Session, args: argparse.Namespace, run_id: str | None) -> dict[str, list[Row]]:
    """LLM calls by provider/model (count, outcomes, tokens, cost, latency percentiles) and abstentions by reason."""
    stmt = _filters(select(LLMCallRow), LLMCallRow, LLMCallRow.started_at, args, run_id)
    groups: dict[tuple[str, str, str], list[LLMCallRow]] = {}
    for call in session.scalars(stmt.order_by(LLMCallRow.started_at)):
        groups.setdefault((call.purpose, call.provider, call.model), []).append(call)
    calls: list[Row] = []
    for (purpose, provider, model), rows in sorted(groups.items()):
        latencies = [r.latency_ms for r in rows if r.outcome != "budget_exceeded"]
        costs = [r.cost_usd for r in rows if r.cost_usd is not None]
        outcomes: dict[str, int] = {}
        for r in rows:
            outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
        calls.append(
            {
                "purpose": purpose,
                "provider": provider,
                "model": model,
                "calls": len(rows),
                "outcomes": ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())),
                "retries": sum(r.retries for r in rows),
                "input_tokens": sum(r.input_tokens for r in rows),
                "output_tokens": sum(r.output_tokens for r in rows),
                "cost_usd": sum(costs, Decimal("0")),
                "unpriced_calls": sum(1 for r in rows if r.cost_usd is None and r.outcome != "budget_exceeded"),
                "latency_p50_ms": _percentile(latencies, 0.5),
                "latency_p95_ms": _percentile(latencies, 0.95),
                "latency_max_ms": round(max(latencies), 1) if latencies else None,
            }
        )
    abst = _filters(select(DecisionRow), DecisionRow, DecisionRow.as_of, args, run_id).where(
        DecisionRow.agent == "selector", DecisionRow.action == "abstain"
    )
    reasons: dict[str, int] = {}
    for d in session.scalars(abst):
        reasons[d.reason] = reasons.get(d.reason, 0) + 1
    abstentions = [{"reason": r, "count": n} for r, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))]
    return {"calls": calls, "abstentions": abstentions}


def query_shadow(session: Session, args: argparse.Namespace, run_id: str | None) -> list[Row]:
    """Per strategy: how often it would have signalled, and the average forward return after its BUY/SELL signals,
    beside the same figures for the strategies the selector actually chose (``selector``)."""
    horizon = args.horizon
    stmt = _filters(select(ShadowSignalRow), ShadowSignalRow, ShadowSignalRow.as_of, args, run_id).order_by(
        ShadowSignalRow.run_id, ShadowSignalRow.symbol, ShadowSignalRow.as_of
    )
    series: dict[tuple[str, str], list[ShadowSignalRow]] = {}
    for row in session.scalars(stmt):
        series.setdefault((row.run_id, row.symbol), []).append(row)
    stats: dict[str, dict[str, Any]] = {}

    def note(name: str, action: str, forward: float | None) -> None:
        st = stats.setdefault(name, {"strategy": name, "evaluated": 0, "buy": 0, "sell": 0, "hold": 0, "_buy_fwd": [], "_sell_fwd": []})
        st[action.lower()] += 1
        if forward is not None and action != "HOLD":
            st[f"_{action.lower()}_fwd"].append(forward)

    for rows in series.values():
        for i, row in enumerate(rows):
            forward = rows[i + horizon].close / row.close - 1.0 if i + horizon < len(rows) and row.close else None
            for name, (action, _strength) in row.signals.items():
                note(name, action, forward)
                stats[name]["evaluated"] += 1
            chosen = row.signals.get(row.selected)
            if chosen is not None:
                note("selector", chosen[0], forward)
                stats["selector"]["evaluated"] += 1
    out: list[Row] = []
    for name, st in sorted(stats.items(), key=lambda kv: (kv[0] != "selector", kv[0])):
        buy, sell = st.pop("_buy_fwd"), st.pop("_sell_fwd")
        st["buy_fwd_return_avg"] = round(sum(buy) / len(buy), 5) if buy else None
        st["buy_hit_rate"] = round(sum(1 for x in buy if x > 0) / len(buy), 3) if buy else None
        st["sell_fwd_return_avg"] = round(sum(sell) / len(sell), 5) if sell else None
        st["sell_hit_rate"] = round(sum(1 for x in sell if x < 0) / len(sell), 3) if sell else None
        st["horizon_bars"] = horizon
        out.append(st)
    return out


def _ordered(rows: list[Row], key: str, args: argparse.Namespace) -> list[Row]:
    return sorted(rows, key=lambda r: r[key]) if args.limit else rows


QUERIES: dict[str, Callable[[Session, argparse.Namespace, str | None], list[Row]]] = {
    "trades": query_trades,
    "orders": query_orders,
    "decisions": query_decisions,
    "equity": query_equity,
    "runs": query_runs,
    "llm": query_llm,  # type: ignore[dict-item]
    "shadow": query_shadow,
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
    sub.add_parser("llm", parents=[common], help="LLM calls: count, tokens, cost, latency percentiles; abstentions by reason")
    shadow = sub.add_parser("shadow", parents=[common], help="per-strategy shadow signals vs the selector's choices")
    shadow.add_argument("--horizon", type=int, default=10, help="bars ahead for the forward return (default 10)")
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
    sections = rows if isinstance(rows, dict) else None
    if args.json:
        print(json.dumps({k: [{c: _plain(v) for c, v in r.items()} for r in rs] for k, rs in sections.items()}, indent=2) if sections else render_json(rows))
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

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
from flat to flat, scale-ins and partial exits included; see core/reporting/trips.py.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import fnmatch
import io
import json
import math
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.errors import ConfigurationError  # noqa: E402
from sqlalchemy import Select, inspect, select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from config.settings import SettingsError, load_settings  # noqa: E402
from utils.cli import interpreter_command, iso_date  # noqa: E402
from core import reporting  # noqa: E402
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
from core.persistence.models import (  # noqa: E402
    DecisionRow,
    EquitySnapshotRow,
    FillRow,
    OrderRow,
    Run,
)

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


def _start(d: date | None) -> datetime | None:
    return datetime.combine(d, time.min, tzinfo=UTC) if d else None


def _end(d: date | None) -> datetime | None:
    return datetime.combine(d + timedelta(days=1), time.min, tzinfo=UTC) if d else None


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


def _filters(
    stmt: Select[Any], model: Any, ts_column: Any, args: argparse.Namespace, run_id: str | None
) -> Select[Any]:
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
    for fill, strategy, order_type, _reason in session.execute(stmt):
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
    stmt = _limit(
        _filters(select(OrderRow), OrderRow, OrderRow.submitted_at, args, run_id), OrderRow.submitted_at, args
    )
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
    stmt = (
        stmt.order_by(DecisionRow.as_of, DecisionRow.id)
        if not args.limit
        else stmt.order_by(DecisionRow.as_of.desc(), DecisionRow.id.desc())
    )
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
    stmt = _limit(
        _filters(select(EquitySnapshotRow), EquitySnapshotRow, EquitySnapshotRow.at, args, run_id),
        EquitySnapshotRow.at,
        args,
    )
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


RUN_LISTING_COLUMNS = (
    "run_id", "kind", "status", "started_at", "finished_at", "iterations", "degraded", "failed",
    "first_session", "last_session", "broker", "data",
)  # fmt: skip


def query_runs(session: Session, args: argparse.Namespace, run_id: str | None) -> list[Row]:
    """The runs, oldest first (:func:`core.reporting.run_list`: one aggregate query for all of them)."""
    return [{k: r[k] for k in RUN_LISTING_COLUMNS} for r in reversed(reporting.run_list(session, run_id))]


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
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=False)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=False)).rstrip() for row in cells)
    lines.append(f"({len(rows)} rows)")
    return "\n".join(lines)


def render_csv(rows: Sequence[Row]) -> str:
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0].keys()), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: _plain(v) if not isinstance(v, (dict, list)) else json.dumps(v) for k, v in row.items()}
            )
    return out.getvalue()


def render_json(rows: Sequence[Row]) -> str:
    return json.dumps([{k: _plain(v) for k, v in r.items()} for r in rows], indent=2, default=str)


# --------------------------------------------------------------------------------------------------- reports
# performance / calibration / breakers / risk / reconcile / why: one object each (core.reporting), printed as
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


def json_ready(value: Any) -> Any:
    """Plain JSON values: Decimals as exact strings, dates ISO, dataclasses as dicts, a non-finite float as the
    strings "inf" / "-inf" / "nan" (strict JSON has no such numbers)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_ready(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_ready(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return _plain(value)


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:,.{digits}f}"


def _pct(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value * 100:.{digits}f}%"


def _money(value: Decimal | float | None) -> str:
    return "n/a" if value is None else f"{value:,.2f}"


def _day(value: datetime | date | None) -> str:
    return _cell(value) if value is not None else "n/a"


def _trade_rows(groups: dict[str, dict[str, Any]], key: str) -> list[Row]:
    return [
        {
            key: name,
            "trades": m["num_trades"],
            "wins": m["wins"],
            "losses": m["losses"],
            "win_rate": _pct(m["win_rate"], 1),
            "total_pnl": _money(m["total_pnl"]),
            "profit_factor": _num(m["profit_factor"]),
            "expectancy": _money(m["expectancy"]),
            "avg_return": _pct(m["expectancy_return"]),
            "payoff": _num(m["payoff_ratio"]),
        }
        for name, m in groups.items()
    ]


_PERFORMANCE_LINES: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("total return", "total_return", _pct),
    ("annualised return", "annualised_return", _pct),
    ("CAGR", "cagr", _pct),
    ("volatility (annualised)", "volatility", _pct),
    ("Sharpe", "sharpe", _num),
    ("Sortino", "sortino", _num),
    ("max drawdown", "max_drawdown", _pct),
    ("longest drawdown (periods)", "max_drawdown_duration_periods", lambda v: "n/a" if v is None else str(v)),
    ("longest drawdown (days)", "max_drawdown_duration_days", lambda v: _num(v, 1)),
    (
        "longest drawdown recovered",
        "longest_drawdown_recovered",
        lambda v: "n/a" if v is None else ("yes" if v else "no"),
    ),
    ("VaR (daily)", "var", _pct),
    ("CVaR (daily)", "cvar", _pct),
    ("exposure (share of snapshots with positions)", "exposure", _pct),
    ("closed trades", "num_trades", str),
    ("wins / losses / break-even", "wins", str),
    ("win rate", "win_rate", _pct),
    ("total pnl (net)", "total_pnl", _money),
    ("gross profit", "gross_profit", _money),
    ("gross loss", "gross_loss", _money),
    ("profit factor", "profit_factor", _num),
    ("expectancy per trade", "expectancy", _money),
    ("average return per trade", "expectancy_return", _pct),
    ("average win", "average_win", _money),
    ("average loss", "average_loss", _money),
    ("payoff ratio", "payoff_ratio", _num),
)


def render_performance(report: dict[str, Any]) -> str:
    m = report["metrics"]
    scope = f", trades of {report['symbol']} only" if report["symbol"] else ""
    lines = [
        f"Performance of run {report['run_id']} ({report['kind']}){scope}",
        f"{_day(m['start'])} .. {_day(m['end'])}: {m['num_observations']} equity snapshots; "
        f"equity {_money(report['first_equity'])} -> {_money(report['last_equity'])} (initial cash {_money(report['initial_cash'])})",
        "",
    ]
    width = max(len(label) for label, _, _ in _PERFORMANCE_LINES)
    for label, key, fmt in _PERFORMANCE_LINES:
        text = f"{m['wins']} / {m['losses']} / {m['breakeven']}" if key == "wins" else fmt(m[key])
        lines.append(f"  {label.ljust(width)}  {text}")
    for title, key in (("By strategy", "strategy"), ("By symbol", "symbol")):
        lines += ["", f"{title}:", render_table(_trade_rows(report[f"by_{key}"], key))]
    if report["open_trips"]:
        rows = [
            {
                "symbol": t["symbol"],
                "strategy": t["strategy"],
                "entry_at": t["entry_at"],
                "quantity": t["open_quantity"],
                "average_cost": t["average_cost"],
                "realized_pnl": _money(t["realized_pnl"]),
            }
            for t in report["open_trips"]
        ]
        lines += ["", "Open positions (not in the trade metrics):", render_table(rows)]
    if report["unmatched_sells"]:
        lines += [
            "",
            "Sells beyond the position rebuilt for this run (not in any trade):",
            render_table(report["unmatched_sells"]),
        ]
    return "\n".join(lines)


def render_calibration(report: Any) -> str:
    lines = [
        f"Calibration of {report.total_trades} closed trades: {report.scored_trades} with an entry confidence, "
        f"{report.skipped_trades} without (skipped)",
    ]
    if report.brier_score is None:
        lines.append("Brier score n/a (no trade carries an entry confidence)")
    else:
        lines.append(f"Brier score {report.brier_score:.4f} (0 is perfect; a constant 0.5 forecast scores 0.25)")
        lines.append(f"mean confidence {report.mean_confidence:.3f}, hit rate (pnl > 0) {report.hit_rate:.3f}")
    rows = [
        {
            "confidence": f"[{b.lower:.2f}, {b.upper:.2f}{']' if i == len(report.reliability) - 1 else ')'}",
            "trades": b.count,
            "mean_confidence": _num(b.mean_confidence) if b.count else "",
            "hit_rate": _num(b.hit_rate) if b.count else "",
        }
        for i, b in enumerate(report.reliability)
    ]
    lines += ["", "Reliability:", render_table(rows)]
    return "\n".join(lines)


def render_breakers(report: dict[str, Any]) -> str:
    current = [
        {k: c[k] for k in ("name", "state", "reason", "changed_at", "trips", "last_trip_at", "updated_at", "source")}
        for c in report["current"]
    ]
    return "\n".join(
        ["Current states:", render_table(current), "", "Events (trips and recoveries):", render_table(report["events"])]
    )


def render_risk(report: dict[str, Any]) -> str:
    state = report["state"]
    updated = f" (updated {_day(state['updated_at'])})" if state.get("updated_at") else ""
    lines = [f"Run {report['run_id']}", f"Trading state: {state['state']}: {state['reason']}{updated}"]
    last = report["last_decision_state"]
    if last is not None:
        lines.append(f"Last recorded by the Risk agent ({_day(last['as_of'])}): {last['state']}: {last['reason']}")
    lines += ["", f"Exposure by sector (equity {_money(report['equity'])} at {_day(report['equity_at'])}):"]
    rows = [
        {
            "sector": b["sector"],
            "symbols": ", ".join(b["symbols"]),
            "value": _money(b["value"]),
            "share_of_equity": _pct(b["share"]),
        }
        for b in report["exposure"]
    ]
    lines.append(render_table(rows))
    lines.append(f"gross exposure {_money(report['gross_exposure'])} ({_pct(report['gross_share'])} of equity)")
    refusals = [
        {
            "rule": r["rule"],
            "count": r["count"],
            "symbols": ", ".join(r["symbols"]),
            "latest": r["latest"],
            "example": f"{r['example_symbol']}: {r['example_reason']}",
        }
        for r in report["refusals"]
    ]
    lines += ["", "Refusals by rule:", render_table(refusals)]
    return "\n".join(lines)


def render_reconcile(rows: list[Row]) -> str:
    return render_table([{**r, "details": json.dumps(json_ready(r["details"]), sort_keys=True)} for r in rows])


def _compact(value: Any, width: int = 400) -> str:
    text = json.dumps(json_ready(value), sort_keys=True)
    return text if len(text) <= width else text[: width - 1] + "…"


def render_why(report: dict[str, Any]) -> str:
    lines = [f"{report['symbol']} on {report['date'].isoformat()} (run {report['run_id']})"]
    if len(report["iterations"]) > 1:
        lines.append(f"{len(report['iterations'])} iterations that day: {', '.join(report['iterations'])}")
    lines += ["", "Decisions (pipeline order):"]
    for d in report["decisions"]:
        extras = [
            x
            for x in (d["strategy"], f"confidence {d['confidence']:.3f}" if d["confidence"] is not None else None)
            if x
        ]
        lines.append(
            f"  {_cell(d['as_of'])}  {d['agent']:<9} {d['action']}" + (f" [{', '.join(extras)}]" if extras else "")
        )
        lines.append(f"      reason: {d['reason']}")
        if d["inputs"]:
            lines.append(f"      inputs: {_compact(d['inputs'])}")
    lines += ["", "LLM calls:"]
    if not report["llm_calls"]:
        lines.append("  (none in this iteration)")
    for c in report["llm_calls"]:
        cost = f"${c['cost_usd']}" if c["cost_usd"] is not None else "unpriced"
        lines.append(
            f"  {_cell(c['started_at'])}  {c['purpose']} {c['provider']}:{c['model']} ({c['prompt_version']}) -> {c['outcome']}; "
            f"{c['input_tokens']}+{c['output_tokens']} tokens, {cost}, {c['latency_ms']:.0f} ms, {c['retries']} retries"
            + ("" if c["about_symbol"] else f" (about {', '.join(c['symbols']) or 'no symbol'})")
        )
        if c["validation_errors"] or c["error"]:
            lines.append(f"      errors: {'; '.join([*c['validation_errors'], *([c['error']] if c['error'] else [])])}")
    lines += ["", "Orders:"]
    if not report["orders"]:
        lines.append("  (none)")
    for o in report["orders"]:
        prices = "".join(
            f" {name} {_plain(o[key])}"
            for name, key in (("limit", "limit_price"), ("stop", "stop_price"))
            if o[key] is not None
        )
        filled = (
            f" ({_plain(o['filled_quantity'])} @ {_plain(o['average_fill_price'])})"
            if o["average_fill_price"] is not None
            else ""
        )
        lines.append(
            f"  {_cell(o['submitted_at'])}  {o['side']} {_plain(o['quantity'])} {o['type']}{prices} [{o['strategy']}]: {o['status']}{filled}"
        )
        lines.append(f"      {o['client_order_id']}: {o['reason']}")
    lines += ["", "Fills:"]
    if not report["fills"]:
        lines.append("  (none)")
    for f in report["fills"]:
        lines.append(
            f"  {_cell(f['filled_at'])}  {f['side']} {_plain(f['quantity'])} @ {_plain(f['price'])}, commission {_plain(f['commission'])} ({f['client_order_id']})"
        )
    out = report["outcome"]
    lines += ["", "Outcome:"]
    status = out["status"]
    if status == "no order":
        lines.append(f"  no order: {out['stage']} {out['action']}: {out['reason']}")
    elif status == "not filled":
        lines.append(f"  not filled: order {out['client_order_id']} is {out['order_status']}")
    else:
        entry = f"entered {_day(out['entry_at'])} @ {_plain(out['entry_price'])} x{_plain(out['quantity'])} [{out['strategy']}]"
        if out["exit_at"] is not None:
            result = f"exited {_day(out['exit_at'])} @ {_plain(out['exit_price'])}, pnl {_money(out['pnl'])} ({_pct(out['return_pct'])}) net of {_money(out['commissions'])} commissions"
        else:
            result = f"open position: {_plain(out['open_quantity'])} held at average cost {_plain(out['average_cost'])}, realized so far {_money(out['realized_pnl'])}"
        label = {"closed": "round trip", "open position": "round trip", "exit": "exit of the round trip"}.get(
            status, f"{status} of the round trip"
        )
        lines.append(f"  {label}: {entry}; {result}")
    return "\n".join(lines)


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
            json.dumps({k: [{c: _plain(v) for c, v in r.items()} for r in rs] for k, rs in sections.items()}, indent=2)
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

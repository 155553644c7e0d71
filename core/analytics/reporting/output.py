"""Text renderings of the read-side reports: a readable table, CSV and JSON for row listings, plain JSON values for
report objects (Decimals as exact strings, an infinite ratio as "inf"), and the readable text of each report
(performance, calibration, breakers, risk, reconcile, why). No database access: every function formats values it is
given.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

Row = dict[str, Any]


def plain(value: Any) -> Any:
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
    text = str(plain(value))
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
            writer.writerow({k: plain(v) if not isinstance(v, (dict, list)) else json.dumps(v) for k, v in row.items()})
    return out.getvalue()


def render_json(rows: Sequence[Row]) -> str:
    return json.dumps([{k: plain(v) for k, v in r.items()} for r in rows], indent=2, default=str)


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
    return plain(value)


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
            f" {name} {plain(o[key])}"
            for name, key in (("limit", "limit_price"), ("stop", "stop_price"))
            if o[key] is not None
        )
        filled = (
            f" ({plain(o['filled_quantity'])} @ {plain(o['average_fill_price'])})"
            if o["average_fill_price"] is not None
            else ""
        )
        lines.append(
            f"  {_cell(o['submitted_at'])}  {o['side']} {plain(o['quantity'])} {o['type']}{prices} [{o['strategy']}]: {o['status']}{filled}"
        )
        lines.append(f"      {o['client_order_id']}: {o['reason']}")
    lines += ["", "Fills:"]
    if not report["fills"]:
        lines.append("  (none)")
    for f in report["fills"]:
        lines.append(
            f"  {_cell(f['filled_at'])}  {f['side']} {plain(f['quantity'])} @ {plain(f['price'])}, commission {plain(f['commission'])} ({f['client_order_id']})"
        )
    out = report["outcome"]
    lines += ["", "Outcome:"]
    status = out["status"]
    if status == "no order":
        lines.append(f"  no order: {out['stage']} {out['action']}: {out['reason']}")
    elif status == "not filled":
        lines.append(f"  not filled: order {out['client_order_id']} is {out['order_status']}")
    else:
        entry = f"entered {_day(out['entry_at'])} @ {plain(out['entry_price'])} x{plain(out['quantity'])} [{out['strategy']}]"
        if out["exit_at"] is not None:
            result = f"exited {_day(out['exit_at'])} @ {plain(out['exit_price'])}, pnl {_money(out['pnl'])} ({_pct(out['return_pct'])}) net of {_money(out['commissions'])} commissions"
        else:
            result = f"open position: {plain(out['open_quantity'])} held at average cost {plain(out['average_cost'])}, realized so far {_money(out['realized_pnl'])}"
        label = {"closed": "round trip", "open position": "round trip", "exit": "exit of the round trip"}.get(
            status, f"{status} of the round trip"
        )
        lines.append(f"  {label}: {entry}; {result}")
    return "\n".join(lines)

"""The self-contained HTML report of a study: the winner, the overfitting verdict and statistics, the parameter
stability plots, the optimisation history, the walk-forward windows with the stitched out-of-sample equity, and the
trials. Same rules as :mod:`core.backtest.report` (inline CSS and SVG, no script, nothing loaded, all input text
escaped), whose helpers it uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.backtest.report import _CSS, _e, _kv_table, _missing, _rows_table, _section, line_chart

__all__ = ["render_study_html", "scatter_chart", "trial_rows", "write_study_report"]

_BLUE, _ORANGE, _GREY, _GREEN = "#2563eb", "#ea580c", "#9ca3af", "#16a34a"


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        return [low]
    return [low + (high - low) * i / (count - 1) for i in range(count)]


def scatter_chart(
    points: Sequence[tuple[float, float]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    highlight: tuple[float, float] | None = None,
    line: Sequence[tuple[float, float]] = (),
    categories: Sequence[str] | None = None,
    width: int = 440,
    height: int = 260,
) -> str:
    """An inline SVG scatter of ``(x, y)`` points, one highlighted point (the chosen one, orange) and an optional
    step line (best so far). ``categories``: x positions are indices into these labels."""
    finite = [(float(x), float(y)) for x, y in points if np.isfinite(x) and np.isfinite(y)]
    if not finite:
        return _missing(title.lower())
    xs = [x for x, _ in finite] + ([highlight[0]] if highlight else [])
    ys = [y for _, y in finite] + ([highlight[1]] if highlight else [])
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 - x0 < 1e-12:
        x0, x1 = x0 - 1, x1 + 1
    if y1 - y0 < 1e-12:
        y0, y1 = y0 - 1, y1 + 1
    pad_x, pad_y = (x1 - x0) * 0.05, (y1 - y0) * 0.08
    x0, x1, y0, y1 = x0 - pad_x, x1 + pad_x, y0 - pad_y, y1 + pad_y
    left, right, top, bottom = 56, 12, 24, 40
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + (y1 - y) / (y1 - y0) * ph

    parts = [
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="{_e(title)}" '
        'font-family="system-ui, sans-serif" font-size="11" class="scatter">',
        f"<title>{_e(title)}</title>",
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#e5e7eb"/>',
        f'<text x="{left}" y="14" font-weight="600">{_e(title)}</text>',
    ]
    for tick in _ticks(y0 + pad_y, y1 - pad_y):
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{sy(tick):.1f}" y2="{sy(tick):.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{left - 4}" y="{sy(tick) + 4:.1f}" text-anchor="end">{_e(f"{tick:.3g}")}</text>')
    if categories is not None:
        x_ticks = [(float(i), str(c)) for i, c in enumerate(categories)]
    else:
        x_ticks = [(t, f"{t:.4g}") for t in _ticks(x0 + pad_x, x1 - pad_x)]
    for tick, text in x_ticks:
        parts.append(f'<text x="{sx(tick):.1f}" y="{top + ph + 14}" text-anchor="middle">{_e(text)}</text>')
    parts.append(f'<text x="{left + pw / 2:.1f}" y="{height - 6}" text-anchor="middle">{_e(x_label)}</text>')
    parts.append(
        f'<text x="12" y="{top + ph / 2:.1f}" text-anchor="middle" transform="rotate(-90 12 {top + ph / 2:.1f})">'
        f"{_e(y_label)}</text>"
    )
    if y0 < 0 < y1:
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{sy(0):.1f}" y2="{sy(0):.1f}" stroke="{_GREY}"/>')
    for x, y in finite:
        parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{_BLUE}" fill-opacity="0.55"/>')
    if line:
        pts = " ".join(f"{sx(float(x)):.1f},{sy(float(y)):.1f}" for x, y in line if np.isfinite(y))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{_GREEN}" stroke-width="1.4"/>')
    if highlight is not None:
        parts.append(
            f'<circle class="chosen" cx="{sx(highlight[0]):.1f}" cy="{sy(highlight[1]):.1f}" r="5.5" fill="{_ORANGE}" '
            'stroke="#7c2d12"><title>chosen</title></circle>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _stability_section(data: Mapping[str, Any]) -> str:
    stab = data.get("stability")
    best = data.get("best_params") or {}
    value = data.get("best_value")
    if not stab or not stab.get("profiles"):
        return _section("stability", "Parameter stability", _missing("parameter stability"))
    charts = []
    for name, profile in stab["profiles"].items():
        raw = [p for p, _ in profile]
        numeric = all(isinstance(p, int | float) and not isinstance(p, bool) for p in raw)
        if numeric:
            points = [(float(p), v) for p, v in profile]
            chosen = (float(best[name]), value) if name in best and value is not None else None
            charts.append(scatter_chart(points, title=name, x_label=name, y_label="objective", highlight=chosen))
        else:
            labels = sorted({str(p) for p in raw})
            where = {label: i for i, label in enumerate(labels)}
            points = [(float(where[str(p)]), v) for p, v in profile]
            chosen = (float(where[str(best[name])]), value) if name in best and value is not None else None
            charts.append(
                scatter_chart(
                    points, title=name, x_label=name, y_label="objective", highlight=chosen, categories=labels
                )
            )
    summary = {k: v for k, v in stab.items() if k != "profiles"}
    note = (
        '<p class="note">Objective of every feasible trial against each parameter; the chosen point in orange. '
        "A plateau around it is robust; a lone spike is fitted noise. Neighbours: trials within the radius (a share "
        "of each dimension's range) of the chosen point on every dimension.</p>"
    )
    return _section("stability", "Parameter stability", note + "".join(charts) + _kv_table(summary))


def _history_section(trials: Sequence[Mapping[str, Any]]) -> str:
    points = [(t["number"], t["value"]) for t in trials if t.get("value") is not None and t["state"] == "COMPLETE"]
    best_line: list[tuple[float, float]] = []
    best = -np.inf
    for x, y in sorted(points):
        if np.isfinite(y) and y > best:
            best = y
        if np.isfinite(best):
            best_line.append((x, best))
    chart = scatter_chart(
        points, title="objective by trial", x_label="trial", y_label="objective", line=best_line, width=900
    )
    return _section("history", "Optimisation history", chart)


def render_study_html(data: Mapping[str, Any]) -> str:
    """The study report. ``data`` keys: title, summary (mapping), best_params, best_value, best_metrics, verdict
    (list of flags), overfitting (``Overfitting.as_dict()``), stability (with ``profiles``), trials (rows with
    number, state, value, params...), best_equity (series), walk_forward (``WalkForwardResult.as_dict()``) and
    stitched (series)."""
    title = str(data.get("title") or "Study report")
    flags = list(data.get("verdict") or [])
    if flags:
        verdict = '<ul class="flags">' + "".join(f"<li>{_e(f)}</li>" for f in flags) + "</ul>"
        verdict = '<p class="warn">The winner is flagged: treat it as likely luck.</p>' + verdict
    else:
        verdict = '<p class="ok">No overfitting flag raised (deflated Sharpe, PBO, stability).</p>'
    over = data.get("overfitting") or {}
    sections = [
        _section("summary", "Study", _kv_table(data.get("summary") or {})),
        _section(
            "winner",
            "Chosen parameters (in sample)",
            verdict
            + _kv_table({**(data.get("best_params") or {}), "objective": data.get("best_value")})
            + (_kv_table(data["best_metrics"]) if data.get("best_metrics") else ""),
        ),
        _section(
            "overfitting",
            "Overfitting statistics",
            '<p class="note">Deflated Sharpe ratio (Bailey &amp; Lopez de Prado): the probability that the winner\'s '
            "true Sharpe ratio beats the best of as many unskilled trials (per-session Sharpe ratios); below 0.95 not "
            "significant. PBO (CSCV): the share of in-sample/out-of-sample splits in which the in-sample winner ranks "
            "in the bottom half out of sample.</p>"
            + "<h3>Deflated Sharpe ratio</h3>"
            + (_kv_table(over["deflated_sharpe"]) if over.get("deflated_sharpe") else _missing("deflated Sharpe"))
            + "<h3>Probability of backtest overfitting</h3>"
            + (_kv_table(over["pbo"]) if over.get("pbo") else _missing("PBO"))
            + (_kv_table({"notes": "; ".join(over["notes"])}) if over.get("notes") else ""),
        ),
        _stability_section(data),
        _history_section(data.get("trials") or []),
    ]
    equity = data.get("best_equity")
    if isinstance(equity, pd.Series) and len(equity):
        sections.append(
            _section("equity", "Winner's equity (in sample)", line_chart([("equity", equity, _BLUE)], title="equity"))
        )
    wf = data.get("walk_forward")
    if wf:
        stitched = data.get("stitched")
        chart = (
            line_chart([("out-of-sample equity", stitched, _ORANGE)], title="stitched out-of-sample equity")
            if isinstance(stitched, pd.Series) and len(stitched)
            else _missing("out-of-sample equity")
        )
        headline = {
            "mode": wf["mode"],
            "train / test sessions": f"{wf['train_sessions']} / {wf['test_sessions']}",
            "walk-forward efficiency (OOS CAGR / mean IS CAGR)": wf["walk_forward_efficiency"],
            "objective ratio (OOS / mean IS)": wf["objective_ratio"],
            "in-sample objective (mean of the winners)": wf["is"]["objective_mean"],
            "out-of-sample objective (stitched)": wf["oos"]["objective"],
            "in-sample CAGR (mean of the winners)": wf["is"]["cagr_mean"],
            "out-of-sample CAGR (stitched)": wf["oos"]["cagr"],
            "out-of-sample total_return": wf["oos"]["total_return"],
            "out-of-sample max_drawdown": wf["oos"]["max_drawdown"],
        }
        sections.append(
            _section(
                "walk-forward",
                "Walk-forward optimisation",
                '<p class="note">Each window: a study on the training sessions, its winner traded unchanged on the '
                "test sessions that follow. The out-of-sample curve chains the test windows.</p>"
                + _kv_table(headline)
                + chart
                + _rows_table(wf["windows"], first_column_is_key=False),
            )
        )
    trials = data.get("trials") or []
    top = sorted(
        (t for t in trials if t.get("value") is not None and np.isfinite(t["value"])),
        key=lambda t: -t["value"],
    )[:25]
    sections.append(
        _section(
            "trials",
            f"Best trials ({len(top)} of {len(trials)} by objective)",
            _rows_table(top, first_column_is_key=False) if top else _missing("completed trials"),
        )
    )
    nav = "".join(
        f'<a href="#{a}">{_e(t)}</a>'
        for a, t in (
            ("summary", "Study"), ("winner", "Winner"), ("overfitting", "Overfitting"), ("stability", "Stability"),
            ("history", "History"), ("equity", "Equity"), ("walk-forward", "Walk-forward"), ("trials", "Trials"),
        )
    )  # fmt: skip
    css = _CSS + ".warn{color:#b91c1c;font-weight:600}.ok{color:#15803d}.scatter{margin:4px}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{css}</style></head><body>"
        f"<h1>{_e(title)}</h1><nav>{nav}</nav>" + "".join(sections) + "</body></html>\n"
    )


def write_study_report(path: str | Path, data: Mapping[str, Any]) -> Path:
    target = Path(path)
    document = render_study_html(data)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(document, encoding="utf-8")
    return target


def trial_rows(trials: Sequence[Any]) -> list[dict[str, Any]]:
    """One row per trial for the report and the JSON output."""
    rows = []
    for t in trials:
        a = t.user_attrs
        if a.get("surplus"):
            continue
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                **{k: v for k, v in t.params.items()},
                "sharpe": a.get("sharpe"),
                "total_return": a.get("total_return"),
                "max_drawdown": a.get("max_drawdown"),
                "closed_trades": a.get("closed_trades"),
                "infeasible": a.get("infeasible") or "",
                "worker": a.get("worker"),
            }
        )
    return rows

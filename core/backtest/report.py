"""A self-contained HTML report of a backtest.

One HTML file with inline CSS and inline SVG charts drawn here: no JavaScript, no external stylesheet, font, image
or CDN, and a Content-Security-Policy that forbids loading anything (``default-src 'none'``), so the file opens
the same way offline, from an e-mail attachment or from an artefact store. Every piece of text that comes from the
input (strategy names, symbols, parameter values, column names) goes through :func:`html.escape`.

The input is a :class:`ReportData` mapping. Only ``equity`` is required; a section whose data is absent says so.
Values may be plain dicts or the result objects of :mod:`core.analytics.metrics` and :mod:`core.backtest.robustness` (any
object with an ``as_dict()`` method, or a dataclass).

Formatting: fractions whose key names a return, drawdown, rate, share or VaR (``total_return``, ``max_drawdown``,
``win_rate``, ``positive_share``, ``var``...) are shown as percentages; money fields (``pnl``, prices, equity) with
two decimals; other floats with four significant digits; ``None`` as a dash; timestamps at midnight UTC (daily
bars' dates) as ISO dates, other timestamps in New York time with the zone (``2024-01-02 10:30 EST``).

Charts: the x axis is linear in time whatever the unit of the series' index (pandas 3 keeps ``s``/``ms``/``us``/
``ns``), with New York dates as tick labels; the equity chart shades the drawdown protection's lock (amber) and
halt (red) episodes when the input has them.
"""

from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, NotRequired, Required, TypedDict, overload

import numpy as np
import pandas as pd

from core.analytics.metrics import drawdown_series, monthly_returns
from core.kernel.domain import datetime_index


class ReportData(TypedDict, total=False):
    """What :func:`render_html` reads. Only ``equity`` is required.

    equity         account equity, ``pd.Series`` on a UTC ``DatetimeIndex`` (as for :func:`core.analytics.metrics.compute_metrics`)
    benchmark      buy-and-hold closes (or equity) of a benchmark; drawn rebased to the strategy's first equity value
    title          report title
    params         run parameters (symbols, dates, strategy parameters...), shown as a key/value table
    metrics        headline metrics: ``PerformanceMetrics.as_dict()`` or the object itself
    trades         closed trades, one dict (or ``ClosedTrade``) per trade; only the first ``max_trades`` are listed
    per_strategy   strategy name -> ``TradeMetrics`` (or its dict), e.g. ``core.analytics.metrics.metrics_by(trades, "strategy")``
    monthly        year x month table from :func:`core.analytics.metrics.monthly_returns`; computed from ``equity`` if absent
    shadow         shadow-ledger comparison: one dict per ledger (the selector and each fixed strategy), e.g.
                   ``{"ledger": "selector", "total_return": 0.12, "sharpe": 0.9, "max_drawdown": 0.08, "trades": 41}``
    bootstrap      label -> ``BootstrapResult`` (or its ``as_dict()``), e.g. ``{"daily returns": ..., "trades": ...}``;
                   a single result is accepted too
    walk_forward   one row per window: ``WindowResult`` or its ``as_dict()``
    walk_forward_summary   ``WalkForwardSummary`` or its dict
    tests          ``ReturnTests`` or its dict
    trading_episodes   the drawdown protection's lock and halt episodes, oldest first: one mapping (or object with
                   these attributes) per episode, ``{"state": "locked"|"halted", "start": "YYYY-MM-DD",
                   "end": "YYYY-MM-DD" or None (still in force at the end), "sessions": int, "reason": str}``;
                   drawn as shaded bands on the equity curve and listed under it. Absent: nothing is said about
                   them; an empty list: the report says trading was never locked or halted
    sessions_locked, sessions_halted   session counts in each state (shown with the episodes)
    """

    equity: Required[pd.Series]
    benchmark: NotRequired[pd.Series | None]
    title: NotRequired[str]
    params: NotRequired[Mapping[str, Any]]
    metrics: NotRequired[Mapping[str, Any] | Any]
    trades: NotRequired[Sequence[Mapping[str, Any] | Any]]
    per_strategy: NotRequired[Mapping[str, Mapping[str, Any] | Any]]
    monthly: NotRequired[pd.DataFrame]
    shadow: NotRequired[Sequence[Mapping[str, Any]]]
    bootstrap: NotRequired[Mapping[str, Any]]
    walk_forward: NotRequired[Sequence[Mapping[str, Any] | Any]]
    walk_forward_summary: NotRequired[Mapping[str, Any] | Any]
    tests: NotRequired[Mapping[str, Any] | Any]
    trading_episodes: NotRequired[Sequence[Mapping[str, Any] | Any]]
    sessions_locked: NotRequired[int]
    sessions_halted: NotRequired[int]


@dataclass(frozen=True)
class Band:
    """A shaded time span of a chart: ``start``..``end`` (UTC timestamps), its colour (a module constant), the
    legend ``label`` and the hover ``title``."""

    start: pd.Timestamp
    end: pd.Timestamp
    state: str
    colour: str
    label: str
    title: str


DEFAULT_MAX_TRADES = 100
_NEW_YORK = "America/New_York"
_EPISODE_STYLE = {  # state -> (colour, legend label)
    "halted": ("#dc2626", "halted (no trading)"),
    "locked": ("#f59e0b", "locked (no new entries)"),
}
_MAX_CHART_POINTS = 1500  # per series; longer series are reduced to the min and max of each bucket

_PERCENT_KEYS = frozenset({"cagr", "volatility", "var", "cvar", "exposure", "risk_free", "downside_deviation", "mean"})
_PERCENT_SUFFIXES = ("return", "drawdown", "rate", "share", "_pct", "cagr", "volatility")
_MONEY_KEYS = frozenset(
    {"pnl", "total_pnl", "gross_profit", "gross_loss", "expectancy", "average_win", "average_loss", "equity",
     "final_equity", "initial", "cash", "price", "entry_price", "exit_price", "fees", "commission"}
)  # fmt: skip

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;padding:0 2rem 3rem;color:#1f2937;
background:#fff;line-height:1.4}
h1{font-size:1.6rem;margin:1.5rem 0 .3rem}h2{font-size:1.2rem;margin:2rem 0 .6rem;border-bottom:1px solid #e5e7eb;
padding-bottom:.2rem}h3{font-size:1rem;margin:1rem 0 .4rem}
nav{font-size:.85rem;margin:.5rem 0 1rem}nav a{margin-right:.8rem;color:#2563eb;text-decoration:none}
table{border-collapse:collapse;font-size:.85rem;margin:.3rem 0 1rem}
th,td{border:1px solid #e5e7eb;padding:.25rem .55rem;text-align:right;white-space:nowrap}
th{background:#f3f4f6;font-weight:600}td.k,th.k{text-align:left}
table.kv td:first-child{text-align:left;color:#4b5563}
.note{color:#6b7280;font-size:.85rem;margin:.2rem 0 .8rem}.missing{color:#9ca3af;font-style:italic}
.scroll{overflow-x:auto}svg{max-width:100%;height:auto;display:block}
svg text{font-family:system-ui,sans-serif;font-size:11px;fill:#4b5563}
"""


# --------------------------------------------------------------------------------------------------- formatting


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _is_percent(key: str) -> bool:
    key = key.lower()
    return key in _PERCENT_KEYS or key.endswith(_PERCENT_SUFFIXES)


def _is_money(key: str) -> bool:
    key = key.lower()
    return key in _MONEY_KEYS or key.endswith(("_price", "_pnl", "_equity"))


def format_value(value: object, key: str = "") -> str:
    """The text shown for ``value`` in a column or row named ``key`` (not yet escaped)."""
    if value is None:
        return "–"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, pd.Timestamp | datetime):
        stamp = pd.Timestamp(value)
        if stamp.tzinfo is not None:
            stamp = stamp.tz_convert("UTC")
        if (stamp.hour, stamp.minute, stamp.second, stamp.microsecond) == (0, 0, 0, 0):
            return stamp.strftime("%Y-%m-%d")  # a daily bar's date (bars are stamped at midnight UTC)
        if stamp.tzinfo is None:
            return stamp.strftime("%Y-%m-%d %H:%M")
        return stamp.tz_convert(_NEW_YORK).strftime("%Y-%m-%d %H:%M %Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isnan(number):
            return "–"
        if math.isinf(number):
            return "∞" if number > 0 else "−∞"
        if _is_percent(key):
            return f"{number * 100:,.2f} %"
        if _is_money(key):
            return f"{number:,.2f}"
        return f"{number:,.4g}" if abs(number) < 1e6 else f"{number:,.0f}"
    return str(value)


def _as_mapping(obj: object, what: str) -> dict[str, Any]:
    as_dict = getattr(obj, "as_dict", None)
    if callable(as_dict):
        return dict(as_dict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"{what} must be a mapping, a dataclass or have as_dict(); got {type(obj).__name__}")


def _label(key: object) -> str:
    return str(key).replace("_", " ")


def _missing(what: str) -> str:
    return f'<p class="missing">No {_e(what)} provided.</p>'


def _kv_table(values: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{_e(_label(k))}</td><td>{_e(format_value(v, str(k)))}</td></tr>" for k, v in values.items()
    )
    return f'<table class="kv">{rows}</table>'


def _columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    columns: dict[str, None] = {}
    for row in rows:
        for key in row:
            columns.setdefault(str(key), None)
    return list(columns)


def _rows_table(rows: Sequence[Mapping[str, Any]], first_column_is_key: bool = True) -> str:
    columns = _columns(rows)
    key_attr = [' class="k"' if i == 0 and first_column_is_key else "" for i in range(len(columns))]
    head = "".join(f"<th{attr}>{_e(_label(c))}</th>" for attr, c in zip(key_attr, columns, strict=True))
    body = []
    for row in rows:
        lookup = {str(k): v for k, v in row.items()}
        cells = "".join(
            f"<td{attr}>{_e(format_value(lookup.get(c), c))}</td>" for attr, c in zip(key_attr, columns, strict=True)
        )
        body.append(f"<tr>{cells}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


# -------------------------------------------------------------------------------------------------------- charts


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values inside ``[low, high]``: a step of 1, 2, 2.5 or 5 times a power of ten, chosen so that the
    number of ticks is closest to ``count`` (the larger step on a tie)."""
    exponent = math.floor(math.log10((high - low) / max(count - 1, 1)))

    def ticks_with(step: float) -> int:
        return math.floor(high / step + 1e-9) - math.ceil(low / step - 1e-9) + 1

    steps = [m * 10.0**p for p in (exponent - 1, exponent, exponent + 1) for m in (1.0, 2.0, 2.5, 5.0)]
    step = min(steps, key=lambda st: (abs(ticks_with(st) - count), -st))
    first, last = math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9)
    return [round(k * step, 12) + 0.0 for k in range(first, last + 1)]  # + 0.0 turns -0.0 into 0.0


def _decimals(step: float) -> int:
    """Fewest decimals that show every multiple of ``step`` exactly (2.5 needs one, 0.25 two)."""
    for decimals in range(12):
        scaled = step * 10**decimals
        if round(scaled) >= 1 and abs(scaled - round(scaled)) < 1e-6 * scaled:
            return decimals
    return 12


def _axis_label(value: float, percent: bool, step: float) -> str:
    if percent:
        return f"{value * 100 + 0.0:,.{_decimals(step * 100)}f}%"
    return f"{value + 0.0:,.{_decimals(step)}f}"


def _reduce(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep the minimum and the maximum of each of ``max_points // 2`` buckets (and the last point)."""
    if x.size <= max_points:
        return x, y
    buckets = max_points // 2
    edges = np.linspace(0, x.size, buckets + 1).astype(int)
    keep: list[int] = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        if b > a:
            lo, hi = a + int(np.argmin(y[a:b])), a + int(np.argmax(y[a:b]))
            keep.extend(sorted({lo, hi}))
    if keep[-1] != x.size - 1:
        keep.append(x.size - 1)
    index = np.asarray(keep)
    return x[index], y[index]


@overload
def _ns(stamps: pd.Timestamp) -> int: ...
@overload
def _ns(stamps: pd.DatetimeIndex) -> np.ndarray: ...
def _ns(stamps: pd.DatetimeIndex | pd.Timestamp) -> np.ndarray | int:
    """Nanoseconds since the epoch, whatever the unit the index or timestamp is stored in (pandas 3 keeps
    ``s``/``ms``/``us``/``ns`` units as given; ``asi8`` and ``_value`` count in that unit)."""
    if isinstance(stamps, pd.Timestamp):
        return int(stamps.as_unit("ns").value)
    return pd.DatetimeIndex(stamps).as_unit("ns").asi8


def _time_ticks(start: pd.Timestamp, end: pd.Timestamp, count: int = 8) -> tuple[list[pd.Timestamp], str]:
    """Tick instants between ``start`` and ``end`` (UTC) at the start of New York years, quarters, months, weeks
    or days (the coarsest giving at least three), at most about ``count`` of them, with the ``strftime`` format of
    their label (a year, or a date)."""
    local_start, local_end = start.tz_convert(_NEW_YORK), end.tz_convert(_NEW_YORK)
    for freq, label in (("YS", "%Y"), ("QS", "%Y-%m-%d"), ("MS", "%Y-%m-%d"), ("W-MON", "%Y-%m-%d"), ("D", "%Y-%m-%d")):
        ticks = pd.date_range(local_start.normalize(), local_end, freq=freq)
        ticks = ticks[(ticks >= local_start) & (ticks <= local_end)]
        if len(ticks) >= 3 or freq == "D":
            stride = max(1, math.ceil(len(ticks) / count))
            return list(ticks[::stride]), label
    return [], "%Y-%m-%d"


def line_chart(
    lines: Sequence[tuple[str, pd.Series, str]],
    *,
    title: str,
    percent: bool = False,
    area: bool = False,
    bands: Sequence[Band] = (),
    width: int = 900,
    height: int = 280,
) -> str:
    """An inline SVG line chart of ``(label, series, colour)`` lines over a shared time axis.

    ``percent`` formats the y axis as percentages of fractions; ``area`` fills between the first line and zero;
    ``bands`` are shaded time spans drawn behind the lines (one legend entry per distinct label). The x axis is
    linear in time (any index unit), from the first point at the plot's left edge to the last at its right edge;
    its ticks are New York dates. Colours are this module's constants, never user input.
    """
    lines = [(label, s.dropna(), colour) for label, s, colour in lines if len(s.dropna())]
    if not lines:
        return _missing(title.lower())
    start = min(s.index[0] for _, s, _ in lines)
    end = max(s.index[-1] for _, s, _ in lines)
    x0 = _ns(start)
    x1 = max(_ns(end), x0 + 1)
    values = np.concatenate([s.to_numpy(dtype=float) for _, s, _ in lines] + ([np.zeros(1)] if area else []))
    y_low, y_high = float(values.min()), float(values.max())
    if y_high - y_low < 1e-12 * max(1.0, abs(y_high)):
        y_low, y_high = y_low - max(abs(y_low) * 0.05, 1e-6), y_high + max(abs(y_high) * 0.05, 1e-6)
    pad = (y_high - y_low) * 0.04
    # Pad the range for air, except at zero when zero is the edge of a filled area (drawdowns end at 0).
    if not (area and y_low == 0.0):
        y_low -= pad
    if not (area and y_high == 0.0):
        y_high += pad

    ticks = _nice_ticks(y_low, y_high)
    step = ticks[1] - ticks[0] if len(ticks) >= 2 else abs(y_high - y_low)
    tick_labels = [_axis_label(tick, percent, step) for tick in ticks]
    # Room for the longest y label (at most about 7 px per character at 11 px).
    left, right, top, bottom = max(48, 14 + 7 * max(map(len, tick_labels), default=0)), 16, 28, 30
    plot_w, plot_h = width - left - right, height - top - bottom

    @overload
    def sx(ns: float) -> float: ...
    @overload
    def sx(ns: np.ndarray) -> np.ndarray: ...
    def sx(ns: np.ndarray | float) -> np.ndarray | float:
        return left + (np.asarray(ns, dtype=float) - x0) / (x1 - x0) * plot_w

    @overload
    def sy(v: float) -> float: ...
    @overload
    def sy(v: np.ndarray) -> np.ndarray: ...
    def sy(v: np.ndarray | float) -> np.ndarray | float:
        return top + (y_high - np.asarray(v, dtype=float)) / (y_high - y_low) * plot_h

    parts = [
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="{_e(title)}" '
        'font-family="system-ui, sans-serif" font-size="11">',
        f"<title>{_e(title)}</title>",
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#e5e7eb"/>',
    ]
    for tick, text in zip(ticks, tick_labels, strict=True):
        y = float(sy(tick))
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_e(text)}</text>')
    ticks_x, tick_format = _time_ticks(start, end)
    for instant in ticks_x:
        x = float(sx(_ns(instant)))
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}" stroke="#f0f0f0"/>')
        parts.append(
            f'<text class="x-tick" x="{x:.1f}" y="{height - 10}" text-anchor="middle">{_e(instant.strftime(tick_format))}</text>'
        )
    legend: list[tuple[str, str]] = []  # (swatch element, label)
    for band in bands:
        a = min(max(float(sx(_ns(band.start))), left), left + plot_w)
        b = min(max(float(sx(_ns(band.end))), left), left + plot_w)
        if b <= a:
            continue
        parts.append(
            f'<rect class="band" data-state="{_e(band.state)}" x="{a:.1f}" y="{top}" width="{b - a:.1f}" height="{plot_h}" '
            f'fill="{band.colour}" fill-opacity="0.18" stroke="none"><title>{_e(band.title)}</title></rect>'
        )
        swatch = f'<rect x="{{x}}" y="5" width="12" height="10" fill="{band.colour}" fill-opacity="0.35"/>'
        if (swatch, band.label) not in legend:
            legend.append((swatch, band.label))
    for position, (label, series, colour) in enumerate(lines):
        xs, ys = _reduce(_ns(datetime_index(series)).astype(float), series.to_numpy(dtype=float), _MAX_CHART_POINTS)
        px, py = sx(xs), sy(ys)
        points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px, py, strict=True))
        if area and position == 0:
            zero = float(sy(0.0))
            polygon = f"{px[0]:.1f},{zero:.1f} {points} {px[-1]:.1f},{zero:.1f}"
            parts.append(f'<polygon points="{polygon}" fill="{colour}" fill-opacity="0.25" stroke="none"/>')
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.4"/>')
        legend.insert(position, ('<rect x="{x}" y="8" width="12" height="4" fill="' + colour + '"/>', label))
    lx = left + 8
    for swatch, label in legend:
        parts.append(swatch.format(x=lx))
        parts.append(f'<text x="{lx + 16}" y="14">{_e(label)}</text>')
        lx += 16 + 7 * len(label) + 20
    parts.append("</svg>")
    return "".join(parts)


# ------------------------------------------------------------------------------------------------------ sections


def _section(anchor: str, heading: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(heading)}</h2>{body}</section>'


def _rebased_benchmark(equity: pd.Series, benchmark: pd.Series) -> pd.Series:
    bench = pd.to_numeric(benchmark, errors="raise").astype(float).dropna()
    bench = bench.loc[bench.index >= equity.index[0]]
    if bench.empty:
        return bench
    return bench / bench.iloc[0] * float(equity.iloc[0])


def _growth_label(name: str, series: pd.Series) -> str:
    if len(series) < 2:
        return name
    return f"{name} ({format_value(float(series.iloc[-1] / series.iloc[0] - 1.0), 'total_return')})"


def _episode_date(value: object, where: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{where} must be a YYYY-MM-DD date, got {value!r}") from None


def trading_episodes(raw: Sequence[Any]) -> list[dict[str, Any]]:
    """The lock/halt episodes of ``raw`` (mappings or objects) as plain dicts with ``date`` start/end (``end`` None:
    still in force at the end). Raises ``ValueError`` naming the episode and field that is unusable."""
    episodes = []
    for i, item in enumerate(raw):
        values = (
            item
            if isinstance(item, Mapping)
            else {k: getattr(item, k, None) for k in ("state", "start", "end", "sessions", "reason")}
        )
        state = str(values.get("state") or "").strip().lower()
        if not state:
            raise ValueError(f"trading_episodes[{i}].state is missing")
        start = _episode_date(values.get("start"), f"trading_episodes[{i}].start")
        end = None if values.get("end") is None else _episode_date(values.get("end"), f"trading_episodes[{i}].end")
        if end is not None and end < start:
            raise ValueError(f"trading_episodes[{i}]: end {end} is before start {start}")
        sessions = values.get("sessions")
        episodes.append({"state": state, "start": start, "end": end, "sessions": None if sessions is None else int(sessions),
                         "reason": str(values.get("reason") or "")})  # fmt: skip
    return episodes


def _episode_bands(index: pd.DatetimeIndex, episodes: Sequence[Mapping[str, Any]]) -> list[Band]:
    """One band per episode, over the chart's points whose New York date is within the episode, from half-way to the
    point before to half-way to the point after (so that a one-session episode has a width)."""
    if len(index) < 2:
        return []
    stamps = _ns(index)
    local_days = index.tz_convert(_NEW_YORK).normalize().tz_localize(None)
    bands = []
    for ep in episodes:
        first = int(local_days.searchsorted(pd.Timestamp(ep["start"]), side="left"))
        last = (
            len(index) - 1
            if ep["end"] is None
            else int(local_days.searchsorted(pd.Timestamp(ep["end"]), side="right")) - 1
        )
        if first > last:
            continue  # outside the chart
        left = stamps[first] if first == 0 else (stamps[first - 1] + stamps[first]) // 2
        right = stamps[last] if last == len(index) - 1 else (stamps[last] + stamps[last + 1]) // 2
        colour, label = _EPISODE_STYLE.get(ep["state"], ("#6b7280", ep["state"]))
        end = ep["end"].isoformat() if ep["end"] is not None else "the end"
        bands.append(Band(pd.Timestamp(int(left), tz="UTC"), pd.Timestamp(int(right), tz="UTC"), ep["state"], colour, label,
                          f"{ep['state']} {ep['start'].isoformat()} .. {end}: {ep['reason']}"))  # fmt: skip
    return bands


def _episodes_table(episodes: Sequence[Mapping[str, Any]], locked: int | None, halted: int | None) -> str:
    if locked is None:
        locked = sum(e["sessions"] or 0 for e in episodes if e["state"] == "locked")
    if halted is None:
        halted = sum(e["sessions"] or 0 for e in episodes if e["state"] == "halted")
    heading = "<h3>Drawdown protection: locks and halts</h3>"
    if not episodes:
        return heading + '<p class="note">Trading was never locked or halted.</p>'
    note = (
        f'<p class="note">Locked (no new entries) for {locked:,} session{"" if locked == 1 else "s"}, halted (no trading) '
        f"for {halted:,} session{'' if halted == 1 else 's'}; shaded on the equity curve (amber: locked, red: halted).</p>"
    )
    rows = [
        {"state": e["state"], "start": e["start"], "end": e["end"] if e["end"] is not None else "in force at the end",
         "sessions": e["sessions"], "reason": e["reason"]}
        for e in episodes
    ]  # fmt: skip
    return heading + note + _rows_table(rows)


def _equity_section(
    equity: pd.Series,
    benchmark: pd.Series | None,
    episodes: Sequence[Mapping[str, Any]] | None = None,
    sessions_locked: int | None = None,
    sessions_halted: int | None = None,
) -> str:
    lines = [(_growth_label("strategy", equity), equity, "#2563eb")]
    note = '<p class="note">No benchmark provided.</p>'
    if benchmark is not None:
        rebased = _rebased_benchmark(equity, benchmark)
        if len(rebased):
            lines.append((_growth_label("buy & hold benchmark", rebased), rebased, "#9ca3af"))
            note = '<p class="note">The benchmark is rebased to the strategy\'s first equity value.</p>'
    bands = _episode_bands(datetime_index(equity), episodes) if episodes else []
    chart = line_chart(lines, title="Equity curve", bands=bands)
    if episodes is not None:
        note += _episodes_table(episodes, sessions_locked, sessions_halted)
    drawdown = -drawdown_series(equity)
    dd_chart = line_chart([("drawdown", drawdown, "#dc2626")], title="Drawdown", percent=True, area=True, height=200)
    return _section("equity", "Equity curve", chart + note) + _section("drawdown", "Drawdown", dd_chart)


def _heat_colour(value: float, scale: float) -> str:
    strength = min(1.0, abs(value) / scale) if scale > 0 else 0.0
    alpha = 0.08 + 0.72 * strength
    rgb = "22,163,74" if value > 0 else "220,38,38" if value < 0 else "156,163,175"
    return f"background:rgba({rgb},{alpha:.2f})"


def _monthly_section(table: pd.DataFrame) -> str:
    if table is None or table.empty:
        return _section("monthly", "Monthly returns", _missing("monthly returns"))
    values = table.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    scale = float(np.abs(finite).max()) if finite.size else 0.0
    head = (
        '<th class="k">year</th>'
        + "".join(f"<th>{_e(pd.Timestamp(2000, int(m), 1).strftime('%b'))}</th>" for m in table.columns)
        + "<th>year</th>"
    )
    rows = []
    for year, row in table.iterrows():
        cells = []
        for value in row.to_numpy(dtype=float):
            if np.isfinite(value):
                cells.append(f'<td style="{_heat_colour(value, scale)}">{_e(format_value(value, "return"))}</td>')
            else:
                cells.append("<td></td>")
        months = row.to_numpy(dtype=float)
        months = months[np.isfinite(months)]
        year_return = float(np.prod(1.0 + months) - 1.0) if months.size else None
        cells.append(f"<td><b>{_e(format_value(year_return, 'return'))}</b></td>")
        rows.append(f'<tr><td class="k">{_e(year)}</td>{"".join(cells)}</tr>')
    note = (
        '<p class="note">Compounded return of each UTC calendar month; the year column compounds the months shown. '
        "Green is a gain, red a loss; the shade scales with the largest absolute month.</p>"
    )
    body = f'<div class="scroll"><table class="heat"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
    return _section("monthly", "Monthly returns", note + body)


def _trades_section(trades: Sequence[Any] | None, max_trades: int) -> str:
    if not trades:
        return _section("trades", "Trades", _missing("trades"))
    shown = [_as_mapping(t, "a trade") for t in trades[:max_trades]]
    note = (
        f'<p class="note">Showing the first {len(shown):,} of {len(trades):,} trades.</p>'
        if len(trades) > len(shown)
        else f'<p class="note">All {len(trades):,} trades.</p>'
    )
    return _section("trades", "Trades", note + _rows_table(shown))


def _per_strategy_section(per_strategy: Mapping[str, Any] | None) -> str:
    if not per_strategy:
        return _section("strategies", "Per-strategy metrics", _missing("per-strategy metrics"))
    rows = [{"strategy": name, **_as_mapping(m, f"per_strategy[{name!r}]")} for name, m in per_strategy.items()]
    return _section("strategies", "Per-strategy metrics", _rows_table(rows))


def _shadow_section(shadow: Sequence[Mapping[str, Any]] | None) -> str:
    if not shadow:
        return _section("shadow", "Shadow ledgers: selector vs fixed strategies", _missing("shadow-ledger comparison"))
    note = (
        '<p class="note">Each row is a ledger run on the same bars: the strategy selector as traded and each '
        "registered strategy held fixed.</p>"
    )
    rows = [_as_mapping(r, "a shadow-ledger row") for r in shadow]
    return _section("shadow", "Shadow ledgers: selector vs fixed strategies", note + _rows_table(rows))


def _bootstrap_section(bootstrap: Mapping[str, Any] | None) -> str:
    if not bootstrap:
        return _section("bootstrap", "Bootstrap confidence intervals", _missing("bootstrap results"))
    single = _as_mapping(bootstrap, "bootstrap")
    results = (
        {"bootstrap": single}
        if "total_return" in single
        else {str(k): _as_mapping(v, f"bootstrap[{k!r}]") for k, v in single.items()}
    )
    rows = []
    for label, result in results.items():
        for statistic in ("total_return", "sharpe", "max_drawdown", "final_equity"):
            if statistic not in result:
                continue
            interval = result[statistic]
            observed = result.get(f"observed_{statistic}")
            key = statistic
            if interval is None:
                p5 = p50 = p95 = None
            else:
                interval = _as_mapping(interval, f"bootstrap interval {statistic}")
                p5, p50, p95 = interval.get("p5"), interval.get("p50"), interval.get("p95")
            rows.append(
                "<tr>"
                f'<td class="k">{_e(label)}</td><td class="k">{_e(_label(statistic))}</td>'
                + "".join(f"<td>{_e(format_value(v, key))}</td>" for v in (p5, p50, p95, observed))
                + "</tr>"
            )
        rows.append(
            f'<tr><td class="k">{_e(label)}</td><td class="k">share of positive runs</td>'
            f'<td colspan="4">{_e(format_value(result.get("positive_share"), "positive_share"))} of '
            f"{_e(format_value(result.get('runs')))} runs (seed {_e(format_value(result.get('seed')))}, "
            f"block {_e(format_value(result.get('block')))}, {_e(result.get('block_method', ''))})</td></tr>"
        )
    head = (
        '<tr><th class="k">resampled</th><th class="k">statistic</th><th>5th pct</th><th>median</th>'
        "<th>95th pct</th><th>observed</th></tr>"
    )
    note = (
        '<p class="note">Percentiles over bootstrap runs of the returns (resampled with replacement and compounded); '
        "“observed” is the statistic of the original sequence.</p>"
    )
    table = f'<div class="scroll"><table><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table></div>'
    return _section("bootstrap", "Bootstrap confidence intervals", note + table)


SUB_PERIODS_HEADING = "Sub-periods of one run (not a walk-forward optimisation)"


def _walk_forward_section(rows: Sequence[Any] | None, summary: Any | None) -> str:
    if not rows:
        return _section("sub-periods", SUB_PERIODS_HEADING, _missing("sub-period windows"))
    table = _rows_table([_as_mapping(r, "a sub-period row") for r in rows], first_column_is_key=False)
    body = (
        '<p class="note">Metrics of consecutive test-length slices of this one run, each measured from the close '
        "before it starts. The parameters were chosen once, for the whole run, not re-optimised on each training "
        "window: this is a stability check, not out-of-sample evidence. For a true walk-forward (optimise on each "
        "training window, trade the winner on the next) use <code>main.py optimize --walk-forward TRAIN:TEST</code>."
        "</p>" + table
    )
    if summary is not None:
        body += "<h3>Summary</h3>" + _kv_table(_as_mapping(summary, "walk_forward_summary"))
    return _section("sub-periods", SUB_PERIODS_HEADING, body)


def _tests_section(tests: Any | None) -> str:
    if tests is None:
        return _section("tests", "Statistical tests of daily returns", _missing("statistical tests"))
    values = _as_mapping(tests, "tests")
    note = (
        '<p class="note">Ljung-Box: the null hypothesis is no autocorrelation up to the given lag (a small p-value '
        "suggests serial dependence). t-test: the null hypothesis is a mean daily return of zero (two-sided).</p>"
    )
    return _section("tests", "Statistical tests of daily returns", note + _kv_table(values))


_NAV = (
    ("metrics", "Metrics"), ("equity", "Equity"), ("drawdown", "Drawdown"), ("monthly", "Monthly"),
    ("strategies", "Strategies"), ("shadow", "Shadow ledgers"), ("bootstrap", "Bootstrap"),
    ("sub-periods", "Sub-periods"), ("tests", "Tests"), ("trades", "Trades"), ("params", "Parameters"),
)  # fmt: skip


def render_html(result: Mapping[str, Any], *, max_trades: int = DEFAULT_MAX_TRADES) -> str:
    """The whole report as one HTML document (see :class:`ReportData` for the input)."""
    if "equity" not in result:
        raise ValueError("the report needs an 'equity' series")
    if max_trades < 0:
        raise ValueError(f"max_trades must be >= 0, got {max_trades!r}")
    equity: pd.Series = result["equity"]
    drawdown_series(equity)  # validates the series (UTC index, strictly increasing, positive values) up front
    title = str(result.get("title") or "Backtest report")
    metrics = result.get("metrics")
    monthly = result.get("monthly")
    raw_episodes = result.get("trading_episodes")
    if monthly is None:
        monthly = monthly_returns(equity)
    period = (
        f"{format_value(equity.index[0])} – {format_value(equity.index[-1])}, {len(equity):,} observations"
        if len(equity)
        else "empty equity series"
    )
    sections = [
        _section(
            "metrics",
            "Headline metrics",
            _kv_table(_as_mapping(metrics, "metrics")) if metrics is not None else _missing("metrics"),
        ),
        _equity_section(
            equity,
            result.get("benchmark"),
            trading_episodes(raw_episodes) if raw_episodes is not None else None,
            result.get("sessions_locked"),
            result.get("sessions_halted"),
        )
        if len(equity)
        else _missing("equity"),
        _monthly_section(monthly),
        _per_strategy_section(result.get("per_strategy")),
        _shadow_section(result.get("shadow")),
        _bootstrap_section(result.get("bootstrap")),
        _walk_forward_section(result.get("walk_forward"), result.get("walk_forward_summary")),
        _tests_section(result.get("tests")),
        _trades_section(result.get("trades"), max_trades),
        _section(
            "params", "Parameters", _kv_table(result["params"]) if result.get("params") else _missing("parameters")
        ),
    ]
    nav = "".join(f'<a href="#{anchor}">{_e(text)}</a>' for anchor, text in _NAV)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f'<h1>{_e(title)}</h1><p class="note">{_e(period)}</p><nav>{nav}</nav>' + "".join(sections) + "</body></html>\n"
    )


def write_report(path: str | Path, data: Mapping[str, Any], *, max_trades: int = DEFAULT_MAX_TRADES) -> Path:
    """Render ``data`` and write it to ``path`` (UTF-8; parent directories are created). Returns the path."""
    target = Path(path)
    document = render_html(data, max_trades=max_trades)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(document, encoding="utf-8")
    return target

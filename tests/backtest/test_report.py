"""core.backtest.report: the HTML is self-contained, escaped and holds every section with the right figures."""

from __future__ import annotations

import dataclasses

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.backtest.report import (
    ReportData,
    _nice_ticks,
    format_value,
    line_chart,
    render_html,
    write_report,
)
from core.backtest.robustness import (
    bootstrap_daily,
    bootstrap_trades,
    return_tests,
    summarize_walk_forward,
    walk_forward,
    walk_forward_evaluate,
)
from core.analytics.metrics import ClosedTrade, compute_metrics, metrics_by, monthly_returns

MALICIOUS = '<script>alert("x")</script>'
SECTION_IDS = ("metrics", "equity", "drawdown", "monthly", "strategies", "shadow", "bootstrap", "sub-periods",
               "tests", "trades", "params")  # fmt: skip


def _equity(n: int = 300, seed: int = 0) -> pd.Series:
    returns = np.random.default_rng(seed).normal(0.0004, 0.01, n - 1)
    values = 100_000.0 * np.concatenate([[1.0], np.cumprod(1.0 + returns)])
    return pd.Series(values, index=pd.bdate_range("2023-01-02", periods=n, tz="UTC"))


def _trades(equity: pd.Series, count: int, strategy: str = "trend_following") -> list[ClosedTrade]:
    trades = []
    for i in range(count):
        entry = equity.index[i].to_pydatetime()
        pnl = 10.0 if i % 3 else -5.0
        trades.append(
            ClosedTrade(
                "AAPL", strategy, entry, entry + timedelta(days=2), 100.0, 100.0 + pnl / 10, 10.0, pnl, 0.6, pnl / 1000
            )
        )
    return trades


def _full_data(strategy: str = "trend_following", trades: int = 30) -> ReportData:
    equity = _equity()
    closed = _trades(equity, trades, strategy)
    returns = equity.pct_change().dropna()
    windows = walk_forward_evaluate(equity, walk_forward(equity.index, train=100, test=50))
    return ReportData(
        equity=equity,
        benchmark=equity * 1.5,
        title="MA crossover 2023",
        params={"fast": 20, "slow": 50, "symbols": "AAPL, SPY"},
        metrics=compute_metrics(equity, closed),
        trades=closed,
        per_strategy=metrics_by(closed, "strategy"),
        monthly=monthly_returns(equity),
        shadow=[
            {"ledger": "selector", "total_return": 0.12, "sharpe": 0.9, "max_drawdown": 0.08, "num_trades": 41},
            {"ledger": strategy, "total_return": -0.03, "sharpe": -0.2, "max_drawdown": 0.15, "num_trades": 17},
        ],
        bootstrap={
            "daily returns": bootstrap_daily(returns, n=200, seed=1),
            "trades": bootstrap_trades([t.return_pct for t in closed], n=200, seed=1).as_dict(),
        },
        walk_forward=windows,
        walk_forward_summary=summarize_walk_forward(windows),
        tests=return_tests(returns),
    )


def test_render_html_when_full_data_then_every_section_is_present_with_its_content() -> None:
    page = render_html(_full_data())

    assert page.startswith("<!DOCTYPE html>")
    for section in SECTION_IDS:
        assert f'<section id="{section}">' in page
    for heading in ("Headline metrics", "Equity curve", "Drawdown", "Monthly returns", "Per-strategy metrics",
                    "Shadow ledgers", "Bootstrap confidence intervals", "Sub-periods of one run", "Statistical tests", "Trades"):  # fmt: skip
        assert f"<h2>{heading}" in page
    assert page.count("<svg") == 2  # equity (with the benchmark) and drawdown
    assert "buy &amp; hold benchmark" in page
    assert "ljung box pvalue" in page
    assert "share of positive runs" in page
    assert "<title>MA crossover 2023</title>" in page


def test_render_html_when_values_known_then_they_are_formatted_in_the_tables() -> None:
    page = render_html(_full_data())

    assert '<td class="k">selector</td><td>12.00 %</td><td>0.9</td><td>8.00 %</td><td>41</td>' in page
    assert "<td>fast</td><td>20</td>" in page
    # Benchmark = equity * 1.5 rebased to the equity's first value: the same total return as the strategy.
    equity = _equity()
    total = format_value(float(equity.iloc[-1] / equity.iloc[0] - 1.0), "total_return")
    assert f"strategy ({total})" in page and f"buy &amp; hold benchmark ({total})" in page


def test_render_html_when_strategy_name_is_markup_then_it_is_escaped_everywhere() -> None:
    data = _full_data(strategy=MALICIOUS)
    data["title"] = MALICIOUS
    data["params"] = {MALICIOUS: MALICIOUS}

    page = render_html(data)

    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    # Per-strategy table, shadow table, trade list, title and parameters all show the escaped name.
    assert page.count("&lt;script&gt;") >= 5


def test_render_html_output_references_no_external_resource() -> None:
    page = render_html(_full_data())

    assert "http://" not in page and "https://" not in page
    for forbidden in ("<script", "<link", "<img", "<iframe", "@import", "url(", "src="):
        assert forbidden not in page.lower()
    # Only in-page anchors are linked, and the CSP forbids loading anything.
    assert set(re.findall(r'href="([^"]*)"', page)) == {f"#{s}" for s in SECTION_IDS}
    assert "default-src 'none'" in page


def test_render_html_when_many_trades_then_lists_the_first_n_with_a_note() -> None:
    page = render_html(_full_data(trades=150), max_trades=40)

    trades_section = page[page.index('<section id="trades">') : page.index('<section id="params">')]
    assert "Showing the first 40 of 150 trades." in trades_section
    assert trades_section.count("<tr>") == 41  # header + 40 rows


def test_render_html_when_only_equity_then_missing_sections_say_so() -> None:
    page = render_html({"equity": _equity(60)})

    for what in ("metrics", "per-strategy metrics", "shadow-ledger comparison", "bootstrap results",
                 "sub-period windows", "statistical tests", "trades", "parameters"):  # fmt: skip
        assert f"No {what} provided." in page
    assert "No benchmark provided." in page
    assert '<section id="monthly">' in page and "Jan" in page  # computed from the equity when not given


def test_render_html_monthly_cells_are_heat_coloured_by_sign() -> None:
    # Month ends: Jan 100 -> 110 (+10 %), Feb 110 -> 99 (-10 %).
    equity = pd.Series(
        [100.0, 110.0, 99.0], index=pd.DatetimeIndex(["2024-01-01", "2024-01-31", "2024-02-29"], tz="UTC")
    )

    page = render_html({"equity": equity})

    assert '<td style="background:rgba(22,163,74,0.80)">10.00 %</td>' in page
    assert '<td style="background:rgba(220,38,38,0.80)">-10.00 %</td>' in page
    assert "<td><b>-1.00 %</b></td>" in page  # year: 1.1 * 0.9 - 1


def test_render_html_when_equity_invalid_then_raises() -> None:
    naive = pd.Series([1.0, 2.0], index=pd.date_range("2024-01-01", periods=2, freq="D"))

    with pytest.raises(ValueError):
        render_html({"equity": naive})
    with pytest.raises(ValueError, match="equity"):
        render_html({"title": "no equity"})


def test_write_report_writes_the_rendered_document(tmp_path: Path) -> None:
    data = _full_data()

    path = write_report(tmp_path / "out" / "report.html", data)

    assert path == tmp_path / "out" / "report.html"
    assert path.read_text(encoding="utf-8") == render_html(data)


@pytest.mark.parametrize(
    ("value", "key", "text"),
    [
        (None, "sharpe", "–"),
        (0.1234, "total_return", "12.34 %"),
        (0.5, "win_rate", "50.00 %"),
        (1234.5, "pnl", "1,234.50"),
        (1.23456, "sharpe", "1.235"),
        (float("inf"), "profit_factor", "∞"),
        (float("nan"), "sharpe", "–"),
        (True, "recovered", "yes"),
        (2829, "num_periods", "2,829"),
        (datetime(2024, 1, 2, tzinfo=UTC), "start", "2024-01-02"),
        (pd.Timestamp("2024-01-02 15:30", tz="UTC"), "start", "2024-01-02 10:30 EST"),
        (pd.Timestamp("2024-07-02 20:00", tz="UTC"), "exit_at", "2024-07-02 16:00 EDT"),
    ],
)
def test_format_value(value: object, key: str, text: str) -> None:
    assert format_value(value, key) == text


def test_nice_ticks_are_round_and_inside_the_range() -> None:
    assert _nice_ticks(230_000, 1_250_000) == [250_000, 500_000, 750_000, 1_000_000, 1_250_000]
    assert _nice_ticks(-0.45, 0.0) == [-0.4, -0.3, -0.2, -0.1, 0.0]


def test_line_chart_when_long_series_then_points_are_reduced_but_extremes_kept() -> None:
    values = np.sin(np.linspace(0, 20, 20_000))
    values[12_345] = 5.0  # a spike that must survive the reduction
    series = pd.Series(values, index=pd.date_range("2000-01-01", periods=values.size, freq="h", tz="UTC"))

    svg = line_chart([("x", series, "#000")], title="t")

    points = re.search(r'<polyline points="([^"]+)"', svg).group(1).split()  # type: ignore[union-attr]
    assert len(points) <= 1501
    top = min(float(p.split(",")[1]) for p in points)
    # y range -1 .. 5 padded by 4 % of 6 = 0.24 each side; plot from y=28 over 280 - 28 - 30 = 222 px:
    # the spike at 5 is drawn at 28 + 0.24 / 6.48 * 222 = 36.22.
    assert top == pytest.approx(28 + 0.24 / 6.48 * 222, abs=0.1)


# ------------------------------------------------------------------------------------------------ chart geometry


def _plot_area(svg: str) -> tuple[float, float]:
    """(left, width) of the plot rectangle (the first <rect> after the title)."""
    match = re.search(r'<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)" height="[\d.]+" fill="#fafafa"', svg)
    assert match is not None, svg[:300]
    return float(match.group(1)), float(match.group(2))


def _polylines(svg: str) -> list[list[tuple[float, float]]]:
    return [
        [(float(x), float(y)) for x, y in (p.split(",") for p in points.split())]
        for points in re.findall(r'<polyline points="([^"]+)"', svg)
    ]


def _x_ticks(svg: str) -> list[tuple[float, str]]:
    return [(float(x), label) for x, label in re.findall(r'<text class="x-tick" x="([\d.]+)"[^>]*>([^<]+)</text>', svg)]


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_line_chart_when_index_in_any_unit_then_x_maps_the_dates_across_the_plot(unit: str) -> None:
    # Closes at 16:00 New York time (21:00 UTC in winter, 20:00 in summer) over two years of sessions.
    index = pd.bdate_range("2021-01-04", "2022-12-30", tz="America/New_York") + pd.Timedelta(hours=16)
    index = index.tz_convert("UTC").as_unit(unit)
    series = pd.Series(np.linspace(100.0, 150.0, len(index)), index=index)

    svg = line_chart([("equity", series, "#000")], title="Equity")

    left, width = _plot_area(svg)
    [points] = _polylines(svg)
    xs = [x for x, _ in points]
    assert len(xs) == len(index)
    assert all(b > a for a, b in zip(xs, xs[1:], strict=False))  # strictly increasing
    assert xs[0] == pytest.approx(left, abs=0.06) and xs[-1] == pytest.approx(left + width, abs=0.06)
    # every point sits where its time falls between the first and the last
    span = (index[-1] - index[0]).total_seconds()
    for i in (1, 100, 250, len(index) - 2):
        expected = left + (index[i] - index[0]).total_seconds() / span * width
        assert xs[i] == pytest.approx(expected, abs=0.06)
    # y as before: the line rises from the bottom-left to the top-right
    assert points[0][1] > points[-1][1]
    # date ticks: New York quarter starts, each at its own instant
    ticks = _x_ticks(svg)
    assert [label for _, label in ticks][:3] == ["2021-04-01", "2021-07-01", "2021-10-01"]
    for x, label in ticks:
        at = pd.Timestamp(label, tz="America/New_York").tz_convert("UTC")
        assert x == pytest.approx(left + (at - index[0]).total_seconds() / span * width, abs=0.06)


def test_line_chart_when_series_have_different_units_then_they_share_one_time_axis() -> None:
    index = pd.bdate_range("2020-01-02", periods=300, tz="UTC") + pd.Timedelta(hours=21)
    equity = pd.Series(np.linspace(1.0, 2.0, 300), index=index.as_unit("us"))
    bench = pd.Series(np.linspace(1.0, 1.5, 300), index=index.as_unit("ns"))

    svg = line_chart([("a", equity, "#000"), ("b", bench, "#111")], title="t")

    first, second = _polylines(svg)
    assert [x for x, _ in first] == [x for x, _ in second]


def test_render_html_when_long_backtest_then_year_ticks_and_both_charts_span_the_plot() -> None:
    index = pd.bdate_range("2010-01-04", "2019-12-31", tz="UTC").as_unit("us") + pd.Timedelta(hours=21)
    equity = pd.Series(100_000.0 * np.exp(np.linspace(0.0, 0.7, len(index))), index=index)

    page = render_html({"equity": equity})

    charts = re.findall(r"<svg.*?</svg>", page)
    assert len(charts) == 2
    for svg in charts:
        left, width = _plot_area(svg)
        xs = [x for x, _ in _polylines(svg)[0]]
        assert xs[0] == pytest.approx(left, abs=0.06) and xs[-1] == pytest.approx(left + width, abs=0.06)
        labels = [label for _, label in _x_ticks(svg)]
        assert labels == [str(y) for y in range(2011, 2020, 2)] or labels == [str(y) for y in range(2011, 2020)]


# ------------------------------------------------------------------------------------- lock and halt episodes

EPISODES = [
    {
        "state": "locked",
        "start": "2023-03-01",
        "end": "2023-03-03",
        "sessions": 3,
        "reason": "daily loss 3.1 % (lock at 3 %)",
    },
    {"state": "halted", "start": "2023-09-01", "end": None, "sessions": 82, "reason": "drawdown 20.4 % (halt at 20 %)"},
]


def test_render_html_when_episodes_then_bands_shade_their_sessions_with_a_legend_and_a_table() -> None:
    equity = _equity()  # 300 sessions from 2023-01-02 (midnight UTC: the New York date is the previous day)
    equity.index = equity.index + pd.Timedelta(hours=21)  # closes, 16:00 New York time
    data: ReportData = {"equity": equity, "trading_episodes": EPISODES, "sessions_locked": 3, "sessions_halted": 82}

    page = render_html(data)

    svg = re.search(r'<section id="equity">.*?</svg>', page, re.S).group(0)  # type: ignore[union-attr]
    left, width = _plot_area(svg)
    span = (equity.index[-1] - equity.index[0]).total_seconds()

    def x_of(stamp: pd.Timestamp) -> float:
        return left + (stamp - equity.index[0]).total_seconds() / span * width

    bands = re.findall(
        r'<rect class="band" data-state="(\w+)" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"[^>]*fill="([^"]+)"', svg
    )
    assert [(state, colour) for state, _, _, colour in bands] == [("locked", "#f59e0b"), ("halted", "#dc2626")]
    (_, lx, lw, _), (_, hx, hw, _) = bands
    # locked 2023-03-01 .. 03: from half-way after the 28 Feb close to half-way before the 6 Mar close
    day = {d.date().isoformat(): d for d in equity.index}
    assert float(lx) == pytest.approx(x_of(day["2023-02-28"] + (day["2023-03-01"] - day["2023-02-28"]) / 2), abs=0.06)
    assert float(lx) + float(lw) == pytest.approx(
        x_of(day["2023-03-03"] + (day["2023-03-06"] - day["2023-03-03"]) / 2), abs=0.1
    )
    # halted from 2023-09-01, still in force: to the right edge
    assert float(hx) + float(hw) == pytest.approx(left + width, abs=0.1)
    assert "locked (no new entries)" in svg and "halted (no trading)" in svg  # the legend
    assert "<title>halted 2023-09-01 .. the end: drawdown 20.4 % (halt at 20 %)</title>" in svg
    # the table under the chart
    assert "Locked (no new entries) for 3 sessions, halted (no trading) for 82 sessions" in page
    assert (
        '<td class="k">locked</td><td>2023-03-01</td><td>2023-03-03</td><td>3</td><td>daily loss 3.1 % (lock at 3 %)</td>'
        in page
    )
    assert "<td>in force at the end</td>" in page


def test_render_html_when_no_episode_then_says_never_locked_and_when_unknown_says_nothing() -> None:
    assert "Trading was never locked or halted." in render_html({"equity": _equity(60), "trading_episodes": []})
    page = render_html({"equity": _equity(60)})
    assert "locked" not in page.lower() and 'class="band"' not in page


def test_render_html_when_episode_date_invalid_then_raises_naming_the_field() -> None:
    bad = [{"state": "halted", "start": "yesterday", "end": None, "sessions": 1, "reason": "x"}]
    with pytest.raises(ValueError, match=r"trading_episodes\[0\]\.start must be a YYYY-MM-DD date"):
        render_html({"equity": _equity(60), "trading_episodes": bad})


def test_render_html_escapes_the_episode_reason() -> None:
    episodes = [{"state": "halted", "start": "2023-01-10", "end": "2023-01-11", "sessions": 2, "reason": MALICIOUS}]
    page = render_html({"equity": _equity(60), "trading_episodes": episodes})
    assert "<script" not in page.lower() and page.count("&lt;script&gt;") == 2  # the band's title and the table


async def test_report_of_a_real_backtest_when_the_result_has_episodes_then_charts_span_the_plot_and_shade_them(
    settings_factory,
) -> None:
    from core.backtest.runner import BacktestConfig, report_data, run_backtest

    result = await run_backtest(
        settings_factory(), BacktestConfig(symbols=("SPY",), start=date(2019, 1, 1), end=date(2019, 3, 29))
    )
    episodes = [
        {
            "state": "halted",
            "start": "2019-03-01",
            "end": None,
            "sessions": 21,
            "reason": "drawdown 11 % (halt at 10 %)",
        }
    ]
    result = dataclasses.replace(result, trading_episodes=episodes)  # sessions_locked/halted are derived from it

    data = report_data(result)
    page = render_html(data)

    assert data["trading_episodes"] == episodes and data["sessions_halted"] == 21
    assert page.count('<rect class="band" data-state="halted"') == 1
    assert "halted (no trading) for 21 sessions" in page
    # the charts of a real backtest's equity span the plot, first session left, last right (the ledger's index unit)
    for svg in re.findall(r"<svg.*?</svg>", page):
        left, width = _plot_area(svg)
        for line in _polylines(svg):
            xs = [x for x, _ in line]
            assert (
                xs == sorted(xs)
                and xs[0] == pytest.approx(left, abs=0.06)
                and xs[-1] == pytest.approx(left + width, abs=0.06)
            )


def test_render_html_names_the_run_slices_sub_periods_not_a_walk_forward() -> None:
    page = render_html(_full_data())

    assert "<h2>Sub-periods of one run (not a walk-forward optimisation)</h2>" in page
    assert "main.py optimize --walk-forward" in page
    assert "<h2>Walk-forward" not in page

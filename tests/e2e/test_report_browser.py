"""End-to-end: ``python main.py backtest --report`` on the bundled bars, the HTML report opened in headless Chromium
(Debian's ``chromium`` package, driven by Playwright, as for the dashboard). The charts must have drawn: each line
spans the plot from its left to its right edge, the date ticks are laid out left to right, and the lock/halt bands
of a report that has them are visible.

Skipped with the reason when ``/usr/bin/chromium`` or the ``playwright`` package is missing, unless
``REQUIRE_BROWSER=1`` (then it fails). Screenshots: ``tmp_path`` and ``tests/artifacts/report.png``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from core.backtest.report import write_report
from tests.conftest import BUNDLED_DAILY, REPO_ROOT, SETTINGS_ENV
from tests.e2e.helpers import ARTIFACTS

# The geometry of every chart, measured in the page: the plot rectangle, the lines' bounding boxes, the x ticks.
_GEOMETRY = """() => [...document.querySelectorAll('svg')].map(svg => {
  const plot = svg.querySelector('rect[fill="#fafafa"]').getBoundingClientRect();
  return {
    title: svg.getAttribute('aria-label'),
    plot: {left: plot.left, right: plot.right, width: plot.width, top: plot.top, bottom: plot.bottom},
    lines: [...svg.querySelectorAll('polyline')].map(p => {
      const b = p.getBoundingClientRect();
      return {left: b.left, right: b.right, width: b.width, height: b.height, points: p.points.numberOfItems};
    }),
    ticks: [...svg.querySelectorAll('text.x-tick')].map(t => ({x: t.getBoundingClientRect().left, text: t.textContent})),
    bands: [...svg.querySelectorAll('rect.band')].map(r => {
      const b = r.getBoundingClientRect();
      return {state: r.dataset.state, width: b.width, height: b.height};
    }),
    elements: svg.querySelectorAll('*').length,
  };
})"""


def _charts(browser: Any, report: Path, *screenshots: Path) -> list[dict[str, Any]]:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    blocked: list[str] = []
    page.on("request", lambda request: blocked.append(request.url) if not request.url.startswith("file:") else None)
    page.goto(report.resolve().as_uri())
    page.wait_for_load_state("load")
    charts = page.evaluate(_GEOMETRY)
    for path in screenshots:
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)
    page.close()
    assert blocked == []  # self-contained: the page asked for nothing
    return charts


def _assert_drawn(chart: dict[str, Any], lines: int) -> None:
    plot = chart["plot"]
    assert plot["width"] > 600, chart
    assert len(chart["lines"]) == lines, chart["title"]
    for line in chart["lines"]:
        # the line spans the plot from its left edge to its right edge (first and last session)
        assert line["width"] >= 0.98 * plot["width"], (chart["title"], line, plot)
        assert abs(line["left"] - plot["left"]) <= 2 and abs(line["right"] - plot["right"]) <= 2
        assert line["height"] > 5 and line["points"] > 100
    xs = [t["x"] for t in chart["ticks"]]
    assert len(xs) >= 3 and xs == sorted(xs) and plot["left"] - 40 <= xs[0] and xs[-1] <= plot["right"] + 40
    assert all(t["text"][:4].isdigit() for t in chart["ticks"])  # years or YYYY-MM-DD dates


def test_backtest_report_charts_draw_across_the_plot_in_the_browser(browser: Any, tmp_path: Path) -> None:
    if not BUNDLED_DAILY.exists():
        pytest.skip(f"bundled data missing at {BUNDLED_DAILY}")
    env = {k: v for k, v in os.environ.items() if k.upper() not in SETTINGS_ENV}
    env.update(LOG_DIR=str(tmp_path / "logs"), DATA_DIR=str(BUNDLED_DAILY))
    report = tmp_path / "report.html"
    done = subprocess.run(  # as a user runs it (and outside Playwright's event loop)
        [sys.executable, "main.py", "backtest", "--start", "2018-01-01", "--end", "2019-06-30", "--symbols", "AAPL,SPY,IBM",
         "--db", f"sqlite:///{tmp_path / 'bt.db'}", "--report", str(report), "--monte-carlo", "50"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0 and report.exists(), done.stderr[-2000:]

    charts = _charts(browser, report, tmp_path / "report.png", ARTIFACTS / "report.png")

    assert [c["title"] for c in charts] == ["Equity curve", "Drawdown"]
    equity, drawdown = charts
    _assert_drawn(equity, lines=2)  # the strategy and SPY buy & hold
    _assert_drawn(drawdown, lines=1)
    assert [t["text"] for t in equity["ticks"]][:2] == ["2018-04-01", "2018-07-01"]  # New York quarter starts
    assert equity["elements"] > 20
    assert (ARTIFACTS / "report.png").stat().st_size > 20_000


def test_report_lock_and_halt_bands_are_visible_in_the_browser(browser: Any, tmp_path: Path) -> None:
    index = pd.bdate_range("2022-01-03", "2023-12-29", tz="America/New_York") + pd.Timedelta(hours=16)
    values = 100_000.0 * np.cumprod(1.0 + np.random.default_rng(3).normal(0.0003, 0.01, len(index)))
    equity = pd.Series(values, index=index.tz_convert("UTC").as_unit("us"))
    episodes = [
        {"state": "locked", "start": "2022-05-09", "end": "2022-05-13", "sessions": 5, "reason": "daily loss over 3 %"},
        {"state": "halted", "start": "2023-10-02", "end": None, "sessions": 63, "reason": "drawdown over 20 %"},
    ]
    report = write_report(tmp_path / "episodes.html", {"equity": equity, "trading_episodes": episodes})

    charts = _charts(browser, report, tmp_path / "report-episodes.png", ARTIFACTS / "report-episodes.png")

    equity_chart = charts[0]
    _assert_drawn(equity_chart, lines=1)
    bands = equity_chart["bands"]
    assert [b["state"] for b in bands] == ["locked", "halted"]
    plot = equity_chart["plot"]
    assert all(b["height"] == pytest.approx(plot["bottom"] - plot["top"], abs=1) for b in bands)
    assert 2 < bands[0]["width"] < 0.03 * plot["width"]  # one week of two years
    assert 0.10 * plot["width"] < bands[1]["width"] < 0.16 * plot["width"]  # the last quarter

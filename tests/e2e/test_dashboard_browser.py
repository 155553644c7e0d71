"""End-to-end: ``python main.py dashboard`` over a database written by a short replay (and a backtest), loaded in
headless Chromium (Debian's ``chromium`` package, driven by Playwright; no browser download). The panels must show
the replay's numbers, refresh by themselves, and a backtest run must open by its id (``?run=RUN_ID``). The backtest
runs with ``DRAWDOWN_HALT=0.01`` so that it really halts: its banner must be red with the reason, the replay's green.
Every column of the orders table fits a 1400 px window; times are New York times with a UTC column.

Skipped with the reason when ``/usr/bin/chromium`` or the ``playwright`` package is missing, unless
``REQUIRE_BROWSER=1`` (then it fails). Screenshots: ``tmp_path`` and ``tests/artifacts/dashboard.png``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

import main
from core.dashboard import formatting as fmt
from core.persistence.db import normalise_url
from core.persistence.models import DaemonStateRow, EquitySnapshotRow, FillRow, OrderRow, Run
from tests.conftest import BUNDLED_DAILY, REPO_ROOT, SETTINGS_ENV
from tests.e2e.helpers import ARTIFACTS

REFRESH_SECONDS = 3


@dataclass(frozen=True)
class Expected:
    run_id: str
    final_equity: str
    orders: int
    fills: int
    state: str
    reason: str


@dataclass(frozen=True)
class Served:
    base: str
    replay: Expected
    backtest: Expected
    log: Path


def _expected(session: Session, run_id: str) -> Expected:
    last = session.scalars(
        select(EquitySnapshotRow)
        .where(EquitySnapshotRow.run_id == run_id)
        .order_by(EquitySnapshotRow.at.desc())
        .limit(1)
    ).one()
    state = session.get(DaemonStateRow, f"{run_id}:risk:state")
    return Expected(
        run_id=run_id,
        final_equity=fmt.money(last.equity),
        orders=session.scalar(select(func.count()).select_from(OrderRow).where(OrderRow.run_id == run_id)) or 0,
        fills=session.scalar(select(func.count()).select_from(FillRow).where(FillRow.run_id == run_id)) or 0,
        state=str(state.value["state"]).upper() if state is not None else "UNKNOWN",
        reason=str(state.value.get("reason") or "") if state is not None else "",
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_serving(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the dashboard exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.25)
    pytest.fail(f"the dashboard did not answer within {timeout:.0f}s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def served(browser_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    if not BUNDLED_DAILY.exists():
        pytest.skip(f"bundled data missing at {BUNDLED_DAILY}")
    tmp = tmp_path_factory.mktemp("dashboard-e2e")
    url = f"sqlite:///{tmp / 'replay.db'}"
    env = {k: v for k, v in os.environ.items() if k.upper() not in SETTINGS_ENV}
    env.update(LOG_DIR=str(tmp / "logs"), DATA_DIR=str(BUNDLED_DAILY))
    with pytest.MonkeyPatch.context() as mp:  # the autouse env isolation is per test: do it here for the module
        for name in SETTINGS_ENV:
            mp.delenv(name, raising=False)
        mp.setenv("LOG_DIR", env["LOG_DIR"])
        mp.setenv("DATA_DIR", env["DATA_DIR"])
        assert main.main(["replay", "--start", "2018-01-01", "--end", "2018-06-30", "--quiet", "--db", url]) == 0
        mp.setenv("DRAWDOWN_LOCK", "0")  # no lock first: the hard halt itself must show
        mp.setenv("DRAWDOWN_HALT", "0.01")  # the backtest halts (its drawdown reaches 1.3 %)
        assert (
            main.main(
                ["backtest", "--start", "2018-01-01", "--end", "2018-06-30", "--symbols", "AAPL,SPY,IBM", "--db", url]
            )
            == 0
        )
    engine = create_engine(normalise_url(url))
    with Session(engine) as s:
        replay = _expected(s, s.scalars(select(Run.id).where(Run.kind == "replay")).one())
        backtest = _expected(s, s.scalars(select(Run.id).where(Run.kind == "backtest")).one())
    engine.dispose()

    port = _free_port()
    log = tmp / "dashboard.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "main.py",
                "dashboard",
                "--db",
                url,
                "--port",
                str(port),
                "--refresh",
                str(REFRESH_SECONDS),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_serving(proc, base, log)
        yield Served(base, replay, backtest, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _open(browser: Any, url: str) -> Any:
    page = browser.new_page(
        viewport={"width": 1400, "height": 4200}
    )  # tall: Streamlit renders off-screen tables lazily
    page.goto(url)
    page.get_by_text("Latest audit narrative").wait_for(timeout=45_000)
    page.get_by_text("Refreshed ").wait_for(timeout=15_000)
    page.get_by_test_id("stTable").first.wait_for(timeout=15_000)  # static tables render a moment after the text
    page.wait_for_load_state("networkidle")
    return page


def _metric(page: Any, label: str) -> str:
    """The value of the metric labelled ``label`` (exact label)."""
    metric = page.get_by_test_id("stMetric").filter(
        has=page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True)
    )
    return str(metric.get_by_test_id("stMetricValue").inner_text()).strip()


# Each data grid's visible width, the width of all its columns, and the column headers it has drawn (the grid is a
# canvas; it keeps an accessible table of the cells in view inside it).
_GRIDS = """() => [...document.querySelectorAll('[data-testid=stDataFrame]')].map(d => {
  const scroller = d.querySelector('.dvn-scroller'), stack = d.querySelector('.dvn-stack > div');
  return {view: scroller ? scroller.clientWidth : 0, content: stack ? stack.getBoundingClientRect().width : 0,
          headers: [...d.querySelectorAll('canvas th')].map(t => t.textContent)};
})"""


def _grid(page: Any, *headers: str) -> dict[str, Any]:
    """The data grid whose headers include ``headers`` (waiting up to 15 s for the canvas grids to draw them: on a
    loaded machine they come after the rest of the page)."""
    for _ in range(60):
        grids = [g for g in page.evaluate(_GRIDS) if set(headers) <= set(g["headers"])]
        if grids:
            break
        page.wait_for_timeout(250)
    assert len(grids) == 1, (headers, page.evaluate(_GRIDS))
    return grids[0]  # type: ignore[no-any-return]


def _alerts(page: Any, kind: str) -> list[str]:
    return [str(t).strip() for t in page.get_by_test_id(f"stAlertContent{kind}").all_inner_texts()]


def _screenshot(page: Any, *paths: Path) -> None:
    height = page.evaluate(  # the bottom of the page's content (Streamlit scrolls inside its own container)
        "() => { const c = document.querySelector('[data-testid=stMainBlockContainer]');"
        " return c ? c.getBoundingClientRect().bottom + c.parentElement.scrollTop : document.body.scrollHeight; }"
    )
    page.set_viewport_size({"width": 1400, "height": min(int(height) + 40, 8000)})
    page.wait_for_timeout(500)
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)


def test_dashboard_shows_the_replays_numbers_and_refreshes_itself(served: Served, browser: Any, tmp_path: Path) -> None:
    started = time.monotonic()
    page = _open(browser, f"{served.base}?run={served.replay.run_id}")
    body = page.inner_text("body")
    assert f"Replay run {served.replay.run_id}" in body
    assert "sqlite:///" in body  # the database, in the sidebar
    assert _metric(page, "Final equity") == served.replay.final_equity
    assert _metric(page, "Orders") == str(served.replay.orders)
    assert _metric(page, "Fills") == str(served.replay.fills)
    assert served.replay.fills > 0
    assert _metric(page, "Trading state") == served.replay.state == "ACTIVE"
    # the banner states the run's own trading state, green as it is ACTIVE
    assert _alerts(page, "Success") == [f"This run: Trading ACTIVE: {served.replay.reason}"]
    # every column of the orders table is in view at 1400 px (nothing to scroll to), with its UTC column
    orders = _grid(page, "submitted", "status")
    assert orders["content"] <= orders["view"], orders
    assert orders["headers"] == [
        "submitted",
        "symbol",
        "side",
        "qty",
        "order",
        "status",
        "filled",
        "strategy",
        "reason",
        "UTC",
    ]
    fills = _grid(page, "filled", "commission")
    assert fills["content"] <= fills["view"] and fills["headers"][-1] == "UTC"
    # the closed trades with their P&L
    trips = _grid(page, "P&L $", "exit by")
    assert trips["content"] <= trips["view"]
    assert "closed trades" in body and "net of commissions" in body
    # times in New York time with the zone
    header = page.get_by_text("Status finished · started ").inner_text()
    assert header.split("started ")[1][:20].endswith((" EST", " EDT")), header
    assert "Equity at 2018-06-29 16:00 EDT" in body
    assert _metric(page, "Open positions") == "1"
    # a replay writes no heartbeat: the daemon is reported unhealthy, as `main.py health` says
    assert "Daemon UNHEALTHY: no heartbeat" in body
    assert "Last heartbeat: never" in body
    # the refusals of the run, by rule, and the latest audit narrative (which states the same equity)
    assert "Refusals by rule" in body and "already_long" in body
    assert f"equity {served.replay.final_equity}" in body
    # every panel is there
    for heading in ("Equity", "Open positions", "Orders and fills", "Decisions and refusals",
                    "Trading state and circuit breakers", "LLM usage and the shadow ledger", "Latest audit narrative"):  # fmt: skip
        assert page.get_by_role("heading", name=heading, exact=True).count() == 1, heading
    # it refreshes by itself (st.fragment(run_every=...)): the "Refreshed ..." stamp moves on
    stamp = page.get_by_text("Refreshed ").inner_text()
    page.wait_for_function(
        "s => [...document.querySelectorAll('p, div')].some(e => e.innerText && e.innerText.startsWith('Refreshed ') && !e.innerText.startsWith(s))",
        arg=stamp.split(" · ")[0],
        timeout=(REFRESH_SECONDS + 10) * 1000,
    )
    assert _metric(page, "Final equity") == served.replay.final_equity  # same numbers after the refresh
    _screenshot(page, tmp_path / "dashboard.png", ARTIFACTS / "dashboard.png")
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
    page.close()
    assert time.monotonic() - started < 60


def test_a_backtest_run_opens_by_its_id(served: Served, browser: Any, tmp_path: Path) -> None:
    page = _open(browser, f"{served.base}?run={served.backtest.run_id}")
    assert f"Backtest run {served.backtest.run_id}" in page.inner_text("body")
    assert _metric(page, "Final equity") == served.backtest.final_equity != served.replay.final_equity
    assert _metric(page, "Fills") == str(served.backtest.fills)
    assert _metric(page, "Orders") == str(served.backtest.orders)
    assert _metric(page, "Trading state") == served.backtest.state == "HALTED"
    # a halted run: a red banner with the reason, nothing green
    # the banner renders markdown: `main.py reset` in the reason shows as code, without its backticks
    assert _alerts(page, "Error")[0] == f"This run: Trading HALTED: {served.backtest.reason.replace('`', '')}"
    assert "high-water mark" in served.backtest.reason and _alerts(page, "Success") == []
    _screenshot(page, tmp_path / "dashboard-backtest.png", ARTIFACTS / "dashboard-backtest.png")
    page.close()
    # without ?run= the latest run opens (there is no daemon run): the backtest
    page = _open(browser, served.base)
    assert f"Backtest run {served.backtest.run_id}" in page.inner_text("body")
    page.close()
    # the server logged no error
    log = served.log.read_text()
    assert "Traceback" not in log, log

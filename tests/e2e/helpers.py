"""Helpers shared by the end-to-end tests and ``python -m tests.e2e.crash_loop``: the local Alpaca fake set up with a
volatility breakout on every symbol, the environment and command of a ``main.py run --once`` subprocess against it;
headless Chromium's location and flags; a local HTTP server answering JSON (the LLM fakes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from core.kernel.calendar import MarketCalendar
from tests.conftest import REPO_ROOT
from tests.fakes.alpaca_server import (
    MARKET_DATA_SPEC_PATH,
    FakeAlpacaServer,
    OpenApiSpec,
    StockBarsEndpoint,
    synthetic_daily_bars,
)
from tests.fakes.alpaca_trading import TRADING_SPEC_PATH, FakeTradingApi, TradingSpec

KEY = "PKCRASHCANARY11"
SECRET = "crashSecretCanary-77aa88bb"
SYMBOLS = ["AAA", "BBB", "CCC"]
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"  # screenshots kept after the run
CHROMIUM = Path("/usr/bin/chromium")  # Debian's chromium package, driven by Playwright (no browser download)
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
DAEMON_ONCE = [sys.executable, "main.py", "run", "--create-db", "--once"]
# settings a ``main.py run`` subprocess must not inherit from the caller's environment
_NOT_INHERITED = {"DATABASE_URL", "BUS_MODE", "AGENT_TRADER_FAILPOINT", "STRATEGY"}


def alpaca_specs_present() -> bool:
    """The fake checks every reply against Alpaca's official specs in ../shared: without them it cannot run."""
    return MARKET_DATA_SPEC_PATH.is_file() and TRADING_SPEC_PATH.is_file()


def breakout_bars(symbol: str, sessions: list) -> list[dict]:
    """A calm random walk whose last session jumps 12% on heavy volume: a volatility breakout BUY."""
    bars = synthetic_daily_bars(symbol, sessions[0], sessions[-1], sessions=sessions)
    prev = bars[-2]["c"]
    close = round(prev * 1.12, 4)
    bars[-1].update(
        {
            "o": round(prev * 1.02, 4),
            "l": round(prev * 1.01, 4),
            "c": close,
            "h": round(close * 1.003, 4),
            "v": 9_000_000,
        }
    )
    bars[-1]["vw"] = round((bars[-1]["o"] + bars[-1]["h"] + bars[-1]["l"] + close) / 4, 4)
    return bars


def start_fake_alpaca(symbols: list[str]) -> tuple[FakeAlpacaServer, FakeTradingApi, dict[str, float]]:
    """A started fake (market data + trading API) serving two years of breakout bars per symbol up to the last completed
    session, each symbol priced at its last close. Returns the server (the caller stops it), the trading API and the
    last closes."""
    server = FakeAlpacaServer(api_key=KEY, secret_key=SECRET).start()
    try:
        bars = StockBarsEndpoint.install(server, OpenApiSpec.load(MARKET_DATA_SPEC_PATH))
        trading = FakeTradingApi.install(server, TradingSpec.load(TRADING_SPEC_PATH), clock=lambda: datetime.now(UTC))
        calendar = MarketCalendar()
        last = calendar.previous_completed_session(datetime.now(UTC)).date  # tests may read the wall clock
        sessions = calendar.sessions_between(last.replace(year=last.year - 2), last)
        closes = {}
        for symbol in symbols:
            series = breakout_bars(symbol, sessions)
            bars.add_bars(symbol, series)
            closes[symbol] = series[-1]["c"]
            trading.set_price(symbol, closes[symbol])
    except BaseException:
        server.stop()
        raise
    return server, trading, closes


def daemon_env(
    server: FakeAlpacaServer,
    work: Path,
    db: str,
    *,
    symbols: list[str] = SYMBOLS,
    strategy: str = "volatility_breakout",
    failpoint: str | None = None,
    log_level: str | None = None,
) -> dict[str, str]:
    """The environment of a ``main.py run`` against the fake: its data and trading API, the SQLite database ``work/db``,
    bar cache and logs under ``work``; ``failpoint`` SIGKILLs the process at that point."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in _NOT_INHERITED}
    env.update(
        {
            "DATA_PROVIDER": "alpaca",
            "BROKER": "alpaca",
            "STRATEGY": strategy,
            "ALPACA_API_KEY": KEY,
            "ALPACA_SECRET_KEY": SECRET,
            "ALPACA_DATA_URL": server.base_url,
            "ALPACA_TRADING_URL": server.base_url,
            "SYMBOLS": ",".join(symbols),
            "BAR_CACHE_DIR": str(work / "bars"),
            "LOG_DIR": str(work / "logs"),
            "DATABASE_URL": f"sqlite:///{work / db}",
        }
    )
    if log_level:
        env["LOG_LEVEL"] = log_level
    if failpoint:
        env["AGENT_TRADER_FAILPOINT"] = failpoint
    return env


def run_daemon_once(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``main.py run --create-db --once`` in a subprocess, its output captured."""
    return subprocess.run(DAEMON_ONCE, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180)


class JsonHandler(BaseHTTPRequestHandler):
    """A request handler that reads and answers JSON and logs nothing."""

    def read_json(self) -> Any:
        return json.loads(self.rfile.read(int(self.headers["content-length"])))

    def send_json(self, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def serve_locally(handler: type[BaseHTTPRequestHandler]) -> Iterator[ThreadingHTTPServer]:
    """``handler`` served on 127.0.0.1 (a free port: ``server.server_address[1]``) in a thread, shut down afterwards."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()

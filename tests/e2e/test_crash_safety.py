"""Crash safety against a fake Alpaca (market data + trading API, the real alpaca-py clients, replies validated against
the official specs): the daemon process is SIGKILLed before submitting, after submitting but before recording, and
after recording; a restart must create no duplicate order, lose no fill, and leave the database's positions equal to
the broker's."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from core.calendar import MarketCalendar
from core.persistence.models import DecisionRow, FillRow, OrderRow, PositionRow
from tests.conftest import REPO_ROOT
from tests.fakes.alpaca_server import MARKET_DATA_SPEC_PATH, FakeAlpacaServer, OpenApiSpec, StockBarsEndpoint, synthetic_daily_bars
from tests.fakes.alpaca_trading import TRADING_SPEC_PATH, FakeTradingApi, TradingSpec

KEY = "PKCRASHCANARY11"
SECRET = "crashSecretCanary-77aa88bb"
SYMBOLS = ["AAA", "BBB", "CCC"]


def _breakout_bars(symbol: str, sessions: list) -> list[dict]:
    """A calm random walk whose last session jumps 12% on heavy volume: a volatility breakout BUY."""
    bars = synthetic_daily_bars(symbol, sessions[0], sessions[-1], sessions=sessions)
    prev = bars[-2]["c"]
    close = round(prev * 1.12, 4)
    bars[-1].update({"o": round(prev * 1.02, 4), "l": round(prev * 1.01, 4), "c": close, "h": round(close * 1.003, 4), "v": 9_000_000})
    bars[-1]["vw"] = round((bars[-1]["o"] + bars[-1]["h"] + bars[-1]["l"] + close) / 4, 4)
    return bars


@pytest.fixture
def fake_alpaca() -> Iterator[tuple[FakeAlpacaServer, FakeTradingApi, dict[str, float]]]:
    if not (MARKET_DATA_SPEC_PATH.is_file() and TRADING_SPEC_PATH.is_file()):
        pytest.skip("needs Alpaca's official specs in ../shared (absent)")
    server = FakeAlpacaServer(api_key=KEY, secret_key=SECRET).start()
    bars = StockBarsEndpoint.install(server, OpenApiSpec.load(MARKET_DATA_SPEC_PATH))
    trading = FakeTradingApi.install(server, TradingSpec.load(TRADING_SPEC_PATH), clock=lambda: datetime.now(UTC))
    calendar = MarketCalendar()
    last = calendar.previous_completed_session(datetime.now(UTC)).date  # tests may read the wall clock
    sessions = calendar.sessions_between(last.replace(year=last.year - 2), last)
    closes = {}
    for symbol in SYMBOLS:
        series = _breakout_bars(symbol, sessions)
        bars.add_bars(symbol, series)
        closes[symbol] = series[-1]["c"]
        trading.set_price(symbol, closes[symbol])
    try:
        yield server, trading, closes
    finally:
        server.stop()
    server.assert_clean()


def _daemon(server: FakeAlpacaServer, tmp_path: Path, failpoint: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in {"DATABASE_URL", "BUS_MODE", "AGENT_TRADER_FAILPOINT"}}
    env.update(
        {
            "DATA_PROVIDER": "alpaca",
            "BROKER": "alpaca",
            "STRATEGY": "volatility_breakout",
            "ALPACA_API_KEY": KEY,
            "ALPACA_SECRET_KEY": SECRET,
            "ALPACA_DATA_URL": server.base_url,
            "ALPACA_TRADING_URL": server.base_url,
            "SYMBOLS": ",".join(SYMBOLS),
            "BAR_CACHE_DIR": str(tmp_path / "bars"),
            "LOG_DIR": str(tmp_path / "logs"),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'crash.db'}",
        }
    )
    if failpoint:
        env["AGENT_TRADER_FAILPOINT"] = failpoint
    return subprocess.run([sys.executable, "main.py", "run", "--once", "--create-db"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180)


@pytest.mark.slow
@pytest.mark.parametrize("failpoint", ["before_submit", "after_submit", "after_persist"])
def test_sigkill_then_restart_never_duplicates_orders_or_loses_fills(fake_alpaca, tmp_path: Path, failpoint: str) -> None:
    server, trading, closes = fake_alpaca
    crashed = _daemon(server, tmp_path, failpoint)
    assert crashed.returncode == -9, crashed.stderr[-2000:]  # SIGKILL: no cleanup at all
    submitted_before_restart = len(trading.top_level_orders())

    restarted = _daemon(server, tmp_path)
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    engine = create_engine(url)
    with Session(engine) as s:
        approved = set(s.scalars(select(DecisionRow.symbol).where(DecisionRow.agent == "risk", DecisionRow.action == "approved")))
        recorded = set(s.scalars(select(OrderRow.client_order_id).where(OrderRow.side == "buy")))
    assert approved  # the crafted breakout gives at least one approved entry
    assert submitted_before_restart == {"before_submit": 0, "after_submit": 1, "after_persist": len(approved)}[failpoint]
    orders = trading.top_level_orders()
    assert sorted(o.symbol for o in orders) == sorted(approved)  # one entry per approved symbol, whatever the crash point
    assert all(trading.count_with_client_id(o.client_order_id) == 1 for o in orders)
    assert recorded == {o.client_order_id for o in orders}

    for order in orders:  # the market fills them while the daemon is down
        trading.fill(order.client_order_id, closes[order.symbol])
    again = _daemon(server, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(trading.top_level_orders()) == len(orders)  # still no duplicate entry
    with Session(engine) as s:
        fills = s.scalars(select(FillRow).where(FillRow.side == "buy")).all()
        filled = [trading.order(o.client_order_id) for o in orders]
        assert all(o.filled_qty > 0 for o in filled)
        assert sorted((f.symbol, f.quantity) for f in fills) == sorted((o.symbol, Decimal(o.filled_qty)) for o in filled)
        assert s.scalar(select(func.count()).select_from(FillRow)) == len({f.fill_id for f in fills}) + s.scalar(
            select(func.count()).select_from(FillRow).where(FillRow.side == "sell")
        )
        latest_run = s.scalar(select(PositionRow.run_id).order_by(PositionRow.updated_at.desc()).limit(1))
        db_positions = {p.symbol: p.quantity for p in s.scalars(select(PositionRow).where(PositionRow.run_id == latest_run))}
    broker_positions = {symbol: qty for symbol, (qty, _) in trading.positions().items() if qty}
    assert db_positions == broker_positions and db_positions

"""Crash safety against a fake Alpaca (market data + trading API, the real alpaca-py clients, replies validated against
the official specs): the daemon process is SIGKILLed before submitting, after submitting but before recording, and
after recording; a restart must create no duplicate order, lose no fill, and leave the database's positions equal to
the broker's."""

from __future__ import annotations

import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from core.persistence.models import DecisionRow, FillRow, OrderRow, PositionRow
from tests.e2e.helpers import daemon_env, run_daemon_once
from tests.fakes.alpaca_server import FakeAlpacaServer


def _daemon(server: FakeAlpacaServer, tmp_path: Path, failpoint: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_daemon_once(daemon_env(server, tmp_path, "crash.db", failpoint=failpoint))


@pytest.mark.slow
@pytest.mark.parametrize("failpoint", ["before_submit", "after_submit", "after_persist"])
def test_sigkill_then_restart_never_duplicates_orders_or_loses_fills(
    fake_alpaca, tmp_path: Path, failpoint: str
) -> None:
    server, trading, closes = fake_alpaca
    crashed = _daemon(server, tmp_path, failpoint)
    assert crashed.returncode == -9, crashed.stderr[-2000:]  # SIGKILL: no cleanup at all
    submitted_before_restart = len(trading.top_level_orders())

    restarted = _daemon(server, tmp_path)
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    engine = create_engine(url)
    with Session(engine) as s:
        approved = set(
            s.scalars(select(DecisionRow.symbol).where(DecisionRow.agent == "risk", DecisionRow.action == "approved"))
        )
        recorded = set(s.scalars(select(OrderRow.client_order_id).where(OrderRow.side == "buy")))
    assert approved  # the crafted breakout gives at least one approved entry
    assert (
        submitted_before_restart == {"before_submit": 0, "after_submit": 1, "after_persist": len(approved)}[failpoint]
    )
    orders = trading.top_level_orders()
    assert sorted(o.symbol for o in orders) == sorted(
        approved
    )  # one entry per approved symbol, whatever the crash point
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
        assert sorted((f.symbol, f.quantity) for f in fills) == sorted(
            (o.symbol, Decimal(o.filled_qty)) for o in filled
        )
        assert s.scalar(select(func.count()).select_from(FillRow)) == len({f.fill_id for f in fills}) + s.scalar(
            select(func.count()).select_from(FillRow).where(FillRow.side == "sell")
        )
        latest_run = s.scalar(select(PositionRow.run_id).order_by(PositionRow.updated_at.desc()).limit(1))
        db_positions = {
            p.symbol: p.quantity for p in s.scalars(select(PositionRow).where(PositionRow.run_id == latest_run))
        }
    broker_positions = {symbol: qty for symbol, (qty, _) in trading.positions().items() if qty}
    assert db_positions == broker_positions and db_positions

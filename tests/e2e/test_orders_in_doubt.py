"""Orders in doubt against the local Alpaca fake (the real alpaca-py clients, replies checked against the official
specs), through the real ``main.py run --once`` in a subprocess:

* SIGKILL right after Alpaca accepted an exit, or a bracket entry, then the order fills (entry and take-profit) while
  the daemon is down: the restart records the order, its legs, its fills and the realised P&L, doubles nothing and
  files no "closed outside the daemon";
* cron: the POST is accepted but answered 500 and the lookup by client id answers 500 too: the next ``run --once``
  resolves it;
* a clean run against the fake records no reconciliation discrepancy.
"""

from __future__ import annotations

import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from core.persistence.models import FillRow, OrderIntentRow, OrderRow, ReconciliationRow
from core.analytics.reporting import round_trips
from tests.e2e.helpers import daemon_env, run_daemon_once
from tests.fakes.alpaca_server import FakeAlpacaServer, server_error
from tests.fakes.alpaca_trading import ORDER_BY_CLIENT_ID_PATH, FakeTradingApi

pytestmark = pytest.mark.slow


def _run_once(
    server: FakeAlpacaServer, tmp_path: Path, *, failpoint: str | None = None, strategy: str = "volatility_breakout"
) -> subprocess.CompletedProcess[str]:
    return run_daemon_once(daemon_env(server, tmp_path, "doubt.db", strategy=strategy, failpoint=failpoint))


def _ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr[-3000:]


def _killed(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == -9, result.stderr[-3000:]  # SIGKILL at the failpoint: no cleanup at all


def _session(tmp_path: Path) -> Session:
    return Session(create_engine(f"sqlite:///{tmp_path / 'doubt.db'}"))


def _assert_ledger_matches_the_broker(tmp_path: Path, trading: FakeTradingApi) -> None:
    """Every order (legs included) once, every execution once, positions from the fills equal to the broker's, no
    reconciliation discrepancy and no intent left in doubt."""
    fake = {o.client_order_id: o for o in trading.orders()}
    assert all(trading.count_with_client_id(cid) == 1 for cid in fake)
    with _session(tmp_path) as s:
        rows = {o.client_order_id: o for o in s.scalars(select(OrderRow))}
        fills = s.scalars(select(FillRow)).all()
        assert set(rows) == set(fake)  # every order the broker has, legs included, is in the ledger
        for cid, order in fake.items():
            assert rows[cid].filled_quantity == order.filled_qty, cid
            assert sum((f.quantity for f in fills if f.client_order_id == cid), Decimal(0)) == order.filled_qty, cid
            notional = sum((f.quantity * f.price for f in fills if f.client_order_id == cid), Decimal(0))
            assert notional == order.filled_notional, cid
        assert s.scalar(select(func.count(func.distinct(FillRow.fill_id)))) == len(fills)
        held: dict[str, Decimal] = {}
        for f in fills:
            held[f.symbol] = held.get(f.symbol, Decimal(0)) + (f.quantity if f.side == "buy" else -f.quantity)
        assert {k: v for k, v in held.items() if v} == {k: q for k, (q, _) in trading.positions().items() if q}
        assert [(r.kind, r.symbol, r.details) for r in s.scalars(select(ReconciliationRow))] == []
        assert set(s.scalars(select(OrderIntentRow.status))) <= {"recorded"}


def test_sigkill_after_a_bracket_entry_is_accepted_then_it_and_its_take_profit_fill_while_down_then_the_restart_records_all_of_it(
    fake_alpaca, tmp_path: Path
) -> None:
    server, trading, closes = fake_alpaca
    _killed(_run_once(server, tmp_path, failpoint="after_submit"))
    [entry] = trading.top_level_orders()
    with _session(tmp_path) as s:  # the crash left the order only in the intents table
        assert s.scalar(select(func.count()).select_from(OrderRow)) == 0
        assert (
            s.scalars(
                select(OrderIntentRow.status).where(OrderIntentRow.client_order_id == entry.client_order_id)
            ).one()
            == "pending"
        )
    price = Decimal(str(closes[entry.symbol]))
    trading.fill(entry.client_order_id, price)
    take_profit = next(trading.order(i) for i in entry.leg_ids if trading.order(i).type == "limit")
    trading.fill(take_profit.id, take_profit.limit_price)  # the position is closed by its take-profit while down
    assert not trading.positions().get(entry.symbol)

    _ok(_run_once(server, tmp_path))

    _assert_ledger_matches_the_broker(tmp_path, trading)
    with _session(tmp_path) as s:
        row = s.scalars(select(OrderRow).where(OrderRow.client_order_id == entry.client_order_id)).one()
        assert (row.status, row.order_type, row.strategy) == ("filled", "bracket", "volatility_breakout")
        legs = {trading.order(i).client_order_id: trading.order(i).status for i in entry.leg_ids}
        assert {c: s.scalars(select(OrderRow.status).where(OrderRow.client_order_id == c)).one() for c in legs} == {
            c: {"filled": "filled", "canceled": "canceled"}[st] for c, st in legs.items()
        }
        [trip] = [t for t in round_trips(s) if t.symbol == entry.symbol]
        assert trip.pnl == pytest.approx(float((take_profit.limit_price - price) * entry.qty))  # Alpaca: no commission


def test_sigkill_after_an_exit_is_accepted_then_it_fills_while_down_then_the_restart_records_the_exit_and_its_pnl(
    fake_alpaca, tmp_path: Path
) -> None:
    server, trading, closes = fake_alpaca
    _ok(_run_once(server, tmp_path))  # entries
    entries = trading.top_level_orders()
    for order in entries:
        trading.fill(order.client_order_id, closes[order.symbol])
    _ok(_run_once(server, tmp_path))  # records the entries' fills
    held = {k: q for k, (q, _) in trading.positions().items() if q}
    assert held

    _killed(_run_once(server, tmp_path, failpoint="after_submit", strategy="mean_reversion"))  # SELL on the spike
    [exit_order] = [o for o in trading.top_level_orders() if o.side == "sell"]
    exit_price = (Decimal(str(closes[exit_order.symbol])) * Decimal("1.05")).quantize(Decimal("0.01"))
    trading.fill(exit_order.client_order_id, exit_price)
    assert exit_order.symbol not in trading.positions()

    _ok(_run_once(server, tmp_path, strategy="mean_reversion"))

    _assert_ledger_matches_the_broker(tmp_path, trading)
    with _session(tmp_path) as s:
        row = s.scalars(select(OrderRow).where(OrderRow.client_order_id == exit_order.client_order_id)).one()
        assert (row.status, row.side, row.strategy) == ("filled", "sell", "mean_reversion")
        fills = s.scalars(select(FillRow).where(FillRow.symbol == exit_order.symbol)).all()
        realised = sum((f.quantity * f.price * (1 if f.side == "sell" else -1) for f in fills), Decimal(0))
        entry_price = Decimal(str(closes[exit_order.symbol]))
        assert realised == (exit_price - entry_price) * held[exit_order.symbol]


def test_cron_post_accepted_but_answered_500_and_lookup_500_then_the_next_run_once_records_it(
    fake_alpaca, tmp_path: Path
) -> None:
    server, trading, closes = fake_alpaca
    trading.accept_then(server_error(500))
    trading.fail_next("GET", ORDER_BY_CLIENT_ID_PATH, 500)
    _ok(_run_once(server, tmp_path))
    in_doubt = trading.top_level_orders()[0]  # accepted, though the answer and the lookup were both lost
    with _session(tmp_path) as s:  # recorded if this run saw it again (its open orders), else still in doubt
        recorded = in_doubt.client_order_id in set(s.scalars(select(OrderRow.client_order_id)))
        status = s.scalars(
            select(OrderIntentRow.status).where(OrderIntentRow.client_order_id == in_doubt.client_order_id)
        ).one()
        assert status == ("recorded" if recorded else "pending")
    trading.fill(in_doubt.client_order_id, closes[in_doubt.symbol])  # filled before the next cron run

    _ok(_run_once(server, tmp_path))

    assert trading.count_with_client_id(in_doubt.client_order_id) == 1
    _assert_ledger_matches_the_broker(tmp_path, trading)
    with _session(tmp_path) as s:
        row = s.scalars(select(OrderRow).where(OrderRow.client_order_id == in_doubt.client_order_id)).one()
        assert (row.status, row.strategy) == ("filled", "volatility_breakout")


def test_clean_runs_against_the_alpaca_fake_record_no_reconciliation_discrepancy(fake_alpaca, tmp_path: Path) -> None:
    server, trading, closes = fake_alpaca
    _ok(_run_once(server, tmp_path))
    for order in trading.top_level_orders():
        trading.fill(order.client_order_id, closes[order.symbol])  # fills while down: the bracket legs come alive
    _ok(_run_once(server, tmp_path))
    _ok(_run_once(server, tmp_path))
    _assert_ledger_matches_the_broker(tmp_path, trading)

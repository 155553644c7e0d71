"""Accounting identity on every iteration of a long replay of the bundled bars: equity = cash + market value, and the
cash of every snapshot equals the initial cash moved by every fill so far (price x quantity and commission), exactly,
in Decimal. Realised plus unrealised P&L therefore reconcile with the fills."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

import main
from core.persistence.models import EquitySnapshotRow, FillRow, PositionRow, Run
from tests.conftest import BUNDLED_DAILY


@pytest.mark.slow
def test_cash_equity_and_fills_reconcile_on_every_iteration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("DATA_DIR", str(BUNDLED_DAILY))
    monkeypatch.setenv("DRAWDOWN_HALT", "0.9")  # keep trading through 2008 so the ledger has many fills
    url = f"sqlite:///{tmp_path / 'acct.db'}"
    assert main.main(["replay", "--start", "2007-01-01", "--end", "2010-12-31", "--quiet", "--db", url]) == 0
    with Session(create_engine(url)) as s:
        initial = s.scalars(select(Run.initial_cash)).one()
        snaps = s.scalars(select(EquitySnapshotRow).order_by(EquitySnapshotRow.at)).all()
        fills = s.scalars(select(FillRow).order_by(FillRow.filled_at, FillRow.id)).all()
        assert len(fills) > 50
        cash, held, i = initial, {}, 0
        for snap in snaps:
            while i < len(fills) and fills[i].filled_at <= snap.at:
                f = fills[i]
                signed = f.quantity if f.side == "buy" else -f.quantity
                cash -= signed * f.price + f.commission
                held[f.symbol] = held.get(f.symbol, Decimal(0)) + signed
                assert held[f.symbol] >= 0, f"short position in {f.symbol} after {f.fill_id}"
                i += 1
            assert snap.cash == cash, f"cash differs at {snap.at}"
            assert snap.equity == snap.cash + snap.market_value, f"equity identity broken at {snap.at}"
            assert snap.positions == sum(1 for q in held.values() if q > 0)
        final_positions = {p.symbol: p.quantity for p in s.scalars(select(PositionRow))}
        assert final_positions == {k: v for k, v in held.items() if v > 0}

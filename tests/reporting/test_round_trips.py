"""Round trips rebuilt from fills: long-only, average cost, one trade from flat to flat (hand-checked numbers)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy.orm import Session

from core.kernel.domain import OrderStatus, Side
from core.analytics.reporting import rebuild_round_trips, round_trips
from tests.reporting.factories import (
    D2,
    D3,
    D4,
    D5,
    RUN_1,
    RUN_2,
    Ledger,
    build_ledger,
    close_of,
    decision,
    fill,
    open_of,
    order,
)


@pytest.fixture
def session(database_url: str):
    led = build_ledger(database_url)
    with led.repo.session() as s:
        yield s


def test_round_trips_when_partial_exit_and_scale_in_then_one_trade_from_flat_to_flat(session: Session) -> None:
    trades = {t.symbol: t for t in round_trips(session, run_id=RUN_1)}

    aapl = trades["AAPL"]
    # bought 100 @ 10 + 20 @ 11 = 1,220 for 120 shares; sold 40 @ 12 + 80 @ 9 = 1,200; commissions 1 + .5 + .25 + .75
    assert aapl.quantity == 120.0
    assert aapl.entry_price == pytest.approx(1220 / 120)
    assert aapl.exit_price == pytest.approx(10.0)
    assert aapl.pnl == pytest.approx(-22.50)
    assert aapl.return_pct == pytest.approx(-22.50 / 1220)
    assert (aapl.entry_at, aapl.exit_at) == (open_of(D2), open_of(D5))
    assert aapl.strategy == "trend_following"


def test_round_trips_when_closed_then_pnl_is_net_of_both_sides_commissions(session: Session) -> None:
    trades = {t.symbol: t for t in round_trips(session, run_id=RUN_1)}

    assert trades["BAC"].pnl == pytest.approx(50 * 22 - 50 * 20 - 1.00 - 1.00)  # 98
    assert trades["BAC"].return_pct == pytest.approx(98 / 1000)
    assert trades["IBM"].pnl == pytest.approx(100.0)
    assert set(trades) == {"AAPL", "BAC", "IBM"}  # SPY is still open: not a closed trade


def test_round_trip_money_stays_exact_and_average_cost_realised_pnl_agrees(session: Session) -> None:
    book = rebuild_round_trips(session, run_id=RUN_1, symbol="AAPL")

    (trip,) = book.trips
    assert trip.pnl == Decimal("-22.50")
    assert trip.commissions == Decimal("2.50")
    # average cost: +80 on the first exit (40 x (12 - 10)), cost 10.25 after the scale-in, -100 on the last exit
    assert trip.realized_pnl == trip.pnl
    assert [f.fill_id for f in trip.fills] == ["f-aapl-1", "f-aapl-2", "f-aapl-3", "f-aapl-4"]


def test_entry_confidence_comes_from_the_risk_decision_of_the_entry_orders_iteration(session: Session) -> None:
    trades = {t.symbol: t for t in round_trips(session, run_id=RUN_1)}

    assert trades["AAPL"].entry_confidence == 0.8  # not the quant 0.7, nor the later denial's 0.75
    assert trades["BAC"].entry_confidence == 0.6
    assert trades["IBM"].entry_confidence == 0.9
    (spy,) = rebuild_round_trips(session, run_id=RUN_1, symbol="SPY").trips
    assert spy.entry_confidence == 0.55  # the risk decision has none: the quant decision's


def test_open_trip_when_position_not_flat_then_reported_open_with_average_cost(session: Session) -> None:
    book = rebuild_round_trips(session, run_id=RUN_1)

    (spy,) = book.open
    assert (spy.symbol, spy.open_quantity, spy.average_cost) == ("SPY", Decimal("10"), Decimal("100"))
    assert spy.pnl is None and spy.exit_at is None
    assert spy.realized_pnl == Decimal("-1.00")  # nothing sold yet: only the entry commission
    with pytest.raises(ValueError, match="still open"):
        spy.to_closed_trade()


def test_round_trips_filters_by_exit_date_symbol_and_run(session: Session) -> None:
    assert [t.symbol for t in round_trips(session, run_id=RUN_1, end=D3)] == ["BAC", "IBM"]
    assert [t.symbol for t in round_trips(session, run_id=RUN_1, start=D4)] == ["AAPL"]
    assert [t.symbol for t in round_trips(session, symbol="aapl")] == ["AAPL"]
    assert sorted(t.symbol for t in round_trips(session)) == ["AAPL", "BAC", "IBM", "XYZ"]
    assert [t.symbol for t in round_trips(session, run_id=RUN_2)] == ["XYZ"]
    with pytest.raises(LookupError, match="no run"):
        round_trips(session, run_id="nope")


def test_sell_beyond_the_runs_position_is_unmatched_not_a_trade(session: Session) -> None:
    book = rebuild_round_trips(session, run_id=RUN_2)

    (xyz,) = book.closed
    assert xyz.pnl == Decimal("50") and xyz.entry_confidence is None
    (unmatched,) = book.unmatched
    assert (unmatched.fill_id, unmatched.quantity) == ("f-xyz-3", Decimal("5"))


def test_oversized_sell_closes_the_trip_with_its_share_of_the_commission(tmp_path) -> None:
    led = Ledger(f"sqlite:///{tmp_path / 'over.db'}")
    led.run("r", close_of(date(2024, 1, 1)))
    buy = order("r-buy", "AAPL", Side.BUY, 10, close_of(date(2024, 1, 2)), strategy="momentum")
    led.session("r", date(2024, 1, 2), orders=[buy], decisions=[decision("risk", "AAPL", "approved", confidence=0.5)])
    led.session(
        "r",
        date(2024, 1, 3),
        orders=[
            buy.transition(OrderStatus.FILLED, open_of(date(2024, 1, 3)), filled_quantity=10),
            order("r-sell", "AAPL", Side.SELL, 15, open_of(date(2024, 1, 3)), strategy="momentum"),
        ],
        fills=[
            fill("b", "r-buy", "AAPL", Side.BUY, 10, "10", "1.00", open_of(date(2024, 1, 3))),
            fill("s", "r-sell", "AAPL", Side.SELL, 15, "12", "1.50", open_of(date(2024, 1, 3)).replace(hour=15)),
        ],
    )
    with led.repo.session() as s:
        book = rebuild_round_trips(s)

    (trip,) = book.trips
    # 10 of the 15 belong to the trip, with 10/15 of the 1.50 commission: 120 - 100 - 1.00 - 1.00
    assert trip.closed and trip.pnl == Decimal("18")
    assert [(u.fill_id, u.quantity) for u in book.unmatched] == [("s", Decimal("5"))]


def test_partial_exit_while_open_then_realised_pnl_at_average_cost(tmp_path) -> None:
    led = Ledger(f"sqlite:///{tmp_path / 'partial.db'}")
    led.run("r", close_of(date(2024, 1, 1)))
    buy = order("r-buy", "IBM", Side.BUY, 100, close_of(date(2024, 1, 2)), strategy="momentum")
    led.session("r", date(2024, 1, 2), orders=[buy])
    led.session(
        "r",
        date(2024, 1, 3),
        orders=[
            buy.transition(OrderStatus.FILLED, open_of(date(2024, 1, 3)), filled_quantity=100),
            order("r-sell", "IBM", Side.SELL, 40, open_of(date(2024, 1, 3)), strategy="momentum"),
        ],
        fills=[
            fill("b", "r-buy", "IBM", Side.BUY, 100, "10", "1.00", open_of(date(2024, 1, 3))),
            fill("s", "r-sell", "IBM", Side.SELL, 40, "12", "0.50", open_of(date(2024, 1, 3)).replace(hour=16)),
        ],
    )
    with led.repo.session() as s:
        book = rebuild_round_trips(s)
        closed = round_trips(s)

    (trip,) = book.open
    assert closed == []
    assert (trip.open_quantity, trip.average_cost) == (Decimal("60"), Decimal("10"))
    assert trip.realized_pnl == Decimal("78.50")  # 40 x (12 - 10) - 1.00 - 0.50
    assert trip.entry_confidence is None  # no decision recorded for the entry iteration

"""Hand-built ledgers for the reporting tests, written through the real Repository (the same path as the daemon).

``build_ledger(url)`` writes two runs whose every figure is worked out by hand in ``EXPECTED`` comments:

run-1 (started 2024-03-01, the latest run)
    session 2024-03-01  AAPL: BUY approved (quant 0.7, risk 0.8) -> order O1 buy 100 (trend_following)
                        BAC:  BUY approved (risk 0.6)            -> order buy 50 (mean_reversion)
                        IBM:  BUY approved (risk 0.9)            -> order buy 10 (trend_following)
                        one LLM selection call about AAPL and BAC
    session 2024-03-04  fills: AAPL buy 100 @ 10.00 (comm 1.00), BAC buy 50 @ 20.00 (1.00), IBM buy 10 @ 50 (0)
                        AAPL risk denied:already_long; breaker llm_selection closed -> open
    session 2024-03-05  AAPL sell 40 @ 12.00 (0.50)  [partial exit]
                        BAC sell 50 @ 22.00 (1.00)   -> BAC closed, pnl 1100 - 1000 - 2 = +98.00
                        IBM sell 10 @ 60.00 (0)      -> IBM closed, pnl +100.00
                        SPY BUY (quant 0.55, risk confidence missing) -> order buy 10 (trend_following)
                        AAPL denied:already_long, BAC denied:sector_cap; breaker open -> half_open
    session 2024-03-06  AAPL buy 20 @ 11.00 (0.25)   [scale in]; SPY buy 10 @ 100.00 (1.00) -> stays open
                        IBM denied:state; BAC buy order canceled, never filled; breaker half_open -> closed
    session 2024-03-07  AAPL sell 80 @ 9.00 (0.75)   -> AAPL closed: bought 120 for 1,220.00, sold 120 for
                        1,200.00, commissions 2.50, pnl -22.50, return -22.50 / 1,220.00
                        breaker closed -> open; positions SPY 10 (mv 1,050), IWM 5 (mv 1,050), XYZ 3 (mv 300)
    equity 100,000 / 100,500 / 100,200 / 100,800 / 101,000 with 0 / 3 / 1 / 2 / 3 positions
run-2 (started 2024-02-01, older)
    XYZ buy 10 @ 50 (breakout, no decisions: no confidence), sell 10 @ 55 -> pnl +50; then a sell of 5 XYZ
    with no position in this run (unmatched); breaker "broker" closed -> open (no persisted state)
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from collections.abc import Mapping, Sequence

from core.kernel.domain import Decision, EquitySnapshot, Fill, Order, OrderStatus, OrderType, Position, Side
from core.persistence.db import open_database
from core.persistence.repository import IterationRecord, Repository

RUN_1 = "run-1"
RUN_2 = "run-2"

D1, D2, D3, D4, D5 = (date(2024, 3, d) for d in (1, 4, 5, 6, 7))


def close_of(day: date) -> datetime:
    """Decision time: the session close, 21:00 UTC in winter."""
    return datetime(day.year, day.month, day.day, 21, 0, tzinfo=UTC)


def open_of(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 14, 30, tzinfo=UTC)


def order(
    coid: str,
    symbol: str,
    side: Side,
    quantity: int,
    at: datetime,
    *,
    strategy: str,
    status: OrderStatus = OrderStatus.SUBMITTED,
    **kw: Any,
) -> Order:
    return Order(
        client_order_id=coid,
        symbol=symbol,
        side=side,
        quantity=quantity,
        order_type=kw.pop("order_type", OrderType.MARKET),
        status=status,
        submitted_at=at,
        strategy=strategy,
        reason=kw.pop("reason", f"{side.value} {quantity} {symbol}"),
        updated_at=kw.pop("updated_at", at),
        **kw,
    )


def fill(
    fill_id: str, coid: str, symbol: str, side: Side, quantity: int, price: str, commission: str, at: datetime
) -> Fill:
    return Fill(fill_id, coid, symbol, side, quantity, Decimal(price), Decimal(commission), at)


def decision(
    agent: str,
    symbol: str,
    action: str,
    reason: str = "",
    *,
    strategy: str | None = None,
    confidence: float | None = None,
    **inputs: Any,
) -> Decision:
    return Decision(
        agent, symbol, action, reason or f"{agent} {action}", inputs, strategy=strategy, confidence=confidence
    )


def llm_call(symbols: Sequence[str], at: datetime, *, outcome: str = "ok") -> dict[str, Any]:
    return {
        "purpose": "selection",
        "provider": "groq",
        "model": "llama-test",
        "prompt_version": "selection-v3",
        "prompt_hash": "abc123",
        "input_tokens": 812,
        "output_tokens": 64,
        "cost_usd": 0.0012,
        "latency_ms": 420.5,
        "retries": 0,
        "outcome": outcome,
        "validation_errors": [],
        "symbols": list(symbols),
        "error": None,
        "started_at": at,
    }


class Ledger:
    """Writes iterations through ``Repository.record_iteration`` with sequential ids per run."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.repo = Repository(open_database(url))
        self._seq: dict[str, int] = {}

    def run(self, run_id: str, started_at: datetime, cash: str = "100000") -> None:
        self.repo.create_run(
            run_id,
            kind="replay",
            broker="simulated",
            data_provider="files",
            started_at=started_at,
            initial_cash=Decimal(cash),
            symbols=["AAPL", "BAC", "IBM", "SPY"],
            config={},
        )
        self._seq[run_id] = 0

    def session(
        self,
        run_id: str,
        day: date,
        *,
        decisions: Sequence[Decision] = (),
        orders: Sequence[Order] = (),
        fills: Sequence[Fill] = (),
        equity: str | None = None,
        positions: Mapping[str, Position] | None = None,
        llm_calls: Sequence[Mapping[str, Any]] = (),
        breaker_events: Sequence[Mapping[str, Any]] = (),
        state: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> str:
        self._seq[run_id] += 1
        seq = self._seq[run_id]
        iteration_id = f"{run_id}-{seq:06d}"
        at = close_of(day)
        held = positions if positions is not None else {}
        snapshot = None
        if equity is not None:
            value = sum((p.market_value for p in held.values()), Decimal("0"))
            snapshot = EquitySnapshot(
                at=at, cash=Decimal(equity) - value, market_value=value, equity=Decimal(equity), positions=len(held)
            )
        self.repo.record_iteration(
            IterationRecord(
                run_id=run_id,
                iteration_id=iteration_id,
                seq=seq,
                as_of=at,
                recorded_at=at,
                status="ok",
                error=None,
                symbols_total=4,
                symbols_ok=4,
                data_quality=1.0,
                decisions=decisions,
                orders=orders,
                fills=fills,
                positions=positions,
                equity=snapshot,
                llm_calls=llm_calls,
                breaker_events=breaker_events,
                state=state or {},
            )
        )
        return iteration_id


def _pos(symbol: str, quantity: int, average: str, last: str) -> Position:
    return Position(symbol, quantity, Decimal(average), open_of(D4), last_price=Decimal(last))


def _positions(count: int) -> dict[str, Position]:
    """Dummy broker positions with the given count (only the count matters before the last session)."""
    symbols = ["AAPL", "BAC", "IBM"][:count]
    return {s: _pos(s, 1, "10", "10") for s in symbols}


def _breaker(frm: str, to: str, reason: str, at: datetime) -> dict[str, Any]:
    return {"name": "llm_selection", "from_state": frm, "to_state": to, "reason": reason, "at": at}


def build_ledger(url: str) -> Ledger:
    """Both runs of the module docstring; returns the ledger (its ``url`` opens the same database)."""
    led = Ledger(url)
    led.run(RUN_1, datetime(2024, 3, 1, 13, 0, tzinfo=UTC))
    led.run(RUN_2, datetime(2024, 2, 1, 13, 0, tzinfo=UTC))

    # ---- run-1 -----------------------------------------------------------------------------------------
    t1 = close_of(D1)
    o_aapl = order("r1-AAPL-buy", "AAPL", Side.BUY, 100, t1, strategy="trend_following")
    o_bac = order("r1-BAC-buy", "BAC", Side.BUY, 50, t1, strategy="mean_reversion")
    o_ibm = order("r1-IBM-buy", "IBM", Side.BUY, 10, t1, strategy="trend_following")
    # decisions written out of pipeline order on purpose: why() must sort them
    led.session(
        RUN_1,
        D1,
        decisions=[
            decision(
                "execution",
                "AAPL",
                "submitted",
                "buy 100 market as r1-AAPL-buy",
                strategy="trend_following",
                confidence=0.8,
                client_order_id="r1-AAPL-buy",
            ),
            decision(
                "risk",
                "AAPL",
                "approved",
                "BUY 100 AAPL: risk 2% of equity",
                strategy="trend_following",
                confidence=0.8,
                state="active",
                quantity=100,
            ),
            decision("data", "AAPL", "ok", "250 bars up to 2024-03-01", bars=250),
            decision("quant", "AAPL", "validated", "hit rate 0.70", strategy="trend_following", confidence=0.7),
            decision("strategy", "AAPL", "BUY", "golden cross", strategy="trend_following", price=10.2),
            decision("selector", "AAPL", "chose", "LLM chose trend_following", strategy="trend_following"),
            decision("risk", "BAC", "approved", "BUY 50 BAC", strategy="mean_reversion", confidence=0.6),
            decision("quant", "BAC", "validated", "ok", strategy="mean_reversion", confidence=0.5),
            decision("risk", "IBM", "approved", "BUY 10 IBM", strategy="trend_following", confidence=0.9),
        ],
        orders=[o_aapl, o_bac, o_ibm],
        equity="100000",
        positions={},
        llm_calls=[llm_call(["AAPL", "BAC"], t1)],
    )
    t2 = close_of(D2)
    led.session(
        RUN_1,
        D2,
        decisions=[
            decision("data", "AAPL", "ok", "251 bars"),
            decision(
                "risk",
                "AAPL",
                "denied:already_long",
                "already long 100 AAPL",
                strategy="trend_following",
                confidence=0.75,
                rule="already_long",
            ),
        ],
        orders=[
            o_aapl.transition(OrderStatus.FILLED, open_of(D2), filled_quantity=100, average_fill_price=10.0),
            o_bac.transition(OrderStatus.FILLED, open_of(D2), filled_quantity=50, average_fill_price=20.0),
            o_ibm.transition(OrderStatus.FILLED, open_of(D2), filled_quantity=10, average_fill_price=50.0),
        ],
        fills=[
            fill("f-aapl-1", "r1-AAPL-buy", "AAPL", Side.BUY, 100, "10.00", "1.00", open_of(D2)),
            fill("f-bac-1", "r1-BAC-buy", "BAC", Side.BUY, 50, "20.00", "1.00", open_of(D2)),
            fill("f-ibm-1", "r1-IBM-buy", "IBM", Side.BUY, 10, "50.00", "0", open_of(D2)),
        ],
        equity="100500",
        positions=_positions(3),
        llm_calls=[llm_call(["AAPL"], t2, outcome="invalid")],
        breaker_events=[_breaker("closed", "open", "3 consecutive failures", t2)],
    )
    t3 = close_of(D3)
    o_spy = order("r1-SPY-buy", "SPY", Side.BUY, 10, t3, strategy="trend_following")
    led.session(
        RUN_1,
        D3,
        decisions=[
            decision(
                "risk",
                "AAPL",
                "denied:already_long",
                "already long 60 AAPL",
                strategy="trend_following",
                rule="already_long",
            ),
            decision(
                "risk",
                "BAC",
                "denied:sector_cap",
                "financials would reach 40% (cap 35%)",
                strategy="mean_reversion",
                rule="sector_cap",
            ),
            decision("quant", "SPY", "validated", "ok", strategy="trend_following", confidence=0.55),
            decision("risk", "SPY", "approved", "BUY 10 SPY", strategy="trend_following", confidence=None),
        ],
        orders=[
            order(
                "r1-AAPL-sell-1",
                "AAPL",
                Side.SELL,
                40,
                open_of(D3),
                strategy="trend_following",
                status=OrderStatus.FILLED,
                filled_quantity=40,
                average_fill_price=12.0,
            ),
            order(
                "r1-BAC-sell",
                "BAC",
                Side.SELL,
                50,
                open_of(D3),
                strategy="mean_reversion",
                status=OrderStatus.FILLED,
                filled_quantity=50,
                average_fill_price=22.0,
            ),
            order(
                "r1-IBM-sell",
                "IBM",
                Side.SELL,
                10,
                open_of(D3),
                strategy="trend_following",
                status=OrderStatus.FILLED,
                filled_quantity=10,
                average_fill_price=60.0,
            ),
            o_spy,
        ],
        fills=[
            fill("f-aapl-2", "r1-AAPL-sell-1", "AAPL", Side.SELL, 40, "12.00", "0.50", open_of(D3)),
            fill("f-bac-2", "r1-BAC-sell", "BAC", Side.SELL, 50, "22.00", "1.00", open_of(D3)),
            fill("f-ibm-2", "r1-IBM-sell", "IBM", Side.SELL, 10, "60.00", "0", open_of(D3)),
        ],
        equity="100200",
        positions=_positions(1),
        breaker_events=[_breaker("open", "half_open", "cooldown elapsed", t3)],
    )
    t4 = close_of(D4)
    led.session(
        RUN_1,
        D4,
        decisions=[
            decision("data", "IBM", "ok", "253 bars"),
            decision("strategy", "IBM", "BUY", "breakout", strategy="breakout"),
            decision("quant", "IBM", "validated", "ok", strategy="breakout", confidence=0.4),
            decision(
                "risk",
                "IBM",
                "denied:state",
                "trading state is reducing; entries need active",
                strategy="breakout",
                confidence=0.4,
                rule="state",
            ),
            decision("execution", "IBM", "none", "no approved order"),
            decision("risk", "BAC", "approved", "BUY 30 BAC", strategy="mean_reversion", confidence=0.65),
        ],
        orders=[
            order(
                "r1-AAPL-buy-2",
                "AAPL",
                Side.BUY,
                20,
                open_of(D4),
                strategy="trend_following",
                status=OrderStatus.FILLED,
                filled_quantity=20,
                average_fill_price=11.0,
            ),
            o_spy.transition(OrderStatus.FILLED, open_of(D4), filled_quantity=10, average_fill_price=100.0),
            order(
                "r1-BAC-buy-2",
                "BAC",
                Side.BUY,
                30,
                t4,
                strategy="mean_reversion",
                status=OrderStatus.CANCELED,
                reason="limit not reached",
            ),
        ],
        fills=[
            fill("f-aapl-3", "r1-AAPL-buy-2", "AAPL", Side.BUY, 20, "11.00", "0.25", open_of(D4)),
            fill("f-spy-1", "r1-SPY-buy", "SPY", Side.BUY, 10, "100.00", "1.00", open_of(D4)),
        ],
        equity="100800",
        positions=_positions(2),
        breaker_events=[_breaker("half_open", "closed", "trial call succeeded", t4)],
    )
    t5 = close_of(D5)
    led.session(
        RUN_1,
        D5,
        decisions=[
            decision(
                "risk",
                "SPY",
                "skip",
                "signal is HOLD: no order",
                state="reducing",
                state_reason="daily loss 3.10% (limit 3.00%)",
            )
        ],
        orders=[
            order(
                "r1-AAPL-sell-2",
                "AAPL",
                Side.SELL,
                80,
                open_of(D5),
                strategy="trend_following",
                status=OrderStatus.FILLED,
                filled_quantity=80,
                average_fill_price=9.0,
            )
        ],
        fills=[fill("f-aapl-4", "r1-AAPL-sell-2", "AAPL", Side.SELL, 80, "9.00", "0.75", open_of(D5))],
        equity="101000",
        positions={
            "SPY": _pos("SPY", 10, "100", "105"),
            "IWM": _pos("IWM", 5, "200", "210"),
            "XYZ": _pos("XYZ", 3, "100", "100"),
        },
        breaker_events=[_breaker("closed", "open", "3 consecutive failures again", t5)],
        state={
            "risk:state": {"state": "reducing", "reason": "active -> reducing: daily loss 3.10% (limit 3.00%)"},
            "breaker:llm_selection": {
                "kind": "consecutive_failure",
                "name": "llm_selection",
                "state": "open",
                "reason": "3 consecutive failures again",
                "changed_at": t5.isoformat(),
                "failures": 3,
            },
            "breaker:data_feed": {
                "kind": "backoff",
                "name": "data_feed",
                "state": "closed",
                "reason": "",
                "changed_at": None,
            },
        },
    )
    led.repo.record_reconciliation(
        RUN_1,
        t5,
        [
            {
                "kind": "position_mismatch",
                "symbol": "SPY",
                "details": {"database": 10, "broker": 12},
                "resolution": "adopted the broker quantity",
            }
        ],
    )

    # ---- run-2 (older) ---------------------------------------------------------------------------------
    e1, e2, e3 = date(2024, 2, 5), date(2024, 2, 6), date(2024, 2, 7)
    o_xyz = order("r2-XYZ-buy", "XYZ", Side.BUY, 10, close_of(e1), strategy="breakout")
    led.session(RUN_2, e1, orders=[o_xyz], equity="50000")
    led.session(
        RUN_2,
        e2,
        orders=[
            o_xyz.transition(OrderStatus.FILLED, open_of(e2), filled_quantity=10, average_fill_price=50.0),
            order(
                "r2-XYZ-sell",
                "XYZ",
                Side.SELL,
                10,
                open_of(e2),
                strategy="breakout",
                status=OrderStatus.FILLED,
                filled_quantity=10,
                average_fill_price=55.0,
            ),
        ],
        fills=[
            fill("f-xyz-1", "r2-XYZ-buy", "XYZ", Side.BUY, 10, "50.00", "0", open_of(e2)),
            fill("f-xyz-2", "r2-XYZ-sell", "XYZ", Side.SELL, 10, "55.00", "0", open_of(e2).replace(hour=19)),
        ],
        equity="50050",
        breaker_events=[
            {
                "name": "broker",
                "from_state": "closed",
                "to_state": "open",
                "reason": "broker timeouts",
                "at": close_of(e2),
            }
        ],
    )
    led.session(
        RUN_2,
        e3,
        orders=[
            order(
                "r2-XYZ-sell-2",
                "XYZ",
                Side.SELL,
                5,
                open_of(e3),
                strategy="breakout",
                status=OrderStatus.FILLED,
                filled_quantity=5,
                average_fill_price=56.0,
            )
        ],
        fills=[fill("f-xyz-3", "r2-XYZ-sell-2", "XYZ", Side.SELL, 5, "56.00", "0.10", open_of(e3))],
        equity="50050",
    )
    led.repo.record_reconciliation(
        RUN_2,
        close_of(e3),
        [{"kind": "unknown_position", "symbol": "XYZ", "details": {"broker": -5}, "resolution": "flagged for review"}],
    )
    return led

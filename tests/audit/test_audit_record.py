"""The pure functions that build an iteration's audit record (core.analytics.audit_record), on real events built from
core.kernel.events and the bundled bars: what each stage contributes to the facts and to the record."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pandas as pd
import pytest

from core.analytics.audit_record import (
    data_facts,
    equity_facts,
    heartbeat,
    iteration_equity,
    iteration_facts,
    iteration_record,
    narrative_facts,
    orders_and_fills,
    risk_facts,
    stages_of,
    with_notes,
)
from core.analytics.narrative import NarrativeCall, NarrativeOutcome, NarrativeResult, summarize
from core.brokers.base import AccountState, SyncResult
from core.data.files import read_bars_file
from core.kernel.domain import (
    Action,
    Approval,
    BarsBatch,
    Decision,
    Denial,
    EquitySnapshot,
    Fill,
    Order,
    OrderIntent,
    OrderStatus,
    OrderType,
    Position,
    Side,
    Signal,
    SymbolBars,
)
from core.kernel.events import (
    ApprovedReady,
    DataReady,
    ExecutedReady,
    IterationStarted,
    SignalsReady,
    ValidatedReady,
)
from tests.conftest import BUNDLED_DAILY

AS_OF = datetime(2021, 3, 10, 21, tzinfo=UTC)
ITERATION = "run-x-000007"


def _bars(symbol: str) -> SymbolBars:
    frame = read_bars_file(BUNDLED_DAILY / f"{symbol}.csv")
    return SymbolBars(symbol, frame, int(frame.index.get_loc(pd.Timestamp(AS_OF.date(), tz=UTC))) + 1, "files")


def _equity(equity: str, cash: str, positions: int = 1) -> EquitySnapshot:
    return EquitySnapshot(
        at=AS_OF,
        cash=Decimal(cash),
        market_value=Decimal(equity) - Decimal(cash),
        equity=Decimal(equity),
        positions=positions,
    )


def _order(symbol: str, status: OrderStatus = OrderStatus.SUBMITTED) -> Order:
    return Order(f"coid-{symbol}-{status.value}", symbol, Side.BUY, 10, OrderType.MARKET, status, AS_OF)


def _fill(symbol: str) -> Fill:
    return Fill(f"fill-{symbol}", f"coid-{symbol}", symbol, Side.BUY, 10, Decimal("100.5"), Decimal("1"), AS_OF)


def _chain(*, until: str = "executed", equity: EquitySnapshot | None = None) -> list:
    """A real event chain: IWM and SPY usable (SPY flagged), AIG rejected; IWM BUY, SPY HOLD; IWM approved, SPY denied
    by the correlation rule; one order, one fill and one order update executed."""
    started = IterationStarted(iteration_id=ITERATION, as_of=AS_OF, seq=7)
    batch = BarsBatch(
        ITERATION,
        AS_OF,
        {"IWM": _bars("IWM"), "SPY": _bars("SPY")},
        rejected={"AIG": "warming up"},
        data_quality=0.5,
        entry_blocked={"SPY": "stale bar"},
        exclusions={"SPY": "stale", "AIG": "warm_up"},
    )
    data = DataReady(
        iteration_id=ITERATION,
        as_of=AS_OF,
        previous=started,
        batch=batch,
        decisions=(Decision("data", "AIG", "excluded", "warming up"),),
    )
    if until == "data":
        return data.chain()
    signals = SignalsReady(
        iteration_id=ITERATION,
        as_of=AS_OF,
        previous=data,
        signals={
            "IWM": Signal("IWM", "breakout", Action.BUY, 0.9, 200.0, AS_OF),
            "SPY": Signal("SPY", "breakout", Action.HOLD, 0.0, 390.0, AS_OF),
        },
        llm_calls=({"purpose": "selection", "model": "m"},),
        shadow=({"symbol": "IWM", "strategy": "breakout"},),
        breaker_events=({"breaker": "llm", "to": "open"},),
    )
    validated = ValidatedReady(iteration_id=ITERATION, as_of=AS_OF, previous=signals)
    intent = OrderIntent("IWM", Side.BUY, 10, OrderType.MARKET, 200.0, "breakout", 0.9, "entry")
    approved = ApprovedReady(
        iteration_id=ITERATION,
        as_of=AS_OF,
        previous=validated,
        approvals=(Approval(intent, "within limits"),),
        denials=(Denial("SPY", "correlation", "too correlated"), Denial("AIG", "correlation", "too correlated")),
    )
    executed = ExecutedReady(
        iteration_id=ITERATION,
        as_of=AS_OF,
        previous=approved,
        orders=(_order("IWM"),),
        fills=(_fill("QQQ"),),
        order_updates=(_order("QQQ", OrderStatus.FILLED),),
        equity=equity,
    )
    return executed.chain()


def test_stages_of_when_the_pipeline_stopped_after_data_then_later_stages_are_none() -> None:
    stages = stages_of(_chain(until="data"))

    assert stages.started.iteration_id == ITERATION and stages.data is not None
    assert (stages.signals, stages.approved, stages.executed) == (None, None, None)
    assert stages.batch is stages.data.batch


def test_with_notes_when_there_are_none_then_status_and_error_are_unchanged() -> None:
    assert with_notes("ok", None, []) == ("ok", None)
    assert with_notes("failed", "boom", []) == ("failed", "boom")


def test_with_notes_when_an_ok_iteration_has_notes_then_it_is_degraded_with_every_note() -> None:
    assert with_notes("ok", None, ["data: slow", "audit: account unavailable"]) == (
        "degraded",
        "data: slow; audit: account unavailable",
    )


def test_with_notes_when_the_error_already_holds_a_note_then_it_is_not_repeated_and_failed_stays_failed() -> None:
    assert with_notes("failed", "risk: boom; data: slow", ["data: slow", "late"]) == (
        "failed",
        "risk: boom; data: slow; late",
    )


def test_iteration_equity_prefers_the_execution_snapshot_then_the_account_then_none() -> None:
    snapshot = _equity("101000", "1000")
    account = AccountState(at=AS_OF, cash=Decimal("500"), positions={}, equity=Decimal("500"))
    executed = stages_of(_chain(equity=snapshot)).executed
    without = stages_of(_chain()).executed

    assert iteration_equity(executed, account, AS_OF) is snapshot
    assert iteration_equity(without, account, AS_OF) == account.equity_snapshot(AS_OF)
    assert iteration_equity(None, None, AS_OF) is None


def test_orders_and_fills_when_the_broker_reported_before_a_failure_then_its_orders_and_fills_follow() -> None:
    executed = stages_of(_chain()).executed
    report = SyncResult(fills=(_fill("SPY"),), orders=(_order("SPY", OrderStatus.FILLED),))

    orders, fills = orders_and_fills(executed, report)

    assert [o.client_order_id for o in orders] == ["coid-QQQ-filled", "coid-IWM-submitted", "coid-SPY-filled"]
    assert [f.fill_id for f in fills] == ["fill-QQQ", "fill-SPY"]
    assert orders_and_fills(None, None) == ([], [])


def test_data_facts_count_flagged_symbols_as_not_clean_and_list_rejections() -> None:
    facts = data_facts(stages_of(_chain()).batch)

    assert facts == {
        "symbols_total": 3,
        "symbols_ok": 1,
        "data_quality_pct": 50.0,
        "rejected": {"AIG": "warming up"},
        "flagged": {"SPY": "stale"},
    }
    assert data_facts(None) == {
        "symbols_total": 0,
        "symbols_ok": 0,
        "data_quality_pct": 0.0,
        "rejected": {},
        "flagged": {},
    }


def test_risk_facts_count_denials_by_rule() -> None:
    assert risk_facts(stages_of(_chain()).approved) == {
        "approvals": 1,
        "denials": 2,
        "denials_by_rule": {"correlation": 2},
    }
    assert risk_facts(None) == {"approvals": 0, "denials": 0, "denials_by_rule": {}}


def test_equity_facts_show_money_with_thousands_separators_and_cents() -> None:
    assert equity_facts(_equity("101234.5", "1000", 3)) == {"equity": "101,234.50", "cash": "1,000.00", "positions": 3}
    assert equity_facts(None) == {"equity": None, "cash": None, "positions": None}


def test_iteration_facts_when_the_pipeline_ran_through_then_every_stage_is_counted_in_a_stable_order() -> None:
    facts = iteration_facts(
        stages_of(_chain()), status="ok", error=None, fills=1, equity=_equity("101234.5", "1000", 1)
    )

    assert list(facts) == [
        "iteration_id", "as_of", "status", "error", "symbols_total", "symbols_ok", "data_quality_pct", "rejected",
        "flagged", "signals", "approvals", "denials", "denials_by_rule", "orders_submitted", "fills", "equity",
        "cash", "positions",
    ]  # fmt: skip
    assert facts["iteration_id"] == ITERATION and facts["as_of"] == AS_OF.isoformat()
    assert facts["signals"] == {"BUY": 1, "SELL": 0, "HOLD": 1}
    assert (facts["orders_submitted"], facts["fills"], facts["equity"]) == (1, 1, "101,234.50")
    assert summarize(facts) == (
        "2021-03-10: 1/3 symbols with usable data (quality 50.0%); excluded AIG (warming up); "
        "flagged, no new entries SPY (stale); signals BUY 1, SELL 0, HOLD 1; risk approved 1, denied 2; "
        "denials by rule: correlation 2; orders submitted 1, fills 1; equity 101,234.50 (cash 1,000.00, 1 positions)."
    )


def test_iteration_facts_when_the_pipeline_stopped_after_data_then_later_stages_count_zero() -> None:
    facts = iteration_facts(stages_of(_chain(until="data")), status="failed", error="boom", fills=0, equity=None)

    assert facts["signals"] == {"BUY": 0, "SELL": 0, "HOLD": 0}
    assert (facts["approvals"], facts["denials"], facts["orders_submitted"], facts["equity"]) == (0, 0, 0, None)
    assert summarize(facts).endswith("orders submitted 0, fills 0; iteration failed: boom.")


def _narrative(kind: str, call: NarrativeCall | None) -> NarrativeResult:
    return NarrativeResult(kind, "text", "refused text" if kind == "template" else None, "invented number", call)  # type: ignore[arg-type]


CALL = NarrativeCall(
    model="claude-x",
    input_tokens=120,
    output_tokens=40,
    latency_ms=812.5,
    outcome=NarrativeOutcome.UNFAITHFUL,
    error=None,
    started_at=AS_OF,
)


def test_narrative_facts_add_which_text_was_kept_and_why_without_changing_the_input() -> None:
    facts = {"iteration_id": ITERATION, "fills": 0}

    recorded = narrative_facts(facts, _narrative("template", CALL))

    assert recorded == {
        "iteration_id": ITERATION,
        "fills": 0,
        "narrative": {"kind": "template", "reason": "invented number", "rejected_text": "refused text"},
    }
    assert "narrative" not in facts


def test_heartbeat_holds_the_iteration_and_the_wall_time() -> None:
    at = datetime(2021, 3, 10, 21, 0, 3, tzinfo=UTC)

    assert heartbeat("run-x", ITERATION, AS_OF, at, "degraded") == {
        "run_id": "run-x",
        "iteration_id": ITERATION,
        "as_of": "2021-03-10T21:00:00+00:00",
        "at": "2021-03-10T21:00:03+00:00",
        "status": "degraded",
    }


def test_iteration_record_when_the_pipeline_ran_through_then_it_carries_every_stage_and_the_account() -> None:
    stages = stages_of(_chain())
    equity = _equity("101234.5", "1000", 1)
    position = Position("IWM", 10, Decimal("200"), AS_OF, last_price=Decimal("201"))
    stop = Order("stop-IWM", "IWM", Side.SELL, 10, OrderType.STOP, OrderStatus.SUBMITTED, AS_OF, stop_price=190.0)
    account = AccountState(
        at=AS_OF, cash=Decimal("1000"), positions={"IWM": position}, equity=Decimal("3010"), open_orders=(stop,)
    )
    orders, fills = orders_and_fills(stages.executed, None)
    facts = iteration_facts(stages, status="ok", error=None, fills=len(fills), equity=equity)
    recorded_at = datetime(2021, 3, 10, 21, 0, 5, tzinfo=UTC)

    record = iteration_record(
        stages,
        run_id="run-x",
        recorded_at=recorded_at,
        status="ok",
        error=None,
        account=account,
        equity=equity,
        orders=orders,
        fills=fills,
        facts=facts,
        report_kind="template",
        report_text=summarize(facts),
        llm_calls=[{"purpose": "narrative"}],
        state={"k": {"v": 1}},
    )

    assert (record.run_id, record.iteration_id, record.seq, record.as_of) == ("run-x", ITERATION, 7, AS_OF)
    assert (record.recorded_at, record.status, record.error) == (recorded_at, "ok", None)
    assert (record.symbols_total, record.symbols_ok, record.data_quality) == (3, 1, 0.5)
    assert [(d.symbol, d.action) for d in record.decisions] == [("AIG", "excluded")]
    assert list(record.orders) == orders and list(record.fills) == fills
    assert record.positions == {"IWM": position}
    assert record.position_levels == {"IWM": {"stop": 190.0, "target": None}}  # the working protective stop
    assert record.equity is equity and record.report_facts is facts
    assert (record.signals, record.approvals, record.denials, record.orders_submitted) == (1, 1, 2, 1)
    assert list(record.llm_calls) == [{"purpose": "selection", "model": "m"}, {"purpose": "narrative"}]
    assert list(record.shadow) == [{"symbol": "IWM", "strategy": "breakout"}]
    assert list(record.breaker_events) == [{"breaker": "llm", "to": "open"}]
    assert record.state == {"k": {"v": 1}}


def test_iteration_record_when_the_account_could_not_be_read_then_positions_are_unknown() -> None:
    stages = stages_of(_chain(until="data"))
    facts = iteration_facts(stages, status="degraded", error="account unavailable", fills=0, equity=None)

    record = iteration_record(
        stages,
        run_id="run-x",
        recorded_at=AS_OF,
        status="degraded",
        error="account unavailable",
        account=None,
        equity=None,
        orders=[],
        fills=[],
        facts=facts,
        report_kind="template",
        report_text=summarize(facts),
        llm_calls=[],
        state={},
    )

    assert record.positions is None and record.position_levels == {} and record.equity is None
    assert (record.signals, record.llm_calls, record.shadow) == (0, (), ())


@pytest.mark.parametrize("status", ["ok", "degraded", "failed"])
def test_summarize_names_the_status_only_when_the_iteration_is_not_ok(status: str) -> None:
    facts = iteration_facts(stages_of(_chain(until="data")), status=status, error="why", fills=0, equity=None)

    assert ("iteration " + status + ": why" in summarize(facts)) is (status != "ok")

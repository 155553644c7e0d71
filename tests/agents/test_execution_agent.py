"""The Execution agent: deterministic client order ids, broker errors recorded, and the backoff breaker pausing
submissions after repeated errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from agents.execution_agent import ExecutionAgent, client_order_id
from core.brokers.base import TemporaryBrokerError
from core.brokers.simulated import SimulatedBroker
from core.kernel.domain import Approval, OrderIntent, OrderType, Side
from core.kernel.events import ApprovedReady
from utils.circuit_breaker import BackoffBreaker, BreakerState

T0 = datetime(2021, 3, 1, 21, tzinfo=UTC)


class FlakyBroker(SimulatedBroker):
    """A simulated broker whose first ``failures`` submissions fail like a timed-out Alpaca call."""

    def __init__(self, failures: int) -> None:
        super().__init__(Decimal("100000"), started_at=T0)
        self.failures = failures
        self.attempts = 0

    async def submit(self, intent, client_order_id, now):  # type: ignore[no-untyped-def]
        self.attempts += 1
        if self.attempts <= self.failures:
            raise TemporaryBrokerError("timeout talking to the broker")
        return await super().submit(intent, client_order_id, now)


def _intent(symbol: str = "IBM") -> OrderIntent:
    return OrderIntent(symbol, Side.BUY, 10, OrderType.MARKET, 100.0, "trend_following", 0.7, "test")


def _approved(iteration: str, at: datetime) -> ApprovedReady:
    return ApprovedReady(iteration_id=iteration, as_of=at, approvals=(Approval(_intent(), "ok"),))


def test_client_order_id_is_deterministic_and_bounded() -> None:
    intent = _intent()
    day = T0.date()
    assert client_order_id("paper", day, intent) == client_order_id("paper", day, intent) == "paper-20210301-IBM-buy"
    assert len(client_order_id("x" * 300, day, intent)) <= 128


async def test_repeated_broker_errors_pause_submissions_with_backoff_then_resume() -> None:
    clock = {"now": T0}
    events: list = []
    breaker = BackoffBreaker(
        "broker",
        threshold=2,
        base=timedelta(minutes=1),
        max_backoff=timedelta(hours=1),
        clock=lambda: clock["now"],
        on_transition=events.append,
    )
    broker = FlakyBroker(failures=2)
    agent = ExecutionAgent(broker, order_prefix="it", breaker=breaker, breaker_events=events)
    first = await agent.on_approved(_approved("it-1", T0))
    second = await agent.on_approved(_approved("it-2", T0))
    assert [d.action for d in first.decisions if d.symbol == "IBM"] == ["failed"]
    assert "timeout" in first.decisions[0].reason
    assert breaker.state is BreakerState.OPEN and [e["to_state"] for e in second.breaker_events] == ["open"]
    third = await agent.on_approved(_approved("it-3", T0 + timedelta(seconds=30)))
    assert [d.action for d in third.decisions] == ["paused"] and broker.attempts == 2  # nothing sent while paused
    clock["now"] = T0 + timedelta(minutes=2)
    fourth = await agent.on_approved(_approved("it-4", clock["now"]))
    # sent again (the simulated broker, never synced with bars, rejects it for lack of a price: a broker answer, not an error)
    assert [d.action for d in fourth.decisions] in (["submitted"], ["rejected"]) and broker.attempts == 3
    assert breaker.state is BreakerState.CLOSED
    assert fourth.orders[0].client_order_id == "it-20210301-IBM-buy"

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from core.kernel.bus import BusClosed, EventBus
from core.kernel.domain import Decision
from core.kernel.events import DataReady, IterationStarted, SignalsReady

AS_OF = datetime(2021, 3, 31, 20, 0, tzinfo=UTC)


def _start(iteration: str = "it-1") -> IterationStarted:
    return IterationStarted(iteration_id=iteration, as_of=AS_OF, seq=1)


async def test_publish_when_handlers_chain_then_events_flow_stage_by_stage() -> None:
    bus = EventBus("async")
    seen: list[str] = []

    def data(event: IterationStarted) -> DataReady:
        seen.append("data")
        return DataReady(iteration_id=event.iteration_id, as_of=event.as_of, previous=event)

    async def strategy(event: DataReady) -> SignalsReady:
        seen.append("strategy")
        return SignalsReady(iteration_id=event.iteration_id, as_of=event.as_of, previous=event)

    bus.subscribe(IterationStarted, data)
    bus.subscribe(DataReady, strategy)
    report = await bus.publish(_start())
    assert seen == ["data", "strategy"]
    assert [type(e).__name__ for e in report.events] == ["IterationStarted", "DataReady", "SignalsReady"]
    assert [type(e).__name__ for e in report.events[-1].chain()] == ["IterationStarted", "DataReady", "SignalsReady"]
    assert report.failures == []


async def test_publish_when_a_handler_raises_then_failure_is_recorded_and_siblings_still_run() -> None:
    bus = EventBus("async")
    ran: list[str] = []

    def broken(event: IterationStarted) -> None:
        raise RuntimeError("boom")

    def healthy(event: IterationStarted) -> DataReady:
        ran.append("healthy")
        return DataReady(iteration_id=event.iteration_id, as_of=event.as_of, previous=event)

    bus.subscribe(IterationStarted, broken, "broken")
    bus.subscribe(IterationStarted, healthy, "healthy")
    report = await bus.publish(_start())
    assert ran == ["healthy"]
    assert len(report.failures) == 1
    failure = report.failures[0]
    assert failure.handler == "broken" and failure.error == "RuntimeError: boom" and failure.iteration_id == "it-1"
    assert "Traceback" in failure.traceback
    assert report.find(DataReady) is not None
    # the bus is still usable afterwards
    assert (await bus.publish(_start("it-2"))).find(DataReady) is not None


async def test_async_handlers_of_one_event_run_concurrently() -> None:
    bus = EventBus("async")
    both_started = asyncio.Event()
    started = 0

    async def waiter(event: IterationStarted) -> None:
        nonlocal started
        started += 1
        if started == 2:
            both_started.set()
        await asyncio.wait_for(both_started.wait(), timeout=2)

    bus.subscribe(IterationStarted, waiter, "a")
    bus.subscribe(IterationStarted, waiter, "b")
    report = await bus.publish(_start())
    assert report.failures == []  # in sequential dispatch the first waiter would time out


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (
            "async",
            ["slow-start", "fast", "quick", "slow-end"],
        ),  # started in order; a waiting handler lets the next start
        ("sync", ["slow-start", "slow-end", "fast", "quick"]),  # one after the other, in subscription order
    ],
)
async def test_handlers_start_in_subscription_order_and_only_async_mode_overlaps_them(
    mode: str, expected: list[str]
) -> None:
    bus = EventBus(mode)
    order: list[str] = []

    async def slow(event: IterationStarted) -> None:
        order.append("slow-start")
        await asyncio.sleep(0.01)
        order.append("slow-end")

    def fast(event: IterationStarted) -> None:
        order.append("fast")

    async def quick(event: IterationStarted) -> None:  # a coroutine that never waits finishes as soon as it starts
        order.append("quick")

    bus.subscribe(IterationStarted, slow)
    bus.subscribe(IterationStarted, fast)
    bus.subscribe(IterationStarted, quick)
    report = await bus.publish(_start())
    assert order == expected and report.failures == []


async def test_cancelling_a_publish_cancels_its_waiting_handlers() -> None:
    bus = EventBus("async")
    waiting = asyncio.Event()
    cancelled: list[str] = []

    async def waiter(event: IterationStarted) -> None:
        waiting.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(event.iteration_id)
            raise

    bus.subscribe(IterationStarted, waiter, "a")
    bus.subscribe(IterationStarted, waiter, "b")
    publish = asyncio.create_task(bus.publish(_start()))
    await asyncio.wait_for(waiting.wait(), timeout=2)
    publish.cancel()
    with pytest.raises(asyncio.CancelledError):
        await publish
    assert cancelled == ["it-1", "it-1"]  # no handler outlives its publish
    await asyncio.wait_for(bus.close(), timeout=2)  # and the bus is idle again


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_returned_events_are_published_in_subscription_order(mode: str) -> None:
    bus = EventBus(mode)

    async def late(event: IterationStarted) -> DataReady:
        await asyncio.sleep(0.02)
        return DataReady(iteration_id="late", as_of=event.as_of, previous=event)

    async def early(event: IterationStarted) -> DataReady:
        return DataReady(iteration_id="early", as_of=event.as_of, previous=event)

    bus.subscribe(IterationStarted, late)
    bus.subscribe(IterationStarted, early)
    report = await bus.publish(_start())
    assert [e.iteration_id for e in report.events[1:]] == ["late", "early"]


async def test_close_waits_for_in_flight_work_then_refuses_new_publishes() -> None:
    bus = EventBus("async")
    finished: list[str] = []

    async def slow(event: IterationStarted) -> None:
        await asyncio.sleep(0.05)
        finished.append(event.iteration_id)

    bus.subscribe(IterationStarted, slow)
    publishing = asyncio.create_task(bus.publish(_start("in-flight")))
    await asyncio.sleep(0)
    await bus.close()
    assert finished == ["in-flight"]
    await publishing
    with pytest.raises(BusClosed):
        await bus.publish(_start("late"))


def test_events_are_frozen_and_equal_by_id() -> None:
    a = _start()
    with pytest.raises(AttributeError):
        a.iteration_id = "x"  # type: ignore[misc]
    assert a != _start() and a == a
    with pytest.raises(ValueError):
        IterationStarted(iteration_id="x", as_of=datetime(2021, 1, 1), seq=1)


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="bus mode"):
        EventBus("threads")


def test_decision_rows_are_values() -> None:
    d = Decision("risk", "AAPL", "denied:min_confidence", "confidence 0.2 < 0.3")
    assert d == Decision("risk", "AAPL", "denied:min_confidence", "confidence 0.2 < 0.3")

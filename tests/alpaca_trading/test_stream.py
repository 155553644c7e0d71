"""Order updates as they happen: alpaca-py's TradingStream against a local fake of Alpaca's trade-updates websocket,
folded into a real AlpacaBroker (fake HTTP API) and recorded in a real SQLite ledger."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from loguru import logger

from core.brokers.alpaca import AlpacaBroker
from core.brokers.alpaca.stream import TradeUpdate, TradeUpdateStream
from core.brokers.simulated import SimulatedBroker
from core.kernel.clock import SimulatedClock
from core.kernel.domain import OrderStatus
from core.persistence.db import open_database
from core.persistence.repository import IterationRecord, Repository
from core.runtime.order_updates import (
    ORDER_UPDATES_STATUS,
    OrderUpdates,
    following_order_updates,
    gated,
    order_updates_for,
    stream_url,
)
from tests.alpaca_trading.conftest import API_KEY, SECRET_KEY, START, bracket_intent, market_intent
from tests.conftest import make_settings
from tests.fakes.alpaca_stream import FakeTradeStream
from tests.fakes.alpaca_trading import FakeTradingApi, ManualClock

pytestmark = pytest.mark.shared

COID = "it-1-AAPL-buy"
WAIT_S = 20.0  # a safety net for a broken build, never a measured duration


@dataclass
class Iterations:
    """The orchestrator's sequence counter and iteration ids (what OrderUpdates needs from it)."""

    run_id: str
    seq: int = 0
    clock: SimulatedClock = field(default_factory=lambda: SimulatedClock(START))

    def iteration_id(self, seq: int) -> str:
        return f"{self.run_id}-{seq:06d}"


@pytest.fixture
def fake_stream(alpaca: FakeTradingApi) -> Iterator[FakeTradeStream]:
    stream = FakeTradeStream(alpaca, api_key=API_KEY, secret_key=SECRET_KEY).start()
    try:
        yield stream
    finally:
        stream.stop()


@pytest.fixture
def repository(tmp_path: Path) -> Iterator[Repository]:
    engine = open_database(f"sqlite:///{tmp_path / 'ledger.db'}")
    repo = Repository(engine)
    try:
        yield repo
    finally:
        engine.dispose()


@pytest.fixture
def logs() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="DEBUG", format="{level} {message}")
    try:
        yield lines
    finally:
        logger.remove(sink)


class Seen:
    """Collects applied trade updates; lets a test wait for the n-th one."""

    def __init__(self) -> None:
        self.updates: list[TradeUpdate] = []
        self._changed = asyncio.Condition()

    async def __call__(self, update: TradeUpdate) -> None:
        async with self._changed:
            self.updates.append(update)
            self._changed.notify_all()

    async def wait(self, count: int) -> list[TradeUpdate]:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.updates) >= count), WAIT_S)
        return self.updates


async def until(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), WAIT_S)


def new_run(repository: Repository, broker: AlpacaBroker, run_id: str = "daemon-1") -> Iterations:
    repository.create_run(
        run_id,
        kind="daemon",
        broker=broker.name,
        data_provider="files",
        started_at=START,
        initial_cash=Decimal("100000"),
        symbols=["AAPL"],
        config={},
    )
    return Iterations(run_id)


def record_poll(repository: Repository, iterations: Iterations, fills: tuple, orders: tuple) -> None:  # type: ignore[type-arg]
    """What an iteration's Audit stage does with its sync: one row with the fills and order states."""
    iterations.seq += 1
    repository.record_iteration(
        IterationRecord(
            run_id=iterations.run_id,
            iteration_id=iterations.iteration_id(iterations.seq),
            seq=iterations.seq,
            as_of=START,
            recorded_at=START,
            status="ok",
            error=None,
            symbols_total=1,
            symbols_ok=1,
            data_quality=1.0,
            orders=orders,
            fills=fills,
        )
    )


@pytest.fixture
async def running(
    make_broker: Callable[..., AlpacaBroker],
    fake_stream: FakeTradeStream,
    repository: Repository,
) -> AsyncIterator[tuple[AlpacaBroker, OrderUpdates, Iterations, Seen]]:
    broker = make_broker()
    iterations = new_run(repository, broker)
    updates = OrderUpdates(
        broker,
        repository,
        iterations,
        SimulatedClock(START),
        api_key=API_KEY,
        secret_key=SECRET_KEY,
        url_override=fake_stream.url,
        min_backoff_s=0.01,
        max_backoff_s=0.05,
    )
    seen = updates.on_update(Seen())
    assert isinstance(seen, Seen)
    updates.start()
    await asyncio.wait_for(updates.stream.wait_listening(), WAIT_S)
    try:
        yield broker, updates, iterations, seen
    finally:
        await updates.stop()


async def test_stream_when_keys_are_accepted_then_it_subscribes_to_trade_updates(
    make_broker: Callable[..., AlpacaBroker],
    fake_stream: FakeTradeStream,
    repository: Repository,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # even with the standard library's logging at DEBUG, no frame shows the keys
    broker = make_broker()
    updates = OrderUpdates(
        broker,
        repository,
        new_run(repository, broker),
        SimulatedClock(START),
        api_key=API_KEY,
        secret_key=SECRET_KEY,
        url_override=fake_stream.url,
    )
    updates.start()
    try:
        await asyncio.wait_for(updates.stream.wait_listening(), WAIT_S)
        assert updates.stream.listening
    finally:
        await updates.stop()
    assert not updates.stream.listening and not updates.stream.running
    assert SECRET_KEY not in caplog.text and API_KEY not in caplog.text
    assert [(login.key_id, login.accepted) for login in fake_stream.logins] == [(API_KEY, True)]
    assert fake_stream.listens == 1
    assert updates.stream.stats.connections == 1


async def test_stream_when_an_order_fills_between_iterations_then_the_fill_is_in_the_ledger_at_once(
    running: tuple[AlpacaBroker, OrderUpdates, Iterations, Seen],
    fake_stream: FakeTradeStream,
    repository: Repository,
    clock: ManualClock,
) -> None:
    broker, updates, iterations, seen = running
    submitted = await broker.submit(market_intent(quantity=10), COID, START)
    record_poll(repository, iterations, (), (submitted,))
    clock.advance(timedelta(minutes=5))

    fake_stream.fill(COID, "101.25")
    (update,) = await seen.wait(1)
    await until(lambda: len(updates.recorded) == 1)

    assert update.event == "fill" and update.client_order_id == COID
    assert update.price == Decimal("101.25") and update.qty == Decimal("10")
    assert [f.fill_id for f in update.fills] == [f"{COID}@10"]
    orders, fills = repository.broker_ledger(broker.name)
    assert [(f.fill_id, f.quantity, f.price) for f in fills] == [(f"{COID}@10", 10, Decimal("101.2500"))]
    assert [(o.client_order_id, o.status, o.filled_quantity) for o in orders] == [(COID, OrderStatus.FILLED, 10)]
    assert updates.recorded == [iterations.iteration_id(2)] and iterations.seq == 2
    with repository.session() as session:
        from core.persistence.models import Iteration

        row = session.get(Iteration, updates.recorded[0])
        assert row is not None and (row.status, row.fills) == (ORDER_UPDATES_STATUS, 1)


async def test_stream_when_the_next_poll_sees_the_same_fill_then_it_is_recorded_once(
    running: tuple[AlpacaBroker, OrderUpdates, Iterations, Seen],
    fake_stream: FakeTradeStream,
    repository: Repository,
) -> None:
    broker, updates, iterations, seen = running
    await broker.submit(market_intent(quantity=10), COID, START)
    fake_stream.fill(COID, "100.00", 4)
    fake_stream.fill(COID, "102.00")
    await seen.wait(2)
    await until(lambda: len(repository.broker_ledger(broker.name)[1]) == 2)

    async with updates.iteration():  # the next iteration polls Alpaca, which reports the same executions
        polled = await broker.sync()
        record_poll(repository, iterations, tuple(polled.fills), tuple(polled.orders))

    assert polled.fills == ()
    _, fills = repository.broker_ledger(broker.name)
    assert [(f.fill_id, f.quantity) for f in fills] == [(f"{COID}@4", 4), (f"{COID}@10", 6)]
    assert sum(f.quantity * f.price for f in fills) == Decimal("1012.00")


async def test_stream_when_an_update_arrives_during_an_iteration_then_the_iteration_records_it_and_the_stream_does_not(
    running: tuple[AlpacaBroker, OrderUpdates, Iterations, Seen],
    fake_stream: FakeTradeStream,
    repository: Repository,
) -> None:
    broker, updates, iterations, seen = running
    await broker.submit(market_intent(quantity=10), COID, START)
    async with updates.iteration():
        fake_stream.fill(COID, "99.50")
        await seen.wait(1)  # applied to the broker at once ...
        assert repository.broker_ledger(broker.name)[1] == []  # ... but not written while the iteration runs
        polled = await broker.sync()
        record_poll(repository, iterations, tuple(polled.fills), tuple(polled.orders))
    async with updates.iteration():  # the recorder had its turn: nothing was left to record
        pass

    assert [f.fill_id for f in polled.fills] == [f"{COID}@10"]
    assert [f.fill_id for f in repository.broker_ledger(broker.name)[1]] == [f"{COID}@10"]
    assert updates.recorded == []


async def test_stream_when_the_poll_saw_a_fill_first_then_the_late_event_adds_nothing(
    running: tuple[AlpacaBroker, OrderUpdates, Iterations, Seen],
    fake_stream: FakeTradeStream,
    alpaca: FakeTradingApi,
    repository: Repository,
) -> None:
    broker, updates, iterations, seen = running
    await broker.submit(market_intent(quantity=10), COID, START)
    alpaca.fill(COID, "100.00")
    async with updates.iteration():
        polled = await broker.sync()
        record_poll(repository, iterations, tuple(polled.fills), tuple(polled.orders))
    fake_stream.publish("partial_fill", COID)  # late and stale
    fake_stream.publish("fill", COID)  # late
    updates_seen = await seen.wait(2)

    assert [u.fills for u in updates_seen] == [(), ()]
    assert broker.take_reported().fills == ()
    assert [f.fill_id for f in repository.broker_ledger(broker.name)[1]] == [f"{COID}@10"]


async def test_stream_when_killed_between_the_event_and_its_write_then_the_restarted_daemon_polls_the_fill_once(
    make_broker: Callable[..., AlpacaBroker],
    fake_stream: FakeTradeStream,
    repository: Repository,
) -> None:
    broker = make_broker()
    iterations = new_run(repository, broker)
    submitted = await broker.submit(market_intent(quantity=10), COID, START)
    record_poll(repository, iterations, (), (submitted,))
    seen = Seen()
    stream = TradeUpdateStream(broker, API_KEY, SECRET_KEY, url_override=fake_stream.url, on_update=seen)
    stream.start()
    await asyncio.wait_for(stream.wait_listening(), WAIT_S)
    fake_stream.fill(COID, "100.00")
    await seen.wait(1)  # received and applied in memory; the process dies before any write
    await stream.stop()
    assert repository.broker_ledger(broker.name)[1] == []

    restarted = make_broker()
    restarted.resume(*repository.broker_ledger(broker.name))
    polled = await restarted.poll()
    record_poll(repository, iterations, tuple(polled.fills), tuple(polled.orders))
    assert [f.fill_id for f in repository.broker_ledger(broker.name)[1]] == [f"{COID}@10"]
    again = make_broker()
    again.resume(*repository.broker_ledger(broker.name))
    assert (await again.poll()).fills == ()


async def test_stream_when_orders_are_cancelled_or_rejected_then_the_ledger_says_so_at_once(
    running: tuple[AlpacaBroker, OrderUpdates, Iterations, Seen],
    fake_stream: FakeTradeStream,
    repository: Repository,
) -> None:
    broker, updates, iterations, seen = running
    entry = await broker.submit(bracket_intent(), "it-1-AAPL-bracket", START)
    other = await broker.submit(market_intent("MSFT", 5), "it-1-MSFT-buy", START)
    legs = broker.take_reported()
    record_poll(repository, iterations, (), (entry, other, *legs.orders))

    fake_stream.cancel("it-1-AAPL-bracket")
    fake_stream.reject("it-1-MSFT-buy")
    await seen.wait(2)
    await until(lambda: len(updates.recorded) >= 1 and broker.take_reported().orders == ())

    statuses = {o.client_order_id: o.status for o in repository.broker_ledger(broker.name)[0]}
    assert statuses["it-1-AAPL-bracket"] is OrderStatus.CANCELED
    assert statuses["it-1-MSFT-buy"] is OrderStatus.REJECTED
    assert [u.event for u in seen.updates] == ["canceled", "rejected"]
    assert all(u.changes_ledger for u in seen.updates)


async def test_stream_when_a_stop_loss_leg_fills_overnight_then_the_exit_is_recorded_with_its_entry(
    running: tuple[AlpacaBroker, OrderUpdates, Iterations, Seen],
    fake_stream: FakeTradeStream,
    alpaca: FakeTradingApi,
    repository: Repository,
) -> None:
    broker, updates, iterations, seen = running
    await broker.submit(bracket_intent(quantity=10), "it-1-AAPL-bracket", START)
    fake_stream.fill("it-1-AAPL-bracket", "100.00")
    await seen.wait(1)
    stop_leg = next(o for o in alpaca.orders() if o.type == "stop")
    fake_stream.fill(stop_leg.id, "94.90")
    await seen.wait(2)
    await until(lambda: len(repository.broker_ledger(broker.name)[1]) == 2)

    _, fills = repository.broker_ledger(broker.name)
    assert [(f.side.value, f.quantity, f.price) for f in fills] == [
        ("buy", 10, Decimal("100.0000")),
        ("sell", 10, Decimal("94.9000")),
    ]
    assert fills[1].client_order_id == stop_leg.client_order_id
    assert broker.parent_of(stop_leg.client_order_id) == "it-1-AAPL-bracket"


async def test_stream_when_the_connection_drops_then_it_reconnects_with_backoff_and_goes_on(
    running: tuple[AlpacaBroker, OrderUpdates, Iterations, Seen],
    fake_stream: FakeTradeStream,
    repository: Repository,
    logs: list[str],
) -> None:
    broker, updates, _, seen = running
    await broker.submit(market_intent(quantity=10), COID, START)
    fake_stream.drop()
    await asyncio.to_thread(fake_stream.wait_listeners, 2)
    await asyncio.wait_for(updates.stream.wait_listening(), WAIT_S)

    fake_stream.fill(COID, "100.00")
    await seen.wait(1)
    await until(lambda: len(repository.broker_ledger(broker.name)[1]) == 1)

    stats = updates.stream.stats
    assert stats.connections == 2 and stats.failures == 1
    assert len(stats.backoffs) == 1 and 0.005 <= stats.backoffs[0] <= 0.01  # first step, jittered in [min/2, min]
    assert sum("trade-updates stream lost" in line for line in logs) == 1
    assert sum("reconnected" in line for line in logs) == 1


async def test_stream_when_the_server_stays_down_then_the_backoff_grows_to_its_cap_and_is_logged_once(
    make_broker: Callable[..., AlpacaBroker], logs: list[str]
) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stream = TradeUpdateStream(
        make_broker(),
        API_KEY,
        SECRET_KEY,
        url_override=f"ws://127.0.0.1:{port}",
        min_backoff_s=0.01,
        max_backoff_s=0.04,
    )
    stream.start()
    await until(lambda: stream.stats.failures >= 6)
    await stream.stop()

    steps = [0.01, 0.02, 0.04, 0.04, 0.04]
    for delay, step in zip(stream.stats.backoffs, steps, strict=False):
        assert step / 2 <= delay <= step
    assert max(stream.stats.backoffs) <= 0.04
    assert sum("trade-updates stream lost" in line for line in logs) == 1
    assert not stream.running


async def test_stream_when_messages_are_malformed_then_they_are_logged_and_ignored(
    running: tuple[AlpacaBroker, OrderUpdates, Iterations, Seen],
    fake_stream: FakeTradeStream,
    repository: Repository,
    logs: list[str],
) -> None:
    broker, updates, _, seen = running
    await broker.submit(market_intent(quantity=10), COID, START)
    fake_stream.send_raw(b"\x00not json")
    fake_stream.send_raw('["a", "list"]')
    fake_stream.send_raw('{"stream": "trade_updates", "data": {"event": "fill"}}')
    fake_stream.send_raw('{"stream": "trade_updates", "data": {"event": "fill", "order": {"id": 7}}}')
    fake_stream.fill(COID, "100.00")
    await seen.wait(1)
    await until(lambda: len(repository.broker_ledger(broker.name)[1]) == 1)

    stats = updates.stream.stats
    assert stats.malformed == 4 and stats.connections == 1 and stats.applied == 1
    assert sum("ignored a malformed trade-updates message" in line for line in logs) == 4


async def test_stream_when_the_keys_are_refused_then_it_stops_with_a_clear_error_and_no_key_in_it(
    make_broker: Callable[..., AlpacaBroker], fake_stream: FakeTradeStream, logs: list[str]
) -> None:
    wrong_secret = "wr0ng-SeCrEt-canary-0000"
    stream = TradeUpdateStream(
        make_broker(), API_KEY, wrong_secret, url_override=fake_stream.url, min_backoff_s=0.01, max_backoff_s=0.02
    )
    await asyncio.wait_for(stream.run(), WAIT_S)  # returns by itself: no retry loop

    assert stream.auth_error == "access key verification failed"
    assert [login.accepted for login in fake_stream.logins] == [False]
    assert not stream.listening and stream.stats.backoffs == []
    refused = [line for line in logs if "refused the trade-updates stream's login" in line]
    assert len(refused) == 1 and "ALPACA_API_KEY" in refused[0]
    text = "\n".join(logs) + repr(stream) + str(stream.auth_error)
    assert API_KEY not in text and wrong_secret not in text and SECRET_KEY not in text


async def test_stream_when_a_listener_fails_then_the_update_is_still_recorded(
    running: tuple[AlpacaBroker, OrderUpdates, Iterations, Seen],
    fake_stream: FakeTradeStream,
    repository: Repository,
    logs: list[str],
) -> None:
    broker, updates, _, seen = running

    def broken(update: TradeUpdate) -> None:
        raise RuntimeError("notifier down")

    updates.on_update(broken)
    await broker.submit(market_intent(quantity=10), COID, START)
    fake_stream.fill(COID, "100.00")
    await seen.wait(1)
    await until(lambda: len(repository.broker_ledger(broker.name)[1]) == 1)
    assert any("listener" in line and "notifier down" in line for line in logs)


async def test_stream_when_the_daemon_is_configured_then_only_alpaca_with_the_setting_on_follows_updates(
    tmp_path: Path, make_broker: Callable[..., AlpacaBroker], repository: Repository
) -> None:
    broker = make_broker()
    iterations = new_run(repository, broker)
    keys = {"alpaca_api_key": API_KEY, "alpaca_secret_key": SECRET_KEY}
    on = make_settings(tmp_path, alpaca_stream_url="ws://127.0.0.1:1/stream", **keys)
    off = make_settings(tmp_path, alpaca_trade_stream=False, **keys)
    simulated = SimulatedBroker(initial_cash=Decimal("1000"))

    assert on.alpaca_trade_stream is True
    assert isinstance(order_updates_for(on, broker, repository, iterations), OrderUpdates)  # type: ignore[arg-type]
    assert order_updates_for(off, broker, repository, iterations) is None  # type: ignore[arg-type]
    assert order_updates_for(on, simulated, repository, iterations) is None  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ws://"):
        make_settings(tmp_path, alpaca_stream_url="http://127.0.0.1:1/stream")


async def test_stream_when_the_daemon_loop_runs_gated_iterations_then_updates_are_written_only_between_them(
    running: tuple[AlpacaBroker, OrderUpdates, Iterations, Seen],
    fake_stream: FakeTradeStream,
    repository: Repository,
) -> None:
    broker, updates, iterations, seen = running
    await broker.submit(market_intent(quantity=10), COID, START)
    broker.take_reported()  # what the submitting iteration recorded
    written_during: list[int] = []

    class Loop:
        """What ``run_live`` calls: an iteration that takes a while, during which a fill streams in."""

        clock = iterations.clock

        async def run_iteration(self) -> str:
            fake_stream.fill(COID, "100.00")
            await seen.wait(1)
            await asyncio.sleep(0.05)  # give the recorder every chance to (wrongly) write now
            written_during.append(len(repository.broker_ledger(broker.name)[1]))
            return "done"

    gated_loop = gated(Loop(), updates)  # type: ignore[arg-type]
    assert gated_loop.clock is iterations.clock
    assert await gated_loop.run_iteration() == "done"
    await until(lambda: len(repository.broker_ledger(broker.name)[1]) == 1)

    assert written_during == [0]
    assert updates.recorded == [iterations.iteration_id(1)]


async def test_stream_when_the_daemon_follows_updates_then_they_start_with_the_block_and_stop_after_it(
    tmp_path: Path,
    make_broker: Callable[..., AlpacaBroker],
    fake_stream: FakeTradeStream,
    repository: Repository,
) -> None:
    broker = make_broker()
    iterations = new_run(repository, broker)
    keys = {"alpaca_api_key": API_KEY, "alpaca_secret_key": SECRET_KEY}
    settings = make_settings(tmp_path, alpaca_stream_url=fake_stream.url, **keys)
    await broker.submit(market_intent(quantity=10), COID, START)
    broker.take_reported()

    async with following_order_updates(settings, broker, repository, iterations) as updates:  # type: ignore[arg-type]
        assert updates is not None
        await asyncio.wait_for(updates.stream.wait_listening(), WAIT_S)
        fake_stream.fill(COID, "100.00")
        await until(lambda: len(repository.broker_ledger(broker.name)[1]) == 1)
    assert not updates.stream.running
    async with following_order_updates(settings, broker, repository, iterations, enabled=False) as none:  # type: ignore[arg-type]
        assert none is None

    assert stream_url(settings) == fake_stream.url
    derived = make_settings(tmp_path, alpaca_trading_url="https://paper-api.alpaca.markets/", **keys)
    assert stream_url(derived) == "wss://paper-api.alpaca.markets/stream"
    assert stream_url(make_settings(tmp_path, alpaca_trading_url="http://127.0.0.1:8080", **keys)) == (
        "ws://127.0.0.1:8080/stream"
    )
    assert stream_url(make_settings(tmp_path, **keys)) is None


async def test_stream_when_the_daemon_lock_is_lost_then_nothing_is_written_and_the_next_iteration_gets_the_fill(
    make_broker: Callable[..., AlpacaBroker],
    fake_stream: FakeTradeStream,
    repository: Repository,
    logs: list[str],
) -> None:
    from core.persistence.db import DaemonLockLost

    broker = make_broker()
    iterations = new_run(repository, broker)
    await broker.submit(market_intent(quantity=10), COID, START)
    broker.take_reported()
    checks: list[str] = []

    def lost() -> None:
        checks.append("checked")
        raise DaemonLockLost("another daemon holds the database")

    updates = OrderUpdates(
        broker,
        repository,
        iterations,
        iterations.clock,
        api_key=API_KEY,
        secret_key=SECRET_KEY,
        url_override=fake_stream.url,
        guard=lost,
    )
    updates.start()
    try:
        await asyncio.wait_for(updates.stream.wait_listening(), WAIT_S)
        fake_stream.fill(COID, "100.00")
        await until(lambda: bool(checks))
        async with updates.iteration():  # the next iteration (its own lock check would stop it) still gets it
            reported = broker.take_reported()
    finally:
        await updates.stop()

    assert repository.broker_ledger(broker.name)[1] == [] and updates.recorded == []
    assert [f.fill_id for f in reported.fills] == [f"{COID}@10"]
    assert [o.status for o in reported.orders] == [OrderStatus.FILLED]
    assert sum("could not record 1 fill(s)" in line for line in logs) == 1

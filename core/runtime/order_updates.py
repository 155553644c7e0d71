"""Order updates as they happen: the daemon follows Alpaca's trade-updates stream and records what it learns at once.

:class:`OrderUpdates` owns a :class:`~core.brokers.alpaca.stream.TradeUpdateStream` (a task of the daemon's event
loop) and a recorder task. Each event is folded into the broker's state by the stream (the sync's own code path), and
the recorder writes what the broker then reports (:meth:`~core.brokers.alpaca.AlpacaBroker.take_reported`: new fills
and changed orders) in its own short transaction, as a ledger row of kind ``order_updates`` in the iterations table
(its own sequence number, no decisions, no positions). It never writes during an iteration: iterations run through
:meth:`OrderUpdates.iteration` (:func:`gated` wraps the orchestrator for ``run_live``), which holds the same lock,
and what arrives meanwhile is reported by that iteration's sync or recorded right after it. A fill therefore reaches the ledger once: the stream and the next poll
derive the same fill id from the order's cumulative quantity, and the broker reports each id once.

Nothing is lost when the process dies between an event and its write (SIGKILL): the write never happened, the
broker resumes from the ledger at the next start, and its first poll reports the fill. A failed write hands the
report back to the broker (the next iteration records it). The stream is the fast path; the per-iteration sync stays
the safety net.

``on_update`` listeners (e.g. notifications) are called with every
:class:`~core.brokers.alpaca.stream.TradeUpdate` once the broker applied it (before it is written); their errors are
logged and never reach the stream.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

from loguru import logger

from core.brokers.alpaca import AlpacaBroker
from core.brokers.alpaca.stream import TradeUpdate, TradeUpdateStream, give_back
from core.kernel.clock import Clock
from core.persistence.repository import IterationRecord, Repository

from config.settings import Settings, TradingMode

if TYPE_CHECKING:
    from core.runtime.orchestrator import IterationOutcome, Orchestrator

ORDER_UPDATES_STATUS = "order_updates"
"""The ``status`` of the iterations-table rows the stream's updates are recorded under."""

Listener = Callable[[TradeUpdate], Awaitable[None] | None]


class IterationSource(Protocol):
    """What the recorder needs from the orchestrator: the run, its sequence counter, its iteration ids."""

    run_id: str
    seq: int

    def iteration_id(self, seq: int) -> str: ...


class OrderUpdates:
    """The stream and its recorder (see the module docstring). ``start`` it inside the daemon's event loop after the
    start-up catch-up, run iterations inside :meth:`iteration` (:func:`gated` does it for ``run_live``), ``stop`` it
    at the end."""

    def __init__(
        self,
        broker: AlpacaBroker,
        repository: Repository,
        iterations: IterationSource,
        clock: Clock,
        *,
        api_key: str,
        secret_key: str,
        paper: bool = True,
        url_override: str | None = None,
        min_backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        guard: Callable[[], object] | None = None,
    ) -> None:
        """``guard``: called before every write (the daemon's lock check: it raises once another process holds the
        database); while it raises nothing is written and what was applied waits in the broker for the next
        iteration, which the same check stops."""
        self._guard = guard
        self._broker = broker
        self._repository = repository
        self._iterations = iterations
        self._clock = clock
        self._listeners: list[Listener] = []
        self._gate = asyncio.Lock()
        self._wake = asyncio.Event()
        self._recorder: asyncio.Task[None] | None = None
        self._write_failing = False
        self.recorded: list[str] = []  # the ids of the rows written, oldest first
        self.stream = TradeUpdateStream(
            broker,
            api_key,
            secret_key,
            paper=paper,
            url_override=url_override,
            on_update=self._on_update,
            min_backoff_s=min_backoff_s,
            max_backoff_s=max_backoff_s,
        )

    # ------------------------------------------------------------------ hooks

    def on_update(self, listener: Listener) -> Listener:
        """Call ``listener`` (sync or async) with every applied trade update; usable as a decorator."""
        self._listeners.append(listener)
        return listener

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        self.stream.start()
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.get_running_loop().create_task(self._record_loop(), name="order-updates-recorder")

    async def stop(self) -> None:
        """Stop the stream, record what it already applied, stop the recorder. Never raises."""
        try:
            await self.stream.stop()
        except Exception as exc:  # pragma: no cover - defensive: shutdown goes on
            logger.error("order updates: stopping the stream failed: {}", exc)
        recorder, self._recorder = self._recorder, None
        if recorder is not None:
            recorder.cancel()
            try:
                await recorder
            except asyncio.CancelledError:
                pass
        async with self._gate:
            self._record_pending()

    @asynccontextmanager
    async def iteration(self) -> AsyncIterator[None]:
        """Hold the recorder off while an iteration runs."""
        async with self._gate:
            yield

    # ------------------------------------------------------------------ internals

    async def _on_update(self, update: TradeUpdate) -> None:
        if update.order is not None:
            self._wake.set()
        for listener in self._listeners:
            try:
                result = listener(update)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                logger.error("order updates: listener {} failed: {}: {}", _name(listener), type(exc).__name__, exc)

    async def _record_loop(self) -> None:
        while True:
            await self._wake.wait()
            async with self._gate:  # waits for a running iteration to finish
                self._wake.clear()
                self._record_pending()

    def _record_pending(self) -> None:
        """Write what the broker reports now (only called holding the gate). A failed write is handed back."""
        report = self._broker.take_reported()
        if not report.fills and not report.orders:
            return
        try:
            if self._guard is not None:
                self._guard()
        except Exception as exc:
            give_back(self._broker, report)
            self._write_failed(report, f"the daemon's lock check failed: {type(exc).__name__}: {exc}")
            return
        now = self._clock.now()
        seq = self._iterations.seq + 1
        record = IterationRecord(
            run_id=self._iterations.run_id,
            iteration_id=self._iterations.iteration_id(seq),
            seq=seq,
            as_of=now,
            recorded_at=now,
            status=ORDER_UPDATES_STATUS,
            error=None,
            symbols_total=0,
            symbols_ok=0,
            data_quality=0.0,
            orders=tuple(report.orders),
            fills=tuple(report.fills),
        )
        try:
            self._repository.record_iteration(record)
        except Exception as exc:  # the database, whatever the error: the next iteration records it
            give_back(self._broker, report)
            reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            self._write_failed(report, reason)
            return
        self._write_failing = False
        self._iterations.seq = seq
        self.recorded.append(record.iteration_id)
        logger.info(
            "order updates: recorded {} fill(s) and {} order update(s) as {}",
            len(report.fills),
            len(report.orders),
            record.iteration_id,
        )

    def _write_failed(self, report: Any, reason: str) -> None:
        if not self._write_failing:
            logger.error(
                "order updates: could not record {} fill(s) and {} order update(s) ({}); the next iteration records "
                "them",
                len(report.fills),
                len(report.orders),
                reason,
            )
        self._write_failing = True


def _name(listener: Any) -> str:
    return str(getattr(listener, "__qualname__", None) or type(listener).__name__)


def order_updates_for(
    settings: Settings,
    broker: Any,
    repository: Repository,
    orchestrator: Orchestrator,
    guard: Callable[[], object] | None = None,
) -> OrderUpdates | None:
    """The daemon's :class:`OrderUpdates` when ``BROKER=alpaca`` and ``ALPACA_TRADE_STREAM`` is on, else None."""
    if not settings.alpaca_trade_stream or not isinstance(broker, AlpacaBroker):
        return None
    if settings.alpaca_api_key is None or settings.alpaca_secret_key is None:
        return None
    return OrderUpdates(
        broker,
        repository,
        orchestrator,
        orchestrator.clock,
        api_key=settings.alpaca_api_key.get_secret_value(),
        secret_key=settings.alpaca_secret_key.get_secret_value(),
        paper=settings.trading_mode is not TradingMode.LIVE,
        url_override=stream_url(settings),
        guard=guard,
    )


def stream_url(settings: Settings) -> str | None:
    """``ALPACA_STREAM_URL``, else the stream beside ``ALPACA_TRADING_URL`` (Alpaca serves it at ``/stream`` on the
    trading host: ``https://paper-api.alpaca.markets`` -> ``wss://paper-api.alpaca.markets/stream``), else None
    (alpaca-py's default endpoint for the mode)."""
    if settings.alpaca_stream_url:
        return settings.alpaca_stream_url
    base = settings.alpaca_trading_url
    if not base:
        return None
    scheme, _, rest = base.partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest.rstrip('/')}/stream"


@asynccontextmanager
async def following_order_updates(
    settings: Settings,
    broker: Any,
    repository: Repository,
    orchestrator: Orchestrator,
    *,
    enabled: bool = True,
    guard: Callable[[], object] | None = None,
) -> AsyncIterator[OrderUpdates | None]:
    """Start the daemon's order updates (when configured and ``enabled``: a single iteration has no "between") for
    the block and stop them after it, whatever happens."""
    updates = order_updates_for(settings, broker, repository, orchestrator, guard) if enabled else None
    if updates is None:
        yield None
        return
    updates.start()
    try:
        yield updates
    finally:
        await updates.stop()


def gated(orchestrator: Orchestrator, updates: OrderUpdates | None) -> Orchestrator:
    """``orchestrator``, or a view of it whose iterations hold ``updates``' recorder off."""
    if updates is None:
        return orchestrator
    return _Gated(orchestrator, updates)  # type: ignore[return-value]


class _Gated:
    def __init__(self, orchestrator: Orchestrator, updates: OrderUpdates) -> None:
        self._orchestrator = orchestrator
        self._updates = updates
        self.clock = orchestrator.clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._orchestrator, name)

    async def run_iteration(self) -> IterationOutcome:
        async with self._updates.iteration():
            return await self._orchestrator.run_iteration()


__all__ = [
    "ORDER_UPDATES_STATUS",
    "IterationSource",
    "OrderUpdates",
    "following_order_updates",
    "gated",
    "order_updates_for",
    "stream_url",
]

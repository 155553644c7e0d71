"""Alpaca's trade-updates stream, folded into :class:`~core.brokers.alpaca.AlpacaBroker`'s state as it happens.

alpaca-py's :class:`~alpaca.trading.stream.TradingStream` holds the websocket: it connects (``url_override`` points
it at another endpoint, e.g. a local fake), sends ``{"action": "authenticate", "data": {"key_id", "secret_key"}}``,
then ``{"action": "listen", "data": {"streams": ["trade_updates"]}}``, and reconnects after a dropped connection with
exponential back-off (equal jitter, capped: :func:`alpaca.common.utils.reconnect_delay`). Each ``trade_updates``
message carries an ``event`` (``new``, ``fill``, ``partial_fill``, ``canceled``, ``expired``, ``rejected``,
``replaced``, ``done_for_day``...) and the order's full state after it.

:class:`TradeUpdateStream` adds what a daemon needs on top:

* **One code path with the poll.** The event's order goes through the broker's own ``_apply`` (the code
  :meth:`AlpacaBroker.sync` uses), under the broker's lock: fills are derived from the order's cumulative
  ``filled_qty`` with the same deterministic ids (``<client_order_id>@<cumulative quantity>``), so a fill seen by the
  stream and then by the next poll is reported once, and one the stream missed (a dropped connection, a restart) is
  reported by the poll. What the stream learns waits in the broker's reported queue
  (:meth:`AlpacaBroker.take_reported`) for whoever records it: the runtime between iterations, or the next
  iteration's sync. A stale event (older than what a poll already saw) changes nothing.
* **A refused login ends the stream.** alpaca-py retries a refused login forever; here the refusal is logged once
  with the server's reason (never the keys), :attr:`TradeUpdateStream.auth_error` says why, and the stream stops.
* **Malformed messages are logged and ignored**; connection failures are logged once per outage (the SDK's own
  stream logger is quietened so a long outage does not log a traceback per attempt), and :meth:`run` never raises.

``on_update`` is called with a :class:`TradeUpdate` after each event was applied (e.g. to record or notify it); an
exception it raises is logged and swallowed.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from collections.abc import Awaitable, Callable

import websockets
from alpaca.trading.stream import TradingStream
from loguru import logger

from core.brokers.alpaca.mapping import _decimal, _utc
from core.brokers.base import BrokerAuthError, BrokerError, SyncResult, TemporaryBrokerError
from core.kernel.domain import Fill, IllegalOrderTransition, Order

if TYPE_CHECKING:
    from core.brokers.alpaca.broker import AlpacaBroker

TRADE_UPDATES = "trade_updates"

LEDGER_EVENTS = frozenset({"fill", "partial_fill", "canceled", "expired", "rejected", "replaced"})
"""Events that change what the ledger holds (an execution or an order's end); others update the order's state."""

_SDK_LOGGER = "alpaca.trading.stream"
_FRAME_LOGGERS = ("websockets", "websockets.client")
_RECV_POLL_S = 1.0  # how often a quiet connection checks for a stop request


@dataclass(frozen=True, slots=True)
class TradeUpdate:
    """One trade-updates event, after the broker applied it: ``order`` is the broker's view of the order (None when
    the update could not be applied), ``fills`` the executions it revealed (usually one; none for a duplicate)."""

    event: str
    client_order_id: str
    symbol: str
    at: datetime | None
    price: Decimal | None
    qty: Decimal | None
    order: Order | None
    fills: tuple[Fill, ...] = ()

    @property
    def changes_ledger(self) -> bool:
        return self.event in LEDGER_EVENTS


@dataclass
class StreamStats:
    """Counters for health checks and tests."""

    connections: int = 0
    events: int = 0
    applied: int = 0
    malformed: int = 0
    failures: int = 0
    backoffs: list[float] = field(default_factory=list)


class _Stream(TradingStream):
    """alpaca-py's stream with our authentication (a refusal is final), decoding (malformed messages ignored) and
    failure logging (once per outage, through the owner)."""

    def __init__(self, owner: TradeUpdateStream, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._owner = owner

    def _reconnect_delay(self, retries: int) -> float:
        delay = super()._reconnect_delay(retries)
        self._owner.stats.backoffs.append(delay)
        return delay

    async def _start_ws(self) -> None:
        try:
            await super()._start_ws()
        except Exception as exc:
            self._owner._failed(exc)
            raise
        self._owner._connected()

    async def _auth(self) -> None:
        assert self._ws is not None
        await self._ws.send(
            json.dumps({"action": "authenticate", "data": {"key_id": self._api_key, "secret_key": self._secret_key}})
        )
        reply = _decode(await asyncio.wait_for(self._ws.recv(), self._owner.auth_timeout_s))
        data = reply.get("data") if isinstance(reply, dict) else None
        status = data.get("status") if isinstance(data, dict) else None
        if status == "authorized":
            return
        reason = data.get("message") if isinstance(data, dict) else None
        if status in ("unauthorized", "forbidden") or (
            isinstance(reply, dict) and reply.get("stream") == "authorization"
        ):
            self._owner._refused(str(reason or status or "not authorized"))
            await self.stop_ws()
            raise BrokerAuthError("the trade-updates stream's login was refused")
        raise TemporaryBrokerError("unexpected reply to the trade-updates stream's login")

    async def _consume(self) -> None:
        while True:
            if not self._stop_stream_queue.empty():
                self._stop_stream_queue.get_nowait()
                await self.close()
                return
            if self._ws is None:
                raise websockets.WebSocketException("the connection is closed")
            try:
                frame = await asyncio.wait_for(self._ws.recv(), _RECV_POLL_S)
            except TimeoutError:
                continue
            except websockets.WebSocketException as exc:
                self._owner._failed(exc)
                raise
            except Exception as exc:  # a broken transport: reconnect with back-off rather than retry it at once
                self._owner._failed(exc)
                raise websockets.WebSocketException(f"{type(exc).__name__}: {exc}") from None
            try:
                message = _decode(frame)
            except ValueError as exc:
                self._owner._malformed(f"not JSON ({exc})")
                continue
            if isinstance(message, dict) and message.get("stream") == TRADE_UPDATES:
                self._data_received = True
            try:
                await self._dispatch(message)
            except Exception as exc:  # never let one message end the connection
                self._owner._malformed(f"{type(exc).__name__}: {exc}")

    async def _dispatch(self, msg: Any) -> None:
        if not isinstance(msg, dict):
            self._owner._malformed("not a JSON object")
            return
        stream = msg.get("stream")
        if stream == TRADE_UPDATES:
            await self._owner._handle(msg.get("data"))
        elif stream == "listening":
            self._owner._listening(msg.get("data"))
        elif stream == "authorization":  # a late refusal (e.g. the keys were revoked)
            found = msg.get("data")
            data: dict[str, Any] = found if isinstance(found, dict) else {}
            if data.get("status") != "authorized":
                self._owner._refused(str(data.get("message") or data.get("status") or "not authorized"))
                await self.stop_ws()


def _decode(frame: str | bytes) -> Any:
    try:
        return json.loads(frame)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(str(exc)) from None


class TradeUpdateStream:
    """Follows the account's trade updates and applies each to ``broker`` (see the module docstring).

    ``url_override``: the stream's endpoint (``ws://`` or ``wss://``; default: Alpaca's paper or live stream);
    ``min_backoff_s``/``max_backoff_s``: the reconnection back-off's first step and cap (jittered between half and
    all of each step); ``on_update``: called (sync or async) with each applied :class:`TradeUpdate`.
    """

    def __init__(
        self,
        broker: AlpacaBroker,
        api_key: str,
        secret_key: str,
        *,
        paper: bool = True,
        url_override: str | None = None,
        on_update: Callable[[TradeUpdate], Awaitable[None] | None] | None = None,
        min_backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        auth_timeout_s: float = 10.0,
    ) -> None:
        if not 0 < min_backoff_s <= max_backoff_s:
            raise ValueError("the stream's back-off needs 0 < min_backoff_s <= max_backoff_s")
        self._broker = broker
        self._secrets = (api_key, secret_key)
        self._on_update = on_update
        self.auth_timeout_s = auth_timeout_s
        self.stats = StreamStats()
        self.auth_error: str | None = None
        self.listening = False
        self._outage: str | None = None
        self._stream = _Stream(self, api_key, secret_key, paper=paper, raw_data=True, url_override=url_override)
        self._stream._reconnect_min_backoff = min_backoff_s
        self._stream._reconnect_max_backoff = max_backoff_s
        self._stream.subscribe_trade_updates(self._ignore)  # the SDK needs a handler; dispatch is ours (_Stream)
        self._task: asyncio.Task[None] | None = None
        self._listening_event = asyncio.Event()
        logging.getLogger(_SDK_LOGGER).setLevel(logging.CRITICAL)  # failures are logged here, once per outage
        for name in _FRAME_LOGGERS:  # at DEBUG they would print every frame, the login (with the keys) included
            frames = logging.getLogger(name)
            if frames.getEffectiveLevel() < logging.INFO:
                frames.setLevel(logging.INFO)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(broker={self._broker.name!r})"

    @staticmethod
    async def _ignore(_: Any) -> None:  # pragma: no cover - never called: _Stream dispatches itself
        return None

    # ------------------------------------------------------------------ life cycle

    def start(self) -> asyncio.Task[None]:
        """Run the stream as a task of the running event loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name="alpaca-trade-updates")
        return self._task

    async def run(self) -> None:
        """Connect, listen and reconnect until :meth:`stop` or a refused login. Never raises (but cancellation)."""
        try:
            await self._stream._run_forever()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.error(
                "{}: trade-updates stream ended: {}", self._broker.name, self._redact(f"{type(exc).__name__}: {exc}")
            )
        finally:
            self.listening = False
        if self.auth_error is None:
            logger.info("{}: trade-updates stream stopped", self._broker.name)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Ask the stream to close, wait up to ``grace_s`` for it, then cancel it."""
        await self._stream.stop_ws()
        ws = self._stream._ws
        if ws is not None:  # wakes a waiting recv at once instead of at its next poll
            try:
                await asyncio.wait_for(ws.close(), grace_s)
            except Exception:  # a dead connection: the task is cancelled below if it does not end
                pass
        task, self._task = self._task, None
        if task is None or task.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), grace_s)
        except TimeoutError:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        except Exception:  # pragma: no cover - run() does not raise
            pass

    async def wait_listening(self) -> None:
        """Return once the server acknowledged the ``trade_updates`` subscription (tests, start-up logs)."""
        await self._listening_event.wait()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # ------------------------------------------------------------------ called by _Stream

    def _connected(self) -> None:
        self.stats.connections += 1
        if self._outage is not None:
            logger.info("{}: trade-updates stream reconnected (after: {})", self._broker.name, self._outage)
            self._outage = None
        else:
            logger.info("{}: trade-updates stream connected", self._broker.name)

    def _listening(self, data: Any) -> None:
        streams = data.get("streams") if isinstance(data, dict) else None
        if isinstance(streams, list) and TRADE_UPDATES in streams:
            self.listening = True
            self._listening_event.set()
        else:
            logger.warning(
                "{}: the stream did not confirm trade_updates: {}", self._broker.name, self._redact(str(data)[:200])
            )

    def _failed(self, exc: BaseException) -> None:
        self.listening = False
        self._listening_event.clear()
        if not self._stream._should_run:  # refused (logged once there), or closed by stop()
            return
        self.stats.failures += 1
        reason = self._redact(f"{type(exc).__name__}: {exc}")[:300]
        if self._outage is None:
            self._outage = reason
            logger.warning(
                "{}: trade-updates stream lost ({}); reconnecting with back-off, the per-iteration sync still polls",
                self._broker.name,
                reason,
            )
        else:
            logger.debug("{}: trade-updates stream still down: {}", self._broker.name, reason)

    def _refused(self, reason: str) -> None:
        self.listening = False
        if self.auth_error is None:
            self.auth_error = self._redact(reason)[:300]
            logger.error(
                "{}: Alpaca refused the trade-updates stream's login ({}): check ALPACA_API_KEY and ALPACA_SECRET_KEY; "
                "the stream stays off, orders are still polled every iteration",
                self._broker.name,
                self.auth_error,
            )

    def _malformed(self, reason: str) -> None:
        self.stats.malformed += 1
        logger.warning(
            "{}: ignored a malformed trade-updates message: {}", self._broker.name, self._redact(reason)[:300]
        )

    async def _handle(self, data: Any) -> None:
        self.stats.events += 1
        if not isinstance(data, dict) or not isinstance(data.get("order"), dict) or not data.get("event"):
            self._malformed("a trade update without an event or an order")
            return
        event = str(data["event"])[:40]
        try:
            raw = self._broker._client._order(data["order"])  # tolerates statuses alpaca-py does not know
        except Exception as exc:
            self._malformed(f"{event}: order unreadable: {str(exc).splitlines()[0]}")
            return
        update = await apply_order(self._broker, raw, event)
        update = TradeUpdate(
            event=event,
            client_order_id=update.client_order_id,
            symbol=update.symbol,
            at=_utc_or_none(data.get("timestamp")),
            price=_decimal_or_none(data.get("price")),
            qty=_decimal_or_none(data.get("qty")),
            order=update.order,
            fills=update.fills,
        )
        if update.order is not None:
            self.stats.applied += 1
        if self._on_update is None:
            return
        try:
            result = self._on_update(update)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            logger.error(
                "{}: trade-update handler failed: {}", self._broker.name, self._redact(f"{type(exc).__name__}: {exc}")
            )

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, "***")
        return text


async def apply_order(broker: AlpacaBroker, raw: Any, event: str = "") -> TradeUpdate:
    """Fold one Alpaca order (as a stream or any other source sent it) into ``broker``'s state through the sync's own
    code path, under the broker's lock. Its new fills and changed orders join what the broker reports next
    (:meth:`AlpacaBroker.take_reported` or the next sync). An update that contradicts what the broker already holds
    (an older state arriving late) changes nothing."""
    client_order_id = str(raw.client_order_id)
    async with broker._lock:
        try:
            applied = broker._apply([raw])
        except (IllegalOrderTransition, BrokerError, ValueError) as exc:
            logger.info("{}: stale {} update of {} ignored: {}", broker.name, event or "order", client_order_id, exc)
            return TradeUpdate(event, client_order_id, str(raw.symbol or ""), None, None, None, None)
        tracked = broker._orders.get(client_order_id)
        order = tracked.order if tracked is not None else None
        fills = tuple(f for f in applied.fills if f.client_order_id == client_order_id) or tuple(applied.fills)
    if fills:
        logger.info(
            "{}: {} {} {} x{} @ {} (trade-updates stream)",
            broker.name,
            event or "update",
            client_order_id,
            fills[0].side.value,
            sum(f.quantity for f in fills),
            fills[-1].price,
        )
    return TradeUpdate(event, client_order_id, str(raw.symbol or ""), None, None, None, order, fills)


def give_back(broker: AlpacaBroker, report: SyncResult) -> None:
    """Return what :meth:`AlpacaBroker.take_reported` handed over and could not be recorded: the next sync or
    ``take_reported`` reports it again, first."""
    broker._unreported_fills[:0] = list(report.fills)
    pending = dict.fromkeys(o.client_order_id for o in report.orders)
    pending.update(broker._unreported_orders)
    broker._unreported_orders.clear()
    broker._unreported_orders.update(pending)


def _utc_or_none(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return _utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except (ValueError, BrokerError):
        return None


def _decimal_or_none(value: Any) -> Decimal | None:
    try:
        return _decimal(value)
    except (BrokerError, ValueError, ArithmeticError, TypeError):
        return None

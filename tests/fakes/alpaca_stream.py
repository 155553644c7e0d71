"""A fake of Alpaca's trade-updates websocket on 127.0.0.1, for alpaca-py's ``TradingStream`` (``url_override``).

The protocol, as Alpaca's trading stream speaks it (JSON text; Alpaca sends binary frames holding JSON, which this
fake does too for events):

1. client ``{"action": "authenticate", "data": {"key_id": ..., "secret_key": ...}}``; the server answers
   ``{"stream": "authorization", "data": {"action": "authenticate", "status": "authorized"}}``, or
   ``"status": "unauthorized"`` with ``"message": "access key verification failed"`` and closes the connection;
2. client ``{"action": "listen", "data": {"streams": ["trade_updates"]}}``; the server answers
   ``{"stream": "listening", "data": {"streams": ["trade_updates"]}}``;
3. the server sends ``{"stream": "trade_updates", "data": {"event", "execution_id", "order", "timestamp", "price",
   "qty", "position_qty"}}`` for every order event.

:class:`FakeTradeStream` serves it from a background thread. Its events are built from a
:class:`~tests.fakes.alpaca_trading.FakeTradingApi`'s orders, so the stream and the HTTP API tell one story:
:meth:`fill` executes an order at the fake API and publishes ``fill``/``partial_fill``; :meth:`cancel` and
:meth:`reject` likewise. Faults: :meth:`drop` (close every connection), :meth:`send_raw` (any frame, e.g. malformed).
Inspection: :attr:`logins` (every key id that tried, and whether it was accepted), :meth:`wait_listeners`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tests.fakes.alpaca_trading import FakeTradingApi, wire_time


@dataclass
class Login:
    key_id: str
    accepted: bool


@dataclass
class _State:
    listeners: set[ServerConnection] = field(default_factory=set)
    logins: list[Login] = field(default_factory=list)
    listens: int = 0


class FakeTradeStream:
    def __init__(self, trading: FakeTradingApi, *, api_key: str, secret_key: str) -> None:
        self.trading = trading
        self._api_key = api_key
        self._secret_key = secret_key
        self._state = _State()
        self._changed = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # ---------------------------------------------------------------- life cycle

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/stream"

    def start(self) -> FakeTradeStream:
        ready = threading.Event()

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._server = await serve(self._serve, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1] if self._server.sockets else 0
            ready.set()
            await self._server.wait_closed()

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), name="fake-trade-stream", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake trade stream did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        if self._thread is not None:
            self._thread.join(10)

    # ---------------------------------------------------------------- inspection

    @property
    def logins(self) -> list[Login]:
        with self._changed:
            return list(self._state.logins)

    @property
    def listens(self) -> int:
        with self._changed:
            return self._state.listens

    def wait_listeners(self, listens: int, timeout: float = 10.0) -> None:
        """Block until the ``listens``-th subscription was acknowledged (counting every connection so far)."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._state.listens >= listens, timeout):
                raise TimeoutError(f"{listens} subscription(s) expected, saw {self._state.listens}")

    def wait_logins(self, count: int, timeout: float = 10.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._state.logins) >= count, timeout):
                raise TimeoutError(f"{count} login(s) expected, saw {len(self._state.logins)}")

    # ---------------------------------------------------------------- controls

    def fill(self, ref: str, price: Decimal | str | float, qty: Decimal | int | None = None) -> dict[str, Any]:
        """Execute (part of) an order at the fake API and publish the matching event; returns the message sent."""
        order = self.trading.fill(ref, price, qty)
        event = "fill" if order.status == "filled" else "partial_fill"
        executed = Decimal(qty) if qty is not None else None
        return self.publish(event, ref, price=Decimal(str(price)), qty=executed)

    def cancel(self, ref: str) -> dict[str, Any]:
        self.trading.cancel(ref)
        return self.publish("canceled", ref)

    def reject(self, ref: str) -> dict[str, Any]:
        self.trading.set_status(ref, "rejected")
        return self.publish("rejected", ref)

    def publish(
        self, event: str, ref: str, *, price: Decimal | None = None, qty: Decimal | None = None
    ) -> dict[str, Any]:
        """Send a ``trade_updates`` event carrying the fake API's current view of the order."""
        order = self.trading.order_payload(ref)
        data: dict[str, Any] = {
            "event": event,
            "order": order,
            "timestamp": order["updated_at"] if order.get("updated_at") else wire_time(self.trading._clock()),
        }
        if event in ("fill", "partial_fill"):
            data["execution_id"] = str(uuid.uuid4())
            data["price"] = str(price if price is not None else order["filled_avg_price"])
            data["qty"] = str(qty if qty is not None else order["filled_qty"])
            data["position_qty"] = order["filled_qty"]
        message = {"stream": "trade_updates", "data": data}
        self.send_raw(json.dumps(message).encode())
        return message

    def send_raw(self, frame: str | bytes) -> None:
        """Send one frame as is to every listening connection (and wait until it was handed to them)."""
        self._call(self._broadcast(frame))

    def drop(self) -> None:
        """Cut every connection without a closing handshake, as a network failure would (the server keeps accepting
        new ones)."""
        self._call(self._drop())

    # ---------------------------------------------------------------- server side

    def _call(self, coro: Any) -> None:
        assert self._loop is not None, "start() the fake first"
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _broadcast(self, frame: str | bytes) -> None:
        for connection in list(self._state.listeners):
            try:
                await connection.send(frame)
            except ConnectionClosed:
                self._state.listeners.discard(connection)

    async def _drop(self) -> None:
        for connection in list(self._state.listeners):  # as a network failure: no closing handshake
            self._state.listeners.discard(connection)
            connection.transport.abort()

    async def _serve(self, connection: ServerConnection) -> None:
        try:
            hello = json.loads(await connection.recv())
            data = hello.get("data") or {}
            accepted = (
                hello.get("action") == "authenticate"
                and data.get("key_id") == self._api_key
                and data.get("secret_key") == self._secret_key
            )
            with self._changed:
                self._state.logins.append(Login(str(data.get("key_id", "")), accepted))
                self._changed.notify_all()
            if not accepted:
                await connection.send(
                    json.dumps(
                        {
                            "stream": "authorization",
                            "data": {
                                "action": "authenticate",
                                "status": "unauthorized",
                                "message": "access key verification failed",
                            },
                        }
                    )
                )
                await connection.close()
                return
            await connection.send(
                json.dumps({"stream": "authorization", "data": {"action": "authenticate", "status": "authorized"}})
            )
            async for frame in connection:
                request = json.loads(frame)
                if request.get("action") == "listen":
                    streams = [s for s in request.get("data", {}).get("streams", []) if s == "trade_updates"]
                    await connection.send(json.dumps({"stream": "listening", "data": {"streams": streams}}))
                    if streams:
                        with self._changed:
                            self._state.listeners.add(connection)
                            self._state.listens += 1
                            self._changed.notify_all()
        except ConnectionClosed:
            pass
        finally:
            self._state.listeners.discard(connection)

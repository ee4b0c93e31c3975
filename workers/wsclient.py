"""WebSocket clients for venue connections, one interface over two libraries: picows (the hot-path
default, measured faster by `fh bench wire`) and websockets (the reference client).

A connection hands every complete message to `on_message(payload, ts_recv)`, `ts_recv` being
CLOCK_REALTIME ns taken as the message leaves the library, before anything else touches it.
Pings are answered (echoing their payload); close frames are answered and end the connection.
A message is bounded (`max_message` bytes, fragments included): a larger one ends the connection
with close code 1009 before it is buffered whole.
`last_message` is when a message last arrived, `last_activity` when anything did, pings and pongs
included: a venue without heartbeats is alive as long as its WebSocket layer is (a book that does
not change sends nothing).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

MessageHandler = Callable[[bytes, int], None]
MAX_MESSAGE = 256 << 20  # Coinbase full-depth snapshots are several MB
CLOSE_TOO_BIG = 1009


class WsConnection:
    """An open connection: `send`, `close`, and `closed` (a future whose result says why)."""

    def __init__(self) -> None:
        self.closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.last_activity = self.last_message = time.monotonic()

    def _ended(self, reason: str) -> None:
        if not self.closed.done():
            self.closed.set_result(reason)

    def send(self, payload: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def ping(self) -> None:
        """Send a WebSocket ping; its pong counts as activity."""
        raise NotImplementedError


class PicowsConnection(WsConnection):
    def __init__(self, on_message: MessageHandler, max_message: int):
        super().__init__()
        self.transport = None
        self._on_message = on_message
        self._max_message = max_message
        self._parts: list[bytes] = []
        self._parts_bytes = 0

    def _fragment(self, transport, payload: bytes, fin: bool, ts_recv: int) -> None:
        """One fragment of a message: buffered up to the bound, delivered whole on the last one."""
        self._parts.append(payload)
        self._parts_bytes += len(payload)
        if self._parts_bytes > self._max_message:
            self._parts.clear()
            self._parts_bytes = 0
            transport.send_close(CLOSE_TOO_BIG)
            transport.disconnect()
            self._ended(f"message over {self._max_message} bytes (closed {CLOSE_TOO_BIG})")
            return
        if fin:
            self.last_message = self.last_activity
            payload = b"".join(self._parts)
            self._parts.clear()
            self._parts_bytes = 0
            self._on_message(payload, ts_recv)

    @classmethod
    async def open(cls, url: str, on_message: MessageHandler, timeout_s: float = 10.0,
                   max_message: int = MAX_MESSAGE) -> PicowsConnection:
        from picows import WSListener, WSMsgType, ws_connect

        connection = cls(on_message, max_message)
        data_types = (WSMsgType.TEXT, WSMsgType.BINARY)

        class Listener(WSListener):
            def on_ws_frame(self, transport, frame) -> None:
                ts_recv = time.time_ns()
                if connection.closed.done():
                    return  # frames read in the same batch as a close or an oversized message
                connection.last_activity = time.monotonic()
                kind = frame.msg_type
                if kind in data_types and frame.fin:
                    connection.last_message = connection.last_activity
                    connection._on_message(frame.get_payload_as_bytes(), ts_recv)
                elif kind in data_types or kind == WSMsgType.CONTINUATION:
                    connection._fragment(transport, frame.get_payload_as_bytes(), frame.fin, ts_recv)
                elif kind == WSMsgType.PING:
                    transport.send_pong(frame.get_payload_as_bytes())
                elif kind == WSMsgType.CLOSE:
                    transport.send_close(frame.get_close_code())
                    transport.disconnect()
                    connection._ended(f"closed by server ({frame.get_close_code()!r})")

            def on_ws_disconnected(self, transport) -> None:
                connection._ended("disconnected")

        transport, _ = await ws_connect(Listener, url, websocket_handshake_timeout=timeout_s,
                                        max_frame_size=max_message, enable_auto_pong=False)
        connection.transport = transport
        return connection

    def send(self, payload: bytes) -> None:
        from picows import WSMsgType

        self.transport.send(WSMsgType.TEXT, payload)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.send_close()
            self.transport.disconnect()
        self._ended("closed by us")

    def ping(self) -> None:
        from picows import WSMsgType

        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.send(WSMsgType.PING, b"fh")


class WebsocketsConnection(WsConnection):
    def __init__(self, websocket, on_message: MessageHandler):
        super().__init__()
        self.websocket = websocket
        self._on_message = on_message
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, url: str, on_message: MessageHandler, timeout_s: float = 10.0,
                   max_message: int = MAX_MESSAGE) -> WebsocketsConnection:
        from websockets.asyncio.client import connect

        websocket = await connect(url, max_size=max_message, compression=None, ping_interval=None,
                                  open_timeout=timeout_s, max_queue=1024)
        return cls(websocket, on_message)

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        recv, handler = self.websocket.recv, self._on_message
        try:
            while True:
                payload = await recv(decode=False)
                self.last_activity = self.last_message = time.monotonic()
                handler(payload, time.time_ns())
        except ConnectionClosed as exc:
            self._ended(f"closed ({exc})")
        except asyncio.CancelledError:
            self._ended("closed by us")

    def send(self, payload: bytes) -> None:
        asyncio.get_running_loop().create_task(self.websocket.send(payload.decode()))

    def ping(self) -> None:
        asyncio.get_running_loop().create_task(self._ping())

    async def _ping(self) -> None:
        try:
            await (await self.websocket.ping())
            self.last_activity = time.monotonic()
        except Exception:  # a closed connection: the reader reports it
            pass

    def close(self) -> None:
        self._reader.cancel()
        asyncio.get_running_loop().create_task(self.websocket.close())
        self._ended("closed by us")


CLIENTS = {"picows": PicowsConnection, "websockets": WebsocketsConnection}


async def open_connection(client: str, url: str, on_message: MessageHandler, timeout_s: float = 10.0,
                          max_message: int = MAX_MESSAGE) -> WsConnection:
    return await CLIENTS[client].open(url, on_message, timeout_s, max_message)

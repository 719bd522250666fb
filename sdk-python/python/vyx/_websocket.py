"""``vyx.WebSocket``: one accepted WebSocket connection, for ``@worker.ws`` handlers and the
ASGI ``websocket`` scope.

The framing, the close handshake and the size limits are the Rust side's (tungstenite over
the upgrade stream, ``src/ws.rs``); here each call asks the engine for one operation and
awaits its outcome, which the worker's loop hands back by token.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterable, List, Optional, Tuple, Union, cast

from ._errors import VyxError

if TYPE_CHECKING:
    from ._request import Request
    from ._worker import Worker


class WebSocketClosed(VyxError, OSError):
    """The WebSocket is closed: raised by :meth:`WebSocket.receive` once the client closed
    or went away, and by ``send`` after that. ``code`` and ``reason`` are the close's (1006
    when the connection was lost without one, 1009 when a message was over the limit).
    An ``OSError`` too, as ASGI 2.4 asks of a ``send`` on a closed connection."""

    def __init__(self, code: int, reason: str = ""):
        super().__init__(f"WebSocket closed ({code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


def wants_websocket(req: "Request") -> bool:
    """Whether ``req`` is a WebSocket opening handshake (an upgrade to ``websocket``)."""
    value = req.headers.raw_value("upgrade") or b""
    return req.upgrade and any(t.strip().lower() == b"websocket" for t in value.split(b","))


def offered_subprotocols(req: "Request") -> List[str]:
    """The client's ``sec-websocket-protocol`` list, in its order."""
    return [
        p.strip()
        for value in req.headers.getall("sec-websocket-protocol")
        for p in value.split(",")
        if p.strip()
    ]


class WebSocket:
    """A WebSocket connection handed to a ``@worker.ws`` handler, already accepted.

    ``await receive()`` gives the next message (``str`` for text, ``bytes`` for binary) and
    raises :class:`WebSocketClosed` once the client closed; ``async for message in ws``
    iterates until then. ``await send(str or bytes)`` waits until the gateway's window took
    the message, so a slow client slows the sender. ``await close(code, reason)`` closes.
    ``request`` is the upgrade request (params, query, headers), ``subprotocol`` the one
    accepted.

    .. code-block:: python

        @worker.ws("/echo/{room}")
        async def echo(ws: vyx.WebSocket):
            async for message in ws:
                await ws.send(message)
    """

    def __init__(self, worker: "Worker", req: "Request"):
        self.request = req
        self.subprotocol: Optional[str] = None
        self._worker = worker
        self._engine = worker._engine
        self._slot = req._slot
        self._accepted = False
        self._closed: Optional[WebSocketClosed] = None
        # A receive the caller stopped awaiting (a timeout) keeps its message for the next.
        self._receiving: Optional["asyncio.Future[Tuple[str, Any]]"] = None

    @property
    def closed(self) -> bool:
        """Whether the connection is closed (by either side) or lost."""
        return self._closed is not None

    async def _accept(
        self, subprotocol: Optional[str] = None, headers: Iterable[Tuple[bytes, bytes]] = ()
    ) -> None:
        pairs = list(headers)
        if subprotocol is not None:
            pairs.append((b"sec-websocket-protocol", subprotocol.encode("latin-1")))
        key = self.request.headers.raw_value("sec-websocket-key") or b""
        self._engine.ws_accept(self._slot, key, pairs)
        self._accepted = True
        self.subprotocol = subprotocol

    async def receive(self) -> Union[str, bytes]:
        """The next message; raises :class:`WebSocketClosed` once the connection is closed."""
        if self._closed is not None:
            raise self._closed
        if self._receiving is None:
            self._receiving = self._worker._ws_start(lambda t: self._engine.ws_receive(self._slot, t))
        kind, value = await asyncio.shield(self._receiving)
        self._receiving = None
        if kind == "closed":
            code, reason = cast(Tuple[int, str], value)
            self._closed = WebSocketClosed(code, reason)
            raise self._closed
        return cast(Union[str, bytes], value)

    async def send(self, message: Union[str, bytes, bytearray, memoryview]) -> None:
        """Sends a text (``str``) or binary message."""
        if self._closed is not None:
            raise self._closed
        data = message if isinstance(message, str) else bytes(message)
        kind, value = await self._worker._ws_start(lambda t: self._engine.ws_send(self._slot, t, data))
        if kind == "failed":
            self._closed = WebSocketClosed(1006, str(value))
            raise self._closed

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Closes the connection (the close handshake, then the stream ends). Closing a
        closed connection does nothing."""
        if self._closed is not None:
            return
        self._closed = WebSocketClosed(code, reason)
        await self._worker._ws_start(lambda t: self._engine.ws_close(self._slot, t, code, reason))

    def __aiter__(self) -> AsyncIterator[Union[str, bytes]]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[Union[str, bytes]]:
        while True:
            try:
                yield await self.receive()
            except WebSocketClosed:
                return

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._accepted else "connecting"
        return f"<vyx.WebSocket {self.request.target} {state}>"

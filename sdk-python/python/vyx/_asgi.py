"""ASGI 3 apps (FastAPI, Starlette, ...) served as they are: each request becomes an
``http`` scope with a ``receive`` that streams the request body and a ``send`` whose
messages go to the core (a whole body in one ``respond`` call, a streamed one chunk by chunk
with backpressure); a WebSocket handshake becomes a ``websocket`` scope whose messages the
core frames (``vyx.WebSocket``). The ``lifespan`` protocol runs around the worker's life."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Dict, List, MutableMapping, Optional, Sequence
from urllib.parse import unquote

from ._errors import VyxError
from ._request import Request
from ._routes import asgi_routes, asgi_websocket_routes, claim
from ._websocket import WebSocket, WebSocketClosed, offered_subprotocols, wants_websocket
from ._worker import Worker

log = logging.getLogger("vyx.asgi")

# Starlette's spelling of the ASGI types: an app typed with it (FastAPI, Starlette) is an
# ASGIApp to mypy and pyright, which a send typed on dict would not be.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# 2.4: no http.disconnect is needed to notice a client gone; the worker cancels the
# request's task when the gateway resets its stream.
_ASGI = {"version": "3.0", "spec_version": "2.4"}


class ASGIWorker(Worker):
    """A worker serving one ASGI app on ``routes`` (default: the app's own route table when
    it is a Starlette/FastAPI app, else ``/{*rest}``). ``lifespan``: ``"auto"`` (run it when
    the app supports it), ``"on"`` (it must) or ``"off"``."""

    def __init__(
        self,
        app: ASGIApp,
        routes: Optional[Sequence[str]] = None,
        *,
        lifespan: str = "auto",
        **options: Any,
    ):
        super().__init__(**options)
        if lifespan not in ("auto", "on", "off"):
            raise ValueError("lifespan must be 'auto', 'on' or 'off'")
        self.app = app
        self.lifespan = lifespan
        self._app_state: Dict[str, Any] = {}
        claim(self, self._handle, routes, asgi_routes(app), asgi_websocket_routes(app))

    async def serve(self, *, handle_signals: bool = False) -> None:
        lifespan = _Lifespan(self.app, self._app_state, self.lifespan)
        await lifespan.startup()
        try:
            await super().serve(handle_signals=handle_signals)
        finally:
            await lifespan.shutdown()

    def _scope(self, req: Request) -> Scope:
        raw = req.headers.raw
        host = req.headers.raw_value("host")
        server = None
        if host:
            name, _, port = host.decode("latin-1").rpartition(":")
            server = (name, int(port)) if name and port.isdigit() else (host.decode("latin-1"), None)
        client = None if req.client_ip is None else (req.client_ip, 0)
        path = req.path
        return {
            "type": "http",
            "asgi": _ASGI,
            "http_version": req.http_version,
            "method": req.method,
            "scheme": req._scheme,
            "path": unquote(path),
            "raw_path": path.encode("latin-1"),
            "query_string": (req.raw_query or "").encode("latin-1"),
            "root_path": "",
            "headers": raw,
            "client": client,
            "server": server,
            "state": dict(self._app_state),
            # Response trailers (http.response.start's `trailers`; ASGI has no standard
            # way to give an app the request's trailers) and 103 Early Hints.
            "extensions": {"http.response.trailers": {}, "http.response.early_hint": {}},
        }

    def _websocket_scope(self, req: Request) -> Scope:
        scope = self._scope(req)
        del scope["method"]
        scope["type"] = "websocket"
        scope["scheme"] = "wss" if req._scheme == "https" else "ws"
        scope["subprotocols"] = offered_subprotocols(req)
        # A refusal with a status of the app's choosing (websocket.http.response.*).
        scope["extensions"] = {"websocket.http.response": {}}
        return scope

    async def _handle(self, req: Request) -> None:
        if wants_websocket(req):
            await _WebSocketExchange(self, req).run(self.app, self._websocket_scope(req))
        else:
            await _Exchange(self, req).run(self.app, self._scope(req))


class _Exchange:
    """One request's ``receive`` and ``send``."""

    def __init__(self, worker: Worker, req: Request):
        self.worker = worker
        self.engine = worker._engine
        self.slot = req._slot
        self.chunks = req.stream().__aiter__()
        self.body_done = False
        # receive() may be awaited from two tasks at once (a body reader and a disconnect
        # listener); the body is read by one at a time.
        self.reading = asyncio.Lock()
        self.status = 0
        self.headers: List[Any] = []
        self.head_sent = False
        self.started = False
        # http.response.start asked for trailers: the last body message does not end it.
        self.trailers_expected = False
        self.trailers: List[Any] = []
        self.finished = asyncio.get_running_loop().create_future()

    async def run(self, app: ASGIApp, scope: Scope) -> None:
        try:
            await app(scope, self.receive, self.send)
        finally:
            if not self.finished.done():
                self.finished.set_result(None)
        if not self.started:
            raise VyxError("the ASGI app returned without sending a response")
        if not self.head_sent and self.status:
            # http.response.start without any body message: an empty body.
            self.engine.respond(self.slot, self.status, self.headers, b"")
            self.head_sent = True
        # Any other unfinished body ends with the slot's release (a RESET).

    async def receive(self) -> Message:
        async with self.reading:
            if not self.body_done:
                try:
                    chunk = await self.chunks.__anext__()
                    return {"type": "http.request", "body": chunk, "more_body": True}
                except StopAsyncIteration:
                    self.body_done = True
                    return {"type": "http.request", "body": b"", "more_body": False}
        # Nothing more will come: http.disconnect once the response is over.
        await asyncio.shield(self.finished)
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self.started = True
            self.status = message["status"]
            self.headers = list(message.get("headers", ()))
            self.trailers_expected = bool(message.get("trailers", False))
        elif kind == "http.response.body":
            if not self.started:
                raise RuntimeError("http.response.body before http.response.start")
            if self.finished.done():
                return
            body = bytes(message.get("body", b""))
            more = message.get("more_body", False)
            engine = self.engine
            if not self.head_sent:
                self.head_sent = True
                if not more and not self.trailers_expected:
                    # The whole response in one call.
                    engine.respond(self.slot, self.status, self.headers, body)
                    self.finished.set_result(None)
                    return
                if not engine.send_head(self.slot, self.status, self.headers, False):
                    self.finished.set_result(None)
                    return
            if body and not engine.try_send(self.slot, body):
                await self.worker._wait(self.slot, True)
            if not more and not self.trailers_expected:
                engine.end(self.slot)
                self.finished.set_result(None)
        elif kind == "http.response.early_hint":
            # One `link` field per entry of `links`; dropped once the head is out (a hint
            # that comes too late is advisory) or when the gateway does not forward them.
            if not self.head_sent and not self.finished.done():
                links = [(b"link", bytes(link)) for link in message.get("links", ())]
                self.engine.send_informational(self.slot, 103, links)
        elif kind == "http.response.trailers":
            if not self.trailers_expected or self.finished.done():
                return
            self.trailers.extend(message.get("headers", ()))
            if not message.get("more_trailers", False):
                self.engine.end_with_trailers(self.slot, b"", self.trailers)
                self.finished.set_result(None)


class _WebSocketExchange:
    """One ``websocket`` scope's ``receive`` and ``send`` (ASGI 2.4): ``websocket.connect``
    first; after ``websocket.accept`` the messages of a :class:`vyx.WebSocket`; a close
    before the accept, or the app returning without one, refuses the handshake with 403;
    ``websocket.http.response.*`` refuses it with the app's own response."""

    def __init__(self, worker: Worker, req: Request):
        self.worker = worker
        self.engine = worker._engine
        self.slot = req._slot
        self.ws = WebSocket(worker, req)
        self.connect_sent = False
        # connecting → accepted | responding → closed
        self.state = "connecting"
        self.response_headers: List[Any] = []
        self.response_status = 0
        # Set when the handshake was refused: a receive then answers websocket.disconnect.
        self.refused = asyncio.get_running_loop().create_future()

    async def run(self, app: ASGIApp, scope: Scope) -> None:
        try:
            await app(scope, self.receive, self.send)
        except Exception:
            if self.state != "accepted":
                raise  # the worker answers 500 (or resets a response under way)
            log.exception("ASGI WebSocket app failed; closing 1011")
            await self.ws.close(1011, "internal error")
        finally:
            if self.state == "accepted":
                try:
                    await self.ws.close()
                finally:
                    self.worker._websockets.pop(self.slot, None)
                    self.engine.ws_release(self.slot)
        if self.state == "connecting":
            self._refuse()

    def _refuse(self) -> None:
        self.engine.respond(self.slot, 403, [], b"")
        self.state = "closed"
        self.refused.set_result(None)

    async def receive(self) -> Message:
        if not self.connect_sent:
            self.connect_sent = True
            return {"type": "websocket.connect"}
        if self.state == "accepted":
            try:
                message = await self.ws.receive()
            except WebSocketClosed as closed:
                return {"type": "websocket.disconnect", "code": closed.code, "reason": closed.reason}
            if isinstance(message, str):
                return {"type": "websocket.receive", "text": message}
            return {"type": "websocket.receive", "bytes": message}
        # Not accepted: nothing comes until the handshake is answered.
        await asyncio.shield(self.refused)
        return {"type": "websocket.disconnect", "code": 1006, "reason": ""}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "websocket.accept":
            if self.state != "connecting":
                raise RuntimeError(f"websocket.accept after the handshake was answered ({self.state})")
            await self.ws._accept(message.get("subprotocol"), message.get("headers") or ())
            self.state = "accepted"
            self.worker._websockets[self.slot] = self.ws
        elif kind == "websocket.send":
            if self.state != "accepted":
                raise RuntimeError("websocket.send before websocket.accept")
            data = message.get("bytes")
            await self.ws.send(message["text"] if data is None else data)
        elif kind == "websocket.close":
            if self.state == "connecting":
                self._refuse()
            elif self.state == "accepted":
                await self.ws.close(message.get("code") or 1000, message.get("reason") or "")
        elif kind == "websocket.http.response.start":
            if self.state != "connecting":
                raise RuntimeError("websocket.http.response.start after the handshake was answered")
            self.state = "responding"
            self.response_status = message["status"]
            self.response_headers = list(message.get("headers", ()))
        elif kind == "websocket.http.response.body":
            if self.state != "responding":
                raise RuntimeError("websocket.http.response.body without its start")
            body = bytes(message.get("body", b""))
            more = message.get("more_body", False)
            if self.response_status:
                status, self.response_status = self.response_status, 0
                if not more:
                    self.engine.respond(self.slot, status, self.response_headers, body)
                    self.state = "closed"
                    self.refused.set_result(None)
                    return
                if not self.engine.send_head(self.slot, status, self.response_headers, False):
                    more = False
                    body = b""
            if body and not self.engine.try_send(self.slot, body):
                await self.worker._wait(self.slot, True)
            if not more:
                self.engine.end(self.slot)
                self.state = "closed"
                self.refused.set_result(None)
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} in a websocket scope")


class _Lifespan:
    """Runs the app's ``lifespan`` protocol: startup before the worker registers,
    shutdown after it stopped."""

    def __init__(self, app: ASGIApp, state: Dict[str, Any], mode: str):
        self.app = app
        self.state = state
        self.mode = mode
        self.task: Optional["asyncio.Task[None]"] = None
        self.inbox: "asyncio.Queue[Message]" = asyncio.Queue()
        self.outbox: "asyncio.Queue[Message]" = asyncio.Queue()

    async def startup(self) -> None:
        if self.mode == "off":
            return
        scope = {"type": "lifespan", "asgi": _ASGI, "state": self.state}
        self.task = asyncio.ensure_future(self._run(scope))
        await self.inbox.put({"type": "lifespan.startup"})
        message = await self._reply()
        if message is None:
            return
        if message["type"] == "lifespan.startup.failed":
            raise VyxError(f"ASGI lifespan startup failed: {message.get('message', '')}")

    async def shutdown(self) -> None:
        if self.task is None or self.task.done():
            return
        await self.inbox.put({"type": "lifespan.shutdown"})
        message = await self._reply()
        if message is not None and message["type"] == "lifespan.shutdown.failed":
            log.error("ASGI lifespan shutdown failed: %s", message.get("message", ""))
        if not self.task.done():
            self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    async def _reply(self) -> Optional[Message]:
        """The app's answer, or ``None`` when the app ended (no lifespan support)."""
        assert self.task is not None
        get = asyncio.ensure_future(self.outbox.get())
        await asyncio.wait({get, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if get.done():
            return get.result()
        get.cancel()
        error = self.task.exception()
        if self.mode == "on":
            raise VyxError(f"the ASGI app does not support lifespan: {error!r}")
        if error is not None:
            log.info("the ASGI app does not support lifespan (%r); going on without", error)
        self.task = None
        return None

    async def _run(self, scope: Scope) -> None:
        await self.app(scope, self.inbox.get, self.outbox.put)


def serve_asgi(app: ASGIApp, routes: Optional[Sequence[str]] = None, **options: Any) -> None:
    """Serves ``app`` until SIGTERM or Ctrl-C, then drains; see :class:`ASGIWorker` for
    ``routes`` and ``lifespan``, :class:`vyx.Worker` for the other options."""
    ASGIWorker(app, routes, **options).start()

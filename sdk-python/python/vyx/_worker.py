"""``vyx.Worker``: routes, the asyncio side of the pull loop, and the lifecycle.

The core pulls from the gateway on its own threads and queues what it gets; the loop is
woken through a file descriptor (``loop.add_reader``) and takes the whole queue in one
synchronous call. Nothing here speaks the protocol: requests arrive routed, answers go out
through ``respond``/``try_send``, and the core applies the host rules.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import itertools
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar, Union

from . import _core
from ._errors import (
    AlreadyStartedError,
    ConfigError,
    InvalidResponseError,
    RefusedError,
    StreamError,
    VyxError,
)
from ._logs import (
    _request_id,
    default_log_handler,
    finish_default_handler,
    follow_core_level,
    log_core_records,
)
from ._request import Request
from ._response import Response, _pairs, to_response
from ._websocket import WebSocket, offered_subprotocols, wants_websocket

__version__ = "0.1.0"
SDK = f"vyx-python/{__version__}"

#: The defaults every vyx SDK uses for what its user leaves unset (vyx-core's, in seconds
#: for the timeouts): read from the core, never repeated here.
DEFAULT_MAX_CONCURRENCY: int = _core.DEFAULT_MAX_CONCURRENCY
DEFAULT_CONNECT_TIMEOUT: float = _core.DEFAULT_CONNECT_TIMEOUT
#: How long in-flight requests may take after ``stop()`` or a signal, by default.
DEFAULT_DRAIN_TIMEOUT: float = _core.DEFAULT_DRAIN_TIMEOUT
#: The largest WebSocket message and frame a worker receives by default, in bytes (16 MiB):
#: a larger one closes the connection with 1009.
DEFAULT_WS_MAX_MESSAGE_SIZE: int = _core.DEFAULT_WS_MAX_MESSAGE
DEFAULT_WS_MAX_FRAME_SIZE: int = _core.DEFAULT_WS_MAX_FRAME

log = logging.getLogger("vyx")

F = TypeVar("F", bound=Callable[..., Any])
_END = object()


class State:
    """A connection-state change: ``kind`` is ``connecting``, ``connected``,
    ``reconnecting``, ``draining``, ``stopped`` or ``failed``."""

    __slots__ = ("kind", "connection_id", "attempt", "delay", "cause")

    def __init__(self, raw: Tuple[Any, ...]):
        self.kind: str = raw[0]
        #: The gateway's id for the connection (``connected``).
        self.connection_id: Optional[str] = raw[1] if self.kind == "connected" else None
        #: Retry number, 1-based, and the delay in seconds before it (``reconnecting``).
        self.attempt: Optional[int] = raw[1] if self.kind == "reconnecting" else None
        self.delay: Optional[float] = raw[2] if self.kind == "reconnecting" else None
        #: Why (``reconnecting``, ``failed``).
        self.cause: Optional[str] = (
            raw[3] if self.kind == "reconnecting" else raw[1] if self.kind == "failed" else None
        )

    def __repr__(self) -> str:
        extra = self.connection_id or self.cause or ""
        return f"<vyx.State {self.kind}{' ' + extra if extra else ''}>"


class GatewayState:
    """One session's state: ``gateway`` its registration URL, ``address`` the address it
    dials (``None`` while the host name resolves to nothing), ``state`` a :class:`State`."""

    __slots__ = ("gateway", "address", "state")

    def __init__(self, gateway: str, address: Optional[str], state: State):
        self.gateway = gateway
        self.address = address
        self.state = state

    def __repr__(self) -> str:
        return f"<vyx.GatewayState {self.gateway} {self.address} {self.state.kind}>"


class _Route:
    __slots__ = ("method", "path", "handler", "is_async", "answers_itself", "subprotocols")

    def __init__(
        self,
        method: str,
        path: str,
        handler: Callable[..., Any],
        answers_itself: bool = False,
        subprotocols: Optional[Sequence[str]] = None,
    ):
        self.method = method
        self.path = path
        self.handler = handler
        #: An adapter (ASGI, WSGI) that answers through the engine itself.
        self.answers_itself = answers_itself
        #: A ``ws`` route: the subprotocols it speaks (a list, maybe empty); else ``None``.
        self.subprotocols = subprotocols
        self.is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)
        )


class Worker:
    """A worker: it dials the gateway, registers its routes and serves what the gateway
    sends until stopped.

    ``connect``, ``id``, ``token`` and ``ca_file`` default to ``VYX_CONNECT``,
    ``VYX_WORKER_ID``, ``VYX_TOKEN`` and ``VYX_CA_FILE`` (local mode sets them);
    ``max_concurrency``, ``connect_timeout`` and ``drain_timeout`` (seconds) to
    :data:`DEFAULT_MAX_CONCURRENCY`, :data:`DEFAULT_CONNECT_TIMEOUT` and
    :data:`DEFAULT_DRAIN_TIMEOUT`; ``ws_max_message_size`` and ``ws_max_frame_size``
    (bytes: a WebSocket message or frame past them closes it 1009) to
    :data:`DEFAULT_WS_MAX_MESSAGE_SIZE` and :data:`DEFAULT_WS_MAX_FRAME_SIZE`; ``instance``
    names this process among replicas of the same id (default: host, pid and random bits).
    Settings are checked at once (:class:`vyx.ConfigError`). ``connect`` is one gateway URL
    or a list: the worker holds a session to each gateway and to each address of its host
    name, and to one address as many as its gateway asks for (one per gateway shard, so that
    a request is served on the core that took it; :meth:`gateways` lists them).

    .. code-block:: python

        worker = vyx.Worker("ws://127.0.0.1:9000", "py:api", instance="blue-1", connect_timeout=2.5)

    ``async def`` handlers run on the worker's loop; plain ``def`` handlers run in a thread
    pool of ``max_threads`` threads, with the body read before they are called.
    """

    def __init__(
        self,
        connect: Union[str, Sequence[str], None] = None,
        id: Optional[str] = None,  # noqa: A002 - the name the docs use
        token: Optional[str] = None,
        *,
        max_concurrency: Optional[int] = None,
        ca_file: Optional[str] = None,
        labels: Optional[Dict[str, str]] = None,
        instance: Optional[str] = None,
        connect_timeout: Optional[float] = None,
        drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
        max_threads: Optional[int] = None,
        ws_max_message_size: Optional[int] = None,
        ws_max_frame_size: Optional[int] = None,
    ):
        # Checked here, not when the pool is first made: a bad size would otherwise fail
        # the first plain `def` request instead of the constructor.
        if max_threads is not None and (
            isinstance(max_threads, bool) or not isinstance(max_threads, int) or max_threads < 1
        ):
            raise ConfigError(f"max_threads must be a whole number of at least 1, got {max_threads!r}")
        self._engine = _core.Engine(
            [connect] if isinstance(connect, str) else list(connect or []),
            id or "",
            token,
            max_concurrency,
            ca_file,
            list(labels.items()) if labels else None,
            SDK,
            instance,
            connect_timeout,
            ws_max_message_size,
            ws_max_frame_size,
        )
        self.drain_timeout = drain_timeout
        self._max_threads = max_threads
        self._routes: Dict[int, _Route] = {}
        self._state_callbacks: List[Callable[[State], Any]] = []
        self._state: State = State(("connecting",))
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._tasks: Dict[int, "asyncio.Task[None]"] = {}
        self._waits: Dict[Tuple[int, bool], "asyncio.Future[Optional[str]]"] = {}
        # WebSocket operations in the core, by token (see _ws_start).
        self._ws_waits: Dict[int, "asyncio.Future[Tuple[str, Any]]"] = {}
        self._ws_tokens = itertools.count(1)
        # Accepted WebSockets by slot: a reset reaches their handlers as a close, not a cancel.
        self._websockets: Dict[int, Any] = {}
        self._closing: "set[asyncio.Task[None]]" = set()
        self._end: Optional["asyncio.Future[Tuple[str, str]]"] = None
        self._pool: Optional[ThreadPoolExecutor] = None
        self._started = False
        self._stop_requested = False
        self._signalled = False
        self._forced = False

    # -- configuration -------------------------------------------------------------------

    @property
    def id(self) -> str:
        """The worker id (after the environment defaults)."""
        return self._engine.worker_id

    @property
    def connect(self) -> List[str]:
        """The gateway addresses (after the environment defaults)."""
        return self._engine.connect

    def gateways(self) -> List[GatewayState]:
        """Each session's latest state: the worker holds one per gateway, and per address
        of a gateway's host name, and the extra ones a gateway asks for (one per gateway
        shard, with the same gateway and address). ``state`` is their aggregate:
        ``connected`` while at least one session is."""
        return [GatewayState(g, a, State(s)) for g, a, s in self._engine.gateways()]

    @property
    def state(self) -> State:
        """The latest connection state the loop has seen."""
        return self._state

    def add_route(
        self, method: str, path: str, handler: Callable[..., Any], *, idempotent: bool = False
    ) -> None:
        """Serves ``method`` (upper-case, or ``*`` for any) on ``path`` (``{name}``
        parameters, a trailing ``{*rest}``) with ``handler``. Only before the start.

        ``idempotent=True`` declares that repeating one of its requests is safe: the gateway
        may then retry it on another replica when the first is lost before answering,
        whatever its method (GET, HEAD, OPTIONS, PUT, DELETE and TRACE are retried anyway)::

            worker.add_route("POST", "/orders", create_order, idempotent=True)
        """
        route_id = self._add(method, path, handler, False)
        if idempotent:
            self._engine.set_idempotent(route_id)

    def _add(
        self,
        method: str,
        path: str,
        handler: Callable[..., Any],
        answers_itself: bool,
        subprotocols: Optional[Sequence[str]] = None,
    ) -> int:
        method = method.upper()
        route_id = self._engine.add_route(method, path)
        self._routes[route_id] = _Route(method, path, handler, answers_itself, subprotocols)
        return route_id

    def route(self, method: str, path: str, *, idempotent: bool = False) -> Callable[[F], F]:
        """Decorator form of :meth:`add_route`:
        ``@worker.route("POST", "/orders", idempotent=True)``."""

        def register(handler: F) -> F:
            self.add_route(method, path, handler, idempotent=idempotent)
            return handler

        return register

    def get(self, path: str) -> Callable[[F], F]:
        """Serves ``GET`` (and ``HEAD``, without the body, unless a HEAD route exists)."""
        return self.route("GET", path)

    def head(self, path: str) -> Callable[[F], F]:
        """Serves ``HEAD`` (without it, a ``GET`` route of the same path does)."""
        return self.route("HEAD", path)

    def post(self, path: str) -> Callable[[F], F]:
        return self.route("POST", path)

    def put(self, path: str) -> Callable[[F], F]:
        return self.route("PUT", path)

    def patch(self, path: str) -> Callable[[F], F]:
        return self.route("PATCH", path)

    def delete(self, path: str) -> Callable[[F], F]:
        return self.route("DELETE", path)

    def any(self, path: str) -> Callable[[F], F]:
        """Serves every method (a ``*`` route)."""
        return self.route("*", path)

    def ws(self, path: str, *, subprotocols: Sequence[str] = ()) -> Callable[[F], F]:
        """Serves WebSocket connections on ``path`` (a ``GET`` route): ``handler(ws)`` gets
        each one accepted, as a :class:`vyx.WebSocket`, with the first of the client's
        subprotocols that is in ``subprotocols``. The connection is closed (1000) when the
        handler returns, 1011 when it raises. A request that is not a WebSocket handshake
        is answered 426.

        .. code-block:: python

            @worker.ws("/chat/{room}")
            async def chat(ws: vyx.WebSocket):
                async for message in ws:
                    await ws.send(f"{ws.request.params['room']}: {message}")
        """

        def register(handler: F) -> F:
            if not inspect.iscoroutinefunction(handler):
                raise ConfigError("a WebSocket handler is an async def function")
            self._add("GET", path, handler, False, list(subprotocols))
            return handler

        return register

    def on_state(self, callback: Callable[[State], Any]) -> Callable[[State], Any]:
        """Calls ``callback(state)`` on the loop for every connection-state change, in order,
        none skipped. Usable as a decorator."""
        self._state_callbacks.append(callback)
        return callback

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Runs the worker in a new event loop until it is stopped: SIGTERM and SIGINT
        drain it (in-flight requests get ``drain_timeout`` seconds), a second one stops it
        at once. Raises :class:`vyx.RefusedError` when the gateway refuses the worker for
        good."""
        asyncio.run(self.serve(handle_signals=True))

    async def serve(self, *, handle_signals: bool = False) -> None:
        """Runs the worker on the running loop until it is stopped. With
        ``handle_signals``, SIGTERM and SIGINT drain it. Cancelling this drains at once.
        A second call raises :class:`vyx.AlreadyStartedError`: a worker runs once.

        Without a ``logging`` configuration, the ``vyx`` loggers' INFO lines (the worker
        registered, reconnecting, drained) go to stderr; the core's records go to the
        ``vyx.core`` logger at its effective level when the worker starts."""
        if self._started:
            raise AlreadyStartedError("the worker has started already: a worker runs once")
        self._started = True
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._end = loop.create_future()
        if self._stop_requested:
            return
        default_log_handler()
        follow_core_level()
        signals: List[int] = []
        if handle_signals:
            # Before the engine starts: its own thread may be welcomed by the gateway
            # before this one reaches the next line, and a SIGTERM from then on must
            # drain the worker, not kill the process.
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig)
                signals.append(sig)
        try:
            self._engine.start()
        except BaseException:
            for sig in signals:
                loop.remove_signal_handler(sig)
            raise
        fd = self._engine.fileno()
        loop.add_reader(fd, self._on_ready)
        try:
            try:
                kind, message = await asyncio.shield(self._end)
            except asyncio.CancelledError:
                self._engine.drain(0.0)
                try:
                    await asyncio.wait_for(asyncio.shield(self._end), 5.0)
                except (asyncio.TimeoutError, asyncio.CancelledError):
                    pass
                raise
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            loop.remove_reader(fd)
            await self._shutdown()
        if kind == "refused":
            raise RefusedError(message)
        if kind != "ok":
            raise VyxError(message)

    async def stop(self, timeout: Optional[float] = None) -> None:
        """Drains: no new requests, in-flight ones get ``timeout`` seconds (default
        ``drain_timeout``), then the connection closes. Returns once stopped."""
        self._stop_requested = True
        self._engine.drain(self.drain_timeout if timeout is None else timeout)
        if self._end is not None:
            await asyncio.shield(self._end)

    def _on_signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if self._signalled:
            # As uvicorn: a second Ctrl-C does not wait for the requests in flight.
            log.info("%s again: stopping now (requests in flight are cancelled)", name)
            self._forced = True
            for task in list(self._tasks.values()):
                task.cancel()  # each releases its slot, so the drain ends at once
            return
        self._signalled = True
        log.info("%s: draining (in-flight requests get %ss; again to stop now)", name, self.drain_timeout)
        self._engine.drain(self.drain_timeout)

    async def _shutdown(self) -> None:
        """After the engine stopped: handlers still running are cancelled and awaited, the
        thread pool and the core's runtime are shut down, so no thread is left."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for fut in self._waits.values():
            fut.cancel()
        self._waits.clear()
        for wsfut in self._ws_waits.values():
            wsfut.cancel()
        self._ws_waits.clear()
        if self._pool is not None:
            # Forced: a thread still in a plain handler or WSGI app is not waited for.
            self._pool.shutdown(wait=not self._forced, cancel_futures=True)
            self._pool = None
        self._engine.close()
        finish_default_handler()

    # -- the pull loop -------------------------------------------------------------------

    def _on_ready(self) -> None:
        requests, resets, states, ready, ws, logs, end = self._engine.take()
        if logs:
            log_core_records(logs)
        for raw in states:
            state = State(raw)
            self._state = state
            if state.kind == "draining":
                self._going_away()
            for callback in self._state_callbacks:
                try:
                    callback(state)
                except Exception:
                    log.exception("state callback failed")
        if requests:
            loop = self._loop
            assert loop is not None
            for slot, route_id, method, target, params, headers, ip, scheme, version, up in requests:
                route = self._routes[route_id]
                req = Request(
                    self, slot, method, target, params, headers, route.path, ip, scheme, version, up
                )
                self._tasks[slot] = loop.create_task(self._serve_one(route, req))
        for slot, writable, error in ready:
            fut = self._waits.pop((slot, writable), None)
            if fut is not None and not fut.done():
                fut.set_result(error)
        for token, kind, value in ws:
            wsfut = self._ws_waits.pop(token, None)
            if wsfut is not None and not wsfut.done():
                wsfut.set_result((kind, value))
        for slot in resets:
            if slot in self._websockets:
                # Its handler learns it from the WebSocket (a close 1006), as from any loss.
                continue
            task = self._tasks.pop(slot, None)
            if task is not None:
                task.cancel()
            # A task cancelled before it ran never reaches its own release.
            self._engine.release(slot)
        if end is not None and self._end is not None and not self._end.done():
            self._end.set_result(end)

    async def _wait(self, slot: int, writable: bool) -> None:
        """Waits until the slot is writable (or readable); raises if it failed."""
        assert self._loop is not None
        fut = self._loop.create_future()
        self._waits[(slot, writable)] = fut
        try:
            self._engine.watch(slot, writable)
            error = await fut
        finally:
            self._waits.pop((slot, writable), None)
        if error is not None:
            raise StreamError(error)

    def _going_away(self) -> None:
        """Draining: an open WebSocket never ends by itself, so each is closed 1001 now (as
        uvicorn closes them at shutdown) rather than cut at the drain's deadline."""
        assert self._loop is not None
        for ws in list(self._websockets.values()):
            task = self._loop.create_task(ws.close(1001, "going away"))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def _ws_start(self, start: Callable[[int], None]) -> "asyncio.Future[Tuple[str, Any]]":
        """Starts one WebSocket operation in the core (``start(token)``); the future gets
        its ``(kind, value)`` when the loop takes the outcome."""
        assert self._loop is not None
        token = next(self._ws_tokens)
        fut: "asyncio.Future[Tuple[str, Any]]" = self._loop.create_future()
        self._ws_waits[token] = fut
        try:
            start(token)
        except BaseException:
            del self._ws_waits[token]
            raise
        return fut

    def _threads(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._max_threads, thread_name_prefix="vyx-handler")
        return self._pool

    async def _serve_one(self, route: _Route, req: Request) -> None:
        slot = req._slot
        engine = self._engine
        # This task's own context: the handler, and what it calls or starts, see the id.
        # (The raw bytes: decoding every header of every request would cost on the hot path.)
        rid = req.headers.raw_value("x-request-id")
        _request_id.set(None if rid is None else rid.decode("latin-1"))
        try:
            if route.subprotocols is not None:
                await self._serve_ws(route, req)
                return
            if route.answers_itself:
                await route.handler(req)
                return
            if route.is_async:
                result = await route.handler(req)
            else:
                await req.body()
                assert self._loop is not None
                ctx = contextvars.copy_context()  # executors do not carry it themselves
                result = await self._loop.run_in_executor(
                    self._threads(), ctx.run, _call_in_thread, route.handler, req
                )
            await self._send(slot, to_response(result))
        except asyncio.CancelledError:
            pass  # the stream was reset or the worker is stopping: nobody gets an answer
        except InvalidResponseError as e:
            log.error("%s %s: %s", req.method, route.path, e)
        except StreamError as e:
            log.debug("%s %s: response not sent: %s", req.method, route.path, e)
        except Exception:
            log.exception("handler of %s %s failed; answering 500", req.method, route.path)
            engine.fail(slot, "handler raised an exception")
        finally:
            self._tasks.pop(slot, None)
            engine.release(slot)

    async def _serve_ws(self, route: _Route, req: Request) -> None:
        slot = req._slot
        if not wants_websocket(req):
            self._engine.respond(
                slot, 426, [("content-type", "text/plain")], b"a WebSocket handshake is required\n"
            )
            return
        speaks = route.subprotocols or ()
        ws = WebSocket(self, req)
        await ws._accept(next((p for p in offered_subprotocols(req) if p in speaks), None))
        self._websockets[slot] = ws
        try:
            await route.handler(ws)
        except Exception:
            log.exception("WebSocket handler of %s failed; closing 1011", route.path)
            await ws.close(1011, "handler failed")
        finally:
            try:
                await ws.close()
            finally:
                del self._websockets[slot]
                self._engine.ws_release(slot)

    async def _send(self, slot: int, res: Response) -> None:
        engine = self._engine
        body = res.body
        if isinstance(body, str):
            body = body.encode()
        if body is None:
            body = b""
        if isinstance(body, (bytes, bytearray, memoryview)):
            if not res.trailers:
                engine.respond(slot, res.status, res.headers, bytes(body))
                return
            body = [body]  # trailers follow a streamed body only
        if not engine.send_head(slot, res.status, res.headers, False):
            await _close(body)  # HEAD, 204, 304: the body is not wanted
            return
        try:
            if hasattr(body, "__aiter__"):
                async for chunk in body:
                    await self._write(slot, chunk)
            elif isinstance(body, (list, tuple)):
                for chunk in body:
                    await self._write(slot, chunk)
            else:
                # A plain iterator may block (a file, a generator that sleeps): each
                # next() runs in the thread pool, never on the loop.
                it = iter(body)
                assert self._loop is not None
                while True:
                    chunk = await self._loop.run_in_executor(self._threads(), next, it, _END)
                    if chunk is _END:
                        break
                    await self._write(slot, chunk)
        finally:
            await _close(body)
        trailers = _pairs(res.trailers)
        if trailers:
            engine.end_with_trailers(slot, b"", trailers)
        else:
            engine.end(slot)

    async def _write(self, slot: int, chunk: Any) -> None:
        if isinstance(chunk, str):
            chunk = chunk.encode()
        if not chunk:
            return
        if not self._engine.try_send(slot, bytes(chunk)):
            await self._wait(slot, True)


def thread_failure(e: BaseException) -> BaseException:
    """What an exception raised in a handler's thread becomes on the loop. KeyboardInterrupt or
    SystemExit raised there is no signal to the process: re-raised on the loop it would end the
    worker, so it becomes an error that fails its request only."""
    if isinstance(e, Exception):
        return e
    failure = RuntimeError(f"the handler raised {e!r}")
    failure.__cause__ = e
    return failure


def _call_in_thread(handler: Callable[[Request], Any], req: Request) -> Any:
    try:
        return handler(req)
    except Exception:
        raise
    except BaseException as e:
        raise thread_failure(e) from e


async def _close(body: Any) -> None:
    """Closes a body iterator (``aclose`` of an async generator, ``close`` of a generator or
    file), so that its ``finally`` blocks run."""
    try:
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            await aclose()
            return
        close = getattr(body, "close", None)
        if callable(close):
            close()
    except Exception:
        log.exception("closing a response body failed")


"""WSGI apps (Flask, ...) served as they are, the way a threaded server (gunicorn's
``gthread``, waitress) serves them: the request body is read first (WSGI reads it
synchronously), then one thread of the worker's pool runs the app *and* iterates its
response to the end, so a response in progress never waits behind app calls queued after it.
Each chunk goes out when the app yields it (no chunk is read ahead); the thread waits while
the gateway's window is full. A response whose first chunk is its whole body (a one-item
list, or a chunk as long as its ``content-length``) goes out in one ``respond`` call."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import io
import logging
import sys
import threading
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple
from urllib.parse import unquote

from ._request import Request
from ._routes import claim, wsgi_routes
from ._worker import Worker, thread_failure

log = logging.getLogger("vyx.wsgi")

WSGIApp = Callable[[dict, Callable[..., Any]], Iterable[bytes]]


class WSGIWorker(Worker):
    """A worker serving one WSGI app on ``routes`` (default: the app's URL map when it is a
    Flask app, else ``/{*rest}``). Each request holds one thread of the pool while the app
    runs and its response is sent, so ``max_threads`` (default Python's
    ``min(32, os.cpu_count() + 4)``) is how many requests run at once, as gunicorn's
    ``--threads``."""

    def __init__(self, app: WSGIApp, routes: Optional[Sequence[str]] = None, **options: Any):
        super().__init__(**options)
        self.app = app
        claim(self, self._handle, routes, wsgi_routes(app))

    def _environ(self, req: Request, body: bytes) -> dict:
        host = req.headers.get("host", "")
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit():
            name, port = host, "80"
        environ: Dict[str, Any] = {
            "REQUEST_METHOD": req.method,
            "SCRIPT_NAME": "",
            # PEP 3333: the path decoded, as latin-1 text of the bytes.
            "PATH_INFO": unquote(req.path, encoding="latin-1"),
            "QUERY_STRING": req.raw_query or "",
            "SERVER_NAME": name,
            "SERVER_PORT": port,
            "SERVER_PROTOCOL": "HTTP/" + req.http_version,
            "REMOTE_ADDR": req.client_ip or "",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": req._scheme,
            "wsgi.input": io.BytesIO(body),
            # The body was read to its end: an app may read wsgi.input without a length
            # (a chunked upload has none), as under gunicorn.
            "wsgi.input_terminated": True,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        if body:
            # The length read, whatever the client said; a bodyless request has none, as
            # under gunicorn and waitress.
            environ["CONTENT_LENGTH"] = str(len(body))
        elif "content-length" in req.headers:
            environ["CONTENT_LENGTH"] = "0"
        for raw_name, raw_value in req.headers.raw:
            if b"_" in raw_name:
                # CGI maps "-" to "_": X_Forwarded_For would become (or join, first)
                # HTTP_X_FORWARDED_FOR. Dropped, as gunicorn and nginx do.
                continue
            name = raw_name.decode("latin-1").upper().replace("-", "_")
            value = raw_value.decode("latin-1")
            if name == "CONTENT_TYPE":
                environ["CONTENT_TYPE"] = value
                continue
            if name == "CONTENT_LENGTH":
                continue
            key = "HTTP_" + name
            environ[key] = environ[key] + "," + value if key in environ else value
        return environ

    async def _handle(self, req: Request) -> None:
        body = await req.body()
        environ = self._environ(req, body)
        loop = self._loop
        assert loop is not None
        exchange = _Exchange(loop)
        # The app's thread sees the request id (vyx.request_id()) as the loop's task does.
        ctx = contextvars.copy_context()
        loop.run_in_executor(self._threads(), ctx.run, exchange.run, self.app, environ)
        try:
            await exchange.answer(self, req._slot)
        finally:
            exchange.close()


class _Gone(Exception):
    """The request's answer is over (the client left, the worker stops, or the answer
    failed): the app's thread stops iterating."""


# What the app's thread asks of the loop.
_CHUNK, _WHOLE, _END, _ERROR = range(4)


class _Exchange:
    """One request between the app's thread and the loop. The thread hands over one step at
    a time (a chunk, the whole body, the end, an error) and waits until the loop has done it:
    engine calls stay on the loop, and an unsent chunk is never more than one."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.steps: "asyncio.Queue[Tuple[int, Any, Optional[concurrent.futures.Future]]]" = (
            asyncio.Queue()
        )
        self.lock = threading.Lock()
        self.closed = False
        self.waiting: Optional[concurrent.futures.Future] = None
        #: ``(status, headers)`` from start_response; the headers as latin-1 bytes.
        self.head: Optional[Tuple[int, List[Tuple[bytes, bytes]]]] = None
        self.head_sent = False
        self.body_wanted = True

    # -- the app's thread ----------------------------------------------------------------

    def run(self, app: WSGIApp, environ: dict) -> None:
        if self.closed:
            return  # the client left while the request waited for a thread
        try:
            result = app(environ, self.start_response)
            try:
                self._send_all(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except _Gone:
            pass
        except BaseException as e:
            if not self._post(_ERROR, thread_failure(e)):
                # After the answer was over (a close() that raised): nobody to tell.
                log.exception("the WSGI app failed after its response was sent")

    def _send_all(self, result: Iterable[Any]) -> None:
        if not self.head_sent and hasattr(result, "__len__") and len(result) == 1:  # type: ignore[arg-type]
            # A one-item list: the whole body, with its length (as waitress does).
            self._step(_WHOLE, b"".join(bytes(c) for c in result))
            return
        whole = False
        for chunk in result:
            if not chunk or whole:
                continue  # past the whole body: dropped, as a server past content-length
            if not self.head_sent and len(chunk) == self._declared_length():
                self._step(_WHOLE, bytes(chunk))
                whole = True
            elif not self._step(_CHUNK, bytes(chunk)):
                break  # HEAD, 204, 304: the body is not wanted
        if not whole:
            self._step(_END, None)

    def _declared_length(self) -> Optional[int]:
        if self.head is None:
            return None
        for name, value in self.head[1]:
            if name.lower() == b"content-length":
                return int(value) if value.strip().isdigit() else None
        return None

    def start_response(
        self, status: str, headers: List[Tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            if self.head_sent:
                raise exc_info[1].with_traceback(exc_info[2])
        elif self.head is not None:
            raise RuntimeError("start_response called twice without exc_info")
        # PEP 3333: header values are latin-1 text (a str the server encodes as latin-1).
        self.head = (int(status.split(" ", 1)[0]), [(_latin1(n), _latin1(v)) for n, v in headers])
        return self.write

    def write(self, data: bytes) -> None:
        """PEP 3333's ``write()``: the data goes out before the app's iterable."""
        if data:
            self._step(_CHUNK, bytes(data))

    def _step(self, kind: int, data: Any) -> bool:
        """Hands a step to the loop and waits until it is done; whether the body is
        still wanted."""
        done: concurrent.futures.Future = concurrent.futures.Future()
        with self.lock:
            if self.closed:
                raise _Gone()
            self.waiting = done
        self.loop.call_soon_threadsafe(self.steps.put_nowait, (kind, data, done))
        return done.result()

    def _post(self, kind: int, data: Any) -> bool:
        """Hands a step to the loop without waiting; whether anyone will take it."""
        with self.lock:
            if self.closed:
                return False
            try:
                self.loop.call_soon_threadsafe(self.steps.put_nowait, (kind, data, None))
            except RuntimeError:
                return False  # the loop is closed
            return True

    # -- the loop ------------------------------------------------------------------------

    async def answer(self, worker: Worker, slot: int) -> None:
        """Does the thread's steps until the answer is over; raises what the app raised."""
        engine = worker._engine
        while True:
            kind, data, done = await self.steps.get()
            if kind == _ERROR:
                raise data
            if self.head is None:
                raise RuntimeError("the WSGI app did not call start_response")
            status, headers = self.head
            try:
                if kind == _WHOLE:
                    self.head_sent = True
                    engine.respond(slot, status, headers, data)
                elif kind == _END:
                    if not self.head_sent:
                        # No content-length is claimed for a body never seen (HEAD of a
                        # streamed response, as gunicorn).
                        self.head_sent = True
                        engine.send_head(slot, status, headers, True)
                    elif self.body_wanted:
                        engine.end(slot)
                else:
                    if not self.head_sent:
                        self.head_sent = True
                        self.body_wanted = engine.send_head(slot, status, headers, False)
                    if self.body_wanted and not engine.try_send(slot, data):
                        await worker._wait(slot, True)
            except BaseException:
                assert done is not None
                done.set_exception(_Gone())
                raise
            assert done is not None
            done.set_result(self.body_wanted)
            if kind != _CHUNK:
                return

    def close(self) -> None:
        """The answer is over: the thread's next step raises ``_Gone``."""
        with self.lock:
            self.closed = True
            waiting = self.waiting
        if waiting is not None and not waiting.done():
            waiting.set_exception(_Gone())


def _latin1(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("latin-1")


def serve_wsgi(app: WSGIApp, routes: Optional[Sequence[str]] = None, **options: Any) -> None:
    """Serves ``app`` until SIGTERM or Ctrl-C, then drains; see :class:`WSGIWorker` for
    ``routes``, :class:`vyx.Worker` for the other options. ``max_threads`` is how many
    requests the app serves at once (as gunicorn's ``--threads``)::

        vyx.serve_wsgi(app, max_threads=16)
    """
    WSGIWorker(app, routes, **options).start()

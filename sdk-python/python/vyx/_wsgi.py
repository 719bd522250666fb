"""WSGI apps (Flask, ...) served as they are, on the worker's thread pool: the request body
is read first (WSGI reads it synchronously), the app and every ``next()`` of its response
run in the pool, never on the loop. A one-chunk response goes out in one ``respond`` call;
longer ones stream with backpressure."""

from __future__ import annotations

import io
import sys
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple
from urllib.parse import unquote

from ._request import Request
from ._routes import DEFAULT_ROUTES, wsgi_routes
from ._worker import Worker

WSGIApp = Callable[[dict, Callable[..., Any]], Iterable[bytes]]

_END = object()


class WSGIWorker(Worker):
    """A worker serving one WSGI app on ``routes`` (default: the app's URL map when it is a
    Flask app, else ``/{*rest}``)."""

    def __init__(self, app: WSGIApp, routes: Optional[Sequence[str]] = None, **options: Any):
        super().__init__(**options)
        self.app = app
        for path in routes or wsgi_routes(app) or DEFAULT_ROUTES:
            self._add("*", path, self._handle, True)

    def _environ(self, req: Request, body: bytes) -> dict:
        host = req.headers.get("host", "")
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit():
            name, port = host, "80"
        proto = req.headers.get("x-forwarded-proto", "http")
        environ = {
            "REQUEST_METHOD": req.method,
            "SCRIPT_NAME": "",
            # PEP 3333: the path decoded, as latin-1 text of the bytes.
            "PATH_INFO": unquote(req.path, encoding="latin-1"),
            "QUERY_STRING": req.raw_query or "",
            "SERVER_NAME": name,
            "SERVER_PORT": port,
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": req.headers.get("x-forwarded-for", "").rsplit(",", 1)[-1].strip(),
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": proto,
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
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
        pool = self._threads()
        head: List[Any] = []

        def start_response(status: str, headers: List[Tuple[str, str]], exc_info: Any = None):
            if exc_info is not None and head:
                raise exc_info[1].with_traceback(exc_info[2])
            head[:] = [int(status.split(" ", 1)[0]), list(headers)]
            return lambda data: None  # the legacy write(): not supported, and rarely used

        def first() -> Tuple[Iterable[bytes], Any, Any]:
            result = self.app(environ, start_response)
            it = iter(result)
            return result, _next(it), it

        result, chunk, it = await loop.run_in_executor(pool, first)
        engine = self._engine
        slot = req._slot
        try:
            second = _END if chunk is _END else await loop.run_in_executor(pool, _next, it)
            if not head:
                raise RuntimeError("the WSGI app did not call start_response")
            status, headers = head
            if second is _END:
                engine.respond(slot, status, headers, b"" if chunk is _END else chunk)
                return
            if not engine.send_head(slot, status, headers, False):
                return
            while chunk is not _END:
                if chunk and not engine.try_send(slot, chunk):
                    await self._wait(slot, True)
                chunk, second = second, (
                    _END if second is _END else await loop.run_in_executor(pool, _next, it)
                )
            engine.end(slot)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                await loop.run_in_executor(pool, close)


def _next(it: Any) -> Any:
    """The next non-empty chunk, or ``_END``."""
    for chunk in it:
        if chunk:
            return bytes(chunk)
    return _END


def serve_wsgi(app: WSGIApp, routes: Optional[Sequence[str]] = None, **options: Any) -> None:
    """Serves ``app`` until SIGTERM or Ctrl-C, then drains; see :class:`WSGIWorker` for
    ``routes``, :class:`vyx.Worker` for the other options."""
    WSGIWorker(app, routes, **options).start()

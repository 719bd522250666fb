"""A pytest plugin that runs a Werkzeug/Flask test suite with its traffic going through vyx.

Flask's tests call their app in-process through Werkzeug's test ``Client``, whose requests all
end in ``werkzeug.test.Client.run_wsgi_app``. This plugin replaces the client's app there with a
WSGI app that sends the request over real HTTP to a ``vyx`` gateway (the binary of this
checkout) and answers with what the gateway answered. Behind the gateway, a vyx Python
worker (``vyx.WSGIWorker``, what ``serve_wsgi`` runs) serves the test's real app from a thread
of this process: the test builds its app and routes as it always does, and every request of the
test reaches it through gateway and worker.

Each request carries the app it is for as a token header (removed before the app sees the
request), so the one worker serves whichever app the test built. An exception the app raises is
re-raised in the test after the gateway's 500 arrives, as the in-process client would have let it
through (Flask's ``TESTING`` propagates exceptions); that is the in-process seam, not vyx.

Loaded with ``-p vyx_through`` (``run-flask-suite`` does it); the gateway binary is
``$VYX_GATEWAY``, else ``$CARGO_TARGET_DIR/release/vyx``, as in ``sdk-python/tests``.
"""

from __future__ import annotations

import asyncio
import http.client
import itertools
import os
import subprocess
import threading
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple
from urllib.parse import quote

import werkzeug.test

import vyx

WAIT = 20.0
TOKEN = "x-vyx-through-app"
_TOKEN_ENVIRON = "HTTP_" + TOKEN.upper().replace("-", "_")
# Transport framing the gateway's HTTP/1.1 answer carries and an in-process call has not.
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding"}


class _Apps:
    """The apps requests are in flight for, by token; what each raised."""

    def __init__(self) -> None:
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self.apps: Dict[str, Callable[..., Any]] = {}
        self.raised: Dict[str, BaseException] = {}

    def enter(self, app: Callable[..., Any]) -> str:
        token = str(next(self._ids))
        with self._lock:
            self.apps[token] = app
        return token

    def leave(self, token: str) -> Optional[BaseException]:
        with self._lock:
            self.apps.pop(token, None)
            return self.raised.pop(token, None)

    def dispatch(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The worker's WSGI app: the test's app of this request's token."""
        token = environ.pop(_TOKEN_ENVIRON, None)
        app = self.apps.get(token) if token is not None else None
        if app is None:
            start_response("599 No Test App", [("content-type", "text/plain")])
            return [b"no test app for this request"]
        try:
            return app(environ, start_response)
        except BaseException as e:
            with self._lock:
                self.raised[token] = e
            raise


class _Gateway:
    def __init__(self) -> None:
        binary = os.environ.get("VYX_GATEWAY") or os.path.join(
            os.environ["CARGO_TARGET_DIR"], "release", "vyx"
        )
        self.proc = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        )
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").strip()
            if line.startswith("listening http://"):
                self.addr = line[len("listening http://") :]
                break
        else:
            raise RuntimeError(f"the gateway exited before listening: {self.proc.wait()}")
        # Keeps reading so the gateway never blocks on a full pipe.
        self.reader = threading.Thread(target=self.proc.stdout.read, daemon=True)
        self.reader.start()

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(WAIT)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


class _Worker:
    """A WSGIWorker on its own loop in a thread, registered before the suite starts."""

    def __init__(self, app: Callable[..., Any], connect: str) -> None:
        self.worker = vyx.WSGIWorker(app, ["/{*rest}"], connect=connect, id="py:flask-suite")
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        connected = threading.Event()

        @self.worker.on_state
        def record(state: vyx.State) -> None:
            if state.kind == "connected":
                connected.set()

        self.thread = threading.Thread(target=self._run, args=(connected,), daemon=True)
        self.thread.start()
        if not connected.wait(WAIT):
            raise RuntimeError(f"the worker did not register within {WAIT}s")

    def _run(self, connected: threading.Event) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            await self.worker.serve()

        try:
            asyncio.run(main())
        finally:
            connected.set()

    def close(self) -> None:
        if self.loop is not None and self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.worker.stop(5.0), self.loop).result(WAIT)
        self.thread.join(WAIT)


def _target(environ: dict) -> str:
    """The request target as the client would have sent it."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        # Latin-1 text of the bytes (PEP 3333); what is not ASCII goes percent-encoded.
        return quote(raw.encode("latin-1"), safe="!#$%&'()*+,/:;=?@[]~")
    path = quote(environ.get("PATH_INFO", "").encode("latin-1"), safe="/:@!$&'()*+,;=-._~")
    query = environ.get("QUERY_STRING")
    return path + ("?" + query if query else "")


def _request_headers(environ: dict) -> List[Tuple[str, str]]:
    headers = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers.append((key[5:].replace("_", "-").title(), value))
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value != "":
            headers.append((key.replace("_", "-").title(), value))
    return headers


def _body(environ: dict) -> bytes:
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    # Left where it was: Werkzeug's client sends the same stream again after a 307/308.
    start = stream.tell() if stream.seekable() else None
    length = environ.get("CONTENT_LENGTH")
    if length:
        body = stream.read(int(length))
    else:
        body = stream.read() if environ.get("wsgi.input_terminated") else b""
    if start is not None:
        stream.seek(start)
    return body


class Through:
    """The gateway, the worker, and the WSGI app that sends a test's request through them."""

    def __init__(self) -> None:
        self.apps = _Apps()
        self.gateway = _Gateway()
        try:
            self.worker = _Worker(self.apps.dispatch, f"ws://{self.gateway.addr}")
        except BaseException:
            self.gateway.close()
            raise
        host, _, port = self.gateway.addr.rpartition(":")
        self.host, self.port = host, int(port)

    def close(self) -> None:
        self.worker.close()
        self.gateway.close()

    def proxy(self, app: Callable[..., Any]) -> Callable[..., Any]:
        """A WSGI app answering as ``app`` answers through vyx."""

        def through_vyx(environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
            token = self.apps.enter(app)
            try:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=WAIT)
                try:
                    method = environ["REQUEST_METHOD"]
                    conn.putrequest(method, _target(environ), skip_host=True, skip_accept_encoding=True)
                    for name, value in _request_headers(environ):
                        conn.putheader(name, value)
                    conn.putheader(TOKEN, token)
                    body = _body(environ)
                    if body and "CONTENT_LENGTH" not in environ:
                        conn.putheader("Content-Length", str(len(body)))
                    conn.endheaders(body or None)
                    res = conn.getresponse()
                    data = res.read()
                finally:
                    conn.close()
            finally:
                raised = self.apps.leave(token)
            if raised is not None:
                raise raised
            headers = [(n, v) for n, v in res.getheaders() if n.lower() not in _HOP_BY_HOP]
            start_response(f"{res.status} {res.reason}", headers)
            return [data]

        return through_vyx


_through: Optional[Through] = None
_direct_client_run = werkzeug.test.Client.run_wsgi_app


def _client_run_through_vyx(self: werkzeug.test.Client, environ: dict, buffered: bool = False) -> Any:
    # The client's own call only: werkzeug.test.run_wsgi_app is also what Werkzeug's
    # Response.force_type calls inside the app (an HTTPException turned into a response).
    assert _through is not None
    app = self.application
    self.application = _through.proxy(app)
    try:
        return _direct_client_run(self, environ, buffered=buffered)
    finally:
        self.application = app


def pytest_configure(config: Any) -> None:
    global _through
    _through = Through()
    werkzeug.test.Client.run_wsgi_app = _client_run_through_vyx  # type: ignore[method-assign]


def pytest_unconfigure(config: Any) -> None:
    global _through
    werkzeug.test.Client.run_wsgi_app = _direct_client_run  # type: ignore[method-assign]
    if _through is not None:
        _through.close()
        _through = None

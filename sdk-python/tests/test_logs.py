"""Logs: the core's records in ``logging`` with their fields, the request id in handlers and
apps and on records, a default that shows connects without configuration, and a closed or
full stderr that costs lines, never the worker."""

from __future__ import annotations

import asyncio
import logging
import signal

import httpx

import vyx
from conftest import OS_THREADS, WAIT, Lines, python_child


def test_core_records_carry_their_fields_as_extra(gateway, serve, caplog):
    caplog.set_level(logging.INFO, logger="vyx.core")
    serve(vyx.Worker(connect=gateway.ws, id="py:fields"))
    registered = [r for r in caplog.records if r.name == "vyx.core" and r.getMessage().startswith("registered ")]
    assert len(registered) == 1, caplog.text
    rec = registered[0]
    assert rec.levelno == logging.INFO
    assert rec.gateway == f"{gateway.ws}/_vyx/register"
    assert rec.worker_id == "py:fields"
    assert rec.connection
    assert rec.rust_target == "vyx_core::session::supervise"


def test_request_id_in_handlers_apps_and_records(gateway, serve, client):
    seen = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    keep = Keep()
    keep.addFilter(vyx.RequestIdFilter())
    app_log = logging.getLogger("test.app")
    app_log.addHandler(keep)
    app_log.setLevel(logging.INFO)
    app_log.propagate = False

    w = vyx.Worker(connect=gateway.ws, id="py:rid")

    @w.get("/async")
    async def in_async(req):
        app_log.info("in async")
        # A task the handler starts has the id too.
        return {"id": vyx.request_id(), "task": await asyncio.create_task(_later())}

    @w.get("/sync")
    def in_sync(req):
        return {"id": vyx.request_id()}

    async def asgi(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": (vyx.request_id() or "").encode()})

    def wsgi(environ, start_response):
        start_response("200 OK", [("content-type", "text/plain")])
        return [(vyx.request_id() or "").encode()]

    serve(w)
    serve(vyx.ASGIWorker(asgi, ["/asgi"], connect=gateway.ws, id="py:rid-asgi"))
    serve(vyx.WSGIWorker(wsgi, ["/wsgi"], connect=gateway.ws, id="py:rid-wsgi"))
    try:
        assert client.get("/async", headers={"x-request-id": "r-1"}).json() == {"id": "r-1", "task": "r-1"}
        assert client.get("/sync", headers={"x-request-id": "r-2"}).json() == {"id": "r-2"}
        assert client.get("/asgi", headers={"x-request-id": "r-3"}).text == "r-3"
        assert client.get("/wsgi", headers={"x-request-id": "r-4"}).text == "r-4"
        # Without one from the client, the gateway's own.
        r = client.get("/sync")
        assert r.json() == {"id": r.headers["x-request-id"]}
        assert vyx.request_id() is None
        app_log.info("outside")
    finally:
        app_log.removeHandler(keep)
    assert [(r.getMessage(), r.request_id) for r in seen] == [("in async", "r-1"), ("outside", "-")]


async def _later():
    await asyncio.sleep(0)
    return vyx.request_id()


# No logging configuration at all, the worker in the app's own loop: the default handler
# shows the connect and the disconnect, and leaves no thread once the worker stopped.
QUIET_SERVE = OS_THREADS + """
import asyncio, os, threading, vyx
w = vyx.Worker()

@w.on_state
def state(s):
    print("state", s.kind, flush=True)

asyncio.run(w.serve(handle_signals=True))
print("threads", threading.active_count(), os_threads(), flush=True)
"""


def test_without_logging_config_connect_and_disconnect_show(gateway):
    child = python_child(QUIET_SERVE, {"VYX_CONNECT": gateway.ws, "VYX_WORKER_ID": "py:quiet-serve"})
    out, err = Lines(child.stdout), Lines(child.stderr)
    try:
        line = err.wait_for(lambda l: "registered" in l, "a registered line on stderr")
        assert "INFO vyx.core: registered" in line and "worker_id=py:quiet-serve" in line
        out.wait_for(lambda l: l == "state connected", "connected")
        child.send_signal(signal.SIGTERM)
        assert child.wait(WAIT) == 0, err.text()
        err.wait_for(lambda l: "drained and disconnected" in l, "the disconnect line")
        # The line may still be on its way through the reader thread.
        assert out.wait_for(lambda l: l.startswith("threads "), "the threads line") == "threads 1 1"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


# Each failing request logs a traceback through the default handler (no configuration).
FAILING = """
import vyx
w = vyx.Worker()

@w.get("/fail")
async def fail(req):
    raise RuntimeError("x" * 200)

@w.get("/ok")
async def ok(req):
    return "ok"

@w.on_state
def state(s):
    print("state", s.kind, flush=True)

w.start()
print("returned", flush=True)
"""


def test_a_full_stderr_stalls_nothing(gateway):
    child = python_child(FAILING, {"VYX_CONNECT": gateway.ws, "VYX_WORKER_ID": "py:full"})
    out = Lines(child.stdout)  # stderr is never read: the pipe fills up
    try:
        out.wait_for(lambda l: l == "state connected", "connected")
        with httpx.Client(timeout=WAIT) as c:
            for _ in range(400):  # about 1 KiB of traceback each: far more than a pipe holds
                assert c.get(gateway.url("/fail")).status_code == 500
            assert c.get(gateway.url("/ok")).text == "ok"
        child.send_signal(signal.SIGTERM)
        out.wait_for(lambda l: l == "returned", "start() returning")
    finally:
        child.kill()
        child.wait()


def test_a_closed_stderr_stops_nothing(gateway):
    child = python_child(FAILING, {"VYX_CONNECT": gateway.ws, "VYX_WORKER_ID": "py:closed"})
    out = Lines(child.stdout)
    try:
        assert "registered" in child.stderr.readline().decode()
        child.stderr.close()  # as `| head -1`: nobody reads it again
        out.wait_for(lambda l: l == "state connected", "connected")
        with httpx.Client(timeout=WAIT) as c:
            for _ in range(20):
                assert c.get(gateway.url("/fail")).status_code == 500
            assert c.get(gateway.url("/ok")).text == "ok"
        child.send_signal(signal.SIGTERM)
        assert child.wait(WAIT) == 0
        out.wait_for(lambda l: l == "returned", "start() returning")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

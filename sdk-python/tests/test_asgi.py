"""ASGI apps and ``python -m vyx`` as uvicorn users expect them: the app's routes the gateway
cannot express widen instead of stopping the worker, FastAPI's slash redirects and
WebSocket routes, app factories, the types mypy checks, Ctrl-C twice, a visible start."""

import logging
import signal
import subprocess
import sys
import threading

import httpx
from fastapi import FastAPI, WebSocket

import vyx
from conftest import WAIT, Lines, python_child
from test_frameworks import registered_routes


def report_app() -> FastAPI:
    app = FastAPI()

    @app.get("/report/{name}.txt")
    async def report(name: str):
        return {"report": name}

    @app.get("/items/{item_id}")
    async def item(item_id: int):
        return {"item_id": item_id}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket):
        await websocket.accept()

    return app


def test_fastapi_routes_the_gateway_cannot_express(gateway, serve, client, caplog):
    caplog.set_level(logging.WARNING, logger="vyx")
    serve(vyx.ASGIWorker(report_app(), connect=gateway.ws, id="py:report"))
    routes = registered_routes(client, "py:report")
    # /report/{name}.txt is no vyx pattern: its smallest covering prefix, with a warning.
    assert "* /report/{*rest}" in routes
    assert client.get("/report/q3.txt").json() == {"report": "q3"}
    assert "/report/{name}.txt" in caplog.text and "/report/{*rest}" in caplog.text
    # The WebSocket route is a GET route of its own (test_asgi_websocket.py serves one).
    assert "GET /ws" in routes and "* /ws" not in routes
    # FastAPI's redirect_slashes: the other form reaches the app, which redirects (as under
    # uvicorn).
    r = client.get("/items/5/", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"].endswith("/items/5")
    assert client.get("/items/5/", follow_redirects=True).json() == {"item_id": 5}


def test_route_patterns_widen_and_gain_their_slash_twins():
    from vyx._routes import covering

    assert covering("/report/{name}.txt") == "/report/{*rest}"
    assert covering("/a/{x}/b{y}/c") == "/a/{x}/{*rest}"
    assert covering("/v{n}") == "/{*rest}"

    from flask import Flask

    flask = Flask("vyx_test_slashes")
    flask.add_url_rule("/dir/", "dir", lambda: "dir")
    flask.add_url_rule("/file", "file", lambda: "file")
    # Werkzeug redirects /dir to /dir/, never /file/ to /file.
    assert vyx.wsgi_routes(flask) == ["/static/{*filename}", "/dir/", "/file", "/dir"]


FACTORY_APP = '''
from fastapi import FastAPI

def create_app(greeting="hello"):
    app = FastAPI()

    @app.get("/greet")
    async def greet():
        return {"greeting": greeting}

    return app
'''


def run_cli(gateway, tmp_path, worker_id, *args):
    """``python -m vyx ARGS`` until it has registered; its stderr lines."""
    child = subprocess.Popen(
        [sys.executable, "-m", "vyx", *args, "--connect", gateway.ws, "--id", worker_id],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    err = Lines(child.stderr)
    err.wait_for(lambda l: "registered" in l, f"{worker_id} registered")
    return child, err


def stop(child) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(WAIT)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()


def test_python_m_vyx_calls_app_factories(gateway, tmp_path, client):
    (tmp_path / "factory_app.py").write_text(FACTORY_APP)
    for worker_id, args, greeting in [
        ("py:call", ["factory_app:create_app()"], "hello"),
        ("py:call-args", ["factory_app:create_app('hi')"], "hi"),
        ("py:factory", ["factory_app:create_app", "--factory"], "hello"),
    ]:
        child, err = run_cli(gateway, tmp_path, worker_id, *args)
        try:
            assert client.get("/greet").json() == {"greeting": greeting}, err.text()
        finally:
            stop(child)
        assert child.returncode == 0, err.text()


# No logging configured: the worker still says it registered, as uvicorn says "Application
# startup complete".
QUIET_CHILD = """
import asyncio, vyx
w = vyx.Worker(drain_timeout=600)

@w.get("/hang")
async def hang(req):
    print("in handler", flush=True)
    await asyncio.Event().wait()

w.start()
print("returned", flush=True)
"""


def test_ctrl_c_twice_stops_at_once_and_the_start_shows_without_logging_config(gateway):
    child = python_child(QUIET_CHILD, {"VYX_CONNECT": gateway.ws, "VYX_WORKER_ID": "py:quiet"})
    out, err = Lines(child.stdout), Lines(child.stderr)
    try:
        line = err.wait_for(lambda l: "registered" in l, "a registered line on stderr")
        assert "py:quiet" in line
        result = {}

        def call():
            with httpx.Client(timeout=WAIT) as c:
                result["status"] = c.get(f"{gateway.base}/hang").status_code

        t = threading.Thread(target=call)
        t.start()
        out.wait_for(lambda l: l == "in handler", "the request in flight")
        child.send_signal(signal.SIGINT)
        # drain_timeout is 600 s: only the second Ctrl-C lets the child exit within WAIT.
        err.wait_for(lambda l: "SIGINT: draining" in l, "the first Ctrl-C's draining line")
        child.send_signal(signal.SIGINT)
        assert child.wait(WAIT) == 0, err.text()
        assert out.lines[-1] == "returned"
        t.join(WAIT)
        assert result.get("status", 0) >= 500  # the request was cut short
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


TYPED = '''
from typing import Dict, Union

from fastapi import FastAPI
from starlette.applications import Starlette
from typing_extensions import assert_type

import vyx

vyx.serve_asgi(FastAPI())
vyx.ASGIWorker(Starlette())


async def handler(req: vyx.Request) -> vyx.Response:
    assert_type(req.params, Dict[str, str])
    if req.method == "HEAD":
        return vyx.Response(200, [(b"content-type", b"text/plain")], b"")
    return vyx.Response.json({"id": req.params["id"]}, headers={"x-id": req.params["id"]})


worker = vyx.Worker("ws://127.0.0.1:9000", "py:typed")


@worker.ws("/chat")
async def chat(ws: vyx.WebSocket) -> None:
    async for message in ws:
        assert_type(message, Union[str, bytes])
        await ws.send(message)
    await ws.close(1000, "bye")
'''


def test_typed_use_passes_mypy(tmp_path):
    (tmp_path / "typed.py").write_text(TYPED)
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "typed.py"],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_response_helpers_take_headers_as_a_mapping(gateway, serve, client):
    w = vyx.Worker(connect=gateway.ws, id="py:helpers")

    @w.get("/json")
    async def as_json(req):
        return vyx.Response.json({"ok": True}, headers={"x-a": "1"})

    @w.get("/text")
    async def as_text(req):
        return vyx.Response.text("ok", 201, headers={})

    serve(w)
    r = client.get("/json")
    assert (r.status_code, r.json(), r.headers["x-a"]) == (200, {"ok": True}, "1")
    assert client.get("/text").status_code == 201

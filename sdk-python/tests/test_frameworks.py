"""Real FastAPI, Starlette and Flask apps, unchanged, behind the real gateway: their own
routes are registered, bodies stream both ways, lifespan runs, failures are 500."""

import asyncio
import contextlib
import hashlib
import os
from typing import Optional

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from flask import Flask, Response as FlaskResponse, jsonify, request as flask_request
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.responses import StreamingResponse as StarletteStreaming
from starlette.routing import Mount, Route

import vyx


def registered_routes(client: httpx.Client, worker_id: str):
    conns = [c for c in client.get("/_vyx/workers").json() if c["id"] == worker_id]
    # One process, with a connection per gateway shard, each declaring the same routes.
    assert len({c["instance"] for c in conns}) == 1, conns
    assert all(c["routes"] == conns[0]["routes"] for c in conns), conns
    return conns[0]["routes"]


class Item(BaseModel):
    name: str
    price: float
    tags: list = []


def fastapi_app(events: list) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app):
        events.append("startup")
        yield {"greeting": "hi from lifespan"}
        events.append("shutdown")

    app = FastAPI(lifespan=lifespan)

    @app.get("/items/{item_id}")
    async def read_item(item_id: int, q: Optional[str] = None):
        return {"item_id": item_id, "q": q}

    @app.post("/items")
    async def create_item(item: Item):
        return {"created": item.model_dump()}

    @app.get("/greeting")
    async def greeting(request: StarletteRequest):
        return {"greeting": request.state.greeting}

    @app.get("/download/{n}")
    async def download(n: int):
        async def chunks():
            for i in range(n):
                yield bytes([i % 256]) * 65536

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    @app.post("/upload")
    async def upload(request: StarletteRequest):
        h = hashlib.sha256()
        n = 0
        async for chunk in request.stream():
            h.update(chunk)
            n += len(chunk)
        return {"length": n, "sha256": h.hexdigest()}

    @app.get("/boom")
    async def boom():
        raise RuntimeError("fastapi-secret")

    return app


def test_fastapi_app_runs_unchanged(gateway, serve, client):
    events: list = []
    app = fastapi_app(events)
    served = serve(vyx.ASGIWorker(app, connect=gateway.ws, id="py:fastapi"))
    assert events == ["startup"]
    routes = registered_routes(client, "py:fastapi")
    for r in ("* /items/{item_id}", "* /items", "* /download/{n}", "* /docs", "* /openapi.json"):
        assert r in routes
    r = client.get("/items/42", params={"q": "a b"})
    assert (r.status_code, r.json()) == (200, {"item_id": 42, "q": "a b"})
    r = client.get("/items/not-a-number")
    assert r.status_code == 422  # FastAPI's own validation
    r = client.post("/items", json={"name": "pen", "price": 1.5, "tags": ["x"]})
    assert r.json() == {"created": {"name": "pen", "price": 1.5, "tags": ["x"]}}
    assert client.get("/greeting").json() == {"greeting": "hi from lifespan"}
    assert client.get("/openapi.json").json()["paths"]["/items/{item_id}"]
    # Not one of the app's routes: the gateway answers, the app never sees it.
    assert client.get("/elsewhere").status_code == 404

    n = 80  # 5 MiB, streamed
    with client.stream("GET", f"/download/{n}") as r:
        assert r.headers.get("content-length") is None
        got = b"".join(r.iter_bytes())
    assert got == b"".join(bytes([i % 256]) * 65536 for i in range(n))

    def gen():
        for i in range(40):
            yield os.urandom(1000) + bytes([i]) * 64000

    parts = list(gen())
    r = client.post("/upload", content=iter(parts))
    assert r.json() == {"length": sum(map(len, parts)), "sha256": hashlib.sha256(b"".join(parts)).hexdigest()}

    r = client.get("/boom")
    assert r.status_code == 500 and "fastapi-secret" not in r.text
    assert client.get("/items/1").status_code == 200
    served.stop()
    assert events == ["startup", "shutdown"]


def starlette_app(state: dict) -> Starlette:
    async def user(request: StarletteRequest):
        return JSONResponse({"uid": request.path_params["uid"], "path": request.url.path})

    async def echo(request: StarletteRequest):
        # The request body streamed straight back.
        return StarletteStreaming(request.stream(), media_type=request.headers["content-type"])

    async def file(request: StarletteRequest):
        return PlainTextResponse("file " + request.path_params["p"])

    async def sub(request: StarletteRequest):
        return PlainTextResponse("mounted " + request.url.path)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        state["up"] = True
        yield
        state["up"] = False

    return Starlette(
        routes=[
            Route("/users/{uid:int}", user),
            Route("/echo", echo, methods=["POST"]),
            Route("/files/{p:path}", file),
            Mount("/sub", routes=[Route("/here", sub)]),
        ],
        lifespan=lifespan,
    )


def test_starlette_app_runs_unchanged(gateway, serve, client):
    state: dict = {}
    served = serve(vyx.ASGIWorker(starlette_app(state), connect=gateway.ws, id="py:starlette"))
    assert state == {"up": True}
    # Each with its slash twin: Starlette redirects the other form (redirect_slashes).
    assert sorted(registered_routes(client, "py:starlette")) == [
        "* /echo",
        "* /echo/",
        "* /files",
        "* /files/{*p}",
        "* /sub",
        "* /sub/{*rest}",
        "* /users/{uid}",
        "* /users/{uid}/",
    ]
    assert client.get("/users/7").json() == {"uid": 7, "path": "/users/7"}
    assert client.get("/files/a/b%20c.txt").text == "file a/b c.txt"
    assert client.get("/sub/here").text == "mounted /sub/here"
    assert client.get("/echo").status_code == 405  # the app's own answer
    payload = os.urandom(2 * 1024 * 1024 + 3)
    r = client.post("/echo", content=payload, headers={"content-type": "application/x-raw"})
    assert (r.status_code, r.headers["content-type"]) == (200, "application/x-raw")
    assert r.content == payload
    served.stop()
    assert state == {"up": False}


def flask_app() -> Flask:
    app = Flask("vyx_test_flask")

    @app.route("/users/<int:uid>")
    def user(uid):
        return jsonify(uid=uid, agent=flask_request.headers.get("user-agent"))

    @app.route("/notes", methods=["POST"])
    def notes():
        data = flask_request.get_json()
        return jsonify(received=data, length=flask_request.content_length), 201

    @app.route("/count/<int:n>")
    def count(n):
        def gen():
            for i in range(n):
                yield f"{i}\n"

        return FlaskResponse(gen(), mimetype="text/plain")

    @app.route("/query")
    def query():
        return jsonify(args=flask_request.args.to_dict(flat=False))

    @app.route("/boom")
    def boom():
        raise ValueError("flask-secret")

    return app


def test_flask_app_runs_unchanged(gateway, serve, client):
    app = flask_app()
    serve(vyx.WSGIWorker(app, connect=gateway.ws, id="py:flask"))
    routes = registered_routes(client, "py:flask")
    assert "* /users/{uid}" in routes and "* /static/{*filename}" in routes
    r = client.get("/users/12", headers={"user-agent": "pytest"})
    assert r.json() == {"uid": 12, "agent": "pytest"}
    assert client.get("/users/abc").status_code == 404  # Flask's converter says no
    r = client.post("/notes", json={"a": 1})
    assert (r.status_code, r.json()) == (201, {"received": {"a": 1}, "length": 7})
    r = client.get("/count/2000")
    assert r.text == "".join(f"{i}\n" for i in range(2000))
    assert client.get("/query?x=1&x=2&y=").json() == {"args": {"x": ["1", "2"], "y": [""]}}
    r = client.get("/boom")
    assert r.status_code == 500 and "flask-secret" not in r.text
    assert client.get("/users/1").status_code == 200


def test_apps_share_one_gateway_on_their_own_paths(gateway, serve, client):
    serve(vyx.ASGIWorker(fastapi_app([]), connect=gateway.ws, id="py:shop"))
    serve(vyx.ASGIWorker(starlette_app({}), connect=gateway.ws, id="py:people"))
    assert client.get("/items/5").json() == {"item_id": 5, "q": None}
    assert client.get("/users/5").json()["uid"] == 5
    # The Flask app also claims /boom, which the FastAPI app serves: the gateway refuses
    # the second claim, naming it.
    flask_worker = vyx.WSGIWorker(flask_app(), connect=gateway.ws, id="py:clash")
    with pytest.raises(vyx.RefusedError, match="/boom"):
        asyncio.run(asyncio.wait_for(flask_worker.serve(), 20))


def test_route_tables_become_vyx_patterns():
    from vyx._routes import starlette_pattern, werkzeug_pattern

    assert werkzeug_pattern("/users/<int:uid>") == "/users/{uid}"
    assert werkzeug_pattern("/a/<name>/b") == "/a/{name}/b"
    assert werkzeug_pattern("/static/<path:filename>") == "/static/{*filename}"
    assert werkzeug_pattern("/x/<any(a, b):kind>") == "/x/{kind}"
    assert starlette_pattern("/items/{id:int}") == "/items/{id}"
    assert starlette_pattern("/f/{p:path}") == "/f/{*p}"
    assert vyx.asgi_routes(object()) is None and vyx.wsgi_routes(object()) is None


def test_an_app_without_a_route_table_claims_what_it_is_given(gateway, serve, client):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return  # no lifespan support: the worker goes on without
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    serve(vyx.ASGIWorker(app, ["/raw/{*rest}"], connect=gateway.ws, id="py:raw"))
    assert registered_routes(client, "py:raw") == ["* /raw/{*rest}"]
    assert client.get("/raw/a%20b").text == "/raw/a b"
    with pytest.raises(ValueError):
        vyx.ASGIWorker(app, lifespan="sometimes", connect=gateway.ws, id="py:x")


CLI_APP = '''
from flask import Flask
app = Flask("cli_app")

@app.route("/cli/<int:n>")
def double(n):
    return {"double": 2 * n}
'''


def test_python_m_vyx_serves_an_app_module_until_sigterm(gateway, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from conftest import WAIT, Lines

    (tmp_path / "cli_app.py").write_text(CLI_APP)
    child = subprocess.Popen(
        [sys.executable, "-m", "vyx", "cli_app:app", "--connect", gateway.ws, "--id", "py:cli"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    err = Lines(child.stderr)
    try:
        with httpx.Client(base_url=gateway.base, timeout=WAIT) as c:
            deadline = time.monotonic() + WAIT
            while not any(w["id"] == "py:cli" for w in c.get("/_vyx/workers").json()):
                assert child.poll() is None, err.text()
                assert time.monotonic() < deadline, f"py:cli did not register: {err.text()}"
                time.sleep(0.05)
            assert registered_routes(c, "py:cli") == ["* /cli/{n}", "* /static/{*filename}"]
            assert c.get("/cli/21").json() == {"double": 42}
        child.send_signal(signal.SIGTERM)
        assert child.wait(WAIT) == 0, err.text()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_wsgi_drops_header_names_with_underscores():
    # Whatever sent them: an underscore name must not become, or join, the CGI key of a
    # dash name (X_Forwarded_For was joined into HTTP_X_FORWARDED_FOR, attacker first).
    from vyx._request import Request

    worker = vyx.WSGIWorker(flask_app(), connect="ws://127.0.0.1:9/", id="py:environ")
    req = Request(worker, 0, "GET", "/a", [], [
        (b"host", b"gw"),
        (b"x_forwarded_for", b"6.6.6.6"),
        (b"x-forwarded-for", b"127.0.0.1"),
        (b"x_real_ip", b"6.6.6.6"),
        (b"x-app", b"kept"),
    ], "/a", "127.0.0.1")
    environ = worker._environ(req, b"")
    assert environ["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    assert "HTTP_X_REAL_IP" not in environ
    assert environ["HTTP_X_APP"] == "kept"

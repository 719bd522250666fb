"""The decorator API against the real gateway: routing, params, query, headers, bodies both
ways, streaming with backpressure, failures and state callbacks."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

import vyx
from conftest import REPO, WAIT, Gateway


def worker_for(gateway, name: str = "py:test", **kw) -> vyx.Worker:
    return vyx.Worker(connect=gateway.ws, id=name, **kw)


def test_routes_params_query_404_and_405(gateway, serve, client):
    w = worker_for(gateway)

    @w.get("/hello/{name}")
    async def hello(req: vyx.Request):
        return {
            "name": req.params["name"],
            "path": req.path,
            "query": req.query,
            "raw": req.raw_query,
            "route": req.route,
            "client_ip": req.client_ip,
        }

    @w.get("/files/{*rest}")
    async def files(req: vyx.Request):
        return {"rest": req.params["rest"]}

    @w.head("/files/{*rest}")
    async def files_head(req: vyx.Request):
        return vyx.Response(200, [("x-head", "own")])

    @w.any("/any")
    async def any_method(req: vyx.Request):
        return req.method

    serve(w)
    # The gateway appends the peer it accepted: the last element is the client's IP.
    r = client.get(
        "/hello/caf%C3%A9%2Fx?a=1&b=&a=%20+&flag", headers={"x-forwarded-for": "203.0.113.9"}
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {
        "name": "café/x",
        "path": "/hello/caf%C3%A9%2Fx",
        "query": [["a", "1"], ["b", ""], ["a", "  "], ["flag", ""]],
        "raw": "a=1&b=&a=%20+&flag",
        "route": "/hello/{name}",
        "client_ip": "127.0.0.1",
    }
    assert client.get("/hello/x").json()["raw"] is None
    assert client.get("/files/a/b/c.txt").json() == {"rest": "a/b/c.txt"}
    r = client.head("/files/a")
    assert (r.status_code, r.headers.get("x-head"), r.content) == (200, "own", b"")
    for method in ("GET", "POST", "DELETE", "PROPFIND"):
        assert client.request(method, "/any").text == method
    assert client.get("/nothing/here").status_code == 404
    wrong = client.post("/hello/x")  # served for GET only: the gateway's 405
    assert (wrong.status_code, wrong.headers["allow"]) == (405, "GET, HEAD")


def test_return_values_and_response_headers(gateway, serve, client):
    w = worker_for(gateway)

    @w.get("/text")
    async def text(req):
        return "héllo"

    @w.get("/bytes")
    async def raw(req):
        return b"\x00\x01\x02"

    @w.get("/list")
    async def lst(req):
        return [1, "two"]

    @w.get("/none")
    async def none(req):
        return None

    @w.get("/custom")
    async def custom(req):
        return vyx.Response(
            201,
            [("x-one", "1"), ("set-cookie", "a=1"), ("set-cookie", "b=2"), ("connection", "x-one")],
            "made",
        )

    serve(w)
    r = client.get("/text")
    assert (r.status_code, r.text, r.headers["content-type"]) == (
        200,
        "héllo",
        "text/plain; charset=utf-8",
    )
    assert r.headers["content-length"] == str(len("héllo".encode()))
    r = client.get("/bytes")
    assert (r.content, r.headers["content-type"]) == (b"\x00\x01\x02", "application/octet-stream")
    assert client.get("/list").json() == [1, "two"]
    r = client.get("/none")
    # Nothing returned is 200 with no body, as in every vyx SDK.
    assert (r.status_code, r.content) == (200, b"")
    r = client.get("/custom")
    assert (r.status_code, r.text) == (201, "made")
    assert r.headers.get_list("set-cookie") == ["a=1", "b=2"]
    # The core drops hop-by-hop headers and the names `connection` lists.
    assert "x-one" not in r.headers
    r = client.head("/custom")
    assert (r.status_code, r.content, r.headers["content-length"]) == (201, b"", "4")


def test_request_headers_in_order(gateway, serve, client):
    w = worker_for(gateway)

    @w.get("/headers")
    async def headers(req: vyx.Request):
        return {
            "multi": req.headers.getall("x-multi"),
            "first": req.headers["X-Multi"],
            "utf8": req.headers["x-utf8"],
            "has": "x-multi" in req.headers,
        }

    serve(w)
    r = client.get(
        "/headers",
        headers=[("X-Multi", "1"), ("X-Multi", "2"), ("x-utf8", "żółw".encode())],
    )
    assert r.json() == {"multi": ["1", "2"], "first": "1", "utf8": "żółw", "has": True}


def test_bodies_both_ways(gateway, serve, client):
    w = worker_for(gateway)

    @w.post("/json")
    async def echo_json(req: vyx.Request):
        data = await req.json()
        return {"got": data, "text": await req.text()}

    @w.post("/echo")
    async def echo(req: vyx.Request):
        # Streamed back as it arrives: an async generator body.
        async def chunks():
            async for chunk in req.stream():
                yield chunk

        return vyx.Response(200, {"content-type": "application/x-test"}, chunks())

    @w.put("/hash")
    async def hash_body(req: vyx.Request):
        h = hashlib.sha256()
        n = 0
        async for chunk in req.stream():
            h.update(chunk)
            n += len(chunk)
        return {"length": n, "sha256": h.hexdigest()}

    serve(w)
    r = client.post("/json", json={"a": [1, 2]})
    assert r.json() == {"got": {"a": [1, 2]}, "text": '{"a":[1,2]}'}
    payload = os.urandom(3 * 1024 * 1024 + 17)
    r = client.post("/echo", content=payload)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-test"
    assert r.content == payload

    def gen():
        for i in range(64):
            yield bytes([i]) * 65536

    expected = hashlib.sha256(b"".join(gen())).hexdigest()
    r = client.put("/hash", content=gen())
    assert r.json() == {"length": 64 * 65536, "sha256": expected}
    assert client.post("/echo", content=b"").content == b""


def test_streamed_response_waits_for_a_slow_client(gateway, serve):
    produced = 0
    finished = threading.Event()
    w = worker_for(gateway)

    @w.get("/endless")
    async def endless(req):
        async def body():
            nonlocal produced
            chunk = b"x" * 65536
            try:
                while True:
                    produced += len(chunk)
                    yield chunk
            finally:
                finished.set()

        return vyx.Response(200, {"content-type": "application/octet-stream"}, body())

    serve(w)
    limit = 64 * 1024 * 1024
    with httpx.Client(base_url=gateway.base, timeout=WAIT) as c:
        with c.stream("GET", "/endless") as r:
            it = r.iter_bytes()
            got = 0
            while got < 1024 * 1024:
                got += len(next(it))
            # The client stops reading. Without backpressure an endless body would run
            # past the limit within milliseconds; with it, the producer stops at the
            # windows and socket buffers (a few MiB). The wait is bounded; failing is
            # the producer passing the limit.
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                assert produced < limit, f"{produced} bytes produced for a client that read {got}"
                time.sleep(0.05)
            # Reading again resumes the producer.
            before = produced
            while got < 16 * 1024 * 1024:
                got += len(next(it))
            assert produced > before
    # The client went away: the stream is reset and the body's generator is closed.
    assert finished.wait(WAIT)


def wait_until(cond, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not cond():
        assert time.monotonic() < deadline, f"not {what} within {WAIT}s"
        time.sleep(0.02)


def test_a_client_gone_cancels_the_handler_and_frees_its_slot(gateway, serve):
    cancelled = threading.Event()
    w = worker_for(gateway)

    @w.get("/long")
    async def long(req):
        async def body():
            yield b"first"
            try:
                await asyncio.Event().wait()  # never set: only a cancel ends it
            finally:
                cancelled.set()

        return vyx.Response(200, {"content-type": "text/plain"}, body())

    @w.get("/ok")
    async def ok(req):
        return "ok"

    serve(w)
    with httpx.Client(base_url=gateway.base, timeout=WAIT) as c:
        with c.stream("GET", "/long") as r:
            chunks = r.iter_raw()  # kept: a dropped iterator closes the response
            assert next(chunks) == b"first"
            assert w._engine.open_requests == 1
    # The client left: the gateway resets the stream, the worker cancels the handler.
    assert cancelled.wait(WAIT)
    wait_until(lambda: w._engine.open_requests == 0, "every slot closed")
    with httpx.Client(base_url=gateway.base, timeout=WAIT) as c:
        assert c.get("/ok").text == "ok"
    assert w._engine.open_requests == 0


def test_handler_exception_is_500_and_the_worker_keeps_serving(gateway, serve, client, caplog):
    w = worker_for(gateway)

    @w.get("/boom")
    async def boom(req):
        raise ValueError("secret-detail-42")

    @w.get("/sync-boom")
    def sync_boom(req):
        raise KeyError("sync-secret")

    @w.get("/ok")
    async def ok(req):
        return "fine"

    served = serve(w)
    with caplog.at_level(logging.ERROR, logger="vyx"):
        for path in ("/boom", "/sync-boom"):
            r = client.get(path)
            assert r.status_code == 500
            assert "secret" not in r.text and "Traceback" not in r.text
    tracebacks = [rec for rec in caplog.records if rec.exc_info]
    assert any("secret-detail-42" in str(rec.exc_info[1]) for rec in tracebacks)
    assert any("sync-secret" in str(rec.exc_info[1]) for rec in tracebacks)
    assert client.get("/ok").text == "fine"
    # Same connection: no reconnect happened.
    assert [s.kind for s in served.states].count("connected") == 1


def test_plain_def_handlers_run_in_threads_and_never_block_the_loop(gateway, serve):
    release = threading.Event()
    w = worker_for(gateway)

    @w.post("/blocking")
    def blocking(req: vyx.Request):
        # Blocks its thread until the async handler below has run on the loop.
        assert release.wait(WAIT)
        return {"thread": threading.current_thread().name, "body": req.content.decode()}

    @w.get("/release")
    async def rel(req):
        release.set()
        return "released"

    serve(w)
    results = {}

    def call():
        with httpx.Client(base_url=gateway.base, timeout=WAIT) as c:
            results["blocking"] = c.post("/blocking", content=b"payload").json()

    t = threading.Thread(target=call)
    t.start()
    with httpx.Client(base_url=gateway.base, timeout=WAIT) as c:
        assert c.get("/release").text == "released"
    t.join(WAIT)
    assert results["blocking"]["body"] == "payload"
    assert results["blocking"]["thread"].startswith("vyx-handler")


def test_state_callbacks_see_every_transition(gateway, serve):
    w = worker_for(gateway)

    @w.get("/x")
    async def x(req):
        return "x"

    served = serve(w)
    served.stop()
    kinds = [s.kind for s in served.states]
    assert kinds[0] in ("connecting", "connected")
    assert "connected" in kinds
    assert kinds[-1] == "stopped"
    assert kinds.index("connected") < kinds.index("draining") < kinds.index("stopped")
    assert served.states[kinds.index("connected")].connection_id


def test_bad_configuration_is_refused_at_once():
    with pytest.raises(vyx.ConfigError, match="ws://"):
        vyx.Worker(connect="http://127.0.0.1:1", id="py:x")
    with pytest.raises(vyx.ConfigError, match="worker id"):
        vyx.Worker(connect="ws://127.0.0.1:1", id="bad id")
    with pytest.raises(vyx.ConfigError):
        vyx.Worker(connect="ws://127.0.0.1:1", id="py:x", max_concurrency=0)
    w = vyx.Worker(connect="ws://127.0.0.1:1", id="py:x")
    with pytest.raises(vyx.ConfigError):
        w.get("no-slash")(lambda req: None)
    assert isinstance(vyx.ConfigError("x"), vyx.VyxError)
    assert vyx.RefusedError.__module__ == "vyx"  # tracebacks say vyx.RefusedError


def test_defaults_are_the_cores():
    spec = json.loads((REPO / "spec/vectors/defaults.json").read_text())
    assert vyx.DEFAULT_MAX_CONCURRENCY == spec["max_concurrency"]
    assert vyx.DEFAULT_CONNECT_TIMEOUT == spec["connect_timeout_ms"] / 1000
    assert vyx.DEFAULT_DRAIN_TIMEOUT == spec["drain_timeout_ms"] / 1000
    assert vyx.Worker(connect="ws://127.0.0.1:1", id="py:x").drain_timeout == vyx.DEFAULT_DRAIN_TIMEOUT


def test_instance_reaches_the_gateway(gateway, serve, client):
    w = worker_for(gateway, instance="py-blue-1")

    @w.get("/x")
    async def x(req):
        return "x"

    serve(w)
    workers = client.get("/_vyx/workers").json()
    assert {wk["instance"] for wk in workers} == {"py-blue-1"}


def test_a_route_declared_idempotent_is_listed_so_by_the_gateway(gateway, serve, client):
    w = worker_for(gateway)

    @w.route("POST", "/orders", idempotent=True)
    async def orders(req):
        return "ordered"

    @w.post("/other")
    async def other(req):
        return "other"

    w.add_route("PATCH", "/items/{id}", lambda req: "patched", idempotent=True)
    serve(w)
    workers = client.get("/_vyx/workers").json()
    assert workers[0]["idempotent_routes"] == ["PATCH /items/{id}", "POST /orders"]


def test_connect_timeout_bounds_a_dial_that_gets_no_answer():
    with pytest.raises(vyx.ConfigError, match="connect_timeout"):
        vyx.Worker(connect="ws://127.0.0.1:1", id="py:x", connect_timeout=-1)
    # A socket that listens and never answers the upgrade: only the timeout ends the dial.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        w = vyx.Worker(connect=f"ws://127.0.0.1:{port}", id="py:x", connect_timeout=0.2)
        causes: list = []

        @w.on_state
        def record(state: vyx.State) -> None:
            if state.kind == "reconnecting":
                causes.append(state.cause)
                asyncio.ensure_future(w.stop(0))

        async def main():
            await asyncio.wait_for(w.serve(), WAIT)

        asyncio.run(main())
    assert causes and "within 200ms" in causes[0], causes


@pytest.mark.parametrize("raised", [KeyboardInterrupt, SystemExit])
def test_a_sync_handler_raising_a_base_exception_fails_its_request_only(gateway, serve, client, raised):
    # Raised in the handler's thread it is no signal: on the loop it would end the worker.
    w = worker_for(gateway)

    @w.get("/raise")
    def raise_it(req):
        raise raised()

    @w.get("/after")
    def after(req):
        return "still serving"

    serve(w)
    assert client.get("/raise").status_code == 500
    assert client.get("/after").text == "still serving"


def test_a_second_start_raises_already_started(gateway, serve, client):
    w = worker_for(gateway)

    @w.get("/twice")
    async def twice(req: vyx.Request):
        return "once"

    serve(w)
    assert client.get("/twice").text == "once"
    with pytest.raises(vyx.AlreadyStartedError, match="runs once") as e:
        asyncio.run(w.serve())
    assert isinstance(e.value, vyx.VyxError)
    # The running worker is not disturbed by the refused second start.
    assert client.get("/twice").text == "once"


def test_environment_defaults(monkeypatch):
    monkeypatch.setenv("VYX_CONNECT", "ws://127.0.0.1:4")
    monkeypatch.setenv("VYX_WORKER_ID", "py:from-env")
    w = vyx.Worker()
    assert (w.connect, w.id) == (["ws://127.0.0.1:4"], "py:from-env")


def test_wrong_token_is_refused_for_good(tmp_path: Path):
    from conftest import Gateway

    config = tmp_path / "vyx.yaml"
    config.write_text(
        "workers:\n"
        "  - id: py:locked\n"
        "    mode: remote\n"
        "    token_env: PY_TEST_TOKEN\n"
        "    routes: [/locked]\n"
    )
    os.environ["PY_TEST_TOKEN"] = "right-token"
    gw = Gateway("--config", str(config))
    try:
        w = vyx.Worker(connect=gw.ws, id="py:locked", token="wrong-token")

        @w.get("/locked")
        async def locked(req):
            return "no"

        async def main():
            await asyncio.wait_for(w.serve(), WAIT)

        with pytest.raises(vyx.RefusedError, match="403") as e:
            asyncio.run(main())
        assert "wrong-token" not in str(e.value)
    finally:
        gw.close()
        del os.environ["PY_TEST_TOKEN"]


def test_query_decoding_matches_the_shared_vectors():
    vectors = json.loads((REPO / "spec/vectors/query.json").read_text())["vectors"]
    assert vectors
    for v in vectors:
        assert [list(p) for p in vyx.parse_query(v["query"])] == v["pairs"], v["name"]


def test_connect_takes_a_list_and_serves_through_every_gateway(gateway, serve):
    second = Gateway()
    try:
        w = vyx.Worker(connect=[gateway.ws, second.ws], id="py:two")

        @w.get("/where")
        async def where(req: vyx.Request):
            return "here"

        serve(w)
        both = sorted([gateway.ws + "/_vyx/register", second.ws + "/_vyx/register"])
        deadline = time.monotonic() + WAIT
        # Each gateway may ask for a connection per shard: sessions with the same URL.
        while sorted({g.gateway for g in w.gateways() if g.state.kind == "connected"}) != both:
            assert time.monotonic() < deadline, w.gateways()
            time.sleep(0.01)
        for gw in (gateway, second):
            r = httpx.get(gw.url("/where"), timeout=WAIT)
            assert (r.status_code, r.text) == (200, "here")
        assert w.state.kind == "connected"
    finally:
        second.close()


def test_a_bad_entry_in_the_list_is_a_config_error_naming_it():
    with pytest.raises(vyx.ConfigError, match=r'gateway address 2 of 2 \("http://127.0.0.1:2"\)'):
        vyx.Worker(connect=["ws://127.0.0.1:1", "http://127.0.0.1:2"], id="py:two")

"""WSGI apps behind the real gateway behave as under a threaded WSGI server (gunicorn's
gthread, waitress): chunks go out when the app yields them, requests run side by side on the
pool, and the environ and the response follow PEP 3333."""

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from flask import Flask, Response as FlaskResponse, request as flask_request

import vyx
from conftest import WAIT
from test_worker import wait_until


def read_at_least(chunks, n: int) -> bytes:
    got = b""
    while len(got) < n:
        got += next(chunks)
    return got


def test_each_chunk_goes_out_when_the_app_yields_it(gateway, serve, client):
    released = threading.Event()

    def app(environ, start_response):
        start_response("200 OK", [("content-type", "text/plain")])
        yield b"part1"
        # Sent only once the test has read part1 through the gateway: an adapter that reads
        # a chunk ahead would hold the head and part1 until then.
        yield b"part2" if released.wait(WAIT) else b"never released"

    serve(vyx.WSGIWorker(app, ["/stream"], connect=gateway.ws, id="py:wsgi-stream"))
    with client.stream("GET", "/stream") as r:
        chunks = r.iter_raw()
        assert read_at_least(chunks, 5) == b"part1"
        released.set()
        assert b"".join(chunks) == b"part2"


def test_a_generator_that_raises_has_sent_what_it_yielded(gateway, serve, client):
    def app(environ, start_response):
        start_response("200 OK", [("content-type", "text/plain")])
        yield b"part1"
        yield b"part2"
        raise RuntimeError("after part2")

    serve(vyx.WSGIWorker(app, ["/fails"], connect=gateway.ws, id="py:wsgi-raises"))
    got = b""
    with client.stream("GET", "/fails") as r:
        assert r.status_code == 200
        try:
            for chunk in r.iter_raw():
                got += chunk
        except httpx.RemoteProtocolError:
            pass  # the body is cut short, as gunicorn closes the connection
        else:
            raise AssertionError(f"the body ended cleanly: {got!r}")
    assert got == b"part1part2"


@pytest.mark.parametrize("raised", [KeyboardInterrupt, SystemExit])
def test_an_app_raising_a_base_exception_fails_its_request_only(gateway, serve, client, raised):
    # Flask lets KeyboardInterrupt out of a view (its test_baseexception_error_handling); from
    # the app's thread it must not end the worker's loop, or every later request is a 503.
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/raise":
            raise raised()
        start_response("200 OK", [("content-type", "text/plain")])
        return [b"still serving"]

    serve(vyx.WSGIWorker(app, ["/raise", "/after"], connect=gateway.ws, id="py:wsgi-base-exc"))
    assert client.get("/raise").status_code == 500
    after = client.get("/after")
    assert (after.status_code, after.content) == (200, b"still serving")


def test_requests_run_side_by_side_on_max_threads(gateway, serve):
    n = 12
    # Every request waits inside the app until all n are inside it: n threads at once, as
    # gunicorn with --threads 12.
    barrier = threading.Barrier(n, timeout=WAIT)

    def app(environ, start_response):
        start_response("200 OK", [("content-type", "text/plain")])
        barrier.wait()

        def body():
            yield b"together "
            yield environ["PATH_INFO"].encode()

        return body()

    serve(vyx.WSGIWorker(app, ["/together/{i}"], max_threads=n, max_concurrency=n,
                         connect=gateway.ws, id="py:wsgi-threads"))
    with httpx.Client(base_url=gateway.base, timeout=WAIT) as c, ThreadPoolExecutor(n) as pool:
        answers = list(pool.map(lambda i: c.get(f"/together/{i}"), range(n)))
    assert [(r.status_code, r.text) for r in answers] == [
        (200, f"together /together/{i}") for i in range(n)
    ]


def test_python_m_vyx_threads_sets_the_pool_size():
    from vyx.__main__ import build

    worker = build(["vyx:Response", "--wsgi", "--threads", "3",
                    "--connect", "ws://127.0.0.1:9/", "--id", "py:cli-threads"])
    assert isinstance(worker, vyx.WSGIWorker)
    assert worker._threads()._max_workers == 3


@pytest.mark.parametrize("threads", ["0", "-2"])
def test_a_pool_of_no_threads_is_a_config_error(threads):
    from vyx.__main__ import build

    with pytest.raises(vyx.ConfigError, match="max_threads must be a whole number of at least 1"):
        build(["vyx:Response", "--wsgi", "--threads", threads,
               "--connect", "ws://127.0.0.1:9/", "--id", "py:cli-threads"])


def test_write_callable_output_is_sent_before_the_iterable(gateway, serve, client):
    def app(environ, start_response):
        write = start_response("200 OK", [("content-type", "text/plain")])
        write(b"written, ")
        return [b"then returned"]

    serve(vyx.WSGIWorker(app, ["/write"], connect=gateway.ws, id="py:wsgi-write"))
    assert client.get("/write").text == "written, then returned"


def test_header_values_are_sent_as_latin1(gateway, serve, client):
    def app(environ, start_response):
        start_response("200 OK", [("x-name", "café"), ("content-type", "text/plain")])
        return [b"ok"]

    serve(vyx.WSGIWorker(app, ["/latin1"], connect=gateway.ws, id="py:wsgi-latin1"))
    r = client.get("/latin1")
    assert dict(r.headers.raw)[b"x-name"] == b"caf\xe9"


def environ_app() -> Flask:
    app = Flask("vyx_test_environ")

    @app.route("/environ", methods=["GET", "POST"])
    def environ():
        env = flask_request.environ
        return {
            "content_length": env.get("CONTENT_LENGTH"),
            "body": flask_request.get_data(as_text=True),
        }

    @app.route("/streamed")
    def streamed():
        return FlaskResponse((c for c in ("a", "b")), mimetype="text/plain")

    @app.route("/plain")
    def plain():
        return "hello"

    return app


def test_environ_and_head_as_gunicorn_gives_them(gateway, serve, client):
    serve(vyx.WSGIWorker(environ_app(), connect=gateway.ws, id="py:wsgi-environ"))
    # No body, no CONTENT_LENGTH (gunicorn and waitress set it from the request only).
    assert client.get("/environ").json() == {"content_length": None, "body": ""}
    r = client.post("/environ", content=b"", headers={"content-length": "0"})
    assert r.json() == {"content_length": "0", "body": ""}
    # A chunked upload has no length; the app still reads it.
    r = client.post("/environ", content=iter([b"one ", b"two"]))
    assert r.json() == {"content_length": "7", "body": "one two"}

    # HEAD of a streamed response claims no length it never saw; a whole one keeps its own.
    assert client.get("/streamed").text == "ab"
    r = client.head("/streamed")
    assert r.status_code == 200 and "content-length" not in r.headers
    r = client.head("/plain")
    assert r.headers["content-length"] == "5" and r.content == b""


def test_head_of_a_generator_app_ends_without_its_body(gateway, serve, client):
    def app(environ, start_response):
        start_response("200 OK", [("content-type", "text/plain")])
        yield b"not "
        yield b"wanted"

    worker = vyx.WSGIWorker(app, ["/gen"], connect=gateway.ws, id="py:wsgi-head")
    serve(worker)
    r = client.head("/gen")
    assert (r.status_code, r.content) == (200, b"")
    assert "content-length" not in r.headers
    # The answer is over on the worker's side too: its slot is closed.
    wait_until(lambda: worker._engine.open_requests == 0, "the HEAD's slot closed")
    assert client.get("/gen").text == "not wanted"

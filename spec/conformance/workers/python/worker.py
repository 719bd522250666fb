"""The Python conformance worker: the routes of spec/conformance/README.md, written with the
Python SDK (sdk-python), so that the conformance runner drives it like every other
language's.

    VYX_CONNECT=ws://127.0.0.1:9000 VYX_WORKER_ID=conformance:python \\
        VYX_CONFORMANCE_MAX_CONCURRENCY=1024 python spec/conformance/workers/python/worker.py

Connection-state changes go to stdout as ``state ...`` lines; logs go to stderr.
"""

import asyncio
import hashlib
import logging
import os
import sys

import vyx

LANG = "python"
REPLICA = os.environ.get("VYX_CONFORMANCE_REPLICA", "")


class Shared:
    """The counters /stats reports and the barrier's rendezvous."""

    def __init__(self):
        # /slow, /stream and /barrier handlers (and streamed bodies) not finished yet.
        self.in_flight = 0
        # /stream bodies that ended before their last byte (the stream was reset).
        self.aborted = 0
        self.barrier_waiting = 0
        self.barrier_round = 0
        self.barrier_moved = None  # an asyncio.Event for the current round


shared = Shared()


def text(status, body):
    return vyx.Response.text(body, status=status)


async def hash_body(req):
    h = hashlib.sha256()
    n = 0
    async for chunk in req.stream():
        n += len(chunk)
        h.update(chunk)
    return n, h.hexdigest()


async def greet(req):
    return {"hello": req.params["name"], "lang": LANG}


async def files(req):
    return {"rest": req.params["rest"]}


async def inspect(req):
    headers = [[n.decode("latin-1"), v.decode("utf-8", "replace")] for n, v in req.headers.raw]
    length, sha = await hash_body(req)
    return {
        "method": req.method,
        "path": req.path,
        "query": req.raw_query,
        "query_pairs": [list(p) for p in req.query],
        "params": req.params,
        "headers": headers,
        "body_length": length,
        "body_sha256": sha,
        "replica": REPLICA,
        "lang": LANG,
    }


async def echo(req):
    headers = []
    if "content-type" in req.headers:
        headers.append((b"content-type", req.headers.raw_value("content-type")))
    return vyx.Response(200, headers, req.stream())


async def trailers(req):
    # The client's x-echo trailer comes back in the response's trailers, with the length.
    body = await req.body()
    headers = [(b"content-type", b"text/plain"), (b"trailer", b"x-echo, x-length")]
    fields = {"x-echo": req.trailers.get("x-echo", "none"), "x-length": str(len(body))}
    return vyx.Response(200, headers, body, trailers=fields)


async def upload(req):
    length, sha = await hash_body(req)
    return {"length": length, "sha256": sha}


async def status(req):
    try:
        code = int(req.params["code"])
    except ValueError:
        code = 0
    if not 200 <= code <= 599:
        return text(400, "status must be 200..=599")
    body = b"" if code in (204, 304) else f"status {code}".encode()
    return vyx.Response(
        code,
        [
            ("content-type", "text/plain"),
            ("x-conformance", "status"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
        ],
        body,
    )


async def stream(req):
    try:
        total = int(req.params["bytes"])
        chunk = min(max(int(req.query_param("chunk", "65536")), 1), 1 << 20)
        pause = int(req.query_param("pause_ms", "0")) / 1000
    except ValueError:
        return text(400, "bytes, chunk and pause_ms must be numbers")
    pattern = bytes(i % 251 for i in range(251)) * ((chunk // 251) + 2)

    async def body():
        shared.in_flight += 1
        sent = 0
        try:
            while sent < total:
                if sent and pause:
                    await asyncio.sleep(pause)
                n = min(chunk, total - sent)
                start = sent % 251
                yield pattern[start : start + n]
                sent += n
        finally:
            shared.in_flight -= 1
            if sent < total:
                shared.aborted += 1

    return vyx.Response(200, [("content-type", "application/octet-stream")], body())


async def slow(req):
    try:
        ms = int(req.params["ms"])
    except ValueError:
        return text(400, "ms must be a number")
    shared.in_flight += 1
    in_flight = shared.in_flight
    try:
        await asyncio.sleep(ms / 1000)
    finally:
        shared.in_flight -= 1
    return {"slept_ms": ms, "in_flight": in_flight, "replica": REPLICA}


async def barrier(req):
    try:
        n = int(req.params["n"])
    except ValueError:
        return text(400, "n must be a number")
    shared.in_flight += 1
    try:
        if shared.barrier_moved is None:
            shared.barrier_moved = asyncio.Event()
        shared.barrier_waiting += 1
        if shared.barrier_waiting >= n:
            # Everyone waiting in this round goes; the next request starts a new round.
            shared.barrier_waiting = 0
            shared.barrier_round += 1
            moved, shared.barrier_moved = shared.barrier_moved, asyncio.Event()
            moved.set()
            return {"n": n}
        round_ = shared.barrier_round
        moved = shared.barrier_moved
        try:
            await asyncio.wait_for(moved.wait(), 10)
        except asyncio.TimeoutError:
            pass
        if shared.barrier_round != round_:
            return {"n": n}
        arrived = shared.barrier_waiting
        shared.barrier_waiting -= 1
        return text(500, f"barrier: {arrived} of {n} requests arrived within 10 s")
    finally:
        shared.in_flight -= 1


async def throw(req):
    raise RuntimeError("conformance: /throw fails on purpose")


async def empty(req):
    return vyx.Response(204)


async def hints(req):
    req.send_informational(103, [("link", "</hinted.css>; rel=preload; as=style")])
    return vyx.Response(200, body=b"hinted")


async def ws_echo(ws):
    # Each message back with its type; the client's close is answered by the core.
    async for message in ws:
        await ws.send(message)


async def head(req):
    return vyx.Response(200, [("x-conformance", "head")])


async def stats(req):
    return {"in_flight": shared.in_flight, "aborted": shared.aborted, "replica": REPLICA}


def print_state(state):
    if state.kind == "connected":
        print("state connected", state.connection_id, flush=True)
    elif state.kind == "reconnecting":
        print("state reconnecting", state.attempt, state.cause, flush=True)
    else:
        print("state", state.kind, flush=True)


def main():
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        max_concurrency = int(os.environ.get("VYX_CONFORMANCE_MAX_CONCURRENCY", "1024"))
        # VYX_CONNECT, VYX_WORKER_ID and VYX_TOKEN come from the environment.
        worker = vyx.Worker(max_concurrency=max_concurrency)
        for method, path, handler in [
            ("GET", "/greet/{name}", greet),
            ("GET", "/files/{*rest}", files),
            ("*", "/inspect/{*rest}", inspect),
            ("POST", "/echo", echo),
            ("POST", "/trailers", trailers),
            ("POST", "/upload", upload),
            ("GET", "/status/{code}", status),
            ("GET", "/stream/{bytes}", stream),
            ("GET", "/slow/{ms}", slow),
            ("GET", "/barrier/{n}", barrier),
            ("GET", "/throw", throw),
            ("GET", "/empty", empty),
            ("GET", "/hints", hints),
            ("HEAD", "/head", head),
            ("GET", "/stats", stats),
        ]:
            worker.add_route(method, path, handler)
        worker.ws("/ws")(ws_echo)
        worker.on_state(print_state)
        worker.start()
    except (vyx.VyxError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

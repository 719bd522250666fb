"""A vyx worker in Python: ``GET /py/hello/{name}`` answers JSON, ``POST /py/echo`` streams
the body back (the Rust example's routes, under the prefix /py).

    vyx &                                # a gateway in dev mode on 127.0.0.1:9000
    python examples/python/hello/hello.py
    curl localhost:9000/py/hello/ada     # {"hello":"ada","lang":"python"}

Settings come from VYX_CONNECT, VYX_WORKER_ID and VYX_TOKEN, so the same script runs in local
mode (examples/vyx.yaml starts it) and by hand without a code change.
"""

import logging
import os

import vyx

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

worker = vyx.Worker(
    connect=os.environ.get("VYX_CONNECT", "ws://127.0.0.1:9000"),
    id=os.environ.get("VYX_WORKER_ID", "py:hello"),
)


@worker.get("/py/hello/{name}")
async def hello(req: vyx.Request):
    return {"hello": req.params["name"], "lang": "python"}


@worker.post("/py/echo")
async def echo(req: vyx.Request):
    """The request body streamed back as it arrives (nothing is buffered), same type."""
    content_type = req.headers.get("content-type")
    headers = [("content-type", content_type)] if content_type else []
    return vyx.Response(200, headers, req.stream())


if __name__ == "__main__":
    try:
        worker.start()  # until SIGTERM or Ctrl-C, then lets in-flight requests finish
    except vyx.RefusedError as e:  # a bad token, a route another worker claims
        raise SystemExit(f"error: {e}")

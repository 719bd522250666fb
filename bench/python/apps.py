"""The apps of the Python SDK rows of bench/run, each served both behind vyx and directly by
uvicorn (bench/python/uvicorn_serve.py):

- ``hello``: the handler of examples/python/hello (``GET /py/hello/{name}`` → JSON) as a
  bare ASGI app, for uvicorn; behind vyx the example itself runs.
- ``fastapi_app``: the same route in FastAPI, served unchanged by both.
"""

import json

from fastapi import FastAPI


def _hello_body(name: str) -> bytes:
    return json.dumps({"hello": name, "lang": "python"}, separators=(",", ":")).encode()


async def hello(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    prefix = "/py/hello/"
    if not scope["path"].startswith(prefix):
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    body = _hello_body(scope["path"][len(prefix):])
    await send({
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body})


fastapi_app = FastAPI()


@fastapi_app.get("/py/hello/{name}")
async def fastapi_hello(name: str):
    return {"hello": name, "lang": "python"}

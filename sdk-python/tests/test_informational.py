"""Interim (1xx) responses through the real gateway (PROTOCOL.md §3.11): ``Request.send_informational``
on vyx routes and ASGI's ``http.response.early_hint`` extension, read by a raw HTTP/1.1 client (HTTP
clients hide interim responses)."""

from __future__ import annotations

import socket
from typing import List

import pytest

import vyx
from conftest import WAIT

LINK = "</app.css>; rel=preload; as=style"


def heads_and_body(gateway, path: str) -> List[str]:
    """Every head of the raw HTTP/1.1 answer (interim ones, then the final), and then the body."""
    host, port = gateway.addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=WAIT) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    heads = []
    rest = answer.decode()
    while True:
        head, rest = rest.split("\r\n\r\n", 1)
        heads.append(head)
        if not head.startswith("HTTP/1.1 1"):
            return heads + [rest]


def test_a_vyx_route_sends_early_hints_before_its_answer(gateway, serve):
    w = vyx.Worker(connect=gateway.ws, id="py:hints")
    sent = []

    @w.get("/page")
    async def page(req: vyx.Request):
        sent.append(req.send_informational(103, [("link", LINK), ("link", "</app.js>; rel=preload")]))
        return vyx.Response(200, {"content-type": "text/plain"}, b"page")

    @w.get("/late")
    async def late(req: vyx.Request):
        async def body():
            yield b"head sent"
            with pytest.raises(vyx.StreamError):
                req.send_informational(103, [("link", LINK)])
            yield b", then refused"

        return vyx.Response(200, {}, body())

    @w.get("/bad")
    async def bad(req: vyx.Request):
        with pytest.raises(vyx.StreamError):
            req.send_informational(200, [])
        return vyx.Response(204)

    serve(w)
    *heads, body = heads_and_body(gateway, "/page")
    assert len(heads) == 2, heads
    hint = heads[0].split("\r\n")
    assert hint[0] == "HTTP/1.1 103 Early Hints", hint
    assert [l.lower() for l in hint[1:]] == [f"link: {LINK}".lower(), "link: </app.js>; rel=preload"]
    assert heads[1].startswith("HTTP/1.1 200"), heads[1]
    assert body == "page"
    assert sent == [True]

    *heads, body = heads_and_body(gateway, "/late")
    assert len(heads) == 1 and heads[0].startswith("HTTP/1.1 200"), heads
    assert "head sent" in body and "then refused" in body

    *heads, _ = heads_and_body(gateway, "/bad")
    assert len(heads) == 1 and heads[0].startswith("HTTP/1.1 204"), heads


async def early_hint_app(scope, receive, send):
    """A raw ASGI app using the http.response.early_hint extension when the server has it."""
    assert scope["type"] == "http"
    if "http.response.early_hint" in scope.get("extensions", {}):
        await send({"type": "http.response.early_hint", "links": [LINK.encode()]})
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"asgi"})
    # Past the head: dropped, not an error.
    await send({"type": "http.response.early_hint", "links": [LINK.encode()]})


def test_asgi_early_hint_extension(gateway, serve):
    serve(vyx.ASGIWorker(early_hint_app, ["/asgi"], connect=gateway.ws, id="py:asgi-hints", lifespan="off"))
    *heads, body = heads_and_body(gateway, "/asgi")
    assert len(heads) == 2, heads
    assert heads[0].split("\r\n") == ["HTTP/1.1 103 Early Hints", f"link: {LINK}"]
    assert heads[1].startswith("HTTP/1.1 200"), heads[1]
    assert body == "asgi"

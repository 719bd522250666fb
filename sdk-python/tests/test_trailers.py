"""Trailers both ways (PROTOCOL.md §3.10) through the real gateway, for an HTTP/1.1 client
that sent a chunked body with a trailer section and ``TE: trailers``: ``Request.trailers``
and ``Response(trailers=...)`` on vyx routes, ASGI's ``http.response.trailers`` extension.
(The conformance scenario "trailers both ways" runs the same through an HTTP/2 client.)"""

from __future__ import annotations

import socket

import vyx
from conftest import WAIT

CHUNKED_WITH_TRAILER = (
    b"POST {path} HTTP/1.1\r\nHost: t\r\nTE: trailers\r\nConnection: close\r\n"
    b"Transfer-Encoding: chunked\r\nTrailer: x-echo\r\n\r\n2\r\nhi\r\n0\r\nx-echo: 7\r\n\r\n"
)


def post_with_trailer(gateway, path: str) -> str:
    """The raw HTTP/1.1 answer's body (chunked, with its trailer section)."""
    host, port = gateway.addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=WAIT) as s:
        s.sendall(CHUNKED_WITH_TRAILER.replace(b"{path}", path.encode()))
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    text = answer.decode()
    assert text.startswith("HTTP/1.1 200"), text
    return text.split("\r\n\r\n", 1)[1]


def test_request_trailers_and_response_trailers_on_vyx_routes(gateway, serve):
    w = vyx.Worker(connect=gateway.ws, id="py:trailers")
    before = []

    @w.post("/whole")
    async def whole(req: vyx.Request):
        before.append(len(req.trailers))
        body = await req.body()
        fields = {"x-echo": req.trailers.get("x-echo", "none"), "x-length": str(len(body))}
        return vyx.Response(200, {"trailer": "x-echo, x-length"}, body, trailers=fields)

    @w.post("/streamed")
    async def streamed(req: vyx.Request):
        fields = []

        async def chunks():
            async for chunk in req.stream():
                yield chunk
            # Filled in once the body has ended: read after the last chunk.
            fields.append(("x-echo", req.trailers["x-echo"] + "!"))

        return vyx.Response(200, {"trailer": "x-echo"}, chunks(), trailers=fields)

    @w.post("/plain")
    def plain(req: vyx.Request):
        # A plain def handler gets the body read before it runs: the trailers too.
        return vyx.Response(200, {"trailer": "x-echo"}, req.content, trailers={"x-echo": req.trailers["x-echo"]})

    serve(w)
    assert post_with_trailer(gateway, "/whole") == "2\r\nhi\r\n0\r\nx-echo: 7\r\nx-length: 2\r\n\r\n"
    assert before == [0], "empty before the body was read"
    assert post_with_trailer(gateway, "/streamed") == "2\r\nhi\r\n0\r\nx-echo: 7!\r\n\r\n"
    assert post_with_trailer(gateway, "/plain") == "2\r\nhi\r\n0\r\nx-echo: 7\r\n\r\n"


async def trailers_app(scope, receive, send):
    """A raw ASGI app using the http.response.trailers extension when the server has it."""
    assert scope["type"] == "http"
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    offered = "http.response.trailers" in scope.get("extensions", {})
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"trailer", b"x-length, x-offered")],
            "trailers": offered,
        }
    )
    await send({"type": "http.response.body", "body": body})
    if offered:
        await send(
            {
                "type": "http.response.trailers",
                "headers": [(b"x-length", str(len(body)).encode())],
                "more_trailers": True,
            }
        )
        await send({"type": "http.response.trailers", "headers": [(b"x-offered", b"yes")]})


def test_asgi_response_trailers_extension(gateway, serve):
    serve(vyx.ASGIWorker(trailers_app, ["/asgi"], connect=gateway.ws, id="py:asgi-trailers", lifespan="off"))
    assert post_with_trailer(gateway, "/asgi") == "2\r\nhi\r\n0\r\nx-length: 2\r\nx-offered: yes\r\n\r\n"

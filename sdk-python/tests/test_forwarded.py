"""The client's address, scheme and HTTP version in ASGI and WSGI come from the core's rule
(spec/HOSTS.md §5): the last x-forwarded-for, x-forwarded-proto and via elements, as in every
SDK, here behind a gateway that trusts the loopback client as a proxy."""

import socket

import httpx

import vyx
from conftest import WAIT, Gateway, Served


async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = f"{scope['client'][0]} {scope['scheme']} {scope['http_version']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def wsgi_app(environ, start_response):
    start_response("200 OK", [("content-type", "text/plain")])
    return [
        f"{environ['REMOTE_ADDR']} {environ['wsgi.url_scheme']} {environ['SERVER_PROTOCOL']}".encode()
    ]


def http10_body(addr: str, path: str) -> str:
    """An HTTP/1.0 GET's body (the gateway closes after it)."""
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=WAIT) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nvia: 2 client-proxy\r\n\r\n".encode())
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    return reply.split(b"\r\n\r\n", 1)[1].decode()


def test_asgi_and_wsgi_read_the_client_scheme_and_version_by_the_cores_rule(tmp_path):
    config = tmp_path / "vyx.yaml"
    config.write_text("accept_unknown_workers: true\ntrusted_proxies: [127.0.0.1]\n")
    gw = Gateway("--config", str(config))
    served = []
    try:
        served.append(Served(vyx.ASGIWorker(asgi_app, ["/asgi"], connect=gw.ws, id="py:asgi")))
        served.append(Served(vyx.WSGIWorker(wsgi_app, ["/wsgi"], connect=gw.ws, id="py:wsgi")))
        # The trusted peer's list is kept and extended: "198.51.100.7, 127.0.0.1".
        headers = {"x-forwarded-for": "198.51.100.7", "x-forwarded-proto": "http, HTTPS"}
        with httpx.Client(base_url=gw.base, timeout=WAIT) as client:
            assert client.get("/asgi", headers=headers).text == "127.0.0.1 https 1.1"
            assert client.get("/wsgi", headers=headers).text == "127.0.0.1 https HTTP/1.1"
        # The gateway's via element ("1.0 vyx") follows the client's own.
        assert http10_body(gw.addr, "/asgi") == "127.0.0.1 http 1.0"
        assert http10_body(gw.addr, "/wsgi") == "127.0.0.1 http HTTP/1.0"
    finally:
        for s in served:
            s.stop()
        gw.close()

"""WebSockets through a real gateway, with a real client (the ``websockets`` package):
``@worker.ws`` handlers (the framing done in the core) and each limit: a message over the
size limit, the gateway's idle reset, a client gone without a close, ``stop()`` with a
connection open."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import List

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

import vyx
from conftest import WAIT, Gateway, Served

BIG = bytes(range(256)) * 4096  # 1 MiB: past the stream's window both ways


class Seen:
    """What a handler saw, waited on from the test's thread."""

    def __init__(self) -> None:
        self.items: List[object] = []
        self.cond = threading.Condition()

    def add(self, item: object) -> None:
        with self.cond:
            self.items.append(item)
            self.cond.notify_all()

    def wait(self, n: int = 1) -> List[object]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.items) >= n, WAIT), self.items
            return list(self.items)


def echo_worker(gateway: Gateway, seen: Seen, **options) -> vyx.Worker:
    worker = vyx.Worker(gateway.ws, "py:ws", **options)

    @worker.ws("/echo/{room}", subprotocols=["chat.v2", "chat.v1"])
    async def echo(ws: vyx.WebSocket) -> None:
        seen.add(("open", ws.request.params["room"], ws.subprotocol))
        try:
            while True:
                await ws.send(await ws.receive())
        except vyx.WebSocketClosed as closed:
            seen.add(("closed", closed.code, closed.reason))

    return worker


def test_ws_echoes_text_and_bytes_past_the_window_and_a_client_close_ends_it(gateway, serve):
    seen = Seen()
    serve(echo_worker(gateway, seen))
    with connect(gateway.ws + "/echo/lobby", subprotocols=["chat.v1", "chat.v2"]) as c:
        assert c.subprotocol == "chat.v1"  # the client's first that the route speaks
        c.send("héllo")
        assert c.recv(WAIT) == "héllo"
        c.send(b"\x00\x01")
        assert c.recv(WAIT) == b"\x00\x01"
        c.send(BIG)
        assert c.recv(WAIT) == BIG
        c.close(1000, "done")
    assert seen.wait(2) == [("open", "lobby", "chat.v1"), ("closed", 1000, "done")]


def test_ws_a_message_over_the_limit_closes_1009(gateway, serve):
    seen = Seen()
    serve(echo_worker(gateway, seen, ws_max_message_size=1024))
    with connect(gateway.ws + "/echo/a") as c:
        c.send(b"x" * 1024)
        assert c.recv(WAIT) == b"x" * 1024
        c.send(b"x" * 1025)
        with pytest.raises(ConnectionClosed) as e:
            c.recv(WAIT)
    assert e.value.rcvd is not None and e.value.rcvd.code == 1009
    assert seen.wait(2)[1][:2] == ("closed", 1009)


def test_ws_handler_closes_with_code_and_reason_and_return_closes_1000(gateway, serve):
    worker = vyx.Worker(gateway.ws, "py:ws")

    @worker.ws("/bye")
    async def bye(ws: vyx.WebSocket) -> None:
        await ws.close(4001, "bye now")

    @worker.ws("/return")
    async def ret(ws: vyx.WebSocket) -> None:
        await ws.send("one")

    serve(worker)
    with connect(gateway.ws + "/bye") as c:
        with pytest.raises(ConnectionClosed) as e:
            c.recv(WAIT)
    assert (e.value.rcvd.code, e.value.rcvd.reason) == (4001, "bye now")
    with connect(gateway.ws + "/return") as c:
        assert c.recv(WAIT) == "one"
        with pytest.raises(ConnectionClosed) as e:
            c.recv(WAIT)
    assert e.value.rcvd.code == 1000


def test_ws_route_answers_a_plain_get_426(gateway, serve, client):
    serve(echo_worker(gateway, Seen()))
    assert client.get("/echo/a").status_code == 426


def test_ws_a_client_gone_without_a_close_is_1006_to_the_handler(gateway, serve):
    seen = Seen()
    serve(echo_worker(gateway, seen))
    with connect(gateway.ws + "/echo/a") as c:
        c.send("x")
        assert c.recv(WAIT) == "x"
        c.socket.shutdown(socket.SHUT_RDWR)  # no close frame: the TCP connection just ends
    assert seen.wait(2)[1] == ("closed", 1006, "")


def test_ws_idle_past_upgrade_idle_is_reset_by_the_gateway(tmp_path):
    config = tmp_path / "vyx.yaml"
    config.write_text("accept_unknown_workers: true\ntimeouts: {upgrade_idle: 1s}\n")
    gw = Gateway("--config", str(config))
    try:
        seen = Seen()
        served = vyx.Worker(gw.ws, "py:ws")

        @served.ws("/idle")
        async def idle(ws: vyx.WebSocket) -> None:
            try:
                await ws.receive()
            except vyx.WebSocketClosed as closed:
                seen.add(closed.code)

        s = Served(served)
        try:
            with connect(gw.ws + "/idle") as c:
                with pytest.raises(ConnectionClosed) as e:
                    c.recv(WAIT)  # nothing moves: the gateway resets the stream
            assert e.value.rcvd is None  # the connection was cut, not closed by a frame
            assert seen.wait(1) == [1006]
        finally:
            s.stop()
    finally:
        gw.close()


def test_ws_stop_with_a_websocket_open_ends_it(gateway, serve):
    seen = Seen()
    served = serve(echo_worker(gateway, seen))
    with connect(gateway.ws + "/echo/a") as c:
        c.send("x")
        assert c.recv(WAIT) == "x"
        # Returns (Served.stop fails after WAIT otherwise), the WebSocket closed "going away"
        # at the drain's start, not cut at its deadline.
        served.stop(timeout=WAIT)
        with pytest.raises(ConnectionClosed) as e:
            c.recv(WAIT)
    assert e.value.rcvd is not None and e.value.rcvd.code == 1001
    assert seen.wait(2)[1] == ("closed", 1001, "going away")


def test_ws_receive_keeps_a_message_when_its_caller_timed_out(gateway, serve):
    seen = Seen()
    worker = vyx.Worker(gateway.ws, "py:ws")

    @worker.ws("/slow")
    async def slow(ws: vyx.WebSocket) -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ws.receive(), 0.01)
        await ws.send("ready")
        seen.add(await ws.receive())

    serve(worker)
    with connect(gateway.ws + "/slow") as c:
        assert c.recv(WAIT) == "ready"
        c.send("kept")
        assert seen.wait(1) == ["kept"]


def test_ws_configuration_is_checked(gateway):
    with pytest.raises(vyx.ConfigError):
        vyx.Worker(gateway.ws, "py:ws", ws_max_message_size=0)
    worker = vyx.Worker(gateway.ws, "py:ws")
    with pytest.raises(vyx.ConfigError):
        worker.ws("/x")(lambda ws: None)
    assert vyx.DEFAULT_WS_MAX_MESSAGE_SIZE == 16 << 20


def test_ws_refusal_before_the_handshake_is_not_a_websocket(gateway, serve):
    # A WebSocket client on a plain route gets that route's answer, never a 101.
    worker = vyx.Worker(gateway.ws, "py:ws")

    @worker.get("/plain")
    async def plain(req: vyx.Request):
        return vyx.Response(400 if req.upgrade else 200, body="plain")

    serve(worker)
    with pytest.raises(InvalidStatus) as e:
        connect(gateway.ws + "/plain")
    assert e.value.response.status_code == 400

"""A real FastAPI app's ``@app.websocket`` routes through a real gateway, with a real client
(the ``websockets`` package): the ASGI ``websocket`` scope (2.4) end to end."""

from __future__ import annotations

import socket
import threading
from typing import List

import pytest
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from starlette.responses import PlainTextResponse
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

import vyx
from conftest import WAIT
from test_frameworks import registered_routes

BIG = bytes(range(256)) * 4096  # 1 MiB: past the stream's window both ways


class Seen:
    def __init__(self) -> None:
        self.items: List[object] = []
        self.cond = threading.Condition()

    def add(self, item: object) -> None:
        with self.cond:
            self.items.append(item)
            self.cond.notify_all()

    def wait(self, n: int) -> List[object]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.items) >= n, WAIT), self.items
            return list(self.items)


def make_app(seen: Seen) -> FastAPI:
    app = FastAPI()

    @app.get("/rooms/{room}")
    async def room_page(room: str):
        return {"room": room}

    @app.websocket("/rooms/{room}")
    async def room_ws(websocket: WebSocket, room: str):
        await websocket.accept(subprotocol="chat", headers=[(b"x-room", room.encode())])
        seen.add(("scope", websocket.scope["type"], websocket.scope["subprotocols"], room))
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    seen.add(("disconnect", message["code"]))
                    return
                if message.get("text") is not None:
                    await websocket.send_text(message["text"])
                else:
                    await websocket.send_bytes(message["bytes"])
        except WebSocketDisconnect as e:
            seen.add(("disconnect", e.code))

    @app.websocket("/bye")
    async def bye(websocket: WebSocket):
        await websocket.accept()
        await websocket.close(code=4002, reason="see you")

    @app.websocket("/refuse")
    async def refuse(websocket: WebSocket):
        await websocket.close(code=1008)

    @app.websocket("/deny")
    async def deny(websocket: WebSocket):
        await websocket.send_denial_response(PlainTextResponse("members only", status_code=401))

    return app


def test_fastapi_websocket_echo_close_both_ways_and_http_beside_it(gateway, serve, client):
    seen = Seen()
    serve(vyx.ASGIWorker(make_app(seen), connect=gateway.ws, id="py:fastapi-ws"))
    routes = registered_routes(client, "py:fastapi-ws")
    # @app.websocket routes are GET routes of their own; an HTTP route of the same path is
    # there too (one handler: the scope tells them apart).
    assert {"GET /rooms/{room}", "GET /bye", "* /rooms/{room}"} <= set(routes)
    assert "* /bye" not in routes
    assert client.get("/rooms/blue").json() == {"room": "blue"}
    with connect(gateway.ws + "/rooms/blue", subprotocols=["chat"]) as c:
        assert c.subprotocol == "chat"
        assert c.response.headers["x-room"] == "blue"
        c.send("héllo")
        assert c.recv(WAIT) == "héllo"
        c.send(BIG)
        assert c.recv(WAIT) == BIG
        c.close(1000)
    assert seen.wait(2) == [("scope", "websocket", ["chat"], "blue"), ("disconnect", 1000)]
    with connect(gateway.ws + "/bye") as c:
        with pytest.raises(ConnectionClosed) as e:
            c.recv(WAIT)
    assert (e.value.rcvd.code, e.value.rcvd.reason) == (4002, "see you")


def test_fastapi_websocket_client_vanishing_is_a_disconnect_1006(gateway, serve):
    seen = Seen()
    serve(vyx.ASGIWorker(make_app(seen), connect=gateway.ws, id="py:fastapi-ws"))
    with connect(gateway.ws + "/rooms/red", subprotocols=["chat"]) as c:
        c.send("x")
        assert c.recv(WAIT) == "x"
        c.socket.shutdown(socket.SHUT_RDWR)  # no close frame: the TCP connection just ends
    assert seen.wait(2)[1] == ("disconnect", 1006)


def test_fastapi_websocket_refusals_403_and_the_apps_own_status(gateway, serve):
    serve(vyx.ASGIWorker(make_app(Seen()), connect=gateway.ws, id="py:fastapi-ws"))
    with pytest.raises(InvalidStatus) as e:
        connect(gateway.ws + "/refuse")
    assert e.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as e:
        connect(gateway.ws + "/deny")
    assert e.value.response.status_code == 401
    assert e.value.response.body == b"members only"

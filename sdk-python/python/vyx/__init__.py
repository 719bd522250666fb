"""vyx: write workers for the vyx gateway in Python.

.. code-block:: python

    import vyx

    worker = vyx.Worker(connect="ws://127.0.0.1:9000", id="py:api")

    @worker.get("/api/products/{id}")
    async def product(req: vyx.Request):
        return {"id": req.params["id"]}

    worker.start()

The protocol (framing, handshake, heartbeat, flow control, reconnect) is the Rust core's,
loaded as ``vyx._core``; this package maps handlers, requests and responses onto it.
"""

from ._errors import (
    AlreadyStartedError,
    ConfigError,
    ConnectionLostError,
    InvalidResponseError,
    RefusedError,
    StreamError,
    StreamResetError,
    VyxError,
)
from ._asgi import ASGIWorker, serve_asgi
from ._logs import RequestIdFilter, request_id
from ._request import Headers, Request, parse_query
from ._response import Response
from ._routes import asgi_routes, asgi_websocket_routes, wsgi_routes
from ._websocket import WebSocket, WebSocketClosed
from ._worker import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_WS_MAX_FRAME_SIZE,
    DEFAULT_WS_MAX_MESSAGE_SIZE,
    SDK,
    GatewayState,
    State,
    Worker,
    __version__,
)
from ._wsgi import WSGIWorker, serve_wsgi

__all__ = [
    "Worker",
    "Request",
    "Response",
    "Headers",
    "WebSocket",
    "WebSocketClosed",
    "State",
    "GatewayState",
    "parse_query",
    "request_id",
    "RequestIdFilter",
    "ASGIWorker",
    "serve_asgi",
    "WSGIWorker",
    "serve_wsgi",
    "asgi_routes",
    "asgi_websocket_routes",
    "wsgi_routes",
    "VyxError",
    "ConfigError",
    "RefusedError",
    "AlreadyStartedError",
    "StreamError",
    "StreamResetError",
    "ConnectionLostError",
    "InvalidResponseError",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_DRAIN_TIMEOUT",
    "DEFAULT_WS_MAX_MESSAGE_SIZE",
    "DEFAULT_WS_MAX_FRAME_SIZE",
    "SDK",
    "__version__",
]

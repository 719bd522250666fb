"""Traces across the hop: an ASGI app wrapped in OpenTelemetry's ASGI middleware, as any
ASGI app is instrumented, continues the gateway's trace with no vyx hook. A small OTLP/HTTP
receiver (opentelemetry-proto's types) gets the gateway's span; the worker's span is read
from an in-memory exporter."""

import http.server
import queue
import threading

import httpx
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import vyx
from conftest import WAIT, Gateway, Served

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


class Receiver:
    """An OTLP/HTTP (protobuf) collector on a loopback port; its spans come out of ``next``."""

    def __init__(self) -> None:
        spans: "queue.Queue[Span]" = queue.Queue()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                assert self.path == "/v1/traces"
                assert self.headers["content-type"] == "application/x-protobuf"
                export = ExportTraceServiceRequest.FromString(body)
                for rs in export.resource_spans:
                    for ss in rs.scope_spans:
                        for s in ss.spans:
                            spans.put(s)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:
                pass

        self.spans = spans
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next(self) -> Span:
        return self.spans.get(timeout=WAIT)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_asgi_middleware_continues_the_gateways_trace(tmp_path):
    receiver = Receiver()
    config = tmp_path / "vyx.yaml"
    config.write_text(
        "accept_unknown_workers: true\naccess_log: {mode: off}\n"
        f"tracing: {{endpoint: '{receiver.url}', service_name: gateway}}\n"
    )
    gateway = Gateway("--config", str(config))
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))

    async def item(request: Request) -> PlainTextResponse:
        seen = f"{request.headers.get('traceparent')} {request.headers.get('tracestate')}"
        return PlainTextResponse(seen)

    app = Starlette(routes=[Route("/items/{id}", item)])
    traced = OpenTelemetryMiddleware(app, tracer_provider=provider)
    served = None
    try:
        served = Served(vyx.ASGIWorker(traced, connect=gateway.ws, id="py:traced"))
        headers = {"traceparent": f"00-{TRACE}-{CLIENT_SPAN}-01", "tracestate": "vendor=x"}
        r = httpx.get(gateway.url("/items/7"), headers=headers, timeout=WAIT)
        assert r.status_code == 200, r.text

        span = receiver.next()
        assert span.trace_id.hex() == TRACE
        assert span.parent_span_id.hex() == CLIENT_SPAN, "the client's span"
        assert span.kind == Span.SPAN_KIND_SERVER
        # The middleware hides the app's routes: the worker claims everything.
        assert span.name == "GET /{*rest}"
        gateway_span = span.span_id.hex()
        # The app was given the gateway's span as its parent, and the client's tracestate.
        assert r.text == f"00-{TRACE}-{gateway_span}-01 vendor=x"

        servers = [s for s in exported.get_finished_spans() if s.kind == SpanKind.SERVER]
        assert len(servers) == 1, exported.get_finished_spans()
        worker = servers[0]
        assert format(worker.context.trace_id, "032x") == TRACE
        assert worker.parent is not None and worker.parent.is_remote
        assert format(worker.parent.span_id, "016x") == gateway_span, "the gateway's span"
    finally:
        if served is not None:
            served.stop()
        gateway.close()
        receiver.close()

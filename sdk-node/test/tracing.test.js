'use strict';
// Traces across the hop: a handler that extracts the context from its request's headers
// with OpenTelemetry's W3C propagator, as any Node instrumentation does, continues the
// gateway's trace with no vyx hook. A small OTLP/HTTP receiver (the proto's few messages it
// reads, decoded by protobufjs) gets the gateway's span; the worker's span is read from an
// in-memory exporter.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const protobuf = require('protobufjs');
const otel = require('@opentelemetry/api');
const { W3CTraceContextPropagator } = require('@opentelemetry/core');
const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { startGateway, request, startWorker, within } = require('./helpers');

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CLIENT_SPAN = '00f067aa0ba902b7';

// The fields of opentelemetry-proto's collector/trace/v1 and trace/v1 messages this test
// reads, with their numbers; protobufjs skips the rest.
const { ExportTraceServiceRequest } = protobuf.parse(`
  syntax = "proto3";
  message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
  message ResourceSpans { repeated ScopeSpans scope_spans = 2; }
  message ScopeSpans { repeated Span spans = 2; }
  message Span {
    bytes trace_id = 1;
    bytes span_id = 2;
    bytes parent_span_id = 4;
    string name = 5;
    int32 kind = 6;
  }
`).root.nested;
const SPAN_KIND_SERVER = 2;

/** An OTLP/HTTP (protobuf) collector on a loopback port; `next()` resolves its next span. */
async function startReceiver() {
  const spans = [];
  const waiting = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      assert.equal(req.url, '/v1/traces');
      assert.equal(req.headers['content-type'], 'application/x-protobuf');
      const hex = (b) => Buffer.from(b).toString('hex');
      for (const rs of ExportTraceServiceRequest.decode(Buffer.concat(chunks)).resourceSpans) {
        for (const ss of rs.scopeSpans) {
          for (const s of ss.spans) {
            const span = { traceId: hex(s.traceId), spanId: hex(s.spanId), parentSpanId: hex(s.parentSpanId), name: s.name, kind: s.kind };
            if (waiting.length) waiting.shift()(span);
            else spans.push(span);
          }
        }
      }
      // An empty ExportTraceServiceResponse: full success.
      res.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': 0 });
      res.end();
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    next: () => within(spans.length ? Promise.resolve(spans.shift()) : new Promise((r) => waiting.push(r)), 15_000, 'a span at the receiver'),
    close: () => {
      const closed = new Promise((r) => server.close(r));
      server.closeAllConnections();
      return closed;
    },
  };
}

let dir;
let receiver;
let gw;
let worker;
let done;

test.after(async () => {
  if (worker) await worker.stop(1000);
  if (done) await done;
  if (gw) await gw.stop();
  if (receiver) await receiver.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test("the handler's span continues the gateway's trace, whose parent is the client's span", async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vyx-node-tracing-'));
  receiver = await startReceiver();
  const config = path.join(dir, 'vyx.yaml');
  fs.writeFileSync(
    config,
    `accept_unknown_workers: true\naccess_log: {mode: off}\ntracing: {endpoint: '${receiver.url}', service_name: gateway}\n`,
  );
  gw = await startGateway(['--config', config]);

  const exported = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exported)] });
  const tracer = provider.getTracer('node-worker');
  const propagator = new W3CTraceContextPropagator();
  ({ worker, done } = await startWorker(gw, (w) => {
    w.http('/items/{id}', (req, res) => {
      const parent = propagator.extract(otel.ROOT_CONTEXT, req.headers, otel.defaultTextMapGetter);
      const span = tracer.startSpan('GET /items/{id}', { kind: otel.SpanKind.SERVER }, parent);
      res.end(`${req.headers.traceparent} ${req.headers.tracestate}`);
      span.end();
    });
  }));

  const r = await request(gw.addr, 'GET', '/items/7', {
    headers: { traceparent: `00-${TRACE}-${CLIENT_SPAN}-01`, tracestate: 'vendor=x' },
  });
  assert.equal(r.status, 200, r.body.toString());

  const gateway = await receiver.next();
  assert.equal(gateway.traceId, TRACE);
  assert.equal(gateway.parentSpanId, CLIENT_SPAN, "the client's span");
  assert.equal(gateway.kind, SPAN_KIND_SERVER);
  assert.equal(gateway.name, 'GET /items/{id}');
  // The handler was given the gateway's span as its parent, and the client's tracestate.
  assert.equal(r.body.toString(), `00-${TRACE}-${gateway.spanId}-01 vendor=x`);

  const [span, ...more] = exported.getFinishedSpans();
  assert.deepEqual(more, []);
  assert.equal(span.spanContext().traceId, TRACE);
  assert.equal(span.parentSpanContext?.spanId, gateway.spanId, "the gateway's span");
  assert.equal(span.parentSpanContext?.isRemote, true);
});

//! Traces across the hop (issue 20, item 3): a small OTLP/HTTP receiver gets the gateway's
//! span and a Rust worker's span (made with the `opentelemetry` API from the headers the
//! worker received), and they form one trace under the client's span. The other SDKs' tests
//! are in their own folders (see docs/OPERATIONS.md, "Traces").

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{Span as _, SpanKind, Tracer as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind as ProtoKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use prost::Message as _;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use vyx::Request;
use vyx_gateway::otel::{traces_url, TracingConfig};

/// A span as received, with the `service.name` of its resource.
#[derive(Debug)]
struct Received {
    service: String,
    span: Span,
}

/// An OTLP/HTTP (protobuf) collector on a loopback port: every span it is sent comes out
/// of [`Collector::span`].
struct Collector {
    addr: SocketAddr,
    spans: mpsc::UnboundedReceiver<Received>,
    seen: Vec<Received>,
}

impl Collector {
    async fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, spans) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tx = tx.clone();
                let serve = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        assert_eq!(req.uri().path(), "/v1/traces");
                        assert_eq!(req.headers()["content-type"], "application/x-protobuf");
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let export = ExportTraceServiceRequest::decode(body).unwrap();
                        for resource in export.resource_spans {
                            let attrs = resource.resource.map(|r| r.attributes);
                            let service = string_attr(&attrs.unwrap_or_default(), "service.name");
                            for scope in resource.scope_spans {
                                for span in scope.spans {
                                    let service = service.clone().unwrap_or_default();
                                    let _ = tx.send(Received { service, span });
                                }
                            }
                        }
                        let answer = ExportTraceServiceResponse::default().encode_to_vec();
                        let resp = http::Response::builder()
                            .header("content-type", "application/x-protobuf")
                            .body(Full::new(Bytes::from(answer)))
                            .unwrap();
                        Ok::<_, Infallible>(resp)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), serve),
                );
            }
        });
        Collector {
            addr,
            spans,
            seen: Vec::new(),
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The first span of `service` (bounded wait).
    async fn span(&mut self, service: &str) -> Span {
        loop {
            if let Some(i) = self.seen.iter().position(|r| r.service == service) {
                return self.seen.remove(i).span;
            }
            let got = tokio::time::timeout(WAIT, self.spans.recv())
                .await
                .unwrap_or_else(|_| panic!("no span of {service} in time; got {:?}", self.seen))
                .expect("collector running");
            self.seen.push(got);
        }
    }
}

fn string_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            AnyValue::StringValue(s) => Some(s.clone()),
            AnyValue::IntValue(i) => Some(i.to_string()),
            AnyValue::BoolValue(b) => Some(b.to_string()),
            _ => None,
        }
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

async fn traced_gateway(collector: &Collector) -> TestGateway {
    let endpoint = collector.endpoint();
    TestGateway::start_with(move |c| {
        c.tracing = Some(TracingConfig {
            endpoint: Some(endpoint),
            service_name: Some("gateway".into()),
            ..TracingConfig::default()
        });
    })
    .await
}

/// The request headers, for the propagator (what `opentelemetry-http`'s extractor does).
struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// A Rust worker on `GET /items/{id}` whose handler continues the incoming trace with a
/// server span of its own (exported to `collector` as `rust-worker`), and answers with the
/// `traceparent` and `tracestate` it was given.
async fn traced_worker(gw: SocketAddr, collector: &Collector) -> (vyx::Worker, SdkTracerProvider) {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(traces_url(&collector.endpoint()))
        .build()
        .unwrap();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("rust-worker").build())
        .build();
    let tracer = provider.tracer("worker");
    let worker = vyx::Worker::builder()
        .connect(format!("ws://{gw}"))
        .id("traced")
        .handle_signals(false)
        .get("/items/{id}", move |req: Request| {
            let parent = TraceContextPropagator::new().extract(&Headers(req.headers()));
            let mut span = tracer
                .span_builder("GET /items/{id}")
                .with_kind(SpanKind::Server)
                .start_with_context(&tracer, &parent);
            span.end();
            let seen = |name: &str| {
                req.header(name)
                    .map_or("-".to_string(), |v| v.to_str().unwrap().to_string())
            };
            let answer = format!("{} {}", seen("traceparent"), seen("tracestate"));
            async move { answer }
        })
        .build()
        .expect("valid worker");
    start_connected(&worker).await;
    (worker, provider)
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn the_client_span_parents_the_gateway_span_which_parents_the_rust_workers() {
    let mut collector = Collector::start().await;
    let gw = traced_gateway(&collector).await;
    let (_worker, provider) = traced_worker(gw.addr, &collector).await;
    let traceparent = format!("00-{TRACE}-{CLIENT_SPAN}-01");
    let headers = [
        ("traceparent", traceparent.as_str()),
        ("tracestate", "vendor=x"),
        ("user-agent", "tracing-test"),
    ];
    let (status, _, body) = send(&client(), "GET", &gw.url("/items/7"), &headers, "").await;
    assert_eq!(status, 200);
    let flushed = tokio::task::spawn_blocking(move || provider.force_flush());
    flushed.await.unwrap().expect("worker spans exported");

    let gateway = collector.span("gateway").await;
    assert_eq!(hex(&gateway.trace_id), TRACE);
    assert_eq!(
        hex(&gateway.parent_span_id),
        CLIENT_SPAN,
        "the client's span"
    );
    assert_eq!(gateway.kind, ProtoKind::Server as i32);
    assert_eq!(gateway.name, "GET /items/{id}");
    let attr = |k: &str| string_attr(&gateway.attributes, k);
    assert_eq!(attr("http.request.method").as_deref(), Some("GET"));
    assert_eq!(attr("http.route").as_deref(), Some("/items/{id}"));
    assert_eq!(attr("url.path").as_deref(), Some("/items/7"));
    assert_eq!(attr("http.response.status_code").as_deref(), Some("200"));
    assert_eq!(attr("user_agent.original").as_deref(), Some("tracing-test"));
    assert_eq!(attr("vyx.worker.id").as_deref(), Some("traced"));
    assert_eq!(attr("vyx.retried").as_deref(), Some("false"));
    let events: Vec<_> = gateway.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        events,
        ["vyx.routed", "vyx.worker", "vyx.response_head"],
        "{gateway:?}"
    );

    // The worker was given the gateway's span as its parent, and the client's tracestate.
    let expected = format!("00-{TRACE}-{}-01 vendor=x", hex(&gateway.span_id));
    assert_eq!(String::from_utf8_lossy(&body), expected);
    let worker = collector.span("rust-worker").await;
    assert_eq!(hex(&worker.trace_id), TRACE);
    assert_eq!(worker.parent_span_id, gateway.span_id, "the gateway's span");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_missing_or_invalid_traceparent_starts_a_new_trace_at_the_gateway() {
    let mut collector = Collector::start().await;
    let gw = traced_gateway(&collector).await;
    let (_worker, _provider) = traced_worker(gw.addr, &collector).await;
    let invalid = [("traceparent", "00-not-a-trace-01"), ("tracestate", "v=1")];
    for headers in [&[][..], &invalid[..]] {
        let (status, _, body) = send(&client(), "GET", &gw.url("/items/1"), headers, "").await;
        assert_eq!(status, 200);
        let gateway = collector.span("gateway").await;
        assert!(
            gateway.parent_span_id.is_empty(),
            "a root span: {gateway:?}"
        );
        assert_eq!(gateway.trace_id.len(), 16);
        // No tracestate without a valid traceparent (W3C trace context §3.3).
        let expected = format!(
            "00-{}-{}-01 -",
            hex(&gateway.trace_id),
            hex(&gateway.span_id)
        );
        assert_eq!(String::from_utf8_lossy(&body), expected);
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn with_traces_off_the_clients_headers_reach_the_worker_as_sent() {
    let collector = Collector::start().await;
    let gw = TestGateway::start().await;
    let (_worker, _provider) = traced_worker(gw.addr, &collector).await;
    let traceparent = format!("00-{TRACE}-{CLIENT_SPAN}-01");
    let headers = [("traceparent", traceparent.as_str()), ("tracestate", "v=1")];
    let (status, _, body) = send(&client(), "GET", &gw.url("/items/1"), &headers, "").await;
    assert_eq!(status, 200);
    assert_eq!(String::from_utf8_lossy(&body), format!("{traceparent} v=1"));
    gw.shutdown().await;
}

/// A collector that takes connections and never answers: requests are answered all the
/// same, and the gateway's stop is not held past the exporter's bound.
#[tokio::test]
async fn a_collector_that_never_answers_does_not_hold_requests() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    let gw = TestGateway::start_with(move |c| {
        c.tracing = Some(TracingConfig {
            endpoint: Some(endpoint),
            queue: 1,
            ..TracingConfig::default()
        });
    })
    .await;
    let w = RawWorker::connect(gw.addr, "w", vec![route(1, "GET", "/{what}")]).await;
    serve_ok(w);
    let c = client();
    // One span waits for the exporter (or is being exported, forever): of two requests in
    // a row, the second's span finds the queue full.
    let dropped = "vyx_trace_spans_dropped_total{reason=\"queue_full\"}";
    let deadline = tokio::time::Instant::now() + WAIT;
    while metric(&gw, dropped).await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no span dropped");
        assert_eq!(get(&c, &gw.url("/x")).await.0, 200);
    }
    gw.shutdown().await;
    held.abort();
}

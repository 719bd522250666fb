//! Traces: W3C trace context in, one server span per proxied request, and the worker's
//! `traceparent` naming that span as its parent; spans leave over OTLP/HTTP (protobuf) from
//! a batch exporter on a thread of its own.
//!
//! Off unless `tracing.endpoint` or `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT` is set: then the
//! request path holds a `None` and does nothing else (the client's trace headers go to the
//! worker as they came). On, the request path never waits for the exporter: a span that
//! finds the queue full is dropped and counted (`vyx_trace_spans_dropped_total`).
//!
//! ```yaml
//! tracing: {endpoint: "http://collector:4318", sample_ratio: 0.1, service_name: edge}
//! ```

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, Span, SpanData,
    SpanExporter, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use prometheus_client::metrics::counter::Counter;

use crate::access_log::Entry;

/// `tracing:` in `vyx.yaml`. Whatever it leaves out, the standard `OTEL_*` variables give.
#[derive(Clone, Debug, PartialEq)]
pub struct TracingConfig {
    /// The collector's OTLP/HTTP base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` (spans go to
    /// `{endpoint}/v1/traces`).
    pub endpoint: Option<String>,
    /// `service.name` of the spans (else `OTEL_SERVICE_NAME`, else `vyx`).
    pub service_name: Option<String>,
    /// The share of new traces recorded; a client's sampled flag is followed either way
    /// (parent-based). Else `OTEL_TRACES_SAMPLER`/`_ARG`, else every trace.
    pub sample_ratio: Option<f64>,
    /// Sent with every export (an API key); `OTEL_EXPORTER_OTLP_HEADERS` adds to them.
    pub headers: Vec<(String, String)>,
    /// Spans waiting for the exporter; past it they are dropped and counted.
    pub queue: usize,
}

/// `tracing.queue` when the file gives none (the OpenTelemetry SDKs' default).
pub const DEFAULT_QUEUE: usize = 2048;

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            endpoint: None,
            service_name: None,
            sample_ratio: None,
            headers: Vec::new(),
            queue: DEFAULT_QUEUE,
        }
    }
}

/// The gateway's tracer, when traces are on.
pub struct Tracing {
    tracer: SdkTracer,
    provider: SdkTracerProvider,
}

/// Spans dropped, by why: `queue_full` (the exporter is behind) or `export_failed`.
#[derive(Clone)]
pub struct Dropped {
    pub queue_full: Counter,
    pub export_failed: Counter,
}

impl Tracing {
    /// The tracer and its exporter thread, or `None` when no endpoint is configured (or
    /// `OTEL_SDK_DISABLED=true`, or `OTEL_TRACES_EXPORTER=none`).
    pub fn start(
        config: Option<&TracingConfig>,
        dropped: Dropped,
    ) -> std::io::Result<Option<Tracing>> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
        let default = TracingConfig::default();
        let config = config.unwrap_or(&default);
        let endpoint = config.endpoint.as_ref();
        let from_env =
            env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or(env("OTEL_EXPORTER_OTLP_ENDPOINT"));
        if disabled || (endpoint.is_none() && from_env.is_none()) {
            return Ok(None);
        }
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
        if let Some(e) = endpoint {
            exporter = exporter.with_endpoint(traces_url(e));
        }
        if !config.headers.is_empty() {
            exporter = exporter.with_headers(config.headers.iter().cloned().collect());
        }
        let exporter = exporter
            .build()
            .map_err(|e| std::io::Error::other(format!("tracing: {e}")))?;
        let in_queue = Arc::new(AtomicUsize::new(0));
        let queue = config.queue.max(1);
        let batch = BatchSpanProcessor::builder(Counted {
            inner: exporter,
            in_queue: in_queue.clone(),
            failed: dropped.export_failed.clone(),
        })
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(queue)
                .build(),
        )
        .build();
        let service = config
            .service_name
            .clone()
            .or(env("OTEL_SERVICE_NAME"))
            .unwrap_or_else(|| "vyx".into());
        let mut provider = SdkTracerProvider::builder()
            .with_span_processor(Bounded {
                inner: batch,
                in_queue,
                queue,
                dropped: dropped.queue_full,
            })
            .with_resource(Resource::builder().with_service_name(service).build());
        if let Some(r) = config.sample_ratio {
            let ratio = Sampler::TraceIdRatioBased(r);
            provider = provider.with_sampler(Sampler::ParentBased(Box::new(ratio)));
        }
        let provider = provider.build();
        let tracer = provider.tracer_with_scope(
            opentelemetry::InstrumentationScope::builder("vyx-gateway")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        );
        Ok(Some(Tracing { tracer, provider }))
    }

    /// Starts the server span of a request, the child of the client's `traceparent` when it
    /// is valid (a new trace otherwise).
    pub fn start_span<B>(&self, req: &http::Request<B>, client: SocketAddr) -> RequestSpan {
        let parent = TraceContextPropagator::new().extract(&Headers(req.headers()));
        let mut attributes = vec![
            KeyValue::new("http.request.method", req.method().to_string()),
            KeyValue::new("url.path", req.uri().path().to_string()),
            KeyValue::new("url.scheme", crate::tls::scheme(req.extensions())),
            KeyValue::new("client.address", client.ip().to_string()),
            KeyValue::new("client.port", i64::from(client.port())),
            KeyValue::new("network.protocol.version", protocol_version(req.version())),
        ];
        let host = match req.uri().authority() {
            Some(a) => Some(a.host().to_string()),
            None => req.headers().get(http::header::HOST).map(|h| {
                let h = String::from_utf8_lossy(h.as_bytes());
                // `name[:port]`; an IPv6 literal keeps its brackets.
                match h.rsplit_once(':') {
                    Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => {
                        name.to_string()
                    }
                    _ => h.into_owned(),
                }
            }),
        };
        if let Some(host) = host {
            attributes.push(KeyValue::new("server.address", host));
        }
        if let Some(ua) = req.headers().get(http::header::USER_AGENT) {
            let ua = String::from_utf8_lossy(ua.as_bytes()).into_owned();
            attributes.push(KeyValue::new("user_agent.original", ua));
        }
        let span = self
            .tracer
            .span_builder(req.method().to_string())
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &parent);
        let mut to_worker = Headers2::default();
        let cx = Context::new().with_remote_span_context(span.span_context().clone());
        TraceContextPropagator::new().inject_context(&cx, &mut to_worker);
        RequestSpan {
            span,
            to_worker: TraceHeaders {
                traceparent: to_worker.traceparent,
                tracestate: to_worker.tracestate,
            },
        }
    }

    /// Exports what is queued and stops the exporter (at most a few seconds: the
    /// exporter's own timeout). Blocks: call it off the runtime's threads.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown_with_timeout(Duration::from_secs(5)) {
            tracing::warn!(error = %e, "traces: the last spans may not have been exported");
        }
    }
}

/// The request's span when traces are on (nothing else is done when they are off).
pub(crate) fn start_span<B>(
    shared: &crate::Shared,
    req: &http::Request<B>,
    client: SocketAddr,
) -> Option<RequestSpan> {
    shared.tracing.as_ref().map(|t| t.start_span(req, client))
}

/// `{endpoint}/v1/traces`, as the OTLP exporters make it from `OTEL_EXPORTER_OTLP_ENDPOINT`.
pub fn traces_url(endpoint: &str) -> String {
    format!("{}/v1/traces", endpoint.trim_end_matches('/'))
}

fn protocol_version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// The trace headers the worker gets in place of the client's.
#[derive(Clone, Debug)]
pub struct TraceHeaders {
    /// Names the gateway's span as the parent.
    pub traceparent: Option<HeaderValue>,
    /// The client's, when its `traceparent` was valid.
    pub tracestate: Option<HeaderValue>,
}

impl TraceHeaders {
    /// Whether the client's copy of the header `name` is replaced.
    pub fn replaces(name: &str) -> bool {
        name == "traceparent" || name == "tracestate"
    }
}

/// A request's server span, ended by [`RequestSpan::finish`] once the response is over.
pub struct RequestSpan {
    span: Span,
    pub to_worker: TraceHeaders,
}

impl RequestSpan {
    /// Ends the span with what the access log records: the route, the status, the sizes,
    /// the worker, and events for routing, the worker's slot and the response head.
    pub fn finish(mut self, entry: &Entry) {
        let span = &mut self.span;
        if !span.is_recording() {
            return;
        }
        let at = |d: Duration| entry.time + d;
        if let Some(route) = &entry.route {
            span.update_name(format!("{} {}", entry.method, route.key.path));
            span.set_attribute(KeyValue::new("http.route", route.key.path.to_string()));
        }
        if let (Some(admitted), Some(wait)) = (entry.admitted, entry.queue_wait) {
            let admitted = admitted.saturating_duration_since(entry.start);
            let queued = admitted.saturating_sub(wait);
            span.add_event_with_timestamp("vyx.routed", at(queued), vec![]);
            let mut attrs = vec![KeyValue::new("vyx.queue_wait_ms", ms(wait))];
            if let Some(w) = &entry.worker {
                attrs.push(KeyValue::new("vyx.worker.id", w.worker_id.clone()));
                attrs.push(KeyValue::new("vyx.worker.instance", w.instance.clone()));
            }
            span.add_event_with_timestamp("vyx.worker", at(admitted), attrs);
            if let Some(ttfb) = entry.ttfb {
                let worker = ttfb.saturating_sub(admitted);
                span.set_attribute(KeyValue::new("vyx.worker_ms", ms(worker)));
            }
        }
        if let Some(ttfb) = entry.ttfb {
            span.add_event_with_timestamp("vyx.response_head", at(ttfb), vec![]);
        }
        let id = String::from_utf8_lossy(entry.request_id.as_bytes()).into_owned();
        span.set_attribute(KeyValue::new("vyx.request_id", id));
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(entry.status),
        ));
        let bytes_in = entry
            .bytes_in
            .as_ref()
            .map_or(0, |b| b.load(Ordering::Relaxed));
        span.set_attribute(KeyValue::new("http.request.body.size", bytes_in as i64));
        span.set_attribute(KeyValue::new(
            "http.response.body.size",
            entry.bytes_out as i64,
        ));
        if let Some(w) = &entry.worker {
            span.set_attribute(KeyValue::new("vyx.worker.id", w.worker_id.clone()));
            span.set_attribute(KeyValue::new("vyx.worker.instance", w.instance.clone()));
        }
        span.set_attribute(KeyValue::new("vyx.retried", entry.retried));
        if let Some(e) = &entry.error {
            span.set_attribute(KeyValue::new("vyx.error", e.clone()));
        }
        // Server spans: a 5xx is the server's error, a 4xx the client's (left unset).
        if entry.status >= 500 {
            span.set_attribute(KeyValue::new("error.type", entry.status.to_string()));
            let why = entry.error.clone().map_or(Cow::Borrowed(""), Cow::Owned);
            span.set_status(Status::error(why));
        }
        span.end_with_timestamp(SystemTime::now());
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The client's headers, read by the propagator.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// What the propagator writes for the worker.
#[derive(Default)]
struct Headers2 {
    traceparent: Option<HeaderValue>,
    tracestate: Option<HeaderValue>,
}

impl Injector for Headers2 {
    fn set(&mut self, key: &str, value: String) {
        let Ok(v) = HeaderValue::try_from(value) else {
            return;
        };
        match key {
            "traceparent" => self.traceparent = Some(v),
            "tracestate" if !v.is_empty() => self.tracestate = Some(v),
            _ => {}
        }
    }
}

/// The bound on spans waiting for the exporter: a span past `queue` is dropped and counted
/// here, so that the batch processor's own queue never fills (it drops silently).
#[derive(Debug)]
struct Bounded {
    inner: BatchSpanProcessor,
    in_queue: Arc<AtomicUsize>,
    queue: usize,
    dropped: Counter,
}

impl SpanProcessor for Bounded {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.in_queue.fetch_add(1, Ordering::AcqRel) >= self.queue {
            self.in_queue.fetch_sub(1, Ordering::AcqRel);
            self.dropped.inc();
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter, telling [`Bounded`] which spans have left the queue.
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    in_queue: Arc<AtomicUsize>,
    failed: Counter,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        self.in_queue.fetch_sub(n, Ordering::AcqRel);
        let result = self.inner.export(batch).await;
        if result.is_err() {
            self.failed.inc_by(n as u64);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};

    use super::*;

    #[derive(Debug, Default, Clone)]
    struct Kept(Arc<Mutex<usize>>);

    impl SpanExporter for Kept {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            *self.0.lock().unwrap() += batch.len();
            Ok(())
        }
    }

    #[test]
    fn spans_past_the_queue_are_dropped_and_counted() {
        let in_queue = Arc::new(AtomicUsize::new(0));
        let exported = Kept::default();
        let failed = Counter::default();
        let counted = Counted {
            inner: exported.clone(),
            in_queue: in_queue.clone(),
            failed: failed.clone(),
        };
        // Nothing is exported before the shutdown: the queue holds what was ended.
        let config = BatchConfigBuilder::default()
            .with_scheduled_delay(Duration::from_secs(3600))
            .build();
        let dropped = Counter::default();
        let bounded = Bounded {
            inner: BatchSpanProcessor::builder(counted)
                .with_batch_config(config)
                .build(),
            in_queue: in_queue.clone(),
            queue: 2,
            dropped: dropped.clone(),
        };
        let provider = SdkTracerProvider::builder()
            .with_span_processor(bounded)
            .build();
        let tracer = provider.tracer("t");
        for _ in 0..5 {
            tracer.start("s").end();
        }
        assert_eq!(dropped.get(), 3);
        provider.shutdown().unwrap();
        assert_eq!(*exported.0.lock().unwrap(), 2);
        assert_eq!(in_queue.load(Ordering::Acquire), 0);
        assert_eq!(failed.get(), 0);
    }
}

//! The gateway's log subscriber, with warnings from the HTTP libraries (hyper, h2) logged
//! once per client connection: a client that sends a thousand unsolicited PING acks gets
//! one line, and a count when its connection ends, not a thousand lines.

use std::fmt::Write as _;

use tracing::field::Visit;
use tracing::span::Id;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layered, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, Registry};

use crate::log_format::{JsonFields, JsonLine, LogFormat};

/// The name of the span each client connection runs in.
pub const CONN_SPAN: &str = "http_conn";

/// The subscriber `vyx` logs with, in `format`: `filter` (from `RUST_LOG`), then
/// [`OncePerConnection`]. Both filter the whole subscriber, not the one output layer: a
/// per-layer filter looked each span up in the registry on every enter and exit of the
/// connection and request spans (about 1,800 instructions a request).
pub fn subscriber<W>(
    writer: W,
    ansi: bool,
    filter: EnvFilter,
    format: LogFormat,
) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    type Filtered = Layered<OncePerConnection, Layered<EnvFilter, Registry>>;
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    let layer: Box<dyn Layer<Filtered> + Send + Sync> = match format {
        LogFormat::Text => Box::new(layer.with_ansi(ansi)),
        LogFormat::Json => Box::new(
            layer
                .with_ansi(false)
                .event_format(JsonLine)
                .fmt_fields(JsonFields),
        ),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(OncePerConnection)
        .with(layer)
}

/// Lets the first warning of each kind (callsite) from hyper or h2 through per connection
/// span, counts the rest, and logs the count when the connection ends.
pub struct OncePerConnection;

/// What a connection span has seen: its peer, and per callsite the first message and how
/// many more.
#[derive(Default)]
struct Seen {
    peer: String,
    warnings: Vec<(&'static Metadata<'static>, String, u64)>,
}

fn is_library_warning(meta: &Metadata<'_>) -> bool {
    *meta.level() <= Level::WARN
        && (meta.target().starts_with("h2") || meta.target().starts_with("hyper"))
}

impl<S> Layer<S> for OncePerConnection
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, id: &Id, cx: Context<'_, S>) {
        if attrs.metadata().name() != CONN_SPAN {
            return;
        }
        let mut peer = Field("peer", String::new());
        attrs.record(&mut peer);
        if let Some(span) = cx.span(id) {
            span.extensions_mut().insert(Seen {
                peer: peer.1,
                warnings: Vec::new(),
            });
        }
    }

    fn event_enabled(&self, event: &Event<'_>, cx: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if !is_library_warning(meta) {
            return true;
        }
        let Some(conn) = cx
            .event_scope(event)
            .and_then(|mut scope| scope.find(|s| s.name() == CONN_SPAN))
        else {
            return true;
        };
        let mut ext = conn.extensions_mut();
        let Some(seen) = ext.get_mut::<Seen>() else {
            return true;
        };
        if let Some(entry) = seen
            .warnings
            .iter_mut()
            .find(|(m, _, _)| std::ptr::eq(*m, meta))
        {
            entry.2 += 1;
            return false;
        }
        let mut message = Field("message", String::new());
        event.record(&mut message);
        seen.warnings.push((meta, message.1, 0));
        true
    }

    fn on_close(&self, id: Id, cx: Context<'_, S>) {
        let Some(span) = cx.span(&id) else {
            return;
        };
        if span.name() != CONN_SPAN {
            return;
        }
        let Some(seen) = span.extensions_mut().remove::<Seen>() else {
            return;
        };
        drop(span);
        for (meta, message, more) in seen.warnings {
            if more > 0 {
                tracing::warn!(
                    target: "vyx_gateway::log_limit",
                    peer = %seen.peer,
                    repeated = more,
                    source = meta.target(),
                    "the warning {message:?} repeated {more} more times on one client connection (logged once)"
                );
            }
        }
    }
}

/// Records one field's value as text.
struct Field(&'static str, String);

impl Visit for Field {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == self.0 {
            let _ = write!(self.1, "{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What `filter` lets through of a request's events, as `format` writes them.
    fn logged(filter: &str, format: LogFormat) -> Vec<String> {
        let out = Capture::default();
        let sink = out.clone();
        let s = subscriber(move || sink.clone(), false, EnvFilter::new(filter), format);
        tracing::subscriber::with_default(s, || {
            let conn = tracing::error_span!(CONN_SPAN, peer = %"127.0.0.1:9");
            let _conn = conn.enter();
            // As `proxy` logs: the request's span is a debug one, and its warnings carry
            // the request's id themselves.
            for id in ["aa11", "bb22"] {
                let request = tracing::debug_span!("request", request_id = %id);
                let _request = request.enter();
                tracing::debug!(worker_id = "w", "retrying on another replica");
                tracing::warn!(request_id = %id, worker_id = "w", "worker timed out");
            }
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        // Text lines without the time stamp they start with.
        text.lines()
            .map(|l| match format {
                LogFormat::Text => l.split_once(' ').map_or(l, |(_, rest)| rest).trim(),
                LogFormat::Json => l,
            })
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_filter_and_the_span_context_reach_every_line_as_before() {
        assert_eq!(
            logged("info", LogFormat::Text),
            [
                "WARN http_conn{peer=127.0.0.1:9}: vyx_gateway::log_limit::tests: worker timed out request_id=aa11 worker_id=\"w\"",
                "WARN http_conn{peer=127.0.0.1:9}: vyx_gateway::log_limit::tests: worker timed out request_id=bb22 worker_id=\"w\"",
            ]
        );
        // A span-field directive turns debug on inside one request only.
        let lines = logged("info,[request{request_id=bb22}]=debug", LogFormat::Text);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[1].starts_with("DEBUG http_conn{peer=127.0.0.1:9}:request{request_id=bb22}:"));
        assert!(logged("error", LogFormat::Text).is_empty());
        let json = logged("info", LogFormat::Json);
        assert_eq!(json.len(), 2);
        assert!(
            json[0].contains("\"request_id\":\"aa11\"")
                && json[0].contains("\"peer\":\"127.0.0.1:9\""),
            "{}",
            json[0]
        );
    }
}

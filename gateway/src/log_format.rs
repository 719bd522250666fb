//! `--log-format json|text`: the gateway's log lines as text (tracing-subscriber's default)
//! or as one flat JSON object per line, with stable field names: `time`, `level`, `target`,
//! `message`, the fields of every enclosing span (`peer` of a client connection,
//! `request_id` of a request), then the event's own fields.
//!
//! ```text
//! {"level":"WARN","message":"worker timed out","peer":"127.0.0.1:50012","request_id":"5f0c…","route":"GET /slow","target":"vyx_gateway::proxy","time":"2026-12-06T21:02:11.480Z","worker_id":"api"}
//! ```

use std::fmt::{self, Write as _};
use std::str::FromStr;
use std::time::SystemTime;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// How log lines (and access log lines) are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("log format {other:?}: give json or text")),
        }
    }
}

/// RFC 3339 in UTC with milliseconds, as every JSON line's `time`.
pub fn rfc3339(t: SystemTime) -> String {
    let mut s = String::with_capacity(24);
    rfc3339_into(&mut s, t);
    s
}

/// [`rfc3339`] appended to `out`.
pub fn rfc3339_into(out: &mut String, t: SystemTime) {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    );
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

struct Utc;

impl FormatTime for Utc {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        w.write_str(&rfc3339(SystemTime::now()))
    }
}

/// Span fields kept as a JSON object (in the span's `FormattedFields`), merged into each
/// line by [`JsonLine`].
pub struct JsonFields;

impl<'w> FormatFields<'w> for JsonFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut map = Map::new();
        fields.record(&mut Collect(&mut map));
        write!(writer, "{}", Value::Object(map))
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut map = parse(&current.fields);
        fields.record(&mut Collect(&mut map));
        current.fields = Value::Object(map).to_string();
        Ok(())
    }
}

fn parse(fields: &str) -> Map<String, Value> {
    match serde_json::from_str(fields) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// One JSON object per event.
pub struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut map = Map::new();
        let mut time = String::new();
        Utc.format_time(&mut Writer::new(&mut time))?;
        map.insert("time".into(), time.into());
        map.insert("level".into(), meta.level().as_str().into());
        map.insert("target".into(), meta.target().into());
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<FormattedFields<N>>() {
                    map.extend(parse(&f.fields));
                }
            }
        }
        event.record(&mut Collect(&mut map));
        writeln!(writer, "{}", Value::Object(map))
    }
}

/// Records fields into a JSON object: numbers and booleans as such, the rest as text.
struct Collect<'a>(&'a mut Map<String, Value>);

impl Visit for Collect<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_in_utc() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_796_563_331_480);
        assert_eq!(rfc3339(t), "2026-12-06T13:22:11.480Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn json_lines_carry_span_fields_flat() {
        use std::sync::{Arc, Mutex};
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(JsonLine)
            .fmt_fields(JsonFields)
            .with_writer(move || Buf(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", request_id = "r1", n = tracing::field::Empty);
            let _g = span.enter();
            span.record("n", 3);
            tracing::info!(status = 502, "answered \"x\"");
        });
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        let v: Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["request_id"], "r1");
        assert_eq!(v["n"], 3);
        assert_eq!(v["status"], 502);
        assert_eq!(v["message"], "answered \"x\"");
        assert_eq!(v["level"], "INFO");
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }

    struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}

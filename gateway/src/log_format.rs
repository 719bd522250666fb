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
use std::time::{Duration, SystemTime};

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

/// [`rfc3339`] appended to `out` (digit by digit: every access log line has one).
pub fn rfc3339_into(out: &mut String, t: SystemTime) {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    let digits = |out: &mut String, n: u64, width: u32| {
        for p in (0..width).rev() {
            out.push(char::from(b'0' + (n / 10u64.pow(p) % 10) as u8));
        }
    };
    digits(out, y.clamp(0, 9999) as u64, 4);
    out.push('-');
    digits(out, m.into(), 2);
    out.push('-');
    digits(out, day.into(), 2);
    out.push('T');
    digits(out, rem / 3600, 2);
    out.push(':');
    digits(out, rem / 60 % 60, 2);
    out.push(':');
    digits(out, rem % 60, 2);
    out.push('.');
    digits(out, d.subsec_millis().into(), 3);
    out.push('Z');
}

/// [`rfc3339_into`] for times that mostly fall in the same second as the last one (the
/// access log's lines, in order): the date and time to the second are kept from the last
/// call and only the milliseconds written while the second is the same.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// let mut time = vyx_gateway::log_format::Rfc3339::default();
/// let mut out = String::new();
/// time.write(&mut out, SystemTime::UNIX_EPOCH + Duration::from_millis(1_500));
/// assert_eq!(out, "1970-01-01T00:00:01.500Z");
/// ```
#[derive(Default)]
pub struct Rfc3339 {
    /// Seconds since the epoch of `head`, if any yet.
    secs: Option<u64>,
    /// `YYYY-MM-DDTHH:MM:SS.` of `secs`.
    head: String,
}

impl Rfc3339 {
    /// Appends `t` to `out`, as [`rfc3339_into`].
    pub fn write(&mut self, out: &mut String, t: SystemTime) {
        let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        if self.secs != Some(d.as_secs()) {
            self.head.clear();
            rfc3339_into(
                &mut self.head,
                SystemTime::UNIX_EPOCH + Duration::from_secs(d.as_secs()),
            );
            // Keeps up to the `.` before the milliseconds.
            self.head.truncate(self.head.len() - "000Z".len());
            self.secs = Some(d.as_secs());
        }
        out.push_str(&self.head);
        let ms = d.subsec_millis();
        for digit in [ms / 100, ms / 10 % 10, ms % 10] {
            out.push(char::from(b'0' + digit as u8));
        }
        out.push('Z');
    }
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
    /// Written straight out as an object, not built as a `Value` first: every request's
    /// span comes through here.
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        writer.write_char('{')?;
        let mut object = JsonObject {
            out: &mut writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut object);
        object.result?;
        writer.write_char('}')
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

/// Writes fields as the members of a JSON object, with the same values as [`Collect`].
struct JsonObject<'a> {
    out: &'a mut dyn fmt::Write,
    first: bool,
    result: fmt::Result,
}

impl JsonObject<'_> {
    fn member(&mut self, field: &Field, value: impl FnOnce(&mut dyn fmt::Write) -> fmt::Result) {
        let first = std::mem::take(&mut self.first);
        self.result = self.result.and_then(|()| {
            if !first {
                self.out.write_char(',')?;
            }
            json_string(&mut *self.out, field.name())?;
            self.out.write_char(':')?;
            value(&mut *self.out)
        });
    }
}

impl Visit for JsonObject<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, |out| {
            out.write_char('"')?;
            write!(JsonEscaped(&mut *out), "{value:?}")?;
            out.write_char('"')
        });
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |out| json_string(out, value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // As serde_json: no NaN or infinity in JSON. `{:?}` keeps a fraction or an exponent.
        self.member(field, |out| match value.is_finite() {
            true => write!(out, "{value:?}"),
            false => out.write_str("null"),
        });
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |out| write!(out, "{value}"));
    }
}

/// `v` as a JSON string literal.
pub fn json_string(out: &mut (impl fmt::Write + ?Sized), v: &str) -> fmt::Result {
    out.write_char('"')?;
    JsonEscaped(&mut *out).write_str(v)?;
    out.write_char('"')
}

/// Writes what it is given escaped for the inside of a JSON string: `"`, `\` and control
/// characters (as `\u00XX`); the rest as it is.
pub struct JsonEscaped<W>(pub W);

impl<W: fmt::Write> fmt::Write for JsonEscaped<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(at) = rest
            .bytes()
            .position(|b| b < 0x20 || b == 0x7f || b == b'"' || b == b'\\')
        {
            self.0.write_str(&rest[..at])?;
            match rest.as_bytes()[at] {
                b'"' => self.0.write_str("\\\""),
                b'\\' => self.0.write_str("\\\\"),
                b => write!(self.0, "\\u{b:04x}"),
            }?;
            rest = &rest[at + 1..];
        }
        self.0.write_str(rest)
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
    fn the_cached_rfc3339_agrees_with_the_plain_one_within_a_second_and_across_seconds() {
        let mut cached = Rfc3339::default();
        let start = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_563_331_480);
        // Forward within a second and over a day's end, then back in time (out of order).
        let steps = [0, 7, 519, 520, 86_400_000, 86_400_001, 1_000, 999, 0];
        for ms in steps {
            let t = start + Duration::from_millis(ms);
            let mut out = String::from("x");
            cached.write(&mut out, t);
            assert_eq!(out, format!("x{}", rfc3339(t)));
        }
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
            let span = tracing::info_span!(
                "request",
                request_id = "r1",
                n = tracing::field::Empty,
                quoted = "a \"b\" \\ c\n\u{1}",
                shown = %"x\ty",
                share = 1.0,
                nan = f64::NAN,
                negative = -3,
                on = true,
            );
            let _g = span.enter();
            span.record("n", 3);
            tracing::info!(status = 502, "answered \"x\"");
        });
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        let v: Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["request_id"], "r1");
        assert_eq!(v["n"], 3);
        assert_eq!(v["quoted"], "a \"b\" \\ c\n\u{1}");
        assert_eq!(v["shown"], "x\ty");
        assert_eq!(v["share"], 1.0);
        assert!(v["share"].is_f64(), "{v}");
        assert_eq!(v["nan"], Value::Null);
        assert_eq!(v["negative"], -3);
        assert_eq!(v["on"], true);
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

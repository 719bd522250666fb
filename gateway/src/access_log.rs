//! The access log: one line per proxied request, formatted and written by a thread of its
//! own. The request path only fills an [`Entry`] and offers it to a bounded channel; when
//! the channel is full the line is dropped and counted (`vyx_access_log_dropped_total`), so
//! a slow disk or an unread pipe never holds a request.
//!
//! ```yaml
//! access_log: {mode: sampled, sample: 0.1, path: /var/log/vyx/access.log}
//! ```

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::metrics::counter::Counter;
use serde_json::{Map, Value};

use crate::conn::WorkerConn;
use crate::log_format::{rfc3339, LogFormat};

/// Which requests get a line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Every request.
    All,
    /// Requests answered with a status of 400 or more, and requests the client abandoned.
    Errors,
    /// A share in (0, 1] of requests, chosen by a hash of the request id (so a request
    /// logged by one gateway is logged by every gateway with the same rate).
    Sampled(f64),
    /// None: nothing is recorded or sent.
    Off,
}

/// Where the lines go.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    Stdout,
    Stderr,
    /// Appended to; reopened by name on SIGHUP, so that logrotate can rename it and signal
    /// (no copytruncate).
    File(PathBuf),
}

/// `access_log:` in `vyx.yaml`.
#[derive(Clone, Debug, PartialEq)]
pub struct AccessLogConfig {
    pub mode: Mode,
    pub output: Output,
    /// Lines waiting for the writer; past it they are dropped and counted.
    pub capacity: usize,
}

/// `access_log.sample` when `mode: sampled` gives none.
pub const DEFAULT_SAMPLE: f64 = 0.1;

/// Lines the writer may fall behind by before new ones are dropped.
pub const DEFAULT_CAPACITY: usize = 4096;

impl Default for AccessLogConfig {
    /// Every request, to stdout (where container platforms collect it).
    fn default() -> Self {
        AccessLogConfig {
            mode: Mode::All,
            output: Output::Stdout,
            capacity: DEFAULT_CAPACITY,
        }
    }
}

impl AccessLogConfig {
    /// No access log.
    pub fn off() -> Self {
        AccessLogConfig {
            mode: Mode::Off,
            ..AccessLogConfig::default()
        }
    }
}

/// One request's line, filled as the request goes.
#[derive(Clone)]
pub struct Entry {
    pub time: SystemTime,
    pub start: Instant,
    pub request_id: http::HeaderValue,
    pub client: SocketAddr,
    pub method: http::Method,
    /// The path without the query (queries carry tokens).
    pub path: String,
    /// The matched route (`GET /users/{id}`), if any.
    pub route: Option<String>,
    /// The status sent; 0 until the response head is ready.
    pub status: u16,
    /// Request body bytes sent to the worker (shared with the body pump).
    pub bytes_in: Option<Arc<AtomicU64>>,
    /// Response body bytes given to the client.
    pub bytes_out: u64,
    /// Until the response head was ready to send.
    pub ttfb: Option<Duration>,
    /// Waiting for a worker's slot.
    pub queue_wait: Option<Duration>,
    /// The worker connection that took the request (its id and instance are logged).
    pub worker: Option<Arc<WorkerConn>>,
    /// The request was sent to more than one worker: set by the retry logic when it sends
    /// a request again.
    pub retried: bool,
    /// Why the request did not get a worker's full response: the gateway's own error
    /// answer, a worker failure, or the client going away.
    pub error: Option<String>,
}

impl Default for Entry {
    /// An empty entry (allocates nothing).
    fn default() -> Entry {
        Entry {
            time: SystemTime::UNIX_EPOCH,
            start: Instant::now(),
            request_id: http::HeaderValue::from_static(""),
            client: SocketAddr::from(([0, 0, 0, 0], 0)),
            method: http::Method::GET,
            path: String::new(),
            route: None,
            status: 0,
            bytes_in: None,
            bytes_out: 0,
            ttfb: None,
            queue_wait: None,
            worker: None,
            retried: false,
            error: None,
        }
    }
}

/// The status logged for a request whose client went away before its response head
/// (nginx's).
pub const CLIENT_CLOSED: u16 = 499;

impl Entry {
    pub fn new(
        request_id: http::HeaderValue,
        client: SocketAddr,
        method: http::Method,
        path: &str,
        start: Instant,
    ) -> Entry {
        Entry {
            time: SystemTime::now() - start.elapsed(),
            start,
            request_id,
            client,
            method,
            path: path.to_string(),
            ..Entry::default()
        }
    }

    /// The request body's byte counter, for the pump that sends it.
    pub fn bytes_in_counter(&mut self) -> Arc<AtomicU64> {
        self.bytes_in.get_or_insert_with(Default::default).clone()
    }

    /// The line's fields, in their documented order (docs/OPERATIONS.md).
    fn fields(&self, duration: Duration) -> Vec<(&'static str, Value)> {
        let ms = |d: Duration| Value::from((d.as_secs_f64() * 1e6).round() / 1e3);
        let text = |s: Option<&str>| s.map_or(Value::Null, Value::from);
        let worker = self.worker.as_deref();
        vec![
            ("time", Value::from(rfc3339(self.time))),
            ("log", Value::from("access")),
            (
                "request_id",
                Value::from(String::from_utf8_lossy(self.request_id.as_bytes())),
            ),
            ("client", Value::from(self.client.to_string())),
            ("method", Value::from(self.method.as_str())),
            ("path", Value::from(self.path.as_str())),
            ("route", text(self.route.as_deref())),
            ("status", Value::from(self.status)),
            (
                "bytes_in",
                Value::from(
                    self.bytes_in
                        .as_ref()
                        .map_or(0, |b| b.load(Ordering::Relaxed)),
                ),
            ),
            ("bytes_out", Value::from(self.bytes_out)),
            ("duration_ms", ms(duration)),
            ("ttfb_ms", self.ttfb.map_or(Value::Null, ms)),
            ("queue_ms", self.queue_wait.map_or(Value::Null, ms)),
            ("worker_id", text(worker.map(|w| w.worker_id.as_str()))),
            ("instance", text(worker.map(|w| w.instance.as_str()))),
            ("retried", Value::from(self.retried)),
            ("error", text(self.error.as_deref())),
        ]
    }

    fn is_error(&self) -> bool {
        self.status >= 400 || self.error.is_some()
    }
}

/// A request's entry until its response is sent: logged when dropped, so that a request
/// whose client went away (its future dropped, or its body left unread) is logged too.
pub struct Pending {
    pub entry: Entry,
    log: Option<Arc<AccessLog>>,
}

impl Pending {
    /// `log` is `None` when the access log is off: the entry is kept for the metrics only.
    pub fn new(entry: Entry, log: &Arc<AccessLog>) -> Pending {
        Pending {
            entry,
            log: log.is_on().then(|| log.clone()),
        }
    }

    /// Whether the entry will be logged.
    pub fn is_logged(&self) -> bool {
        self.log.is_some()
    }

    /// The response body has ended (`complete`) or was dropped before its end.
    pub fn body_done(&mut self, complete: bool) {
        // A HEAD response's body is never sent.
        if !complete && self.entry.method != http::Method::HEAD && self.entry.error.is_none() {
            self.entry.error = Some("client went away mid-response".into());
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let Some(log) = self.log.take() else { return };
        let mut entry = std::mem::take(&mut self.entry);
        if entry.status == 0 {
            entry.status = CLIENT_CLOSED;
            entry.error = Some("client went away before the response".into());
        }
        log.finish(entry);
    }
}

/// A [`Pending`] carried from the proxy to the response body in the response's extensions
/// (which want `Clone`).
#[derive(Clone)]
pub struct Handoff(Arc<std::sync::Mutex<Option<Pending>>>);

impl Handoff {
    pub fn new(p: Pending) -> Handoff {
        Handoff(Arc::new(std::sync::Mutex::new(Some(p))))
    }

    pub fn take(&self) -> Option<Pending> {
        self.0.lock().unwrap().take()
    }
}

/// The request side of the access log: decides which entries make a line and hands them to
/// the writer thread.
pub struct AccessLog {
    mode: Mode,
    tx: Option<SyncSender<Message>>,
    /// Set by [`AccessLog::reopen`], so that a reopen is not lost when its message cannot
    /// be queued.
    reopen: Arc<AtomicBool>,
    dropped: Counter,
}

enum Message {
    Line(Box<(Entry, Duration)>),
    /// SIGHUP: reopen the file by name.
    Reopen,
}

impl AccessLog {
    /// Starts the writer thread (none when off). Fails if the file cannot be opened.
    pub fn start(
        config: &AccessLogConfig,
        format: LogFormat,
        dropped: Counter,
    ) -> std::io::Result<AccessLog> {
        if config.mode == Mode::Off {
            return Ok(AccessLog {
                mode: Mode::Off,
                tx: None,
                reopen: Default::default(),
                dropped,
            });
        }
        let sink = Sink::open(&config.output)?;
        let (tx, rx) = sync_channel(config.capacity.max(1));
        let reopen = Arc::new(AtomicBool::new(false));
        let asked = reopen.clone();
        std::thread::Builder::new()
            .name("vyx-access-log".into())
            .spawn(move || write_lines(rx, sink, format, &asked))?;
        Ok(AccessLog {
            mode: config.mode,
            tx: Some(tx),
            reopen,
            dropped,
        })
    }

    /// Whether requests are recorded at all.
    pub fn is_on(&self) -> bool {
        self.tx.is_some()
    }

    /// Logs a finished request, if its mode takes it; never waits.
    pub fn finish(&self, entry: Entry) {
        let Some(tx) = &self.tx else { return };
        let keep = match self.mode {
            Mode::All => true,
            Mode::Errors => entry.is_error(),
            Mode::Sampled(share) => sampled(&entry.request_id, share),
            Mode::Off => false,
        };
        if !keep {
            return;
        }
        let duration = entry.start.elapsed();
        match tx.try_send(Message::Line(Box::new((entry, duration)))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.inc();
            }
        }
    }

    /// Asks the writer to reopen its file (on SIGHUP). A full channel delays the reopen
    /// to the next line written, never past it.
    pub fn reopen(&self) {
        if let Some(tx) = &self.tx {
            self.reopen.store(true, Ordering::Release);
            let _ = tx.try_send(Message::Reopen);
        }
    }
}

/// Reopens the file on each SIGHUP, while the log lives.
pub async fn reopen_on_sighup(log: std::sync::Weak<AccessLog>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        match log.upgrade() {
            Some(log) => log.reopen(),
            None => return,
        }
    }
}

/// Whether `id` falls within the sampled share: its hash, with fixed keys, against the
/// share of the hash space.
pub fn sampled(id: &http::HeaderValue, share: f64) -> bool {
    let mut h = std::hash::DefaultHasher::new();
    id.as_bytes().hash(&mut h);
    share >= 1.0 || (h.finish() as f64) < share * (u64::MAX as f64)
}

enum Sink {
    Stdout,
    Stderr,
    File(PathBuf, File),
}

impl Sink {
    fn open(output: &Output) -> std::io::Result<Sink> {
        Ok(match output {
            Output::Stdout => Sink::Stdout,
            Output::Stderr => Sink::Stderr,
            Output::File(path) => Sink::File(path.clone(), append(path)?),
        })
    }

    /// Writes whole lines at once (one `write` per batch of lines), so lines from other
    /// writers to the same stream never land inside one.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Stdout => std::io::stdout().lock().write_all(buf),
            Sink::Stderr => std::io::stderr().lock().write_all(buf),
            Sink::File(_, f) => f.write_all(buf),
        }
    }

    fn reopen(&mut self) {
        if let Sink::File(path, file) = self {
            match append(path) {
                Ok(f) => *file = f,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot reopen the access log; still writing to the file open before")
                }
            }
        }
    }
}

fn append(path: &PathBuf) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot open access log {}: {e}", path.display()),
            )
        })
}

/// The writer thread: formats what is queued, writes it in one batch, and waits for more.
fn write_lines(rx: Receiver<Message>, mut sink: Sink, format: LogFormat, reopen: &AtomicBool) {
    let mut buf = String::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(message) = next {
            if let Message::Line(line) = message {
                let (entry, duration) = *line;
                render(&mut buf, &entry.fields(duration), format);
            }
            // A batch is bounded so that a steady stream of lines still gets written.
            next = if buf.len() < 64 << 10 {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if reopen.swap(false, Ordering::AcqRel) {
            // Lines queued before the signal go to the new file too: logrotate has already
            // renamed the old one.
            sink.reopen();
        }
        if !buf.is_empty() {
            // A closed stdout or a full disk loses lines, never the gateway.
            let _ = sink.write(buf.as_bytes());
            buf.clear();
        }
    }
}

/// One line: a JSON object, or `key=value` pairs for text (strings quoted when they need it).
fn render(buf: &mut String, fields: &[(&'static str, Value)], format: LogFormat) {
    match format {
        LogFormat::Json => {
            let map: Map<String, Value> = fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            let _ = writeln!(buf, "{}", Value::Object(map));
        }
        LogFormat::Text => {
            for (i, (k, v)) in fields.iter().enumerate() {
                let sep = if i == 0 { "" } else { " " };
                match v {
                    Value::Null => {
                        let _ = write!(buf, "{sep}{k}=-");
                    }
                    Value::String(s) if s.bytes().all(|b| b.is_ascii_graphic() && b != b'"') => {
                        let _ = write!(buf, "{sep}{k}={s}");
                    }
                    v => {
                        let _ = write!(buf, "{sep}{k}={v}");
                    }
                }
            }
            buf.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(status: u16) -> Entry {
        let mut e = Entry::new(
            http::HeaderValue::from_static("abc"),
            "127.0.0.1:5000".parse().unwrap(),
            http::Method::GET,
            "/a b",
            Instant::now(),
        );
        e.status = status;
        e
    }

    #[test]
    fn text_quotes_only_what_needs_it_and_json_is_one_object() {
        let mut buf = String::new();
        render(
            &mut buf,
            &entry(200).fields(Duration::from_micros(1500)),
            LogFormat::Text,
        );
        assert!(buf.contains(" log=access request_id=abc client=127.0.0.1:5000 method=GET path=\"/a b\" route=- status=200 bytes_in=0 bytes_out=0 duration_ms=1.5 "), "{buf}");
        assert!(buf.ends_with("retried=false error=-\n"), "{buf}");
        buf.clear();
        render(
            &mut buf,
            &entry(404).fields(Duration::ZERO),
            LogFormat::Json,
        );
        let v: Value = serde_json::from_str(buf.trim_end()).unwrap();
        assert_eq!(v["status"], 404);
        assert_eq!(v["path"], "/a b");
        assert_eq!(buf.lines().count(), 1);
    }

    #[test]
    fn a_full_channel_drops_and_counts_without_waiting() {
        let dropped = Counter::default();
        // A writer that never reads: the channel holds `capacity` lines.
        let (tx, _rx) = sync_channel(2);
        let log = AccessLog {
            mode: Mode::All,
            tx: Some(tx),
            reopen: Default::default(),
            dropped: dropped.clone(),
        };
        for _ in 0..5 {
            log.finish(entry(200));
        }
        assert_eq!(dropped.get(), 3);
    }

    #[test]
    fn errors_mode_and_sampling_choose_lines() {
        assert!(!entry(200).is_error());
        assert!(entry(404).is_error());
        let mut aborted = entry(200);
        aborted.error = Some("client went away".into());
        assert!(aborted.is_error());
        let ids: Vec<_> = (0..1000u64)
            .map(|i| crate::forward::new_request_id(i, 7))
            .collect();
        let kept = ids.iter().filter(|id| sampled(id, 0.1)).count();
        assert!((50..150).contains(&kept), "{kept} of 1000 kept at 0.1");
        assert!(ids.iter().all(|id| sampled(id, 1.0)));
    }
}

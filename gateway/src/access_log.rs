//! The access log: one line per proxied request, written by a thread of its own. The
//! request path fills an [`Entry`] and, when the response is over, moves it into a bounded
//! queue; when the queue is full the entry is dropped and counted
//! (`vyx_access_log_dropped_total`), so a slow disk or an unread pipe never holds a request.
//! The writer takes the whole queue at once, formats its lines and writes them with one
//! `write`: a line costs the request no formatting, no allocation, no wake-up and no
//! system call of its own.
//!
//! ```yaml
//! access_log: {mode: sampled, sample: 0.1, path: /var/log/vyx/access.log}
//! ```

use std::cell::RefCell;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::metrics::counter::Counter;
use tokio::task::futures::TaskLocalFuture;

use crate::conn::WorkerConn;
use crate::log_format::{json_string, JsonEscaped, LogFormat, Rfc3339};
use crate::routes::RouteTarget;

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

/// One request's line (and its span's attributes), filled as the request goes.
pub struct Entry {
    /// The wall-clock time of `start`: set when the request ends ([`Entry::end`]), so that
    /// the clocks are read once a request, and not at all when nothing is logged or traced.
    pub time: SystemTime,
    pub start: Instant,
    pub request_id: http::HeaderValue,
    pub client: SocketAddr,
    pub method: http::Method,
    /// Its path is logged, not its query (queries carry tokens). A clone of the request's
    /// (reference-counted, so no copy on the request path).
    pub uri: http::Uri,
    /// The matched route (`GET /users/{id}`), if any.
    pub route: Option<Arc<RouteTarget>>,
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
    /// When a worker's slot was taken (the end of `queue_wait`), for the trace's events.
    pub admitted: Option<Instant>,
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
        Entry::empty(Instant::now())
    }
}

impl Entry {
    /// An empty entry that started at `start` (allocates nothing, reads no clock).
    fn empty(start: Instant) -> Entry {
        Entry {
            time: SystemTime::UNIX_EPOCH,
            start,
            request_id: http::HeaderValue::from_static(""),
            client: SocketAddr::from(([0, 0, 0, 0], 0)),
            method: http::Method::GET,
            uri: http::Uri::default(),
            route: None,
            status: 0,
            bytes_in: None,
            bytes_out: 0,
            ttfb: None,
            queue_wait: None,
            admitted: None,
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
        uri: &http::Uri,
        start: Instant,
    ) -> Entry {
        Entry {
            start,
            request_id,
            client,
            method,
            uri: uri.clone(),
            ..Entry::empty(start)
        }
    }

    /// The request is over: sets `time` from the clocks read once, and returns its duration.
    pub fn end(&mut self) -> Duration {
        let now = SystemTime::now();
        let duration = self.start.elapsed();
        self.time = now.checked_sub(duration).unwrap_or(now);
        duration
    }

    /// The request body's byte counter, for the pump that sends it.
    pub fn bytes_in_counter(&mut self) -> Arc<AtomicU64> {
        self.bytes_in.get_or_insert_with(Default::default).clone()
    }

    fn is_error(&self) -> bool {
        self.status >= 400 || self.error.is_some()
    }
}

/// A finished request's entry on its way to the writer, with what was read when it ended.
struct Logged {
    entry: Entry,
    duration: Duration,
    /// The request body's bytes when the request ended.
    bytes_in: u64,
}

impl Logged {
    /// Appends the line, its fields in their documented order (docs/OPERATIONS.md), written
    /// straight into `buf`, on the writer's thread.
    fn write(&self, buf: &mut String, format: LogFormat, time: &mut Rfc3339) {
        let Logged {
            entry: ref e,
            duration,
            bytes_in,
        } = *self;
        let worker = e.worker.as_deref();
        let mut line = Line::new(buf, format);
        line.key("time");
        line.quoted(|b| time.write(b, e.time));
        line.str("log", Some("access"));
        let id = e.request_id.as_bytes();
        match std::str::from_utf8(id) {
            Ok(id) => line.str("request_id", Some(id)),
            Err(_) => line.str("request_id", Some(&String::from_utf8_lossy(id))),
        }
        line.key("client");
        line.quoted(|b| match e.client {
            SocketAddr::V4(a) => {
                for (i, octet) in a.ip().octets().into_iter().enumerate() {
                    if i > 0 {
                        b.push('.');
                    }
                    b.push_str(itoa::Buffer::new().format(octet));
                }
                b.push(':');
                b.push_str(itoa::Buffer::new().format(a.port()));
            }
            a => {
                let _ = write!(b, "{a}");
            }
        });
        line.str("method", Some(e.method.as_str()));
        line.str("path", Some(e.uri.path()));
        line.key("route");
        match &e.route {
            // Always quoted in text: a route has a space.
            Some(r) => line.escaped(&r.key),
            None => line.none(),
        }
        line.int("status", e.status);
        line.int("bytes_in", bytes_in);
        line.int("bytes_out", e.bytes_out);
        line.ms("duration_ms", Some(duration));
        line.ms("ttfb_ms", e.ttfb);
        line.ms("queue_ms", e.queue_wait);
        line.str("worker_id", worker.map(|w| w.worker_id.as_str()));
        line.str("instance", worker.map(|w| w.instance.as_str()));
        line.key("retried");
        line.buf.push_str(if e.retried { "true" } else { "false" });
        line.str("error", e.error.as_deref());
        line.end();
    }
}

/// A request's entry until its response is sent: logged (and its span ended) when dropped,
/// so that a request whose client went away (its future dropped, or its body left unread)
/// is logged too.
pub struct Pending {
    pub entry: Entry,
    log: Option<Arc<AccessLog>>,
    span: Option<crate::otel::RequestSpan>,
}

impl Pending {
    /// `log` is `None` when the access log is off, `span` when traces are: the entry is
    /// then kept for the metrics only.
    pub fn new(
        entry: Entry,
        log: &Arc<AccessLog>,
        span: Option<crate::otel::RequestSpan>,
    ) -> Pending {
        Pending {
            entry,
            log: log.is_on().then(|| log.clone()),
            span,
        }
    }

    /// Whether the entry will be logged or traced, and so must follow the response body.
    pub fn is_kept(&self) -> bool {
        self.log.is_some() || self.span.is_some()
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
        if !self.is_kept() {
            return;
        }
        let entry = &mut self.entry;
        if entry.status == 0 {
            entry.status = CLIENT_CLOSED;
            entry.error = Some("client went away before the response".into());
        }
        let duration = entry.end();
        if let Some(span) = self.span.take() {
            span.finish(entry);
        }
        if let Some(log) = self.log.take() {
            // Moved out whole (the writer formats it), leaving an empty entry that costs
            // nothing to make or drop.
            let start = entry.start;
            log.finish(std::mem::replace(entry, Entry::empty(start)), duration);
        }
    }
}

tokio::task_local! {
    /// A request's [`Pending`] on its way from the proxy to its response body, within the
    /// connection's service (the response's extensions would cost four allocations a
    /// request).
    static HANDOFF: RefCell<Option<Pending>>;
}

/// A request's handling run by [`handing_off`].
pub type HandingOff<F> = TaskLocalFuture<RefCell<Option<Pending>>, F>;

/// Runs a request's `handling` where [`hand_off`] leaves its [`Pending`]; [`handed`] takes it
/// once the handling is done. A struct around the future, not an `async` wrapper (which would
/// hold the future twice): hyper moves the request's future as a whole.
///
/// ```ignore
/// let handling = access_log::handing_off(handling);
/// tokio::pin!(handling);
/// let response = handling.as_mut().await;
/// let entry = access_log::handed(handling);
/// ```
pub fn handing_off<F: Future>(handling: F) -> HandingOff<F> {
    HANDOFF.scope(RefCell::new(None), handling)
}

/// The [`Pending`] that [`hand_off`] left in `handling`.
pub fn handed<F>(handling: Pin<&mut HandingOff<F>>) -> Option<Pending> {
    handling.take_value().and_then(RefCell::into_inner)
}

/// Leaves a request's [`Pending`] for its response body. Outside [`handing_off`] it is logged
/// at once.
pub fn hand_off(pending: Pending) {
    let mut pending = Some(pending);
    let _ = HANDOFF.try_with(|h| *h.borrow_mut() = pending.take());
}

/// The request side of the access log: decides which entries make a line, formats them and
/// queues them for the writer thread.
pub struct AccessLog {
    mode: Mode,
    /// `None` when off.
    queue: Option<Arc<Queue>>,
    dropped: Counter,
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
                queue: None,
                dropped,
            });
        }
        let sink = Sink::open(&config.output)?;
        let queue = Arc::new(Queue::new(config.capacity));
        let writer = queue.clone();
        std::thread::Builder::new()
            .name("vyx-access-log".into())
            .spawn(move || write_lines(&writer, sink, format))?;
        Ok(AccessLog {
            mode: config.mode,
            queue: Some(queue),
            dropped,
        })
    }

    /// Whether requests are recorded at all.
    pub fn is_on(&self) -> bool {
        self.queue.is_some()
    }

    /// Logs a finished request that took `duration`, if its mode takes it; never waits for
    /// the writer. The entry is formatted (and dropped) on the writer's thread.
    ///
    /// ```no_run
    /// # use std::time::Instant;
    /// # use vyx_gateway::access_log::{AccessLog, AccessLogConfig, Entry};
    /// # let log = AccessLog::start(&AccessLogConfig::default(), Default::default(), Default::default()).unwrap();
    /// let mut entry = Entry::new(
    ///     http::HeaderValue::from_static("5f0c2e55d1a3b7c4"),
    ///     "127.0.0.1:40524".parse().unwrap(),
    ///     http::Method::GET,
    ///     &http::Uri::from_static("/hello/world"),
    ///     Instant::now(),
    /// );
    /// entry.status = 200;
    /// let duration = entry.end();
    /// log.finish(entry, duration);
    /// ```
    pub fn finish(&self, entry: Entry, duration: Duration) {
        let Some(queue) = &self.queue else { return };
        let keep = match self.mode {
            Mode::All => true,
            Mode::Errors => entry.is_error(),
            Mode::Sampled(share) => sampled(&entry.request_id, share),
            Mode::Off => false,
        };
        if !keep {
            return;
        }
        let bytes_in = entry
            .bytes_in
            .as_ref()
            .map_or(0, |b| b.load(Ordering::Relaxed));
        let logged = Logged {
            entry,
            duration,
            bytes_in,
        };
        if !queue.push(logged) {
            self.dropped.inc();
        }
    }

    /// Waits (at most `timeout`) until every line queued before the call is written: the
    /// gateway's last requests are logged before the process exits. Blocks: call it off
    /// the runtime's threads. `false` when the writer did not finish in time (a write
    /// stuck on a pipe nobody reads).
    pub fn flush(&self, timeout: Duration) -> bool {
        let Some(queue) = &self.queue else {
            return true;
        };
        let target = queue.ask(|w| {
            w.flush = true;
            w.queued
        });
        let written = queue.written.lock().unwrap_or_else(PoisonError::into_inner);
        let (written, _) = queue
            .done
            .wait_timeout_while(written, timeout, |n| *n < target)
            .unwrap_or_else(PoisonError::into_inner);
        *written >= target
    }

    /// Asks the writer to reopen its file (on SIGHUP), before it writes its next lines.
    pub fn reopen(&self) {
        if let Some(queue) = &self.queue {
            queue.ask(|w| w.reopen = true);
        }
    }
}

impl Drop for AccessLog {
    /// The writer writes what is queued, then ends.
    fn drop(&mut self) {
        if let Some(queue) = &self.queue {
            queue.ask(|w| w.closed = true);
        }
    }
}

/// Entries waiting for the writer, moved into one vector that the writer swaps for its own
/// empty one. The lock is held to move an entry in or to swap, never across formatting or
/// a write.
struct Queue {
    waiting: Mutex<Waiting>,
    /// Lines that may wait; past it they are dropped.
    capacity: usize,
    /// Wakes the writer: the first line after it went idle, a flush, a reopen, the end.
    wake: Condvar,
    /// Lines written (or lost to a failed write) since the start, for [`AccessLog::flush`].
    written: Mutex<u64>,
    done: Condvar,
}

#[derive(Default)]
struct Waiting {
    entries: Vec<Logged>,
    /// Lines queued since the start.
    queued: u64,
    /// The writer waits for a line: the next one wakes it. While it writes or rests
    /// between batches, lines gather without waking anyone.
    idle: bool,
    flush: bool,
    reopen: bool,
    closed: bool,
}

impl Queue {
    fn new(capacity: usize) -> Queue {
        Queue {
            waiting: Default::default(),
            capacity: capacity.max(1),
            wake: Condvar::new(),
            written: Mutex::new(0),
            done: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Waiting> {
        // Nothing under the lock can panic midway; a poisoned lock is still consistent.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues an entry; `false` (and the entry dropped) when `capacity` entries wait.
    fn push(&self, logged: Logged) -> bool {
        let mut w = self.lock();
        if w.entries.len() >= self.capacity {
            drop(w);
            return false;
        }
        w.entries.push(logged);
        w.queued += 1;
        let wake = std::mem::take(&mut w.idle);
        drop(w);
        if wake {
            self.wake.notify_one();
        }
        true
    }

    /// Changes what the writer is asked to do, and wakes it.
    fn ask<T>(&self, change: impl FnOnce(&mut Waiting) -> T) -> T {
        let t = change(&mut self.lock());
        self.wake.notify_one();
        t
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

/// How long the writer leaves lines to gather between writes while requests keep coming:
/// a request then wakes no thread and the writer makes a hundred writes a second at most.
/// At 4096 lines a batch, lines are dropped only past about 400,000 requests a second.
const GATHER: Duration = Duration::from_millis(10);

/// The writer's buffers are kept up to this size between batches (a steady load's batch
/// fits in them); past it, a burst's memory is given back.
const KEEP: usize = 256 << 10;

/// The writer thread: waits for an entry, then takes, formats and writes what has gathered
/// every [`GATHER`] until a pass finds nothing; ends once the log is dropped and all is
/// written.
fn write_lines(queue: &Queue, mut sink: Sink, format: LogFormat) {
    let mut batch = Vec::new();
    let mut text = String::new();
    let mut time = Rfc3339::default();
    let mut w = queue.lock();
    loop {
        while w.entries.is_empty() && !w.reopen && !w.closed {
            w.idle = true;
            w = queue.wake.wait(w).unwrap_or_else(PoisonError::into_inner);
        }
        w.idle = false;
        w.flush = false;
        std::mem::swap(&mut w.entries, &mut batch);
        let (queued, reopen, closed) = (w.queued, std::mem::take(&mut w.reopen), w.closed);
        drop(w);
        if reopen {
            // Lines queued before the signal go to the new file too: logrotate has already
            // renamed the old one.
            sink.reopen();
        }
        if !batch.is_empty() {
            for logged in batch.drain(..) {
                logged.write(&mut text, format, &mut time);
            }
            batch.shrink_to(KEEP / size_of::<Logged>());
            // A closed stdout or a full disk loses lines, never the gateway.
            let _ = sink.write(text.as_bytes());
            text.clear();
            text.shrink_to(KEEP);
        }
        *queue.written.lock().unwrap_or_else(PoisonError::into_inner) = queued;
        queue.done.notify_all();
        if closed {
            return;
        }
        w = queue.lock();
        w = queue
            .wake
            .wait_timeout_while(w, GATHER, |w| !(w.flush || w.reopen || w.closed))
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

/// One line being written: a JSON object, or `key=value` pairs for text (strings quoted,
/// JSON-escaped, when they need it; `-` for none).
struct Line<'a> {
    buf: &'a mut String,
    format: LogFormat,
    first: bool,
}

impl<'a> Line<'a> {
    fn new(buf: &'a mut String, format: LogFormat) -> Line<'a> {
        if format == LogFormat::Json {
            buf.push('{');
        }
        Line {
            buf,
            format,
            first: true,
        }
    }

    fn key(&mut self, k: &str) {
        if !std::mem::take(&mut self.first) {
            self.buf.push(if self.format == LogFormat::Json {
                ','
            } else {
                ' '
            });
        }
        match self.format {
            LogFormat::Json => {
                self.buf.push('"');
                self.buf.push_str(k);
                self.buf.push_str("\":");
            }
            LogFormat::Text => {
                self.buf.push_str(k);
                self.buf.push('=');
            }
        }
    }

    /// No value: `null`, or `-` in text.
    fn none(&mut self) {
        self.buf.push_str(match self.format {
            LogFormat::Json => "null",
            LogFormat::Text => "-",
        });
    }

    /// A value written as a JSON string in both formats, straight from its `Display`.
    fn escaped(&mut self, v: &impl std::fmt::Display) {
        self.buf.push('"');
        let _ = write!(JsonEscaped(&mut *self.buf), "{v}");
        self.buf.push('"');
    }

    /// A value that is text but never needs escaping (a time, an address).
    fn quoted(&mut self, write: impl FnOnce(&mut String)) {
        let json = self.format == LogFormat::Json;
        if json {
            self.buf.push('"');
        }
        write(self.buf);
        if json {
            self.buf.push('"');
        }
    }

    fn str(&mut self, k: &str, v: Option<&str>) {
        self.key(k);
        match (v, self.format) {
            (None, _) => self.none(),
            (Some(v), LogFormat::Text)
                if !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic() && b != b'"') =>
            {
                self.buf.push_str(v)
            }
            (Some(v), _) => {
                let _ = json_string(self.buf, v);
            }
        }
    }

    fn int(&mut self, k: &str, v: impl itoa::Integer) {
        self.key(k);
        self.buf.push_str(itoa::Buffer::new().format(v));
    }

    /// Milliseconds with microseconds (integers: no float formatting per line; `u64`, as
    /// `u128` division cost 900 instructions a line).
    fn ms(&mut self, k: &str, d: Option<Duration>) {
        match d {
            Some(d) => {
                let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
                self.int(k, us / 1000);
                let frac = us % 1000;
                self.buf.push('.');
                self.buf
                    .push_str(&"00"[..usize::from(frac < 100) + usize::from(frac < 10)]);
                self.buf.push_str(itoa::Buffer::new().format(frac));
            }
            None => self.str(k, None),
        }
    }

    fn end(self) {
        if self.format == LogFormat::Json {
            self.buf.push('}');
        }
        self.buf.push('\n');
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
            &http::Uri::from_static("/a%20b?q=1"),
            Instant::now(),
        );
        e.status = status;
        e.time = SystemTime::UNIX_EPOCH;
        e
    }

    /// `e`'s line, formatted as the writer does.
    fn write(buf: &mut String, entry: Entry, duration: Duration, format: LogFormat) {
        let logged = Logged {
            entry,
            duration,
            bytes_in: 0,
        };
        logged.write(buf, format, &mut Rfc3339::default());
    }

    #[test]
    fn text_quotes_only_what_needs_it_and_json_is_one_object() {
        let mut buf = String::new();
        write(
            &mut buf,
            entry(200),
            Duration::from_micros(1500),
            LogFormat::Text,
        );
        assert!(buf.starts_with("time=1970-01-01T00:00:00.000Z log=access request_id=abc client=127.0.0.1:5000 method=GET path=/a%20b route=- status=200 bytes_in=0 bytes_out=0 duration_ms=1.500 "), "{buf}");
        assert!(buf.ends_with("retried=false error=-\n"), "{buf}");
        buf.clear();
        let mut e = entry(200);
        e.client = "[::1]:5000".parse().unwrap();
        e.ttfb = Some(Duration::from_micros(2_005));
        e.queue_wait = Some(Duration::from_micros(30));
        write(
            &mut buf,
            e,
            Duration::from_micros(12_345_678),
            LogFormat::Text,
        );
        assert!(buf.contains(" client=[::1]:5000 "), "{buf}");
        assert!(
            buf.contains(" duration_ms=12345.678 ttfb_ms=2.005 queue_ms=0.030 "),
            "{buf}"
        );
        buf.clear();
        let mut e = entry(404);
        e.error = Some("a \"quote\", a \\ and a \u{1}".into());
        write(&mut buf, e, Duration::ZERO, LogFormat::Json);
        let v: serde_json::Value = serde_json::from_str(buf.trim_end()).unwrap();
        assert_eq!(v["status"], 404);
        assert_eq!(v["path"], "/a%20b");
        assert_eq!(v["route"], serde_json::Value::Null);
        assert_eq!(v["duration_ms"], 0.0);
        assert_eq!(v["error"], "a \"quote\", a \\ and a \u{1}");
        assert_eq!(buf.lines().count(), 1);
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys.len(), 17, "{keys:?}");
    }

    #[test]
    fn a_full_channel_drops_and_counts_without_waiting() {
        let dropped = Counter::default();
        // No writer: the queue holds `capacity` lines.
        let log = AccessLog {
            mode: Mode::All,
            queue: Some(Arc::new(Queue::new(2))),
            dropped: dropped.clone(),
        };
        for _ in 0..5 {
            log.finish(entry(200), Duration::ZERO);
        }
        assert_eq!(dropped.get(), 3);
    }

    #[test]
    fn flush_returns_once_every_queued_line_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let config = AccessLogConfig {
            output: Output::File(path.clone()),
            ..AccessLogConfig::default()
        };
        let log = AccessLog::start(&config, LogFormat::Text, Counter::default()).unwrap();
        log.finish(entry(200), Duration::ZERO);
        let read = || std::fs::read_to_string(&path).unwrap();
        while read().lines().count() < 1 {
            std::thread::yield_now();
        }
        // The writer rests for GATHER after a write: this line waits in the queue, and
        // would be lost if the process exited now.
        log.finish(entry(404), Duration::ZERO);
        assert!(log.flush(Duration::from_secs(20)));
        assert_eq!(read().lines().count(), 2, "{}", read());
    }

    fn numbered(thread: usize, i: usize) -> Entry {
        let mut e = entry(200);
        e.request_id = http::HeaderValue::from_str(&format!("{thread}-{i}")).unwrap();
        e
    }

    /// The request ids of a file's lines, each line checked whole.
    fn ids(path: &std::path::Path) -> Vec<String> {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        assert!(text.is_empty() || text.ends_with('\n'));
        text.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("a whole JSON line");
                v["request_id"].as_str().unwrap().to_string()
            })
            .collect()
    }

    #[test]
    fn a_burst_from_several_threads_arrives_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let config = AccessLogConfig {
            output: Output::File(path.clone()),
            capacity: 40_000,
            ..AccessLogConfig::default()
        };
        let dropped = Counter::default();
        let log = AccessLog::start(&config, LogFormat::Json, dropped.clone()).unwrap();
        std::thread::scope(|s| {
            for t in 0..4 {
                let log = &log;
                s.spawn(move || {
                    (0..5_000).for_each(|i| log.finish(numbered(t, i), Duration::ZERO))
                });
            }
        });
        assert!(log.flush(Duration::from_secs(20)));
        assert_eq!(dropped.get(), 0);
        let ids = ids(&path);
        assert_eq!(ids.len(), 20_000);
        for t in 0..4 {
            let prefix = format!("{t}-");
            let mine: Vec<_> = ids.iter().filter(|id| id.starts_with(&prefix)).collect();
            let expected: Vec<_> = (0..5_000).map(|i| format!("{t}-{i}")).collect();
            assert!(
                mine.iter().copied().eq(expected.iter()),
                "thread {t}'s lines out of order"
            );
        }
    }

    #[test]
    fn a_reopen_mid_burst_loses_no_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let rotated = dir.path().join("access.log.1");
        let config = AccessLogConfig {
            output: Output::File(path.clone()),
            capacity: 20_000,
            ..AccessLogConfig::default()
        };
        let dropped = Counter::default();
        let log = AccessLog::start(&config, LogFormat::Json, dropped.clone()).unwrap();
        for i in 0..5_000 {
            log.finish(numbered(0, i), Duration::ZERO);
        }
        // logrotate's order: rename, then signal, while lines keep coming.
        std::fs::rename(&path, &rotated).unwrap();
        log.reopen();
        for i in 5_000..10_000 {
            log.finish(numbered(0, i), Duration::ZERO);
        }
        assert!(log.flush(Duration::from_secs(20)));
        assert_eq!(dropped.get(), 0);
        let new = ids(&path);
        assert!(
            !new.is_empty(),
            "the reopened file has the lines after the signal"
        );
        let all: Vec<_> = ids(&rotated).into_iter().chain(new).collect();
        let expected: Vec<_> = (0..10_000).map(|i| format!("0-{i}")).collect();
        assert_eq!(all, expected);
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

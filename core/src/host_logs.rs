//! The engine's `tracing` events for hosts whose language has its own logger (the Node and
//! Python bindings; HOSTS.md §11). Writing a log must never block, panic or stop a worker,
//! so no event is written on the thread that emitted it: the subscriber [`install`]s turns
//! each event into a [`Record`] and puts it in a bounded queue, dropping the oldest when the
//! queue is full (the next [`take`] says how many went). Where the records go is the
//! [`Sink`]: the host takes them ([`take`], [`queued`]) and logs them on its own thread, or
//! a thread of this module writes them to stderr, ignoring a closed or full stderr.
//!
//! The level is one for the process and can change at any time ([`set_level`]); what a host
//! accepts as a level is [`parse_level`]'s rule.
//!
//! ```
//! use vyx_core::host_logs::{self, Sink};
//! host_logs::install(Sink::Host);
//! host_logs::set_level(host_logs::parse_level("debug").unwrap());
//! tracing::debug!(attempt = 2u64, "reconnecting");
//! let records = host_logs::take();
//! assert_eq!(records.last().map(|r| r.message.as_str()), Some("reconnecting"));
//! ```

use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// Records (or stderr lines) kept at most while nobody takes them: the oldest go first.
pub const MAX_QUEUED: usize = 1000;

/// One log event of the engine (or of a library it uses).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub level: Level,
    /// The Rust module that logged it (`vyx_core::session::supervise`).
    pub target: String,
    pub message: String,
    /// The event's other fields, in the order it gave them.
    pub fields: Vec<(String, Value)>,
}

/// A field's value, with its type kept where a logger can use it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::I64(n) => write!(f, "{n}"),
            Value::U64(n) => write!(f, "{n}"),
            Value::F64(n) => write!(f, "{n}"),
            Value::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// Where records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// Queued for the host's [`take`].
    Host,
    /// Written to stderr, one line each, by a thread of their own.
    Stderr,
}

/// A log level a host was given that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a log level (off, error, warn, info, debug or trace)")]
pub struct InvalidLevel(pub String);

/// The levels every host accepts, by name, in any case: `off`, `error`, `warn`, `info`,
/// `debug`, `trace`.
pub fn parse_level(s: &str) -> Result<LevelFilter, InvalidLevel> {
    match s.trim().to_ascii_lowercase().as_str() {
        "off" => Ok(LevelFilter::OFF),
        "error" => Ok(LevelFilter::ERROR),
        "warn" => Ok(LevelFilter::WARN),
        "info" => Ok(LevelFilter::INFO),
        "debug" => Ok(LevelFilter::DEBUG),
        "trace" => Ok(LevelFilter::TRACE),
        _ => Err(InvalidLevel(s.to_owned())),
    }
}

/// The level in force: events below it are not even built.
pub fn level() -> LevelFilter {
    match LEVEL.load(Ordering::Relaxed) {
        0 => LevelFilter::OFF,
        1 => LevelFilter::ERROR,
        2 => LevelFilter::WARN,
        3 => LevelFilter::INFO,
        4 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// Changes the level for every engine in the process, at once.
pub fn set_level(level: LevelFilter) {
    let n = match level.into_level() {
        None => 0,
        Some(Level::ERROR) => 1,
        Some(Level::WARN) => 2,
        Some(Level::INFO) => 3,
        Some(Level::DEBUG) => 4,
        Some(Level::TRACE) => 5,
    };
    if LEVEL.swap(n, Ordering::Relaxed) != n {
        // Call sites cache whether they are enabled; make them ask again.
        tracing::callsite::rebuild_interest_cache();
    }
}

/// Installs the forwarding subscriber as the process's global one and sends records to
/// `sink`. Returns false when another global subscriber was there first (a program that
/// installed its own keeps it); the sink is set either way.
pub fn install(sink: Sink) -> bool {
    set_sink(sink);
    let subscriber = tracing_subscriber::registry().with(Forward);
    tracing::subscriber::set_global_default(subscriber).is_ok()
}

/// Sends the records from now on to `sink`.
pub fn set_sink(sink: Sink) {
    SINK.store(sink as u8, Ordering::Relaxed);
    if sink == Sink::Stderr {
        stderr_writer();
    }
}

fn sink() -> Sink {
    if SINK.load(Ordering::Relaxed) == Sink::Stderr as u8 {
        Sink::Stderr
    } else {
        Sink::Host
    }
}

/// Calls `wake` (from the thread that logged, so it must not block) whenever a record is
/// queued for the host: Python wakes its asyncio loops with it.
pub fn on_queued(wake: fn()) {
    let _ = WAKE.set(wake);
}

/// The records queued for the host since the last call, oldest first. When some were
/// dropped, the first record says how many.
pub fn take() -> Vec<Record> {
    let mut host = lock(&HOST);
    let dropped = std::mem::take(&mut host.dropped);
    let mut records: Vec<Record> = host.queue.drain(..).collect();
    drop(host);
    if dropped > 0 {
        records.insert(
            0,
            Record {
                level: Level::WARN,
                target: module_path!().to_owned(),
                message: "log records dropped: they came faster than the logger took them"
                    .to_owned(),
                fields: vec![("dropped".to_owned(), Value::U64(dropped))],
            },
        );
    }
    records
}

/// Whether [`take`] has something.
fn has_queued() -> bool {
    let host = lock(&HOST);
    !host.queue.is_empty() || host.dropped > 0
}

/// Resolves once [`take`] has something (at once if it has now).
pub async fn queued() {
    loop {
        let notified = QUEUED.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if has_queued() {
            return;
        }
        notified.await;
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(3);
static SINK: AtomicU8 = AtomicU8::new(Sink::Host as u8);
static WAKE: OnceLock<fn()> = OnceLock::new();
static QUEUED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// A bounded queue that drops its oldest entries and counts them.
struct Bounded<T> {
    queue: VecDeque<T>,
    dropped: u64,
}

impl<T> Bounded<T> {
    const fn new() -> Self {
        Bounded {
            queue: VecDeque::new(),
            dropped: 0,
        }
    }

    fn push(&mut self, item: T) {
        if self.queue.len() >= MAX_QUEUED {
            self.queue.pop_front();
            self.dropped += 1;
        }
        self.queue.push_back(item);
    }
}

static HOST: Mutex<Bounded<Record>> = Mutex::new(Bounded::new());
/// Lines for stderr, and whether the writer is writing some it took.
static LINES: Mutex<(Bounded<String>, bool)> = Mutex::new((Bounded::new(), false));
/// Lines were queued, or the writer finished a write.
static LINES_CHANGED: Condvar = Condvar::new();

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts (once) the thread that writes queued lines to stderr. It alone blocks on a full
/// stderr, and a write error (a closed pipe) loses the line, nothing else.
fn stderr_writer() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let _ = std::thread::Builder::new()
            .name("vyx-log".into())
            .spawn(|| loop {
                let (lines, dropped) = {
                    let mut guard = lock(&LINES);
                    guard.1 = false;
                    LINES_CHANGED.notify_all();
                    while guard.0.queue.is_empty() && guard.0.dropped == 0 {
                        guard = LINES_CHANGED
                            .wait(guard)
                            .unwrap_or_else(PoisonError::into_inner);
                    }
                    guard.1 = true;
                    let dropped = std::mem::take(&mut guard.0.dropped);
                    (guard.0.queue.drain(..).collect::<Vec<_>>(), dropped)
                };
                let mut out = std::io::stderr().lock();
                if dropped > 0 {
                    let _ = writeln!(
                        out,
                        "vyx: {dropped} log lines dropped (stderr was not read in time)"
                    );
                }
                for line in lines {
                    let _ = out.write_all(line.as_bytes());
                }
                let _ = out.flush();
            });
    });
}

/// Waits until the lines queued for stderr are written, at most `timeout` (a full stderr
/// would hold a stopping process forever). It blocks: a host calls it once, when its last
/// engine has stopped and before the process may exit.
pub fn flush_stderr(timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut guard = lock(&LINES);
    while !guard.0.queue.is_empty() || guard.1 {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return;
        };
        guard = LINES_CHANGED
            .wait_timeout(guard, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

/// `2026-12-06T20:36:27.123Z  INFO target: message key=value ...`, as the fmt subscriber
/// writes it.
fn line(record: &Record) -> String {
    let mut out = String::with_capacity(80 + record.message.len());
    rfc3339(&mut out, SystemTime::now());
    let _ = write!(
        out,
        " {:>5} {}: {}",
        record.level, record.target, record.message
    );
    for (name, value) in &record.fields {
        let _ = write!(out, " {name}={value}");
    }
    out.push('\n');
    out
}

/// UTC time with milliseconds, from days since the epoch to a civil date (Howard Hinnant's
/// algorithm).
fn rfc3339(out: &mut String, t: SystemTime) {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    );
}

struct Forward;

impl<S: Subscriber> Layer<S> for Forward {
    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        *metadata.level() <= level()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(level())
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let record = Record {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            message: fields.message,
            fields: fields.rest,
        };
        match sink() {
            Sink::Host => {
                lock(&HOST).push(record);
                QUEUED.notify_waiters();
                if let Some(wake) = WAKE.get() {
                    wake();
                }
            }
            Sink::Stderr => {
                lock(&LINES).0.push(line(&record));
                LINES_CHANGED.notify_all();
            }
        }
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<(String, Value)>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        self.rest.push((field.name().to_owned(), value));
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.put(field, Value::Str(format!("{value:?}")));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.put(field, Value::Str(value.to_owned()));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::U64(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::F64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_by_name_and_nothing_else() {
        assert_eq!(parse_level("DEBUG"), Ok(LevelFilter::DEBUG));
        assert_eq!(parse_level("off"), Ok(LevelFilter::OFF));
        assert!(parse_level("warning").is_err());
        let err = parse_level("verbose").unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"verbose\" is not a log level (off, error, warn, info, debug or trace)"
        );
        assert!(parse_level("vyx_core=debug").is_err());
    }

    #[test]
    fn civil_time() {
        let mut s = String::new();
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_796_675_787_123);
        rfc3339(&mut s, t);
        assert_eq!(s, "2026-12-07T20:36:27.123Z");
        s.clear();
        rfc3339(
            &mut s,
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400),
        );
        assert_eq!(s, "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn a_line_as_the_fmt_subscriber_writes_it() {
        let record = Record {
            level: Level::INFO,
            target: "vyx_core::session::supervise".into(),
            message: "registered".into(),
            fields: vec![
                (
                    "gateway".into(),
                    Value::Str("ws://127.0.0.1:9000/_vyx/register".into()),
                ),
                ("attempt".into(), Value::U64(2)),
            ],
        };
        let l = line(&record);
        assert!(
            l.ends_with(
                "Z  INFO vyx_core::session::supervise: registered \
                 gateway=ws://127.0.0.1:9000/_vyx/register attempt=2\n"
            ),
            "{l}"
        );
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts_them() {
        let mut q = Bounded::new();
        for i in 0..MAX_QUEUED + 3 {
            q.push(i);
        }
        assert_eq!(q.queue.len(), MAX_QUEUED);
        assert_eq!(q.queue.front(), Some(&3));
        assert_eq!(q.dropped, 3);
    }
}

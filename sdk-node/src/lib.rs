//! The native half of `@vyx/worker`: `vyx-core`'s host API (`vyx_core::session`) bound to
//! Node.js with napi-rs. All of the protocol lives in the core; this file only moves data
//! across the boundary in the shape `docs/ARCHITECTURE.md` describes ("The pull engine and
//! how the bindings meet the core"):
//!
//! - one pull, [`NativeWorker::pull`], delivering everything that happened as one packed
//!   buffer (layout in [`batch`]) to the callback given to [`NativeWorker::start`]: new
//!   requests, resets and state changes;
//! - requests are integer slots into a map of [`Stream`]s kept here; the JS objects wrapping
//!   them are plain, with no finalizer;
//! - a whole response is one synchronous call, [`NativeWorker::respond`], borrowing the body;
//!   streaming is [`NativeWorker::try_send`] plus the [`NativeWorker::writable`] wait only
//!   when the window is full;
//! - an upgrade request answered 101 keeps its slot as a byte pipe (the same `try_chunk` /
//!   `try_send` calls, `try_send`'s end a half-close) until [`NativeWorker::release`];
//! - errors carry a code as a `[ERR_VYX_...]` prefix of their message, which the JS layer
//!   turns into `error.code`.

mod batch;
#[cfg(feature = "bench-shapes")]
pub mod shapes;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use napi::bindgen_prelude::{Buffer, Function, ToNapiValue, TypeName, ValueType};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{check_status, sys};
use napi_derive::napi;
use tracing::level_filters::LevelFilter;
use vyx_core::host_logs::{self, Sink};
use vyx_core::session::{
    self, Batch, ConnectionState, Engine, EngineError, Stream, StreamError, TryChunk, TrySend,
    WorkerConfig,
};

/// The SDK's name in HELLO.
const SDK: &str = concat!("vyx-node/", env!("CARGO_PKG_VERSION"));

/// Requests at most in one batch: enough to amortise the crossing, small enough that one
/// batch does not starve the event loop.
const MAX_BATCH: usize = 256;

/// How long a stopped worker waits for its last log lines to reach stderr.
const FLUSH_TIMEOUT: Duration = Duration::from_millis(500);

#[napi_derive::module_init]
fn init() {
    // One worker thread: the engine's tasks are I/O, and the JS thread does the handlers.
    if let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("vyx-node")
        .enable_all()
        .build()
    {
        napi::bindgen_prelude::create_custom_tokio_runtime(rt);
    }
    // Engine logs (registration, reconnects, drain, refusal) go to stderr from a thread of
    // their own until a worker is given a `logger`; never written on the engine's thread,
    // where a closed or full stderr would stop it. The constructor reads `VYX_LOG`.
    host_logs::install(Sink::Stderr);
}

/// The level `logLevel` (else `VYX_LOG`) names, if either is set; an invalid one is an
/// `ERR_VYX_CONFIG` error naming where it came from.
fn configured_level(option: Option<String>) -> napi::Result<Option<LevelFilter>> {
    let (name, value) = match option {
        Some(v) => ("logLevel", v),
        None => match std::env::var("VYX_LOG") {
            Ok(v) if !v.is_empty() => ("VYX_LOG", v),
            _ => return Ok(None),
        },
    };
    host_logs::parse_level(&value)
        .map(Some)
        .map_err(|e| coded("ERR_VYX_CONFIG", format!("{name}: {e}")))
}

/// Sets the level of the core's logs for every worker of the process, at once:
/// `off`, `error`, `warn`, `info`, `debug` or `trace` (`ERR_VYX_CONFIG` otherwise).
#[napi]
pub fn set_log_level(level: String) -> napi::Result<()> {
    let level = host_logs::parse_level(&level)
        .map_err(|e| coded("ERR_VYX_CONFIG", format!("log level: {e}")))?;
    host_logs::set_level(level);
    Ok(())
}

/// An error whose message starts with `[code]`.
fn coded(code: &str, message: impl std::fmt::Display) -> napi::Error {
    napi::Error::from_reason(format!("[{code}] {message}"))
}

fn engine_error(e: EngineError) -> napi::Error {
    let code = match &e {
        EngineError::Config(_) => "ERR_VYX_CONFIG",
        EngineError::Refused(_) => "ERR_VYX_REFUSED",
        EngineError::Closed { .. } => "ERR_VYX_CLOSED",
        EngineError::NoRuntime => "ERR_VYX_NO_RUNTIME",
        EngineError::AlreadyStarted => "ERR_VYX_ALREADY_STARTED",
    };
    coded(code, e)
}

/// The code JS sees for a stream error.
pub(crate) fn stream_code(e: &StreamError) -> &'static str {
    match e {
        StreamError::Reset { .. } => "ERR_VYX_RESET",
        StreamError::ConnectionLost => "ERR_VYX_CONNECTION_LOST",
        StreamError::InvalidState(_) => "ERR_VYX_INVALID_STATE",
        StreamError::InvalidHead(_) => "ERR_VYX_INVALID_HEAD",
    }
}

fn stream_error(e: StreamError) -> napi::Error {
    coded(stream_code(&e), e)
}

fn gone() -> napi::Error {
    coded(
        "ERR_VYX_INVALID_STATE",
        "the response has ended or the stream was reset",
    )
}

/// Header pairs given flat from JS: `[name, value, name, value, ...]`.
fn pairs(flat: &[String]) -> Vec<(&str, &str)> {
    flat.chunks_exact(2)
        .map(|p| (p[0].as_str(), p[1].as_str()))
        .collect()
}

/// vyx-core's defaults (`vyx_core::config`), for the JS layer to use instead of repeating
/// the numbers.
#[napi(object)]
pub struct Defaults {
    pub max_concurrency: u32,
    pub connect_timeout_ms: u32,
    pub drain_timeout_ms: u32,
}

/// The defaults every vyx SDK uses for what its user leaves unset.
#[napi]
pub fn defaults() -> Defaults {
    use vyx_core::config;
    Defaults {
        max_concurrency: config::DEFAULT_MAX_CONCURRENCY,
        connect_timeout_ms: config::DEFAULT_CONNECT_TIMEOUT.as_millis() as u32,
        drain_timeout_ms: config::DEFAULT_DRAIN_TIMEOUT.as_millis() as u32,
    }
}

/// What JS gives the constructor; empty fields are filled from `VYX_*` variables.
#[napi(object)]
pub struct NativeOptions {
    pub connect: Option<Vec<String>>,
    pub id: Option<String>,
    pub token: Option<String>,
    pub max_concurrency: Option<u32>,
    pub labels: Option<HashMap<String, String>>,
    pub ca_file: Option<String>,
    pub instance: Option<String>,
    pub connect_timeout_ms: Option<u32>,
    /// The core's log level (else `VYX_LOG`, else `info`).
    pub log_level: Option<String>,
    /// The JS layer has a logger: the core's logs come with the batches, not on stderr.
    pub has_logger: Option<bool>,
}

/// One session's state, as `worker.gateways()` gives it.
#[napi(object)]
pub struct NativeGatewayState {
    pub gateway: String,
    pub address: Option<String>,
    pub kind: String,
    pub connection_id: Option<String>,
    pub cause: Option<String>,
}

/// A stream handed to JS and not finished.
pub(crate) struct Slot {
    stream: Stream,
    /// Answered 101: an upgraded connection, kept past the end of its response (a
    /// half-close) until JS releases it.
    pipe: bool,
}

impl Slot {
    pub(crate) fn new(stream: Stream) -> Slot {
        Slot {
            stream,
            pipe: false,
        }
    }
}

/// Streams handed to JS and not finished, by slot.
type Slots = Arc<Mutex<HashMap<u64, Slot>>>;

/// One engine and the streams it has handed out.
#[napi]
pub struct NativeWorker {
    engine: Engine,
    slots: Slots,
    /// Where batches go, from `start` until `null` has been delivered.
    on_batch: Arc<Mutex<Option<Arc<BatchCallback>>>>,
}

/// `on_batch` made callable from the engine's thread.
type BatchCallback =
    ThreadsafeFunction<Option<CopiedBuffer>, (), Option<CopiedBuffer>, napi::Status, false>;

impl NativeWorker {
    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn on_batch(&self) -> std::sync::MutexGuard<'_, Option<Arc<BatchCallback>>> {
        self.on_batch.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stream(&self, slot: i64) -> Option<Stream> {
        self.slots().get(&(slot as u64)).map(|s| s.stream.clone())
    }

    /// Forgets a finished stream (its last clone drops here: the response has ended),
    /// unless it is an upgraded connection, whose reading goes on until `release`.
    fn finish(&self, slot: i64) {
        let mut slots = self.slots();
        if slots.get(&(slot as u64)).is_some_and(|s| !s.pipe) {
            slots.remove(&(slot as u64));
        }
    }

    /// A raw head that is not an HTTP/1.1 response head: answered 500.
    fn bad_raw_head(&self, slot: i64, why: impl std::fmt::Display) -> napi::Error {
        if let Some(s) = self.slots().remove(&(slot as u64)) {
            s.stream
                .fail("the response head written to the socket does not parse");
        }
        coded(
            "ERR_VYX_INVALID_HEAD",
            format!(
                "the response head written to the socket is not HTTP/1.1 ({why}); answered 500"
            ),
        )
    }

    fn respond_with(
        &self,
        slot: i64,
        status: u32,
        headers: &[String],
        body: &[u8],
    ) -> napi::Result<()> {
        let stream = self.slots().remove(&(slot as u64)).ok_or_else(gone)?.stream;
        let status = u16::try_from(status).unwrap_or(0);
        // The writer is woken once for the turn's answers, by `wake_writers` (the JS layer
        // calls it in a microtask after every turn that answered).
        session::hold_writer_wakes();
        stream
            .respond(status, &pairs(headers), body)
            .map_err(stream_error)
    }

    /// The head of a streamed response; a 101 makes the slot a pipe.
    fn head<N: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        slot: i64,
        status: u16,
        headers: &[(N, V)],
        end: bool,
    ) -> napi::Result<bool> {
        let stream = self.stream(slot).ok_or_else(gone)?;
        let wanted = stream.send_head(status, headers, end).map_err(stream_error);
        match wanted {
            // The core lets a 101 through on an upgrade request only.
            Ok(true) if status == 101 => {
                if let Some(s) = self.slots().get_mut(&(slot as u64)) {
                    s.pipe = true;
                }
            }
            Ok(true) => {}
            _ => self.finish(slot),
        }
        wanted
    }
}

/// Bytes handed to JS as a `Buffer` copied into V8's heap. A batch is small, and copying it
/// costs less than the external buffer `Buffer::from(Vec)` makes, whose finalizer the
/// garbage collector must run (4 % of the JS thread under load, at one per pull).
pub struct CopiedBuffer(Vec<u8>);

impl TypeName for CopiedBuffer {
    fn type_name() -> &'static str {
        "Buffer"
    }

    fn value_type() -> ValueType {
        ValueType::Object
    }
}

impl ToNapiValue for CopiedBuffer {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        let mut data = std::ptr::null_mut();
        let mut buffer = std::ptr::null_mut();
        // SAFETY: `env` is the valid env napi-rs converts in; the bytes are read during the
        // call only.
        check_status!(unsafe {
            sys::napi_create_buffer_copy(
                env,
                val.0.len(),
                val.0.as_ptr().cast(),
                &mut data,
                &mut buffer,
            )
        })?;
        Ok(buffer)
    }
}

/// The next batch packed with the log records queued since the last one, or `None` once
/// the engine has stopped and everything was handed out.
async fn next_batch(engine: &Engine, slots: &Slots) -> Option<CopiedBuffer> {
    // Both are cancel-safe: a record or event not taken stays for the next pull.
    let batch = tokio::select! {
        batch = engine.next_batch(MAX_BATCH) => batch,
        () = host_logs::queued() => Some(Batch::default()),
    };
    let records = host_logs::take();
    if batch.is_none() && records.is_empty() {
        // The process may exit once `null` is delivered: let the stderr lines out first.
        let _ = tokio::task::spawn_blocking(|| host_logs::flush_stderr(FLUSH_TIMEOUT)).await;
        return None;
    }
    Some(CopiedBuffer(batch::pack(
        batch.unwrap_or_default(),
        records,
        slots,
    )))
}

/// What [`NativeWorker::send_raw_head`] sent.
#[napi(object)]
pub struct RawHead {
    pub status: u32,
    /// Bytes after the head are the body (`false`: a head that ends the stream).
    pub body: bool,
}

#[napi]
impl NativeWorker {
    /// Checks the configuration at once (`ERR_VYX_CONFIG`).
    #[napi(constructor)]
    pub fn new(options: NativeOptions) -> napi::Result<Self> {
        let mut config = WorkerConfig::new(
            options.connect.unwrap_or_default(),
            options.id.unwrap_or_default(),
        );
        config.token = options.token.filter(|t| !t.is_empty());
        if let Some(n) = options.max_concurrency {
            config.max_concurrency = n;
        }
        if let Some(labels) = options.labels {
            config.labels = labels.into_iter().collect::<BTreeMap<_, _>>();
        }
        config.tls_ca_file = options.ca_file.filter(|f| !f.is_empty()).map(Into::into);
        if let Some(instance) = options.instance.filter(|i| !i.is_empty()) {
            config.instance = instance;
        }
        if let Some(ms) = options.connect_timeout_ms {
            config.connect_timeout = Duration::from_millis(ms.into());
        }
        config.sdk = SDK.into();
        // What this host carries end to end (PROTOCOL.md §2.6): upgrades (the `'upgrade'`
        // socket of `worker.http`, `worker.ws`), `res.addTrailers`, `req.trailers`, 1xx
        // (`res.sendInformational`, node:http's `writeEarlyHints`/`writeProcessing`).
        use vyx_core::features::Features;
        config.features = Features::UPGRADE
            .union(Features::TRAILERS)
            .union(Features::INFORMATIONAL);
        config.apply_env_defaults();
        let level = configured_level(options.log_level)?;
        let engine = Engine::new(config).map_err(engine_error)?;
        if let Some(level) = level {
            host_logs::set_level(level);
        }
        if options.has_logger == Some(true) {
            host_logs::set_sink(Sink::Host);
        }
        Ok(NativeWorker {
            engine,
            slots: Arc::default(),
            on_batch: Arc::default(),
        })
    }

    /// Declares a route; returns its id.
    #[napi]
    pub fn add_route(&self, method: String, path: String) -> napi::Result<u32> {
        self.engine.add_route(&method, &path).map_err(engine_error)
    }

    /// Each session's latest state (one per gateway, and per address of its host name).
    #[napi]
    pub fn gateways(&self) -> Vec<NativeGatewayState> {
        self.engine
            .gateways()
            .into_iter()
            .map(|g| {
                let (kind, connection_id, cause) = match g.state {
                    ConnectionState::Connecting => ("connecting", None, None),
                    ConnectionState::Connected { connection_id } => {
                        ("connected", Some(connection_id), None)
                    }
                    ConnectionState::Reconnecting { cause, .. } => {
                        ("reconnecting", None, Some(cause))
                    }
                    ConnectionState::Draining => ("draining", None, None),
                    ConnectionState::Stopped => ("stopped", None, None),
                    ConnectionState::Failed { cause } => ("failed", None, Some(cause)),
                };
                NativeGatewayState {
                    gateway: g.gateway,
                    address: g.address.map(|a| a.to_string()),
                    kind: kind.into(),
                    connection_id,
                    cause,
                }
            })
            .collect()
    }

    /// Declares route `id` idempotent: the gateway may retry its requests elsewhere.
    #[napi]
    pub fn set_idempotent(&self, id: u32) -> napi::Result<()> {
        self.engine.set_idempotent(id).map_err(engine_error)
    }

    /// The configured worker id (after the environment defaults).
    #[napi(getter)]
    pub fn worker_id(&self) -> String {
        self.engine.config().worker_id
    }

    /// Starts connecting on the binding's tokio runtime. `on_batch` gets each batch
    /// [`NativeWorker::pull`] asks for, packed ([`batch`]), and `null` once the engine has
    /// stopped and everything was handed out.
    #[napi(ts_args_type = "onBatch: (batch: Buffer | null) => void")]
    pub fn start(&self, on_batch: Function<Option<CopiedBuffer>, ()>) -> napi::Result<()> {
        let callback = on_batch
            .build_threadsafe_function()
            .callee_handled::<false>()
            .build()?;
        *self.on_batch() = Some(Arc::new(callback));
        let engine = self.engine.clone();
        napi::bindgen_prelude::within_runtime_if_available(move || engine.start())
            .map_err(engine_error)
    }

    /// The one pull: `on_batch` (given to [`NativeWorker::start`]) is called with the next
    /// batch, with the core's log records queued since the last one (when a logger takes
    /// them), or with `null` once the engine has stopped. One function made thread-safe for
    /// the worker's life, not a promise per pull: napi-rs makes and closes a thread-safe
    /// function for every `async fn` call. Also wakes the writers of the answers held since
    /// the last wake: JS pulls right after handing out a batch, whose synchronous answers
    /// then need no `wake_writers` call.
    #[napi]
    pub fn pull(&self) {
        session::wake_held_writers();
        let Some(callback) = self.on_batch().clone() else {
            return; // `null` was delivered
        };
        let engine = self.engine.clone();
        let slots = Arc::clone(&self.slots);
        let on_batch = Arc::clone(&self.on_batch);
        napi::bindgen_prelude::spawn(async move {
            let batch = next_batch(&engine, &slots).await;
            if batch.is_none() {
                // Released after this last call: the event loop may then end.
                on_batch
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
            }
            callback.call(batch, ThreadsafeFunctionCallMode::NonBlocking);
        });
    }

    /// Lets go of `on_batch`, so that it no longer keeps the event loop alive: the JS layer
    /// pulls no more after a batch it could not take (`start` rejected with the error).
    #[napi]
    pub fn stop_pulling(&self) {
        self.on_batch().take();
    }

    /// Resolves when the engine has stopped: after a drain, or rejects with the refusal.
    #[napi]
    pub async fn wait(&self) -> napi::Result<()> {
        self.engine.wait().await.map_err(engine_error)
    }

    /// Stops gracefully: DRAIN, in-flight requests get `deadline_ms`, then close.
    #[napi]
    pub fn drain(&self, deadline_ms: u32) {
        self.engine.drain(Duration::from_millis(deadline_ms.into()));
    }

    /// A whole response in one call. The core applies the host rules; an invalid head is
    /// answered 500 by the core and thrown as `ERR_VYX_INVALID_HEAD`.
    #[napi]
    pub fn respond(
        &self,
        slot: i64,
        status: u32,
        headers: Vec<String>,
        body: Option<&[u8]>,
    ) -> napi::Result<()> {
        self.respond_with(slot, status, &headers, body.unwrap_or_default())
    }

    /// [`NativeWorker::respond`] with a text body, sent as UTF-8: `res.json()` and
    /// `res.send(string)` need no `Buffer` of their own.
    #[napi]
    pub fn respond_text(
        &self,
        slot: i64,
        status: u32,
        headers: Vec<String>,
        body: String,
    ) -> napi::Result<()> {
        self.respond_with(slot, status, &headers, body.as_bytes())
    }

    /// Wakes the writers of the answers `respond` and `respond_text` queued since the last
    /// call (they hold the wake-up, so that a turn's answers leave in one write): the JS
    /// layer calls it once after every turn that answered.
    #[napi]
    pub fn wake_writers(&self) {
        session::wake_held_writers();
    }

    /// The head of a streamed response; returns whether a body is wanted.
    #[napi]
    pub fn send_head(
        &self,
        slot: i64,
        status: u32,
        headers: Vec<String>,
        end_stream: bool,
    ) -> napi::Result<bool> {
        let status = u16::try_from(status).unwrap_or(0);
        self.head(slot, status, &pairs(&headers), end_stream)
    }

    /// The head of an upgrade request's answer as an app wrote it to its socket: the bytes
    /// of an HTTP/1.1 response head up to its blank line (`ws` writes its 101 so), sent as
    /// [`NativeWorker::send_head`] sends a head. Bytes that do not parse are answered 500,
    /// `ERR_VYX_INVALID_HEAD`.
    #[napi]
    pub fn send_raw_head(&self, slot: i64, head: &[u8]) -> napi::Result<RawHead> {
        let mut fields = [httparse::EMPTY_HEADER; 128];
        let mut parsed = httparse::Response::new(&mut fields);
        let status = match parsed.parse(head) {
            Ok(httparse::Status::Complete(_)) => parsed.code.unwrap_or(0),
            Ok(httparse::Status::Partial) => return Err(self.bad_raw_head(slot, "incomplete")),
            Err(e) => return Err(self.bad_raw_head(slot, e)),
        };
        let pairs: Vec<(&str, &[u8])> = parsed.headers.iter().map(|h| (h.name, h.value)).collect();
        let body = self.head(slot, status, &pairs, false)?;
        Ok(RawHead {
            status: status.into(),
            body,
        })
    }

    /// Lets go of a slot: an upgraded connection the app closed (its client's side, if
    /// still open, is refused), or a stream JS has no more use for.
    #[napi]
    pub fn release(&self, slot: i64) {
        self.slots().remove(&(slot as u64));
    }

    /// Writes body bytes without waiting: `true` when the window took all of them, `false`
    /// when the tail waits for credit (await [`NativeWorker::writable`] before the next).
    #[napi]
    pub fn try_send(&self, slot: i64, data: &[u8], end: bool) -> napi::Result<bool> {
        let stream = self.stream(slot).ok_or_else(gone)?;
        let sent = stream.try_send(data, end).map_err(stream_error);
        if end || sent.is_err() {
            self.finish(slot);
        }
        Ok(sent? == TrySend::Accepted)
    }

    /// Sends an interim (1xx) response before the head, its fields given flat
    /// (`[name, value, ...]`): `false` when it was dropped (no grant, 8 sent already, the
    /// stream gone), as one may be (PROTOCOL.md §3.11). After the head, or with a status or
    /// field a head cannot carry, an error (`ERR_VYX_INVALID_STATE`, `ERR_VYX_INVALID_HEAD`).
    #[napi]
    pub fn send_informational(
        &self,
        slot: i64,
        status: u32,
        fields: Vec<String>,
    ) -> napi::Result<bool> {
        let Some(stream) = self.stream(slot) else {
            return Ok(false);
        };
        // A status past u16 is refused by the core as any other non-1xx.
        let status = u16::try_from(status).unwrap_or(0);
        stream
            .send_informational(status, &pairs(&fields))
            .map_err(stream_error)
    }

    /// Ends the body after `data` with trailer fields given flat (`[name, value, ...]`):
    /// `try_send` with `end`, the fields after the last byte (dropped where the gateway did
    /// not grant `trailers`; invalid ones reset the stream, `ERR_VYX_INVALID_HEAD`).
    #[napi]
    pub fn end_with_trailers(
        &self,
        slot: i64,
        data: &[u8],
        trailers: Vec<String>,
    ) -> napi::Result<bool> {
        let stream = self.stream(slot).ok_or_else(gone)?;
        let sent = stream
            .end_with_trailers(data, &pairs(&trailers))
            .map_err(stream_error);
        self.finish(slot);
        Ok(sent? == TrySend::Accepted)
    }

    /// The request's trailer fields, flat (`[name, value, ...]`), once its body has ended
    /// with them; `null` before the end or without any.
    #[napi]
    pub fn trailers(&self, slot: i64) -> Option<Vec<String>> {
        let fields = self.stream(slot)?.trailers()?;
        Some(
            fields
                .iter()
                .flat_map(|(n, v)| [n, v].map(|b| String::from_utf8_lossy(b).into_owned()))
                .collect(),
        )
    }

    /// Resolves once the chunk left waiting by `try_send` has gone out.
    #[napi]
    pub async fn writable(&self, slot: i64) -> napi::Result<()> {
        match self.stream(slot) {
            Some(stream) => stream.writable().await.map_err(stream_error),
            None => Ok(()),
        }
    }

    /// The handler failed: 500 before the head, RESET `handler_error` after.
    #[napi]
    pub fn fail(&self, slot: i64, reason: String) {
        if let Some(s) = self.slots().remove(&(slot as u64)) {
            s.stream.fail(&reason);
        }
    }

    /// The next request-body chunk without waiting: a non-empty buffer, an empty one at the
    /// end, or `null` when nothing is there yet (await [`NativeWorker::readable`]).
    #[napi]
    pub fn try_chunk(&self, slot: i64) -> napi::Result<Option<Buffer>> {
        let Some(stream) = self.stream(slot) else {
            return Ok(Some(Buffer::from(Vec::new())));
        };
        match stream.try_chunk().map_err(stream_error)? {
            TryChunk::Data(bytes) => Ok(Some(Buffer::from(Vec::from(bytes)))),
            TryChunk::End => Ok(Some(Buffer::from(Vec::new()))),
            TryChunk::Pending => Ok(None),
        }
    }

    /// Resolves once `try_chunk` has something to say.
    #[napi]
    pub async fn readable(&self, slot: i64) {
        if let Some(stream) = self.stream(slot) {
            stream.readable().await;
        }
    }
}

//! The gateway's runtime settings. With no file, [`GatewayConfig::default`] is the embedded
//! default: loopback, dev mode, any worker accepted. `vyx.yaml` fills the same struct
//! ([`crate::file_config`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use vyx_core::handshake::REGISTER_PATH;
use vyx_core::limits;
use vyx_core::limits::MAX_ROUTES;

use crate::auth::{Authenticator, DevMode, Secret};

#[derive(Clone)]
pub struct GatewayConfig {
    /// The first (or only) HTTP listen address.
    pub listen: SocketAddr,
    /// Further HTTP listen addresses, served alike.
    pub extra_listen: Vec<SocketAddr>,
    /// A listener for worker registrations only; `None`: they use the HTTP listener(s).
    pub register_listen: Option<SocketAddr>,
    /// Path of the WebSocket registration endpoint.
    pub register_path: String,
    /// Accept any worker id and token (the embedded default; from this host only unless
    /// `auth` says otherwise, see [`DevMode`]).
    pub dev_mode: bool,
    pub auth: Arc<dyn Authenticator>,
    /// When set, `/_vyx/workers` and `/_vyx/metrics` need `Authorization: Bearer <it>`.
    pub admin_token: Option<Secret>,
    /// Announced in WELCOME; a worker silent for 3 intervals is dropped.
    pub heartbeat: Duration,
    /// Time a worker has to send HELLO after the upgrade.
    pub handshake_timeout: Duration,
    /// Time a worker has to send the response head.
    pub request_timeout: Duration,
    /// Time a client has, from the accept, to send its first complete request head (HTTP/1)
    /// or HEADERS (HTTP/2), whatever it sends before; then the connection is closed. Also
    /// hyper's timeout for each later HTTP/1 head, so keep-alive connections idle this long
    /// are closed too, and the idle limit of an HTTP/2 connection with no request open.
    /// `None`: no limit (not recommended). Default 30 s.
    pub header_read_timeout: Option<Duration>,
    /// A request or response body that makes no progress this long is cut.
    pub body_idle_timeout: Duration,
    /// How long a client may take nothing of its response while the gateway holds bytes for
    /// it; then the response is aborted (an HTTP/1 connection reset, an HTTP/2 stream failed)
    /// and the worker's stream RESET `cancel`, freeing its slot. nginx's `send_timeout`.
    pub send_timeout: Duration,
    /// How long an upgraded connection (a WebSocket carried over a stream, PROTOCOL.md §4.5)
    /// may move no byte either way; then its stream is RESET `timeout` and the client's
    /// connection closed. `timeouts.upgrade_idle`, default 300 s.
    pub upgrade_idle_timeout: Duration,
    /// The longest a lingering close lasts (see `lingering`): after the last answer on a
    /// connection whose client may still be sending, the gateway sends its FIN, then reads
    /// and discards the client's bytes this long at most before closing, so that the client
    /// reads its answer instead of a reset. `timeouts.linger`, default 30 s (nginx's
    /// `lingering_time`).
    pub linger_timeout: Duration,
    /// A lingering close ends when the client sends nothing this long.
    /// `timeouts.linger_idle`, default 5 s (nginx's `lingering_timeout`).
    pub linger_idle_timeout: Duration,
    /// How often the gateway looks whether its load dropped, to give freed memory back to
    /// the system then (glibc builds; see `memory_release`). Zero: never. Default 5 s.
    pub memory_release_interval: Duration,
    /// A bound on what a lingering close reads past what already waited in the socket when
    /// it began (sent before the answer); a client still sending past it is cut (the socket
    /// closes with a reset). `limits.linger_bytes`; `Some(0)` turns lingering off. Default
    /// `None`, no byte bound: the time limits end a linger, as nginx's only do. A client
    /// may write its whole body before it reads (Python's `http.client`), and what it has
    /// in its own send buffer (4 MiB on Linux) is not known here, so any default count cut
    /// clients that then never read their 413 (axum's `body_limited_by_default`).
    pub linger_bytes: Option<u64>,
    /// How long a request waits for a replica with a free slot before 503.
    pub queue_timeout: Duration,
    /// How long shutdown waits for in-flight requests (and local workers to exit).
    pub drain_grace: Duration,
    /// How long a gateway told to stop (SIGTERM) keeps accepting connections and serving
    /// as before, with its readiness (`/_vyx/health?ready`) failing, HTTP/1 responses
    /// carrying `Connection: close` and HTTP/2 clients sent GOAWAY, so that load balancers
    /// stop sending to it before it stops listening (`shutdown.readiness_delay`).
    pub readiness_delay: Duration,
    /// How long a gateway that has just started keeps its readiness failing while a worker
    /// id of `declared_workers` has no connection (`timeouts.startup_grace`; see `starting`).
    pub startup_grace: Duration,
    /// Whether a request whose stream failed before its response head is retried once on
    /// another replica when that is safe (`retries.enabled`; see `retry`).
    pub retries: bool,
    /// Per-stream flow-control window announced in WELCOME.
    pub initial_window: u32,
    /// The gateway's own cap on streams per worker connection, and across one worker
    /// process's connections (spec §6).
    pub max_concurrency_per_connection: u32,
    /// Largest request body, in bytes; larger ones get 413.
    pub max_body: u64,
    /// Largest client request head, in bytes; `None`: hyper's defaults (the embedded
    /// default). For HTTP/1 this is hyper's read buffer limit, which also caps how much of
    /// a body is read at once.
    pub max_header: Option<usize>,
    /// Most client connections open at once (worker connections included); past it a few
    /// more are admitted for `/_vyx/` only (see `conn_limit`), the rest are closed at once.
    /// `None`: derived from the open-files limit when the gateway binds.
    pub max_connections: Option<usize>,
    /// How many shards serve connections, each a single-threaded runtime on a thread of its
    /// own (see `shards`); `runtime.threads`, default the number of cores.
    pub threads: usize,
    /// A request body up to this size is read whole before the request takes a worker's
    /// slot (a slow uploader then holds gateway memory, not a worker); larger bodies are
    /// streamed once this much has arrived. 0: stream every body at once.
    pub body_buffer: u64,
    /// All bodies being buffered, gateway-wide; past it bodies are streamed instead.
    pub body_buffer_total: u64,
    /// The share of each worker connection's slots, in percent (at least one slot), that
    /// requests whose body is still streaming from the client (past `body_buffer`) may hold
    /// at once; others wait for a slot (`queue_timeout`). Keeps clients that trickle large
    /// bodies from taking every slot. 100: no cap.
    pub streamed_upload_slots: u32,
    /// The most of one response the gateway takes from the worker ahead of the client
    /// (never less than the stream window): a response that fits frees the worker's slot
    /// as soon as it is sent, whatever the client does.
    pub response_buffer: u64,
    /// All responses' buffers beyond the stream window, gateway-wide; past it responses
    /// move at the client's pace.
    pub response_buffer_total: u64,
    /// The slowest a client may send its request body, in bytes per second averaged over
    /// the time the gateway waits on it, once `min_body_rate_grace` has passed; slower
    /// bodies are cut (408 before the worker has it, RESET once it has). 0: no minimum.
    pub min_body_rate: u64,
    /// Time a body is given before `min_body_rate` applies.
    pub min_body_rate_grace: Duration,
    /// Peers whose `X-Forwarded-*`/`Forwarded` headers are kept (and extended); from any
    /// other peer they are replaced. Empty by default.
    pub trusted_proxies: Vec<crate::trusted_proxies::IpNet>,
    /// Whether an HTTP/1 client's FIN after its request is a half-close (it still reads the
    /// answer) rather than the client leaving. Off (the default), as nginx and Go treat it:
    /// a FIN or a reset before the response is complete cancels the request (RESET `cancel`
    /// to the worker). On: the answer still goes out after a FIN; a FIN that comes once the
    /// response has begun still counts as leaving (see `client_eof`).
    pub client_half_close: bool,
    /// SETTINGS and PING frames (each draws a reply) an HTTP/2 client may send in a burst;
    /// the allowance refills at 10 a second. Past it the connection
    /// gets GOAWAY `ENHANCE_YOUR_CALM` and is closed.
    pub h2_control_frames: u32,
    /// Most routes one worker connection may declare.
    pub routes_per_worker: usize,
    /// How long the routes of a worker id whose last connection is gone stay its own
    /// (answering 503 with `Retry-After`) before they lapse and other routes may serve those
    /// paths (`routes.claim_grace`).
    pub claim_grace: Duration,
    /// The worker ids the file declares (none in dev mode).
    pub declared_workers: Vec<String>,
    /// Workers the gateway starts and supervises itself.
    pub local_workers: Vec<LocalWorker>,
    /// The file this came from, for logs.
    pub config_file: Option<PathBuf>,
    /// TLS on every listener (`tls:`); `None`: plain HTTP and `ws://`.
    pub tls: Option<crate::tls::TlsFiles>,
    /// `log.format`: how log and access log lines are written (`--log-format` overrides).
    pub log_format: crate::log_format::LogFormat,
    /// `access_log:`: which requests get a line, and where it goes.
    pub access_log: crate::access_log::AccessLogConfig,
    /// `tracing:`; without it, traces are on only if the `OTEL_EXPORTER_OTLP_*` variables
    /// name an endpoint.
    pub tracing: Option<crate::otel::TracingConfig>,
    /// The dashboard's bounds (`/_vyx/ui`).
    pub ui: crate::UiLimits,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9000)),
            extra_listen: Vec::new(),
            register_listen: None,
            register_path: REGISTER_PATH.to_string(),
            dev_mode: true,
            auth: Arc::new(DevMode::new(false)),
            admin_token: None,
            heartbeat: limits::HEARTBEAT,
            handshake_timeout: limits::HANDSHAKE_TIMEOUT,
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Some(Duration::from_secs(30)),
            body_idle_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(60),
            upgrade_idle_timeout: limits::UPGRADE_IDLE,
            linger_timeout: Duration::from_secs(30),
            linger_idle_timeout: Duration::from_secs(5),
            memory_release_interval: Duration::from_secs(5),
            linger_bytes: None,
            queue_timeout: Duration::from_secs(5),
            drain_grace: Duration::from_secs(30),
            readiness_delay: Duration::ZERO,
            startup_grace: Duration::from_secs(60),
            retries: true,
            initial_window: limits::INITIAL_WINDOW,
            max_concurrency_per_connection: limits::MAX_CONCURRENCY,
            max_body: 1 << 30,
            max_header: None,
            max_connections: None,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            body_buffer: u64::from(limits::INITIAL_WINDOW),
            body_buffer_total: 64 << 20,
            streamed_upload_slots: 50,
            response_buffer: 1 << 20,
            response_buffer_total: 64 << 20,
            min_body_rate: 240,
            min_body_rate_grace: Duration::from_secs(5),
            trusted_proxies: Vec::new(),
            client_half_close: false,
            h2_control_frames: 1000,
            routes_per_worker: MAX_ROUTES,
            // Longer than a worker's reconnect takes (backoff capped at 10 s, §9, plus a
            // handshake), so a restart or a network blip keeps the worker's paths its own;
            // short enough that a worker gone for good frees them within half a minute.
            claim_grace: Duration::from_secs(30),
            declared_workers: Vec::new(),
            local_workers: Vec::new(),
            config_file: None,
            tls: None,
            log_format: Default::default(),
            access_log: Default::default(),
            tracing: None,
            ui: crate::UiLimits::default(),
        }
    }
}

impl GatewayConfig {
    /// Every address the gateway listens on: HTTP, and registrations if separate.
    pub fn listen_addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        std::iter::once(self.listen)
            .chain(self.extra_listen.iter().copied())
            .chain(self.register_listen)
    }
}

/// A `mode: local` entry: the gateway starts `replicas` copies of this process.
#[derive(Debug, Clone)]
pub struct LocalWorker {
    pub id: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub replicas: u32,
    pub restart: RestartPolicy,
    /// Handed to the child as `VYX_TOKEN`.
    pub token: Secret,
}

/// When a local worker that exited is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartWhen {
    Always,
    OnFailure,
    Never,
}

#[derive(Debug, Clone, Copy)]
pub struct RestartPolicy {
    pub when: RestartWhen,
    /// Give up after this many fast failures in a row.
    pub max_fast_failures: u32,
    /// An exit sooner than this after the start is a fast failure.
    pub fast_failure: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            when: RestartWhen::Always,
            max_fast_failures: 5,
            fast_failure: Duration::from_secs(10),
        }
    }
}

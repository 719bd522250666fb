//! The worker-side session engine.
//!
//! [`Engine::start`] dials the gateway, registers the worker's routes and keeps the
//! connection alive (heartbeat, reconnect with backoff) until stopped. Requests are
//! **pulled**: the host (the Rust SDK, or a Node/Python binding) awaits
//! [`Engine::next_batch`] and runs its handlers; the core never calls user code.
//!
//! ```no_run
//! use vyx_core::handshake::RouteSpec;
//! use vyx_core::session::{Engine, WorkerConfig};
//!
//! # async fn demo() {
//! let mut cfg = WorkerConfig::new("ws://127.0.0.1:9000", "rust:api");
//! cfg.routes.push(RouteSpec { id: 0, method: "GET".into(), path: "/hello/{name}".into() });
//! let engine = Engine::start(cfg).unwrap();
//! while let Some(batch) = engine.next_batch(64).await {
//!     for mut req in batch {
//!         tokio::spawn(async move {
//!             req.response.send_head(200, vec![], false).unwrap();
//!             req.response.send_data("hi".into(), true).await.ok();
//!         });
//!     }
//! }
//! # }
//! ```

mod connect;
mod connection;
mod stream;
mod tls;

pub use connect::{registration_url, ConnectError};
pub use stream::{IncomingRequest, RequestBody, ResponseSender, StreamError};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Mutex};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{info, warn};

use crate::backoff::{Backoff, STABLE_MS};
use crate::error::CloseCode;
use crate::handshake::{self, RouteSpec};
use crate::limits::MAX_CONCURRENCY;

pub(crate) type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Environment variables the SDKs read when a setting is not given in code (local mode sets
/// them for the processes it starts).
pub const ENV_CONNECT: &str = "VYX_CONNECT";
pub const ENV_WORKER_ID: &str = "VYX_WORKER_ID";
pub const ENV_TOKEN: &str = "VYX_TOKEN";
/// A PEM file of extra CAs to trust for `wss://` (a gateway behind a private CA).
pub const ENV_CA_FILE: &str = "VYX_CA_FILE";

/// Everything the engine needs to register a worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// `ws://host:port`, `wss://host:port`, or a full registration URL.
    pub connect: String,
    pub worker_id: String,
    pub token: Option<String>,
    /// Distinguishes this process among replicas of the same id.
    pub instance: String,
    /// `name/version` of the SDK, sent in HELLO.
    pub sdk: String,
    /// Streams this worker serves at once on one connection.
    pub max_concurrency: u32,
    pub routes: Vec<RouteSpec>,
    pub labels: BTreeMap<String, String>,
    pub connect_timeout: Duration,
    /// Extra CAs (PEM) trusted for `wss://`, besides the public web roots.
    pub tls_ca_file: Option<std::path::PathBuf>,
}

impl WorkerConfig {
    pub fn new(connect: impl Into<String>, worker_id: impl Into<String>) -> WorkerConfig {
        WorkerConfig {
            connect: connect.into(),
            worker_id: worker_id.into(),
            token: None,
            instance: default_instance(),
            sdk: concat!("vyx-core/", env!("CARGO_PKG_VERSION")).into(),
            max_concurrency: 1024,
            routes: Vec::new(),
            labels: BTreeMap::new(),
            connect_timeout: connect::DEFAULT_CONNECT_TIMEOUT,
            tls_ca_file: None,
        }
    }

    /// Fills `connect`, `worker_id` and `token` from `VYX_CONNECT`, `VYX_WORKER_ID` and
    /// `VYX_TOKEN` where they are empty, and `tls_ca_file` from `VYX_CA_FILE`.
    pub fn apply_env_defaults(&mut self) {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if self.connect.is_empty() {
            self.connect = env(ENV_CONNECT).unwrap_or_default();
        }
        if self.worker_id.is_empty() {
            self.worker_id = env(ENV_WORKER_ID).unwrap_or_default();
        }
        if self.token.is_none() {
            self.token = env(ENV_TOKEN);
        }
        if self.tls_ca_file.is_none() {
            self.tls_ca_file = env(ENV_CA_FILE).map(Into::into);
        }
    }

    /// Checks what the gateway would refuse anyway, so that the error comes at once.
    pub fn validate(&self) -> Result<(), EngineError> {
        if self.connect.is_empty() {
            return Err(EngineError::Config(format!(
                "no gateway address: set it in code or in {ENV_CONNECT}"
            )));
        }
        if !(self.connect.starts_with("ws://") || self.connect.starts_with("wss://")) {
            return Err(EngineError::Config(format!(
                "gateway address {:?} must start with ws:// or wss://",
                self.connect
            )));
        }
        if !handshake::is_worker_id(&self.worker_id) {
            return Err(EngineError::Config(format!(
                "worker id {:?} must be 1 to 128 characters of A-Z a-z 0-9 . _ : @ / - (set it in code or in {ENV_WORKER_ID})",
                self.worker_id
            )));
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.max_concurrency) {
            return Err(EngineError::Config(format!(
                "max_concurrency {} is outside 1..={MAX_CONCURRENCY}",
                self.max_concurrency
            )));
        }
        handshake::validate_routes(&self.routes).map_err(|e| EngineError::Config(e.message))
    }
}

fn default_instance() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    let pid = std::process::id();
    // Tells two processes apart even when the pid is reused (containers often have pid 1).
    let nonce = crate::backoff::SplitMix64::new(crate::backoff::random_seed()).next_u64() as u32;
    if host.is_empty() {
        format!("{pid}-{nonce:08x}")
    } else {
        format!("{host}-{pid}-{nonce:08x}")
    }
}

/// Where the engine is. Observe it with [`Engine::state`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    Connecting,
    Connected {
        connection_id: String,
    },
    /// Waiting `delay` before attempt number `attempt` (1-based) after `cause`.
    Reconnecting {
        attempt: u32,
        delay: Duration,
        cause: String,
    },
    /// DRAIN sent: finishing in-flight requests.
    Draining,
    Stopped,
    /// Stopped for good: the gateway refused this worker.
    Failed {
        cause: String,
    },
}

/// Why the engine stopped by itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("invalid worker configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Refused(#[from] ConnectError),
    #[error("gateway closed the connection: {code}: {reason}")]
    Closed { code: CloseCode, reason: String },
}

/// A running worker session. Cheap to clone; all clones drive the same engine.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Mutex<mpsc::UnboundedReceiver<IncomingRequest>>,
    state: watch::Receiver<ConnectionState>,
    stop: watch::Sender<Option<Duration>>,
    result: watch::Receiver<Option<Result<(), EngineError>>>,
}

impl Engine {
    /// Validates the configuration and starts connecting in the background. Must be called
    /// inside a tokio runtime.
    pub fn start(config: WorkerConfig) -> Result<Engine, EngineError> {
        config.validate()?;
        let tls = if config.connect.starts_with("wss://") {
            Some(tls::client_config(config.tls_ca_file.as_deref())?)
        } else {
            None
        };
        let (queue_tx, queue_rx) = mpsc::unbounded_channel();
        let (state_tx, state_rx) = watch::channel(ConnectionState::Connecting);
        let (stop_tx, stop_rx) = watch::channel(None);
        let (result_tx, result_rx) = watch::channel(None);
        tokio::spawn(async move {
            let result = supervise(config, tls, queue_tx, &state_tx, stop_rx).await;
            let _ = state_tx.send(match &result {
                Ok(()) => ConnectionState::Stopped,
                Err(e) => ConnectionState::Failed {
                    cause: e.to_string(),
                },
            });
            let _ = result_tx.send(Some(result));
        });
        Ok(Engine {
            shared: Arc::new(Shared {
                queue: Mutex::new(queue_rx),
                state: state_rx,
                stop: stop_tx,
                result: result_rx,
            }),
        })
    }

    /// Waits for at least one request and returns up to `max` of them; `None` once the
    /// engine has stopped and every request it accepted has been handed out.
    pub async fn next_batch(&self, max: usize) -> Option<Vec<IncomingRequest>> {
        let mut queue = self.shared.queue.lock().await;
        let first = queue.recv().await?;
        let mut batch = Vec::with_capacity(max.clamp(1, 64));
        batch.push(first);
        while batch.len() < max {
            match queue.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        Some(batch)
    }

    /// The current state, and every change after it.
    pub fn state(&self) -> watch::Receiver<ConnectionState> {
        self.shared.state.clone()
    }

    /// Stops gracefully: sends DRAIN, lets in-flight requests finish (at most `deadline`),
    /// then closes and does not reconnect. Returns at once; [`Engine::wait`] tells when done.
    pub fn drain(&self, deadline: Duration) {
        self.shared.stop.send_if_modified(|s| {
            if s.is_none() {
                *s = Some(deadline);
                true
            } else {
                false
            }
        });
    }

    /// Waits until the engine has stopped: `Ok` after [`Engine::drain`], `Err` when the
    /// gateway refused the worker for good.
    pub async fn wait(&self) -> Result<(), EngineError> {
        let mut rx = self.shared.result.clone();
        let result = rx.wait_for(Option::is_some).await;
        match result {
            Ok(r) => r.clone().expect("waited for Some"),
            Err(_) => Ok(()),
        }
    }
}

async fn supervise(
    cfg: WorkerConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    queue: mpsc::UnboundedSender<IncomingRequest>,
    state: &watch::Sender<ConnectionState>,
    mut stop: watch::Receiver<Option<Duration>>,
) -> Result<(), EngineError> {
    let mut backoff = Backoff::new();
    let url = registration_url(&cfg.connect);
    loop {
        if stop.borrow().is_some() {
            return Ok(());
        }
        let attempt = tokio::select! {
            r = connect::connect(&cfg, tls.clone()) => r,
            _ = stop.wait_for(Option::is_some) => return Ok(()),
        };
        let cause = match attempt {
            Ok((ws, welcome)) => {
                info!(gateway = %url, worker_id = %cfg.worker_id, connection = %welcome.connection_id, "registered");
                let _ = state.send(ConnectionState::Connected {
                    connection_id: welcome.connection_id.clone(),
                });
                let up_since = tokio::time::Instant::now();
                let end = connection::run(
                    ws,
                    connection::RunArgs {
                        welcome: &welcome,
                        queue: &queue,
                        stop: &mut stop,
                        state,
                    },
                )
                .await;
                if matches!(end, connection::ConnEnd::Drained) || stop.borrow().is_some() {
                    info!("drained and disconnected");
                    return Ok(());
                }
                if let connection::ConnEnd::Closed(Some(code), reason) = &end {
                    if let Some(code) = CloseCode::from_u16(*code).filter(|c| c.is_permanent()) {
                        warn!(%code, %reason, "gateway refused this worker; not reconnecting");
                        return Err(EngineError::Closed {
                            code,
                            reason: reason.clone(),
                        });
                    }
                }
                if up_since.elapsed() >= Duration::from_millis(STABLE_MS) {
                    backoff.reset();
                }
                end.to_string()
            }
            Err(e) if e.is_permanent() => {
                warn!(error = %e, "registration refused; not retrying");
                return Err(e.into());
            }
            Err(e) => e.to_string(),
        };
        let delay = backoff.next_delay();
        warn!(%cause, attempt = backoff.attempt(), delay_ms = delay.as_millis() as u64, "reconnecting");
        let _ = state.send(ConnectionState::Reconnecting {
            attempt: backoff.attempt(),
            delay,
            cause,
        });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(Option::is_some) => return Ok(()),
        }
        let _ = state.send(ConnectionState::Connecting);
    }
}

//! The worker's configuration: what a host gives the engine, the environment variables that
//! fill what it leaves empty, the checks the gateway would make anyway, and the defaults.
//!
//! The defaults every SDK uses for what its user leaves unset are written once, here: the
//! Rust SDK and the Node and Python bindings read them from this module, and
//! `sdk-go/config.go` is their twin (a test in each SDK checks its values against these).
//! The reconnect schedule's numbers are the protocol's, in [`crate::backoff`].

use std::collections::BTreeMap;
use std::time::Duration;

use crate::handshake::{self, RouteSpec};
use crate::limits::MAX_CONCURRENCY;
use crate::session::EngineError;

/// Streams one connection serves at once unless the host says otherwise.
///
/// ```
/// use vyx_core::config::{WorkerConfig, DEFAULT_MAX_CONCURRENCY};
///
/// let config = WorkerConfig::new("ws://127.0.0.1:9000", "rust:api");
/// assert_eq!(config.max_concurrency, DEFAULT_MAX_CONCURRENCY);
/// ```
pub const DEFAULT_MAX_CONCURRENCY: u32 = 1024;
/// How long one dial (TCP, TLS, the upgrade) may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests may take to finish once the worker is stopped (by the
/// program or a signal) before the connection closes anyway. Long enough for an ordinary
/// slow request; a deploy that needs more says so.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// The protocol extensions the host can serve, offered in HELLO (§2.6).
    pub features: crate::features::Features,
}

impl WorkerConfig {
    pub fn new(connect: impl Into<String>, worker_id: impl Into<String>) -> WorkerConfig {
        WorkerConfig {
            connect: connect.into(),
            worker_id: worker_id.into(),
            token: None,
            instance: default_instance(),
            sdk: concat!("vyx-core/", env!("CARGO_PKG_VERSION")).into(),
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            routes: Vec::new(),
            labels: BTreeMap::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            tls_ca_file: None,
            features: crate::features::Features::NONE,
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
        handshake::validate_hello_fields(&self.instance, &self.sdk, &self.labels)
            .and_then(|_| handshake::validate_routes(&self.routes))
            .map_err(|e| EngineError::Config(e.message))
    }
}

fn default_instance() -> String {
    let mut host = std::env::var("HOSTNAME").unwrap_or_default();
    // Within the HELLO bound (MAX_INSTANCE_LEN, 256) with the pid and nonce after it.
    while host.len() > 200 {
        host.pop();
    }
    let pid = std::process::id();
    // Tells two processes apart even when the pid is reused (containers often have pid 1).
    let nonce = crate::backoff::SplitMix64::new(crate::backoff::random_seed()).next_u64() as u32;
    if host.is_empty() {
        format!("{pid}-{nonce:08x}")
    } else {
        format!("{host}-{pid}-{nonce:08x}")
    }
}

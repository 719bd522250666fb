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
use crate::session::resolve::Target;
use crate::session::{EngineError, Resolver};

/// What `connect` accepts: one gateway URL, or a list of them.
///
/// ```
/// use vyx_core::config::WorkerConfig;
///
/// let one = WorkerConfig::new("ws://127.0.0.1:9000", "rust:api");
/// let two = WorkerConfig::new(["ws://10.0.0.1:9000", "ws://10.0.0.2:9000"], "rust:api");
/// assert_eq!((one.connect.len(), two.connect.len()), (1, 2));
/// ```
pub trait IntoGateways {
    fn into_gateways(self) -> Vec<String>;
}

impl IntoGateways for &str {
    fn into_gateways(self) -> Vec<String> {
        vec![self.to_owned()]
    }
}

impl IntoGateways for String {
    fn into_gateways(self) -> Vec<String> {
        vec![self]
    }
}

impl IntoGateways for &String {
    fn into_gateways(self) -> Vec<String> {
        vec![self.clone()]
    }
}

impl<S: Into<String>> IntoGateways for Vec<S> {
    fn into_gateways(self) -> Vec<String> {
        self.into_iter().map(Into::into).collect()
    }
}

impl<S: Into<String>, const N: usize> IntoGateways for [S; N] {
    fn into_gateways(self) -> Vec<String> {
        self.into_iter().map(Into::into).collect()
    }
}

impl<S: Into<String> + Clone> IntoGateways for &[S] {
    fn into_gateways(self) -> Vec<String> {
        self.iter().cloned().map(Into::into).collect()
    }
}

/// `VYX_CONNECT`'s list: entries separated by commas, spaces around them dropped (an empty
/// entry stays, for [`WorkerConfig::validate`] to name).
///
/// ```
/// assert_eq!(
///     vyx_core::config::split_connect("ws://a:1, ws://b:2"),
///     ["ws://a:1", "ws://b:2"]
/// );
/// ```
pub fn split_connect(list: &str) -> Vec<String> {
    list.split(',').map(|e| e.trim().to_owned()).collect()
}

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
/// How often a gateway's host name is resolved again (it is also resolved again whenever
/// one of its sessions fails): an address that appears gets a session, one that goes has
/// its session drained.
pub const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(30);

/// Environment variables the SDKs read when a setting is not given in code (local mode sets
/// them for the processes it starts). `VYX_CONNECT` is a comma-separated list.
pub const ENV_CONNECT: &str = "VYX_CONNECT";
pub const ENV_WORKER_ID: &str = "VYX_WORKER_ID";
pub const ENV_TOKEN: &str = "VYX_TOKEN";
/// A PEM file of extra CAs to trust for `wss://` (a gateway behind a private CA).
pub const ENV_CA_FILE: &str = "VYX_CA_FILE";

/// Everything the engine needs to register a worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The gateways, each `ws://host:port`, `wss://host:port` or a full registration URL.
    /// The worker holds a session to each, and to each address a host name resolves to; to
    /// one address, as many as its gateway's WELCOME asks for (`connections`, one per
    /// gateway shard, so that a request is served on the core that took it; PROTOCOL.md §9.1).
    pub connect: Vec<String>,
    pub worker_id: String,
    pub token: Option<String>,
    /// Distinguishes this process among replicas of the same id.
    pub instance: String,
    /// `name/version` of the SDK, sent in HELLO.
    pub sdk: String,
    /// Streams this worker serves at once on one connection: each session has its own.
    pub max_concurrency: u32,
    pub routes: Vec<RouteSpec>,
    pub labels: BTreeMap<String, String>,
    pub connect_timeout: Duration,
    /// Extra CAs (PEM) trusted for `wss://`, besides the public web roots.
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// How gateway host names become addresses.
    pub resolver: Resolver,
    /// How often host names are resolved again.
    pub resolve_interval: Duration,
    /// The protocol extensions the host can serve, offered in HELLO (§2.6).
    pub features: crate::features::Features,
}

impl WorkerConfig {
    pub fn new(connect: impl IntoGateways, worker_id: impl Into<String>) -> WorkerConfig {
        WorkerConfig {
            connect: connect.into_gateways(),
            worker_id: worker_id.into(),
            token: None,
            instance: default_instance(),
            sdk: concat!("vyx-core/", env!("CARGO_PKG_VERSION")).into(),
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            routes: Vec::new(),
            labels: BTreeMap::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            tls_ca_file: None,
            resolver: Resolver::system(),
            resolve_interval: DEFAULT_RESOLVE_INTERVAL,
            features: crate::features::Features::NONE,
        }
    }

    /// Fills `connect`, `worker_id` and `token` from `VYX_CONNECT`, `VYX_WORKER_ID` and
    /// `VYX_TOKEN` where they are empty (`connect` also when it is one empty string, as a
    /// binding passes an empty option), and `tls_ca_file` from `VYX_CA_FILE`.
    pub fn apply_env_defaults(&mut self) {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if self.connect.iter().all(String::is_empty) {
            self.connect = env(ENV_CONNECT)
                .map(|list| split_connect(&list))
                .unwrap_or_default();
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
        if self.connect.iter().all(String::is_empty) {
            return Err(EngineError::Config(format!(
                "no gateway address: set it in code or in {ENV_CONNECT}"
            )));
        }
        self.targets()?;
        if self.resolve_interval.is_zero() {
            return Err(EngineError::Config(
                "resolve_interval must be above zero".into(),
            ));
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

impl WorkerConfig {
    /// The `connect` list taken apart; a bad entry is a configuration error naming it.
    pub(crate) fn targets(&self) -> Result<Vec<Target>, EngineError> {
        let mut targets: Vec<Target> = Vec::with_capacity(self.connect.len());
        for (i, entry) in self.connect.iter().enumerate() {
            let bad = |why: &str| {
                EngineError::Config(format!(
                    "gateway address {} of {} ({entry:?}) {why}",
                    i + 1,
                    self.connect.len()
                ))
            };
            if entry.is_empty() {
                return Err(bad("is empty"));
            }
            let target = Target::parse(entry).map_err(|why| bad(&why))?;
            if targets.iter().any(|t| t.url == target.url) {
                return Err(bad("is listed twice"));
            }
            targets.push(target);
        }
        Ok(targets)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_connect_string_is_no_gateway_and_a_bad_entry_is_named() {
        let none = WorkerConfig::new("", "t:w").validate().unwrap_err();
        assert!(none.to_string().contains("no gateway address"), "{none}");
        let bad = WorkerConfig::new(["ws://a:1", "ws://b:2", "wss://"], "t:w")
            .validate()
            .unwrap_err();
        assert!(
            bad.to_string()
                .contains("gateway address 3 of 3 (\"wss://\")"),
            "{bad}"
        );
    }
}

//! The gateway's runtime settings. With no file, [`GatewayConfig::default`] is the embedded
//! default: loopback, dev mode, any worker accepted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use vyx_core::handshake::REGISTER_PATH;
use vyx_core::limits;

use crate::auth::{AcceptAll, Authenticator};

#[derive(Clone)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    /// Path of the WebSocket registration endpoint on the HTTP port.
    pub register_path: String,
    /// Accept any worker id and token (the embedded default).
    pub dev_mode: bool,
    pub auth: Arc<dyn Authenticator>,
    /// Announced in WELCOME; a worker silent for 3 intervals is dropped.
    pub heartbeat: Duration,
    /// Time a worker has to send HELLO after the upgrade.
    pub handshake_timeout: Duration,
    /// Time a worker has to send the response head.
    pub request_timeout: Duration,
    /// How long a request waits for a replica with a free slot before 503.
    pub queue_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub drain_grace: Duration,
    /// Per-stream flow-control window announced in WELCOME.
    pub initial_window: u32,
    /// The gateway's own cap on streams per worker connection.
    pub max_concurrency_per_connection: u32,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9000)),
            register_path: REGISTER_PATH.to_string(),
            dev_mode: true,
            auth: Arc::new(AcceptAll),
            heartbeat: limits::HEARTBEAT,
            handshake_timeout: limits::HANDSHAKE_TIMEOUT,
            request_timeout: Duration::from_secs(30),
            queue_timeout: Duration::from_secs(5),
            drain_grace: Duration::from_secs(30),
            initial_window: limits::INITIAL_WINDOW,
            max_concurrency_per_connection: limits::MAX_CONCURRENCY,
        }
    }
}

//! The vyx gateway: an HTTP/1.1 + HTTP/2 front (hyper) that routes each request to a worker
//! connected over the vyx protocol.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let gateway = vyx_gateway::Gateway::bind(vyx_gateway::GatewayConfig::default()).await?;
//! println!("listening on {}", gateway.local_addr());
//! gateway.run(async { tokio::signal::ctrl_c().await.ok(); }).await
//! # }
//! ```

pub mod access_log;
mod admin;
pub mod auth;
mod body;
mod client_eof;
pub mod config;
mod conn;
mod conn_limit;
pub mod duplex;
pub mod file_config;
mod forward;
mod framing;
mod h2_calm;
// Public for its allocation test (`tests/interim_allocations.rs`).
pub mod interim;
mod lingering;
pub mod log_format;
pub mod log_limit;
pub mod memory_release;
mod metrics;
pub mod otel;
mod proxy;
mod register;
mod registry;
mod request_rules;
mod response;
mod retry;
mod routes;
mod server;
pub mod shards;
mod starting;
mod stopping;
mod supervisor;
mod target;
pub mod tls;
pub mod trusted_proxies;
mod ui;
mod upgrade;
mod upload;

pub use config::GatewayConfig;
pub use conn_limit::raise_nofile_limit;
pub use server::Gateway;
pub use ui::UiLimits;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// What every connection task of one gateway shares.
pub(crate) struct Shared {
    pub config: GatewayConfig,
    pub registry: registry::Registry,
    pub next_serial: AtomicU64,
    pub request_seq: AtomicU64,
    pub id_seed: u64,
    /// Where the gateway is in its stop (see `stopping`). Every client connection task
    /// holds a receiver: the stop waits for them all to be dropped.
    pub phase: tokio::sync::watch::Sender<stopping::Phase>,
    /// Whether the start is over, for readiness (see `starting`).
    pub startup: starting::Startup,
    pub metrics: Arc<metrics::Metrics>,
    pub limiter: Arc<conn_limit::ConnLimiter>,
    /// `limits.body_buffer_total`, in bytes.
    pub body_budget: Arc<tokio::sync::Semaphore>,
    /// `limits.response_buffer_total`, in bytes (see `response`).
    pub response_budget: Arc<tokio::sync::Semaphore>,
    pub access_log: Arc<access_log::AccessLog>,
    /// `None` when traces are off (see `otel`).
    pub tracing: Option<otel::Tracing>,
    pub ui: ui::Dashboard,
    /// Where connections are served (see `shards`).
    pub shards: shards::Pool,
}

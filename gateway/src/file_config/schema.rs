//! The file's shape. Every struct refuses unknown keys.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::scalars::{Addr, Dur, Listen, Scalar, Size};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    pub(super) listen: Option<Listen>,
    #[serde(default)]
    pub(super) register: Register,
    #[serde(default)]
    pub(super) timeouts: Timeouts,
    #[serde(default)]
    pub(super) limits: Limits,
    #[serde(default)]
    pub(super) routes: Routes,
    pub(super) admin: Option<Spanned<Admin>>,
    pub(super) tls: Option<Spanned<super::tls::Tls>>,
    #[serde(default)]
    pub(super) trusted_proxies: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) client_half_close: bool,
    #[serde(default)]
    pub(super) retries: Retries,
    #[serde(default)]
    pub(super) accept_unknown_workers: bool,
    #[serde(default)]
    pub(super) workers: Vec<Worker>,
    #[serde(default)]
    pub(super) log: Log,
    pub(super) access_log: Option<Spanned<AccessLog>>,
    pub(super) tracing: Option<Spanned<super::otel::Tracing>>,
    #[serde(default)]
    pub(super) ui: Ui,
    #[serde(default)]
    pub(super) runtime: Runtime,
}

/// `runtime:`, how the gateway runs.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Runtime {
    pub(super) threads: Option<Spanned<u32>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Log {
    pub(super) format: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AccessLog {
    pub(super) mode: Option<Spanned<String>>,
    pub(super) sample: Option<Spanned<f64>>,
    pub(super) path: Option<Spanned<String>>,
}

/// `ui:`, the dashboard's bounds.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Ui {
    pub(super) clients: Option<Spanned<u32>>,
    pub(super) interval: Option<Spanned<Dur>>,
    pub(super) max_missed: Option<Spanned<u32>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Register {
    pub(super) path: Option<Spanned<String>>,
    pub(super) listen: Option<Addr>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Timeouts {
    pub(super) request: Option<Dur>,
    pub(super) header_read: Option<Dur>,
    pub(super) body_idle: Option<Dur>,
    pub(super) body_rate_grace: Option<Dur>,
    pub(super) handshake: Option<Dur>,
    pub(super) heartbeat: Option<Spanned<Dur>>,
    pub(super) queue: Option<Dur>,
    pub(super) drain_grace: Option<Dur>,
    pub(super) readiness_delay: Option<Dur>,
    pub(super) startup_grace: Option<Dur>,
    pub(super) send: Option<Dur>,
    pub(super) upgrade_idle: Option<Dur>,
    pub(super) linger: Option<Dur>,
    pub(super) linger_idle: Option<Dur>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Retries {
    pub(super) enabled: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Limits {
    pub(super) max_body: Option<Size>,
    pub(super) max_header: Option<Spanned<Size>>,
    pub(super) routes_per_worker: Option<Spanned<u32>>,
    pub(super) streams_per_connection: Option<Spanned<u32>>,
    pub(super) max_connections: Option<Spanned<u64>>,
    pub(super) body_buffer: Option<Spanned<Size>>,
    pub(super) body_buffer_total: Option<Size>,
    pub(super) min_body_rate: Option<Size>,
    pub(super) response_buffer: Option<Spanned<Size>>,
    pub(super) response_buffer_total: Option<Size>,
    pub(super) streamed_upload_slots: Option<Spanned<u32>>,
    pub(super) h2_control_frames: Option<Spanned<u32>>,
    pub(super) linger_bytes: Option<Size>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Routes {
    pub(super) claim_grace: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Admin {
    pub(super) token_env: Option<Spanned<String>>,
    pub(super) token_file: Option<Spanned<String>>,
    pub(super) token: Option<Spanned<IgnoredAny>>,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum Mode {
    #[default]
    Local,
    Remote,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Worker {
    pub(super) id: Spanned<String>,
    #[serde(default)]
    pub(super) mode: Mode,
    pub(super) command: Option<Spanned<String>>,
    pub(super) args: Option<Vec<Spanned<String>>>,
    pub(super) env: Option<BTreeMap<String, Spanned<Scalar>>>,
    pub(super) cwd: Option<Spanned<String>>,
    pub(super) replicas: Option<Spanned<u32>>,
    pub(super) restart: Option<Spanned<Restart>>,
    pub(super) routes: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(super) allow_remote: bool,
    pub(super) token_env: Option<Spanned<String>>,
    pub(super) token_file: Option<Spanned<String>>,
    pub(super) token: Option<Spanned<IgnoredAny>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Restart {
    #[serde(default)]
    pub(super) policy: Policy,
    pub(super) max_fast_failures: Option<Spanned<u32>>,
    pub(super) fast_failure: Option<Dur>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub(super) enum Policy {
    #[default]
    Always,
    OnFailure,
    Never,
}

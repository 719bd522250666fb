//! Protocol defaults and hard limits (spec/PROTOCOL.md, "Limits").

use std::time::Duration;

/// Largest WebSocket message (6-byte frame header included) either side accepts.
pub const MAX_FRAME_SIZE: usize = 1024 * 1024;
/// Initial per-stream flow-control window, both directions.
pub const INITIAL_WINDOW: u32 = 256 * 1024;
/// Largest value a flow-control window may reach.
pub const MAX_WINDOW: u32 = (1 << 31) - 1;
/// Largest DATA payload a sender puts in one frame; larger bodies are split.
pub const MAX_DATA_CHUNK: usize = 64 * 1024;
/// Routes one connection may declare.
pub const MAX_ROUTES: usize = 1024;
/// Upper bound of a worker's declared concurrency.
pub const MAX_CONCURRENCY: u32 = 65535;
/// Default heartbeat interval announced in WELCOME.
pub const HEARTBEAT: Duration = Duration::from_millis(5000);
/// A peer silent for this many heartbeat intervals is dead.
pub const HEARTBEAT_MISSES: u32 = 3;
/// Time a worker has to send HELLO after the upgrade.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest worker id, in bytes.
pub const MAX_WORKER_ID_LEN: usize = 128;

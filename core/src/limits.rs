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
/// Largest TRAILERS payload, in bytes (PROTOCOL.md §3.10): trailers are not flow-controlled,
/// so they are bounded per frame; gRPC's status and metadata take a few hundred bytes.
pub const MAX_TRAILERS_SIZE: usize = 64 * 1024;
/// Most INFORMATIONAL (1xx) heads on one stream (§3.11): 103 Early Hints is sent once or
/// twice; a handler looping on interim responses must not hold the client forever.
pub const MAX_INFORMATIONAL: usize = 8;
/// Routes one connection may declare.
pub const MAX_ROUTES: usize = 1024;
/// Upper bound of a worker's declared concurrency.
pub const MAX_CONCURRENCY: u32 = 65535;
/// Most connections a WELCOME may ask a worker to hold to one address (§3.8 `connections`):
/// one per gateway shard, and a gateway has one shard per core.
pub const MAX_CONNECTIONS: u32 = 64;
/// Default heartbeat interval announced in WELCOME.
pub const HEARTBEAT: Duration = Duration::from_millis(5000);
/// A peer silent for this many heartbeat intervals is dead.
pub const HEARTBEAT_MISSES: u32 = 3;
/// Time a worker has to send HELLO after the upgrade.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// An upgraded stream (§4.5) on which no byte has moved either way this long is RESET
/// `timeout`: long enough for the pings WebSocket libraries send every 20 to 60 s, short
/// enough that an abandoned connection does not hold a worker's slot for hours.
pub const UPGRADE_IDLE: Duration = Duration::from_secs(300);
/// Longest worker id, in bytes.
pub const MAX_WORKER_ID_LEN: usize = 128;
/// Longest route pattern, in bytes (§2.5): ten times the longest route real apps write, and
/// within the 8 KiB request line most servers and proxies accept.
pub const MAX_PATTERN_LEN: usize = 4096;
/// Most segments in a route pattern (§2.5): real APIs nest a dozen deep at most.
pub const MAX_PATTERN_SEGMENTS: usize = 128;
/// Longest route method, in bytes (the longest registered HTTP method has 17).
pub const MAX_METHOD_LEN: usize = 32;
/// Longest HELLO `instance`, in bytes (a host name of 253 and a pid fit).
pub const MAX_INSTANCE_LEN: usize = 256;
/// Longest HELLO `sdk`, in bytes.
pub const MAX_SDK_LEN: usize = 128;
/// Most HELLO `labels`.
pub const MAX_LABELS: usize = 64;
/// Longest label key or value, in bytes.
pub const MAX_LABEL_LEN: usize = 256;
/// Most names in a HELLO or WELCOME `features` list (§2.6): room for later extensions.
pub const MAX_FEATURES: usize = 16;
/// Longest feature name, in bytes.
pub const MAX_FEATURE_LEN: usize = 32;

//! `vyx-core`: the vyx wire protocol, written once.
//!
//! - [`frame`]: the binary frame codec (one WebSocket message = one frame), the JSON control
//!   messages (HELLO, WELCOME, DRAIN, ROUTES, ERROR) included.
//! - [`handshake`]: the upgrade-request constants and what a valid HELLO, WELCOME and ROUTES
//!   hold.
//! - [`features`]: the protocol extensions a connection negotiates in HELLO and WELCOME.
//! - [`heartbeat`]: when to ping, and when a silent peer is dead (both sides).
//! - [`transport`]: the WebSocket side of a connection: settings, the send queue, the writer.
//! - [`routing`]: route patterns, their shapes and the matcher the gateway routes with.
//! - [`backoff`]: the reconnect schedule shared byte-for-byte with the Go SDK.
//! - `host_logs` (feature `host-logs`): the engine's logs for the Node and Python bindings,
//!   queued without blocking and taken by the host's own logger.
//! - [`session`]: the worker-side engine (connect, handshake, heartbeat, multiplexed streams,
//!   flow control, drain, reconnect) with the pull interface the SDKs build on.
//!
//! `spec/PROTOCOL.md` is the normative description; `spec/vectors/` holds the byte vectors
//! this crate's tests run.

pub mod backoff;
pub mod config;
pub mod error;
pub mod features;
pub mod flow;
pub mod frame;
pub mod handshake;
pub mod heartbeat;
#[cfg(feature = "host-logs")]
pub mod host_logs;
pub mod host_rules;
pub mod limits;
pub mod routing;
pub mod session;
pub mod transport;

pub use error::{CloseCode, DecodeError, ResetCode};
pub use frame::Frame;

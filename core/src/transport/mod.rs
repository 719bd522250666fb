//! The WebSocket side of a connection, shared by the worker engine and the gateway: the
//! settings both use, the outgoing queue every sender of a connection fills, and the writer
//! task that owns the socket's write half and empties it.

mod queue;
mod read_ahead;
mod wire;
mod writer;

use bytes::Bytes;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::error::CloseCode;
use crate::frame::HEADER_LEN;
use crate::limits::MAX_FRAME_SIZE;

pub use queue::OutQueue;
pub use read_ahead::{ReadAhead, READ_AHEAD, READ_CHUNK};
pub use wire::{put_masked_binary, FrameWriter, Wire, MOVE_MAX, WRITE_BUFFER};
pub use writer::{write_loop, write_loop_framed};

/// What a writer task puts on the socket.
#[derive(Debug)]
pub enum Outgoing {
    /// An encoded frame, sent as one binary message.
    Frame(Bytes),
    /// A DATA frame not yet encoded: its header ([`crate::frame::Data::header`]) and its
    /// payload, a slice of the sender's bytes. Sent as one binary message, the same bytes as
    /// [`Outgoing::Frame`] of the encoded frame; a writer that frames messages itself
    /// ([`Wire`]) copies the payload once, masked, and never builds the frame.
    Data {
        head: [u8; HEADER_LEN],
        payload: Bytes,
    },
    Ping,
    /// A close frame; the writer stops after it.
    Close(CloseCode, String),
}

/// The WebSocket settings both sides use: the frame limit, a bounded write buffer, and a
/// [`READ_CHUNK`] read buffer. tungstenite allocates its read buffer per connection up front
/// (a gateway holds thousands of mostly idle worker connections) and zero-fills up to its size
/// before every read; larger frames still arrive whole (the buffer grows to a frame's size
/// while it is read). The worker puts a [`ReadAhead`] under it, so that its small reads are
/// not each a system call; the gateway reads its sockets directly (bench/NOTES.md, "The
/// WebSocket read path").
pub fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_SIZE))
        .max_frame_size(Some(MAX_FRAME_SIZE))
        .read_buffer_size(READ_CHUNK)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(4 * MAX_FRAME_SIZE)
}

/// Close reasons are limited to 123 bytes; cut at a character boundary.
pub fn truncate_reason(reason: &str) -> &str {
    if reason.len() <= 123 {
        return reason;
    }
    let mut end = 123;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// Sleeps until `deadline`, or forever when there is none (for `select!` arms).
pub async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

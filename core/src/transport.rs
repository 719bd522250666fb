//! The WebSocket side of a connection, shared by the worker engine and the gateway: the
//! settings both use, and the writer task that owns a socket's write half.

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::SplitSink;
use futures_util::{Sink, SinkExt};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::debug;

use crate::error::CloseCode;
use crate::limits::{HEARTBEAT_MISSES, MAX_FRAME_SIZE};

/// What a writer task puts on the socket.
#[derive(Debug)]
pub enum Outgoing {
    /// An encoded frame, sent as one binary message.
    Frame(Bytes),
    Ping,
    /// A close frame; the writer stops after it.
    Close(CloseCode, String),
}

/// The WebSocket settings both sides use: the frame limit, and a bounded write buffer.
pub fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_SIZE))
        .max_frame_size(Some(MAX_FRAME_SIZE))
        .write_buffer_size(128 * 1024)
        .max_write_buffer_size(4 * MAX_FRAME_SIZE)
}

/// The gateway's settings: [`websocket_config`] with a 4 KiB read buffer. tungstenite
/// allocates (and zeroes) the whole read buffer per connection up front, 128 KiB by default;
/// a gateway holds thousands of mostly idle worker connections, and larger frames still
/// arrive whole (the buffer grows to a frame's size while it is read).
pub fn gateway_websocket_config() -> WebSocketConfig {
    websocket_config().read_buffer_size(4 * 1024)
}

/// Owns a socket's write half. Feeds while the queue has messages and flushes when it
/// empties, so a burst of frames costs one flush (tungstenite's `send` flushes every message).
pub async fn write_loop<S>(
    mut sink: SplitSink<S, Message>,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
) where
    S: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut yielded = false;
        while let Some(out) = next.take() {
            let msg = match out {
                Outgoing::Frame(b) => Message::Binary(b),
                Outgoing::Ping => Message::Ping(Bytes::new()),
                Outgoing::Close(code, reason) => {
                    let frame = CloseFrame {
                        code: WsCloseCode::from(code as u16),
                        reason: truncate_reason(&reason).into(),
                    };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    return;
                }
            };
            if let Err(e) = sink.feed(msg).await {
                debug!(error = %e, "write failed");
                return;
            }
            next = rx.try_recv().ok();
            if next.is_none() && !yielded {
                // Let the tasks that are ready run once before the flush: under load they
                // queue more frames, and one write carries them all.
                yielded = true;
                tokio::task::yield_now().await;
                next = rx.try_recv().ok();
            }
        }
        if let Err(e) = sink.flush().await {
            debug!(error = %e, "flush failed");
            return;
        }
    }
    let _ = sink.close().await;
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

/// The heartbeat rule of both sides: ping every interval; a peer from which nothing at all
/// arrived for [`HEARTBEAT_MISSES`] intervals is dead.
pub struct Heartbeat {
    interval: Duration,
    ticker: tokio::time::Interval,
    last_recv: Instant,
}

impl Heartbeat {
    pub fn new(interval: Duration) -> Heartbeat {
        let interval = interval.max(Duration::from_millis(1));
        let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Heartbeat {
            interval,
            ticker,
            last_recv: Instant::now(),
        }
    }

    /// Anything arrived from the peer (a frame, a ping, a pong).
    pub fn received(&mut self) {
        self.last_recv = Instant::now();
    }

    /// Waits for the next tick: `Ok` when it is time to ping, `Err(silence)` when the peer
    /// has been silent too long.
    pub async fn tick(&mut self) -> Result<(), Duration> {
        self.ticker.tick().await;
        let silence = self.last_recv.elapsed();
        if silence > self.interval * HEARTBEAT_MISSES {
            Err(silence)
        } else {
            Ok(())
        }
    }
}

/// Sleeps until `deadline`, or forever when there is none (for `select!` arms).
pub async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

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
                    if sink.send(Message::Close(Some(frame))).await.is_err() {
                        // The peer closed first: tungstenite refuses a second close frame,
                        // and has queued its answer echoing the peer's code (RFC 6455
                        // §5.5.1). Flushing it completes the closing handshake; returning
                        // without it drops the socket under the peer.
                        let _ = sink.flush().await;
                    }
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
/// arrived during [`HEARTBEAT_MISSES`] consecutive intervals is dead.
///
/// Silence is counted in ticks, not read off the clock: a tick is a moment this side was
/// running and able to read. When this side itself stalls (CPU starvation, a paused VM, a
/// blocked runtime) the whole stall counts as one interval, and whatever the peer sent
/// meanwhile waits in the socket and is read before the next tick, so a live peer is never
/// condemned for our own stall however the tick and the backlog are ordered.
pub struct Heartbeat {
    ticker: tokio::time::Interval,
    /// Something arrived since the previous tick.
    heard: bool,
    /// Consecutive intervals in which nothing arrived.
    silent_intervals: u32,
    last_recv: Instant,
}

impl Heartbeat {
    pub fn new(interval: Duration) -> Heartbeat {
        let interval = interval.max(Duration::from_millis(1));
        let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
        // A late tick schedules the next one a full interval later: intervals never shrink.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Heartbeat {
            ticker,
            heard: false,
            silent_intervals: 0,
            last_recv: Instant::now(),
        }
    }

    /// Anything arrived from the peer (a frame, a ping, a pong).
    pub fn received(&mut self) {
        self.heard = true;
        self.last_recv = Instant::now();
    }

    /// Waits for the next tick: `Ok` when it is time to ping, `Err(silence)` (the time
    /// since the peer was last heard) when the peer has been silent too long.
    pub async fn tick(&mut self) -> Result<(), Duration> {
        self.ticker.tick().await;
        if std::mem::take(&mut self.heard) {
            self.silent_intervals = 0;
        } else {
            self.silent_intervals += 1;
        }
        if self.silent_intervals >= HEARTBEAT_MISSES {
            Err(self.last_recv.elapsed())
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

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_millis(100);

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_is_dead_after_three_intervals() {
        let mut hb = Heartbeat::new(INTERVAL);
        let start = Instant::now();
        assert_eq!(hb.tick().await, Ok(()));
        assert_eq!(hb.tick().await, Ok(()));
        let silence = hb.tick().await.expect_err("third silent interval");
        assert_eq!(start.elapsed(), INTERVAL * 3);
        assert_eq!(silence, INTERVAL * 3);
    }

    #[tokio::test(start_paused = true)]
    async fn anything_heard_in_an_interval_keeps_the_peer_alive() {
        let mut hb = Heartbeat::new(INTERVAL);
        for _ in 0..10 {
            assert_eq!(hb.tick().await, Ok(()));
            assert_eq!(hb.tick().await, Ok(()));
            hb.received();
        }
    }

    /// Regression: this side stalls far past the deadline while the peer keeps pinging; on
    /// resuming, the late tick may run before the pings waiting in the socket are read. That
    /// tick used to compare the clock with the last message and declare the peer dead.
    #[tokio::test(start_paused = true)]
    async fn our_own_stall_does_not_condemn_the_peer() {
        let mut hb = Heartbeat::new(INTERVAL);
        hb.received();
        assert_eq!(hb.tick().await, Ok(()));
        // Stalled: no tick and no read for ten intervals.
        tokio::time::advance(INTERVAL * 10).await;
        assert_eq!(hb.tick().await, Ok(()), "the late tick, before the backlog");
        hb.received(); // the pings the peer sent meanwhile
        assert_eq!(hb.tick().await, Ok(()));
        // A peer that really goes silent is still found out, three intervals on.
        assert_eq!(hb.tick().await, Ok(()));
        assert_eq!(hb.tick().await, Ok(()));
        assert!(hb.tick().await.is_err());
    }
}

//! The WebSocket side of a connection, shared by the worker engine and the gateway: the
//! settings both use, and the writer task that owns a socket's write half.

use std::collections::{HashMap, VecDeque};
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
use crate::frame;
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

/// Owns a socket's write half. Feeds while there are frames and flushes when none are left,
/// so a burst of frames costs one flush (tungstenite's `send` flushes every message).
///
/// The order is fair (PROTOCOL.md §5): everything that is not DATA (heads, RESET, WINDOW,
/// control frames, pings) goes first, in the order queued; DATA goes round-robin by stream,
/// one frame per stream per turn, so a small answer never waits behind another stream's
/// megabytes. Frames of one stream keep their order; a RESET drops its stream's DATA still
/// queued (the peer would ignore it), except RESET `no_error`, which ends a complete
/// response and so goes after that DATA. A close goes after everything queued before it.
pub async fn write_loop<S>(
    mut sink: SplitSink<S, Message>,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
) where
    S: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    let mut queue = FairQueue::default();
    let mut closing = None;
    loop {
        if queue.is_empty() {
            if closing.is_some() {
                break;
            }
            match rx.recv().await {
                Some(out) => closing = queue.push(out),
                None => {
                    let _ = sink.close().await;
                    return;
                }
            }
        }
        let mut yielded = false;
        loop {
            while closing.is_none() {
                match rx.try_recv() {
                    Ok(out) => closing = queue.push(out),
                    Err(_) => break,
                }
            }
            if queue.is_empty() && closing.is_none() && !yielded {
                // Let the tasks that are ready run once before the flush: under load they
                // queue more frames, and one write carries them all.
                yielded = true;
                tokio::task::yield_now().await;
                continue;
            }
            let Some(msg) = queue.pop() else { break };
            if let Err(e) = sink.feed(msg).await {
                debug!(error = %e, "write failed");
                return;
            }
        }
        if let Err(e) = sink.flush().await {
            debug!(error = %e, "flush failed");
            return;
        }
    }
    if let Some((code, reason)) = closing {
        let frame = CloseFrame {
            code: WsCloseCode::from(code as u16),
            reason: truncate_reason(&reason).into(),
        };
        if sink.send(Message::Close(Some(frame))).await.is_err() {
            // The peer closed first: tungstenite refuses a second close frame, and has
            // queued its answer echoing the peer's code (RFC 6455 §5.5.1). Flushing it
            // completes the closing handshake; returning without it drops the socket under
            // the peer.
            let _ = sink.flush().await;
        }
    }
}

/// The writer's queue: frames that are not DATA in arrival order, and DATA per stream,
/// taken round-robin. Queues of streams that emptied are kept for reuse.
#[derive(Default)]
struct FairQueue {
    urgent: VecDeque<Message>,
    data: HashMap<u32, VecDeque<Bytes>>,
    /// Streams with queued DATA, in turn order.
    turns: VecDeque<u32>,
    spare: Vec<VecDeque<Bytes>>,
}

impl FairQueue {
    fn is_empty(&self) -> bool {
        self.urgent.is_empty() && self.turns.is_empty()
    }

    /// Queues one message; a close is handed back for after everything queued.
    fn push(&mut self, out: Outgoing) -> Option<(CloseCode, String)> {
        match out {
            Outgoing::Frame(b) => match frame_kind(&b) {
                Some((frame::kind::DATA, id)) => {
                    let spare = &mut self.spare;
                    let q = self.data.entry(id).or_insert_with(|| {
                        self.turns.push_back(id);
                        spare.pop().unwrap_or_default()
                    });
                    q.push_back(b);
                }
                Some((frame::kind::RESET, id)) => match self.data.get_mut(&id) {
                    // `no_error` follows a complete response (§4.3): after its DATA, in order.
                    Some(q) if b.get(6..10) == Some(&[0, 0, 0, 0][..]) => q.push_back(b),
                    _ => {
                        if let Some(mut q) = self.data.remove(&id) {
                            self.turns.retain(|&t| t != id);
                            q.clear();
                            self.spare.push(q);
                        }
                        self.urgent.push_back(Message::Binary(b));
                    }
                },
                _ => self.urgent.push_back(Message::Binary(b)),
            },
            Outgoing::Ping => self.urgent.push_back(Message::Ping(Bytes::new())),
            Outgoing::Close(code, reason) => return Some((code, reason)),
        }
        None
    }

    /// The next message to write: a non-DATA frame, else the next stream's next DATA.
    fn pop(&mut self) -> Option<Message> {
        if let Some(m) = self.urgent.pop_front() {
            return Some(m);
        }
        let id = self.turns.pop_front()?;
        let q = self
            .data
            .get_mut(&id)
            .expect("a stream with a turn has DATA queued");
        let b = q.pop_front().expect("queues in turn are not empty");
        if q.is_empty() {
            if let Some(q) = self.data.remove(&id) {
                self.spare.push(q);
            }
        } else {
            self.turns.push_back(id);
        }
        Some(Message::Binary(b))
    }
}

/// The type and stream id of an encoded frame, read off its 6-byte header.
fn frame_kind(b: &[u8]) -> Option<(u8, u32)> {
    (b.len() >= frame::HEADER_LEN).then(|| (b[0], u32::from_be_bytes([b[2], b[3], b[4], b[5]])))
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
    use crate::frame::{Data, Reset, Response};
    use futures_util::StreamExt;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll};

    /// A socket that records what is written and never has anything to read.
    #[derive(Clone, Default)]
    struct MemSocket {
        written: Arc<Mutex<Vec<Message>>>,
        flushes: Arc<Mutex<usize>>,
    }

    impl Sink<Message> for MemSocket {
        type Error = tungstenite::Error;
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn start_send(self: Pin<&mut Self>, m: Message) -> Result<(), Self::Error> {
            self.written.lock().unwrap().push(m);
            Ok(())
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            *self.flushes.lock().unwrap() += 1;
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
    }

    impl futures_util::Stream for MemSocket {
        type Item = Result<Message, tungstenite::Error>;
        fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Poll::Pending
        }
    }

    fn data(id: u32, len: usize, end: bool) -> Outgoing {
        Outgoing::Frame(Data::encode_parts(id, end, &vec![id as u8; len]))
    }

    /// Runs the writer over what `queue` puts in its channel before it starts, and returns
    /// the (type, stream id) of every frame written, and a close code if one was.
    async fn written_after(
        queue: impl FnOnce(&mpsc::UnboundedSender<Outgoing>),
    ) -> (Vec<(u8, u32)>, usize) {
        let socket = MemSocket::default();
        let (sink, _stream) = socket.clone().split();
        let (tx, rx) = mpsc::unbounded_channel();
        queue(&tx);
        drop(tx);
        write_loop(sink, rx).await;
        let written = socket.written.lock().unwrap();
        let frames = written
            .iter()
            .filter_map(|m| match m {
                Message::Binary(b) => frame_kind(b),
                Message::Close(_) => Some((0xff, 0)),
                _ => None,
            })
            .collect();
        let flushes = *socket.flushes.lock().unwrap();
        (frames, flushes)
    }

    #[tokio::test]
    async fn a_small_answer_is_not_written_behind_another_streams_megabytes() {
        let (frames, flushes) = written_after(|tx| {
            // Stream 1: 1 MiB of DATA queued first.
            for i in 0..16 {
                tx.send(data(1, 64 * 1024, i == 15)).unwrap();
            }
            // Stream 3: its head and a small body, queued after.
            let head = Response {
                stream_id: 3,
                end_stream: false,
                status: 200,
                headers: vec![],
            };
            tx.send(Outgoing::Frame(head.encode())).unwrap();
            tx.send(data(3, 10, true)).unwrap();
        })
        .await;
        assert_eq!(frames.len(), 18);
        assert_eq!(frames[0], (frame::kind::RESPONSE, 3), "the head goes first");
        let small = frames
            .iter()
            .position(|&f| f == (frame::kind::DATA, 3))
            .unwrap();
        assert!(
            small <= 2,
            "stream 3's DATA waited behind {small} frames: {frames:?}"
        );
        assert_eq!(
            frames
                .iter()
                .filter(|&&f| f == (frame::kind::DATA, 1))
                .count(),
            16
        );
        assert_eq!(flushes, 1, "one burst, one flush");
    }

    #[tokio::test]
    async fn data_takes_turns_one_frame_per_stream_and_keeps_each_streams_order() {
        let socket = MemSocket::default();
        let (sink, _stream) = socket.clone().split();
        let (tx, rx) = mpsc::unbounded_channel();
        for (i, len) in [1usize, 2, 3].into_iter().enumerate() {
            tx.send(Outgoing::Frame(Data::encode_parts(
                5,
                false,
                &vec![i as u8; len],
            )))
            .unwrap();
        }
        tx.send(data(7, 1, false)).unwrap();
        tx.send(data(7, 1, true)).unwrap();
        drop(tx);
        write_loop(sink, rx).await;
        let written = socket.written.lock().unwrap();
        let order: Vec<(u32, usize)> = written
            .iter()
            .map(|m| match m {
                Message::Binary(b) => (frame_kind(b).unwrap().1, b.len() - frame::HEADER_LEN),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(order, vec![(5, 1), (7, 1), (5, 2), (7, 1), (5, 3)]);
    }

    #[tokio::test]
    async fn a_reset_no_error_goes_after_its_streams_data() {
        let (frames, _) = written_after(|tx| {
            tx.send(data(13, 100, false)).unwrap();
            tx.send(data(13, 100, true)).unwrap();
            tx.send(Outgoing::Frame(
                Reset::new(13, crate::error::ResetCode::NoError, "").encode(),
            ))
            .unwrap();
        })
        .await;
        let (d, r) = (frame::kind::DATA, frame::kind::RESET);
        assert_eq!(frames, vec![(d, 13), (d, 13), (r, 13)]);
    }

    #[tokio::test]
    async fn a_reset_drops_its_streams_queued_data_and_a_close_goes_last() {
        let (frames, _) = written_after(|tx| {
            for _ in 0..3 {
                tx.send(data(9, 100, false)).unwrap();
            }
            tx.send(data(11, 100, false)).unwrap();
            tx.send(Outgoing::Frame(
                Reset::new(9, crate::error::ResetCode::Cancel, "gone").encode(),
            ))
            .unwrap();
            tx.send(data(11, 100, true)).unwrap();
            tx.send(Outgoing::Close(CloseCode::Normal, "bye".into()))
                .unwrap();
            tx.send(data(11, 100, true)).unwrap(); // after the close: never written
        })
        .await;
        assert_eq!(
            frames,
            vec![
                (frame::kind::RESET, 9),
                (frame::kind::DATA, 11),
                (frame::kind::DATA, 11),
                (0xff, 0),
            ]
        );
    }

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

//! The WebSocket side of a connection, shared by the worker engine and the gateway: the
//! settings both use, the outgoing queue every sender of a connection fills, and the writer
//! task that owns the socket's write half and empties it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::SplitSink;
use futures_util::{Sink, SinkExt};
use tokio::sync::Notify;
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

/// A connection's frames not yet written: filled by every task that sends on the connection,
/// emptied by its writer task ([`write_loop`]). Shared rather than a channel, so that what
/// is queued can still be dropped while the socket is blocked: a RESET removes its stream's
/// DATA (and, if the stream's REQUEST is still here, the REQUEST and the RESET both: the
/// peer never hears of the stream), and pings are not stacked up. What stays queued is
/// therefore bounded by the live streams, and REQUEST heads and DATA together by the limit of
/// [`OutQueue::try_push_request`] and [`OutQueue::try_push_data`].
pub struct OutQueue {
    state: Mutex<QueueState>,
    /// Wakes the writer.
    queued: Notify,
    /// Wakes senders waiting for room for a REQUEST or DATA (and for a stream of theirs
    /// ending).
    room: Notify,
    data_limit: AtomicUsize,
}

#[derive(Default)]
struct QueueState {
    fair: FairQueue,
    /// Queued by [`Outgoing::Close`]: written once everything before it is.
    closing: Option<(CloseCode, String)>,
    /// A close was queued or [`OutQueue::finish`] called: nothing more is taken.
    sealed: bool,
    /// The writer is gone: nothing is kept.
    ended: bool,
}

impl OutQueue {
    /// A queue whose REQUEST heads and DATA, when pushed with [`OutQueue::try_push_request`]
    /// and [`OutQueue::try_push_data`], never pass `data_limit` bytes together (a single
    /// frame larger than the limit is let in when neither is queued).
    pub fn new(data_limit: usize) -> Arc<OutQueue> {
        Arc::new(OutQueue {
            state: Mutex::new(QueueState::default()),
            queued: Notify::new(),
            room: Notify::new(),
            data_limit: AtomicUsize::new(data_limit),
        })
    }

    /// Queues a message, whatever its size. After a close (or once the writer is gone) it
    /// is dropped.
    pub fn push(&self, out: Outgoing) {
        let mut st = self.state.lock().unwrap();
        if st.sealed || st.ended {
            return;
        }
        let freed = match out {
            Outgoing::Close(code, reason) => {
                st.closing = Some((code, reason));
                st.sealed = true;
                false
            }
            other => st.fair.push(other),
        };
        drop(st);
        self.queued.notify_one();
        if freed {
            self.room.notify_waiters();
        }
    }

    /// Queues a DATA frame if the heads and DATA queued stay within the limit; else hands
    /// it back, and the sender waits for [`OutQueue::room_changed`] (backpressure instead of
    /// memory).
    pub fn try_push_data(&self, frame: Bytes) -> Result<(), Bytes> {
        self.try_push_bounded(frame)
    }

    /// Queues a REQUEST frame under the same bound as [`OutQueue::try_push_data`]: a peer
    /// that stops reading holds the requests for it back, heads included (PROTOCOL.md §5).
    pub fn try_push_request(&self, frame: Bytes) -> Result<(), Bytes> {
        self.try_push_bounded(frame)
    }

    fn try_push_bounded(&self, frame: Bytes) -> Result<(), Bytes> {
        let st = self.state.lock().unwrap();
        let queued = st.fair.data_bytes + st.fair.request_bytes;
        let limit = self.data_limit();
        if queued > 0 && queued + frame.len() > limit && !st.sealed && !st.ended {
            return Err(frame);
        }
        drop(st);
        self.push(Outgoing::Frame(frame));
        Ok(())
    }

    /// Completes when a REQUEST or DATA left the queue (or a stream's sender was told to look again, see
    /// [`OutQueue::wake_senders`]). Create it before the check it follows, as with
    /// [`Notify::notified`].
    pub fn room_changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.room.notified()
    }

    /// Wakes every sender waiting for room, so that one whose stream ended stops waiting.
    pub fn wake_senders(&self) {
        self.room.notify_waiters();
    }

    /// Bytes queued and not yet handed to the socket (frames, not counting pings).
    pub fn queued_bytes(&self) -> usize {
        let st = self.state.lock().unwrap();
        st.fair.data_bytes + st.fair.other_bytes
    }

    /// The most REQUEST and DATA bytes [`OutQueue::try_push_request`] and
    /// [`OutQueue::try_push_data`] let in.
    pub fn data_limit(&self) -> usize {
        self.data_limit.load(Ordering::Relaxed)
    }

    /// Changes the limit (the gateway knows it only once HELLO has named the concurrency).
    pub fn set_data_limit(&self, limit: usize) {
        self.data_limit.store(limit, Ordering::Relaxed);
        self.room.notify_waiters();
    }

    /// No more frames: the writer writes what is queued, closes the socket without a close
    /// frame, and returns.
    pub fn finish(&self) {
        self.state.lock().unwrap().sealed = true;
        self.queued.notify_one();
    }

    fn next(&self) -> Next {
        let mut st = self.state.lock().unwrap();
        if let Some((m, bounded)) = st.fair.pop() {
            drop(st);
            if bounded {
                self.room.notify_waiters();
            }
            return Next::Message(m);
        }
        match st.closing.take() {
            Some((code, reason)) => Next::Close(code, reason),
            None if st.sealed => Next::Finish,
            None => Next::Empty,
        }
    }

    /// The writer is gone (returned or aborted): drop what is queued and take nothing more.
    fn end(&self) {
        let mut st = self.state.lock().unwrap();
        st.ended = true;
        st.fair = FairQueue::default();
        st.closing = None;
        drop(st);
        self.room.notify_waiters();
    }
}

enum Next {
    Message(Message),
    Close(CloseCode, String),
    Finish,
    Empty,
}

/// Ends the queue when the writer returns or its task is aborted.
struct EndOnDrop(Arc<OutQueue>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// Owns a socket's write half and writes what `queue` holds. Feeds while there are frames
/// and flushes when none are left, so a burst of frames costs one flush (tungstenite's
/// `send` flushes every message).
///
/// The order is fair (PROTOCOL.md §5): everything that is not DATA (heads, RESET, WINDOW,
/// control frames, pings) goes first, in the order queued; DATA goes round-robin by stream,
/// one frame per stream per turn, so a small answer never waits behind another stream's
/// megabytes. Frames of one stream keep their order; a RESET drops its stream's DATA still
/// queued (the peer would ignore it), except RESET `no_error`, which ends a complete
/// response, and `handler_error`, which ends the body a handler wrote before it failed:
/// they go after that DATA. A close goes after everything queued before it.
pub fn write_loop<S>(
    sink: SplitSink<S, Message>,
    queue: Arc<OutQueue>,
) -> impl std::future::Future<Output = ()>
where
    S: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    // Made before the first poll: a writer aborted before it ever ran ends the queue too.
    let end = EndOnDrop(queue.clone());
    async move {
        let _end = end;
        write_queue(sink, queue).await
    }
}

async fn write_queue<S>(mut sink: SplitSink<S, Message>, queue: Arc<OutQueue>)
where
    S: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    loop {
        // Wait for something to write.
        let first = loop {
            let notified = queue.queued.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match queue.next() {
                Next::Empty => notified.await,
                next => break next,
            }
        };
        let mut next = first;
        let mut yielded = false;
        loop {
            match next {
                Next::Message(msg) => {
                    if let Err(e) = sink.feed(msg).await {
                        debug!(error = %e, "write failed");
                        return;
                    }
                }
                Next::Empty if !yielded => {
                    // Let the tasks that are ready run once before the flush: under load
                    // they queue more frames, and one write carries them all.
                    yielded = true;
                    tokio::task::yield_now().await;
                }
                Next::Empty => break,
                Next::Finish => {
                    let _ = sink.flush().await;
                    let _ = sink.close().await;
                    return;
                }
                Next::Close(code, reason) => {
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
            }
            next = queue.next();
        }
        if let Err(e) = sink.flush().await {
            debug!(error = %e, "flush failed");
            return;
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
    /// Streams whose REQUEST is in `urgent`, not yet written.
    requests: HashSet<u32>,
    ping_queued: bool,
    data_bytes: usize,
    /// Of `other_bytes`, the REQUEST frames: they count in the bound with the DATA.
    request_bytes: usize,
    other_bytes: usize,
}

impl FairQueue {
    /// Queues one message; `true` when DATA was dropped (room was freed).
    fn push(&mut self, out: Outgoing) -> bool {
        match out {
            Outgoing::Frame(b) => match frame_kind(&b) {
                Some((frame::kind::DATA, id)) => {
                    let spare = &mut self.spare;
                    let q = self.data.entry(id).or_insert_with(|| {
                        self.turns.push_back(id);
                        spare.pop().unwrap_or_default()
                    });
                    self.data_bytes += b.len();
                    q.push_back(b);
                }
                Some((frame::kind::RESET, id)) => match self.data.get_mut(&id) {
                    // `no_error` follows a complete response (§4.3), `handler_error` the
                    // body a handler wrote before it failed, which the client gets before
                    // the abort (as from gunicorn): after their DATA, in order.
                    Some(q) if matches!(b.get(6..10), Some([0, 0, 0, 0] | [0, 0, 0, 2])) => {
                        self.data_bytes += b.len();
                        q.push_back(b);
                    }
                    _ => {
                        let freed = self.drop_data(id);
                        if self.requests.remove(&id) {
                            // The peer never saw the stream: neither REQUEST nor RESET goes.
                            let at = self.urgent.iter().position(|m| {
                                matches!(m, Message::Binary(r) if frame_kind(r) == Some((frame::kind::REQUEST, id)))
                            });
                            if let Some(m) = at.and_then(|i| self.urgent.remove(i)) {
                                self.other_bytes -= message_len(&m);
                                self.request_bytes -= message_len(&m);
                            }
                            return true;
                        }
                        self.other_bytes += b.len();
                        self.urgent.push_back(Message::Binary(b));
                        return freed;
                    }
                },
                Some((frame::kind::REQUEST, id)) => {
                    self.requests.insert(id);
                    self.request_bytes += b.len();
                    self.other_bytes += b.len();
                    self.urgent.push_back(Message::Binary(b));
                }
                _ => {
                    self.other_bytes += b.len();
                    self.urgent.push_back(Message::Binary(b));
                }
            },
            // One ping waiting is enough: a peer that does not read gets no pile of them.
            Outgoing::Ping if self.ping_queued => {}
            Outgoing::Ping => {
                self.ping_queued = true;
                self.urgent.push_back(Message::Ping(Bytes::new()));
            }
            Outgoing::Close(..) => unreachable!("the queue keeps a close apart"),
        }
        false
    }

    /// Drops the DATA queued for stream `id`; whether there was any.
    fn drop_data(&mut self, id: u32) -> bool {
        let Some(mut q) = self.data.remove(&id) else {
            return false;
        };
        self.turns.retain(|&t| t != id);
        self.data_bytes -= q.iter().map(Bytes::len).sum::<usize>();
        q.clear();
        self.spare.push(q);
        true
    }

    /// The next message to write, and whether it counted in the bound (a REQUEST or DATA):
    /// a non-DATA frame, else the next stream's next DATA.
    fn pop(&mut self) -> Option<(Message, bool)> {
        if let Some(m) = self.urgent.pop_front() {
            let mut request = false;
            match &m {
                Message::Ping(_) => self.ping_queued = false,
                Message::Binary(b) => {
                    if let Some((frame::kind::REQUEST, id)) = frame_kind(b) {
                        self.requests.remove(&id);
                        self.request_bytes -= b.len();
                        request = true;
                    }
                }
                _ => {}
            }
            self.other_bytes -= message_len(&m);
            return Some((m, request));
        }
        let id = self.turns.pop_front()?;
        let q = self
            .data
            .get_mut(&id)
            .expect("a stream with a turn has DATA queued");
        let b = q.pop_front().expect("queues in turn are not empty");
        self.data_bytes -= b.len();
        if q.is_empty() {
            if let Some(q) = self.data.remove(&id) {
                self.spare.push(q);
            }
        } else {
            self.turns.push_back(id);
        }
        Some((Message::Binary(b), true))
    }
}

/// The bytes a queued message counts for (pings count nothing).
fn message_len(m: &Message) -> usize {
    match m {
        Message::Binary(b) => b.len(),
        _ => 0,
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
    async fn written_after(queue: impl FnOnce(&OutQueue)) -> (Vec<(u8, u32)>, usize) {
        let socket = MemSocket::default();
        let (sink, _stream) = socket.clone().split();
        let tx = OutQueue::new(usize::MAX);
        queue(&tx);
        tx.finish();
        write_loop(sink, tx).await;
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
                tx.push(data(1, 64 * 1024, i == 15));
            }
            // Stream 3: its head and a small body, queued after.
            let head = Response {
                stream_id: 3,
                end_stream: false,
                status: 200,
                headers: vec![],
            };
            tx.push(Outgoing::Frame(head.encode()));
            tx.push(data(3, 10, true));
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
        let tx = OutQueue::new(usize::MAX);
        for (i, len) in [1usize, 2, 3].into_iter().enumerate() {
            tx.push(Outgoing::Frame(Data::encode_parts(
                5,
                false,
                &vec![i as u8; len],
            )));
        }
        tx.push(data(7, 1, false));
        tx.push(data(7, 1, true));
        tx.finish();
        write_loop(sink, tx).await;
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
            tx.push(data(13, 100, false));
            tx.push(data(13, 100, true));
            tx.push(Outgoing::Frame(
                Reset::new(13, crate::error::ResetCode::NoError, "").encode(),
            ));
        })
        .await;
        let (d, r) = (frame::kind::DATA, frame::kind::RESET);
        assert_eq!(frames, vec![(d, 13), (d, 13), (r, 13)]);
    }

    #[tokio::test]
    async fn a_reset_handler_error_goes_after_the_data_its_handler_wrote() {
        let (frames, _) = written_after(|tx| {
            tx.push(data(15, 100, false));
            tx.push(data(15, 100, false));
            tx.push(Outgoing::Frame(
                Reset::new(15, crate::error::ResetCode::HandlerError, "raised").encode(),
            ));
        })
        .await;
        let (d, r) = (frame::kind::DATA, frame::kind::RESET);
        assert_eq!(frames, vec![(d, 15), (d, 15), (r, 15)]);
    }

    #[tokio::test]
    async fn a_reset_drops_its_streams_queued_data_and_a_close_goes_last() {
        let (frames, _) = written_after(|tx| {
            for _ in 0..3 {
                tx.push(data(9, 100, false));
            }
            tx.push(data(11, 100, false));
            tx.push(Outgoing::Frame(
                Reset::new(9, crate::error::ResetCode::Cancel, "gone").encode(),
            ));
            tx.push(data(11, 100, true));
            tx.push(Outgoing::Close(CloseCode::Normal, "bye".into()));
            tx.push(data(11, 100, true)); // after the close: never written
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

    fn request(id: u32) -> Outgoing {
        let mut w = crate::frame::RequestWriter::new(id, false, 0, b"POST", b"/up", 64);
        w.begin_headers();
        Outgoing::Frame(w.finish().unwrap().freeze())
    }

    fn request_len() -> usize {
        match request(2) {
            Outgoing::Frame(b) => b.len(),
            _ => unreachable!(),
        }
    }

    fn reset(id: u32) -> Outgoing {
        Outgoing::Frame(Reset::new(id, crate::error::ResetCode::Timeout, "late").encode())
    }

    #[tokio::test]
    async fn a_stream_reset_before_its_request_was_written_never_reaches_the_socket() {
        let (frames, _) = written_after(|tx| {
            tx.push(request(1));
            tx.push(data(1, 100, false));
            tx.push(request(2));
            tx.push(data(2, 100, false));
            tx.push(reset(1));
            assert_eq!(
                tx.queued_bytes(),
                request_len() + 100 + frame::HEADER_LEN,
                "stream 1 is gone from the queue"
            );
        })
        .await;
        let (q, d) = (frame::kind::REQUEST, frame::kind::DATA);
        assert_eq!(frames, vec![(q, 2), (d, 2)]);
    }

    #[tokio::test]
    async fn pings_do_not_pile_up() {
        let socket = MemSocket::default();
        let (sink, _stream) = socket.clone().split();
        let tx = OutQueue::new(usize::MAX);
        for _ in 0..100 {
            tx.push(Outgoing::Ping);
        }
        tx.finish();
        write_loop(sink, tx).await;
        let pings = socket.written.lock().unwrap().len();
        assert_eq!(pings, 1);
    }

    /// A socket whose writes never complete: a peer that stopped reading.
    struct Blocked;

    impl Sink<Message> for Blocked {
        type Error = tungstenite::Error;
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }
        fn start_send(self: Pin<&mut Self>, _: Message) -> Result<(), Self::Error> {
            unreachable!("never ready")
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }
    }

    impl futures_util::Stream for Blocked {
        type Item = Result<Message, tungstenite::Error>;
        fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn data_is_held_to_the_limit_and_dropped_with_its_stream_while_the_socket_is_blocked() {
        let (sink, _stream) = Blocked.split();
        let limit = 4 * (1024 + frame::HEADER_LEN);
        let tx = OutQueue::new(limit);
        let writer = tokio::spawn(write_loop(sink, tx.clone()));
        tx.push(request(1));
        let chunk = |id| Data::encode_parts(id, false, &[0; 1024]);
        // Over the limit: handed back, so the sender waits instead of the queue growing.
        let mut taken = 0;
        while tx.try_push_data(chunk(1)).is_ok() {
            taken += 1;
            assert!(taken <= 4, "DATA past the limit was taken");
        }
        assert!(tx.queued_bytes() <= limit + 64 + frame::HEADER_LEN);
        // The stream dies while the socket is still blocked: its DATA goes, and a sender
        // waiting for room is woken.
        let room = tx.room_changed();
        tokio::pin!(room);
        room.as_mut().enable();
        tx.push(reset(1));
        tokio::time::timeout(Duration::from_secs(5), room)
            .await
            .expect("a waiting sender is woken");
        assert!(tx.try_push_data(chunk(3)).is_ok());
        // Aborting the writer (how a dead connection is dropped) empties the queue for good.
        writer.abort();
        let _ = writer.await;
        assert_eq!(tx.queued_bytes(), 0);
        tx.push(request(5));
        assert_eq!(
            tx.queued_bytes(),
            0,
            "nothing is kept once the writer is gone"
        );
    }

    #[tokio::test]
    async fn request_heads_count_in_the_bound_with_the_data() {
        let (sink, _stream) = Blocked.split();
        let limit = 3 * request_len();
        let tx = OutQueue::new(limit);
        let writer = tokio::spawn(write_loop(sink, tx.clone()));
        let head = |id| match request(id) {
            Outgoing::Frame(b) => b,
            _ => unreachable!(),
        };
        for id in 1..=3 {
            assert!(tx.try_push_request(head(id)).is_ok(), "head {id} fits");
        }
        // The socket is blocked: the next head, and DATA, wait for room.
        assert!(tx.try_push_request(head(4)).is_err());
        assert!(tx
            .try_push_data(Data::encode_parts(1, false, &[0; 16]))
            .is_err());
        assert_eq!(tx.queued_bytes(), limit);
        // A stream reset before its head was written frees the head's room.
        let room = tx.room_changed();
        tokio::pin!(room);
        room.as_mut().enable();
        tx.push(reset(2));
        tokio::time::timeout(Duration::from_secs(5), room)
            .await
            .expect("a waiting sender is woken");
        assert!(tx.try_push_request(head(4)).is_ok());
        writer.abort();
        let _ = writer.await;
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

//! The send queue: a connection's frames not yet written, in the writer's fair order.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

use super::Outgoing;
use crate::error::CloseCode;
use crate::frame;

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
    pub(super) queued: Notify,
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
        if self.push_unwoken(out) {
            self.wake_writer();
        }
    }

    /// [`OutQueue::push`] without waking the writer: `true` when the message was queued,
    /// and the caller then wakes it ([`OutQueue::wake_writer`]), once for many messages.
    pub fn push_unwoken(&self, out: Outgoing) -> bool {
        let mut st = self.state.lock().unwrap();
        if st.sealed || st.ended {
            return false;
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
        if freed {
            self.room.notify_waiters();
        }
        true
    }

    /// Wakes the writer to write what is queued.
    pub fn wake_writer(&self) {
        self.queued.notify_one();
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

    pub(super) fn next(&self) -> Next {
        let mut st = self.state.lock().unwrap();
        if let Some((next, bounded)) = st.fair.pop() {
            drop(st);
            if bounded {
                self.room.notify_waiters();
            }
            return next;
        }
        match st.closing.take() {
            Some((code, reason)) => Next::Close(code, reason),
            None if st.sealed => Next::Finish,
            None => Next::Empty,
        }
    }

    /// The writer is gone (returned or aborted): drop what is queued and take nothing more.
    pub(super) fn end(&self) {
        let mut st = self.state.lock().unwrap();
        st.ended = true;
        st.fair = FairQueue::default();
        st.closing = None;
        drop(st);
        self.room.notify_waiters();
    }
}

pub(super) enum Next {
    Message(Message),
    /// A DATA frame as header and payload ([`Outgoing::Data`]).
    Data([u8; frame::HEADER_LEN], Bytes),
    Close(CloseCode, String),
    Finish,
    Empty,
}

/// The writer's queue: frames that are not DATA in arrival order, and DATA per stream,
/// taken round-robin. Queues of streams that emptied are kept for reuse.
#[derive(Default)]
struct FairQueue {
    urgent: VecDeque<Message>,
    data: HashMap<u32, VecDeque<StreamFrame>>,
    /// Streams with queued DATA, in turn order.
    turns: VecDeque<u32>,
    spare: Vec<VecDeque<StreamFrame>>,
    /// Streams whose REQUEST is in `urgent`, not yet written.
    requests: HashSet<u32>,
    ping_queued: bool,
    data_bytes: usize,
    /// Of `other_bytes`, the REQUEST frames: they count in the bound with the DATA.
    request_bytes: usize,
    other_bytes: usize,
}

/// A frame queued behind its stream's DATA: DATA itself, or what ends a body.
enum StreamFrame {
    Encoded(Bytes),
    Data([u8; frame::HEADER_LEN], Bytes),
}

impl StreamFrame {
    fn len(&self) -> usize {
        match self {
            StreamFrame::Encoded(b) => b.len(),
            StreamFrame::Data(_, payload) => frame::HEADER_LEN + payload.len(),
        }
    }
}

impl FairQueue {
    /// Queues `f` behind stream `id`'s DATA.
    fn push_stream(&mut self, id: u32, f: StreamFrame) {
        let spare = &mut self.spare;
        let q = self.data.entry(id).or_insert_with(|| {
            self.turns.push_back(id);
            spare.pop().unwrap_or_default()
        });
        self.data_bytes += f.len();
        q.push_back(f);
    }

    /// Queues one message; `true` when DATA was dropped (room was freed).
    fn push(&mut self, out: Outgoing) -> bool {
        match out {
            Outgoing::Data { head, payload } => {
                let id = u32::from_be_bytes([head[2], head[3], head[4], head[5]]);
                self.push_stream(id, StreamFrame::Data(head, payload));
            }
            Outgoing::Frame(b) => match frame_kind(&b) {
                // TRAILERS ends a body: it keeps its place behind the stream's DATA.
                Some((frame::kind::DATA | frame::kind::TRAILERS, id)) => {
                    self.push_stream(id, StreamFrame::Encoded(b));
                }
                Some((frame::kind::RESET, id)) => match self.data.get_mut(&id) {
                    // `no_error` follows a complete response (§4.3), `handler_error` the
                    // body a handler wrote before it failed, which the client gets before
                    // the abort (as from gunicorn): after their DATA, in order.
                    Some(q) if matches!(b.get(6..10), Some([0, 0, 0, 0] | [0, 0, 0, 2])) => {
                        self.data_bytes += b.len();
                        q.push_back(StreamFrame::Encoded(b));
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
        self.data_bytes -= q.iter().map(StreamFrame::len).sum::<usize>();
        q.clear();
        self.spare.push(q);
        true
    }

    /// The next message to write, and whether it counted in the bound (a REQUEST or DATA):
    /// a non-DATA frame, else the next stream's next DATA.
    fn pop(&mut self) -> Option<(Next, bool)> {
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
            return Some((Next::Message(m), request));
        }
        let id = self.turns.pop_front()?;
        let q = self
            .data
            .get_mut(&id)
            .expect("a stream with a turn has DATA queued");
        let f = q.pop_front().expect("queues in turn are not empty");
        self.data_bytes -= f.len();
        if q.is_empty() {
            if let Some(q) = self.data.remove(&id) {
                self.spare.push(q);
            }
        } else {
            self.turns.push_back(id);
        }
        Some((
            match f {
                StreamFrame::Encoded(b) => Next::Message(Message::Binary(b)),
                StreamFrame::Data(head, payload) => Next::Data(head, payload),
            },
            true,
        ))
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
pub(super) fn frame_kind(b: &[u8]) -> Option<(u8, u32)> {
    (b.len() >= frame::HEADER_LEN).then(|| (b[0], u32::from_be_bytes([b[2], b[3], b[4], b[5]])))
}

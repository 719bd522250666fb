//! A worker's response body on its way to the client, through a bounded buffer in the
//! gateway (issue 17, item 3).
//!
//! Why: a worker's slot is held until its response is complete, and a worker can send only
//! what its window allows. If credit followed the client's reading alone, a client that
//! never reads (an HTTP/1 socket it does not drain, an HTTP/2 stream window of 0) would
//! hold the slot for ever. So a pump task takes the worker's DATA as it comes and grants it
//! more credit as it arrives (and one window ahead, with the head, when its
//! `content-length` is known), up to `limits.response_buffer` per response (and
//! `limits.response_buffer_total` gateway-wide): a response that fits is complete at the
//! worker, and its slot free, whatever the client does. Beyond that, credit follows the
//! client's reading, and a client that takes nothing for `timeouts.send` while the gateway
//! holds bytes for it has its response aborted, the worker's stream RESET `cancel` and the
//! buffer dropped (nginx's `send_timeout`). The pump does not depend on hyper polling the
//! body, which it stops doing when the client's socket or stream window is full.
//!
//! At any moment one of two clocks runs: while nothing is held for the client, the worker's
//! (`timeouts.body_idle`: the client waits for DATA); while something is held, the client's
//! (`timeouts.send`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::Frame;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit};
use tokio::time::Instant;
use tracing::{debug, warn};
use vyx_core::error::ResetCode;
use vyx_core::flow::window_update_due;
use vyx_core::frame::Window;
use vyx_core::transport::Outgoing;

use crate::body::{BodyError, StreamGuard};
use crate::conn::{Failure, ResponseTrailers, WorkerConn};
use crate::Shared;

/// The limits one response is held to.
#[derive(Debug, Clone, Copy)]
pub struct ResponseRules {
    /// `timeouts.body_idle`: how long the worker may leave a waiting client without DATA.
    pub idle: Duration,
    /// `timeouts.send`: how long the client may take nothing while the gateway holds bytes
    /// for it.
    pub send: Duration,
    /// `limits.response_buffer`: the most bytes of one response the gateway holds or has
    /// granted the worker credit for (never less than the stream window).
    pub buffer: u64,
}

/// What the body and its pump share.
struct State {
    chunks: VecDeque<Bytes>,
    /// Bytes in `chunks`.
    held: u64,
    /// How the body ends, once `chunks` is empty.
    end: Option<Result<(), BodyError>>,
    /// The worker's trailer fields, given to hyper after the last chunk (§3.10).
    trailers: Option<HeaderMap>,
    waker: Option<Waker>,
    /// Since when nothing is held (the worker's clock), or the client last took something
    /// while more is held (the client's clock); the other is `None`.
    empty_since: Option<Instant>,
    stall_since: Option<Instant>,
    /// hyper dropped the body: the client is gone or the response was abandoned.
    gone: bool,
    /// Run when the client's response is aborted for `timeouts.send` (see [`OnAbort`]).
    on_abort: Option<OnAbort>,
}

/// What the connection does when one of its responses is aborted for `timeouts.send`:
/// hyper no longer polls a body its client's socket or stream window cannot take, so the
/// abort has to reach the connection from outside (HTTP/1: it is reset; HTTP/2: the stream
/// stops counting as active, so a connection left with nothing else is closed when idle).
pub type OnAbort = Box<dyn FnOnce() + Send>;

struct Flow {
    state: Mutex<State>,
    /// Wakes the pump when its clock may have changed or the body is gone.
    pump: Notify,
    credit: Credit,
}

/// The worker's credit on the stream, granted from two places: the pump (as DATA arrives,
/// up to the buffer) and the body (as the client takes it).
struct Credit {
    /// The stream's receive window, which the reader spends as DATA arrives.
    window: Arc<AtomicI64>,
    /// `initial_window` plus every increment sent so far.
    granted: AtomicU64,
    /// The worker's `content-length`: credit beyond it is never used.
    expected: Option<u64>,
}

impl Credit {
    /// Grants up to `inc` more, never past `expected`; nothing when that leaves nothing.
    fn grant(&self, conn: &WorkerConn, stream: u32, inc: u32) {
        let cap = self.expected.unwrap_or(u64::MAX);
        let Ok(before) = self
            .granted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |g| {
                (g < cap).then(|| g + u64::from(inc).min(cap - g))
            })
        else {
            return;
        };
        let inc = u64::from(inc).min(cap - before) as u32;
        self.window.fetch_add(i64::from(inc), Ordering::AcqRel);
        conn.send(Outgoing::Frame(
            Window {
                stream_id: stream,
                increment: inc,
            }
            .encode(),
        ));
    }
}

/// A worker's response body as hyper pulls it: the chunks the pump has buffered. Grants
/// the worker credit again as the client takes them.
pub struct ResponseBody {
    flow: Arc<Flow>,
    conn: Arc<WorkerConn>,
    stream: u32,
    initial_window: u32,
    unacked: u32,
    expected: Option<u64>,
    /// Bytes given to hyper.
    given: u64,
    done: bool,
    /// The last poll gave hyper a chunk (see `poll_frame` on a failed end).
    gave_data: bool,
}

/// The parts of an open stream a response body needs.
pub struct Source {
    pub rx: mpsc::UnboundedReceiver<Result<Bytes, Failure>>,
    pub credit: Arc<AtomicI64>,
    pub initial_window: u32,
    pub guard: StreamGuard,
    /// The worker's `content-length`, when it sent one (§3.5).
    pub expected: Option<u64>,
    pub trailers: ResponseTrailers,
    /// How long the worker may leave a waiting client without DATA: `timeouts.body_idle`,
    /// or `timeouts.upgrade_idle` for a duplex request's response (see `duplex`).
    pub idle: Duration,
}

impl ResponseBody {
    /// Starts the pump, under the gateway's `timeouts` and `limits` (`shared`).
    pub fn start(src: Source, shared: Arc<Shared>) -> ResponseBody {
        let flow = Arc::new(Flow {
            state: Mutex::new(State {
                chunks: VecDeque::new(),
                held: 0,
                end: None,
                trailers: None,
                waker: None,
                empty_since: Some(Instant::now()),
                stall_since: None,
                gone: false,
                on_abort: None,
            }),
            pump: Notify::new(),
            credit: Credit {
                window: src.credit.clone(),
                granted: AtomicU64::new(u64::from(src.initial_window)),
                expected: src.expected,
            },
        });
        let body = ResponseBody {
            flow: flow.clone(),
            conn: src.guard.conn.clone(),
            stream: src.guard.id,
            initial_window: src.initial_window,
            unacked: 0,
            expected: src.expected,
            given: 0,
            done: false,
            gave_data: false,
        };
        tokio::spawn(pump(flow, src, shared));
        body
    }

    pub fn expected(&self) -> Option<u64> {
        self.expected
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// `hook` runs if the response is aborted for `timeouts.send`.
    pub fn on_abort(&self, hook: OnAbort) {
        self.flow.state.lock().unwrap().on_abort = Some(hook);
    }

    /// The next DATA chunk, then the trailers if the worker sent any, then the end.
    pub fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let mut s = self.flow.state.lock().unwrap();
        if let Some(b) = s.chunks.pop_front() {
            s.held -= b.len() as u64;
            let now = Instant::now();
            let emptied = s.held == 0;
            if emptied {
                s.stall_since = None;
                s.empty_since = Some(now);
            } else {
                s.stall_since = Some(now);
            }
            drop(s);
            if emptied {
                // The worker's clock starts now: the pump may be sleeping on the client's.
                self.flow.pump.notify_one();
            }
            self.given += b.len() as u64;
            self.grant(b.len() as u32);
            self.gave_data = true;
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        if s.end.as_ref().is_some_and(|e| e.is_err()) && std::mem::take(&mut self.gave_data) {
            // HTTP/1: hyper buffers the chunk it was just given and flushes it only after a
            // poll that is pending; a failure now would drop the worker's last bytes with the
            // connection (a WSGI generator that raised after `part2` lost `part2`, which
            // gunicorn delivers). One pending poll first, woken at once.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if s.end.as_ref().is_some_and(Result::is_ok) {
            if let Some(t) = s.trailers.take() {
                return Poll::Ready(Some(Ok(Frame::trailers(t))));
            }
        }
        if let Some(end) = s.end.take() {
            self.done = true;
            return Poll::Ready(end.err().map(Err));
        }
        self.gave_data = false;
        if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// hyper has taken all of the worker's `content-length`. HTTP/1 drops the body then,
    /// without waiting for the worker's END_STREAM: the client has its whole response and
    /// has not gone away, so the stream is left to end as the worker ends it (or at
    /// `timeouts.body_idle`) rather than RESET `cancel`. Else the request body's pump stops
    /// at the RESET, the unread rest of the body makes hyper close the connection, and the
    /// next request on it (pipelined or kept alive) is lost in the lingering close.
    fn is_whole(&self) -> bool {
        self.expected == Some(self.given)
    }

    /// Gives the worker back the credit the client's taking has freed.
    fn grant(&mut self, n: u32) {
        self.unacked += n;
        if window_update_due(self.unacked, self.initial_window) {
            let inc = std::mem::take(&mut self.unacked);
            self.flow.credit.grant(&self.conn, self.stream, inc);
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if self.is_whole() {
            return;
        }
        let mut s = self.flow.state.lock().unwrap();
        s.gone = true;
        s.chunks.clear();
        s.held = 0;
        drop(s);
        self.flow.pump.notify_one();
    }
}

/// `timeouts.send` for the bytes the gateway has handed to the kernel: `TCP_USER_TIMEOUT`
/// makes it reset a connection whose data stays unacknowledged this long, a peer that keeps
/// a zero window included (it answers the probes, so TCP alone would wait for ever). The
/// pump's clock covers what the gateway still holds; this covers the tail of a response
/// already written to the socket, which would otherwise keep its socket buffers and the
/// connection for as long as the client pleases.
pub fn set_user_timeout(stream: &tokio::net::TcpStream, timeout: Duration) {
    let ms = libc::c_uint::try_from(timeout.as_millis()).unwrap_or(libc::c_uint::MAX);
    // SAFETY: a valid socket descriptor and a c_uint option value of the right size.
    unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(stream),
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            (&ms as *const libc::c_uint).cast(),
            std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
        );
    }
}

/// The whole body, when the worker has already ended it (its DATA and END_STREAM arrived
/// with or right behind the head, the usual case for a small response) and it matches its
/// `content-length`: then no pump is needed. Otherwise `rx` is left as it was, for the pump.
pub fn already_complete(
    rx: &mut mpsc::UnboundedReceiver<Result<Bytes, Failure>>,
    expected: Option<u64>,
    trailers: &ResponseTrailers,
) -> Option<Option<Bytes>> {
    // Closed: the reader dropped the sender at END_STREAM (or TRAILERS, which it set
    // first), so every chunk is queued. Trailers are the pump's to deliver.
    if !rx.is_closed() || trailers.get().is_some() {
        return None;
    }
    // The usual case, one chunk or none, takes no list (this runs for every small response).
    let first = rx.try_recv().ok();
    let second = first.as_ref().and_then(|_| rx.try_recv().ok());
    if second.is_none() {
        let whole = match &first {
            None => expected.is_none_or(|n| n == 0),
            Some(Ok(one)) => expected.is_none_or(|n| n == one.len() as u64),
            Some(Err(_)) => false,
        };
        if whole {
            return Some(first.and_then(Result::ok));
        }
    }
    let mut items: Vec<_> = first.into_iter().chain(second).collect();
    while let Ok(item) = rx.try_recv() {
        items.push(item);
    }
    let total: u64 = items
        .iter()
        .map(|i| i.as_ref().map_or(0, |b| b.len() as u64))
        .sum();
    if items.iter().all(Result::is_ok) && expected.is_none_or(|n| n == total) {
        let mut all = bytes::BytesMut::with_capacity(total as usize);
        items
            .iter()
            .flatten()
            .for_each(|c| all.extend_from_slice(c));
        return Some(Some(all.freeze()));
    }
    // A failure or a length the pump must report: hand it the same sequence.
    let (tx, again) = mpsc::unbounded_channel();
    for item in items {
        let _ = tx.send(item);
    }
    *rx = again;
    None
}

/// Ends the body with `why`, after what is already buffered (`keep`) or at once.
fn finish(flow: &Flow, end: Result<(), BodyError>, keep: bool) {
    let mut s = flow.state.lock().unwrap();
    if !keep {
        s.chunks.clear();
        s.held = 0;
    }
    s.end = Some(end);
    let waker = s.waker.take();
    drop(s);
    if let Some(w) = waker {
        w.wake();
    }
}

fn protocol_end(why: String) -> Result<(), BodyError> {
    Err(BodyError(Failure::Protocol(why)))
}

/// Takes the worker's DATA into the buffer, grants credit as it arrives (within the
/// bounds), and runs the two clocks. Ends when the body has all of the response and the
/// client has taken it, or on a failure, a timeout or the body's drop. Dropping the guard on
/// the way out RESETs (`cancel`) a stream still open.
async fn pump(flow: Arc<Flow>, src: Source, shared: Arc<Shared>) {
    let rules = ResponseRules {
        idle: src.idle,
        send: shared.config.send_timeout,
        buffer: shared.config.response_buffer,
    };
    let budget = &shared.response_budget;
    let Source {
        mut rx,
        credit: _,
        initial_window,
        guard,
        expected,
        trailers,
        idle: _,
    } = src;
    // Credit the pump may grant beyond the stream window: the rest of the buffer, or less
    // when the body's length says it needs less.
    let extra_cap = rules
        .buffer
        .min(expected.unwrap_or(u64::MAX))
        .saturating_sub(u64::from(initial_window));
    // Credit granted beyond the stream window, held against the gateway-wide budget.
    let mut extra: u64 = 0;
    let mut permit: Option<OwnedSemaphorePermit> = None;
    let mut unsent: u32 = 0;
    // A body of known length gets one more window now, with its head: granted only as its
    // DATA arrived, a worker spent its window before the first WINDOW went out and waited a
    // round trip. One window, not the whole buffer: a worker builds its DATA frames as soon
    // as it has credit, so credit far ahead of the gateway's reading is memory held in the
    // worker's queue, cold by the time it is written (at 50 concurrent 1 MiB responses the
    // whole buffer up front cost the worker more CPU per response than it saved). A body of
    // unknown length is granted as it arrives, so that a short or slow one (an event
    // stream) does not take the budget ahead of its bytes.
    let ahead = extra_cap.min(u64::from(initial_window));
    if expected.is_some() && ahead > 0 {
        if let Ok(p) = budget.clone().try_acquire_many_owned(ahead as u32) {
            permit = Some(p);
            extra = ahead;
            flow.credit.grant(&guard.conn, guard.id, ahead as u32);
        }
    }
    let mut received: u64 = 0;
    let mut worker_done = false;
    // One timer for the pump's life, moved only when its deadline does.
    let sleep = tokio::time::sleep_until(Instant::now() + rules.idle);
    tokio::pin!(sleep);
    loop {
        let deadline = {
            let s = flow.state.lock().unwrap();
            if s.gone {
                return;
            }
            if worker_done && s.held == 0 {
                return; // the client has taken everything: the body ends on its own
            }
            match (s.empty_since, s.stall_since) {
                (Some(t), _) if !worker_done => t + rules.idle,
                (_, Some(t)) => t + rules.send,
                _ => Instant::now() + rules.send,
            }
        };
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        tokio::select! {
            msg = rx.recv(), if !worker_done => match msg {
                Some(Ok(b)) => {
                    let n = b.len();
                    received += n as u64;
                    if let Some(max) = expected.filter(|&m| received > m) {
                        let why = format!("response DATA beyond its content-length of {max}");
                        warn!(worker_id = %guard.conn.worker_id, stream = guard.id, reason = %why, "response aborted");
                        guard.conn.cancel_stream(guard.id, ResetCode::ProtocolError, &why);
                        // Dropped at once: nothing more runs a clock on what is held.
                        finish(&flow, protocol_end(why), false);
                        return;
                    }
                    {
                        let mut s = flow.state.lock().unwrap();
                        s.chunks.push_back(b);
                        s.held += n as u64;
                        if s.empty_since.take().is_some() {
                            s.stall_since = Some(Instant::now());
                        }
                        if let Some(w) = s.waker.take() {
                            drop(s);
                            w.wake();
                        }
                    }
                    // More credit as it arrives, while the buffer and the budget allow.
                    let want = (n as u64).min(extra_cap - extra) as u32;
                    if want > 0 {
                        if let Ok(p) = budget.clone().try_acquire_many_owned(want) {
                            match &mut permit {
                                Some(all) => all.merge(p),
                                None => permit = Some(p),
                            }
                            extra += u64::from(want);
                            unsent += want;
                            if window_update_due(unsent, initial_window) || extra == extra_cap {
                                flow.credit.grant(&guard.conn, guard.id, std::mem::take(&mut unsent));
                            }
                        }
                    }
                }
                Some(Err(f)) => {
                    finish(&flow, Err(BodyError(f)), true);
                    worker_done = true;
                }
                None => {
                    worker_done = true;
                    if let Some(max) = expected.filter(|&m| received < m) {
                        let why = format!("response ended after {received} of its content-length of {max} bytes");
                        warn!(worker_id = %guard.conn.worker_id, stream = guard.id, reason = %why, "response aborted");
                        finish(&flow, protocol_end(why), true);
                    } else {
                        flow.state.lock().unwrap().trailers =
                            trailers.get().map(crate::forward::trailer_fields);
                        finish(&flow, Ok(()), true);
                    }
                }
            },
            _ = &mut sleep => {
                let now = Instant::now();
                let (empty_since, stall_since) = {
                    let s = flow.state.lock().unwrap();
                    (s.empty_since, s.stall_since)
                };
                if !worker_done && empty_since.is_some_and(|t| now >= t + rules.idle) {
                    let why = format!("no response DATA for {:?} (timeouts.body_idle)", rules.idle);
                    warn!(worker_id = %guard.conn.worker_id, stream = guard.id, reason = %why, "response aborted");
                    guard.conn.cancel_stream(guard.id, ResetCode::Timeout, &why);
                    finish(&flow, protocol_end(why), false);
                    return;
                }
                if stall_since.is_some_and(|t| now >= t + rules.send) {
                    let why = format!("the client took nothing for {:?} (timeouts.send)", rules.send);
                    debug!(worker_id = %guard.conn.worker_id, stream = guard.id, reason = %why, "response aborted");
                    shared.metrics.client_error("send_timeout");
                    guard.conn.cancel_stream(guard.id, ResetCode::Cancel, &why);
                    finish(&flow, Err(BodyError(Failure::ConnectionLost(why))), false);
                    let hook = flow.state.lock().unwrap().on_abort.take();
                    if let Some(hook) = hook {
                        hook();
                    }
                    return;
                }
            }
            _ = flow.pump.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(
        items: Vec<Result<Bytes, Failure>>,
        end: bool,
    ) -> mpsc::UnboundedReceiver<Result<Bytes, Failure>> {
        let (tx, rx) = mpsc::unbounded_channel();
        for i in items {
            tx.send(i).unwrap();
        }
        if !end {
            std::mem::forget(tx); // the worker's direction is still open
        }
        rx
    }

    fn drain(rx: &mut mpsc::UnboundedReceiver<Result<Bytes, Failure>>) -> Vec<String> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|i| match i {
                Ok(b) => String::from_utf8(b.to_vec()).unwrap(),
                Err(f) => format!("{f:?}"),
            })
            .collect()
    }

    #[test]
    fn an_ended_body_of_its_declared_length_is_taken_whole() {
        let chunks = || {
            vec![
                Ok(Bytes::from("ab")),
                Ok(Bytes::from("c")),
                Ok(Bytes::from("de")),
            ]
        };
        let mut rx = channel(chunks(), true);
        assert_eq!(
            already_complete(&mut rx, Some(5), &Default::default()),
            Some(Some(Bytes::from("abcde")))
        );
        let mut rx = channel(chunks(), true);
        assert_eq!(
            already_complete(&mut rx, None, &Default::default()),
            Some(Some(Bytes::from("abcde")))
        );
        let mut rx = channel(vec![], true);
        assert_eq!(
            already_complete(&mut rx, None, &Default::default()),
            Some(None)
        );
    }

    #[test]
    fn anything_else_is_left_to_the_pump_unchanged() {
        // Still open: nothing taken.
        let mut rx = channel(vec![Ok(Bytes::from("ab"))], false);
        assert_eq!(already_complete(&mut rx, None, &Default::default()), None);
        assert_eq!(drain(&mut rx), ["ab"]);
        // Shorter or longer than its content-length, or a failure: the same sequence, ended.
        let lost = || Err(Failure::ConnectionLost("x".into()));
        for (items, expected, seen) in [
            (vec![Ok(Bytes::from("ab"))], Some(3), vec!["ab".to_string()]),
            (
                vec![Ok(Bytes::from("abcd"))],
                Some(3),
                vec!["abcd".to_string()],
            ),
            (
                vec![Ok(Bytes::from("ab")), lost()],
                None,
                vec![
                    "ab".to_string(),
                    format!("{:?}", Failure::ConnectionLost("x".into())),
                ],
            ),
        ] {
            let mut rx = channel(items, true);
            assert_eq!(
                already_complete(&mut rx, expected, &Default::default()),
                None
            );
            assert_eq!(drain(&mut rx), seen);
            assert!(rx.is_closed());
        }
    }
}

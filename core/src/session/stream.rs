//! One stream on the worker side, as a host sees it: the request head as plain data, and a
//! [`Stream`] handle through which the host reads the request body and answers.
//!
//! Every call takes `&self`, and only the two readiness waits ([`Stream::writable`],
//! [`Stream::readable`]) are async, so that a binding drives a stream from its own event
//! loop: it writes until [`Stream::try_send`] says [`TrySend::Full`], and reads until
//! [`Stream::try_chunk`] says [`TryChunk::Pending`], and only then waits. The rules every
//! host must follow when it answers (spec/HOSTS.md, written in [`crate::host_rules`]) are
//! applied here, once.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::{Buf, Bytes};
use tokio::sync::Notify;
use tracing::{debug, warn};

use crate::error::ResetCode;
use crate::flow::{window_update_due, SendWindow};
use crate::frame::{Data, HeaderList, Reset, Window};
use crate::limits::{MAX_DATA_CHUNK, MAX_INFORMATIONAL};

use super::connection::{ConnShared, Outgoing};
use crate::host_rules::{
    self, encode_head, encode_head_with, encode_informational, encode_trailers, INTERNAL_ERROR,
    INTERNAL_ERROR_HEADERS,
};

/// Why a stream operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The gateway reset the stream (the client went away, a timeout, ...).
    #[error("stream reset by the gateway: {code} {reason}", code = .code.name())]
    Reset { code: ResetCode, reason: String },
    /// The connection to the gateway ended before the stream did.
    #[error("connection to the gateway lost")]
    ConnectionLost,
    /// The call does not fit the stream's state (a second head, a write after the end, ...).
    #[error("{0}")]
    InvalidState(&'static str),
    /// The host's status or headers cannot be carried; the core has answered 500 instead.
    #[error("invalid response head (answered 500 instead): {0}")]
    InvalidHead(String),
}

/// A request pulled from the engine: the head as plain data, and the handle to answer it.
pub struct IncomingRequest {
    /// Names this stream among all the engine's streams, across reconnects; the
    /// [`StreamReset`]s of later batches refer to it.
    pub slot: u64,
    /// The id the worker gave the matched route (the core answered unknown ids with 404).
    pub route_id: u16,
    pub method: Bytes,
    /// Path and query as the client sent them (not decoded).
    pub target: Bytes,
    /// Path parameters in pattern order: (name, decoded value).
    pub params: Vec<(Bytes, Bytes)>,
    pub headers: HeaderList,
    /// The client asked to switch protocols (flag UPGRADE, PROTOCOL.md §4.5; only on a
    /// connection whose WELCOME granted `upgrade`, which the host offered). A 101 from the
    /// host makes the stream a byte pipe: `try_chunk` reads the client's bytes, `try_send`
    /// writes to it, the end of either is a half-close (HOSTS.md §7a).
    pub upgrade: bool,
    /// The client sent a body, perhaps an empty one: REQUEST did not carry END_STREAM, and
    /// it is no upgrade. Fixed when REQUEST arrives, so a host asking after the body's last
    /// DATA came (an empty chunked body) still sees one, as node:http shows
    /// `transfer-encoding: chunked` for it.
    pub has_body: bool,
    /// Reads the request body and sends the response.
    pub stream: Stream,
}

impl IncomingRequest {
    /// The client's IP address as the gateway saw it (see [`host_rules::client_ip`]):
    /// `None` when the request carries no usable `x-forwarded-for`.
    pub fn client_ip(&self) -> Option<IpAddr> {
        host_rules::client_ip(self.header_pairs())
    }

    /// `"https"` or `"http"`: the scheme the client used (see [`host_rules::scheme`]).
    pub fn scheme(&self) -> &'static str {
        host_rules::scheme(self.header_pairs())
    }

    /// The client's HTTP version as `(major, minor)` (see [`host_rules::http_version`]):
    /// `(1, 1)` when the request carries no readable `via`.
    pub fn http_version(&self) -> (u8, u8) {
        host_rules::http_version(self.header_pairs())
    }

    fn header_pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.headers.iter().map(|(n, v)| (&n[..], &v[..]))
    }
}

impl std::fmt::Debug for IncomingRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingRequest")
            .field("slot", &self.slot)
            .field("route_id", &self.route_id)
            .field("method", &self.method)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// A stream that ended before its response did: the gateway reset it (the client went
/// away, a timeout) or the connection was lost. Reported once, in a batch, for streams
/// handed out in that batch or an earlier one; the host stops the handler (nobody will
/// receive its answer). Calls on the stream fail with `error` from then on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamReset {
    pub slot: u64,
    pub error: StreamError,
}

/// What [`Stream::try_send`] did with a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrySend {
    /// The window took all of it: write the next chunk at once.
    Accepted,
    /// The chunk was taken, but the window is full and its tail waits in the core for
    /// credit: await [`Stream::writable`] before the next write (Node's `write() ===
    /// false`). Nothing more is buffered, so memory stays bounded.
    Full,
}

/// What [`Stream::try_chunk`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TryChunk {
    /// The next chunk of the request body (never empty).
    Data(Bytes),
    /// Nothing yet: await [`Stream::readable`].
    Pending,
    /// The body has ended.
    End,
}

/// The handle of one stream: request body in, response out. Cheap to clone; every clone
/// drives the same stream and every method takes `&self`, so a binding can keep it behind
/// a plain object or an integer slot of its own.
///
/// When the last clone is dropped before the response ended, the core answers for the
/// host as [`Stream::fail`] does: 500 if no head was sent, RESET `handler_error` after.
/// A host therefore needs no finalizer: forgetting a request answers it.
pub struct Stream {
    shared: Arc<StreamShared>,
}

/// What the connection keeps of a stream, shared with its [`Stream`] handles.
pub(crate) struct StreamShared {
    pub(crate) id: u32,
    slot: u64,
    head_only: bool,
    /// REQUEST carried flag UPGRADE: a 101 may answer it (PROTOCOL.md §4.5).
    upgrade: bool,
    conn: Arc<ConnShared>,
    /// [`Stream`] clones alive.
    handles: AtomicUsize,
    /// Handed to the host in a batch (its resets are reported from then on).
    pub(crate) delivered: AtomicBool,
    pub(crate) send: SendWindow<StreamError>,
    out: Mutex<SendState>,
    writable: Notify,
    /// Receive credit left for the gateway's DATA on this stream.
    pub(crate) recv_credit: AtomicI64,
    recv: Mutex<RecvState>,
    readable: Notify,
    pub(crate) request_done: AtomicBool,
    pub(crate) response_done: AtomicBool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No head sent yet.
    Head,
    /// Head sent; the host writes the body.
    Body,
    /// The host has written everything; `pending` waits for credit, END_STREAM with it.
    Ending,
    Done,
}

struct SendState {
    phase: Phase,
    /// The tail of the last chunk, waiting for credit.
    pending: Bytes,
    /// The response carries no body (HEAD, 204, 304): body writes are discarded.
    discard: bool,
    /// The encoded TRAILERS that end the body instead of END_STREAM (§3.10).
    trailers: Option<Bytes>,
    /// The head was a 101: the stream is an upgraded connection, whose END_STREAM is a
    /// half-close (PROTOCOL.md §4.5), not the end of the exchange.
    switched: bool,
    /// INFORMATIONAL heads sent (§3.11), at most `MAX_INFORMATIONAL`.
    informational: u8,
}

struct RecvState {
    chunks: VecDeque<Bytes>,
    /// END_STREAM (or TRAILERS) arrived (after the chunks still queued).
    end: bool,
    /// The request's TRAILERS (§3.10).
    trailers: Option<HeaderList>,
    /// The body cannot be read any further.
    error: Option<StreamError>,
    /// Bytes consumed since the last WINDOW.
    unacked: u32,
    /// The request carries `expect: 100-continue` and the host has not asked for its body
    /// yet: the gateway waits for a WINDOW before it lets the client send (§5.1).
    continue_pending: bool,
}

/// A body chunk given to [`StreamShared::write`]: borrowed bytes are copied into frames, and
/// so is the tail the window cannot take yet; owned bytes are sent and kept as slices (the
/// writer copies them once, into the socket's buffer).
trait BodyChunk: AsRef<[u8]> {
    /// The DATA frame of stream `id` carrying `range` of the chunk.
    fn data(&self, id: u32, last: bool, range: std::ops::Range<usize>) -> Outgoing;
    /// The last `len` bytes, to wait for credit.
    fn tail(self, len: usize) -> Bytes;
}

impl BodyChunk for &[u8] {
    fn data(&self, id: u32, last: bool, range: std::ops::Range<usize>) -> Outgoing {
        Outgoing::Frame(Data::encode_parts(id, last, &self[range]))
    }
    fn tail(self, len: usize) -> Bytes {
        Bytes::copy_from_slice(&self[self.len() - len..])
    }
}

impl BodyChunk for Bytes {
    fn data(&self, id: u32, last: bool, range: std::ops::Range<usize>) -> Outgoing {
        let head = Data::header(id, last);
        Outgoing::Data {
            head,
            payload: self.slice(range),
        }
    }
    fn tail(self, len: usize) -> Bytes {
        self.slice(self.len() - len..)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl StreamShared {
    pub(crate) fn new(
        id: u32,
        slot: u64,
        head_only: bool,
        upgrade: bool,
        request_ended: bool,
        expect_continue: bool,
        conn: Arc<ConnShared>,
    ) -> StreamShared {
        let window = conn.initial_window;
        StreamShared {
            id,
            slot,
            head_only,
            upgrade,
            conn,
            handles: AtomicUsize::new(0),
            delivered: AtomicBool::new(false),
            send: SendWindow::new(window),
            out: Mutex::new(SendState {
                phase: Phase::Head,
                pending: Bytes::new(),
                discard: false,
                trailers: None,
                switched: false,
                informational: 0,
            }),
            writable: Notify::new(),
            recv_credit: AtomicI64::new(window as i64),
            recv: Mutex::new(RecvState {
                chunks: VecDeque::new(),
                end: request_ended,
                trailers: None,
                error: None,
                unacked: 0,
                continue_pending: expect_continue,
            }),
            readable: Notify::new(),
            request_done: AtomicBool::new(request_ended),
            response_done: AtomicBool::new(false),
        }
    }

    pub(crate) fn slot(&self) -> u64 {
        self.slot
    }

    /// A request-body chunk from the gateway (the reader checked the stream's credit).
    pub(crate) fn push_body(&self, data: Bytes, end: bool) {
        let mut r = lock(&self.recv);
        if r.error.is_some() {
            return; // the host is past reading; the response end resets the rest
        }
        if !data.is_empty() {
            r.chunks.push_back(data);
        }
        r.end |= end;
        drop(r);
        self.readable.notify_waiters();
    }

    /// The request's TRAILERS: its body ends with them (the reader checked the stream).
    pub(crate) fn push_trailers(&self, fields: HeaderList) {
        let mut r = lock(&self.recv);
        if r.error.is_none() {
            r.trailers = Some(fields);
            r.end = true;
        }
        drop(r);
        self.readable.notify_waiters();
    }

    /// The stream failed (reset either way, or the connection was lost): every current and
    /// later call on it fails with `err`.
    pub(crate) fn fail(&self, err: StreamError) {
        self.send.fail(err.clone());
        let mut r = lock(&self.recv);
        if r.error.is_none() && !r.end {
            r.error = Some(err);
        }
        drop(r);
        self.readable.notify_waiters();
        self.writable.notify_waiters();
    }

    /// Credit arrived: sends what waits for it. Called by the connection reader, never
    /// while it holds the stream table.
    pub(crate) fn flush(&self) {
        let mut out = lock(&self.out);
        if out.pending.is_empty() || !matches!(out.phase, Phase::Body | Phase::Ending) {
            return;
        }
        let mut pending = std::mem::take(&mut out.pending);
        let end = out.phase == Phase::Ending;
        match self.send_frames(&mut pending, end && out.trailers.is_none()) {
            Err(_) => {} // failed: the reader reports it
            Ok(()) if !pending.is_empty() => out.pending = pending,
            Ok(()) => {
                if end {
                    if let Some(t) = out.trailers.take() {
                        self.send_data(t, true);
                    }
                    self.finish(&mut out);
                }
                drop(out);
                self.writable.notify_waiters();
            }
        }
    }

    /// Sends DATA frames from `data` while the window has credit; what does not fit stays
    /// in `data`. `end` sets END_STREAM on the frame with the last byte.
    fn send_frames(&self, data: &mut Bytes, end: bool) -> Result<(), StreamError> {
        let left = self.send_chunk(&*data, end)?;
        data.advance(data.len() - left);
        Ok(())
    }

    /// Sends DATA frames from `data` while the window has credit; returns how many of its
    /// bytes (the last ones) did not fit.
    fn send_chunk(&self, data: &impl BodyChunk, end: bool) -> Result<usize, StreamError> {
        let len = data.as_ref().len();
        let mut at = 0;
        while at < len {
            let n = self.send.try_reserve((len - at).min(MAX_DATA_CHUNK))?;
            if n == 0 {
                break;
            }
            let last = end && at + n == len;
            self.send_out(data.data(self.id, last, at..at + n), last);
            at += n;
        }
        Ok(len - at)
    }

    /// [`StreamShared::send_out`] of an encoded frame.
    fn send_data(&self, frame: Bytes, last: bool) {
        self.send_out(Outgoing::Frame(frame), last);
    }

    /// Queues a frame of this stream; `last` says it ends the response. The stream then
    /// leaves the connection's table (its concurrency count) first, once its request side
    /// is done too: the gateway may open the next stream the moment it reads this frame and
    /// must not find the worker still at its cap (a host answering from another thread, as
    /// a binding does, can be descheduled between the two steps).
    fn send_out(&self, out: Outgoing, last: bool) {
        if last {
            self.conn.finish_response(self.id);
        }
        self.conn.send(out);
    }

    /// The whole response went out. On an upgraded connection that is the host's
    /// half-close: the client may go on sending until it half-closes too, or the host lets
    /// go of the stream ([`StreamShared::refuse_request`] on the last handle's drop).
    fn finish(&self, out: &mut SendState) {
        out.phase = Phase::Done;
        // (No handle left: the host let go while the tail waited for credit.)
        if !out.switched || self.handles.load(Ordering::Acquire) == 0 {
            self.refuse_request();
        }
        self.conn.finish_response(self.id);
    }

    /// Refuses the rest of a request body nobody will read: RESET `no_error` after the
    /// complete response (§4.3), unless the request side has ended.
    fn refuse_request(&self) {
        if !self.request_done.swap(true, Ordering::AcqRel) {
            // The response is complete but the gateway is still sending a body nobody needs.
            self.conn.send(Outgoing::Frame(
                Reset::new(self.id, ResetCode::NoError, "response complete").encode(),
            ));
            let mut r = lock(&self.recv);
            if !r.end && r.error.is_none() {
                r.error = Some(StreamError::InvalidState(
                    "response complete; the rest of the request body was not read",
                ));
            }
            drop(r);
            self.readable.notify_waiters();
        }
    }

    /// Resets the stream from this side.
    fn reset(&self, out: &mut SendState, code: ResetCode, reason: &str) {
        out.phase = Phase::Done;
        out.pending = Bytes::new();
        if self.send.failure().is_none() {
            self.conn
                .send(Outgoing::Frame(Reset::new(self.id, code, reason).encode()));
        }
        self.send.fail(StreamError::InvalidState("stream reset"));
        self.request_done.store(true, Ordering::Release);
        let mut r = lock(&self.recv);
        if !r.end && r.error.is_none() {
            r.error = Some(StreamError::InvalidState("stream reset"));
        }
        drop(r);
        self.readable.notify_waiters();
        self.writable.notify_waiters();
        self.conn.finish_response(self.id);
    }

    /// Validates and sends the head, applying the host rules; on an invalid head, answers
    /// 500 instead and says why. `body` is `Some` for a whole body (content-length).
    fn send_head<N: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        out: &mut SendState,
        status: u16,
        headers: &[(N, V)],
        body: Option<&[u8]>,
        end_stream: bool,
    ) -> Result<(), StreamError> {
        match out.phase {
            Phase::Head => {}
            _ => return Err(StreamError::InvalidState("response head already sent")),
        }
        if let Some(e) = self.send.failure() {
            out.phase = Phase::Done;
            return Err(e);
        }
        let no_body = self.head_only || status == 204 || status == 304;
        let end = end_stream || no_body || body.is_some_and(<[u8]>::is_empty);
        let announce = self.conn.trailers && body.is_none() && !end;
        let head =
            match encode_head_with(self.id, status, headers, body, end, announce, self.upgrade) {
                Ok(h) => h,
                Err(why) => {
                    warn!(stream = self.id, %why, "response head cannot be sent; answering 500");
                    self.send_internal_error(out);
                    return Err(StreamError::InvalidHead(why));
                }
            };
        self.send_data(head, end);
        out.discard = no_body;
        // encode_head_with lets a 101 through on an upgrade stream only.
        out.switched = status == 101;
        if end {
            self.finish(out);
        } else {
            out.phase = Phase::Body;
        }
        Ok(())
    }

    /// The failure answer before a head: 500 `internal error`.
    fn send_internal_error(&self, out: &mut SendState) {
        let end = self.head_only;
        let head = encode_head(
            self.id,
            500,
            INTERNAL_ERROR_HEADERS,
            Some(INTERNAL_ERROR),
            end,
            false,
        )
        .expect("the 500 head is valid");
        self.send_data(head, end);
        if end {
            self.finish(out);
            return;
        }
        out.phase = Phase::Body;
        let mut body = Bytes::from_static(INTERNAL_ERROR);
        let _ = self.send_frames(&mut body, true);
        if body.is_empty() {
            self.finish(out);
        } else {
            out.pending = body;
            out.phase = Phase::Ending;
        }
    }

    /// The body write behind [`Stream::try_send`] and [`Stream::respond`] (and their
    /// `_bytes` forms).
    fn write(
        &self,
        out: &mut SendState,
        data: impl BodyChunk,
        end: bool,
    ) -> Result<TrySend, StreamError> {
        match out.phase {
            Phase::Head => return Err(StreamError::InvalidState("response head not sent")),
            Phase::Done | Phase::Ending if out.discard => return Ok(TrySend::Accepted),
            Phase::Done | Phase::Ending => {
                return Err(StreamError::InvalidState("response already ended"))
            }
            Phase::Body => {}
        }
        if !out.pending.is_empty() {
            return Err(StreamError::InvalidState(
                "the previous chunk still waits for credit: await writable() first",
            ));
        }
        if data.as_ref().is_empty() {
            if end {
                if let Some(e) = self.send.failure() {
                    return Err(e);
                }
                let last = match out.trailers.take() {
                    Some(t) => t,
                    None => Data::encode_parts(self.id, true, &[]),
                };
                self.send_data(last, true);
                self.finish(out);
            }
            return Ok(TrySend::Accepted);
        }
        let left = self.send_chunk(&data, end && out.trailers.is_none())?;
        if left == 0 {
            if end {
                if let Some(t) = out.trailers.take() {
                    self.send_data(t, true);
                }
                self.finish(out);
            }
            return Ok(TrySend::Accepted);
        }
        out.pending = data.tail(left);
        if end {
            out.phase = Phase::Ending;
        }
        Ok(TrySend::Full)
    }

    /// The failure rule: 500 before the head, RESET `handler_error` after.
    fn fail_response(&self, out: &mut SendState, reason: &str) {
        match out.phase {
            Phase::Done => {}
            _ if self.send.failure().is_some() => {
                // Reset already, or the connection is gone: nothing to answer.
                out.phase = Phase::Done;
                out.pending = Bytes::new();
            }
            Phase::Head => {
                debug!(stream = self.id, reason, "request failed; answering 500");
                self.send_internal_error(out);
            }
            Phase::Body | Phase::Ending => {
                debug!(
                    stream = self.id,
                    reason, "response failed; resetting the stream"
                );
                self.reset(out, ResetCode::HandlerError, reason);
            }
        }
    }
}

impl Stream {
    pub(crate) fn new(shared: Arc<StreamShared>) -> Stream {
        shared.handles.fetch_add(1, Ordering::Relaxed);
        Stream { shared }
    }

    pub(crate) fn mark_delivered(&self) {
        self.shared.delivered.store(true, Ordering::Release);
    }

    /// Refuses a request nobody can pull any more (the engine is gone).
    pub(crate) fn reset_refused(&self) {
        let mut out = lock(&self.shared.out);
        self.shared
            .reset(&mut out, ResetCode::Refused, "worker is stopping");
    }

    /// The engine-wide slot of this stream (see [`IncomingRequest::slot`]).
    pub fn slot(&self) -> u64 {
        self.shared.slot
    }

    /// The stream id on its connection, for logs.
    pub fn stream_id(&self) -> u32 {
        self.shared.id
    }

    /// Answers with a whole response in one call, applying the host rules: header names
    /// lower-cased; hop-by-hop headers (`connection` and the names it lists, `keep-alive`,
    /// `transfer-encoding`, `upgrade`, `te`, `trailer`, `proxy-*`) dropped;
    /// `content-length` added unless given or the status is 204/304; no body for a `HEAD`
    /// request or a 204/304, and END_STREAM on the head when there is no body. The body is
    /// copied into frames at once; what the flow-control window cannot take yet waits in
    /// the core and follows as credit arrives, so this never blocks.
    ///
    /// An invalid head (status outside 200..=599, a header name that is not a token, a
    /// value with a forbidden byte, a head over the frame limit) is answered 500 by the
    /// core and reported as [`StreamError::InvalidHead`].
    pub fn respond<N: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        status: u16,
        headers: &[(N, V)],
        body: &[u8],
    ) -> Result<(), StreamError> {
        let s = &*self.shared;
        let mut out = lock(&s.out);
        s.send_head(&mut out, status, headers, Some(body), false)?;
        if out.phase == Phase::Body {
            s.write(&mut out, body, true)?;
        }
        Ok(())
    }

    /// [`Stream::respond`] with a body the caller owns: what the flow-control window cannot
    /// take yet waits as a slice of `body` instead of a copy (a 1 MiB body against a
    /// 256 KiB window copied 768 KiB once more).
    ///
    /// ```ignore
    /// stream.respond_bytes(200, &[("content-type", "text/plain")], Bytes::from_static(b"hi"))?;
    /// ```
    pub fn respond_bytes<N: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        status: u16,
        headers: &[(N, V)],
        body: Bytes,
    ) -> Result<(), StreamError> {
        let s = &*self.shared;
        let mut out = lock(&s.out);
        s.send_head(&mut out, status, headers, Some(&body[..]), false)?;
        if out.phase == Phase::Body {
            s.write(&mut out, body, true)?;
        }
        Ok(())
    }

    /// Sends the head of a streamed response (the rules of [`Stream::respond`], but no
    /// `content-length` is added). `end_stream` says the body is empty. Returns whether
    /// the body is wanted: `false` for `HEAD`, 204 and 304, whose head ended the stream
    /// (later writes are accepted and discarded), and when `end_stream` was given.
    pub fn send_head<N: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        status: u16,
        headers: &[(N, V)],
        end_stream: bool,
    ) -> Result<bool, StreamError> {
        let s = &*self.shared;
        let mut out = lock(&s.out);
        s.send_head(&mut out, status, headers, None, end_stream)?;
        Ok(out.phase == Phase::Body)
    }

    /// Writes body bytes without waiting (copied into frames at once). `end` ends the
    /// response after them. On [`TrySend::Full`] the tail of `data` waits in the core:
    /// await [`Stream::writable`] before writing again.
    pub fn try_send(&self, data: &[u8], end: bool) -> Result<TrySend, StreamError> {
        let s = &*self.shared;
        let mut out = lock(&s.out);
        s.write(&mut out, data, end)
    }

    /// [`Stream::try_send`] with a chunk the caller owns: on [`TrySend::Full`] its tail
    /// waits as a slice of `data`, not a copy.
    pub fn try_send_bytes(&self, data: Bytes, end: bool) -> Result<TrySend, StreamError> {
        let s = &*self.shared;
        let mut out = lock(&s.out);
        s.write(&mut out, data, end)
    }

    /// Resolves once the chunk [`Stream::try_send`] left waiting has gone out (at once
    /// when none waits), or with the error that stopped it.
    pub fn writable(&self) -> impl Future<Output = Result<(), StreamError>> + Send + '_ {
        let s = &*self.shared;
        async move {
            loop {
                let notified = s.writable.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if lock(&s.out).pending.is_empty() {
                    return Ok(());
                }
                if let Some(e) = s.send.failure() {
                    return Err(e);
                }
                notified.await;
            }
        }
    }

    /// Writes body bytes, waiting for credit as needed: [`Stream::try_send`] then
    /// [`Stream::writable`] when the window is full.
    pub async fn send(&self, data: &[u8], end: bool) -> Result<(), StreamError> {
        if self.try_send(data, end)? == TrySend::Full {
            self.writable().await?;
        }
        Ok(())
    }

    /// Ends the response body.
    pub fn end(&self) -> Result<TrySend, StreamError> {
        self.try_send(&[], true)
    }

    /// Whether trailers reach the gateway on this stream's connection: its WELCOME listed
    /// `trailers` (PROTOCOL.md §3.10). Without it, [`Stream::end_with_trailers`] drops them
    /// and a request's trailers never arrive, as an HTTP/1.1 peer without `TE: trailers`.
    pub fn trailers_negotiated(&self) -> bool {
        self.shared.conn.trailers
    }

    /// Ends the response body with trailer fields (TRAILERS, PROTOCOL.md §3.10), after
    /// `data`: as [`Stream::try_send`] with `end`, and the fields follow the last byte.
    /// Names are lower-cased and hop-by-hop names dropped; the gateway removes the fields
    /// RFC 9110 keeps out of trailers. Empty `fields`, a response without a body (HEAD,
    /// 204, 304) or a connection without `trailers` end the body plainly. Fields that cannot
    /// be sent (a bad name or value, more than `MAX_TRAILERS_SIZE` bytes) reset the stream
    /// `handler_error`, as a body that cannot be finished, and are reported as
    /// [`StreamError::InvalidHead`].
    ///
    /// ```ignore
    /// stream.send_head(200, &[("content-type", "application/grpc")], false)?;
    /// stream.end_with_trailers(&message, &[("grpc-status", "0")])?;
    /// ```
    pub fn end_with_trailers<N: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        data: &[u8],
        fields: &[(N, V)],
    ) -> Result<TrySend, StreamError> {
        let s = &*self.shared;
        let mut out = lock(&s.out);
        if out.phase == Phase::Body && !out.discard && s.conn.trailers && !fields.is_empty() {
            match encode_trailers(s.id, fields) {
                Ok(t) => out.trailers = Some(t),
                Err(why) => {
                    warn!(stream = s.id, %why, "trailers cannot be sent; resetting the stream");
                    s.reset(&mut out, ResetCode::HandlerError, &why);
                    return Err(StreamError::InvalidHead(why));
                }
            }
        }
        let sent = s.write(&mut out, data, true);
        if sent.is_err() {
            out.trailers = None;
        }
        sent
    }

    /// Whether WELCOME granted `informational` (PROTOCOL.md §3.11): interim responses sent
    /// with [`Stream::send_informational`] reach the gateway.
    pub fn informational_negotiated(&self) -> bool {
        self.shared.conn.informational
    }

    /// Sends an interim (1xx) response before the head (INFORMATIONAL, PROTOCOL.md §3.11):
    /// 103 Early Hints, or another 1xx but 101. Fields are checked and shaped as a head's.
    /// `Ok(true)` when it went out; `Ok(false)` when it was dropped, as an interim response
    /// may be: the connection did not negotiate `informational`, the stream has sent
    /// `MAX_INFORMATIONAL` already, or the stream has failed. After the head it is
    /// [`StreamError::InvalidState`]; a bad status or field is [`StreamError::InvalidHead`],
    /// and the stream goes on (nothing was sent).
    ///
    /// ```ignore
    /// stream.send_informational(103, &[("link", "</style.css>; rel=preload; as=style")])?;
    /// stream.respond(200, &[("content-type", "text/html")], page)?;
    /// ```
    pub fn send_informational<N: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        status: u16,
        fields: &[(N, V)],
    ) -> Result<bool, StreamError> {
        let s = &*self.shared;
        let mut out = lock(&s.out);
        if out.phase != Phase::Head {
            return Err(StreamError::InvalidState(
                "an interim response after the response head",
            ));
        }
        let frame = encode_informational(s.id, status, fields).map_err(StreamError::InvalidHead)?;
        if !s.conn.informational
            || usize::from(out.informational) >= MAX_INFORMATIONAL
            || s.send.failure().is_some()
        {
            return Ok(false);
        }
        out.informational += 1;
        s.conn.send(Outgoing::Frame(frame));
        Ok(true)
    }

    /// The request's trailer fields, once its body has ended with TRAILERS (§3.10); `None`
    /// before the end, and for a body that had none.
    pub fn trailers(&self) -> Option<HeaderList> {
        let r = lock(&self.shared.recv);
        r.chunks.is_empty().then(|| r.trailers.clone()).flatten()
    }

    /// The failure rule, for a handler that failed (threw, panicked, its body stream
    /// broke): 500 `internal error` when no head was sent yet, RESET `handler_error` with
    /// `reason` after. Nothing when the response already ended or the stream was reset.
    pub fn fail(&self, reason: &str) {
        let s = &*self.shared;
        let mut out = lock(&s.out);
        s.fail_response(&mut out, reason);
    }

    /// Whether the response has ended, was reset, or can no longer be sent.
    pub fn is_done(&self) -> bool {
        lock(&self.shared.out).phase == Phase::Done || self.shared.send.failure().is_some()
    }

    /// Takes the next request-body chunk without waiting. Reading grants the gateway
    /// credit to send more, so a host that does not read holds the upload where it is.
    pub fn try_chunk(&self) -> Result<TryChunk, StreamError> {
        let s = &*self.shared;
        let mut r = lock(&s.recv);
        if std::mem::take(&mut r.continue_pending) && !r.end && r.error.is_none() {
            // The first read of a body held behind `expect: 100-continue` asks the gateway
            // for it with a WINDOW of one byte, counted as credit like any other (§5.1).
            s.recv_credit.fetch_add(1, Ordering::AcqRel);
            s.conn.send(Outgoing::Frame(
                Window {
                    stream_id: s.id,
                    increment: 1,
                }
                .encode(),
            ));
        }
        if let Some(chunk) = r.chunks.pop_front() {
            // No WINDOW once END_STREAM has arrived (PROTOCOL.md §4.3): nothing more comes.
            if !r.end {
                r.unacked += chunk.len() as u32;
                if window_update_due(r.unacked, s.conn.initial_window) {
                    let increment = std::mem::take(&mut r.unacked);
                    s.recv_credit.fetch_add(increment as i64, Ordering::AcqRel);
                    s.conn.send(Outgoing::Frame(
                        Window {
                            stream_id: s.id,
                            increment,
                        }
                        .encode(),
                    ));
                }
            }
            return Ok(TryChunk::Data(chunk));
        }
        if r.end {
            return Ok(TryChunk::End);
        }
        match &r.error {
            Some(e) => Err(e.clone()),
            None => Ok(TryChunk::Pending),
        }
    }

    /// Resolves once [`Stream::try_chunk`] has something to say: a chunk, the end, or an
    /// error.
    pub fn readable(&self) -> impl Future<Output = ()> + Send + '_ {
        let s = &*self.shared;
        async move {
            loop {
                let notified = s.readable.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                {
                    let r = lock(&s.recv);
                    if !r.chunks.is_empty() || r.end || r.error.is_some() {
                        return;
                    }
                }
                notified.await;
            }
        }
    }

    /// The next request-body chunk, `Ok(None)` at the end: [`Stream::try_chunk`] and
    /// [`Stream::readable`] in a loop.
    pub async fn chunk(&self) -> Result<Option<Bytes>, StreamError> {
        loop {
            match self.try_chunk()? {
                TryChunk::Data(c) => return Ok(Some(c)),
                TryChunk::End => return Ok(None),
                TryChunk::Pending => self.readable().await,
            }
        }
    }

    /// Reads the whole request body into one buffer.
    pub async fn collect(&self) -> Result<Bytes, StreamError> {
        let Some(first) = self.chunk().await? else {
            return Ok(Bytes::new());
        };
        let Some(second) = self.chunk().await? else {
            return Ok(first);
        };
        let mut buf = Vec::with_capacity(first.len() + second.len());
        buf.extend_from_slice(&first);
        buf.extend_from_slice(&second);
        while let Some(c) = self.chunk().await? {
            buf.extend_from_slice(&c);
        }
        Ok(buf.into())
    }

    /// Whether the request body has been read to its end (or can be read no further).
    pub fn body_ended(&self) -> bool {
        let r = lock(&self.shared.recv);
        r.chunks.is_empty() && (r.end || r.error.is_some())
    }
}

impl Clone for Stream {
    fn clone(&self) -> Stream {
        Stream::new(self.shared.clone())
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if self.shared.handles.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let s = &*self.shared;
        let mut out = lock(&s.out);
        if out.phase != Phase::Done && out.phase != Phase::Ending && s.send.failure().is_none() {
            warn!(
                stream = s.id,
                "request dropped without a complete response; answering for the host"
            );
        }
        if out.phase == Phase::Done && out.switched {
            // The host let go of an upgraded connection it half-closed: the client's side
            // is refused, and the stream leaves the table.
            s.refuse_request();
            s.conn.finish_response(s.id);
            return;
        }
        if out.phase != Phase::Ending {
            s.fail_response(&mut out, "handler ended without a response");
        }
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("slot", &self.shared.slot)
            .field("stream_id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

/// Removes a stream from the connection's table once both directions are done.
pub(crate) fn finish_direction(streams: &mut HashMap<u32, Arc<StreamShared>>, id: u32) {
    if let Some(s) = streams.get(&id) {
        if s.request_done.load(Ordering::Acquire) && s.response_done.load(Ordering::Acquire) {
            streams.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owned_tail_waits_as_a_slice_and_a_borrowed_one_as_a_copy() {
        let body = Bytes::from((0..1000u32).map(|i| i as u8).collect::<Vec<_>>());
        let owned = body.clone().tail(300);
        assert_eq!(owned, body[700..]);
        assert_eq!(owned.as_ptr(), body[700..].as_ptr(), "no copy");
        let borrowed = (&body[..]).tail(300);
        assert_eq!(borrowed, body[700..]);
        assert_ne!(borrowed.as_ptr(), body[700..].as_ptr());
    }
}

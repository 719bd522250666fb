//! One stream on the worker side: the request a handler pulls, its body, and the sender for
//! its response, with per-stream flow control in both directions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::flow::{window_update_due, SendWindow};

use crate::error::ResetCode;
use crate::frame::{self, Data, HeaderList, Reset, Response, Window};
use crate::limits::MAX_DATA_CHUNK;

use super::connection::{ConnShared, Outgoing};

/// Why a stream operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The gateway reset the stream (the client went away, a timeout, ...).
    #[error("stream reset by the gateway: {code} {reason}", code = .code.name())]
    Reset { code: ResetCode, reason: String },
    /// The connection to the gateway ended before the stream did.
    #[error("connection to the gateway lost")]
    ConnectionLost,
    /// The response head was already sent, or the response already ended.
    #[error("{0}")]
    InvalidState(&'static str),
    /// A status or header that the protocol cannot carry.
    #[error("invalid response head: {0}")]
    InvalidHead(String),
}

/// A request body event, sent by the connection reader to the stream's [`RequestBody`].
#[derive(Debug)]
pub(crate) enum BodyEvent {
    Data(Bytes, bool),
    Reset(ResetCode, String),
}

/// What the connection keeps of a stream.
pub(crate) struct StreamEntry {
    pub(crate) shared: Arc<StreamShared>,
    /// `None` once the request body ended or was reset.
    pub(crate) body_tx: Option<mpsc::UnboundedSender<BodyEvent>>,
}

/// State shared by the connection reader, the [`RequestBody`] and the [`ResponseSender`].
pub(crate) struct StreamShared {
    pub(crate) id: u32,
    pub(crate) send: SendWindow<StreamError>,
    /// Receive credit left for the gateway's DATA on this stream.
    pub(crate) recv_credit: AtomicI64,
    pub(crate) request_done: AtomicBool,
    pub(crate) response_done: AtomicBool,
}

impl StreamShared {
    pub(crate) fn new(id: u32, initial_window: u32) -> StreamShared {
        StreamShared {
            id,
            send: SendWindow::new(initial_window),
            recv_credit: AtomicI64::new(initial_window as i64),
            request_done: AtomicBool::new(false),
            response_done: AtomicBool::new(false),
        }
    }
}

/// Removes a stream from the connection's table once both directions are done.
pub(crate) fn finish_direction(streams: &mut HashMap<u32, StreamEntry>, id: u32) {
    if let Some(e) = streams.get(&id) {
        if e.shared.request_done.load(Ordering::Acquire)
            && e.shared.response_done.load(Ordering::Acquire)
        {
            streams.remove(&id);
        }
    }
}

/// A request pulled from the engine. Plain data plus two handles, so that a binding can
/// hand the head to its language as values and keep the handles behind an opaque object.
pub struct IncomingRequest {
    /// The id the worker gave the matched route.
    pub route_id: u16,
    pub method: Bytes,
    /// Path and query as the client sent them (not decoded).
    pub target: Bytes,
    /// Path parameters in pattern order: (name, decoded value).
    pub params: Vec<(Bytes, Bytes)>,
    pub headers: HeaderList,
    pub body: RequestBody,
    pub response: ResponseSender,
}

impl std::fmt::Debug for IncomingRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingRequest")
            .field("stream_id", &self.body.shared.id)
            .field("route_id", &self.route_id)
            .field("method", &self.method)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// The request body as a stream of chunks. Reading a chunk grants the gateway credit to send
/// more, so a handler that does not read holds the upload where it is.
pub struct RequestBody {
    shared: Arc<StreamShared>,
    conn: Arc<ConnShared>,
    rx: mpsc::UnboundedReceiver<BodyEvent>,
    ended: bool,
    /// Bytes consumed since the last WINDOW.
    unacked: u32,
}

impl RequestBody {
    pub(crate) fn new(
        shared: Arc<StreamShared>,
        conn: Arc<ConnShared>,
        rx: mpsc::UnboundedReceiver<BodyEvent>,
        ended: bool,
    ) -> RequestBody {
        RequestBody {
            shared,
            conn,
            rx,
            ended,
            unacked: 0,
        }
    }

    /// The next chunk, `Ok(None)` at the end of the body.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, StreamError> {
        loop {
            if self.ended {
                return Ok(None);
            }
            match self.rx.recv().await {
                Some(BodyEvent::Data(data, end)) => {
                    if end {
                        self.ended = true;
                    } else {
                        self.credit(data.len());
                    }
                    if data.is_empty() {
                        continue;
                    }
                    return Ok(Some(data));
                }
                Some(BodyEvent::Reset(code, reason)) => {
                    self.ended = true;
                    return Err(StreamError::Reset { code, reason });
                }
                None => {
                    self.ended = true;
                    return Err(StreamError::ConnectionLost);
                }
            }
        }
    }

    /// Reads the whole body into one buffer.
    pub async fn collect(&mut self) -> Result<Bytes, StreamError> {
        let first = match self.chunk().await? {
            None => return Ok(Bytes::new()),
            Some(c) => c,
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

    /// Whether the body has ended (or failed) as far as this reader knows.
    pub fn is_end(&self) -> bool {
        self.ended
    }

    fn credit(&mut self, n: usize) {
        self.unacked += n as u32;
        if window_update_due(self.unacked, self.conn.initial_window) {
            let inc = std::mem::take(&mut self.unacked);
            self.shared
                .recv_credit
                .fetch_add(inc as i64, Ordering::AcqRel);
            self.conn.send(Outgoing::Frame(
                Window {
                    stream_id: self.shared.id,
                    increment: inc,
                }
                .encode(),
            ));
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendPhase {
    Head,
    Body,
    Done,
}

/// Sends the response: the head once, then body chunks, honouring the stream's window.
/// Dropping it before the response ended resets the stream (`handler_error`).
pub struct ResponseSender {
    shared: Arc<StreamShared>,
    conn: Arc<ConnShared>,
    phase: SendPhase,
}

impl ResponseSender {
    pub(crate) fn new(shared: Arc<StreamShared>, conn: Arc<ConnShared>) -> ResponseSender {
        ResponseSender {
            shared,
            conn,
            phase: SendPhase::Head,
        }
    }

    /// The stream id, for logs.
    pub fn stream_id(&self) -> u32 {
        self.shared.id
    }

    /// Resolves when the stream can no longer carry a response: the gateway reset it (the
    /// client went away, a timeout) or the connection was lost. A host can race its handler
    /// against this to stop work nobody will receive, as `oneshot::Sender::closed` does.
    pub async fn closed(&self) -> StreamError {
        self.shared.send.failed().await
    }

    /// Sends the response head. Header names are lower-cased; `end_stream` means no body.
    pub fn send_head(
        &mut self,
        status: u16,
        mut headers: HeaderList,
        end_stream: bool,
    ) -> Result<(), StreamError> {
        if self.phase != SendPhase::Head {
            return Err(StreamError::InvalidState("response head already sent"));
        }
        if let Some(e) = self.shared.send.failure() {
            return Err(e);
        }
        if !(200..=599).contains(&status) {
            return Err(StreamError::InvalidHead(format!(
                "status {status} is outside 200..=599"
            )));
        }
        if headers.len() > u16::MAX as usize {
            return Err(StreamError::InvalidHead(format!(
                "{} headers; a response carries at most 65535",
                headers.len()
            )));
        }
        for (name, value) in headers.iter_mut() {
            if name.iter().any(u8::is_ascii_uppercase) {
                *name = Bytes::from(name.to_ascii_lowercase());
            }
            if !frame::is_header_name(name) || name.len() > u16::MAX as usize {
                return Err(StreamError::InvalidHead(format!(
                    "header name {:?} is not a valid token",
                    String::from_utf8_lossy(name)
                )));
            }
            if !frame::is_header_value(value) || value.len() > u16::MAX as usize {
                return Err(StreamError::InvalidHead(format!(
                    "value of header {:?} holds a control byte other than HTAB, or is longer than 65535 bytes",
                    String::from_utf8_lossy(name)
                )));
            }
        }
        let frame = Response {
            stream_id: self.shared.id,
            end_stream,
            status,
            headers,
        };
        let encoded = frame.encode();
        if encoded.len() > crate::limits::MAX_FRAME_SIZE {
            return Err(StreamError::InvalidHead(format!(
                "response head of {} bytes exceeds the {}-byte frame limit",
                encoded.len(),
                crate::limits::MAX_FRAME_SIZE
            )));
        }
        self.conn.send(Outgoing::Frame(encoded));
        if end_stream {
            self.finish();
        } else {
            self.phase = SendPhase::Body;
        }
        Ok(())
    }

    /// Sends body bytes, waiting for flow-control credit as needed. `end_stream` ends the
    /// response after these bytes.
    pub async fn send_data(
        &mut self,
        mut data: Bytes,
        end_stream: bool,
    ) -> Result<(), StreamError> {
        match self.phase {
            SendPhase::Head => return Err(StreamError::InvalidState("response head not sent")),
            SendPhase::Done => return Err(StreamError::InvalidState("response already ended")),
            SendPhase::Body => {}
        }
        if data.is_empty() {
            if end_stream {
                if let Some(e) = self.shared.send.failure() {
                    return Err(e);
                }
                self.conn.send(Outgoing::Frame(Data::encode_parts(
                    self.shared.id,
                    true,
                    &[],
                )));
                self.finish();
            }
            return Ok(());
        }
        while !data.is_empty() {
            let n = self
                .shared
                .send
                .reserve(data.len().min(MAX_DATA_CHUNK))
                .await?;
            let chunk = data.split_to(n);
            let last = end_stream && data.is_empty();
            self.conn.send(Outgoing::Frame(Data::encode_parts(
                self.shared.id,
                last,
                &chunk,
            )));
        }
        if end_stream {
            self.finish();
        }
        Ok(())
    }

    /// Ends the response body.
    pub async fn end(&mut self) -> Result<(), StreamError> {
        self.send_data(Bytes::new(), true).await
    }

    /// Resets the stream: the gateway fails the request (502 if no head was sent).
    pub fn reset(mut self, code: ResetCode, reason: &str) {
        self.send_reset(code, reason);
    }

    fn send_reset(&mut self, code: ResetCode, reason: &str) {
        if self.phase == SendPhase::Done {
            return;
        }
        self.phase = SendPhase::Done;
        if self.shared.send.failure().is_none() {
            self.conn.send(Outgoing::Frame(
                Reset::new(self.shared.id, code, reason).encode(),
            ));
        }
        self.shared
            .send
            .fail(StreamError::InvalidState("stream reset"));
        self.shared.request_done.store(true, Ordering::Release);
        self.conn.finish_response(self.shared.id);
    }

    fn finish(&mut self) {
        self.phase = SendPhase::Done;
        if !self.shared.request_done.load(Ordering::Acquire) {
            // The response is complete but the gateway is still sending a body nobody needs.
            self.conn.send(Outgoing::Frame(
                Reset::new(self.shared.id, ResetCode::NoError, "response complete").encode(),
            ));
            self.shared.request_done.store(true, Ordering::Release);
        }
        self.conn.finish_response(self.shared.id);
    }
}

impl Drop for ResponseSender {
    fn drop(&mut self) {
        if self.phase != SendPhase::Done {
            self.send_reset(ResetCode::HandlerError, "handler ended without a response");
        }
    }
}

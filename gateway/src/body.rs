//! The response body the gateway gives hyper: either a small body of its own (errors,
//! admin JSON) or a worker's streamed body, granting the worker credit as hyper takes it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::mpsc;
use tokio::time::Sleep;
use tracing::warn;
use vyx_core::error::ResetCode;
use vyx_core::flow::window_update_due;
use vyx_core::frame::Window;
use vyx_core::transport::Outgoing;

use crate::conn::{Failure, WorkerConn};

/// Resets the stream towards the worker if dropped while armed: the client went away, or
/// the proxy gave up on the stream.
pub struct StreamGuard {
    pub conn: Arc<WorkerConn>,
    pub id: u32,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.conn
            .cancel_stream(self.id, ResetCode::Cancel, "client went away");
    }
}

/// A worker's response body as hyper pulls it: grants the worker credit as the client takes
/// the bytes, holds the worker to its `content-length`, and bounds the gaps (`body_idle`).
pub struct WorkerBody {
    rx: mpsc::UnboundedReceiver<Result<Bytes, Failure>>,
    credit: Arc<AtomicI64>,
    initial_window: u32,
    unacked: u32,
    guard: StreamGuard,
    done: bool,
    /// The worker's `content-length`, when it sent one (§3.5).
    expected: Option<u64>,
    received: u64,
    /// `timeouts.body_idle`: how long the worker may leave the client waiting for DATA.
    idle: Duration,
    /// Armed while hyper waits for DATA and none has come; a slow client never counts.
    idle_timer: Pin<Box<Sleep>>,
    idle_armed: bool,
}

impl WorkerBody {
    pub fn new(
        rx: mpsc::UnboundedReceiver<Result<Bytes, Failure>>,
        credit: Arc<AtomicI64>,
        initial_window: u32,
        guard: StreamGuard,
        expected: Option<u64>,
        idle: Duration,
    ) -> WorkerBody {
        WorkerBody {
            rx,
            credit,
            initial_window,
            unacked: 0,
            guard,
            done: false,
            expected,
            received: 0,
            idle,
            idle_timer: Box::pin(tokio::time::sleep(idle)),
            idle_armed: false,
        }
    }

    /// Ends the client's response with an error; `reset` also RESETs the worker's stream.
    fn fail(
        &mut self,
        reset: Option<ResetCode>,
        why: String,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.done = true;
        warn!(worker_id = %self.guard.conn.worker_id, stream = self.guard.id, reason = %why, "response aborted");
        if let Some(code) = reset {
            self.guard.conn.cancel_stream(self.guard.id, code, &why);
        }
        Poll::Ready(Some(Err(BodyError(Failure::Protocol(why)))))
    }
}

pub enum GatewayBody {
    Full(Option<Bytes>),
    Worker(Box<WorkerBody>),
}

impl GatewayBody {
    pub fn empty() -> GatewayBody {
        GatewayBody::Full(None)
    }

    pub fn full(b: impl Into<Bytes>) -> GatewayBody {
        let b = b.into();
        GatewayBody::Full((!b.is_empty()).then_some(b))
    }
}

/// The error a streamed body ends with when the worker fails mid-response; hyper then
/// aborts the client's connection (HTTP/1) or resets the stream (HTTP/2).
#[derive(Debug, thiserror::Error)]
#[error("worker failed mid-response: {0:?}")]
pub struct BodyError(pub Failure);

impl http_body::Body for GatewayBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            GatewayBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            GatewayBody::Worker(w) => {
                if w.done {
                    return Poll::Ready(None);
                }
                match w.rx.poll_recv(cx) {
                    Poll::Pending => {
                        if !w.idle_armed {
                            w.idle_armed = true;
                            let at = tokio::time::Instant::now() + w.idle;
                            w.idle_timer.as_mut().reset(at);
                        }
                        if w.idle_timer.as_mut().poll(cx).is_ready() {
                            let why =
                                format!("no response DATA for {:?} (timeouts.body_idle)", w.idle);
                            return w.fail(Some(ResetCode::Timeout), why);
                        }
                        Poll::Pending
                    }
                    Poll::Ready(Some(Ok(b))) => {
                        w.idle_armed = false;
                        w.received += b.len() as u64;
                        if let Some(n) = w.expected.filter(|&n| w.received > n) {
                            let why = format!("response DATA beyond its content-length of {n}");
                            return w.fail(Some(ResetCode::ProtocolError), why);
                        }
                        w.unacked += b.len() as u32;
                        if window_update_due(w.unacked, w.initial_window) {
                            let inc = std::mem::take(&mut w.unacked);
                            w.credit.fetch_add(inc as i64, Ordering::AcqRel);
                            w.guard.conn.send(Outgoing::Frame(
                                Window {
                                    stream_id: w.guard.id,
                                    increment: inc,
                                }
                                .encode(),
                            ));
                        }
                        Poll::Ready(Some(Ok(Frame::data(b))))
                    }
                    Poll::Ready(Some(Err(f))) => {
                        w.done = true;
                        Poll::Ready(Some(Err(BodyError(f))))
                    }
                    Poll::Ready(None) => {
                        if let Some(n) = w.expected.filter(|&n| w.received < n) {
                            let why = format!(
                                "response ended after {} of its content-length of {n} bytes",
                                w.received
                            );
                            return w.fail(None, why);
                        }
                        w.done = true;
                        Poll::Ready(None)
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            GatewayBody::Full(b) => b.is_none(),
            GatewayBody::Worker(w) => w.done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            GatewayBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            GatewayBody::Full(None) => SizeHint::with_exact(0),
            GatewayBody::Worker(w) => match w.expected {
                Some(n) => SizeHint::with_exact(n),
                None => SizeHint::default(),
            },
        }
    }
}

/// A response body that holds its request's place in the connection's activity count until
/// hyper drops it (sent, or the client went away).
pub struct Tracked {
    pub body: GatewayBody,
    pub _active: crate::conn_limit::ActiveRequest,
    /// HTTP/1 only: fails the body once the client has gone (see `client_eof`).
    pub client_eof: Option<crate::client_eof::ClientEof>,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if frame.is_pending() {
            if let Some(eof) = &mut this.client_eof {
                ready!(eof.poll_gone(cx));
                return Poll::Ready(Some(Err(BodyError(Failure::ConnectionLost(
                    "the client closed its connection mid-response".into(),
                )))));
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

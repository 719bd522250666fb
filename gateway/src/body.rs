//! The response body the gateway gives hyper: either a small body of its own (errors,
//! admin JSON) or a worker's response body (`response`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use vyx_core::error::ResetCode;

use crate::access_log::Pending;
use crate::conn::{Failure, WorkerConn};
use crate::response::ResponseBody;

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

pub enum GatewayBody {
    Full(Option<Bytes>),
    /// A worker's response that was complete when its head was read: no pump, no clock
    /// (its stream is ended at the worker and holds no slot). `exact` when the worker sent a
    /// `content-length`, so the client's framing is the same as a streamed body's.
    Complete {
        data: Option<Bytes>,
        exact: bool,
        /// Dropped with the body, as the pump drops it once the client has taken the rest.
        _guard: StreamGuard,
    },
    Worker(Box<ResponseBody>),
    /// The dashboard's event stream (`ui`).
    Events(Box<crate::ui::EventBody>),
}

impl GatewayBody {
    pub fn empty() -> GatewayBody {
        GatewayBody::Full(None)
    }

    pub fn full(b: impl Into<Bytes>) -> GatewayBody {
        let b = b.into();
        GatewayBody::Full((!b.is_empty()).then_some(b))
    }

    /// `hook` runs if a worker's response is aborted because the client took nothing for
    /// `timeouts.send` (see `response`).
    pub fn on_send_timeout(&self, hook: impl FnOnce() + Send + 'static) {
        match self {
            GatewayBody::Worker(w) => w.on_abort(Box::new(hook)),
            // A dashboard client dropped at its bound is cut the same way.
            GatewayBody::Events(e) => e.on_abort(Box::new(hook)),
            _ => {}
        }
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
            GatewayBody::Full(b) | GatewayBody::Complete { data: b, .. } => {
                Poll::Ready(b.take().map(|b| Ok(Frame::data(b))))
            }
            GatewayBody::Worker(w) => w.poll_frame(cx),
            GatewayBody::Events(e) => e.poll_data(cx).map(|d| d.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            GatewayBody::Full(b) | GatewayBody::Complete { data: b, .. } => b.is_none(),
            GatewayBody::Worker(w) => w.is_done(),
            GatewayBody::Events(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            GatewayBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            GatewayBody::Full(None) => SizeHint::with_exact(0),
            GatewayBody::Complete {
                data, exact: true, ..
            } => SizeHint::with_exact(data.as_ref().map_or(0, |b| b.len() as u64)),
            GatewayBody::Complete { .. } | GatewayBody::Events(_) => SizeHint::default(),
            GatewayBody::Worker(w) => match w.expected() {
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
    /// Taken out early when the response is aborted for `timeouts.send` (HTTP/2).
    pub _active: crate::conn_limit::HeldRequest,
    /// HTTP/1 only: fails the body once the client has gone (see `client_eof`).
    pub client_eof: Option<crate::client_eof::ClientEof>,
    /// The request's access log line, logged when the body is dropped.
    pub access: Option<Pending>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(access) = &mut self.access {
            access.body_done(http_body::Body::is_end_stream(&self.body));
        }
    }
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
        let frame = match frame {
            Poll::Pending => match &mut this.client_eof {
                Some(eof) => {
                    ready!(eof.poll_gone(cx));
                    Poll::Ready(Some(Err(BodyError(Failure::ConnectionLost(
                        "the client closed its connection mid-response".into(),
                    )))))
                }
                None => Poll::Pending,
            },
            frame => frame,
        };
        if let (Some(access), Poll::Ready(Some(r))) = (&mut this.access, &frame) {
            match r {
                Ok(f) => {
                    access.entry.bytes_out += f.data_ref().map_or(0, |d| d.len() as u64);
                }
                Err(e) => access.entry.error = Some(e.to_string()),
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

//! The response body the gateway gives hyper: either a small body of its own (errors,
//! admin JSON) or a worker's streamed body, granting the worker credit as hyper takes it.

use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::mpsc;
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

pub struct WorkerBody {
    pub rx: mpsc::UnboundedReceiver<Result<Bytes, Failure>>,
    pub credit: Arc<AtomicI64>,
    pub initial_window: u32,
    pub unacked: u32,
    pub guard: StreamGuard,
    pub done: bool,
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
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Some(Ok(b))) => {
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
            GatewayBody::Worker(_) => SizeHint::default(),
        }
    }
}

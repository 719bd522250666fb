//! Interim (1xx) responses from workers to HTTP/1.1 clients (PROTOCOL.md §3.11).
//!
//! hyper 1.x cannot send a 1xx it did not generate (its encoder turns one into 500, and a
//! service returns one response), so the gateway writes the interim head itself, on the
//! connection's bytes below hyper: [`InterimIo`] wraps what hyper is given (plain TCP and
//! TLS alike), and [`InterimSink`] is where a worker connection's reader leaves a
//! serialized head for it.
//!
//! Why the head lands between the right two responses, reasoned from hyper's HTTP/1
//! dispatcher (hyper 1.12, `proto/h1/{dispatch,io}.rs`):
//! - hyper encodes into a write buffer, then flushes: it writes the buffer out through
//!   `poll_write` and calls the IO's `poll_flush` only once that buffer is empty (the
//!   gateway never turns on `pipeline_flush`, which skips that). So a head is *started* only
//!   in [`InterimIo`]'s `poll_flush`, when every byte hyper produced, an earlier pipelined
//!   response's included, is already below it; a head begun is finished before any later
//!   byte of hyper's passes.
//! - hyper cannot begin a request's final head before its service future resolves, and the
//!   service (`server.rs`) does not resolve while a head of its request is queued: it ends
//!   the request's turn with [`InterimSink::request_done`] and waits for [`InterimSink::written`]
//!   when that says a head was still queued.
//! - A head is queued only under the generation of the request that opened its stream: the
//!   turn's end and a queueing are one atomic word, so a late INFORMATIONAL (a stream left
//!   open after its request was answered, say with a 504) is dropped, never put in front of
//!   the next request's response.
//!
//! A request without a 1xx pays one atomic add (the turn's end) and the waker registration
//! in `poll_flush`; no lock and no allocation.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use http::{HeaderMap, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::futures::TaskLocalFuture;
use vyx_core::frame::HeaderList;

use crate::forward;

/// Bit 0 of [`InterimSink`]'s state: a head is queued or being written.
const QUEUED: u64 = 1;
/// The request generation counts in the bits above [`QUEUED`].
const GENERATION: u64 = 2;

/// One HTTP/1.1 client connection's queue of interim heads, shared by its [`InterimIo`]
/// and the worker connections whose streams answer its requests.
#[derive(Default)]
pub struct InterimSink {
    /// The current request's generation (times [`GENERATION`]) plus [`QUEUED`].
    state: AtomicU64,
    heads: Mutex<BytesMut>,
    /// The client connection's task, to write a head queued from a worker's reader.
    io_task: AtomicWaker,
    /// The service waiting for its request's heads to be written.
    service: AtomicWaker,
}

/// Where a stream's interim heads go: its client connection, under the generation of the
/// request that opened the stream.
#[derive(Clone)]
pub struct InterimTarget {
    sink: Arc<InterimSink>,
    generation: u64,
}

tokio::task_local! {
    /// The client connection of the HTTP/1.1 request being served, while its service runs:
    /// streams opened meanwhile take it (see `WorkerConn::try_open_stream`). A task-local
    /// rather than a parameter through every layer of the proxy. `None` for a request whose
    /// client takes no interim responses (HTTP/1.0, HTTP/2).
    pub static CLIENT: Option<Arc<InterimSink>>;
}

/// A request's service run by [`scope`].
pub type Scoped<F> = TaskLocalFuture<Option<Arc<InterimSink>>, F>;

/// The target for a stream opened now, when the request served on this task is one whose
/// client can take interim responses.
pub fn current_target() -> Option<InterimTarget> {
    CLIENT
        .try_with(|sink| {
            sink.as_ref().map(|sink| InterimTarget {
                sink: sink.clone(),
                generation: sink.state.load(Ordering::Acquire) & !QUEUED,
            })
        })
        .ok()
        .flatten()
}

/// Runs one request's `service` on the connection whose heads go to `sink`: streams opened
/// by it take the sink. Once it is done, [`InterimSink::finish_request`] ends the request's
/// turn before its response goes out. A struct around the future, not an `async` wrapper
/// (which would hold the future twice): hyper moves the request's future as a whole.
///
/// ```ignore
/// let response = interim::scope(Some(sink.clone()), service).await;
/// sink.finish_request().await;
/// ```
pub fn scope<F: Future>(sink: Option<Arc<InterimSink>>, service: F) -> Scoped<F> {
    CLIENT.scope(sink, service)
}

/// Whether a worker's 1xx status is forwarded to the client: never 100, which the gateway
/// has answered itself for `expect: 100-continue` or the client never asked for (§3.11).
pub fn is_forwarded(status: u16) -> bool {
    status != 100
}

impl InterimTarget {
    /// Queues `status` with `fields` (hop-by-hop fields removed, §3.5) for the client, unless
    /// its request was already answered. Called by the worker connection's reader.
    pub fn send(&self, status: u16, fields: HeaderList) {
        let head = serialize(status, fields);
        let sink = &self.sink;
        let mut heads = sink.heads.lock().unwrap();
        let mut state = sink.state.load(Ordering::Acquire);
        loop {
            if state & !QUEUED != self.generation {
                return; // its request has had its final response
            }
            match sink.state.compare_exchange_weak(
                state,
                state | QUEUED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => state = now,
            }
        }
        heads.extend_from_slice(&head);
        drop(heads);
        sink.io_task.wake();
    }
}

impl InterimSink {
    /// Ends the current request's turn: no head is queued for it from now on. `true` when
    /// one is still queued; the final response then waits for [`InterimSink::written`].
    pub fn request_done(&self) -> bool {
        self.state.fetch_add(GENERATION, Ordering::AcqRel) & QUEUED != 0
    }

    /// Ends the current request's turn, and waits until a head still queued for it is
    /// written: its final response must not pass it.
    pub async fn finish_request(&self) {
        if self.request_done() {
            self.written().await;
        }
    }

    /// Resolves once no head is queued or being written.
    pub async fn written(&self) {
        std::future::poll_fn(|cx| {
            self.service.register(cx.waker());
            if self.state.load(Ordering::Acquire) & QUEUED == 0 {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// The queued heads, taken; when there are none, marks the queue empty and wakes the
    /// service waiting for it.
    fn take(&self) -> Option<Bytes> {
        let mut heads = self.heads.lock().unwrap();
        if heads.is_empty() {
            self.state.fetch_and(!QUEUED, Ordering::AcqRel);
            drop(heads);
            self.service.wake();
            return None;
        }
        Some(heads.split().freeze())
    }
}

/// `HTTP/1.1 <status> <reason>`, then the end-to-end fields, as one head.
fn serialize(status: u16, fields: HeaderList) -> Vec<u8> {
    let mut headers = HeaderMap::new();
    // The codec validated names and values; a head too big for a HeaderMap loses fields,
    // which an advisory response may.
    let _ = forward::response_headers(fields, &mut headers);
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n").into_bytes();
    for (name, value) in &headers {
        if forward::is_hop_by_hop(name.as_str(), &headers) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The client's connection as hyper sees it, with interim heads put on the wire between
/// hyper's responses (see the module's reasoning).
pub struct InterimIo<T> {
    inner: T,
    sink: Arc<InterimSink>,
    /// A head begun and not yet all written: finished before anything else.
    writing: Bytes,
}

impl<T> InterimIo<T> {
    pub fn new(inner: T, sink: Arc<InterimSink>) -> InterimIo<T> {
        InterimIo {
            inner,
            sink,
            writing: Bytes::new(),
        }
    }

    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: AsyncWrite + Unpin> InterimIo<T> {
    /// Writes what is begun, then (when `start`) every queued head, until none is left.
    fn poll_heads(&mut self, cx: &mut Context<'_>, start: bool) -> Poll<io::Result<()>> {
        loop {
            if self.writing.is_empty() {
                if !start || self.sink.state.load(Ordering::Acquire) & QUEUED == 0 {
                    return Poll::Ready(Ok(()));
                }
                match self.sink.take() {
                    Some(heads) => self.writing = heads,
                    None => return Poll::Ready(Ok(())),
                }
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.writing))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.writing.advance(n);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for InterimIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for InterimIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.writing.is_empty() {
            ready!(this.poll_heads(cx, false))?;
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.writing.is_empty() {
            ready!(this.poll_heads(cx, false))?;
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // hyper's buffer is empty here: the moment a queued head may start.
        this.sink.io_task.register(cx.waker());
        ready!(this.poll_heads(cx, true))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(list: &[(&str, &str)]) -> HeaderList {
        list.iter()
            .map(|(n, v)| (Bytes::from(n.to_string()), Bytes::from(v.to_string())))
            .collect()
    }

    #[test]
    fn a_head_is_a_status_line_and_its_end_to_end_fields() {
        let head = serialize(
            103,
            fields(&[
                ("link", "</a.css>; rel=preload"),
                ("connection", "x-hop"),
                ("x-hop", "1"),
                ("link", "</b.js>; rel=preload"),
            ]),
        );
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\
             link: </b.js>; rel=preload\r\n\r\n"
        );
    }

    #[test]
    fn a_head_queued_after_its_request_was_answered_is_dropped() {
        let sink = Arc::new(InterimSink::default());
        let target = CLIENT.sync_scope(Some(sink.clone()), || current_target().unwrap());
        assert!(!sink.request_done(), "nothing was queued");
        target.send(103, fields(&[]));
        assert_eq!(sink.state.load(Ordering::Acquire) & QUEUED, 0);
        assert!(sink.heads.lock().unwrap().is_empty());
        let next = CLIENT.sync_scope(Some(sink.clone()), || current_target().unwrap());
        next.send(103, fields(&[]));
        assert!(sink.request_done(), "the next request's head is queued");
    }
}

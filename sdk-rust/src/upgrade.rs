//! Upgraded connections (PROTOCOL.md §4.5, HOSTS.md §7a) the way hyper offers them: a
//! handler of an upgrade request takes [`on`] from it, answers `101 Switching Protocols`,
//! and the [`OnUpgrade`] future then yields an [`Upgraded`] byte stream to the client
//! (`AsyncRead` + `AsyncWrite`), on which a WebSocket library runs unchanged.
//!
//! ```no_run
//! use vyx::{IntoResponse, Request, Response, StatusCode};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! async fn ws(mut req: Request) -> Response {
//!     let Some(on) = vyx::upgrade::on(&mut req) else {
//!         return StatusCode::UPGRADE_REQUIRED.into_response();
//!     };
//!     tokio::spawn(async move {
//!         let Ok(mut io) = on.await else { return };
//!         let mut buf = [0u8; 1024];
//!         while let Ok(n @ 1..) = io.read(&mut buf).await {
//!             if io.write_all(&buf[..n]).await.is_err() { break }
//!         }
//!     });
//!     Response::builder()
//!         .status(StatusCode::SWITCHING_PROTOCOLS)
//!         .header("upgrade", "websocket")
//!         .body(vyx::Body::empty())
//! }
//! ```

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;
use vyx_core::session::{Stream, StreamError, TryChunk, TrySend};

use crate::request::Request;

/// The upgraded connection once the handler's 101 has been sent, or why there is none (the
/// handler answered another status, or the stream ended first).
pub struct OnUpgrade(pub(crate) oneshot::Receiver<Upgraded>);

impl Future for OnUpgrade {
    type Output = Result<Upgraded, crate::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(ready!(Pin::new(&mut self.0).poll(cx)).map_err(|_| {
            crate::Error::other("no upgrade: the handler did not answer 101, or the stream ended")
        }))
    }
}

/// The upgrade of `req`, if the client asked for one (a WebSocket handshake, over HTTP/1.1
/// or HTTP/2): `None` for any other request, or when it was taken already.
pub fn on(req: &mut Request) -> Option<OnUpgrade> {
    req.take_upgrade().map(OnUpgrade)
}

type Wait = Pin<Box<dyn Future<Output = Result<(), StreamError>> + Send>>;

/// The client's connection after the switch: reads are the client's bytes (EOF at its
/// half-close), writes go to it under the stream's flow control, `shutdown` half-closes,
/// and dropping it ends the stream.
pub struct Upgraded {
    stream: Stream,
    leftover: Bytes,
    read_wait: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    write_wait: Option<Wait>,
}

impl std::fmt::Debug for OnUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnUpgrade").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Upgraded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgraded")
            .field("stream", &self.stream.stream_id())
            .finish_non_exhaustive()
    }
}

impl Upgraded {
    pub(crate) fn new(stream: Stream) -> Upgraded {
        Upgraded {
            stream,
            leftover: Bytes::new(),
            read_wait: None,
            write_wait: None,
        }
    }

    /// Waits for credit the last write left the core waiting for.
    fn poll_credit(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(wait) = &mut self.write_wait {
            let done = ready!(wait.as_mut().poll(cx));
            self.write_wait = None;
            done.map_err(broken)?;
        }
        Poll::Ready(Ok(()))
    }
}

fn broken(e: StreamError) -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, e)
}

impl AsyncRead for Upgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.leftover.is_empty() {
                let n = this.leftover.len().min(buf.remaining());
                buf.put_slice(&this.leftover[..n]);
                this.leftover.advance(n);
                return Poll::Ready(Ok(()));
            }
            match this.stream.try_chunk() {
                Ok(TryChunk::Data(b)) => this.leftover = b,
                Ok(TryChunk::End) => return Poll::Ready(Ok(())),
                Ok(TryChunk::Pending) => {
                    let stream = this.stream.clone();
                    let wait = this
                        .read_wait
                        .get_or_insert_with(|| Box::pin(async move { stream.readable().await }));
                    ready!(wait.as_mut().poll(cx));
                    this.read_wait = None;
                }
                Err(e) => return Poll::Ready(Err(broken(e))),
            }
        }
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_credit(cx))?;
        match this.stream.try_send(data, false).map_err(broken)? {
            TrySend::Accepted => {}
            TrySend::Full => {
                // Taken, its tail waiting for credit: the next write waits for it.
                let stream = this.stream.clone();
                this.write_wait = Some(Box::pin(async move { stream.writable().await }));
            }
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_credit(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_credit(cx))?;
        if !this.stream.is_done() {
            this.stream.end().map_err(broken)?;
        }
        Poll::Ready(Ok(()))
    }
}

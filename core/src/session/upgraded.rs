//! An upgrade stream after its 101 as a byte pipe (PROTOCOL.md §4.5, HOSTS.md §7a), the
//! `AsyncRead` + `AsyncWrite` every Rust host hands to its libraries: the Rust SDK gives it
//! to a handler (`vyx::upgrade`, hyper's upgrades), the Python binding runs tungstenite on
//! it. The Go SDK's twin is `upgradedConn` (`sdk-go/session_upgraded.go`), a `net.Conn`
//! over the same stream calls.
//!
//! ```no_run
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use vyx_core::session::{Stream, Upgraded};
//!
//! // `stream` is an upgrade request's, its 101 sent with `send_head`.
//! async fn echo(stream: Stream) -> std::io::Result<()> {
//!     let mut io = Upgraded::new(stream);
//!     let mut buf = [0u8; 1024];
//!     while let n @ 1.. = io.read(&mut buf).await? {
//!         io.write_all(&buf[..n]).await?;
//!     }
//!     io.shutdown().await // the client reads EOF
//! }
//! ```

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{Stream, StreamError, TryChunk, TrySend};

type Wait<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The client's connection after the switch: reads are the client's bytes (EOF at its
/// half-close), writes go to it under the stream's flow control, `shutdown` half-closes
/// towards it, and dropping the last handle of the stream ends it (the client's bytes still
/// coming are refused, RESET `no_error`). A stream reset or lost fails reads and writes
/// with `BrokenPipe`.
pub struct Upgraded {
    stream: Stream,
    /// What the last chunk held beyond the reader's buffer.
    leftover: Bytes,
    read_wait: Option<Wait<()>>,
    /// The credit the last write's tail waits for: the next write, flush or shutdown waits.
    write_wait: Option<Wait<Result<(), StreamError>>>,
}

impl Upgraded {
    /// The byte pipe of `stream`, an upgrade request's whose 101 has been sent.
    pub fn new(stream: Stream) -> Upgraded {
        Upgraded {
            stream,
            leftover: Bytes::new(),
            read_wait: None,
            write_wait: None,
        }
    }

    /// The stream under the pipe.
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    fn poll_credit(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(wait) = &mut self.write_wait {
            let done = ready!(wait.as_mut().poll(cx));
            self.write_wait = None;
            done.map_err(broken)?;
        }
        Poll::Ready(Ok(()))
    }
}

impl fmt::Debug for Upgraded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upgraded")
            .field("stream", &self.stream.stream_id())
            .finish_non_exhaustive()
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
        if this.stream.try_send(data, false).map_err(broken)? == TrySend::Full {
            // Taken whole, its tail waiting for credit: the next call waits for it.
            let stream = this.stream.clone();
            this.write_wait = Some(Box::pin(async move { stream.writable().await }));
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

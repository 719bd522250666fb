//! A lingering close, as nginx's `lingering_close`: a client connection the gateway closes
//! while its client may still be sending first ends the gateway's side (FIN), then reads
//! and discards what still comes, for a bounded time (and as many bytes as an operator
//! allows, unbounded by default as nginx's), and only then closes.
//!
//! Why: an answer given before the request body has ended (a 413, a 401, a redirect, a
//! worker that answered and RESET `no_error`) leaves the client still sending. A socket
//! closed with unread input, or that receives input once closed, answers with a TCP reset,
//! and a client still writing its body gets `ECONNRESET` or a broken pipe before it ever
//! reads the answer (hyper's client then reports the write error, not the response).
//! Draining lets the client finish its write, read the answer and the FIN, and leave.
//!
//! Which closes linger: those after an HTTP/1 request that had a body, or with input
//! waiting unread; never an upgraded connection (its close is not the gateway's), a reserve
//! connection (it is already past the cap), or a close that was not a clean shutdown (a
//! reset on purpose, an error). A lingering connection keeps its connection slot, and gives
//! it up at once when a new connection needs it (see [`crate::conn_limit`]); the gateway's
//! stop ends every linger.

use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tracing::{debug, Instrument};

use crate::client_eof::{peek, Peeked};
use crate::conn_limit::Lingerer;
use crate::stopping::Phase;
use crate::tls::ClientStream;
use crate::Shared;

/// What the requests served on one connection tell its close.
#[derive(Default)]
pub(crate) struct Intent(AtomicU8);

/// The last HTTP/1 request had a body: its client may still be sending.
const BODY: u8 = 1;
/// The connection was handed on (an upgrade): it never lingers.
const HANDED_ON: u8 = 2;

impl Intent {
    /// An HTTP/1 request has begun; `has_body`: its body is not known to be empty.
    pub fn request(&self, has_body: bool) {
        match has_body {
            true => self.0.fetch_or(BODY, Ordering::Relaxed),
            false => self.0.fetch_and(!BODY, Ordering::Relaxed),
        };
    }

    /// The connection is handed on (a 101): what happens to it is no longer a close.
    pub fn handed_on(&self) {
        self.0.fetch_or(HANDED_ON, Ordering::Relaxed);
    }

    fn wants_linger(&self, fd: RawFd) -> bool {
        let flags = self.0.load(Ordering::Relaxed);
        flags & HANDED_ON == 0 && (flags & BODY != 0 || peek(fd) == Peeked::Data)
    }
}

/// A client connection's stream whose close lingers when it should (see the module's doc):
/// hyper shuts it down (the FIN), then drops it, and the drop hands the socket to a task
/// that drains it.
pub(crate) struct Lingering {
    /// `None` once taken back by [`Lingering::into_inner`].
    io: Option<ClientStream>,
    /// The write side was shut down cleanly: the client has had its FIN.
    shut: bool,
    intent: Arc<Intent>,
    /// The TCP socket's, to look for unread input at the close.
    fd: RawFd,
    /// A reserve connection (past the cap) closes at once.
    reserve: bool,
    shared: Arc<Shared>,
}

impl Lingering {
    /// Wraps an accepted connection's stream; the [`Intent`] is for its requests to fill.
    pub fn new(
        io: ClientStream,
        fd: RawFd,
        reserve: bool,
        shared: Arc<Shared>,
    ) -> (Lingering, Arc<Intent>) {
        let intent = Arc::new(Intent::default());
        let stream = Lingering {
            io: Some(io),
            shut: false,
            intent: intent.clone(),
            fd,
            reserve,
            shared,
        };
        (stream, intent)
    }

    /// The stream, for a connection upgraded to a worker WebSocket: it never lingers.
    pub fn into_inner(mut self) -> ClientStream {
        self.io.take().expect("the stream is taken once")
    }

    fn io(&mut self) -> Pin<&mut ClientStream> {
        Pin::new(self.io.as_mut().expect("the stream is held until dropped"))
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some(io) = self.io.take() else { return };
        let rules = &self.shared.config;
        let off = rules.linger_timeout.is_zero() || rules.linger_bytes == Some(0);
        if off || !self.shut || self.reserve || !self.intent.wants_linger(self.fd) {
            return;
        }
        // Past the connection limit: no slot to spare, the socket closes now.
        let Some(lingerer) = self.shared.limiter.start_linger() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let sent_before = queued(self.fd);
        let task = linger(io, sent_before, self.shared.clone(), lingerer);
        runtime.spawn(task.in_current_span());
    }
}

/// Reads and discards what the client still sends, until its EOF, `timeouts.linger_idle`
/// without a byte, `timeouts.linger` in all, `limits.linger_bytes` (if set) past the
/// `sent_before` bytes already waiting when it began, a new connection needing the slot, or
/// the gateway's stop; then the socket closes (dropped here).
async fn linger(mut io: ClientStream, sent_before: u64, shared: Arc<Shared>, lingerer: Lingerer) {
    let config = &shared.config;
    let end = tokio::time::Instant::now() + config.linger_timeout;
    // What waits in the socket was sent before the answer (a receive buffer grown while the
    // body streamed holds megabytes): counting it would cut a client that has not yet had a
    // chance to read its answer.
    let mut left = config.linger_bytes.map(|b| b.saturating_add(sent_before));
    let mut phase = shared.phase.subscribe();
    // Unbounded by default, a drain may take a client's whole upload at loopback speed:
    // 16 KiB reads take it in a quarter of the system calls of 4 KiB ones, and 4096
    // lingering connections hold 64 MiB.
    let mut scratch = [0u8; 16 << 10];
    let over = loop {
        let read = tokio::time::timeout(config.linger_idle_timeout, io.read(&mut scratch));
        tokio::select! {
            r = read => match r {
                Ok(Ok(n)) if n > 0 => {
                    if let Some(left) = &mut left {
                        *left = left.saturating_sub(n as u64);
                        if *left == 0 {
                            break Some("limits.linger_bytes");
                        }
                    }
                }
                // The client's EOF or reset (it has its answer), or a pause: done.
                Ok(_) | Err(_) => break None,
            },
            _ = tokio::time::sleep_until(end) => break Some("timeouts.linger"),
            _ = lingerer.cut() => break None,
            _ = phase.wait_for(|p| *p == Phase::Closing) => break None,
        }
    };
    if let Some(limit) = over {
        shared.metrics.client_error("linger_limit");
        debug!(
            limit,
            sent_before, "client still sending after its answer past the limit; closed"
        );
    }
}

/// The bytes waiting unread in socket `fd`'s receive queue (0 if the kernel will not say).
fn queued(fd: RawFd) -> u64 {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int, which we own; `fd` is the open socket of the
    // stream being dropped.
    let r = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    if r == 0 {
        u64::try_from(n).unwrap_or(0)
    } else {
        0
    }
}

impl AsyncRead for Lingering {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().io().poll_read(cx, buf)
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().io().poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().io().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().io().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.io().poll_shutdown(cx))?;
        this.shut = true;
        Poll::Ready(Ok(()))
    }
}

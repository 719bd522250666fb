//! The TCP socket under a worker connection, shared by the WebSocket and the connection's
//! task, so that a connection the gateway has given up on can be dropped at once, whatever is
//! still queued for the peer (§7). One descriptor per connection, as nginx has: the socket is
//! reached through the stream itself (shared, not duplicated), so `limits.max_connections`
//! counts what the connections really hold.

use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::conn_limit::ConnSlot;

/// The socket and the connection slot it holds: both go when the last handle does.
struct Shared {
    tcp: TcpStream,
    _slot: ConnSlot,
}

/// A handle on a worker connection's socket.
#[derive(Clone)]
pub struct SocketHandle(Arc<Shared>);

impl SocketHandle {
    pub fn new(tcp: TcpStream, slot: ConnSlot) -> SocketHandle {
        SocketHandle(Arc::new(Shared { tcp, _slot: slot }))
    }

    /// The socket as a byte stream, for the WebSocket: one reader and one writer at a time.
    pub fn io(&self) -> SocketIo {
        SocketIo(self.0.clone())
    }

    fn sock(&self) -> socket2::SockRef<'_> {
        socket2::SockRef::from(&self.0.tcp)
    }

    /// Makes the socket's close a reset: what the kernel still holds for a peer that does
    /// not read is discarded instead of being kept, with the connection, until it gives up.
    pub fn reset_on_close(&self) {
        let _ = self.sock().set_linger(Some(Duration::ZERO));
    }

    /// Closes as nginx's lingering close does, once the close frame is written: a FIN after
    /// it, then whatever the peer still sends is read and dropped until it closes too, for at
    /// most `wait` (then a reset). Closing a socket with unread data resets it at once, and
    /// the reset can overtake the close frame: a worker still writing a frame the gateway
    /// refused (4006 mid-frame) would see "connection reset" instead of the reason. The
    /// WebSocket reads nothing meanwhile (its task is the caller).
    pub async fn lingering_close(&self, wait: Duration) {
        if self.sock().shutdown(Shutdown::Write).is_err() {
            return;
        }
        let tcp = &self.0.tcp;
        let mut sink = vec![0u8; 64 << 10];
        let drained = tokio::time::timeout(wait, async {
            loop {
                if tcp.readable().await.is_err() {
                    return;
                }
                match tcp.try_read(&mut sink) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        })
        .await;
        if drained.is_err() {
            self.reset_on_close();
        }
    }
}

/// [`SocketHandle::io`]: reads and writes through tokio's readiness on the shared socket.
pub struct SocketIo(Arc<Shared>);

impl AsyncRead for SocketIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let tcp = &self.0.tcp;
        loop {
            ready!(tcp.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let asked = unfilled.len();
            let mut short = 0;
            // A read shorter than asked has drained the socket: its readiness is cleared (by
            // answering `WouldBlock` to `try_io`), as tokio's own `TcpStream::poll_read` does,
            // so that the next read waits for epoll instead of making a `recv` that fails
            // with EAGAIN (before, such a `recv` followed most of a worker's messages).
            let read = tcp.try_io(Interest::READABLE, || match tcp.try_read(unfilled) {
                Ok(n) if n > 0 && n < asked => {
                    short = n;
                    Err(io::ErrorKind::WouldBlock.into())
                }
                other => other,
            });
            match read {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && short > 0 => {
                    buf.advance(short);
                    return Poll::Ready(Ok(()));
                }
                // Readiness was stale (cleared by try_read): wait again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SocketIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let tcp = &self.0.tcp;
        loop {
            ready!(tcp.poll_write_ready(cx))?;
            match tcp.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                done => return Poll::Ready(done),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let tcp = &self.0.tcp;
        loop {
            ready!(tcp.poll_write_ready(cx))?;
            match tcp.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                done => return Poll::Ready(done),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(())) // nothing is buffered here
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&self.0.tcp).shutdown(Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn_limit::{Admission, ConnLimiter};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_short_read_returns_its_bytes_and_later_bytes_still_wake_the_reader() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut peer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let limiter = Arc::new(ConnLimiter::new(4, Default::default()));
        let Admission::Normal(slot) = limiter.admit() else {
            panic!("admitted")
        };
        let mut io = SocketHandle::new(tcp, slot).io();
        let mut buf = [0u8; 64];
        peer.write_all(b"first").await.unwrap();
        // Shorter than asked: the socket's readiness is cleared with it.
        assert_eq!(io.read(&mut buf).await.unwrap(), 5);
        assert_eq!(&buf[..5], b"first");
        // Nothing more yet: the next read is pending on epoll, which must wake it.
        let mut read = std::pin::pin!(io.read(&mut buf));
        assert!(futures_util::poll!(read.as_mut()).is_pending());
        peer.write_all(b"second").await.unwrap();
        let n = read.await.unwrap();
        assert_eq!(&buf[..n], b"second");
    }
}

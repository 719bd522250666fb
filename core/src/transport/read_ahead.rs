//! A read-ahead buffer under the WebSocket, so that tungstenite's reads are served from
//! memory.
//!
//! tungstenite zero-fills the part of its read buffer it is about to read into before every
//! read, including the read that ends in "would block" (tungstenite-rs issue 547): with its
//! default 128 KiB buffer that was ~256 KiB of `memset` per wake-up of a worker, whatever
//! arrived. With [`READ_CHUNK`] as its buffer size the zero-fill is at most 4 KiB a read, and
//! this layer keeps the system calls few: it reads the socket in reads of up to
//! [`READ_AHEAD`] into spare capacity (never zeroed) and hands the bytes out from memory.
//! The worker uses it; the gateway does not, as its buffer would be kept by each of
//! thousands of idle connections, and freeing it whenever the socket is dry cost more CPU
//! at 1 MiB than the system calls it saved (bench/NOTES.md, "The WebSocket read path").

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most tungstenite asks for in one read (its `read_buffer_size`, set by
/// [`super::websocket_config`]), and so the most it zero-fills per read.
pub const READ_CHUNK: usize = 4 * 1024;

/// The most read from the socket in one system call: one DATA frame of the largest size a
/// sender puts in one frame ([`crate::limits::MAX_DATA_CHUNK`]), with its headers.
pub const READ_AHEAD: usize = crate::limits::MAX_DATA_CHUNK + 64;

/// A byte stream read ahead in large reads; writes pass straight through.
///
/// ```
/// use tokio::io::AsyncReadExt;
/// use vyx_core::transport::ReadAhead;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let mut io = ReadAhead::new(&b"hello, world"[..]);
/// let mut first = [0u8; 5];
/// io.read_exact(&mut first).await.unwrap(); // one read of the source, the rest kept
/// assert_eq!(&first, b"hello");
/// assert_eq!(io.buffered(), 7);
/// # });
/// ```
#[derive(Debug)]
pub struct ReadAhead<S> {
    io: S,
    /// Read from `io`, not yet handed out. Its allocation is kept once made: refilled in
    /// place, so neither allocated nor zeroed per read.
    buf: BytesMut,
}

impl<S> ReadAhead<S> {
    /// Wraps `io`; the buffer is allocated on the first read and kept.
    pub fn new(io: S) -> ReadAhead<S> {
        ReadAhead {
            io,
            buf: BytesMut::new(),
        }
    }

    /// Bytes read ahead and not yet handed out.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        dst: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.buf.is_empty() {
            if dst.remaining() >= READ_AHEAD {
                // A read as large as ours: straight into the caller's buffer, no copy.
                return Pin::new(&mut this.io).poll_read(cx, dst);
            }
            // Empty, so this reuses the allocation from its start (no copy, no zeroing).
            this.buf.reserve(READ_AHEAD);
            // 0 bytes is the end of the stream: nothing is handed out, which says the same.
            ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.io),
                cx,
                &mut this.buf
            ))?;
        }
        let n = this.buf.len().min(dst.remaining());
        dst.put_slice(&this.buf[..n]);
        this.buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;

    /// A source that counts the reads it is asked for, each served as far as the caller's
    /// buffer allows.
    struct Counted {
        data: Vec<u8>,
        at: usize,
        reads: Arc<AtomicUsize>,
    }

    impl AsyncRead for Counted {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            dst: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            let n = (self.data.len() - self.at).min(dst.remaining());
            let at = self.at;
            dst.put_slice(&self.data[at..at + n]);
            self.at += n;
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn small_reads_are_served_from_few_large_ones_in_order() {
        let data: Vec<u8> = (0..3 * READ_AHEAD + 100).map(|i| (i % 251) as u8).collect();
        let reads = Arc::new(AtomicUsize::new(0));
        let mut io = ReadAhead::new(Counted {
            data: data.clone(),
            at: 0,
            reads: reads.clone(),
        });
        let mut got = Vec::new();
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            let n = io.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(got, data);
        // 4 reads bring the data (3 full, 1 partial), 1 more sees the end; tungstenite's
        // 4 KiB reads would have been 50 (upstream of this layer, each one a system call).
        assert!(reads.load(Ordering::Relaxed) <= 5);
    }

    #[tokio::test]
    async fn a_read_as_large_as_the_read_ahead_goes_straight_through() {
        let data = vec![7u8; 2 * READ_AHEAD];
        let reads = Arc::new(AtomicUsize::new(0));
        let mut io = ReadAhead::new(Counted {
            data,
            at: 0,
            reads: reads.clone(),
        });
        let mut big = vec![0u8; 2 * READ_AHEAD];
        assert_eq!(io.read(&mut big).await.unwrap(), 2 * READ_AHEAD);
        assert_eq!(io.buffered(), 0);
        assert_eq!(reads.load(Ordering::Relaxed), 1);
    }
}

//! Reads a worker socket in large reads while a large frame streams in, without holding a
//! large buffer on an idle connection.
//!
//! The gateway's WebSocket reads through a 4 KiB buffer (`gateway_websocket_config`): a
//! bigger one would be allocated, and zeroed, for each of thousands of idle connections. But
//! tungstenite then never asks the socket for more than 4 KiB at once, so a 64 KiB DATA
//! frame took 16 `read` calls and a 1 MiB body 256. Once a read fills the 4 KiB asked, more
//! is usually waiting: the next reads take up to [`READ_AHEAD`] from the socket into a buffer
//! that exists only while it holds bytes, and hand them out 4 KiB at a time. One copy per
//! byte (memcpy) replaces fifteen system calls per 64 KiB.

use std::io;

use bytes::{Buf, BytesMut};
use tokio::io::ReadBuf;
use tokio::net::TcpStream;

/// Most bytes taken from the socket in one read once a frame streams in: one DATA frame of
/// the largest size a sender puts in one frame, with its headers.
pub const READ_AHEAD: usize = vyx_core::limits::MAX_DATA_CHUNK + 64;

/// What was read from the socket beyond what the reader asked for.
#[derive(Default)]
pub struct ReadAhead {
    buf: BytesMut,
    /// The last read from the socket filled all the reader asked for: more is likely waiting.
    streaming: bool,
}

impl ReadAhead {
    /// Bytes read ahead and not yet handed out.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Reads once from `socket` into `dst`, or hands out what is buffered: into `dst`
    /// directly unless the last read suggests a large frame is streaming in. A
    /// `WouldBlock` from the socket is returned as is (the caller waits for readiness).
    pub fn read(&mut self, socket: &TcpStream, dst: &mut ReadBuf<'_>) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.hand_out(dst);
            return Ok(());
        }
        let wanted = dst.remaining();
        if self.streaming && wanted < READ_AHEAD {
            self.buf.reserve(READ_AHEAD);
            // Into spare capacity: nothing is zeroed first.
            let read = socket.try_read_buf(&mut self.buf);
            // Worth it only while a read brings more than the reader asked for.
            self.streaming = matches!(read, Ok(n) if n > wanted);
            self.hand_out(dst);
            self.release_when_idle();
            read.map(drop)
        } else {
            let n = socket.try_read(dst.initialize_unfilled())?;
            dst.advance(n);
            self.streaming = n > 0 && n == wanted;
            Ok(())
        }
    }

    /// The burst is over (or paused): an idle connection holds no read-ahead buffer.
    fn release_when_idle(&mut self) {
        if self.buf.is_empty() && !self.streaming {
            self.buf = BytesMut::new();
        }
    }

    fn hand_out(&mut self, dst: &mut ReadBuf<'_>) {
        let n = self.buf.len().min(dst.remaining());
        dst.put_slice(&self.buf[..n]);
        self.buf.advance(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// Bytes the kernel holds for `socket`, not yet read.
    fn queued(socket: &TcpStream) -> usize {
        let mut n: libc::c_int = 0;
        // SAFETY: a valid socket descriptor and an int for FIONREAD to fill.
        let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::FIONREAD, &mut n) };
        assert_eq!(rc, 0);
        n as usize
    }

    #[tokio::test]
    async fn frames_stream_in_with_few_large_reads_and_an_idle_connection_keeps_no_buffer() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut peer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (socket, _) = listener.accept().await.unwrap();
        let sent: Vec<u8> = (0..3 * READ_AHEAD).map(|i| (i % 251) as u8).collect();
        peer.write_all(&sent).await.unwrap();
        while queued(&socket) < sent.len() {
            socket.readable().await.unwrap();
            tokio::task::yield_now().await;
        }

        // The reader asks 4 KiB at a time, as the gateway's WebSocket does.
        let mut ahead = ReadAhead::default();
        let mut got = Vec::new();
        let mut socket_reads = 0;
        while got.len() < sent.len() {
            let before = queued(&socket);
            let mut chunk = [0u8; 4096];
            let mut dst = ReadBuf::new(&mut chunk);
            ahead.read(&socket, &mut dst).unwrap();
            got.extend_from_slice(dst.filled());
            if queued(&socket) < before {
                socket_reads += 1;
            }
        }
        assert_eq!(got, sent, "bytes handed out in order, none lost");
        // One 4 KiB read, then READ_AHEAD at a time: 5, where 4 KiB reads took 48.
        assert!(
            socket_reads <= 5,
            "{socket_reads} socket reads for 3 frames"
        );

        // Nothing more comes: the read finds nothing, and the buffer is let go.
        let mut chunk = [0u8; 4096];
        let err = ahead
            .read(&socket, &mut ReadBuf::new(&mut chunk))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(
            ahead.buf.capacity(),
            0,
            "an idle connection holds no buffer"
        );
    }
}

//! The worker's socket, shared by tungstenite and the writer task's own framing of binary
//! messages.
//!
//! tungstenite writes a client's message in two passes over its payload (a copy into its
//! write buffer, then masking in place), after the caller built the message (a third). Once a
//! [`FrameWriter`] is taken, the writer task frames binary messages itself: the WebSocket
//! header goes into the one buffer the socket is written from, and the payload is copied and
//! masked into it in the same pass (bench/NOTES.md, "The worker's passes per body byte").
//! tungstenite keeps the handshake, reading, pings, pongs and the closing handshake; what it
//! writes is appended to the same buffer whole, so its frames and the writer's never
//! interleave mid-frame. Before a [`FrameWriter`] is taken (the handshake) and under TLS
//! (whose records the writer cannot build) the socket is tungstenite's alone.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Waker};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Past this many bytes waiting in the buffer, the writer waits for the socket before it
/// frames another message (tungstenite's `write_buffer_size` did the same).
pub const WRITE_BUFFER: usize = 128 * 1024;

/// The most waiting bytes moved (to the buffer's start, or into a larger one) to make room
/// for a frame; past it the writer waits until the socket has taken them (a move is one
/// more pass over them).
pub const MOVE_MAX: usize = 4 * 1024;

/// The longest header of a masked frame: 2 bytes, an 8-byte length, a 4-byte mask.
const MAX_HEADER: usize = 14;

/// A socket's read half and its write half, whose writes can be shared with a
/// [`FrameWriter`]. The halves are apart so that reading never waits for the writer's lock
/// (the writer holds it while it copies a payload).
///
/// ```
/// use tokio::io::AsyncReadExt;
/// use vyx_core::transport::Wire;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let mut io = Wire::new(&b"hello"[..], tokio::io::sink());
/// let mut got = String::new();
/// io.read_to_string(&mut got).await.unwrap(); // reads pass straight through
/// assert_eq!(got, "hello");
/// # });
/// ```
pub struct Wire<R, W> {
    read: R,
    write: Arc<Mutex<Shared<W>>>,
}

/// The writer task's handle on a [`Wire`]: frames binary messages into its buffer and
/// writes it out. See [`Wire::frame_writer`].
pub struct FrameWriter<S>(Arc<Mutex<Shared<S>>>);

struct Shared<S> {
    io: S,
    /// Whole frames not yet written, tungstenite's and the writer's, in order.
    out: BytesMut,
    /// A [`FrameWriter`] was taken: tungstenite's writes are appended to `out`.
    shared: bool,
    /// The writer task once it has run: woken to write what tungstenite appended, and the
    /// task any write to `io` registers (only one task may wait on a socket's write side).
    writer: Option<Waker>,
}

impl<R, W> Wire<R, W> {
    pub fn new(read: R, write: W) -> Wire<R, W> {
        let write = Arc::new(Mutex::new(Shared {
            io: write,
            out: BytesMut::new(),
            shared: false,
            writer: None,
        }));
        Wire { read, write }
    }

    /// Makes the writer task the socket's only writer: from now on tungstenite's writes are
    /// queued in the shared buffer and the writer writes them, between its own messages.
    pub fn frame_writer(&self) -> FrameWriter<W> {
        lock(&self.write).shared = true;
        FrameWriter(self.write.clone())
    }
}

fn lock<S>(shared: &Mutex<Shared<S>>) -> MutexGuard<'_, Shared<S>> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

impl<S: AsyncWrite + Unpin> Shared<S> {
    /// The calling task is the writer.
    fn register(&mut self, cx: &Context<'_>) {
        if !self
            .writer
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            self.writer = Some(cx.waker().clone());
        }
    }

    /// Writes `out` until it is empty or the socket is full. Readiness wakes the writer task
    /// once there is one, whoever called.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.writer.clone() {
            Some(writer) => self.poll_write_out(&mut Context::from_waker(&writer)),
            None => self.poll_write_out(cx),
        }
    }

    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            match ready!(Pin::new(&mut self.io).poll_write(cx, &self.out))? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                n => self.out.advance(n),
            }
        }
        // Empty: the next frame starts at the allocation's beginning, nothing moved.
        self.out.clear();
        Poll::Ready(Ok(()))
    }
}

impl<R: AsyncRead + Unpin, W> AsyncRead for Wire<R, W> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().read).poll_read(cx, buf)
    }
}

impl<R, W: AsyncWrite + Unpin> AsyncWrite for Wire<R, W> {
    /// tungstenite's writes: straight to the socket while it is tungstenite's alone; else
    /// taken whole into the shared buffer (tungstenite writes whole frames) for the writer.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut st = lock(&self.write);
        if !st.shared {
            return Pin::new(&mut st.io).poll_write(cx, buf);
        }
        // Taken whole, so that what tungstenite holds back never splits a frame.
        st.out.extend_from_slice(buf);
        match &st.writer {
            Some(writer) => writer.wake_by_ref(),
            // The writer has not run yet; it writes what is left when it does.
            None => {
                if let Poll::Ready(Err(e)) = st.poll_drain(cx) {
                    return Poll::Ready(Err(e));
                }
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = lock(&self.write);
        ready!(st.poll_drain(cx))?;
        Pin::new(&mut st.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = lock(&self.write);
        ready!(st.poll_drain(cx))?;
        Pin::new(&mut st.io).poll_shutdown(cx)
    }
}

impl<S: AsyncWrite + Unpin> FrameWriter<S> {
    /// Frames `parts`, concatenated, as one masked binary message (RFC 6455 §5.2, FIN set)
    /// in the shared buffer; the flush (tungstenite's, through the [`Wire`]) writes it. Waits
    /// for the socket first while [`WRITE_BUFFER`] bytes or more are waiting, or when
    /// making room would move more than [`MOVE_MAX`] waiting bytes.
    pub fn poll_send_binary(
        &self,
        cx: &mut Context<'_>,
        parts: &[&[u8]],
        mask: [u8; 4],
    ) -> Poll<io::Result<()>> {
        let mut st = lock(&self.0);
        st.register(cx);
        let need = MAX_HEADER + parts.iter().map(|p| p.len()).sum::<usize>();
        let room = st.out.capacity() - st.out.len();
        if st.out.len() >= WRITE_BUFFER || (room < need && st.out.len() > MOVE_MAX) {
            ready!(st.poll_drain(cx))?;
        }
        if need > MOVE_MAX && st.out.capacity() - st.out.len() < need {
            // Room for the frames behind this one too, up to WRITE_BUFFER: they then leave
            // in one write with it (moving at most MOVE_MAX waiting bytes).
            st.out.reserve(need + WRITE_BUFFER);
        }
        put_masked_binary(&mut st.out, parts, mask);
        Poll::Ready(Ok(()))
    }

    /// For a writer with nothing of its own to write: writes what tungstenite appended (a
    /// pong, a close answer) as the socket takes it. Pending unless the socket failed.
    pub fn poll_idle(&self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let mut st = lock(&self.0);
        st.register(cx);
        match st.poll_drain(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(e),
            _ => Poll::Pending,
        }
    }
}

/// Appends to `out` a masked binary frame whose payload is `parts` concatenated: the
/// header, then each part copied and masked in one pass.
///
/// ```
/// use bytes::BytesMut;
/// let mut out = BytesMut::new();
/// vyx_core::transport::put_masked_binary(&mut out, &[b"ab", b"c"], [1, 2, 3, 4]);
/// assert_eq!(&out[..], [0x82, 0x83, 1, 2, 3, 4, b'a' ^ 1, b'b' ^ 2, b'c' ^ 3]);
/// ```
pub fn put_masked_binary(out: &mut BytesMut, parts: &[&[u8]], mask: [u8; 4]) {
    const FIN_BINARY: u8 = 0x82;
    const MASKED: u8 = 0x80;
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.reserve(MAX_HEADER + len);
    out.put_u8(FIN_BINARY);
    if len < 126 {
        out.put_u8(MASKED | len as u8);
    } else if len <= u16::MAX as usize {
        out.put_u8(MASKED | 126);
        out.put_u16(len as u16);
    } else {
        out.put_u8(MASKED | 127);
        out.put_u64(len as u64);
    }
    out.put_slice(&mask);
    let mut at = 0;
    for part in parts {
        // Reserved above: each part is written once, masked, into the spare capacity.
        let spare = &mut out.spare_capacity_mut()[..part.len()];
        // The mask goes on where the previous part left it.
        copy_masked(part, spare, rotate(mask, at));
        // SAFETY: `copy_masked` initialised the `part.len()` bytes past the length.
        unsafe { out.set_len(out.len() + part.len()) };
        at += part.len();
    }
}

/// The mask as seen from payload offset `at`.
fn rotate(mask: [u8; 4], at: usize) -> [u8; 4] {
    let i = at % 4;
    [
        mask[i],
        mask[(i + 1) % 4],
        mask[(i + 2) % 4],
        mask[(i + 3) % 4],
    ]
}

/// `dst[i] = src[i] ^ mask[i % 4]`, eight bytes at a time (which LLVM vectorises).
fn copy_masked(src: &[u8], dst: &mut [std::mem::MaybeUninit<u8>], mask: [u8; 4]) {
    debug_assert_eq!(src.len(), dst.len());
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut src_words = src.chunks_exact(8);
    let mut dst_words = dst.chunks_exact_mut(8);
    for (s, d) in (&mut src_words).zip(&mut dst_words) {
        let word = u64::from_ne_bytes(s.try_into().expect("chunks of 8")) ^ wide;
        for (d, b) in d.iter_mut().zip(word.to_ne_bytes()) {
            d.write(b);
        }
    }
    // The tail starts at a multiple of 8, so at mask[0].
    for (i, (s, d)) in src_words
        .remainder()
        .iter()
        .zip(dst_words.into_remainder())
        .enumerate()
    {
        d.write(s ^ mask[i & 3]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(parts: &[&[u8]], mask: [u8; 4]) -> Vec<u8> {
        let mut out = BytesMut::new();
        put_masked_binary(&mut out, parts, mask);
        out.to_vec()
    }

    #[test]
    fn frames_are_those_tungstenite_writes() {
        use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
        use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        // Every length encoding (7-bit, 16-bit, 64-bit) and every tail length.
        for len in [
            0,
            1,
            7,
            8,
            9,
            125,
            126,
            127,
            65_535,
            65_536,
            65_536 + 6,
            70_001,
        ] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let header = FrameHeader {
                opcode: OpCode::Data(Data::Binary),
                mask: Some(mask),
                ..FrameHeader::default()
            };
            let mut theirs = Vec::new();
            Frame::from_payload(header, payload.clone().into())
                .format(&mut theirs)
                .unwrap();
            assert_eq!(masked(&[&payload], mask), theirs, "length {len}");
            // In parts, as a DATA frame's header and payload are, split anywhere.
            for at in [0, 1, 2, 3, 6, len / 2, len] {
                let at = at.min(len);
                let (a, b) = payload.split_at(at);
                assert_eq!(masked(&[a, b], mask), theirs, "length {len} split at {at}");
            }
        }
    }
}

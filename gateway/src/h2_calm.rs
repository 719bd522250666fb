//! A bound on the HTTP/2 control frames a client may send: each SETTINGS and each PING
//! draws a reply from h2, which has no limit of its own (it answers one at a time, so memory
//! is bounded, but 100,000 SETTINGS drew 900 KB of ACKs). Like nginx, Envoy and Go's
//! server, the gateway ends such a connection: GOAWAY `ENHANCE_YOUR_CALM`, then a close.
//!
//! A PING that follows response HEADERS or DATA the gateway wrote since the client's
//! previous PING is not counted: grpc-go's clients measure bandwidth with a PING each time
//! response data arrives (its BDP estimator), hundreds a second on a busy connection, and
//! grpc-go's own server lets such pings through the same way (its ping strikes are reset
//! when it sends headers or data). A client can then draw at most one PING reply per
//! frame of response it is sent, beyond the allowance.
//!
//! The count is taken on the bytes, below hyper: the socket is wrapped, the client's frame
//! headers are read as they pass (the preface tells HTTP/2 from HTTP/1, which passes
//! untouched), and the server's own frames are followed too, so that the GOAWAY goes out
//! between two of h2's frames, never inside one.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::debug;

use crate::Shared;

/// How fast a connection's allowance of control frames refills, per second: far above what
/// a client's keep-alive or bandwidth probes need.
pub const REFILL_PER_SEC: f64 = 10.0;

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const ACK: u8 = 0x1;
const ENHANCE_YOUR_CALM: u32 = 0xb;
/// What is read and dropped after the GOAWAY, so that the close is a FIN and not a reset
/// that would discard the GOAWAY from the client's receive buffer.
const DRAIN_AFTER_GOAWAY: usize = 64 << 10;

/// Follows the frame boundaries of one direction of an HTTP/2 connection.
#[derive(Default)]
struct Frames {
    header: [u8; 9],
    have: usize,
    /// Payload bytes of the current frame still to come.
    skip: usize,
}

impl Frames {
    /// Walks `data`; `on_header(header, at)` for each complete frame header, `at` being
    /// where in `data` that frame starts (0 if it began in an earlier piece). A `false`
    /// from it stops the walk there and returns that `at`.
    fn walk(
        &mut self,
        data: &[u8],
        mut on_header: impl FnMut(&[u8; 9], usize) -> bool,
    ) -> Option<usize> {
        let mut i = 0;
        while i < data.len() {
            if self.skip > 0 {
                let n = self.skip.min(data.len() - i);
                self.skip -= n;
                i += n;
                continue;
            }
            let start = i.saturating_sub(self.have);
            let n = (9 - self.have).min(data.len() - i);
            self.header[self.have..self.have + n].copy_from_slice(&data[i..i + n]);
            self.have += n;
            i += n;
            if self.have == 9 {
                self.have = 0;
                self.skip = usize::from(self.header[0]) << 16
                    | usize::from(self.header[1]) << 8
                    | usize::from(self.header[2]);
                if !on_header(&self.header, start) {
                    return Some(start);
                }
            }
        }
        None
    }

    fn at_boundary(&self) -> bool {
        self.have == 0 && self.skip == 0
    }

    /// Bytes that may be written before the current frame is complete (its header first).
    fn left_in_frame(&self) -> usize {
        if self.have > 0 {
            9 - self.have
        } else {
            self.skip
        }
    }
}

enum Mode {
    /// This many bytes of the HTTP/2 preface seen so far.
    Preface(usize),
    H2,
    /// Not HTTP/2: nothing is looked at.
    Other,
}

/// The socket of one client connection, with the control-frame bound.
pub struct H2Calm<T> {
    inner: T,
    mode: Mode,
    read: Frames,
    write: Frames,
    tokens: f64,
    cap: f64,
    refilled: Instant,
    last_stream: u32,
    /// The gateway wrote HEADERS or DATA since the client's last PING: the next one is free.
    answered: bool,
    /// Set once the bound is crossed: the GOAWAY and how much of it is written.
    goaway: Option<(Vec<u8>, usize)>,
    shared: Arc<Shared>,
}

impl<T> H2Calm<T> {
    /// The socket, for a connection upgraded to a worker WebSocket (HTTP/1 only: nothing
    /// of it is held here).
    pub fn into_inner(self) -> T {
        self.inner
    }

    pub fn new(inner: T, shared: Arc<Shared>) -> H2Calm<T> {
        let cap = f64::from(shared.config.h2_control_frames);
        H2Calm {
            inner,
            mode: Mode::Preface(0),
            read: Frames::default(),
            write: Frames::default(),
            tokens: cap,
            cap,
            refilled: Instant::now(),
            last_stream: 0,
            answered: false,
            goaway: None,
            shared,
        }
    }

    /// Looks at what the client sent; `Some(n)`: only the first `n` bytes may reach h2,
    /// the rest starts the frame that crossed the bound.
    fn inspect(&mut self, mut data: &[u8]) -> Option<usize> {
        let mut offset = 0;
        if let Mode::Preface(seen) = self.mode {
            let n = (PREFACE.len() - seen).min(data.len());
            if data[..n] != PREFACE[seen..seen + n] {
                self.mode = Mode::Other;
                return None;
            }
            self.mode = if seen + n == PREFACE.len() {
                Mode::H2
            } else {
                Mode::Preface(seen + n)
            };
            data = &data[n..];
            offset = n;
        }
        if !matches!(self.mode, Mode::H2) {
            return None;
        }
        let (tokens, cap, refilled, last_stream, answered) = (
            &mut self.tokens,
            self.cap,
            &mut self.refilled,
            &mut self.last_stream,
            &mut self.answered,
        );
        let cut = self.read.walk(data, |h, _| {
            let (kind, flags) = (h[3], h[4]);
            if kind == HEADERS {
                let id = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                *last_stream = (*last_stream).max(id);
            }
            if !matches!(kind, SETTINGS | PING) || flags & ACK != 0 {
                return true;
            }
            if kind == PING && std::mem::take(answered) {
                return true;
            }
            let now = Instant::now();
            let refill = now.duration_since(*refilled).as_secs_f64() * REFILL_PER_SEC;
            *tokens = (*tokens + refill).min(cap);
            *refilled = now;
            if *tokens < 1.0 {
                return false;
            }
            *tokens -= 1.0;
            true
        })?;
        self.trip();
        Some(offset + cut)
    }

    fn trip(&mut self) {
        debug!(
            limit = self.cap,
            "HTTP/2 control frame flood (SETTINGS/PING); GOAWAY ENHANCE_YOUR_CALM"
        );
        self.shared.metrics.client_error("h2_control_flood");
        let why = b"too many SETTINGS or PING frames";
        let mut f = Vec::with_capacity(17 + why.len());
        f.extend_from_slice(&((8 + why.len()) as u32).to_be_bytes()[1..]);
        f.extend_from_slice(&[GOAWAY, 0, 0, 0, 0, 0]);
        f.extend_from_slice(&self.last_stream.to_be_bytes());
        f.extend_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
        f.extend_from_slice(why);
        self.goaway = Some((f, 0));
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> H2Calm<T> {
    /// Once the bound is crossed: waits for h2's frame in progress to be written, writes
    /// the GOAWAY, drains a little of what the client still sent, and ends the connection
    /// with an error (hyper then drops it).
    fn poll_goaway(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.write.at_boundary() {
            // h2 is still writing a frame: it polls the write side until it is out.
            return Poll::Pending;
        }
        let Some((frame, sent)) = &mut self.goaway else {
            return Poll::Ready(Ok(()));
        };
        while *sent < frame.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &frame[*sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *sent += n;
        }
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        let mut scratch = [0u8; 4096];
        let mut drained = 0;
        while drained < DRAIN_AFTER_GOAWAY {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => drained += buf.filled().len(),
                _ => break,
            }
        }
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "HTTP/2 control frame flood",
        )))
    }

    fn tripped(&self) -> bool {
        self.goaway.is_some()
    }

    /// Follows what the gateway wrote, noting response HEADERS and DATA.
    fn wrote(&mut self, data: &[u8]) {
        let answered = &mut self.answered;
        self.write.walk(data, |h, _| {
            *answered |= matches!(h[3], DATA | HEADERS);
            true
        });
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for H2Calm<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.tripped() {
            return this.poll_goaway(cx);
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if matches!(this.mode, Mode::Other) {
            return Poll::Ready(Ok(()));
        }
        match this.inspect(&buf.filled()[before..]) {
            None => Poll::Ready(Ok(())),
            Some(0) => {
                buf.set_filled(before);
                this.poll_goaway(cx)
            }
            Some(keep) => {
                // h2 gets the frames before the one that crossed the bound; its next read
                // finds the connection ending.
                buf.set_filled(before + keep);
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for H2Calm<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !matches!(this.mode, Mode::H2) {
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        if this.tripped() {
            if this.write.at_boundary() {
                ready!(this.poll_goaway(cx))?;
                return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
            }
            // The rest of h2's frame in progress, and no more.
            let room = this.write.left_in_frame().min(data.len());
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &data[..room]))?;
            this.write.walk(&data[..n], |_, _| true);
            if this.write.at_boundary() {
                // The GOAWAY can go now: make sure someone polls for it.
                cx.waker().wake_by_ref();
            }
            return Poll::Ready(Ok(n));
        }
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, data))?;
        this.wrote(&data[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !matches!(this.mode, Mode::H2) {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        if this.tripped() {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            return Pin::new(this).poll_write(cx, first);
        }
        let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        let mut left = n;
        for b in bufs {
            if left == 0 {
                break;
            }
            let take = left.min(b.len());
            this.wrote(&b[..take]);
            left -= take;
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn frames_are_followed_across_any_split() {
        let mut bytes = frame(SETTINGS, 0, 0, &[0; 6]);
        bytes.extend(frame(HEADERS, 4, 1, &[1, 2, 3]));
        bytes.extend(frame(PING, 0, 0, &[0; 8]));
        for split in 0..bytes.len() {
            let mut f = Frames::default();
            let mut seen = Vec::new();
            let (a, b) = bytes.split_at(split);
            f.walk(a, |h, _| {
                seen.push(h[3]);
                true
            });
            f.walk(b, |h, _| {
                seen.push(h[3]);
                true
            });
            assert_eq!(seen, [SETTINGS, HEADERS, PING], "split at {split}");
            assert!(f.at_boundary());
        }
        let mut f = Frames::default();
        let cut = f.walk(&bytes, |h, _| h[3] != PING);
        assert_eq!(cut, Some(9 + 6 + 9 + 3));
    }
}

//! Noticing an HTTP/1 client that left while its response was still on its way, when the
//! operator allows half-closes (`client_half_close`; off by default, when hyper itself
//! reads the socket while a request is in flight and a FIN or reset ends it at once).
//!
//! With half-closes allowed (a client may send its request, then its FIN, and still read
//! the answer), hyper stops reading the socket once a request is in and a client that
//! closed outright is noticed only at the next write. A response that stalls (a long poll,
//! a stream waiting on its worker) would then hold its worker's stream until
//! `timeouts.body_idle`. So a stalled response body looks at the socket now and then: a FIN
//! that arrives after the response has begun means the client is gone, and the body fails,
//! which closes the connection and RESETs the worker's stream. A FIN that was already there
//! when the response began is a half-close, and that client keeps its answer.

use std::future::Future;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// How often a stalled response looks at its client's socket.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// Watches one HTTP/1 connection's socket while its response body waits for the worker.
pub struct ClientEof {
    fd: RawFd,
    state: State,
}

enum State {
    /// The body has not waited yet: the first look tells a half-close from a departure.
    Unseen,
    Watching(Pin<Box<Sleep>>),
    /// The client had half-closed before its response began: it is never cut.
    HalfClosed,
}

impl ClientEof {
    /// `fd` is the connection's socket, open for as long as hyper polls its response body.
    pub fn new(fd: RawFd) -> ClientEof {
        ClientEof {
            fd,
            state: State::Unseen,
        }
    }

    /// Called when the response body is pending: ready once the client has gone; otherwise
    /// a wakeup is set for the next look.
    pub fn poll_gone(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match &mut self.state {
                State::HalfClosed => return Poll::Pending,
                State::Unseen => {
                    self.state = if peer_closed(self.fd) {
                        State::HalfClosed
                    } else {
                        State::Watching(Box::pin(tokio::time::sleep(LOOK_EVERY)))
                    };
                }
                State::Watching(next) => {
                    ready!(next.as_mut().poll(cx));
                    if peer_closed(self.fd) {
                        return Poll::Ready(());
                    }
                    next.as_mut().reset(Instant::now() + LOOK_EVERY);
                }
            }
        }
    }
}

/// Whether the peer has sent its FIN (or reset the connection), without reading anything:
/// a pipelined request waiting in the socket counts as open.
fn peer_closed(fd: RawFd) -> bool {
    peek(fd) == Peeked::Closed
}

/// What waits on a socket, looked at without reading it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Peeked {
    /// Input not yet read.
    Data,
    /// The peer's FIN, or a reset.
    Closed,
    Nothing,
}

/// Looks at `fd`'s input without taking it; `fd` is a socket open for the call.
pub(crate) fn peek(fd: RawFd) -> Peeked {
    let mut byte = 0u8;
    // SAFETY: a one-byte buffer we own; the caller keeps `fd` open for the call.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => Peeked::Closed,
        n if n > 0 => Peeked::Data,
        _ => match std::io::Error::last_os_error().kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Peeked::Nothing,
            _ => Peeked::Closed,
        },
    }
}

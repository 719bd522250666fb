//! The TCP socket under a worker connection, kept aside so that a connection the gateway has
//! given up on can be dropped at once, whatever is still queued for the peer (§7).

use std::os::fd::{BorrowedFd, RawFd};
use std::time::Duration;

/// A second handle on the connection's socket (a duplicated descriptor: the socket closes
/// when both are gone).
pub struct SocketHandle(Option<socket2::Socket>);

impl SocketHandle {
    /// A handle on the socket behind `fd`, which must be open for the duration of the call:
    /// the descriptor of the connection whose request is being answered (none if it cannot
    /// be duplicated).
    pub fn of(fd: RawFd) -> SocketHandle {
        // SAFETY: the caller passes the descriptor of the TCP connection it is serving a
        // request on; hyper holds that connection open until the answer is written.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        SocketHandle(fd.try_clone_to_owned().ok().map(socket2::Socket::from))
    }

    /// Makes the socket's close a reset: what the kernel still holds for a peer that does
    /// not read is discarded instead of being kept, with the connection, until it gives up.
    pub fn reset_on_close(&self) {
        if let Some(s) = &self.0 {
            let _ = s.set_linger(Some(Duration::ZERO));
        }
    }
}

//! The TCP socket under a worker connection, kept aside so that a connection the gateway has
//! given up on can be dropped at once, whatever is still queued for the peer (§7).

use std::os::fd::AsFd;
use std::time::Duration;

use tokio::net::TcpStream;

/// A second handle on the connection's socket (a duplicated descriptor: the socket closes
/// when both are gone).
pub struct SocketHandle(Option<socket2::Socket>);

impl SocketHandle {
    /// A handle on `tcp`'s socket (none if the descriptor cannot be duplicated).
    pub fn of(tcp: &TcpStream) -> SocketHandle {
        SocketHandle(
            tcp.as_fd()
                .try_clone_to_owned()
                .ok()
                .map(socket2::Socket::from),
        )
    }

    /// No handle: the connection closes the ordinary way only.
    pub fn none() -> SocketHandle {
        SocketHandle(None)
    }

    /// Makes the socket's close a reset: what the kernel still holds for a peer that does
    /// not read is discarded instead of being kept, with the connection, until it gives up.
    pub fn reset_on_close(&self) {
        if let Some(s) = &self.0 {
            let _ = s.set_linger(Some(Duration::ZERO));
        }
    }
}

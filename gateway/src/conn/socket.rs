//! The TCP socket under a worker connection, kept aside so that a connection the gateway has
//! given up on can be dropped at once, whatever is still queued for the peer (§7).

use std::net::Shutdown;
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

    /// Closes as nginx's lingering close does, once the close frame is written: a FIN after
    /// it, then whatever the peer still sends is read and dropped until it closes too, for at
    /// most `wait` (then a reset). Closing a socket with unread data resets it at once, and
    /// the reset can overtake the close frame: a worker still writing a frame the gateway
    /// refused (4006 mid-frame) would see "connection reset" instead of the reason.
    pub async fn lingering_close(&self, wait: Duration) {
        let Some(dup) = self.0.as_ref().and_then(|s| s.try_clone().ok()) else {
            return;
        };
        if dup.shutdown(Shutdown::Write).is_err() {
            return;
        }
        // The descriptor shares the connection's file description, already non-blocking.
        let Ok(tcp) = tokio::net::TcpStream::from_std(std::net::TcpStream::from(dup)) else {
            return;
        };
        let mut sink = vec![0u8; 64 << 10];
        let drained = tokio::time::timeout(wait, async {
            loop {
                if tcp.readable().await.is_err() {
                    return;
                }
                match tcp.try_read(&mut sink) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
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

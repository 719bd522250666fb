//! The kernel's view of a test's TCP socket, for the gateway's tests that count segments or
//! queued bytes. Not in `common`: the Rust SDK's tests include that module and have no `libc`.

/// The kernel's `TCP_INFO` for `sock`: segment counts, send-queue bytes.
pub fn tcp_info(sock: &tokio::net::TcpStream) -> libc::tcp_info {
    use std::os::fd::AsRawFd;
    // SAFETY: all-zero is a valid `tcp_info` (plain integers).
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` and `len` are ours and sized for TCP_INFO; `sock` is an open socket.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(r, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info
}

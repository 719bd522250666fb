//! Upgraded connections (PROTOCOL.md §4.5, HOSTS.md §7a) the way hyper offers them: a
//! handler of an upgrade request takes [`on`] from it, answers `101 Switching Protocols`,
//! and the [`OnUpgrade`] future then yields an [`Upgraded`] byte stream to the client
//! (`AsyncRead` + `AsyncWrite`), on which a WebSocket library runs unchanged. A tower
//! service behind [`WorkerBuilder::service`](crate::WorkerBuilder::service) takes hyper's own
//! upgrade instead: `hyper::upgrade::on`, and so axum's `WebSocketUpgrade`, work there.
//!
//! ```no_run
//! use vyx::{IntoResponse, Request, Response, StatusCode};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! async fn ws(mut req: Request) -> Response {
//!     let Some(on) = vyx::upgrade::on(&mut req) else {
//!         return StatusCode::UPGRADE_REQUIRED.into_response();
//!     };
//!     tokio::spawn(async move {
//!         let Ok(mut io) = on.await else { return };
//!         let mut buf = [0u8; 1024];
//!         while let Ok(n @ 1..) = io.read(&mut buf).await {
//!             if io.write_all(&buf[..n]).await.is_err() { break }
//!         }
//!     });
//!     Response::builder()
//!         .status(StatusCode::SWITCHING_PROTOCOLS)
//!         .header("upgrade", "websocket")
//!         .body(vyx::Body::empty())
//! }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::sync::oneshot;

use crate::request::Request;

// The core's byte pipe, the one every Rust host hands out.
pub use vyx_core::session::Upgraded;

/// The upgraded connection once the handler's 101 has been sent, or why there is none (the
/// handler answered another status, or the stream ended first).
pub struct OnUpgrade(pub(crate) oneshot::Receiver<Upgraded>);

impl Future for OnUpgrade {
    type Output = Result<Upgraded, crate::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(ready!(Pin::new(&mut self.0).poll(cx)).map_err(|_| {
            crate::Error::other("no upgrade: the handler did not answer 101, or the stream ended")
        }))
    }
}

/// The upgrade of `req`, if the client asked for one (a WebSocket handshake, over HTTP/1.1
/// or HTTP/2): `None` for any other request, or when it was taken already.
pub fn on(req: &mut Request) -> Option<OnUpgrade> {
    req.take_upgrade().map(OnUpgrade)
}

impl std::fmt::Debug for OnUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnUpgrade").finish_non_exhaustive()
    }
}

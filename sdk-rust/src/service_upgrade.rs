//! Upgrades for tower services (an axum `Router`, a hyper service) behind
//! [`WorkerBuilder::service`](crate::WorkerBuilder::service): such a service takes the
//! connection with `hyper::upgrade::on` (axum's `WebSocketUpgrade` does), which looks for
//! hyper's own `OnUpgrade` in the request's extensions, and only hyper's server can make one.
//!
//! So an upgrade request (only those: ordinary requests go straight to the service) is first
//! shown to a real hyper HTTP/1.1 server connection over an in-memory pipe, as a stand-in
//! head; hyper hands over the request's `OnUpgrade`, which goes into the request the service
//! is called with. When the service answers 101, hyper is told to switch too, and once the
//! worker's own 101 has gone to the gateway the pipe is joined to the stream's byte pipe:
//! the service's upgraded connection is the client's. Any other answer goes to the client as
//! an ordinary response, and the pipe is dropped.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio::sync::oneshot;

use crate::body::Body;
use crate::upgrade::Upgraded;

/// What hyper's connection is shown: an HTTP/1.1 upgrade head. Nothing of it reaches the
/// service, which gets the gateway's request.
const STAND_IN_HEAD: &[u8] =
    b"GET / HTTP/1.1\r\nhost: vyx\r\nconnection: upgrade\r\nupgrade: vyx\r\n\r\n";

/// Each direction of the in-memory pipe holds at most this much; the stream's window holds
/// the rest back.
const PIPE_BUFFER: usize = 64 * 1024;

/// The client's bytes are read into the pipe this much at a time.
const COPY_BUFFER: usize = 16 * 1024;

/// An upgrade request made ready for a tower service, until the service has answered.
pub(crate) struct ServiceUpgrade {
    pipe: DuplexStream,
    /// Tells hyper's connection to switch (sent) or to give up (dropped).
    switch: oneshot::Sender<()>,
    /// The stream's byte pipe, once the worker's 101 is out.
    upgraded: oneshot::Receiver<Upgraded>,
}

impl ServiceUpgrade {
    /// Puts hyper's `OnUpgrade` into `req` and presents `req` as what the gateway sent: an
    /// HTTP/1.1 upgrade (an HTTP/2 client's extended CONNECT too, PROTOCOL.md §4.5) without
    /// a body before the switch.
    pub(crate) async fn prepare(
        req: &mut http::Request<Body>,
        upgraded: oneshot::Receiver<Upgraded>,
    ) -> io::Result<ServiceUpgrade> {
        let (mut pipe, hyper_side) = tokio::io::duplex(PIPE_BUFFER);
        let (on_tx, on_rx) = oneshot::channel();
        let (switch, switch_rx) = oneshot::channel();
        let handoff = Handoff(Mutex::new(Some((on_tx, switch_rx))));
        let conn = hyper::server::conn::http1::Builder::new()
            // No timer here: the stand-in head is written at once.
            .header_read_timeout(None)
            .serve_connection(TokioIo::new(hyper_side), handoff)
            .with_upgrades();
        // It ends with the switch, or with an error when the service refused: ignored.
        tokio::spawn(conn);
        pipe.write_all(STAND_IN_HEAD).await?;
        let on = on_rx
            .await
            .map_err(|_| io::Error::other("hyper did not take the stand-in head"))?;
        req.extensions_mut().insert(on);
        *req.version_mut() = http::Version::HTTP_11;
        *req.body_mut() = Body::empty();
        Ok(ServiceUpgrade {
            pipe,
            switch,
            upgraded,
        })
    }

    /// The service answered `status`: on 101, hyper switches and the service's connection
    /// is joined to the client's once the worker's 101 is out.
    pub(crate) fn answered(self, status: StatusCode) {
        if status != StatusCode::SWITCHING_PROTOCOLS {
            return;
        }
        let ServiceUpgrade {
            pipe,
            switch,
            upgraded,
        } = self;
        let _ = switch.send(());
        tokio::spawn(async move {
            let Ok(client) = upgraded.await else {
                return; // the 101 was not sent: the service's side reads EOF
            };
            let mut service = BufReader::new(pipe);
            if skip_head(&mut service).await.is_ok() {
                join(service, client).await;
            }
        });
    }
}

/// Copies each way until its end, which half-closes the other side, and ends when both
/// have ended, or at once when either fails (the client vanished) or when the service, its
/// side ended, has let go of its connection altogether, as a socket closed behind hyper's own
/// server: dropping the stream's pipe then refuses what the client still sends.
async fn join(service: BufReader<DuplexStream>, client: Upgraded) {
    let (mut service_r, mut service_w) = tokio::io::split(service);
    let (mut client_r, mut client_w) = tokio::io::split(client);
    let (ended_tx, mut ended_rx) = oneshot::channel::<()>();
    let to_client = async move {
        tokio::io::copy(&mut service_r, &mut client_w).await?;
        client_w.shutdown().await?;
        let _ = ended_tx.send(());
        io::Result::Ok(())
    };
    let to_service = async move {
        let mut buf = vec![0u8; COPY_BUFFER];
        let mut watching = true;
        loop {
            tokio::select! {
                _ = &mut ended_rx, if watching => {
                    watching = false;
                    // An empty write fails only once the service's side is dropped.
                    let written = service_w.write(&[]).await?;
                    debug_assert_eq!(written, 0);
                }
                n = client_r.read(&mut buf) => match n? {
                    0 => return service_w.shutdown().await,
                    n => service_w.write_all(&buf[..n]).await?,
                },
            }
        }
    };
    tokio::pin!(to_client, to_service);
    let (mut to_client_open, mut to_service_open) = (true, true);
    while to_client_open || to_service_open {
        let done = tokio::select! {
            done = &mut to_client, if to_client_open => { to_client_open = false; done }
            done = &mut to_service, if to_service_open => { to_service_open = false; done }
        };
        if let Err(e) = done {
            tracing::debug!(error = %e, "upgraded connection ended");
            return;
        }
    }
}

/// Reads past hyper's own 101 head, written for the service's side only (the client got
/// the worker's).
async fn skip_head(pipe: &mut BufReader<DuplexStream>) -> io::Result<()> {
    let mut line = Vec::new();
    loop {
        line.clear();
        if pipe.read_until(b'\n', &mut line).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if line == b"\r\n" {
            return Ok(());
        }
    }
}

/// hyper's side of the pipe: hands out the request's `OnUpgrade`, then answers 101 when
/// told to, or fails (closing hyper's connection) when the service did not switch.
struct Handoff(Mutex<Option<(oneshot::Sender<OnUpgrade>, oneshot::Receiver<()>)>>);

type HandoffFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<Empty<Bytes>>, io::Error>> + Send>>;

impl hyper::service::Service<http::Request<Incoming>> for Handoff {
    type Response = http::Response<Empty<Bytes>>;
    type Error = io::Error;
    type Future = HandoffFuture;

    fn call(&self, mut req: http::Request<Incoming>) -> Self::Future {
        let taken = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        Box::pin(async move {
            let (on_tx, switch) = taken.ok_or_else(|| io::Error::other("one request only"))?;
            if let Some(on) = req.extensions_mut().remove::<OnUpgrade>() {
                let _ = on_tx.send(on);
            }
            switch
                .await
                .map_err(|_| io::Error::other("the service did not switch"))?;
            let mut res = http::Response::new(Empty::new());
            *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            Ok(res)
        })
    }
}

//! Upgraded client connections carried over a worker stream (PROTOCOL.md §4.5): which
//! requests ask for a switch, the head the worker sees, the client's answer to a 101, and
//! the byte pipe between the client's connection and the stream afterwards.
//!
//! The gateway never parses what flows once the switch is made: a WebSocket's frames, pings
//! and message sizes are the business of the libraries at either end. It moves bytes under
//! the stream's windows, turns a half-close on one side into one on the other, and ends
//! the pipe when either side fails or nothing has moved for `timeouts.upgrade_idle`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, UPGRADE};
use http::{Method, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;
use vyx_core::error::ResetCode;
use vyx_core::flow::{window_update_due, SendWindow};
use vyx_core::frame::Window;
use vyx_core::limits::MAX_DATA_CHUNK;
use vyx_core::transport::Outgoing;

use crate::body::{GatewayBody, StreamGuard};
use crate::conn::{Failure, ResponseHead, WorkerConn};
use crate::conn_limit::ActiveRequest;

/// What a client asked to switch to, and how.
pub enum Asked {
    /// HTTP/1.1 `Upgrade`: the client's `upgrade` value goes to the worker as sent.
    Http1(HeaderValue),
    /// HTTP/2 extended CONNECT with `:protocol: websocket` (RFC 8441): presented to the
    /// worker as the HTTP/1.1 handshake.
    ExtendedConnect,
    /// Extended CONNECT for another protocol: 501, nothing maps it onto HTTP/1.1.
    OtherProtocol,
}

impl Asked {
    /// Whether (and how) a request asks to switch protocols. An `upgrade` that names only
    /// `h2c` is about the client's own connection and is not forwarded (§4.5).
    pub fn of<B>(req: &http::Request<B>) -> Option<Asked> {
        if req.method() == Method::CONNECT {
            let protocol = req.extensions().get::<hyper::ext::Protocol>()?;
            return Some(if protocol.as_str().eq_ignore_ascii_case("websocket") {
                Asked::ExtendedConnect
            } else {
                Asked::OtherProtocol
            });
        }
        if req.version() != http::Version::HTTP_11 {
            return None;
        }
        let connection_upgrade = req.headers().get_all(CONNECTION).iter().any(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
        });
        let value = req.headers().get(UPGRADE)?;
        let only_h2c = value
            .as_bytes()
            .split(|&b| b == b',')
            .all(|t| t.trim_ascii().eq_ignore_ascii_case(b"h2c"));
        (connection_upgrade && !only_h2c).then(|| Asked::Http1(value.clone()))
    }

    /// The method the request is routed and framed with: an extended CONNECT is the
    /// WebSocket handshake's `GET` (RFC 8441 §5).
    pub fn method<'a>(this: Option<&Asked>, method: &'a Method) -> &'a str {
        match this {
            Some(Asked::ExtendedConnect) => "GET",
            _ => method.as_str(),
        }
    }

    /// Why the gateway itself refuses the upgrade, if it does: bytes before the switch would
    /// have no frame to go in, and only WebSocket maps extended CONNECT onto HTTP/1.1.
    pub fn refusal(&self, body_declared: bool) -> Option<(StatusCode, &'static str)> {
        match self {
            Asked::OtherProtocol => Some((
                StatusCode::NOT_IMPLEMENTED,
                "extended CONNECT is carried for the websocket protocol only",
            )),
            // An extended CONNECT's stream is the tunnel itself: its DATA comes after the 200.
            Asked::Http1(_) if body_declared => Some((
                StatusCode::BAD_REQUEST,
                "an upgrade request cannot carry a body",
            )),
            _ => None,
        }
    }

    /// The hop-by-hop headers the worker needs to see the upgrade, and for extended
    /// CONNECT the `sec-websocket-key` RFC 8441 does without and WebSocket servers require.
    pub fn worker_headers(&self) -> Vec<(&'static [u8], Vec<u8>)> {
        let mut h: Vec<(&'static [u8], Vec<u8>)> = vec![(b"connection", b"upgrade".to_vec())];
        match self {
            Asked::Http1(value) => h.push((b"upgrade", value.as_bytes().to_vec())),
            Asked::ExtendedConnect => {
                h.push((b"upgrade", b"websocket".to_vec()));
                let key = tokio_tungstenite::tungstenite::handshake::client::generate_key();
                h.push((b"sec-websocket-key", key.into_bytes()));
            }
            Asked::OtherProtocol => {}
        }
        h
    }
}

/// The 501 for a worker whose connection did not negotiate `upgrade`.
pub const NOT_TAKEN: &str =
    "the worker does not take upgrades (WebSocket): its SDK did not offer the upgrade feature";

/// The stream as the pipe needs it once the worker has answered.
pub struct Piped {
    /// Over HTTP/2, the connection's count of open requests: a tunnel keeps the client's
    /// connection from being closed as idle (`timeouts.header_read`).
    pub active: Option<ActiveRequest>,
    pub guard: StreamGuard,
    pub body: mpsc::UnboundedReceiver<Result<Bytes, Failure>>,
    pub recv_credit: Arc<AtomicI64>,
    pub send: Arc<SendWindow<Failure>>,
}

/// The client's answer to a worker's 101, the pipe started behind it: `101 Switching
/// Protocols` with `connection: upgrade` and the worker's `upgrade` (else the request's)
/// over HTTP/1.1, `200` without `sec-websocket-accept` over HTTP/2 (RFC 8441 §5).
/// `headers` are the worker's end-to-end headers, hop-by-hop ones already removed.
pub fn switch(
    asked: &Asked,
    worker_upgrade: Option<HeaderValue>,
    mut headers: http::HeaderMap,
    piped: Piped,
    on_upgrade: OnUpgrade,
    idle: Duration,
) -> Response<GatewayBody> {
    let mut resp = Response::new(GatewayBody::empty());
    headers.remove(http::header::CONTENT_LENGTH);
    match asked {
        Asked::Http1(requested) => {
            *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(UPGRADE, worker_upgrade.unwrap_or_else(|| requested.clone()));
        }
        _ => {
            *resp.status_mut() = StatusCode::OK;
            headers.remove(SEC_WEBSOCKET_ACCEPT);
        }
    }
    *resp.headers_mut() = headers;
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => pipe(TokioIo::new(upgraded), piped, idle).await,
            // The client left before hyper handed the connection on; the guard RESETs.
            Err(e) => debug!(error = %e, "client upgrade failed"),
        }
    });
    resp
}

/// A refused upgrade is an ordinary response: the request direction ends here, as the
/// client sent no body (§4.5).
pub fn refused(conn: Arc<WorkerConn>, id: u32) {
    tokio::spawn(async move {
        if conn.send_data(id, true, &[]).await {
            conn.request_sent(id);
        }
    });
}

/// How one direction of the pipe ended.
enum End {
    /// A half-close, passed on: the other direction goes on.
    Half,
    /// A failure or an abort: the pipe ends.
    Abort,
}

/// Moves bytes both ways until both directions have ended, either fails, or nothing has
/// moved for `idle`. Dropping the guard at the end RESETs (`cancel`) a stream still open.
async fn pipe<Io: AsyncRead + AsyncWrite + Send + 'static>(io: Io, piped: Piped, idle: Duration) {
    let Piped {
        active: _active,
        guard,
        body,
        recv_credit,
        send,
    } = piped;
    let (rd, wr) = tokio::io::split(io);
    let started = Instant::now();
    let moved = AtomicU64::new(0);
    let touch = || moved.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
    let up = to_worker(rd, &guard, &send, touch);
    let down = to_client(wr, &guard, body, &recv_credit, touch);
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        let idle_until = started + Duration::from_millis(moved.load(Ordering::Relaxed)) + idle;
        tokio::select! {
            end = &mut up, if !up_done => match end {
                End::Half => up_done = true,
                End::Abort => break,
            },
            end = &mut down, if !down_done => match end {
                End::Half => down_done = true,
                End::Abort => break,
            },
            _ = tokio::time::sleep_until(idle_until) => {
                let last = started + Duration::from_millis(moved.load(Ordering::Relaxed));
                if last + idle <= Instant::now() {
                    debug!(stream = guard.id, "upgraded connection idle past timeouts.upgrade_idle; reset");
                    guard.conn.cancel_stream(guard.id, ResetCode::Timeout, "upgraded connection idle");
                    break;
                }
            }
        }
    }
}

/// The client's bytes to the worker as DATA within the stream's window; the client's
/// half-close as END_STREAM.
async fn to_worker(
    mut rd: impl AsyncRead + Unpin,
    guard: &StreamGuard,
    send: &SendWindow<Failure>,
    touch: impl Fn(),
) -> End {
    let (conn, id) = (&guard.conn, guard.id);
    let mut buf = vec![0u8; MAX_DATA_CHUNK];
    loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) => {
                if conn.send_data(id, true, &[]).await {
                    conn.request_sent(id);
                }
                return End::Half;
            }
            Ok(n) => n,
            Err(e) => {
                debug!(stream = id, error = %e, "upgraded client connection failed");
                conn.cancel_stream(id, ResetCode::Cancel, "client connection failed");
                return End::Abort;
            }
        };
        touch();
        let mut data = Bytes::copy_from_slice(&buf[..n]);
        conn.bytes_to_worker.inc_by(n as u64);
        while !data.is_empty() {
            let Ok(k) = send.reserve(data.len()).await else {
                return End::Abort;
            };
            if !conn.send_data(id, false, &data.split_to(k)).await {
                return End::Abort;
            }
        }
    }
}

/// The worker's DATA to the client, granting credit back as the client takes it; the
/// worker's END_STREAM as the client connection's half-close, its RESET (or the
/// connection's loss) as the pipe's end.
async fn to_client(
    mut wr: impl AsyncWrite + Unpin,
    guard: &StreamGuard,
    mut body: mpsc::UnboundedReceiver<Result<Bytes, Failure>>,
    credit: &AtomicI64,
    touch: impl Fn(),
) -> End {
    let initial_window = guard.conn.initial_window;
    let mut unacked: u32 = 0;
    loop {
        match body.recv().await {
            Some(Ok(data)) => {
                if wr.write_all(&data).await.is_err() || wr.flush().await.is_err() {
                    guard.conn.cancel_stream(
                        guard.id,
                        ResetCode::Cancel,
                        "client connection failed",
                    );
                    return End::Abort;
                }
                touch();
                unacked += data.len() as u32;
                if window_update_due(unacked, initial_window) {
                    let inc = std::mem::take(&mut unacked);
                    credit.fetch_add(i64::from(inc), Ordering::AcqRel);
                    let window = Window {
                        stream_id: guard.id,
                        increment: inc,
                    };
                    guard.conn.send(Outgoing::Frame(window.encode()));
                }
            }
            None => {
                let _ = wr.shutdown().await;
                return End::Half;
            }
            Some(Err(f)) => {
                debug!(stream = guard.id, failure = ?f, "upgraded stream ended by the worker side; client connection closed");
                return End::Abort;
            }
        }
    }
}

/// The worker's `upgrade` on a 101, before hop-by-hop headers are removed from its head.
pub fn worker_upgrade(head: &ResponseHead) -> Option<HeaderValue> {
    head.headers
        .iter()
        .find(|(n, _)| &n[..] == b"upgrade")
        .and_then(|(_, v)| HeaderValue::from_bytes(v).ok())
}

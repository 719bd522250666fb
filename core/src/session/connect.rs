//! Dialing the gateway: the upgrade request with credentials and subprotocol, then
//! HELLO → WELCOME.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};

use super::{WorkerConfig, WsStream};
use crate::error::CloseCode;
use crate::frame::Frame;
use crate::handshake::{
    Hello, Welcome, PROTOCOL_VERSION, REGISTER_PATH, SUBPROTOCOL, WORKER_ID_HEADER,
};
use crate::limits::{HANDSHAKE_TIMEOUT, MAX_FRAME_SIZE};
use crate::transport::{truncate_reason, websocket_config, ReadAhead, Wire};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// Why a connection attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The gateway refused the credentials (HTTP 401/403 before the upgrade).
    #[error("gateway refused the credentials of worker {worker_id:?}: HTTP {status}: {reason}")]
    Unauthorized {
        worker_id: String,
        status: u16,
        reason: String,
    },
    /// The URL answered the upgrade with HTTP 404: nothing there registers workers (a
    /// wrong path, or not a vyx gateway).
    #[error("no vyx registration endpoint at {url}: HTTP 404: {reason}")]
    NoEndpoint { url: String, reason: String },
    /// The gateway refused the upgrade request itself (HTTP 400: no `vyx.1`, a bad worker
    /// id header, ...), or answered 101 without selecting `vyx.1`. Sending the same request
    /// again cannot help.
    #[error("gateway rejected the registration request: {0}")]
    Rejected(String),
    /// The registration request cannot be built from this configuration.
    #[error("invalid registration request: {0}")]
    Invalid(String),
    /// The gateway closed the handshake with a protocol close code.
    #[error("gateway refused the worker: {code}: {reason}")]
    Refused { code: CloseCode, reason: String },
    /// Anything that may go away by itself: refused connection, timeout, 5xx, ...
    #[error("{0}")]
    Transient(String),
}

impl ConnectError {
    /// Whether retrying cannot help until a configuration changes.
    pub fn is_permanent(&self) -> bool {
        match self {
            ConnectError::Unauthorized { .. }
            | ConnectError::NoEndpoint { .. }
            | ConnectError::Rejected(_)
            | ConnectError::Invalid(_) => true,
            ConnectError::Refused { code, .. } => code.is_permanent(),
            ConnectError::Transient(_) => false,
        }
    }
}

/// The URL a worker dials (spec/PROTOCOL.md §2.1): a URL whose path is empty or `/` gets
/// `/_vyx/register` (`ws://host:port` → `ws://host:port/_vyx/register`, a query kept after
/// it); a URL with any other path is dialled as given.
pub fn registration_url(connect: &str) -> String {
    let after_scheme = connect.find("://").map_or(0, |i| i + 3);
    let authority_end = connect[after_scheme..]
        .find(['/', '?', '#'])
        .map_or(connect.len(), |i| after_scheme + i);
    let (head, tail) = connect.split_at(authority_end);
    let path_end = tail.find(['?', '#']).unwrap_or(tail.len());
    match &tail[..path_end] {
        "" | "/" => format!("{head}{REGISTER_PATH}{}", &tail[path_end..]),
        _ => connect.to_string(),
    }
}

/// Dials, upgrades and sends HELLO, then waits for WELCOME: one registration attempt.
#[cfg(test)]
pub(crate) async fn connect(
    cfg: &WorkerConfig,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
) -> Result<(WsStream, Welcome), ConnectError> {
    let target = super::resolve::Target::parse(&cfg.connect[0]).unwrap();
    let addr = cfg.resolver.addresses(&target).await.unwrap()[0];
    let ws = dial(cfg, &target.url, addr, tls).await?;
    welcome(ws, cfg).await
}

/// The first half of a registration attempt: TCP to `addr`, TLS, the upgrade of `url`, and
/// HELLO sent. The URL's host stays the TLS server name and the `Host` header whatever
/// address is dialled. Until it returns, the gateway knows nothing of this worker and the
/// attempt may be dropped.
pub(crate) async fn dial(
    cfg: &WorkerConfig,
    url: &str,
    addr: SocketAddr,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
) -> Result<WsStream, ConnectError> {
    let url = url.to_owned();
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| ConnectError::Invalid(format!("gateway URL {url:?}: {e}")))?;
    let headers = req.headers_mut();
    headers.insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    let id = HeaderValue::from_str(&cfg.worker_id).map_err(|_| {
        ConnectError::Invalid(format!(
            "worker id {:?} cannot be sent in a header",
            cfg.worker_id
        ))
    })?;
    headers.insert(WORKER_ID_HEADER, id);
    if let Some(token) = &cfg.token {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            ConnectError::Invalid("token holds characters a header cannot carry".into())
        })?;
        headers.insert("authorization", value);
    }

    let upgrade = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(tungstenite::Error::Io)?;
        tcp.set_nodelay(true).map_err(tungstenite::Error::Io)?;
        let (read, write) = tcp.into_split();
        tokio_tungstenite::client_async_tls_with_config(
            req,
            Wire::new(ReadAhead::new(read), write),
            Some(websocket_config()),
            tls.map(tokio_tungstenite::Connector::Rustls),
        )
        .await
    };
    let (mut ws, _resp) = match tokio::time::timeout(cfg.connect_timeout, upgrade).await {
        Err(_) => {
            return Err(ConnectError::Transient(format!(
                "no answer from {url} within {:?}",
                cfg.connect_timeout
            )))
        }
        Ok(Err(tungstenite::Error::Http(resp))) => {
            let status = resp.status().as_u16();
            let reason = resp
                .body()
                .as_deref()
                .map(http_reason)
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| resp.status().canonical_reason().unwrap_or("").to_string());
            return Err(match status {
                401 | 403 => ConnectError::Unauthorized {
                    worker_id: cfg.worker_id.clone(),
                    status,
                    reason,
                },
                404 => ConnectError::NoEndpoint { url, reason },
                400 => ConnectError::Rejected(format!("HTTP 400: {reason}")),
                _ => ConnectError::Transient(format!("gateway answered HTTP {status}: {reason}")),
            });
        }
        Ok(Err(tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::SecWebSocketSubProtocolError(e),
        ))) => {
            return Err(ConnectError::Rejected(format!(
                "the 101 answer does not select {SUBPROTOCOL}: {e}"
            )))
        }
        Ok(Err(e)) => {
            return Err(ConnectError::Transient(format!(
                "cannot reach {url} at {addr}: {e}"
            )))
        }
        Ok(Ok(ok)) => ok,
    };

    let hello = Frame::Hello(Hello {
        protocol: PROTOCOL_VERSION,
        worker_id: cfg.worker_id.clone(),
        instance: cfg.instance.clone(),
        sdk: cfg.sdk.clone(),
        max_concurrency: cfg.max_concurrency,
        routes: cfg.routes.clone(),
        labels: cfg.labels.clone(),
        features: cfg.features.names(),
    });
    ws.send(Message::Binary(hello.encode()))
        .await
        .map_err(|e| ConnectError::Transient(format!("sending HELLO failed: {e}")))?;
    Ok(ws)
}

/// The second half: WELCOME (or the gateway's refusal) after HELLO, within
/// [`HANDSHAKE_TIMEOUT`].
pub(crate) async fn welcome(
    mut ws: WsStream,
    cfg: &WorkerConfig,
) -> Result<(WsStream, Welcome), ConnectError> {
    let mut error_message = None;
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    loop {
        let msg = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => {
                let why = format!("no WELCOME within {HANDSHAKE_TIMEOUT:?}");
                close(&mut ws, CloseCode::HandshakeTimeout, &why).await;
                return Err(ConnectError::Transient(why));
            }
            Ok(None) => {
                return Err(ConnectError::Transient(
                    "gateway closed during the handshake".into(),
                ))
            }
            Ok(Some(Err(e))) => {
                return Err(ConnectError::Transient(format!("handshake failed: {e}")))
            }
            Ok(Some(Ok(m))) => m,
        };
        match msg {
            Message::Binary(b) => match Frame::decode(b, MAX_FRAME_SIZE) {
                Ok(Frame::Welcome(w)) => {
                    if let Err(e) = w.validate(cfg.max_concurrency, &cfg.features.names()) {
                        close(&mut ws, e.code, &e.message).await;
                        return Err(match e.code {
                            CloseCode::UnsupportedVersion => ConnectError::Refused {
                                code: e.code,
                                reason: e.message,
                            },
                            _ => ConnectError::Transient(e.message),
                        });
                    }
                    return Ok((ws, w));
                }
                Ok(Frame::Error(e)) => error_message = Some(e),
                Ok(other) => {
                    let why = format!("expected WELCOME, got {}", other.name());
                    close(&mut ws, CloseCode::ProtocolViolation, &why).await;
                    return Err(ConnectError::Transient(why));
                }
                Err(e) => {
                    let why = format!("invalid WELCOME: {e}");
                    close(&mut ws, e.close_code(), &why).await;
                    return Err(ConnectError::Transient(why));
                }
            },
            Message::Close(frame) => {
                let (code, reason) = match frame {
                    Some(f) => (u16::from(f.code), f.reason.to_string()),
                    None => (1005, String::new()),
                };
                // The ERROR frame carries the full message; the close reason may be cut.
                let reason = error_message.map(|e| e.message).unwrap_or(reason);
                return Err(match CloseCode::from_u16(code) {
                    Some(code) => ConnectError::Refused { code, reason },
                    None => ConnectError::Transient(format!(
                        "gateway closed the handshake with {code}: {reason}"
                    )),
                });
            }
            _ => {}
        }
    }
}

/// Closes the handshake with `code` (best effort and bounded: the socket is dropped right
/// after, and a gateway that no longer reads must not hold the worker here).
async fn close(ws: &mut WsStream, code: CloseCode, why: &str) {
    let frame = CloseFrame {
        code: (code as u16).into(),
        reason: truncate_reason(why).into(),
    };
    let _ = tokio::time::timeout(CLOSE_WAIT, ws.close(Some(frame))).await;
}

/// How long a handshake close may take to reach the socket.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Longest part of a refusal's body kept in the error (gateways answer one short line).
const MAX_REASON_CHARS: usize = 300;

/// The plain-text body of a refused upgrade as one line, cut at [`MAX_REASON_CHARS`].
fn http_reason(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(MAX_REASON_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::WorkerConfig;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const WAIT: Duration = Duration::from_secs(20);

    /// Answers one upgrade request on 127.0.0.1 with `answer`, verbatim.
    async fn http_once(answer: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = sock.read(&mut buf).await.unwrap();
                assert!(n > 0, "request ended early");
                got.extend_from_slice(&buf[..n]);
            }
            sock.write_all(answer.as_bytes()).await.unwrap();
        });
        addr
    }

    async fn dial(addr: SocketAddr) -> ConnectError {
        let cfg = WorkerConfig::new(format!("ws://{addr}"), "t:w");
        match tokio::time::timeout(WAIT, connect(&cfg, None)).await {
            Ok(Err(e)) => e,
            Ok(Ok(_)) => panic!("connected"),
            Err(_) => panic!("no outcome in time"),
        }
    }

    #[tokio::test]
    async fn an_upgrade_answered_404_is_a_named_permanent_error_with_the_body() {
        let addr = http_once(
            "HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 8\r\nconnection: close\r\n\r\nno route",
        )
        .await;
        let e = dial(addr).await;
        assert!(
            matches!(&e, ConnectError::NoEndpoint { url, reason }
                if url.ends_with("/_vyx/register") && reason == "no route"),
            "{e:?}"
        );
        assert!(e.is_permanent());
    }

    #[tokio::test]
    async fn an_upgrade_answered_400_is_permanent_and_carries_the_reason() {
        let addr = http_once(
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 26\r\nconnection: close\r\n\r\nsubprotocol vyx.1 required",
        )
        .await;
        let e = dial(addr).await;
        assert!(e.is_permanent(), "{e:?}");
        assert!(e.to_string().contains("subprotocol vyx.1 required"), "{e}");
    }

    #[tokio::test]
    async fn an_upgrade_answered_503_is_retried() {
        let addr = http_once(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbusy",
        )
        .await;
        let e = dial(addr).await;
        assert!(!e.is_permanent(), "{e:?}");
    }

    #[allow(clippy::result_large_err)] // the callback type tungstenite asks for
    fn select_vyx(
        _: &tokio_tungstenite::tungstenite::handshake::server::Request,
        mut r: tokio_tungstenite::tungstenite::handshake::server::Response,
    ) -> Result<
        tokio_tungstenite::tungstenite::handshake::server::Response,
        tokio_tungstenite::tungstenite::handshake::server::ErrorResponse,
    > {
        r.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
        Ok(r)
    }

    /// A gateway that accepts the upgrade with `vyx.1`, reads HELLO, sends `welcome` and
    /// returns the close code the worker answers with.
    async fn gateway_sending(welcome: Welcome) -> (SocketAddr, tokio::task::JoinHandle<u16>) {
        gateway_sending_raw(Frame::Welcome(welcome).encode().to_vec()).await
    }

    /// [`gateway_sending`] with the WELCOME message's bytes as given.
    async fn gateway_sending_raw(welcome: Vec<u8>) -> (SocketAddr, tokio::task::JoinHandle<u16>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_hdr_async(sock, select_vyx)
                .await
                .unwrap();
            let hello = ws.next().await.unwrap().unwrap();
            assert!(matches!(hello, Message::Binary(_)));
            ws.send(Message::Binary(welcome.into())).await.unwrap();
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(Some(f)))) => return u16::from(f.code),
                    Some(Ok(_)) => {}
                    other => panic!("no close frame: {other:?}"),
                }
            }
        });
        (addr, task)
    }

    #[tokio::test]
    async fn a_101_that_does_not_select_vyx_1_is_permanent() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            // A plain WebSocket server: it ignores the offered subprotocols.
            let _ws = tokio_tungstenite::accept_async(sock).await;
        });
        let e = dial(addr).await;
        assert!(matches!(e, ConnectError::Rejected(_)), "{e:?}");
        assert!(e.is_permanent());
    }

    fn welcome() -> Welcome {
        Welcome {
            protocol: 1,
            gateway: "test".into(),
            connection_id: "c".into(),
            heartbeat_ms: 5000,
            initial_window: 262_144,
            max_frame_size: 1_048_576,
            max_concurrency: 8,
            connections: 1,
            features: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_welcome_announcing_another_frame_size_is_closed_4005_and_retried() {
        let (addr, gateway) = gateway_sending(Welcome {
            max_frame_size: 2 * 1_048_576,
            ..welcome()
        })
        .await;
        let e = dial(addr).await;
        assert!(!e.is_permanent(), "{e:?}");
        assert!(e.to_string().contains("max_frame_size"), "{e}");
        assert_eq!(
            tokio::time::timeout(WAIT, gateway).await.unwrap().unwrap(),
            4005
        );
    }

    #[tokio::test]
    async fn a_welcome_that_does_not_decode_is_closed_4005_and_retried() {
        let mut msg = vec![0x11, 0, 0, 0, 0, 0];
        msg.extend_from_slice(br#"{"protocol":1}"#);
        let (addr, gateway) = gateway_sending_raw(msg).await;
        let e = dial(addr).await;
        assert!(!e.is_permanent(), "{e:?}");
        assert_eq!(
            tokio::time::timeout(WAIT, gateway).await.unwrap().unwrap(),
            4005
        );
    }

    #[tokio::test]
    async fn a_welcome_of_another_protocol_is_closed_4002_and_permanent() {
        let (addr, gateway) = gateway_sending(Welcome {
            protocol: 2,
            ..welcome()
        })
        .await;
        let e = dial(addr).await;
        assert!(e.is_permanent(), "{e:?}");
        assert_eq!(
            tokio::time::timeout(WAIT, gateway).await.unwrap().unwrap(),
            4002
        );
    }

    #[test]
    fn registration_url_appends_the_path_only_when_there_is_none() {
        assert_eq!(
            registration_url("ws://127.0.0.1:9000"),
            "ws://127.0.0.1:9000/_vyx/register"
        );
        assert_eq!(
            registration_url("wss://gw.example/"),
            "wss://gw.example/_vyx/register"
        );
        assert_eq!(
            registration_url("ws://gw.example/custom/reg"),
            "ws://gw.example/custom/reg"
        );
        assert_eq!(
            registration_url("ws://gw.example:9000?region=eu"),
            "ws://gw.example:9000/_vyx/register?region=eu"
        );
        assert_eq!(
            registration_url("ws://gw.example/?a=1"),
            "ws://gw.example/_vyx/register?a=1"
        );
    }

    #[test]
    fn refusal_reasons_are_one_line_and_bounded() {
        assert_eq!(http_reason(b"worker id\r\n missing\n"), "worker id missing");
        let long = "é".repeat(1000);
        let r = http_reason(long.as_bytes());
        assert_eq!(r.chars().count(), MAX_REASON_CHARS + 1);
        assert!(r.ends_with('…'));
    }
}

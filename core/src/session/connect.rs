//! Dialing the gateway: the upgrade request with credentials and subprotocol, then
//! HELLO → WELCOME.

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
use crate::transport::{truncate_reason, websocket_config};
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
            ConnectError::Unauthorized { .. } | ConnectError::Invalid(_) => true,
            ConnectError::Refused { code, .. } => code.is_permanent(),
            ConnectError::Transient(_) => false,
        }
    }
}

/// `ws://host:port` → `ws://host:port/_vyx/register`; a URL with a path is kept as it is.
pub fn registration_url(connect: &str) -> String {
    let after_scheme = connect.find("://").map_or(0, |i| i + 3);
    match connect[after_scheme..].find('/') {
        Some(i) if after_scheme + i + 1 < connect.len() => connect.to_string(),
        Some(i) => format!("{}{REGISTER_PATH}", &connect[..after_scheme + i]),
        None => format!("{connect}{REGISTER_PATH}"),
    }
}

pub(crate) async fn connect(
    cfg: &WorkerConfig,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
) -> Result<(WsStream, Welcome), ConnectError> {
    let url = registration_url(&cfg.connect);
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

    let dial = tokio_tungstenite::connect_async_tls_with_config(
        req,
        Some(websocket_config()),
        true,
        tls.map(tokio_tungstenite::Connector::Rustls),
    );
    let (mut ws, _resp) = match tokio::time::timeout(cfg.connect_timeout, dial).await {
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
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).trim().to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| resp.status().canonical_reason().unwrap_or("").to_string());
            return Err(match status {
                401 | 403 => ConnectError::Unauthorized {
                    worker_id: cfg.worker_id.clone(),
                    status,
                    reason,
                },
                _ => ConnectError::Transient(format!("gateway answered HTTP {status}: {reason}")),
            });
        }
        Ok(Err(e)) => return Err(ConnectError::Transient(format!("cannot reach {url}: {e}"))),
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
    });
    ws.send(Message::Binary(hello.encode()))
        .await
        .map_err(|e| ConnectError::Transient(format!("sending HELLO failed: {e}")))?;

    let mut error_message = None;
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    loop {
        let msg = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => {
                return Err(ConnectError::Transient(format!(
                    "no WELCOME within {HANDSHAKE_TIMEOUT:?}"
                )))
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
                    if let Err(e) = check_welcome(&w, cfg.max_concurrency) {
                        let code = match &e {
                            ConnectError::Refused { code, .. } => *code,
                            _ => CloseCode::ProtocolViolation,
                        };
                        let _ = ws
                            .close(Some(CloseFrame {
                                code: (code as u16).into(),
                                reason: truncate_reason(&e.to_string()).into(),
                            }))
                            .await;
                        return Err(e);
                    }
                    return Ok((ws, w));
                }
                Ok(Frame::Error(e)) => error_message = Some(e),
                Ok(other) => {
                    return Err(ConnectError::Transient(format!(
                        "expected WELCOME, got {}",
                        other.name()
                    )))
                }
                Err(e) => return Err(ConnectError::Transient(format!("bad WELCOME: {e}"))),
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

/// How long a dial (TCP, TLS and upgrade) may take.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// WELCOME values a worker can live with (spec/PROTOCOL.md, "WELCOME").
fn check_welcome(w: &Welcome, asked: u32) -> Result<(), ConnectError> {
    let bad = |what: String| Err(ConnectError::Transient(format!("invalid WELCOME: {what}")));
    if w.protocol != PROTOCOL_VERSION {
        return Err(ConnectError::Refused {
            code: CloseCode::UnsupportedVersion,
            reason: format!("gateway speaks protocol {}", w.protocol),
        });
    }
    if w.heartbeat_ms == 0 {
        return bad("heartbeat_ms is 0".into());
    }
    if w.initial_window == 0 || w.initial_window > crate::limits::MAX_WINDOW {
        return bad(format!("initial_window {}", w.initial_window));
    }
    if (w.max_frame_size as usize) < 65_536 {
        return bad(format!("max_frame_size {}", w.max_frame_size));
    }
    if w.max_concurrency == 0 || w.max_concurrency > asked {
        return bad(format!(
            "max_concurrency {} (asked for {asked})",
            w.max_concurrency
        ));
    }
    Ok(())
}

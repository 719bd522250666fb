//! The registration endpoint: checks the upgrade request (WebSocket, subprotocol, worker
//! id, credentials) before any socket is held, then hands the upgraded socket to `conn`.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{
    HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::server::conn::auto::upgrade::downcast;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, warn};
use vyx_core::handshake::{is_worker_id, SUBPROTOCOL, WORKER_ID_HEADER};
use vyx_core::transport::websocket_config;

use crate::body::GatewayBody;
use crate::conn::SocketHandle;
use crate::server::ClientIo;
use crate::tls::ClientStream;
use crate::Shared;

fn refuse(status: StatusCode, message: String) -> Response<GatewayBody> {
    let mut resp = Response::new(GatewayBody::full(format!("{message}\n")));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn header_has_token(req: &Request<Incoming>, name: http::header::HeaderName, token: &str) -> bool {
    req.headers().get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// The registration request; `reserve` when it came on a connection past
/// `limits.max_connections` (see `conn_limit`).
pub fn register(
    mut req: Request<Incoming>,
    shared: Arc<Shared>,
    peer: SocketAddr,
    reserve: bool,
) -> Response<GatewayBody> {
    let is_upgrade = req.method() == http::Method::GET
        && header_has_token(&req, UPGRADE, "websocket")
        && header_has_token(&req, CONNECTION, "upgrade");
    if is_upgrade
        && req
            .headers()
            .get(SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v != "13")
    {
        // RFC 6455 §4.4: name the version this server speaks.
        let mut resp = refuse(
            StatusCode::UPGRADE_REQUIRED,
            "unsupported WebSocket version: this gateway speaks Sec-WebSocket-Version 13".into(),
        );
        resp.headers_mut()
            .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return resp;
    }
    let Some(key) = req
        .headers()
        .get(SEC_WEBSOCKET_KEY)
        .filter(|_| is_upgrade)
        .cloned()
    else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "expected a WebSocket upgrade (GET with Upgrade: websocket, Sec-WebSocket-Version: 13)"
                .into(),
        );
    };
    if !header_has_token(&req, SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL) {
        debug!(%peer, "upgrade without the vyx subprotocol");
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("missing WebSocket subprotocol {SUBPROTOCOL:?} in Sec-WebSocket-Protocol"),
        );
    }
    if req.headers().get_all(WORKER_ID_HEADER).iter().count() > 1 {
        return refuse(
            StatusCode::BAD_REQUEST,
            "X-Vyx-Worker-Id given more than once".into(),
        );
    }
    let worker_id = match req.headers().get(WORKER_ID_HEADER).map(|v| v.to_str()) {
        Some(Ok(id)) if is_worker_id(id) => id.to_string(),
        Some(_) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "invalid X-Vyx-Worker-Id: 1 to 128 characters of A-Z a-z 0-9 . _ : @ / -".into(),
            )
        }
        None => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "missing X-Vyx-Worker-Id header".into(),
            )
        }
    };
    let token = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::bearer_token);
    let admission = match shared.config.auth.admit(&worker_id, token, peer) {
        Ok(a) => a,
        Err(rejection) => {
            warn!(%worker_id, %peer, reason = rejection.reason(), "registration refused: {rejection}");
            shared.metrics.rejected(rejection.reason());
            let status = StatusCode::from_u16(rejection.status()).unwrap_or(StatusCode::FORBIDDEN);
            let mut resp = refuse(status, rejection.to_string());
            if status == StatusCode::UNAUTHORIZED {
                resp.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer"),
                );
            }
            return resp;
        }
    };

    // Past the cap, a worker connection may take only part of the reserve: it stays, and
    // the rest must keep answering /_vyx/health.
    let reserve_worker = match reserve {
        false => None,
        true => match shared.limiter.take_reserve_worker() {
            Some(w) => Some(w),
            None => {
                warn!(%worker_id, %peer, "registration refused: connection limit reached");
                shared.metrics.rejected("connection_limit");
                let mut resp = refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "connection limit reached (limits.max_connections): no room for another worker connection".into(),
                );
                resp.headers_mut()
                    .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
                return resp;
            }
        },
    };

    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let _reserve_worker = reserve_worker;
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => return debug!(error = %e, %peer, "upgrade failed"),
        };
        // The TCP stream itself, shared with the connection's task rather than duplicated: a
        // handle to drop it at once if the worker stops reading (§7), at one descriptor.
        let parts = match downcast::<ClientIo>(upgraded) {
            Ok(parts) => parts,
            Err(_) => return warn!(%peer, "upgraded connection of an unexpected type; dropped"),
        };
        // Copied out and dropped here: the `Bytes` is a view of hyper's whole read buffer
        // (8 KiB and up), which a field left in `parts` would keep for the connection's life.
        let read_ahead = parts.read_buf.to_vec();
        drop(parts.read_buf);
        let config = Some(websocket_config());
        // Each kind of socket's handshake and session on the heap, sized for that kind: the
        // task itself would hold the larger (TLS) one for every connection, and a gateway
        // holds thousands of mostly idle worker connections.
        match parts.io.into_inner().into_inner().into_inner().into_inner() {
            ClientStream::Plain(counted) => {
                let (tcp, slot) = counted.into_parts();
                let socket = SocketHandle::new(tcp, slot);
                Box::pin(async move {
                    let ws = WebSocketStream::from_partially_read(
                        socket.io(),
                        read_ahead,
                        Role::Server,
                        config,
                    )
                    .await;
                    crate::conn::serve(ws, shared, worker_id, admission, peer, socket).await;
                })
                .await;
            }
            ClientStream::Tls(tls) => {
                let (tls, socket) = *tls;
                Box::pin(async move {
                    let ws =
                        WebSocketStream::from_partially_read(tls, read_ahead, Role::Server, config)
                            .await;
                    crate::conn::serve(ws, shared, worker_id, admission, peer, socket).await;
                })
                .await;
            }
        }
    });

    let mut resp = Response::new(GatewayBody::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(
        SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
            .expect("base64 is a valid header value"),
    );
    h.insert(
        SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(SUBPROTOCOL),
    );
    resp
}

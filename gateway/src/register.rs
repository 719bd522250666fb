//! The registration endpoint: checks the upgrade request (WebSocket, subprotocol, worker
//! id, credentials) before any socket is held, then hands the upgraded socket to `conn`.

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;

use http::header::{
    HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, warn};
use vyx_core::handshake::{is_worker_id, SUBPROTOCOL, WORKER_ID_HEADER};
use vyx_core::transport::gateway_websocket_config;

use crate::body::GatewayBody;
use crate::conn::SocketHandle;
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

pub fn register(
    mut req: Request<Incoming>,
    shared: Arc<Shared>,
    peer: SocketAddr,
    fd: RawFd,
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

    // Taken now, while hyper holds the connection: a handle to drop it at once if the
    // worker stops reading (§7).
    let socket = SocketHandle::of(fd);
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(gateway_websocket_config()),
                )
                .await;
                crate::conn::serve(ws, shared, worker_id, admission, peer, socket).await;
            }
            Err(e) => debug!(error = %e, %peer, "upgrade failed"),
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

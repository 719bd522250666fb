//! `/_vyx/health`, `/_vyx/workers` and `/_vyx/metrics`; the last two behind the admin token
//! when one is configured.

use std::sync::atomic::Ordering;
use std::time::UNIX_EPOCH;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use serde::Serialize;

use http::Request;

use crate::body::GatewayBody;
use crate::metrics::ConnectionGauges;
use crate::Shared;

#[derive(Serialize)]
struct WorkerInfo {
    id: String,
    instance: String,
    connection_id: String,
    address: String,
    sdk: String,
    /// The protocol extensions the connection uses (§2.6).
    features: Vec<String>,
    routes: Vec<String>,
    in_flight: usize,
    /// Of `in_flight`, requests whose body is still streaming from the client (capped by
    /// `limits.streamed_upload_slots`).
    streamed_uploads: usize,
    max_concurrency: usize,
    draining: bool,
    /// Bytes queued for the worker and not yet handed to its socket.
    queued_bytes: usize,
    /// Unix time of registration, in milliseconds.
    since_ms: u64,
}

/// A worker id with no live connection whose routes still answer 503 (§2.4): listed by
/// `/_vyx/workers?include=lapsing`, after the connections.
#[derive(Serialize)]
struct LapsingInfo {
    id: String,
    lapsing: bool,
    routes: Vec<String>,
    /// Time left before the claims lapse.
    lapses_in_ms: u64,
}

fn json(status: StatusCode, value: &impl Serialize) -> Response<GatewayBody> {
    let mut resp = Response::new(GatewayBody::full(
        serde_json::to_vec(value).expect("admin JSON serializes"),
    ));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub fn health(shared: &Shared) -> Response<GatewayBody> {
    let shutting_down = shared.shutting_down.load(Ordering::Acquire);
    json(
        if shutting_down {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        },
        &serde_json::json!({
            "status": if shutting_down { "draining" } else { "ok" },
            "workers": shared.registry.connection_count(),
        }),
    )
}

/// The live connections; with `include=lapsing` in the query, then the worker ids whose
/// claims are lapsing. Without it the list is the connections only, as consumers that count
/// a worker's connections expect.
pub fn workers(shared: &Shared, query: Option<&str>) -> Response<GatewayBody> {
    let list: Vec<WorkerInfo> = shared
        .registry
        .connections()
        .iter()
        .map(|c| {
            let mut routes: Vec<String> = c.routes.load().keys().map(|k| k.to_string()).collect();
            routes.sort();
            WorkerInfo {
                id: c.worker_id.clone(),
                instance: c.instance.clone(),
                connection_id: c.connection_id.clone(),
                address: c.addr.to_string(),
                sdk: c.sdk.clone(),
                features: c.features.names(),
                routes,
                in_flight: c.in_flight.load(Ordering::Acquire),
                streamed_uploads: c.streamed_uploads.load(Ordering::Acquire),
                max_concurrency: c.max_concurrency,
                draining: c.draining.load(Ordering::Acquire),
                queued_bytes: c.queued_bytes(),
                since_ms: c
                    .since
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
            }
        })
        .collect();
    let with_lapsing = query.is_some_and(|q| q.split('&').any(|p| p == "include=lapsing"));
    if !with_lapsing {
        return json(StatusCode::OK, &list);
    }
    let mut all: Vec<serde_json::Value> = list
        .iter()
        .map(|w| serde_json::to_value(w).expect("admin JSON serializes"))
        .collect();
    all.extend(shared.registry.lapsing().into_iter().map(|l| {
        serde_json::to_value(LapsingInfo {
            id: l.worker_id,
            lapsing: true,
            routes: l.routes,
            lapses_in_ms: l.left.as_millis() as u64,
        })
        .expect("admin JSON serializes")
    }));
    json(StatusCode::OK, &all)
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<GatewayBody> {
    let mut resp = Response::new(GatewayBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// `None` when no admin token is configured or the request carries it; else the 401/403
/// answer with a sentence. A worker's token is refused by name: worker tokens authenticate
/// nothing else.
pub fn admin_refusal<B>(req: &Request<B>, shared: &Shared) -> Option<Response<GatewayBody>> {
    let expected = shared.config.admin_token.as_ref()?;
    let plain = "text/plain; charset=utf-8";
    let presented = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::bearer_token);
    match presented {
        None => {
            let mut resp = text(
                StatusCode::UNAUTHORIZED,
                plain,
                "this endpoint needs the admin token: send 'Authorization: Bearer <token>'\n"
                    .into(),
            );
            resp.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            );
            Some(resp)
        }
        Some(t) if expected.matches(t) => None,
        Some(t) if shared.config.auth.is_worker_token(t) => Some(text(
            StatusCode::FORBIDDEN,
            plain,
            "a worker token does not open admin endpoints; use the admin token\n".into(),
        )),
        Some(_) => Some(text(
            StatusCode::FORBIDDEN,
            plain,
            "invalid admin token\n".into(),
        )),
    }
}

pub fn metrics(shared: &Shared) -> Response<GatewayBody> {
    let conns = shared.registry.connections();
    let body = shared.metrics.encode(
        conns.iter().map(|c| ConnectionGauges {
            worker_id: c.worker_id.clone(),
            in_flight: c.in_flight.load(Ordering::Acquire),
            queued_bytes: c.queued_bytes(),
        }),
        shared.registry.worker_id_count(),
    );
    text(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        body,
    )
}

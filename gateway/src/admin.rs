//! `/_vyx/health`, `/_vyx/workers` and `/_vyx/metrics`; the last two behind the admin token
//! when one is configured. The dashboard (`ui`) shows the same readings.

use std::sync::atomic::Ordering;
use std::time::UNIX_EPOCH;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use serde::Serialize;

use http::Request;

use crate::body::GatewayBody;
use crate::conn::WorkerConn;
use crate::metrics::ConnectionGauges;
use crate::stopping::Phase;
use crate::Shared;

/// One live worker connection, as `/_vyx/workers` and the dashboard show it.
#[derive(Serialize)]
pub struct WorkerInfo {
    pub id: String,
    pub instance: String,
    pub connection_id: String,
    pub address: String,
    pub sdk: String,
    /// The protocol extensions the connection uses (§2.6).
    pub features: Vec<String>,
    pub routes: Vec<String>,
    /// Of `routes`, those the worker declared `idempotent` (§3.8): retried whatever the method.
    pub idempotent_routes: Vec<String>,
    pub in_flight: usize,
    /// Of `in_flight`, requests whose body is still streaming from the client (capped by
    /// `limits.streamed_upload_slots`).
    pub streamed_uploads: usize,
    pub max_concurrency: usize,
    pub draining: bool,
    /// Bytes queued for the worker and not yet handed to its socket.
    pub queued_bytes: usize,
    /// Unix time of registration, in milliseconds.
    pub since_ms: u64,
    /// The gateway shard serving the connection (see `shards`).
    pub shard: Option<usize>,
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

pub fn worker_info(c: &WorkerConn) -> WorkerInfo {
    let declared = c.routes.load();
    let mut routes: Vec<String> = declared.keys().map(|k| k.to_string()).collect();
    routes.sort();
    let mut idempotent_routes: Vec<String> = declared
        .iter()
        .filter(|(_, r)| r.idempotent)
        .map(|(k, _)| k.to_string())
        .collect();
    idempotent_routes.sort();
    WorkerInfo {
        id: c.worker_id.clone(),
        instance: c.instance.clone(),
        connection_id: c.connection_id.clone(),
        address: c.addr.to_string(),
        sdk: c.sdk.clone(),
        features: c.features.names(),
        routes,
        idempotent_routes,
        in_flight: c.in_flight.load(Ordering::Acquire),
        streamed_uploads: c.streamed_uploads.load(Ordering::Acquire),
        max_concurrency: c.max_concurrency,
        draining: c.draining.load(Ordering::Acquire),
        queued_bytes: c.queued_bytes(),
        since_ms: c
            .since
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        shard: c.shard,
    }
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

/// `/_vyx/health`: 503 once the gateway has stopped accepting (liveness, and readiness for
/// those who used it so); with `?ready` (readiness), 503 from the moment it was told to stop,
/// for all of `timeouts.readiness_delay` before that, and at the start until the declared
/// worker ids have a connection (`timeouts.startup_grace` at most; see `starting`).
pub fn health(shared: &Shared, query: Option<&str>) -> Response<GatewayBody> {
    let phase = *shared.phase.borrow();
    let readiness = query.is_some_and(|q| q.split('&').any(|p| p == "ready"));
    let started = shared
        .startup
        .ready(&shared.registry, &shared.config.declared_workers);
    let failing = match readiness {
        true => phase != Phase::Serving || !started,
        false => phase == Phase::Closing,
    };
    let status = match phase {
        Phase::Serving if !started => "starting",
        Phase::Serving => "ok",
        Phase::Leaving => "stopping",
        Phase::Closing => "draining",
    };
    json(
        match failing {
            true => StatusCode::SERVICE_UNAVAILABLE,
            false => StatusCode::OK,
        },
        &serde_json::json!({
            "status": status,
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
        .map(|c| worker_info(c))
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

pub fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<GatewayBody> {
    let mut resp = Response::new(GatewayBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Why a presented admin token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    /// A worker's token: worker tokens authenticate nothing else.
    WorkerToken,
    Invalid,
}

impl Refusal {
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::Missing => StatusCode::UNAUTHORIZED,
            Refusal::WorkerToken | Refusal::Invalid => StatusCode::FORBIDDEN,
        }
    }
}

/// `Ok` when no admin token is configured or `presented` is it: the one rule for every
/// admin endpoint, whether the token comes in a header or the dashboard's sign-in form.
pub fn check_admin_token(shared: &Shared, presented: Option<&str>) -> Result<(), Refusal> {
    let Some(expected) = shared.config.admin_token.as_ref() else {
        return Ok(());
    };
    match presented {
        None => Err(Refusal::Missing),
        Some(t) if expected.matches(t) => Ok(()),
        Some(t) if shared.config.auth.is_worker_token(t) => Err(Refusal::WorkerToken),
        Some(_) => Err(Refusal::Invalid),
    }
}

/// The token of an `Authorization: Bearer` header.
pub fn bearer<B>(req: &Request<B>) -> Option<&str> {
    req.headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::bearer_token)
}

/// `None` when no admin token is configured or the request carries it; else the 401/403
/// answer with a sentence. A worker's token is refused by name.
pub fn admin_refusal<B>(req: &Request<B>, shared: &Shared) -> Option<Response<GatewayBody>> {
    let refusal = check_admin_token(shared, bearer(req)).err()?;
    Some(refused(refusal))
}

/// The 401/403 answer to a request without the admin token, with a sentence.
pub fn refused(refusal: Refusal) -> Response<GatewayBody> {
    let message = match refusal {
        Refusal::Missing => {
            "this endpoint needs the admin token: send 'Authorization: Bearer <token>'\n"
        }
        Refusal::WorkerToken => {
            "a worker token does not open admin endpoints; use the admin token\n"
        }
        Refusal::Invalid => "invalid admin token\n",
    };
    let mut resp = text(
        refusal.status(),
        "text/plain; charset=utf-8",
        message.into(),
    );
    if refusal == Refusal::Missing {
        resp.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer"),
        );
    }
    resp
}

pub fn metrics(shared: &Shared) -> Response<GatewayBody> {
    text(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        exposition(shared),
    )
}

/// The metrics' text exposition, with the gauges read from the live connections now.
pub fn exposition(shared: &Shared) -> String {
    let conns = shared.registry.connections();
    shared.metrics.set_alive_tasks(shared.shards.alive_tasks());
    let mut processes = std::collections::HashSet::new();
    shared.metrics.encode(
        conns.iter().map(|c| ConnectionGauges {
            worker_id: c.worker_id.clone(),
            in_flight: c.in_flight.load(Ordering::Acquire),
            queued_bytes: c.queued_bytes(),
            // A worker process's connections share its `max_concurrency`: counted once.
            capacity: if processes.insert(c.process()) {
                c.max_concurrency
            } else {
                0
            },
        }),
        shared.registry.worker_id_count(),
    )
}

//! `/_vyx/health` and `/_vyx/workers`.

use std::sync::atomic::Ordering;
use std::time::UNIX_EPOCH;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use serde::Serialize;

use crate::body::GatewayBody;
use crate::Shared;

#[derive(Serialize)]
struct WorkerInfo {
    id: String,
    instance: String,
    connection_id: String,
    address: String,
    sdk: String,
    routes: Vec<String>,
    in_flight: usize,
    max_concurrency: usize,
    draining: bool,
    /// Unix time of registration, in milliseconds.
    since_ms: u64,
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

pub fn workers(shared: &Shared) -> Response<GatewayBody> {
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
                routes,
                in_flight: c.in_flight.load(Ordering::Acquire),
                max_concurrency: c.max_concurrency,
                draining: c.draining.load(Ordering::Acquire),
                since_ms: c
                    .since
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
            }
        })
        .collect();
    json(StatusCode::OK, &list)
}

//! `bench-shapes` only: the same synthetic request heads crossing into JS in the shapes
//! `bench/node/batch-shape.js` compares: the packed buffer the binding uses, one
//! `#[napi(object)]` per request, and one JSON string per batch.

use bytes::Bytes;
use napi::bindgen_prelude::Buffer;
use napi_derive::napi;

use crate::batch::{put_slot, put_str, put_u32};

/// A request head as a plain JS object.
#[napi(object)]
pub struct HeadObject {
    pub slot: f64,
    pub route_id: u32,
    pub method: String,
    pub target: String,
    /// `[name, value, ...]`
    pub params: Vec<String>,
    /// `[name, value, ...]`
    pub headers: Vec<String>,
}

/// What wrk sends to the hello route, as the core hands it over.
struct Head {
    method: Bytes,
    target: Bytes,
    params: Vec<(Bytes, Bytes)>,
    headers: Vec<(Bytes, Bytes)>,
}

fn synthetic() -> Head {
    let b = |s: &'static str| Bytes::from_static(s.as_bytes());
    Head {
        method: b("GET"),
        target: b("/node/hello/world"),
        params: vec![(b("name"), b("world"))],
        headers: vec![
            (b("host"), b("127.0.0.1:9000")),
            (b("user-agent"), b("wrk/4.2.0")),
            (b("accept"), b("*/*")),
            (b("x-forwarded-for"), b("127.0.0.1")),
            (b("x-forwarded-proto"), b("http")),
            (b("x-request-id"), b("604010833d7a3139")),
        ],
    }
}

/// `n` heads packed as `next_batch` packs them (no resets, no states).
#[napi]
pub fn bench_packed(n: u32) -> Buffer {
    let head = synthetic();
    let mut out = Vec::with_capacity(n as usize * 160 + 12);
    put_u32(&mut out, n as usize);
    for slot in 0..u64::from(n) {
        put_slot(&mut out, slot);
        put_u32(&mut out, 0);
        put_str(&mut out, &head.method);
        put_str(&mut out, &head.target);
        put_u32(&mut out, head.params.len());
        for (k, v) in &head.params {
            put_str(&mut out, k);
            put_str(&mut out, v);
        }
        put_u32(&mut out, head.headers.len());
        for (k, v) in &head.headers {
            put_str(&mut out, k);
            put_str(&mut out, v);
        }
        // client_ip, scheme, body, HTTP version, upgrade: what `pack` writes after them.
        put_str(&mut out, b"127.0.0.1");
        put_str(&mut out, b"http");
        out.extend_from_slice(&[0, 1, 1, 0]);
    }
    // No resets, states or logs.
    put_u32(&mut out, 0);
    put_u32(&mut out, 0);
    put_u32(&mut out, 0);
    out.into()
}

/// `n` heads as `#[napi(object)]`s.
#[napi]
pub fn bench_objects(n: u32) -> Vec<HeadObject> {
    let head = synthetic();
    let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    let flat = |pairs: &[(Bytes, Bytes)]| {
        pairs
            .iter()
            .flat_map(|(k, v)| [text(k), text(v)])
            .collect::<Vec<_>>()
    };
    (0..n)
        .map(|slot| HeadObject {
            slot: slot.into(),
            route_id: 0,
            method: text(&head.method),
            target: text(&head.target),
            params: flat(&head.params),
            headers: flat(&head.headers),
        })
        .collect()
}

/// `n` heads as one JSON array of `[slot, route_id, method, target, params, headers]`.
#[napi]
pub fn bench_json(n: u32) -> String {
    let head = synthetic();
    let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    let flat = |pairs: &[(Bytes, Bytes)]| {
        pairs
            .iter()
            .flat_map(|(k, v)| [text(k), text(v)])
            .collect::<Vec<_>>()
    };
    let heads: Vec<serde_json::Value> = (0..n)
        .map(|slot| {
            serde_json::json!([
                slot,
                0,
                text(&head.method),
                text(&head.target),
                flat(&head.params),
                flat(&head.headers)
            ])
        })
        .collect();
    serde_json::Value::Array(heads).to_string()
}

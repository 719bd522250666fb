//! The routes `vyx-mixload` drives and what each must answer: one home for the worker side
//! ([`routes`], served by `bench-worker` under [`PREFIX`]) and the client's checks
//! ([`crate::mixload`]). Below a prefix the four body-carrying routes are those of the
//! conformance worker contract (`spec/conformance/README.md`), so the same load also runs
//! against any language's conformance worker, prefix `/`; `events` is the bench worker's own.
//!
//! - `GET {prefix}/greet/{name}` → 200 JSON whose `hello` is `name`
//! - `POST {prefix}/echo` → 200, the body streamed back unchanged
//! - `GET {prefix}/stream/{bytes}?chunk=&pause_ms=` → `bytes` bytes, byte *i* = *i* mod 251
//! - `POST {prefix}/upload` → 200 JSON `{"length": n, "sha256": "<hex>"}` of the body
//! - `GET {prefix}/events/{n}?pause_ms=` → `text/event-stream`, events `data: 0` … `data: n-1`
//!
//! ```no_run
//! let worker = vyx_bench::mix::routes(vyx::Worker::builder().connect("ws://127.0.0.1:9000"))
//!     .id("bench:rust")
//!     .build()?;
//! # Ok::<(), vyx::Error>(())
//! ```

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use vyx::header::CONTENT_TYPE;
use vyx::{HeaderValue, Request, Response, StatusCode, WorkerBuilder};

/// Where the bench worker serves these routes, beside its other bench routes.
pub const PREFIX: &str = "/mix";

/// Largest `stream` body and `events` count the bench worker serves, so a typo cannot make it
/// allocate or loop for ever.
pub const MAX_STREAM: u64 = 1 << 30;
pub const MAX_EVENTS: u64 = 100_000;

/// Byte `i` of a `stream` body.
pub fn stream_byte(i: u64) -> u8 {
    (i % 251) as u8
}

/// Bytes `start..start + len` of a `stream` body.
pub fn stream_slice(start: u64, len: usize) -> Vec<u8> {
    (start..start + len as u64).map(stream_byte).collect()
}

/// The text of event `i` of an `events` body.
pub fn event(i: u64) -> String {
    format!("data: {i}\n\n")
}

/// Lower-case hex SHA-256, as `upload` answers it.
pub fn sha256_hex(digest: impl AsRef<[u8]>) -> String {
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Registers the five routes under [`PREFIX`].
pub fn routes(builder: WorkerBuilder) -> WorkerBuilder {
    builder
        .get(format!("{PREFIX}/greet/{{name}}"), greet)
        .post(format!("{PREFIX}/echo"), echo)
        .get(format!("{PREFIX}/stream/{{bytes}}"), stream)
        .post(format!("{PREFIX}/upload"), upload)
        .get(format!("{PREFIX}/events/{{n}}"), events)
}

fn bad(what: &'static str) -> Response {
    Response::text(what).with_status(StatusCode::BAD_REQUEST)
}

fn query_u64(req: &Request, name: &str, default: u64) -> u64 {
    req.query_param(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn greet(req: Request) -> Response {
    Response::bytes(crate::hello_json(req.param("name").unwrap_or_default()))
        .with_header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
}

async fn echo(req: Request) -> Response {
    Response::stream(req.into_body())
}

async fn stream(req: Request) -> Response {
    let Some(total) = req
        .param("bytes")
        .and_then(|b| b.parse::<u64>().ok())
        .filter(|&b| b <= MAX_STREAM)
    else {
        return bad("bytes must be a number up to 1 GiB\n");
    };
    let chunk = query_u64(&req, "chunk", crate::CHUNK as u64).clamp(1, 1 << 20);
    let pause = Duration::from_millis(query_u64(&req, "pause_ms", 0));
    let pieces = futures_util::stream::unfold(0u64, move |sent| async move {
        if sent >= total {
            return None;
        }
        if sent > 0 && !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let n = chunk.min(total - sent);
        let piece = Bytes::from(stream_slice(sent, n as usize));
        Some((Ok::<_, std::io::Error>(piece), sent + n))
    });
    Response::stream(pieces)
}

async fn upload(req: Request) -> Response {
    let mut body = req.into_body();
    let mut hash = Sha256::new();
    let mut length = 0u64;
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else {
            return bad("body failed\n");
        };
        length += chunk.len() as u64;
        hash.update(&chunk);
    }
    let sha256 = sha256_hex(hash.finalize());
    Response::json(serde_json::json!({ "length": length, "sha256": sha256 }))
}

async fn events(req: Request) -> Response {
    let Some(n) = req
        .param("n")
        .and_then(|b| b.parse::<u64>().ok())
        .filter(|&n| n <= MAX_EVENTS)
    else {
        return bad("n must be a number up to 100000\n");
    };
    let pause = Duration::from_millis(query_u64(&req, "pause_ms", 0));
    let events = futures_util::stream::unfold(0u64, move |i| async move {
        if i >= n {
            return None;
        }
        if i > 0 && !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        Some((Ok::<_, std::io::Error>(Bytes::from(event(i))), i + 1))
    });
    Response::stream(events)
        .with_header(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"))
}

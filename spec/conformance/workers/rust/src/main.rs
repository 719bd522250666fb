//! The Rust conformance worker: the routes of `spec/conformance/README.md`, written with the
//! Rust SDK, so that the conformance runner can drive it like every other language's.
//!
//! ```sh
//! VYX_CONNECT=ws://127.0.0.1:9000 VYX_WORKER_ID=conformance:rust \
//!     VYX_CONFORMANCE_MAX_CONCURRENCY=1024 vyx-conformance-worker-rust
//! ```
//!
//! Connection-state changes go to stdout as `state ...` lines; logs go to stderr.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tracing_subscriber::EnvFilter;
use vyx::header::CONTENT_TYPE;
use vyx::{Bytes, ConnectionState, HeaderValue, Json, Request, Response, StatusCode};

const LANG: &str = "rust";

/// What the routes share: the counters `/stats` reports and the barrier's rendezvous.
#[derive(Default)]
struct Shared {
    replica: String,
    /// `/slow`, `/stream` and `/barrier` handlers (and streamed bodies) not finished yet.
    in_flight: AtomicUsize,
    /// `/stream` bodies that ended before their last byte (the stream was reset).
    aborted: AtomicUsize,
    barrier: Mutex<Barrier>,
    barrier_moved: Notify,
}

/// `/barrier` requests waiting in the current round, and the round number.
#[derive(Default)]
struct Barrier {
    waiting: usize,
    round: u64,
}

/// Counts one unit of in-flight work for as long as it lives (a cancelled handler drops it).
struct InFlight(Arc<Shared>);

impl InFlight {
    fn enter(shared: &Arc<Shared>) -> (InFlight, usize) {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        (InFlight(shared.clone()), now)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(status: StatusCode, body: String) -> Response {
    Response::text(body).with_status(status)
}

async fn greet(req: Request) -> Json<serde_json::Value> {
    let name = req.param("name").unwrap_or_default();
    Json(serde_json::json!({ "hello": name, "lang": LANG }))
}

async fn files(req: Request) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "rest": req.param("rest").unwrap_or_default() }))
}

/// Everything the request carried, the body hashed as it streams in.
async fn inspect(shared: Arc<Shared>, mut req: Request) -> vyx::Result<Json<serde_json::Value>> {
    let headers: Vec<[String; 2]> = req
        .headers()
        .iter()
        .map(|(n, v)| {
            [
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            ]
        })
        .collect();
    let params: serde_json::Map<String, serde_json::Value> = req
        .params()
        .iter()
        .map(|(k, v)| (k.to_owned(), v.into()))
        .collect();
    let query_pairs: Vec<[String; 2]> = req
        .query()
        .map(|(k, v)| [k.into_owned(), v.into_owned()])
        .collect();
    let (length, sha256) = hash_body(req.body_mut()).await?;
    Ok(Json(serde_json::json!({
        "method": req.method().as_str(),
        "path": req.path(),
        "query": req.raw_query(),
        "query_pairs": query_pairs,
        "params": params,
        "headers": headers,
        "body_length": length,
        "body_sha256": sha256,
        "replica": shared.replica,
        "lang": LANG,
    })))
}

/// Reads a body chunk by chunk through SHA-256; nothing is kept.
async fn hash_body(body: &mut vyx::Body) -> vyx::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut length = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        length += chunk.len() as u64;
        hasher.update(&chunk);
    }
    Ok((length, hex(&hasher.finalize())))
}

async fn upload(mut req: Request) -> vyx::Result<Json<serde_json::Value>> {
    let (length, sha256) = hash_body(req.body_mut()).await?;
    Ok(Json(
        serde_json::json!({ "length": length, "sha256": sha256 }),
    ))
}

async fn echo(req: Request) -> Response {
    let content_type = req.header(CONTENT_TYPE).cloned();
    let res = Response::stream(req.into_body());
    match content_type {
        Some(ct) => res.with_header(CONTENT_TYPE, ct),
        None => res,
    }
}

async fn trailers(req: Request) -> Response {
    use http_body_util::{BodyExt, StreamBody};
    let Ok(collected) = BodyExt::collect(req.into_body()).await else {
        return Response::new(vyx::Body::empty()).with_status(StatusCode::BAD_REQUEST);
    };
    let echo = collected
        .trailers()
        .and_then(|t| t.get("x-echo"))
        .cloned()
        .unwrap_or(HeaderValue::from_static("none"));
    let body = collected.to_bytes();
    let mut fields = vyx::HeaderMap::new();
    fields.insert("x-echo", echo);
    fields.insert("x-length", HeaderValue::from(body.len()));
    let frames: Vec<Result<http_body::Frame<Bytes>, std::convert::Infallible>> = vec![
        Ok(http_body::Frame::data(body)),
        Ok(http_body::Frame::trailers(fields)),
    ];
    Response::new(vyx::Body::new(StreamBody::new(futures_util::stream::iter(
        frames,
    ))))
    .with_header(CONTENT_TYPE, HeaderValue::from_static("text/plain"))
    .with_header("trailer", HeaderValue::from_static("x-echo, x-length"))
}

async fn status(req: Request) -> Response {
    let code = req
        .param("code")
        .and_then(|c| c.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .filter(|c| (200..=599).contains(&c.as_u16()));
    let Some(code) = code else {
        return text(StatusCode::BAD_REQUEST, "status must be 200..=599".into());
    };
    let body = if code == StatusCode::NO_CONTENT || code == StatusCode::NOT_MODIFIED {
        vyx::Body::empty()
    } else {
        vyx::Body::from(format!("status {}", code.as_u16()))
    };
    Response::builder()
        .status(code)
        .header(CONTENT_TYPE, "text/plain")
        .header("x-conformance", "status")
        .header("set-cookie", "a=1")
        .header("set-cookie", "b=2")
        .body(body)
}

/// `bytes` bytes where byte i is `i % 251`, in `chunk`-byte pieces, `pause_ms` apart.
async fn stream(shared: Arc<Shared>, req: Request) -> Response {
    let Some(total) = req.param("bytes").and_then(|b| b.parse::<u64>().ok()) else {
        return text(StatusCode::BAD_REQUEST, "bytes must be a number".into());
    };
    let query = |name: &str, default: u64| {
        req.query_param(name)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(default)
    };
    let chunk = query("chunk", 65536).clamp(1, 1 << 20);
    let pause = Duration::from_millis(query("pause_ms", 0));

    /// Counts the body as aborted when it is dropped before its last byte.
    struct Progress {
        sent: u64,
        total: u64,
        _in_flight: InFlight,
        shared: Arc<Shared>,
    }
    impl Drop for Progress {
        fn drop(&mut self) {
            if self.sent < self.total {
                self.shared.aborted.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    let progress = Progress {
        sent: 0,
        total,
        _in_flight: InFlight::enter(&shared).0,
        shared,
    };
    let body = futures_util::stream::unfold(progress, move |mut p| async move {
        if p.sent == p.total {
            return None;
        }
        if p.sent > 0 && !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let n = chunk.min(p.total - p.sent);
        let bytes: Vec<u8> = (p.sent..p.sent + n).map(|i| (i % 251) as u8).collect();
        p.sent += n;
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(bytes)), p))
    });
    Response::stream(body).with_header(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    )
}

async fn slow(shared: Arc<Shared>, req: Request) -> Response {
    let Some(ms) = req.param("ms").and_then(|m| m.parse::<u64>().ok()) else {
        return text(StatusCode::BAD_REQUEST, "ms must be a number".into());
    };
    let (_guard, in_flight) = InFlight::enter(&shared);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Response::json(serde_json::json!({
        "slept_ms": ms,
        "in_flight": in_flight,
        "replica": shared.replica,
    }))
}

/// Answers once `n` barrier requests wait at the same time (500 after 10 s without).
async fn barrier(shared: Arc<Shared>, req: Request) -> Response {
    let Some(n) = req.param("n").and_then(|m| m.parse::<usize>().ok()) else {
        return text(StatusCode::BAD_REQUEST, "n must be a number".into());
    };
    let _guard = InFlight::enter(&shared).0;
    let round = {
        let mut b = shared.barrier.lock().unwrap();
        b.waiting += 1;
        if b.waiting >= n {
            // Everyone waiting in this round goes; the next request starts a new round.
            b.waiting = 0;
            b.round += 1;
            shared.barrier_moved.notify_waiters();
            return Response::json(serde_json::json!({ "n": n }));
        }
        b.round
    };
    let released = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let moved = shared.barrier_moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            if shared.barrier.lock().unwrap().round != round {
                return;
            }
            moved.await;
        }
    })
    .await;
    let mut b = shared.barrier.lock().unwrap();
    if released.is_ok() || b.round != round {
        return Response::json(serde_json::json!({ "n": n }));
    }
    let arrived = b.waiting;
    b.waiting -= 1;
    text(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("barrier: {arrived} of {n} requests arrived within 10 s"),
    )
}

async fn throw(_req: Request) -> Response {
    panic!("conformance: /throw fails on purpose")
}

async fn stats(shared: Arc<Shared>, _req: Request) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "in_flight": shared.in_flight.load(Ordering::SeqCst),
        "aborted": shared.aborted.load(Ordering::SeqCst),
        "replica": shared.replica,
    }))
}

fn print_state(state: &ConnectionState) {
    match state {
        ConnectionState::Connecting => println!("state connecting"),
        ConnectionState::Connected { connection_id } => println!("state connected {connection_id}"),
        ConnectionState::Reconnecting { attempt, cause, .. } => {
            println!("state reconnecting {attempt} {cause}")
        }
        ConnectionState::Draining => println!("state draining"),
        ConnectionState::Stopped => println!("state stopped"),
        ConnectionState::Failed { .. } => println!("state failed"),
    }
}

/// Binds a handler to the shared state.
macro_rules! with {
    ($shared:expr, $handler:ident) => {{
        let shared = $shared.clone();
        move |req: Request| $handler(shared.clone(), req)
    }};
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), vyx::Error> {
    let shared = Arc::new(Shared {
        replica: std::env::var("VYX_CONFORMANCE_REPLICA").unwrap_or_default(),
        ..Shared::default()
    });
    let mut builder = vyx::Worker::builder()
        .get("/greet/{name}", greet)
        .get("/files/{*rest}", files)
        .any("/inspect/{*rest}", with!(shared, inspect))
        .post("/echo", echo)
        .post("/trailers", trailers)
        .post("/upload", upload)
        .get("/status/{code}", status)
        .get("/stream/{bytes}", with!(shared, stream))
        .get("/slow/{ms}", with!(shared, slow))
        .get("/barrier/{n}", with!(shared, barrier))
        .get("/throw", throw)
        .get("/empty", |_req: Request| async { StatusCode::NO_CONTENT })
        .get("/ws", ws_echo)
        .get("/hints", hints)
        .route("HEAD", "/head", |_req: Request| async {
            Response::builder()
                .header("x-conformance", "head")
                .body(vyx::Body::empty())
        })
        .get("/stats", with!(shared, stats))
        .on_state(print_state);
    if let Ok(n) = std::env::var("VYX_CONFORMANCE_MAX_CONCURRENCY") {
        let n = n.parse().map_err(|_| {
            vyx::Error::Config(format!(
                "VYX_CONFORMANCE_MAX_CONCURRENCY={n} is not a number"
            ))
        })?;
        builder = builder.max_concurrency(n);
    }
    // VYX_CONNECT, VYX_WORKER_ID and VYX_TOKEN come from the environment.
    builder.build()?.start().await
}

/// `GET /hints`: 103 Early Hints with a `Link`, then 200.
async fn hints(req: Request) -> vyx::Result<&'static str> {
    let mut fields = vyx::HeaderMap::new();
    let link = "</hinted.css>; rel=preload; as=style";
    fields.insert("link", HeaderValue::from_static(link));
    req.send_informational(StatusCode::EARLY_HINTS, &fields)?;
    Ok("hinted")
}

/// `GET /ws`: a WebSocket echo on the connection `vyx::upgrade` gives after the 101.
async fn ws_echo(mut req: Request) -> Response {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    use tokio_tungstenite::tungstenite::protocol::Role;
    let key = req
        .header("sec-websocket-key")
        .map(|k| derive_accept_key(k.as_bytes()));
    let (Some(on), Some(accept)) = (vyx::upgrade::on(&mut req), key) else {
        return vyx::IntoResponse::into_response(StatusCode::UPGRADE_REQUIRED);
    };
    tokio::spawn(async move {
        let Ok(io) = on.await else { return };
        let mut ws =
            tokio_tungstenite::WebSocketStream::from_raw_socket(io, Role::Server, None).await;
        while let Some(Ok(msg)) = ws.next().await {
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                return;
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", accept)
        .body(vyx::Body::empty())
}

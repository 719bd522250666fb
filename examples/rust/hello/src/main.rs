//! A vyx worker: `GET /hello/{name}` answers JSON, `POST /echo` streams the body back.
//!
//! ```sh
//! vyx &                          # a gateway in dev mode on 127.0.0.1:9000
//! cargo run -p hello             # this worker
//! curl localhost:9000/hello/ada  # {"hello":"ada","lang":"rust"}
//! ```
//!
//! Settings come from VYX_CONNECT, VYX_WORKER_ID and VYX_TOKEN, so the same binary runs
//! anywhere without a code change; RUST_LOG sets the log level.

use tracing_subscriber::EnvFilter;
use vyx::header::CONTENT_TYPE;
use vyx::{Json, Request, Response};

async fn hello(req: Request) -> Json<serde_json::Value> {
    let name = req.param("name").unwrap_or_default();
    Json(serde_json::json!({ "hello": name, "lang": "rust" }))
}

/// Streams the request body back as it arrives (nothing is buffered), same content-type.
async fn echo(req: Request) -> Response {
    let content_type = req.header(CONTENT_TYPE).cloned();
    let res = Response::stream(req.into_body());
    match content_type {
        Some(ct) => res.with_header(CONTENT_TYPE, ct),
        None => res,
    }
}

#[tokio::main]
async fn main() -> Result<(), vyx::Error> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();

    let env = |key: &str, default: &str| std::env::var(key).unwrap_or_else(|_| default.into());
    let worker = vyx::Worker::builder()
        .connect(env("VYX_CONNECT", "ws://127.0.0.1:9000"))
        .id(env("VYX_WORKER_ID", "rust:hello"))
        .get("/hello/{name}", hello)
        .post("/echo", echo)
        .build()?;

    // Serves until SIGTERM or Ctrl-C, then lets in-flight requests finish.
    worker.start().await
}

//! The vyx contender's worker: the bench handlers (see the crate docs) behind the Rust SDK.
//! Also the mixed-load routes of `vyx_bench::mix` under `/mix`.
//! Settings from VYX_CONNECT (a comma-separated list) and VYX_WORKER_ID (default `bench:rust`).

use futures_util::StreamExt;
use vyx::header::CONTENT_TYPE;
use vyx::{HeaderValue, Request, Response, StatusCode};

const JSON: HeaderValue = HeaderValue::from_static("application/json");

async fn hello(req: Request) -> Response {
    let name = req.param("name").unwrap_or_default();
    Response::bytes(vyx_bench::hello_json(name)).with_header(CONTENT_TYPE, JSON)
}

fn size_param(req: &Request) -> Option<u64> {
    req.param("size")?.parse().ok()
}

async fn bytes(req: Request) -> Response {
    match size_param(&req).and_then(|n| vyx_bench::body_of(n as usize)) {
        Some(b) => Response::bytes(b),
        None => Response::text("bad size\n").with_status(StatusCode::BAD_REQUEST),
    }
}

async fn download(req: Request) -> Response {
    let Some(size) = size_param(&req) else {
        return Response::text("bad size\n").with_status(StatusCode::BAD_REQUEST);
    };
    Response::stream(futures_util::stream::iter(
        vyx_bench::pieces(size).map(Ok::<_, std::io::Error>),
    ))
}

async fn upload(req: Request) -> Response {
    let mut body = req.into_body();
    let mut n = 0u64;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => n += c.len() as u64,
            Err(_) => return Response::text("body failed\n").with_status(StatusCode::BAD_REQUEST),
        }
    }
    Response::bytes(vyx_bench::received_json(n)).with_header(CONTENT_TYPE, JSON)
}

#[tokio::main]
async fn main() -> Result<(), vyx::Error> {
    let env = |key: &str, default: &str| std::env::var(key).unwrap_or_else(|_| default.into());
    let worker = vyx_bench::mix::routes(vyx::Worker::builder())
        .connect(vyx_core::config::split_connect(&env(
            "VYX_CONNECT",
            "ws://127.0.0.1:9000",
        )))
        .id(env("VYX_WORKER_ID", "bench:rust"))
        .get("/hello/{name}", hello)
        .get("/bytes/{size}", bytes)
        .get("/download/{size}", download)
        .put("/upload", upload)
        .build()?;
    worker.start().await
}

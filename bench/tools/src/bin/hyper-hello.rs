//! The physical limit: the bench handlers (see the crate docs) served by hyper directly,
//! HTTP/1.1 keep-alive, on a multi-threaded tokio runtime like the gateway's.
//!
//! `hyper-hello [ADDR]` (default 127.0.0.1:0) prints `listening http://ADDR` on stdout.

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

type Body = BoxBody<Bytes, Infallible>;

fn full(status: StatusCode, ctype: &'static str, b: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(b.into()).boxed());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

fn bad() -> Response<Body> {
    full(StatusCode::BAD_REQUEST, "text/plain", "bad request\n")
}

async fn handle(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let get = req.method() == Method::GET;
    Ok(
        if let (true, Some(name)) = (get, path.strip_prefix("/hello/")) {
            full(
                StatusCode::OK,
                "application/json",
                vyx_bench::hello_json(name),
            )
        } else if let (true, Some(size)) = (get, path.strip_prefix("/bytes/")) {
            match size.parse().ok().and_then(vyx_bench::body_of) {
                Some(b) => full(StatusCode::OK, "application/octet-stream", b),
                None => bad(),
            }
        } else if let (true, Some(size)) = (get, path.strip_prefix("/download/")) {
            match size.parse::<u64>() {
                Ok(n) => {
                    let s = stream::iter(vyx_bench::pieces(n))
                        .map(|b| Ok::<_, Infallible>(Frame::data(b)));
                    let mut r = Response::new(BodyExt::boxed(StreamBody::new(s)));
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    );
                    r
                }
                Err(_) => bad(),
            }
        } else if req.method() == Method::PUT && path == "/upload" {
            let mut body = req.into_body();
            let mut n = 0u64;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                    Err(_) => return Ok(bad()),
                }
            }
            full(
                StatusCode::OK,
                "application/json",
                vyx_bench::received_json(n),
            )
        } else {
            full(StatusCode::NOT_FOUND, "text/plain", "not found\n")
        },
    )
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = TcpListener::bind(&addr).await?;
    println!("listening http://{}", listener.local_addr()?);
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let conn = builder
            .serve_connection(TokioIo::new(stream), service_fn(handle))
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

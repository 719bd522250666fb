//! Bodies of every size, streamed both ways and checked by SHA-256.

use std::time::Duration;

use http_body_util::BodyExt;
use serde_json::json;
use tokio::time::Instant;

use super::{Ctx, Scenario};
use crate::check::Outcome;
use crate::http::{self, empty, request};
use crate::procs::WAIT;
use crate::{ensure, ensure_eq};

pub fn scenarios() -> Vec<Scenario> {
    crate::scenarios![
        "upload 0 B..256 MiB, hashed streaming" => upload,
        "echo 0 B..256 MiB, streamed both ways" => echo,
        "download 0 B..256 MiB, streamed" => download,
        "response streamed in chunks with pauses" => paced_stream,
        "trailers both ways" => trailers,
    ]
}

/// PROTOCOL.md §3.10: an HTTP/2 client's trailers reach the worker, the worker's reach an
/// HTTP/2 client as a trailing HEADERS frame and an HTTP/1.1 client that sent
/// `TE: trailers` as the chunked trailer section.
async fn trailers(ctx: Ctx) -> Outcome<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = ctx.env().await?;
    let h2: http::Client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let mut sent = ::http::HeaderMap::new();
    sent.insert("x-echo", ::http::HeaderValue::from_static("42"));
    let frames: Vec<Result<hyper::body::Frame<bytes::Bytes>, std::io::Error>> = vec![
        Ok(hyper::body::Frame::data(bytes::Bytes::from_static(b"abc"))),
        Ok(hyper::body::Frame::trailers(sent)),
    ];
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed();
    let req = request("POST", &env.url("/trailers"), &[], body)?;
    let resp = http::head_of(&h2, req).await?;
    ensure_eq!(resp.status().as_u16(), 200, "HTTP/2 POST /trailers");
    let got = match tokio::time::timeout(WAIT, resp.into_body().collect()).await {
        Ok(Ok(b)) => b,
        other => return crate::check::fail(format!("HTTP/2 body: {other:?}")),
    };
    let trailers = got.trailers().cloned().unwrap_or_default();
    ensure_eq!(&got.to_bytes()[..], b"abc", "HTTP/2 body");
    ensure_eq!(
        trailers.get("x-echo").and_then(|v| v.to_str().ok()),
        Some("42"),
        "the request's trailer, echoed in the response's ({trailers:?})"
    );
    ensure_eq!(
        trailers.get("x-length").and_then(|v| v.to_str().ok()),
        Some("3"),
        "x-length trailer ({trailers:?})"
    );

    let mut s = tokio::net::TcpStream::connect(env.gw.addr)
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(
        b"POST /trailers HTTP/1.1\r\nHost: c\r\nTE: trailers\r\nConnection: close\r\n\
          Content-Length: 2\r\n\r\nhi",
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut text = Vec::new();
    match tokio::time::timeout(WAIT, s.read_to_end(&mut text)).await {
        Ok(Ok(_)) => {}
        other => return crate::check::fail(format!("HTTP/1.1 answer: {other:?}")),
    }
    let text = String::from_utf8_lossy(&text);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    ensure_eq!(
        body,
        "2\r\nhi\r\n0\r\nx-echo: none\r\nx-length: 2\r\n\r\n",
        "HTTP/1.1 chunked body and trailer section ({text})"
    );
    env.still_serving().await
}

pub const SIZES: &[u64] = &[0, 1, 64 * 1024, 16 << 20, 256 << 20];

/// Time allowed for one exchange of `size` bytes: at least 8 MiB/s on a busy machine.
fn budget(size: u64) -> Duration {
    WAIT + Duration::from_secs(size / (8 << 20))
}

async fn upload(ctx: Ctx) -> Outcome<()> {
    let env = ctx.env().await?;
    for &size in SIZES {
        let req = request(
            "POST",
            &env.url("/upload"),
            &[("content-type", "application/octet-stream")],
            http::generated(size),
        )?;
        let reply = http::send_within(&env.client, req, budget(size)).await?;
        ensure_eq!(reply.status, 200, "POST /upload of {size} bytes");
        ensure_eq!(
            reply.json()?,
            json!({"length": size, "sha256": http::generated_sha256(size)}),
            "what the worker hashed of {size} bytes"
        );
    }
    env.still_serving().await
}

async fn echo(ctx: Ctx) -> Outcome<()> {
    let env = ctx.env().await?;
    for &size in SIZES {
        let content_type = format!("application/x-conformance-{size}");
        let req = request(
            "POST",
            &env.url("/echo"),
            &[("content-type", &content_type)],
            http::generated(size),
        )?;
        let got = http::send_hashing(&env.client, req, budget(size)).await?;
        ensure_eq!(got.status, 200, "POST /echo of {size} bytes");
        ensure_eq!(
            got.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some(content_type.as_str()),
            "content-type echoed"
        );
        ensure_eq!(
            (got.length, got.sha256),
            (size, http::generated_sha256(size)),
            "echo of {size} bytes (length, sha256)"
        );
    }
    // Without a content-type the body still comes back (an SDK may add a default type).
    let reply = http::send(
        &env.client,
        request("POST", &env.url("/echo"), &[], http::full("plain"))?,
    )
    .await?;
    ensure_eq!(
        (reply.status, reply.text()),
        (200, "plain".to_owned()),
        "POST /echo"
    );
    env.still_serving().await
}

async fn download(ctx: Ctx) -> Outcome<()> {
    let env = ctx.env().await?;
    for &size in SIZES {
        let req = request("GET", &env.url(&format!("/stream/{size}")), &[], empty())?;
        let got = http::send_hashing(&env.client, req, budget(size)).await?;
        ensure_eq!(got.status, 200, "GET /stream/{size}");
        ensure_eq!(
            (got.length, got.sha256),
            (size, http::pattern_sha256(size)),
            "/stream/{size} (length, sha256)"
        );
    }
    env.still_serving().await
}

/// Five 1000-byte chunks 200 ms apart: the first must reach the client well before the
/// last is produced (streamed, not buffered), and the whole takes at least the pauses.
async fn paced_stream(ctx: Ctx) -> Outcome<()> {
    const CHUNKS: u64 = 5;
    const PAUSE_MS: u64 = 200;
    let env = ctx.env().await?;
    let url = env.url(&format!(
        "/stream/{}?chunk=1000&pause_ms={PAUSE_MS}",
        CHUNKS * 1000
    ));
    let start = Instant::now();
    let resp = http::head_of(&env.client, request("GET", &url, &[], empty())?).await?;
    ensure_eq!(resp.status().as_u16(), 200, "GET {url}");
    let mut body = resp.into_body();
    let mut received = Vec::new();
    let mut first_at = None;
    while let Some(frame) = tokio::time::timeout(WAIT, body.frame())
        .await
        .map_err(|_| format!("body stalled after {} bytes", received.len()))?
    {
        let frame = frame.map_err(|e| format!("body: {e}"))?;
        if let Ok(data) = frame.into_data() {
            if first_at.is_none() && !data.is_empty() {
                first_at = Some(start.elapsed());
            }
            received.extend_from_slice(&data);
        }
    }
    let total = start.elapsed();
    let expected: Vec<u8> = (0..CHUNKS * 1000).map(|i| (i % 251) as u8).collect();
    ensure!(received == expected, "paced body differs from the pattern");
    let first_at = first_at.unwrap_or(total);
    let pauses = Duration::from_millis((CHUNKS - 1) * PAUSE_MS);
    ensure!(
        total >= pauses,
        "the whole body came in {total:?}, faster than its pauses ({pauses:?})"
    );
    ensure!(
        first_at + Duration::from_millis(2 * PAUSE_MS) <= total,
        "first bytes after {first_at:?}, all after {total:?}: the response was not streamed"
    );
    env.still_serving().await
}

//! Interim responses through the gateway (PROTOCOL.md §3.11): the worker's `/hints` sends
//! 103 Early Hints with a `Link`, then its 200.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Ctx, Scenario};
use crate::check::Outcome;
use crate::http;
use crate::procs::WAIT;
use crate::{ensure, ensure_eq};

pub fn scenarios() -> Vec<Scenario> {
    crate::scenarios![
        "early hints" => early_hints,
    ]
}

/// The `Link` the conformance worker's `/hints` sends in its 103.
const LINK: &str = "</hinted.css>; rel=preload; as=style";

/// An HTTP/1.1 client reads the 103 (with its `Link`) and then the 200; an HTTP/2 client,
/// to which the gateway forwards no 1xx, gets the 200 alone.
async fn early_hints(ctx: Ctx) -> Outcome<()> {
    let env = ctx.env().await?;
    // Raw bytes: HTTP clients hide interim responses.
    let mut conn = tokio::net::TcpStream::connect(env.gw.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    conn.write_all(b"GET /hints HTTP/1.1\r\nHost: conformance\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, conn.read_to_end(&mut out))
        .await
        .map_err(|_| "no answer in time".to_string())?
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&out);
    let (interim, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no complete head in {text:?}"))?;
    let mut lines = interim.split("\r\n");
    ensure_eq!(
        lines.next(),
        Some("HTTP/1.1 103 Early Hints"),
        "first status line (got {text:?})"
    );
    let links: Vec<&str> = lines
        .filter_map(|l| l.split_once(": "))
        .filter(|(n, _)| n.eq_ignore_ascii_case("link"))
        .map(|(_, v)| v)
        .collect();
    ensure_eq!(links, vec![LINK], "the 103's link fields");
    ensure!(
        rest.starts_with("HTTP/1.1 200 OK\r\n"),
        "the 200 right after the 103 (got {rest:?})"
    );
    ensure!(
        rest.ends_with("\r\n\r\nhinted"),
        "the 200's body (got {rest:?})"
    );

    let h2: http::Client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let reply = http::get(&h2, &env.url("/hints")).await?;
    ensure_eq!(reply.status, 200, "HTTP/2 GET /hints");
    ensure_eq!(reply.text(), "hinted", "HTTP/2 body");
    env.still_serving().await
}

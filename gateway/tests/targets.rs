//! Request targets the gateway frames (issue 17 item 2, PROTOCOL.md §3.4): a client's raw
//! UTF-8 in a path or query reaches the worker percent-encoded, routes as its encoding does,
//! and never costs the worker its connection (nor the other requests on it).

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vyx::{Json, Request};

/// A Rust SDK worker: the literal route `/café`, `/p/{x}` answering its decoded parameter
/// and the raw target, and `/hold`, which answers once `release` has a permit for it.
async fn worker(
    gw: SocketAddr,
    held: Arc<AtomicUsize>,
    release: Arc<tokio::sync::Semaphore>,
) -> vyx::Worker {
    let worker = vyx::Worker::builder()
        .connect(format!("ws://{gw}"))
        .id("targets")
        .handle_signals(false)
        .get("/café", |_req: Request| async move { "literal café" })
        .get("/p/{x}", |req: Request| async move {
            Json(json!({ "x": req.param("x"), "target": req.target() }))
        })
        .get("/hold", move |_req: Request| {
            let held = held.clone();
            let release = release.clone();
            async move {
                held.fetch_add(1, Ordering::SeqCst);
                release.acquire().await.unwrap().forget();
                "released"
            }
        })
        .build()
        .expect("valid worker");
    start_connected(&worker).await;
    worker
}

/// One HTTP/1.1 request written byte for byte; the whole answer (the gateway closes).
async fn raw_get(addr: SocketAddr, target: &[u8]) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut head = b"GET ".to_vec();
    head.extend_from_slice(target);
    head.extend_from_slice(b" HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n");
    tcp.write_all(&head).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut out))
        .await
        .expect("answered in time")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .find("\r\n\r\n")
        .map_or(String::new(), |i| text[i + 4..].to_owned());
    (status, body)
}

/// The JSON object in a (possibly chunked) body.
fn json_in(body: &str) -> Value {
    let start = body
        .find('{')
        .unwrap_or_else(|| panic!("no JSON in {body:?}"));
    let end = body.rfind('}').unwrap();
    serde_json::from_str(&body[start..=end]).unwrap()
}

async fn connection_ids(gw: &TestGateway) -> Vec<String> {
    let (status, body) = get(&client(), &gw.url("/_vyx/workers")).await;
    assert_eq!(status, 200);
    let list: Value = serde_json::from_slice(&body).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .filter(|c| c["id"] == "targets")
        .map(|c| c["connection_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn raw_utf8_in_a_target_is_percent_encoded_and_the_worker_keeps_its_connection() {
    let gw = TestGateway::start().await;
    let held = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let _worker = worker(gw.addr, held.clone(), release.clone()).await;
    let before = connection_ids(&gw).await;
    assert_eq!(before.len(), 1);

    // Well-behaved requests in flight on the worker's connection while the others come.
    const HELD: usize = 8;
    let c = client();
    let holds: Vec<_> = (0..HELD)
        .map(|_| {
            let c = c.clone();
            let url = gw.url("/hold");
            tokio::spawn(async move { get(&c, &url).await })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + WAIT;
    while held.load(Ordering::SeqCst) < HELD {
        assert!(tokio::time::Instant::now() < deadline, "holds not started");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    // HTTP/1.1, raw bytes: the literal route matches, the parameter decodes to the same
    // UTF-8, the query is encoded too.
    let (status, body) = raw_get(gw.addr, "/café".as_bytes()).await;
    assert_eq!(
        (status, body.contains("literal café")),
        (200, true),
        "{body}"
    );
    let (status, body) = raw_get(gw.addr, "/p/ü?q=ü&r=%C3%BC".as_bytes()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        json_in(&body),
        json!({ "x": "ü", "target": "/p/%C3%BC?q=%C3%BC&r=%C3%BC" })
    );

    // HTTP/2: `:path` with raw UTF-8.
    let h2: HttpClient =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let url = format!("http://{}/p/caf\u{e9}?q=\u{fc}", gw.addr);
    let (status, _, body) = send(&h2, "GET", &url, &[], Bytes::new()).await;
    assert_eq!(status, 200, "{body:?}");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v, json!({ "x": "café", "target": "/p/caf%C3%A9?q=%C3%BC" }));
    let url = format!("http://{}/caf\u{e9}", gw.addr);
    let (status, _, body) = send(&h2, "GET", &url, &[], Bytes::new()).await;
    assert_eq!((status, &body[..]), (200, "literal café".as_bytes()));

    // A target that encoding would take past what a URI holds (40,003 bytes, 120,003
    // encoded) is refused by the gateway, not framed.
    let mut long = b"/p/".to_vec();
    long.extend("é".repeat(20_000).bytes());
    assert_eq!(raw_get(gw.addr, &long).await.0, 414);

    // Every held request is answered by the same connection.
    release.add_permits(HELD);
    for h in holds {
        let (status, body) = h.await.unwrap();
        assert_eq!((status, &body[..]), (200, &b"released"[..]));
    }
    assert_eq!(connection_ids(&gw).await, before, "the worker reconnected");
}

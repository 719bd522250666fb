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
    wait_for_workers(gw.addr, "targets", 1).await;
    let before = connection_ids(&gw).await;
    assert_eq!(before.len(), 2, "one connection per shard");

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

/// An HTTP/2 request on stream 1 with `path` as `:path`, byte for byte (HPACK literals
/// without indexing, no Huffman), after the preface and an empty SETTINGS.
fn h2_request(path: &[u8]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (&b":method"[..], &b"GET"[..]),
        (b":scheme", b"http"),
        (b":authority", b"gw"),
        (b":path", path),
    ] {
        assert!(value.len() < 127, "one-byte HPACK lengths only");
        block.push(0);
        block.push(name.len() as u8);
        block.extend_from_slice(name);
        block.push(value.len() as u8);
        block.extend_from_slice(value);
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&[0, 0, block.len() as u8, 1, 5, 0, 0, 0, 1]);
    out.extend_from_slice(&block);
    out
}

/// Reads HTTP/2 frames until stream 1 ends (END_STREAM on HEADERS or DATA, or RST_STREAM)
/// or the connection does (GOAWAY, EOF); fails if nothing comes for `WAIT`. Returns the
/// frame types seen on stream 1.
async fn h2_exchange(addr: SocketAddr, path: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&h2_request(path)).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let mut head = [0u8; 9];
        match tokio::time::timeout(WAIT, tcp.read_exact(&mut head)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return seen, // the gateway closed the connection
            Err(_) => panic!("no end of stream 1 for :path {path:?}"),
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        tcp.read_exact(&mut payload).await.unwrap();
        let (ty, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        if ty == 7 {
            return seen; // GOAWAY
        }
        if stream == 1 {
            seen.push(ty);
            let end = matches!(ty, 0 | 1) && flags & 1 != 0;
            if end || ty == 3 {
                return seen;
            }
        }
    }
}

/// Every target a client can get past hyper, over HTTP/1.1 and HTTP/2 (`:path` carries
/// whatever bytes HPACK literals hold), either reaches the worker as a target §3.4 allows or
/// is refused by the gateway; the raw worker that receives them decodes every REQUEST, and
/// keeps its connection throughout.
#[tokio::test]
async fn no_target_a_client_sends_reaches_a_worker_unframable() {
    let gw = TestGateway::start().await;
    let mut w = RawWorker::connect(gw.addr, "raw-targets", vec![route(0, "*", "/{*rest}")]).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // The worker answers each REQUEST 200 and reports its target, or what failed to decode.
    let worker = tokio::spawn(async move {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        use vyx_core::frame::{Frame, Response};
        while let Some(Ok(msg)) = w.ws.next().await {
            let Message::Binary(b) = msg else { continue };
            match Frame::decode(b, 1 << 20) {
                Ok(Frame::Request(r)) => {
                    let answer = Frame::Response(Response {
                        stream_id: r.stream_id,
                        end_stream: true,
                        status: 200,
                        headers: vec![],
                    });
                    w.ws.send(Message::Binary(answer.encode())).await.unwrap();
                    tx.send(Ok(r.target)).unwrap();
                }
                Ok(_) => {}
                Err(e) => tx.send(Err(e.to_string())).unwrap(),
            }
        }
        panic!("the gateway closed the worker's connection");
    });

    let mut targets: Vec<Vec<u8>> = vec![
        "/ü?q=ü".into(),
        b"/a\xff".to_vec(),
        b"/a\xc3".to_vec(),
        b"/a b".to_vec(),
        b"/a\tb".to_vec(),
        b"/a\x01".to_vec(),
        b"/a\x7f".to_vec(),
        b"/a?b\x00".to_vec(),
        b"/a\"{}|^`<>\\".to_vec(),
        b"/a#frag".to_vec(),
        b"*".to_vec(),
        b"a".to_vec(),
        b"http://gw/\xc3\xa9".to_vec(),
    ];
    targets.extend((0x00..=0x20u8).chain(0x7f..=0xff).map(|b| vec![b'/', b]));
    let mut forwarded = 0;
    for target in &targets {
        // HTTP/1.1: what the request line can hold (CR and LF would end it).
        if !target.contains(&b'\r') && !target.contains(&b'\n') {
            let (status, body) = raw_get(gw.addr, target).await;
            assert!(
                status == 200 || (400..500).contains(&status),
                "HTTP/1.1 {target:?}: {status} {body}"
            );
            forwarded += usize::from(status == 200);
        }
        // HTTP/2: any byte in `:path`. Answered, reset or the connection closed, whichever
        // hyper does; the worker's side is checked below.
        h2_exchange(gw.addr, target).await;
    }
    // Every REQUEST the worker got decodes, with a target of visible ASCII.
    let mut received = 0;
    while let Ok(r) = rx.try_recv() {
        let t = r.unwrap_or_else(|e| panic!("the worker got a REQUEST it cannot decode: {e}"));
        assert!(vyx_core::frame::is_target(&t), "{t:?}");
        received += 1;
    }
    assert!(
        received >= forwarded,
        "{received} REQUESTs for {forwarded} answers"
    );
    assert!(forwarded >= 2, "raw UTF-8 targets are forwarded");
    // Still connected: a plain request is served.
    let (status, _) = raw_get(gw.addr, b"/plain").await;
    assert_eq!(status, 200);
    assert!(!worker.is_finished());
    worker.abort();
}

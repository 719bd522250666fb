//! The HTTP front under hostile or careless clients (issue 14): the header timeout from the
//! accept, the connection cap and its `/_vyx/` reserve, the Host rules, malformed and
//! unsupported request bodies, half-closed clients, and the forwarding headers.

mod common;
mod tcp_info;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tcp_info::tcp_info;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vyx::{Json, Request};
use vyx_core::error::ResetCode;
use vyx_core::frame::Frame;
use vyx_gateway::trusted_proxies::IpNet;

/// Answers with the request's headers (as a map of name to values) and body length.
async fn inspect(mut req: Request) -> Json<Value> {
    let mut body = req.take_body();
    let mut len = 0usize;
    while let Some(chunk) = StreamExt::next(&mut body).await {
        len += chunk.map(|c| c.len()).unwrap_or(0);
    }
    let mut headers: HashMap<String, Vec<String>> = HashMap::new();
    for (n, v) in req.headers().iter() {
        headers
            .entry(n.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    Json(json!({ "headers": headers, "len": len }))
}

/// A Rust SDK worker serving `/inspect/{*rest}` for any method.
async fn inspect_worker(gw: SocketAddr) -> vyx::Worker {
    let worker = vyx::Worker::builder()
        .connect(format!("ws://{gw}"))
        .id("front")
        .handle_signals(false)
        .any("/inspect/{*rest}", inspect)
        .build()
        .expect("valid worker");
    start_connected(&worker).await;
    worker
}

/// Writes `request` on a fresh connection and reads until the gateway closes it.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    read_to_close(&mut tcp).await
}

async fn read_to_close(tcp: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut out))
        .await
        .expect("the gateway closed the connection in time")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

fn json_body(response: &str) -> Value {
    let body = &response[response.find("\r\n\r\n").expect("a head") + 4..];
    // `connection: close` answers from the SDK may be chunked: take the JSON object.
    let start = body.find('{').expect("a JSON body");
    let end = body.rfind('}').expect("a JSON body");
    serde_json::from_str(&body[start..=end]).unwrap()
}

/// Reads until EOF or error; `true` if the gateway closed within `WAIT`.
async fn closed_by_gateway(tcp: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn silent_and_partial_preface_connections_are_closed_after_the_header_timeout() {
    let gw =
        TestGateway::start_with(|c| c.header_read_timeout = Some(Duration::from_millis(500))).await;
    // Nothing at all; one byte of the HTTP/2 preface (before hyper can tell the version);
    // the whole preface and nothing after; half an HTTP/1 head.
    let openers: [&[u8]; 4] = [
        b"",
        b"P",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
        b"GET / HTTP/1.1\r\nhost: x\r\n",
    ];
    let mut conns = Vec::new();
    for opener in openers {
        let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
        tcp.write_all(opener).await.unwrap();
        conns.push(tcp);
    }
    for (i, tcp) in conns.iter_mut().enumerate() {
        assert!(closed_by_gateway(tcp).await, "opener {i} left open");
    }
    assert!(metric(&gw, "vyx_client_errors_total{reason=\"header_timeout\"}").await >= 3);
    // A client that sends its head in time is served.
    assert_eq!(get(&client(), &gw.url("/_vyx/health")).await.0, 200);
}

#[tokio::test]
async fn an_http2_connection_idle_after_its_requests_is_closed_after_the_header_timeout() {
    let gw =
        TestGateway::start_with(|c| c.header_read_timeout = Some(Duration::from_millis(500))).await;
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    // Preface, empty SETTINGS, and one GET /_vyx/health (HEADERS, END_STREAM|END_HEADERS,
    // literal fields without indexing); then nothing more.
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&h2_health_request());
    tcp.write_all(&out).await.unwrap();
    // Answered (bytes come back), then closed once idle.
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(n > 0);
    assert!(
        closed_by_gateway(&mut tcp).await,
        "idle HTTP/2 connection left open"
    );
}

/// The embedded default and the example `vyx.yaml` resist idle and slow clients without a
/// setting: a header timeout, body buffering and a minimum body rate, a derived cap.
#[tokio::test]
async fn the_defaults_and_the_example_file_resist_idle_and_slow_clients() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/vyx.yaml");
    for c in [
        vyx_gateway::GatewayConfig::default(),
        vyx_gateway::file_config::load(&example).unwrap(),
    ] {
        assert_eq!(c.header_read_timeout, Some(Duration::from_secs(30)));
        assert_eq!(c.body_buffer, 256 << 10);
        assert_eq!(c.min_body_rate, 240);
        assert_eq!(c.min_body_rate_grace, Duration::from_secs(5));
        assert_eq!(c.max_connections, None, "derived from the open-files limit");
        assert!(c.trusted_proxies.is_empty());
    }
}

#[tokio::test]
async fn past_max_connections_only_the_reserve_serves_register_and_health() {
    let gw = TestGateway::start_with(|c| {
        c.max_connections = Some(4);
        c.header_read_timeout = Some(Duration::from_secs(600));
    })
    .await;
    // A worker first, then idle sockets fill the cap (the worker's connection counts).
    let worker = inspect_worker(gw.addr).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    // Wait until the gateway counts all four.
    let deadline = tokio::time::Instant::now() + WAIT;
    while metric(&gw, "vyx_open_connections").await < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "idle sockets never counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Health and registration still work, through the reserve ...
    let health = exchange(gw.addr, b"GET /_vyx/health HTTP/1.1\r\nhost: gw\r\n\r\n").await;
    assert_eq!(status_of(&health), 200, "{health}");
    assert!(health.to_ascii_lowercase().contains("connection: close"));
    let _late = RawWorker::connect(gw.addr, "late", vec![route(0, "GET", "/late")]).await;
    // ... but a proxied request on a reserve connection is refused.
    let proxied = exchange(gw.addr, b"GET /inspect/x HTTP/1.1\r\nhost: gw\r\n\r\n").await;
    assert_eq!(status_of(&proxied), 503, "{proxied}");
    // Past the reserve too, a connection is closed at once, without waiting for a head.
    let mut reserve = Vec::new();
    for _ in 0..40 {
        reserve.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    let mut last = TcpStream::connect(gw.addr).await.unwrap();
    assert!(closed_by_gateway(&mut last).await);
    // Once the idle sockets go, clients are served normally again.
    drop(reserve);
    drop(idle);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = exchange(
            gw.addr,
            b"GET /inspect/x HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n",
        )
        .await;
        // Until the reserve's sockets are gone, a connection may still be refused (empty).
        if r.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never served again: {r}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.stop();
}

#[tokio::test]
async fn host_rules_are_enforced_and_the_effective_host_is_forwarded() {
    let gw = TestGateway::start().await;
    let worker = inspect_worker(gw.addr).await;
    let refused: [&[u8]; 4] = [
        b"GET /inspect/a HTTP/1.1\r\nhost: a.example\r\nhost: b.example\r\n\r\n",
        b"GET /inspect/a HTTP/1.1\r\n\r\n",
        b"GET /inspect/a HTTP/1.1\r\nhost: a b\r\n\r\n",
        b"GET /inspect/a HTTP/1.1\r\nhost: user@a.example\r\n\r\n",
    ];
    for req in refused {
        let r = exchange(gw.addr, req).await;
        assert_eq!(status_of(&r), 400, "{}: {r}", String::from_utf8_lossy(req));
    }
    assert!(metric(&gw, "vyx_client_errors_total{reason=\"bad_host\"}").await >= 4);
    // HTTP/1.0 needs no Host.
    let r = exchange(gw.addr, b"GET /inspect/a HTTP/1.0\r\n\r\n").await;
    assert_eq!(status_of(&r), 200, "{r}");
    // An absolute-form target's authority wins over Host.
    let r = exchange(
        gw.addr,
        b"GET http://target.example/inspect/a HTTP/1.1\r\nhost: other.example\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&r), 200, "{r}");
    let v = json_body(&r);
    assert_eq!(v["headers"]["host"], json!(["target.example"]), "{v}");
    assert_eq!(v["headers"]["x-forwarded-host"], json!(["target.example"]));

    // HTTP/2: `:authority` wins over a `host` header.
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri("http://authority.example/inspect/h2")
        .header("host", "host.example")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(WAIT, send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["headers"]["host"], json!(["authority.example"]), "{v}");
    worker.stop();
}

/// The gateway's `via` element names the client's protocol, after the client's own, so a
/// host reads the version from the last element (spec/HOSTS.md §5).
#[tokio::test]
async fn via_names_the_client_s_http_version_after_any_via_it_sent() {
    let gw = TestGateway::start().await;
    let worker = inspect_worker(gw.addr).await;
    let v = json_body(&exchange(gw.addr, b"GET /inspect/v HTTP/1.0\r\n\r\n").await);
    assert_eq!(v["headers"]["via"], json!(["1.0 vyx"]), "{v}");
    let r = exchange(
        gw.addr,
        b"GET /inspect/v HTTP/1.1\r\nhost: gw\r\nvia: 1.1 cdn\r\nconnection: close\r\n\r\n",
    )
    .await;
    let v = json_body(&r);
    assert_eq!(v["headers"]["via"], json!(["1.1 cdn", "1.1 vyx"]), "{v}");

    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri("http://gw/inspect/v")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(WAIT, send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["headers"]["via"], json!(["2 vyx"]), "{v}");
    worker.stop();
}

#[tokio::test]
async fn a_malformed_chunked_body_is_400_a_reset_to_the_worker_and_a_client_error() {
    // Streaming (no buffering), so that the worker has the stream when the body breaks.
    let gw = TestGateway::start_with(|c| c.body_buffer = 0).await;
    let mut w = RawWorker::connect(gw.addr, "chunks", vec![route(0, "POST", "/up")]).await;
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(
        b"POST /up HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .await
    .unwrap();
    let stream = match w.next_frame().await {
        Frame::Request(r) => r.stream_id,
        other => panic!("expected REQUEST, got {other:?}"),
    };
    match w.next_frame().await {
        Frame::Data(d) => assert_eq!(&d.data[..], b"hello"),
        other => panic!("expected DATA, got {other:?}"),
    }
    tcp.write_all(b"zz-not-a-chunk-size\r\n").await.unwrap();
    match w.next_frame().await {
        Frame::Reset(r) => assert_eq!(r.stream_id, stream),
        other => panic!("expected RESET, got {other:?}"),
    }
    let r = read_to_close(&mut tcp).await;
    assert_eq!(status_of(&r), 400, "{r}");
    assert_eq!(
        metric(&gw, "vyx_client_errors_total{reason=\"malformed_body\"}").await,
        1
    );
    assert_eq!(
        metric(&gw, "vyx_requests_total{route=\"POST /up\",status=\"502\"}").await,
        0
    );

    // Buffered (the default): a small broken body never reaches the worker.
    let gw = TestGateway::start().await;
    let mut w = RawWorker::connect(gw.addr, "chunks", vec![route(0, "POST", "/up")]).await;
    let r = exchange(
        gw.addr,
        b"POST /up HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
    )
    .await;
    assert_eq!(status_of(&r), 400, "{r}");
    // The next request is the first the worker sees.
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(b"POST /up?second HTTP/1.1\r\nhost: gw\r\ncontent-length: 2\r\n\r\nok")
        .await
        .unwrap();
    match w.next_frame().await {
        Frame::Request(r) => assert_eq!(&r.target[..], b"/up?second"),
        other => panic!("expected REQUEST, got {other:?}"),
    }
}

#[tokio::test]
async fn a_transfer_coding_other_than_chunked_is_501() {
    let gw = TestGateway::start().await;
    let worker = inspect_worker(gw.addr).await;
    let r = exchange(
        gw.addr,
        b"POST /inspect/te HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&r), 501, "{r}");
    let r = exchange(
        gw.addr,
        b"POST /inspect/te HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&r), 200, "{r}");
    assert_eq!(json_body(&r)["len"], 2);
    worker.stop();
}

#[tokio::test]
async fn with_client_half_close_a_request_followed_by_the_client_fin_is_answered() {
    let gw = TestGateway::start_with(|c| c.client_half_close = true).await;
    let worker = inspect_worker(gw.addr).await;
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(b"GET /inspect/fin HTTP/1.1\r\nhost: gw\r\n\r\n")
        .await
        .unwrap();
    tcp.shutdown().await.unwrap();
    let r = read_to_close(&mut tcp).await;
    assert_eq!(status_of(&r), 200, "{r}");
    worker.stop();
}

#[tokio::test]
async fn forwarding_headers_are_rebuilt_unless_the_peer_is_a_trusted_proxy() {
    let spoofed = b"GET /inspect/f HTTP/1.1\r\nhost: real.example\r\nx-forwarded-for: 6.6.6.6\r\nx-forwarded-host: evil.example\r\nx-forwarded-proto: https\r\nforwarded: for=6.6.6.6;host=evil.example\r\nconnection: close, host\r\n\r\n";
    let gw = TestGateway::start().await;
    let worker = inspect_worker(gw.addr).await;
    let v = json_body(&exchange(gw.addr, spoofed).await);
    let h = &v["headers"];
    assert_eq!(
        h["host"],
        json!(["real.example"]),
        "Connection: host kept Host: {v}"
    );
    assert_eq!(h["x-forwarded-for"], json!(["127.0.0.1"]));
    assert_eq!(h["x-forwarded-host"], json!(["real.example"]));
    assert_eq!(h["x-forwarded-proto"], json!(["http"]));
    assert_eq!(
        h["forwarded"],
        json!(["for=127.0.0.1;proto=http;host=real.example"])
    );
    worker.stop();
    drop(gw);

    let gw = TestGateway::start_with(|c| {
        c.trusted_proxies = vec![IpNet::parse("127.0.0.0/8").unwrap()];
    })
    .await;
    let worker = inspect_worker(gw.addr).await;
    let v = json_body(&exchange(gw.addr, spoofed).await);
    let h = &v["headers"];
    assert_eq!(h["host"], json!(["real.example"]));
    assert_eq!(h["x-forwarded-for"], json!(["6.6.6.6, 127.0.0.1"]));
    assert_eq!(h["x-forwarded-host"], json!(["evil.example"]));
    assert_eq!(h["x-forwarded-proto"], json!(["https"]));
    assert_eq!(
        h["forwarded"],
        json!([
            "for=6.6.6.6;host=evil.example",
            "for=127.0.0.1;proto=http;host=real.example"
        ])
    );
    worker.stop();
}

/// Every header a framework reads the client's address, scheme, host, port or prefix from,
/// as a client might spoof it (issue 17 item 6).
const CLAIMS: [&str; 21] = [
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "forwarded-for",
    "x-forwarded",
    "x-original-forwarded-for",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "x-forwarded-protocol",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "front-end-https",
    "x-url-scheme",
    "x-forwarded-port",
    "x-forwarded-server",
    "x-forwarded-prefix",
];

/// A request carrying every claim, the underscore spellings of the forwarding headers, and
/// two ordinary headers that must pass.
fn spoofing_request() -> Vec<u8> {
    let mut req = b"GET /inspect/claims HTTP/1.1\r\nhost: real.example\r\nconnection: close\r\nx-app: kept\r\naccept: */*\r\n".to_vec();
    for name in CLAIMS {
        req.extend_from_slice(format!("{name}: 6.6.6.6\r\n").as_bytes());
    }
    for name in [
        "X_Forwarded_For",
        "X_Forwarded_Proto",
        "X_Forwarded_Host",
        "X_Real_IP",
        "my_app_header",
    ] {
        req.extend_from_slice(format!("{name}: 6.6.6.6\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    req
}

#[tokio::test]
async fn client_address_and_scheme_claims_reach_workers_only_from_trusted_proxies() {
    let gw = TestGateway::start().await;
    let worker = inspect_worker(gw.addr).await;
    let r = exchange(gw.addr, &spoofing_request()).await;
    assert_eq!(status_of(&r), 200, "{r}");
    let v = json_body(&r);
    let h = v["headers"].as_object().unwrap();
    for name in CLAIMS {
        assert!(
            !h.contains_key(name),
            "{name} from an untrusted peer reached the worker: {v}"
        );
    }
    let underscored: Vec<_> = h.keys().filter(|n| n.contains('_')).collect();
    assert!(
        underscored.is_empty(),
        "underscore names reached the worker: {underscored:?}"
    );
    assert_eq!(h["x-forwarded-for"], json!(["127.0.0.1"]));
    assert_eq!(h["x-forwarded-proto"], json!(["http"]));
    assert_eq!(
        h["x-app"],
        json!(["kept"]),
        "an ordinary header is untouched"
    );
    assert_eq!(h["accept"], json!(["*/*"]));
    worker.stop();
    drop(gw);

    // From a trusted proxy the claims are its own and pass; underscore names never do.
    let gw = TestGateway::start_with(|c| {
        c.trusted_proxies = vec![IpNet::parse("127.0.0.0/8").unwrap()];
    })
    .await;
    let worker = inspect_worker(gw.addr).await;
    let v = json_body(&exchange(gw.addr, &spoofing_request()).await);
    let h = v["headers"].as_object().unwrap();
    for name in CLAIMS {
        assert_eq!(
            h.get(name),
            Some(&json!(["6.6.6.6"])),
            "{name} from a trusted proxy: {v}"
        );
    }
    let underscored: Vec<_> = h.keys().filter(|n| n.contains('_')).collect();
    assert!(
        underscored.is_empty(),
        "underscore names reached the worker: {underscored:?}"
    );
    assert_eq!(h["x-forwarded-for"], json!(["127.0.0.1"]));
    worker.stop();
}

/// An HTTP/1.1 client that leaves before its response head, with a FIN (`curl --max-time`)
/// or a reset, cancels its handler at once: the worker gets RESET `cancel` and the SDK
/// drops the handler's future. Before, the handler ran to its end (issue 17 item 8).
#[tokio::test]
async fn an_http1_client_leaving_before_the_head_cancels_its_handler() {
    struct Guard(tokio::sync::mpsc::UnboundedSender<&'static str>);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.send("dropped");
        }
    }
    let gw = TestGateway::start().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    let worker = vyx::Worker::builder()
        .connect(format!("ws://{}", gw.addr))
        .id("front:slow")
        .handle_signals(false)
        .get("/slow", move |_req: Request| {
            let tx = tx.clone();
            async move {
                let _ = tx.send("started");
                let _guard = Guard(tx);
                // Stands for a long job (a GPU inference): only a cancellation ends it.
                tokio::time::sleep(Duration::from_secs(600)).await;
                "late"
            }
        })
        .get("/fast", |_req: Request| async { "fast" })
        .build()
        .unwrap();
    start_connected(&worker).await;
    for leave in ["fin", "rst"] {
        let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
        tcp.write_all(b"GET /slow HTTP/1.1\r\nhost: gw\r\n\r\n")
            .await
            .unwrap();
        let started = tokio::time::timeout(WAIT, rx.recv()).await.unwrap();
        assert_eq!(started, Some("started"), "{leave}");
        // Another client's request to the same worker meanwhile is untouched.
        assert_eq!(
            get(&client(), &gw.url("/fast")).await,
            (200, Bytes::from("fast"))
        );
        if leave == "fin" {
            tcp.shutdown().await.unwrap();
        } else {
            // A zero linger makes the close a reset (RST), as a killed client's can be.
            socket2::SockRef::from(&tcp)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(tcp);
        }
        let dropped = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{leave}: the handler was not cancelled"));
        assert_eq!(dropped, Some("dropped"), "{leave}");
    }
    assert_eq!(get(&client(), &gw.url("/fast")).await.0, 200);
    worker.stop();
}

/// The HTTP/2 connection preface and an empty SETTINGS frame.
const H2_START: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

/// A hand-built HTTP/2 frame.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HEADERS (END_STREAM | END_HEADERS) for `GET path` with `authority`, fields literal.
fn h2_get(stream: u32, authority: &str, path: &str) -> Vec<u8> {
    h2_request(stream, "GET", authority, path, 5)
}

/// HEADERS with `flags` for `method path` with `authority`, fields literal.
fn h2_request(stream: u32, method: &str, authority: &str, path: &str, flags: u8) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", method),
        (":scheme", "http"),
        (":authority", authority),
        (":path", path),
    ] {
        block.push(0);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    h2_frame(1, flags, stream, &block)
}

/// The next HTTP/2 frame from the gateway: (type, flags, stream, payload); `None` at the end
/// of the connection.
async fn h2_read(tcp: &mut TcpStream) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    tokio::time::timeout(WAIT, tcp.read_exact(&mut head))
        .await
        .expect("a frame or the end in time")
        .ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0; len];
    tokio::time::timeout(WAIT, tcp.read_exact(&mut payload))
        .await
        .expect("a frame's payload in time")
        .ok()?;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    Some((head[3], head[4], stream, payload))
}

/// The status of the response on `stream`: its HEADERS block starts with an indexed
/// `:status` (HPACK static table: 8 → 200, 12 → 400).
async fn h2_status(tcp: &mut TcpStream, stream: u32) -> u16 {
    loop {
        let (kind, _, id, payload) = h2_read(tcp).await.expect("a response");
        if kind == 1 && id == stream {
            return match payload[0] {
                0x88 => 200,
                0x8c => 400,
                other => panic!("unexpected first field byte {other:#x}"),
            };
        }
    }
}

/// grpc-go's clients PING each time response data arrives (bandwidth estimation): a PING
/// after each response is not a flood, however many there are; PINGs with no response
/// between them still are.
#[tokio::test]
async fn a_ping_after_each_response_is_not_a_control_frame_flood() {
    const ALLOWANCE: usize = 5;
    let gw = TestGateway::start_with(|c| c.h2_control_frames = ALLOWANCE as u32).await;
    let worker = inspect_worker(gw.addr).await;
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(H2_START).await.unwrap();
    for i in 0..(10 * ALLOWANCE as u32) {
        let stream = 2 * i + 1;
        tcp.write_all(&h2_get(stream, "gw", "/inspect/p"))
            .await
            .unwrap();
        assert_eq!(h2_status(&mut tcp, stream).await, 200, "request {i}");
        tcp.write_all(&h2_frame(6, 0, 0, &[9; 8])).await.unwrap();
    }
    let last = 20 * ALLOWANCE as u32 + 1;
    tcp.write_all(&h2_get(last, "gw", "/inspect/p"))
        .await
        .unwrap();
    assert_eq!(h2_status(&mut tcp, last).await, 200);
    // Back to back, the same PINGs are counted.
    let mut pings = Vec::new();
    for _ in 0..(4 * ALLOWANCE) {
        pings.extend(h2_frame(6, 0, 0, &[9; 8]));
    }
    let _ = tcp.write_all(&pings).await;
    let (_, goaway) = replies_until_goaway(&mut tcp, 6).await;
    assert_eq!(goaway, Some(0xb));
    worker.stop();
}

#[tokio::test]
async fn chunked_twice_and_a_host_list_are_400_over_http1_and_http2() {
    let gw = TestGateway::start().await;
    let worker = inspect_worker(gw.addr).await;
    let refused: [&[u8]; 4] = [
        b"POST /inspect/te HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked, chunked\r\n\r\n7\r\n2\r\nhi\r\n\r\n0\r\n\r\n",
        b"POST /inspect/te HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /inspect/h HTTP/1.1\r\nhost: a.example,b.example\r\n\r\n",
        b"GET http://a.example,b.example/inspect/h HTTP/1.1\r\nhost: a.example\r\n\r\n",
    ];
    for req in refused {
        let r = exchange(gw.addr, req).await;
        assert_eq!(status_of(&r), 400, "{}: {r}", String::from_utf8_lossy(req));
    }
    assert_eq!(
        metric(
            &gw,
            "vyx_client_errors_total{reason=\"bad_transfer_coding\"}"
        )
        .await,
        2
    );
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(H2_START).await.unwrap();
    tcp.write_all(&h2_get(1, "a.example,b.example", "/inspect/h2"))
        .await
        .unwrap();
    assert_eq!(h2_status(&mut tcp, 1).await, 400);
    // The same connection and the same worker serve a request with one host.
    tcp.write_all(&h2_get(3, "a.example", "/inspect/h2"))
        .await
        .unwrap();
    assert_eq!(h2_status(&mut tcp, 3).await, 200);
    let r = exchange(
        gw.addr,
        b"GET /inspect/h HTTP/1.1\r\nhost: a-b_c.example:8080\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&r), 200, "{r}");
    worker.stop();
}

/// Reads what the gateway sends after a flood until it ends the connection: how many
/// replies of `kind` (SETTINGS or PING, with ACK) came, and the GOAWAY's error code.
async fn replies_until_goaway(tcp: &mut TcpStream, kind: u8) -> (usize, Option<u32>) {
    let mut acks = 0;
    while let Some((k, flags, _, payload)) = h2_read(tcp).await {
        if k == kind && flags & 1 != 0 {
            acks += 1;
        }
        if k == 7 {
            let code = u32::from_be_bytes(payload[4..8].try_into().unwrap());
            return (acks, Some(code));
        }
    }
    (acks, None)
}

/// 1,000 SETTINGS or PING frames in one write drew as many replies and no GOAWAY; past the
/// allowance (`limits.h2_control_frames`, 50 here) the connection gets GOAWAY
/// ENHANCE_YOUR_CALM and is closed, while a connection that pings now and then and other
/// clients are served (issue 17 item 7).
#[tokio::test]
async fn an_http2_settings_or_ping_flood_gets_goaway_enhance_your_calm() {
    const ALLOWANCE: usize = 50;
    let gw = TestGateway::start_with(|c| c.h2_control_frames = ALLOWANCE as u32).await;
    let worker = inspect_worker(gw.addr).await;
    // A polite connection: a request, a few pings, another request, all answered.
    let mut polite = TcpStream::connect(gw.addr).await.unwrap();
    polite.write_all(H2_START).await.unwrap();
    polite
        .write_all(&h2_get(1, "gw", "/inspect/a"))
        .await
        .unwrap();
    assert_eq!(h2_status(&mut polite, 1).await, 200);
    for _ in 0..5 {
        polite.write_all(&h2_frame(6, 0, 0, &[7; 8])).await.unwrap();
    }

    for (kind, payload) in [(4u8, &[][..]), (6, &[1u8; 8][..])] {
        let mut flood = H2_START.to_vec();
        for _ in 0..1000 {
            flood.extend(h2_frame(kind, 0, 0, payload));
        }
        let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
        // The gateway may close before it has read it all: a failed write is expected.
        let _ = tcp.write_all(&flood).await;
        let (acks, goaway) = replies_until_goaway(&mut tcp, kind).await;
        assert_eq!(goaway, Some(0xb), "kind {kind}: ENHANCE_YOUR_CALM");
        // The connection's own SETTINGS is one of the allowance (and is acknowledged).
        assert!(acks <= ALLOWANCE + 1, "kind {kind}: {acks} replies");
        assert!(
            h2_read(&mut tcp).await.is_none(),
            "kind {kind}: closed after GOAWAY"
        );
    }
    assert_eq!(
        metric(&gw, "vyx_client_errors_total{reason=\"h2_control_flood\"}").await,
        2
    );
    polite
        .write_all(&h2_get(3, "gw", "/inspect/b"))
        .await
        .unwrap();
    assert_eq!(h2_status(&mut polite, 3).await, 200);
    let (status, _) = get(&client(), &gw.url("/inspect/c")).await;
    assert_eq!(status, 200);
    worker.stop();
}

/// A worker whose `POST /up` answers 413 at once without reading the body (the SDK then
/// RESETs the stream `no_error`: it wants no more of it, PROTOCOL.md §4.3), and `GET /up` 200.
async fn early_worker(gw: SocketAddr) -> vyx::Worker {
    let worker = vyx::Worker::builder()
        .connect(format!("ws://{gw}"))
        .id("front:early")
        .handle_signals(false)
        .post("/up", |_req: Request| async {
            (vyx::StatusCode::PAYLOAD_TOO_LARGE, "too large")
        })
        .get("/up", |_req: Request| async { "up" })
        .build()
        .unwrap();
    start_connected(&worker).await;
    worker
}

/// More than the socket buffers of both ends hold (4 MiB of send buffer at most here, and a
/// receive buffer that does not grow unread): once the gateway's socket is closed, or
/// stops being read, a client writing this much meets the reset.
const PAST_THE_BUFFERS: usize = 16 << 20;

/// An answer given before the request body ended (the worker's 413, then its RESET
/// `no_error`) is followed by a lingering close: the gateway sends its FIN, then reads and
/// discards the rest of the body, so a client that writes its whole body before it reads
/// (as hyper's client does) gets its answer. Closed at once, the socket answered the rest
/// with a reset and the client's write failed before it read anything (axum's
/// `body_limited_by_default` through vyx failed so 3 times in 8).
#[tokio::test]
async fn a_client_still_sending_after_an_early_answer_is_drained_and_reads_it() {
    let gw = linger_gateway(None, LONG, LONG).await;
    let worker = early_worker(gw.addr).await;
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(&chunked_post("/up")).await.unwrap();
    send_chunked_past_the_answer(&mut tcp, PAST_THE_BUFFERS).await;
    let answer = read_answer(&mut tcp).await;
    assert_eq!(status_of(&answer), 413, "{answer}");
    assert!(answer.ends_with("too large"), "{answer}");
    assert_eq!(metric(&gw, LINGER_CUT).await, 0);
    worker.stop();
}

/// With the default limits a lingering close has no byte bound, only its times (nginx's):
/// a client that writes its whole body before it reads (Python's `http.client`; hyper's
/// client starved of CPU), with megabytes in its own send buffer, gets its answer however
/// large the body. The former default, 4 MiB past what waited in the gateway's socket,
/// cut it before it read (axum's `body_limited_by_default` through vyx, now and then).
#[tokio::test]
async fn a_large_upload_answered_early_is_drained_under_the_default_limits() {
    let gw = TestGateway::start_with(|c| c.body_buffer = 0).await;
    let worker = early_worker(gw.addr).await;
    // The largest send buffer the kernel grants (loopback autotuning grows one as far).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(4 << 20).unwrap();
    let mut tcp = socket.connect(gw.addr).await.unwrap();
    tcp.write_all(&chunked_post("/up")).await.unwrap();
    send_chunked_past_the_answer(&mut tcp, 4 * PAST_THE_BUFFERS).await;
    let answer = read_answer(&mut tcp).await;
    assert_eq!(status_of(&answer), 413, "{answer}");
    assert_eq!(metric(&gw, LINGER_CUT).await, 0);
    worker.stop();
}

/// What already waited in the gateway's socket when the lingering close began was sent
/// before the answer: it does not count against `limits.linger_bytes`. Counted, it cut a
/// client whose body had filled the socket buffers while its handler worked, before that
/// client could read its answer (axum's `body_limited_by_default` through vyx, 2 runs in 8:
/// a receive buffer grown while the body streamed holds more than the default 4 MiB).
#[tokio::test]
async fn bytes_waiting_when_the_answer_came_do_not_count_against_linger_bytes() {
    const LINGER_BYTES: u64 = 128 << 10;
    let gw = linger_gateway(Some(LINGER_BYTES), LONG, LONG).await;
    let answer_now = std::sync::Arc::new(tokio::sync::Notify::new());
    let told = answer_now.clone();
    let worker = vyx::Worker::builder()
        .connect(format!("ws://{}", gw.addr))
        .id("front:held")
        .handle_signals(false)
        .post("/held", move |_req: Request| {
            let told = told.clone();
            async move {
                told.notified().await;
                (vyx::StatusCode::PAYLOAD_TOO_LARGE, "too large")
            }
        })
        .build()
        .unwrap();
    start_connected(&worker).await;

    // A small send buffer: what the client holds back itself (one 64 KiB loopback segment
    // past the buffer, at most) stays under the limit, so only the gateway's side is over.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(gw.addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp.write_all(&chunked_post("/held")).await.unwrap();
    // Writes until the gateway's receive buffer (more than LINGER_BYTES) is full: past the
    // stream's window the gateway stops reading, and then what the client still has cannot
    // even be sent.
    let mut chunk = format!("{:x}\r\n", 4096).into_bytes();
    chunk.resize(chunk.len() + 4096, b'x');
    chunk.extend_from_slice(b"\r\n");
    let mut written = 0usize;
    loop {
        tokio::time::timeout(WAIT, tcp.writable())
            .await
            .expect("writable in time")
            .unwrap();
        match tcp.try_write(&chunk[written % chunk.len()..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if unsent(&tcp) > 0 {
                    break;
                }
            }
            Err(e) => panic!("writing the body: {e}"),
        }
    }
    answer_now.notify_one();
    let answer = read_answer(&mut tcp).await;
    assert_eq!(status_of(&answer), 413, "{answer}");
    drop(tcp);
    assert_eq!(
        metric(&gw, LINGER_CUT).await,
        0,
        "cut after {written} bytes"
    );
    worker.stop();
}

/// The bytes in `tcp`'s send queue not yet sent: more than none once the peer's receive
/// window is closed (with Nagle off, and far below the congestion window on loopback).
fn unsent(tcp: &TcpStream) -> u32 {
    tcp_info(tcp).tcpi_notsent_bytes
}

/// Writes `total` bytes of body, or until a write fails; `true` if one failed.
async fn cut_while_sending(tcp: &mut TcpStream, total: usize) -> bool {
    tokio::time::timeout(WAIT, send_chunked(tcp, total))
        .await
        .expect("writes went on or failed in time")
        .is_err()
}

/// A gateway whose request bodies stream at once, with these lingering-close limits.
async fn linger_gateway(bytes: Option<u64>, time: Duration, idle: Duration) -> TestGateway {
    TestGateway::start_with(|c| {
        c.body_buffer = 0;
        c.linger_bytes = bytes;
        c.linger_timeout = time;
        c.linger_idle_timeout = idle;
    })
    .await
}

const LINGER_CUT: &str = "vyx_client_errors_total{reason=\"linger_limit\"}";
const LONG: Duration = Duration::from_secs(600);

/// A client that keeps sending past `limits.linger_bytes` after its answer is cut (the
/// socket closes, its writes fail) and counted.
#[tokio::test]
async fn a_client_sending_past_linger_bytes_is_cut() {
    let gw = linger_gateway(Some(64 << 10), LONG, LONG).await;
    let worker = early_worker(gw.addr).await;
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(&chunked_post("/up")).await.unwrap();
    assert!(cut_while_sending(&mut tcp, PAST_THE_BUFFERS).await);
    assert_eq!(metric(&gw, LINGER_CUT).await, 1);
    worker.stop();
}

/// A client that keeps sending past `timeouts.linger`, however slowly, is cut and counted.
#[tokio::test]
async fn a_client_trickling_past_the_linger_time_is_cut() {
    let gw = linger_gateway(None, Duration::from_millis(300), LONG).await;
    let worker = early_worker(gw.addr).await;
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(&chunked_post("/up")).await.unwrap();
    let answer = read_answer(&mut tcp).await;
    assert_eq!(status_of(&answer), 413, "{answer}");
    // A byte of body every 20 ms: never idle.
    let mut pace = tokio::time::interval(Duration::from_millis(20));
    let trickle = async {
        loop {
            pace.tick().await;
            if tcp.write_all(b"1\r\nx\r\n").await.is_err() {
                return;
            }
        }
    };
    tokio::time::timeout(WAIT, trickle)
        .await
        .expect("a trickling client was cut after timeouts.linger");
    assert_eq!(metric(&gw, LINGER_CUT).await, 1);
    worker.stop();
}

/// A client that goes silent after its answer, without closing, is closed after
/// `timeouts.linger_idle`, not counted as an error.
#[tokio::test]
async fn a_silent_lingering_connection_is_closed_after_linger_idle() {
    let gw = linger_gateway(None, LONG, Duration::from_millis(300)).await;
    let worker = early_worker(gw.addr).await;
    let open = "vyx_open_connections";
    let baseline = metric(&gw, open).await;
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(&chunked_post("/up")).await.unwrap();
    tcp.write_all(b"1\r\nx\r\n").await.unwrap();
    let answer = read_answer(&mut tcp).await;
    assert_eq!(status_of(&answer), 413, "{answer}");
    let deadline = tokio::time::Instant::now() + WAIT;
    while metric(&gw, open).await > baseline {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a silent lingering connection outlived timeouts.linger_idle"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metric(&gw, LINGER_CUT).await, 0);
    worker.stop();
}

/// Reads an answer up to the gateway's FIN (its lingering close goes on reading after it).
async fn read_answer(tcp: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, tcp.read(&mut buf))
            .await
            .expect("the answer and the FIN in time")
        {
            Ok(0) => return String::from_utf8_lossy(&out).into_owned(),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!("reading the answer: {e}; read {out:?}"),
        }
    }
}

/// Lingering connections keep their slots (they count against `limits.max_connections`)
/// but give them up at once to new connections: at the cap, a new client is served as
/// usual, not as one of the reserve, and a lingering connection is cut for it.
#[tokio::test]
async fn lingering_connections_give_their_slots_to_new_clients() {
    let gw = TestGateway::start_with(|c| {
        c.max_connections = Some(4);
        c.header_read_timeout = Some(Duration::from_secs(600));
        c.body_buffer = 0;
        c.linger_timeout = LONG;
        c.linger_idle_timeout = LONG;
    })
    .await;
    // The worker's connection and three lingering ones fill the cap.
    let worker = early_worker(gw.addr).await;
    let mut lingering = Vec::new();
    for _ in 0..3 {
        let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
        tcp.write_all(&chunked_post("/up")).await.unwrap();
        tcp.write_all(b"1\r\nx\r\n").await.unwrap();
        let answer = read_answer(&mut tcp).await;
        assert_eq!(status_of(&answer), 413, "{answer}");
        lingering.push(tcp);
    }
    let served = exchange(
        gw.addr,
        b"GET /up HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&served), 200, "{served}");
    let mut cut = 0;
    for tcp in &mut lingering {
        // No byte bound by default: drained unless cut.
        cut += usize::from(cut_while_sending(tcp, 1 << 20).await);
    }
    assert!(cut >= 1, "no lingering connection gave up its slot");
    assert!(cut < lingering.len(), "no connection was lingering");
    worker.stop();
}

/// A piece of request body: once it has reached the worker, the gateway is waiting on the
/// client for more.
const FIRST_PIECE: usize = 16 << 10;

/// A raw worker for `POST /up` and `GET /up`, on a gateway that streams bodies at once and
/// has no minimum body rate (only the worker's RESET lets a body go).
async fn raw_early(
    tweak: impl FnOnce(&mut vyx_gateway::GatewayConfig),
) -> (TestGateway, RawWorker) {
    let gw = TestGateway::start_with(|c| {
        c.body_buffer = 0;
        c.min_body_rate = 0;
        tweak(c);
    })
    .await;
    let routes = vec![route(0, "POST", "/up"), route(1, "GET", "/up")];
    let w = RawWorker::connect(gw.addr, "early", routes).await;
    (gw, w)
}

/// Takes a REQUEST and [`FIRST_PIECE`] of its body, then answers 413 and RESETs the stream
/// `no_error`, as the SDKs do for a handler that answered without reading the body; the
/// stream's id.
async fn answer_after_the_first_piece(w: &mut RawWorker) -> u32 {
    let id = match w.next_frame().await {
        Frame::Request(r) => r.stream_id,
        other => panic!("expected REQUEST, got {other:?}"),
    };
    let mut got = 0;
    while got < FIRST_PIECE {
        match w.next_frame().await {
            Frame::Data(d) if d.stream_id == id => got += d.data.len(),
            other => panic!("expected DATA, got {other:?}"),
        }
    }
    w.send(respond(id, 413, true)).await;
    let reset = vyx_core::frame::Reset::new(id, ResetCode::NoError, "response complete");
    w.send(Frame::Reset(reset)).await;
    id
}

/// After a worker's answer and RESET `no_error`, an HTTP/1 client that has paused its body
/// gets the whole answer and the gateway's FIN at once. Before, the gateway waited for the
/// client's next piece of body (or `timeouts.body_idle`, or the minimum rate's 408 counted
/// against the client) before letting the body go and closing.
#[tokio::test]
async fn an_http1_early_answer_is_followed_by_the_fin_at_once() {
    let (gw, mut w) = raw_early(|_| {}).await;
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(&chunked_post("/up")).await.unwrap();
    let piece = format!("{FIRST_PIECE:x}\r\n{}\r\n", "x".repeat(FIRST_PIECE));
    tcp.write_all(piece.as_bytes()).await.unwrap();
    answer_after_the_first_piece(&mut w).await;
    let answer = read_answer(&mut tcp).await;
    assert_eq!(status_of(&answer), 413, "{answer}");
}

/// HTTP/2 has its own early answer (RFC 9113 §8.1): the response, then RST_STREAM
/// `NO_ERROR` for the request stream as soon as the worker RESETs `no_error`, and the
/// connection goes on. Before, the gateway kept waiting for the body nobody wanted until
/// the client sent more of it (or `timeouts.body_idle`).
#[tokio::test]
async fn an_http2_early_answer_resets_the_request_stream_with_no_error() {
    let (gw, mut w) = raw_early(|_| {}).await;
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(H2_START).await.unwrap();
    // HEADERS (END_HEADERS only) and a first DATA: the body goes on.
    tcp.write_all(&h2_request(1, "POST", "gw", "/up", 4))
        .await
        .unwrap();
    tcp.write_all(&h2_frame(0, 0, 1, &[b'x'; FIRST_PIECE]))
        .await
        .unwrap();
    let early = answer_after_the_first_piece(&mut w).await;
    let mut answered = false;
    loop {
        let (kind, _, id, payload) = h2_read(&mut tcp).await.expect("the connection open");
        match (kind, id) {
            (1, 1) => answered = true,
            (3, 1) => {
                assert!(answered, "RST_STREAM before the response");
                assert_eq!(payload, [0, 0, 0, 0], "RST_STREAM NO_ERROR");
                break;
            }
            (7, _) => panic!("GOAWAY {payload:?}"),
            _ => {}
        }
    }
    tcp.write_all(&h2_get(3, "gw", "/up")).await.unwrap();
    let id = loop {
        match w.next_frame().await {
            Frame::Request(r) => break r.stream_id,
            // The response's end may cancel the finished stream before the worker's
            // RESET is read: a race §4.4 allows.
            Frame::Reset(r) if r.stream_id == early => {}
            other => panic!("expected REQUEST, got {other:?}"),
        }
    };
    w.send(respond(id, 200, true)).await;
    assert_eq!(h2_status(&mut tcp, 3).await, 200);
}

//! The gateway with workers written with the Rust SDK, over real loopback sockets: what the
//! issue's "done when" list asks, end to end.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use vyx::{ConnectionState, Json, Request, Response};

fn sha_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Runs CPU-heavy test work (building and hashing 64 MiB takes seconds in a debug build)
/// on the blocking pool. The worker under test shares this test's runtime: blocking it for
/// longer than the heartbeat deadline (3 x 5 s; easily reached on a loaded 2-core machine)
/// silences the worker, and the gateway rightly drops it as dead.
async fn off_runtime<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("blocking work")
}

/// A deterministic body of `n` bytes.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

async fn inspect(mut req: Request) -> Json<Value> {
    let mut body = req.take_body();
    let mut hasher = Sha256::new();
    let mut len = 0usize;
    while let Some(chunk) = StreamExt::next(&mut body).await {
        let chunk = chunk.expect("body chunk");
        len += chunk.len();
        hasher.update(&chunk);
    }
    let headers: Vec<Value> = req
        .headers()
        .iter()
        .map(|(n, v)| json!([n.as_str(), String::from_utf8_lossy(v.as_bytes())]))
        .collect();
    let params: HashMap<&str, &str> = req.params().iter().collect();
    Json(json!({
        "method": req.method().as_str(),
        "path": req.path(),
        "query": req.raw_query(),
        "params": params,
        "headers": headers,
        "len": len,
        "sha256": hex(&hasher.finalize()),
    }))
}

async fn echo(req: Request) -> Response {
    let ct = req.header("content-type").cloned();
    let resp = Response::stream(req.into_body());
    match ct {
        Some(ct) => resp.with_header(vyx::header::CONTENT_TYPE, ct),
        None => resp,
    }
}

async fn download(req: Request) -> Response {
    let n: usize = req.param("n").unwrap().parse().unwrap();
    let body = pattern(n);
    let chunks: Vec<Result<Bytes, std::io::Error>> = body
        .chunks(100_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Response::stream(futures_util::stream::iter(chunks))
}

async fn wait(req: Request) -> &'static str {
    let ms: u64 = req.param("ms").unwrap().parse().unwrap();
    tokio::time::sleep(Duration::from_millis(ms)).await;
    "done"
}

struct TestWorker {
    worker: vyx::Worker,
    task: tokio::task::JoinHandle<Result<(), vyx::Error>>,
    served: Arc<AtomicUsize>,
    /// `/hold` answers once the test adds a permit here.
    release: Arc<tokio::sync::Semaphore>,
}

impl TestWorker {
    async fn start(gw: SocketAddr, id: &str, tag: &str) -> TestWorker {
        Self::start_with(gw, id, tag, 1024).await
    }

    async fn start_with(gw: SocketAddr, id: &str, tag: &str, max_concurrency: u32) -> TestWorker {
        let served = Arc::new(AtomicUsize::new(0));
        let counter = served.clone();
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let gate = release.clone();
        let tag = tag.to_string();
        let worker = vyx::Worker::builder()
            .connect(format!("ws://{gw}"))
            .id(id)
            .handle_signals(false)
            .max_concurrency(max_concurrency)
            .get("/hello/{name}", |req: Request| async move {
                Json(json!({ "hello": req.param("name").unwrap_or_default(), "lang": "rust" }))
            })
            .any("/inspect/{*rest}", inspect)
            .post("/echo", echo)
            .get("/download/{n}", download)
            .get("/wait/{ms}", move |req: Request| {
                let counter = counter.clone();
                let tag = tag.clone();
                async move {
                    let done = wait(req).await;
                    counter.fetch_add(1, Ordering::SeqCst);
                    format!("{done} by {tag}")
                }
            })
            .get("/hold", move |_req: Request| {
                let gate = gate.clone();
                async move {
                    gate.acquire().await.unwrap().forget();
                    "released"
                }
            })
            .get("/bighead", |_req: Request| async move {
                let big = vyx::HeaderValue::from_str(&"h".repeat(600_000)).unwrap();
                Response::text("never sent")
                    .with_header("x-big-1", big.clone())
                    .with_header("x-big-2", big)
            })
            .get("/panic", |_req: Request| async move {
                if true {
                    panic!("handler failure on purpose");
                }
                "unreachable"
            })
            .build()
            .expect("valid worker");
        let task = start_connected(&worker).await;
        TestWorker {
            worker,
            task,
            served,
            release,
        }
    }

    async fn stop(self) -> Result<(), vyx::Error> {
        self.worker.stop();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("worker stopped in time")
            .unwrap()
    }
}

#[tokio::test]
async fn hello_world_end_to_end() {
    let gw = TestGateway::start().await;
    let w = TestWorker::start(gw.addr, "rust:e2e", "a").await;
    let (status, headers, body) =
        send(&client(), "GET", &gw.url("/hello/world"), &[], Bytes::new()).await;
    assert_eq!(status, 200);
    assert_eq!(headers.get("content-type").unwrap(), "application/json");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v, json!({"hello": "world", "lang": "rust"}));
    // HEAD is served by the GET route, without a body.
    let (status, _, body) = send(
        &client(),
        "HEAD",
        &gw.url("/hello/world"),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!((status, body.len()), (200, 0));
    w.stop().await.unwrap();
}

#[tokio::test]
async fn params_query_headers_and_bodies_arrive_intact() {
    let gw = TestGateway::start().await;
    let w = TestWorker::start(gw.addr, "rust:e2e", "a").await;
    let c = client();
    let long = "v".repeat(8000);
    for size in [0usize, 1, 64 * 1024, 1024 * 1024 + 7] {
        let body = pattern(size);
        let (status, _, answer) = send(
            &c,
            "PUT",
            &gw.url("/inspect/a%2Fb/w%C3%B6rld?q=%C3%A9t%C3%A9&empty=&flag"),
            &[
                ("x-multi", "one"),
                ("x-multi", "two"),
                ("X-Mixed-Case", "Value"),
                ("x-long", &long),
                ("x-bin", "caf\u{e9}"),
            ],
            body.clone(),
        )
        .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
        let v: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(v["method"], "PUT");
        assert_eq!(v["path"], "/inspect/a%2Fb/w%C3%B6rld");
        assert_eq!(v["query"], "q=%C3%A9t%C3%A9&empty=&flag");
        assert_eq!(v["params"]["rest"], "a/b/wörld", "catch-all decoded");
        assert_eq!(v["len"], size);
        assert_eq!(v["sha256"], sha_hex(&body), "body of {size} bytes");
        let headers = v["headers"].as_array().unwrap();
        let values = |name: &str| -> Vec<&str> {
            headers
                .iter()
                .filter(|h| h[0] == name)
                .map(|h| h[1].as_str().unwrap())
                .collect()
        };
        assert_eq!(values("x-multi"), vec!["one", "two"]);
        assert_eq!(values("x-mixed-case"), vec!["Value"]);
        assert_eq!(values("x-long"), vec![long.as_str()]);
        assert_eq!(values("x-bin"), vec!["café"]);
    }
    w.stop().await.unwrap();
}

#[tokio::test]
async fn sixty_four_mib_streams_both_ways() {
    let gw = TestGateway::start().await;
    let w = TestWorker::start(gw.addr, "rust:e2e", "a").await;
    let c = client();
    let body = Bytes::from(off_runtime(|| pattern(64 << 20)).await);
    let (status, headers, answer) = send(
        &c,
        "POST",
        &gw.url("/echo"),
        &[("content-type", "application/x-test")],
        body.clone(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers.get("content-type").unwrap(), "application/x-test");
    assert_eq!(answer.len(), body.len());
    let (got, want) = off_runtime(move || (sha_hex(&answer), sha_hex(&body))).await;
    assert_eq!(got, want);

    let (status, answer) = get(&c, &gw.url("/download/10000001")).await;
    assert_eq!(status, 200);
    let (got, want) = off_runtime(move || (sha_hex(&answer), sha_hex(&pattern(10_000_001)))).await;
    assert_eq!(got, want);
    let (status, _, answer) = send(&c, "POST", &gw.url("/echo"), &[], Bytes::new()).await;
    assert_eq!((status, answer.len()), (200, 0));
    w.stop().await.unwrap();
}

#[tokio::test]
async fn five_hundred_concurrent_requests_over_one_connection() {
    let gw = TestGateway::start().await;
    let w = TestWorker::start(gw.addr, "rust:e2e", "a").await;
    let c = client();
    let mut tasks = Vec::new();
    for i in 0..500 {
        let c = c.clone();
        let url = gw.url(&format!("/wait/{}", 50 + i % 7));
        tasks.push(tokio::spawn(async move { get(&c, &url).await }));
    }
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!((status, &body[..]), (200, &b"done by a"[..]));
    }
    assert_eq!(w.served.load(Ordering::SeqCst), 500);
    wait_for_workers(gw.addr, "rust:e2e", 1).await;
    w.stop().await.unwrap();
}

#[tokio::test]
async fn concurrency_cap_is_respected_and_full_workers_queue_then_503() {
    let gw = TestGateway::start_with(|c| c.queue_timeout = Duration::from_millis(300)).await;
    let w = TestWorker::start_with(gw.addr, "rust:e2e", "a", 2).await;
    let c = client();
    // Two held requests fill the worker; a third waits past the queue timeout: 503.
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let c = c.clone();
            let url = gw.url("/hold");
            tokio::spawn(async move { get(&c, &url).await })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, body) = get(&c, &gw.url("/_vyx/workers")).await;
        let v: Value = serde_json::from_slice(&body).unwrap();
        // Across the worker's connections (one per shard), which share its 2 slots.
        let held: u64 = v
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["in_flight"].as_u64().unwrap())
            .sum();
        if held == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "slots never filled: {v}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, headers, _) = send(&c, "GET", &gw.url("/hello/x"), &[], Bytes::new()).await;
    assert_eq!(status, 503);
    assert_eq!(headers.get("retry-after").unwrap(), "1");
    w.release.add_permits(2);
    for s in slow {
        assert_eq!(s.await.unwrap(), (200, Bytes::from("released")));
    }
    // Room again: served.
    assert_eq!(get(&c, &gw.url("/hello/x")).await.0, 200);
    w.stop().await.unwrap();
}

#[tokio::test]
async fn a_panicking_handler_gives_500_and_the_worker_keeps_serving() {
    let gw = TestGateway::start().await;
    let w = TestWorker::start(gw.addr, "rust:e2e", "a").await;
    let c = client();
    for _ in 0..3 {
        let (status, _) = get(&c, &gw.url("/panic")).await;
        assert_eq!(status, 500);
        let (status, _) = get(&c, &gw.url("/hello/again")).await;
        assert_eq!(status, 200);
    }
    w.stop().await.unwrap();
}

#[tokio::test]
async fn replicas_share_the_load() {
    let gw = TestGateway::start().await;
    let a = TestWorker::start(gw.addr, "rust:e2e", "a").await;
    let b = TestWorker::start(gw.addr, "rust:e2e", "b").await;
    wait_for_workers(gw.addr, "rust:e2e", 2).await;
    let c = client();
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let c = c.clone();
            let url = gw.url("/wait/500");
            tokio::spawn(async move { get(&c, &url).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().0, 200);
    }
    let (na, nb) = (
        a.served.load(Ordering::SeqCst),
        b.served.load(Ordering::SeqCst),
    );
    assert_eq!(na + nb, 40);
    assert!(
        na >= 10 && nb >= 10,
        "least-loaded spreads concurrent requests: a={na} b={nb}"
    );
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test]
async fn drain_under_load_loses_no_request() {
    let gw = TestGateway::start().await;
    let a = TestWorker::start(gw.addr, "rust:e2e", "a").await;
    let b = TestWorker::start(gw.addr, "rust:e2e", "b").await;
    wait_for_workers(gw.addr, "rust:e2e", 2).await;
    let c = client();
    let url = gw.url("/wait/30");
    let load: Vec<_> = (0..16)
        .map(|_| {
            let c = c.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..25 {
                    statuses.push(get(&c, &url).await.0);
                }
                statuses
            })
        })
        .collect();
    // Drain `a` once it has taken part of the load.
    let deadline = tokio::time::Instant::now() + WAIT;
    while a.served.load(Ordering::SeqCst) < 20 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let served_by_a = a.served.clone();
    a.stop().await.expect("drained cleanly");
    let after_drain = served_by_a.load(Ordering::SeqCst);
    let mut total = 0;
    for t in load {
        for s in t.await.unwrap() {
            assert_eq!(s, 200);
            total += 1;
        }
    }
    assert_eq!(total, 400);
    assert_eq!(after_drain + b.served.load(Ordering::SeqCst), 400);
    b.stop().await.unwrap();
}

#[tokio::test]
async fn worker_reregisters_after_a_gateway_restart() {
    let gw = TestGateway::start_restartable().await;
    let addr = gw.addr;
    let w = TestWorker::start(addr, "rust:e2e", "a").await;
    let mut state = w.worker.state();
    gw.kill().await;
    tokio::time::timeout(
        WAIT,
        state.wait_for(|s| matches!(s, ConnectionState::Reconnecting { .. })),
    )
    .await
    .expect("worker noticed")
    .unwrap();
    let gw = TestGateway::start_with(|c| c.listen = addr).await;
    // Within the backoff bound: the envelope is capped at 10 s.
    tokio::time::timeout(
        Duration::from_secs(12),
        state.wait_for(|s| matches!(s, ConnectionState::Connected { .. })),
    )
    .await
    .expect("re-registered within the backoff cap")
    .unwrap();
    let (status, _) = get(&client(), &gw.url("/hello/back")).await;
    assert_eq!(status, 200);
    w.stop().await.unwrap();
}

#[tokio::test]
async fn gateway_shutdown_drains_in_flight_requests_and_workers_come_back() {
    let gw = TestGateway::start_restartable().await;
    let addr = gw.addr;
    let w = TestWorker::start(addr, "rust:e2e", "a").await;
    let c = client();
    let url = gw.url("/wait/400");
    let held = tokio::spawn(async move { get(&c, &url).await });
    let deadline = tokio::time::Instant::now() + WAIT;
    while in_flight(gw.addr).await != 1 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut state = w.worker.state();
    gw.shutdown().await;
    let (status, body) = held.await.unwrap();
    assert_eq!(
        (status, &body[..]),
        (200, &b"done by a"[..]),
        "in-flight request finished"
    );
    let gw = TestGateway::start_with(|c| c.listen = addr).await;
    tokio::time::timeout(
        Duration::from_secs(12),
        state.wait_for(|s| matches!(s, ConnectionState::Connected { .. })),
    )
    .await
    .expect("reconnected to the new gateway")
    .unwrap();
    assert_eq!(get(&client(), &gw.url("/hello/again")).await.0, 200);
    w.stop().await.unwrap();
}

/// Tokens per worker id, as a configured gateway checks them (the file format comes later).
struct Tokens(HashMap<&'static str, &'static str>);

impl vyx_gateway::auth::Authenticator for Tokens {
    fn admit(
        &self,
        worker_id: &str,
        token: Option<&str>,
        _peer: std::net::SocketAddr,
    ) -> Result<vyx_gateway::auth::Admission, vyx_gateway::auth::Rejection> {
        use vyx_gateway::auth::{Admission, Rejection};
        let expected = self
            .0
            .get(worker_id)
            .ok_or_else(|| Rejection::UnknownWorker(worker_id.into()))?;
        match token {
            None => Err(Rejection::MissingToken),
            Some(t) if t == *expected => Ok(Admission::default()),
            Some(_) => Err(Rejection::WrongToken(worker_id.into())),
        }
    }
}

#[tokio::test]
async fn credentials_are_checked_before_the_upgrade_and_named_in_the_worker_error() {
    let gw = TestGateway::start_with(|c| {
        c.dev_mode = false;
        c.auth = Arc::new(Tokens(HashMap::from([("rust:secure", "s3cret")])));
    })
    .await;
    let attempt = |token: Option<&'static str>| {
        let mut b = vyx::Worker::builder()
            .connect(format!("ws://{}", gw.addr))
            .id("rust:secure")
            .handle_signals(false)
            .get("/secure", |_req: Request| async { "ok" });
        if let Some(t) = token {
            b = b.token(t);
        }
        b.build().unwrap()
    };
    for (token, status, words) in [
        (Some("wrong"), "403", "invalid token"),
        (None, "401", "missing credentials"),
    ] {
        let err = tokio::time::timeout(WAIT, attempt(token).start())
            .await
            .expect("refused at once, not retried")
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains(status) && text.contains(words), "{text}");
    }
    let ok = attempt(Some("s3cret"));
    let runner = ok.clone();
    let task = tokio::spawn(async move { runner.start().await });
    wait_for_workers(gw.addr, "rust:secure", 1).await;
    assert_eq!(
        get(&client(), &gw.url("/secure")).await,
        (200, Bytes::from("ok"))
    );
    ok.stop();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn http2_clients_are_served_and_the_authority_becomes_host() {
    let gw = TestGateway::start().await;
    let w = TestWorker::start(gw.addr, "rust:e2e", "a").await;
    let h2: hyper_util::client::legacy::Client<_, http_body_util::Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let (status, _, body) = send(&h2, "POST", &gw.url("/inspect/h2?x=1"), &[], "hi").await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    let host: Vec<&str> = v["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0] == "host")
        .map(|h| h[1].as_str().unwrap())
        .collect();
    assert_eq!(host, vec![gw.addr.to_string()]);
    assert_eq!(v["len"], 2);
    w.stop().await.unwrap();
}

/// spec/vectors/cookies.json: the client's `cookie` fields (HTTP/2 crumbs among them, RFC
/// 9113 §8.2.3) reach the worker as one `cookie` header, joined with "; ".
#[tokio::test]
async fn cookie_fields_reach_the_worker_as_the_cookie_vectors_say() {
    let path = format!(
        "{}/../spec/vectors/cookies.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let file: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let gw = TestGateway::start().await;
    let w = TestWorker::start(gw.addr, "rust:e2e", "a").await;
    let h1 = client();
    let h2: HttpClient =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    for case in file["vectors"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        // Another header between the fields: the crumbs need not be adjacent.
        let mut headers = vec![("x-before", "1")];
        for field in case["client"].as_array().unwrap() {
            headers.push(("cookie", field.as_str().unwrap()));
            headers.push(("x-between", "1"));
        }
        let c = if case["http2"] == true { &h2 } else { &h1 };
        let (status, _, body) = send(c, "GET", &gw.url("/inspect/cookies"), &headers, "").await;
        assert_eq!(status, 200, "{name}");
        let v: Value = serde_json::from_slice(&body).unwrap();
        let cookies: Vec<&str> = v["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h[0] == "cookie")
            .map(|h| h[1].as_str().unwrap())
            .collect();
        let want: Vec<&str> = case["forwarded"].as_str().into_iter().collect();
        assert_eq!(cookies, want, "{name}");
    }
    w.stop().await.unwrap();
}

#[tokio::test]
async fn a_handler_whose_client_is_gone_is_cancelled() {
    let gw = TestGateway::start_with(|c| c.request_timeout = Duration::from_millis(200)).await;
    let (dropped_tx, mut dropped_rx) = tokio::sync::mpsc::unbounded_channel::<bool>();
    struct Guard(tokio::sync::mpsc::UnboundedSender<bool>, bool);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.send(self.1);
        }
    }
    let worker = vyx::Worker::builder()
        .connect(format!("ws://{}", gw.addr))
        .id("rust:hang")
        .handle_signals(false)
        .get("/hang", move |_req: Request| {
            let tx = dropped_tx.clone();
            async move {
                let mut guard = Guard(tx, false);
                tokio::time::sleep(Duration::from_secs(600)).await;
                guard.1 = true; // completed: never reached when cancelled
                "late"
            }
        })
        .build()
        .unwrap();
    let runner = worker.clone();
    let task = tokio::spawn(async move { runner.start().await });
    wait_for_workers(gw.addr, "rust:hang", 1).await;
    let (status, _) = get(&client(), &gw.url("/hang")).await;
    assert_eq!(status, 504);
    let completed = tokio::time::timeout(WAIT, dropped_rx.recv())
        .await
        .expect("handler cancelled after the gateway reset the stream")
        .unwrap();
    assert!(!completed);
    worker.stop();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_response_head_too_big_for_a_frame_is_a_500_and_the_connection_survives() {
    let gw = TestGateway::start().await;
    let w = TestWorker::start(gw.addr, "rust:e2e", "a").await;
    let c = client();
    let connection = |body: Bytes| -> String {
        let v: Value = serde_json::from_slice(&body).unwrap();
        v[0]["connection_id"].as_str().unwrap().to_string()
    };
    let before = connection(get(&c, &gw.url("/_vyx/workers")).await.1);
    let (status, _) = get(&c, &gw.url("/bighead")).await;
    assert_eq!(status, 500);
    assert_eq!(get(&c, &gw.url("/hello/after")).await.0, 200);
    let after = connection(get(&c, &gw.url("/_vyx/workers")).await.1);
    assert_eq!(before, after, "same worker connection");
    w.stop().await.unwrap();
}

#[tokio::test]
async fn a_request_head_too_big_for_a_frame_is_431_and_the_worker_connection_survives() {
    // The test client is a trusted proxy, so that its X-Forwarded-For chain is kept.
    let gw = TestGateway::start_with(|c| {
        c.trusted_proxies = vec![vyx_gateway::trusted_proxies::IpNet::parse("127.0.0.1").unwrap()]
    })
    .await;
    let w = TestWorker::start(gw.addr, "rust:e2e", "a").await;
    let c = client();
    let connection = |body: Bytes| -> String {
        let v: Value = serde_json::from_slice(&body).unwrap();
        v[0]["connection_id"].as_str().unwrap().to_string()
    };
    let before = connection(get(&c, &gw.url("/_vyx/workers")).await.1);
    let long_value = "v".repeat(70_000);
    // A prior X-Forwarded-For that only overflows once the gateway appends the client.
    let long_chain = "1".repeat(65_530);
    for (name, value) in [
        ("x-long", long_value.as_str()),
        ("x-forwarded-for", long_chain.as_str()),
    ] {
        let (status, _, body) = send(
            &c,
            "GET",
            &gw.url("/hello/x"),
            &[(name, value)],
            Bytes::new(),
        )
        .await;
        assert_eq!(status, 431, "{name}: {}", String::from_utf8_lossy(&body));
    }
    assert_eq!(get(&c, &gw.url("/hello/after")).await.0, 200);
    let after = connection(get(&c, &gw.url("/_vyx/workers")).await.1);
    assert_eq!(before, after, "same worker connection");
    w.stop().await.unwrap();
}

/// `expect: 100-continue` (PROTOCOL.md §5.1): the gateway answers `100 Continue` itself,
/// reads the body like any other, and the handler gets it.
#[tokio::test]
async fn an_upload_behind_expect_continue_reaches_a_handler_that_reads_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = TestGateway::start().await;
    let w = TestWorker::start(gw.addr, "rust:e2e", "a").await;
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /inspect/up HTTP/1.1\r\nhost: {}\r\ncontent-length: 5\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n",
        gw.addr
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let mut sent_body = false;
    loop {
        let n = tokio::time::timeout(Duration::from_secs(20), tcp.read(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no answer in time; so far: {:?}",
                    String::from_utf8_lossy(&seen)
                )
            })
            .unwrap();
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        if !sent_body && text.contains("100 Continue") {
            tcp.write_all(b"hello").await.unwrap();
            sent_body = true;
        }
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 100 Continue"), "{text}");
    assert!(text.contains("HTTP/1.1 200"), "{text}");
    assert!(text.contains(r#""len":5"#), "{text}");
    w.stop().await.unwrap();
}

//! The gateway's shards (see `gateway/src/shards.rs`): connections served on one
//! single-threaded runtime each, a worker's connections spread over them, and a request
//! served by a worker connection on its own shard when one has room.

mod common;

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use vyx_core::frame::Frame;

use common::*;

/// Each connection's shard in `/_vyx/workers`, by connection id.
async fn shards_of(gw: std::net::SocketAddr) -> HashMap<String, u64> {
    let (status, body) = get(&client(), &format!("http://{gw}/_vyx/workers")).await;
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let list = list.as_array().unwrap();
    list.iter()
        .map(|w| {
            let shard = w["shard"]
                .as_u64()
                .unwrap_or_else(|| panic!("no shard: {w}"));
            (w["connection_id"].as_str().unwrap().to_owned(), shard)
        })
        .collect()
}

/// Answers every REQUEST on `w` with 200 and `name` as the body, after telling `seen`
/// (and, with `hold`, only once a release comes on `hold`).
fn serve_named(
    mut w: RawWorker,
    name: &'static [u8],
    seen: mpsc::UnboundedSender<&'static [u8]>,
    mut hold: Option<mpsc::UnboundedReceiver<()>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(Ok(msg)) = w.ws.next().await {
            let Message::Binary(b) = msg else { continue };
            let Ok(Frame::Request(r)) = Frame::decode(b, 1 << 20) else {
                continue;
            };
            let _ = seen.send(name);
            if let Some(hold) = &mut hold {
                let _ = hold.recv().await;
            }
            w.send(respond(r.stream_id, 200, false)).await;
            w.send(data(r.stream_id, name, true)).await;
        }
    })
}

/// An HTTP/1.1 connection of its own: every request sent on it arrives on one shard.
async fn h1(gw: std::net::SocketAddr) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let tcp = TcpStream::connect(gw).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

async fn body_of(resp: http::Response<hyper::body::Incoming>) -> Bytes {
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap().to_bytes()
}

fn get_x() -> http::Request<Empty<Bytes>> {
    http::Request::get("http://gw/x")
        .header(http::header::HOST, "gw")
        .body(Empty::new())
        .unwrap()
}

/// Two connections of one worker land on the two shards; every request of a client
/// connection is served by the worker connection on that client's shard, so that both
/// serve (without the preference, the first-listed connection takes every one of these
/// requests, one at a time, as the least loaded).
#[tokio::test]
async fn requests_are_served_by_the_worker_connection_on_their_own_shard() {
    let gw = TestGateway::start_with(|c| c.threads = 2).await;
    let routes = || vec![route(0, "GET", "/x")];
    let a = RawWorker::connect(gw.addr, "local", routes()).await;
    let b = RawWorker::connect(gw.addr, "local", routes()).await;
    let shards = shards_of(gw.addr).await;
    let placed: BTreeSet<u64> = [&a, &b]
        .iter()
        .map(|w| shards[&w.welcome.connection_id])
        .collect();
    assert_eq!(placed, BTreeSet::from([0, 1]), "one per shard: {shards:?}");
    assert_eq!(a.welcome.connections, 2, "WELCOME asks for one per shard");
    let (seen, _seen_rx) = mpsc::unbounded_channel();
    let _a = serve_named(a, b"a", seen.clone(), None);
    let _b = serve_named(b, b"b", seen, None);

    let mut served_by = BTreeSet::new();
    for _ in 0..4 {
        let mut conn = h1(gw.addr).await;
        let mut names = BTreeSet::new();
        for _ in 0..3 {
            names.insert(body_of(conn.send_request(get_x()).await.unwrap()).await);
        }
        assert_eq!(
            names.len(),
            1,
            "one client connection, one shard, one worker connection: {names:?}"
        );
        served_by.extend(names);
    }
    assert_eq!(
        served_by.len(),
        2,
        "both shards' connections serve: {served_by:?}"
    );
}

/// One shard, one connection: WELCOME asks for no more.
#[tokio::test]
async fn one_shard_asks_a_worker_for_one_connection() {
    let gw = TestGateway::start_with(|c| c.threads = 1).await;
    let w = RawWorker::connect(gw.addr, "single", vec![route(0, "GET", "/x")]).await;
    assert_eq!(w.welcome.connections, 1);
}

/// The local connection full, a request goes to the other shard's rather than waiting:
/// two requests at once on one HTTP/2 connection (one shard), one slot per worker
/// connection, both served.
#[tokio::test]
async fn a_full_local_connection_leaves_the_request_to_another_shards() {
    let gw = TestGateway::start_with(|c| {
        c.threads = 2;
        c.max_concurrency_per_connection = 1;
        c.queue_timeout = WAIT;
    })
    .await;
    let routes = || vec![route(0, "GET", "/x")];
    let a = RawWorker::connect(gw.addr, "full", routes()).await;
    let b = RawWorker::connect(gw.addr, "full", routes()).await;
    let (seen, mut seen_rx) = mpsc::unbounded_channel();
    let (release_a, hold_a) = mpsc::unbounded_channel();
    let (release_b, hold_b) = mpsc::unbounded_channel();
    let _a = serve_named(a, b"a", seen.clone(), Some(hold_a));
    let _b = serve_named(b, b"b", seen, Some(hold_b));

    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (h2, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let first = tokio::spawn(h2.clone().send_request(get_x()));
    let second = tokio::spawn(h2.clone().send_request(get_x()));
    // Both held at once, one on each worker connection: neither waits for the other's slot.
    let mut holding = BTreeSet::new();
    for _ in 0..2 {
        let name = tokio::time::timeout(WAIT, seen_rx.recv())
            .await
            .unwrap()
            .unwrap();
        holding.insert(name);
    }
    assert_eq!(holding, BTreeSet::from([&b"a"[..], &b"b"[..]]));
    release_a.send(()).unwrap();
    release_b.send(()).unwrap();
    let mut bodies = BTreeSet::new();
    for r in [first, second] {
        bodies.insert(body_of(r.await.unwrap().unwrap()).await);
    }
    assert_eq!(bodies.len(), 2, "{bodies:?}");
}

/// `--threads 2`: two shard threads; a worker instance's two connections are one on each,
/// listed as two connections, counted as two registrations and no reconnect, and logged as
/// one worker (no "another replica" warning for its second connection); another instance
/// of the id still is.
#[tokio::test]
async fn a_workers_connections_are_spread_listed_and_counted_as_one_instance() {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_vyx"));
    cmd.args(["--listen", "127.0.0.1:0", "--threads", "2"])
        .env("RUST_LOG", "info")
        .env_remove("VYX_CONFIG")
        .env_remove("VYX_LISTEN");
    let gw = LoggedVyx::spawn(cmd).await;
    let routes = || vec![route(0, "GET", "/x")];
    let first = RawWorker::connect_instance(gw.addr, "one", None, "one-1", routes()).await;
    // A client connection between the two takes the next shard in turn: the second worker
    // connection would follow it onto the first's shard, were it placed as clients are.
    let (status, _) = get(&client(), &format!("http://{}/_vyx/health", gw.addr)).await;
    assert_eq!(status, 200);
    let second = RawWorker::connect_instance(gw.addr, "one", None, "one-1", routes()).await;
    let shards = shards_of(gw.addr).await;
    let placed: BTreeSet<u64> = [&first, &second]
        .iter()
        .map(|w| shards[&w.welcome.connection_id])
        .collect();
    assert_eq!(placed, BTreeSet::from([0, 1]), "{shards:?}");
    // Named as they start: by now both have served a connection.
    let pid = gw.child.id().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .filter(|n| n.starts_with("vyx-shard-"))
        .collect();
    names.sort();
    assert_eq!(names, ["vyx-shard-0", "vyx-shard-1"]);

    let (_, metrics) = get(&client(), &format!("http://{}/_vyx/metrics", gw.addr)).await;
    let metrics = String::from_utf8_lossy(&metrics).into_owned();
    assert!(
        metrics.contains("vyx_registrations_total{worker_id=\"one\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vyx_connected_workers{worker_id=\"one\"} 2"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("vyx_reconnects_total{worker_id=\"one\"}"),
        "{metrics}"
    );
    // A replica line is written before the WELCOME leaves (the shard runs one task at a
    // time): the second connection's, if any, is in the log before the third's.
    let _other = RawWorker::connect_instance(gw.addr, "one", None, "one-2", routes()).await;
    gw.wait_for_log("another replica joined worker id one")
        .await;
    let text = gw.log_text();
    let replica_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("another replica joined"))
        .collect();
    assert_eq!(replica_lines.len(), 1, "{text}");
    assert!(replica_lines[0].contains("instance=one-2"), "{text}");
}

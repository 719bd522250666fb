//! Whose routes serve a path (spec/PROTOCOL.md §2.4, §2.5.3): precedence across worker ids
//! and method tables, conflicts at registration, and the claims of a departed worker id,
//! which answer 503 for the claim grace and then lapse.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::SinkExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use vyx_core::frame::{Data, Frame, Response};

/// Answers every REQUEST with 200 and `name#route_id` until the socket ends.
fn serve_named(mut w: RawWorker, name: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use futures_util::StreamExt;
        while let Some(Ok(msg)) = w.ws.next().await {
            let Message::Binary(b) = msg else { continue };
            let Ok(Frame::Request(r)) = Frame::decode(b, 1 << 20) else {
                continue;
            };
            let head = Frame::Response(Response {
                stream_id: r.stream_id,
                end_stream: false,
                status: 200,
                headers: vec![],
            });
            let body = format!("{name}#{}", r.route_id);
            if w.ws.send(Message::Binary(head.encode())).await.is_err()
                || w.ws
                    .send(Message::Binary(Data::encode_parts(
                        r.stream_id,
                        true,
                        body.as_bytes(),
                    )))
                    .await
                    .is_err()
            {
                return;
            }
        }
    })
}

async fn lapsing(gw: &TestGateway) -> Vec<Value> {
    let (status, body) = get(&client(), &gw.url("/_vyx/workers?include=lapsing")).await;
    assert_eq!(status, 200);
    let list: Value = serde_json::from_slice(&body).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .filter(|w| w["lapsing"] == true)
        .cloned()
        .collect()
}

/// The attack of issue 14 item 3: a worker id's `* /api/{*rest}` outranks another id's
/// `GET /{*rest}` for `GET /api/health`; once its last connection is gone, its claim keeps
/// `/api/health` answering 503 (not the other worker) for the grace, visibly, and then
/// lapses: the catch-all serves it, and a new id may claim the route. A client of the other
/// worker's paths is served all along.
#[tokio::test]
async fn a_departed_workers_claims_answer_503_for_the_grace_then_lapse_to_the_other_routes() {
    let grace = Duration::from_secs(3);
    let gw = TestGateway::start_with(|c| c.claim_grace = grace).await;
    let site = RawWorker::connect(gw.addr, "raw:site", vec![route(1, "GET", "/{*rest}")]).await;
    let _site = serve_named(site, "site");
    let api = RawWorker::connect(gw.addr, "raw:api", vec![route(2, "*", "/api/{*rest}")]).await;
    let c = client();
    let health = gw.url("/api/health");

    // Conflicts are found at registration across method and any-method tables.
    assert_eq!(
        hello_outcome(
            &gw,
            "raw:x",
            &hello_json("raw:x", vec![route(3, "GET", "/api/{*x}")])
        )
        .await,
        Err(4003),
        "GET beside another id's * of the same shape"
    );
    assert_eq!(
        hello_outcome(
            &gw,
            "raw:x",
            &hello_json("raw:x", vec![route(3, "*", "/{*x}")])
        )
        .await,
        Err(4003),
        "* beside another id's GET of the same shape"
    );

    // A well-behaved client of the site, served throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let background = {
        let (stop, served, url) = (stop.clone(), served.clone(), gw.url("/docs/intro"));
        tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = get(&c, &url).await;
                assert_eq!((status, &body[..]), (200, &b"site#1"[..]));
                served.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // Most specific wins whatever the method table: the api worker's `*` route.
    let api_task = serve_named(api, "api");
    assert_eq!(get(&c, &health).await, (200, Bytes::from_static(b"api#2")));
    assert!(lapsing(&gw).await.is_empty());

    // The api worker leaves: its claim holds /api/health, answering 503 + Retry-After.
    api_task.abort();
    wait_for_workers(gw.addr, "raw:api", 0).await;
    let (status, headers, _) = send(&c, "GET", &health, &[], Bytes::new()).await;
    assert_eq!(
        status, 503,
        "during the grace the departed worker's route answers"
    );
    assert!(headers.contains_key("retry-after"));
    let shown = lapsing(&gw).await;
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0]["id"], "raw:api");
    assert_eq!(shown[0]["routes"], serde_json::json!(["* /api/{*rest}"]));
    let left = shown[0]["lapses_in_ms"].as_u64().unwrap();
    assert!(left <= grace.as_millis() as u64, "{left} ms left");
    // Without the opt-in the list is the connections only.
    let (_, body) = get(&c, &gw.url("/_vyx/workers")).await;
    let plain: Value = serde_json::from_slice(&body).unwrap();
    assert!(plain
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["id"] == "raw:site"));

    // After the grace the site's catch-all serves the path.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = get(&c, &health).await;
        if status == 200 {
            assert_eq!(&body[..], b"site#1");
            break;
        }
        assert_eq!(status, 503);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the claim never lapsed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(lapsing(&gw).await.is_empty(), "no longer shown as lapsing");

    // And a new worker id may claim the route.
    let next = RawWorker::connect(gw.addr, "raw:next", vec![route(7, "*", "/api/{*rest}")]).await;
    let _next = serve_named(next, "next");
    assert_eq!(get(&c, &health).await, (200, Bytes::from_static(b"next#7")));

    stop.store(true, Ordering::Relaxed);
    background
        .await
        .expect("the site's client was served throughout");
    assert!(served.load(Ordering::Relaxed) > 0);
}

/// A worker that comes back within the grace (a restart, a network blip) finds its routes
/// still its own: another id's less specific route never answered for it meanwhile.
#[tokio::test]
async fn a_worker_back_within_the_claim_grace_keeps_its_routes() {
    let gw = TestGateway::start().await; // the default grace, 30 s
    let site = RawWorker::connect(gw.addr, "raw:site", vec![route(1, "GET", "/{*rest}")]).await;
    let _site = serve_named(site, "site");
    let api = RawWorker::connect(gw.addr, "raw:api", vec![route(2, "GET", "/api/{*rest}")]).await;
    drop(api);
    wait_for_workers(gw.addr, "raw:api", 0).await;
    let c = client();
    let health = gw.url("/api/health");
    assert_eq!(get(&c, &health).await.0, 503);
    let back = RawWorker::connect(gw.addr, "raw:api", vec![route(5, "GET", "/api/{*rest}")]).await;
    let _back = serve_named(back, "api");
    assert_eq!(get(&c, &health).await, (200, Bytes::from_static(b"api#5")));
    assert!(lapsing(&gw).await.is_empty());
}

#[test]
fn the_claim_grace_is_set_in_vyx_yaml() {
    let path = std::path::Path::new("vyx.yaml");
    let config = vyx_gateway::file_config::parse(path, "routes:\n  claim_grace: 2s\n").unwrap();
    assert_eq!(config.claim_grace, Duration::from_secs(2));
    let default = vyx_gateway::file_config::parse(path, "listen: 127.0.0.1:0\n").unwrap();
    assert_eq!(default.claim_grace, Duration::from_secs(30));
    let e = vyx_gateway::file_config::parse(path, "routes:\n  grace: 2s\n")
        .err()
        .expect("an unknown key is refused");
    assert_eq!(e.line, 2, "{e}");
}

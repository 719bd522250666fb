//! Safe retries: a request whose stream failed before its response head goes once more to
//! another replica when repeating it is safe (refused, an idempotent method or route) and
//! the gateway holds its whole body; anything else keeps the answer it had before.
//!
//! Two raw replicas of one worker id, A registered first: with both idle, the gateway's
//! least-loaded choice takes the first, so every first attempt goes to A. One shard: with
//! more, a request prefers the replica on its own shard, which may be B.

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use vyx_core::error::ResetCode;
use vyx_core::frame::{Frame, Reset};

const ID: &str = "retry:svc";

fn one_shard(c: &mut vyx_gateway::GatewayConfig) {
    c.threads = 1;
}

/// A and B, both serving `routes`, registered in that order.
async fn two_replicas(
    gw: &TestGateway,
    routes: Vec<vyx_core::handshake::RouteSpec>,
) -> (RawWorker, RawWorker) {
    let a = RawWorker::connect_instance(gw.addr, ID, None, "a", routes.clone()).await;
    wait_for_workers(gw.addr, ID, 1).await;
    let b = RawWorker::connect_instance(gw.addr, ID, None, "b", routes).await;
    wait_for_workers(gw.addr, ID, 2).await;
    (a, b)
}

/// The next REQUEST on `w`, with its body (the DATA up to END_STREAM).
async fn next_request(w: &mut RawWorker) -> (u32, String, Bytes) {
    let Frame::Request(r) = w.next_frame().await else {
        panic!("expected a REQUEST");
    };
    let mut body = BytesMut::new();
    let mut ended = r.end_stream;
    while !ended {
        match w.next_frame().await {
            Frame::Data(d) if d.stream_id == r.stream_id => {
                body.extend_from_slice(&d.data);
                ended = d.end_stream;
            }
            Frame::Window(_) => {}
            other => panic!("expected the request's DATA, got {other:?}"),
        }
    }
    (
        r.stream_id,
        String::from_utf8_lossy(&r.method).into_owned(),
        body.freeze(),
    )
}

/// Answers stream `id` with 200 and `body`.
async fn answer(w: &mut RawWorker, id: u32, body: &'static [u8]) {
    w.send(respond(id, 200, false)).await;
    w.send(data(id, body, true)).await;
}

fn retries(reason: &str, outcome: &str) -> String {
    format!("vyx_retries_total{{reason=\"{reason}\",outcome=\"{outcome}\"}}")
}

fn idempotent_route(id: u32, method: &str, path: &str) -> vyx_core::handshake::RouteSpec {
    vyx_core::handshake::RouteSpec {
        idempotent: true,
        ..route(id, method, path)
    }
}

#[tokio::test]
async fn a_refused_stream_is_retried_on_another_replica_never_the_one_that_refused() {
    let gw = TestGateway::start_with(one_shard).await;
    let (mut a, mut b) = two_replicas(&gw, vec![route(0, "POST", "/r")]).await;
    let c = client();
    let url = gw.url("/r");
    let sent = tokio::spawn(async move { send(&c, "POST", &url, &[], "order").await });
    // A refuses: the stream was not processed (§8.4), so even a POST may go elsewhere.
    let (id, _, body) = next_request(&mut a).await;
    assert_eq!(body, "order");
    a.send(Frame::Reset(Reset::new(id, ResetCode::Refused, "full")))
        .await;
    // A is idle again and first in the list: only the exclusion sends the retry to B.
    let (id, method, body) = next_request(&mut b).await;
    assert_eq!(
        (method.as_str(), &body[..]),
        ("POST", &b"order"[..]),
        "the body is replayed"
    );
    answer(&mut b, id, b"from b").await;
    let (status, _, got) = sent.await.unwrap();
    assert_eq!((status, &got[..]), (200, &b"from b"[..]));
    assert_eq!(metric(&gw, &retries("refused", "answered")).await, 1);
}

#[tokio::test]
async fn a_get_whose_connection_dies_before_the_head_is_retried() {
    let gw = TestGateway::start_with(one_shard).await;
    let (mut a, mut b) = two_replicas(&gw, vec![route(0, "GET", "/g")]).await;
    let c = client();
    let url = gw.url("/g");
    let sent = tokio::spawn(async move { get(&c, &url).await });
    next_request(&mut a).await;
    drop(a); // the connection is lost with the request on it, before any head
    let (id, method, _) = next_request(&mut b).await;
    assert_eq!(method, "GET");
    answer(&mut b, id, b"from b").await;
    assert_eq!(sent.await.unwrap(), (200, Bytes::from_static(b"from b")));
    assert_eq!(
        metric(&gw, &retries("connection_lost", "answered")).await,
        1
    );
}

#[tokio::test]
async fn a_route_declared_idempotent_is_retried_with_its_body() {
    let gw = TestGateway::start_with(one_shard).await;
    let (mut a, mut b) = two_replicas(&gw, vec![idempotent_route(0, "POST", "/pay")]).await;
    let (_, listed) = get(&client(), &gw.url("/_vyx/workers")).await;
    let listed: serde_json::Value = serde_json::from_slice(&listed).unwrap();
    assert_eq!(
        listed[0]["idempotent_routes"],
        serde_json::json!(["POST /pay"])
    );
    let c = client();
    let url = gw.url("/pay");
    let key = [("idempotency-key", "k1")];
    let sent = tokio::spawn(async move { send(&c, "POST", &url, &key, "pay 5").await });
    next_request(&mut a).await;
    drop(a);
    let (id, _, body) = next_request(&mut b).await;
    assert_eq!(body, "pay 5");
    answer(&mut b, id, b"paid").await;
    let (status, _, got) = sent.await.unwrap();
    assert_eq!((status, &got[..]), (200, &b"paid"[..]));
    assert_eq!(
        metric(&gw, &retries("connection_lost", "answered")).await,
        1
    );
}

#[tokio::test]
async fn a_post_that_reached_the_worker_is_not_retried() {
    let gw = TestGateway::start_with(one_shard).await;
    let (mut a, b) = two_replicas(&gw, vec![route(0, "POST", "/p")]).await;
    let served = count_requests(b);
    let c = client();
    let url = gw.url("/p");
    let sent = tokio::spawn(async move { send(&c, "POST", &url, &[], "once").await });
    next_request(&mut a).await;
    drop(a);
    let (status, _, _) = sent.await.unwrap();
    assert_eq!(status, 502);
    assert_eq!(
        metric(&gw, &retries("connection_lost", "not_idempotent")).await,
        1
    );
    assert_eq!(served.requests().await, 0, "B never saw the POST");
}

#[tokio::test]
async fn a_connection_lost_after_the_head_is_not_retried() {
    let gw = TestGateway::start_with(one_shard).await;
    let (mut a, b) = two_replicas(&gw, vec![route(0, "GET", "/h")]).await;
    let served = count_requests(b);
    let c = client();
    let req = http::Request::get(gw.url("/h"))
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let resp = tokio::spawn(async move { c.request(req).await });
    let (id, _, _) = next_request(&mut a).await;
    a.send(respond(id, 200, false)).await;
    a.send(data(id, b"part", false)).await;
    let resp = tokio::time::timeout(WAIT, resp)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200, "the head reached the client");
    drop(a);
    let body = tokio::time::timeout(WAIT, http_body_util::BodyExt::collect(resp.into_body()))
        .await
        .expect("body ended in time");
    assert!(
        body.is_err(),
        "the response is cut, not completed elsewhere"
    );
    assert_eq!(served.requests().await, 0);
    let text =
        String::from_utf8_lossy(&get(&client(), &gw.url("/_vyx/metrics")).await.1).into_owned();
    assert!(
        !text.contains("vyx_retries_total{"),
        "nothing counted:\n{text}"
    );
}

#[tokio::test]
async fn with_no_other_replica_the_answer_is_502_as_before() {
    let gw = TestGateway::start_with(one_shard).await;
    let mut a = RawWorker::connect(gw.addr, ID, vec![route(0, "GET", "/g")]).await;
    wait_for_workers(gw.addr, ID, 1).await;
    let c = client();
    let url = gw.url("/g");
    let sent = tokio::spawn(async move { get(&c, &url).await });
    next_request(&mut a).await;
    drop(a);
    assert_eq!(sent.await.unwrap().0, 502);
    assert_eq!(
        metric(&gw, &retries("connection_lost", "no_replica")).await,
        1
    );
}

#[tokio::test]
async fn a_body_streamed_past_the_buffer_is_not_replayed() {
    // body_buffer 0: every body streams, so the gateway never holds one whole.
    let gw = TestGateway::start_with(|c| {
        one_shard(c);
        c.body_buffer = 0;
    })
    .await;
    let (mut a, b) = two_replicas(&gw, vec![route(0, "PUT", "/u")]).await;
    let served = count_requests(b);
    let c = client();
    let url = gw.url("/u");
    let sent = tokio::spawn(async move { send(&c, "PUT", &url, &[], "streamed").await });
    next_request(&mut a).await;
    drop(a);
    assert_eq!(sent.await.unwrap().0, 502);
    assert_eq!(
        metric(&gw, &retries("connection_lost", "body_not_held")).await,
        1
    );
    assert_eq!(served.requests().await, 0);
}

#[tokio::test]
async fn retries_off_keeps_the_502() {
    let gw = TestGateway::start_with(|c| {
        one_shard(c);
        c.retries = false;
    })
    .await;
    let (mut a, b) = two_replicas(&gw, vec![route(0, "GET", "/g")]).await;
    let served = count_requests(b);
    let c = client();
    let url = gw.url("/g");
    let sent = tokio::spawn(async move { get(&c, &url).await });
    next_request(&mut a).await;
    drop(a);
    assert_eq!(sent.await.unwrap().0, 502);
    assert_eq!(
        metric(&gw, &retries("connection_lost", "disabled")).await,
        1
    );
    assert_eq!(served.requests().await, 0);
}

/// A replica that counts the REQUESTs it gets (answering none) until asked.
struct Counted {
    ask: tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<usize>>,
}

impl Counted {
    /// The REQUESTs seen so far. It answers none: a request retried here would have left
    /// its client waiting, so a test that got its answer first asks after any retry.
    async fn requests(&self) -> usize {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.ask.send(tx).await.unwrap();
        rx.await.unwrap()
    }
}

fn count_requests(mut w: RawWorker) -> Counted {
    let (ask, mut asks) = tokio::sync::mpsc::channel::<tokio::sync::oneshot::Sender<usize>>(1);
    tokio::spawn(async move {
        use futures_util::StreamExt;
        let mut n = 0;
        loop {
            tokio::select! {
                msg = w.ws.next() => match msg {
                    Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(b))) => {
                        if let Ok(Frame::Request(_)) = Frame::decode(b, 1 << 20) {
                            n += 1;
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => return,
                },
                Some(tx) = asks.recv() => { let _ = tx.send(n); }
            }
        }
    });
    Counted { ask }
}

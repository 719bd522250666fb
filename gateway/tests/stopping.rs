//! A gateway told to stop (SIGTERM): its readiness fails first, while for
//! `timeouts.readiness_delay` it still accepts and serves, telling HTTP/1 clients
//! `Connection: close` and HTTP/2 clients GOAWAY; what it accepted finishes; only then does
//! it stop accepting. And the start's half of readiness: not before the declared worker ids
//! have a connection (`timeouts.startup_grace`).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Empty;
use tokio::net::TcpStream;
use vyx_core::frame::Frame;

/// `/_vyx/health` (with `query`) on a connection of its own: (status, body's `status`).
async fn health(gw: &TestGateway, query: &str) -> (u16, String) {
    let (status, body) = get(&client(), &gw.url(&format!("/_vyx/health{query}"))).await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    (status, v["status"].as_str().unwrap().to_owned())
}

/// The next REQUEST on `w` (its WINDOW frames skipped).
async fn next_request(w: &mut RawWorker) -> vyx_core::frame::Request {
    loop {
        match w.next_frame().await {
            Frame::Request(r) => return r,
            Frame::Window(_) => {}
            other => panic!("expected a REQUEST, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_stopping_gateway_fails_readiness_first_and_asks_its_clients_to_leave() {
    // Longer than the test: the gateway stays in its readiness delay throughout.
    let mut gw = TestGateway::start_with(|c| c.readiness_delay = Duration::from_secs(600)).await;
    let mut w = RawWorker::connect(gw.addr, "stop:svc", vec![route(0, "GET", "/x")]).await;
    assert_eq!(health(&gw, "?ready").await, (200, "ok".into()));

    // An HTTP/2 connection, used once before the stop.
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (mut h2, h2_conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let h2_conn = tokio::spawn(h2_conn);
    let req = || {
        http::Request::get(gw.url("/x"))
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let first = tokio::spawn(h2.send_request(req()));
    let r = next_request(&mut w).await;
    w.send(respond(r.stream_id, 200, false)).await;
    w.send(data(r.stream_id, b"ok", true)).await;
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status(), 200);
    // Read whole, so that the client does not reset the stream.
    http_body_util::BodyExt::collect(first.into_body())
        .await
        .unwrap();

    // An HTTP/1 request in flight when the stop comes.
    let c = client();
    let url = gw.url("/x");
    let in_flight = tokio::spawn(async move { send(&c, "GET", &url, &[], Bytes::new()).await });
    let held = next_request(&mut w).await;

    gw.begin_shutdown();
    let deadline = tokio::time::Instant::now() + WAIT;
    while health(&gw, "?ready").await.0 != 503 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "readiness never failed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(health(&gw, "?ready").await, (503, "stopping".into()));
    assert_eq!(
        health(&gw, "").await,
        (200, "stopping".into()),
        "liveness holds while the gateway still serves"
    );

    // The HTTP/2 connection gets GOAWAY and ends, while the gateway still accepts.
    tokio::time::timeout(WAIT, h2_conn)
        .await
        .expect("the HTTP/2 connection ended (GOAWAY)")
        .unwrap()
        .unwrap();

    // The request in flight finishes, told to close its connection.
    w.send(respond(held.stream_id, 200, false)).await;
    w.send(data(held.stream_id, b"late", true)).await;
    let (status, headers, body) = in_flight.await.unwrap();
    assert_eq!((status, &body[..]), (200, &b"late"[..]));
    assert_eq!(headers["connection"], "close");

    // A new connection is still accepted and served, and told to close too.
    let c = client();
    let url = gw.url("/x");
    let late = tokio::spawn(async move { send(&c, "GET", &url, &[], Bytes::new()).await });
    let r = next_request(&mut w).await;
    w.send(respond(r.stream_id, 200, false)).await;
    w.send(data(r.stream_id, b"new", true)).await;
    let (status, headers, _) = late.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(headers["connection"], "close");
}

#[tokio::test]
async fn after_the_readiness_delay_new_connections_are_refused_and_accepted_requests_finish() {
    let mut gw = TestGateway::start_with(|c| c.readiness_delay = Duration::from_millis(200)).await;
    let addr = gw.addr;
    let mut w = RawWorker::connect(addr, "stop:svc", vec![route(0, "GET", "/x")]).await;
    let c = client();
    let url = gw.url("/x");
    let in_flight = tokio::spawn(async move { send(&c, "GET", &url, &[], Bytes::new()).await });
    let held = next_request(&mut w).await;
    gw.begin_shutdown();
    // The worker is told to drain once the gateway stops accepting.
    let Frame::Drain(_) = w.next_frame().await else {
        panic!("expected DRAIN")
    };
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed before the workers are drained"
    );
    w.send(respond(held.stream_id, 200, false)).await;
    w.send(data(held.stream_id, b"done", true)).await;
    let (status, _, body) = in_flight.await.unwrap();
    assert_eq!((status, &body[..]), (200, &b"done"[..]));
    assert_eq!(w.close_code().await, 1000);
    drop(w); // ends the close handshake
    gw.shutdown().await;
}

#[tokio::test]
async fn a_started_gateway_is_ready_once_each_declared_worker_id_has_a_connection() {
    let gw = TestGateway::start_with(|c| {
        c.declared_workers = vec!["start:a".into(), "start:b".into()];
        c.startup_grace = Duration::from_secs(600); // longer than the test
    })
    .await;
    assert_eq!(health(&gw, "?ready").await, (503, "starting".into()));
    assert_eq!(health(&gw, "").await, (200, "starting".into()), "alive");
    let a = RawWorker::connect(gw.addr, "start:a", vec![route(0, "GET", "/a")]).await;
    assert_eq!(health(&gw, "?ready").await, (503, "starting".into()));
    let b = RawWorker::connect(gw.addr, "start:b", vec![route(0, "GET", "/b")]).await;
    assert_eq!(health(&gw, "?ready").await, (200, "ok".into()));

    // Ready stays ready: a worker id leaving later is not the gateway's failure.
    drop((a, b));
    wait_for_workers(gw.addr, "start:a", 0).await;
    assert_eq!(health(&gw, "?ready").await, (200, "ok".into()));
}

#[tokio::test]
async fn after_the_startup_grace_a_gateway_is_ready_without_its_workers() {
    let gw = TestGateway::start_with(|c| {
        c.declared_workers = vec!["start:a".into()];
        c.startup_grace = Duration::from_millis(300);
    })
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while health(&gw, "?ready").await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(health(&gw, "?ready").await, (200, "ok".into()));
}

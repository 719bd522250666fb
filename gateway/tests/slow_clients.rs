//! Slow and vanished uploaders against a worker with few slots (issue 14, item 2): a body
//! that trickles in must not hold a worker's concurrency slot, a large body below the
//! minimum rate is cut, and a client that goes away mid-body frees its slot at once.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::StreamExt;
use http_body_util::StreamBody;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use vyx::Request;

/// A worker with `slots` slots: `POST /up` reads the whole body and answers its length,
/// `GET /ok` answers at once.
async fn worker(gw: SocketAddr, slots: u32) -> vyx::Worker {
    let worker = vyx::Worker::builder()
        .connect(format!("ws://{gw}"))
        .id("slots")
        .handle_signals(false)
        .max_concurrency(slots)
        .post("/up", |mut req: Request| async move {
            let mut body = req.take_body();
            let mut len = 0;
            while let Some(Ok(c)) = body.next().await {
                len += c.len();
            }
            len.to_string()
        })
        .get("/ok", |_req: Request| async move { "ok" })
        .build()
        .expect("valid worker");
    start_connected(&worker).await;
    worker
}

/// A slow HTTP/1 upload: the head and a few bytes of a 100 kB body, then nothing.
async fn slow_h1(gw: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(gw).await.unwrap();
    tcp.write_all(b"POST /up HTTP/1.1\r\nhost: gw\r\ncontent-length: 100000\r\n\r\nsome")
        .await
        .unwrap();
    tcp
}

type H2Send = hyper::client::conn::http2::SendRequest<StreamBody<tokio_stream_like::Rx>>;

/// A body fed by the test through a channel, for hyper's client.
mod tokio_stream_like {
    use bytes::Bytes;
    use futures_util::Stream;
    use http_body::Frame;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::sync::mpsc;

    pub struct Rx(pub mpsc::Receiver<Bytes>);

    impl Stream for Rx {
        type Item = Result<Frame<Bytes>, std::io::Error>;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }
}

/// An HTTP/2 connection through a loopback relay; aborting the relay's task drops both of
/// its sockets, as a client that vanishes would (hyper's own connection task cannot be
/// reached to kill it).
async fn h2(gw: SocketAddr) -> (H2Send, tokio::task::JoinHandle<()>) {
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = relay.local_addr().unwrap();
    let relay_task = tokio::spawn(async move {
        let (mut client_side, _) = relay.accept().await.unwrap();
        let mut gw_side = TcpStream::connect(gw).await.unwrap();
        let _ = tokio::io::copy_bidirectional(&mut client_side, &mut gw_side).await;
    });
    let tcp = TcpStream::connect(relay_addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    (send, relay_task)
}

/// Starts an HTTP/2 POST whose body the test feeds; returns the feeder and the response.
fn h2_upload(
    send: &mut H2Send,
    first: Bytes,
) -> (
    mpsc::Sender<Bytes>,
    tokio::task::JoinHandle<Result<u16, hyper::Error>>,
) {
    let (tx, rx) = mpsc::channel(4);
    tx.try_send(first).unwrap();
    let req = http::Request::builder()
        .method("POST")
        .uri("http://gw/up")
        .body(StreamBody::new(tokio_stream_like::Rx(rx)))
        .unwrap();
    let fut = send.send_request(req);
    let task = tokio::spawn(async move { fut.await.map(|r| r.status().as_u16()) });
    (tx, task)
}

#[tokio::test]
async fn slow_uploads_on_http1_and_http2_do_not_take_the_worker_s_slots() {
    let gw = TestGateway::start().await;
    let w = worker(gw.addr, 2).await;
    // 40 trickling HTTP/1 uploads and 40 on one HTTP/2 connection, against 2 slots.
    let mut h1 = Vec::new();
    for _ in 0..40 {
        h1.push(slow_h1(gw.addr).await);
    }
    let (mut conn, _h2_task) = h2(gw.addr).await;
    let mut h2_uploads = Vec::new();
    for _ in 0..40 {
        h2_uploads.push(h2_upload(&mut conn, Bytes::from_static(b"some")));
    }
    // Everyone else is served throughout, and no slot is taken by the slow bodies.
    let c = client();
    for i in 0..20 {
        assert_eq!(get(&c, &gw.url("/ok")).await.0, 200, "GET {i}");
        let (status, _, body) = send(&c, "POST", &gw.url("/up"), &[], vec![7u8; 1000]).await;
        assert_eq!((status, &body[..]), (200, &b"1000"[..]), "POST {i}");
    }
    assert_eq!(in_flight(gw.addr).await, 0);
    // The slow clients still finish if they do finish.
    let (tx, task) = h2_uploads.pop().unwrap();
    tx.send(Bytes::from_static(b"more")).await.unwrap();
    drop(tx);
    assert_eq!(
        tokio::time::timeout(WAIT, task)
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
        200
    );
    drop(h1);
    drop(h2_uploads);
    w.stop();
}

#[tokio::test]
async fn a_large_upload_below_the_minimum_rate_is_cut_and_its_slot_freed() {
    // 64 KiB/s after 1 s; body_idle far away, so only the rate can cut it.
    let gw = TestGateway::start_with(|c| {
        c.min_body_rate = 64 << 10;
        c.min_body_rate_grace = Duration::from_secs(1);
        c.body_idle_timeout = Duration::from_secs(600);
    })
    .await;
    let w = worker(gw.addr, 1).await;
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(b"POST /up HTTP/1.1\r\nhost: gw\r\ncontent-length: 10000000\r\n\r\n")
        .await
        .unwrap();
    // More than the buffer (256 KiB), so the request is streamed and takes the slot ...
    tcp.write_all(&vec![1u8; 300 << 10]).await.unwrap();
    wait_in_flight(gw.addr, 1, "the streamed upload holds a slot").await;
    // ... then nothing more: the rate cuts it, the slot is freed and the client told.
    wait_in_flight(gw.addr, 0, "the slow upload was cut").await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    // The slot serves others again.
    assert_eq!(get(&client(), &gw.url("/ok")).await.0, 200);
    w.stop();
}

#[tokio::test]
async fn a_client_vanishing_mid_body_frees_its_slot_at_once() {
    // No minimum rate and a far body_idle: only noticing the disconnect can free the slot.
    let gw = TestGateway::start_with(|c| {
        c.min_body_rate = 0;
        c.body_idle_timeout = Duration::from_secs(600);
    })
    .await;
    let w = worker(gw.addr, 16).await;
    // HTTP/1: past the buffer, so the streams are open at the worker; then the sockets go.
    let mut h1 = Vec::new();
    for _ in 0..6 {
        let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
        tcp.write_all(b"POST /up HTTP/1.1\r\nhost: gw\r\ncontent-length: 10000000\r\n\r\n")
            .await
            .unwrap();
        tcp.write_all(&vec![1u8; 300 << 10]).await.unwrap();
        h1.push(tcp);
    }
    wait_in_flight(gw.addr, 6, "HTTP/1 uploads").await;
    drop(h1);
    wait_in_flight(gw.addr, 0, "HTTP/1 clients gone").await;
    // HTTP/2: the same over streams of one connection, then the whole connection goes.
    let (mut conn, relay) = h2(gw.addr).await;
    let mut uploads = Vec::new();
    for _ in 0..6 {
        uploads.push(h2_upload(&mut conn, Bytes::from(vec![1u8; 300 << 10])));
    }
    wait_in_flight(gw.addr, 6, "HTTP/2 uploads").await;
    relay.abort();
    wait_in_flight(gw.addr, 0, "HTTP/2 client gone").await;
    w.stop();
}

/// A client that sends `head` and `start`, then trickles 100 bytes every 300 ms (333 B/s,
/// above the default 240 B/s floor) until the test ends.
async fn trickler(gw: SocketAddr, head: &str, start: usize) -> tokio::task::JoinHandle<()> {
    let mut tcp = TcpStream::connect(gw).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&vec![1u8; start]).await.unwrap();
    tokio::spawn(async move {
        loop {
            // The pause is the slow upload under test.
            tokio::time::sleep(Duration::from_millis(300)).await;
            if tcp.write_all(&[1u8; 100]).await.is_err() {
                return;
            }
        }
    })
}

/// A well-behaved client, 20 times: a GET and a 1,000-byte POST, each answered.
async fn well_behaved_all_served(gw: &TestGateway) {
    let c = client();
    for i in 0..20 {
        assert_eq!(get(&c, &gw.url("/ok")).await.0, 200, "GET {i}");
        let (status, _, body) = send(&c, "POST", &gw.url("/up"), &[], vec![7u8; 1000]).await;
        assert_eq!((status, &body[..]), (200, &b"1000"[..]), "POST {i}");
    }
}

#[tokio::test]
async fn expect_continue_uploads_are_buffered_and_do_not_take_the_worker_s_slots() {
    // The reproduction: two uploads behind `expect: 100-continue`, trickling at
    // 333 B/s, against a 2-slot worker. Before issue 17 their bodies went unbuffered and
    // they held both slots for 95 s and more.
    let gw = TestGateway::start().await;
    let w = worker(gw.addr, 2).await;
    let head =
        "POST /up HTTP/1.1\r\nhost: gw\r\ncontent-length: 100000\r\nexpect: 100-continue\r\n\r\n";
    let mut slow = Vec::new();
    for _ in 0..2 {
        slow.push(trickler(gw.addr, head, 0).await);
    }
    well_behaved_all_served(&gw).await;
    assert_eq!(in_flight(gw.addr).await, 0);
    for t in slow {
        t.abort();
    }
    w.stop();
}

#[tokio::test]
async fn ten_trickling_large_uploads_leave_a_4_slot_worker_serving_others() {
    // Ten uploads larger than the buffer: each sends 300 KiB at once (so it is streamed and
    // takes a slot) and then trickles. Under the default share (half of the slots), at most
    // two of them hold the 4-slot worker's slots; the rest wait, then get 503.
    let gw = TestGateway::start().await;
    let w = worker(gw.addr, 4).await;
    let head = "POST /up HTTP/1.1\r\nhost: gw\r\ncontent-length: 10000000\r\n\r\n";
    let mut slow = Vec::new();
    for _ in 0..10 {
        slow.push(trickler(gw.addr, head, 300 << 10).await);
    }
    wait_in_flight(gw.addr, 2, "two streamed uploads hold slots").await;
    well_behaved_all_served(&gw).await;
    let v: Value = {
        let (_, body) = get(&client(), &format!("http://{}/_vyx/workers", gw.addr)).await;
        serde_json::from_slice(&body).unwrap()
    };
    // The worker holds a connection per shard; the uploads may land on either.
    let total = |field: &str| -> u64 {
        let conns = v.as_array().unwrap().iter();
        conns.map(|c| c[field].as_u64().unwrap()).sum()
    };
    assert!(total("in_flight") <= 2, "{v}");
    assert_eq!(total("streamed_uploads"), 2, "{v}");
    for t in slow {
        t.abort();
    }
    w.stop();
}

#[tokio::test]
async fn the_streamed_upload_share_is_the_operator_s_to_set() {
    // At 100 % the tricklers may take every slot: well-behaved requests wait, then 503.
    let gw = TestGateway::start_with(|c| {
        c.streamed_upload_slots = 100;
        c.queue_timeout = Duration::from_millis(300);
    })
    .await;
    let w = worker(gw.addr, 4).await;
    let head = "POST /up HTTP/1.1\r\nhost: gw\r\ncontent-length: 10000000\r\n\r\n";
    let mut slow = Vec::new();
    for _ in 0..10 {
        slow.push(trickler(gw.addr, head, 300 << 10).await);
    }
    wait_in_flight(gw.addr, 4, "the streamed uploads hold every slot").await;
    assert_eq!(get(&client(), &gw.url("/ok")).await.0, 503);
    for t in slow {
        t.abort();
    }
    w.stop();
}

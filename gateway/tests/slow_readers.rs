//! Clients that do not read their responses (issue 17, item 3): a response the gateway can
//! buffer frees its worker's slot at once, and a client that takes nothing for
//! `timeouts.send` loses its response, the worker's stream is RESET and the slot freed.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vyx::Request;
use vyx_core::frame::{Data, Frame, Window};
use vyx_core::limits::MAX_DATA_CHUNK;

const BIG: usize = 32 << 20;
const MEDIUM: usize = 800 << 10;
const SMALL: usize = 200 << 10;

/// A worker with `slots` slots: `GET /big` answers 32 MiB, `GET /medium` 800 KiB (more
/// than the stream window, less than `limits.response_buffer`), `GET /small` 200 KiB,
/// `GET /ok` a word.
async fn worker(gw: SocketAddr, slots: u32) -> vyx::Worker {
    let worker = vyx::Worker::builder()
        .connect(format!("ws://{gw}"))
        .id("readers")
        .handle_signals(false)
        .max_concurrency(slots)
        .get("/big", |_req: Request| async move { vec![b'b'; BIG] })
        .get("/medium", |_req: Request| async move { vec![b'm'; MEDIUM] })
        .get("/small", |_req: Request| async move { vec![b's'; SMALL] })
        .get("/ok", |_req: Request| async move { "ok" })
        .build()
        .expect("valid worker");
    start_connected(&worker).await;
    worker
}

/// An HTTP/1 client that asks for `path` and never reads.
async fn h1_non_reader(gw: SocketAddr, path: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(gw).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nhost: gw\r\n\r\n").as_bytes())
        .await
        .unwrap();
    tcp
}

type H2 = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;

/// An HTTP/2 connection announcing `SETTINGS_INITIAL_WINDOW_SIZE` 0: the gateway may send
/// response heads on it, never a byte of body.
async fn h2_zero_window(gw: SocketAddr) -> H2 {
    let tcp = TcpStream::connect(gw).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .initial_stream_window_size(0)
            .adaptive_window(false)
            .handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    send
}

/// Sends `GET path` and returns the response (its head) without reading the body.
async fn h2_head(send: &mut H2, path: &str) -> http::Response<hyper::body::Incoming> {
    let req = http::Request::get(format!("http://gw{path}"))
        .body(Empty::new())
        .unwrap();
    let resp = tokio::time::timeout(WAIT, send.send_request(req))
        .await
        .expect("head in time")
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp
}

async fn client_errors(gw: SocketAddr, reason: &str) -> u64 {
    let (_, body) = get(&client(), &format!("http://{gw}/_vyx/metrics")).await;
    let text = String::from_utf8_lossy(&body).into_owned();
    let key = format!("vyx_client_errors_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn clients_that_take_nothing_lose_their_response_after_the_send_timeout_and_free_the_slots() {
    // The reproduction: 4 slots, 2 HTTP/1 clients that never read and 2 HTTP/2
    // clients with a window of 0, each on a 32 MiB response (far more than the socket
    // buffers and the response buffer take). A short send timeout, so the test waits it out.
    let gw = TestGateway::start_with(|c| c.send_timeout = Duration::from_secs(1)).await;
    let w = worker(gw.addr, 4).await;
    let mut h1 = Vec::new();
    for _ in 0..2 {
        h1.push(h1_non_reader(gw.addr, "/big").await);
    }
    let mut h2 = Vec::new();
    let mut heads = Vec::new();
    for _ in 0..2 {
        let mut send = h2_zero_window(gw.addr).await;
        heads.push(h2_head(&mut send, "/big").await);
        h2.push(send);
    }
    // Before the send timeout existed, all 4 slots stayed taken for ever (the issue saw
    // `in_flight` 4 at 100 s) and every other client got 503.
    wait_in_flight(gw.addr, 0, "the non-reading clients' responses aborted").await;
    // The HTTP/2 streams can only have been ended by the gateway's clock; an HTTP/1 socket
    // may have been reset by the kernel's (TCP_USER_TIMEOUT, the same `timeouts.send`) first.
    let counted = client_errors(gw.addr, "send_timeout").await;
    assert!((2..=4).contains(&counted), "send_timeout counted {counted}");
    // The worker serves others while the four clients are still connected.
    let c = client();
    for i in 0..10 {
        assert_eq!(
            get(&c, &gw.url("/ok")).await,
            (200, Bytes::from("ok")),
            "GET {i}"
        );
    }
    let (status, body) = get(&c, &gw.url("/big")).await;
    assert_eq!(
        (status, body.len()),
        (200, BIG),
        "a reading client gets all of it"
    );
    // The HTTP/1 connections were reset: what a late read gets ends early.
    for mut tcp in h1 {
        let mut got = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        let ended = tokio::time::timeout(WAIT, async {
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got += n,
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "the connection ended");
        assert!(
            got < BIG,
            "the aborted response is not complete ({got} bytes)"
        );
    }
    drop((h2, heads));
    w.stop();
}

#[tokio::test]
async fn a_response_within_the_buffer_frees_its_slot_before_the_client_reads_it() {
    // No send timeout in reach: only buffering can free the slot.
    let gw = TestGateway::start_with(|c| {
        c.send_timeout = Duration::from_secs(600);
        c.queue_timeout = Duration::from_secs(2);
    })
    .await;
    let w = worker(gw.addr, 1).await;
    // 800 KiB is more than the stream window (256 KiB): without the buffer, the worker
    // could not finish until the client read, and this client reads nothing.
    let mut send = h2_zero_window(gw.addr).await;
    let resp = h2_head(&mut send, "/medium").await;
    wait_in_flight(gw.addr, 0, "the medium response was sent in full").await;
    assert_eq!(get(&client(), &gw.url("/ok")).await.0, 200);
    // A client on HTTP/1 that reads nothing either, with the HTTP/2 one still waiting.
    let tcp = h1_non_reader(gw.addr, "/medium").await;
    wait_in_flight(gw.addr, 0, "the HTTP/1 response was sent in full").await;
    assert_eq!(get(&client(), &gw.url("/ok")).await.0, 200);
    drop((tcp, resp, send));
    w.stop();
}

#[tokio::test]
async fn past_the_response_buffer_total_a_response_moves_at_the_client_s_pace() {
    // No gateway-wide budget for response buffers: the stream window is all the worker
    // gets ahead of the client, so a client that reads nothing holds the slot (until the
    // send timeout, here out of reach) ...
    let gw = TestGateway::start_with(|c| {
        c.response_buffer_total = 0;
        c.send_timeout = Duration::from_secs(600);
        c.queue_timeout = Duration::from_millis(300);
    })
    .await;
    let w = worker(gw.addr, 1).await;
    let mut send = h2_zero_window(gw.addr).await;
    let resp = h2_head(&mut send, "/medium").await;
    wait_in_flight(gw.addr, 1, "the medium response holds its slot").await;
    assert_eq!(get(&client(), &gw.url("/ok")).await.0, 503);
    // ... and a client that does read gets it all, past the window, at its own pace.
    drop((resp, send));
    wait_in_flight(gw.addr, 0, "the client that left freed it").await;
    let (status, body) = get(&client(), &gw.url("/medium")).await;
    assert_eq!((status, body.len()), (200, MEDIUM));
    w.stop();
}

#[tokio::test]
async fn a_slow_reader_that_keeps_taking_is_not_cut() {
    // A client that reads a little at a time, slower than the worker sends, but always
    // within the send timeout, gets the whole response.
    let gw = TestGateway::start_with(|c| c.send_timeout = Duration::from_secs(2)).await;
    let w = worker(gw.addr, 1).await;
    let mut send = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .initial_stream_window_size(64 << 10)
        .initial_connection_window_size(64 << 10)
        .adaptive_window(false)
        .handshake::<_, Empty<Bytes>>(hyper_util::rt::TokioIo::new(
            TcpStream::connect(gw.addr).await.unwrap(),
        ))
        .await
        .map(|(send, conn)| {
            tokio::spawn(conn);
            send
        })
        .unwrap();
    let mut body = h2_head(&mut send, "/medium").await.into_body();
    let mut got = 0;
    while let Some(frame) = tokio::time::timeout(WAIT, body.frame()).await.unwrap() {
        got += frame.unwrap().into_data().map_or(0, |d| d.len());
        // The pause is the slow reading under test, well inside the 2 s send timeout.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(got, MEDIUM);
    assert_eq!(client_errors(gw.addr, "send_timeout").await, 0);
    w.stop();
}

#[tokio::test]
async fn a_response_left_in_the_socket_buffers_is_dropped_after_the_send_timeout() {
    // 200 KiB fits the gateway's socket send buffer: the gateway itself holds nothing for
    // this client, only the kernel does, for a client whose receive window stays 0. The
    // send timeout reaches it through TCP_USER_TIMEOUT.
    let gw = TestGateway::start_with(|c| c.send_timeout = Duration::from_secs(1)).await;
    let w = worker(gw.addr, 1).await;
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut tcp = sock.connect(gw.addr).await.unwrap();
    let me = tcp.local_addr().unwrap();
    tcp.write_all(b"GET /small HTTP/1.1\r\nhost: gw\r\n\r\n")
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    // First the tail waits in the gateway's send queue ...
    loop {
        let end = gateway_end(gw.addr, me);
        if end.is_some_and(|(state, queued)| state == 1 && queued > 0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no queued tail: {end:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ... then the kernel gives up on it (on main it stayed ESTABLISHED for ever).
    loop {
        let end = gateway_end(gw.addr, me);
        if end.is_none_or(|(state, _)| state != 1) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still open: {end:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get(&client(), &gw.url("/ok")).await.0, 200);
    drop(tcp);
    w.stop();
}

#[tokio::test]
async fn an_http2_connection_left_with_only_aborted_streams_is_closed_when_idle() {
    // hyper never polls a stream whose window is 0, so the aborted stream cannot be reset
    // from the body; it stops counting as active instead, and the connection, with nothing
    // else open, is closed after `timeouts.header_read`.
    let gw = TestGateway::start_with(|c| {
        c.send_timeout = Duration::from_secs(1);
        c.header_read_timeout = Some(Duration::from_secs(1));
    })
    .await;
    let w = worker(gw.addr, 1).await;
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .initial_stream_window_size(0)
            .adaptive_window(false)
            .handshake::<_, Empty<Bytes>>(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let resp = h2_head(&mut send, "/big").await;
    wait_in_flight(gw.addr, 0, "the response aborted").await;
    // Before, the connection stayed open for as long as the client kept it.
    tokio::time::timeout(WAIT, conn)
        .await
        .expect("the gateway closed the connection")
        .unwrap()
        .ok();
    drop((resp, send));
    w.stop();
}

/// A raw worker serving `GET /sized` (route 0) and `GET /ok` (route 1), answered by hand.
async fn raw_worker(gw: SocketAddr) -> RawWorker {
    let routes = vec![route(0, "GET", "/sized"), route(1, "GET", "/ok")];
    RawWorker::connect(gw, "raw:window", routes).await
}

/// Sends `len` bytes of body on `stream_id` in DATA frames of `MAX_DATA_CHUNK` or less,
/// never past the worker's credit: `credit` to start with, then what each WINDOW adds, read
/// when it is spent. Returns the credit at the end.
async fn send_body(
    w: &mut RawWorker,
    stream_id: u32,
    len: usize,
    end: bool,
    mut credit: usize,
) -> usize {
    let mut sent = 0;
    while sent < len {
        if sent == credit {
            let (stream, more) = next_window(w).await;
            assert_eq!(stream, stream_id);
            credit += more;
            continue;
        }
        let n = MAX_DATA_CHUNK.min(len - sent).min(credit - sent);
        sent += n;
        w.send(Frame::Data(Data {
            stream_id,
            end_stream: end && sent == len,
            data: Bytes::from(vec![b'x'; n]),
        }))
        .await;
    }
    credit
}

/// The next frame, which must be a WINDOW: its stream and increment.
async fn next_window(w: &mut RawWorker) -> (u32, usize) {
    match w.next_frame().await {
        Frame::Window(Window {
            stream_id,
            increment,
        }) => (stream_id, increment as usize),
        other => panic!("expected WINDOW, got {other:?}"),
    }
}

#[tokio::test]
async fn a_response_of_known_length_gets_a_window_ahead_with_its_head() {
    let gw = TestGateway::start().await;
    let mut w = raw_worker(gw.addr).await;
    let window = w.welcome.initial_window as usize;
    let len = 1 << 20; // limits.response_buffer's default: all of it fits
    let (c, url) = (client(), gw.url("/sized"));
    let req = tokio::spawn(async move { get(&c, &url).await });
    let Frame::Request(r) = w.next_frame().await else {
        panic!("expected REQUEST")
    };
    w.send(sized_head(r.stream_id, len)).await;
    // One more window, before any DATA. Before, the first WINDOW went out once 128 KiB of
    // DATA had arrived: a worker spent its whole window and waited for it (here, the wait
    // never ended).
    assert_eq!(next_window(&mut w).await, (r.stream_id, window));
    // The rest as the DATA arrives, up to the buffer: all this body needs, no more.
    assert_eq!(
        send_body(&mut w, r.stream_id, len, true, 2 * window).await,
        len
    );
    let (status, body) = req.await.unwrap();
    assert_eq!((status, body.len()), (200, len));
    // And the client's taking it granted nothing (those grants would have been queued before
    // this request's REQUEST).
    let (c, url) = (client(), gw.url("/ok"));
    let req = tokio::spawn(async move { get(&c, &url).await });
    match w.next_frame().await {
        Frame::Request(r) => {
            w.send(respond(r.stream_id, 200, false)).await;
            w.send(data(r.stream_id, b"ok", true)).await;
        }
        other => panic!("expected the second REQUEST, got {other:?}"),
    }
    assert_eq!(req.await.unwrap(), (200, Bytes::from("ok")));
}

#[tokio::test]
async fn a_worker_sending_past_the_response_buffer_is_refused() {
    let gw = TestGateway::start().await;
    let mut w = raw_worker(gw.addr).await;
    let window = w.welcome.initial_window as usize;
    // A client that takes nothing: all the worker's credit is the gateway's buffer.
    let mut send = h2_zero_window(gw.addr).await;
    let head = tokio::spawn(async move {
        let resp = h2_head(&mut send, "/sized").await;
        (send, resp)
    });
    let Frame::Request(r) = w.next_frame().await else {
        panic!("expected REQUEST")
    };
    // Longer than the buffer: a window ahead, then credit as the DATA arrives up to the
    // buffer (1 MiB, `limits.response_buffer`).
    w.send(sized_head(r.stream_id, 2 << 20)).await;
    assert_eq!(next_window(&mut w).await, (r.stream_id, window));
    let credit = send_body(&mut w, r.stream_id, 1 << 20, false, 2 * window).await;
    assert_eq!(credit, 1 << 20);
    let held = head.await.unwrap();
    w.send(data(r.stream_id, b"x", false)).await;
    assert_eq!(w.close_code().await, 4008, "flow_control");
    drop(held);
}

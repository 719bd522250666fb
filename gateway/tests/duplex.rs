//! Duplex requests (PROTOCOL.md §3.4): a gRPC-typed body streams to the worker as it comes,
//! under the default `limits.body_buffer`, and a quiet call is not cut by the upload clocks,
//! the response's `body_idle` or a request timeout counted from the stream's start.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vyx_core::frame::Frame;

/// A chunked HTTP/1.1 POST head of `content-type`, with its first chunk `a`.
fn post_head(content_type: &str) -> Vec<u8> {
    format!(
        "POST /svc/Call HTTP/1.1\r\nhost: gw\r\nconnection: close\r\ncontent-type: {content_type}\r\n\
         transfer-encoding: chunked\r\n\r\n1\r\na\r\n"
    )
    .into_bytes()
}

async fn read_to_close(tcp: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut out))
        .await
        .expect("response in time")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

/// The next DATA on `stream`: its bytes and END_STREAM.
async fn next_data(w: &mut RawWorker, stream: u32) -> (Vec<u8>, bool) {
    match w.next_frame().await {
        Frame::Data(d) if d.stream_id == stream => (d.data.to_vec(), d.end_stream),
        other => panic!("expected DATA on {stream}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_grpc_typed_body_is_forwarded_before_it_ends() {
    // The default body_buffer (256 KiB): any other body of one byte would be held until it ends.
    let gw = TestGateway::start().await;
    let mut w = RawWorker::connect(gw.addr, "grpc", vec![route(0, "POST", "/svc/{*m}")]).await;
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(&post_head("application/grpc+proto"))
        .await
        .unwrap();
    let stream = match w.next_frame().await {
        Frame::Request(r) => {
            assert!(!r.end_stream);
            r.stream_id
        }
        other => panic!("expected REQUEST, got {other:?}"),
    };
    assert_eq!(next_data(&mut w, stream).await, (b"a".to_vec(), false));
    // The worker answers before the body ends, as a bidi call's server does.
    w.send(respond(stream, 200, false)).await;
    w.send(data(stream, b"pong", false)).await;
    tcp.write_all(b"1\r\nb\r\n0\r\n\r\n").await.unwrap();
    assert_eq!(next_data(&mut w, stream).await, (b"b".to_vec(), false));
    assert_eq!(next_data(&mut w, stream).await, (Vec::new(), true));
    w.send(data(stream, b"", true)).await;
    let r = read_to_close(&mut tcp).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("pong"), "{r}");
}

/// Clocks far shorter than the pauses below, so that each would cut an ordinary upload.
fn short_clocks(c: &mut vyx_gateway::GatewayConfig) {
    c.body_idle_timeout = Duration::from_millis(300);
    c.request_timeout = Duration::from_millis(300);
    c.min_body_rate = 1 << 20;
    c.min_body_rate_grace = Duration::from_millis(100);
}

/// Past every clock of `short_clocks`: the pause of a quiet call (the test waits for time
/// to pass, not for an event).
const PAUSE: Duration = Duration::from_millis(1000);

#[tokio::test]
async fn a_quiet_grpc_call_outlives_body_idle_min_rate_and_the_request_timeout() {
    let gw = TestGateway::start_with(short_clocks).await;
    let mut w = RawWorker::connect(gw.addr, "grpc", vec![route(0, "POST", "/svc/{*m}")]).await;
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(&post_head("application/grpc")).await.unwrap();
    let Frame::Request(r) = w.next_frame().await else {
        panic!("expected REQUEST")
    };
    assert_eq!(next_data(&mut w, r.stream_id).await, (b"a".to_vec(), false));
    // A client-streaming call: the client pauses, then ends its body; the worker answers
    // only then, past the request timeout counted from the stream's start.
    tokio::time::sleep(PAUSE).await;
    tcp.write_all(b"1\r\nb\r\n0\r\n\r\n").await.unwrap();
    assert_eq!(next_data(&mut w, r.stream_id).await, (b"b".to_vec(), false));
    assert_eq!(next_data(&mut w, r.stream_id).await, (Vec::new(), true));
    w.send(respond(r.stream_id, 200, false)).await;
    // A quiet response, past body_idle.
    tokio::time::sleep(PAUSE).await;
    w.send(data(r.stream_id, b"done", true)).await;
    let r = read_to_close(&mut tcp).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("done"), "{r}");

    // The same pause in an ordinary body is cut.
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(&post_head("application/octet-stream"))
        .await
        .unwrap();
    let r = read_to_close(&mut tcp).await;
    assert!(r.starts_with("HTTP/1.1 408"), "{r}");
}

#[tokio::test]
async fn open_grpc_calls_hold_only_the_streamed_upload_share() {
    // 1 % of 64 slots: a share of one slot.
    let gw = TestGateway::start_with(|c| {
        c.streamed_upload_slots = 1;
        c.queue_timeout = Duration::from_millis(300);
    })
    .await;
    let mut w = RawWorker::connect(gw.addr, "grpc", vec![route(0, "POST", "/svc/{*m}")]).await;
    let mut first = TcpStream::connect(gw.addr).await.unwrap();
    first
        .write_all(&post_head("application/grpc"))
        .await
        .unwrap();
    let Frame::Request(r) = w.next_frame().await else {
        panic!("expected REQUEST")
    };
    assert_eq!(next_data(&mut w, r.stream_id).await, (b"a".to_vec(), false));
    // A second open call waits for the share, then gets 503.
    let mut second = TcpStream::connect(gw.addr).await.unwrap();
    second
        .write_all(&post_head("application/grpc"))
        .await
        .unwrap();
    let r2 = read_to_close(&mut second).await;
    assert!(r2.starts_with("HTTP/1.1 503"), "{r2}");
    // A call whose body has ended is an ordinary request and takes another slot.
    let mut done = TcpStream::connect(gw.addr).await.unwrap();
    done.write_all(
        b"POST /svc/Unary HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\
          content-type: application/grpc\r\ncontent-length: 1\r\n\r\nx",
    )
    .await
    .unwrap();
    let stream = match w.next_frame().await {
        Frame::Request(u) => u.stream_id,
        other => panic!("expected REQUEST, got {other:?}"),
    };
    assert_eq!(next_data(&mut w, stream).await, (b"x".to_vec(), false));
    assert_eq!(next_data(&mut w, stream).await, (Vec::new(), true));
    w.send(respond(stream, 200, true)).await;
    let r3 = read_to_close(&mut done).await;
    assert!(r3.starts_with("HTTP/1.1 200"), "{r3}");
}

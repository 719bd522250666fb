//! Stream behaviour at the gateway against a worker driven frame by frame: response framing
//! (§3.5), stream-scoped errors (§3.2, §4.4), timeouts after the head, DRAIN deadlines (§7),
//! `expect: 100-continue` and the headers the gateway adds or removes.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use vyx_core::frame::{Data, Frame, Request, Reset, Response, Window};
use vyx_core::handshake::Drain;

fn head(stream_id: u32, status: u16, headers: &[(&str, &str)], end_stream: bool) -> Frame {
    Frame::Response(Response {
        stream_id,
        end_stream,
        status,
        headers: headers
            .iter()
            .map(|(n, v)| (Bytes::from(n.to_string()), Bytes::from(v.to_string())))
            .collect(),
    })
}

fn data(stream_id: u32, bytes: &'static [u8], end_stream: bool) -> Frame {
    Frame::Data(Data {
        stream_id,
        end_stream,
        data: Bytes::from_static(bytes),
    })
}

async fn next_request(w: &mut RawWorker) -> Request {
    match w.next_frame().await {
        Frame::Request(r) => r,
        other => panic!("expected REQUEST, got {other:?}"),
    }
}

/// The next RESET on the stream (other frames skipped): its code.
async fn reset_code(w: &mut RawWorker, stream_id: u32) -> u32 {
    let wait = async {
        loop {
            if let Frame::Reset(r) = w.next_frame().await {
                if r.stream_id == stream_id {
                    return r.code;
                }
            }
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .expect("RESET in time")
}

/// What a client saw: the status and headers, and the body or the error that cut it.
struct Outcome {
    status: u16,
    headers: http::HeaderMap,
    body: Result<Bytes, String>,
}

async fn fetch(client: &HttpClient, method: &str, url: &str) -> Outcome {
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(WAIT, client.request(req))
        .await
        .expect("response in time")
        .expect("response head");
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(WAIT, body.collect())
        .await
        .expect("body ended in time")
        .map(|b| b.to_bytes())
        .map_err(|e| e.to_string());
    Outcome {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

fn spawn_fetch(gw: &TestGateway, method: &str, path: &str) -> tokio::task::JoinHandle<Outcome> {
    let (c, url, method) = (client(), gw.url(path), method.to_string());
    tokio::spawn(async move { fetch(&c, &method, &url).await })
}

// --- §3.5 response framing -------------------------------------------------------------

#[tokio::test]
async fn conflicting_or_invalid_content_length_is_502_and_resets_the_stream() {
    let gw = TestGateway::start().await;
    let mut w = RawWorker::connect(gw.addr, "raw:cl", vec![route(0, "GET", "/cl")]).await;
    for bad in [
        &[("content-length", "5"), ("content-length", "6")][..],
        &[("content-length", "five")],
    ] {
        let req = spawn_fetch(&gw, "GET", "/cl");
        let r = next_request(&mut w).await;
        w.send(head(r.stream_id, 200, bad, false)).await;
        assert_eq!(
            reset_code(&mut w, r.stream_id).await,
            5,
            "{bad:?}: protocol_error"
        );
        let out = req.await.unwrap();
        assert_eq!(out.status, 502, "{bad:?}");
    }
}

#[tokio::test]
async fn more_data_than_the_content_length_aborts_the_client_and_resets_the_worker() {
    let gw = TestGateway::start().await;
    let mut w = RawWorker::connect(gw.addr, "raw:long", vec![route(0, "GET", "/long")]).await;
    let req = spawn_fetch(&gw, "GET", "/long");
    let r = next_request(&mut w).await;
    w.send(head(r.stream_id, 200, &[("content-length", "3")], false))
        .await;
    w.send(data(r.stream_id, b"abcdef", false)).await;
    assert_eq!(reset_code(&mut w, r.stream_id).await, 5, "protocol_error");
    let out = req.await.unwrap();
    assert!(
        out.body.is_err(),
        "a silently truncated 200: {:?}",
        out.body
    );
    // The same with END_STREAM: the stream is closed, so no RESET, but no 200 either.
    let req = spawn_fetch(&gw, "GET", "/long");
    let r = next_request(&mut w).await;
    w.send(head(r.stream_id, 200, &[("content-length", "3")], false))
        .await;
    w.send(data(r.stream_id, b"abcdef", true)).await;
    let out = req.await.unwrap();
    assert!(
        out.body.is_err(),
        "a silently truncated 200: {:?}",
        out.body
    );
}

#[tokio::test]
async fn fewer_bytes_than_the_content_length_abort_the_client_response() {
    let gw = TestGateway::start().await;
    let mut w = RawWorker::connect(gw.addr, "raw:short", vec![route(0, "GET", "/short")]).await;
    let req = spawn_fetch(&gw, "GET", "/short");
    let r = next_request(&mut w).await;
    w.send(head(r.stream_id, 200, &[("content-length", "10")], false))
        .await;
    w.send(data(r.stream_id, b"abc", true)).await;
    let out = req.await.unwrap();
    assert!(
        out.body.is_err(),
        "complete with 3 of 10 bytes: {:?}",
        out.body
    );
    // Ended with END_STREAM while its content-length promises bytes: 502 at once.
    let req = spawn_fetch(&gw, "GET", "/short");
    let r = next_request(&mut w).await;
    w.send(head(r.stream_id, 200, &[("content-length", "10")], true))
        .await;
    assert_eq!(req.await.unwrap().status, 502);
}

#[tokio::test]
async fn a_matching_content_length_is_passed_on_once() {
    let gw = TestGateway::start().await;
    let mut w = RawWorker::connect(gw.addr, "raw:ok", vec![route(0, "GET", "/ok")]).await;
    let req = spawn_fetch(&gw, "GET", "/ok");
    let r = next_request(&mut w).await;
    w.send(head(
        r.stream_id,
        200,
        &[("content-length", "5"), ("content-length", "5")],
        false,
    ))
    .await;
    w.send(data(r.stream_id, b"he", false)).await;
    w.send(data(r.stream_id, b"llo", true)).await;
    let out = req.await.unwrap();
    assert_eq!(out.body.unwrap(), Bytes::from("hello"));
    let lengths: Vec<_> = out.headers.get_all("content-length").iter().collect();
    assert_eq!(lengths, vec!["5"]);
}

#[tokio::test]
async fn no_content_length_or_body_on_204_and_304_and_head_keeps_the_length() {
    let gw = TestGateway::start().await;
    let mut w = RawWorker::connect(gw.addr, "raw:nobody", vec![route(0, "GET", "/n")]).await;
    for status in [204, 304] {
        let req = spawn_fetch(&gw, "GET", "/n");
        let r = next_request(&mut w).await;
        w.send(head(
            r.stream_id,
            status,
            &[("content-length", "18")],
            false,
        ))
        .await;
        w.send(data(r.stream_id, b"eighteen bytes....", true)).await;
        let out = req.await.unwrap();
        assert_eq!(out.status, status);
        assert!(
            out.headers.get("content-length").is_none(),
            "{status}: {:?}",
            out.headers
        );
        assert_eq!(out.body.unwrap(), Bytes::new(), "{status}");
        // The body is not forwarded: the stream is reset and its slot freed.
        assert_eq!(reset_code(&mut w, r.stream_id).await, 1, "{status}: cancel");
    }
    // HEAD on the GET route: the worker's length, no body.
    let req = spawn_fetch(&gw, "HEAD", "/n");
    let r = next_request(&mut w).await;
    assert_eq!(&r.method[..], b"HEAD");
    w.send(head(r.stream_id, 200, &[("content-length", "18")], true))
        .await;
    let out = req.await.unwrap();
    assert_eq!(out.status, 200);
    assert_eq!(out.headers.get("content-length").unwrap(), "18");
    assert_eq!(out.body.unwrap(), Bytes::new());
}

// --- §3.2, §4.4 stream errors ----------------------------------------------------------

#[tokio::test]
async fn an_invalid_response_head_fails_its_stream_only() {
    let gw = TestGateway::start().await;
    let mut w = RawWorker::connect(gw.addr, "raw:badhead", vec![route(0, "GET", "/b")]).await;
    // A second stream is in flight on the same connection throughout.
    let other = spawn_fetch(&gw, "GET", "/b");
    let other_id = next_request(&mut w).await.stream_id;
    let bad_heads: [(&str, Vec<u8>); 4] = [
        (
            "upper-case name",
            vec![0, 200, 0, 1, 0, 1, b'X', 0, 1, b'1'],
        ),
        ("status 600", vec![2, 88, 0, 0]),
        // 101 decodes, but answers only an UPGRADE stream (§4.5).
        ("status 101 on a plain request", vec![0, 101, 0, 0]),
        (
            "CR in a value",
            vec![0, 200, 0, 1, 0, 1, b'x', 0, 2, b'a', b'\r'],
        ),
    ];
    for (what, payload) in bad_heads {
        let req = spawn_fetch(&gw, "GET", "/b");
        let r = next_request(&mut w).await;
        let mut msg = vec![0x02, 0x01];
        msg.extend_from_slice(&r.stream_id.to_be_bytes());
        msg.extend_from_slice(&payload);
        w.send_raw(msg).await;
        assert_eq!(
            reset_code(&mut w, r.stream_id).await,
            5,
            "{what}: protocol_error"
        );
        assert_eq!(req.await.unwrap().status, 502, "{what}");
    }
    // The connection and its other stream live on.
    w.send(head(other_id, 200, &[], false)).await;
    w.send(data(other_id, b"still here", true)).await;
    assert_eq!(
        other.await.unwrap().body.unwrap(),
        Bytes::from("still here")
    );
}

#[tokio::test]
async fn reset_no_error_before_the_response_is_502_at_once() {
    let gw = TestGateway::start_with(|c| c.request_timeout = Duration::from_secs(600)).await;
    let mut w = RawWorker::connect(gw.addr, "raw:noerr", vec![route(0, "GET", "/e")]).await;
    let req = spawn_fetch(&gw, "GET", "/e");
    let r = next_request(&mut w).await;
    w.send(Frame::Reset(Reset::new(
        r.stream_id,
        vyx_core::error::ResetCode::NoError,
        "",
    )))
    .await;
    assert_eq!(req.await.unwrap().status, 502);
}

#[tokio::test]
async fn the_data_before_a_worker_s_reset_reaches_an_http1_client() {
    let gw = TestGateway::start().await;
    let mut w = RawWorker::connect(gw.addr, "raw:cut", vec![route(0, "GET", "/cut")]).await;
    let mut client = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    client
        .write_all(b"GET /cut HTTP/1.1\r\nhost: gw\r\n\r\n")
        .await
        .unwrap();
    let r = next_request(&mut w).await;
    // A handler that failed after its second chunk (PROTOCOL.md §3.6: the client's response
    // is aborted), its frames back to back.
    w.send(head(r.stream_id, 200, &[], false)).await;
    w.send(data(r.stream_id, b"part1", false)).await;
    w.send(data(r.stream_id, b"part2", false)).await;
    w.send(Frame::Reset(Reset::new(
        r.stream_id,
        vyx_core::error::ResetCode::HandlerError,
        "raised",
    )))
    .await;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, client.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the aborted response never ended: {got:?}"),
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("part1") && text.contains("part2"), "{text}");
    // Aborted, not ended: no last chunk.
    assert!(!text.contains("\r\n0\r\n\r\n"), "{text}");
}

#[tokio::test]
async fn window_after_the_request_ended_is_ignored() {
    let gw = TestGateway::start().await;
    let mut w = RawWorker::connect(gw.addr, "raw:latewin", vec![route(0, "GET", "/w")]).await;
    let req = spawn_fetch(&gw, "GET", "/w");
    let r = next_request(&mut w).await;
    assert!(r.end_stream);
    // Would take the window past 2^31-1 if it were counted.
    w.send(Frame::Window(Window {
        stream_id: r.stream_id,
        increment: 0x7fff_ffff,
    }))
    .await;
    w.send(head(r.stream_id, 200, &[], false)).await;
    w.send(data(r.stream_id, b"fine", true)).await;
    assert_eq!(req.await.unwrap().body.unwrap(), Bytes::from("fine"));
}

// --- timeouts after the head ------------------------------------------------------------

#[tokio::test]
async fn a_response_body_stalling_past_body_idle_is_reset_and_aborted() {
    let gw = TestGateway::start_with(|c| {
        c.body_idle_timeout = Duration::from_millis(300);
        c.request_timeout = Duration::from_secs(600);
    })
    .await;
    let mut w = RawWorker::connect(gw.addr, "raw:stall", vec![route(0, "GET", "/stall")]).await;
    let req = spawn_fetch(&gw, "GET", "/stall");
    let r = next_request(&mut w).await;
    w.send(head(r.stream_id, 200, &[], false)).await;
    w.send(data(r.stream_id, b"7 bytes", false)).await;
    // Then silence.
    assert_eq!(reset_code(&mut w, r.stream_id).await, 3, "timeout");
    let out = req.await.unwrap();
    assert!(
        out.body.is_err(),
        "a stalled body ended as complete: {:?}",
        out.body
    );
    // The slot is free: the connection serves the next request.
    let req = spawn_fetch(&gw, "GET", "/stall");
    let r = next_request(&mut w).await;
    w.send(head(r.stream_id, 200, &[], true)).await;
    assert_eq!(req.await.unwrap().status, 200);
}

// --- §7 drain ---------------------------------------------------------------------------

#[tokio::test]
async fn the_gateway_does_not_enforce_the_workers_own_drain_deadline() {
    let gw = TestGateway::start().await;
    let mut w = RawWorker::connect(gw.addr, "raw:drainer", vec![route(0, "GET", "/d")]).await;
    let req = spawn_fetch(&gw, "GET", "/d");
    let r = next_request(&mut w).await;
    w.send(Frame::Drain(Drain {
        reason: "deploy".into(),
        deadline_ms: 50,
    }))
    .await;
    // Well past the worker's deadline: only the worker closes 4010 (§7), and it has not.
    tokio::time::sleep(Duration::from_millis(500)).await;
    w.send(head(r.stream_id, 200, &[], false)).await;
    w.send(data(r.stream_id, b"late but fine", true)).await;
    assert_eq!(
        req.await.unwrap().body.unwrap(),
        Bytes::from("late but fine")
    );
    assert_eq!(w.close_code().await, 1000, "closed normally once drained");
}

// --- handshake --------------------------------------------------------------------------

#[tokio::test]
async fn pings_before_hello_are_answered_and_the_handshake_goes_on() {
    let gw = TestGateway::start().await;
    let mut ws = raw_upgrade(gw.addr, "raw:pinger").await;
    ws.send(Message::Ping(Bytes::from_static(b"hi")))
        .await
        .unwrap();
    let pong = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(pong, Message::Pong(Bytes::from_static(b"hi")));
    let hello = vyx_core::handshake::Hello {
        protocol: 1,
        worker_id: "raw:pinger".into(),
        instance: String::new(),
        sdk: String::new(),
        max_concurrency: 1,
        routes: vec![],
        labels: Default::default(),
        features: Vec::new(),
    };
    let mut w = RawWorker {
        ws,
        welcome: unset_welcome(),
    };
    w.send(Frame::Hello(hello)).await;
    assert!(matches!(w.next_frame().await, Frame::Welcome(_)));
}

#[tokio::test]
async fn a_hello_that_does_not_decode_is_4001_naming_the_error() {
    let gw = TestGateway::start().await;
    let mut w = RawWorker {
        ws: raw_upgrade(gw.addr, "raw:garbled").await,
        welcome: unset_welcome(),
    };
    let mut msg = vec![0x10, 0, 0, 0, 0, 0];
    msg.extend_from_slice(br#"{"protocol":1,"worker_id":"raw:garbled"}"#); // no max_concurrency
    w.send_raw(msg).await;
    let error = loop {
        match tokio::time::timeout(WAIT, w.ws.next()).await.unwrap() {
            Some(Ok(Message::Binary(b))) => match Frame::decode(b, 1 << 20).unwrap() {
                Frame::Error(e) => break e,
                other => panic!("expected ERROR, got {other:?}"),
            },
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected ERROR, got {other:?}"),
        }
    };
    assert_eq!(error.code, 4001);
    assert!(
        error.message.contains("invalid_control_payload"),
        "{}",
        error.message
    );
    assert_eq!(w.close_code().await, 4001);
}

// --- headers ----------------------------------------------------------------------------

#[tokio::test]
async fn proxy_headers_are_removed_both_ways_and_forwarded_is_added() {
    // The client is a trusted proxy, so its `forwarded` is kept (from anyone else it is
    // replaced: tests/front.rs).
    let gw = TestGateway::start_with(|c| {
        c.trusted_proxies = vec![vyx_gateway::trusted_proxies::IpNet::parse("127.0.0.1").unwrap()]
    })
    .await;
    let mut w = RawWorker::connect(gw.addr, "raw:hdr", vec![route(0, "GET", "/h")]).await;
    let c = client();
    let url = gw.url("/h");
    let req = tokio::spawn(async move {
        send(
            &c,
            "GET",
            &url,
            &[("proxy-foo", "1"), ("forwarded", "for=192.0.2.1")],
            Bytes::new(),
        )
        .await
    });
    let r = next_request(&mut w).await;
    let values = |name: &str| -> Vec<Bytes> {
        r.headers
            .iter()
            .filter(|(n, _)| n == name.as_bytes())
            .map(|(_, v)| v.clone())
            .collect()
    };
    assert!(values("proxy-foo").is_empty());
    let host = gw.addr.to_string();
    assert_eq!(
        values("forwarded"),
        vec![
            Bytes::from("for=192.0.2.1"),
            Bytes::from(format!("for=127.0.0.1;proto=http;host=\"{host}\"")),
        ]
    );
    w.send(head(
        r.stream_id,
        200,
        &[("proxy-bar", "x"), ("x-kept", "y")],
        true,
    ))
    .await;
    let (status, headers, _) = req.await.unwrap();
    assert_eq!(status, 200);
    assert!(headers.get("proxy-bar").is_none());
    assert_eq!(headers.get("x-kept").unwrap(), "y");
}

#[tokio::test]
async fn a_websocket_upgrade_to_a_worker_without_the_upgrade_feature_is_501() {
    let gw = TestGateway::start().await;
    let _w = RawWorker::connect(gw.addr, "raw:ws", vec![route(0, "GET", "/ws")]).await;
    let (status, _, body) = send(
        &client(),
        "GET",
        &gw.url("/ws"),
        &[("connection", "upgrade"), ("upgrade", "websocket")],
        Bytes::new(),
    )
    .await;
    assert_eq!(status, 501);
    assert!(
        String::from_utf8_lossy(&body).contains("does not take upgrades"),
        "{body:?}"
    );
}

// --- expect: 100-continue ---------------------------------------------------------------

/// Sends an HTTP/1.1 upload with `expect: 100-continue` by hand and returns the socket.
async fn expecting_upload(gw: &TestGateway) -> tokio::net::TcpStream {
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /up HTTP/1.1\r\nhost: {}\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n",
        gw.addr
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp
}

/// Reads from the socket until `needle` has arrived (or it closes); returns all read.
async fn read_until(tcp: &mut tokio::net::TcpStream, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
            .await
            .expect("read in time")
            .unwrap();
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn expect_continue_is_answered_by_the_gateway_and_not_forwarded() {
    // The worker sends nothing at all: the 100 can only be the gateway's own (before issue
    // 17 it waited for the worker's WINDOW, or 1 s).
    let gw = TestGateway::start().await;
    let mut w = RawWorker::connect(gw.addr, "raw:up", vec![route(0, "POST", "/up")]).await;
    let mut tcp = expecting_upload(&gw).await;
    let answer = read_until(&mut tcp, "100 Continue").await;
    assert!(answer.starts_with("HTTP/1.1 100 Continue"), "{answer}");
    tcp.write_all(b"hello").await.unwrap();
    // The body was read before the request took the slot: REQUEST, then all of it.
    let r = next_request(&mut w).await;
    assert!(!r.end_stream);
    assert!(
        !r.headers.iter().any(|(n, _)| n == "expect"),
        "{:?}",
        r.headers
    );
    let mut body = Vec::new();
    loop {
        match w.next_frame().await {
            Frame::Data(d) => {
                body.extend_from_slice(&d.data);
                if d.end_stream {
                    break;
                }
            }
            other => panic!("expected DATA, got {other:?}"),
        }
    }
    assert_eq!(body, b"hello");
    // A worker's refusal is still the client's answer.
    w.send(head(r.stream_id, 413, &[], true)).await;
    let answer = read_until(&mut tcp, "\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[tokio::test]
async fn the_gateway_closes_4010_at_its_own_drain_deadline() {
    let gw = TestGateway::start_with(|c| c.drain_grace = Duration::from_millis(300)).await;
    let mut w = RawWorker::connect(gw.addr, "raw:stuck", vec![route(0, "GET", "/stuck")]).await;
    let req = spawn_fetch(&gw, "GET", "/stuck");
    let _r = next_request(&mut w).await;
    let shutdown = tokio::spawn(gw.shutdown());
    assert!(matches!(w.next_frame().await, Frame::Drain(_)));
    // The stream is never answered.
    assert_eq!(w.close_code().await, 4010);
    shutdown.await.unwrap();
    req.abort();
}

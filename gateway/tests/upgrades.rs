//! Upgraded connections carried over a stream (PROTOCOL.md §4.5), against a worker driven
//! frame by frame: the REQUEST the worker sees, the switch on 101, bytes both ways with
//! half-close, a refusal, a worker that goes away, the idle limit, the slot an upgraded
//! connection holds, and HTTP/2 extended CONNECT (RFC 8441).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vyx_core::error::ResetCode;
use vyx_core::frame::{Data, Frame, Request, Response};

const HANDSHAKE: &[u8] = b"GET /ws?room=1 HTTP/1.1\r\nhost: gw\r\nconnection: Upgrade\r\n\
upgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

async fn upgrading_worker(gw: &TestGateway) -> RawWorker {
    let routes = vec![route(0, "GET", "/ws")];
    RawWorker::connect_with_features(gw.addr, "raw:ws", routes, &["upgrade"]).await
}

async fn next_request(w: &mut RawWorker) -> Request {
    match w.next_frame().await {
        Frame::Request(r) => r,
        other => panic!("expected REQUEST, got {other:?}"),
    }
}

/// The next frame of `stream_id` (WINDOW frames skipped).
async fn next_on(w: &mut RawWorker, stream_id: u32) -> Frame {
    loop {
        match w.next_frame().await {
            Frame::Window(_) => {}
            f @ (Frame::Data(_) | Frame::Reset(_)) => {
                let id = match &f {
                    Frame::Data(d) => d.stream_id,
                    Frame::Reset(r) => r.stream_id,
                    _ => unreachable!(),
                };
                assert_eq!(id, stream_id, "{f:?}");
                return f;
            }
            other => panic!("expected DATA or RESET on {stream_id}, got {other:?}"),
        }
    }
}

fn header<'a>(r: &'a Request, name: &str) -> Vec<&'a [u8]> {
    r.headers
        .iter()
        .filter(|(n, _)| &n[..] == name.as_bytes())
        .map(|(_, v)| &v[..])
        .collect()
}

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

fn data(stream_id: u32, bytes: &[u8], end_stream: bool) -> Frame {
    Frame::Data(Data {
        stream_id,
        end_stream,
        data: Bytes::copy_from_slice(bytes),
    })
}

fn switching(stream_id: u32) -> Frame {
    let accept = ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    head(stream_id, 101, &[("upgrade", "websocket"), accept], false)
}

/// Reads a response head (up to its blank line) from a raw client socket.
async fn read_head(tcp: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut byte))
            .await
            .expect("head in time")
            .unwrap();
        assert_eq!(n, 1, "connection ended inside the head: {head:?}");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap().to_ascii_lowercase()
}

async fn read_exact(tcp: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(WAIT, tcp.read_exact(&mut buf))
        .await
        .expect("bytes in time")
        .unwrap();
    buf
}

/// Whether the client's connection ends (EOF or an error) in time.
async fn ends(tcp: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(WAIT, tcp.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn a_websocket_upgrade_is_carried_both_ways_with_half_close() {
    let gw = TestGateway::start().await;
    let mut w = upgrading_worker(&gw).await;
    assert!(w.welcome.features.iter().any(|f| f == "upgrade"));
    let mut client = TcpStream::connect(gw.addr).await.unwrap();
    client.write_all(HANDSHAKE).await.unwrap();

    let r = next_request(&mut w).await;
    assert!(
        r.upgrade && !r.end_stream,
        "UPGRADE, and the request side open"
    );
    assert_eq!(&r.target[..], b"/ws?room=1");
    assert_eq!(header(&r, "connection"), [b"upgrade"]);
    assert_eq!(header(&r, "upgrade"), [b"websocket"]);
    assert_eq!(
        header(&r, "sec-websocket-key"),
        [b"dGhlIHNhbXBsZSBub25jZQ=="]
    );
    assert_eq!(header(&r, "sec-websocket-version"), [b"13"]);
    let id = r.stream_id;

    w.send(switching(id)).await;
    let head = read_head(&mut client).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket\r\n"), "{head}");
    assert!(head.contains("connection: upgrade\r\n"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"),
        "{head}"
    );
    wait_in_flight(gw.addr, 1, "the upgraded connection holds its slot").await;

    // Opaque bytes, both ways.
    client
        .write_all(b"\x81\x85hello from the client")
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 23 {
        match next_on(&mut w, id).await {
            Frame::Data(d) if !d.end_stream => got.extend_from_slice(&d.data),
            other => panic!("expected the client's bytes, got {other:?}"),
        }
    }
    assert_eq!(got, b"\x81\x85hello from the client");
    w.send(data(id, b"\x81\x05pong!", false)).await;
    assert_eq!(read_exact(&mut client, 7).await, b"\x81\x05pong!");

    // The client half-closes: END_STREAM; the worker still writes, then half-closes too.
    client.shutdown().await.unwrap();
    match next_on(&mut w, id).await {
        Frame::Data(d) => assert!(d.end_stream && d.data.is_empty(), "{d:?}"),
        other => panic!("expected END_STREAM, got {other:?}"),
    }
    w.send(data(id, b"last words", true)).await;
    assert_eq!(read_exact(&mut client, 10).await, b"last words");
    assert!(
        ends(&mut client).await,
        "the worker's END_STREAM half-closes the client"
    );
    wait_in_flight(gw.addr, 0, "both directions ended: the slot is free").await;
}

#[tokio::test]
async fn a_refused_upgrade_is_an_ordinary_response_and_ends_the_request_side() {
    let gw = TestGateway::start().await;
    let mut w = upgrading_worker(&gw).await;
    let mut client = TcpStream::connect(gw.addr).await.unwrap();
    client.write_all(HANDSHAKE).await.unwrap();
    let id = next_request(&mut w).await.stream_id;
    w.send(head(id, 403, &[("content-length", "2")], false))
        .await;
    w.send(data(id, b"no", true)).await;
    let head = read_head(&mut client).await;
    assert!(head.starts_with("http/1.1 403"), "{head}");
    assert!(!head.contains("upgrade"), "{head}");
    assert_eq!(read_exact(&mut client, 2).await, b"no");
    match next_on(&mut w, id).await {
        Frame::Data(d) => assert!(d.end_stream && d.data.is_empty(), "{d:?}"),
        other => panic!("expected the request side's END_STREAM, got {other:?}"),
    }
    wait_in_flight(gw.addr, 0, "the refused upgrade's stream ended").await;
}

#[tokio::test]
async fn a_worker_that_goes_away_after_101_closes_the_client_connection() {
    let gw = TestGateway::start().await;
    let mut w = upgrading_worker(&gw).await;
    let mut client = TcpStream::connect(gw.addr).await.unwrap();
    client.write_all(HANDSHAKE).await.unwrap();
    let id = next_request(&mut w).await.stream_id;
    w.send(switching(id)).await;
    assert!(read_head(&mut client).await.starts_with("http/1.1 101"));
    drop(w);
    assert!(
        ends(&mut client).await,
        "client connection closed with the worker's"
    );
}

#[tokio::test]
async fn a_worker_reset_after_101_closes_the_client_and_a_client_reset_cancels() {
    let gw = TestGateway::start().await;
    let mut w = upgrading_worker(&gw).await;
    // The worker aborts.
    let mut client = TcpStream::connect(gw.addr).await.unwrap();
    client.write_all(HANDSHAKE).await.unwrap();
    let id = next_request(&mut w).await.stream_id;
    w.send(switching(id)).await;
    assert!(read_head(&mut client).await.starts_with("http/1.1 101"));
    let reset = vyx_core::frame::Reset::new(id, ResetCode::HandlerError, "bye");
    w.send(Frame::Reset(reset)).await;
    assert!(
        ends(&mut client).await,
        "the worker's RESET closes the client"
    );
    // The client aborts (a TCP reset, not a half-close).
    let mut client = TcpStream::connect(gw.addr).await.unwrap();
    client.write_all(HANDSHAKE).await.unwrap();
    let id = next_request(&mut w).await.stream_id;
    w.send(switching(id)).await;
    assert!(read_head(&mut client).await.starts_with("http/1.1 101"));
    socket2::SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
    match next_on(&mut w, id).await {
        Frame::Reset(r) => assert_eq!(r.code, ResetCode::Cancel as u32),
        other => panic!("expected RESET cancel, got {other:?}"),
    }
    wait_in_flight(gw.addr, 0, "both upgraded streams ended").await;
}

#[tokio::test]
async fn an_upgraded_connection_idle_past_upgrade_idle_is_reset_and_closed() {
    let gw = TestGateway::start_with(|c| {
        c.upgrade_idle_timeout = Duration::from_millis(300);
        c.request_timeout = Duration::from_secs(600);
    })
    .await;
    let mut w = upgrading_worker(&gw).await;
    let mut client = TcpStream::connect(gw.addr).await.unwrap();
    client.write_all(HANDSHAKE).await.unwrap();
    let id = next_request(&mut w).await.stream_id;
    w.send(switching(id)).await;
    assert!(read_head(&mut client).await.starts_with("http/1.1 101"));
    // Bytes keep it alive; then nothing moves.
    client.write_all(b"tick").await.unwrap();
    assert!(matches!(next_on(&mut w, id).await, Frame::Data(_)));
    match next_on(&mut w, id).await {
        Frame::Reset(r) => assert_eq!(r.code, ResetCode::Timeout as u32, "{r:?}"),
        other => panic!("expected RESET timeout, got {other:?}"),
    }
    assert!(
        ends(&mut client).await,
        "the idle client connection is closed"
    );
    wait_in_flight(gw.addr, 0, "the idle stream's slot is free").await;
}

#[tokio::test]
async fn a_101_on_a_stream_that_is_not_an_upgrade_is_502() {
    let gw = TestGateway::start().await;
    let mut w = upgrading_worker(&gw).await;
    let c = client();
    let req = tokio::spawn(async move {
        let url = format!("http://{}/ws", gw.addr);
        let out = get(&c, &url).await;
        (gw, out)
    });
    let r = next_request(&mut w).await;
    assert!(!r.upgrade);
    w.send(switching(r.stream_id)).await;
    match next_on(&mut w, r.stream_id).await {
        Frame::Reset(x) => assert_eq!(x.code, ResetCode::ProtocolError as u32),
        other => panic!("expected RESET protocol_error, got {other:?}"),
    }
    let (_gw, (status, _)) = req.await.unwrap();
    assert_eq!(status, 502);
}

#[tokio::test]
async fn an_upgrade_request_with_a_body_or_an_h2c_upgrade_is_not_carried() {
    let gw = TestGateway::start().await;
    let mut w = upgrading_worker(&gw).await;
    let c = client();
    // A body before the switch would have no frame to go in: 400, the worker never asked.
    let (status, _, _) = send(
        &c,
        "GET",
        &gw.url("/ws"),
        &[("connection", "upgrade"), ("upgrade", "websocket")],
        Bytes::from_static(b"early bytes"),
    )
    .await;
    assert_eq!(status, 400);
    // `upgrade: h2c` is about the client's own connection: a plain request.
    let url = gw.url("/ws");
    let plain = tokio::spawn(async move {
        let h = [("connection", "upgrade"), ("upgrade", "h2c")];
        send(&c, "GET", &url, &h, Bytes::new()).await.0
    });
    let r = next_request(&mut w).await;
    assert!(!r.upgrade && r.end_stream);
    assert!(header(&r, "upgrade").is_empty());
    w.send(head(r.stream_id, 204, &[], true)).await;
    assert_eq!(plain.await.unwrap(), 204);
}

/// A plain CONNECT (a tunnel, RFC 9110 §9.3.6) to a route that takes any method is the
/// gateway's 501, and the connection serves the next request: before, the worker's 200 with
/// `content-length: 0` reached hyper, which dropped the connection without an answer.
#[tokio::test]
async fn a_plain_connect_is_501_from_the_gateway_and_the_connection_goes_on() {
    let gw = TestGateway::start().await;
    let routes = vec![route(0, "*", "/any")];
    let mut w = RawWorker::connect_with_features(gw.addr, "raw:any", routes, &["upgrade"]).await;
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(b"CONNECT /any HTTP/1.1\r\nhost: gw\r\n\r\n")
        .await
        .unwrap();
    let answer = read_head(&mut tcp).await;
    assert!(answer.starts_with("http/1.1 501"), "{answer}");
    let len: usize = answer
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("a length")
        .trim()
        .parse()
        .unwrap();
    let body = String::from_utf8(read_exact(&mut tcp, len).await).unwrap();
    assert!(body.contains("CONNECT tunnels are not carried"), "{body}");
    tcp.write_all(b"GET /any HTTP/1.1\r\nhost: gw\r\n\r\n")
        .await
        .unwrap();
    let r = next_request(&mut w).await;
    assert_eq!(
        &r.method[..],
        b"GET",
        "the CONNECT never reached the worker"
    );
    w.send(head(r.stream_id, 204, &[], true)).await;
    assert!(read_head(&mut tcp).await.starts_with("http/1.1 204"));
}

/// Sends an HTTP/2 extended CONNECT for `/ws` (RFC 8441); the task yields the response.
async fn extended_connect(
    gw: &TestGateway,
) -> tokio::task::JoinHandle<Result<http::Response<hyper::body::Incoming>, hyper::Error>> {
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method("CONNECT")
        .uri(format!("http://{}/ws", gw.addr))
        .header("sec-websocket-version", "13")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    tokio::spawn(async move { send.send_request(req).await })
}

#[tokio::test]
async fn an_http2_extended_connect_is_presented_as_the_http1_handshake() {
    let gw = TestGateway::start().await;
    let mut w = upgrading_worker(&gw).await;
    let answer = extended_connect(&gw).await;

    // RFC 8441 §5: the worker sees GET with the HTTP/1.1 upgrade headers and a key.
    let r = next_request(&mut w).await;
    assert!(r.upgrade && !r.end_stream);
    assert_eq!(&r.method[..], b"GET");
    assert_eq!(&r.target[..], b"/ws");
    assert_eq!(header(&r, "connection"), [b"upgrade"]);
    assert_eq!(header(&r, "upgrade"), [b"websocket"]);
    assert_eq!(
        header(&r, "sec-websocket-key")[0].len(),
        24,
        "16 bytes, base64"
    );
    let id = r.stream_id;
    w.send(switching(id)).await;

    let resp = tokio::time::timeout(WAIT, answer)
        .await
        .expect("answer in time")
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200, "a 101 is 200 over HTTP/2");
    assert!(resp.headers().get("sec-websocket-accept").is_none());
    let upgraded = hyper::upgrade::on(resp).await.unwrap();
    let mut tunnel = hyper_util::rt::TokioIo::new(upgraded);
    tunnel.write_all(b"over h2").await.unwrap();
    match next_on(&mut w, id).await {
        Frame::Data(d) => assert_eq!(&d.data[..], b"over h2"),
        other => panic!("expected the client's bytes, got {other:?}"),
    }
    w.send(data(id, b"back", true)).await;
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, tunnel.read_to_end(&mut got))
        .await
        .expect("the worker's END_STREAM ends the tunnel's read side")
        .unwrap();
    assert_eq!(got, b"back");
    wait_in_flight(gw.addr, 1, "the client's side is still open").await;
    tunnel.shutdown().await.unwrap();
    match next_on(&mut w, id).await {
        Frame::Data(d) => assert!(d.end_stream && d.data.is_empty(), "{d:?}"),
        other => panic!("expected END_STREAM, got {other:?}"),
    }
    wait_in_flight(gw.addr, 0, "both directions ended").await;
}

#[tokio::test]
async fn an_http2_tunnel_is_not_closed_as_an_idle_connection() {
    // An HTTP/2 connection with no request open is closed after timeouts.header_read; an
    // open tunnel is a request open, so the upgrade's own idle limit, later, ends it.
    let gw = TestGateway::start_with(|c| {
        c.header_read_timeout = Some(Duration::from_millis(200));
        c.upgrade_idle_timeout = Duration::from_millis(800);
    })
    .await;
    let mut w = upgrading_worker(&gw).await;
    let answer = extended_connect(&gw).await;
    let id = next_request(&mut w).await.stream_id;
    w.send(switching(id)).await;
    let resp = answer.await.unwrap().unwrap();
    let _tunnel = hyper::upgrade::on(resp).await.unwrap();
    match next_on(&mut w, id).await {
        Frame::Reset(r) => assert_eq!(r.code, ResetCode::Timeout as u32, "{r:?}"),
        other => panic!("expected RESET timeout (upgrade_idle), got {other:?}"),
    }
}

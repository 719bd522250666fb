//! The gateway against a worker driven frame by frame: routing, status mapping, streams,
//! flow control, and every malformed input closing only its own connection.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::SinkExt;
use http_body_util::{BodyExt, Full};
use tokio_tungstenite::tungstenite::{self, Message};
use vyx_core::frame::{Frame, Response, Window};
use vyx_core::handshake::Hello;

#[tokio::test]
async fn request_reaches_the_worker_intact_and_the_answer_comes_back() {
    let gw = TestGateway::start().await;
    let mut w =
        RawWorker::connect(gw.addr, "raw:hello", vec![route(7, "GET", "/hello/{name}")]).await;
    assert_eq!(w.welcome.protocol, 1);
    assert_eq!(w.welcome.initial_window, 256 * 1024);
    assert_eq!(w.welcome.max_concurrency, 64);

    let c = client();
    let url = gw.url("/hello/w%C3%B6rld?x=1&y=%20");
    let req = tokio::spawn(async move {
        send(
            &c,
            "GET",
            &url,
            &[
                ("x-multi", "a"),
                ("x-multi", "b"),
                ("connection", "keep-alive, x-drop"),
                ("x-drop", "1"),
            ],
            Bytes::new(),
        )
        .await
    });
    let Frame::Request(r) = w.next_frame().await else {
        panic!("expected REQUEST")
    };
    assert!(r.end_stream, "a GET without body carries END_STREAM");
    assert_eq!(r.route_id, 7);
    assert_eq!(&r.method[..], b"GET");
    assert_eq!(&r.target[..], b"/hello/w%C3%B6rld?x=1&y=%20");
    assert_eq!(r.params, vec![(Bytes::from("name"), Bytes::from("wörld"))]);
    let values = |name: &str| -> Vec<Bytes> {
        r.headers
            .iter()
            .filter(|(n, _)| n == name.as_bytes())
            .map(|(_, v)| v.clone())
            .collect()
    };
    assert_eq!(values("x-multi"), vec![Bytes::from("a"), Bytes::from("b")]);
    assert_eq!(values("x-forwarded-for"), vec![Bytes::from("127.0.0.1")]);
    assert_eq!(values("x-forwarded-proto"), vec![Bytes::from("http")]);
    assert_eq!(
        values("x-forwarded-host"),
        vec![Bytes::from(gw.addr.to_string())]
    );
    assert!(
        values("connection").is_empty(),
        "hop-by-hop header stripped"
    );
    assert!(
        values("x-drop").is_empty(),
        "header named by Connection stripped"
    );
    let request_id = values("x-request-id");
    assert_eq!(request_id.len(), 1);

    w.send(Frame::Response(Response {
        stream_id: r.stream_id,
        end_stream: false,
        status: 201,
        headers: vec![
            (Bytes::from("set-cookie"), Bytes::from("a=1")),
            (Bytes::from("set-cookie"), Bytes::from("b=2")),
            (Bytes::from("keep-alive"), Bytes::from("timeout=5")),
        ],
    }))
    .await;
    w.send(data(r.stream_id, b"hel", false)).await;
    w.send(data(r.stream_id, b"lo", true)).await;
    let (status, headers, body) = req.await.unwrap();
    assert_eq!(status, 201);
    assert_eq!(&body[..], b"hello");
    let cookies: Vec<_> = headers.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, vec!["a=1", "b=2"]);
    assert!(headers.get("keep-alive").is_none());
    assert_eq!(
        headers.get("x-request-id").unwrap().as_bytes(),
        &request_id[0][..]
    );
}

#[tokio::test]
async fn no_route_is_404_and_route_without_live_worker_is_503() {
    let gw = TestGateway::start().await;
    let c = client();
    let (status, body) = get(&c, &gw.url("/nothing/here")).await;
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("no route"));

    let w = RawWorker::connect(gw.addr, "raw:gone", vec![route(0, "GET", "/gone")]).await;
    drop(w);
    wait_for_workers(gw.addr, "raw:gone", 0).await;
    let (status, headers, _) = send(&c, "GET", &gw.url("/gone"), &[], Bytes::new()).await;
    assert_eq!(status, 503);
    assert_eq!(headers.get("retry-after").unwrap(), "1");
}

#[tokio::test]
async fn upgrade_without_the_subprotocol_is_refused() {
    let gw = TestGateway::start().await;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}/_vyx/register", gw.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("x-vyx-worker-id", "raw:nosub".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 400);
            let body =
                String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).to_string();
            assert!(body.contains("vyx.1"), "body names the subprotocol: {body}");
        }
        other => panic!("expected HTTP 400, got {other:?}"),
    }
    // A plain GET on the registration path is not an upgrade either.
    let (status, _) = get(&client(), &gw.url("/_vyx/register")).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn slow_handshake_is_closed_with_4007() {
    let gw = TestGateway::start_with(|c| c.handshake_timeout = Duration::from_millis(200)).await;
    let ws = raw_upgrade(gw.addr, "raw:slow").await;
    let mut w = RawWorker {
        ws,
        welcome: unset_welcome(),
    };
    assert_eq!(w.close_code().await, 4007);
}

async fn hello_and_close_code(gw: &TestGateway, id: &str, hello: Hello) -> u16 {
    let ws = raw_upgrade(gw.addr, id).await;
    let mut w = RawWorker {
        ws,
        welcome: unset_welcome(),
    };
    w.send(Frame::Hello(hello)).await;
    w.close_code().await
}

#[tokio::test]
async fn bad_hellos_and_route_conflicts_get_their_close_codes() {
    let gw = TestGateway::start().await;
    let _a = RawWorker::connect(gw.addr, "raw:a", vec![route(0, "GET", "/taken/{id}")]).await;
    // Same route from another id: refused, named.
    assert_eq!(
        hello_and_close_code(
            &gw,
            "raw:b",
            hello("raw:b", vec![route(0, "GET", "/taken/{id}")])
        )
        .await,
        4003
    );
    // Same shape with another parameter name still overlaps.
    assert_eq!(
        hello_and_close_code(
            &gw,
            "raw:b",
            hello("raw:b", vec![route(0, "GET", "/taken/{key}")])
        )
        .await,
        4003
    );
    // HELLO naming another id than the upgrade request.
    assert_eq!(
        hello_and_close_code(&gw, "raw:b", hello("raw:c", vec![])).await,
        4001
    );
    // Unsupported version.
    let mut h = hello("raw:b", vec![]);
    h.protocol = 2;
    assert_eq!(hello_and_close_code(&gw, "raw:b", h).await, 4002);
    // A replica of the same id shares the route.
    let _a2 = RawWorker::connect(gw.addr, "raw:a", vec![route(0, "GET", "/taken/{id}")]).await;
    wait_for_workers(gw.addr, "raw:a", 2).await;
}

#[tokio::test]
async fn malformed_frames_close_only_their_connection_with_the_right_code() {
    let gw = TestGateway::start().await;
    let good = RawWorker::connect(gw.addr, "raw:good", vec![route(0, "GET", "/good")]).await;
    let _serving = serve_ok(good);
    let c = client();

    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unknown frame type", vec![0x06, 0, 0, 0, 0, 1], 4005),
        // TRAILERS and INFORMATIONAL decode, but this connection negotiated neither (§3.10).
        (
            "TRAILERS without the extension",
            vec![0x04, 0, 0, 0, 0, 1, 0, 0],
            4005,
        ),
        (
            "INFORMATIONAL without the extension",
            vec![0x05, 0, 0, 0, 0, 1, 0, 103, 0, 0],
            4005,
        ),
        ("truncated header", vec![0x00, 0, 0], 4005),
        (
            "DATA for a stream never opened",
            vec![0x00, 0, 0, 0, 0, 9, b'x'],
            4005,
        ),
        (
            "second HELLO",
            Frame::Hello(hello("raw:bad", vec![])).encode().to_vec(),
            4005,
        ),
        (
            "WINDOW on stream 0",
            vec![0x08, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            4005,
        ),
        ("oversized frame", vec![0u8; (1 << 20) + 1], 4006),
        // A REQUEST head that does not decode is a stream error at a worker (§8), but from
        // a worker it is in the wrong direction first: the connection's error.
        (
            "REQUEST with a bad target from a worker",
            [
                &[0x01, 0x01, 0, 0, 0, 1, 0, 0, 0, 3][..],
                b"GET\x00\x02/\xc3\x00\x00\x00\x00",
            ]
            .concat(),
            4005,
        ),
    ];
    for (what, bytes, code) in cases {
        let mut bad = RawWorker::connect(gw.addr, "raw:bad", vec![route(0, "GET", "/bad")]).await;
        bad.send_raw(bytes).await;
        assert_eq!(bad.close_code().await, code, "{what}");
        let (status, body) = get(&c, &gw.url("/good")).await;
        assert_eq!(
            (status, &body[..]),
            (200, &b"ok"[..]),
            "others still served after {what}"
        );
    }
    let mut bad = RawWorker::connect(gw.addr, "raw:bad", vec![route(0, "GET", "/bad")]).await;
    bad.ws.send(Message::Text("hello".into())).await.unwrap();
    assert_eq!(bad.close_code().await, 4005, "text message");
}

#[tokio::test]
async fn worker_lost_mid_request_gives_502_and_others_keep_serving() {
    let gw = TestGateway::start().await;
    let _good =
        serve_ok(RawWorker::connect(gw.addr, "raw:good", vec![route(0, "GET", "/good")]).await);
    let c = client();
    // The worker takes the request, then vanishes without a close frame.
    let mut doomed =
        RawWorker::connect(gw.addr, "raw:doomed", vec![route(0, "GET", "/doomed")]).await;
    let url = gw.url("/doomed");
    let c2 = c.clone();
    let req = tokio::spawn(async move { get(&c2, &url).await });
    let Frame::Request(_) = doomed.next_frame().await else {
        panic!("expected REQUEST")
    };
    drop(doomed);
    let (status, body) = req.await.unwrap();
    assert_eq!(status, 502, "{}", String::from_utf8_lossy(&body));
    let (status, body) = get(&c, &gw.url("/good")).await;
    assert_eq!((status, &body[..]), (200, &b"ok"[..]));
}

#[tokio::test]
async fn no_answer_within_the_request_timeout_is_504_and_resets_the_stream() {
    let gw = TestGateway::start_with(|c| c.request_timeout = Duration::from_millis(300)).await;
    let mut w = RawWorker::connect(gw.addr, "raw:slow", vec![route(0, "GET", "/slow")]).await;
    let c = client();
    let url = gw.url("/slow");
    let req = tokio::spawn(async move { get(&c, &url).await });
    let Frame::Request(r) = w.next_frame().await else {
        panic!("expected REQUEST")
    };
    let (status, _) = req.await.unwrap();
    assert_eq!(status, 504);
    match w.next_frame().await {
        Frame::Reset(reset) => {
            assert_eq!(reset.stream_id, r.stream_id);
            assert_eq!(reset.code, 3, "timeout");
        }
        other => panic!("expected RESET, got {other:?}"),
    }
}

#[tokio::test]
async fn client_going_away_resets_the_stream_at_the_worker() {
    // Noticed by hyper (the default), or by `client_eof` when half-closes are allowed.
    for half_close in [false, true] {
        client_going_away_mid_response(half_close).await;
    }
}

async fn client_going_away_mid_response(half_close: bool) {
    let gw = TestGateway::start_with(|c| c.client_half_close = half_close).await;
    let mut w = RawWorker::connect(gw.addr, "raw:stream", vec![route(0, "GET", "/stream")]).await;
    let c = client();
    let req = http::Request::get(gw.url("/stream"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let pending = tokio::spawn(async move { c.request(req).await.unwrap() });
    let Frame::Request(r) = w.next_frame().await else {
        panic!("expected REQUEST")
    };
    w.send(respond(r.stream_id, 200, false)).await;
    w.send(data(r.stream_id, b"first chunk", false)).await;
    let resp = pending.await.unwrap();
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"first chunk");
    drop(body); // the client goes away mid-response
    match w.next_frame().await {
        Frame::Reset(reset) => {
            assert_eq!(reset.stream_id, r.stream_id);
            assert_eq!(reset.code, 1, "cancel");
        }
        other => panic!("expected RESET, got {other:?}"),
    }
}

#[tokio::test]
async fn a_half_closed_client_gets_a_stalling_streamed_response_in_full() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = TestGateway::start_with(|c| c.client_half_close = true).await;
    let mut w = RawWorker::connect(gw.addr, "raw:stream", vec![route(0, "GET", "/stream")]).await;
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(b"GET /stream HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    tcp.shutdown().await.unwrap(); // FIN after the request: a half-close, not a departure
    let Frame::Request(r) = w.next_frame().await else {
        panic!("expected REQUEST")
    };
    w.send(respond(r.stream_id, 200, false)).await;
    w.send(data(r.stream_id, b"first,", false)).await;
    // The response stalls for several of the gateway's looks at the client's socket (every
    // 500 ms): the FIN was there before the response began, so the client is not cut.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    w.send(data(r.stream_id, b"last", true)).await;
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut got))
        .await
        .expect("the response ended in time")
        .unwrap();
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.contains("first,") && got.contains("last"), "{got}");
}

#[tokio::test]
async fn request_body_never_exceeds_the_granted_window() {
    const WINDOW: u32 = 4096;
    let gw = TestGateway::start_with(|c| c.initial_window = WINDOW).await;
    let mut w = RawWorker::connect(gw.addr, "raw:upload", vec![route(0, "POST", "/upload")]).await;
    assert_eq!(w.welcome.initial_window, WINDOW);
    let body: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let c = client();
    let url = gw.url("/upload");
    let sent = body.clone();
    let req = tokio::spawn(async move { send(&c, "POST", &url, &[], sent).await });
    let Frame::Request(r) = w.next_frame().await else {
        panic!("expected REQUEST")
    };
    assert!(!r.end_stream);
    let mut received = Vec::new();
    let mut granted = WINDOW as usize;
    loop {
        match w.next_frame().await {
            Frame::Data(d) => {
                received.extend_from_slice(&d.data);
                assert!(
                    received.len() <= granted,
                    "gateway sent {} bytes with {granted} granted",
                    received.len()
                );
                if d.end_stream {
                    break;
                }
                if received.len() == granted {
                    // Grant in small steps so that an overshoot would show.
                    w.send(Frame::Window(Window {
                        stream_id: r.stream_id,
                        increment: 3000,
                    }))
                    .await;
                    granted += 3000;
                }
            }
            other => panic!("expected DATA, got {other:?}"),
        }
    }
    assert_eq!(received, body);
    w.send(respond(r.stream_id, 204, true)).await;
    let (status, _, _) = req.await.unwrap();
    assert_eq!(status, 204);
}

/// A request body that sends ten bytes and then never ends, so the request direction stays
/// open (a WINDOW after the request's END_STREAM is ignored, §4.4).
struct EndlessBody(bool);

impl http_body::Body for EndlessBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if std::mem::replace(&mut self.0, true) {
            return std::task::Poll::Pending; // never woken: the body just stops
        }
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(
            b"0123456789",
        )))))
    }
}

#[tokio::test]
async fn window_overflow_closes_with_4008() {
    // The body stops after 10 bytes: streamed at once, not held back by the gateway's
    // buffering of small bodies (which would wait for the rest).
    let gw = TestGateway::start_with(|c| c.body_buffer = 0).await;
    let mut w = RawWorker::connect(gw.addr, "raw:win", vec![route(0, "POST", "/win")]).await;
    let c = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<EndlessBody>();
    let req = http::Request::post(gw.url("/win"))
        .body(EndlessBody(false))
        .unwrap();
    let _req = tokio::spawn(async move { c.request(req).await });
    let Frame::Request(r) = w.next_frame().await else {
        panic!("expected REQUEST")
    };
    w.send(Frame::Window(Window {
        stream_id: r.stream_id,
        increment: 0x7fff_ffff,
    }))
    .await;
    // Frames already queued (the request body) may come first.
    let close = async {
        use futures_util::StreamExt;
        loop {
            match w.ws.next().await {
                Some(Ok(Message::Close(Some(f)))) => return u16::from(f.code),
                Some(Ok(_)) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    };
    assert_eq!(
        tokio::time::timeout(WAIT, close)
            .await
            .expect("close in time"),
        4008
    );
}

/// PROTOCOL.md §2.1: a close frame is answered with one echoing its code before the socket
/// is dropped (RFC 6455 §5.5.1).
#[tokio::test]
async fn a_workers_close_is_answered_with_its_code() {
    let gw = TestGateway::start().await;
    let mut w = RawWorker::connect(gw.addr, "raw:leaving", vec![route(0, "GET", "/leaving")]).await;
    let frame = tungstenite::protocol::CloseFrame {
        code: 4010.into(),
        reason: "1 streams still open at the drain deadline".into(),
    };
    w.ws.close(Some(frame)).await.unwrap();
    assert_eq!(w.close_code().await, 4010);
}

#[tokio::test]
async fn a_silent_worker_is_dropped_after_missed_heartbeats() {
    let gw = TestGateway::start_with(|c| c.heartbeat = Duration::from_millis(100)).await;
    // Connected, then never reads again: no pong ever goes back to the gateway's pings.
    let _silent = RawWorker::connect(gw.addr, "raw:silent", vec![route(0, "GET", "/silent")]).await;
    wait_for_workers(gw.addr, "raw:silent", 1).await;
    wait_for_workers(gw.addr, "raw:silent", 0).await;
    let (status, _) = get(&client(), &gw.url("/silent")).await;
    assert_eq!(status, 503);
}

/// GETs `url` until the gateway's table has its route (a status other than 404, which the
/// ROUTES frame sent just before turns into), or `deadline`; the last answer.
async fn get_once_routed(
    c: HttpClient,
    url: String,
    deadline: tokio::time::Instant,
) -> (u16, Bytes) {
    loop {
        let (status, body) = get(&c, &url).await;
        if status != 404 || tokio::time::Instant::now() > deadline {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn routes_updates_swap_the_table_and_keep_ids_stable() {
    use vyx_core::handshake::Routes;
    let gw = TestGateway::start().await;
    let _other = RawWorker::connect(gw.addr, "raw:other", vec![route(0, "GET", "/other")]).await;
    let mut w = RawWorker::connect(gw.addr, "raw:dyn", vec![route(0, "GET", "/one")]).await;
    let c = client();
    w.send(Frame::Routes(Routes {
        routes: vec![route(1, "GET", "/two")],
    }))
    .await;
    // The new route is served (after the update is applied), the old one is gone.
    let deadline = tokio::time::Instant::now() + WAIT;
    let url = gw.url("/two");
    let req = tokio::spawn(get_once_routed(c.clone(), url, deadline));
    let Frame::Request(r) = w.next_frame().await else {
        panic!("expected REQUEST")
    };
    assert_eq!(r.route_id, 1);
    w.send(respond(r.stream_id, 200, false)).await;
    w.send(data(r.stream_id, b"two", true)).await;
    assert_eq!(req.await.unwrap(), (200, Bytes::from("two")));
    assert_eq!(get(&c, &gw.url("/one")).await.0, 404);

    // Id 0 left the route set with /one: the gateway keeps the current set only, so the id
    // is free and may name another route (issue 17 item 5).
    w.send(Frame::Routes(Routes {
        routes: vec![route(1, "GET", "/two"), route(0, "GET", "/zero")],
    }))
    .await;
    let req = tokio::spawn(get_once_routed(c.clone(), gw.url("/zero"), deadline));
    let Frame::Request(r) = w.next_frame().await else {
        panic!("expected REQUEST")
    };
    assert_eq!((r.route_id, &r.target[..]), (0, &b"/zero"[..]));
    w.send(respond(r.stream_id, 200, false)).await;
    w.send(data(r.stream_id, b"zero", true)).await;
    assert_eq!(req.await.unwrap(), (200, Bytes::from("zero")));

    // Claiming another worker's route: 4003. Reusing id 1 for another route: 4001.
    w.send(Frame::Routes(Routes {
        routes: vec![route(2, "GET", "/other")],
    }))
    .await;
    assert_eq!(w.close_code().await, 4003);
    let mut w = RawWorker::connect(gw.addr, "raw:dyn", vec![route(1, "GET", "/two")]).await;
    w.send(Frame::Routes(Routes {
        routes: vec![route(1, "GET", "/three")],
    }))
    .await;
    assert_eq!(w.close_code().await, 4001);
}

#[tokio::test]
async fn random_frames_only_ever_close_their_own_connection() {
    let gw = TestGateway::start().await;
    let _good =
        serve_ok(RawWorker::connect(gw.addr, "raw:good", vec![route(0, "GET", "/good")]).await);
    let c = client();
    let mut rng = vyx_core::backoff::SplitMix64::new(0x5eed);
    let types = [
        0x00u8, 0x01, 0x02, 0x03, 0x08, 0x10, 0x11, 0x12, 0x13, 0x14, 0x04, 0xff,
    ];
    for i in 0..60 {
        let mut bad = RawWorker::connect(gw.addr, "raw:fuzz", vec![route(0, "GET", "/fuzz")]).await;
        let len = (rng.next_u64() % 48) as usize;
        let mut msg: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        if !msg.is_empty() {
            msg[0] = types[(rng.next_u64() % types.len() as u64) as usize];
        }
        if msg.len() > 1 {
            msg[1] &= 0x01; // mostly valid flags, so that payload decoding is reached
        }
        bad.send_raw(msg.clone()).await;
        let code = bad.close_code().await;
        assert!(
            (4000..=4011).contains(&code),
            "case {i} {msg:02x?}: close code {code}"
        );
        let (status, body) = get(&c, &gw.url("/good")).await;
        assert_eq!((status, &body[..]), (200, &b"ok"[..]), "case {i}");
    }
}

#[tokio::test]
async fn welcome_is_the_first_frame_even_under_load() {
    let gw = TestGateway::start().await;
    let _a =
        serve_ok(RawWorker::connect(gw.addr, "raw:busy", vec![route(0, "GET", "/busy")]).await);
    let c = client();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..8)
        .map(|_| {
            let (c, url, stop) = (c.clone(), gw.url("/busy"), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = get(&c, &url).await;
                }
            })
        })
        .collect();
    // Replicas joining while requests flow: each must see WELCOME before any REQUEST
    // (RawWorker::connect fails on anything else).
    for _ in 0..150 {
        let b = RawWorker::connect(gw.addr, "raw:busy", vec![route(0, "GET", "/busy")]).await;
        assert_eq!(b.welcome.protocol, 1);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
}

#[tokio::test]
async fn stream_level_mistakes_reset_the_stream_and_keep_the_connection() {
    let gw = TestGateway::start().await;
    let mut w = RawWorker::connect(gw.addr, "raw:sloppy", vec![route(0, "GET", "/s")]).await;
    let c = client();
    for mistake in ["DATA before RESPONSE", "second RESPONSE"] {
        let (c2, url) = (c.clone(), gw.url("/s"));
        let req = tokio::spawn(async move { get(&c2, &url).await });
        let Frame::Request(r) = w.next_frame().await else {
            panic!("expected REQUEST")
        };
        if mistake == "DATA before RESPONSE" {
            w.send(data(r.stream_id, b"early", false)).await;
        } else {
            w.send(respond(r.stream_id, 200, false)).await;
            w.send(respond(r.stream_id, 200, false)).await;
        }
        match w.next_frame().await {
            Frame::Reset(reset) => {
                assert_eq!((reset.stream_id, reset.code), (r.stream_id, 5), "{mistake}")
            }
            other => panic!("{mistake}: expected RESET, got {other:?}"),
        }
        let outcome = req.await;
        if mistake == "DATA before RESPONSE" {
            assert_eq!(outcome.unwrap().0, 502, "{mistake}");
        } else {
            // The head was out already: the client's body is cut, not completed.
            assert!(
                outcome.is_err(),
                "{mistake}: the client saw a complete response"
            );
        }
    }
    // The same connection still serves.
    let (c2, url) = (c.clone(), gw.url("/s"));
    let req = tokio::spawn(async move { get(&c2, &url).await });
    let Frame::Request(r) = w.next_frame().await else {
        panic!("expected REQUEST")
    };
    w.send(respond(r.stream_id, 200, false)).await;
    w.send(data(r.stream_id, b"fine", true)).await;
    assert_eq!(req.await.unwrap(), (200, Bytes::from("fine")));
}

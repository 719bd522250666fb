//! The worker against the scripted stand-in for the gateway (`vyx-scripted-gateway`): a
//! WebSocket server that speaks the frames by hand, so that what the SDK puts on the wire is
//! checked without the real gateway. The end-to-end tests with the real gateway live in
//! `gateway/tests/`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use vyx::{ConnectionState, Request, Response, StatusCode};
use vyx_core::frame::{self, Data, Frame, Window};
use vyx_core::handshake::Drain;
use vyx_core::ResetCode;

mod common;
use common::*;

async fn echo(req: Request) -> Response {
    let content_type = req.header("content-type").cloned();
    let res = Response::stream(req.into_body());
    match content_type {
        Some(ct) => res.with_header("content-type", ct),
        None => res,
    }
}

fn worker(url: &str, states: Arc<Mutex<Vec<ConnectionState>>>) -> vyx::Worker {
    let api = axum::Router::new().route(
        "/api/users/{id}",
        axum::routing::get(
            |axum::extract::Path(id): axum::extract::Path<u32>| async move {
                axum::Json(serde_json::json!({ "user": id }))
            },
        ),
    );
    vyx::Worker::builder()
        .connect(url)
        .id("rust:test")
        .handle_signals(false)
        .max_concurrency(8)
        .on_state(move |s| states.lock().unwrap().push(s.clone()))
        .get("/hello/{name}", |req: Request| async move {
            vyx::Json(serde_json::json!({
                "hello": req.param("name").unwrap_or_default(),
                "lang": "rust",
            }))
        }) // 0
        .post("/echo", echo) // 1
        .get("/panic", |_req: Request| async move {
            if true {
                panic!("boom");
            }
            "unreachable"
        }) // 2
        .delete("/items/{id}", |_req: Request| async {
            StatusCode::NO_CONTENT
        }) // 3
        .get("/broken-stream", |_req: Request| async {
            let chunks = futures_util::stream::iter(vec![
                Ok(Bytes::from("partial")),
                Err(std::io::Error::other("backend died")),
            ]);
            Response::stream(chunks)
        }) // 4
        .service("/api/{*rest}", api) // 5
        .post("/json", |mut req: Request| async move {
            let v: serde_json::Value = req.json().await?;
            Ok::<_, vyx::Error>((StatusCode::CREATED, vyx::Json(v)))
        }) // 6
        .get("/query", |req: Request| async move {
            let pairs: Vec<String> = req.query().map(|(k, v)| format!("{k}={v}")).collect();
            let tags = req.headers().get_all("x-tag").iter().count();
            let raw = req.raw_query().unwrap_or("-");
            format!("{} {} raw={raw} tags={tags}", req.path(), pairs.join(","))
        }) // 7
        .head("/hello/{name}", |_req: Request| async {
            Response::default().with_header("x-head", vyx::HeaderValue::from_static("own"))
        }) // 8
        .any("/anything", |req: Request| async move {
            req.method().to_string()
        }) // 9
        .put("/nothing", |_req: Request| async {}) // 10
        .build()
        .unwrap()
}

#[tokio::test]
async fn serves_requests_over_the_protocol() {
    let (gw, url) = Gateway::bind().await;
    let states = Arc::new(Mutex::new(Vec::new()));
    let w = worker(&url, states.clone());
    let running = run(&w);

    let (mut conn, hello) = gw.welcome().await;
    assert_eq!(hello.worker_id, "rust:test");
    assert!(hello.sdk.starts_with("vyx-rust/"), "{}", hello.sdk);
    assert_eq!(hello.max_concurrency, 8);
    let routes: Vec<_> = hello
        .routes
        .iter()
        .map(|r| (r.id, r.method.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(routes[0], (0, "GET", "/hello/{name}"));
    assert_eq!(routes[5], (5, "*", "/api/{*rest}"));
    let mut state = w.state();
    timeout(state.wait_for(|s| matches!(s, ConnectionState::Connected { .. })))
        .await
        .unwrap();

    // JSON with path params.
    let seen = conn.get(1, 0, "/hello/ada%20l", &[("name", "ada l")]).await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(seen.text(), r#"{"hello":"ada l","lang":"rust"}"#);
    assert_eq!(seen.header("content-length"), Some("31"));
    assert_eq!(
        seen.data_frames, 1,
        "a full body goes as one DATA with END_STREAM"
    );

    // HEAD on a GET route: the head only, with END_STREAM.
    conn.request(3, 0, "HEAD", "/hello/x", &[("name", "x")], &[], true)
        .await;
    let seen = conn.response(3).await;
    assert_eq!((seen.status, seen.head_ended), (200, true));
    assert!(seen.body.is_empty());

    // A panicking handler answers 500, and the worker goes on serving.
    let seen = conn.get(5, 2, "/panic", &[]).await;
    assert_eq!((seen.status, seen.text()), (500, "internal error"));
    let seen = conn.get(7, 0, "/hello/bo", &[("name", "bo")]).await;
    assert_eq!(seen.status, 200);

    // 204: END_STREAM on the head.
    conn.request(9, 3, "DELETE", "/items/1", &[("id", "1")], &[], true)
        .await;
    let seen = conn.response(9).await;
    assert_eq!((seen.status, seen.head_ended), (204, true));

    // A body stream that fails mid-way: head, then RESET handler_error. The DATA written
    // before the failure may or may not precede the RESET: the writer drops a reset
    // stream's queued DATA (PROTOCOL.md §5), and the client's answer is aborted either way.
    let seen = conn.get(11, 4, "/broken-stream", &[]).await;
    assert_eq!(seen.status, 200);
    assert!("partial".starts_with(seen.text()), "{:?}", seen.text());
    assert_eq!(seen.reset, Some(ResetCode::HandlerError));

    // An unknown route id: 404.
    let seen = conn.get(13, 99, "/nowhere", &[]).await;
    assert_eq!(seen.status, 404);

    // An axum router behind `service`.
    let seen = conn
        .get(15, 5, "/api/users/42", &[("rest", "users/42")])
        .await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.text(), r#"{"user":42}"#);
    let seen = conn.get(17, 5, "/api/nope", &[("rest", "nope")]).await;
    assert_eq!(seen.status, 404);

    // A JSON body: good → 201, bad → 400.
    conn.request(
        19,
        6,
        "POST",
        "/json",
        &[],
        &[("content-type", "application/json")],
        false,
    )
    .await;
    conn.send(
        Data {
            stream_id: 19,
            end_stream: true,
            data: Bytes::from(r#"{"a":1}"#),
        }
        .encode(),
    )
    .await;
    let seen = conn.response(19).await;
    assert_eq!((seen.status, seen.text()), (201, r#"{"a":1}"#));
    conn.request(21, 6, "POST", "/json", &[], &[], false).await;
    conn.send(
        Data {
            stream_id: 21,
            end_stream: true,
            data: Bytes::from("{"),
        }
        .encode(),
    )
    .await;
    let seen = conn.response(21).await;
    assert_eq!(seen.status, 400);

    // Raw path, decoded query, repeated headers.
    conn.request(
        23,
        7,
        "GET",
        "/query?q=a+b%21&q=2&x",
        &[],
        &[("x-tag", "1"), ("x-tag", "2")],
        true,
    )
    .await;
    let seen = conn.response(23).await;
    assert_eq!(
        seen.text(),
        "/query q=a b!,q=2,x= raw=q=a+b%21&q=2&x tags=2"
    );

    // Streaming echo, larger than both windows: flow control in both directions.
    let total = 700 * 1024;
    let payload: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
    conn.request(
        25,
        1,
        "POST",
        "/echo",
        &[],
        &[("content-type", "application/x-test")],
        false,
    )
    .await;
    let mut credit = WINDOW as usize;
    let mut sent = 0;
    let mut seen = Seen::default();
    loop {
        while sent < total {
            let n = (total - sent).min(60 * 1024);
            if n > credit {
                break;
            }
            let last = sent + n == total;
            conn.send(Data::encode_parts(25, last, &payload[sent..sent + n]))
                .await;
            sent += n;
            credit -= n;
        }
        match conn.recv().await {
            Frame::Window(w) => credit += w.increment as usize,
            Frame::Response(r) => {
                seen.status = r.status;
                let ct = r.headers.iter().find(|(k, _)| &k[..] == b"content-type");
                assert_eq!(ct.map(|(_, v)| &v[..]), Some(&b"application/x-test"[..]));
            }
            Frame::Data(d) => {
                seen.body.extend_from_slice(&d.data);
                if !d.data.is_empty() {
                    conn.send(
                        Window {
                            stream_id: 25,
                            increment: d.data.len() as u32,
                        }
                        .encode(),
                    )
                    .await;
                }
                if d.end_stream {
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen.status, 200);
    assert_eq!(seen.body.len(), total);
    assert!(seen.body == payload, "echoed bytes differ");

    // Several requests at once.
    for i in 0..6u32 {
        let id = 101 + 2 * i;
        let name = format!("n{i}");
        conn.request(
            id,
            0,
            "GET",
            &format!("/hello/{name}"),
            &[("name", &name)],
            &[],
            true,
        )
        .await;
    }
    let mut done = 0;
    while done < 6 {
        if let Frame::Data(d) = conn.recv().await {
            if d.end_stream {
                done += 1;
            }
        }
    }

    // A HEAD route of its own, beside the GET route of the same path.
    conn.request(201, 8, "HEAD", "/hello/x", &[("name", "x")], &[], true)
        .await;
    let seen = conn.response(201).await;
    assert_eq!((seen.status, seen.head_ended), (200, true));
    assert_eq!(seen.header("x-head"), Some("own"));

    // The any-method route takes whatever method comes.
    conn.request(203, 9, "PROPFIND", "/anything", &[], &[], true)
        .await;
    let seen = conn.response(203).await;
    assert_eq!((seen.status, seen.text()), (200, "PROPFIND"));

    // A handler returning nothing answers 200 with an empty body, as in every SDK.
    conn.request(205, 10, "PUT", "/nothing", &[], &[], true)
        .await;
    let seen = conn.response(205).await;
    assert_eq!((seen.status, seen.text()), (200, ""));

    // Graceful stop: DRAIN, then the gateway closes, then start() returns Ok.
    w.handle().stop();
    match conn.recv().await {
        Frame::Drain(d) => assert_eq!(d.deadline_ms, 30_000),
        other => panic!("expected DRAIN, got {other:?}"),
    }
    conn.close_drained().await;
    timeout(running).await.unwrap().unwrap();
    assert_eq!(*w.state().current(), ConnectionState::Stopped);
    let states = states.lock().unwrap();
    assert!(states.iter().any(
        |s| matches!(s, ConnectionState::Connected { connection_id } if connection_id == "c-1")
    ));
    assert_eq!(states.last(), Some(&ConnectionState::Stopped));
}

/// PROTOCOL.md §7: whichever side asked for the drain, the gateway closes with 1000 once no
/// stream is left and the worker answers with a close frame of its own, 1000, before it
/// drops the socket; after the gateway's drain it then dials again.
#[tokio::test]
async fn drains_end_in_a_closing_handshake_whichever_side_asked() {
    let (gw, url) = Gateway::bind().await;
    let w = worker(&url, Arc::default());
    let running = run(&w);
    let (mut conn, _) = gw.welcome().await;
    conn.send(
        Frame::Drain(Drain {
            reason: "gateway shutting down".into(),
            deadline_ms: 30_000,
        })
        .encode(),
    )
    .await;
    conn.close_drained().await;

    // Dialled again; a request served proves it took the WELCOME before it is stopped.
    let (mut conn, _) = gw.welcome().await;
    let seen = conn.get(1, 0, "/hello/x", &[("name", "x")]).await;
    assert_eq!(seen.status, 200);
    w.stop();
    assert!(matches!(conn.recv().await, Frame::Drain(_)));
    conn.close_drained().await;
    timeout(running).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_refused_worker_stops_with_an_error() {
    let (gw, url) = Gateway::bind().await;
    let w = worker(&url, Arc::default());
    let running = run(&w);
    let (mut conn, _) = gw.accept().await;
    conn.close(4003, "route GET /hello/{name} belongs to worker other")
        .await;
    let err = timeout(running).await.unwrap().unwrap_err();
    assert!(matches!(err, vyx::Error::Refused(_)), "{err:?}");
    assert!(err.to_string().contains("belongs to worker other"), "{err}");
    assert!(matches!(
        *w.state().current(),
        ConnectionState::Failed { .. }
    ));
}

#[tokio::test]
async fn dropping_start_drains_the_connection() {
    let (gw, url) = Gateway::bind().await;
    let w = worker(&url, Arc::default());
    let running = run(&w);
    let (mut conn, _) = gw.welcome().await;
    timeout(
        w.state()
            .wait_for(|s| matches!(s, ConnectionState::Connected { .. })),
    )
    .await
    .unwrap();
    running.abort();
    assert!(matches!(conn.recv().await, Frame::Drain(_)));
}

#[tokio::test]
async fn a_silent_gateway_is_noticed_and_the_worker_reconnects() {
    let (gw, url) = Gateway::bind().await;
    let w = worker(&url, Arc::default());
    let running = run(&w);
    // Welcomed, then the gateway freezes: it holds the socket but never reads or pings, so
    // no pong answers the worker's pings.
    let (_frozen, _) = gw.welcome_with_heartbeat(100).await;
    let mut state = w.state();
    let reconnecting =
        timeout(state.wait_for(|s| matches!(s, ConnectionState::Reconnecting { .. })))
            .await
            .unwrap();
    let ConnectionState::Reconnecting { cause, .. } = reconnecting else {
        unreachable!()
    };
    assert!(cause.contains("heartbeat"), "{cause}");
    // The worker dials again by itself.
    let (mut conn, hello) = gw.welcome().await;
    assert_eq!(hello.worker_id, w.id());
    w.stop();
    assert!(matches!(conn.recv().await, Frame::Drain(_)));
    conn.close_drained().await;
    timeout(running).await.unwrap().unwrap();
}

/// A `watch` used to carry the states, and an observer that looked late saw only the last
/// one. Now `on_state` and a subscription taken before the start see every transition.
#[tokio::test]
async fn every_state_reaches_on_state_and_subscribers_under_quick_reconnects() {
    fn shape(s: &ConnectionState) -> String {
        match s {
            ConnectionState::Connecting => "connecting".into(),
            ConnectionState::Connected { .. } => "connected".into(),
            ConnectionState::Reconnecting { attempt, .. } => format!("reconnecting {attempt}"),
            ConnectionState::Draining => "draining".into(),
            ConnectionState::Stopped => "stopped".into(),
            ConnectionState::Failed { .. } => "failed".into(),
        }
    }
    let (gw, url) = Gateway::bind().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let w = worker(&url, seen.clone());
    let mut subscription = w.state();
    let running = run(&w);
    for _ in 0..2 {
        let (mut conn, _) = gw.welcome().await;
        conn.close(1001, "going away").await;
    }
    let (mut conn, _) = gw.welcome().await;
    // The subscriber reads nothing until the worker is on its third connection.
    let mut from_subscription = Vec::new();
    while from_subscription
        .iter()
        .filter(|s| *s == "connected")
        .count()
        < 3
    {
        let state = timeout(subscription.next()).await.expect("a state");
        from_subscription.push(shape(&state));
    }
    w.stop();
    assert!(matches!(conn.recv().await, Frame::Drain(_)));
    conn.close_drained().await;
    timeout(running).await.unwrap().unwrap();
    while let Some(state) = timeout(subscription.next()).await {
        from_subscription.push(shape(&state));
    }
    let expected = [
        "connected",
        "reconnecting 1",
        "connecting",
        "connected",
        "reconnecting 2",
        "connecting",
        "connected",
        "draining",
        "stopped",
    ];
    assert_eq!(from_subscription, expected);
    let from_callback: Vec<String> = seen.lock().unwrap().iter().map(shape).collect();
    assert_eq!(from_callback, expected);
}

/// PROTOCOL.md §3.10 through http-body: the SDK offers `trailers`; once granted, a request's
/// TRAILERS are the body's last frame, and a response body's trailers frame ends the
/// response as TRAILERS behind its DATA.
#[tokio::test]
async fn http_body_trailers_cross_both_ways_once_granted() {
    use http_body_util::{BodyExt, StreamBody};
    let (gw, url) = Gateway::bind().await;
    let w = vyx::Worker::builder()
        .connect(&url)
        .id("rust:trailers")
        .handle_signals(false)
        .post("/sum", |req: Request| async move {
            let collected = req.into_body().collect().await.unwrap();
            let sum = collected
                .trailers()
                .and_then(|t| t.get("x-sum"))
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let text = format!("{} {sum}", String::from_utf8_lossy(&collected.to_bytes()));
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            let frames: Vec<Result<http_body::Frame<Bytes>, std::convert::Infallible>> = vec![
                Ok(http_body::Frame::data(Bytes::from(text))),
                Ok(http_body::Frame::trailers(trailers)),
            ];
            Response::new(vyx::Body::new(StreamBody::new(futures_util::stream::iter(
                frames,
            ))))
        })
        .build()
        .unwrap();
    let task = run(&w);
    let (mut conn, hello) = gw.accept().await;
    assert_eq!(hello.features, ["upgrade", "trailers", "informational"]);
    let mut welcome = conn.0.welcome_with(5000, WINDOW);
    welcome.features = vec!["trailers".into()];
    conn.0.send(Frame::Welcome(welcome)).await.unwrap();

    conn.request(1, 0, "POST", "/sum", &[], &[], false).await;
    conn.send(Data::encode_parts(1, false, b"abc")).await;
    let b = |s: &'static str| Bytes::from_static(s.as_bytes());
    conn.send(
        frame::Trailers {
            stream_id: 1,
            headers: vec![(b("x-sum"), b("3"))],
        }
        .encode(),
    )
    .await;
    let Frame::Response(r) = conn.recv().await else {
        panic!("expected RESPONSE")
    };
    assert!(!r.end_stream);
    let mut body = Vec::new();
    loop {
        match conn.recv().await {
            Frame::Data(d) => {
                assert!(!d.end_stream, "END_STREAM instead of TRAILERS");
                body.extend_from_slice(&d.data);
            }
            Frame::Trailers(t) => {
                assert_eq!(t.headers, vec![(b("grpc-status"), b("0"))]);
                break;
            }
            Frame::Window(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(body, b"abc 3");
    w.stop();
    loop {
        // The worker drains: WINDOW frames of the stream may still come first.
        if let Frame::Drain(_) = conn.recv().await {
            break;
        }
    }
    conn.close_drained().await;
    timeout(task).await.unwrap().unwrap();
}

#[tokio::test]
async fn an_upgrade_answered_101_gives_the_handler_a_byte_stream_a_websocket_runs_on() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::Role;
    let (gw, url) = Gateway::bind().await;
    let w = vyx::Worker::builder()
        .connect(url)
        .id("rust:ws")
        .handle_signals(false)
        .get("/ws", |mut req: Request| async move {
            let Some(on) = vyx::upgrade::on(&mut req) else {
                return vyx::IntoResponse::into_response(StatusCode::UPGRADE_REQUIRED);
            };
            tokio::spawn(async move {
                let io = on.await.expect("upgraded after the 101");
                let mut ws =
                    tokio_tungstenite::WebSocketStream::from_raw_socket(io, Role::Server, None)
                        .await;
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("upgrade", "websocket")
                .body(vyx::Body::empty())
        })
        .build()
        .unwrap();
    let running = run(&w);
    let (mut conn, hello) = gw.accept().await;
    assert_eq!(
        hello.features,
        ["upgrade", "trailers", "informational"],
        "the SDK offers upgrades"
    );
    let mut welcome = conn.0.welcome_with(5000, WINDOW);
    welcome.features = vec!["upgrade".into()];
    conn.0.send(Frame::Welcome(welcome)).await.unwrap();
    let req = frame::Request {
        stream_id: 1,
        end_stream: false,
        upgrade: true,
        route_id: 0,
        method: Bytes::from_static(b"GET"),
        target: Bytes::from_static(b"/ws"),
        params: vec![],
        headers: vec![],
    };
    conn.send(req.encode()).await;
    let head = match timeout(conn.recv()).await {
        Frame::Response(r) => r,
        other => panic!("expected the 101, got {other:?}"),
    };
    assert_eq!((head.status, head.end_stream), (101, false));
    // A client's masked text frame "hi" in, the server's unmasked echo out.
    let masked = [0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
    conn.send(Data::encode_parts(1, false, &masked)).await;
    let mut echo = Vec::new();
    while echo.len() < 4 {
        match timeout(conn.recv()).await {
            Frame::Data(d) => echo.extend_from_slice(&d.data),
            Frame::Window(_) => {}
            other => panic!("expected the echo, got {other:?}"),
        }
    }
    assert_eq!(echo, [0x81, 0x02, b'h', b'i']);
    w.stop_within(Duration::ZERO);
    drop(running);
}

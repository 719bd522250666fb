//! The engine driven exactly as a Node or Python binding drives it: one task pulls
//! batches, handlers answer through synchronous `respond` / `try_send` / `fail` calls on
//! shared handles, cancellation comes from the batch's resets (no per-stream futures), and
//! a readiness wait is awaited only when the window is full. The gateway is the scripted
//! stand-in on 127.0.0.1 (`vyx-scripted-gateway`) that speaks the frames by hand, so every
//! byte the host rules put on the wire is checked.

use std::time::Duration;

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;
use vyx_core::frame::{self, Data, Frame, Reset, Window};
use vyx_core::session::{
    Batch, ConnectionState, Engine, EngineError, IncomingRequest, StreamError, TryChunk, TrySend,
    Upgraded, WorkerConfig,
};
use vyx_core::ResetCode;
use vyx_scripted_gateway::{ScriptedGateway, Session, WAIT};

async fn timeout<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(WAIT, f).await.expect("timed out")
}

/// The shared scripted gateway, with the moves these tests make.
struct Gateway(ScriptedGateway);

impl Gateway {
    async fn bind() -> (Gateway, String) {
        let gw = ScriptedGateway::bind().await.unwrap();
        let url = gw.url();
        (Gateway(gw), url)
    }

    /// Accepts one worker, reads its HELLO, and welcomes it.
    async fn welcome(&self, connection_id: &str, initial_window: u32) -> Conn {
        let mut conn = self.hello().await;
        conn.welcome(connection_id, initial_window).await;
        conn
    }

    /// Accepts one worker and reads its HELLO.
    async fn hello(&self) -> Conn {
        let attempt = self.0.attempt(WAIT).await.unwrap();
        Conn(attempt.accept().await.unwrap())
    }
}

struct Conn(Session);

impl Conn {
    async fn welcome(&mut self, connection_id: &str, initial_window: u32) {
        let mut welcome = self.0.welcome_with(5000, initial_window);
        welcome.connection_id = connection_id.into();
        self.0.send(Frame::Welcome(welcome)).await.unwrap();
    }

    /// A WELCOME asking the worker for `connections` to this address (§3.8, §9.1).
    async fn welcome_asking(&mut self, connection_id: &str, connections: u32) {
        let mut welcome = self.0.welcome_with(5000, 65536);
        welcome.connection_id = connection_id.into();
        welcome.connections = connections;
        self.0.send(Frame::Welcome(welcome)).await.unwrap();
    }

    /// Sends a GET on `stream_id`, has the engine answer it, and checks the answer arrives
    /// here.
    async fn served(&mut self, engine: &Engine, stream_id: u32) {
        self.request(stream_id, 0, "GET", true).await;
        let (req, _) = pull_request(engine).await;
        req.stream
            .respond(200, &[("x-test", "1")], b"on this connection")
            .unwrap();
        assert_eq!(self.head(stream_id).await.status, 200);
        assert_eq!(self.body(stream_id).await, b"on this connection");
    }

    /// Expects DRAIN, then closes 1000 as a gateway does once the worker's streams are done,
    /// and expects the worker's answer.
    async fn drained(&mut self) {
        match self.recv().await {
            Frame::Drain(_) => {}
            other => panic!("expected DRAIN, got {other:?}"),
        }
        self.0.close(1000, "drained").await.unwrap();
        assert_eq!(self.0.close_code(WAIT).await.unwrap(), 1000);
    }

    async fn send(&mut self, frame: Bytes) {
        self.0.send_msg(Message::Binary(frame)).await.unwrap();
    }

    async fn recv(&mut self) -> Frame {
        self.0.next_frame().await.unwrap()
    }

    /// Ends the connection with a close frame without a code.
    async fn hang_up(&mut self) {
        let _ = self.0.send_msg(Message::Close(None)).await;
    }

    async fn request(&mut self, stream_id: u32, route_id: u16, method: &str, end_stream: bool) {
        let req = frame::Request {
            stream_id,
            end_stream,
            upgrade: false,
            route_id,
            method: Bytes::copy_from_slice(method.as_bytes()),
            target: Bytes::from_static(b"/x"),
            params: vec![],
            headers: vec![],
        };
        self.send(req.encode()).await;
    }

    /// The next RESPONSE, which must be for `stream_id`.
    async fn head(&mut self, stream_id: u32) -> frame::Response {
        match self.recv().await {
            Frame::Response(r) if r.stream_id == stream_id => r,
            other => panic!("expected the RESPONSE of stream {stream_id}, got {other:?}"),
        }
    }

    /// DATA frames of `stream_id` up to END_STREAM, joined (no other frame may come first).
    async fn body(&mut self, stream_id: u32) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            match self.recv().await {
                Frame::Data(d) if d.stream_id == stream_id => {
                    body.extend_from_slice(&d.data);
                    if d.end_stream {
                        return body;
                    }
                }
                other => panic!("expected DATA of stream {stream_id}, got {other:?}"),
            }
        }
    }
}

fn header<'a>(r: &'a frame::Response, name: &str) -> Option<&'a [u8]> {
    r.headers
        .iter()
        .find(|(n, _)| &n[..] == name.as_bytes())
        .map(|(_, v)| &v[..])
}

fn names(r: &frame::Response) -> Vec<String> {
    r.headers
        .iter()
        .map(|(n, _)| String::from_utf8(n.to_vec()).unwrap())
        .collect()
}

/// Pulls until a batch brings a request, and returns it with the resets and states that
/// came along.
async fn pull_request(engine: &Engine) -> (IncomingRequest, Batch) {
    let mut seen = Batch::default();
    loop {
        let mut batch = timeout(engine.next_batch(64)).await.expect("engine ended");
        seen.resets.append(&mut batch.resets);
        seen.states.append(&mut batch.states);
        if let Some(req) = batch.requests.pop() {
            assert!(batch.requests.is_empty(), "one request at a time here");
            return (req, seen);
        }
    }
}

fn engine(url: &str, routes: &[(&str, &str)]) -> Engine {
    let engine = Engine::new(WorkerConfig::new(url, "core:host-test")).unwrap();
    for (i, (method, path)) in routes.iter().enumerate() {
        assert_eq!(engine.add_route(method, path).unwrap(), i as u32);
    }
    engine
}

#[test]
fn a_route_is_declared_idempotent_by_its_id_before_the_start() {
    let e = engine("ws://127.0.0.1:9", &[("GET", "/a"), ("POST", "/orders")]);
    e.set_idempotent(1).unwrap();
    let marked: Vec<bool> = e.config().routes.iter().map(|r| r.idempotent).collect();
    assert_eq!(marked, [false, true]);
    assert!(matches!(e.set_idempotent(7), Err(EngineError::Config(_))));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    e.start_on(rt.handle()).unwrap();
    assert_eq!(e.set_idempotent(0), Err(EngineError::AlreadyStarted));
    e.drain(Duration::ZERO);
}

#[test]
fn starting_outside_a_runtime_is_an_error_and_start_on_names_one() {
    let e = engine("ws://127.0.0.1:9", &[("GET", "/")]);
    assert_eq!(e.start(), Err(EngineError::NoRuntime));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    e.start_on(rt.handle()).unwrap();
    assert_eq!(e.start_on(rt.handle()), Err(EngineError::AlreadyStarted));
    assert_eq!(
        e.add_route("GET", "/late"),
        Err(EngineError::AlreadyStarted)
    );
    e.drain(Duration::ZERO);
    rt.block_on(async {
        let mut states = Vec::new();
        while let Some(batch) = timeout(e.next_batch(8)).await {
            states.extend(batch.states);
        }
        assert_eq!(states.last(), Some(&ConnectionState::Stopped));
    });
}

/// What the bindings put in HELLO from user input is checked before anything is dialed
/// (§2.4 rules 3a, 6, 7): `Engine::new` refuses an over-long instance, sdk or label, and
/// `add_route` a pattern or method past its bound, naming the field.
#[test]
fn over_long_hello_fields_are_refused_before_dialing() {
    let config = || WorkerConfig::new("ws://127.0.0.1:9", "core:bounds");
    let refused = |c: WorkerConfig| match Engine::new(c) {
        Err(EngineError::Config(why)) => why,
        other => panic!("accepted: {:?}", other.map(|_| ())),
    };
    let mut c = config();
    c.instance = "i".repeat(257);
    assert!(refused(c).starts_with("instance is 257 bytes"));
    let mut c = config();
    c.sdk = "s".repeat(129);
    assert!(refused(c).starts_with("sdk is 129 bytes"));
    let mut c = config();
    c.labels = (0..65).map(|i| (i.to_string(), "v".into())).collect();
    assert!(refused(c).starts_with("65 labels"));
    let mut c = config();
    c.labels.insert("zone".into(), "v".repeat(257));
    assert!(refused(c).starts_with("label \"zone\": value is 257 bytes"));

    let e = engine("ws://127.0.0.1:9", &[("GET", &"/a".repeat(128))]);
    for (method, path, why) in [
        (
            "GET",
            "/a".repeat(129),
            "route 1: path has more than 128 segments",
        ),
        (
            "GET",
            "/a".repeat(20_000),
            "route 1: path is longer than 4096 bytes",
        ),
        (
            "GET",
            format!("/{}", "x".repeat(4096)),
            "route 1: path is longer than 4096 bytes",
        ),
        (&*"X".repeat(33), "/m".into(), "route 1: method is 33 bytes"),
    ] {
        match e.add_route(method, &path) {
            Err(EngineError::Config(m)) => assert!(m.starts_with(why), "{m}"),
            other => panic!("{method} {} bytes: {other:?}", path.len()),
        }
    }
    assert_eq!(e.config().routes.len(), 1, "refused routes are not kept");
    // A host name longer than the bound still gives a default instance within it.
    assert!(config().instance.len() <= 256);
}

#[tokio::test]
async fn a_drain_before_the_start_ends_the_pull_at_once() {
    let e = engine("ws://127.0.0.1:9", &[("GET", "/")]);
    e.drain(Duration::from_secs(1));
    e.start().unwrap();
    let batch = timeout(e.next_batch(8)).await.unwrap();
    assert_eq!(batch.states, [ConnectionState::Stopped]);
    assert!(timeout(e.next_batch(8)).await.is_none());
    timeout(e.wait()).await.unwrap();
}

/// The observer that found the bug looked 300 ms late and saw only `Connecting`. Here the
/// host does not pull at all until the worker has been through three connections.
#[tokio::test]
async fn no_state_transition_is_lost_under_quick_reconnects() {
    let (gw, url) = Gateway::bind().await;
    let e = engine(&url, &[("GET", "/")]);
    e.start().unwrap();
    for id in ["c-1", "c-2"] {
        let mut conn = gw.welcome(id, 65536).await;
        // Gone at once: the worker reconnects after a short backoff.
        conn.hang_up().await;
        drop(conn);
    }
    let _conn = gw.welcome("c-3", 65536).await;
    // Only now does the host look, and then only at what it is handed.
    let mut states = Vec::new();
    while !states.iter().any(
        |s| matches!(s, ConnectionState::Connected { connection_id } if connection_id == "c-3"),
    ) {
        states.extend(timeout(e.next_batch(8)).await.unwrap().states);
    }
    e.drain(Duration::ZERO);
    while let Some(batch) = timeout(e.next_batch(8)).await {
        states.extend(batch.states);
    }
    let shape: Vec<String> = states
        .iter()
        .map(|s| match s {
            ConnectionState::Connecting => "connecting".into(),
            ConnectionState::Connected { connection_id } => format!("connected {connection_id}"),
            ConnectionState::Reconnecting { attempt, .. } => format!("reconnecting {attempt}"),
            ConnectionState::Draining => "draining".into(),
            ConnectionState::Stopped => "stopped".into(),
            ConnectionState::Failed { cause } => format!("failed {cause}"),
        })
        .collect();
    assert_eq!(
        shape,
        [
            "connected c-1",
            "reconnecting 1",
            "connecting",
            "connected c-2",
            "reconnecting 2",
            "connecting",
            "connected c-3",
            "draining",
            "stopped",
        ]
    );
}

#[tokio::test]
async fn a_binding_style_host_gets_framing_resets_and_flow_control_right() {
    const WINDOW: u32 = 1024;
    let (gw, url) = Gateway::bind().await;
    let e = engine(
        &url,
        &[
            ("GET", "/text"),    // 0
            ("GET", "/status"),  // 1
            ("POST", "/upload"), // 2
            ("GET", "/big"),     // 3
            ("GET", "/hang"),    // 4
        ],
    );
    e.start_on(&tokio::runtime::Handle::current()).unwrap();
    let mut conn = gw.welcome("c-1", WINDOW).await;
    let text_headers: &[(&str, &str)] = &[
        ("Content-Type", "text/plain"),
        ("Connection", "close, x-hop"),
        ("keep-alive", "timeout=5"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "h2c"),
        ("te", "trailers"),
        ("trailer", "x-sum"),
        ("proxy-authenticate", "Basic"),
        ("X-Hop", "listed in connection"),
        ("x-kept", "1"),
    ];

    // A whole response: names lower-cased, hop-by-hop headers gone, content-length added,
    // one DATA with END_STREAM.
    conn.request(1, 0, "GET", true).await;
    let (req, seen) = pull_request(&e).await;
    assert!(matches!(
        &seen.states[..],
        [ConnectionState::Connected { .. }]
    ));
    assert_eq!((req.route_id, &req.method[..]), (0, &b"GET"[..]));
    req.stream.respond(200, text_headers, b"hello").unwrap();
    let head = conn.head(1).await;
    assert!(!head.end_stream);
    assert_eq!(names(&head), ["content-type", "x-kept", "content-length"]);
    assert_eq!(header(&head, "content-length"), Some(&b"5"[..]));
    assert_eq!(conn.body(1).await, b"hello");

    // HEAD on the same route: the GET answer's head with its length, END_STREAM, no DATA.
    conn.request(3, 0, "HEAD", true).await;
    let (req, _) = pull_request(&e).await;
    req.stream.respond(200, text_headers, b"hello").unwrap();
    let head = conn.head(3).await;
    assert!(head.end_stream);
    assert_eq!(header(&head, "content-length"), Some(&b"5"[..]));

    // 204 and 304: no body and no length, whatever the host passed; an empty 200 ends on
    // its head with content-length 0.
    for (id, status, body) in [(5, 204, &b"dropped"[..]), (7, 304, b""), (9, 200, b"")] {
        conn.request(id, 1, "GET", true).await;
        let (req, _) = pull_request(&e).await;
        let none: &[(&str, &str)] = &[];
        req.stream.respond(status, none, body).unwrap();
        let head = conn.head(id).await;
        assert_eq!((head.status, head.end_stream), (status, true));
        let length = header(&head, "content-length");
        assert_eq!(length, (status == 200).then_some(&b"0"[..]), "{status}");
    }

    // A head the protocol cannot carry (lead decision 5): the core answers 500 itself.
    conn.request(11, 1, "GET", true).await;
    let (req, _) = pull_request(&e).await;
    let bad: &[(&str, &str)] = &[("x-bad", "a\nb")];
    let err = req.stream.respond(200, bad, b"x").unwrap_err();
    assert!(matches!(err, StreamError::InvalidHead(_)), "{err:?}");
    assert_eq!(conn.head(11).await.status, 500);
    assert_eq!(conn.body(11).await, b"internal error");

    // The failure rule: 500 before the head, RESET handler_error after it; and a handle
    // dropped unanswered is answered by the core the same way.
    conn.request(13, 1, "GET", true).await;
    let (req, _) = pull_request(&e).await;
    req.stream.fail("the handler threw");
    assert_eq!(conn.head(13).await.status, 500);
    assert_eq!(conn.body(13).await, b"internal error");
    conn.request(15, 1, "GET", true).await;
    let (req, _) = pull_request(&e).await;
    let none: &[(&str, &str)] = &[];
    assert!(req.stream.send_head(200, none, false).unwrap());
    req.stream.fail("the handler threw mid-body");
    assert_eq!(conn.head(15).await.status, 200);
    match conn.recv().await {
        Frame::Reset(r) => assert_eq!((r.stream_id, r.code), (15, ResetCode::HandlerError as u32)),
        other => panic!("expected RESET, got {other:?}"),
    }
    conn.request(17, 1, "GET", true).await;
    let (req, _) = pull_request(&e).await;
    drop(req);
    assert_eq!(conn.head(17).await.status, 500);
    assert_eq!(conn.body(17).await, b"internal error");

    // A request body read without a future per chunk: Pending, then one readiness wait.
    conn.request(19, 2, "POST", false).await;
    let (req, _) = pull_request(&e).await;
    assert_eq!(req.stream.try_chunk().unwrap(), TryChunk::Pending);
    let readable = tokio::spawn({
        let stream = req.stream.clone();
        async move { stream.readable().await }
    });
    conn.send(Data::encode_parts(19, true, b"abc")).await;
    timeout(readable).await.unwrap();
    assert_eq!(
        req.stream.try_chunk().unwrap(),
        TryChunk::Data(Bytes::from_static(b"abc"))
    );
    assert_eq!(req.stream.try_chunk().unwrap(), TryChunk::End);
    req.stream.respond(200, none, b"3").unwrap();
    assert_eq!(conn.head(19).await.status, 200);
    assert_eq!(conn.body(19).await, b"3");

    // Flow control: a chunk larger than the window goes out up to the window, try_send says
    // Full, writable() waits for credit, and the write completes as WINDOWs arrive.
    conn.request(21, 3, "GET", true).await;
    let (req, _) = pull_request(&e).await;
    let payload: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    assert!(req.stream.send_head(200, none, false).unwrap());
    assert_eq!(req.stream.try_send(&payload, true).unwrap(), TrySend::Full);
    let writable = tokio::spawn({
        let stream = req.stream.clone();
        async move { stream.writable().await }
    });
    assert_eq!(conn.head(21).await.status, 200);
    let mut got = Vec::new();
    while got.len() < payload.len() {
        match conn.recv().await {
            Frame::Data(d) => {
                assert_eq!(d.stream_id, 21);
                got.extend_from_slice(&d.data);
                assert_eq!(d.end_stream, got.len() == payload.len());
                if got.len() % WINDOW as usize == 0 {
                    // The window is spent: nothing more comes, and the host still waits.
                    assert!(!writable.is_finished(), "writable() before any credit");
                    conn.send(
                        Window {
                            stream_id: 21,
                            increment: WINDOW,
                        }
                        .encode(),
                    )
                    .await;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(got == payload, "bytes differ");
    timeout(writable).await.unwrap().unwrap();
    assert!(req.stream.is_done());

    // A reset reaches the host in a batch, by slot: no future per stream.
    conn.request(23, 4, "GET", true).await;
    let (hanging, _) = pull_request(&e).await;
    conn.send(Reset::new(23, ResetCode::Cancel, "client went away").encode())
        .await;
    let resets = loop {
        let batch = timeout(e.next_batch(64)).await.unwrap();
        if !batch.resets.is_empty() {
            break batch.resets;
        }
    };
    assert_eq!(resets.len(), 1);
    assert_eq!(resets[0].slot, hanging.slot);
    assert!(matches!(
        &resets[0].error,
        StreamError::Reset {
            code: ResetCode::Cancel,
            ..
        }
    ));
    assert!(hanging.stream.try_send(b"late", true).is_err());
    drop(hanging); // dead already: nothing is sent for it

    // A request whose stream died before the host pulled is not handed out, and its reset
    // is not reported. The core's own 404 for an unknown route id tells the gateway that
    // the worker has read all three frames, without the host pulling.
    conn.request(25, 4, "GET", true).await;
    conn.send(Reset::new(25, ResetCode::Cancel, "client went away").encode())
        .await;
    conn.request(27, 99, "GET", true).await;
    let head = conn.head(27).await;
    assert_eq!(head.status, 404);
    assert_eq!(conn.body(27).await, b"not found");
    conn.request(29, 0, "GET", true).await;
    let (req, seen) = pull_request(&e).await;
    assert_eq!(
        req.stream.stream_id(),
        29,
        "the dead request was handed out"
    );
    assert!(seen.resets.is_empty(), "{:?}", seen.resets);
    req.stream.respond(200, none, b"ok").unwrap();
    assert_eq!(conn.head(29).await.status, 200);
    assert_eq!(conn.body(29).await, b"ok");

    // The pull ends by itself once the engine has stopped.
    e.drain(Duration::from_secs(5));
    assert!(matches!(conn.recv().await, Frame::Drain(_)));
    conn.hang_up().await;
    let mut last = None;
    while let Some(batch) = timeout(e.next_batch(64)).await {
        last = batch.states.last().cloned().or(last);
    }
    assert_eq!(last, Some(ConnectionState::Stopped));
    timeout(e.wait()).await.unwrap();
}

/// `respond_bytes` and `try_send_bytes` (the Rust SDK's path: the body's tail waits for
/// credit as a slice of the caller's `Bytes`) follow the same flow control as `respond`.
#[tokio::test]
async fn owned_bodies_past_the_window_arrive_whole_as_credit_comes() {
    const WINDOW: u32 = 1024;
    let (gw, url) = Gateway::bind().await;
    let e = engine(&url, &[("GET", "/big")]);
    e.start_on(&tokio::runtime::Handle::current()).unwrap();
    let mut conn = gw.welcome("c-1", WINDOW).await;
    let payload = Bytes::from((0..3000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    let none: &[(&str, &str)] = &[];
    for (id, whole) in [(1, true), (3, false)] {
        conn.request(id, 0, "GET", true).await;
        let (req, _) = pull_request(&e).await;
        if whole {
            req.stream
                .respond_bytes(200, none, payload.clone())
                .unwrap();
        } else {
            assert!(req.stream.send_head(200, none, false).unwrap());
            let sent = req.stream.try_send_bytes(payload.clone(), true).unwrap();
            assert_eq!(sent, TrySend::Full);
        }
        assert_eq!(conn.head(id).await.status, 200);
        let mut got = Vec::new();
        while got.len() < payload.len() {
            match conn.recv().await {
                Frame::Data(d) if d.stream_id == id => {
                    got.extend_from_slice(&d.data);
                    assert_eq!(d.end_stream, got.len() == payload.len());
                    if got.len() % WINDOW as usize == 0 {
                        let grant = Window {
                            stream_id: id,
                            increment: WINDOW,
                        };
                        conn.send(grant.encode()).await;
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(got == payload, "bytes differ");
        timeout(req.stream.writable()).await.unwrap();
        assert!(req.stream.is_done());
    }
}

#[tokio::test]
async fn a_lost_connection_reports_every_open_stream_reset() {
    let (gw, url) = Gateway::bind().await;
    let e = engine(&url, &[("GET", "/hang")]);
    e.start().unwrap();
    let mut conn = gw.welcome("c-1", 65536).await;
    conn.request(1, 0, "GET", true).await;
    let (req, _) = pull_request(&e).await;
    drop(conn); // the gateway vanishes without a close frame
    let resets = loop {
        let batch = timeout(e.next_batch(64)).await.unwrap();
        if !batch.resets.is_empty() {
            break batch.resets;
        }
    };
    assert_eq!(resets[0].slot, req.slot);
    assert_eq!(resets[0].error, StreamError::ConnectionLost);
    e.drain(Duration::ZERO);
}

/// A drain that comes while the worker waits for WELCOME does not cut the handshake: the
/// gateway may have registered the connection and sent it a request already. The worker
/// finishes the handshake, sends DRAIN, answers that request, and answers the gateway's
/// close with 1000 (§7).
#[tokio::test]
async fn a_drain_during_the_handshake_finishes_it_and_answers_what_was_sent() {
    let (gw, url) = Gateway::bind().await;
    let e = engine(&url, &[("GET", "/x")]);
    e.start().unwrap();
    let mut conn = gw.hello().await;
    e.drain(WAIT);
    conn.welcome("c-1", 65536).await;
    conn.request(1, 0, "GET", true).await;
    let Frame::Drain(drain) = conn.recv().await else {
        panic!("expected DRAIN")
    };
    assert_eq!(drain.deadline_ms, WAIT.as_millis() as u64);
    let (req, _) = pull_request(&e).await;
    req.stream
        .respond(200, &[("x-test", "1")], b"served")
        .unwrap();
    assert_eq!(conn.head(1).await.status, 200);
    assert_eq!(conn.body(1).await, b"served");
    conn.0.close(1000, "drained").await.unwrap();
    assert_eq!(
        conn.0.close_code(WAIT).await.unwrap(),
        1000,
        "the worker's answer"
    );
    timeout(e.wait()).await.unwrap();
}

/// A REQUEST whose head breaks a stream rule (raw UTF-8 in the target, issue 17 item 2) is a
/// stream error (§8): RESET `protocol_error` on that id, never seen by the host, and the
/// connection serves on: a request in flight before it and one after it are answered.
#[tokio::test]
async fn a_bad_request_head_is_reset_and_the_connection_serves_on() {
    let (gw, url) = Gateway::bind().await;
    let e = engine(&url, &[("GET", "/x")]);
    e.start().unwrap();
    let mut conn = gw.welcome("c-1", 65536).await;
    conn.request(1, 0, "GET", true).await;
    let (first, _) = pull_request(&e).await;
    let bad = frame::Request {
        stream_id: 2,
        end_stream: true,
        upgrade: false,
        route_id: 0,
        method: Bytes::from_static(b"GET"),
        target: Bytes::from("/caf\u{e9}"),
        params: vec![],
        headers: vec![],
    };
    conn.send(bad.encode()).await;
    match conn.recv().await {
        Frame::Reset(r) => {
            assert_eq!((r.stream_id, r.code), (2, ResetCode::ProtocolError as u32));
            assert!(r.reason.contains("invalid_target"), "{}", r.reason);
        }
        other => panic!("expected RESET of stream 2, got {other:?}"),
    }
    first
        .stream
        .respond(200, &[] as &[(&str, &str)], b"one")
        .unwrap();
    assert_eq!(conn.head(1).await.status, 200);
    assert_eq!(conn.body(1).await, b"one");
    conn.request(3, 0, "GET", true).await;
    let (third, _) = pull_request(&e).await;
    assert_eq!(
        third.stream.stream_id(),
        3,
        "stream 2 never reached the host"
    );
    third
        .stream
        .respond(200, &[] as &[(&str, &str)], b"three")
        .unwrap();
    assert_eq!(conn.head(3).await.status, 200);
    assert_eq!(conn.body(3).await, b"three");
    e.drain(Duration::ZERO);
}

/// PROTOCOL.md §3.10 through the host API: with `trailers` granted, a request's TRAILERS
/// end its body and are read with `trailers()`, and `end_with_trailers` sends the body's
/// last bytes without END_STREAM and then TRAILERS; trailers too large to send reset the
/// stream `handler_error`. Without the grant, the same call ends the body plainly.
#[tokio::test]
async fn trailers_cross_the_host_api_both_ways_once_granted() {
    use vyx_core::features::{self, Features};
    let (gw, url) = Gateway::bind().await;
    let mut cfg = WorkerConfig::new(&url, "core:trailers");
    cfg.features = Features::TRAILERS;
    let e = Engine::new(cfg).unwrap();
    e.add_route("POST", "/x").unwrap();
    e.start().unwrap();
    let mut conn = gw.0.attempt(WAIT).await.unwrap().accept().await.unwrap();
    assert_eq!(conn.hello().features, [features::TRAILERS]);
    let mut welcome = conn.welcome_with(5000, 65536);
    welcome.features = vec![features::TRAILERS.into()];
    conn.send(Frame::Welcome(welcome)).await.unwrap();
    let mut conn = Conn(conn);

    conn.request(1, 0, "POST", false).await;
    conn.send(Data::encode_parts(1, false, b"ab")).await;
    let fields = |pairs: &[(&'static str, &'static str)]| -> frame::HeaderList {
        pairs
            .iter()
            .map(|(n, v)| {
                (
                    Bytes::from_static(n.as_bytes()),
                    Bytes::from_static(v.as_bytes()),
                )
            })
            .collect()
    };
    let sum = fields(&[("x-sum", "2")]);
    conn.send(
        frame::Trailers {
            stream_id: 1,
            headers: sum.clone(),
        }
        .encode(),
    )
    .await;
    let (req, _) = pull_request(&e).await;
    assert!(req.stream.trailers_negotiated());
    assert_eq!(timeout(req.stream.collect()).await.unwrap(), "ab");
    assert_eq!(req.stream.trailers(), Some(sum));
    req.stream
        .send_head(200, &[("content-type", "application/grpc")], false)
        .unwrap();
    req.stream
        .end_with_trailers(b"ok", &[("Grpc-Status", "0"), ("Connection", "x")])
        .unwrap();
    assert_eq!(conn.head(1).await.status, 200);
    match conn.recv().await {
        Frame::Data(d) => assert_eq!((&d.data[..], d.end_stream), (&b"ok"[..], false)),
        other => panic!("expected DATA, got {other:?}"),
    }
    match conn.recv().await {
        Frame::Trailers(t) => assert_eq!(t.headers, fields(&[("grpc-status", "0")])),
        other => panic!("expected TRAILERS, got {other:?}"),
    }

    // One byte over max_trailers_size: never sent, the stream reset handler_error.
    conn.request(2, 0, "POST", true).await;
    let (req, _) = pull_request(&e).await;
    req.stream
        .send_head(200, &[] as &[(&str, &str)], false)
        .unwrap();
    let value = "v".repeat(vyx_core::limits::MAX_TRAILERS_SIZE - 6);
    let err = req
        .stream
        .end_with_trailers(b"", &[("x", value.as_str())])
        .unwrap_err();
    assert!(matches!(err, StreamError::InvalidHead(_)), "{err:?}");
    assert_eq!(conn.head(2).await.status, 200);
    match conn.recv().await {
        Frame::Reset(r) => assert_eq!((r.stream_id, r.code), (2, ResetCode::HandlerError as u32)),
        other => panic!("expected RESET, got {other:?}"),
    }
    e.drain(Duration::ZERO);
}

#[tokio::test]
async fn without_the_grant_trailers_are_dropped_and_the_body_ends_plainly() {
    let (gw, url) = Gateway::bind().await;
    let e = engine(&url, &[("GET", "/x")]);
    e.start().unwrap();
    let mut conn = gw.welcome("c-1", 65536).await;
    conn.request(1, 0, "GET", true).await;
    let (req, _) = pull_request(&e).await;
    assert!(!req.stream.trailers_negotiated());
    req.stream
        .send_head(200, &[] as &[(&str, &str)], false)
        .unwrap();
    req.stream
        .end_with_trailers(b"ok", &[("grpc-status", "0")])
        .unwrap();
    assert_eq!(conn.head(1).await.status, 200);
    assert_eq!(conn.body(1).await, b"ok");
    e.drain(Duration::ZERO);
}

#[tokio::test]
async fn a_request_with_flag_upgrade_closes_4005_on_a_connection_without_the_extension() {
    let (gw, url) = Gateway::bind().await;
    let e = engine(&url, &[("GET", "/x")]);
    e.start().unwrap();
    let mut conn = gw.welcome("c-1", 65536).await;
    // This WELCOME lists no features (PROTOCOL.md §4.5): the flag is the violation it was in v1.
    let upgrade = frame::Request {
        stream_id: 1,
        end_stream: false,
        upgrade: true,
        route_id: 0,
        method: Bytes::from_static(b"GET"),
        target: Bytes::from_static(b"/x"),
        params: vec![],
        headers: vec![],
    };
    conn.send(upgrade.encode()).await;
    assert_eq!(conn.0.close_code(WAIT).await.unwrap(), 4005);
    e.drain(Duration::ZERO);
}

#[tokio::test]
async fn an_upgrade_answered_101_is_a_byte_pipe_with_half_close_both_ways() {
    let (gw, url) = Gateway::bind().await;
    let mut cfg = WorkerConfig::new(&url, "core:upgrade");
    cfg.features = vyx_core::features::Features::UPGRADE;
    let e = Engine::new(cfg).unwrap();
    e.add_route("GET", "/x").unwrap();
    e.start().unwrap();
    let mut conn = gw.hello().await;
    assert_eq!(conn.0.hello().features, ["upgrade"], "the host offers it");
    let mut welcome = conn.0.welcome_with(5000, 65536);
    welcome.features = vec!["upgrade".into()];
    conn.0.send(Frame::Welcome(welcome)).await.unwrap();
    let upgrade = frame::Request {
        stream_id: 1,
        end_stream: false,
        upgrade: true,
        route_id: 0,
        method: Bytes::from_static(b"GET"),
        target: Bytes::from_static(b"/x"),
        params: vec![],
        headers: vec![(
            Bytes::from_static(b"upgrade"),
            Bytes::from_static(b"websocket"),
        )],
    };
    conn.send(upgrade.encode()).await;
    let (req, _) = pull_request(&e).await;
    assert!(req.upgrade);
    let s = req.stream;
    let head = [("upgrade", "websocket"), ("sec-websocket-accept", "x")];
    assert!(s.send_head(101, &head, false).unwrap(), "bytes may follow");
    let r = conn.head(1).await;
    assert_eq!((r.status, r.end_stream), (101, false));
    assert_eq!(header(&r, "upgrade"), Some(&b"websocket"[..]));
    // The client's bytes in, then its half-close; the host's bytes out, then its own.
    conn.send(frame::Data::encode_parts(1, false, b"ping"))
        .await;
    assert_eq!(
        timeout(s.chunk()).await.unwrap().as_deref(),
        Some(&b"ping"[..])
    );
    s.send(b"pong", false).await.unwrap();
    conn.send(frame::Data::encode_parts(1, true, b"")).await;
    assert_eq!(
        timeout(s.chunk()).await.unwrap(),
        None,
        "the client half-closed"
    );
    s.send(b"bye", true).await.unwrap();
    assert_eq!(conn.body(1).await, b"pongbye");
    e.drain(Duration::ZERO);
}

/// An engine offering `upgrade` with one route, connected and welcomed with it.
async fn upgrading(gw: &Gateway, url: &str) -> (Engine, Conn) {
    let mut cfg = WorkerConfig::new(url, "core:upgrade");
    cfg.features = vyx_core::features::Features::UPGRADE;
    let e = Engine::new(cfg).unwrap();
    e.add_route("GET", "/x").unwrap();
    e.start().unwrap();
    let mut conn = gw.hello().await;
    let mut welcome = conn.0.welcome_with(5000, 65536);
    welcome.features = vec!["upgrade".into()];
    conn.0.send(Frame::Welcome(welcome)).await.unwrap();
    (e, conn)
}

/// The REQUEST of an upgrade on stream `stream_id`.
fn upgrade(stream_id: u32) -> frame::Request {
    frame::Request {
        stream_id,
        end_stream: false,
        upgrade: true,
        route_id: 0,
        method: Bytes::from_static(b"GET"),
        target: Bytes::from_static(b"/x"),
        params: vec![],
        headers: vec![],
    }
}

#[tokio::test]
async fn an_upgraded_host_half_closes_first_and_reads_on_until_it_lets_go() {
    let (gw, url) = Gateway::bind().await;
    let (e, mut conn) = upgrading(&gw, &url).await;

    conn.send(upgrade(1).encode()).await;
    let (first, _) = pull_request(&e).await;
    first
        .stream
        .send_head(101, &[("upgrade", "x")], false)
        .unwrap();
    assert_eq!(conn.head(1).await.status, 101);
    // The host's half-close is END_STREAM alone: no RESET of the client's side.
    first.stream.send(b"bye", true).await.unwrap();
    assert_eq!(conn.body(1).await, b"bye");
    conn.send(Data::encode_parts(1, false, b"still here")).await;
    assert_eq!(
        timeout(first.stream.chunk()).await.unwrap().as_deref(),
        Some(&b"still here"[..])
    );
    conn.send(Data::encode_parts(1, true, b"")).await;
    assert_eq!(timeout(first.stream.chunk()).await.unwrap(), None);
    drop(first);

    // A host that half-closed and lets go while the client's side is open refuses it.
    conn.send(upgrade(3).encode()).await;
    let (second, _) = pull_request(&e).await;
    second
        .stream
        .send_head(101, &[("upgrade", "x")], false)
        .unwrap();
    assert_eq!(conn.head(3).await.status, 101);
    second.stream.end().unwrap();
    assert_eq!(conn.body(3).await, b"");
    drop(second);
    match conn.recv().await {
        Frame::Reset(r) => assert_eq!((r.stream_id, r.code), (3, ResetCode::NoError as u32)),
        other => panic!("expected RESET no_error of stream 3, got {other:?}"),
    }
    e.drain(Duration::ZERO);
}

/// The byte pipe every Rust host hands out (`session::Upgraded`): the client's bytes read in
/// pieces smaller than a chunk, EOF at its half-close, writes out as DATA, and `shutdown`
/// half-closes.
#[tokio::test]
async fn upgraded_is_the_stream_as_async_read_and_write() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (gw, url) = Gateway::bind().await;
    let (e, mut conn) = upgrading(&gw, &url).await;
    conn.send(upgrade(1).encode()).await;
    let (req, _) = pull_request(&e).await;
    req.stream
        .send_head(101, &[("upgrade", "x")], false)
        .unwrap();
    assert_eq!(conn.head(1).await.status, 101);
    let mut io = Upgraded::new(req.stream);
    conn.send(Data::encode_parts(1, false, b"hello pipe")).await;
    let mut part = [0u8; 4];
    timeout(io.read_exact(&mut part)).await.unwrap();
    assert_eq!(&part, b"hell");
    let mut rest = [0u8; 6];
    timeout(io.read_exact(&mut rest)).await.unwrap();
    assert_eq!(&rest, b"o pipe");
    io.write_all(b"echo").await.unwrap();
    io.flush().await.unwrap();
    conn.send(Data::encode_parts(1, true, b"")).await;
    let mut tail = Vec::new();
    timeout(io.read_to_end(&mut tail)).await.unwrap();
    assert!(tail.is_empty(), "the client's half-close is EOF");
    io.shutdown().await.unwrap();
    assert_eq!(conn.body(1).await, b"echo", "shutdown is END_STREAM");
    e.drain(Duration::ZERO);
}

#[tokio::test]
async fn a_101_on_a_plain_request_is_an_invalid_head_answered_500() {
    let (gw, url) = Gateway::bind().await;
    let e = engine(&url, &[("GET", "/x")]);
    e.start().unwrap();
    let mut conn = gw.welcome("c-1", 65536).await;
    conn.request(1, 0, "GET", true).await;
    let (req, _) = pull_request(&e).await;
    assert!(!req.upgrade);
    let err = req.stream.send_head(101, &[] as &[(&str, &str)], false);
    assert!(matches!(err, Err(StreamError::InvalidHead(_))), "{err:?}");
    assert_eq!(conn.head(1).await.status, 500);
    e.drain(Duration::ZERO);
}

/// §9.1 "Connections per address": a first WELCOME asking for 3 connections gets two more
/// sessions with the same HELLO, each served; an extra the gateway hangs up on comes back by
/// itself; an extra's own WELCOME does not change the count; the first's next WELCOME asking
/// for one (the field absent) drains the extras, and nothing replaces them.
#[tokio::test]
async fn a_welcome_asking_for_three_connections_is_given_three() {
    let (gw, url) = Gateway::bind().await;
    let e = engine(&url, &[("GET", "/x")]);
    e.start().unwrap();
    let mut first = gw.hello().await;
    first.welcome_asking("c-1", 3).await;
    let mut extras = Vec::new();
    for id in ["c-2", "c-3"] {
        let mut extra = gw.hello().await;
        assert_eq!(extra.0.hello(), first.0.hello(), "the same HELLO");
        // An extra's own WELCOME is not the count: asking for 1 here drains nothing.
        extra.welcome_asking(id, 1).await;
        extras.push(extra);
    }
    first.served(&e, 1).await;
    for extra in &mut extras {
        extra.served(&e, 1).await;
    }

    extras[0].hang_up().await;
    let mut back = gw.hello().await;
    assert_eq!(back.0.hello(), first.0.hello());
    back.welcome("c-4", 65536).await;
    back.served(&e, 1).await;
    extras[0] = back;

    // The first reconnects to a gateway that asks for one: the extras drain, the first serves.
    first.hang_up().await;
    drop(first);
    let mut first = gw.welcome("c-5", 65536).await;
    for extra in &mut extras {
        extra.drained().await;
    }
    first.served(&e, 1).await;
    // The drained extras end (every state change is an event: the pull wakes for it).
    while e.gateways().len() > 1 {
        timeout(e.next_batch(8)).await.unwrap();
    }
    gw.0.no_attempt(Duration::from_millis(300)).await.unwrap();
    e.drain(Duration::ZERO);
}

/// A WELCOME that does not ask (no `connections`, a v1 gateway) keeps one connection; a
/// larger count on a later WELCOME adds extras, and the engine's stop drains them with the
/// first.
#[tokio::test]
async fn a_welcome_without_connections_keeps_one_and_a_later_count_adds() {
    let (gw, url) = Gateway::bind().await;
    let e = engine(&url, &[("GET", "/x")]);
    e.start().unwrap();
    let mut first = gw.welcome("c-1", 65536).await;
    first.served(&e, 1).await;
    gw.0.no_attempt(Duration::from_millis(300)).await.unwrap();
    assert_eq!(e.gateways().len(), 1);

    first.hang_up().await;
    drop(first);
    let mut first = gw.hello().await;
    first.welcome_asking("c-2", 2).await;
    let mut extra = gw.welcome("c-3", 65536).await;
    extra.served(&e, 1).await;
    first.served(&e, 1).await;
    assert_eq!(
        e.state(),
        ConnectionState::Connected {
            connection_id: "c-2".into()
        }
    );

    e.drain(WAIT);
    first.drained().await;
    extra.drained().await;
    timeout(e.wait()).await.unwrap();
}

/// The extras go with their address (§9.1): a name that stops resolving to the address
/// drains its first session and its extra alike, and the new address gets a session.
#[tokio::test]
async fn the_extras_go_with_their_address() {
    let (a, url_a) = Gateway::bind().await;
    let (b, url_b) = Gateway::bind().await;
    let addr = |url: &str| -> std::net::SocketAddr { url["ws://".len()..].parse().unwrap() };
    let dns = std::sync::Arc::new(std::sync::Mutex::new(addr(&url_a)));
    let mut config = WorkerConfig::new("ws://gateways.test:9", "core:host-test");
    let table = dns.clone();
    config.resolver = vyx_core::session::Resolver::new(move |_, _| {
        let found = vec![*table.lock().unwrap()];
        Box::pin(async move { Ok(found) })
    });
    config.resolve_interval = Duration::from_millis(20);
    let e = Engine::new(config).unwrap();
    e.add_route("GET", "/x").unwrap();
    e.start().unwrap();
    let mut first = a.hello().await;
    first.welcome_asking("c-1", 2).await;
    let mut extra = a.welcome("c-2", 65536).await;
    extra.served(&e, 1).await;

    *dns.lock().unwrap() = addr(&url_b);
    let mut other = b.welcome("c-3", 65536).await;
    first.drained().await;
    extra.drained().await;
    other.served(&e, 1).await;
    while e.gateways().len() > 1 {
        timeout(e.next_batch(8)).await.unwrap();
    }
    e.drain(Duration::ZERO);
}

//! Protocol probes: a raw client speaks the protocol to the real gateway binary and sends
//! what no SDK would. Each probe checks the close code spec/PROTOCOL.md names, and that the
//! gateway goes on serving a well-behaved worker connected all along.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use vyx_core::frame::{Data, Frame, Request, Reset, Response, Window};
use vyx_core::handshake::{Hello, RouteSpec, Welcome};
use vyx_core::limits::{INITIAL_WINDOW, MAX_FRAME_SIZE, MAX_WINDOW};

use crate::check::{fail, Outcome};
use crate::http::{self, empty, request, Client};
use crate::procs::{Gateway, WAIT};
use crate::scenarios::{connections, wait_connections};
use crate::{ensure, ensure_eq};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;
type Run = for<'a> fn(&'a Probes) -> Pin<Box<dyn Future<Output = Outcome<()>> + Send + 'a>>;

/// One probe: a row of the protocol section of the matrix.
pub struct Probe {
    pub name: &'static str,
    pub run: Run,
}

/// `"name" => p => future using p`.
macro_rules! probes {
    ($($name:literal => $p:ident => $body:expr),* $(,)?) => {
        vec![$(Probe { name: $name, run: |$p| Box::pin($body) }),*]
    };
}

pub fn all() -> Vec<Probe> {
    probes![
        "unknown frame type 0x06 -> 4005" => p => p.bytes_close(vec![0x06, 0, 0, 0, 0, 1], 4005),
        "reserved frame type 0x15 -> 4005" => p => p.bytes_close(vec![0x15, 0, 0, 0, 0, 0], 4005),
        "truncated frame header -> 4005" => p => p.bytes_close(vec![0x00, 0x00, 0x00], 4005),
        "flag not allowed for the type -> 4005" => p => p.bytes_close(vec![0x03, 0x01, 0, 0, 0, 1, 0, 0, 0, 1], 4005),
        "DATA for a stream never opened -> 4005" => p => p.bytes_close(vec![0x00, 0x00, 0, 0, 0, 9, b'x'], 4005),
        "RESET for a stream never opened -> 4005" => p => p.frame_close(Frame::Reset(Reset { stream_id: 9, code: 1, reason: String::new() }), 4005),
        "WINDOW for a stream never opened -> 4005" => p => p.frame_close(Frame::Window(Window { stream_id: 9, increment: 1 }), 4005),
        "WINDOW on stream 0 -> 4005" => p => p.bytes_close(vec![0x08, 0, 0, 0, 0, 0, 0, 0, 0, 1], 4005),
        "truncated RESPONSE head -> 4005" => p => p.bytes_close(vec![0x02, 0x00, 0, 0, 0, 1, 0x00], 4005),
        "REQUEST from a worker (wrong direction) -> 4005" => p => request_from_worker(p),
        "text message -> 4005" => p => text_message(p),
        "oversized frame -> 4006" => p => p.bytes_close(vec![0u8; MAX_FRAME_SIZE + 1], 4006),
        "window overflow -> 4008" => p => window_overflow(p),
        "DATA beyond the window -> 4008" => p => data_beyond_window(p),
        "DATA before RESPONSE -> stream reset, connection kept" => p => data_before_response(p),
        "second RESPONSE -> stream reset, connection kept" => p => second_response(p),
        "first frame not HELLO -> 4005" => p => first_frame_not_hello(p),
        "HELLO that is not JSON -> 4001" => p => hello_not_json(p),
        "second HELLO -> 4005" => p => p.frame_close(Frame::Hello(hello("probe:bad", vec![])), 4005),
        "HELLO naming another worker id -> 4001" => p => p.hello_close("probe:bad", hello("probe:other", vec![]), 4001),
        "HELLO with an invalid route pattern -> 4001" => p => p.hello_close("probe:bad", hello("probe:bad", vec![route(0, "GET", "/a/{")]), 4001),
        "HELLO with protocol 2 -> 4002" => p => hello_protocol_2(p),
        "HELLO with a conflicting route -> 4003" => p => p.hello_close("probe:bad", hello("probe:bad", vec![route(0, "GET", "/good")]), 4003),
        "no HELLO within the handshake timeout -> 4007" => p => slow_handshake(p),
        "upgrade without vyx.1 -> HTTP 400" => p => upgrade_without_subprotocol(p),
        "upgrade with a bad worker id -> HTTP 400" => p => upgrade_bad_worker_id(p),
    ]
}

/// The handshake timeout of the probes' gateway.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// The probes' gateway: dev mode (any worker id), a short handshake timeout, and request
/// bodies streamed at once (not buffered first, PROTOCOL.md §3.4), so that a probe holding a
/// body open sees its REQUEST.
pub fn gateway_config() -> String {
    format!(
        "accept_unknown_workers: true\ntimeouts:\n  handshake: {}ms\nlimits:\n  body_buffer: 0\n",
        HANDSHAKE_TIMEOUT.as_millis()
    )
}

/// The gateway the probes share, and the well-behaved worker that must survive them all.
pub struct Probes {
    pub gw: Gateway,
    client: Client,
    good_connection: String,
    _good: tokio::task::JoinHandle<()>,
}

impl Probes {
    pub async fn start(gw: Gateway) -> Outcome<Probes> {
        let (ws, welcome) = connect(&gw, "probe:good", vec![route(0, "GET", "/good")]).await?;
        let good = tokio::spawn(serve_ok(ws));
        let probes = Probes {
            gw,
            client: http::client(),
            good_connection: welcome.connection_id,
            _good: good,
        };
        probes.others_served().await?;
        Ok(probes)
    }

    /// The good worker answers, on the connection it started with.
    pub async fn others_served(&self) -> Outcome<()> {
        let reply = http::get(&self.client, &self.gw.url("/good")).await?;
        ensure_eq!(
            (reply.status, reply.text()),
            (200, "ok".to_owned()),
            "GET /good through the well-behaved worker"
        );
        let conns = connections(&self.client, &self.gw, "probe:good").await?;
        ensure!(
            conns.len() == 1 && conns[0]["connection_id"] == self.good_connection.as_str(),
            "the well-behaved worker lost its connection: {conns:?}"
        );
        Ok(())
    }

    /// A registered raw worker sends `bytes`; the gateway must close with `code`.
    async fn bytes_close(&self, bytes: Vec<u8>, code: u16) -> Outcome<()> {
        let (mut ws, _) = connect(&self.gw, "probe:bad", vec![route(0, "GET", "/bad")]).await?;
        send(&mut ws, Message::Binary(bytes.into())).await?;
        expect_close(&mut ws, code).await
    }

    async fn frame_close(&self, frame: Frame, code: u16) -> Outcome<()> {
        self.bytes_close(frame.encode().to_vec(), code).await
    }

    /// A raw worker upgrades as `id` and sends `hello` first.
    async fn hello_close(&self, id: &str, hello: Hello, code: u16) -> Outcome<()> {
        let mut ws = upgrade(&self.gw, id).await?;
        send(&mut ws, Message::Binary(Frame::Hello(hello).encode())).await?;
        expect_close(&mut ws, code).await
    }
}

fn route(id: u32, method: &str, path: &str) -> RouteSpec {
    RouteSpec {
        id,
        method: method.into(),
        path: path.into(),
        idempotent: false,
    }
}

fn hello(id: &str, routes: Vec<RouteSpec>) -> Hello {
    Hello {
        protocol: 1,
        worker_id: id.into(),
        instance: "probe".into(),
        sdk: "vyx-conformance-probe/0".into(),
        max_concurrency: 8,
        routes,
        labels: Default::default(),
        features: Vec::new(),
    }
}

fn upgrade_request(
    gw: &Gateway,
    id: &str,
    subprotocol: bool,
) -> Outcome<tungstenite::handshake::client::Request> {
    let mut req = format!("ws://{}/_vyx/register", gw.addr)
        .into_client_request()
        .map_err(|e| format!("upgrade request: {e}"))?;
    if subprotocol {
        req.headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_static("vyx.1"));
    }
    req.headers_mut().insert(
        "x-vyx-worker-id",
        HeaderValue::from_str(id).map_err(|e| format!("worker id header: {e}"))?,
    );
    Ok(req)
}

async fn upgrade(gw: &Gateway, id: &str) -> Outcome<Ws> {
    let req = upgrade_request(gw, id, true)?;
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req)).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => fail(format!("upgrade as {id}: {e}")),
        Err(_) => fail(format!("upgrade as {id}: no answer within {WAIT:?}")),
    }
}

async fn send(ws: &mut Ws, msg: Message) -> Outcome<()> {
    ws.send(msg).await.map_err(|e| format!("send: {e}"))
}

async fn send_frame(ws: &mut Ws, frame: Frame) -> Outcome<()> {
    send(ws, Message::Binary(frame.encode())).await
}

/// The next frame from the gateway (pings and pongs skipped).
async fn next_frame(ws: &mut Ws) -> Outcome<Frame> {
    loop {
        let msg = match tokio::time::timeout(WAIT, ws.next()).await {
            Err(_) => return fail(format!("no frame within {WAIT:?}")),
            Ok(None) => return fail("socket ended"),
            Ok(Some(Err(e))) => return fail(format!("socket error: {e}")),
            Ok(Some(Ok(m))) => m,
        };
        match msg {
            Message::Binary(b) => {
                return Frame::decode(b, MAX_FRAME_SIZE)
                    .map_err(|e| format!("the gateway sent an invalid frame: {e}"))
            }
            Message::Close(f) => return fail(format!("closed by the gateway: {f:?}")),
            _ => {}
        }
    }
}

/// Upgrades and completes the handshake.
async fn connect(gw: &Gateway, id: &str, routes: Vec<RouteSpec>) -> Outcome<(Ws, Welcome)> {
    let mut ws = upgrade(gw, id).await?;
    send_frame(&mut ws, Frame::Hello(hello(id, routes))).await?;
    match next_frame(&mut ws).await? {
        Frame::Welcome(w) => Ok((ws, w)),
        other => fail(format!("expected WELCOME, got {other:?}")),
    }
}

/// Reads until the gateway closes; checks the close code (an ERROR frame may come first).
async fn expect_close(ws: &mut Ws, code: u16) -> Outcome<()> {
    let got = close_code(ws, WAIT).await?;
    ensure_eq!(got, code, "close code");
    Ok(())
}

async fn close_code(ws: &mut Ws, timeout: Duration) -> Outcome<u16> {
    let deadline = Instant::now() + timeout;
    loop {
        let msg = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return fail(format!("no close within {timeout:?}")),
            Ok(None) => return fail("socket ended without a close frame"),
            Ok(Some(Err(e))) => return fail(format!("socket error before the close: {e}")),
            Ok(Some(Ok(m))) => m,
        };
        match msg {
            Message::Close(Some(f)) => return Ok(u16::from(f.code)),
            Message::Close(None) => return fail("close frame without a code"),
            Message::Binary(b) => match Frame::decode(b, MAX_FRAME_SIZE) {
                // ERROR may precede the close; frames already on their way may too.
                Ok(Frame::Error(_) | Frame::Reset(_) | Frame::Data(_) | Frame::Window(_)) => {}
                other => return fail(format!("expected a close, got {other:?}")),
            },
            _ => {}
        }
    }
}

/// Answers every REQUEST with 200 "ok" until the socket closes.
async fn serve_ok(mut ws: Ws) {
    while let Some(Ok(msg)) = ws.next().await {
        if let Message::Binary(b) = msg {
            if let Ok(Frame::Request(r)) = Frame::decode(b, MAX_FRAME_SIZE) {
                let head = Frame::Response(Response {
                    stream_id: r.stream_id,
                    end_stream: false,
                    status: 200,
                    headers: vec![(Bytes::from("content-type"), Bytes::from("text/plain"))],
                });
                let body = Frame::Data(Data {
                    stream_id: r.stream_id,
                    end_stream: true,
                    data: Bytes::from_static(b"ok"),
                });
                if ws.send(Message::Binary(head.encode())).await.is_err()
                    || ws.send(Message::Binary(body.encode())).await.is_err()
                {
                    return;
                }
            }
        }
    }
}

/// A client request to `path` on the raw worker, and the REQUEST it produced there.
async fn open_stream(
    p: &Probes,
    ws: &mut Ws,
    method: &str,
    path: &str,
    body: http::Body,
) -> Outcome<(tokio::task::JoinHandle<Outcome<http::Reply>>, Request)> {
    let req = request(method, &p.gw.url(path), &[], body)?;
    let client = p.client.clone();
    let pending = tokio::spawn(async move { http::send(&client, req).await });
    match next_frame(ws).await? {
        Frame::Request(r) => Ok((pending, r)),
        other => fail(format!("expected REQUEST, got {other:?}")),
    }
}

async fn reply_of(pending: tokio::task::JoinHandle<Outcome<http::Reply>>) -> Outcome<http::Reply> {
    pending.await.map_err(|e| format!("client task: {e}"))?
}

async fn request_from_worker(p: &Probes) -> Outcome<()> {
    let (mut ws, _) = connect(&p.gw, "probe:bad", vec![route(0, "GET", "/bad")]).await?;
    let frame = Frame::Request(Request {
        stream_id: 1,
        end_stream: true,
        upgrade: false,
        route_id: 0,
        method: Bytes::from("GET"),
        target: Bytes::from("/bad"),
        params: vec![],
        headers: vec![],
    });
    send_frame(&mut ws, frame).await?;
    expect_close(&mut ws, 4005).await
}

async fn text_message(p: &Probes) -> Outcome<()> {
    let (mut ws, _) = connect(&p.gw, "probe:bad", vec![route(0, "GET", "/bad")]).await?;
    send(&mut ws, Message::Text("hello".into())).await?;
    expect_close(&mut ws, 4005).await
}

/// A request body still open, so the gateway's send window matters; the worker grants so
/// much that the window passes 2^31−1.
async fn window_overflow(p: &Probes) -> Outcome<()> {
    let (mut ws, welcome) = connect(&p.gw, "probe:bad", vec![route(0, "POST", "/bad")]).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, std::io::Error>>(1);
    let _ = tx.send(Ok(http_body::Frame::data(Bytes::from("x")))).await;
    let body =
        http_body_util::BodyExt::boxed(http_body_util::StreamBody::new(tokio_stream_from(rx)));
    let (pending, r) = open_stream(p, &mut ws, "POST", "/bad", body).await?;
    ensure!(
        !r.end_stream,
        "REQUEST ended its body although the client had not"
    );
    let increment = MAX_WINDOW;
    ensure!(
        u64::from(welcome.initial_window) + u64::from(increment) > u64::from(MAX_WINDOW),
        "initial window {} cannot overflow",
        welcome.initial_window
    );
    send_frame(
        &mut ws,
        Frame::Window(Window {
            stream_id: r.stream_id,
            increment,
        }),
    )
    .await?;
    expect_close(&mut ws, 4008).await?;
    drop(tx);
    let reply = reply_of(pending).await?;
    ensure_eq!(reply.status, 502, "the client whose worker was closed");
    Ok(())
}

/// A receiver for an mpsc channel as a stream.
fn tokio_stream_from<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|t| (t, rx)) })
}

async fn data_beyond_window(p: &Probes) -> Outcome<()> {
    let (mut ws, welcome) = connect(&p.gw, "probe:bad", vec![route(0, "GET", "/bad")]).await?;
    ensure_eq!(welcome.initial_window, INITIAL_WINDOW, "initial window");
    let (pending, r) = open_stream(p, &mut ws, "GET", "/bad", empty()).await?;
    send_frame(
        &mut ws,
        Frame::Response(Response {
            stream_id: r.stream_id,
            end_stream: false,
            status: 200,
            headers: vec![],
        }),
    )
    .await?;
    // One frame one byte larger than the whole window: beyond it whatever was granted.
    send_frame(
        &mut ws,
        Frame::Data(Data {
            stream_id: r.stream_id,
            end_stream: false,
            data: Bytes::from(vec![b'x'; welcome.initial_window as usize + 1]),
        }),
    )
    .await?;
    expect_close(&mut ws, 4008).await?;
    // The client had the head already: its body is cut, never completed.
    match reply_of(pending).await {
        Ok(reply) => fail(format!(
            "the client got a complete answer ({} bytes) from a closed worker",
            reply.body.len()
        )),
        Err(_) => Ok(()),
    }
}

/// Reads frames until a RESET for `stream_id`; returns its code.
async fn reset_code(ws: &mut Ws, stream_id: u32) -> Outcome<u32> {
    loop {
        match next_frame(ws).await? {
            Frame::Reset(r) if r.stream_id == stream_id => return Ok(r.code),
            Frame::Window(_) => {}
            other => return fail(format!("expected RESET, got {other:?}")),
        }
    }
}

/// After a stream-level error the raw worker's connection still serves.
async fn raw_still_serves(p: &Probes, mut ws: Ws) -> Outcome<()> {
    let (pending, r) = open_stream(p, &mut ws, "GET", "/bad", empty()).await?;
    send_frame(
        &mut ws,
        Frame::Response(Response {
            stream_id: r.stream_id,
            end_stream: true,
            status: 204,
            headers: vec![],
        }),
    )
    .await?;
    let reply = reply_of(pending).await?;
    ensure_eq!(reply.status, 204, "next request on the same connection");
    Ok(())
}

async fn data_before_response(p: &Probes) -> Outcome<()> {
    let (mut ws, _) = connect(&p.gw, "probe:bad", vec![route(0, "GET", "/bad")]).await?;
    let (pending, r) = open_stream(p, &mut ws, "GET", "/bad", empty()).await?;
    send_frame(
        &mut ws,
        Frame::Data(Data {
            stream_id: r.stream_id,
            end_stream: true,
            data: Bytes::from("too early"),
        }),
    )
    .await?;
    ensure_eq!(
        reset_code(&mut ws, r.stream_id).await?,
        5,
        "RESET code (protocol_error)"
    );
    let reply = reply_of(pending).await?;
    ensure_eq!(reply.status, 502, "the client of the broken stream");
    raw_still_serves(p, ws).await
}

async fn second_response(p: &Probes) -> Outcome<()> {
    let (mut ws, _) = connect(&p.gw, "probe:bad", vec![route(0, "GET", "/bad")]).await?;
    let (pending, r) = open_stream(p, &mut ws, "GET", "/bad", empty()).await?;
    let head = |status| {
        Frame::Response(Response {
            stream_id: r.stream_id,
            end_stream: false,
            status,
            headers: vec![],
        })
    };
    send_frame(&mut ws, head(200)).await?;
    send_frame(&mut ws, head(201)).await?;
    ensure_eq!(
        reset_code(&mut ws, r.stream_id).await?,
        5,
        "RESET code (protocol_error)"
    );
    // The head came, then the reset: the client's body must be cut, never complete.
    if let Ok(reply) = reply_of(pending).await {
        return fail(format!(
            "the client got a complete {} answer from a reset stream",
            reply.status
        ));
    }
    raw_still_serves(p, ws).await
}

async fn first_frame_not_hello(p: &Probes) -> Outcome<()> {
    let mut ws = upgrade(&p.gw, "probe:bad").await?;
    send_frame(
        &mut ws,
        Frame::Window(Window {
            stream_id: 1,
            increment: 1,
        }),
    )
    .await?;
    expect_close(&mut ws, 4005).await
}

async fn hello_not_json(p: &Probes) -> Outcome<()> {
    let mut ws = upgrade(&p.gw, "probe:bad").await?;
    let mut bytes = vec![0x10, 0, 0, 0, 0, 0];
    bytes.extend_from_slice(b"{\"protocol\":1,");
    send(&mut ws, Message::Binary(bytes.into())).await?;
    // bad_hello, permanent: the worker would send the same HELLO again (PROTOCOL.md §2.4).
    expect_close(&mut ws, 4001).await
}

async fn hello_protocol_2(p: &Probes) -> Outcome<()> {
    let mut h = hello("probe:bad", vec![]);
    h.protocol = 2;
    p.hello_close("probe:bad", h, 4002).await
}

async fn slow_handshake(p: &Probes) -> Outcome<()> {
    let mut ws = upgrade(&p.gw, "probe:slow").await?;
    let start = Instant::now();
    let code = close_code(&mut ws, HANDSHAKE_TIMEOUT + WAIT).await?;
    let after = start.elapsed();
    ensure_eq!(code, 4007, "close code");
    // The 101 came before `start`, so the timeout may end a little before a full period.
    let earliest = HANDSHAKE_TIMEOUT - Duration::from_millis(100);
    ensure!(
        after >= earliest,
        "closed after {after:?}, before the handshake timeout ({HANDSHAKE_TIMEOUT:?})"
    );
    Ok(())
}

async fn refused_upgrade(req: tungstenite::handshake::client::Request) -> Outcome<(u16, String)> {
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req)).await {
        Ok(Err(tungstenite::Error::Http(resp))) => Ok((
            resp.status().as_u16(),
            String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned(),
        )),
        Ok(Err(e)) => fail(format!("expected an HTTP refusal, got {e}")),
        Ok(Ok(_)) => fail("the upgrade was accepted"),
        Err(_) => fail(format!("no answer within {WAIT:?}")),
    }
}

async fn upgrade_without_subprotocol(p: &Probes) -> Outcome<()> {
    let (status, body) = refused_upgrade(upgrade_request(&p.gw, "probe:bad", false)?).await?;
    ensure_eq!(status, 400, "status");
    ensure!(
        body.contains("vyx.1"),
        "the body does not name vyx.1: {body:?}"
    );
    Ok(())
}

async fn upgrade_bad_worker_id(p: &Probes) -> Outcome<()> {
    for id in ["has space", "", &"x".repeat(129)] {
        let mut req = upgrade_request(&p.gw, "placeholder", true)?;
        req.headers_mut().insert(
            "x-vyx-worker-id",
            HeaderValue::from_str(id).map_err(|e| e.to_string())?,
        );
        let (status, body) = refused_upgrade(req).await?;
        ensure_eq!(status, 400, "status for worker id {id:?}");
        ensure!(!body.is_empty(), "no reason given for worker id {id:?}");
    }
    // And nothing was registered by those attempts.
    let conns = wait_connections(&p.client, &p.gw, "has space", "none", WAIT, |c| {
        c.is_empty()
    })
    .await?;
    ensure!(conns.is_empty(), "registered: {conns:?}");
    Ok(())
}

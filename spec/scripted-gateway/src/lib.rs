//! The scripted gateway: a WebSocket server on 127.0.0.1 that speaks `vyx.1` to a worker one
//! move at a time, so that a test can check the worker's side of the protocol (what the real
//! gateway never does on purpose). The conformance probes drive each language's worker with
//! it; `vyx-core`'s host API tests and the Rust SDK's tests drive theirs.
//!
//! ```no_run
//! # async fn demo() -> Result<(), String> {
//! let gateway = vyx_scripted_gateway::ScriptedGateway::bind().await?;
//! // ... start a worker dialing gateway.url() ...
//! let mut session = gateway.attempt(vyx_scripted_gateway::WAIT).await?.accept().await?;
//! session.welcome().await?;
//! let frame = session.next_frame().await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderMap, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use vyx_core::frame::Frame;
use vyx_core::handshake::{Hello, Welcome, PROTOCOL_VERSION, SUBPROTOCOL};
use vyx_core::limits::{INITIAL_WINDOW, MAX_FRAME_SIZE};
use vyx_core::transport::websocket_config;

/// What every step gives: the value, or a sentence saying what went wrong.
pub type Outcome<T> = Result<T, String>;

fn fail<T>(msg: impl Into<String>) -> Outcome<T> {
    Err(msg.into())
}

/// The longest wait of any one step: generous for a busy machine, finite so a bug fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// The listener a worker dials (`VYX_CONNECT`).
pub struct ScriptedGateway {
    listener: TcpListener,
    pub addr: SocketAddr,
}

impl ScriptedGateway {
    pub async fn bind() -> Outcome<ScriptedGateway> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| format!("scripted gateway: bind: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("scripted gateway: {e}"))?;
        Ok(ScriptedGateway { listener, addr })
    }

    /// `ws://127.0.0.1:PORT`, without a path: the worker appends `/_vyx/register`.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The worker's next connection attempt (its TCP connection accepted).
    pub async fn attempt(&self, timeout: Duration) -> Outcome<Attempt> {
        match tokio::time::timeout(timeout, self.listener.accept()).await {
            Ok(Ok((tcp, _))) => {
                let _ = tcp.set_nodelay(true);
                Ok(Attempt {
                    tcp,
                    at: Instant::now(),
                })
            }
            Ok(Err(e)) => fail(format!("scripted gateway: accept: {e}")),
            Err(_) => fail(format!("the worker did not connect within {timeout:?}")),
        }
    }

    /// Fails if the worker connects within `within`.
    pub async fn no_attempt(&self, within: Duration) -> Outcome<()> {
        match tokio::time::timeout(within, self.listener.accept()).await {
            Err(_) => Ok(()),
            Ok(Ok(_)) => fail("the worker connected again"),
            Ok(Err(e)) => fail(format!("scripted gateway: accept: {e}")),
        }
    }
}

/// One connection attempt, before the upgrade is answered.
pub struct Attempt {
    tcp: TcpStream,
    /// When the TCP connection was accepted.
    pub at: Instant,
}

/// How the scripted gateway answers an upgrade request.
enum Answer {
    Upgrade { subprotocol: bool },
    Refuse(u16, String),
}

impl Attempt {
    /// Answers the upgrade with `status` and a plain-text `reason`.
    pub async fn refuse(self, status: u16, reason: &str) -> Outcome<()> {
        let (result, _, _) = self
            .handshake(Answer::Refuse(status, reason.to_owned()))
            .await;
        match result {
            Err(tokio_tungstenite::tungstenite::Error::Http(_)) => Ok(()),
            Err(e) => fail(format!("refusing the upgrade: {e}")),
            Ok(_) => fail("the refusal was not sent"),
        }
    }

    /// Completes the upgrade (selecting `vyx.1`) and reads the worker's first message,
    /// which must be HELLO.
    pub async fn accept(self) -> Outcome<Session> {
        let (result, headers, path) = self.handshake(Answer::Upgrade { subprotocol: true }).await;
        let ws = result.map_err(|e| format!("upgrade: {e}"))?;
        let mut session = Session {
            mute: ws.get_ref().mute.clone(),
            ws,
            request_headers: headers,
            request_path: path,
            hello: None,
            hello_payload: Bytes::new(),
            routes: HashMap::new(),
        };
        session.read_hello().await?;
        Ok(session)
    }

    /// Answers 101 without selecting `vyx.1` (the worker must fail the connection).
    pub async fn accept_without_subprotocol(self) -> Outcome<()> {
        let (result, _, _) = self.handshake(Answer::Upgrade { subprotocol: false }).await;
        result.map(drop).map_err(|e| format!("upgrade: {e}"))
    }

    async fn handshake(
        self,
        answer: Answer,
    ) -> (
        Result<WebSocketStream<Wire>, tokio_tungstenite::tungstenite::Error>,
        HeaderMap,
        String,
    ) {
        let seen = Arc::new(Mutex::new((HeaderMap::new(), String::new())));
        let record = seen.clone();
        // The callback's signature is tungstenite's.
        #[allow(clippy::result_large_err)]
        let callback =
            move |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
                *record.lock().unwrap() = (req.headers().clone(), req.uri().path().to_owned());
                match answer {
                    Answer::Upgrade { subprotocol } => {
                        if subprotocol {
                            resp.headers_mut().insert(
                                "sec-websocket-protocol",
                                HeaderValue::from_static(SUBPROTOCOL),
                            );
                        }
                        Ok(resp)
                    }
                    Answer::Refuse(status, reason) => {
                        let mut e = ErrorResponse::new(Some(reason));
                        *e.status_mut() = StatusCode::from_u16(status).expect("a valid status");
                        e.headers_mut().insert(
                            "content-type",
                            HeaderValue::from_static("text/plain; charset=utf-8"),
                        );
                        Err(e)
                    }
                }
            };
        let wire = Wire {
            tcp: self.tcp,
            mute: Arc::new(AtomicBool::new(false)),
        };
        let result = tokio::time::timeout(
            WAIT,
            tokio_tungstenite::accept_hdr_async_with_config(
                wire,
                callback,
                Some(websocket_config()),
            ),
        )
        .await
        .unwrap_or_else(|_| {
            Err(tokio_tungstenite::tungstenite::Error::Io(
                std::io::Error::new(std::io::ErrorKind::TimedOut, "no upgrade request"),
            ))
        });
        let (headers, path) = std::mem::take(&mut *seen.lock().unwrap());
        (result, headers, path)
    }
}

/// The TCP stream under the scripted gateway's WebSocket. Once muted, everything written is
/// dropped: the gateway still reads what the worker sends (pings, the close) but the worker
/// hears nothing, not even the pongs tungstenite answers by itself.
pub struct Wire {
    tcp: TcpStream,
    mute: Arc<AtomicBool>,
}

impl AsyncRead for Wire {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.mute.load(Ordering::Acquire) {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.mute.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// What the worker sent, as the scripted gateway sees it.
#[derive(Debug)]
pub enum Event {
    Frame(Frame),
    Ping,
    Pong(Bytes),
    /// A close frame: its code (None without one) and reason.
    Close(Option<u16>, String),
    /// The socket ended or failed without a close frame.
    Ended(String),
}

/// An upgraded connection whose HELLO has been read.
pub struct Session {
    ws: WebSocketStream<Wire>,
    mute: Arc<AtomicBool>,
    pub request_headers: HeaderMap,
    pub request_path: String,
    hello: Option<Hello>,
    /// HELLO's JSON payload, exactly as sent.
    pub hello_payload: Bytes,
    /// `"METHOD /pattern"` → route id, from HELLO.
    routes: HashMap<String, u16>,
}

impl Session {
    async fn read_hello(&mut self) -> Outcome<()> {
        let msg = match tokio::time::timeout(WAIT, self.ws.next()).await {
            Err(_) => return fail(format!("no HELLO within {WAIT:?} of the 101")),
            Ok(None) => return fail("the worker closed the socket before HELLO"),
            Ok(Some(Err(e))) => return fail(format!("socket error before HELLO: {e}")),
            Ok(Some(Ok(m))) => m,
        };
        let Message::Binary(bytes) = msg else {
            return fail(format!("the worker's first message is not binary: {msg:?}"));
        };
        if bytes.len() < 6 || bytes[0] != 0x10 {
            let head = &bytes[..bytes.len().min(6)];
            return fail(format!(
                "the worker's first frame is not HELLO: {head:02x?}"
            ));
        }
        self.hello_payload = bytes.slice(6..);
        let hello = match Frame::decode(bytes, MAX_FRAME_SIZE) {
            Ok(Frame::Hello(h)) => h,
            Ok(other) => return fail(format!("expected HELLO, got {other:?}")),
            Err(e) => return fail(format!("HELLO does not decode: {e}")),
        };
        self.routes = hello
            .routes
            .iter()
            .map(|r| (format!("{} {}", r.method, r.path), r.id as u16))
            .collect();
        self.hello = Some(hello);
        Ok(())
    }

    pub fn hello(&self) -> &Hello {
        self.hello.as_ref().expect("read at accept")
    }

    /// The id the worker gave the route `"METHOD /pattern"`.
    pub fn route_id(&self, route: &str) -> Outcome<u16> {
        match self.routes.get(route) {
            Some(id) => Ok(*id),
            None => fail(format!("the worker declares no route {route:?} in HELLO")),
        }
    }

    /// A route id the worker does not serve.
    pub fn unknown_route_id(&self) -> u16 {
        (0..=u16::MAX)
            .rev()
            .find(|id| !self.routes.values().any(|r| r == id))
            .expect("fewer than 65536 routes")
    }

    /// A WELCOME the worker must accept, with this heartbeat and window.
    pub fn welcome_with(&self, heartbeat_ms: u32, initial_window: u32) -> Welcome {
        Welcome {
            protocol: PROTOCOL_VERSION,
            gateway: "vyx-conformance-scripted/0".into(),
            connection_id: format!("scripted-{}", self.ws.get_ref().tcp_port()),
            heartbeat_ms,
            initial_window,
            max_frame_size: MAX_FRAME_SIZE as u32,
            max_concurrency: self.hello().max_concurrency,
            connections: 1,
            features: Vec::new(),
        }
    }

    /// Sends the default WELCOME (a heartbeat long enough not to matter).
    pub async fn welcome(&mut self) -> Outcome<Welcome> {
        let w = self.welcome_with(10_000, INITIAL_WINDOW);
        self.send(Frame::Welcome(w.clone())).await?;
        Ok(w)
    }

    /// Sends a WELCOME frame whose JSON payload is `json` as given.
    pub async fn welcome_raw(&mut self, json: &str) -> Outcome<()> {
        let mut bytes = vec![0x11, 0, 0, 0, 0, 0];
        bytes.extend_from_slice(json.as_bytes());
        self.send_msg(Message::Binary(bytes.into())).await
    }

    pub async fn send(&mut self, frame: Frame) -> Outcome<()> {
        self.send_msg(Message::Binary(frame.encode())).await
    }

    pub async fn send_msg(&mut self, msg: Message) -> Outcome<()> {
        match tokio::time::timeout(WAIT, self.ws.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => fail(format!("send to the worker: {e}")),
            Err(_) => fail(format!("send to the worker blocked for {WAIT:?}")),
        }
    }

    /// Sends one binary message of `len` zero bytes that the worker must refuse as too
    /// large. It goes straight to the socket, not through tungstenite: the worker closes
    /// (4006) and hangs up while the message is still being written, and a write error
    /// inside tungstenite would also fail the read that must then find the close frame.
    pub async fn send_oversized(&mut self, len: usize) -> Outcome<()> {
        let mut header = vec![0x82, 127];
        header.extend_from_slice(&(len as u64).to_be_bytes());
        let tcp = &mut self.ws.get_mut().tcp;
        let write = async {
            tcp.write_all(&header).await?;
            tcp.write_all(&vec![0u8; len]).await?;
            tcp.flush().await
        };
        match tokio::time::timeout(WAIT, write).await {
            Ok(Ok(())) => Ok(()),
            // The worker stopped reading and hung up, as it may once it has refused the
            // message: the close frame it sent first is still there to read.
            Ok(Err(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                Ok(())
            }
            Ok(Err(e)) => fail(format!("send to the worker: {e}")),
            Err(_) => fail(format!("send to the worker blocked for {WAIT:?}")),
        }
    }

    /// Sends a close frame with `code`.
    pub async fn close(&mut self, code: u16, reason: &str) -> Outcome<()> {
        let frame = CloseFrame {
            code: WsCloseCode::from(code),
            reason: reason.to_owned().into(),
        };
        self.send_msg(Message::Close(Some(frame))).await
    }

    /// From now on the worker hears nothing from this connection.
    pub fn mute(&self) {
        self.mute.store(true, Ordering::Release);
    }

    /// The next thing the worker sent, within `timeout` (`None` if nothing came).
    pub async fn next_event(&mut self, timeout: Duration) -> Outcome<Option<Event>> {
        let msg = match tokio::time::timeout(timeout, self.ws.next()).await {
            Err(_) => return Ok(None),
            Ok(None) => return Ok(Some(Event::Ended("socket ended".into()))),
            Ok(Some(Err(e))) => return Ok(Some(Event::Ended(e.to_string()))),
            Ok(Some(Ok(m))) => m,
        };
        Ok(Some(match msg {
            Message::Binary(b) => match Frame::decode(b, MAX_FRAME_SIZE) {
                Ok(f) => Event::Frame(f),
                Err(e) => return fail(format!("the worker sent an invalid frame: {e}")),
            },
            Message::Ping(_) => Event::Ping,
            Message::Pong(p) => Event::Pong(p),
            Message::Close(Some(f)) => Event::Close(Some(u16::from(f.code)), f.reason.to_string()),
            Message::Close(None) => Event::Close(None, String::new()),
            Message::Text(t) => return fail(format!("the worker sent a text message: {t:?}")),
            Message::Frame(_) => return fail("the worker sent a raw frame"),
        }))
    }

    /// The next frame (pings and pongs skipped); a close or the end fails.
    pub async fn next_frame(&mut self) -> Outcome<Frame> {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.next_event(deadline - Instant::now()).await? {
                None => return fail(format!("no frame from the worker within {WAIT:?}")),
                Some(Event::Frame(f)) => return Ok(f),
                Some(Event::Ping | Event::Pong(_)) => {}
                Some(Event::Close(code, reason)) => {
                    return fail(format!("the worker closed: {code:?} {reason:?}"))
                }
                Some(Event::Ended(why)) => return fail(format!("the connection ended: {why}")),
            }
        }
    }

    /// Waits for the worker's close frame and returns its code; frames before it are
    /// skipped (responses already on their way).
    pub async fn close_code(&mut self, timeout: Duration) -> Outcome<u16> {
        let deadline = Instant::now() + timeout;
        loop {
            match self
                .next_event(deadline.saturating_duration_since(Instant::now()))
                .await?
            {
                None => return fail(format!("the worker did not close within {timeout:?}")),
                Some(Event::Close(Some(code), _)) => return Ok(code),
                Some(Event::Close(None, _)) => return fail("the worker closed without a code"),
                Some(Event::Ended(why)) => {
                    return fail(format!("the connection ended without a close frame: {why}"))
                }
                Some(_) => {}
            }
        }
    }

    /// Fails if the worker sends anything but pings and pongs within `within`.
    pub async fn quiet(&mut self, within: Duration) -> Outcome<()> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            match self.next_event(left).await? {
                None => return Ok(()),
                Some(Event::Ping | Event::Pong(_)) => {}
                Some(other) => return fail(format!("expected nothing, got {other:?}")),
            }
        }
    }
}

impl Wire {
    fn tcp_port(&self) -> u16 {
        self.tcp.peer_addr().map(|a| a.port()).unwrap_or(0)
    }
}

//! The gateway's side of one worker connection: handshake, the reader loop, heartbeat,
//! the stream table, and DRAIN.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::{debug, info, warn};
use vyx_core::error::{CloseCode, ResetCode};
use vyx_core::flow::SendWindow;
use vyx_core::frame::{self, Frame, HeaderList, Reset};
use vyx_core::handshake::{self, Drain, ErrorMessage, HandshakeError, RouteSpec, Welcome};
use vyx_core::limits::MAX_FRAME_SIZE;
use vyx_core::transport::{sleep_until_opt, write_loop, Heartbeat, Outgoing};

use crate::auth::Admission;
use crate::registry::WorkerGroup;
use crate::routes::RouteKey;
use crate::Shared;

/// A connection's routes: declared key → the route id the worker gave it.
pub type ConnRoutes = HashMap<RouteKey, u16>;

/// Why a stream failed, as the proxy maps it to a status.
#[derive(Debug, Clone)]
pub enum Failure {
    Reset(ResetCode, String),
    ConnectionLost(String),
    /// The connection takes no new streams (draining or closed); try another replica.
    Draining,
}

/// The worker's response head.
pub struct ResponseHead {
    pub status: u16,
    pub headers: HeaderList,
    pub end_stream: bool,
}

struct GwStream {
    head_tx: Option<oneshot::Sender<Result<ResponseHead, Failure>>>,
    body_tx: Option<mpsc::UnboundedSender<Result<Bytes, Failure>>>,
    send: Arc<SendWindow<Failure>>,
    recv_credit: Arc<AtomicI64>,
    request_done: bool,
    response_done: bool,
}

struct StreamTable {
    next_id: u32,
    map: HashMap<u32, GwStream>,
}

/// What the proxy gets back when it opens a stream.
pub struct OpenStream {
    pub id: u32,
    pub head: oneshot::Receiver<Result<ResponseHead, Failure>>,
    pub body: mpsc::UnboundedReceiver<Result<Bytes, Failure>>,
    pub send: Arc<SendWindow<Failure>>,
    pub recv_credit: Arc<AtomicI64>,
}

/// One registered worker connection.
pub struct WorkerConn {
    /// Order of arrival, for listings.
    pub serial: u64,
    pub connection_id: String,
    pub worker_id: String,
    pub instance: String,
    pub sdk: String,
    pub addr: SocketAddr,
    pub since: SystemTime,
    pub max_concurrency: usize,
    pub initial_window: u32,
    pub routes: ArcSwap<ConnRoutes>,
    /// Every route id this connection has declared: an id keeps its route for the
    /// connection's life, so a REQUEST racing a ROUTES update never means another route.
    route_ids: Mutex<HashMap<u16, RouteKey>>,
    admission: Admission,
    /// Request body bytes sent on this connection count here (the gateway's total).
    pub bytes_to_worker: prometheus_client::metrics::counter::Counter,
    /// Streams open or reserved on this connection.
    pub in_flight: AtomicUsize,
    pub draining: AtomicBool,
    closed: AtomicBool,
    tx: mpsc::UnboundedSender<Outgoing>,
    streams: Mutex<StreamTable>,
    slot_freed: Arc<Notify>,
}

impl WorkerConn {
    pub fn send(&self, out: Outgoing) {
        let _ = self.tx.send(out);
    }

    /// Gives back a slot reserved by `reserve_replica` that was never used for a stream.
    pub fn release_slot(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.after_stream_end();
    }

    /// Queues a REQUEST (encoded with stream id 0) under a fresh stream id. Ids are taken
    /// and queued under one lock, so they reach the socket in increasing order. The frame is
    /// taken only on success: on failure the caller still has it for another replica.
    pub fn open_stream(
        &self,
        request: &mut BytesMut,
        end_stream: bool,
    ) -> Result<OpenStream, Failure> {
        let mut table = self.streams.lock().unwrap();
        if self.closed.load(Ordering::Acquire) || self.draining.load(Ordering::Acquire) {
            return Err(Failure::Draining);
        }
        let id = table.next_id;
        if id == u32::MAX {
            drop(table);
            self.start_drain("stream ids exhausted", Duration::from_secs(30));
            return Err(Failure::Draining);
        }
        table.next_id += 1;
        frame::set_stream_id(request, id);
        let (head_tx, head) = oneshot::channel();
        let (body_tx, body) = mpsc::unbounded_channel();
        let send = Arc::new(SendWindow::new(self.initial_window));
        let recv_credit = Arc::new(AtomicI64::new(self.initial_window as i64));
        table.map.insert(
            id,
            GwStream {
                head_tx: Some(head_tx),
                body_tx: Some(body_tx),
                send: send.clone(),
                recv_credit: recv_credit.clone(),
                request_done: end_stream,
                response_done: false,
            },
        );
        let _ = self
            .tx
            .send(Outgoing::Frame(std::mem::take(request).freeze()));
        Ok(OpenStream {
            id,
            head,
            body,
            send,
            recv_credit,
        })
    }

    /// The request body has been sent in full (END_STREAM queued).
    pub fn request_sent(&self, id: u32) {
        let mut table = self.streams.lock().unwrap();
        if let Some(s) = table.map.get_mut(&id) {
            s.request_done = true;
            if s.response_done {
                table.map.remove(&id);
                drop(table);
                self.stream_ended();
            }
        }
    }

    /// Abandons a stream the client no longer wants: RESET to the worker, slot freed.
    pub fn cancel_stream(&self, id: u32, code: ResetCode, reason: &str) {
        let removed = self.streams.lock().unwrap().map.remove(&id);
        if let Some(s) = removed {
            s.send.fail(Failure::Reset(code, reason.to_string()));
            self.send(Outgoing::Frame(Reset::new(id, code, reason).encode()));
            self.stream_ended();
        }
    }

    fn stream_ended(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.after_stream_end();
    }

    fn after_stream_end(&self) {
        self.slot_freed.notify_waiters();
        if self.draining.load(Ordering::Acquire) && self.in_flight.load(Ordering::Acquire) == 0 {
            self.send(Outgoing::Close(CloseCode::Normal, "drained".into()));
        }
    }

    /// Stops new streams on this connection and closes it once the open ones finish.
    pub fn start_drain(&self, reason: &str, deadline: Duration) {
        // Under the stream lock, so that no REQUEST can follow the DRAIN on the socket.
        let table = self.streams.lock().unwrap();
        if self.draining.swap(true, Ordering::AcqRel) {
            return;
        }
        self.send(Outgoing::Frame(
            Frame::Drain(Drain {
                reason: reason.into(),
                deadline_ms: deadline.as_millis() as u64,
            })
            .encode(),
        ));
        drop(table);
        self.after_stream_end();
    }

    /// Fails every open stream (the connection is gone).
    fn fail_all(&self, why: &str) {
        let streams = {
            let mut table = self.streams.lock().unwrap();
            self.closed.store(true, Ordering::Release);
            std::mem::take(&mut table.map)
        };
        let n = streams.len();
        for (_, mut s) in streams {
            let f = Failure::ConnectionLost(why.to_string());
            s.send.fail(f.clone());
            if let Some(tx) = s.head_tx.take() {
                let _ = tx.send(Err(f.clone()));
            }
            if let Some(tx) = s.body_tx.take() {
                let _ = tx.send(Err(f));
            }
        }
        self.in_flight.fetch_sub(n, Ordering::AcqRel);
        self.slot_freed.notify_waiters();
    }
}

/// Route keys and ids from declared routes.
pub fn conn_routes(routes: &[RouteSpec]) -> ConnRoutes {
    routes
        .iter()
        .map(|r| {
            (
                RouteKey {
                    method: r.method.as_str().into(),
                    path: r.path.as_str().into(),
                },
                r.id as u16, // validated to 0..=65535
            )
        })
        .collect()
}

/// Whether the worker stays within `limits.routes_per_worker`.
fn check_route_count(n: usize, shared: &Shared) -> Result<(), HandshakeError> {
    let max = shared.config.routes_per_worker;
    if n > max {
        return Err(HandshakeError::new(
            CloseCode::BadHello,
            format!("{n} routes declared; this gateway allows at most {max} per worker (limits.routes_per_worker)"),
        ));
    }
    Ok(())
}

/// Whether `path` lies under `prefix`, at a segment boundary: `/hello` covers `/hello` and
/// `/hello/{name}`, not `/helloworld`.
fn under_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'),
        None => false,
    }
}

/// Whether every route falls under one of the allowed prefixes.
fn check_allowed(routes: &[RouteSpec], admission: &Admission) -> Result<(), HandshakeError> {
    let Some(prefixes) = &admission.allowed_prefixes else {
        return Ok(());
    };
    let outside: Vec<String> = routes
        .iter()
        .filter(|r| !prefixes.iter().any(|p| under_prefix(&r.path, p)))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    if outside.is_empty() {
        return Ok(());
    }
    Err(HandshakeError::new(
        CloseCode::RouteNotAllowed,
        format!(
            "routes outside the allowed prefixes {prefixes:?}: {}",
            outside.join(", ")
        ),
    ))
}

/// Serves one upgraded worker socket from HELLO to close.
pub async fn serve<S>(
    ws: S,
    shared: Arc<Shared>,
    worker_id: String,
    admission: Admission,
    addr: SocketAddr,
) where
    S: Stream<Item = Result<Message, tungstenite::Error>>
        + futures_util::Sink<Message, Error = tungstenite::Error>
        + Unpin
        + Send
        + 'static,
{
    let (sink, mut stream) = ws.split();
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_loop(sink, rx));
    let refuse = |e: HandshakeError| {
        warn!(worker_id = %worker_id, %addr, code = %e.code, reason = %e.message, "worker refused");
        shared.metrics.rejected(e.code.name());
        let _ = tx.send(Outgoing::Frame(
            Frame::Error(ErrorMessage {
                code: e.code as u16,
                message: e.message.clone(),
            })
            .encode(),
        ));
        let _ = tx.send(Outgoing::Close(e.code, e.message));
    };

    // HELLO, within the handshake timeout.
    let hello = match tokio::time::timeout(shared.config.handshake_timeout, stream.next()).await {
        Err(_) => {
            refuse(HandshakeError::new(
                CloseCode::HandshakeTimeout,
                format!("no HELLO within {:?}", shared.config.handshake_timeout),
            ));
            return finish_writer(writer, tx).await;
        }
        Ok(Some(Ok(Message::Binary(b)))) => match Frame::decode(b, MAX_FRAME_SIZE) {
            Ok(Frame::Hello(h)) => h,
            Ok(Frame::Error(e)) => {
                debug!(code = e.code, message = %e.message, "worker gave up during the handshake");
                return finish_writer(writer, tx).await;
            }
            Ok(other) => {
                refuse(HandshakeError::new(
                    CloseCode::ProtocolViolation,
                    format!("expected HELLO, got {}", other.name()),
                ));
                return finish_writer(writer, tx).await;
            }
            Err(e) => {
                refuse(HandshakeError::new(e.close_code(), e.to_string()));
                return finish_writer(writer, tx).await;
            }
        },
        Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => {
            return finish_writer(writer, tx).await;
        }
        Ok(Some(Ok(_))) => {
            refuse(HandshakeError::new(
                CloseCode::ProtocolViolation,
                "expected HELLO as a binary message",
            ));
            return finish_writer(writer, tx).await;
        }
    };
    if let Err(e) = hello
        .validate(&worker_id)
        .and_then(|_| check_route_count(hello.routes.len(), &shared))
        .and_then(|_| check_allowed(&hello.routes, &admission))
    {
        refuse(e);
        return finish_writer(writer, tx).await;
    }

    let group = shared.registry.group(&worker_id);
    let serial = shared.next_serial.fetch_add(1, Ordering::Relaxed);
    let max_concurrency = hello
        .max_concurrency
        .min(shared.config.max_concurrency_per_connection);
    let routes = conn_routes(&hello.routes);
    let conn = Arc::new(WorkerConn {
        serial,
        connection_id: format!("c{serial}"),
        worker_id: worker_id.clone(),
        instance: hello.instance.clone(),
        sdk: hello.sdk.clone(),
        addr,
        since: SystemTime::now(),
        max_concurrency: max_concurrency as usize,
        initial_window: shared.config.initial_window,
        route_ids: Mutex::new(routes.iter().map(|(k, id)| (*id, k.clone())).collect()),
        routes: ArcSwap::from_pointee(routes),
        admission,
        bytes_to_worker: shared.metrics.bytes_to_workers.clone(),
        in_flight: AtomicUsize::new(0),
        draining: AtomicBool::new(false),
        closed: AtomicBool::new(false),
        tx: tx.clone(),
        streams: Mutex::new(StreamTable {
            next_id: 1,
            map: HashMap::new(),
        }),
        slot_freed: group.slot_freed.clone(),
    });
    let welcome = Welcome {
        protocol: handshake::PROTOCOL_VERSION,
        gateway: concat!("vyx/", env!("CARGO_PKG_VERSION")).into(),
        connection_id: conn.connection_id.clone(),
        heartbeat_ms: shared.config.heartbeat.as_millis() as u32,
        initial_window: shared.config.initial_window,
        max_frame_size: MAX_FRAME_SIZE as u32,
        max_concurrency,
    };
    {
        // Streams open under this lock: holding it from registration until WELCOME is
        // queued keeps any REQUEST for the new replica behind its WELCOME.
        let _streams = conn.streams.lock().unwrap();
        if let Err(e) = shared.registry.register(&conn, &group) {
            refuse(e);
            drop(_streams);
            return finish_writer(writer, tx).await;
        }
        conn.send(Outgoing::Frame(Frame::Welcome(welcome).encode()));
    }
    shared.metrics.registered(&conn.worker_id, &conn.instance);
    if shared.shutting_down.load(Ordering::Acquire) {
        conn.start_drain("gateway shutting down", shared.config.drain_grace);
    }
    info!(
        worker_id = %conn.worker_id,
        instance = %conn.instance,
        connection = %conn.connection_id,
        %addr,
        routes = hello.routes.len(),
        "worker registered"
    );
    // Not held for the connection's life (the routes live on in `conn`).
    drop(hello);

    let end = read_loop(&conn, &group, &shared, &mut stream).await;
    shared.registry.unregister(&conn);
    conn.fail_all(&end);
    info!(worker_id = %conn.worker_id, connection = %conn.connection_id, reason = %end, "worker disconnected");
    drop(conn);
    finish_writer(writer, tx).await;
}

async fn finish_writer(writer: tokio::task::JoinHandle<()>, tx: mpsc::UnboundedSender<Outgoing>) {
    // Response bodies may still hold the connection's sender: a final close (a no-op after
    // one already sent) ends the writer rather than waiting for them.
    let _ = tx.send(Outgoing::Close(CloseCode::Normal, String::new()));
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
}

async fn read_loop<S>(
    conn: &Arc<WorkerConn>,
    group: &Arc<WorkerGroup>,
    shared: &Arc<Shared>,
    stream: &mut S,
) -> String
where
    S: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    let mut heartbeat = Heartbeat::new(shared.config.heartbeat);
    let mut drain_deadline: Option<Instant> = None;
    loop {
        tokio::select! {
            msg = stream.next() => {
                heartbeat.received();
                match msg {
                    Some(Ok(Message::Binary(b))) => {
                        match on_frame(conn, group, shared, b) {
                            Ok(Some(d)) => {
                                drain_deadline.get_or_insert(Instant::now() + d);
                            }
                            Ok(None) => {}
                            Err((code, why)) => {
                                warn!(worker_id = %conn.worker_id, connection = %conn.connection_id, %code, reason = %why, "closing worker connection");
                                conn.send(Outgoing::Frame(Frame::Error(ErrorMessage { code: code as u16, message: why.clone() }).encode()));
                                conn.send(Outgoing::Close(code, why.clone()));
                                return format!("{code}: {why}");
                            }
                        }
                    }
                    Some(Ok(Message::Text(_))) => {
                        let why = "text message; the protocol uses binary messages only".to_string();
                        warn!(worker_id = %conn.worker_id, connection = %conn.connection_id, reason = %why, "closing worker connection");
                        conn.send(Outgoing::Close(CloseCode::ProtocolViolation, why.clone()));
                        return format!("{}: {why}", CloseCode::ProtocolViolation);
                    }
                    Some(Ok(Message::Close(f))) => return close_reason(conn, f),
                    Some(Ok(_)) => {}
                    Some(Err(tungstenite::Error::Capacity(e))) => {
                        let why = e.to_string();
                        warn!(worker_id = %conn.worker_id, connection = %conn.connection_id, reason = %why, "closing worker connection");
                        conn.send(Outgoing::Close(CloseCode::FrameTooLarge, why.clone()));
                        return format!("{}: {why}", CloseCode::FrameTooLarge);
                    }
                    Some(Err(e)) => return format!("connection lost: {e}"),
                    None => return "connection lost: socket closed without a close frame".into(),
                }
            }
            tick = heartbeat.tick() => {
                if let Err(silence) = tick {
                    conn.send(Outgoing::Close(CloseCode::HeartbeatTimeout, "no frame or pong from the worker".into()));
                    return format!("{}: worker silent for {silence:?}", CloseCode::HeartbeatTimeout);
                }
                conn.send(Outgoing::Ping);
            }
            _ = sleep_until_opt(drain_deadline) => {
                let open = conn.in_flight.load(Ordering::Acquire);
                conn.send(Outgoing::Close(CloseCode::DrainTimeout, format!("{open} streams still open at the drain deadline")));
                return format!("{}: {open} streams open at the deadline", CloseCode::DrainTimeout);
            }
        }
    }
}

/// How a connection ended with a close frame from the worker: its answer to the gateway's
/// close once a drain is complete (a clean end), or a close of its own.
fn close_reason(conn: &WorkerConn, frame: Option<CloseFrame>) -> String {
    let Some(f) = frame else {
        return "closed by worker (no close code)".into();
    };
    let code = u16::from(f.code);
    let name = CloseCode::from_u16(code).map_or(code.to_string(), |c| c.to_string());
    if code == CloseCode::Normal as u16 && conn.draining.load(Ordering::Acquire) {
        format!("drained, closed cleanly: {name} {}", f.reason)
    } else {
        format!("closed by worker: {name} {}", f.reason)
    }
}

type Violation = (CloseCode, String);

fn violation(msg: String) -> Violation {
    (CloseCode::ProtocolViolation, msg)
}

/// Handles one frame from a worker; `Ok(Some(deadline))` when the worker starts draining.
fn on_frame(
    conn: &Arc<WorkerConn>,
    group: &Arc<WorkerGroup>,
    shared: &Arc<Shared>,
    bytes: Bytes,
) -> Result<Option<Duration>, Violation> {
    let frame =
        Frame::decode(bytes, MAX_FRAME_SIZE).map_err(|e| (e.close_code(), e.to_string()))?;
    let mut table = conn.streams.lock().unwrap();
    let check_opened = |id: u32, what: &str, next_id: u32| {
        if id >= next_id {
            Err(violation(format!(
                "{what} for stream {id}, which was never opened"
            )))
        } else {
            Ok(())
        }
    };
    match frame {
        Frame::Response(r) => {
            check_opened(r.stream_id, "RESPONSE", table.next_id)?;
            let Some(s) = table.map.get_mut(&r.stream_id) else {
                return Ok(None);
            };
            let Some(head_tx) = s.head_tx.take() else {
                stream_protocol_error(conn, table, r.stream_id, "second RESPONSE on a stream");
                return Ok(None);
            };
            if r.end_stream {
                s.response_done = true;
                s.body_tx = None;
            }
            let _ = head_tx.send(Ok(ResponseHead {
                status: r.status,
                headers: r.headers,
                end_stream: r.end_stream,
            }));
            maybe_finish(conn, table, r.stream_id);
        }
        Frame::Data(d) => {
            check_opened(d.stream_id, "DATA", table.next_id)?;
            let Some(s) = table.map.get_mut(&d.stream_id) else {
                return Ok(None);
            };
            if s.head_tx.is_some() {
                stream_protocol_error(conn, table, d.stream_id, "DATA before RESPONSE");
                return Ok(None);
            }
            if s.response_done {
                stream_protocol_error(conn, table, d.stream_id, "DATA after END_STREAM");
                return Ok(None);
            }
            let len = d.data.len() as i64;
            shared.metrics.bytes_from_workers.inc_by(len as u64);
            if s.recv_credit.fetch_sub(len, Ordering::AcqRel) - len < 0 {
                return Err((
                    CloseCode::FlowControl,
                    format!("DATA on stream {} exceeds its window", d.stream_id),
                ));
            }
            if let Some(tx) = &s.body_tx {
                if !d.data.is_empty() {
                    let _ = tx.send(Ok(d.data));
                }
            }
            if d.end_stream {
                s.response_done = true;
                s.body_tx = None;
                maybe_finish(conn, table, d.stream_id);
            }
        }
        Frame::Window(w) => {
            check_opened(w.stream_id, "WINDOW", table.next_id)?;
            if let Some(s) = table.map.get(&w.stream_id) {
                if !s.send.grant(w.increment) {
                    return Err((
                        CloseCode::FlowControl,
                        format!("WINDOW takes stream {} past 2^31-1", w.stream_id),
                    ));
                }
            }
        }
        Frame::Reset(r) => {
            check_opened(r.stream_id, "RESET", table.next_id)?;
            let code = ResetCode::from_u32(r.code);
            if code == ResetCode::NoError {
                // The worker finished its response and wants no more of the request body.
                if let Some(s) = table.map.get_mut(&r.stream_id) {
                    s.send.fail(Failure::Reset(code, r.reason));
                    s.request_done = true;
                    maybe_finish(conn, table, r.stream_id);
                }
                return Ok(None);
            }
            if let Some(s) = table.map.remove(&r.stream_id) {
                drop(table);
                debug!(stream = r.stream_id, code = code.name(), reason = %r.reason, "stream reset by worker");
                let f = Failure::Reset(code, r.reason);
                end_stream_with(conn, s, f);
            }
        }
        Frame::Drain(d) => {
            conn.draining.store(true, Ordering::Release);
            drop(table);
            info!(worker_id = %conn.worker_id, connection = %conn.connection_id, reason = %d.reason, deadline_ms = d.deadline_ms, "worker draining");
            conn.after_stream_end();
            return Ok(Some(Duration::from_millis(d.deadline_ms)));
        }
        Frame::Routes(r) => {
            drop(table);
            let refused = |e: HandshakeError| (e.code, e.message);
            handshake::validate_routes(&r.routes).map_err(refused)?;
            check_route_count(r.routes.len(), shared).map_err(refused)?;
            check_allowed(&r.routes, &conn.admission).map_err(refused)?;
            let routes = conn_routes(&r.routes);
            let mut ids = conn.route_ids.lock().unwrap();
            for (key, id) in &routes {
                if ids.get(id).is_some_and(|k| k != key) {
                    return Err((
                        CloseCode::BadHello,
                        format!(
                            "ROUTES reuses route id {id} for {key}; it named {} before",
                            ids[id]
                        ),
                    ));
                }
            }
            shared
                .registry
                .update_routes(conn, group, routes.clone())
                .map_err(refused)?;
            ids.extend(routes.into_iter().map(|(k, id)| (id, k)));
            info!(worker_id = %conn.worker_id, connection = %conn.connection_id, routes = r.routes.len(), "routes updated");
        }
        Frame::Error(e) => {
            warn!(worker_id = %conn.worker_id, code = e.code, message = %e.message, "worker reported an error");
        }
        Frame::Hello(_) => return Err(violation("second HELLO on a registered connection".into())),
        other => {
            return Err(violation(format!(
                "{} frame is not sent by a worker",
                other.name()
            )))
        }
    }
    Ok(None)
}

/// Removes a stream whose both directions are done.
fn maybe_finish(conn: &WorkerConn, mut table: std::sync::MutexGuard<'_, StreamTable>, id: u32) {
    let done = table
        .map
        .get(&id)
        .is_some_and(|s| s.request_done && s.response_done);
    if done {
        table.map.remove(&id);
        drop(table);
        conn.stream_ended();
    }
}

/// Resets a stream the worker got wrong (RESET `protocol_error`), and fails it towards the
/// client; the connection goes on.
fn stream_protocol_error(
    conn: &WorkerConn,
    mut table: std::sync::MutexGuard<'_, StreamTable>,
    id: u32,
    why: &str,
) {
    let Some(s) = table.map.remove(&id) else {
        return;
    };
    drop(table);
    warn!(worker_id = %conn.worker_id, stream = id, reason = why, "stream protocol error");
    conn.send(Outgoing::Frame(
        Reset::new(id, ResetCode::ProtocolError, why).encode(),
    ));
    end_stream_with(
        conn,
        s,
        Failure::Reset(ResetCode::ProtocolError, why.to_string()),
    );
}

fn end_stream_with(conn: &WorkerConn, mut s: GwStream, f: Failure) {
    s.send.fail(f.clone());
    if let Some(tx) = s.head_tx.take() {
        let _ = tx.send(Err(f.clone()));
    }
    if let Some(tx) = s.body_tx.take() {
        let _ = tx.send(Err(f));
    }
    conn.stream_ended();
}

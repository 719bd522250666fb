//! One live connection on the worker side, after the handshake: a reader loop that owns
//! the socket's read half, a writer task that owns the write half, and heartbeat.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::{debug, info, warn};

use super::stream::{finish_direction, IncomingRequest, Stream, StreamError, StreamShared};
use super::{ConnectionState, SessionEvents, WsStream};
use crate::error::{CloseCode, ResetCode};
use crate::features::{self, Features};
use crate::frame::{kind, DecodeFailure, Frame, Reset};
use crate::handshake::{Drain, Welcome};
use crate::heartbeat::Heartbeat;
use crate::limits::MAX_TRAILERS_SIZE;
pub(crate) use crate::transport::Outgoing;
use crate::transport::{sleep_until_opt, write_loop_framed, OutQueue};
use tokio_tungstenite::MaybeTlsStream;

/// What the connection's streams share with it.
pub(crate) struct ConnShared {
    queue: Arc<OutQueue>,
    pub(crate) initial_window: u32,
    /// WELCOME listed `trailers` (§3.10): TRAILERS may cross this connection both ways.
    pub(crate) trailers: bool,
    /// WELCOME listed `informational` (§3.11): the host may send 1xx heads.
    pub(crate) informational: bool,
    pub(crate) streams: Mutex<HashMap<u32, Arc<StreamShared>>>,
}

impl ConnShared {
    pub(crate) fn send(&self, out: Outgoing) {
        // Dropped once the writer is gone, i.e. the connection is ending; every stream
        // learns that from the reader when it fails them.
        super::held_wakes::push(&self.queue, out);
    }

    pub(crate) fn finish_response(&self, id: u32) {
        let mut streams = self.streams.lock().unwrap();
        if let Some(s) = streams.get(&id) {
            s.response_done.store(true, Ordering::Release);
        }
        finish_direction(&mut streams, id);
    }
}

/// How a connection ended.
#[derive(Debug)]
pub(crate) enum ConnEnd {
    /// The gateway closed the socket with this code and reason.
    Closed(Option<u16>, String),
    /// The socket failed or ended without a close frame.
    Lost(String),
    /// The gateway stayed silent past the heartbeat deadline.
    HeartbeatTimeout,
    /// The gateway broke the protocol; we closed with this code.
    Violation(CloseCode, String),
    /// We drained and the connection closed, as the engine asked.
    Drained,
}

impl std::fmt::Display for ConnEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnEnd::Closed(Some(code), reason) => match CloseCode::from_u16(*code) {
                Some(c) => write!(f, "gateway closed the connection: {c} {reason}"),
                None => write!(f, "gateway closed the connection: {code} {reason}"),
            },
            ConnEnd::Closed(None, _) => write!(f, "gateway closed the connection"),
            ConnEnd::Lost(e) => write!(f, "connection lost: {e}"),
            ConnEnd::HeartbeatTimeout => write!(f, "gateway silent past the heartbeat deadline"),
            ConnEnd::Violation(code, msg) => {
                write!(f, "gateway broke the protocol ({code}): {msg}")
            }
            ConnEnd::Drained => write!(f, "drained"),
        }
    }
}

pub(crate) struct RunArgs<'a> {
    pub(crate) welcome: &'a Welcome,
    pub(crate) events: &'a SessionEvents,
    pub(crate) stop: &'a mut watch::Receiver<Option<Duration>>,
    /// The route ids this worker declared, sorted: others are answered 404 here.
    pub(crate) routes: &'a [u16],
    /// Numbers this connection among the engine's, for stream slots.
    pub(crate) seq: u32,
}

/// Serves one connection until it ends.
pub(crate) async fn run(ws: WsStream, args: RunArgs<'_>) -> ConnEnd {
    // On a plain socket the writer frames binary messages itself (one pass over a body
    // byte instead of three, transport::Wire); TLS records are tungstenite's to write.
    let frames = match ws.get_ref() {
        MaybeTlsStream::Plain(wire) => Some(wire.frame_writer()),
        _ => None,
    };
    let (sink, mut stream) = ws.split();
    // Response DATA is held to the gateway's windows; the queue adds no limit of its own.
    let queue = OutQueue::new(usize::MAX);
    let writer = tokio::spawn(write_loop_framed(sink, frames, queue.clone()));
    let conn = Arc::new(ConnShared {
        queue,
        initial_window: args.welcome.initial_window,
        trailers: args
            .welcome
            .features
            .iter()
            .any(|f| f == features::TRAILERS),
        informational: args
            .welcome
            .features
            .iter()
            .any(|f| f == features::INFORMATIONAL),
        streams: Mutex::new(HashMap::new()),
    });
    let mut reader = Reader {
        conn: conn.clone(),
        highest: 0,
        gateway_draining: false,
        max_concurrency: args.welcome.max_concurrency as usize,
        max_frame: args.welcome.max_frame_size as usize,
        features: Features::from_names(&args.welcome.features),
        events: args.events,
        routes: args.routes,
        seq: args.seq,
        error_message: None,
    };

    let mut heartbeat = Heartbeat::new(Duration::from_millis(args.welcome.heartbeat_ms as u64));
    let mut drain_deadline: Option<Instant> = None;
    // A drain asked for before this connection existed applies to it at once.
    let mut stop_pending = args.stop.borrow().is_some();
    let mut engine_gone = false;

    let end = loop {
        if stop_pending && drain_deadline.is_none() {
            stop_pending = false;
            let deadline = args.stop.borrow().unwrap_or_default();
            drain_deadline = Some(Instant::now() + deadline);
            args.events.state(ConnectionState::Draining);
            info!(
                deadline_ms = deadline.as_millis() as u64,
                "draining: no new requests"
            );
            conn.send(Outgoing::Frame(
                Frame::Drain(Drain {
                    reason: "worker stopping".into(),
                    deadline_ms: deadline.as_millis() as u64,
                })
                .encode(),
            ));
        }
        tokio::select! {
            msg = stream.next() => {
                heartbeat.received();
                match msg {
                    Some(Ok(Message::Binary(bytes))) => {
                        if let Err((code, why)) = reader.on_frame(bytes) {
                            conn.send(Outgoing::Close(code, why.clone()));
                            break ConnEnd::Violation(code, why);
                        }
                    }
                    Some(Ok(Message::Text(_))) => {
                        let why = "text message; the protocol uses binary messages only".to_string();
                        conn.send(Outgoing::Close(CloseCode::ProtocolViolation, why.clone()));
                        break ConnEnd::Violation(CloseCode::ProtocolViolation, why);
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let (code, reason) = match frame {
                            Some(f) => (Some(u16::from(f.code)), f.reason.to_string()),
                            None => (None, String::new()),
                        };
                        if drain_deadline.is_some() && matches!(code, Some(1000) | None) {
                            break ConnEnd::Drained;
                        }
                        // The ERROR before the close carries the whole message (§3.8).
                        let reason = reader.error_message.take().unwrap_or(reason);
                        break ConnEnd::Closed(code, reason);
                    }
                    Some(Ok(_)) => {} // ping (answered by tungstenite), pong
                    Some(Err(tungstenite::Error::Capacity(e))) => {
                        let why = e.to_string();
                        conn.send(Outgoing::Close(CloseCode::FrameTooLarge, why.clone()));
                        break ConnEnd::Violation(CloseCode::FrameTooLarge, why);
                    }
                    Some(Err(e)) => break ConnEnd::Lost(e.to_string()),
                    None => break ConnEnd::Lost("socket closed without a close frame".into()),
                }
            }
            tick = heartbeat.tick() => {
                if tick.is_err() {
                    conn.send(Outgoing::Close(CloseCode::HeartbeatTimeout, "no frame or pong from the gateway".into()));
                    break ConnEnd::HeartbeatTimeout;
                }
                conn.send(Outgoing::Ping);
            }
            _ = sleep_until_opt(drain_deadline) => {
                let open = conn.streams.lock().unwrap().len();
                warn!(open, "drain deadline passed with streams still open");
                conn.send(Outgoing::Close(CloseCode::DrainTimeout, format!("{open} streams still open at the drain deadline")));
                break ConnEnd::Drained;
            }
            changed = args.stop.changed(), if drain_deadline.is_none() && !engine_gone => {
                match changed {
                    Ok(()) => stop_pending = args.stop.borrow().is_some(),
                    // Every Engine handle is gone: nobody can pull requests any more.
                    Err(_) => {
                        engine_gone = true;
                        stop_pending = true;
                    }
                }
            }
        }
    };

    // Every open stream fails: handlers see ConnectionLost; the gateway answers 502.
    let streams = std::mem::take(&mut *conn.streams.lock().unwrap());
    for (_, stream) in streams {
        stream.fail(StreamError::ConnectionLost);
        args.events.reset(stream);
    }
    drop(reader);
    // Handlers may still hold the connection, so the queue does not close by itself: a
    // final close ends the writer. After the gateway's close it flushes our answer to it
    // (the closing handshake a drain ends with); after one of ours it is a no-op. Bounded,
    // in case the socket no longer drains.
    conn.send(Outgoing::Close(CloseCode::Normal, String::new()));
    drop(conn);
    let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
    end
}

struct Reader<'a> {
    conn: Arc<ConnShared>,
    highest: u32,
    /// The gateway sent DRAIN: it must open no stream after that.
    gateway_draining: bool,
    max_concurrency: usize,
    max_frame: usize,
    /// The extensions WELCOME granted this connection (§2.6).
    features: Features,
    events: &'a SessionEvents,
    routes: &'a [u16],
    seq: u32,
    /// The last ERROR's message: the cause a close names in full (its reason may be cut).
    error_message: Option<String>,
}

type Violation = (CloseCode, String);

impl Reader<'_> {
    fn on_frame(&mut self, bytes: Bytes) -> Result<(), Violation> {
        let frame = match Frame::decode_scoped(bytes, self.max_frame) {
            Ok(frame) => frame,
            // A REQUEST head that does not decode (a bad target, method, header, param name,
            // a truncated or overlong head) fails its stream only (§8): the id is opened as
            // any REQUEST's, then RESET `protocol_error`; the connection serves on.
            Err(DecodeFailure::Stream {
                stream_id,
                frame: kind::REQUEST,
                error,
            }) => {
                self.open_id(stream_id)?;
                warn!(stream = stream_id, error = %error, "invalid REQUEST head; stream reset");
                let why = format!("invalid REQUEST head: {} ({error})", error.kind());
                self.conn.send(Outgoing::Frame(
                    Reset::new(stream_id, ResetCode::ProtocolError, &why).encode(),
                ));
                return Ok(());
            }
            Err(DecodeFailure::Stream {
                stream_id,
                frame: kind::TRAILERS,
                error,
            }) if self.conn.trailers => {
                self.check_known(stream_id, "TRAILERS")?;
                self.bad_trailers(stream_id, &format!("invalid TRAILERS: {error}"));
                return Ok(());
            }
            Err(e) => {
                let e = e.into_error();
                return Err((e.close_code(), e.to_string()));
            }
        };
        match frame {
            Frame::Request(r) => {
                self.open_id(r.stream_id)?;
                if r.upgrade && !self.features.contains(Features::UPGRADE) {
                    // Only a connection whose WELCOME listed `upgrade` carries the flag
                    // (PROTOCOL.md §4.5); elsewhere it is the violation it was in v1.
                    let why = format!(
                        "REQUEST (stream {}) with flag UPGRADE, which this connection did not negotiate",
                        r.stream_id
                    );
                    return Err((CloseCode::ProtocolViolation, why));
                }
                let id = r.stream_id;
                let mut streams = self.conn.streams.lock().unwrap();
                if streams.len() >= self.max_concurrency {
                    drop(streams);
                    self.conn.send(Outgoing::Frame(
                        Reset::new(id, ResetCode::Refused, "worker at its concurrency cap")
                            .encode(),
                    ));
                    return Ok(());
                }
                let head_only = &r.method[..] == b"HEAD";
                let slot = (self.seq as u64) << 32 | id as u64;
                // The gateway holds such a body until the host asks for it (PROTOCOL.md §5.1).
                let expect_continue = !r.end_stream
                    && r.headers.iter().any(|(n, v)| {
                        &n[..] == b"expect" && v.eq_ignore_ascii_case(b"100-continue")
                    });
                let shared = Arc::new(StreamShared::new(
                    id,
                    slot,
                    head_only,
                    r.upgrade,
                    r.end_stream,
                    expect_continue,
                    self.conn.clone(),
                ));
                streams.insert(id, shared.clone());
                drop(streams);
                let stream = Stream::new(shared);
                if self.routes.binary_search(&r.route_id).is_err() {
                    // The gateway matched a route this worker never declared (a ROUTES race,
                    // or a broken gateway): the host never sees it.
                    warn!(
                        stream = id,
                        route_id = r.route_id,
                        "request for a route id this worker never declared; answering 404"
                    );
                    let _ = stream.respond(404, NOT_FOUND_HEADERS, b"not found");
                    return Ok(());
                }
                let req = IncomingRequest {
                    slot,
                    route_id: r.route_id,
                    method: r.method,
                    target: r.target,
                    params: r.params,
                    headers: r.headers,
                    upgrade: r.upgrade,
                    has_body: !r.end_stream && !r.upgrade,
                    stream,
                };
                self.events.request(req);
            }
            Frame::Data(d) => {
                self.check_known(d.stream_id, "DATA")?;
                let mut streams = self.conn.streams.lock().unwrap();
                let Some(stream) = streams.get(&d.stream_id) else {
                    return Ok(()); // closed already: a normal race
                };
                if stream.request_done.load(Ordering::Acquire) {
                    // The request body ended already and the response is still going: a
                    // stream error (had we reset the stream, it would be gone from the table).
                    let stream = streams.remove(&d.stream_id).expect("present");
                    drop(streams);
                    self.conn.send(Outgoing::Frame(
                        Reset::new(
                            d.stream_id,
                            ResetCode::ProtocolError,
                            "DATA after END_STREAM",
                        )
                        .encode(),
                    ));
                    stream.fail(StreamError::Reset {
                        code: ResetCode::ProtocolError,
                        reason: "gateway sent DATA after END_STREAM".into(),
                    });
                    self.events.reset(stream);
                    return Ok(());
                }
                let left = stream
                    .recv_credit
                    .fetch_sub(d.data.len() as i64, Ordering::AcqRel)
                    - d.data.len() as i64;
                if left < 0 {
                    return Err((
                        CloseCode::FlowControl,
                        format!("DATA on stream {} exceeds its window", d.stream_id),
                    ));
                }
                stream.push_body(d.data, d.end_stream);
                if d.end_stream {
                    stream.request_done.store(true, Ordering::Release);
                    finish_direction(&mut streams, d.stream_id);
                }
            }
            Frame::Trailers(t) if self.conn.trailers => {
                self.check_known(t.stream_id, "TRAILERS")?;
                if t.payload_len() > MAX_TRAILERS_SIZE {
                    self.bad_trailers(t.stream_id, "TRAILERS larger than max_trailers_size");
                    return Ok(());
                }
                let mut streams = self.conn.streams.lock().unwrap();
                let Some(stream) = streams.get(&t.stream_id).cloned() else {
                    return Ok(()); // closed already: a normal race
                };
                if stream.request_done.load(Ordering::Acquire) {
                    drop(streams);
                    self.bad_trailers(t.stream_id, "TRAILERS after END_STREAM");
                    return Ok(());
                }
                // TRAILERS ends the request body as END_STREAM does (§3.10).
                stream.push_trailers(t.headers);
                stream.request_done.store(true, Ordering::Release);
                finish_direction(&mut streams, t.stream_id);
            }
            Frame::Window(w) => {
                self.check_known(w.stream_id, "WINDOW")?;
                let stream = self.conn.streams.lock().unwrap().get(&w.stream_id).cloned();
                if let Some(stream) = stream {
                    if !stream.send.grant(w.increment) {
                        return Err((
                            CloseCode::FlowControl,
                            format!("WINDOW takes stream {} past 2^31-1", w.stream_id),
                        ));
                    }
                    // Outside the table's lock: finishing a response takes it.
                    stream.flush();
                }
            }
            Frame::Reset(r) => {
                self.check_known(r.stream_id, "RESET")?;
                let removed = self.conn.streams.lock().unwrap().remove(&r.stream_id);
                if let Some(stream) = removed {
                    let code = ResetCode::from_u32(r.code);
                    debug!(stream = r.stream_id, code = code.name(), reason = %r.reason, "stream reset by gateway");
                    stream.fail(StreamError::Reset {
                        code,
                        reason: r.reason,
                    });
                    self.events.reset(stream);
                }
            }
            Frame::Drain(d) => {
                self.gateway_draining = true;
                info!(reason = %d.reason, deadline_ms = d.deadline_ms, "gateway is draining this connection");
            }
            Frame::Error(e) => {
                warn!(code = e.code, message = %e.message, "gateway reported an error");
                self.error_message = Some(e.message);
            }
            other => {
                return Err(violation(format!(
                    "{} frame is not sent by a gateway",
                    other.name()
                )))
            }
        }
        Ok(())
    }

    /// Fails a stream whose TRAILERS broke §3.10: RESET `protocol_error`; the connection
    /// serves on.
    fn bad_trailers(&mut self, id: u32, why: &str) {
        let removed = self.conn.streams.lock().unwrap().remove(&id);
        if let Some(stream) = removed {
            warn!(stream = id, why, "invalid TRAILERS; stream reset");
            self.conn.send(Outgoing::Frame(
                Reset::new(id, ResetCode::ProtocolError, why).encode(),
            ));
            stream.fail(StreamError::Reset {
                code: ResetCode::ProtocolError,
                reason: why.into(),
            });
            self.events.reset(stream);
        }
    }

    /// Counts a REQUEST's id as opened; an id that cannot open a stream is the
    /// connection's error, whether or not its head decodes (§4.1, §7).
    fn open_id(&mut self, id: u32) -> Result<(), Violation> {
        if self.gateway_draining {
            return Err(violation(format!(
                "REQUEST (stream {id}) after the gateway's DRAIN"
            )));
        }
        if id <= self.highest {
            return Err(violation(format!(
                "REQUEST reuses stream id {id} (highest so far {})",
                self.highest
            )));
        }
        self.highest = id;
        Ok(())
    }

    fn check_known(&self, id: u32, what: &str) -> Result<(), Violation> {
        if id > self.highest {
            return Err(violation(format!(
                "{what} for stream {id}, which was never opened"
            )));
        }
        Ok(())
    }
}

const NOT_FOUND_HEADERS: &[(&[u8], &[u8])] = &[(b"content-type", b"text/plain; charset=utf-8")];

fn violation(msg: String) -> Violation {
    (CloseCode::ProtocolViolation, msg)
}

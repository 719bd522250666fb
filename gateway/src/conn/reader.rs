//! The reader loop of a registered connection: every frame from the worker, and the
//! heartbeat. A worker's DRAIN deadline is the worker's to enforce (§7), not the reader's.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{FutureExt, Stream, StreamExt};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::{debug, info, warn};
use vyx_core::error::{CloseCode, ResetCode};
use vyx_core::frame::{DecodeFailure, Frame};
use vyx_core::handshake::{self, ErrorMessage, HandshakeError};
use vyx_core::heartbeat::Heartbeat;
use vyx_core::limits::{MAX_FRAME_SIZE, MAX_INFORMATIONAL, MAX_TRAILERS_SIZE};
use vyx_core::transport::Outgoing;

use super::flow::{grant_send_window, spend_recv_window};
use super::handshake::{check_allowed, check_reserved, check_route_count};
use super::streams::{end_stream_with, maybe_finish, stream_protocol_error};
use super::{conn_routes, Failure, ResponseHead, WorkerConn};
use crate::interim;
use crate::registry::WorkerGroup;
use crate::routes::RouteKey;
use crate::Shared;

pub(super) async fn read_loop<S>(
    conn: &Arc<WorkerConn>,
    group: &Arc<WorkerGroup>,
    shared: &Arc<Shared>,
    stream: &mut S,
) -> String
where
    S: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    let mut heartbeat = Heartbeat::new(shared.config.heartbeat);
    let mut heads = HeldHeads::default();
    loop {
        tokio::select! {
            msg = stream.next() => {
                heartbeat.received();
                if let Some(end) = on_message(conn, group, shared, msg, &mut heads) {
                    return end;
                }
                // The frames already read go first (see `HeldHeads`); a pending poll here
                // registers no waker, so the `select!` polls the stream again. A worker that
                // floods cannot keep this loop going: the socket's reads spend tokio's
                // cooperative budget, and a spent budget reads as pending.
                while let Some(msg) = stream.next().now_or_never() {
                    if let Some(end) = on_message(conn, group, shared, msg, &mut heads) {
                        return end;
                    }
                }
                heads.release();
            }
            tick = heartbeat.tick() => {
                if let Err(silence) = tick {
                    conn.send(Outgoing::Close(CloseCode::HeartbeatTimeout, "no frame or pong from the worker".into()));
                    return format!("{}: worker silent for {silence:?}", CloseCode::HeartbeatTimeout);
                }
                conn.send(Outgoing::Ping);
            }
        }
    }
}

/// Response heads read but not yet handed to their requests. A head goes out once the frames
/// already read from the socket are handled (or the connection ends), so that a small
/// response whose DATA and END_STREAM came with its head finds its body complete: the client
/// gets it in one write, and no pump is started for it (`response::already_complete`).
/// Handed out at once, the head woke its request on the other thread while this one was still
/// reading the DATA, and the client got the head and the body in two writes.
#[derive(Default)]
struct HeldHeads(Vec<(HeadSender, ResponseHead)>);

type HeadSender = tokio::sync::oneshot::Sender<Result<ResponseHead, Failure>>;

impl HeldHeads {
    fn release(&mut self) {
        for (tx, head) in self.0.drain(..) {
            let _ = tx.send(Ok(head));
        }
    }
}

impl Drop for HeldHeads {
    fn drop(&mut self) {
        self.release();
    }
}

/// Handles one message from the worker; `Some` ends the connection, with its reason.
fn on_message(
    conn: &Arc<WorkerConn>,
    group: &Arc<WorkerGroup>,
    shared: &Arc<Shared>,
    msg: Option<Result<Message, tungstenite::Error>>,
    heads: &mut HeldHeads,
) -> Option<String> {
    match msg {
        Some(Ok(Message::Binary(b))) => match on_frame(conn, group, shared, b, heads) {
            Ok(()) => None,
            Err((code, why)) => {
                warn!(worker_id = %conn.worker_id, connection = %conn.connection_id, %code, reason = %why, "closing worker connection");
                conn.send(Outgoing::Frame(
                    Frame::Error(ErrorMessage {
                        code: code as u16,
                        message: why.clone(),
                    })
                    .encode(),
                ));
                conn.send(Outgoing::Close(code, why.clone()));
                Some(format!("{code}: {why}"))
            }
        },
        Some(Ok(Message::Text(_))) => {
            let why = "text message; the protocol uses binary messages only".to_string();
            warn!(worker_id = %conn.worker_id, connection = %conn.connection_id, reason = %why, "closing worker connection");
            conn.send(Outgoing::Close(CloseCode::ProtocolViolation, why.clone()));
            Some(format!("{}: {why}", CloseCode::ProtocolViolation))
        }
        Some(Ok(Message::Close(f))) => Some(close_reason(conn, f)),
        Some(Ok(_)) => None,
        Some(Err(tungstenite::Error::Capacity(e))) => {
            let why = e.to_string();
            warn!(worker_id = %conn.worker_id, connection = %conn.connection_id, reason = %why, "closing worker connection");
            conn.send(Outgoing::Close(CloseCode::FrameTooLarge, why.clone()));
            Some(format!("{}: {why}", CloseCode::FrameTooLarge))
        }
        Some(Err(e)) => Some(format!("connection lost: {e}")),
        None => Some("connection lost: socket closed without a close frame".into()),
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

pub(super) type Violation = (CloseCode, String);

fn violation(msg: String) -> Violation {
    (CloseCode::ProtocolViolation, msg)
}

/// Handles one frame from a worker.
fn on_frame(
    conn: &Arc<WorkerConn>,
    group: &Arc<WorkerGroup>,
    shared: &Arc<Shared>,
    bytes: Bytes,
    heads: &mut HeldHeads,
) -> Result<(), Violation> {
    let decoded = Frame::decode_scoped(bytes, MAX_FRAME_SIZE);
    let mut table = conn.streams.lock().unwrap();
    let check_opened = |id: u32, what: &str, next_id: u64| {
        if u64::from(id) >= next_id {
            Err(violation(format!(
                "{what} for stream {id}, which was never opened"
            )))
        } else {
            Ok(())
        }
    };
    let frame = match decoded {
        Ok(frame) => frame,
        // A bad response head fails its stream only (§3.2): RESET, 502, connection kept.
        Err(DecodeFailure::Stream {
            stream_id,
            frame: vyx_core::frame::kind::RESPONSE,
            error,
        }) => {
            check_opened(stream_id, "RESPONSE", table.next_id)?;
            let why = format!("invalid RESPONSE head: {} ({error})", error.kind());
            stream_protocol_error(conn, table, stream_id, &why);
            return Ok(());
        }
        Err(DecodeFailure::Stream {
            stream_id,
            frame: vyx_core::frame::kind::TRAILERS,
            error,
        }) if conn.trailers() => {
            check_opened(stream_id, "TRAILERS", table.next_id)?;
            let why = format!("invalid TRAILERS: {} ({error})", error.kind());
            stream_protocol_error(conn, table, stream_id, &why);
            return Ok(());
        }
        Err(DecodeFailure::Stream {
            stream_id,
            frame: vyx_core::frame::kind::INFORMATIONAL,
            error,
        }) if conn.informational() => {
            check_opened(stream_id, "INFORMATIONAL", table.next_id)?;
            let why = format!("invalid INFORMATIONAL: {} ({error})", error.kind());
            stream_protocol_error(conn, table, stream_id, &why);
            return Ok(());
        }
        // A REQUEST from a worker is in the wrong direction, its head valid or not (§8.2).
        Err(e) => {
            let e = e.into_error();
            return Err((e.close_code(), e.to_string()));
        }
    };
    match frame {
        Frame::Response(r) => {
            check_opened(r.stream_id, "RESPONSE", table.next_id)?;
            let Some(s) = table.map.get_mut(&r.stream_id) else {
                return Ok(());
            };
            if r.status == 101 && !s.upgrade && s.head_tx.is_some() {
                let why = "RESPONSE 101 on a stream that is not an upgrade";
                stream_protocol_error(conn, table, r.stream_id, why);
                return Ok(());
            }
            let Some(head_tx) = s.head_tx.take() else {
                stream_protocol_error(conn, table, r.stream_id, "second RESPONSE on a stream");
                return Ok(());
            };
            if r.end_stream {
                s.response_done = true;
                s.body_tx = None;
            }
            let head = ResponseHead {
                status: r.status,
                headers: r.headers,
                end_stream: r.end_stream,
            };
            heads.0.push((head_tx, head));
            maybe_finish(conn, table, r.stream_id);
        }
        Frame::Data(d) => {
            check_opened(d.stream_id, "DATA", table.next_id)?;
            let Some(s) = table.map.get_mut(&d.stream_id) else {
                return Ok(());
            };
            if s.head_tx.is_some() {
                stream_protocol_error(conn, table, d.stream_id, "DATA before RESPONSE");
                return Ok(());
            }
            if s.response_done {
                stream_protocol_error(conn, table, d.stream_id, "DATA after END_STREAM");
                return Ok(());
            }
            shared
                .metrics
                .bytes_from_workers
                .inc_by(d.data.len() as u64);
            spend_recv_window(s, d.stream_id, d.data.len())?;
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
        Frame::Trailers(t) if conn.trailers() => {
            check_opened(t.stream_id, "TRAILERS", table.next_id)?;
            let Some(s) = table.map.get_mut(&t.stream_id) else {
                return Ok(());
            };
            let why = if s.head_tx.is_some() {
                "TRAILERS before RESPONSE"
            } else if s.response_done {
                "TRAILERS after the response ended"
            } else if t.payload_len() > MAX_TRAILERS_SIZE {
                "TRAILERS larger than max_trailers_size"
            } else {
                // Set before the body's channel closes: the body reads them at its end.
                let _ = s.trailers.set(t.headers);
                s.response_done = true;
                s.body_tx = None;
                maybe_finish(conn, table, t.stream_id);
                return Ok(());
            };
            stream_protocol_error(conn, table, t.stream_id, why);
        }
        Frame::Informational(i) if conn.informational() => {
            check_opened(i.stream_id, "INFORMATIONAL", table.next_id)?;
            let Some(s) = table.map.get_mut(&i.stream_id) else {
                return Ok(());
            };
            if s.head_tx.is_none() {
                let why = "INFORMATIONAL after RESPONSE";
                stream_protocol_error(conn, table, i.stream_id, why);
                return Ok(());
            }
            // Advisory (RFC 9110 §15.2): past the limit, or to a client that cannot take
            // them, they are dropped.
            s.informational = s.informational.saturating_add(1);
            if usize::from(s.informational) <= MAX_INFORMATIONAL && interim::is_forwarded(i.status)
            {
                if let Some(target) = &s.interim {
                    target.send(i.status, i.headers);
                }
            }
        }
        Frame::Window(w) => {
            check_opened(w.stream_id, "WINDOW", table.next_id)?;
            // After the request's END_STREAM the gateway sends no more DATA: a late WINDOW
            // is ignored (§4.4), never counted towards an overflow.
            if let Some(s) = table.map.get_mut(&w.stream_id).filter(|s| !s.request_done) {
                grant_send_window(s, w.stream_id, w.increment)?;
            }
        }
        Frame::Reset(r) => {
            check_opened(r.stream_id, "RESET", table.next_id)?;
            let code = ResetCode::from_u32(r.code);
            if code == ResetCode::NoError {
                // After a complete response: the worker wants no more of the request body,
                // and the response stands. Before that it ends the stream like any RESET.
                if let Some(s) = table.map.get_mut(&r.stream_id).filter(|s| s.response_done) {
                    s.send.fail(Failure::Reset(code, r.reason));
                    s.request_done = true;
                    maybe_finish(conn, table, r.stream_id);
                    return Ok(());
                }
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
            // The deadline is the worker's to enforce (it closes 4010, §7): the gateway
            // only stops opening streams and closes 1000 once the last one ends.
            info!(worker_id = %conn.worker_id, connection = %conn.connection_id, reason = %d.reason, deadline_ms = d.deadline_ms, "worker draining");
            conn.after_stream_end();
        }
        Frame::Routes(r) => {
            drop(table);
            let refused = |e: HandshakeError| (e.code, e.message);
            handshake::validate_routes(&r.routes).map_err(refused)?;
            check_route_count(r.routes.len(), shared).map_err(refused)?;
            check_reserved(&r.routes).map_err(refused)?;
            check_allowed(&r.routes, &conn.admission).map_err(refused)?;
            let routes = conn_routes(&r.routes);
            {
                // Only the current set is kept (a worker must not grow the gateway with ids
                // it no longer serves): an id in it keeps its route, a removed id is free.
                let current = conn.routes.load();
                let serving: HashMap<u16, &RouteKey> =
                    current.iter().map(|(k, r)| (r.id, k)).collect();
                for (key, r) in &routes {
                    let id = r.id;
                    if let Some(old) = serving.get(&id).filter(|old| **old != key) {
                        return Err((
                            CloseCode::BadHello,
                            format!("ROUTES gives route id {id} to {key}; it serves {old}"),
                        ));
                    }
                }
            }
            shared
                .registry
                .update_routes(conn, group, routes)
                .map_err(refused)?;
            info!(worker_id = %conn.worker_id, connection = %conn.connection_id, routes = r.routes.len(), "routes updated");
        }
        Frame::Error(e) => {
            warn!(worker_id = %conn.worker_id, code = e.code, message = %e.message, "worker reported an error");
        }
        Frame::Hello(_) => return Err(violation("second HELLO on a registered connection".into())),
        f @ (Frame::Trailers(_) | Frame::Informational(_)) => {
            return Err(violation(format!(
                "{} on a connection that did not negotiate its extension",
                f.name()
            )))
        }
        other => {
            return Err(violation(format!(
                "{} frame is not sent by a worker",
                other.name()
            )))
        }
    }
    Ok(())
}

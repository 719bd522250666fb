//! Dispatch of one client request to a worker: route lookup, replica choice, the REQUEST
//! frame, the request-body pump, and the mapping of the outcome to a status.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::sync::{mpsc, Notify};
use tracing::{debug, warn, Instrument};
use vyx_core::error::ResetCode;
use vyx_core::features::Features;
use vyx_core::flow::SendWindow;
use vyx_core::frame::{set_route_id, HeadTooLarge, RequestWriter, Trailers};
use vyx_core::limits::{MAX_DATA_CHUNK, MAX_TRAILERS_SIZE};

use crate::access_log::{self, Entry, Pending};
use crate::body::{GatewayBody, StreamGuard};
use crate::conn::{ConnRoute, Failure, OpenStream, ResponseHead, ResponseTrailers, WorkerConn};
use crate::conn_limit::Activity;
use crate::duplex;
use crate::forward::{self, X_REQUEST_ID};
use crate::framing::{framing, BodyPlan, Framing};
use crate::metrics::Observed;
use crate::otel::{self, TraceHeaders};
use crate::registry::{has_replica, reserve_replica};
use crate::response::{self, ResponseBody, Source};
use crate::retry::{self, Outcome, Replay};
use crate::routes::RouteTarget;
use crate::upgrade::{self, Asked, Piped};
use crate::upload::{self, Buffered, ClientFault, Upload, UploadRules};
use crate::{request_rules, trusted_proxies, Shared};

/// A small JSON error answer from the gateway itself.
pub fn error_response(
    status: StatusCode,
    message: &str,
    request_id: &HeaderValue,
) -> Response<GatewayBody> {
    let body = serde_json::json!({
        "error": message,
        "status": status.as_u16(),
        "request_id": request_id.to_str().unwrap_or(""),
    });
    let mut resp = Response::new(GatewayBody::full(body.to_string()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(X_REQUEST_ID, request_id.clone());
    if status == StatusCode::SERVICE_UNAVAILABLE {
        h.insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp.extensions_mut()
        .insert(GatewayError(message.to_string()));
    resp
}

/// Marks a response as the gateway's own error answer, with its message (for the access
/// log's `error` and `vyx_gateway_errors_total`).
#[derive(Clone)]
pub struct GatewayError(pub String);

/// 405 with `Allow` when routes serve the path with other methods (§2.5.2), else 404.
fn no_route(
    table: &crate::routes::RouteTable,
    parts: &http::request::Parts,
    request_id: &HeaderValue,
) -> Response<GatewayBody> {
    let allow = table.allowed_methods(parts.uri.path()).join(", ");
    if allow.is_empty() {
        return error_response(StatusCode::NOT_FOUND, "no route", request_id);
    }
    let message = format!("{} is not served here; allowed: {allow}", parts.method);
    let mut resp = error_response(StatusCode::METHOD_NOT_ALLOWED, &message, request_id);
    if let Ok(v) = HeaderValue::from_str(&allow) {
        resp.headers_mut().insert(http::header::ALLOW, v);
    }
    resp
}

pub async fn proxy(
    mut req: Request<Incoming>,
    shared: Arc<Shared>,
    client: SocketAddr,
) -> Response<GatewayBody> {
    let start = std::time::Instant::now();
    let request_id = request_id(req.headers(), &shared);
    let trace_span = otel::start_span(&shared, &req, client);
    if let Some(s) = &trace_span {
        req.extensions_mut().insert(s.to_worker.clone());
    }
    let entry = Entry::new(
        request_id.clone(),
        client,
        req.method().clone(),
        req.uri(),
        start,
    );
    // Logged when dropped: also when the client goes away before the response.
    let mut pending = Pending::new(entry, &shared.access_log, trace_span);
    let mut matched = None;
    // A line about the request carries its id as a field of its own. The span is for
    // debugging (`RUST_LOG=debug`, or one request's lines with
    // `RUST_LOG=info,[request{request_id=…}]=debug`): at `info` it is not made, which saved
    // ~4 % of a small request's CPU (the registry's slot, the fields' formatting, an enter
    // and exit a poll).
    let span = tracing::debug_span!("request", request_id = %shown(&request_id));
    let mut resp = dispatch(
        req,
        &shared,
        client,
        request_id,
        &mut matched,
        &mut pending.entry,
    )
    .instrument(span)
    .await;
    answered(&shared, &mut resp, matched, pending);
    resp
}

/// Counts the answered request, and hands its access-log entry to the response body, which
/// logs it once the client has the whole body (or went away).
fn answered(
    shared: &Shared,
    resp: &mut Answer,
    matched: Option<Arc<RouteTarget>>,
    mut pending: Pending,
) {
    let route = match &matched {
        Some(t) => t.metrics.get_or_init(|| shared.metrics.route(&t.key)),
        None => shared.metrics.unmatched(),
    };
    let kept = pending.is_kept();
    let entry = &mut pending.entry;
    let status = resp.status().as_u16();
    let elapsed = entry.start.elapsed();
    let error = resp.extensions_mut().remove::<GatewayError>();
    shared.metrics.observe(
        route,
        &Observed {
            status,
            elapsed,
            queue_wait: entry.queue_wait,
            worker_id: entry.worker.as_ref().map(|w| w.worker_id.as_str()),
            gateway_error: error.is_some(),
        },
    );
    if kept {
        entry.status = status;
        entry.ttfb = Some(elapsed);
        entry.route = matched;
        entry.error = error.map(|e| e.0);
        access_log::hand_off(pending);
    }
}

/// The client's response: the worker's, or the gateway's own answer (which ends a request early).
type Answer = Response<GatewayBody>;

/// One request through its four steps: [`lookup`] (route, checks, the REQUEST frame),
/// [`admit`] (the body's start, a replica's slot, the stream), [`forward`] (the body pump,
/// the worker's head) and [`respond`] (the client's response from that head).
async fn dispatch(
    mut req: Request<Incoming>,
    shared: &Arc<Shared>,
    client: SocketAddr,
    request_id: HeaderValue,
    matched: &mut Option<Arc<RouteTarget>>,
    entry: &mut Entry,
) -> Answer {
    let asked = Asked::of(&req);
    let on_upgrade = asked.is_some().then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let steps = async {
        let asked = asked.as_ref();
        let mut routed = lookup(&parts, &body, asked, shared, client, &request_id, matched)?;
        let admitted = admit(body, &mut routed, shared, &request_id, entry).await?;
        let (head, admitted) = forward_or_retry(
            admitted,
            &mut routed,
            &parts.method,
            shared,
            &request_id,
            entry,
        )
        .await?;
        let (head, admitted) = match (asked, on_upgrade) {
            (Some(asked), Some(on)) => {
                switch(asked, head, admitted, on, &parts, shared, &request_id)?
            }
            _ => (head, admitted),
        };
        Ok(respond(
            head,
            admitted,
            &parts,
            &routed.target,
            shared,
            &request_id,
        ))
    };
    let mut resp = steps.await.unwrap_or_else(|answer| answer);
    let headers = resp.headers_mut();
    if !headers.contains_key(X_REQUEST_ID) {
        headers.insert(X_REQUEST_ID, request_id);
    }
    resp
}

/// A request id as a log field.
fn shown(request_id: &HeaderValue) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(request_id.as_bytes())
}

/// The client's `x-request-id` when it is usable, else a new one.
fn request_id(headers: &http::HeaderMap, shared: &Shared) -> HeaderValue {
    match headers.get(X_REQUEST_ID) {
        Some(v) if !v.is_empty() && v.len() <= 200 => v.clone(),
        _ => forward::new_request_id(
            shared.request_seq.fetch_add(1, Ordering::Relaxed),
            shared.id_seed,
        ),
    }
}

/// A request with its route and its REQUEST frame (route id set per replica).
struct Routed {
    target: Arc<RouteTarget>,
    frame: BytesMut,
    end_stream: bool,
    /// An upgrade stream (§4.5): no body before the switch, a replica that takes upgrades.
    upgrade: bool,
    /// A body its client may not end before the response (see `duplex`).
    duplex: bool,
}

/// Finds the route (404), refuses what cannot be forwarded (413, 501, 400) and encodes the
/// REQUEST frame (431). `matched` is the route for the metrics, set once one is found.
#[allow(clippy::result_large_err)] // the Err is the client's response, returned as it is
fn lookup(
    parts: &http::request::Parts,
    body: &Incoming,
    asked: Option<&Asked>,
    shared: &Shared,
    client: SocketAddr,
    request_id: &HeaderValue,
    matched: &mut Option<Arc<RouteTarget>>,
) -> Result<Routed, Answer> {
    // Readers hold the table for a lookup only: a route update waits for them (and the
    // body is read after this returns).
    let table = shared.registry.table_full();
    let method = Asked::method(asked, &parts.method);
    let Some(found) = table.lookup(method, parts.uri.path()) else {
        return Err(no_route(&table, parts, request_id));
    };
    *matched = Some(found.value.clone());
    let refusal = match asked {
        Some(a) => a.refusal(!http_body::Body::is_end_stream(body)),
        None => unforwardable(parts, body, shared),
    };
    if let Some((status, message)) = refusal {
        return Err(error_response(status, message, request_id));
    }
    // An upgrade's request direction stays open: after the switch it carries the client's bytes.
    let end_stream = asked.is_none() && http_body::Body::is_end_stream(body);
    let trusted = trusted_proxies::is_trusted(&shared.config.trusted_proxies, client.ip());
    let frame = encode_request(
        parts,
        asked,
        &found.params,
        end_stream,
        client,
        trusted,
        request_id,
    )
    .map_err(|e| {
        let status = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
        error_response(status, &e.to_string(), request_id)
    })?;
    Ok(Routed {
        target: found.value.clone(),
        frame,
        end_stream,
        upgrade: asked.is_some(),
        duplex: duplex::is_duplex(&parts.headers, http_body::Body::size_hint(body).exact()),
    })
}

/// Why a routed request cannot go to a worker: a plain CONNECT, a body declared past
/// `limits.max_body`, or a target the REQUEST frame cannot carry.
fn unforwardable(
    parts: &http::request::Parts,
    body: &Incoming,
    shared: &Shared,
) -> Option<(StatusCode, &'static str)> {
    // A plain CONNECT asks for a tunnel (RFC 9110 §9.3.6); a worker's 2xx to it would open
    // one, which the gateway does not carry (hyper drops a 2xx to CONNECT that has a length).
    if parts.method == http::Method::CONNECT {
        let why = "CONNECT tunnels are not carried: vyx is a gateway, not a forward proxy";
        return Some((StatusCode::NOT_IMPLEMENTED, why));
    }
    if let Some(len) = http_body::Body::size_hint(body).exact() {
        if len > shared.config.max_body {
            let why = "request body larger than the gateway's limit";
            return Some((StatusCode::PAYLOAD_TOO_LARGE, why));
        }
    }
    // `target::for_worker` made the target ASCII before routing; whatever else a client
    // manages to send, no frame the spec forbids leaves the gateway (§3.4).
    let wire_target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    if !vyx_core::frame::is_target(wire_target.as_bytes()) {
        let why = "the request target cannot be forwarded";
        return Some((StatusCode::BAD_REQUEST, why));
    }
    None
}

/// A request given a stream on a worker connection, with its body still to send.
struct Admitted {
    conn: Arc<WorkerConn>,
    open: OpenStream,
    body: Buffered,
    /// Holds a share of `limits.streamed_upload_slots` while the body streams.
    share: Option<StreamedShare>,
    /// No body to send: the REQUEST ended the stream, or it is an upgrade (§4.5).
    end_stream: bool,
    /// The replica declared the route `idempotent`.
    idempotent: bool,
    /// What a retry would send, when the gateway holds the whole body (`retries.enabled`).
    replay: Option<Replay>,
    /// A duplex request (see `duplex`).
    duplex: bool,
}

/// Reads the body's start, then reserves a replica's slot and opens the stream (503 when
/// no replica can take it within `timeouts.queue`).
async fn admit(
    body: Incoming,
    routed: &mut Routed,
    shared: &Arc<Shared>,
    request_id: &HeaderValue,
    entry: &mut Entry,
) -> Result<Admitted, Answer> {
    let no_body = routed.end_stream || routed.upgrade;
    let mut body = read_body_start(body, no_body, routed.duplex, shared)
        .await
        .map_err(|fault| client_fault(shared, &fault, request_id))?;
    let replay = match shared.config.retries {
        true => Replay::keep(&routed.frame, &mut body),
        false => None,
    };
    // A body still streaming from its client may hold only a share of a worker's slots:
    // clients that trickle large bodies cannot take them all.
    let streamed = body
        .rest
        .is_some()
        .then_some(shared.config.streamed_upload_slots);
    let queued = std::time::Instant::now();
    let (conn, open, route) = open_stream(routed, streamed, shared, request_id, None).await?;
    entry.queue_wait = Some(queued.elapsed());
    entry.admitted = Some(std::time::Instant::now());
    entry.worker = Some(conn.clone());
    let share = streamed.map(|_| StreamedShare(conn.clone()));
    Ok(Admitted {
        conn,
        open,
        body,
        share,
        end_stream: no_body,
        idempotent: route.idempotent,
        replay,
        duplex: routed.duplex,
    })
}

/// The body, or its start, before the request takes a slot (see `upload`). A client that
/// sent `expect: 100-continue` gets its 100 from hyper as the body is first read (§5.1): a
/// body held back until a worker asked for it would hold the worker's slot.
async fn read_body_start(
    body: Incoming,
    end_stream: bool,
    duplex: bool,
    shared: &Shared,
) -> Result<Buffered, ClientFault> {
    let config = &shared.config;
    let rules = match duplex {
        true => duplex::upload_rules(config.upgrade_idle_timeout, config.max_body),
        false => UploadRules {
            idle: config.body_idle_timeout,
            min_rate: config.min_body_rate,
            grace: config.min_body_rate_grace,
            max_body: config.max_body,
        },
    };
    if end_stream {
        Ok(Buffered::default())
    } else if duplex || config.body_buffer == 0 {
        Ok(Buffered {
            rest: Some(Upload::new(body, rules)),
            ..Buffered::default()
        })
    } else {
        let limit = shared.config.body_buffer;
        upload::buffer(Upload::new(body, rules), limit, &shared.body_budget).await
    }
}

/// A replica with room, waiting a bounded time for one when all are full, and the stream
/// opened on it. `streamed` reserves a share of the slots too (see `reserve_replica`);
/// `exclude` is never chosen (a retry's failed connection).
async fn open_stream(
    routed: &mut Routed,
    streamed: Option<u32>,
    shared: &Shared,
    request_id: &HeaderValue,
    exclude: Option<&Arc<WorkerConn>>,
) -> Result<(Arc<WorkerConn>, OpenStream, ConnRoute), Answer> {
    let target = &routed.target;
    let deadline = tokio::time::Instant::now() + shared.config.queue_timeout;
    loop {
        let notified = target.group.slot_freed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match reserve_replica(&target.group, &target.key, streamed, exclude) {
            Ok((conn, route)) => {
                if routed.upgrade && !conn.features.contains(Features::UPGRADE) {
                    conn.release_slot();
                    let status = StatusCode::NOT_IMPLEMENTED;
                    return Err(error_response(status, upgrade::NOT_TAKEN, request_id));
                }
                set_route_id(&mut routed.frame, route.id);
                let opened = conn
                    .open_stream(&mut routed.frame, routed.end_stream, deadline)
                    .await;
                match opened {
                    Ok(open) => return Ok((conn, open, route)),
                    // Its queue stayed full (a worker not reading) until the deadline.
                    Err(f @ Failure::NoRoom) => {
                        conn.release_slot();
                        return Err(failure_response(&conn, f, request_id));
                    }
                    // Started draining since the choice: pick again.
                    Err(_) => {
                        if streamed.is_some() {
                            conn.streamed_upload_done();
                        }
                        conn.release_slot();
                    }
                }
            }
            Err(false) => {
                let why = "no live worker for this route";
                return Err(error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    why,
                    request_id,
                ));
            }
            Err(true) => {
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    let why = "all workers for this route are busy";
                    return Err(error_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        why,
                        request_id,
                    ));
                }
            }
        }
    }
}

/// [`forward`], and once more on another replica when the stream failed before its head in
/// a way a retry may repair and repeating the request is safe (see `retry`).
async fn forward_or_retry(
    mut admitted: Admitted,
    routed: &mut Routed,
    method: &http::Method,
    shared: &Arc<Shared>,
    request_id: &HeaderValue,
    entry: &mut Entry,
) -> Result<(ResponseHead, Answering), Answer> {
    let replay = admitted.replay.take();
    let idempotent = admitted.idempotent;
    let bytes_in = (!admitted.end_stream).then(|| entry.bytes_in_counter());
    let first = forward(
        admitted,
        &routed.target,
        shared,
        request_id,
        bytes_in.clone(),
    )
    .await;
    let (failed, failure) = match first {
        Ok(done) => return Ok(done),
        Err(NoHead::Answer(answer)) => return Err(answer),
        Err(NoHead::Failed(conn, failure)) => (conn, failure),
    };
    let Some(reason) = retry::Reason::of(&failure) else {
        return Err(failure_response(&failed, failure, request_id));
    };
    let count = |outcome: Outcome| shared.metrics.retry(reason.label(), outcome.label());
    let safe = retry::allowed(
        reason,
        method,
        idempotent,
        replay.is_some(),
        shared.config.retries,
    );
    let target = &routed.target;
    let replay = match (safe, replay) {
        (Ok(()), Some(r)) if has_replica(&target.group, &target.key, Some(&failed)) => r,
        (Ok(()), _) => {
            count(Outcome::NoReplica);
            return Err(failure_response(&failed, failure, request_id));
        }
        (Err(outcome), _) => {
            count(outcome);
            return Err(failure_response(&failed, failure, request_id));
        }
    };
    debug!(request_id = %shown(request_id), worker_id = %failed.worker_id, connection = %failed.connection_id, reason = reason.label(), "retrying on another replica");
    let (frame, body) = replay.into_parts();
    routed.frame = frame;
    let second = open_stream(routed, None, shared, request_id, Some(&failed)).await;
    let (conn, open, _) = second.inspect_err(|_| count(Outcome::Failed))?;
    entry.retried = true;
    entry.worker = Some(conn.clone());
    if let Some(n) = &bytes_in {
        n.store(0, Ordering::Relaxed); // the body is counted as the second attempt sends it
    }
    let admitted = Admitted {
        conn,
        open,
        body,
        share: None,
        end_stream: routed.end_stream,
        idempotent,
        replay: None,
        duplex: routed.duplex,
    };
    let answered = forward(admitted, &routed.target, shared, request_id, bytes_in).await;
    count(match answered {
        Ok(_) => Outcome::Answered,
        Err(_) => Outcome::Failed,
    });
    answered.map_err(|no_head| match no_head {
        NoHead::Answer(answer) => answer,
        NoHead::Failed(conn, failure) => failure_response(&conn, failure, request_id),
    })
}

/// Why [`forward`] has no response head.
enum NoHead {
    /// The client's answer: the client's fault, a timeout, a stream cut.
    Answer(Answer),
    /// The worker failed the stream before its head; a retry may repair it.
    Failed(Arc<WorkerConn>, Failure),
}

/// Starts the body pump and waits for the worker's head within `timeouts.request` (504);
/// a stream cut before it is the client's fault (from the pump) or 502.
async fn forward(
    admitted: Admitted,
    target: &RouteTarget,
    shared: &Arc<Shared>,
    request_id: &HeaderValue,
    bytes_in: Option<Arc<AtomicU64>>,
) -> Result<(ResponseHead, Answering), NoHead> {
    let Admitted {
        conn,
        open,
        body,
        share,
        end_stream,
        duplex,
        ..
    } = admitted;
    // Set by the body pump: a request without a body has none (and no allocation for it).
    let fault = (!end_stream).then(|| Arc::new(OnceLock::new()));
    // A duplex request's head is due within the request timeout of its body's end.
    let body_ended = (duplex && !end_stream).then(|| Arc::new(Notify::new()));
    if let Some(fault) = &fault {
        let pump = Pump {
            conn: conn.clone(),
            id: open.id,
            send: open.send.clone(),
            fault: fault.clone(),
            shared: shared.clone(),
            bytes_in,
        };
        let ended = body_ended.clone();
        let pumped = async move {
            pump_body(body, share, pump).await;
            if let Some(ended) = ended {
                ended.notify_one();
            }
        };
        tokio::spawn(pumped.in_current_span());
    }
    let answering = Answering {
        guard: StreamGuard {
            conn: conn.clone(),
            id: open.id,
        },
        body: open.body,
        recv_credit: open.recv_credit,
        send: open.send,
        trailers: open.trailers,
        duplex,
    };
    let timeout = shared.config.request_timeout;
    let head = match &body_ended {
        Some(ended) => duplex::head_after_body(timeout, ended, open.head).await,
        _ => tokio::time::timeout(timeout, open.head).await,
    };
    match head {
        Err(_) => {
            let why = "no response head before the request timeout";
            conn.cancel_stream(open.id, ResetCode::Timeout, why);
            warn!(request_id = %shown(request_id), worker_id = %conn.worker_id, route = %target.key, "worker timed out");
            let why = "worker did not answer in time";
            let answer = error_response(StatusCode::GATEWAY_TIMEOUT, why, request_id);
            Err(NoHead::Answer(answer))
        }
        // The stream was cut: by the body pump for the client's fault, or by the worker.
        Ok(Err(_)) => Err(NoHead::Answer(
            match fault.as_deref().and_then(OnceLock::get) {
                Some(f) => error_response(f.status(), f.message(), request_id),
                None => error_response(StatusCode::BAD_GATEWAY, "worker stream ended", request_id),
            },
        )),
        Ok(Ok(Err(f))) => Err(NoHead::Failed(conn, f)),
        Ok(Ok(Ok(head))) => Ok((head, answering)),
    }
}

/// What the response is read from once its head has come.
struct Answering {
    /// Dropping it RESETs (`cancel`) a stream whose body is still open.
    guard: StreamGuard,
    body: mpsc::UnboundedReceiver<Result<Bytes, Failure>>,
    recv_credit: Arc<AtomicI64>,
    trailers: ResponseTrailers,
    /// The request direction's window: an upgraded connection sends on it after the switch.
    send: Arc<SendWindow<Failure>>,
    /// A duplex request's response (see `duplex`).
    duplex: bool,
}

/// The worker's answer to an upgrade (§4.5). A 101 is the switch: the client's answer comes
/// back as the `Err` (as every answer that ends a request early does), the pipe started
/// behind it. Any other head refuses the upgrade and goes on as an ordinary response.
#[allow(clippy::result_large_err)] // the Err is the client's response, returned as it is
fn switch(
    asked: &Asked,
    head: ResponseHead,
    answering: Answering,
    on_upgrade: hyper::upgrade::OnUpgrade,
    parts: &http::request::Parts,
    shared: &Arc<Shared>,
    request_id: &HeaderValue,
) -> Result<(ResponseHead, Answering), Answer> {
    let conn = answering.guard.conn.clone();
    if head.status != 101 {
        upgrade::refused(conn, answering.guard.id);
        return Ok((head, answering));
    }
    let worker_upgrade = upgrade::worker_upgrade(&head);
    let mut headers = http::HeaderMap::new();
    if forward::response_headers(head.headers, &mut headers).is_err() {
        let why = "more response header fields than the gateway can hold";
        conn.cancel_stream(answering.guard.id, ResetCode::ProtocolError, why);
        let status = StatusCode::BAD_GATEWAY;
        return Err(error_response(
            status,
            "worker sent an invalid response",
            request_id,
        ));
    }
    end_to_end_headers(&mut headers, None);
    let piped = Piped {
        active: parts.extensions.get::<Arc<Activity>>().map(|a| a.start()),
        guard: answering.guard,
        body: answering.body,
        recv_credit: answering.recv_credit,
        send: answering.send,
    };
    let idle = shared.config.upgrade_idle_timeout;
    Err(upgrade::switch(
        asked,
        worker_upgrade,
        headers,
        piped,
        on_upgrade,
        idle,
    ))
}

/// The client's response from the worker's head: its framing (§3.5; 502 when invalid),
/// its body, and its headers without hop-by-hop fields.
fn respond(
    head: ResponseHead,
    answering: Answering,
    parts: &http::request::Parts,
    target: &RouteTarget,
    shared: &Arc<Shared>,
    request_id: &HeaderValue,
) -> Answer {
    let conn = answering.guard.conn.clone();
    let id = answering.guard.id;
    let is_head = parts.method == http::Method::HEAD;
    let framing = match framing(head.status, &head.headers, is_head, head.end_stream) {
        Ok(f) => f,
        Err(why) => {
            warn!(request_id = %shown(request_id), worker_id = %conn.worker_id, route = %target.key, reason = %why, "invalid response framing; stream reset");
            conn.cancel_stream(id, ResetCode::ProtocolError, &why);
            let why = "worker sent an invalid content-length";
            return error_response(StatusCode::BAD_GATEWAY, why, request_id);
        }
    };
    let mut resp = Response::new(response_body(&framing, answering, shared));
    *resp.status_mut() = StatusCode::from_u16(head.status).unwrap_or(StatusCode::BAD_GATEWAY);
    if forward::response_headers(head.headers, resp.headers_mut()).is_err() {
        let why = "more response header fields than the gateway can hold";
        warn!(request_id = %shown(request_id), worker_id = %conn.worker_id, route = %target.key, reason = why, "invalid response head; stream reset");
        // Dropping the body's guard would RESET `cancel`; this is the worker's fault.
        conn.cancel_stream(id, ResetCode::ProtocolError, why);
        let why = "worker sent an invalid response";
        return error_response(StatusCode::BAD_GATEWAY, why, request_id);
    }
    let announced = conn
        .trailers()
        .then(|| forward::announced_trailers(resp.headers()));
    end_to_end_headers(resp.headers_mut(), framing.content_length);
    if let Some(Some(names)) = announced {
        resp.headers_mut().insert(http::header::TRAILER, names);
    }
    resp
}

/// The body given to hyper: none (the stream is RESET if still open), the worker's whole
/// body when it has already ended, or the worker's stream.
fn response_body(framing: &Framing, answering: Answering, shared: &Arc<Shared>) -> GatewayBody {
    let Answering {
        guard,
        mut body,
        recv_credit,
        send: _,
        trailers,
        duplex,
    } = answering;
    if framing.body == BodyPlan::Empty {
        // Dropping the guard RESETs (`cancel`) a stream whose body is still open: it is
        // not forwarded, and the slot is freed now.
        drop(guard);
        GatewayBody::empty()
    } else if let Some(data) =
        response::already_complete(&mut body, framing.content_length, &trailers)
    {
        GatewayBody::Complete {
            data,
            exact: framing.content_length.is_some(),
            _guard: guard,
        }
    } else {
        GatewayBody::Worker(Box::new(ResponseBody::start(
            Source {
                rx: body,
                credit: recv_credit,
                initial_window: guard.conn.initial_window,
                guard,
                expected: framing.content_length,
                trailers,
                idle: match duplex {
                    true => shared.config.upgrade_idle_timeout,
                    false => shared.config.body_idle_timeout,
                },
            },
            shared.clone(),
        )))
    }
}

/// One content-length, the checked value, or none (204, 304); no hop-by-hop fields.
fn end_to_end_headers(headers: &mut http::HeaderMap, content_length: Option<u64>) {
    match content_length {
        Some(n) => {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
        }
        None => {
            headers.remove(CONTENT_LENGTH);
        }
    }
    let hop_by_hop = forward::HopByHop::of(headers);
    let hop: Vec<HeaderName> = headers
        .keys()
        .filter(|n| hop_by_hop.contains(n.as_str()))
        .cloned()
        .collect();
    for n in hop {
        headers.remove(n);
    }
}

/// Encodes the REQUEST (stream id and route id 0, set later): method, raw target, decoded
/// params, the client's end-to-end headers, and the headers the gateway sets itself: `host`
/// (the effective host: `:authority` or an absolute-form target's, else `Host`), the
/// forwarding headers, `x-request-id`, and with traces on `traceparent`/`tracestate`. The
/// client's own copies are skipped, so no `Connection` option can remove the gateway's.
fn encode_request(
    parts: &http::request::Parts,
    asked: Option<&Asked>,
    params: &[(&str, Cow<'_, [u8]>)],
    end_stream: bool,
    client: SocketAddr,
    trusted: bool,
    request_id: &HeaderValue,
) -> Result<BytesMut, HeadTooLarge> {
    // With traces on, the gateway's span context (see `otel`).
    let trace = parts.extensions.get::<TraceHeaders>();
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let method = Asked::method(asked, &parts.method);
    let mut w = RequestWriter::new(0, end_stream, 0, method.as_bytes(), target.as_bytes(), 512);
    for (name, value) in params {
        w.param(name.as_bytes(), value);
    }
    w.begin_headers();
    let host = request_rules::effective_host(parts);
    if let Some(h) = host {
        w.header(b"host", h);
    }
    if let Some(asked) = asked {
        for (name, value) in asked.worker_headers() {
            w.header(name, &value);
        }
    }
    let mut cookie_sent = false;
    let hop_by_hop = forward::HopByHop::of(&parts.headers);
    for (name, value) in parts.headers.iter() {
        let n = name.as_str();
        // `expect` is met here (§5.1): the gateway answers `100 Continue` itself.
        let ours = n == "host"
            || n == X_REQUEST_ID
            || n == forward::X_FORWARDED_FOR
            || n == http::header::EXPECT
            || (trace.is_some() && TraceHeaders::replaces(n));
        if ours
            || hop_by_hop.contains(n)
            || forward::is_underscored(n)
            || (!trusted && forward::is_forwarding(n))
        {
            continue;
        }
        if name == http::header::COOKIE {
            // One `cookie`, where the first was (RFC 9113 §8.2.3).
            if !std::mem::replace(&mut cookie_sent, true) {
                if let Some(joined) = forward::joined_cookies(&parts.headers) {
                    w.header(b"cookie", &joined);
                }
            }
            continue;
        }
        w.header(n.as_bytes(), value.as_bytes());
    }
    let scheme = crate::tls::scheme(&parts.extensions);
    let fwd = forward::forwarded(&parts.headers, host, client, trusted, scheme);
    w.header(forward::X_FORWARDED_FOR.as_bytes(), fwd.for_value());
    if let Some(p) = fwd.proto {
        w.header(forward::X_FORWARDED_PROTO.as_bytes(), p.as_bytes());
    }
    if let Some(h) = fwd.host {
        w.header(forward::X_FORWARDED_HOST.as_bytes(), h);
    }
    w.header(
        forward::FORWARDED.as_bytes(),
        &forward::forwarded_element(&fwd.client, client.is_ipv6(), host, scheme),
    );
    w.header(b"via", forward::via_element(parts.version));
    w.header(X_REQUEST_ID.as_str().as_bytes(), request_id.as_bytes());
    if let Some(t) = trace {
        for (name, value) in [
            ("traceparent", &t.traceparent),
            ("tracestate", &t.tracestate),
        ] {
            if let Some(v) = value {
                w.header(name.as_bytes(), v.as_bytes());
            }
        }
    }
    let mut frame = w.finish()?;
    if asked.is_some() {
        vyx_core::frame::set_upgrade(&mut frame);
    }
    Ok(frame)
}

fn failure_response(
    conn: &WorkerConn,
    f: Failure,
    request_id: &HeaderValue,
) -> Response<GatewayBody> {
    match f {
        Failure::Reset(ResetCode::Refused, reason) => {
            debug!(request_id = %shown(request_id), worker_id = %conn.worker_id, %reason, "worker refused the stream");
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "worker refused the request",
                request_id,
            )
        }
        Failure::Reset(code, reason) => {
            warn!(request_id = %shown(request_id), worker_id = %conn.worker_id, code = code.name(), %reason, "worker reset the stream before answering");
            error_response(
                StatusCode::BAD_GATEWAY,
                "worker failed the request",
                request_id,
            )
        }
        Failure::Protocol(why) => {
            // Already logged as a warning where it was found.
            debug!(request_id = %shown(request_id), worker_id = %conn.worker_id, reason = %why, "answering 502 for a stream protocol error");
            error_response(
                StatusCode::BAD_GATEWAY,
                "worker sent an invalid response",
                request_id,
            )
        }
        Failure::Draining => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "worker is draining",
            request_id,
        ),
        Failure::NoRoom => {
            // Per request, so not a warning: vyx_worker_queued_bytes at its bound shows it.
            debug!(request_id = %shown(request_id), worker_id = %conn.worker_id, connection = %conn.connection_id, "worker connection's queue full until the queue timeout (is it reading?)");
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "worker is not taking requests",
                request_id,
            )
        }
        Failure::ConnectionLost(why) => {
            warn!(request_id = %shown(request_id), worker_id = %conn.worker_id, connection = %conn.connection_id, reason = %why, "worker lost mid-request");
            error_response(
                StatusCode::BAD_GATEWAY,
                "worker connection lost",
                request_id,
            )
        }
    }
}

/// A slot within `limits.streamed_upload_slots`, given back when dropped.
struct StreamedShare(Arc<WorkerConn>);

impl Drop for StreamedShare {
    fn drop(&mut self) {
        self.0.streamed_upload_done();
    }
}

/// A stream's request body on its way to the worker.
struct Pump {
    conn: Arc<WorkerConn>,
    id: u32,
    send: Arc<SendWindow<Failure>>,
    /// Set, before the stream is RESET, when the client fails its body.
    fault: Arc<OnceLock<ClientFault>>,
    shared: Arc<Shared>,
    /// The request's `bytes_in` in the access log.
    bytes_in: Option<Arc<AtomicU64>>,
}

impl Pump {
    /// Sends one piece of body as DATA, never more than the stream's window; `false` when
    /// the stream has failed.
    async fn send(&self, mut data: Bytes) -> bool {
        self.conn.bytes_to_worker.inc_by(data.len() as u64);
        if let Some(n) = &self.bytes_in {
            n.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        while !data.is_empty() {
            let Ok(n) = self.send.reserve(data.len().min(MAX_DATA_CHUNK)).await else {
                return false;
            };
            let chunk: Bytes = data.split_to(n);
            // Waits for room in the connection's queue (the bound on what a worker that
            // stops reading can make the gateway hold); `false` once the stream has ended.
            if !self.conn.send_data(self.id, false, &chunk).await {
                return false;
            }
        }
        true
    }

    /// Ends the request body: TRAILERS when the client sent trailer fields and the worker
    /// negotiated them (§3.10), else END_STREAM (trailer fields dropped and counted).
    async fn end(&self, trailers: Option<http::HeaderMap>) {
        if self.send.failure().is_some() {
            return;
        }
        let fields = trailers
            .map(|t| forward::request_trailers(&t))
            .filter(|f| !f.is_empty());
        let sent = match fields {
            Some(headers) if self.conn.trailers() => {
                let t = Trailers {
                    stream_id: self.id,
                    headers,
                };
                if t.payload_len() > MAX_TRAILERS_SIZE {
                    let why = "request trailers larger than max_trailers_size";
                    return self.client_failed(ClientFault::Malformed(why.into()));
                }
                self.conn.send_trailers(t).await
            }
            fields => {
                if fields.is_some() {
                    self.shared.metrics.request_trailers_dropped.inc();
                }
                self.conn.send_data(self.id, true, &[]).await
            }
        };
        if sent {
            self.conn.request_sent(self.id);
        }
    }

    /// The client failed its body: RESET the stream now, which frees the worker's slot.
    fn client_failed(&self, fault: ClientFault) {
        debug!(stream = self.id, fault = ?fault, "client request body failed; stream reset");
        self.shared.metrics.client_error(fault.metric());
        let why = fault.message();
        let _ = self.fault.set(fault);
        self.conn.cancel_stream(self.id, ResetCode::Cancel, why);
    }
}

/// Sends the client's body to the worker: what was buffered, then the rest as it comes,
/// under the client's [`UploadRules`].
async fn pump_body(body: Buffered, share: Option<StreamedShare>, pump: Pump) {
    // Held until the body is all sent or has failed: then the request counts as any other.
    let _share = share;
    let Buffered {
        chunks,
        rest,
        permit,
        mut trailers,
    } = body;
    for chunk in chunks {
        if !pump.send(chunk).await {
            return;
        }
    }
    drop(permit);
    if let Some(mut upload) = rest {
        loop {
            let next = tokio::select! {
                next = upload.next() => next,
                // The stream has ended without the rest of the body (a worker that answered
                // and RESET `no_error`, or a failure): it is not waited for; dropping it lets
                // hyper end the connection, with a lingering close (`lingering`).
                _ = pump.send.failed() => return,
            };
            match next {
                Ok(Some(data)) => {
                    if !pump.send(data).await {
                        return;
                    }
                }
                Ok(None) => break,
                Err(fault) => return pump.client_failed(fault),
            }
        }
        trailers = upload.take_trailers();
    }
    pump.end(trailers).await;
}

/// The answer to a client that failed its body before the request reached a worker.
fn client_fault(
    shared: &Shared,
    fault: &ClientFault,
    request_id: &HeaderValue,
) -> Response<GatewayBody> {
    debug!(request_id = %shown(request_id), fault = ?fault, "client request body failed before dispatch");
    shared.metrics.client_error(fault.metric());
    error_response(fault.status(), fault.message(), request_id)
}

//! The upgraded worker socket from HELLO to WELCOME: the handshake timeout, HELLO
//! validation with the gateway's own policy (route count, allow-list, conflicts), and
//! registration; then the reader loop takes over.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use futures_util::{Stream, StreamExt};
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::{debug, info, warn};
use vyx_core::error::CloseCode;
use vyx_core::features::Features;
use vyx_core::frame::{self, Frame};
use vyx_core::handshake::{self, ErrorMessage, HandshakeError, RouteSpec, Welcome};
use vyx_core::limits::MAX_FRAME_SIZE;
use vyx_core::transport::{write_loop, OutQueue, Outgoing};

use super::reader::read_loop;
use super::streams::StreamTable;
use super::{conn_routes, SocketHandle, WorkerConn};
use crate::auth::Admission;
use crate::registry::WorkerGroup;
use crate::Shared;

/// Whether the worker stays within `limits.routes_per_worker`.
pub(super) fn check_route_count(n: usize, shared: &Shared) -> Result<(), HandshakeError> {
    let max = shared.config.routes_per_worker;
    if n > max {
        return Err(HandshakeError::new(
            CloseCode::BadHello,
            format!("{n} routes declared; this gateway allows at most {max} per worker (limits.routes_per_worker)"),
        ));
    }
    Ok(())
}

/// Whether no route claims a path under `/_vyx/`, the gateway's own endpoints (§2.4): a
/// pattern whose first segment is the literal `_vyx`.
pub(super) fn check_reserved(routes: &[RouteSpec]) -> Result<(), HandshakeError> {
    let reserved = |path: &str| path.split('/').nth(1) == Some("_vyx");
    match routes.iter().find(|r| reserved(&r.path)) {
        None => Ok(()),
        Some(r) => Err(HandshakeError::new(
            CloseCode::BadHello,
            format!(
                "route {} {}: paths under /_vyx/ are the gateway's own",
                r.method, r.path
            ),
        )),
    }
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
pub(super) fn check_allowed(
    routes: &[RouteSpec],
    admission: &Admission,
) -> Result<(), HandshakeError> {
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
    socket: SocketHandle,
) where
    S: Stream<Item = Result<Message, tungstenite::Error>>
        + futures_util::Sink<Message, Error = tungstenite::Error>
        + Unpin
        + Send
        + 'static,
{
    let (sink, mut stream) = ws.split();
    // Until HELLO names the concurrency, nothing but control frames is queued.
    let queue = OutQueue::new(0);
    let writer = tokio::spawn(write_loop(sink, queue.clone()));
    let finish = || finish_writer(writer, &queue, &socket, &worker_id);
    let refuse = |e: HandshakeError| {
        warn!(worker_id = %worker_id, %addr, code = %e.code, reason = %e.message, "worker refused");
        shared.metrics.rejected(e.code.name());
        queue.push(Outgoing::Frame(
            Frame::Error(ErrorMessage {
                code: e.code as u16,
                message: e.message.clone(),
            })
            .encode(),
        ));
        queue.push(Outgoing::Close(e.code, e.message));
    };

    // HELLO, within the handshake timeout. Pings and pongs may come first: the socket
    // answers them (§2.1) and they are not frames.
    let deadline = tokio::time::Instant::now() + shared.config.handshake_timeout;
    let first = loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            other => break other,
        }
    };
    let hello = match first {
        Err(_) => {
            refuse(HandshakeError::new(
                CloseCode::HandshakeTimeout,
                format!("no HELLO within {:?}", shared.config.handshake_timeout),
            ));
            return finish().await;
        }
        Ok(Some(Ok(Message::Binary(b)))) => {
            let is_hello = b.first() == Some(&frame::kind::HELLO);
            match Frame::decode(b, MAX_FRAME_SIZE) {
                Ok(Frame::Hello(h)) => h,
                Ok(Frame::Error(e)) => {
                    debug!(code = e.code, message = %e.message, "worker gave up during the handshake");
                    return finish().await;
                }
                Ok(other) => {
                    refuse(HandshakeError::new(
                        CloseCode::ProtocolViolation,
                        format!("expected HELLO, got {}", other.name()),
                    ));
                    return finish().await;
                }
                // A HELLO whose JSON does not decode is the worker's own mistake, which
                // retrying cannot fix: 4001 (permanent), naming the error (§2.4).
                Err(e) if is_hello && e.close_code() == CloseCode::BadHello => {
                    refuse(HandshakeError::new(
                        CloseCode::BadHello,
                        format!("HELLO does not decode: {}: {e}", e.kind()),
                    ));
                    return finish().await;
                }
                Err(e) => {
                    refuse(HandshakeError::new(e.close_code(), e.to_string()));
                    return finish().await;
                }
            }
        }
        // tungstenite refuses a message over the frame limit before buffering it (§3.1).
        Ok(Some(Err(tungstenite::Error::Capacity(e)))) => {
            refuse(HandshakeError::new(
                CloseCode::FrameTooLarge,
                format!("HELLO over the {MAX_FRAME_SIZE}-byte frame limit: {e}"),
            ));
            return finish().await;
        }
        Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => {
            return finish().await;
        }
        Ok(Some(Ok(_))) => {
            refuse(HandshakeError::new(
                CloseCode::ProtocolViolation,
                "expected HELLO as a binary message",
            ));
            return finish().await;
        }
    };
    if let Err(e) = hello
        .validate(&worker_id)
        .and_then(|_| check_route_count(hello.routes.len(), &shared))
        .and_then(|_| check_reserved(&hello.routes))
        .and_then(|_| check_allowed(&hello.routes, &admission))
    {
        refuse(e);
        return finish().await;
    }

    let group = shared.registry.group(&worker_id);
    let serial = shared.next_serial.fetch_add(1, Ordering::Relaxed);
    let max_concurrency = hello
        .max_concurrency
        .min(shared.config.max_concurrency_per_connection);
    let routes = conn_routes(&hello.routes);
    let features =
        Features::from_names(&hello.features).intersection(Features::implemented_by_gateway());
    queue.set_data_limit(queued_data_limit(
        max_concurrency,
        shared.config.initial_window,
    ));
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
        features,
        routes: ArcSwap::from_pointee(routes),
        admission,
        bytes_to_worker: shared.metrics.bytes_to_workers.clone(),
        in_flight: AtomicUsize::new(0),
        streamed_uploads: AtomicUsize::new(0),
        slots: group.instances.slots(&hello.instance, addr.ip()),
        draining: AtomicBool::new(false),
        closed: AtomicBool::new(false),
        queue: queue.clone(),
        streams: Mutex::new(StreamTable::new()),
        slot_freed: group.slot_freed.clone(),
        shard: crate::shards::current(),
    });
    let welcome = Welcome {
        protocol: handshake::PROTOCOL_VERSION,
        gateway: concat!("vyx/", env!("CARGO_PKG_VERSION")).into(),
        connection_id: conn.connection_id.clone(),
        // vyx.yaml refuses more than WELCOME can carry; a config built in code is clamped.
        heartbeat_ms: shared.config.heartbeat.as_millis().min(i32::MAX as u128) as u32,
        initial_window: shared.config.initial_window,
        max_frame_size: MAX_FRAME_SIZE as u32,
        max_concurrency,
        // One connection per shard, so that each shard has one of the worker's (§3.8).
        connections: u32::try_from(shared.shards.len())
            .unwrap_or(u32::MAX)
            .min(vyx_core::limits::MAX_CONNECTIONS),
        features: features.names(),
    };
    {
        // Streams open under this lock: holding it from registration until WELCOME is
        // queued keeps any REQUEST for the new replica behind its WELCOME.
        let _streams = conn.streams.lock().unwrap();
        if let Err(e) = shared.registry.register(&conn, &group) {
            refuse(e);
            drop(_streams);
            return finish().await;
        }
        conn.send(Outgoing::Frame(Frame::Welcome(welcome).encode()));
    }
    let alongside = connections_of_instance(&conn, &group) - 1;
    shared
        .metrics
        .registered(&conn.worker_id, &conn.instance, alongside > 0);
    log_extra_replica(&conn, &group, &shared, alongside);
    if *shared.phase.borrow() == crate::stopping::Phase::Closing {
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
    if let Some(due) = shared.registry.unregister(&conn, shared.config.claim_grace) {
        info!(worker_id = %conn.worker_id, grace_ms = shared.config.claim_grace.as_millis() as u64, "last connection of the worker gone: its routes answer 503 until it returns or the claim grace ends");
        let shared = shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(due.deadline.into()).await;
            shared.registry.lapse(due);
        });
    }
    conn.fail_all(&end);
    info!(worker_id = %conn.worker_id, connection = %conn.connection_id, reason = %end, "worker disconnected");
    drop(conn);
    finish().await;
}

/// How many of `group`'s connections (`conn` among them) are `conn`'s instance's: the same
/// non-empty instance name from the same host, one connection per gateway shard (WELCOME's
/// `connections`, §2.3).
fn connections_of_instance(conn: &WorkerConn, group: &WorkerGroup) -> usize {
    if conn.instance.is_empty() {
        return 1;
    }
    let same = |c: &&Arc<WorkerConn>| c.instance == conn.instance && c.addr.ip() == conn.addr.ip();
    group.replicas.load().iter().filter(same).count().max(1)
}

/// Says so when a connection joins an id that already has one: it takes a share of the id's
/// requests (cookies and all). For an id no token vouches for (dev mode, or an undeclared id
/// let in by `accept_unknown_workers`) any process that can register could do that, so it
/// is a warning; a declared id's token was presented, and it is news only. Another
/// connection of an instance already connected (`alongside` of them) is a debug line: a
/// worker holds one per shard.
fn log_extra_replica(conn: &WorkerConn, group: &WorkerGroup, shared: &Shared, alongside: usize) {
    let replicas = group.replicas.load().len();
    if replicas < 2 {
        return;
    }
    let (worker_id, instance, addr) = (&conn.worker_id, &conn.instance, conn.addr);
    if alongside > 0 {
        let connections = alongside + 1;
        debug!(%worker_id, %instance, %addr, connections, "another connection of instance {instance} of worker id {worker_id}");
        return;
    }
    let declared = shared.config.declared_workers.contains(worker_id);
    if shared.config.dev_mode || !declared {
        warn!(%worker_id, %instance, %addr, replicas, "another replica joined worker id {worker_id}: it takes a share of the id's requests (no token vouches for this id: any process that can register may join it)");
    } else {
        info!(%worker_id, %instance, %addr, replicas, "another replica joined worker id {worker_id}: it takes a share of the id's requests");
    }
}

/// The most request-body DATA queued for one worker connection: the protocol's own bound,
/// `max_concurrency` × `initial_window` (§5), capped at [`QUEUED_DATA_CAP`].
pub(super) fn queued_data_limit(max_concurrency: u32, initial_window: u32) -> usize {
    (max_concurrency as usize)
        .saturating_mul(initial_window as usize)
        .min(QUEUED_DATA_CAP)
}

/// The cap on [`queued_data_limit`] for workers with a high concurrency: more than a socket
/// drains in a round trip, so it never slows a worker that reads.
pub(super) const QUEUED_DATA_CAP: usize = 64 << 20;

/// How long a connection that has ended gets to write what is queued and its close frame,
/// and then to close in turn. After that the writer is aborted and the socket reset (§7): a
/// worker that does not read holds no memory of the gateway's, in its queue or in the
/// kernel's.
pub(super) const CLOSE_WRITE_WAIT: Duration = Duration::from_secs(2);

async fn finish_writer(
    mut writer: tokio::task::JoinHandle<()>,
    queue: &OutQueue,
    socket: &SocketHandle,
    worker_id: &str,
) {
    // Response bodies may still hold the connection: a final close (a no-op after one
    // already queued) ends the writer rather than waiting for them.
    queue.push(Outgoing::Close(CloseCode::Normal, String::new()));
    if tokio::time::timeout(CLOSE_WRITE_WAIT, &mut writer)
        .await
        .is_err()
    {
        warn!(
            worker_id,
            queued_bytes = queue.queued_bytes(),
            "worker socket not drained within {CLOSE_WRITE_WAIT:?}; connection reset"
        );
        socket.reset_on_close();
        writer.abort();
        let _ = writer.await;
    } else {
        socket.lingering_close(CLOSE_WRITE_WAIT).await;
    }
}

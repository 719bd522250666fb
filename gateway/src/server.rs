//! The listeners: accept TCP connections, serve HTTP/1.1 and HTTP/2 on them, start the local
//! workers, and shut down gracefully (workers drained, in-flight requests finished, local
//! workers stopped).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, warn, Instrument};

use vyx_core::error::CloseCode;
use vyx_core::transport::Outgoing;

use crate::access_log::{self, AccessLog};
use crate::body::{GatewayBody, Tracked};
use crate::client_eof::ClientEof;
use crate::conn_limit::{
    self, ActiveRequest, Activity, Admission, ConnSlot, Counted, HeldRequest, RESERVE_DEADLINE,
};
use crate::h2_calm::H2Calm;
use crate::interim::{self, InterimIo, InterimSink};
use crate::lingering::{self, Lingering};
use crate::registry::Forgotten;
use crate::shards::{self, Shards};
use crate::stopping::{self, Phase};
use crate::supervisor::Supervisor;
use crate::tls::{ClientStream, OverTls, Tls};
use crate::{
    admin, log_limit, metrics, proxy, register, request_rules, target, GatewayConfig, Shared,
};

/// What a listener serves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    /// Clients, admin endpoints, and registrations unless a separate listener takes them.
    Http,
    /// Worker registrations only.
    Register,
}

/// A bound gateway, not yet serving.
pub struct Gateway {
    listeners: Vec<(TcpListener, Role)>,
    /// With TLS, the plain loopback listener local workers register on (they are started
    /// with its `ws://` URL, and need no certificate for a hop that stays on this host).
    local_register: Option<TcpListener>,
    tls: Option<Arc<Tls>>,
    shared: Arc<Shared>,
    /// Stopped when the gateway is dropped, or once `run` is over.
    shards: Shards,
}

impl Gateway {
    /// Binds every listen address (port 0 picks a free one).
    pub async fn bind(config: GatewayConfig) -> std::io::Result<Gateway> {
        let mut listeners = Vec::new();
        for addr in std::iter::once(&config.listen).chain(&config.extra_listen) {
            listeners.push((bind(*addr).await?, Role::Http));
        }
        if let Some(addr) = config.register_listen {
            listeners.push((bind(addr).await?, Role::Register));
        }
        let tls = config.tls.clone().map(Tls::new).transpose()?.map(Arc::new);
        let local_register = match tls.is_some() && !config.local_workers.is_empty() {
            true => Some(bind(SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0))).await?),
            false => None,
        };
        let metrics = Arc::new(metrics::Metrics::new());
        let nofile = conn_limit::nofile_limit();
        let cap = config
            .max_connections
            .unwrap_or_else(|| conn_limit::default_max_connections(nofile));
        info!(
            max_connections = cap,
            reserve = conn_limit::RESERVE,
            open_files = nofile,
            "connection limit"
        );
        let limiter = Arc::new(conn_limit::ConnLimiter::new(
            cap,
            metrics.open_connections.clone(),
        ));
        let access_log = Arc::new(AccessLog::start(
            &config.access_log,
            config.log_format,
            metrics.access_log_dropped.clone(),
        )?);
        if let access_log::Output::File(_) = &config.access_log.output {
            tokio::spawn(access_log::reopen_on_sighup(Arc::downgrade(&access_log)));
        }
        let tracing = crate::otel::Tracing::start(
            config.tracing.as_ref(),
            metrics.trace_spans_dropped.clone(),
        )?;
        if tracing.is_some() {
            info!("traces: a span per request, exported over OTLP/HTTP");
        }
        let shards = Shards::start(config.threads)?;
        info!(threads = shards.pool().len(), "shards");
        let budget = usize::try_from(config.body_buffer_total)
            .unwrap_or(usize::MAX)
            .min(tokio::sync::Semaphore::MAX_PERMITS);
        let shared = Arc::new(Shared {
            registry: Default::default(),
            next_serial: AtomicU64::new(1),
            request_seq: AtomicU64::new(0),
            id_seed: vyx_core::backoff::SplitMix64::new(vyx_core::backoff::random_seed())
                .next_u64(),
            phase: watch::Sender::new(Phase::Serving),
            metrics,
            limiter,
            body_budget: Arc::new(tokio::sync::Semaphore::new(budget)),
            response_budget: Arc::new(tokio::sync::Semaphore::new(
                usize::try_from(config.response_buffer_total)
                    .unwrap_or(usize::MAX)
                    .min(tokio::sync::Semaphore::MAX_PERMITS),
            )),
            access_log,
            tracing,
            ui: crate::ui::Dashboard::new(),
            startup: crate::starting::Startup::new(config.startup_grace),
            shards: shards.pool().clone(),
            config,
        });
        // A worker id or route the registry forgets leaves the metrics too.
        let gone = shared.metrics.clone();
        shared.registry.on_forget(move |what| match what {
            Forgotten::Worker(id) => gone.forget_worker(id),
            Forgotten::Route(key) => gone.forget_route(&key.to_string()),
        });
        Ok(Gateway {
            listeners,
            local_register,
            tls,
            shared,
            shards,
        })
    }

    /// The TLS side of the listeners, if `tls` is set: [`Tls::reload`] swaps the certificate.
    pub fn tls(&self) -> Option<Arc<Tls>> {
        self.tls.clone()
    }

    /// The first HTTP listener's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listeners[0]
            .0
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Every HTTP listener's address.
    pub fn http_addrs(&self) -> Vec<SocketAddr> {
        self.addrs(Role::Http)
    }

    /// Where workers register: the registration listener if there is one, else the first
    /// HTTP listener.
    pub fn register_addr(&self) -> SocketAddr {
        self.addrs(Role::Register)
            .first()
            .copied()
            .unwrap_or_else(|| self.local_addr())
    }

    fn addrs(&self, role: Role) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter(|(_, r)| *r == role)
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect()
    }

    /// The registration URL a worker on this machine uses (`ws://127.0.0.1:PORT/PATH` when
    /// the gateway listens on all interfaces): with TLS and local workers, the plain loopback
    /// listener kept for them; with TLS alone, `wss://`.
    pub fn loopback_register_url(&self) -> String {
        let local = self
            .local_register
            .as_ref()
            .and_then(|l| l.local_addr().ok());
        let mut addr = local.unwrap_or_else(|| self.register_addr());
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let scheme = match self.tls.is_some() && local.is_none() {
            true => "wss",
            false => "ws",
        };
        format!("{scheme}://{addr}{}", self.shared.config.register_path)
    }

    /// Serves until `shutdown` completes, then stops (see `stopping`): for
    /// `readiness_delay` readiness fails and clients are asked to leave while the gateway
    /// still serves; then it stops accepting, workers get DRAIN, in-flight requests finish
    /// (at most `drain_grace`), local workers are stopped, and the call returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let supervisor = Supervisor::start(
            &self.shared.config.local_workers,
            &self.loopback_register_url(),
        );
        let Gateway {
            listeners,
            local_register,
            tls,
            shared,
            shards,
        } = self;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        let config = &shared.config;
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            // Off: hyper reads the socket while a request is in flight, so a client that
            // leaves (FIN or reset) before its answer is complete ends the connection and
            // the request with it (RESET `cancel` to the worker). On: a client that sends
            // its request and then its FIN still gets the answer (`client_half_close`).
            .half_close(config.client_half_close);
        // RFC 8441: HTTP/2 clients may open WebSockets with extended CONNECT (§4.5).
        builder.http2().enable_connect_protocol();
        if let Some(max) = config.max_header {
            builder.http1().max_buf_size(max);
            builder
                .http2()
                .max_header_list_size(max.try_into().unwrap_or(u32::MAX));
        }
        let builder = Arc::new(builder);
        let (stop_tx, stop_rx) = watch::channel(false);
        let plain_local = local_register.map(|l| (l, Role::Register, None));
        let accepting: Vec<_> = listeners
            .into_iter()
            .map(|(l, role)| (l, role, tls.clone()))
            .chain(plain_local)
            .map(|(listener, role, tls)| {
                tokio::spawn(accept_loop(
                    listener,
                    role,
                    tls,
                    shared.clone(),
                    builder.clone(),
                    stop_rx.clone(),
                ))
            })
            .collect();
        let _memory_release = crate::memory_release::start(&shared);
        shutdown.await;
        let delay = shared.config.readiness_delay;
        info!(
            delay_ms = delay.as_millis() as u64,
            "stopping: readiness fails; serving until timeouts.readiness_delay is over"
        );
        shared.phase.send_replace(Phase::Leaving);
        tokio::time::sleep(delay).await;
        let _ = stop_tx.send(true);
        for task in accepting {
            let _ = task.await;
        }
        shutdown_gracefully(&shared).await;
        supervisor.stop(shared.config.drain_grace).await;
        flush_telemetry(shared).await;
        // What is left on the shards (a connection past the drain grace) is dropped.
        drop(shards);
        info!("gateway stopped");
        Ok(())
    }
}

/// Writes the access log lines and exports the spans of the last requests, which would be
/// lost when the process exits right after `run` returns.
async fn flush_telemetry(shared: Arc<Shared>) {
    let flushed = tokio::task::spawn_blocking(move || {
        if !shared.access_log.flush(TELEMETRY_FLUSH) {
            warn!("the access log writer is behind: its last lines may be lost");
        }
        if let Some(t) = &shared.tracing {
            t.shutdown();
        }
    });
    let _ = flushed.await;
}

/// How long a stop waits for the access log's last lines to be written.
const TELEMETRY_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

async fn accept_loop(
    listener: TcpListener,
    role: Role,
    tls: Option<Arc<Tls>>,
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut errors = conn_limit::AcceptErrors::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, log once.
                        let pause = errors.failed(&e);
                        tokio::select! {
                            _ = tokio::time::sleep(pause) => {}
                            _ = stopped(&mut stop) => return,
                        }
                        continue;
                    }
                };
                errors.accepted();
                let reserve = match shared.limiter.admit() {
                    Admission::Normal(slot) => Some((slot, false)),
                    Admission::Reserve(slot) => Some((slot, true)),
                    Admission::Refused => None,
                };
                let Some((slot, reserve)) = reserve else {
                    shared.metrics.client_error("connection_limit");
                    continue; // dropping the stream closes it
                };
                let _ = stream.set_nodelay(true);
                crate::response::set_user_timeout(&stream, shared.config.send_timeout);
                let conn = Accepted {
                    at: tokio::time::Instant::now(),
                    fd: std::os::fd::AsRawFd::as_raw_fd(&stream),
                    reserve,
                    peer,
                    role,
                };
                // Out of this runtime's reactor, into the shard's (see `shards`).
                let stream = match stream.into_std() {
                    Ok(s) => s,
                    Err(e) => {
                        debug!(error = %e, "accepted socket could not be handed to a shard; closed");
                        continue;
                    }
                };
                let on_shard = OnShard {
                    tls: tls.clone(),
                    shared: shared.clone(),
                    builder: builder.clone(),
                    phase: shared.phase.subscribe(),
                };
                let shard = shared.shards.next();
                let task = on_shard.serve(stream, slot, conn);
                shared.shards.spawn(shard, task.instrument(tracing::error_span!(log_limit::CONN_SPAN, %peer)));
            }
            _ = stopped(&mut stop) => return,
        }
    }
}

/// What an accepted connection takes to the shard it is served on.
struct OnShard {
    tls: Option<Arc<Tls>>,
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    /// Subscribed at the accept, so that a stop begun meanwhile waits for the connection.
    phase: watch::Receiver<Phase>,
}

impl OnShard {
    /// Serves `stream` on the shard this runs on, or, for a worker registration on a plain
    /// listener, on the shard with the fewest worker connections (see `shards`).
    async fn serve(mut self, stream: std::net::TcpStream, mut slot: ConnSlot, conn: Accepted) {
        let stream = match tokio::net::TcpStream::from_std(stream) {
            Ok(s) => s,
            Err(e) => return debug!(error = %e, "accepted socket not served; closed"),
        };
        let Some(tls) = self.tls.take() else {
            if let Some(seat) = self.worker_seat(&stream, conn).await {
                let here = shards::current();
                let shard = seat.shard();
                slot.take_seat(seat);
                if here.is_some_and(|h| h != shard) {
                    let Ok(stream) = stream.into_std() else {
                        return;
                    };
                    let span = tracing::Span::current();
                    let pool = self.shared.shards.clone();
                    return pool.spawn(
                        shard,
                        async move {
                            match tokio::net::TcpStream::from_std(stream) {
                                Ok(stream) => self.plain(stream, slot, conn),
                                Err(e) => debug!(error = %e, "worker socket not served; closed"),
                            }
                        }
                        .instrument(span),
                    );
                }
            }
            return self.plain(stream, slot, conn);
        };
        // The handshake runs under the connection's head deadline (a peer that never sends
        // its ClientHello is closed with it), in its slot; with no header timeout (only in
        // code), under the worker handshake's.
        let shared = &self.shared;
        let limit = head_deadline(conn.reserve, shared.config.header_read_timeout)
            .unwrap_or(shared.config.handshake_timeout);
        match tokio::time::timeout_at(conn.at + limit, tls.accept(stream, slot)).await {
            Ok(Ok(io)) => serve(io, conn, shared, &self.builder, self.phase),
            Ok(Err(e)) => {
                shared.metrics.client_error("tls_handshake");
                debug!(error = %e, "TLS handshake failed; closed");
            }
            Err(_) => {
                shared.metrics.client_error("header_timeout");
                debug!("no TLS handshake within timeouts.header_read; closed");
            }
        }
    }

    fn plain(self, stream: tokio::net::TcpStream, slot: ConnSlot, conn: Accepted) {
        let io = ClientStream::Plain(Counted::new(stream, slot));
        serve(io, conn, &self.shared, &self.builder, self.phase);
    }

    /// A seat for the connection if its first bytes are a worker registration, peeked
    /// (hyper reads them again), on a listener that takes registrations and with shards to
    /// choose from. A client that sends nothing is waited for until the gateway stops or the
    /// head deadline, as hyper would.
    async fn worker_seat(
        &mut self,
        stream: &tokio::net::TcpStream,
        conn: Accepted,
    ) -> Option<shards::Seat> {
        let shared = &self.shared;
        let registrations_here =
            conn.role == Role::Register || shared.config.register_listen.is_none();
        let here = shards::current()?;
        if !registrations_here || shared.shards.len() < 2 {
            return None;
        }
        let path = &shared.config.register_path;
        let mut head = vec![0u8; "GET ".len() + path.len() + 1];
        // What has come: a worker writes its request line at once; pieces say "client".
        let peek = async { stream.peek(&mut head).await.unwrap_or(0) };
        let deadline =
            head_deadline(conn.reserve, shared.config.header_read_timeout).map(|t| conn.at + t);
        let n = tokio::select! {
            n = peek => n,
            _ = self.phase.changed() => 0,
            _ = sleep_until(deadline) => 0,
        };
        shards::is_registration(&head[..n], path).then(|| shared.shards.seat_worker(here))
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// A client connection's socket as hyper gets it; a worker registration takes it back from
/// hyper as this type (`register`), so the two must not differ.
pub(crate) type ClientIo = TokioIo<InterimIo<H2Calm<Lingering>>>;

/// An accepted connection, before it is served.
#[derive(Clone, Copy)]
struct Accepted {
    /// The header timeout runs from here.
    at: tokio::time::Instant,
    /// The TCP socket's: a stalled response looks at its client's socket.
    fd: std::os::fd::RawFd,
    /// Admitted past the cap: `/_vyx/` only (see `conn_limit`).
    reserve: bool,
    peer: SocketAddr,
    role: Role,
}

/// How long a connection has from its accept to its first request head: a reserve
/// connection lives [`RESERVE_DEADLINE`] at most.
fn head_deadline(
    reserve: bool,
    header_timeout: Option<std::time::Duration>,
) -> Option<std::time::Duration> {
    match (reserve, header_timeout) {
        (true, t) => Some(t.map_or(RESERVE_DEADLINE, |t| t.min(RESERVE_DEADLINE))),
        (false, t) => t,
    }
}

/// Serves one client connection. The header timeout runs from the accept (a TLS handshake
/// included), before hyper has even seen whether it is HTTP/1 or HTTP/2: a connection that
/// has not completed a request head in time is closed, whatever it sent. A reserve
/// connection lives [`RESERVE_DEADLINE`] at most, unless hyper hands it on as a WebSocket
/// before that.
fn serve(
    stream: ClientStream,
    accepted: Accepted,
    shared: &Arc<Shared>,
    builder: &auto::Builder<TokioExecutor>,
    mut phase: watch::Receiver<Phase>,
) {
    let Accepted {
        at,
        fd,
        reserve,
        peer,
        role,
    } = accepted;
    let first_head = Arc::new(AtomicBool::new(false));
    let is_h2 = Arc::new(AtomicBool::new(false));
    // Told when the connection turns out HTTP/2: a stopping gateway sends it GOAWAY then.
    let h2_seen = Arc::new(tokio::sync::Notify::new());
    let activity = Arc::new(Activity::default());
    let (seen, h2, active) = (first_head.clone(), is_h2.clone(), activity.clone());
    let (on_h2, is_h2_here) = (h2_seen.clone(), is_h2.clone());
    // Told when an HTTP/1 response is aborted for `timeouts.send`: hyper no longer polls a
    // body its client's socket cannot take, so the connection is closed from here.
    let send_timed_out = Arc::new(tokio::sync::Notify::new());
    let abort_h1 = send_timed_out.clone();
    let svc_shared = shared.clone();
    // Without half-close hyper watches the socket itself (see `run`).
    let watch_eof = shared.config.client_half_close;
    let over_tls = matches!(stream, ClientStream::Tls(_));
    let (stream, linger) = Lingering::new(stream, fd, reserve, shared.clone());
    let interim_sink = Arc::new(InterimSink::default());
    let interims = interim_sink.clone();
    let svc = service_fn(move |mut req: Request<Incoming>| {
        seen.store(true, Ordering::Relaxed);
        if over_tls {
            req.extensions_mut().insert(OverTls);
        }
        if req.version() == http::Version::HTTP_2 {
            // An upgraded stream (extended CONNECT) counts as a request open for its life.
            req.extensions_mut().insert(active.clone());
            if !h2.swap(true, Ordering::Relaxed) {
                on_h2.notify_one();
            }
        }
        let h1 = req.version() <= http::Version::HTTP_11;
        if h1 {
            linger.request(!http_body::Body::is_end_stream(req.body()));
        }
        let turn = RequestTurn {
            shared: svc_shared.clone(),
            peer,
            role,
            reserve,
            active: active.start(),
            interims: (req.version() == http::Version::HTTP_11).then(|| interims.clone()),
            linger: linger.clone(),
            abort_h1: abort_h1.clone(),
            client_eof: (h1 && watch_eof).then_some(fd),
        };
        serve_request(req, turn)
    });
    let io: ClientIo = TokioIo::new(InterimIo::new(
        H2Calm::new(stream, shared.clone()),
        interim_sink,
    ));
    let conn = builder.serve_connection_with_upgrades(io, svc).into_owned();
    let conn = async move {
        // Pinned here, so that `select!` only borrows it: the socket stays open until the
        // handler below has set its linger (select! drops its futures before a handler).
        tokio::pin!(conn);
        let mut asked_to_go = false;
        loop {
            tokio::select! {
                r = &mut conn => return r,
                _ = send_timed_out.notified() => {
                    // A reset, not a FIN: the kernel drops what the client never read instead
                    // of keeping it, and the connection, while the client answers zero-window
                    // probes. SAFETY: `conn` owns the socket and is dropped only after this.
                    let sock = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
                    let _ = socket2::SockRef::from(&sock).set_linger(Some(std::time::Duration::ZERO));
                    debug!("client took nothing for timeouts.send; connection reset");
                    return Ok(());
                }
                // GOAWAY (HTTP/2), or closing once idle (HTTP/1), as the gateway stops.
                _ = stopping::go_away(&mut phase, &is_h2_here, &h2_seen), if !asked_to_go => {
                    asked_to_go = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    };
    let header_timeout = shared.config.header_read_timeout;
    let shared = shared.clone();
    let task = async move {
        tokio::pin!(conn);
        let result = match head_deadline(reserve, header_timeout) {
            None => conn.await,
            Some(t) => match tokio::time::timeout_at(at + t, &mut conn).await {
                Ok(r) => r,
                Err(_) if reserve => {
                    debug!("reserve connection past its deadline; closed");
                    return;
                }
                Err(_) if !first_head.load(Ordering::Relaxed) => {
                    shared.metrics.client_error("header_timeout");
                    debug!("no request head within timeouts.header_read; closed");
                    return;
                }
                Err(_) if !is_h2.load(Ordering::Relaxed) => conn.await,
                // hyper times idle HTTP/1 keep-alive connections (the next head); an HTTP/2
                // connection with no request open is closed here, after as long.
                Err(_) => loop {
                    let wait = match activity.idle_for() {
                        Some(was) if was >= t => {
                            debug!("HTTP/2 connection idle past timeouts.header_read; closed");
                            return;
                        }
                        Some(was) => t - was,
                        None => t,
                    };
                    if let Ok(r) = tokio::time::timeout(wait, &mut conn).await {
                        break r;
                    }
                },
            },
        };
        if let Err(e) = result {
            debug!(error = %e, "HTTP connection ended with an error");
        }
    };
    tokio::spawn(task.instrument(tracing::error_span!(log_limit::CONN_SPAN, %peer)));
}

/// What one request's future takes from its connection.
struct RequestTurn {
    shared: Arc<Shared>,
    peer: SocketAddr,
    role: Role,
    reserve: bool,
    active: ActiveRequest,
    /// HTTP/1.1: where its interim responses go.
    interims: Option<Arc<InterimSink>>,
    linger: Arc<lingering::Intent>,
    abort_h1: Arc<tokio::sync::Notify>,
    /// HTTP/1 with half-closes allowed: the socket watched for the client's leaving.
    client_eof: Option<std::os::fd::RawFd>,
}

/// One request, as hyper holds it until the response head: [`route`] in the task-local
/// scopes its streams and its access-log entry look for, then its response finished.
/// hyper moves this future into its in-flight slot per request, so it is kept little larger
/// than `route`'s own: `route`'s future is made here and awaited where it lies, and the
/// scopes are structs around it (an `async` wrapper given a future by value holds it twice;
/// three of them made the 7.9 KB of the handling an 80 KB future).
async fn serve_request(
    req: Request<Incoming>,
    turn: RequestTurn,
) -> Result<Response<Tracked>, Infallible> {
    let RequestTurn {
        shared,
        peer,
        role,
        reserve,
        active,
        interims,
        linger,
        abort_h1,
        client_eof,
    } = turn;
    let h1 = req.version() <= http::Version::HTTP_11;
    // In a block, so that what follows does not keep room for the handling beside its own.
    let (mut resp, access) = {
        let handling = route(req, &shared, peer, role, reserve);
        let handling = access_log::handing_off(interim::scope(interims.clone(), handling));
        tokio::pin!(handling);
        let resp = handling.as_mut().await;
        (resp, access_log::handed(handling))
    };
    let leaving = *shared.phase.borrow() != Phase::Serving;
    if (reserve || leaving) && h1 && resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        // A reserve slot serves one request; a stopping gateway's clients go elsewhere.
        resp.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    if let Some(sink) = interims {
        sink.finish_request().await;
    }
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        linger.handed_on();
    }
    let request = held_request(active, h1, resp.body(), abort_h1);
    Ok(resp.map(|body| Tracked {
        body,
        _active: request,
        client_eof: client_eof.map(ClientEof::new),
        access,
    }))
}

/// The request's place in its connection's activity count, for its response body to hold,
/// and what an abort for `timeouts.send` does: HTTP/1 closes the connection (`abort_h1`);
/// HTTP/2 ends the request's activity, the only one that shares it (and its allocation).
fn held_request(
    request: ActiveRequest,
    h1: bool,
    body: &GatewayBody,
    abort_h1: Arc<tokio::sync::Notify>,
) -> HeldRequest {
    if h1 {
        body.on_send_timeout(move || abort_h1.notify_one());
        return HeldRequest::Own(request);
    }
    let request = Arc::new(std::sync::Mutex::new(Some(request)));
    let active = Arc::downgrade(&request);
    body.on_send_timeout(move || {
        if let Some(a) = active.upgrade() {
            a.lock().unwrap().take();
        }
    });
    HeldRequest::Shared(request)
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn shutdown_gracefully(shared: &Shared) {
    let grace = shared.config.drain_grace;
    shared.phase.send_replace(Phase::Closing);
    let conns = shared.registry.connections();
    info!(
        workers = conns.len(),
        grace_ms = grace.as_millis() as u64,
        "shutting down: draining workers"
    );
    for c in &conns {
        c.start_drain("gateway shutting down", grace);
    }
    drop(conns);
    let all = async {
        // Every client connection task holds a receiver until it ends.
        tokio::join!(shared.phase.closed(), workers_gone(shared));
    };
    if tokio::time::timeout(grace, all).await.is_err() {
        warn!("drain grace period over; closing what is left");
        // The gateway sent the DRAIN, so it enforces the deadline (§7): 4010, and the
        // streams left fail with 502 as each connection's reader ends.
        for c in shared.registry.connections() {
            let open = c.in_flight.load(Ordering::Acquire);
            c.send(Outgoing::Close(
                CloseCode::DrainTimeout,
                format!("{open} streams still open at the drain deadline"),
            ));
        }
        // Bounded: a worker that never answers the close does not hold the exit.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), workers_gone(shared)).await;
    }
}

/// Waits until no worker connection is registered.
async fn workers_gone(shared: &Shared) {
    loop {
        let left = shared.registry.left.notified();
        tokio::pin!(left);
        left.as_mut().enable();
        if shared.registry.connection_count() == 0 {
            return;
        }
        left.await;
    }
}

/// The gateway's answer to a request it refuses before routing, counted under `metric`.
fn refuse(
    shared: &Shared,
    metric: &'static str,
    status: http::StatusCode,
    message: &'static str,
    version: http::Version,
) -> Response<GatewayBody> {
    shared.metrics.client_error(metric);
    debug!(reason = message, "request refused");
    let mut resp = proxy::error_response(status, message, &http::HeaderValue::from_static("-"));
    if version <= http::Version::HTTP_11 {
        // Nothing more is read from a client that broke the rules (nor its body).
        resp.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    resp
}

async fn route(
    req: Request<Incoming>,
    shared: &Arc<Shared>,
    peer: SocketAddr,
    role: Role,
    reserve: bool,
) -> Response<GatewayBody> {
    let (mut parts, body) = req.into_parts();
    if let Err(r) = request_rules::check(&parts) {
        return refuse(shared, r.metric, r.status, r.message, parts.version);
    }
    // Before routing, so that a route matches raw UTF-8 as it matches its percent-encoding.
    match target::for_worker(&parts.uri) {
        Ok(None) => {}
        Ok(Some(uri)) => parts.uri = uri,
        Err(r) => return refuse(shared, "bad_target", r.status, r.message, parts.version),
    }
    let req = Request::from_parts(parts, body);
    let shared = shared.clone();
    let path = req.uri().path();
    let registrations_here = role == Role::Register || shared.config.register_listen.is_none();
    if path == shared.config.register_path && registrations_here {
        return register::register(req, shared, peer, reserve);
    }
    let no_such = |what| {
        proxy::error_response(
            StatusCode::NOT_FOUND,
            what,
            &http::HeaderValue::from_static("-"),
        )
    };
    if role == Role::Register {
        return no_such("this listener takes worker registrations only");
    }
    if let Some(rest) = path.strip_prefix("/_vyx/") {
        return match rest {
            "health" => admin::health(&shared, req.uri().query()),
            "workers" | "metrics" => match admin::admin_refusal(&req, &shared) {
                Some(refused) => refused,
                None if rest == "workers" => admin::workers(&shared, req.uri().query()),
                None => admin::metrics(&shared),
            },
            "ui" | "ui/events" | "ui/login" => crate::ui::serve(req, &shared).await,
            _ => no_such("no such admin endpoint"),
        };
    }
    if reserve {
        shared.metrics.client_error("connection_limit");
        return proxy::error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "connection limit reached: only /_vyx/ endpoints are served on this connection",
            &http::HeaderValue::from_static("-"),
        );
    }
    proxy::proxy(req, shared, peer).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns, without calling it.
    fn future_size<A, B, F: Future>(_: impl FnOnce(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// hyper moves each request's future into its in-flight slot, all of its bytes: the
    /// future must not grow back to a multiple of `route`'s (80 KB when three `async`
    /// wrappers each held the one inside by value; 8.6 KiB now in a test build, of which
    /// `route`'s is 7.1 KiB). A wrapper that holds it twice again fails this.
    #[test]
    fn a_requests_future_is_not_a_multiple_of_its_handling() {
        let size = future_size(serve_request);
        assert!(size <= 12 * 1024, "a request's future is {size} bytes");
    }
}

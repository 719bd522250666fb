//! The listener: accepts TCP connections, serves HTTP/1.1 and HTTP/2 on them, and shuts
//! down gracefully (workers drained, in-flight requests finished).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::body::GatewayBody;
use crate::{admin, proxy, register, GatewayConfig, Shared};

/// A bound gateway, not yet serving.
pub struct Gateway {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Gateway {
    /// Binds the listen address (port 0 picks a free one).
    pub async fn bind(config: GatewayConfig) -> std::io::Result<Gateway> {
        let listener = TcpListener::bind(config.listen).await?;
        let shared = Arc::new(Shared {
            registry: Default::default(),
            next_serial: AtomicU64::new(1),
            request_seq: AtomicU64::new(0),
            id_seed: vyx_core::backoff::SplitMix64::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64)
                    ^ u64::from(std::process::id()),
            )
            .next_u64(),
            shutting_down: AtomicBool::new(false),
            config,
        });
        Ok(Gateway { listener, shared })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves until `shutdown` completes, then drains: workers get DRAIN, in-flight
    /// requests finish (at most `drain_grace`), and the call returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let Gateway { listener, shared } = self;
        let builder = auto::Builder::new(TokioExecutor::new());
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors and the like: keep serving the others.
                            warn!(error = %e, "accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let shared = shared.clone();
                    let svc = service_fn(move |req| handle(req, shared.clone(), peer));
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            debug!(error = %e, %peer, "HTTP connection ended with an error");
                        }
                    });
                }
                _ = &mut shutdown => break,
            }
        }
        drop(listener);
        shutdown_gracefully(&shared, graceful).await;
        Ok(())
    }
}

async fn shutdown_gracefully(shared: &Shared, graceful: GracefulShutdown) {
    let grace = shared.config.drain_grace;
    shared.shutting_down.store(true, Ordering::Release);
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
    let workers_gone = async {
        loop {
            let left = shared.registry.left.notified();
            tokio::pin!(left);
            left.as_mut().enable();
            if shared.registry.connection_count() == 0 {
                return;
            }
            left.await;
        }
    };
    let all = async {
        tokio::join!(graceful.shutdown(), workers_gone);
    };
    if tokio::time::timeout(grace, all).await.is_err() {
        warn!("drain grace period over; closing what is left");
    }
    info!("gateway stopped");
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    peer: SocketAddr,
) -> Result<Response<GatewayBody>, Infallible> {
    let path = req.uri().path();
    if path == shared.config.register_path {
        return Ok(register::register(req, shared, peer));
    }
    if let Some(rest) = path.strip_prefix("/_vyx/") {
        return Ok(match rest {
            "health" => admin::health(&shared),
            "workers" => admin::workers(&shared),
            _ => proxy::error_response(
                StatusCode::NOT_FOUND,
                "no such admin endpoint",
                &http::HeaderValue::from_static("-"),
            ),
        });
    }
    Ok(proxy::proxy(req, shared, peer).await)
}

//! One session's task: dial one gateway address, handshake, run the connection, and
//! reconnect with backoff until the engine stops it, its address goes away, or the gateway
//! refuses the worker for good (PROTOCOL.md §9).

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::events::SessionEvents;
use super::{connect, connection, ConnectionState, EngineError, WorkerConfig};
use crate::backoff::{Backoff, STABLE_MS};
use crate::error::CloseCode;

/// What every session of an engine shares.
pub(crate) struct Shared {
    pub(crate) cfg: WorkerConfig,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    /// The route ids this worker declared, sorted.
    pub(crate) routes: Vec<u16>,
    /// Numbers connections across every session, for stream slots.
    seq: AtomicU32,
    told_stderr: AtomicBool,
}

impl Shared {
    pub(crate) fn new(cfg: WorkerConfig, tls: Option<Arc<rustls::ClientConfig>>) -> Shared {
        let mut routes: Vec<u16> = cfg.routes.iter().map(|r| r.id as u16).collect();
        routes.sort_unstable();
        Shared {
            cfg,
            tls,
            routes,
            seq: AtomicU32::new(0),
            told_stderr: AtomicBool::new(false),
        }
    }
}

/// Whether log events go nowhere (no tracing subscriber, global or scoped).
fn logs_unseen() -> bool {
    tracing::dispatcher::get_default(|d| d.is::<tracing::subscriber::NoSubscriber>())
}

/// A first session's line to its address's keeper (gateways.rs): the `connections` of each
/// WELCOME it accepts (§9.1 "Connections per address"), and a poke to look at it.
pub(crate) struct Asked {
    pub(crate) connections: Arc<AtomicU32>,
    pub(crate) poke: mpsc::Sender<()>,
}

/// Where one session dials.
pub(crate) struct Dest<'a> {
    pub(crate) url: &'a str,
    pub(crate) addr: SocketAddr,
}

/// Runs one session to its end and reports its last state. `failed` hears of each failed
/// attempt, so that the host name is resolved again at once; `asked`, given to an address's
/// first session only, of each WELCOME's `connections`.
pub(crate) async fn session(
    shared: &Shared,
    dest: Dest<'_>,
    events: SessionEvents,
    stop: watch::Receiver<Option<Duration>>,
    failed: mpsc::UnboundedSender<()>,
    asked: Option<Asked>,
) -> Result<(), EngineError> {
    let result = reconnect_loop(shared, &dest, &events, stop, failed, asked).await;
    events.state(match &result {
        Ok(()) => ConnectionState::Stopped,
        Err(e) => ConnectionState::Failed {
            cause: e.to_string(),
        },
    });
    result
}

async fn reconnect_loop(
    shared: &Shared,
    dest: &Dest<'_>,
    events: &SessionEvents,
    mut stop: watch::Receiver<Option<Duration>>,
    failed: mpsc::UnboundedSender<()>,
    asked: Option<Asked>,
) -> Result<(), EngineError> {
    let cfg = &shared.cfg;
    let (url, addr) = (dest.url, dest.addr);
    let mut backoff = Backoff::new();
    loop {
        if stop.borrow().is_some() {
            return Ok(());
        }
        let dialed = tokio::select! {
            r = connect::dial(cfg, url, addr, shared.tls.clone()) => r,
            _ = stop.wait_for(Option::is_some) => return Ok(()),
        };
        // HELLO is out: the gateway may register this connection and send it requests at
        // any moment. A drain from here on does not cut the handshake (bounded by its
        // timeout): the connection drains at once, so a REQUEST already sent is answered.
        let attempt = match dialed {
            Ok(ws) => connect::welcome(ws, cfg).await,
            Err(e) => Err(e),
        };
        if attempt.is_err() && stop.borrow().is_some() {
            return Ok(());
        }
        let cause = match attempt {
            Ok((ws, welcome)) => {
                info!(gateway = %url, %addr, worker_id = %cfg.worker_id, connection = %welcome.connection_id, "registered");
                events.state(ConnectionState::Connected {
                    connection_id: welcome.connection_id.clone(),
                });
                if let Some(asked) = &asked {
                    asked
                        .connections
                        .store(welcome.connections, Ordering::Release);
                    let _ = asked.poke.try_send(());
                }
                let up_since = tokio::time::Instant::now();
                let end = connection::run(
                    ws,
                    connection::RunArgs {
                        welcome: &welcome,
                        events,
                        stop: &mut stop,
                        routes: &shared.routes,
                        seq: shared.seq.fetch_add(1, Ordering::Relaxed).wrapping_add(1),
                    },
                )
                .await;
                if matches!(end, connection::ConnEnd::Drained) || stop.borrow().is_some() {
                    info!(gateway = %url, %addr, "drained and disconnected");
                    return Ok(());
                }
                if let connection::ConnEnd::Closed(Some(code), reason) = &end {
                    if let Some(code) = CloseCode::from_u16(*code).filter(|c| c.is_permanent()) {
                        warn!(gateway = %url, %addr, %code, %reason, "gateway refused this worker; not reconnecting");
                        return Err(EngineError::Closed {
                            code,
                            reason: reason.clone(),
                        });
                    }
                }
                if up_since.elapsed() >= Duration::from_millis(STABLE_MS) {
                    backoff.reset();
                }
                end.to_string()
            }
            Err(e) if e.is_permanent() => {
                warn!(gateway = %url, %addr, error = %e, "registration refused; not retrying");
                return Err(e.into());
            }
            Err(e) => {
                if logs_unseen() && !shared.told_stderr.swap(true, Ordering::Relaxed) {
                    // Without a subscriber, a worker that cannot reach its gateway would
                    // retry in silence forever: say it once where a developer looks. A closed
                    // stderr must not stop the worker (eprintln! would panic).
                    let _ = writeln!(
                        std::io::stderr(),
                        "vyx: cannot register with the gateway at {url} ({addr}): {e}; retrying with backoff \
                         (install a tracing subscriber to see the worker's logs)"
                    );
                }
                e.to_string()
            }
        };
        let _ = failed.send(());
        let delay = backoff.next_delay();
        warn!(gateway = %url, %addr, %cause, attempt = backoff.attempt(), delay_ms = delay.as_millis() as u64, "reconnecting");
        events.state(ConnectionState::Reconnecting {
            attempt: backoff.attempt(),
            delay,
            cause,
        });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(Option::is_some) => return Ok(()),
        }
        events.state(ConnectionState::Connecting);
    }
}

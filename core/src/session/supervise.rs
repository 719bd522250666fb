//! The engine's task: dial, handshake, run the connection, and reconnect with backoff until
//! the host stops it or the gateway refuses the worker for good (PROTOCOL.md §9).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use super::events::Events;
use super::{connect, connection, registration_url, ConnectionState, EngineError, WorkerConfig};
use crate::backoff::{Backoff, STABLE_MS};
use crate::error::CloseCode;

/// Whether log events go nowhere (no tracing subscriber, global or scoped).
fn logs_unseen() -> bool {
    tracing::dispatcher::get_default(|d| d.is::<tracing::subscriber::NoSubscriber>())
}

pub(crate) async fn supervise(
    cfg: WorkerConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    events: &Events,
    mut stop: watch::Receiver<Option<Duration>>,
) -> Result<(), EngineError> {
    let mut backoff = Backoff::new();
    let url = registration_url(&cfg.connect);
    let mut routes: Vec<u16> = cfg.routes.iter().map(|r| r.id as u16).collect();
    routes.sort_unstable();
    let mut seq: u32 = 0;
    let mut told_stderr = false;
    loop {
        if stop.borrow().is_some() {
            return Ok(());
        }
        let dialed = tokio::select! {
            r = connect::dial(&cfg, tls.clone()) => r,
            _ = stop.wait_for(Option::is_some) => return Ok(()),
        };
        // HELLO is out: the gateway may register this connection and send it requests at
        // any moment. A drain from here on does not cut the handshake (bounded by its
        // timeout): the connection drains at once, so a REQUEST already sent is answered.
        let attempt = match dialed {
            Ok(ws) => connect::welcome(ws, &cfg).await,
            Err(e) => Err(e),
        };
        if attempt.is_err() && stop.borrow().is_some() {
            return Ok(());
        }
        let cause = match attempt {
            Ok((ws, welcome)) => {
                info!(gateway = %url, worker_id = %cfg.worker_id, connection = %welcome.connection_id, "registered");
                events.state(ConnectionState::Connected {
                    connection_id: welcome.connection_id.clone(),
                });
                seq = seq.wrapping_add(1);
                let up_since = tokio::time::Instant::now();
                let end = connection::run(
                    ws,
                    connection::RunArgs {
                        welcome: &welcome,
                        events,
                        stop: &mut stop,
                        routes: &routes,
                        seq,
                    },
                )
                .await;
                if matches!(end, connection::ConnEnd::Drained) || stop.borrow().is_some() {
                    info!("drained and disconnected");
                    return Ok(());
                }
                if let connection::ConnEnd::Closed(Some(code), reason) = &end {
                    if let Some(code) = CloseCode::from_u16(*code).filter(|c| c.is_permanent()) {
                        warn!(%code, %reason, "gateway refused this worker; not reconnecting");
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
                warn!(error = %e, "registration refused; not retrying");
                return Err(e.into());
            }
            Err(e) => {
                if !told_stderr && logs_unseen() {
                    // Without a subscriber, a worker that cannot reach its gateway would
                    // retry in silence forever: say it once where a developer looks.
                    told_stderr = true;
                    eprintln!(
                        "vyx: cannot register with the gateway at {url}: {e}; retrying with backoff \
                         (install a tracing subscriber to see the worker's logs)"
                    );
                }
                e.to_string()
            }
        };
        let delay = backoff.next_delay();
        warn!(%cause, attempt = backoff.attempt(), delay_ms = delay.as_millis() as u64, "reconnecting");
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

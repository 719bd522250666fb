//! The worker's sessions (PROTOCOL.md §9.1): one per gateway in the `connect` list and per
//! address its host name resolves to, each reconnecting on its own. A name is resolved
//! again every `resolve_interval` and whenever one of its sessions fails: an address that
//! appears gets a session, one that goes has its session drained.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::events::{Events, SessionEvents};
use super::resolve::Target;
use super::supervise::{self, Dest, Shared};
use super::{ConnectionState, EngineError};
use crate::backoff::Backoff;
use crate::config::DEFAULT_DRAIN_TIMEOUT;

type Stop = watch::Receiver<Option<Duration>>;

/// Runs every target until the engine stops (`Ok`) or every session was refused for good
/// (the first refusal).
pub(crate) async fn run(
    shared: Arc<Shared>,
    targets: Vec<Target>,
    events: &Events,
    stop: Stop,
) -> Result<(), EngineError> {
    let mut tasks = JoinSet::new();
    for target in targets {
        tasks.spawn(follow(shared.clone(), target, events.clone(), stop.clone()));
    }
    let mut refusal = None;
    let mut served = false;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => served = true,
            Ok(Err(e)) => {
                refusal.get_or_insert(e);
            }
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    match refusal {
        Some(e) if !served => Err(e),
        _ => Ok(()),
    }
}

/// One live session of a target.
struct Live {
    key: u64,
    stop: watch::Sender<Option<Duration>>,
}

/// Keeps one session per address of `target` until the engine stops (`Ok`) or every
/// address refused the worker (the first refusal).
async fn follow(
    shared: Arc<Shared>,
    target: Target,
    events: Events,
    mut stop: Stop,
) -> Result<(), EngineError> {
    let mut live: HashMap<SocketAddr, Live> = HashMap::new();
    let mut refused: HashSet<SocketAddr> = HashSet::new();
    let mut refusal: Option<EngineError> = None;
    let mut tasks: JoinSet<(u64, SocketAddr, Result<(), EngineError>)> = JoinSet::new();
    let (failed_tx, mut failed_rx) = mpsc::unbounded_channel();
    // Stands for the target in the gateways' states while its name resolves to nothing.
    let mut unresolved: Option<SessionEvents> = None;
    let mut backoff = Backoff::new();
    let mut next_key = 0u64;
    'resolve: loop {
        if stop.borrow().is_some() {
            break;
        }
        let resolved = tokio::select! {
            r = shared.cfg.resolver.addresses(&target) => r,
            _ = stop.wait_for(Option::is_some) => break,
        };
        let mut wait = shared.cfg.resolve_interval;
        match resolved {
            Ok(addrs) if !addrs.is_empty() => {
                backoff.reset();
                if let Some(u) = unresolved.take() {
                    u.state(ConnectionState::Stopped);
                }
                for addr in &addrs {
                    if live.contains_key(addr) || refused.contains(addr) {
                        continue;
                    }
                    next_key += 1;
                    let (tx, rx) = watch::channel(None);
                    live.insert(
                        *addr,
                        Live {
                            key: next_key,
                            stop: tx,
                        },
                    );
                    let session = events.session(&target.url, Some(*addr));
                    let (shared, url, addr, key) =
                        (shared.clone(), target.url.clone(), *addr, next_key);
                    let failed = failed_tx.clone();
                    tasks.spawn(async move {
                        let dest = Dest { url: &url, addr };
                        let r = supervise::session(&shared, dest, session, rx, failed).await;
                        (key, addr, r)
                    });
                }
                live.retain(|addr, session| {
                    let keep = addrs.contains(addr);
                    if !keep {
                        info!(gateway = %target.url, %addr, "address gone from DNS: draining its session");
                        session.stop.send_replace(Some(DEFAULT_DRAIN_TIMEOUT));
                    }
                    keep
                });
            }
            other => {
                let cause = match other {
                    Err(e) => format!("cannot resolve {}: {e}", target.host),
                    Ok(_) => format!("{} resolves to no address", target.host),
                };
                if live.is_empty() {
                    let delay = backoff.next_delay();
                    warn!(gateway = %target.url, %cause, delay_ms = delay.as_millis() as u64, "resolving again");
                    unresolved
                        .get_or_insert_with(|| events.session(&target.url, None))
                        .state(ConnectionState::Reconnecting {
                            attempt: backoff.attempt(),
                            delay,
                            cause,
                        });
                    wait = delay;
                } else {
                    warn!(gateway = %target.url, %cause, "keeping the sessions it has");
                }
            }
        }
        let again = tokio::time::sleep(wait);
        tokio::pin!(again);
        loop {
            if live.is_empty() && tasks.is_empty() && unresolved.is_none() {
                // Every address refused the worker for good.
                return Err(refusal.expect("a session ended refused"));
            }
            tokio::select! {
                _ = &mut again => continue 'resolve,
                Some(()) = failed_rx.recv() => {
                    while failed_rx.try_recv().is_ok() {}
                    continue 'resolve;
                }
                Some(joined) = tasks.join_next() => {
                    let (key, addr, result) = joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
                    if live.get(&addr).is_some_and(|l| l.key == key) {
                        live.remove(&addr);
                    }
                    if let Err(e) = result {
                        refused.insert(addr);
                        refusal.get_or_insert(e);
                    }
                }
                _ = stop.wait_for(Option::is_some) => break 'resolve,
            }
        }
    }
    // The engine is stopping: every session drains with the engine's deadline.
    events.stopping();
    let deadline = *stop.borrow();
    match deadline {
        Some(d) => live.values().for_each(|s| {
            s.stop.send_replace(Some(d));
        }),
        // Every handle of the engine was dropped: so are the sessions' stop senders, which
        // they take as a drain with no grace period.
        None => live.clear(),
    }
    if let Some(u) = unresolved.take() {
        u.state(ConnectionState::Stopped);
    }
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    Ok(())
}

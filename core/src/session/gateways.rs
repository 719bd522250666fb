//! The worker's sessions (PROTOCOL.md §9.1): one per gateway in the `connect` list and per
//! address its host name resolves to, each reconnecting on its own, plus the extra sessions
//! to an address that its first session's WELCOME asks for (`connections`). A name is
//! resolved again every `resolve_interval` and whenever one of its sessions fails: an
//! address that appears gets a session, one that goes has its sessions drained.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::events::{Events, SessionEvents};
use super::resolve::Target;
use super::supervise::{self, Asked, Dest, Shared};
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

impl Live {
    fn drain(&self, deadline: Duration) {
        self.stop.send_replace(Some(deadline));
    }
}

/// The sessions to one address: the first, whose WELCOMEs say how many to hold, and the
/// extras it asked for (§9.1 "Connections per address").
struct Address {
    first: Live,
    /// The `connections` of the first session's latest WELCOME; 0 before its first.
    asked: Arc<AtomicU32>,
    /// The count the extras were last matched to.
    applied: u32,
    extras: Vec<Live>,
}

impl Address {
    fn drain(&self, deadline: Duration) {
        self.first.drain(deadline);
        self.extras.iter().for_each(|e| e.drain(deadline));
    }
}

/// How a session ended, for [`follow`].
struct Ended {
    key: u64,
    addr: SocketAddr,
    first: bool,
    result: Result<(), EngineError>,
}

/// Starts the sessions of one target.
struct Starter<'a> {
    shared: &'a Arc<Shared>,
    url: &'a str,
    events: &'a Events,
    tasks: JoinSet<Ended>,
    next_key: u64,
    failed: mpsc::UnboundedSender<()>,
    poke: mpsc::Sender<()>,
}

impl Starter<'_> {
    /// A session to `addr`: the address's first (it reports its WELCOMEs to `asked`) or an
    /// extra.
    fn start(&mut self, addr: SocketAddr, asked: Option<&Arc<AtomicU32>>) -> Live {
        self.next_key += 1;
        let key = self.next_key;
        let (tx, rx) = watch::channel(None);
        let session = self.events.session(self.url, Some(addr));
        let (shared, url, failed) = (
            self.shared.clone(),
            self.url.to_owned(),
            self.failed.clone(),
        );
        let asked = asked.map(|connections| Asked {
            connections: connections.clone(),
            poke: self.poke.clone(),
        });
        let first = asked.is_some();
        self.tasks.spawn(async move {
            let dest = Dest { url: &url, addr };
            let result = supervise::session(&shared, dest, session, rx, failed, asked).await;
            Ended {
                key,
                addr,
                first,
                result,
            }
        });
        Live { key, stop: tx }
    }

    /// Starts or drains extras so that `address` holds what its first session's latest
    /// WELCOME asked for. An extra that ended (refused) is not replaced until the count
    /// changes.
    fn match_asked(&mut self, addr: SocketAddr, address: &mut Address) {
        let asked = address.asked.load(Ordering::Acquire);
        if asked == 0 || asked == address.applied {
            return;
        }
        info!(gateway = %self.url, %addr, connections = asked, "holding the connections the gateway asks for");
        let extras = asked as usize - 1;
        for extra in address.extras.drain(extras.min(address.extras.len())..) {
            extra.drain(DEFAULT_DRAIN_TIMEOUT);
        }
        while address.extras.len() < extras {
            let extra = self.start(addr, None);
            address.extras.push(extra);
        }
        address.applied = asked;
    }
}

/// Keeps the sessions of every address of `target` (one, and the extras its WELCOME asks
/// for) until the engine stops (`Ok`) or every address refused the worker (the first
/// refusal).
async fn follow(
    shared: Arc<Shared>,
    target: Target,
    events: Events,
    mut stop: Stop,
) -> Result<(), EngineError> {
    let mut live: HashMap<SocketAddr, Address> = HashMap::new();
    let mut refused: HashSet<SocketAddr> = HashSet::new();
    let mut refusal: Option<EngineError> = None;
    let (failed_tx, mut failed_rx) = mpsc::unbounded_channel();
    // A first session accepted a WELCOME: match the extras to it. One pending poke is enough.
    let (poke_tx, mut poke_rx) = mpsc::channel(1);
    let mut sessions = Starter {
        shared: &shared,
        url: &target.url,
        events: &events,
        tasks: JoinSet::new(),
        next_key: 0,
        failed: failed_tx,
        poke: poke_tx,
    };
    // Stands for the target in the gateways' states while its name resolves to nothing.
    let mut unresolved: Option<SessionEvents> = None;
    let mut backoff = Backoff::new();
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
                    let asked = Arc::new(AtomicU32::new(0));
                    let first = sessions.start(*addr, Some(&asked));
                    live.insert(
                        *addr,
                        Address {
                            first,
                            asked,
                            applied: 0,
                            extras: Vec::new(),
                        },
                    );
                }
                live.retain(|addr, address| {
                    let keep = addrs.contains(addr);
                    if !keep {
                        info!(gateway = %target.url, %addr, "address gone from DNS: draining its sessions");
                        address.drain(DEFAULT_DRAIN_TIMEOUT);
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
            if live.is_empty() && sessions.tasks.is_empty() && unresolved.is_none() {
                // Every address refused the worker for good.
                return Err(refusal.expect("a session ended refused"));
            }
            tokio::select! {
                _ = &mut again => continue 'resolve,
                Some(()) = failed_rx.recv() => {
                    while failed_rx.try_recv().is_ok() {}
                    continue 'resolve;
                }
                Some(()) = poke_rx.recv() => {
                    for (addr, address) in &mut live {
                        sessions.match_asked(*addr, address);
                    }
                }
                Some(joined) = sessions.tasks.join_next() => {
                    let ended = joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
                    if !ended.first {
                        // An extra ends the extra only (§9.1).
                        if let Some(address) = live.get_mut(&ended.addr) {
                            address.extras.retain(|e| e.key != ended.key);
                        }
                        continue;
                    }
                    if live.get(&ended.addr).is_some_and(|a| a.first.key == ended.key) {
                        // The first session ended for good: so do the extras.
                        let address = live.remove(&ended.addr).expect("looked up");
                        address.extras.iter().for_each(|e| e.drain(DEFAULT_DRAIN_TIMEOUT));
                    }
                    if let Err(e) = ended.result {
                        refused.insert(ended.addr);
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
        Some(d) => live.values().for_each(|a| a.drain(d)),
        // Every handle of the engine was dropped: so are the sessions' stop senders, which
        // they take as a drain with no grace period.
        None => live.clear(),
    }
    if let Some(u) = unresolved.take() {
        u.state(ConnectionState::Stopped);
    }
    while let Some(joined) = sessions.tasks.join_next().await {
        if let Err(e) = joined {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    Ok(())
}

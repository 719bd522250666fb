//! When a gateway that has just started is ready for clients: not before the worker ids its
//! file declares have a connection, or `timeouts.startup_grace` has passed. A balancer that
//! sent clients to a gateway no worker had reached yet would get them 404s; readiness at
//! start is the twin of readiness failing first at the stop (`stopping`). Once ready, it
//! stays so: a worker id that loses every connection later is not the gateway's failure,
//! and failing every gateway's readiness at once would take the routes of all the others.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::registry::Registry;

/// The start's half of readiness.
pub struct Startup {
    since: Instant,
    grace: Duration,
    ready: AtomicBool,
}

impl Startup {
    pub fn new(grace: Duration) -> Startup {
        Startup {
            since: Instant::now(),
            grace,
            ready: AtomicBool::new(false),
        }
    }

    /// Whether the start is over: every id of `declared` has a connection in `registry`, or
    /// the grace is over (the ids still missing are logged, once).
    pub fn ready(&self, registry: &Registry, declared: &[String]) -> bool {
        if self.ready.load(Ordering::Relaxed) {
            return true;
        }
        let connections = registry.connections();
        let missing: Vec<&str> = declared
            .iter()
            .filter(|id| !connections.iter().any(|c| &c.worker_id == *id))
            .map(String::as_str)
            .collect();
        let over = self.since.elapsed() >= self.grace;
        if !missing.is_empty() && !over {
            return false;
        }
        if !self.ready.swap(true, Ordering::Relaxed) && !declared.is_empty() {
            match missing.is_empty() {
                true => info!("ready: every declared worker id has a connection"),
                false => warn!(
                    missing = ?missing,
                    "ready after timeouts.startup_grace without a connection of these worker ids"
                ),
            }
        }
        true
    }
}

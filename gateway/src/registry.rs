//! The worker registry: who is connected, which routes each worker id claims, and the
//! route table built from those claims.
//!
//! Connections of one worker id are replicas of one [`WorkerGroup`]. A replica joining or
//! leaving changes only its group's replica list; the route table is rebuilt only when the
//! set of routes a group claims changes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use tracing::{info, warn};
use vyx_core::error::CloseCode;
use vyx_core::handshake::HandshakeError;

use crate::conn::WorkerConn;
use crate::routes::{RouteKey, RouteTable};

/// All connections of one worker id.
pub struct WorkerGroup {
    pub worker_id: String,
    pub replicas: ArcSwap<Vec<Arc<WorkerConn>>>,
    /// Notified when a stream ends or a replica joins: requests waiting for room re-check.
    pub slot_freed: Arc<Notify>,
}

impl WorkerGroup {
    fn new(worker_id: &str) -> WorkerGroup {
        WorkerGroup {
            worker_id: worker_id.to_string(),
            replicas: ArcSwap::from_pointee(Vec::new()),
            slot_freed: Arc::new(Notify::new()),
        }
    }

    fn route_union(&self) -> BTreeSet<RouteKey> {
        self.replicas
            .load()
            .iter()
            .flat_map(|c| c.routes.load().keys().cloned().collect::<Vec<_>>())
            .collect()
    }
}

#[derive(Default)]
struct Inner {
    groups: HashMap<String, Arc<WorkerGroup>>,
    /// Which group serves each route. A group whose last replica left keeps its claims (its
    /// routes answer 503), until another worker id claims one of them.
    claims: BTreeMap<RouteKey, Arc<WorkerGroup>>,
}

#[derive(Default)]
pub struct Registry {
    table: ArcSwap<RouteTable>,
    inner: Mutex<Inner>,
    /// Notified whenever a connection leaves (shutdown waits for none to remain).
    pub left: Notify,
}

impl Registry {
    /// The current route table (lock-free), held for the length of one request.
    pub fn table_full(&self) -> Arc<RouteTable> {
        self.table.load_full()
    }

    /// The group of a worker id, created on first use.
    pub fn group(&self, worker_id: &str) -> Arc<WorkerGroup> {
        let mut inner = self.inner.lock().unwrap();
        inner
            .groups
            .entry(worker_id.to_string())
            .or_insert_with(|| Arc::new(WorkerGroup::new(worker_id)))
            .clone()
    }

    /// Adds a connection whose HELLO was valid to its group; refuses it on a route conflict.
    pub fn register(
        &self,
        conn: &Arc<WorkerConn>,
        group: &Arc<WorkerGroup>,
    ) -> Result<(), HandshakeError> {
        let mut inner = self.inner.lock().unwrap();
        let mut wanted = group.route_union();
        wanted.extend(conn.routes.load().keys().cloned());
        if let Err(e) = self.claim(&mut inner, group, wanted) {
            let unused = group.replicas.load().is_empty()
                && !inner.claims.values().any(|g| Arc::ptr_eq(g, group));
            if unused {
                inner.groups.remove(&group.worker_id);
            }
            return Err(e);
        }
        group.replicas.rcu(|list| {
            let mut list = Vec::clone(list);
            list.push(conn.clone());
            list
        });
        group.slot_freed.notify_waiters();
        Ok(())
    }

    /// Replaces a connection's route set (ROUTES frame).
    pub fn update_routes(
        &self,
        conn: &Arc<WorkerConn>,
        group: &Arc<WorkerGroup>,
        routes: crate::conn::ConnRoutes,
    ) -> Result<(), HandshakeError> {
        let mut inner = self.inner.lock().unwrap();
        let mut wanted: BTreeSet<RouteKey> = group
            .replicas
            .load()
            .iter()
            .filter(|c| !Arc::ptr_eq(c, conn))
            .flat_map(|c| c.routes.load().keys().cloned().collect::<Vec<_>>())
            .collect();
        wanted.extend(routes.keys().cloned());
        self.claim(&mut inner, group, wanted)?;
        conn.routes.store(Arc::new(routes));
        Ok(())
    }

    /// Removes a connection (closed, lost or drained).
    pub fn unregister(&self, conn: &Arc<WorkerConn>) {
        let mut inner = self.inner.lock().unwrap();
        if let Some(group) = inner.groups.get(&conn.worker_id).cloned() {
            let before = group.replicas.load().len();
            group.replicas.rcu(|list| {
                list.iter()
                    .filter(|c| !Arc::ptr_eq(c, conn))
                    .cloned()
                    .collect::<Vec<_>>()
            });
            let remaining = group.replicas.load().len();
            if remaining > 0 && remaining < before {
                let wanted = group.route_union();
                if let Err(e) = self.claim(&mut inner, &group, wanted) {
                    // A subset of routes that fit cannot conflict; log if it ever does.
                    warn!(error = %e, "route table rebuild failed after a replica left");
                }
            }
            group.slot_freed.notify_waiters();
        }
        drop(inner);
        self.left.notify_waiters();
    }

    /// Every live connection, for `/_vyx/workers` and shutdown.
    pub fn connections(&self) -> Vec<Arc<WorkerConn>> {
        let inner = self.inner.lock().unwrap();
        let mut out: Vec<_> = inner
            .groups
            .values()
            .flat_map(|g| g.replicas.load().iter().cloned().collect::<Vec<_>>())
            .collect();
        out.sort_by_key(|c| c.serial);
        out
    }

    /// Number of live connections.
    pub fn connection_count(&self) -> usize {
        let inner = self.inner.lock().unwrap();
        inner.groups.values().map(|g| g.replicas.load().len()).sum()
    }

    /// Makes `group` claim exactly `wanted`, rebuilding the table if that changes anything.
    fn claim(
        &self,
        inner: &mut Inner,
        group: &Arc<WorkerGroup>,
        wanted: BTreeSet<RouteKey>,
    ) -> Result<(), HandshakeError> {
        let current: BTreeSet<RouteKey> = inner
            .claims
            .iter()
            .filter(|(_, g)| Arc::ptr_eq(g, group))
            .map(|(k, _)| k.clone())
            .collect();
        if current == wanted {
            return Ok(());
        }
        let mut claims = inner.claims.clone();
        claims.retain(|_, g| !Arc::ptr_eq(g, group));
        for key in &wanted {
            if let Some(other) = claims.get(key) {
                if other.replicas.load().is_empty() {
                    info!(route = %key, from = %other.worker_id, to = %group.worker_id, "route taken over from a worker with no live connection");
                } else {
                    return Err(HandshakeError::new(
                        CloseCode::RouteConflict,
                        format!(
                            "route {key} is already served by worker {:?}; worker {:?} cannot claim it",
                            other.worker_id, group.worker_id
                        ),
                    ));
                }
            }
            claims.insert(key.clone(), group.clone());
        }
        let table = RouteTable::build(&claims).map_err(|c| {
            let owner = claims
                .iter()
                .find(|(k, _)| k.path == c.with_path)
                .map(|(_, g)| g.worker_id.clone())
                .unwrap_or_default();
            HandshakeError::new(
                CloseCode::RouteConflict,
                format!(
                    "route {} overlaps {:?} served by worker {:?}",
                    c.key, c.with_path, owner
                ),
            )
        })?;
        // Groups with neither claims nor replicas are forgotten.
        inner.groups.retain(|_, g| {
            !g.replicas.load().is_empty()
                || Arc::ptr_eq(g, group)
                || claims.values().any(|c| Arc::ptr_eq(c, g))
        });
        inner.claims = claims;
        self.table.store(Arc::new(table));
        Ok(())
    }
}

/// Picks the least-loaded replica of `group` that serves `key` and has room, and reserves
/// a slot on it. `Err(true)` when replicas exist but all are full, `Err(false)` when none
/// can serve the route.
pub fn reserve_replica(
    group: &WorkerGroup,
    key: &RouteKey,
) -> Result<(Arc<WorkerConn>, u16), bool> {
    let replicas = group.replicas.load();
    let mut any_full = false;
    loop {
        let mut best: Option<(&Arc<WorkerConn>, u16, usize)> = None;
        for c in replicas.iter() {
            if c.draining.load(Ordering::Acquire) {
                continue;
            }
            let Some(route_id) = c.routes.load().get(key).copied() else {
                continue;
            };
            let load = c.in_flight.load(Ordering::Acquire);
            if load >= c.max_concurrency {
                any_full = true;
                continue;
            }
            if best.is_none_or(|(_, _, l)| load < l) {
                best = Some((c, route_id, load));
            }
        }
        let (conn, route_id, load) = best.ok_or(any_full)?;
        if conn
            .in_flight
            .compare_exchange(load, load + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return Ok((conn.clone(), route_id));
        }
        // Lost a race for that slot: look again.
    }
}

//! The worker registry: who is connected, which routes each worker id claims, and the
//! route table built from those claims.
//!
//! Connections of one worker id are replicas of one [`WorkerGroup`]. A replica joining or
//! leaving changes only its group's replica list; the route table changes only when the set
//! of routes a group claims changes, and then by exactly the routes that changed: nothing
//! here walks every route or every group, so registering a worker costs the same with ten
//! thousand connected as with one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use tracing::{info, warn};
use vyx_core::error::CloseCode;
use vyx_core::handshake::HandshakeError;

use crate::conn::{ConnRoute, InstanceIndex, WorkerConn};
use crate::routes::{Change, LiveTable, RouteKey, RouteTable, RouteTarget, TableWriter};

/// All connections of one worker id.
pub struct WorkerGroup {
    pub worker_id: String,
    pub replicas: ArcSwap<Vec<Arc<WorkerConn>>>,
    /// Notified when a stream ends or a replica joins: requests waiting for room re-check.
    pub slot_freed: Arc<Notify>,
    /// The slots each worker process's connections share.
    pub instances: Arc<InstanceIndex>,
}

impl WorkerGroup {
    pub(crate) fn new(worker_id: &str) -> WorkerGroup {
        WorkerGroup {
            worker_id: worker_id.to_string(),
            replicas: ArcSwap::from_pointee(Vec::new()),
            slot_freed: Arc::new(Notify::new()),
            instances: Arc::default(),
        }
    }
}

/// What the registry knows of one worker id besides its replicas.
#[derive(Default)]
struct GroupState {
    /// How many live replicas declare each route: the keys are the routes the group wants.
    declared: HashMap<RouteKey, usize>,
    /// The routes the group holds in the table. A group whose last replica left keeps its
    /// claims (its routes answer 503) for the claim grace, or until another worker id
    /// claims one of them.
    claimed: BTreeSet<RouteKey>,
    /// Set while the group has no replica and still claims routes: when the claims lapse,
    /// and which departure that was (a stale timer finds another number, or none).
    lapse: Option<(Instant, u64)>,
    /// Connections of the id between [`Registry::group`] and [`Registry::register`]: the
    /// group is not forgotten under them.
    pending: usize,
}

impl GroupState {
    fn declare<'a>(&mut self, keys: impl Iterator<Item = &'a RouteKey>) {
        for k in keys {
            *self.declared.entry(k.clone()).or_default() += 1;
        }
    }

    fn undeclare<'a>(&mut self, keys: impl Iterator<Item = &'a RouteKey>) {
        for k in keys {
            if let Some(n) = self.declared.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    self.declared.remove(k);
                }
            }
        }
    }

    fn wanted(&self) -> BTreeSet<RouteKey> {
        self.declared.keys().cloned().collect()
    }
}

#[derive(Default)]
struct Inner {
    groups: HashMap<String, (Arc<WorkerGroup>, GroupState)>,
    /// Which group serves each route.
    claims: BTreeMap<RouteKey, Arc<WorkerGroup>>,
    /// The claimed routes of each pattern shape: routes conflict by shape, not by spelling
    /// (`GET /a/{id}` and `GET /a/{key}` are one route), and `*` overlaps every method.
    shapes: HashMap<String, Vec<RouteKey>>,
    writer: TableWriter,
    /// Numbers departures, for [`Lapse`].
    departures: u64,
}

/// A group's last replica left while it claimed routes: [`Registry::lapse`] is due at
/// `deadline` unless the id comes back first.
#[must_use = "the claims lapse only when Registry::lapse is called at the deadline"]
pub struct Lapse {
    pub worker_id: String,
    pub deadline: Instant,
    departure: u64,
}

/// A worker id with no live connection whose claims have not lapsed yet.
pub struct LapsingClaims {
    pub worker_id: String,
    pub routes: Vec<String>,
    pub left: std::time::Duration,
}

/// What the registry no longer holds (see [`Registry::on_forget`]).
pub enum Forgotten<'a> {
    /// A worker id: no connection, none on its way, no claims.
    Worker(&'a str),
    /// A route that left the table (dropped by its worker, lapsed, or taken over).
    Route(&'a RouteKey),
}

type ForgetHook = Box<dyn Fn(Forgotten<'_>) + Send + Sync>;

#[derive(Default)]
pub struct Registry {
    table: LiveTable,
    inner: Mutex<Inner>,
    /// Notified whenever a connection leaves (shutdown waits for none to remain).
    pub left: Notify,
    forget_hook: OnceLock<ForgetHook>,
}

impl Registry {
    /// The current route table (lock-free). Hold it only for a lookup: an update waits
    /// briefly for readers of the copy it is about to edit.
    pub fn table_full(&self) -> Arc<RouteTable> {
        self.table.load_full()
    }

    /// Runs `hook` with each worker id the registry forgets (one with no connection, none
    /// on its way ([`Registry::group`]) and no claims left: none, lapsed, or taken over) and
    /// each route that leaves the table, so that state kept for them elsewhere (metrics)
    /// goes with them. Called under the registry's lock: the hook must not call back.
    pub fn on_forget(&self, hook: impl Fn(Forgotten<'_>) + Send + Sync + 'static) {
        let _ = self.forget_hook.set(Box::new(hook));
    }

    /// The group of a worker id, created on first use. Every call must be followed by one
    /// [`Registry::register`] of a connection of that group (it holds the group until then).
    pub fn group(&self, worker_id: &str) -> Arc<WorkerGroup> {
        let mut inner = self.inner.lock().unwrap();
        let (group, state) = inner
            .groups
            .entry(worker_id.to_string())
            .or_insert_with(|| (Arc::new(WorkerGroup::new(worker_id)), GroupState::default()));
        state.pending += 1;
        group.clone()
    }

    /// Worker ids the registry holds state for: connected, on their way, or with claims.
    pub fn worker_id_count(&self) -> usize {
        self.inner.lock().unwrap().groups.len()
    }

    /// Adds a connection whose HELLO was valid to its group; refuses it on a route conflict.
    pub fn register(
        &self,
        conn: &Arc<WorkerConn>,
        group: &Arc<WorkerGroup>,
    ) -> Result<(), HandshakeError> {
        let mut inner = self.inner.lock().unwrap();
        let state = inner.state(group);
        state.pending = state.pending.saturating_sub(1);
        let routes = conn.routes.load();
        let mut wanted = state.wanted();
        wanted.extend(routes.keys().cloned());
        if let Err(e) = self.claim(&mut inner, group, wanted) {
            self.forget_if_unused(&mut inner, group);
            return Err(e);
        }
        let state = inner.state(group);
        state.declare(routes.keys());
        state.lapse = None;
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
        let old = conn.routes.load_full();
        let state = inner.state(group);
        state.undeclare(old.keys());
        state.declare(routes.keys());
        let wanted = state.wanted();
        let result = self.claim(&mut inner, group, wanted);
        if result.is_ok() {
            conn.routes.store(Arc::new(routes));
        } else {
            let state = inner.state(group);
            state.undeclare(routes.keys());
            state.declare(old.keys());
        }
        result
    }

    /// Removes a connection (closed, lost or drained). When it was its id's last and the id
    /// claims routes, they keep answering 503 for `grace`: the returned [`Lapse`] is due then.
    pub fn unregister(&self, conn: &Arc<WorkerConn>, grace: std::time::Duration) -> Option<Lapse> {
        let mut lapse = None;
        let mut inner = self.inner.lock().unwrap();
        if let Some(group) = inner.groups.get(&conn.worker_id).map(|(g, _)| g.clone()) {
            let before = group.replicas.load().len();
            group.replicas.rcu(|list| {
                list.iter()
                    .filter(|c| !Arc::ptr_eq(c, conn))
                    .cloned()
                    .collect::<Vec<_>>()
            });
            let remaining = group.replicas.load().len();
            if remaining < before {
                inner.state(&group).undeclare(conn.routes.load().keys());
            }
            if remaining > 0 && remaining < before {
                let wanted = inner.state(&group).wanted();
                if let Err(e) = self.claim(&mut inner, &group, wanted) {
                    // A subset of routes that fit cannot conflict; log if it ever does.
                    warn!(error = %e, "route table update failed after a replica left");
                }
            }
            if remaining == 0 && remaining < before {
                inner.departures += 1;
                let departure = inner.departures;
                let deadline = Instant::now() + grace;
                let state = inner.state(&group);
                if !state.claimed.is_empty() {
                    state.lapse = Some((deadline, departure));
                    lapse = Some(Lapse {
                        worker_id: group.worker_id.clone(),
                        deadline,
                        departure,
                    });
                } else {
                    self.forget_if_unused(&mut inner, &group);
                }
            }
            group.slot_freed.notify_waiters();
        }
        drop(inner);
        self.left.notify_waiters();
        lapse
    }

    /// Drops the claims of a departed worker id whose grace is over, unless it came back
    /// (or another id took them) since: its paths go to whichever other routes match them,
    /// and any id may claim them.
    pub fn lapse(&self, due: Lapse) {
        let mut inner = self.inner.lock().unwrap();
        let Some((group, state)) = inner.groups.get(&due.worker_id) else {
            return;
        };
        if state.lapse.map(|(_, d)| d) != Some(due.departure) || !group.replicas.load().is_empty() {
            return;
        }
        let (group, routes) = (group.clone(), state.claimed.len());
        if let Err(e) = self.claim(&mut inner, &group, BTreeSet::new()) {
            warn!(error = %e, "route table update failed when claims lapsed");
            return;
        }
        inner.state(&group).lapse = None;
        // Forgotten unless a connection of the id is on its way (between HELLO and
        // registration): the id leaves the metrics too.
        self.forget_if_unused(&mut inner, &group);
        info!(worker_id = %due.worker_id, routes, "claims of a departed worker lapsed");
    }

    /// Worker ids with no live connection whose claims are lapsing, by id.
    pub fn lapsing(&self) -> Vec<LapsingClaims> {
        let inner = self.inner.lock().unwrap();
        let now = Instant::now();
        let mut out: Vec<LapsingClaims> = inner
            .groups
            .values()
            .filter_map(|(g, s)| {
                let (deadline, _) = s.lapse?;
                Some(LapsingClaims {
                    worker_id: g.worker_id.clone(),
                    routes: s.claimed.iter().map(|k| k.to_string()).collect(),
                    left: deadline.saturating_duration_since(now),
                })
            })
            .collect();
        out.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
        out
    }

    /// Every live connection, for `/_vyx/workers` and shutdown.
    pub fn connections(&self) -> Vec<Arc<WorkerConn>> {
        let inner = self.inner.lock().unwrap();
        let mut out: Vec<_> = inner
            .groups
            .values()
            .flat_map(|(g, _)| g.replicas.load().iter().cloned().collect::<Vec<_>>())
            .collect();
        out.sort_by_key(|c| c.serial);
        out
    }

    /// Number of live connections.
    pub fn connection_count(&self) -> usize {
        let inner = self.inner.lock().unwrap();
        inner
            .groups
            .values()
            .map(|(g, _)| g.replicas.load().len())
            .sum()
    }

    /// Makes `group` claim exactly `wanted`, editing the table by the difference.
    fn claim(
        &self,
        inner: &mut Inner,
        group: &Arc<WorkerGroup>,
        wanted: BTreeSet<RouteKey>,
    ) -> Result<(), HandshakeError> {
        let current = inner.state(group).claimed.clone();
        if current == wanted {
            return Ok(());
        }
        let dropped: Vec<RouteKey> = current.difference(&wanted).cloned().collect();
        let added: Vec<RouteKey> = wanted.difference(&current).cloned().collect();
        let mut taken_from = Vec::new();
        for key in &added {
            for existing in inner.shapes.get(&shape_of(key)).into_iter().flatten() {
                let same_method = existing.method == key.method;
                // Methods overlap when equal or when either is `*` (§2.4 rule 9).
                if !(same_method || &*existing.method == "*" || &*key.method == "*")
                    || dropped.contains(existing)
                {
                    continue;
                }
                let other = &inner.claims[existing];
                if Arc::ptr_eq(other, group) {
                    if !same_method {
                        continue; // one worker may serve `GET /x` and `* /x`
                    }
                    // Replicas of one worker id disagree on the parameter names.
                    return Err(HandshakeError::new(
                        CloseCode::RouteConflict,
                        format!(
                            "worker {:?} cannot claim {key}: its replicas serve {existing} (same shape, other names)",
                            group.worker_id
                        ),
                    ));
                }
                if !other.replicas.load().is_empty() {
                    return Err(HandshakeError::new(
                        CloseCode::RouteConflict,
                        // Names first: the close reason keeps 123 bytes.
                        format!(
                            "worker {:?} cannot claim {key}: worker {:?} serves {existing} (same shape)",
                            group.worker_id, other.worker_id
                        ),
                    ));
                }
                if !taken_from.iter().any(|(k, _)| k == existing) {
                    taken_from.push((existing.clone(), other.clone()));
                }
            }
        }
        let changes: Vec<Change> = dropped
            .iter()
            .chain(taken_from.iter().map(|(k, _)| k))
            .map(|k| Change::Remove(k.clone()))
            .chain(added.iter().map(|k| {
                Change::Insert(Arc::new(RouteTarget {
                    key: k.clone(),
                    group: group.clone(),
                    metrics: OnceLock::new(),
                }))
            }))
            .collect();
        let Inner { claims, writer, .. } = &mut *inner;
        writer
            .apply(&self.table, changes, || {
                RouteTable::build(claims).expect("the routes before this change fitted")
            })
            .map_err(|c| {
                // Two routes of this change with one shape (the checks above cover claims).
                HandshakeError::new(
                    CloseCode::RouteConflict,
                    format!(
                        "worker {:?} declares {} and {} {} (same method and shape)",
                        group.worker_id, c.key, c.key.method, c.with_path
                    ),
                )
            })?;

        for key in dropped.iter().chain(taken_from.iter().map(|(k, _)| k)) {
            inner.claims.remove(key);
            self.forgotten(Forgotten::Route(key));
            let shape = shape_of(key);
            if let Some(keys) = inner.shapes.get_mut(&shape) {
                keys.retain(|k| k != key);
                if keys.is_empty() {
                    inner.shapes.remove(&shape);
                }
            }
        }
        for (key, other) in &taken_from {
            info!(route = %key, from = %other.worker_id, to = %group.worker_id, "route taken over from a worker with no live connection");
            inner.state(other).claimed.remove(key);
        }
        for key in &added {
            inner.claims.insert(key.clone(), group.clone());
            inner
                .shapes
                .entry(shape_of(key))
                .or_default()
                .push(key.clone());
        }
        inner.state(group).claimed = wanted;
        for (_, other) in &taken_from {
            self.forget_if_unused(inner, other);
        }
        Ok(())
    }

    fn forgotten(&self, what: Forgotten<'_>) {
        if let Some(hook) = self.forget_hook.get() {
            hook(what);
        }
    }

    /// Forgets a group with neither replicas, nor connections on their way, nor claims.
    fn forget_if_unused(&self, inner: &mut Inner, group: &Arc<WorkerGroup>) {
        let unused = inner.groups.get(&group.worker_id).is_some_and(|(g, s)| {
            Arc::ptr_eq(g, group)
                && g.replicas.load().is_empty()
                && s.claimed.is_empty()
                && s.pending == 0
        });
        if unused {
            inner.groups.remove(&group.worker_id);
            self.forgotten(Forgotten::Worker(&group.worker_id));
        }
    }
}

/// The shape of a route's pattern, which conflicts are decided on (spec/PROTOCOL.md §2.5.1).
fn shape_of(key: &RouteKey) -> String {
    vyx_core::routing::pattern_shape(&key.path)
}

impl Inner {
    fn state(&mut self, group: &Arc<WorkerGroup>) -> &mut GroupState {
        &mut self
            .groups
            .entry(group.worker_id.clone())
            .or_insert_with(|| (group.clone(), GroupState::default()))
            .1
    }
}

/// Picks a replica of `group` that serves `key` and has room, and reserves a slot on it:
/// the least-loaded of those on the calling shard (the request's own, see `shards`), else
/// the least-loaded of all; a request crossing to another shard's connection costs ~7 µs
/// more (bench/NOTES.md, "Shards"). `Err(true)` when replicas exist but all are full, `Err(false)` when none
/// can serve the route. With `streamed` (a request whose body is still streaming from its
/// client, in percent of its worker process's slots), the replica must also have room under
/// that share, which is reserved too (given back by `streamed_upload_done`). `exclude` is
/// never chosen (a retry's failed connection).
pub fn reserve_replica(
    group: &WorkerGroup,
    key: &RouteKey,
    streamed: Option<u32>,
    exclude: Option<&Arc<WorkerConn>>,
) -> Result<(Arc<WorkerConn>, ConnRoute), bool> {
    let replicas = group.replicas.load();
    let here = crate::shards::current();
    let mut any_full = false;
    loop {
        // Ordered by (elsewhere, load): `false` (here) first.
        let mut best: Option<(&Arc<WorkerConn>, ConnRoute, (bool, usize))> = None;
        for c in replicas.iter() {
            if c.draining.load(Ordering::Acquire) || exclude.is_some_and(|x| Arc::ptr_eq(x, c)) {
                continue;
            }
            let Some(route_id) = c.routes.load().get(key).copied() else {
                continue;
            };
            // A worker process's connections share its slots (`conn::instance`).
            let load = c.slots.in_flight.load(Ordering::Acquire);
            if load >= c.max_concurrency {
                any_full = true;
                continue;
            }
            if streamed.is_some_and(|pct| {
                c.slots.streamed_uploads.load(Ordering::Acquire)
                    >= streamed_cap(c.max_concurrency, pct)
            }) {
                any_full = true;
                continue;
            }
            let rank = (c.shard != here, load);
            if best.is_none_or(|(_, _, r)| rank < r) {
                best = Some((c, route_id, rank));
            }
        }
        let (conn, route_id, (_, load)) = best.ok_or(any_full)?;
        if let Some(pct) = streamed {
            let cap = streamed_cap(conn.max_concurrency, pct);
            let taken = conn.slots.streamed_uploads.fetch_update(
                Ordering::AcqRel,
                Ordering::Acquire,
                |n| (n < cap).then_some(n + 1),
            );
            if taken.is_err() {
                continue; // lost a race for the share: look again
            }
            conn.streamed_uploads.fetch_add(1, Ordering::AcqRel);
        }
        if conn
            .slots
            .in_flight
            .compare_exchange(load, load + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            conn.in_flight.fetch_add(1, Ordering::AcqRel);
            return Ok((conn.clone(), route_id));
        }
        if streamed.is_some() {
            conn.streamed_upload_done();
        }
        // Lost a race for that slot: look again.
    }
}

/// Whether a replica of `group` other than `exclude` serves `key` and takes new streams
/// (full or not): a retry has somewhere to go.
pub fn has_replica(group: &WorkerGroup, key: &RouteKey, exclude: Option<&Arc<WorkerConn>>) -> bool {
    group.replicas.load().iter().any(|c| {
        !c.draining.load(Ordering::Acquire)
            && !exclude.is_some_and(|x| Arc::ptr_eq(x, c))
            && c.routes.load().contains_key(key)
    })
}

/// How many of `slots` requests with streaming bodies may hold: `pct` percent, at least one.
pub fn streamed_cap(slots: usize, pct: u32) -> usize {
    (slots.saturating_mul(pct as usize) / 100).max(1)
}

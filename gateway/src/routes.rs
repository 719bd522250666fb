//! The route table: the core's route matcher (`vyx_core::routing::Router`, whose precedence,
//! HEAD and percent-decoding rules are spec/PROTOCOL.md §2.5). Lookups take no lock:
//! readers load the live copy from an `ArcSwap`. Changes go to a second copy, which is then
//! swapped in, and the copy swapped out catches up with the same change on the next update
//! (the left-right scheme), so an update costs the size of the change, not of the table:
//! registering the 10,000th worker costs what the 100th did.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use vyx_core::routing::{Match, Router};

use crate::metrics::RouteMetrics;
use crate::registry::WorkerGroup;

/// A route as a worker declares it: method (or `*`) and pattern. The registry keeps a key
/// in several maps; the strings are shared, not copied (10,000 workers with 10 routes each
/// make a lot of keys).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKey {
    pub method: Arc<str>,
    pub path: Arc<str>,
}

impl std::fmt::Display for RouteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// What a matched route leads to.
pub struct RouteTarget {
    pub key: RouteKey,
    pub group: Arc<WorkerGroup>,
    /// The route's metric handles, resolved on its first request.
    pub metrics: OnceLock<RouteMetrics>,
}

#[derive(Default, Clone)]
pub struct RouteTable {
    router: Router<Arc<RouteTarget>>,
}

/// A route that cannot be added beside another: same method, same shape.
#[derive(Debug)]
pub struct TableConflict {
    pub key: RouteKey,
    pub with_path: String,
}

impl RouteTable {
    /// Builds the table from every claimed route.
    pub fn build(
        claims: &BTreeMap<RouteKey, Arc<WorkerGroup>>,
    ) -> Result<RouteTable, TableConflict> {
        let mut table = RouteTable::default();
        for (key, group) in claims {
            table.insert(Arc::new(RouteTarget {
                key: key.clone(),
                group: group.clone(),
                metrics: OnceLock::new(),
            }))?;
        }
        Ok(table)
    }

    fn insert(&mut self, target: Arc<RouteTarget>) -> Result<(), TableConflict> {
        let key = target.key.clone();
        self.router
            .insert(&key.method, &key.path, target)
            .map_err(|c| TableConflict {
                with_path: c.existing,
                key,
            })
    }

    fn apply(&mut self, change: &Change) -> Result<(), TableConflict> {
        match change {
            Change::Remove(key) => {
                self.router.remove(&key.method, &key.path);
                Ok(())
            }
            Change::Insert(target) => self.insert(target.clone()),
        }
    }

    /// The route for a method and a raw (still percent-encoded) path, with its decoded
    /// params. A GET route serves HEAD unless a HEAD route of its shape exists.
    pub fn lookup<'t, 'p>(
        &'t self,
        method: &str,
        path: &'p str,
    ) -> Option<Match<'t, 'p, Arc<RouteTarget>>> {
        self.router.lookup(method, path)
    }

    /// What a 405's `Allow` lists for a path no route serves with the request's method
    /// (empty: a 404).
    pub fn allowed_methods(&self, path: &str) -> Vec<&str> {
        self.router.allowed_methods(path)
    }
}

/// One edit of the route table.
#[derive(Clone)]
pub enum Change {
    Remove(RouteKey),
    Insert(Arc<RouteTarget>),
}

/// Readers' copy of the table, always complete and never locked.
pub type LiveTable = ArcSwap<RouteTable>;

/// The writer's side of the table: the copy not live, and the changes it has not had yet.
/// Owned by whoever serialises updates (the registry, under its lock).
pub struct TableWriter {
    spare: Arc<RouteTable>,
    behind: Vec<Change>,
}

/// How long an update waits for readers to leave the spare copy (they hold it for one
/// lookup) before it copies the table instead.
const READER_WAIT_SPINS: usize = 1000;

impl Default for TableWriter {
    fn default() -> TableWriter {
        TableWriter {
            spare: Arc::new(RouteTable::default()),
            behind: Vec::new(),
        }
    }
}

impl TableWriter {
    /// Applies `changes` and makes them live, all or nothing. On a conflict nothing changes
    /// for readers, and `rebuild` (the table as it was before these changes) repairs the
    /// spare copy, which a failed insert may have left half-edited.
    pub fn apply(
        &mut self,
        live: &LiveTable,
        changes: Vec<Change>,
        rebuild: impl FnOnce() -> RouteTable,
    ) -> Result<(), TableConflict> {
        if changes.is_empty() {
            return Ok(());
        }
        let table = exclusive(&mut self.spare);
        // The catch-up changes succeeded on the live copy, which holds the same routes.
        let behind = std::mem::take(&mut self.behind);
        if let Err(e) = behind
            .iter()
            .chain(&changes)
            .try_for_each(|c| table.apply(c))
        {
            *table = rebuild();
            return Err(e);
        }
        let updated = std::mem::take(&mut self.spare);
        self.spare = live.swap(updated);
        self.behind = changes;
        Ok(())
    }
}

/// The table behind `arc`, for writing: waits briefly for readers still holding it, and
/// copies it if they do not let go.
fn exclusive(arc: &mut Arc<RouteTable>) -> &mut RouteTable {
    for _ in 0..READER_WAIT_SPINS {
        if Arc::strong_count(arc) == 1 && Arc::weak_count(arc) == 0 {
            break;
        }
        std::thread::yield_now();
    }
    Arc::make_mut(arc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(method: &str, path: &str) -> RouteKey {
        RouteKey {
            method: method.into(),
            path: path.into(),
        }
    }

    fn insert(group: &Arc<WorkerGroup>, method: &str, path: &str) -> Change {
        Change::Insert(Arc::new(RouteTarget {
            key: key(method, path),
            group: group.clone(),
            metrics: OnceLock::new(),
        }))
    }

    fn routes_of(live: &LiveTable, method: &str, path: &str) -> Option<String> {
        live.load()
            .lookup(method, path)
            .map(|m| m.value.key.to_string())
    }

    #[test]
    fn both_copies_get_every_change_and_a_conflict_changes_nothing() {
        let g = Arc::new(WorkerGroup::new("a"));
        let live = LiveTable::default();
        let mut w = TableWriter::default();
        let empty = RouteTable::default;
        w.apply(&live, vec![insert(&g, "GET", "/a/{id}")], empty)
            .unwrap();
        w.apply(&live, vec![insert(&g, "GET", "/b")], empty)
            .unwrap();
        // The first change reached the copy that was spare when it was made.
        assert_eq!(
            routes_of(&live, "GET", "/a/1").as_deref(),
            Some("GET /a/{id}")
        );
        assert_eq!(routes_of(&live, "GET", "/b").as_deref(), Some("GET /b"));

        // `/a/{other}` conflicts with `/a/{id}`: refused, and readers see no change.
        let before = || {
            let mut t = RouteTable::default();
            t.insert(Arc::new(RouteTarget {
                key: key("GET", "/a/{id}"),
                group: g.clone(),
                metrics: OnceLock::new(),
            }))
            .unwrap();
            t.insert(Arc::new(RouteTarget {
                key: key("GET", "/b"),
                group: g.clone(),
                metrics: OnceLock::new(),
            }))
            .unwrap();
            t
        };
        let err = w
            .apply(
                &live,
                vec![insert(&g, "GET", "/c"), insert(&g, "GET", "/a/{other}")],
                before,
            )
            .expect_err("conflict");
        assert_eq!(err.key, key("GET", "/a/{other}"));
        assert_eq!(routes_of(&live, "GET", "/c"), None);

        // Later changes apply cleanly to both copies, removals included.
        w.apply(&live, vec![Change::Remove(key("GET", "/b"))], before)
            .unwrap();
        assert_eq!(routes_of(&live, "GET", "/b"), None);
        w.apply(&live, vec![insert(&g, "GET", "/d")], before)
            .unwrap();
        assert_eq!(routes_of(&live, "GET", "/b"), None);
        assert_eq!(routes_of(&live, "GET", "/d").as_deref(), Some("GET /d"));
        assert_eq!(
            routes_of(&live, "GET", "/a/2").as_deref(),
            Some("GET /a/{id}")
        );
    }

    #[test]
    fn a_reader_that_keeps_the_spare_copy_does_not_block_updates() {
        let g = Arc::new(WorkerGroup::new("a"));
        let live = LiveTable::default();
        let mut w = TableWriter::default();
        w.apply(&live, vec![insert(&g, "GET", "/a")], RouteTable::default)
            .unwrap();
        let held = live.load_full();
        w.apply(&live, vec![insert(&g, "GET", "/b")], RouteTable::default)
            .unwrap();
        // `held` is the spare copy now; the next update copies it instead of waiting.
        w.apply(&live, vec![insert(&g, "GET", "/c")], RouteTable::default)
            .unwrap();
        assert!(
            held.lookup("GET", "/c").is_none(),
            "a held table never changes"
        );
        for p in ["/a", "/b", "/c"] {
            assert!(routes_of(&live, "GET", p).is_some(), "{p} is live");
        }
    }
}

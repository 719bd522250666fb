//! The route table: per-method matchit routers plus one for any-method routes. Built whole
//! when the set of claimed routes changes and swapped in atomically; lookups take no lock.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use crate::metrics::RouteMetrics;
use crate::registry::WorkerGroup;

/// A route as a worker declares it: method (or `*`) and pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKey {
    pub method: String,
    pub path: String,
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

#[derive(Default)]
pub struct RouteTable {
    methods: HashMap<String, matchit::Router<Arc<RouteTarget>>>,
    any: matchit::Router<Arc<RouteTarget>>,
}

/// A route that cannot be added beside another.
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
            let router = if key.method == "*" {
                &mut table.any
            } else {
                table.methods.entry(key.method.clone()).or_default()
            };
            let target = Arc::new(RouteTarget {
                key: key.clone(),
                group: group.clone(),
                metrics: OnceLock::new(),
            });
            router
                .insert(key.path.clone(), target)
                .map_err(|e| TableConflict {
                    key: key.clone(),
                    with_path: match e {
                        matchit::InsertError::Conflict { with } => with,
                        other => other.to_string(),
                    },
                })?;
        }
        Ok(table)
    }

    /// The route for a method and a raw path, with its raw (still percent-encoded) params.
    pub fn lookup<'t, 'p>(
        &'t self,
        method: &str,
        path: &'p str,
    ) -> Option<(&'t Arc<RouteTarget>, matchit::Params<'t, 'p>)> {
        // HEAD falls back to GET, as HTTP servers do (hyper sends no body for HEAD).
        let methods: &[&str] = if method == "HEAD" {
            &["HEAD", "GET"]
        } else {
            &[method]
        };
        for m in methods {
            if let Some(router) = self.methods.get(*m) {
                if let Ok(found) = router.at(path) {
                    return Some((found.value, found.params));
                }
            }
        }
        self.any.at(path).ok().map(|m| (m.value, m.params))
    }
}

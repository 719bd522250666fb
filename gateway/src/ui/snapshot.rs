//! What one dashboard event carries: the workers and their replicas, the routes and who
//! serves them, lapsing claims, and per route the request rate, errors and latency
//! percentiles over the last [`WINDOW`].
//!
//! The per-route numbers come from the metrics' own text exposition (the stable contract of
//! `/_vyx/metrics`), summed over any label but the route, so the dashboard shows exactly what
//! a scrape would and needs nothing from the request path. Rates and percentiles are the
//! difference between the newest reading and the oldest one kept, as Prometheus' `rate` and
//! `histogram_quantile` would compute them.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::time::Instant;

use crate::admin;
use crate::Shared;

/// How far back rates and percentiles look.
pub const WINDOW: Duration = Duration::from_secs(10);

/// The counters of one route at one reading.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteCounters {
    pub requests: u64,
    /// Answers with a 5xx status.
    pub errors: u64,
    /// Cumulative latency buckets, `(upper bound in seconds, count)`, ascending; the last
    /// bound is infinite.
    pub buckets: Vec<(f64, u64)>,
}

/// Per route, from the text exposition of `/_vyx/metrics`.
pub fn route_counters(exposition: &str) -> HashMap<String, RouteCounters> {
    let mut out: HashMap<String, RouteCounters> = HashMap::new();
    let mut buckets: HashMap<String, BTreeMap<u64, (f64, u64)>> = HashMap::new();
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, labels, value)) = sample(line) else {
            continue;
        };
        let Some(route) = label(&labels, "route") else {
            continue;
        };
        match name {
            "vyx_requests_total" => {
                let c = out.entry(route.to_string()).or_default();
                c.requests += value as u64;
                if label(&labels, "status").is_some_and(|s| s.starts_with('5')) {
                    c.errors += value as u64;
                }
            }
            "vyx_request_duration_seconds_bucket" => {
                let Some(le) = label(&labels, "le").and_then(|v| v.parse::<f64>().ok()) else {
                    continue;
                };
                out.entry(route.to_string()).or_default();
                // Keyed by the bound's bits: bounds are positive, so their order is kept.
                let b = buckets.entry(route.to_string()).or_default();
                b.entry(le.to_bits()).or_insert((le, 0)).1 += value as u64;
            }
            _ => {}
        }
    }
    for (route, b) in buckets {
        if let Some(c) = out.get_mut(&route) {
            c.buckets = b.into_values().collect();
        }
    }
    out
}

/// A sample's labels, `(name, value)`, in their order.
type Labels = Vec<(String, String)>;

/// `name{labels} value` (a timestamp after the value, if any, is ignored).
fn sample(line: &str) -> Option<(&str, Labels, f64)> {
    let Some(open) = line.find('{') else {
        let (name, value) = line.split_once(' ')?;
        return Some((name, Vec::new(), first_number(value)?));
    };
    let name = &line[..open];
    let mut rest = &line[open + 1..];
    let mut labels = Vec::new();
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(after) = rest.strip_prefix('}') {
            return Some((name, labels, first_number(after)?));
        }
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                // prometheus-client 0.24 writes label values unescaped, and a route may
                // hold '"': a value ends at a quote followed by ',' or '}'.
                (i, '"') if after[i + 1..].starts_with([',', '}']) => break i + 1,
                (_, c) => value.push(c),
            }
        };
        labels.push((key.to_string(), value));
        rest = &after[end..];
    }
}

fn first_number(s: &str) -> Option<f64> {
    s.split_whitespace().next()?.parse().ok()
}

fn label<'a>(labels: &'a [(String, String)], key: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The `q` quantile (0..1) of the requests counted between two readings of cumulative
/// buckets, interpolated linearly within its bucket; `None` with no request between them.
pub fn quantile(q: f64, old: &[(f64, u64)], new: &[(f64, u64)]) -> Option<f64> {
    let before = |le: f64| old.iter().find(|(b, _)| *b == le).map_or(0, |&(_, n)| n);
    let delta: Vec<(f64, u64)> = new
        .iter()
        .map(|&(le, n)| (le, n.saturating_sub(before(le))))
        .collect();
    let total = delta.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let (mut low, mut below) = (0.0, 0u64);
    for (le, n) in delta {
        if n as f64 >= rank {
            if le.is_infinite() {
                return Some(low);
            }
            let within = (n - below) as f64;
            let into = if within == 0.0 {
                1.0
            } else {
                (rank - below as f64) / within
            };
            return Some(low + (le - low) * into);
        }
        (low, below) = (le, n);
    }
    Some(low)
}

#[derive(Serialize)]
struct Event {
    time_ms: u64,
    draining: bool,
    window_s: u64,
    totals: Totals,
    workers: Vec<Worker>,
    routes: Vec<Route>,
    lapsing: Vec<Lapsing>,
}

#[derive(Serialize, Default)]
struct Totals {
    connections: usize,
    worker_ids: usize,
    in_flight: usize,
    capacity: usize,
    queued_bytes: usize,
}

#[derive(Serialize)]
struct Worker {
    id: String,
    replicas: Vec<admin::WorkerInfo>,
}

#[derive(Serialize)]
struct Route {
    route: String,
    served_by: Vec<String>,
    replicas: usize,
    lapsing: bool,
    requests: u64,
    errors: u64,
    /// Requests per second over the window; `None` until there are two readings.
    rate: Option<f64>,
    error_rate: Option<f64>,
    p50_ms: Option<f64>,
    p90_ms: Option<f64>,
    p99_ms: Option<f64>,
}

#[derive(Serialize)]
struct Lapsing {
    id: String,
    routes: Vec<String>,
    lapses_in_ms: u64,
}

/// One dashboard client's readings, newest last, for its rates.
#[derive(Default)]
pub struct Readings {
    kept: VecDeque<(Instant, HashMap<String, RouteCounters>)>,
}

impl Readings {
    /// Reads the gateway now and returns the event's JSON.
    pub fn next(&mut self, shared: &Shared) -> String {
        let now = Instant::now();
        let counters = route_counters(&admin::exposition(shared));
        while self.kept.len() > 1 && self.kept[1].0 + WINDOW <= now {
            self.kept.pop_front();
        }
        let old = self.kept.front();
        let conns = shared.registry.connections();
        let mut totals = Totals {
            worker_ids: shared.registry.worker_id_count(),
            ..Totals::default()
        };
        let mut workers: BTreeMap<String, Vec<admin::WorkerInfo>> = BTreeMap::new();
        // Per route: the worker ids serving it, and the worker processes (a process holds
        // one connection per shard; they count as one replica, and share one capacity).
        let mut served: BTreeMap<String, (BTreeSet<String>, HashSet<_>)> = BTreeMap::new();
        let mut processes = HashSet::new();
        for c in &conns {
            let info = admin::worker_info(c);
            totals.connections += 1;
            totals.in_flight += info.in_flight;
            if processes.insert(c.process()) {
                totals.capacity += info.max_concurrency;
            }
            totals.queued_bytes += info.queued_bytes;
            for r in &info.routes {
                let s = served.entry(r.clone()).or_default();
                s.0.insert(c.worker_id.clone());
                s.1.insert(c.process());
            }
            workers.entry(c.worker_id.clone()).or_default().push(info);
        }
        let lapsing: Vec<Lapsing> = shared
            .registry
            .lapsing()
            .into_iter()
            .map(|l| Lapsing {
                id: l.worker_id,
                routes: l.routes,
                lapses_in_ms: l.left.as_millis() as u64,
            })
            .collect();
        let lapsing_routes: BTreeSet<&String> = lapsing.iter().flat_map(|l| &l.routes).collect();
        let names: BTreeSet<&String> = served
            .keys()
            .chain(lapsing_routes.iter().copied())
            .chain(counters.keys())
            .collect();
        let secs = old.map(|(t, _)| now.duration_since(*t).as_secs_f64());
        let routes = names
            .into_iter()
            .map(|name| {
                let new = counters.get(name).cloned().unwrap_or_default();
                let before = old
                    .and_then(|(_, m)| m.get(name))
                    .cloned()
                    .unwrap_or_default();
                let per_s = |n: u64, was: u64| {
                    secs.filter(|s| *s > 0.0)
                        .map(|s| n.saturating_sub(was) as f64 / s)
                };
                let ms = |q| quantile(q, &before.buckets, &new.buckets).map(|s| s * 1000.0);
                let (by, replicas) = served
                    .get(name)
                    .map(|(by, processes)| (by.iter().cloned().collect(), processes.len()))
                    .unwrap_or_default();
                Route {
                    route: name.clone(),
                    served_by: by,
                    replicas,
                    lapsing: lapsing_routes.contains(name),
                    requests: new.requests,
                    errors: new.errors,
                    rate: per_s(new.requests, before.requests),
                    error_rate: per_s(new.errors, before.errors),
                    p50_ms: ms(0.5),
                    p90_ms: ms(0.9),
                    p99_ms: ms(0.99),
                }
            })
            .collect();
        let event = Event {
            time_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            draining: *shared.phase.borrow() != crate::stopping::Phase::Serving,
            window_s: WINDOW.as_secs(),
            totals,
            workers: workers
                .into_iter()
                .map(|(id, replicas)| Worker { id, replicas })
                .collect(),
            routes,
            lapsing,
        };
        self.kept.push_back((now, counters));
        serde_json::to_string(&event).expect("dashboard JSON serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_counters_sum_every_label_but_the_route() {
        // As prometheus-client writes them (label values unescaped); the names are held to
        // the real metrics by tests/dashboard.rs, through the gateway.
        let text = r#"# HELP vyx_requests_total HTTP requests answered
vyx_requests_total{route="GET /a"q"/{id}",status="200"} 4
vyx_requests_total{route="GET /a"q"/{id}",status="502",worker_id="w"} 1
vyx_requests_total{route="GET /a"q"/{id}",status="404"} 1
vyx_requests_total{route="GET /b",status="200"} 7
vyx_request_duration_seconds_sum{route="GET /a"q"/{id}"} 0.7
vyx_request_duration_seconds_bucket{le="0.001",route="GET /a"q"/{id}"} 2
vyx_request_duration_seconds_bucket{le="0.001",route="GET /a"q"/{id}",worker_id="w"} 1
vyx_request_duration_seconds_bucket{le="0.004",route="GET /a"q"/{id}"} 5
vyx_request_duration_seconds_bucket{le="+Inf",route="GET /a"q"/{id}"} 6
vyx_open_connections 3
# EOF"#;
        let all = route_counters(text);
        let c = &all["GET /a\"q\"/{id}"];
        assert_eq!((c.requests, c.errors), (6, 1));
        assert_eq!(
            c.buckets,
            [(0.001, 3), (0.004, 5), (f64::INFINITY, 6)].to_vec()
        );
        assert_eq!(all["GET /b"].requests, 7);
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn quantiles_are_of_the_requests_between_two_readings() {
        let old = [(0.001, 10), (0.002, 10), (0.004, 10), (f64::INFINITY, 10)];
        let new = [(0.001, 10), (0.002, 15), (0.004, 20), (f64::INFINITY, 20)];
        // 10 new requests: 5 in (1, 2] ms, 5 in (2, 4] ms.
        assert_eq!(quantile(0.5, &old, &new), Some(0.002));
        assert_eq!(quantile(0.9, &old, &new), Some(0.002 + 0.002 * 0.8));
        assert_eq!(quantile(0.5, &new, &new), None);
        // Since the start, and past the last finite bound.
        assert_eq!(quantile(0.5, &[], &new), Some(0.001));
        let slow = [(0.001, 0), (f64::INFINITY, 4)];
        assert_eq!(quantile(0.99, &[], &slow), Some(0.001));
    }

    #[test]
    fn samples_with_and_without_labels() {
        let (name, labels, v) = sample(r#"x_total{a="1",b="q"x\"",} 3"#).unwrap();
        assert_eq!((name, v), ("x_total", 3.0));
        assert_eq!(labels[1], ("b".into(), "q\"x\"".into()));
        assert_eq!(sample("y 2.5 1700000000").unwrap().2, 2.5);
        assert!(sample(r#"z{a="1" 3"#).is_none());
    }
}

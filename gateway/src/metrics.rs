//! Prometheus metrics for `/_vyx/metrics` (prometheus-client).
//!
//! The request path touches pre-resolved handles for routes: a route's [`RouteMetrics`] is
//! resolved once per route (its label set built then), a status counter once per route and
//! status, and byte counters are plain atomics. Per worker id, two series are looked up per
//! request (a read lock and a hash); gateway errors only when they happen. Gauges (in-flight streams, connected
//! workers, queued bytes) are read from the registry when scraped, so they cost nothing per
//! request.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::routes::RouteKey;

/// A label value written escaped (`\\`, `\"`, `\n`), as the text format requires:
/// prometheus-client 0.24 writes `String` values as they are, and a route pattern may hold
/// `"` and `\` (§2.5), which would end the value early or make the scrape unreadable.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct LabelText(String);

impl EncodeLabelValue for LabelText {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        use std::fmt::Write;
        let mut rest = self.0.as_str();
        while let Some(i) = rest.find(['\\', '"', '\n']) {
            encoder.write_str(&rest[..i])?;
            encoder.write_str(match rest.as_bytes()[i] {
                b'\\' => "\\\\",
                b'"' => "\\\"",
                _ => "\\n",
            })?;
            rest = &rest[i + 1..];
        }
        encoder.write_str(rest)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: LabelText,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: LabelText,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabel {
    worker_id: String,
}

/// A worker id's request series (see `Metrics::worker_series`).
struct WorkerSeries {
    latency: Histogram,
    /// By status class, in the order of [`CLASSES`].
    by_class: [Counter; 5],
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerClass {
    worker_id: String,
    /// `2xx`, `4xx`, …: a worker's request counts by class keep its series few.
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabel {
    version: &'static str,
}

/// The status classes of `vyx_worker_requests_total`.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RetryLabel {
    reason: &'static str,
    outcome: &'static str,
}

/// The route label of requests that matched no route.
pub const UNMATCHED: &str = "(none)";

/// The gateway's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteStatus, Counter>,
    latency: Family<RouteLabel, Histogram>,
    queue_wait: Family<RouteLabel, Histogram>,
    gateway_errors: Family<RouteStatus, Counter>,
    worker_requests: Family<WorkerClass, Counter>,
    worker_latency: Family<WorkerLabel, Histogram>,
    worker_in_flight: Family<WorkerLabel, Gauge>,
    worker_capacity: Family<WorkerLabel, Gauge>,
    in_flight: Gauge,
    worker_ids: Gauge,
    connected: Family<WorkerLabel, Gauge>,
    queued: Family<WorkerLabel, Gauge>,
    registrations: Family<WorkerLabel, Counter>,
    reconnects: Family<WorkerLabel, Counter>,
    rejections: Family<ReasonLabel, Counter>,
    client_errors: Family<ReasonLabel, Counter>,
    retries: Family<RetryLabel, Counter>,
    /// Client connections open (worker connections included until they close).
    pub open_connections: Gauge,
    alive_tasks: Gauge,
    /// Request body bytes sent to workers.
    pub bytes_to_workers: Counter,
    /// Response body bytes received from workers.
    pub bytes_from_workers: Counter,
    /// Requests whose trailers were dropped: their worker did not negotiate `trailers`.
    pub request_trailers_dropped: Counter,
    /// Access log lines dropped because the writer was behind.
    pub access_log_dropped: Counter,
    /// Spans not exported, by why (see `otel`).
    pub trace_spans_dropped: crate::otel::Dropped,
    /// Requests answered, unexported: `memory_release` reads it to see load drop.
    pub answered: AtomicU64,
    /// `malloc_trim` calls made by `memory_release`, and the seconds they took.
    pub memory_trims: Counter,
    pub memory_trim_seconds: Counter<f64, AtomicU64>,
    unmatched: RouteMetrics,
    /// Per worker id, hashes of the instances that registered under it (the latest
    /// [`SEEN_PER_ID`]), to tell a reconnect from a first connection. Keyed by instance:
    /// replicas of one id are not reconnects. An id's entry, like its other series, goes
    /// when the registry forgets the id ([`Metrics::forget_worker`]).
    seen: Mutex<HashMap<String, VecDeque<u64>>>,
    /// Each worker id's request series, looked up in their families once: a lookup there
    /// builds its label's `String`s, two allocations a request.
    worker_series: RwLock<HashMap<String, WorkerSeries>>,
    seen_hasher: std::hash::RandomState,
    /// The statuses counted per route, to drop its series when it leaves the table.
    route_statuses: Mutex<HashMap<String, Vec<u16>>>,
    scrape: Mutex<()>,
}

/// Instances remembered per worker id for `reconnects`: more than an id has replicas in
/// practice, and a bound whatever a worker sends (only hashes are kept).
pub const SEEN_PER_ID: usize = 64;

/// What [`Metrics::observe`] counts of one answered request.
pub struct Observed<'a> {
    pub status: u16,
    /// From the request's arrival to its response head.
    pub elapsed: Duration,
    /// Waiting for a worker's slot, when the request reached that step.
    pub queue_wait: Option<Duration>,
    /// The worker that took it, if one did.
    pub worker_id: Option<&'a str>,
    /// The gateway answered it with its own error.
    pub gateway_error: bool,
}

/// Latency buckets: 0.5 ms to about 16 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// One route's handles, resolved once.
pub struct RouteMetrics {
    route: String,
    latency: Histogram,
    queue_wait: Histogram,
    /// Status → counter, grown on the first response with a new status.
    statuses: ArcSwap<Vec<(u16, Counter)>>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("vyx");
        let requests = Family::<RouteStatus, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests answered, by route (method and pattern) and status",
            requests.clone(),
        );
        let latency = Family::<RouteLabel, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "request_duration_seconds",
            "Time from the request's arrival to the response head, by route",
            latency.clone(),
        );
        let queue_wait = Family::<RouteLabel, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "queue_wait_seconds",
            "Time a request waited for a worker's free slot (within timeouts.queue), by route",
            queue_wait.clone(),
        );
        let gateway_errors = Family::<RouteStatus, Counter>::default();
        registry.register(
            "gateway_errors",
            "Requests the gateway answered with its own error instead of a worker's response (no route, no live or free worker, worker timeout or failure, client faults), by route and status",
            gateway_errors.clone(),
        );
        let worker_requests = Family::<WorkerClass, Counter>::default();
        registry.register(
            "worker_requests",
            "Requests a worker took, by worker id and status class (the gateway's 502 and 504 for the worker's failures included)",
            worker_requests.clone(),
        );
        let worker_latency = Family::<WorkerLabel, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "worker_request_duration_seconds",
            "Time from the request's arrival to the response head, by the worker id that took it",
            worker_latency.clone(),
        );
        let worker_in_flight = Family::<WorkerLabel, Gauge>::default();
        registry.register(
            "worker_in_flight",
            "Requests open on a worker id's connections",
            worker_in_flight.clone(),
        );
        let worker_capacity = Family::<WorkerLabel, Gauge>::default();
        registry.register(
            "worker_capacity",
            "Requests a worker id's connections take at once (the sum of their max_concurrency)",
            worker_capacity.clone(),
        );
        let build_info = Family::<BuildLabel, Gauge>::default();
        registry.register(
            "build_info",
            "Always 1; the version label is the gateway's",
            build_info.clone(),
        );
        build_info
            .get_or_create(&BuildLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        let in_flight = Gauge::default();
        registry.register(
            "in_flight_streams",
            "Requests open on worker connections",
            in_flight.clone(),
        );
        let worker_ids = Gauge::default();
        registry.register(
            "worker_ids",
            "Worker ids the gateway holds state for: connected, registering, or with routes still claimed in their claim grace (an id's per-worker series go with it)",
            worker_ids.clone(),
        );
        let connected = Family::<WorkerLabel, Gauge>::default();
        registry.register(
            "connected_workers",
            "Live worker connections, by worker id",
            connected.clone(),
        );
        let queued = Family::<WorkerLabel, Gauge>::default();
        registry.register(
            "worker_queued_bytes",
            "Request-body bytes queued for worker connections and not yet written to their sockets, by worker id (bounded per connection; a value stuck at the bound is a worker that stopped reading)",
            queued.clone(),
        );
        let registrations = Family::<WorkerLabel, Counter>::default();
        registry.register(
            "registrations",
            "Worker connections admitted (HELLO accepted), by worker id",
            registrations.clone(),
        );
        let reconnects = Family::<WorkerLabel, Counter>::default();
        registry.register(
            "reconnects",
            "Registrations of a worker instance (one process, per HELLO) that had registered before, by worker id",
            reconnects.clone(),
        );
        let rejections = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "rejections",
            "Worker registrations refused, by reason",
            rejections.clone(),
        );
        let client_errors = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "client_errors",
            "Requests and connections the gateway cut for the client's fault (bad Host, malformed or slow body, header timeout, connection limit), by reason",
            client_errors.clone(),
        );
        let retries = Family::<RetryLabel, Counter>::default();
        registry.register(
            "retries",
            "Requests whose stream failed before its response head in a way a retry may repair, by reason (connection_lost, refused) and outcome (answered, failed: retried; no_replica, not_idempotent, body_not_held, disabled: not retried)",
            retries.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "Client connections open, worker connections included",
            open_connections.clone(),
        );
        let alive_tasks = Gauge::default();
        registry.register(
            "runtime_alive_tasks",
            "Tasks alive on the gateway's shards (its tokio runtimes serving connections), read when scraped: one that stays above its idle value once load stops is a leak",
            alive_tasks.clone(),
        );
        let bytes_to_workers = Counter::default();
        registry.register(
            "request_body_bytes",
            "Request body bytes sent to workers",
            bytes_to_workers.clone(),
        );
        let bytes_from_workers = Counter::default();
        registry.register(
            "response_body_bytes",
            "Response body bytes received from workers",
            bytes_from_workers.clone(),
        );
        let request_trailers_dropped = Counter::default();
        registry.register(
            "request_trailers_dropped",
            "Requests whose trailer fields were dropped: their worker did not negotiate trailers",
            request_trailers_dropped.clone(),
        );
        let access_log_dropped = Counter::default();
        registry.register(
            "access_log_dropped",
            "Access log lines dropped because the writer was behind (a slow disk, an unread pipe)",
            access_log_dropped.clone(),
        );
        let spans_dropped = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "trace_spans_dropped",
            "Trace spans not exported, by reason: queue_full (the exporter was behind: tracing.queue), export_failed (the collector refused them or could not be reached)",
            spans_dropped.clone(),
        );
        let by = |reason: &str| {
            spans_dropped
                .get_or_create(&ReasonLabel {
                    reason: reason.into(),
                })
                .clone()
        };
        let trace_spans_dropped = crate::otel::Dropped {
            queue_full: by("queue_full"),
            export_failed: by("export_failed"),
        };
        let memory_trims = Counter::default();
        let memory_trim_seconds = Counter::<f64, AtomicU64>::default();
        // Absent where no task trims, so that a reader can tell.
        if crate::memory_release::ACTIVE {
            registry.register(
                "memory_trims",
                "Times the gateway gave freed memory back to the system (malloc_trim) after its load dropped",
                memory_trims.clone(),
            );
            registry.register(
                "memory_trim_seconds",
                "Time spent in those malloc_trim calls",
                memory_trim_seconds.clone(),
            );
        }
        let unmatched = RouteMetrics::new(UNMATCHED.to_string(), &latency, &queue_wait);
        Metrics {
            registry,
            requests,
            latency,
            queue_wait,
            gateway_errors,
            worker_requests,
            worker_latency,
            worker_in_flight,
            worker_capacity,
            in_flight,
            worker_ids,
            connected,
            queued,
            registrations,
            reconnects,
            rejections,
            client_errors,
            retries,
            open_connections,
            alive_tasks,
            bytes_to_workers,
            bytes_from_workers,
            request_trailers_dropped,
            access_log_dropped,
            trace_spans_dropped,
            answered: AtomicU64::new(0),
            memory_trims,
            memory_trim_seconds,
            unmatched,
            seen: Mutex::new(HashMap::new()),
            worker_series: RwLock::new(HashMap::new()),
            seen_hasher: std::hash::RandomState::new(),
            route_statuses: Mutex::new(HashMap::new()),
            scrape: Mutex::new(()),
        }
    }

    /// The handles of one route (call once per route and keep them).
    pub fn route(&self, key: &RouteKey) -> RouteMetrics {
        RouteMetrics::new(key.to_string(), &self.latency, &self.queue_wait)
    }

    /// The handles for requests that matched no route.
    pub fn unmatched(&self) -> &RouteMetrics {
        &self.unmatched
    }

    /// Counts an answered request.
    pub fn observe(&self, route: &RouteMetrics, o: &Observed<'_>) {
        self.answered.fetch_add(1, Ordering::Relaxed);
        let status = o.status;
        route.latency.observe(o.elapsed.as_secs_f64());
        if let Some(q) = o.queue_wait {
            route.queue_wait.observe(q.as_secs_f64());
        }
        if let Some(worker_id) = o.worker_id {
            self.observe_worker(worker_id, status, o.elapsed);
        }
        if o.gateway_error {
            // Errors are few: their series are looked up when they happen.
            self.gateway_errors
                .get_or_create(&RouteStatus {
                    route: LabelText(route.route.clone()),
                    status: status.to_string(),
                })
                .inc();
        }
        let statuses = route.statuses.load();
        if let Some((_, c)) = statuses.iter().find(|(s, _)| *s == status) {
            c.inc();
            return;
        }
        drop(statuses);
        let counter = self.requests.get_or_create_owned(&RouteStatus {
            route: LabelText(route.route.clone()),
            status: status.to_string(),
        });
        counter.inc();
        let mut index = self.route_statuses.lock().unwrap();
        let known = index.entry(route.route.clone()).or_default();
        if !known.contains(&status) {
            known.push(status);
        }
        drop(index);
        route.statuses.rcu(|list| {
            let mut list = Vec::clone(list);
            if !list.iter().any(|(s, _)| *s == status) {
                list.push((status, counter.clone()));
            }
            list
        });
    }

    fn observe_worker(&self, worker_id: &str, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        let observe = |s: &WorkerSeries| {
            s.latency.observe(elapsed.as_secs_f64());
            s.by_class[class].inc();
        };
        if let Some(s) = self.worker_series.read().unwrap().get(worker_id) {
            return observe(s);
        }
        let series = WorkerSeries {
            latency: self.worker_latency.get_or_create_owned(&WorkerLabel {
                worker_id: worker_id.to_string(),
            }),
            by_class: CLASSES.map(|class| {
                self.worker_requests.get_or_create_owned(&WorkerClass {
                    worker_id: worker_id.to_string(),
                    class,
                })
            }),
        };
        observe(&series);
        let mut all = self.worker_series.write().unwrap();
        all.insert(worker_id.to_string(), series);
    }

    /// A worker connection was admitted (`instance` is the HELLO's); `alongside`: another
    /// connection of that instance is open (one of its connections per shard, §2.3), which is
    /// no reconnect.
    pub fn registered(&self, worker_id: &str, instance: &str, alongside: bool) {
        let label = WorkerLabel {
            worker_id: worker_id.to_string(),
        };
        self.registrations.get_or_create(&label).inc();
        let hash = self.seen_hasher.hash_one(instance);
        let mut seen = self.seen.lock().unwrap();
        let instances = seen.entry(worker_id.to_string()).or_default();
        let again = instances.contains(&hash) && !alongside;
        if !again {
            if instances.len() == SEEN_PER_ID {
                instances.pop_front();
            }
            instances.push_back(hash);
        }
        drop(seen);
        if again {
            self.reconnects.get_or_create(&label).inc();
        }
    }

    /// Drops the series and state of a worker id the registry has forgotten.
    pub fn forget_worker(&self, worker_id: &str) {
        let label = WorkerLabel {
            worker_id: worker_id.to_string(),
        };
        self.registrations.remove(&label);
        self.reconnects.remove(&label);
        self.worker_latency.remove(&label);
        for class in CLASSES {
            self.worker_requests.remove(&WorkerClass {
                worker_id: worker_id.to_string(),
                class,
            });
        }
        self.seen.lock().unwrap().remove(worker_id);
        self.worker_series.write().unwrap().remove(worker_id);
    }

    /// Drops the series of a route that left the table (its worker dropped it, its claims
    /// lapsed, or another worker took it over): routes are the workers' to name, so their
    /// series must not outlive them. A request still in flight on it counts on handles no
    /// longer exported; one that brings a new status puts that series back, until the route
    /// leaves again.
    pub fn forget_route(&self, route: &str) {
        let label = RouteLabel {
            route: LabelText(route.to_string()),
        };
        self.latency.remove(&label);
        self.queue_wait.remove(&label);
        // Every gateway error was counted in `requests` too, so its status is listed.
        let statuses = self.route_statuses.lock().unwrap().remove(route);
        for status in statuses.into_iter().flatten() {
            let label = RouteStatus {
                route: LabelText(route.to_string()),
                status: status.to_string(),
            };
            self.requests.remove(&label);
            self.gateway_errors.remove(&label);
        }
    }

    /// Worker ids remembered for `reconnects` (for tests).
    #[cfg(test)]
    fn seen_ids(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// A registration was refused (`reason` is a rejection's or close code's name).
    pub fn rejected(&self, reason: &str) {
        self.rejections
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts a request whose stream failed before its head for `reason` (see `retry`).
    pub fn retry(&self, reason: &'static str, outcome: &'static str) {
        self.retries
            .get_or_create(&RetryLabel { reason, outcome })
            .inc();
    }

    /// Counts a request or connection cut for the client's fault.
    pub fn client_error(&self, reason: &str) {
        self.client_errors
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// The text exposition, with the gauges read from the live worker connections and the
    /// registry's count of worker ids.
    /// The tasks alive on the shards now (`runtime_alive_tasks`).
    pub fn set_alive_tasks(&self, n: usize) {
        self.alive_tasks.set(n as i64);
    }

    pub fn encode(
        &self,
        workers: impl IntoIterator<Item = ConnectionGauges>,
        worker_ids: usize,
    ) -> String {
        // Per worker id: connections, queued bytes, in flight, capacity.
        let mut per_id: HashMap<String, [i64; 4]> = Default::default();
        let mut in_flight = 0;
        for c in workers {
            in_flight += c.in_flight as i64;
            let id = per_id.entry(c.worker_id).or_default();
            id[0] += 1;
            id[1] += c.queued_bytes as i64;
            id[2] += c.in_flight as i64;
            id[3] += c.capacity as i64;
        }
        // One scrape at a time: the gauges are rewritten for each.
        let _scrape = self.scrape.lock().unwrap();
        let gauges = [
            &self.connected,
            &self.queued,
            &self.worker_in_flight,
            &self.worker_capacity,
        ];
        for g in gauges {
            g.clear();
        }
        for (worker_id, values) in per_id {
            let label = WorkerLabel { worker_id };
            for (g, v) in gauges.iter().zip(values) {
                g.get_or_create(&label).set(v);
            }
        }
        self.in_flight.set(in_flight);
        self.worker_ids.set(worker_ids as i64);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// What a scrape reads from one live worker connection.
pub struct ConnectionGauges {
    pub worker_id: String,
    pub in_flight: usize,
    pub queued_bytes: usize,
    /// The connection's `max_concurrency`, or 0 when another connection of its worker
    /// process counted it (they share it, spec §6).
    pub capacity: usize,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl RouteMetrics {
    fn new(
        route: String,
        latency: &Family<RouteLabel, Histogram>,
        queue_wait: &Family<RouteLabel, Histogram>,
    ) -> RouteMetrics {
        let label = RouteLabel {
            route: LabelText(route.clone()),
        };
        RouteMetrics {
            route,
            latency: latency.get_or_create_owned(&label),
            queue_wait: queue_wait.get_or_create_owned(&label),
            statuses: ArcSwap::from_pointee(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_labels_are_escaped() {
        let m = Metrics::new();
        let route = m.route(&crate::routes::RouteKey {
            method: "GET".into(),
            path: r#"/a"b\c"#.into(),
        });
        let o = Observed {
            status: 200,
            elapsed: Duration::from_millis(1),
            queue_wait: None,
            worker_id: None,
            gateway_error: false,
        };
        m.observe(&route, &o);
        let text = m.encode(Vec::new(), 0);
        let line = r#"vyx_requests_total{route="GET /a\"b\\c",status="200"} 1"#;
        assert!(text.lines().any(|l| l == line), "{text}");
    }

    fn count(text: &str, metric: &str, worker_id: &str) -> Option<u64> {
        let prefix = format!("{metric}{{worker_id=\"{worker_id}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map(|v| v.parse().unwrap())
    }

    #[test]
    fn a_reconnect_counts_as_one_and_a_forgotten_id_leaves_every_series() {
        let m = Metrics::new();
        m.registered("a", "i1", false);
        m.registered("a", "i2", false); // a replica
        m.registered("a", "i1", false); // a reconnect
        m.registered("a", "i1", true); // a second connection of i1, no reconnect
        m.registered("b", "i1", false);
        let text = m.encode(Vec::new(), 2);
        assert_eq!(count(&text, "vyx_registrations_total", "a"), Some(4));
        assert_eq!(count(&text, "vyx_reconnects_total", "a"), Some(1));
        assert!(text.contains("vyx_worker_ids 2"), "{text}");
        m.forget_worker("a");
        let text = m.encode(Vec::new(), 1);
        assert_eq!(count(&text, "vyx_registrations_total", "a"), None, "{text}");
        assert_eq!(count(&text, "vyx_reconnects_total", "a"), None, "{text}");
        assert_eq!(count(&text, "vyx_registrations_total", "b"), Some(1));
        assert_eq!(m.seen_ids(), 1);
        // Back after being forgotten: a first registration again.
        m.registered("a", "i1", false);
        let text = m.encode(Vec::new(), 2);
        assert_eq!(count(&text, "vyx_reconnects_total", "a"), None, "{text}");
    }

    #[test]
    fn a_forgotten_route_leaves_the_request_series() {
        let m = Metrics::new();
        let key = RouteKey {
            method: "GET".into(),
            path: "/gone/{id}".into(),
        };
        let route = m.route(&key);
        let answered = |status, gateway_error| Observed {
            status,
            elapsed: Duration::from_millis(1),
            queue_wait: Some(Duration::ZERO),
            worker_id: Some("w"),
            gateway_error,
        };
        m.observe(&route, &answered(200, false));
        m.observe(&route, &answered(504, true));
        let text = m.encode(Vec::new(), 0);
        assert!(text.contains("route=\"GET /gone/{id}\""), "{text}");
        m.forget_route(&key.to_string());
        let text = m.encode(Vec::new(), 0);
        assert!(!text.contains("/gone/"), "{text}");
        assert!(m.route_statuses.lock().unwrap().is_empty());
    }

    #[test]
    fn the_instances_remembered_per_id_are_bounded() {
        let m = Metrics::new();
        for i in 0..10 * SEEN_PER_ID {
            m.registered("a", &format!("instance-{i}"), false);
        }
        assert_eq!(m.seen.lock().unwrap()["a"].len(), SEEN_PER_ID);
        // The latest are still known: registering one again is a reconnect.
        m.registered("a", &format!("instance-{}", 10 * SEEN_PER_ID - 1), false);
        let text = m.encode(Vec::new(), 1);
        assert_eq!(count(&text, "vyx_reconnects_total", "a"), Some(1), "{text}");
    }
}

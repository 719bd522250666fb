//! Metrics to alert on (issue 20, item 5): series bounded by the declared route patterns
//! whatever paths clients send, the per-worker and queue-wait series, and the operator's
//! documents (docs/OPERATIONS.md, docs/grafana/vyx.json, docs/alerts.yaml) held to what the
//! gateway exports.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::*;
use serde_json::Value;
use vyx_gateway::access_log::{AccessLogConfig, Mode, Output};
use vyx_gateway::log_format::LogFormat;

fn docs(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The metric families of an exposition: name → type (`# TYPE` lines).
fn families(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            (name.to_string(), kind.to_string())
        })
        .collect()
}

/// The series (sample lines) of an exposition.
fn series(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect()
}

/// The value of the sample `name{labels}`.
fn value(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

/// Every `vyx_…` metric name in a query.
fn metric_names(query: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = query;
    while let Some(at) = rest.find("vyx_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// Whether `name` is a sample name of one of `families` (a counter's `_total`, a
/// histogram's `_bucket`, `_sum`, `_count`).
fn exported(name: &str, families: &BTreeMap<String, String>) -> bool {
    families.iter().any(|(f, kind)| {
        let suffixes: &[&str] = match kind.as_str() {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        suffixes.iter().any(|s| name == format!("{f}{s}"))
    })
}

/// Rows of the metrics table on the operations page.
fn page_metrics(page: &str) -> usize {
    page.lines().filter(|l| l.starts_with("| `vyx_")).count()
}

#[tokio::test]
async fn a_thousand_distinct_paths_make_a_bounded_number_of_series() {
    let gw = TestGateway::start().await;
    let w = RawWorker::connect(gw.addr, "w", vec![route(1, "GET", "/items/{id}")]).await;
    serve_ok(w);
    let c = client();
    for i in 0..500 {
        assert_eq!(get(&c, &gw.url(&format!("/items/{i}"))).await.0, 200);
        assert_eq!(get(&c, &gw.url(&format!("/nothing/{i}/here"))).await.0, 404);
    }
    let text = String::from_utf8(get(&c, &gw.url("/_vyx/metrics")).await.1.to_vec()).unwrap();
    let routes: BTreeSet<&str> = text
        .split("route=\"")
        .skip(1)
        .map(|s| &s[..s.find('"').unwrap()])
        .collect();
    assert_eq!(
        routes,
        BTreeSet::from(["(none)", "GET /items/{id}"]),
        "{text}"
    );
    let n = series(&text).len();
    assert!(n < 150, "{n} series after 1,000 distinct paths:\n{text}");
    let r = "route=\"GET /items/{id}\"";
    assert_eq!(
        value(&text, &format!("vyx_requests_total{{{r},status=\"200\"}}")),
        Some(500.0)
    );
    assert_eq!(
        value(&text, &format!("vyx_queue_wait_seconds_count{{{r}}}")),
        Some(500.0)
    );
    assert_eq!(
        value(
            &text,
            "vyx_gateway_errors_total{route=\"(none)\",status=\"404\"}"
        ),
        Some(500.0)
    );
    assert_eq!(
        value(
            &text,
            "vyx_worker_requests_total{worker_id=\"w\",class=\"2xx\"}"
        ),
        Some(500.0)
    );
    assert_eq!(
        value(
            &text,
            "vyx_worker_request_duration_seconds_count{worker_id=\"w\"}"
        ),
        Some(500.0)
    );
    // RawWorker's HELLO offers 64 streams; none is open between requests.
    assert_eq!(
        value(&text, "vyx_worker_capacity{worker_id=\"w\"}"),
        Some(64.0)
    );
    assert_eq!(
        value(&text, "vyx_worker_in_flight{worker_id=\"w\"}"),
        Some(0.0)
    );
    let build = format!(
        "vyx_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(value(&text, &build), Some(1.0), "{text}");
    gw.shutdown().await;
}

#[tokio::test]
async fn the_operations_page_the_dashboard_and_the_alerts_name_what_the_gateway_exports() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let file = log.clone();
    let gw = TestGateway::start_with(move |c| {
        c.log_format = LogFormat::Json;
        c.access_log = AccessLogConfig {
            mode: Mode::All,
            output: Output::File(file),
            ..AccessLogConfig::default()
        };
    })
    .await;
    // A family is exported once it has a series: make one of each.
    let c = client();
    assert_eq!(get(&c, &gw.url("/no/route")).await.0, 404);
    let routes = || vec![route(1, "GET", "/ok")];
    // One worker process ("p"): its connection, then two more.
    let connect = || RawWorker::connect_instance(gw.addr, "w", None, "p", routes());
    let mut gone = connect().await;
    gone.ws.close(None).await.unwrap();
    drop(gone);
    wait_for_workers(gw.addr, "w", 0).await;
    let first = connect().await; // a reconnect
    let again = connect().await; // beside it: no reconnect
    serve_ok(first);
    serve_ok(again);
    assert_eq!(get(&c, &gw.url("/ok")).await.0, 200);
    let mut bad = hello_json("w2", vec![route(1, "GET", "/x")]);
    bad["max_concurrency"] = 0.into();
    assert!(hello_outcome(&gw, "w2", &bad).await.is_err());
    let two_hosts = [("host", "a"), ("host", "b")];
    assert_eq!(send(&c, "GET", &gw.url("/ok"), &two_hosts, "").await.0, 400);
    let text = String::from_utf8(get(&c, &gw.url("/_vyx/metrics")).await.1.to_vec()).unwrap();
    // `first` and `again` are one process's connections: its 64 slots count once.
    assert_eq!(
        value(&text, "vyx_connected_workers{worker_id=\"w\"}"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "vyx_worker_capacity{worker_id=\"w\"}"),
        Some(64.0),
        "{text}"
    );
    let families = families(&text);
    // Every family the gateway registers (the page's table lists as many).
    let listed = page_metrics(&docs("OPERATIONS.md"));
    assert_eq!(families.len(), listed, "{text}");
    let page = docs("OPERATIONS.md");
    for (name, kind) in &families {
        let shown = if kind == "counter" {
            format!("{name}_total")
        } else {
            name.clone()
        };
        assert!(
            page.contains(&format!("| `{shown}` |")),
            "docs/OPERATIONS.md does not list {shown} ({kind})"
        );
    }
    // Every access log field, from a real line.
    let deadline = tokio::time::Instant::now() + WAIT;
    let line = loop {
        if let Some(l) = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .next()
        {
            break serde_json::from_str::<Value>(l).unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "no access log line");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    for field in line.as_object().unwrap().keys() {
        assert!(
            page.contains(&format!("| `{field}` |")),
            "docs/OPERATIONS.md does not describe the access log field {field}"
        );
    }
    for field in ["time", "level", "target", "message", "peer", "request_id"] {
        assert!(
            page.contains(&format!("| `{field}` |")),
            "log field {field}"
        );
    }

    let dashboard: Value = serde_json::from_str(&docs("grafana/vyx.json")).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 8);
    for p in panels {
        let exprs: Vec<&str> = p["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("panel {} has no targets", p["title"]))
            .iter()
            .map(|t| t["expr"].as_str().unwrap())
            .collect();
        let names: Vec<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
        assert!(
            !names.is_empty(),
            "panel {} queries no vyx metric",
            p["title"]
        );
        for n in names {
            assert!(
                exported(&n, &families),
                "panel {}: {n} is not exported",
                p["title"]
            );
        }
    }

    let alerts: Value = serde_saphyr::from_str(&docs("alerts.yaml")).unwrap();
    let rules: Vec<&Value> = alerts["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    assert!(rules.len() >= 8);
    for r in rules {
        let name = r["alert"].as_str().expect("an alerting rule");
        assert!(r["annotations"]["summary"].is_string(), "{name}");
        let names = metric_names(r["expr"].as_str().unwrap());
        assert!(!names.is_empty(), "{name} queries no vyx metric");
        for n in names {
            assert!(exported(&n, &families), "alert {name}: {n} is not exported");
        }
    }
    gw.shutdown().await;
}

/// `vyx_runtime_alive_tasks` follows the gateway's tasks: a client connection is one, so
/// twenty held connections raise it by at least twenty, and closing them brings it back.
#[tokio::test]
async fn the_task_gauge_rises_with_connections_and_falls_back_when_they_close() {
    let gw = TestGateway::start().await;
    let tasks = || metric(&gw, "vyx_runtime_alive_tasks ");
    let idle = tasks().await;
    assert!(idle > 0, "the gateway runs tasks");
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(tokio::net::TcpStream::connect(gw.addr).await.unwrap());
    }
    wait_until_metric(&gw, "vyx_open_connections ", |n| n >= 20).await;
    assert!(tasks().await >= idle + 20, "one task per held connection");
    drop(held);
    wait_until_metric(&gw, "vyx_runtime_alive_tasks ", |n| n <= idle).await;
}

async fn wait_until_metric(gw: &TestGateway, line_start: &str, ok: impl Fn(u64) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = metric(gw, line_start).await;
        if ok(now) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{line_start}stayed at {now}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

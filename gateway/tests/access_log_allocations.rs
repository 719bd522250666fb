//! A logged request's line costs no allocation of its own (issue 20: the access log's cost):
//! counted by a global allocator that counts what the test's own thread allocates.

mod thread_allocations;

use std::time::{Duration, Instant};

use thread_allocations::allocations;

use prometheus_client::metrics::counter::Counter;
use vyx_gateway::access_log::{AccessLog, AccessLogConfig, Entry, Output};
use vyx_gateway::log_format::LogFormat;

#[global_allocator]
static COUNTING: thread_allocations::Counting = thread_allocations::Counting;

fn entry() -> Entry {
    let mut e = Entry::new(
        http::HeaderValue::from_static("5f0c2e55d1a3b7c4"),
        "127.0.0.1:40524".parse().unwrap(),
        http::Method::GET,
        &http::Uri::from_static("/hello/world"),
        Instant::now(),
    );
    e.status = 200;
    e.bytes_out = 20;
    e.ttfb = Some(Duration::from_micros(1_750));
    e
}

#[test]
fn a_line_costs_no_allocation_on_the_request_thread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let config = AccessLogConfig {
        output: Output::File(path.clone()),
        capacity: 10_000,
        ..AccessLogConfig::default()
    };
    for format in [LogFormat::Json, LogFormat::Text] {
        let log = AccessLog::start(&config, format, Counter::default()).unwrap();
        let mut entries: Vec<_> = (0..2_000).map(|_| entry()).collect();
        let later = entries.split_off(1_000);
        // The queue grows once.
        entries
            .into_iter()
            .for_each(|e| log.finish(e, Duration::from_micros(1_900)));
        let before = allocations();
        later
            .into_iter()
            .for_each(|e| log.finish(e, Duration::from_micros(1_900)));
        let made = allocations() - before;
        assert!(log.flush(Duration::from_secs(20)));
        // The queue may still grow now and then (the writer swaps in its own).
        assert!(
            made < 100,
            "{made} allocations for 1,000 lines ({format:?})"
        );
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 4_000);
}

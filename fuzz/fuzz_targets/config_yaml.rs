//! The `vyx.yaml` loader (`gateway/src/file_config/`): any text is a config or an error
//! with a place, never a panic or a hang; a config it accepts only holds values the
//! protocol can carry (a gateway started with it can WELCOME a worker); the duration and
//! size parsers it uses are checked on the same text, and what they accept prints back to
//! the same value.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use vyx_core::limits::{MAX_CONCURRENCY, MAX_ROUTES, MAX_WINDOW};
use vyx_gateway::file_config::{parse, parse_duration, parse_size};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // `token_file` is read from disk: a device or proc file is the OS's business, not the
    // parser's (reading /dev/zero never ends), so such inputs are not tried.
    if text.contains("/dev") || text.contains("/proc") || text.contains("/sys") {
        return;
    }
    // Relative paths resolve against a directory that does not exist.
    match parse(Path::new("/nonexistent-vyx-fuzz/vyx.yaml"), text) {
        Ok(c) => {
            // What WELCOME announces from it must pass the worker's own check (§2.3).
            let heartbeat_ms = c.heartbeat.as_millis();
            assert!(
                (1..=MAX_WINDOW as u128).contains(&heartbeat_ms),
                "heartbeat {heartbeat_ms} ms"
            );
            assert!((1..=MAX_WINDOW).contains(&c.initial_window));
            assert!((1..=MAX_CONCURRENCY).contains(&c.max_concurrency_per_connection));
            assert!((1..=MAX_ROUTES).contains(&c.routes_per_worker));
            assert!(c.register_path.starts_with('/'));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Ok(d) = parse_duration(text) {
        assert_eq!(parse_duration(&format!("{}ms", d.as_millis())), Ok(d));
    }
    if let Ok(n) = parse_size(text) {
        assert_eq!(parse_size(&n.to_string()), Ok(n));
    }
});

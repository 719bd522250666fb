//! A worker without a tracing subscriber must not retry an unreachable gateway in silence:
//! its first failed attempt goes to stderr. The engine runs in a child process (this test
//! binary again), so that its stderr can be read whole.

use std::process::Command;
use std::time::Duration;

use vyx_core::session::{ConnectionState, Engine, WorkerConfig};

const CHILD: &str = "VYX_TEST_UNREACHABLE_CHILD";

#[test]
fn the_first_failed_attempt_is_on_stderr_without_a_subscriber() {
    if let Ok(url) = std::env::var(CHILD) {
        return child(&url);
    }
    // A port that refuses: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("ws://127.0.0.1:{port}");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "the_first_failed_attempt_is_on_stderr_without_a_subscriber",
            "--nocapture",
        ])
        .env(CHILD, &url)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed: {stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("vyx: cannot register"))
        .collect();
    assert_eq!(lines.len(), 1, "said once, not per attempt: {stderr}");
    assert!(lines[0].contains(&url), "{}", lines[0]);
    assert!(lines[0].contains("tracing subscriber"), "{}", lines[0]);
}

/// Runs the engine until it has failed twice, then stops it.
fn child(url: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let engine = Engine::new(WorkerConfig::new(url, "core:unreachable")).unwrap();
        engine.add_route("GET", "/").unwrap();
        engine.start().unwrap();
        let mut failures = 0;
        while failures < 2 {
            let batch = tokio::time::timeout(Duration::from_secs(20), engine.next_batch(8))
                .await
                .expect("timed out")
                .expect("engine ended");
            failures += batch
                .states
                .iter()
                .filter(|s| matches!(s, ConnectionState::Reconnecting { .. }))
                .count();
        }
        engine.drain(Duration::ZERO);
        while engine.next_batch(8).await.is_some() {}
    });
}

//! Freed memory given back to the system once load stops (`memory_release`; glibc only:
//! musl's malloc and mimalloc return it themselves).
#![cfg(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc")))]

mod common;

use std::time::Duration;

use common::*;

#[tokio::test]
async fn a_gateway_gives_memory_back_once_its_load_stops() {
    let gw =
        TestGateway::start_with(|c| c.memory_release_interval = Duration::from_millis(50)).await;
    let w = RawWorker::connect(gw.addr, "w", vec![route(1, "GET", "/x")]).await;
    let _serving = serve_ok(w);
    wait_for_workers(gw.addr, "w", 1).await;
    let c = client();
    for _ in 0..50 {
        assert_eq!(get(&c, &gw.url("/x")).await, (200, "ok".into()));
    }
    // The requests above stopped: within a couple of intervals the gateway trims.
    let deadline = tokio::time::Instant::now() + WAIT;
    while metric(&gw, "vyx_memory_trims_total").await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no malloc_trim after the load stopped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.shutdown().await;
}

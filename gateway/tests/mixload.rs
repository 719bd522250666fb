//! The mixed-load client (`vyx-mixload`, `vyx_bench::mixload`) against a real gateway and a
//! real Rust SDK worker serving the bench worker's mix routes: a few seconds of every kind of
//! request over HTTP/1.1 and h2c, aborts included, with no failure and nothing left in flight.

mod common;

use std::time::Duration;

use common::*;
use vyx_bench::mixload::{self, Config, Kind, Protocol};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_of_every_kind_fails_nothing_and_leaves_nothing_in_flight() {
    let gw = TestGateway::start().await;
    let worker = vyx_bench::mix::routes(vyx::Worker::builder())
        .connect(format!("ws://{}", gw.addr))
        .id("mix:rust")
        .handle_signals(false)
        .build()
        .unwrap();
    let _serving = start_connected(&worker).await;

    let mut config = Config::new(vec![format!("http://{}", gw.addr)]);
    config.mix = Kind::ALL.iter().map(|&k| (k, 1)).collect();
    config.timeout = WAIT;
    // A fixed run time, not a synchronisation: the assertions hold for any length.
    let summary = mixload::run(config, tokio::time::sleep(Duration::from_secs(3))).await;
    let json = summary.to_json();

    assert_eq!(summary.failed(), 0, "{json:#}");
    for kind in Kind::ALL {
        let ok = summary.kinds.get(&kind).map_or(0, |c| c.ok);
        assert!(ok > 0, "no {} request succeeded: {json:#}", kind.name());
    }
    for protocol in [Protocol::Http1, Protocol::H2c] {
        let ok = summary.protocols.get(&protocol).map_or(0, |c| c.ok);
        assert!(ok > 0, "nothing over {}: {json:#}", protocol.name());
    }
    // Aborted uploads and downloads end their streams too.
    wait_in_flight(gw.addr, 0, "after the load").await;
}

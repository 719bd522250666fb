//! Who may register and what they may claim: dev mode admits workers from this host only
//! unless told otherwise, paths under `/_vyx/` are the gateway's own, and a HELLO over the
//! frame limit is refused by name (spec/PROTOCOL.md §2.2, §2.4, §3.1).

mod common;

use std::process::Command;
use std::sync::Arc;

use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use vyx_core::frame::Frame;
use vyx_core::handshake::{RouteSpec, Routes};
use vyx_gateway::auth::DevMode;

const VYX: &str = env!("CARGO_BIN_EXE_vyx");

/// Sends `payload` as the first message and returns the gateway's close code and reason.
async fn first_message_outcome(gw: &TestGateway, id: &str, payload: Vec<u8>) -> (u16, String) {
    let mut ws = raw_upgrade(gw.addr, id).await;
    ws.send(Message::Binary(payload.into())).await.unwrap();
    let mut w = RawWorker {
        ws,
        welcome: unset_welcome(),
    };
    w.close_frame().await
}

fn hello_bytes(id: &str, routes: Vec<RouteSpec>) -> Vec<u8> {
    Frame::Hello(hello(id, routes)).encode().to_vec()
}

#[tokio::test]
async fn routes_under_vyx_are_refused_4001_in_hello_and_in_routes() {
    let gw = TestGateway::start().await;
    for (method, path) in [
        ("GET", "/_vyx/health"),
        ("*", "/_vyx/{*rest}"),
        ("GET", "/_vyx"),
        ("POST", "/_vyx/register"),
    ] {
        let (code, reason) = first_message_outcome(
            &gw,
            "raw:sneaky",
            hello_bytes("raw:sneaky", vec![route(0, method, path)]),
        )
        .await;
        assert_eq!(code, 4001, "{method} {path}");
        assert!(reason.contains("/_vyx/"), "{method} {path}: {reason}");
    }
    // A literal that only starts like it is another path.
    let mut ok = RawWorker::connect(gw.addr, "raw:ok", vec![route(0, "GET", "/_vyxy/a")]).await;
    // ROUTES is held to the same rule.
    ok.send(Frame::Routes(Routes {
        routes: vec![route(1, "GET", "/_vyx/metrics")],
    }))
    .await;
    let (code, reason) = ok.close_frame().await;
    assert_eq!(code, 4001);
    assert!(reason.contains("/_vyx/"), "{reason}");
    // The gateway's own endpoints are untouched.
    assert_eq!(get(&client(), &gw.url("/_vyx/health")).await.0, 200);
}

/// Dev mode on a non-loopback address: a worker from another host is refused before the
/// upgrade (403, saying how to do it safely) unless remote workers were let in explicitly.
/// The peer here is 127.0.0.1, seen as remote through the policy's own input.
#[tokio::test]
async fn dev_mode_refuses_a_remote_worker_with_403_unless_let_in_explicitly() {
    let as_remote = |_: std::net::IpAddr| false;
    let gw = TestGateway::start_with(move |c| {
        c.auth = Arc::new(DevMode::new(false).with_local_test(as_remote));
    })
    .await;
    match try_upgrade(gw.addr, "raw:far", Some("any-token")).await {
        Err((status, body)) => {
            assert_eq!(status, 403, "{body}");
            assert!(
                body.contains("vyx.yaml"),
                "the refusal says what to do: {body}"
            );
        }
        Ok(_) => panic!("a remote worker was admitted in dev mode"),
    }
    let (_, metrics) = get(&client(), &gw.url("/_vyx/metrics")).await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("reason=\"remote_in_dev_mode\"} 1"),
        "{metrics}"
    );

    let open = TestGateway::start_with(move |c| {
        c.auth = Arc::new(DevMode::new(true).with_local_test(as_remote));
    })
    .await;
    let _far = RawWorker::connect(open.addr, "raw:far", vec![route(0, "GET", "/far")]).await;
    wait_for_workers(open.addr, "raw:far", 1).await;
}

#[test]
fn the_unsafe_opt_in_is_refused_with_a_vyx_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vyx.yaml");
    std::fs::write(&file, "listen: 127.0.0.1:0\n").unwrap();
    let out = Command::new(VYX)
        .arg("--config")
        .arg(&file)
        .arg("--insecure-dev-workers")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--insecure-dev-workers applies to dev mode"),
        "{stderr}"
    );
}

/// A HELLO over the 1 MiB frame limit: closed 4006 frame_too_large (not 1000 with no
/// reason), and counted.
#[tokio::test]
async fn an_oversized_hello_is_closed_4006_and_counted() {
    let gw = TestGateway::start().await;
    let mut big = hello_bytes("raw:big", vec![]);
    big.resize((1 << 20) + 1, b' ');
    let (code, reason) = first_message_outcome(&gw, "raw:big", big).await;
    assert_eq!(code, 4006, "{reason}");
    assert!(reason.contains("frame limit"), "{reason}");
    let (_, metrics) = get(&client(), &gw.url("/_vyx/metrics")).await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("reason=\"frame_too_large\"} 1"),
        "{metrics}"
    );
    // The gateway goes on admitting workers.
    let _ok = RawWorker::connect(gw.addr, "raw:ok", vec![]).await;
}

//! `vyx.yaml`: bad files refused with their place, `vyx check`, worker credentials, route
//! prefixes and conflicts, and the admin token.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use vyx_core::frame::Frame;
use vyx_core::handshake::Hello;
use vyx_gateway::{file_config, GatewayConfig};

const VYX: &str = env!("CARGO_BIN_EXE_vyx");

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `vyx check FILE`: exit success and the stderr text.
fn check(file: &Path) -> (bool, String) {
    let out = Command::new(VYX).arg("check").arg(file).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn each_kind_of_mistake_is_refused_with_its_line_and_a_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &str)] = &[
        // (file, "line:column", words the sentence must contain)
        (
            "listen: 127.0.0.1:9000\nlisten_on: 1\n",
            "2:1",
            "unknown key `listen_on`, expected one of listen",
        ),
        (
            "workers:\n  - id: a\n    command: ./w\n    replica: 2\n",
            "4:5",
            "unknown key `replica`",
        ),
        ("timeouts:\n  request: 30\n", "2:12", "not a duration"),
        (
            "timeouts:\n  request: [1]\n",
            "2:3",
            "invalid type: sequence, expected a duration",
        ),
        ("limits:\n  max_body: 1TB\n", "2:13", "not a size"),
        ("listen: 127.0.0.1:99999\n", "1:9", "not an address"),
        (
            "workers:\n  - id: a\n    mode: remot\n",
            "3:11",
            "expected one of local, remote",
        ),
        (
            "workers:\n  - id: a\n    command: ./w\n    replicas: 0\n",
            "4:15",
            "replicas 0 must be between 1 and 256",
        ),
        (
            "workers:\n  - id: a\n    command: ./w\n    replicas: two\n",
            "4:15",
            "whole number",
        ),
        (
            "workers:\n  - id: a b\n    command: ./w\n",
            "2:9",
            "worker id \"a b\"",
        ),
        (
            "workers:\n  - id: a\n    command: ./w\n  - id: a\n    command: ./w\n",
            "4:9",
            "declared twice (first on line 2)",
        ),
        (
            "workers:\n  - id: a\n    mode: remote\n",
            "2:9",
            "needs token_env or token_file",
        ),
        (
            "workers:\n  - id: a\n    mode: remote\n    token: hunter2\n",
            "4:12",
            "never written in the file",
        ),
        (
            "workers:\n  - id: a\n    mode: remote\n    token_env: VYX_TEST_SURELY_UNSET\n",
            "4:16",
            "VYX_TEST_SURELY_UNSET is not set",
        ),
        (
            "workers:\n  - id: a\n    mode: remote\n    token_file: missing.token\n",
            "4:17",
            "cannot read token file",
        ),
        (
            "workers:\n  - id: a\n    mode: remote\n    token_file: t\n    command: ./w\n",
            "5:14",
            "is remote",
        ),
        ("workers:\n  - id: a\n", "2:9", "needs a command"),
        (
            "workers:\n  - id: a\n    command: ./w\n    routes: [hello]\n",
            "4:14",
            "must start with '/'",
        ),
        (
            "workers:\n  - id: a\n    command: ./w\n    restart:\n      policy: sometimes\n",
            "5:15",
            "expected one of always, on-failure, never",
        ),
        (
            "register:\n  path: register\n",
            "2:9",
            "must be a path starting with '/'",
        ),
        ("workers: [\n", "1:10", "unclosed bracket"),
    ];
    write(dir.path(), "t", "tok\n");
    let mut wrong = Vec::new();
    for (i, (text, place, words)) in cases.iter().enumerate() {
        let file = write(dir.path(), &format!("bad{i}.yaml"), text);
        let (ok, stderr) = check(&file);
        let expected = format!("{}:{place}: ", file.display());
        if ok
            || !stderr.contains(&expected)
            || !stderr.contains(words)
            || stderr.contains("hunter2")
        {
            wrong.push(format!(
                "for\n{text}expected {expected:?} and {words:?} in: {stderr}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_bad_file_stops_the_gateway_before_it_listens() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "vyx.yaml", "limits:\n  max_bdy: 1MiB\n");
    let out = Command::new(VYX)
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing listened");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(":2:3: unknown key `max_bdy`"), "{stderr}");
}

#[test]
fn the_example_file_passes_check() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/vyx.yaml");
    let out = Command::new(VYX)
        .arg("check")
        .arg(&example)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Every worker of the example is a local one (one per language).
    let text = std::fs::read_to_string(&example).unwrap();
    let declared = text
        .lines()
        .filter(|l| l.trim_start().starts_with("- id:"))
        .count();
    assert!(
        declared >= 3,
        "the example declares the Rust, Python and Node workers"
    );
    let expected = format!("ok ({declared} worker(s) declared, {declared} local)");
    assert!(stdout.contains(&expected), "{stdout}");
}

#[test]
fn values_reach_the_runtime_settings() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "admin.token", "adm1n\n");
    let file = write(
        dir.path(),
        "vyx.yaml",
        "listen: [127.0.0.1:9100, '[::1]:9101']\nregister: {path: /reg, listen: 127.0.0.1:9102}\n\
         timeouts: {request: 2m, header_read: 500ms, heartbeat: 1s, drain_grace: 3s}\n\
         limits: {max_body: 1MiB, max_header: 16KiB, routes_per_worker: 8, streams_per_connection: 10}\n\
         admin: {token_file: admin.token}\n\
         workers:\n  - id: w\n    command: bin/w\n    args: ['${VYX_TEST_UNSET_X:-x}', --flag]\n    env: {PORT: 8080}\n    replicas: 3\n    restart: {policy: on-failure, max_fast_failures: 2, fast_failure: 2s}\n",
    );
    let c: GatewayConfig = file_config::load(&file).unwrap();
    assert!(!c.dev_mode);
    assert_eq!(c.listen.to_string(), "127.0.0.1:9100");
    assert_eq!(c.extra_listen[0].to_string(), "[::1]:9101");
    assert_eq!(c.register_path, "/reg");
    assert_eq!(c.register_listen.unwrap().to_string(), "127.0.0.1:9102");
    assert_eq!(c.request_timeout.as_secs(), 120);
    assert_eq!(c.header_read_timeout.unwrap().as_millis(), 500);
    assert_eq!(c.max_body, 1 << 20);
    assert_eq!(c.max_header, Some(16 << 10));
    assert_eq!(c.routes_per_worker, 8);
    assert_eq!(c.max_concurrency_per_connection, 10);
    assert!(c.admin_token.unwrap().matches("adm1n"));
    let w = &c.local_workers[0];
    assert_eq!(w.program, dir.path().join("bin/w"));
    assert_eq!(w.cwd, dir.path());
    assert_eq!(w.args, ["x", "--flag"]);
    assert_eq!(w.env, [("PORT".to_string(), "8080".to_string())]);
    assert_eq!(w.replicas, 3);
    assert_eq!(w.restart.max_fast_failures, 2);
    // No configured token: a fresh random one per run.
    assert_eq!(w.token.expose().len(), 64);
}

/// A gateway on the given file's settings, listening on an ephemeral loopback port.
async fn gateway_with(dir: &Path, yaml: &str) -> TestGateway {
    let file = write(dir, "vyx.yaml", yaml);
    let config = file_config::load(&file).unwrap();
    TestGateway::start_with(move |c| {
        *c = GatewayConfig {
            listen: c.listen,
            ..config
        }
    })
    .await
}

const CREDENTIALS: &str = "\
workers:
  - id: billing
    mode: remote
    token_file: billing.token
    routes: [/billing]
  - id: orders
    mode: remote
    token_file: orders.token
";

fn tokens(dir: &Path) {
    write(dir, "billing.token", "b-secret\n");
    write(dir, "orders.token", "o-secret\n");
}

#[tokio::test]
async fn each_credential_mistake_is_refused_before_the_upgrade_with_its_own_error() {
    let dir = tempfile::tempdir().unwrap();
    tokens(dir.path());
    let gw = gateway_with(dir.path(), CREDENTIALS).await;
    let cases = [
        (
            "billing",
            Some("nope"),
            403,
            "invalid token for worker id \"billing\"",
        ),
        ("billing", None, 401, "missing credentials"),
        (
            "billing",
            Some("o-secret"),
            403,
            "bound to a different worker id",
        ),
        (
            "stranger",
            Some("b-secret"),
            403,
            "\"stranger\" is not declared",
        ),
    ];
    for (id, token, status, words) in cases {
        match try_upgrade(gw.addr, id, token).await {
            Ok(_) => panic!("{id} with {token:?} was admitted"),
            Err((s, body)) => {
                assert_eq!(s, status, "{id} {token:?}: {body}");
                assert!(body.contains(words), "{id} {token:?}: {body}");
                assert!(!body.contains("secret"), "no token in the answer: {body}");
            }
        }
    }
    // The right token, and HELLO under the same id: admitted.
    let _w = RawWorker::connect_with_token(
        gw.addr,
        "billing",
        Some("b-secret"),
        vec![route(0, "GET", "/billing/{id}")],
    )
    .await;
    wait_for_workers(gw.addr, "billing", 1).await;
    let listing = get(&client(), &gw.url("/_vyx/workers")).await.1;
    assert!(!String::from_utf8_lossy(&listing).contains("secret"));
}

/// Upgrades with `token`, sends HELLO, and returns the close code and reason.
async fn refused_after_hello(
    gw: &TestGateway,
    id: &str,
    token: &str,
    hello: Hello,
) -> (u16, String) {
    let mut ws = try_upgrade(gw.addr, id, Some(token)).await.unwrap();
    ws.send(Message::Binary(Frame::Hello(hello).encode()))
        .await
        .unwrap();
    RawWorker {
        ws,
        welcome: unset_welcome(),
    }
    .close_frame()
    .await
}

#[tokio::test]
async fn hello_must_name_the_id_and_stay_inside_the_allowed_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    tokens(dir.path());
    let gw = gateway_with(dir.path(), CREDENTIALS).await;
    // A token admits its own id only: HELLO naming another id is refused.
    let (code, reason) =
        refused_after_hello(&gw, "billing", "b-secret", hello("orders", vec![])).await;
    assert_eq!(code, 4001, "{reason}");
    assert!(
        reason.contains("\"orders\"") && reason.contains("\"billing\""),
        "{reason}"
    );
    // /billingx is not under /billing.
    let routes = vec![
        route(0, "GET", "/billing/{id}"),
        route(1, "GET", "/billingx"),
        route(2, "POST", "/admin"),
    ];
    let (code, reason) =
        refused_after_hello(&gw, "billing", "b-secret", hello("billing", routes)).await;
    assert_eq!(code, 4004, "{reason}");
    assert!(
        reason.contains("GET /billingx") && reason.contains("POST /admin"),
        "{reason}"
    );
    assert!(!reason.contains("/billing/{id}"), "{reason}");
}

#[tokio::test]
async fn a_route_claimed_by_another_id_is_refused_and_both_are_named() {
    let dir = tempfile::tempdir().unwrap();
    tokens(dir.path());
    let gw = gateway_with(dir.path(), CREDENTIALS).await;
    let _first = RawWorker::connect_with_token(
        gw.addr,
        "orders",
        Some("o-secret"),
        vec![route(0, "GET", "/billing/{id}")],
    )
    .await;
    let (code, reason) = refused_after_hello(
        &gw,
        "billing",
        "b-secret",
        hello("billing", vec![route(0, "GET", "/billing/{id}")]),
    )
    .await;
    assert_eq!(code, 4003, "{reason}");
    assert!(
        reason.contains("GET /billing/{id}")
            && reason.contains("\"orders\"")
            && reason.contains("\"billing\""),
        "{reason}"
    );
    // The first claimant keeps serving; a replica of the same id shares the route.
    let _second = RawWorker::connect_with_token(
        gw.addr,
        "orders",
        Some("o-secret"),
        vec![route(0, "GET", "/billing/{id}")],
    )
    .await;
    wait_for_workers(gw.addr, "orders", 2).await;
}

/// PROTOCOL.md §2.4: the allow-list (4004) is checked before conflicts (4003), so a worker
/// learns nothing about routes it may not claim anyway.
#[tokio::test]
async fn a_route_outside_the_allow_list_is_4004_even_when_another_id_claims_it() {
    let dir = tempfile::tempdir().unwrap();
    tokens(dir.path());
    let gw = gateway_with(dir.path(), CREDENTIALS).await;
    let _orders = RawWorker::connect_with_token(
        gw.addr,
        "orders",
        Some("o-secret"),
        vec![route(0, "GET", "/orders/{id}")],
    )
    .await;
    let (code, reason) = refused_after_hello(
        &gw,
        "billing",
        "b-secret",
        hello("billing", vec![route(0, "GET", "/orders/{id}")]),
    )
    .await;
    assert_eq!(code, 4004, "{reason}");
    assert!(!reason.contains("\"orders\""), "{reason}");
}

#[tokio::test]
async fn unknown_workers_are_admitted_only_when_the_file_says_so() {
    let dir = tempfile::tempdir().unwrap();
    tokens(dir.path());
    let gw = gateway_with(
        dir.path(),
        &format!("accept_unknown_workers: true\n{CREDENTIALS}"),
    )
    .await;
    let mut w = RawWorker::connect(gw.addr, "anyone", vec![route(0, "GET", "/any")]).await;
    assert!(w.welcome.max_concurrency > 0);
    // Declared ids still need their own token.
    assert_eq!(
        try_upgrade(gw.addr, "billing", Some("o-secret"))
            .await
            .unwrap_err()
            .0,
        403
    );
    let _ = w.ws.close(None).await;
}

#[tokio::test]
async fn admin_endpoints_need_the_admin_token_and_refuse_a_worker_token() {
    let dir = tempfile::tempdir().unwrap();
    tokens(dir.path());
    write(dir.path(), "admin.token", "adm1n");
    let gw = gateway_with(
        dir.path(),
        &format!("admin: {{token_file: admin.token}}\n{CREDENTIALS}"),
    )
    .await;
    let c = client();
    for path in ["/_vyx/workers", "/_vyx/metrics"] {
        let url = gw.url(path);
        let (s, h, _) = send(&c, "GET", &url, &[], Bytes::new()).await;
        assert_eq!(s, 401, "{path}");
        assert_eq!(h["www-authenticate"], "Bearer");
        for (token, status, words) in [
            ("b-secret", 403, "worker token"),
            ("wrong", 403, "invalid admin token"),
            ("adm1n", 200, ""),
        ] {
            let auth = format!("Bearer {token}");
            let (s, _, body) =
                send(&c, "GET", &url, &[("authorization", &auth)], Bytes::new()).await;
            assert_eq!(s, status, "{path} with {token}");
            assert!(
                String::from_utf8_lossy(&body).contains(words),
                "{path} with {token}"
            );
        }
    }
    assert_eq!(
        get(&c, &gw.url("/_vyx/health")).await.0,
        200,
        "health stays open"
    );
}

#[tokio::test]
async fn metrics_count_requests_registrations_and_rejections() {
    let dir = tempfile::tempdir().unwrap();
    tokens(dir.path());
    let gw = gateway_with(dir.path(), CREDENTIALS).await;
    assert_eq!(
        try_upgrade(gw.addr, "billing", Some("nope"))
            .await
            .unwrap_err()
            .0,
        403
    );
    let mut w = RawWorker::connect_with_token(
        gw.addr,
        "billing",
        Some("b-secret"),
        vec![route(0, "GET", "/billing/{id}")],
    )
    .await;
    let c = client();
    let answer = tokio::spawn(async move {
        let Frame::Request(r) = w.next_frame().await else {
            panic!("expected REQUEST")
        };
        w.send(Frame::Response(vyx_core::frame::Response {
            stream_id: r.stream_id,
            end_stream: false,
            status: 201,
            headers: Default::default(),
        }))
        .await;
        w.send(Frame::Data(vyx_core::frame::Data {
            stream_id: r.stream_id,
            end_stream: true,
            data: Bytes::from_static(b"12345"),
        }))
        .await;
        w
    });
    assert_eq!(get(&c, &gw.url("/billing/7")).await.0, 201);
    let _w = answer.await.unwrap();
    assert_eq!(get(&c, &gw.url("/nothing")).await.0, 404);
    let text = String::from_utf8_lossy(&get(&c, &gw.url("/_vyx/metrics")).await.1).into_owned();
    for line in [
        "vyx_requests_total{route=\"GET /billing/{id}\",status=\"201\"} 1",
        "vyx_requests_total{route=\"(none)\",status=\"404\"} 1",
        "vyx_request_duration_seconds_count{route=\"GET /billing/{id}\"} 1",
        "vyx_registrations_total{worker_id=\"billing\"} 1",
        "vyx_rejections_total{reason=\"wrong_token\"} 1",
        "vyx_connected_workers{worker_id=\"billing\"} 1",
        "vyx_response_body_bytes_total 5",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

/// Replicas (distinct instances of one id) are registrations, not reconnects; the same
/// instance registering again is a reconnect, but not while its first connection is open
/// (a worker holds one connection per gateway shard).
#[tokio::test]
async fn reconnects_are_counted_per_instance_not_per_replica() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_with(dir.path(), "accept_unknown_workers: true\n").await;
    let routes = || vec![route(0, "GET", "/rep")];
    let mut a = RawWorker::connect_instance(gw.addr, "rep", None, "a", routes()).await;
    let mut a_beside = RawWorker::connect_instance(gw.addr, "rep", None, "a", routes()).await;
    let _b = RawWorker::connect_instance(gw.addr, "rep", None, "b", routes()).await;
    for w in [&mut a, &mut a_beside] {
        w.ws.close(None).await.unwrap();
    }
    drop((a, a_beside));
    wait_for_workers(gw.addr, "rep", 1).await;
    let _a_again = RawWorker::connect_instance(gw.addr, "rep", None, "a", routes()).await;
    let text =
        String::from_utf8_lossy(&get(&client(), &gw.url("/_vyx/metrics")).await.1).into_owned();
    for line in [
        "vyx_registrations_total{worker_id=\"rep\"} 4",
        "vyx_reconnects_total{worker_id=\"rep\"} 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

#[tokio::test]
async fn limits_from_the_file_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_with(
        dir.path(),
        "accept_unknown_workers: true\nlimits: {max_body: 1KiB, routes_per_worker: 2}\n",
    )
    .await;
    let routes = vec![
        route(0, "GET", "/a"),
        route(1, "GET", "/b"),
        route(2, "GET", "/c"),
    ];
    let (code, reason) = refused_after_hello(&gw, "many", "any", hello("many", routes)).await;
    assert_eq!(code, 4001, "{reason}");
    assert!(reason.contains("at most 2 per worker"), "{reason}");
    let mut w = RawWorker::connect(gw.addr, "small", vec![route(0, "POST", "/up")]).await;
    let (status, _, body) = send(&client(), "POST", &gw.url("/up"), &[], vec![0u8; 2048]).await;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    let _ = w.ws.close(None).await;
}

//! The upgrade request at `/_vyx/register` (PROTOCOL.md §2.2): the WebSocket version and
//! the `Authorization` scheme.

mod common;

use std::path::Path;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use vyx_gateway::{file_config, GatewayConfig};

/// A gateway whose `vyx.yaml` binds token `b-secret` to worker id `billing`.
async fn gateway_with_credentials(dir: &Path) -> TestGateway {
    std::fs::write(dir.join("billing.token"), "b-secret\n").unwrap();
    let file = dir.join("vyx.yaml");
    std::fs::write(
        &file,
        "workers:\n  - id: billing\n    mode: remote\n    token_file: billing.token\n    routes: [/billing]\n",
    )
    .unwrap();
    let config = file_config::load(&file).unwrap();
    TestGateway::start_with(move |c| {
        *c = GatewayConfig {
            listen: c.listen,
            ..config
        }
    })
    .await
}

#[tokio::test]
async fn the_bearer_scheme_is_accepted_in_any_case() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_with_credentials(dir.path()).await;
    for value in ["bearer b-secret", "BEARER b-secret", "Bearer  b-secret"] {
        let mut req = format!("ws://{}/_vyx/register", gw.addr)
            .into_client_request()
            .unwrap();
        let h = req.headers_mut();
        h.insert("sec-websocket-protocol", HeaderValue::from_static("vyx.1"));
        h.insert("x-vyx-worker-id", HeaderValue::from_static("billing"));
        h.insert("authorization", HeaderValue::from_static(value));
        let outcome = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
            .await
            .expect("answered in time");
        let (mut ws, resp) = outcome.unwrap_or_else(|e| panic!("{value:?} refused: {e}"));
        assert_eq!(resp.status(), 101, "{value:?}");
        let _ = ws.close(None).await;
    }
    // Another scheme is no bearer token at all.
    let mut req = format!("ws://{}/_vyx/register", gw.addr)
        .into_client_request()
        .unwrap();
    let h = req.headers_mut();
    h.insert("sec-websocket-protocol", HeaderValue::from_static("vyx.1"));
    h.insert("x-vyx-worker-id", HeaderValue::from_static("billing"));
    h.insert("authorization", HeaderValue::from_static("Basic b-secret"));
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unsupported_websocket_version_gets_426_naming_version_13() {
    let gw = TestGateway::start().await;
    let mut sock = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    sock.write_all(
        b"GET /_vyx/register HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Version: 8\r\nSec-WebSocket-Protocol: vyx.1\r\n\
          X-Vyx-Worker-Id: a\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, sock.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .unwrap();
    let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 426"), "{text}");
    assert!(text.contains("\r\nsec-websocket-version: 13\r\n"), "{text}");
}

#[tokio::test]
async fn a_hello_that_does_not_decode_is_closed_4001_not_retried() {
    let gw = TestGateway::start().await;
    let mut w = RawWorker {
        ws: raw_upgrade(gw.addr, "raw:buggy").await,
        welcome: unset_welcome(),
    };
    // Duplicate keys: what a buggy encoder might write.
    w.send_raw(
        b"\x10\x00\x00\x00\x00\x00{\"protocol\":1,\"worker_id\":\"raw:buggy\",\"max_concurrency\":8,\"routes\":[],\"routes\":[]}"
            .to_vec(),
    )
    .await;
    assert_eq!(w.close_code().await, 4001);
}

/// Issue 17 item 9: in dev mode any process of the host may join a connected worker id and
/// take a share of its requests; the gateway logs each replica beyond the first (a warning
/// in dev mode) with its peer address and instance, so that an intruder shows.
#[tokio::test]
async fn another_replica_of_a_worker_id_is_logged_with_its_address_and_instance() {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_vyx"));
    cmd.args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .env_remove("VYX_CONFIG")
        .env_remove("VYX_LISTEN");
    let gw = LoggedVyx::spawn(cmd).await;
    gw.wait_for_log("dev mode").await;
    let _first = RawWorker::connect_instance(
        gw.addr,
        "pay",
        None,
        "pay-1",
        vec![route(0, "POST", "/pay")],
    )
    .await;
    gw.wait_for_log("worker registered").await;
    let second = RawWorker::connect_instance(
        gw.addr,
        "pay",
        None,
        "intruder",
        vec![route(0, "POST", "/pay")],
    )
    .await;
    let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = second.ws.get_ref() else {
        panic!("plain TCP");
    };
    let peer = tcp.local_addr().unwrap();
    gw.wait_for_log("another replica joined worker id pay")
        .await;
    let text = gw.log_text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("another replica joined"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "the first connection is no extra replica: {text}"
    );
    let line = lines[0];
    assert!(line.contains("WARN"), "a warning in dev mode: {line}");
    assert!(line.contains("instance=intruder"), "{line}");
    assert!(line.contains(&format!("addr={peer}")), "{line}");
    assert!(line.contains("replicas=2"), "{line}");
}

/// §2.6: WELCOME grants the extensions the HELLO offered that this gateway implements, never
/// a name it does not know, and `/_vyx/workers` lists what the connection uses.
#[tokio::test]
async fn welcome_grants_only_offered_features_the_gateway_implements() {
    use futures_util::SinkExt;
    use vyx_core::features::Features;
    use vyx_core::frame::Frame;
    use vyx_core::handshake::Hello;

    let gw = TestGateway::start().await;
    let offered = vec![
        "upgrade".to_string(),
        "trailers".to_string(),
        "informational".to_string(),
        "some-later-extension".to_string(),
    ];
    let ws = raw_upgrade(gw.addr, "raw:features").await;
    let mut w = RawWorker {
        ws,
        welcome: unset_welcome(),
    };
    let hello = Hello {
        features: offered.clone(),
        ..hello("raw:features", vec![route(0, "GET", "/f")])
    };
    w.ws.send(tokio_tungstenite::tungstenite::Message::Binary(
        Frame::Hello(hello).encode(),
    ))
    .await
    .unwrap();
    let granted = match w.next_frame().await {
        Frame::Welcome(welcome) => welcome.features,
        other => panic!("expected WELCOME, got {other:?}"),
    };
    assert!(granted.iter().all(|f| offered.contains(f)), "{granted:?}");
    assert!(!granted.contains(&"some-later-extension".to_string()));
    assert_eq!(
        granted,
        Features::from_names(&offered)
            .intersection(Features::implemented_by_gateway())
            .names()
    );
    let _w = serve_ok(w);
    let (_, body) = get(&client(), &gw.url("/_vyx/workers")).await;
    let workers: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let listed = workers
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "raw:features")
        .expect("listed");
    assert_eq!(listed["features"], serde_json::json!(granted));
}

//! The access log (issue 20, item 1): a line per proxied request with its fields for a
//! 200, a 404, a 502 and a client that went away; each mode; the file reopened by name on
//! SIGHUP; and JSON log lines that carry the request id.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use vyx_core::error::ResetCode;
use vyx_core::frame::{Frame, Reset};
use vyx_gateway::access_log::{AccessLogConfig, Mode, Output};
use vyx_gateway::log_format::LogFormat;

/// A worker `w` (instance `raw`) on `POST /ok` and `GET /{what}`: `/ok` answers 200 "ok"
/// once the request body has ended, `/fail` resets the stream, `/hang` never answers (its
/// stream id is sent on `hung`).
async fn worker(gw: &TestGateway, hung: mpsc::UnboundedSender<u32>) {
    let routes = vec![route(1, "POST", "/ok"), route(2, "GET", "/{what}")];
    let mut w = RawWorker::connect(gw.addr, "w", routes).await;
    tokio::spawn(async move {
        let mut open: HashMap<u32, String> = HashMap::new();
        while let Some(Ok(msg)) = w.ws.next().await {
            let Message::Binary(b) = msg else { continue };
            let (id, target) = match Frame::decode(b, 1 << 20) {
                Ok(Frame::Request(r)) => {
                    let target = String::from_utf8_lossy(&r.target).into_owned();
                    if !r.end_stream {
                        open.insert(r.stream_id, target);
                        continue;
                    }
                    (r.stream_id, target)
                }
                Ok(Frame::Data(d)) if d.end_stream => match open.remove(&d.stream_id) {
                    Some(target) => (d.stream_id, target),
                    None => continue,
                },
                _ => continue,
            };
            match target.as_str() {
                "/fail" => {
                    let reset = Reset::new(id, ResetCode::HandlerError, "boom");
                    w.send(Frame::Reset(reset)).await;
                }
                "/hang" => {
                    let _ = hung.send(id);
                }
                _ => {
                    w.send(respond(id, 200, false)).await;
                    w.send(data(id, b"ok", true)).await;
                }
            }
        }
    });
}

fn file_log(path: &Path, mode: Mode) -> impl FnOnce(&mut vyx_gateway::GatewayConfig) {
    let path = path.to_path_buf();
    move |c| {
        c.log_format = LogFormat::Json;
        c.access_log = AccessLogConfig {
            mode,
            output: Output::File(path),
            ..AccessLogConfig::default()
        };
    }
}

/// The file's lines once it holds `n` (bounded wait), as JSON.
async fn lines(path: &Path, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= n {
            return text
                .lines()
                .map(|l| serde_json::from_str(l).expect("a JSON line"))
                .collect();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {n} lines in {}:\n{text}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_line_per_request_with_its_fields_for_a_200_404_502_and_a_client_that_left() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let gw = TestGateway::start_with(file_log(&path, Mode::All)).await;
    let (hung_tx, mut hung) = mpsc::unbounded_channel();
    worker(&gw, hung_tx).await;
    let c = client();
    let (status, headers, body) = send(&c, "POST", &gw.url("/ok?token=secret"), &[], "hello").await;
    assert_eq!((status, &body[..]), (200, &b"ok"[..]));
    let ok_id = headers["x-request-id"].to_str().unwrap().to_string();
    let (status, ..) = send(
        &c,
        "GET",
        &gw.url("/a/b"),
        &[("x-request-id", "mine-404")],
        "",
    )
    .await;
    assert_eq!(status, 404);
    let (status, ..) = send(&c, "GET", &gw.url("/fail"), &[], "").await;
    assert_eq!(status, 502);
    // A client that sends its request and leaves before the answer.
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    let client_addr = tcp.local_addr().unwrap();
    tcp.write_all(b"GET /hang HTTP/1.1\r\nhost: gw\r\n\r\n")
        .await
        .unwrap();
    tokio::time::timeout(WAIT, hung.recv())
        .await
        .unwrap()
        .unwrap();
    tcp.shutdown().await.unwrap();
    drop(tcp);

    let all = lines(&path, 4).await;
    let [ok, missing, failed, left] = &all[..] else {
        panic!("{all:?}")
    };
    for l in &all {
        assert_eq!(l["log"], "access", "{l}");
        assert!(l["time"].as_str().unwrap().ends_with('Z'), "{l}");
        assert!(
            l["client"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{l}"
        );
        assert_eq!(l["retried"], false, "{l}");
        assert!(l["duration_ms"].as_f64().unwrap() >= 0.0, "{l}");
    }
    assert_eq!(ok["request_id"], ok_id.as_str());
    assert_eq!(ok["method"], "POST");
    assert_eq!(ok["path"], "/ok", "the query is not logged: {ok}");
    assert_eq!(ok["route"], "POST /ok");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["bytes_in"], 5);
    assert_eq!(ok["bytes_out"], 2);
    assert_eq!(ok["worker_id"], "w");
    assert!(ok["instance"].as_str().unwrap().starts_with("raw-"), "{ok}");
    assert_eq!(ok["error"], Value::Null);
    assert!(ok["ttfb_ms"].as_f64().unwrap() <= ok["duration_ms"].as_f64().unwrap());
    assert!(ok["queue_ms"].as_f64().is_some(), "{ok}");

    assert_eq!(missing["request_id"], "mine-404");
    assert_eq!(missing["status"], 404);
    assert_eq!(missing["route"], Value::Null);
    assert_eq!(missing["worker_id"], Value::Null);
    assert_eq!(missing["error"], "no route");
    // The gateway's own JSON answer.
    assert!(missing["bytes_out"].as_u64().unwrap() > 0, "{missing}");

    assert_eq!(failed["status"], 502);
    assert_eq!(failed["route"], "GET /{what}");
    assert_eq!(failed["worker_id"], "w");
    assert_eq!(failed["error"], "worker failed the request");

    assert_eq!(left["status"], 499);
    assert_eq!(left["path"], "/hang");
    assert_eq!(left["client"], client_addr.to_string().as_str());
    assert_eq!(left["worker_id"], "w");
    assert_eq!(left["ttfb_ms"], Value::Null);
    assert_eq!(left["error"], "client went away before the response");
    gw.shutdown().await;
}

/// Sends `GET /{i}` with request ids `id-{i}` and `POST /ok`s, `n` of each.
async fn traffic(gw: &TestGateway, n: usize) {
    let c = client();
    for i in 0..n {
        let id = format!("id-{i}");
        let (s, ..) = send(&c, "POST", &gw.url("/ok"), &[("x-request-id", &id)], "").await;
        assert_eq!(s, 200);
        let id = format!("miss-{i}");
        let (s, ..) = send(&c, "GET", &gw.url("/x/y"), &[("x-request-id", &id)], "").await;
        assert_eq!(s, 404);
    }
}

#[tokio::test]
async fn errors_mode_logs_only_failed_requests() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let gw = TestGateway::start_with(file_log(&path, Mode::Errors)).await;
    worker(&gw, mpsc::unbounded_channel().0).await;
    traffic(&gw, 5).await;
    // Lines are written in order: the last 404's line means every earlier one is in.
    let got = lines(&path, 5).await;
    let ids: Vec<_> = got
        .iter()
        .map(|l| l["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["miss-0", "miss-1", "miss-2", "miss-3", "miss-4"]);
    gw.shutdown().await;
}

#[tokio::test]
async fn sampled_mode_logs_the_requests_whose_id_hashes_into_the_share() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let gw = TestGateway::start_with(file_log(&path, Mode::Sampled(0.3))).await;
    worker(&gw, mpsc::unbounded_channel().0).await;
    traffic(&gw, 30).await;
    let expected: Vec<String> = (0..30)
        .flat_map(|i| [format!("id-{i}"), format!("miss-{i}")])
        .filter(|id| {
            vyx_gateway::access_log::sampled(&http::HeaderValue::from_str(id).unwrap(), 0.3)
        })
        .collect();
    assert!(
        (5..55).contains(&expected.len()),
        "{} of 60 sampled",
        expected.len()
    );
    let got = lines(&path, expected.len()).await;
    let ids: Vec<_> = got
        .iter()
        .map(|l| l["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, expected);
    gw.shutdown().await;
}

#[tokio::test]
async fn off_mode_writes_nothing_and_an_unset_path_leaves_the_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let gw = TestGateway::start_with(file_log(&path, Mode::Off)).await;
    worker(&gw, mpsc::unbounded_channel().0).await;
    traffic(&gw, 3).await;
    let metrics = get(&client(), &gw.url("/_vyx/metrics")).await.1;
    let metrics = String::from_utf8_lossy(&metrics);
    // The requests were counted, and no file was ever opened.
    assert!(
        metrics.contains("vyx_requests_total{route=\"POST /ok\",status=\"200\"} 3"),
        "{metrics}"
    );
    gw.shutdown().await;
    assert!(!path.exists());
}

fn vyx_with(dir: &Path, yaml: &str, args: &[&str]) -> tokio::process::Command {
    let file = dir.join("vyx.yaml");
    std::fs::write(&file, yaml).unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_vyx"));
    cmd.arg("--config")
        .arg(&file)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .args(args)
        .env("RUST_LOG", "info")
        .env("W_TOKEN", "secret-token-for-tests");
    cmd
}

const WORKER: &str = "workers:\n  - id: w\n    mode: remote\n    token_env: W_TOKEN\n";

#[tokio::test]
async fn the_file_is_reopened_by_name_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let yaml = format!("access_log: {{path: access.log}}\nlog: {{format: json}}\n{WORKER}");
    let vyx = LoggedVyx::spawn(vyx_with(dir.path(), &yaml, &[])).await;
    let w = RawWorker::connect_with_token(
        vyx.addr,
        "w",
        Some("secret-token-for-tests"),
        vec![route(1, "GET", "/{what}")],
    )
    .await;
    serve_ok(w);
    let c = client();
    let url = |p: &str| format!("http://{}{p}", vyx.addr);
    assert_eq!(get(&c, &url("/before")).await.0, 200);
    lines(&path, 1).await;
    // logrotate's default: rename, then signal.
    let rotated: PathBuf = dir.path().join("access.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    let pid = vyx.child.id().unwrap() as i32;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    // The reopen creates the file by its name.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !path.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new access.log after SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get(&c, &url("/after")).await.0, 200);
    let new = lines(&path, 1).await;
    assert_eq!(new.len(), 1);
    assert_eq!(new[0]["path"], "/after");
    let old = lines(&rotated, 1).await;
    assert_eq!(old.len(), 1);
    assert_eq!(old[0]["path"], "/before");
}

#[tokio::test]
async fn json_log_lines_about_a_request_carry_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let vyx = LoggedVyx::spawn(vyx_with(
        dir.path(),
        &format!("access_log: {{mode: off}}\n{WORKER}"),
        &["--log-format", "json"],
    ))
    .await;
    let mut w = RawWorker::connect_with_token(
        vyx.addr,
        "w",
        Some("secret-token-for-tests"),
        vec![route(1, "GET", "/fail")],
    )
    .await;
    tokio::spawn(async move {
        loop {
            if let Frame::Request(r) = w.next_frame().await {
                let reset = Reset::new(r.stream_id, ResetCode::HandlerError, "boom");
                w.send(Frame::Reset(reset)).await;
            }
        }
    });
    let c = client();
    let url = format!("http://{}/fail", vyx.addr);
    let (status, ..) = send(
        &c,
        "GET",
        &url,
        &[("x-request-id", "trace-me-7")],
        Bytes::new(),
    )
    .await;
    assert_eq!(status, 502);
    vyx.wait_for_log("trace-me-7").await;
    let log = vyx.log_text();
    let mut about = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|v| v["request_id"] == "trace-me-7");
    let line = about.next().unwrap();
    assert_eq!(line["level"], "WARN", "{line}");
    assert_eq!(line["message"], "worker reset the stream before answering");
    assert_eq!(line["worker_id"], "w");
    assert!(
        line["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{line}"
    );
    assert!(line["time"].as_str().unwrap().ends_with('Z'), "{line}");
    // Every other line is JSON too (parsed above), the first among them the startup's.
    assert!(log.lines().next().unwrap().starts_with('{'), "{log}");
}

#[tokio::test]
async fn the_last_requests_lines_are_written_before_the_gateway_exits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let yaml = format!("access_log: {{path: access.log}}\nlog: {{format: json}}\n{WORKER}");
    let mut vyx = LoggedVyx::spawn(vyx_with(dir.path(), &yaml, &[])).await;
    let mut w = RawWorker::connect_with_token(
        vyx.addr,
        "w",
        Some("secret-token-for-tests"),
        vec![route(1, "GET", "/{what}")],
    )
    .await;
    // Two requests are in flight when SIGTERM comes; the worker answers them one after the
    // other during the drain and leaves: the second's line is queued while the writer rests
    // after writing the first's, just before the gateway exits.
    let mut requests = Vec::new();
    let mut ids = Vec::new();
    for what in ["last-1", "last-2"] {
        let url = format!("http://{}/{what}", vyx.addr);
        requests.push(tokio::spawn(async move { get(&client(), &url).await.0 }));
        loop {
            if let Frame::Request(r) = w.next_frame().await {
                ids.push(r.stream_id);
                break;
            }
        }
    }
    let pid = vyx.child.id().unwrap() as i32;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    vyx.wait_for_log("draining").await;
    for (id, request) in ids.into_iter().zip(requests) {
        w.send(respond(id, 200, false)).await;
        w.send(data(id, b"ok", true)).await;
        assert_eq!(request.await.unwrap(), 200);
    }
    drop(w);
    let exited = tokio::time::timeout(WAIT, vyx.child.wait()).await;
    assert!(exited
        .expect("the gateway exited in time")
        .unwrap()
        .success());
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    for what in ["last-1", "last-2"] {
        assert!(
            text.contains(&format!("\"path\":\"/{what}\"")),
            "no line for /{what} in:\n{text}\nlog:\n{}",
            vyx.log_text()
        );
    }
}

//! Runs the pure behavioural vectors of spec/vectors/ against the core's own functions:
//! flow-control accounting, heartbeat ticks, which close codes stop a worker, and the
//! worker-id syntax. (The stream traces and the HTTP/WELCOME outcomes need a live worker:
//! the conformance runner's worker probes replay them.)

use std::time::Duration;

use futures_util::FutureExt;
use serde_json::Value;
use vyx_core::error::CloseCode;
use vyx_core::flow::{window_update_due, SendWindow};
use vyx_core::handshake::is_worker_id;
use vyx_core::heartbeat::Heartbeat;
use vyx_core::limits::HEARTBEAT_MISSES;

fn load(name: &str) -> Value {
    let path = format!("{}/../spec/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn list<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key:?} list"))
}

fn u32_of(v: &Value) -> u32 {
    u32::try_from(v.as_u64().expect("an integer")).expect("fits in u32")
}

#[test]
fn flow_send_windows() {
    let file = load("flow.json");
    let cases = list(&file, "send");
    assert!(!cases.is_empty());
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let window = SendWindow::<()>::new(u32_of(&case["initial_window"]));
        for (i, ev) in list(case, "events").iter().enumerate() {
            let at = format!("{name}, event {i} {ev}");
            if let Some(n) = ev.get("grant") {
                let ok = window.grant(u32_of(n));
                assert_eq!(ok, ev.get("close").is_none(), "{at}: grant accepted");
                if let Some(code) = ev.get("close") {
                    assert_eq!(code, CloseCode::FlowControl as u16, "{at}");
                }
            } else {
                let want = u32_of(&ev["send"]) as usize;
                // Credit is taken at once when there is some; with none the sender waits.
                let sent = match window.reserve(want).now_or_never() {
                    Some(Ok(n)) => n,
                    Some(Err(())) => panic!("{at}: the window failed"),
                    None => 0,
                };
                assert_eq!(
                    sent as u64,
                    ev["sent"].as_u64().unwrap(),
                    "{at}: bytes sendable"
                );
            }
        }
    }
}

/// The receiver's accounting: the core's batching rule ([`window_update_due`]) decides
/// when consumed bytes are granted back; DATA beyond the remaining window is 4008.
#[test]
fn flow_receive_windows() {
    let file = load("flow.json");
    let cases = list(&file, "receive");
    assert!(!cases.is_empty());
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let initial = u32_of(&case["initial_window"]);
        let (mut window, mut unacked, mut ended) = (i64::from(initial), 0u32, false);
        for (i, ev) in list(case, "events").iter().enumerate() {
            let at = format!("{name}, event {i} {ev}");
            if let Some(n) = ev.get("data") {
                window -= n.as_i64().unwrap();
                if let Some(code) = ev.get("close") {
                    assert!(window < 0, "{at}: a 4008 point within the window");
                    assert_eq!(code, CloseCode::FlowControl as u16, "{at}");
                    continue;
                }
                assert!(window >= 0, "{at}: beyond the window yet no close");
                ended |= ev["end_stream"] == true;
            } else {
                let n = u32_of(&ev["consume"]);
                let mut update = 0;
                if !ended {
                    unacked += n;
                    if window_update_due(unacked, initial) {
                        update = std::mem::take(&mut unacked);
                        window += i64::from(update);
                    }
                }
                assert_eq!(update, u32_of(&ev["window_update"]), "{at}: WINDOW sent");
            }
            assert_eq!(window, ev["window"].as_i64().unwrap(), "{at}: window");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn heartbeat_ticks() {
    let file = load("heartbeat.json");
    assert_eq!(file["misses"], HEARTBEAT_MISSES);
    let interval = Duration::from_millis(100);
    for case in list(&file, "cases") {
        let name = case["name"].as_str().unwrap();
        let mut hb = Heartbeat::new(interval);
        let mut ticks = 0u64;
        let mut dead = None;
        for ev in list(case, "events") {
            match ev.as_str().unwrap() {
                "recv" => hb.received(),
                // This side did not run for ten intervals: no tick, no read.
                "stall" => tokio::time::advance(interval * 10).await,
                "tick" => {
                    ticks += 1;
                    if hb.tick().await.is_err() {
                        dead = Some(ticks);
                        break;
                    }
                }
                other => panic!("{name}: unknown event {other:?}"),
            }
        }
        assert_eq!(dead, case["dead_at_tick"].as_u64(), "{name}: dead at tick");
    }
}

/// The close-code cases: a worker stops exactly on the permanent ones (§9). The HTTP and
/// WELCOME cases need a connection and run in the conformance worker probes.
#[test]
fn close_codes_retry_or_stop() {
    let file = load("retry.json");
    let mut seen = 0;
    for case in list(&file, "cases") {
        let Some(code) = case["outcome"]["close"].as_u64() else {
            continue;
        };
        let name = case["name"].as_str().unwrap();
        let code = CloseCode::from_u16(code as u16)
            .unwrap_or_else(|| panic!("{name}: {code} is not a protocol close code"));
        assert_eq!(
            code.is_permanent(),
            case["retry"] == false,
            "{name}: permanent"
        );
        seen += 1;
    }
    assert!(seen >= 10, "only {seen} close-code cases");
}

#[test]
fn worker_ids() {
    let file = load("worker_id.json");
    for case in list(&file, "cases") {
        let id = case["id"].as_str().unwrap();
        assert_eq!(
            is_worker_id(id),
            case["valid"].as_bool().unwrap(),
            "worker id {id:?}"
        );
    }
}

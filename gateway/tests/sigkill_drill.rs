//! The SIGKILL drill (issue 19): two replicas of a Rust SDK worker, each its own process,
//! serve GETs and POSTs from several client connections; one replica is SIGKILLed mid-load.
//! No GET fails, and the POSTs that fail are exactly those that could not be retried: a
//! non-idempotent POST the dead replica had, or a body streamed past `limits.body_buffer`.
//!
//! The replicas are this test binary run again with `VYX_DRILL_CONNECT` set, running only
//! `drill_worker_process`.

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};

const ID: &str = "drill:svc";
/// Client connections sending the load.
const CONNECTIONS: usize = 16;
/// Requests answered before the kill, and again after it, before the load stops.
const PHASE: usize = 400;
/// Past the default `limits.body_buffer` (256 KiB): streamed, so never replayable.
const STREAMED: usize = 320 << 10;

/// A replica: serves until killed. Replica `a` holds `/hold` requests forever, so that the
/// kill finds at least one GET and one POST on it.
#[test]
fn drill_worker_process() {
    let Ok(connect) = std::env::var("VYX_DRILL_CONNECT") else {
        return; // run as a test of its own: nothing to do
    };
    let instance = std::env::var("VYX_DRILL_INSTANCE").unwrap();
    let holds = instance == "a";
    let length = |mut req: vyx::Request| async move {
        // A short wait keeps requests in flight on both replicas.
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok::<_, vyx::Error>(req.bytes().await?.len().to_string())
    };
    let hold = move |mut req: vyx::Request| async move {
        let _ = req.bytes().await;
        if holds {
            std::future::pending::<()>().await;
        }
        "held"
    };
    let worker = vyx::Worker::builder()
        .connect(connect)
        .id(ID)
        .instance(instance)
        .handle_signals(false)
        .get("/get", |_req: vyx::Request| async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            "ok"
        })
        .post("/post", length)
        .post("/idem", length)
        .idempotent()
        .get("/hold", hold)
        .post("/hold", hold)
        .build()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(worker.start()).unwrap();
}

/// A replica process, SIGKILLed when dropped.
struct Replica(Child);

impl Replica {
    fn start(gw: &TestGateway, instance: &str) -> Replica {
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "drill_worker_process", "--test-threads=1"])
            .env("VYX_DRILL_CONNECT", format!("ws://{}", gw.addr))
            .env("VYX_DRILL_INSTANCE", instance)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Replica(child)
    }

    fn sigkill(&mut self) {
        self.0.kill().unwrap(); // SIGKILL
        self.0.wait().unwrap();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the load sends, in turn on each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Get,
    /// A POST of 1 KiB, held whole by the gateway; its route is not idempotent.
    Post,
    /// A POST of 1 KiB to a route declared idempotent.
    IdempotentPost,
    /// A POST past the body buffer to the idempotent route: streamed.
    StreamedPost,
}

const KINDS: [Kind; 4] = [
    Kind::Get,
    Kind::Post,
    Kind::IdempotentPost,
    Kind::StreamedPost,
];

/// One request of `kind`: its status, or `None` when the response failed after its head
/// (the drill counts that as a failure too).
async fn one(c: &HttpClient, gw: &TestGateway, kind: Kind) -> Option<u16> {
    let (method, path, len) = match kind {
        Kind::Get => ("GET", "/get", 0),
        Kind::Post => ("POST", "/post", 1024),
        Kind::IdempotentPost => ("POST", "/idem", 1024),
        Kind::StreamedPost => ("POST", "/idem", STREAMED),
    };
    let req = http::Request::builder()
        .method(method)
        .uri(gw.url(path))
        .body(Full::new(Bytes::from(vec![b'x'; len])))
        .unwrap();
    let resp = tokio::time::timeout(WAIT, c.request(req))
        .await
        .expect("response in time")
        .expect("the gateway answered");
    let status = resp.status().as_u16();
    let body = tokio::time::timeout(WAIT, resp.into_body().collect())
        .await
        .expect("body in time");
    match body {
        Ok(b) if status == 200 => {
            let want = match kind {
                Kind::Get => "ok".to_owned(),
                _ => len.to_string(), // the worker got the whole body
            };
            assert_eq!(b.to_bytes(), want);
            Some(status)
        }
        Ok(_) => Some(status),
        Err(_) => None,
    }
}

/// The `in_flight` of replica `instance`'s connections (one per shard), from `/_vyx/workers`.
async fn in_flight(gw: &TestGateway, instance: &str) -> u64 {
    let (_, body) = get(&client(), &gw.url("/_vyx/workers")).await;
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .filter(|w| w["instance"] == instance)
        .map(|w| w["in_flight"].as_u64().unwrap())
        .sum()
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not in time"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_one_replica_fails_only_the_posts_that_could_not_be_retried() {
    let gw = Arc::new(TestGateway::start().await);
    let mut a = Replica::start(&gw, "a");
    wait_for_workers(gw.addr, ID, 1).await;
    // A GET and a POST that A holds until it dies (B answers them at once).
    let (g, c) = (gw.clone(), client());
    let held_get = tokio::spawn(async move { get(&c, &g.url("/hold")).await });
    let (g, c) = (gw.clone(), client());
    let held_post =
        tokio::spawn(async move { send(&c, "POST", &g.url("/hold"), &[], "x").await.0 });
    let deadline = tokio::time::Instant::now() + WAIT;
    while in_flight(&gw, "a").await < 2 {
        assert!(tokio::time::Instant::now() < deadline, "A holds both");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _b = Replica::start(&gw, "b");
    wait_for_workers(gw.addr, ID, 2).await;

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = (0..CONNECTIONS)
        .map(|n| {
            let (gw, stop, answered) = (gw.clone(), stop.clone(), answered.clone());
            tokio::spawn(async move {
                // A client each: each keeps its own connection.
                let c = client();
                let mut outcomes = Vec::new();
                let mut i = n;
                while !stop.load(Ordering::Relaxed) {
                    let kind = KINDS[i % KINDS.len()];
                    outcomes.push((kind, one(&c, &gw, kind).await));
                    answered.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
                outcomes
            })
        })
        .collect();
    wait_until("load before the kill", || {
        answered.load(Ordering::Relaxed) >= PHASE
    })
    .await;
    a.sigkill();
    let at_kill = answered.load(Ordering::Relaxed);
    wait_until("load after the kill", || {
        answered.load(Ordering::Relaxed) >= at_kill + PHASE
    })
    .await;
    stop.store(true, Ordering::Relaxed);

    let mut sent: HashMap<Kind, usize> = HashMap::new();
    let mut failed: HashMap<Kind, Vec<Option<u16>>> = HashMap::new();
    for task in load {
        for (kind, outcome) in task.await.unwrap() {
            *sent.entry(kind).or_default() += 1;
            if outcome != Some(200) {
                failed.entry(kind).or_default().push(outcome);
            }
        }
    }
    let failures = |k| failed.get(&k).map_or(0, Vec::len);
    let retries = |reason: &str, outcome: &str| {
        let gw = gw.clone();
        let line = format!("vyx_retries_total{{reason=\"{reason}\",outcome=\"{outcome}\"}}");
        async move { metric(&gw, &line).await as usize }
    };
    eprintln!(
        "sent {sent:?}; failed {failed:?}; retried and answered {}",
        retries("connection_lost", "answered").await
    );

    // The held GET was retried on B; the held POST could not be.
    assert_eq!(held_get.await.unwrap(), (200, Bytes::from_static(b"held")));
    assert_eq!(held_post.await.unwrap(), 502);
    assert_eq!(failures(Kind::Get), 0, "no GET fails");
    assert_eq!(
        failures(Kind::IdempotentPost),
        0,
        "no held idempotent POST fails"
    );
    for (kind, outcomes) in &failed {
        assert!(
            outcomes.iter().all(|o| *o == Some(502)),
            "{kind:?} failed other than with 502 before its head: {outcomes:?}"
        );
    }
    // Exactly the POSTs the gateway could not retry failed: not idempotent (the held one
    // besides the load's), or streamed.
    assert_eq!(
        retries("connection_lost", "not_idempotent").await,
        failures(Kind::Post) + 1
    );
    assert_eq!(
        retries("connection_lost", "body_not_held").await,
        failures(Kind::StreamedPost)
    );
    assert!(
        retries("connection_lost", "answered").await >= 1,
        "the held GET"
    );
    assert_eq!(retries("connection_lost", "failed").await, 0);
    assert_eq!(retries("connection_lost", "no_replica").await, 0);
}

//! A worker on several gateways at once (PROTOCOL.md §9.1): a session to every gateway
//! of its list and to every address its host names resolve to, each surviving the
//! others' loss, and kept in step with DNS.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use vyx::{ConnectionState, Request, Resolver};

const ID: &str = "rust:multi";

/// A worker answering `/where` with `here`, connected to `connect`.
fn worker(
    connect: Vec<String>,
    tweak: impl FnOnce(vyx::WorkerBuilder) -> vyx::WorkerBuilder,
) -> vyx::Worker {
    let builder = vyx::Worker::builder()
        .connect(connect)
        .id(ID)
        .handle_signals(false)
        .get("/where", |_req: Request| async { "here" });
    tweak(builder).build().expect("valid worker")
}

async fn serves(gw: SocketAddr) {
    let (status, body) = get(&client(), &format!("http://{gw}/where")).await;
    assert_eq!((status, &body[..]), (200, &b"here"[..]), "through {gw}");
}

/// Host names and their addresses, as the test sets them.
type Table = Arc<Mutex<HashMap<String, Vec<SocketAddr>>>>;

/// A resolver answering from a table the test changes as it goes.
fn table(entries: &[(&str, Vec<SocketAddr>)]) -> (Resolver, Table) {
    let table: HashMap<String, Vec<SocketAddr>> = entries
        .iter()
        .map(|(host, addrs)| (host.to_string(), addrs.clone()))
        .collect();
    let table = Arc::new(Mutex::new(table));
    let shared = table.clone();
    let resolver = Resolver::new(move |host, _port| {
        let found = shared.lock().unwrap().get(host).cloned();
        Box::pin(async move {
            found.ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "not in the table")
            })
        })
    });
    (resolver, table)
}

#[tokio::test]
async fn a_worker_serves_through_two_gateways_and_survives_the_loss_of_either() {
    let a = TestGateway::start_restartable().await;
    let b = TestGateway::start_restartable().await;
    let (addr_a, addr_b) = (a.addr, b.addr);
    let w = worker(
        vec![format!("ws://{addr_a}"), format!("ws://{addr_b}")],
        |b| b,
    );
    let mut state = w.state();
    let handle = w.handle();
    let task = tokio::spawn(async move { w.start().await });
    wait_for_workers(addr_a, ID, 1).await;
    wait_for_workers(addr_b, ID, 1).await;
    serves(addr_a).await;
    serves(addr_b).await;

    a.kill().await;
    serves(addr_b).await;
    let a = TestGateway::start_with(|c| c.listen = addr_a).await;
    wait_for_workers(addr_a, ID, 1).await;
    serves(addr_a).await;

    b.kill().await;
    serves(addr_a).await;
    let _b = TestGateway::start_with(|c| c.listen = addr_b).await;
    wait_for_workers(addr_b, ID, 1).await;
    serves(addr_b).await;

    // One session was up all along: the worker stayed ready, and never said otherwise.
    let seen: Vec<ConnectionState> = {
        let mut seen = vec![state.current().clone()];
        while let Ok(Some(s)) = tokio::time::timeout(Duration::ZERO, state.next()).await {
            seen.push(s);
        }
        seen
    };
    assert!(
        seen.iter()
            .skip_while(|s| !matches!(s, ConnectionState::Connected { .. }))
            .all(|s| matches!(s, ConnectionState::Connected { .. })),
        "{seen:?}"
    );
    handle.stop();
    tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    wait_for_workers(addr_a, ID, 0).await;
    drop(a);
}

#[tokio::test]
async fn localhost_at_two_addresses_gets_a_session_at_each() {
    let v4 = TestGateway::start_restartable().await;
    let port = v4.addr.port();
    let v6 =
        TestGateway::start_with(|c| c.listen = SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], port)))
            .await;
    let (resolver, _) = table(&[("localhost", vec![v4.addr, v6.addr])]);
    let url = format!("ws://localhost:{port}/_vyx/register");
    let w = worker(vec![format!("ws://localhost:{port}")], |b| {
        b.resolver(resolver)
    });
    let handle = w.handle();
    let task = tokio::spawn(async move { w.start().await });
    wait_for_workers(v4.addr, ID, 1).await;
    wait_for_workers(v6.addr, ID, 1).await;
    serves(v4.addr).await;
    serves(v6.addr).await;
    assert_eq!(
        handle
            .gateways()
            .iter()
            .map(|g| (g.gateway.as_str(), g.address))
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([v4.addr, v6.addr].map(|a| (url.as_str(), Some(a)))),
        "the URL keeps the name"
    );

    v6.kill().await;
    serves(v4.addr).await;
    let v6 =
        TestGateway::start_with(|c| c.listen = SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], port)))
            .await;
    wait_for_workers(v6.addr, ID, 1).await;
    serves(v6.addr).await;
    handle.stop();
    tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn addresses_that_appear_get_a_session_and_those_that_go_are_drained() {
    let a = TestGateway::start().await;
    let b = TestGateway::start().await;
    let (resolver, dns) = table(&[("gateways.test", vec![a.addr])]);
    let w = worker(vec!["ws://gateways.test:9".to_string()], |w| {
        w.resolver(resolver)
            .resolve_interval(Duration::from_millis(20))
    });
    let handle = w.handle();
    let task = tokio::spawn(async move { w.start().await });
    wait_for_workers(a.addr, ID, 1).await;

    dns.lock()
        .unwrap()
        .insert("gateways.test".into(), vec![a.addr, b.addr]);
    wait_for_workers(b.addr, ID, 1).await;
    serves(b.addr).await;
    serves(a.addr).await;

    dns.lock()
        .unwrap()
        .insert("gateways.test".into(), vec![b.addr]);
    wait_for_workers(a.addr, ID, 0).await;
    serves(b.addr).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while handle
        .gateways()
        .iter()
        .filter_map(|g| g.address)
        .collect::<BTreeSet<_>>()
        != BTreeSet::from([b.addr])
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            handle.gateways()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A name that stops resolving keeps the sessions it has.
    dns.lock().unwrap().clear();
    serves(b.addr).await;
    handle.stop();
    tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[test]
fn a_bad_gateway_list_is_a_config_error_naming_the_entry() {
    for (list, says) in [
        (
            vec!["ws://127.0.0.1:1", "http://127.0.0.1:2"],
            "gateway address 2 of 2 (\"http://127.0.0.1:2\") must start with ws://",
        ),
        (
            vec!["ws://127.0.0.1:1", ""],
            "gateway address 2 of 2 (\"\") is empty",
        ),
        (
            vec!["ws://a:1", "ws://a:1/"],
            "gateway address 2 of 2 (\"ws://a:1/\") is listed twice",
        ),
    ] {
        let e = vyx::Worker::builder()
            .connect(list)
            .id(ID)
            .get("/where", |_req: Request| async { "here" })
            .build()
            .unwrap_err();
        assert!(e.to_string().contains(says), "{e}");
    }
}

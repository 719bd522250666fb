//! Routing through a real gateway: the route-set and matching vectors of spec/vectors/
//! (`handshake.json`, `routing.json`), and conflicts between workers (PROTOCOL.md §2.4–§2.5).

mod common;

use bytes::Bytes;
use common::*;
use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use vyx_core::frame::{Frame, Response};
use vyx_core::handshake::RouteSpec;

fn load(name: &str) -> Value {
    let path = format!("{}/../spec/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test]
async fn the_gateway_accepts_and_refuses_exactly_the_handshake_vectors() {
    let file = load("handshake.json");
    for case in file["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        // A fresh gateway per case: no route claimed by an earlier case.
        let gw = TestGateway::start().await;
        let got = hello_outcome(
            &gw,
            case["header_worker_id"].as_str().unwrap(),
            &case["hello"],
        )
        .await;
        let want = match &case["expect"] {
            Value::String(s) if s == "ok" => Ok(()),
            e => Err(e["close_code"].as_u64().unwrap() as u16),
        };
        assert_eq!(got, want, "{name}");
        gw.kill().await;
    }
}

#[tokio::test]
async fn requests_reach_the_route_and_params_the_routing_vectors_name() {
    let file = load("routing.json");
    let client = client();
    for case in file["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let routes: Vec<RouteSpec> = serde_json::from_value(case["routes"].clone()).unwrap();
        let gw = TestGateway::start().await;
        let mut w = RawWorker::connect(gw.addr, "raw:routes", routes).await;
        for req in case["requests"].as_array().unwrap() {
            let method = req["method"].as_str().unwrap().to_string();
            let path = req["path"].as_str().unwrap();
            let what = format!("{name}: {method} {path}");
            let url = gw.url(path);
            let (c, m) = (client.clone(), method.clone());
            let answer = tokio::spawn(async move { send(&c, &m, &url, &[], Bytes::new()).await });
            if req["expect"].is_null() {
                // The worker never answers: a 404 or 405 can only come from the gateway.
                let allow: Vec<String> = serde_json::from_value(req["allow"].clone()).unwrap();
                let (status, headers, _) = answer.await.unwrap();
                let got_allow = headers
                    .get("allow")
                    .map(|v| v.to_str().unwrap().to_string());
                if allow.is_empty() {
                    assert_eq!((status, got_allow), (404, None), "{what}");
                } else {
                    assert_eq!((status, got_allow), (405, Some(allow.join(", "))), "{what}");
                }
                continue;
            }
            let Frame::Request(r) = w.next_frame().await else {
                panic!("{what}: expected a REQUEST");
            };
            assert_eq!(&r.method[..], method.as_bytes(), "{what}: method as sent");
            assert_eq!(
                r.route_id as u64,
                req["expect"]["route_id"].as_u64().unwrap(),
                "{what}"
            );
            let want: Vec<(Bytes, Bytes)> = req["expect"]["params"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        Bytes::from(p[0].as_str().unwrap().to_string()),
                        Bytes::from(unhex(p[1].as_str().unwrap())),
                    )
                })
                .collect();
            assert_eq!(r.params, want, "{what}: params");
            w.send(Frame::Response(Response {
                stream_id: r.stream_id,
                end_stream: true,
                status: 200,
                headers: vec![],
            }))
            .await;
            assert_eq!(answer.await.unwrap().0, 200, "{what}");
        }
        gw.kill().await;
    }
}

/// The route id of the REQUEST `path` reaches, and the worker that got it.
async fn routed_to(
    gw: &TestGateway,
    workers: &mut [(&str, &mut RawWorker)],
    method: &str,
    path: &str,
) -> String {
    let (c, url, m) = (client(), gw.url(path), method.to_string());
    let answer = tokio::spawn(async move { send(&c, &m, &url, &[], Bytes::new()).await.0 });
    // Exactly one worker gets it; poll each socket in turn until one has a frame.
    let found = loop {
        let mut hit = None;
        for (name, w) in workers.iter_mut() {
            if let Ok(Some(Ok(Message::Binary(b)))) =
                tokio::time::timeout(std::time::Duration::from_millis(50), w.ws.next()).await
            {
                if let Ok(Frame::Request(r)) = Frame::decode(b, 1 << 20) {
                    w.send(Frame::Response(Response {
                        stream_id: r.stream_id,
                        end_stream: true,
                        status: 200,
                        headers: vec![],
                    }))
                    .await;
                    hit = Some(format!("{name}#{}", r.route_id));
                }
            }
        }
        if let Some(h) = hit {
            break h;
        }
        assert!(
            !answer.is_finished(),
            "{method} {path} answered without a worker"
        );
    };
    assert_eq!(answer.await.unwrap(), 200);
    found
}

#[tokio::test]
async fn routes_of_different_workers_conflict_only_on_overlapping_methods_and_the_same_shape() {
    let gw = TestGateway::start().await;
    let mut a = RawWorker::connect(gw.addr, "raw:a", vec![route(1, "GET", "/a/{x}")]).await;
    // Another shape under the same prefix: accepted (matchit refused it with 4003).
    let mut b = RawWorker::connect(gw.addr, "raw:b", vec![route(2, "GET", "/a/{*rest}")]).await;
    // Same method, same shape, other parameter name: a conflict.
    assert_eq!(
        hello_outcome(
            &gw,
            "raw:c",
            &hello_json("raw:c", vec![route(3, "GET", "/a/{y}")])
        )
        .await,
        Err(4003)
    );
    // `*` overlaps every method: beside another worker's GET route of the same shape it
    // is a conflict too; one worker may declare both.
    assert_eq!(
        hello_outcome(
            &gw,
            "raw:c",
            &hello_json("raw:c", vec![route(3, "*", "/a/{y}")])
        )
        .await,
        Err(4003)
    );
    let mut d = RawWorker::connect(
        gw.addr,
        "raw:d",
        vec![route(4, "*", "/d/{y}"), route(7, "GET", "/d/{x}")],
    )
    .await;
    // A catch-all at the root beside a more specific `*` route of another worker.
    let mut e = RawWorker::connect(gw.addr, "raw:e", vec![route(5, "GET", "/{*all}")]).await;
    let mut f = RawWorker::connect(gw.addr, "raw:f", vec![route(6, "*", "/api/{*rest}")]).await;
    let mut ws = [
        ("a", &mut a),
        ("b", &mut b),
        ("d", &mut d),
        ("e", &mut e),
        ("f", &mut f),
    ];
    assert_eq!(routed_to(&gw, &mut ws, "GET", "/a/1").await, "a#1");
    assert_eq!(routed_to(&gw, &mut ws, "GET", "/a/1/2").await, "b#2");
    assert_eq!(routed_to(&gw, &mut ws, "POST", "/d/1").await, "d#4");
    assert_eq!(routed_to(&gw, &mut ws, "GET", "/d/1").await, "d#7");
    assert_eq!(routed_to(&gw, &mut ws, "HEAD", "/a/1").await, "a#1");
    assert_eq!(routed_to(&gw, &mut ws, "GET", "/api/x").await, "f#6");
    assert_eq!(routed_to(&gw, &mut ws, "GET", "/other").await, "e#5");
}

#[tokio::test]
async fn a_route_left_without_connections_is_taken_over_whatever_its_param_names() {
    let gw = TestGateway::start().await;
    let mut old = RawWorker::connect(
        gw.addr,
        "raw:old",
        vec![route(0, "GET", "/t/{id}"), route(1, "*", "/u/{id}")],
    )
    .await;
    old.ws.close(None).await.unwrap();
    wait_for_workers(gw.addr, "raw:old", 0).await;
    // Same method and shape, and `*` overlapping GET: both taken over.
    let mut new = RawWorker::connect(
        gw.addr,
        "raw:new",
        vec![route(9, "GET", "/t/{key}"), route(8, "GET", "/u/{key}")],
    )
    .await;
    assert_eq!(
        routed_to(&gw, &mut [("new", &mut new)], "GET", "/t/1").await,
        "new#9"
    );
    assert_eq!(
        routed_to(&gw, &mut [("new", &mut new)], "GET", "/u/1").await,
        "new#8"
    );
    let (c, url) = (client(), gw.url("/u/1"));
    assert_eq!(
        send(&c, "POST", &url, &[], bytes::Bytes::new()).await.0,
        405,
        "the departed worker's `*` route is gone: only the new GET route serves /u/1"
    );
    // Replicas of one id that spell one shape two ways cannot share the table.
    assert_eq!(
        hello_outcome(
            &gw,
            "raw:new",
            &hello_json("raw:new", vec![route(9, "GET", "/t/{other}")])
        )
        .await,
        Err(4003)
    );
}

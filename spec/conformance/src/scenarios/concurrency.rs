//! Many requests at once, the concurrency cap, failing handlers, aborted clients, replicas.

use std::time::Duration;

use futures_util::future::join_all;
use http_body_util::BodyExt;
use serde_json::json;

use super::{connections, wait_connections, Ctx, Scenario};
use crate::check::Outcome;
use crate::http::{self, empty, request, Client};
use crate::procs::WAIT;
use crate::{ensure, ensure_eq};

pub fn scenarios() -> Vec<Scenario> {
    crate::scenarios![
        "500 concurrent requests on one connection" => five_hundred,
        "worker's concurrency cap respected" => cap,
        "handler throws: 500, worker keeps serving" => throws,
        "client aborts mid-response: stream reset, worker keeps serving" => client_abort,
        "replicas share load" => replicas,
    ]
}

/// GETs `urls` all at once, each on its own client connection.
async fn get_all(client: &Client, urls: Vec<String>) -> Outcome<Vec<http::Reply>> {
    let replies = join_all(urls.iter().map(|url| http::get(client, url))).await;
    replies.into_iter().collect()
}

/// 500 requests held by the worker at the same moment: `/barrier/500` answers only once
/// 500 barrier requests are in its handlers together.
async fn five_hundred(ctx: Ctx) -> Outcome<()> {
    const N: usize = 500;
    let env = ctx.env().await?;
    let urls = (0..N).map(|_| env.url(&format!("/barrier/{N}"))).collect();
    let replies = get_all(&env.client, urls).await?;
    for (i, r) in replies.iter().enumerate() {
        ensure_eq!(
            (r.status, r.text()),
            (200, format!("{{\"n\":{N}}}")),
            "barrier request {i}"
        );
    }
    // And 500 concurrent echoes, each answer its own body.
    let bodies: Vec<String> = (0..N)
        .map(|i| format!("request {i} {}", "x".repeat(i)))
        .collect();
    let replies = join_all(bodies.iter().map(|b| {
        let req = request("POST", &env.url("/echo"), &[], http::full(b.clone()));
        let client = env.client.clone();
        async move { http::send(&client, req?).await }
    }))
    .await;
    for (i, r) in replies.into_iter().enumerate() {
        let r = r?;
        ensure_eq!(
            (r.status, r.text()),
            (200, bodies[i].clone()),
            "echo {i} of {N}"
        );
    }
    env.still_serving().await
}

async fn cap(ctx: Ctx) -> Outcome<()> {
    const CAP: usize = 4;
    const N: usize = 16;
    let env = ctx
        .env_with(&[("VYX_CONFORMANCE_MAX_CONCURRENCY", CAP.to_string())])
        .await?;
    let conns = connections(&env.client, &env.gw, &env.id).await?;
    ensure_eq!(conns[0]["max_concurrency"], json!(CAP), "declared cap");
    let urls = (0..N).map(|_| env.url("/slow/300")).collect();
    let replies = get_all(&env.client, urls).await?;
    let mut max_seen = 0;
    for (i, r) in replies.iter().enumerate() {
        ensure_eq!(r.status, 200, "slow request {i}: {}", r.text());
        let in_flight = r.json()?["in_flight"].as_u64().unwrap_or(u64::MAX) as usize;
        max_seen = max_seen.max(in_flight);
    }
    ensure!(
        max_seen <= CAP,
        "the worker had {max_seen} slow requests at once with a cap of {CAP}"
    );
    ensure_eq!(
        max_seen,
        CAP,
        "most slow requests at once ({N} sent together, each 300 ms)"
    );
    env.still_serving().await
}

async fn throws(ctx: Ctx) -> Outcome<()> {
    let env = ctx.env().await?;
    for round in 0..3 {
        let reply = env.get("/throw").await?;
        ensure_eq!(reply.status, 500, "GET /throw, round {round}");
        let reply = env.get("/greet/after").await?;
        ensure_eq!(reply.status, 200, "GET /greet/after a throw, round {round}");
    }
    let stats = env.get("/stats").await?.json()?;
    ensure_eq!(stats["in_flight"], json!(0), "handlers left in flight");
    env.still_serving().await
}

async fn client_abort(ctx: Ctx) -> Outcome<()> {
    let env = ctx.env().await?;
    // 100 MB in 1000-byte chunks 10 ms apart: it cannot finish before the client leaves.
    let url = env.url("/stream/100000000?chunk=1000&pause_ms=10");
    let resp = http::head_of(&env.client, request("GET", &url, &[], empty())?).await?;
    ensure_eq!(resp.status().as_u16(), 200, "GET {url}");
    let mut body = resp.into_body();
    let first = tokio::time::timeout(WAIT, body.frame())
        .await
        .map_err(|_| "no first chunk".to_owned())?;
    ensure!(
        matches!(&first, Some(Ok(f)) if f.is_data()),
        "first frame: {first:?}"
    );
    let stats = env.get("/stats").await?.json()?;
    ensure_eq!(
        stats["in_flight"],
        json!(1),
        "stream in flight before the abort"
    );
    drop(body); // the client goes away mid-response
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = env.get("/stats").await?.json()?;
        if stats["aborted"] == json!(1) && stats["in_flight"] == json!(0) {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the worker's stream was not reset within {WAIT:?}: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A complete stream afterwards is not counted as aborted.
    let reply = env.get("/stream/5000?chunk=1000").await?;
    ensure_eq!(
        (reply.status, http::sha256(&reply.body)),
        (200, http::pattern_sha256(5000)),
        "GET /stream/5000 afterwards"
    );
    let stats = env.get("/stats").await?.json()?;
    ensure_eq!(
        stats["aborted"],
        json!(1),
        "aborted count after a full stream"
    );
    env.still_serving().await
}

async fn replicas(ctx: Ctx) -> Outcome<()> {
    const N: usize = 40;
    let gw = ctx.gateway().await?;
    let (_a, _) = ctx
        .connect_worker(&gw, &[("VYX_CONFORMANCE_REPLICA", "a".into())])
        .await?;
    let _b = ctx.spawn_worker(&gw, &[("VYX_CONFORMANCE_REPLICA", "b".into())])?;
    let client = http::client();
    wait_connections(&client, &gw, &ctx.worker_id(), "two replicas", WAIT, |c| {
        c.len() == 2
    })
    .await?;
    let urls = (0..N).map(|_| gw.url("/slow/300")).collect();
    let replies = get_all(&client, urls).await?;
    let (mut a, mut b) = (0, 0);
    for (i, r) in replies.iter().enumerate() {
        ensure_eq!(r.status, 200, "request {i}");
        match r.json()?["replica"].as_str() {
            Some("a") => a += 1,
            Some("b") => b += 1,
            other => return Err(format!("request {i} answered by replica {other:?}")),
        }
    }
    ensure!(
        a >= N / 4 && b >= N / 4,
        "{N} concurrent requests split {a} (a) / {b} (b): each replica should take at least a quarter"
    );
    Ok(())
}

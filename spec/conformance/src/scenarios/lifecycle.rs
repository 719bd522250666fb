//! Losing and regaining the gateway, heartbeats, and draining from either side.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;
use tokio::time::Instant;
use vyx_core::backoff::envelope_ms;

use super::{wait_connections, Ctx, Scenario};
use crate::check::Outcome;
use crate::http;
use crate::procs::{GatewaySetup, WAIT};
use crate::{ensure, ensure_eq};

pub fn scenarios() -> Vec<Scenario> {
    crate::scenarios![
        "gateway killed and restarted: re-registration within the backoff bound" => restart,
        "heartbeat loss (gateway SIGSTOP): noticed, reconnects after SIGCONT" => heartbeat_loss,
        "worker SIGTERM: drain, in-flight finish, new go elsewhere, exit 0" => worker_drain,
        "gateway DRAIN on shutdown: in-flight finish, worker reconnects" => gateway_drain,
    ]
}

/// Time for the retry that succeeds to complete its handshake and show up in
/// `/_vyx/workers` on a busy machine; the backoff schedule itself is exact.
const ALLOWANCE: Duration = Duration::from_millis(1000);

/// The latest a worker retries after the gateway is back, when it has been unreachable for
/// `down` since the worker lost it (spec/PROTOCOL.md §9, for a worker whose count of
/// failed attempts was 0 when it lost the connection).
///
/// Retry k (1-based) comes at the earliest `Σ_{i<k} floor(envelope(i)/2)` after the loss,
/// so at most `failed` retries fit before the gateway is back: the largest count whose
/// earliest time is below `down`. The next retry follows the last failed one within
/// `envelope(failed)`.
pub fn reconnect_bound(down: Duration) -> Duration {
    let down_ms = down.as_millis() as u64;
    let mut earliest = 0u64;
    let mut failed = 0u32;
    loop {
        let next = earliest + envelope_ms(failed) / 2;
        if next >= down_ms {
            break;
        }
        earliest = next;
        failed += 1;
    }
    Duration::from_millis(envelope_ms(failed))
}

/// The heartbeat the heartbeat scenario configures (WELCOME `heartbeat_ms`).
const HEARTBEAT: Duration = Duration::from_millis(500);

async fn restart(ctx: Ctx) -> Outcome<()> {
    let env = ctx.env().await?;
    let addr = env.gw.addr;
    let from = env.worker.stdout.len();
    let lost_at = Instant::now();
    env.gw.kill().await?;
    // Let the worker fail a few retries, so that the bound is about backoff, not luck.
    env.worker
        .stdout
        .wait_for(from, WAIT, "'state reconnecting N' with N >= 3", |l| {
            l.strip_prefix("state reconnecting ")
                .and_then(|rest| rest.split(' ').next()?.parse::<u32>().ok())
                .is_some_and(|n| n >= 3)
        })
        .await?;
    let gw = ctx.gateway_at(addr).await?;
    let up_at = Instant::now();
    let bound = reconnect_bound(up_at - lost_at) + ALLOWANCE;
    let client = http::client();
    // Connection ids are per gateway process: any connection on the new one is new.
    wait_connections(&client, &gw, &env.id, "re-registration", bound, |c| {
        c.len() == 1
    })
    .await
    .map_err(|e| format!("{e} (gateway down {:?}; bound {bound:?})", up_at - lost_at))?;
    let reply = http::get(&client, &gw.url("/greet/back")).await?;
    ensure_eq!(reply.status, 200, "GET /greet/back after the restart");
    Ok(())
}

async fn heartbeat_loss(ctx: Ctx) -> Outcome<()> {
    let yaml = format!(
        "accept_unknown_workers: true\ntimeouts:\n  heartbeat: {}ms\n",
        HEARTBEAT.as_millis()
    );
    let gw = ctx
        .gateway_with(GatewaySetup {
            config: Some(&yaml),
            ..GatewaySetup::default()
        })
        .await?;
    let env = ctx.env_on(gw, &[]).await?;
    let from = env.worker.stdout.len();
    env.gw.signal(libc::SIGSTOP)?;
    let frozen_at = Instant::now();
    // Silent for 3 intervals → dead; the silence began at most one interval before the
    // freeze, and the check runs at least once per interval.
    let latest = HEARTBEAT * 4 + ALLOWANCE;
    let noticed = env.worker.wait_state(from, "reconnecting", latest).await;
    let noticed_after = frozen_at.elapsed();
    env.gw.signal(libc::SIGCONT)?;
    noticed?;
    let earliest = HEARTBEAT * 2;
    ensure!(
        noticed_after >= earliest,
        "the worker gave up on the gateway after {noticed_after:?}, before 3 silent heartbeat intervals could have passed (earliest {earliest:?})"
    );
    let old = env.connection_id.clone();
    wait_connections(
        &env.client,
        &env.gw,
        &env.id,
        "one new connection after SIGCONT",
        WAIT + HEARTBEAT,
        |c| c.len() == 1 && c[0]["connection_id"] != old.as_str(),
    )
    .await?;
    let reply = env.get("/greet/awake").await?;
    ensure_eq!(reply.status, 200, "GET /greet/awake after SIGCONT");
    Ok(())
}

/// Starts `n` requests for `/slow/{ms}` and waits until the gateway counts them in flight on
/// connection `connection_id`.
async fn start_slow(
    env_client: &http::Client,
    gw: &crate::procs::Gateway,
    worker_id: &str,
    connection_id: &str,
    n: usize,
    ms: u64,
) -> Outcome<tokio::task::JoinHandle<Vec<Outcome<http::Reply>>>> {
    let urls: Vec<String> = (0..n).map(|_| gw.url(&format!("/slow/{ms}"))).collect();
    let client = env_client.clone();
    let running =
        tokio::spawn(async move { join_all(urls.iter().map(|u| http::get(&client, u))).await });
    wait_connections(
        env_client,
        gw,
        worker_id,
        &format!("{n} requests in flight"),
        WAIT,
        |c| {
            c.iter()
                .any(|c| c["connection_id"] == connection_id && c["in_flight"] == json!(n))
        },
    )
    .await?;
    Ok(running)
}

/// Waits for the requests [`start_slow`] started: each must be a complete `/slow/{ms}`
/// answer. Returns their JSON.
async fn finish_slow(
    running: tokio::task::JoinHandle<Vec<Outcome<http::Reply>>>,
    ms: u64,
) -> Outcome<Vec<serde_json::Value>> {
    let replies = running
        .await
        .map_err(|e| format!("in-flight requests: {e}"))?;
    let mut answers = Vec::new();
    for (i, r) in replies.into_iter().enumerate() {
        let r = r?;
        ensure_eq!(r.status, 200, "in-flight request {i}: {}", r.text());
        let got = r.json()?;
        ensure_eq!(got["slept_ms"], json!(ms), "in-flight request {i}");
        answers.push(got);
    }
    Ok(answers)
}

async fn worker_drain(ctx: Ctx) -> Outcome<()> {
    const SLOW_MS: u64 = 1500;
    let gw = ctx.gateway().await?;
    let client = http::client();
    let id = ctx.worker_id();
    let (mut a, a_conn) = ctx
        .connect_worker(&gw, &[("VYX_CONFORMANCE_REPLICA", "a".into())])
        .await?;
    let in_flight = start_slow(&client, &gw, &id, &a_conn, 3, SLOW_MS).await?;
    let _b = ctx.spawn_worker(&gw, &[("VYX_CONFORMANCE_REPLICA", "b".into())])?;
    wait_connections(&client, &gw, &id, "replica b", WAIT, |c| c.len() == 2).await?;

    a.signal(libc::SIGTERM)?;
    wait_connections(&client, &gw, &id, "replica a draining", WAIT, |c| {
        c.iter()
            .any(|c| c["connection_id"] == a_conn.as_str() && c["draining"] == json!(true))
    })
    .await?;
    // New requests while a drains: all to b.
    for i in 0..10 {
        let reply = http::get(&client, &gw.url("/slow/1")).await?;
        ensure_eq!(reply.status, 200, "new request {i} during the drain");
        ensure_eq!(
            reply.json()?["replica"],
            json!("b"),
            "replica of new request {i} during the drain"
        );
    }
    for (i, got) in finish_slow(in_flight, SLOW_MS).await?.iter().enumerate() {
        ensure_eq!(
            got["replica"],
            json!("a"),
            "replica of in-flight request {i}"
        );
    }
    let status = a.wait_exit(WAIT).await?;
    ensure_eq!(
        status.code(),
        Some(0),
        "exit code of the drained worker (stderr: {})",
        a.stderr.tail(10)
    );
    wait_connections(&client, &gw, &id, "only replica b left", WAIT, |c| {
        c.len() == 1 && c[0]["connection_id"] != a_conn.as_str()
    })
    .await?;
    Ok(())
}

async fn gateway_drain(ctx: Ctx) -> Outcome<()> {
    const SLOW_MS: u64 = 1000;
    let mut env = ctx.env().await?;
    let addr = env.gw.addr;
    let in_flight = start_slow(
        &env.client,
        &env.gw,
        &env.id,
        &env.connection_id,
        2,
        SLOW_MS,
    )
    .await?;
    let from = env.worker.stdout.len();
    let drain_at = Instant::now();
    env.gw.signal(libc::SIGTERM)?;
    finish_slow(in_flight, SLOW_MS).await?;
    let status = env.gw.wait_exit(WAIT).await?;
    ensure_eq!(status.code(), Some(0), "exit code of the drained gateway");
    // The worker did not ask for this drain: it retries.
    env.worker.wait_state(from, "reconnecting", WAIT).await?;
    let gw = ctx.gateway_at(addr).await?;
    let bound = reconnect_bound(drain_at.elapsed()) + ALLOWANCE;
    wait_connections(&env.client, &gw, &env.id, "re-registration", bound, |c| {
        c.len() == 1
    })
    .await
    .map_err(|e| format!("{e} (bound {bound:?})"))?;
    let reply = http::get(&env.client, &gw.url("/greet/again")).await?;
    ensure_eq!(reply.status, 200, "GET /greet/again on the new gateway");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_follows_the_schedule() {
        // Earliest retries: 50, 150, 350, 750, 1550, 3150 ms after the loss.
        let ms = |d: u64| reconnect_bound(Duration::from_millis(d)).as_millis();
        assert_eq!(ms(0), 100);
        assert_eq!(ms(50), 100);
        assert_eq!(ms(51), 200);
        assert_eq!(ms(150), 200);
        assert_eq!(ms(151), 400);
        assert_eq!(ms(751), 1600);
        assert_eq!(ms(3151), 6400);
        assert_eq!(ms(600_000), 10_000);
    }
}

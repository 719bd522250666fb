//! A worker on two gateways at once (PROTOCOL.md §9.1): `VYX_CONNECT` lists both.

use super::{wait_connections, Ctx, Scenario};
use crate::check::{fail, Outcome};
use crate::ensure_eq;
use crate::http;
use crate::procs::{Gateway, Worker, WAIT};

pub fn scenarios() -> Vec<Scenario> {
    crate::scenarios![
        "two gateways: a session on each, either one killed, it comes back" => two_gateways,
    ]
}

/// Waits until `gw` lists one connection of the worker, then gets a greeting through it.
async fn serves_through(ctx: &Ctx, gw: &Gateway, which: &str) -> Outcome<()> {
    let client = http::client();
    let what = format!("the worker's session on gateway {which}");
    wait_connections(&client, gw, &ctx.worker_id(), &what, WAIT, |c| c.len() == 1).await?;
    let reply = http::get(&client, &gw.url(&format!("/greet/{which}"))).await?;
    ensure_eq!(
        reply.status,
        200,
        "GET /greet/{which} through gateway {which}"
    );
    Ok(())
}

async fn two_gateways(ctx: Ctx) -> Outcome<()> {
    let a = ctx.gateway().await?;
    let b = ctx.gateway().await?;
    let connect = format!("{},{}", a.ws_url(), b.ws_url());
    let worker = Worker::spawn(&ctx.worker, &connect, &ctx.worker_id(), &[])?;
    serves_through(&ctx, &a, "a").await?;
    serves_through(&ctx, &b, "b").await?;

    let addr_a = a.addr;
    a.kill().await?;
    serves_through(&ctx, &b, "b").await?;
    let a = ctx.gateway_at(addr_a).await?;
    serves_through(&ctx, &a, "a").await?;

    let addr_b = b.addr;
    b.kill().await?;
    serves_through(&ctx, &a, "a").await?;
    let b = ctx.gateway_at(addr_b).await?;
    serves_through(&ctx, &b, "b").await?;

    // One gateway served all along: the worker's own state never left `connected`.
    let states: Vec<String> = worker
        .stdout
        .tail(worker.stdout.len())
        .lines()
        .filter(|l| !l.starts_with("state connecting"))
        .map(str::to_owned)
        .collect();
    if states.len() != 1 || !states[0].starts_with("state connected ") {
        return fail(format!(
            "the worker's states should be one 'state connected' (one gateway was up all along), got {states:?}"
        ));
    }
    Ok(())
}

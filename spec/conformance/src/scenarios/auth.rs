//! Credentials: a gateway with a `vyx.yaml` declaring the worker and its token.

use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::{connections, Ctx, Scenario};
use crate::check::{fail, Outcome};
use crate::procs::{Gateway, GatewaySetup, Worker, WAIT};
use crate::{ensure, ensure_eq, http};

pub fn scenarios() -> Vec<Scenario> {
    crate::scenarios![
        "wrong token: refused before the upgrade, the worker names the cause" => wrong_token,
    ]
}

/// The environment variable the gateway reads the worker's token from.
const TOKEN_ENV: &str = "VYX_CONFORMANCE_GATEWAY_TOKEN";

fn random_token() -> String {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id());
    let mut rng = vyx_core::backoff::SplitMix64::new(seed);
    format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64())
}

/// What the gateway answers an upgrade with these credentials: status and body.
async fn upgrade_refusal(gw: &Gateway, worker_id: &str, token: &str) -> Outcome<(u16, String)> {
    let mut req = format!("ws://{}/_vyx/register", gw.addr)
        .into_client_request()
        .map_err(|e| e.to_string())?;
    let h = req.headers_mut();
    h.insert("sec-websocket-protocol", HeaderValue::from_static("vyx.1"));
    h.insert(
        "x-vyx-worker-id",
        HeaderValue::from_str(worker_id).map_err(|e| e.to_string())?,
    );
    h.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| e.to_string())?,
    );
    use tokio_tungstenite::tungstenite::Error;
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req)).await {
        Ok(Err(Error::Http(resp))) => Ok((
            resp.status().as_u16(),
            String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default())
                .trim()
                .to_owned(),
        )),
        Ok(Err(e)) => fail(format!("expected an HTTP refusal, got {e}")),
        Ok(Ok(_)) => fail("the gateway accepted a wrong token"),
        Err(_) => fail(format!("no answer to the upgrade within {WAIT:?}")),
    }
}

/// The worker must stop by itself, fail, and name the refusal: its status and the
/// gateway's sentence.
async fn refused_worker(mut worker: Worker, status: u16, reason: &str, what: &str) -> Outcome<()> {
    let exit = worker
        .wait_exit(WAIT)
        .await
        .map_err(|e| format!("{what}: the worker kept going after the refusal: {e}"))?;
    ensure!(
        !exit.success(),
        "{what}: the refused worker exited with {exit}"
    );
    worker.wait_state(0, "failed", WAIT).await?;
    let errors = worker.stderr.tail(50);
    let line = errors
        .lines()
        .find(|l| l.starts_with("error:"))
        .ok_or_else(|| format!("{what}: no 'error:' line on stderr:\n{errors}"))?;
    ensure!(
        line.contains(&status.to_string()) && line.contains(reason),
        "{what}: the error does not name HTTP {status} and the gateway's reason {reason:?}: {line}"
    );
    Ok(())
}

async fn wrong_token(ctx: Ctx) -> Outcome<()> {
    let token = random_token();
    let id = ctx.worker_id();
    let yaml =
        format!("workers:\n  - id: \"{id}\"\n    mode: remote\n    token_env: {TOKEN_ENV}\n");
    let env = [(TOKEN_ENV, token.clone())];
    let gw = ctx
        .gateway_with(GatewaySetup {
            config: Some(&yaml),
            env: &env,
        })
        .await?;
    let client = http::client();

    // The right token is accepted (the file is not refusing everyone).
    let (right, _) = ctx
        .connect_worker(&gw, &[("VYX_TOKEN", token.clone())])
        .await?;
    drop(right);
    super::wait_connections(&client, &gw, &id, "the worker gone", WAIT, |c| c.is_empty()).await?;

    let wrong = format!("{token}-wrong");
    let (status, reason) = upgrade_refusal(&gw, &id, &wrong).await?;
    ensure_eq!(status, 403, "status of an upgrade with a wrong token");
    ensure!(!reason.is_empty(), "the 403 has no reason");
    ensure!(
        !reason.contains(&token) && !reason.contains(&wrong),
        "the refusal shows a token: {reason:?}"
    );
    let worker = ctx.spawn_worker(&gw, &[("VYX_TOKEN", wrong)])?;
    refused_worker(worker, status, &reason, "wrong token").await?;

    // An id the file does not declare is refused too, with its own reason.
    let undeclared = format!("{id}-undeclared");
    let (status, reason) = upgrade_refusal(&gw, &undeclared, &token).await?;
    ensure_eq!(status, 403, "status of an upgrade with an undeclared id");
    let worker = Worker::spawn(
        &ctx.worker,
        &gw.ws_url(),
        &undeclared,
        &[("VYX_TOKEN", token)],
    )?;
    refused_worker(worker, status, &reason, "undeclared worker id").await?;

    ensure_eq!(
        connections(&client, &gw, &id).await?.len(),
        0,
        "connections left registered"
    );
    Ok(())
}

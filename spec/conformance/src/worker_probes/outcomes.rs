//! One row per case of `spec/vectors/retry.json`: the scripted gateway ends the worker's
//! first attempt the way the case says, and the worker must retry (a second attempt comes)
//! or stop (it exits non-zero with an `error:` line naming the cause, and dials no more).

use serde_json::Value;
use vyx_core::frame::Frame;
use vyx_core::handshake::ErrorMessage;

use super::{Rig, WorkerProbe};
use crate::check::{fail, Outcome};
use crate::ensure_eq;
use crate::procs::WAIT;
use crate::scenarios::Ctx;

pub fn probes(file: &Value) -> Outcome<Vec<WorkerProbe>> {
    let Some(cases) = file["cases"].as_array() else {
        return fail("retry.json has no \"cases\" list");
    };
    Ok(cases
        .iter()
        .map(|c| {
            let case = c.clone();
            let verdict = if c["retry"] == true {
                "retries"
            } else {
                "stops"
            };
            let name = format!("outcome {} -> {verdict}", c["name"].as_str().unwrap_or("?"));
            WorkerProbe::new(name, move |ctx| run(ctx, case.clone()))
        })
        .collect())
}

/// The text the scripted gateway gives as its reason (HTTP body, ERROR message, close
/// reason): a stopping worker's error must name it.
pub const REASON: &str = "conformance: scripted refusal";

/// How long a worker may take to close after an invalid WELCOME.
const WELCOME_ANSWER: std::time::Duration = std::time::Duration::from_secs(5);

async fn run(ctx: Ctx, case: Value) -> Outcome<()> {
    let mut rig = Rig::start(&ctx).await?;
    let r = async {
        let outcome = &case["outcome"];
        let attempt = rig.gw.attempt(WAIT).await?;
        if let Some(status) = outcome["http_status"].as_u64() {
            attempt.refuse(status as u16, REASON).await?;
        } else if outcome["upgrade"] == "no_subprotocol" {
            attempt.accept_without_subprotocol().await?;
        } else if outcome["upgrade"] == "dropped" {
            drop(attempt);
        } else if let Some(code) = outcome["close"].as_u64() {
            let code = code as u16;
            let mut s = attempt.accept().await?;
            if outcome["phase"] == "connected" {
                s.welcome().await?;
            }
            if code >= 4000 {
                s.send(Frame::Error(ErrorMessage {
                    code,
                    message: REASON.into(),
                }))
                .await?;
            }
            // A close reason of its own when the case names one: the worker's error must
            // name the ERROR's message, not the (possibly cut) close reason.
            s.close(code, outcome["close_reason"].as_str().unwrap_or(REASON))
                .await?;
            // The closing handshake completes before the socket goes (§2.1).
            let _ = s.close_code(WAIT).await;
        } else if let Some(text) = outcome["welcome"].as_str() {
            let mut s = attempt.accept().await?;
            s.welcome_raw(text).await?;
            let want = case["worker_closes"].as_u64().unwrap_or(0);
            // It answers a WELCOME at once; one it accepts would be waited for in vain.
            let got = s.close_code(WELCOME_ANSWER).await?;
            ensure_eq!(
                u64::from(got),
                want,
                "the worker's close code for this WELCOME"
            );
        } else {
            return fail(format!("unknown outcome {outcome}"));
        }
        if case["retry"] == true {
            rig.gw.attempt(WAIT).await.map(drop)
        } else {
            let names: Vec<String> = case["error_names"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(|n| n.replace("{reason}", REASON))
                        .collect()
                })
                .unwrap_or_default();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            rig.stops_with(&names).await
        }
    }
    .await;
    rig.explain(r)
}

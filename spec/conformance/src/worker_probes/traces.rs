//! Replays the stream traces of `spec/vectors/streams.json` against the real worker: the
//! scripted gateway sends each `send` frame and checks each `expect` against what comes
//! back (the format is in `spec/vectors/README.md`).

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use vyx_core::error::ResetCode;
use vyx_core::frame::{Data, Frame, Reset, Window};
use vyx_core::handshake::Drain;
use vyx_core::limits::MAX_FRAME_SIZE;

use super::{request, Rig, Session, WorkerProbe};
use crate::check::{fail, Outcome};
use crate::procs::WAIT;
use crate::scenarios::Ctx;
use crate::{ensure, ensure_eq};

pub fn probes(file: &Value) -> Outcome<Vec<WorkerProbe>> {
    let Some(traces) = file["traces"].as_array() else {
        return fail("streams.json has no \"traces\" list");
    };
    Ok(traces
        .iter()
        .map(|t| {
            let trace = t.clone();
            let name = format!(
                "trace {} (§{})",
                t["name"].as_str().unwrap_or("?"),
                t["section"].as_str().unwrap_or("?")
            );
            WorkerProbe::new(name, move |ctx| replay(ctx, trace.clone()))
        })
        .collect())
}

async fn replay(ctx: Ctx, trace: Value) -> Outcome<()> {
    let rig = Rig::start(&ctx).await?;
    let r = async {
        let mut s = rig.session().await?;
        let mut w = s.welcome_with(10_000, vyx_core::limits::INITIAL_WINDOW);
        if let Some(n) = trace["welcome"]["initial_window"].as_u64() {
            w.initial_window = n as u32;
        }
        if let Some(n) = trace["welcome"]["max_concurrency"].as_u64() {
            w.max_concurrency = n as u32;
        }
        s.send(Frame::Welcome(w)).await?;
        let mut player = Player {
            ended_at_head: Vec::new(),
        };
        let steps = trace["steps"].as_array().cloned().unwrap_or_default();
        for (i, step) in steps.iter().enumerate() {
            player
                .step(&mut s, step)
                .await
                .map_err(|e| format!("step {i} {step}: {e}"))?;
        }
        Ok(())
    }
    .await;
    rig.explain(r)
}

struct Player {
    /// Streams whose RESPONSE carried END_STREAM.
    ended_at_head: Vec<u32>,
}

fn stream_of(f: &Value) -> Outcome<u32> {
    match f["stream_id"].as_u64() {
        Some(id) => Ok(id as u32),
        None => fail("no stream_id"),
    }
}

fn reset_code(name: &str) -> Outcome<u32> {
    Ok(match name {
        "no_error" => ResetCode::NoError,
        "cancel" => ResetCode::Cancel,
        "handler_error" => ResetCode::HandlerError,
        "timeout" => ResetCode::Timeout,
        "refused" => ResetCode::Refused,
        "protocol_error" => ResetCode::ProtocolError,
        "flow_control" => ResetCode::FlowControl,
        other => return fail(format!("unknown RESET code name {other:?}")),
    } as u32)
}

/// The bytes a DATA description gives: `data` (UTF-8 text) or `pattern` `[offset, length]`
/// (byte i is (offset + i) mod 251).
fn body_of(f: &Value) -> Option<Vec<u8>> {
    if let Some(t) = f["data"].as_str() {
        return Some(t.as_bytes().to_vec());
    }
    let p = f["pattern"].as_array()?;
    let (offset, len) = (p[0].as_u64()?, p[1].as_u64()?);
    Some((offset..offset + len).map(|i| (i % 251) as u8).collect())
}

fn unhex(s: &str) -> Outcome<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return fail(format!("odd hex length: {s}"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| format!("hex {s}: {e}")))
        .collect()
}

impl Player {
    async fn step(&mut self, s: &mut Session, step: &Value) -> Outcome<()> {
        if let Some(f) = step.get("send") {
            return self.send(s, f).await;
        }
        if let Some(f) = step.get("expect") {
            return self.expect(s, f).await;
        }
        if let Some(ms) = step["quiet_ms"].as_u64() {
            return s.quiet(Duration::from_millis(ms)).await;
        }
        fail("unknown step")
    }

    async fn send(&mut self, s: &mut Session, f: &Value) -> Outcome<()> {
        if let Some(hex) = f["hex"].as_str() {
            return s.send_msg(Message::Binary(unhex(hex)?.into())).await;
        }
        if let Some(text) = f["text"].as_str() {
            return s.send_msg(Message::Text(text.into())).await;
        }
        if let Some(n) = f["zeros"].as_u64() {
            let n = n as usize;
            if n > MAX_FRAME_SIZE {
                return s.send_oversized(n).await;
            }
            return s.send_msg(Message::Binary(vec![0u8; n].into())).await;
        }
        let frame = match f["type"].as_str().unwrap_or("") {
            "REQUEST" => {
                let route = f["route"].as_str().unwrap_or("");
                let params: Vec<(String, String)> = f["params"]
                    .as_array()
                    .map(|ps| {
                        ps.iter()
                            .map(|p| {
                                let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
                                (s(&p[0]), s(&p[1]))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let params: Vec<(&str, &str)> = params
                    .iter()
                    .map(|(a, b)| (a.as_str(), b.as_str()))
                    .collect();
                let target = f["target"].as_str().unwrap_or("/");
                let end = f["end_stream"].as_bool().unwrap_or(false);
                let id = stream_of(f)?;
                if route == "unknown" {
                    let mut req = request(s, id, "GET /status/{code}", target, &params, end)?;
                    if let Frame::Request(r) = &mut req {
                        r.route_id = s.unknown_route_id();
                        r.params.clear();
                    }
                    req
                } else {
                    request(s, id, route, target, &params, end)?
                }
            }
            "DATA" => Frame::Data(Data {
                stream_id: stream_of(f)?,
                end_stream: f["end_stream"].as_bool().unwrap_or(false),
                data: Bytes::from(body_of(f).unwrap_or_default()),
            }),
            "WINDOW" => Frame::Window(Window {
                stream_id: stream_of(f)?,
                increment: f["increment"].as_u64().unwrap_or(0) as u32,
            }),
            "RESET" => Frame::Reset(Reset {
                stream_id: stream_of(f)?,
                code: reset_code(f["code"].as_str().unwrap_or(""))?,
                reason: "conformance trace".into(),
            }),
            "DRAIN" => Frame::Drain(Drain {
                reason: "conformance trace".into(),
                deadline_ms: f["deadline_ms"].as_u64().unwrap_or(10_000),
            }),
            other => return fail(format!("cannot send a {other:?} frame")),
        };
        s.send(frame).await
    }

    /// The worker's next frame, its WINDOW frames skipped (their timing is its choice).
    async fn next(&mut self, s: &mut Session) -> Outcome<Frame> {
        loop {
            match s.next_frame().await? {
                Frame::Window(_) => {}
                f => return Ok(f),
            }
        }
    }

    async fn expect(&mut self, s: &mut Session, f: &Value) -> Outcome<()> {
        if let Some(code) = f["close"].as_u64() {
            let got = s.close_code(WAIT).await?;
            ensure_eq!(u64::from(got), code, "the worker's close code");
            return Ok(());
        }
        let id = stream_of(f)?;
        match f["type"].as_str().unwrap_or("") {
            "RESPONSE" => match self.next(s).await? {
                Frame::Response(r) if r.stream_id == id => {
                    if let Some(status) = f["status"].as_u64() {
                        ensure_eq!(u64::from(r.status), status, "RESPONSE status");
                    }
                    if let Some(end) = f["end_stream"].as_bool() {
                        ensure_eq!(r.end_stream, end, "RESPONSE END_STREAM");
                    }
                    if r.end_stream {
                        self.ended_at_head.push(id);
                    }
                    Ok(())
                }
                other => fail(format!("expected RESPONSE on stream {id}, got {other:?}")),
            },
            "RESET" => match self.next(s).await? {
                Frame::Reset(r) if r.stream_id == id => {
                    let want = reset_code(f["code"].as_str().unwrap_or(""))?;
                    ensure_eq!(r.code, want, "RESET code");
                    Ok(())
                }
                other => fail(format!("expected RESET on stream {id}, got {other:?}")),
            },
            "DATA" => self.expect_body(s, id, f).await,
            other => fail(format!("cannot expect a {other:?} frame")),
        }
    }

    /// Consecutive DATA frames of the stream whose payloads make up the described body.
    async fn expect_body(&mut self, s: &mut Session, id: u32, f: &Value) -> Outcome<()> {
        let want = body_of(f);
        let want_json = f.get("json").cloned();
        let want_end = f["end_stream"].as_bool();
        let to_end = want_end == Some(true) || (want.is_none() && want_json.is_none());
        if self.ended_at_head.contains(&id) {
            ensure!(
                want.as_ref().is_none_or(Vec::is_empty) && want_json.is_none(),
                "the response ended with its head; expected a body"
            );
            return Ok(());
        }
        let mut got = Vec::new();
        let mut ended = false;
        loop {
            if ended {
                break;
            }
            if !to_end && want.as_ref().is_some_and(|w| got.len() >= w.len()) {
                break;
            }
            match self.next(s).await? {
                Frame::Data(d) if d.stream_id == id => {
                    got.extend_from_slice(&d.data);
                    ended = d.end_stream;
                }
                other => {
                    return fail(format!(
                        "expected DATA on stream {id} ({} bytes so far), got {other:?}",
                        got.len()
                    ))
                }
            }
        }
        if let Some(w) = want {
            ensure!(
                got == w,
                "body of stream {id}: expected {} bytes {:?}, got {} bytes {:?}",
                w.len(),
                String::from_utf8_lossy(&w[..w.len().min(64)]),
                got.len(),
                String::from_utf8_lossy(&got[..got.len().min(64)])
            );
        }
        if let Some(j) = want_json {
            let v: Value = serde_json::from_slice(&got)
                .map_err(|e| format!("body of stream {id} is not JSON: {e}"))?;
            ensure_eq!(v, j, "JSON body of stream {id}");
        }
        if let Some(end) = want_end {
            ensure_eq!(
                ended,
                end,
                "END_STREAM at the end of the body of stream {id}"
            );
        }
        Ok(())
    }
}

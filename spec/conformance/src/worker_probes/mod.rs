//! Worker-side probes: the runner plays a scripted gateway to each language's conformance
//! worker and checks the worker's side of the protocol. Every probe is a row of the matrix
//! in every language's column. Some rows come from the behavioural vectors: one per stream
//! trace of `spec/vectors/streams.json` and one per outcome of `spec/vectors/retry.json`.

mod outcomes;
mod traces;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use vyx_core::backoff::envelope_ms;
use vyx_core::frame::{Frame, Request};

use crate::check::{fail, Outcome};
use crate::procs::{Worker, WorkerCommand, WAIT};
use crate::scenarios::Ctx;
use crate::{ensure, ensure_eq};
pub use vyx_scripted_gateway::{Event, ScriptedGateway, Session};

type BoxRun = Arc<dyn Fn(Ctx) -> Pin<Box<dyn Future<Output = Outcome<()>> + Send>> + Send + Sync>;

/// One row of the worker-probe section of the matrix.
pub struct WorkerProbe {
    pub name: String,
    pub run: BoxRun,
}

impl WorkerProbe {
    fn new<F, Fut>(name: impl Into<String>, f: F) -> WorkerProbe
    where
        F: Fn(Ctx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome<()>> + Send + 'static,
    {
        WorkerProbe {
            name: format!("worker: {}", name.into()),
            run: Arc::new(move |ctx| Box::pin(f(ctx))),
        }
    }
}

/// Every worker probe, in matrix order. The vector-driven rows are read from `repo`; a file
/// that cannot be read is one failing row.
pub fn all(repo: &Path) -> Vec<WorkerProbe> {
    let mut v = vec![
        WorkerProbe::new(
            "upgrade request and HELLO well-formed (§2.2, §3.8)",
            hello_well_formed,
        ),
        WorkerProbe::new(
            "sends nothing before WELCOME (§2.3)",
            nothing_before_welcome,
        ),
        WorkerProbe::new(
            "no WELCOME within the handshake timeout -> closes 4007, retries (§2.3)",
            no_welcome,
        ),
        WorkerProbe::new("answers ping with pong (§2.1)", answers_ping),
        WorkerProbe::new("answers a ping before WELCOME (§2.1)", ping_before_welcome),
        WorkerProbe::new("echoes a close with its code (§2.1)", echoes_close),
        WorkerProbe::new(
            "REQUEST past its cap: RESET refused or served, others unaffected (§6)",
            beyond_cap,
        ),
        WorkerProbe::new(
            "SIGTERM: DRAIN, in-flight finish, answers 1000, exits 0 (§7)",
            sigterm_drain,
        ),
        WorkerProbe::new(
            "silent gateway -> closes 4009 after ~3 intervals (§7)",
            silent_gateway,
        ),
        WorkerProbe::new(
            "its own stall is one interval, not a dead gateway (§7)",
            own_stall,
        ),
        WorkerProbe::new(
            "backoff: gaps between refused upgrades in the envelope (§9)",
            backoff,
        ),
        WorkerProbe::new(
            "WELCOME connections 2: a second connection, the same HELLO, both served (§9.1)",
            holds_the_connections_asked_for,
        ),
    ];
    match load(repo, "streams.json").and_then(|f| traces::probes(&f)) {
        Ok(rows) => v.extend(rows),
        Err(e) => v.push(WorkerProbe::new(
            "stream traces (streams.json)",
            move |_| {
                let e = e.clone();
                async move { fail(e) }
            },
        )),
    }
    match load(repo, "retry.json").and_then(|f| outcomes::probes(&f)) {
        Ok(rows) => v.extend(rows),
        Err(e) => v.push(WorkerProbe::new("retry or stop (retry.json)", move |_| {
            let e = e.clone();
            async move { fail(e) }
        })),
    }
    v
}

fn load(repo: &Path, name: &str) -> Outcome<Value> {
    let path = repo.join("spec/vectors").join(name);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Starts the language's worker once against a scripted gateway, before its column runs:
/// it must dial and send HELLO within `timeout`. A worker that exits first (not built, a
/// Node addon missing) or never dials fails here once, with its exit status, its last
/// stderr lines and the manifest's build command, instead of every row of its column
/// waiting out its own timeout (issue 17 item 11: 20 minutes without a word).
pub async fn preflight(command: &WorkerCommand, worker_id: &str, timeout: Duration) -> Outcome<()> {
    let gw = ScriptedGateway::bind().await?;
    let mut worker = Worker::spawn(command, &gw.url(), worker_id, &[])
        .map_err(|e| format!("{e}; build it with: {}", command.build))?;
    let why = tokio::select! {
        // An attempt already in the listener's backlog counts, whatever the process did next.
        biased;
        attempt = gw.attempt(timeout) => match attempt {
            Ok(a) => match a.accept().await {
                Ok(_) => return Ok(()),
                Err(e) => format!("it connected but did not send HELLO: {e}"),
            },
            Err(e) => e,
        },
        // Longer than the attempt's wait: a live worker that never dials fails above.
        status = worker.wait_exit(timeout + WAIT) => match status {
            Ok(status) => format!("it exited ({status}) before it connected"),
            Err(e) => e,
        },
    };
    fail(format!(
        "the worker cannot start: {why}; stderr:\n{}\nbuild it with: {}",
        worker.stderr.tail(5),
        command.build
    ))
}

/// A scripted gateway, and the language's worker dialling it.
pub struct Rig {
    pub gw: ScriptedGateway,
    pub worker: Worker,
    /// The manifest's build command, for a worker that exits before it connects.
    build: String,
}

impl Rig {
    pub async fn start(ctx: &Ctx) -> Outcome<Rig> {
        let gw = ScriptedGateway::bind().await?;
        let worker = Worker::spawn(&ctx.worker, &gw.url(), &ctx.worker_id(), &[])?;
        Ok(Rig {
            gw,
            worker,
            build: ctx.worker.build.clone(),
        })
    }

    /// Adds the worker's last stderr lines to a failure.
    pub fn explain<T>(&self, r: Outcome<T>) -> Outcome<T> {
        r.map_err(|e| format!("{e}; worker stderr:\n{}", self.worker.stderr.tail(8)))
    }

    /// The next attempt, upgraded, HELLO read; a worker that exits first fails at once.
    pub async fn session(&self) -> Outcome<Session> {
        tokio::select! {
            biased;
            attempt = self.gw.attempt(WAIT) => attempt?.accept().await,
            () = self.worker.stdout.ended() => fail(format!(
                "the worker exited before it connected (build it with: {})",
                self.build
            )),
        }
    }

    /// The next attempt, upgraded and welcomed.
    pub async fn welcomed(&self) -> Outcome<Session> {
        let mut s = self.session().await?;
        s.welcome().await?;
        Ok(s)
    }

    /// The worker exits with a non-zero status and an `error:` line on stderr containing
    /// every one of `names`, and does not connect again.
    pub async fn stops_with(&mut self, names: &[&str]) -> Outcome<()> {
        let since = Instant::now();
        let status = tokio::select! {
            status = self.worker.wait_exit(WAIT) => status?,
            again = self.gw.attempt(WAIT) => {
                again?;
                return fail(format!(
                    "the worker connected again {:?} later instead of stopping",
                    since.elapsed()
                ));
            }
        };
        ensure!(
            !status.success(),
            "the worker stopped for good but exited with {status}"
        );
        let (_, line) = self
            .worker
            .stderr
            .wait_for(0, WAIT, "'error: ...' line", |l| l.starts_with("error: "))
            .await?;
        for name in names {
            ensure!(
                line.contains(name),
                "the error line does not name {name:?}: {line:?}"
            );
        }
        // Anything it dialled before exiting is waiting in the listener's backlog.
        self.gw.no_attempt(Duration::from_millis(50)).await
    }
}

/// A REQUEST for `route` (`"METHOD /pattern"` of HELLO) with this target and params.
pub fn request(
    s: &Session,
    stream_id: u32,
    route: &str,
    target: &str,
    params: &[(&str, &str)],
    end_stream: bool,
) -> Outcome<Frame> {
    let method = route.split(' ').next().unwrap_or("GET");
    let method = if method == "*" { "GET" } else { method };
    Ok(Frame::Request(Request {
        stream_id,
        end_stream,
        upgrade: false,
        route_id: s.route_id(route)?,
        method: Bytes::from(method.to_owned()),
        target: Bytes::from(target.to_owned()),
        params: params
            .iter()
            .map(|(k, v)| (Bytes::from(k.to_string()), Bytes::from(v.to_string())))
            .collect(),
        headers: vec![(Bytes::from("host"), Bytes::from("conformance.test"))],
    }))
}

/// Reads the response of `stream_id` (RESPONSE, then DATA to END_STREAM; the worker's
/// WINDOW frames skipped): its status and body. Any other frame fails.
pub async fn response(s: &mut Session, stream_id: u32) -> Outcome<(u16, Vec<u8>)> {
    let status = loop {
        match s.next_frame().await? {
            Frame::Window(_) => {}
            Frame::Response(r) if r.stream_id == stream_id => {
                if r.end_stream {
                    return Ok((r.status, Vec::new()));
                }
                break r.status;
            }
            other => {
                return fail(format!(
                    "expected RESPONSE on stream {stream_id}, got {other:?}"
                ))
            }
        }
    };
    let mut body = Vec::new();
    loop {
        match s.next_frame().await? {
            Frame::Window(_) => {}
            Frame::Data(d) if d.stream_id == stream_id => {
                body.extend_from_slice(&d.data);
                if d.end_stream {
                    return Ok((status, body));
                }
            }
            other => {
                return fail(format!(
                    "expected DATA on stream {stream_id}, got {other:?}"
                ))
            }
        }
    }
}

/// A request the worker must answer: the connection still serves.
async fn serves(s: &mut Session, stream_id: u32) -> Outcome<()> {
    let req = request(
        s,
        stream_id,
        "GET /status/{code}",
        "/status/200",
        &[("code", "200")],
        true,
    )?;
    s.send(req).await?;
    let (status, body) = response(s, stream_id).await?;
    ensure_eq!(
        (status, String::from_utf8_lossy(&body).into_owned()),
        (200, "status 200".to_owned()),
        "GET /status/200 on stream {stream_id}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The hand-written probes
// ---------------------------------------------------------------------------------------

async fn hello_well_formed(ctx: Ctx) -> Outcome<()> {
    let rig = Rig::start(&ctx).await?;
    let r = async {
        let s = rig.session().await?;
        ensure_eq!(
            s.request_path.as_str(),
            "/_vyx/register",
            "upgrade path (§2.2: URL without a path)"
        );
        let header = |n: &str| {
            s.request_headers
                .get_all(n)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect::<Vec<_>>()
        };
        ensure!(
            header("sec-websocket-protocol")
                .iter()
                .flat_map(|v| v.split(','))
                .any(|t| t.trim() == "vyx.1"),
            "vyx.1 not offered: {:?}",
            header("sec-websocket-protocol")
        );
        ensure_eq!(
            header("x-vyx-worker-id"),
            vec![ctx.worker_id()],
            "X-Vyx-Worker-Id"
        );
        ensure_eq!(
            header("authorization"),
            vec!["Bearer conformance-dev-token".to_owned()],
            "Authorization (VYX_TOKEN)"
        );
        ensure!(
            header("sec-websocket-extensions").is_empty(),
            "offers WebSocket extensions (§2.1 SHOULD NOT): {:?}",
            header("sec-websocket-extensions")
        );
        check_control_json(&s.hello_payload, HELLO_KEYS)?;
        let h = s.hello();
        ensure_eq!(h.protocol, 1, "HELLO protocol");
        ensure_eq!(h.worker_id, ctx.worker_id(), "HELLO worker_id");
        let sdk_prefix = format!("vyx-{}/", ctx.lang);
        ensure!(
            h.sdk.starts_with(&sdk_prefix) && h.sdk.len() > sdk_prefix.len(),
            "HELLO sdk {:?} is not {sdk_prefix}<version>",
            h.sdk
        );
        ensure!(!h.instance.is_empty(), "HELLO instance is empty");
        ensure_eq!(
            h.max_concurrency,
            1024,
            "HELLO max_concurrency (the env value)"
        );
        Ok(())
    }
    .await;
    rig.explain(r)
}

const HELLO_KEYS: &[&str] = &[
    "protocol",
    "worker_id",
    "instance",
    "sdk",
    "max_concurrency",
    "routes",
    "labels",
    "features",
];
const ROUTE_KEYS: &[&str] = &["id", "method", "path"];

/// §3.8 for a sender: compact (no insignificant whitespace), raw UTF-8, keys in the listed
/// order (optional ones may be left out), no duplicate keys, no `null`.
fn check_control_json(payload: &[u8], keys: &[&str]) -> Outcome<()> {
    let text = std::str::from_utf8(payload).map_err(|e| format!("HELLO is not UTF-8: {e}"))?;
    let value: Value = serde_json::from_str(text).map_err(|e| format!("HELLO is not JSON: {e}"))?;
    ensure!(!has_null(&value), "HELLO contains null: {text}");
    // serde_json writes compact JSON with raw UTF-8; any other spelling of the same value
    // (spaces, `\u00e9` for `é`, a duplicate key) has another length.
    let compact = serde_json::to_string(&value).expect("serialisable");
    ensure!(
        text.len() == compact.len(),
        "HELLO is not compact JSON with raw UTF-8 and unique keys: {text}"
    );
    for (container, found) in object_keys(text) {
        let want = match container.as_str() {
            "" => keys,
            "routes[]" => ROUTE_KEYS,
            _ => continue,
        };
        let mut at = 0;
        for k in &found {
            match want[at..].iter().position(|x| x == k) {
                Some(i) => at += i + 1,
                None => {
                    return fail(format!(
                        "HELLO {} keys {found:?} are not in the order {want:?} (or repeat one)",
                        if container.is_empty() {
                            "top-level"
                        } else {
                            "route"
                        }
                    ))
                }
            }
        }
    }
    Ok(())
}

fn has_null(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.iter().any(has_null),
        Value::Object(o) => o.values().any(has_null),
        _ => false,
    }
}

/// Every object of a JSON text with its keys in written order, named by where it sits:
/// `""` for the top level, `"routes[]"` for an object in the top-level `routes` array.
fn object_keys(text: &str) -> Vec<(String, Vec<String>)> {
    // Open containers: (name, is_object, index into `out` for objects).
    let mut stack: Vec<(String, bool, usize)> = Vec::new();
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let mut last_key = String::new();
    let mut expect_key = false;
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' | '[' => {
                let name = match stack.last() {
                    None => String::new(),
                    Some((parent, true, _)) if parent.is_empty() => last_key.clone(),
                    Some((parent, true, _)) => format!("{parent}.{last_key}"),
                    Some((parent, false, _)) => format!("{parent}[]"),
                };
                let slot = out.len();
                if c == '{' {
                    out.push((name.clone(), Vec::new()));
                }
                stack.push((name, c == '{', slot));
                expect_key = c == '{';
            }
            '}' | ']' => {
                stack.pop();
            }
            ',' => expect_key = matches!(stack.last(), Some((_, true, _))),
            '"' => {
                let start = i + 1;
                let mut end = text.len();
                while let Some((j, c)) = chars.next() {
                    if c == '\\' {
                        chars.next();
                    } else if c == '"' {
                        end = j;
                        break;
                    }
                }
                if expect_key {
                    let key = text[start..end].to_owned();
                    if let Some((_, true, slot)) = stack.last() {
                        out[*slot].1.push(key.clone());
                    }
                    last_key = key;
                    expect_key = false;
                }
            }
            _ => {}
        }
    }
    out
}

async fn nothing_before_welcome(ctx: Ctx) -> Outcome<()> {
    let rig = Rig::start(&ctx).await?;
    let r = async {
        let mut s = rig.session().await?;
        // An absence can only be watched for a while; a worker that sends something early
        // does it at once, after HELLO. Not even a ping: the heartbeat starts with WELCOME.
        if let Some(event) = s.next_event(Duration::from_millis(500)).await? {
            return fail(format!("sent before WELCOME: {event:?}"));
        }
        s.welcome().await?;
        serves(&mut s, 1).await
    }
    .await;
    rig.explain(r)
}

async fn answers_ping(ctx: Ctx) -> Outcome<()> {
    let rig = Rig::start(&ctx).await?;
    let r = async {
        let mut s = rig.welcomed().await?;
        let payload = Bytes::from_static(b"vyx-conformance-ping");
        s.send_msg(Message::Ping(payload.clone())).await?;
        let deadline = Instant::now() + WAIT;
        loop {
            match s
                .next_event(deadline.saturating_duration_since(Instant::now()))
                .await?
            {
                Some(Event::Pong(p)) if p == payload => break,
                Some(Event::Pong(_) | Event::Ping) => {}
                None => return fail(format!("no pong within {WAIT:?}")),
                Some(other) => return fail(format!("expected a pong, got {other:?}")),
            }
        }
        serves(&mut s, 1).await
    }
    .await;
    rig.explain(r)
}

async fn echoes_close(ctx: Ctx) -> Outcome<()> {
    let rig = Rig::start(&ctx).await?;
    let r = async {
        let mut s = rig.welcomed().await?;
        s.close(4011, "conformance: close echo").await?;
        let code = s.close_code(WAIT).await?;
        ensure_eq!(code, 4011, "the worker's answering close frame");
        Ok(())
    }
    .await;
    rig.explain(r)
}

async fn ping_before_welcome(ctx: Ctx) -> Outcome<()> {
    let rig = Rig::start(&ctx).await?;
    let r = async {
        let mut s = rig.session().await?;
        let payload = Bytes::from_static(b"before-welcome");
        s.send_msg(Message::Ping(payload.clone())).await?;
        match s.next_event(WAIT).await? {
            Some(Event::Pong(p)) if p == payload => {}
            None => return fail(format!("no pong within {WAIT:?}")),
            Some(other) => return fail(format!("expected a pong, got {other:?}")),
        }
        s.welcome().await?;
        serves(&mut s, 1).await
    }
    .await;
    rig.explain(r)
}

/// §2.3 step 5 and §10: 10 s after HELLO without WELCOME the worker closes 4007 and retries.
async fn no_welcome(ctx: Ctx) -> Outcome<()> {
    let rig = Rig::start(&ctx).await?;
    let r = async {
        let attempt = rig.gw.attempt(WAIT).await?;
        // The worker sends HELLO after this, and its timeout runs from HELLO.
        let connected_at = attempt.at;
        let mut s = attempt.accept().await?;
        let timeout = vyx_core::limits::HANDSHAKE_TIMEOUT;
        let code = s.close_code(timeout + WAIT).await?;
        let after = connected_at.elapsed();
        ensure_eq!(code, 4007, "the worker's close code without WELCOME");
        ensure!(
            after + Duration::from_millis(5) >= timeout,
            "closed {after:?} after connecting, before the handshake timeout ({timeout:?})"
        );
        rig.gw.attempt(WAIT).await.map(drop)
    }
    .await;
    rig.explain(r)
}

/// WELCOME lowers the cap to 2; two slow requests hold it; a third is beyond it.
async fn beyond_cap(ctx: Ctx) -> Outcome<()> {
    let rig = Rig::start(&ctx).await?;
    let r = async {
        let mut s = rig.session().await?;
        let mut w = s.welcome_with(10_000, vyx_core::limits::INITIAL_WINDOW);
        w.max_concurrency = 2;
        s.send(Frame::Welcome(w)).await?;
        for id in [1, 3] {
            let req = request(
                &s,
                id,
                "GET /slow/{ms}",
                "/slow/1500",
                &[("ms", "1500")],
                true,
            )?;
            s.send(req).await?;
        }
        s.send(request(
            &s,
            5,
            "GET /status/{code}",
            "/status/200",
            &[("code", "200")],
            true,
        )?)
        .await?;
        // Stream 5 is refused or served, whichever the worker chose; 1 and 3 finish.
        let mut open = vec![1u32, 3, 5];
        let mut bodies: std::collections::HashMap<u32, (u16, Vec<u8>)> = Default::default();
        while !open.is_empty() {
            match s.next_frame().await? {
                Frame::Window(_) => {}
                Frame::Reset(r) if r.stream_id == 5 && open.contains(&5) => {
                    ensure_eq!(r.code, 4, "RESET code on the stream past the cap (refused)");
                    open.retain(|&i| i != 5);
                }
                Frame::Response(r) if open.contains(&r.stream_id) => {
                    bodies.insert(r.stream_id, (r.status, Vec::new()));
                    if r.end_stream {
                        open.retain(|&i| i != r.stream_id);
                    }
                }
                Frame::Data(d)
                    if bodies.contains_key(&d.stream_id) && open.contains(&d.stream_id) =>
                {
                    bodies
                        .get_mut(&d.stream_id)
                        .expect("present")
                        .1
                        .extend_from_slice(&d.data);
                    if d.end_stream {
                        open.retain(|&i| i != d.stream_id);
                    }
                }
                other => return fail(format!("unexpected frame: {other:?}")),
            }
        }
        for id in [1, 3] {
            let (status, body) = bodies.get(&id).cloned().unwrap_or_default();
            ensure_eq!(status, 200, "status of /slow/1500 on stream {id}");
            let json: Value =
                serde_json::from_slice(&body).map_err(|e| format!("stream {id}: {e}"))?;
            ensure_eq!(json["slept_ms"], 1500, "stream {id} body");
        }
        if let Some((status, body)) = bodies.get(&5) {
            ensure_eq!(
                (*status, String::from_utf8_lossy(body).into_owned()),
                (200, "status 200".to_owned()),
                "stream 5, served past the cap"
            );
        }
        serves(&mut s, 7).await
    }
    .await;
    rig.explain(r)
}

/// SIGTERM with a request in flight and another crossing the DRAIN: DRAIN with the grace
/// period, both answered, the gateway's 1000 answered with 1000, exit 0, no reconnect.
async fn sigterm_drain(ctx: Ctx) -> Outcome<()> {
    let mut rig = Rig::start(&ctx).await?;
    let r = async {
        let mut s = rig.welcomed().await?;
        s.send(request(
            &s,
            1,
            "GET /slow/{ms}",
            "/slow/500",
            &[("ms", "500")],
            true,
        )?)
        .await?;
        rig.worker.signal(libc::SIGTERM)?;
        // Sent before the gateway has read any DRAIN: it crosses the DRAIN, and is served.
        s.send(request(
            &s,
            3,
            "GET /status/{code}",
            "/status/200",
            &[("code", "200")],
            true,
        )?)
        .await?;
        let mut drain = None;
        let mut open = vec![1u32, 3];
        let mut statuses = Vec::new();
        while !open.is_empty() || drain.is_none() {
            match s.next_frame().await? {
                Frame::Window(_) => {}
                Frame::Drain(d) if drain.is_none() => drain = Some(d),
                Frame::Response(r) if open.contains(&r.stream_id) => {
                    statuses.push((r.stream_id, r.status));
                    if r.end_stream {
                        open.retain(|&i| i != r.stream_id);
                    }
                }
                Frame::Data(d) if open.contains(&d.stream_id) => {
                    if d.end_stream {
                        open.retain(|&i| i != d.stream_id);
                    }
                }
                other => return fail(format!("unexpected frame while draining: {other:?}")),
            }
        }
        statuses.sort();
        ensure_eq!(
            statuses,
            vec![(1, 200), (3, 200)],
            "the answers while draining"
        );
        let drain = drain.expect("seen");
        ensure!(
            drain.deadline_ms >= 5000,
            "DRAIN deadline_ms {} is below the contract's 5 s grace",
            drain.deadline_ms
        );
        s.close(1000, "drained").await?;
        let code = s.close_code(WAIT).await?;
        ensure_eq!(code, 1000, "the worker's answer to the gateway's 1000");
        let status = rig.worker.wait_exit(WAIT).await?;
        ensure!(status.success(), "the drained worker exited with {status}");
        rig.gw.no_attempt(Duration::from_millis(50)).await
    }
    .await;
    rig.explain(r)
}

/// The heartbeat the heartbeat probes announce.
const HEARTBEAT: Duration = Duration::from_millis(400);

/// The gateway stops sending anything (its pongs included): the worker closes 4009 between
/// 2 and 4 intervals later (§7: dead after 3 silent ticks; the silence may begin up to one
/// interval before a tick), plus slack for a busy machine.
async fn silent_gateway(ctx: Ctx) -> Outcome<()> {
    let rig = Rig::start(&ctx).await?;
    let r = async {
        let mut s = rig.session().await?;
        let w = s.welcome_with(
            HEARTBEAT.as_millis() as u32,
            vyx_core::limits::INITIAL_WINDOW,
        );
        s.send(Frame::Welcome(w)).await?;
        // Alive while answered: two of its pings come and are answered (tungstenite answers
        // them while we read).
        let mut pings = 0;
        while pings < 2 {
            match s.next_event(WAIT).await? {
                Some(Event::Ping) => pings += 1,
                Some(Event::Pong(_) | Event::Frame(Frame::Window(_))) => {}
                other => return fail(format!("expected the worker's pings, got {other:?}")),
            }
        }
        s.mute();
        let silent_since = Instant::now();
        let code = s.close_code(HEARTBEAT * 4 + WAIT).await?;
        let after = silent_since.elapsed();
        ensure_eq!(
            code,
            4009,
            "close code of a worker whose gateway went silent"
        );
        let earliest = HEARTBEAT * 2 - Duration::from_millis(20);
        let latest = HEARTBEAT * 4 + Duration::from_millis(2000);
        ensure!(
            after >= earliest && after <= latest,
            "closed {after:?} after the gateway went silent; expected {earliest:?}..={latest:?} \
             (3 silent heartbeat intervals of {HEARTBEAT:?})"
        );
        // And it comes back.
        rig.gw.attempt(WAIT).await.map(drop)
    }
    .await;
    rig.explain(r)
}

/// The worker is stopped (SIGSTOP) for many intervals while the gateway goes on pinging;
/// after SIGCONT it must read what waited in its socket and keep the connection (§7: its
/// own stall counts as one interval at most).
async fn own_stall(ctx: Ctx) -> Outcome<()> {
    let rig = Rig::start(&ctx).await?;
    let r = async {
        let mut s = rig.session().await?;
        let w = s.welcome_with(
            HEARTBEAT.as_millis() as u32,
            vyx_core::limits::INITIAL_WINDOW,
        );
        s.send(Frame::Welcome(w)).await?;
        serves(&mut s, 1).await?;
        rig.worker.signal(libc::SIGSTOP)?;
        let stalled = Instant::now();
        while stalled.elapsed() < HEARTBEAT * 6 {
            s.send_msg(Message::Ping(Bytes::new())).await?;
            tokio::time::sleep(HEARTBEAT / 2).await;
        }
        rig.worker.signal(libc::SIGCONT)?;
        // Watch it for four intervals while pinging it: no close, then it still serves.
        let resumed = Instant::now();
        while resumed.elapsed() < HEARTBEAT * 4 {
            s.send_msg(Message::Ping(Bytes::new())).await?;
            match s.next_event(HEARTBEAT / 2).await? {
                None | Some(Event::Ping | Event::Pong(_)) => {}
                Some(other) => {
                    return fail(format!(
                        "after its own stall of {:?} the worker sent {other:?}",
                        HEARTBEAT * 6
                    ))
                }
            }
        }
        serves(&mut s, 3).await
    }
    .await;
    let _ = rig.worker.signal(libc::SIGCONT);
    rig.explain(r)
}

/// A gateway with a shard per core asks for a connection per shard (§3.8 `connections`,
/// §9.1): the worker opens one more to the same address with the same HELLO, and serves
/// requests on both.
async fn holds_the_connections_asked_for(ctx: Ctx) -> Outcome<()> {
    let rig = Rig::start(&ctx).await?;
    let r = async {
        let mut first = rig.session().await?;
        let mut welcome = first.welcome_with(10_000, vyx_core::limits::INITIAL_WINDOW);
        welcome.connections = 2;
        first.send(Frame::Welcome(welcome)).await?;
        let mut second = rig.session().await?;
        ensure_eq!(
            second.hello(),
            first.hello(),
            "the second connection's HELLO"
        );
        second.welcome().await?;
        serves(&mut first, 1).await?;
        serves(&mut second, 1).await?;
        serves(&mut first, 3).await
    }
    .await;
    rig.explain(r)
}

/// Upgrades refused with 503 this many times.
const REFUSALS: u32 = 6;

async fn backoff(ctx: Ctx) -> Outcome<()> {
    let rig = Rig::start(&ctx).await?;
    let r = async {
        let mut times = Vec::new();
        for _ in 0..REFUSALS {
            let a = rig.gw.attempt(WAIT).await?;
            times.push(a.at);
            a.refuse(503, "conformance: not yet").await?;
        }
        // Gap n follows the (n+1)-th failed attempt: delay(n) in [floor(e/2), e], e =
        // envelope(n). Measured between accepts, a gap also holds the worker's reaction
        // and its next dial, so it is never shorter than the delay.
        let tolerance = Duration::from_millis(5);
        let slack = Duration::from_millis(1000);
        let mut report = Vec::new();
        for (n, pair) in times.windows(2).enumerate() {
            let gap = pair[1] - pair[0];
            let e = envelope_ms(n as u32);
            let lo = Duration::from_millis(e / 2);
            let hi = Duration::from_millis(e);
            report.push(format!("{}ms in [{}, {}]", gap.as_millis(), e / 2, e));
            ensure!(
                gap + tolerance >= lo && gap <= hi + slack,
                "gap {n} after a refused upgrade was {gap:?}; §9 puts delay({n}) in \
                 [{lo:?}, {hi:?}] (allowing {slack:?} for a busy machine); gaps: {report:?}"
            );
        }
        Ok(())
    }
    .await;
    rig.explain(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_json_rules() {
        let ok = br#"{"protocol":1,"worker_id":"a","sdk":"x/1","max_concurrency":4,"routes":[{"id":0,"method":"GET","path":"/"}],"labels":{"k":"v"}}"#;
        check_control_json(ok, HELLO_KEYS).unwrap();
        let spaced = br#"{"protocol": 1,"worker_id":"a","max_concurrency":4,"routes":[]}"#;
        assert!(check_control_json(spaced, HELLO_KEYS).is_err());
        let order = br#"{"worker_id":"a","protocol":1,"max_concurrency":4,"routes":[]}"#;
        assert!(check_control_json(order, HELLO_KEYS).is_err());
        let null = br#"{"protocol":1,"worker_id":"a","sdk":null,"max_concurrency":4,"routes":[]}"#;
        assert!(check_control_json(null, HELLO_KEYS).is_err());
        let dup = br#"{"protocol":1,"protocol":1,"worker_id":"a","max_concurrency":4,"routes":[]}"#;
        assert!(check_control_json(dup, HELLO_KEYS).is_err());
        let route = br#"{"protocol":1,"worker_id":"a","max_concurrency":4,"routes":[{"method":"GET","id":0,"path":"/"}]}"#;
        assert!(check_control_json(route, HELLO_KEYS).is_err());
    }
}

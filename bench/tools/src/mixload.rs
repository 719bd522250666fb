//! The mixed-load client behind `vyx-mixload`: concurrent clients, half over HTTP/1.1 and half
//! over h2c, each sending one request after another, drawn from a weighted mix of the kinds of
//! [`crate::mix`] (GETs, echoed POSTs, streamed downloads, SSE, uploads, and optionally clients
//! that abort mid-upload or mid-download), every answer checked. Each failure is counted by
//! kind, class (status, reset, timeout, wrong body) and reason, and marked *unretryable* when
//! the gateway's retry rules (`spec/PROTOCOL.md`, safe retries) could not have saved it: a
//! non-idempotent request that failed before its answer began once sent, or any answer cut
//! after its head reached the client. Everything else that fails is *unexpected*. A request
//! whose connection closed before any answer is sent again once, as a client would, when it
//! is idempotent, was never sent, or was refused unprocessed by HTTP/2 (counted in
//! `client_retries`).
//!
//! ```no_run
//! # async fn f() {
//! use vyx_bench::mixload::{run, Config};
//! let config = Config::new(vec!["http://127.0.0.1:9000".into()]);
//! let summary = run(config, tokio::time::sleep(std::time::Duration::from_secs(5))).await;
//! assert_eq!(summary.unexpected(), 0);
//! println!("{}", summary.to_json());
//! # }
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};

use crate::mix;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ReqBody = BoxBody<Bytes, BoxError>;
type HttpClient = Client<HttpConnector, ReqBody>;

/// What a client request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `GET greet/{name}`, the JSON checked.
    Get,
    /// `POST echo` with a body of up to 64 KiB, the echo compared.
    Post,
    /// `GET stream/{bytes}`, 64 KiB to 4 MiB, length and SHA-256 checked.
    Download,
    /// `GET events/{n}`, the events counted.
    Sse,
    /// `POST upload`, 256 KiB to 2 MiB streamed, length and SHA-256 checked.
    Upload,
    /// A `POST upload` whose body errors after its first piece: the client goes away mid-body.
    AbortUpload,
    /// A `GET stream` of 16 MiB dropped after its first piece: the client goes away mid-download.
    AbortDownload,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Get,
        Kind::Post,
        Kind::Download,
        Kind::Sse,
        Kind::Upload,
        Kind::AbortUpload,
        Kind::AbortDownload,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Get => "get",
            Kind::Post => "post",
            Kind::Download => "download",
            Kind::Sse => "sse",
            Kind::Upload => "upload",
            Kind::AbortUpload => "abort_upload",
            Kind::AbortDownload => "abort_download",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Idempotent by method (RFC 9110 §9.2.2): the gateway may retry it.
    fn idempotent(self) -> bool {
        matches!(
            self,
            Kind::Get | Kind::Download | Kind::Sse | Kind::AbortDownload
        )
    }
}

/// The default mix: weights of the kinds (aborts off; `scripts/soak` turns them on).
pub const DEFAULT_MIX: [(Kind, u32); 5] = [
    (Kind::Get, 4),
    (Kind::Post, 3),
    (Kind::Download, 1),
    (Kind::Sse, 1),
    (Kind::Upload, 1),
];

/// A route prefix and the kinds its worker serves (`sse` only where `events` exists).
#[derive(Clone, Debug)]
pub struct Target {
    pub prefix: String,
    pub kinds: Vec<Kind>,
}

impl Target {
    /// `PREFIX` or `PREFIX=kind,kind`; `/` is the root (the conformance workers' routes).
    pub fn parse(spec: &str) -> Result<Target, String> {
        let (prefix, kinds) = match spec.split_once('=') {
            Some((p, k)) => {
                let kinds = k
                    .split(',')
                    .map(|n| Kind::parse(n.trim()).ok_or_else(|| format!("unknown kind {n:?}")))
                    .collect::<Result<Vec<_>, _>>()?;
                (p, kinds)
            }
            None => (spec, Kind::ALL.to_vec()),
        };
        Ok(Target {
            prefix: prefix.trim_end_matches('/').to_string(),
            kinds,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    Http1,
    H2c,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::H2c => "h2c",
        }
    }
}

/// How to load.
#[derive(Clone, Debug)]
pub struct Config {
    /// Gateway base URLs (`http://host:port`). Client *i* starts on URL *i* mod n and moves to
    /// the next one when a connection is refused (nothing was sent: always safe), as an L4
    /// balancer's health check would.
    pub urls: Vec<String>,
    /// Concurrent clients; even-numbered ones speak HTTP/1.1, odd-numbered ones h2c (with
    /// `protocols` holding both).
    pub clients: usize,
    pub protocols: Vec<Protocol>,
    pub targets: Vec<Target>,
    /// Weight of each kind; a kind missing here is never sent.
    pub mix: Vec<(Kind, u32)>,
    /// Longest wait for a whole answer; past it the request counts as a timeout.
    pub timeout: Duration,
    /// SSE events per request and the pause between them.
    pub sse_events: u64,
    pub sse_pause: Duration,
    /// Seed of the clients' choices, so a failing run can be repeated.
    pub seed: u64,
}

impl Config {
    /// 8 clients over both protocols, the default mix against the bench worker's [`mix::PREFIX`].
    pub fn new(urls: Vec<String>) -> Config {
        Config {
            urls,
            clients: 8,
            protocols: vec![Protocol::Http1, Protocol::H2c],
            targets: vec![Target {
                prefix: mix::PREFIX.into(),
                kinds: Kind::ALL.to_vec(),
            }],
            mix: DEFAULT_MIX.to_vec(),
            timeout: Duration::from_secs(30),
            sse_events: 10,
            sse_pause: Duration::from_millis(20),
            seed: 1,
        }
    }
}

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    Status,
    Reset,
    Timeout,
    WrongBody,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::Status => "status",
            Class::Reset => "reset",
            Class::Timeout => "timeout",
            Class::WrongBody => "wrong_body",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Failure {
    pub kind: Kind,
    pub class: Class,
    pub reason: String,
    /// The retry rules could not have saved it (see the module docs).
    pub unretryable: bool,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub ok: u64,
    pub failed: u64,
    /// Body bytes checked (sent plus received).
    pub bytes: u64,
    /// The longest request, whole answer read, in milliseconds: what a stall cost.
    pub max_ms: u64,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub elapsed: Duration,
    pub clients: usize,
    pub kinds: BTreeMap<Kind, Counts>,
    pub protocols: BTreeMap<Protocol, Counts>,
    pub failures: BTreeMap<Failure, u64>,
    /// Connections refused on one URL and the request sent to the next.
    pub failovers: u64,
    /// Idempotent requests sent again because their kept-alive connection closed before any
    /// answer (RFC 9112 §9.3.1 allows it; browsers and Go's net/http do it): the race of a
    /// server closing an idle connection as a request goes out on it.
    pub client_retries: u64,
}

impl Summary {
    pub fn ok(&self) -> u64 {
        self.kinds.values().map(|c| c.ok).sum()
    }

    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    pub fn unretryable(&self) -> u64 {
        self.failures
            .iter()
            .filter(|(f, _)| f.unretryable)
            .map(|(_, n)| n)
            .sum()
    }

    /// Failures the retry rules say should not have happened.
    pub fn unexpected(&self) -> u64 {
        self.failed() - self.unretryable()
    }

    pub fn to_json(&self) -> serde_json::Value {
        let counts = |c: &Counts| serde_json::json!({"ok": c.ok, "failed": c.failed, "bytes": c.bytes, "max_ms": c.max_ms});
        let kinds: serde_json::Map<_, _> = self
            .kinds
            .iter()
            .map(|(k, c)| (k.name().to_string(), counts(c)))
            .collect();
        let protocols: serde_json::Map<_, _> = self
            .protocols
            .iter()
            .map(|(p, c)| (p.name().to_string(), counts(c)))
            .collect();
        let failures: Vec<_> = self
            .failures
            .iter()
            .map(|(f, n)| {
                serde_json::json!({
                    "kind": f.kind.name(), "class": f.class.name(), "reason": f.reason,
                    "unretryable": f.unretryable, "count": n,
                })
            })
            .collect();
        serde_json::json!({
            "elapsed_s": (self.elapsed.as_secs_f64() * 10.0).round() / 10.0,
            "clients": self.clients,
            "requests": self.ok() + self.failed(),
            "ok": self.ok(),
            "failed": self.failed(),
            "unexpected": self.unexpected(),
            "unretryable": self.unretryable(),
            "failovers": self.failovers,
            "client_retries": self.client_retries,
            "kinds": kinds,
            "protocols": protocols,
            "failures": failures,
        })
    }

    fn merge(&mut self, other: Summary) {
        for (k, c) in other.kinds {
            add(self.kinds.entry(k).or_default(), c);
        }
        for (p, c) in other.protocols {
            add(self.protocols.entry(p).or_default(), c);
        }
        for (f, n) in other.failures {
            *self.failures.entry(f).or_default() += n;
        }
        self.failovers += other.failovers;
        self.client_retries += other.client_retries;
    }
}

fn add(into: &mut Counts, c: Counts) {
    into.ok += c.ok;
    into.failed += c.failed;
    into.bytes += c.bytes;
    into.max_ms = into.max_ms.max(c.max_ms);
}

/// Runs the load until `stop` resolves; requests in flight then finish (each within
/// `timeout`) before the summary is returned.
pub async fn run(config: Config, stop: impl Future<Output = ()>) -> Summary {
    assert!(!config.urls.is_empty(), "at least one URL");
    assert!(!config.protocols.is_empty(), "at least one protocol");
    let config = Arc::new(config);
    let stopping = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..config.clients)
        .map(|i| tokio::spawn(client(config.clone(), i, stopping.clone())))
        .collect();
    stop.await;
    stopping.store(true, Ordering::SeqCst);
    let mut summary = Summary {
        clients: config.clients,
        ..Summary::default()
    };
    for task in tasks {
        summary.merge(task.await.expect("a client task does not panic"));
    }
    summary.elapsed = started.elapsed();
    summary
}

/// SplitMix64: the mix needs no cryptographic randomness, only a repeatable one, with
/// distinct streams for neighbouring seeds.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn http_client(protocol: Protocol) -> HttpClient {
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_max_idle_per_host(1);
    if protocol == Protocol::H2c {
        b.http2_only(true);
    }
    b.build_http()
}

async fn client(config: Arc<Config>, index: usize, stopping: Arc<AtomicBool>) -> Summary {
    let protocol = config.protocols[index % config.protocols.len()];
    let mut http = http_client(protocol);
    let mut rng = Rng(config.seed.wrapping_mul(1 << 32).wrapping_add(index as u64));
    let mut url = index % config.urls.len();
    let mut summary = Summary::default();
    let total_weight: u32 = config.mix.iter().map(|(_, w)| w).sum();
    while !stopping.load(Ordering::SeqCst) {
        let target = &config.targets[rng.below(config.targets.len() as u64) as usize];
        let Some(kind) = pick(&config.mix, total_weight, target, &mut rng) else {
            break;
        };
        let began = Instant::now();
        let mut retried = false;
        let outcome = loop {
            let base = format!("{}{}", config.urls[url], target.prefix);
            match tokio::time::timeout(config.timeout, one(&http, &base, kind, &config, &mut rng))
                .await
            {
                Err(_) => {
                    break Err(failure(
                        kind,
                        Class::Timeout,
                        "no whole answer in time".into(),
                        false,
                    ))
                }
                Ok(Err(Attempt::Refused)) if config.urls.len() > 1 => {
                    summary.failovers += 1;
                    url = (url + 1) % config.urls.len();
                    // A fresh pool: the refused gateway's connections are gone.
                    http = http_client(protocol);
                }
                Ok(Err(Attempt::Refused)) => {
                    break Err(failure(
                        kind,
                        Class::Reset,
                        "connection refused".into(),
                        false,
                    ))
                }
                Ok(Err(Attempt::Closed(_))) if !retried => {
                    retried = true;
                    summary.client_retries += 1;
                }
                Ok(Err(Attempt::Closed(f) | Attempt::Failed(f))) => break Err(f),
                Ok(Ok(bytes)) => break Ok(bytes),
            }
        };
        let ms = began.elapsed().as_millis() as u64;
        let counts = summary.kinds.entry(kind).or_default();
        let per_protocol = summary.protocols.entry(protocol).or_default();
        counts.max_ms = counts.max_ms.max(ms);
        per_protocol.max_ms = per_protocol.max_ms.max(ms);
        match outcome {
            Ok(bytes) => {
                counts.ok += 1;
                counts.bytes += bytes;
                per_protocol.ok += 1;
                per_protocol.bytes += bytes;
            }
            Err(f) => {
                counts.failed += 1;
                per_protocol.failed += 1;
                *summary.failures.entry(f).or_default() += 1;
            }
        }
    }
    summary
}

fn pick(mix: &[(Kind, u32)], total: u32, target: &Target, rng: &mut Rng) -> Option<Kind> {
    let allowed: u32 = mix
        .iter()
        .filter(|(k, _)| target.kinds.contains(k))
        .map(|(_, w)| w)
        .sum();
    if allowed == 0 || total == 0 {
        return None;
    }
    let mut roll = rng.below(u64::from(allowed)) as u32;
    for &(k, w) in mix.iter().filter(|(k, _)| target.kinds.contains(k)) {
        if roll < w {
            return Some(k);
        }
        roll -= w;
    }
    None
}

enum Attempt {
    /// The connection was refused: nothing was sent.
    Refused,
    /// The connection closed before any answer to an idempotent request, to one never sent,
    /// or to one HTTP/2 refused unprocessed: a client may send it again.
    Closed(Failure),
    Failed(Failure),
}

fn failure(kind: Kind, class: Class, reason: String, unretryable: bool) -> Failure {
    Failure {
        kind,
        class,
        reason,
        unretryable,
    }
}

/// A failure before any answer: unretryable only for a non-idempotent request.
fn before_head(kind: Kind, class: Class, reason: String) -> Attempt {
    Attempt::Failed(failure(kind, class, reason, !kind.idempotent()))
}

/// A failure once the head arrived: the gateway had committed to the answer, no retry exists.
fn after_head(kind: Kind, class: Class, reason: String) -> Attempt {
    Attempt::Failed(failure(kind, class, reason, class == Class::Reset))
}

fn error_reason(e: &(dyn std::error::Error + 'static)) -> String {
    // hyper's top error says "client error (SendRequest)"; the cause says what happened.
    let mut reason = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        reason = s.to_string();
        source = s.source();
    }
    reason
}

/// The connection ended before any answer: hyper's "connection closed before message
/// completed" (the HTTP/1 connection ended with no answer begun; the request may have been
/// processed), or [`unprocessed`].
fn closed_before_answer(e: &(dyn std::error::Error + 'static)) -> bool {
    unprocessed(e)
        || causes(e).any(|s| {
            s.downcast_ref::<hyper::Error>()
                .is_some_and(|h| h.is_incomplete_message())
        })
}

/// An HTTP/2 stream the server refused unprocessed (RFC 9113 §8.7), so a client may send it
/// again whatever its method: past a GOAWAY's last stream id (h2 gives a stream that error
/// only then, or when the request was never sent after the GOAWAY; a stream the connection's
/// end cut gets "broken pipe"), or RESET with REFUSED_STREAM. A draining gateway's GOAWAY
/// crossing a new request: the client's PING ack can overtake the request's HEADERS.
fn unprocessed(e: &(dyn std::error::Error + 'static)) -> bool {
    causes(e).any(|s| {
        s.downcast_ref::<h2::Error>().is_some_and(|h2| {
            h2.is_remote()
                && ((h2.is_go_away() && h2.reason() == Some(h2::Reason::NO_ERROR))
                    || (h2.is_reset() && h2.reason() == Some(h2::Reason::REFUSED_STREAM)))
        })
    })
}

/// `e` and its sources.
fn causes<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |s| s.source())
}

fn full(bytes: Bytes) -> ReqBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// One request, its answer read and checked: the body bytes it moved, or why it failed.
async fn one(
    http: &HttpClient,
    base: &str,
    kind: Kind,
    config: &Config,
    rng: &mut Rng,
) -> Result<u64, Attempt> {
    match kind {
        Kind::Get => {
            let name = format!("n{}", rng.below(1_000_000));
            let body = fetch(
                http,
                kind,
                Method::GET,
                &format!("{base}/greet/{name}"),
                full(Bytes::new()),
            )
            .await?;
            let v: serde_json::Value = serde_json::from_slice(&body.collect_all(kind).await?)
                .map_err(|e| after_head(kind, Class::WrongBody, format!("not JSON: {e}")))?;
            if v["hello"] != name.as_str() {
                return Err(after_head(
                    kind,
                    Class::WrongBody,
                    "greeting names someone else".into(),
                ));
            }
            Ok(0)
        }
        Kind::Post => {
            let n = rng.below(64 << 10) as usize;
            let sent = Bytes::from(mix::stream_slice(rng.below(251), n));
            let body = fetch(
                http,
                kind,
                Method::POST,
                &format!("{base}/echo"),
                full(sent.clone()),
            )
            .await?;
            let got = body.collect_all(kind).await?;
            if got != sent {
                return Err(after_head(
                    kind,
                    Class::WrongBody,
                    format!("echo of {} bytes came back as {}", n, got.len()),
                ));
            }
            Ok(2 * n as u64)
        }
        Kind::Download => {
            let n = DOWNLOAD_SIZES[rng.below(DOWNLOAD_SIZES.len() as u64) as usize];
            let mut body = fetch(
                http,
                kind,
                Method::GET,
                &format!("{base}/stream/{n}"),
                full(Bytes::new()),
            )
            .await?;
            let (len, digest) = body.hash_all(kind).await?;
            if len != n || digest != pattern_digest(n) {
                return Err(after_head(
                    kind,
                    Class::WrongBody,
                    format!(
                        "stream of {n} bytes came as {len}, digest {}",
                        if len == n { "wrong" } else { "unchecked" }
                    ),
                ));
            }
            Ok(n)
        }
        Kind::Sse => {
            let n = config.sse_events;
            let url = format!(
                "{base}/events/{n}?pause_ms={}",
                config.sse_pause.as_millis()
            );
            let body = fetch(http, kind, Method::GET, &url, full(Bytes::new())).await?;
            let got = body.collect_all(kind).await?;
            let expected: String = (0..n).map(mix::event).collect();
            if got != expected.as_bytes() {
                let events = got.windows(2).filter(|w| w == b"\n\n").count();
                return Err(after_head(
                    kind,
                    Class::WrongBody,
                    format!("{events} events of {n}, or not as sent"),
                ));
            }
            Ok(got.len() as u64)
        }
        Kind::Upload => {
            let n = UPLOAD_SIZES[rng.below(UPLOAD_SIZES.len() as u64) as usize];
            let body = fetch(
                http,
                kind,
                Method::POST,
                &format!("{base}/upload"),
                pattern_body(n, None),
            )
            .await?;
            let v: serde_json::Value = serde_json::from_slice(&body.collect_all(kind).await?)
                .map_err(|e| after_head(kind, Class::WrongBody, format!("not JSON: {e}")))?;
            if v["length"] != n || v["sha256"] != pattern_digest(n).as_str() {
                return Err(after_head(
                    kind,
                    Class::WrongBody,
                    format!("upload of {n} bytes answered {v}"),
                ));
            }
            Ok(n)
        }
        Kind::AbortUpload => {
            // Some answer or an error: either way the client left, which is all this kind does.
            let n = 1 << 20;
            let req = request(
                Method::POST,
                &format!("{base}/upload"),
                pattern_body(n, Some(crate::CHUNK as u64)),
            );
            match http.request(req).await {
                Err(e) if e.is_connect() => Err(Attempt::Refused),
                _ => Ok(crate::CHUNK as u64),
            }
        }
        Kind::AbortDownload => {
            let mut body = fetch(
                http,
                kind,
                Method::GET,
                &format!("{base}/stream/{}?pause_ms=5", 16 << 20),
                full(Bytes::new()),
            )
            .await?;
            match body.0.frame().await {
                Some(Ok(frame)) => Ok(frame.data_ref().map_or(0, |d| d.len() as u64)),
                Some(Err(e)) => Err(after_head(kind, Class::Reset, error_reason(&e))),
                None => Err(after_head(kind, Class::WrongBody, "empty stream".into())),
            }
        }
    }
}

fn request(method: Method, url: &str, body: ReqBody) -> Request<ReqBody> {
    Request::builder()
        .method(method)
        .uri(url)
        .body(body)
        .expect("a valid request")
}

struct Answer(Incoming);

impl Answer {
    async fn collect_all(self, kind: Kind) -> Result<Bytes, Attempt> {
        match self.0.collect().await {
            Ok(b) => Ok(b.to_bytes()),
            Err(e) => Err(after_head(kind, Class::Reset, error_reason(&e))),
        }
    }

    async fn hash_all(&mut self, kind: Kind) -> Result<(u64, String), Attempt> {
        let mut hash = Sha256::new();
        let mut len = 0u64;
        while let Some(frame) = self.0.frame().await {
            let frame = frame.map_err(|e| after_head(kind, Class::Reset, error_reason(&e)))?;
            if let Some(d) = frame.data_ref() {
                len += d.len() as u64;
                hash.update(d);
            }
        }
        Ok((len, mix::sha256_hex(hash.finalize())))
    }
}

/// Sends a request and checks its status is 200.
async fn fetch(
    http: &HttpClient,
    kind: Kind,
    method: Method,
    url: &str,
    body: ReqBody,
) -> Result<Answer, Attempt> {
    // Whether hyper took a frame of the body: a request whose body it never took was never
    // sent, and may be sent again whatever its method.
    let taken = Arc::new(AtomicBool::new(false));
    let seen = taken.clone();
    let body = body
        .map_frame(move |frame| {
            seen.store(true, Ordering::Relaxed);
            frame
        })
        .boxed();
    match http.request(request(method, url, body)).await {
        Err(e) if e.is_connect() => Err(Attempt::Refused),
        Err(e)
            if unprocessed(&e)
                || ((kind.idempotent() || !taken.load(Ordering::Relaxed))
                    && closed_before_answer(&e)) =>
        {
            Err(Attempt::Closed(failure(
                kind,
                Class::Reset,
                error_reason(&e),
                false,
            )))
        }
        Err(e) => Err(before_head(kind, Class::Reset, error_reason(&e))),
        Ok(resp) if resp.status() != StatusCode::OK => {
            let status = resp.status().as_u16();
            // 502/503/504 are the gateway's own: the worker failed or was missing.
            Err(before_head(kind, Class::Status, status.to_string()))
        }
        Ok(resp) => Ok(Answer(resp.into_body())),
    }
}

/// Download sizes: a few, so that each digest is computed once; odd ones, so that no piece
/// boundary lines up by luck.
const DOWNLOAD_SIZES: [u64; 4] = [65_536, 262_147, 1_048_583, 4_194_301];
/// Upload sizes: all past the default `limits.body_buffer` (256 KiB), so streamed.
const UPLOAD_SIZES: [u64; 3] = [262_157, 1_048_576, 2_097_143];

/// SHA-256 of the first `n` bytes of the stream pattern, computed once per size.
fn pattern_digest(n: u64) -> String {
    static CACHE: Mutex<BTreeMap<u64, String>> = Mutex::new(BTreeMap::new());
    if let Some(d) = CACHE.lock().unwrap().get(&n) {
        return d.clone();
    }
    let mut hash = Sha256::new();
    let mut at = 0;
    while at < n {
        let len = (n - at).min(crate::CHUNK as u64);
        hash.update(mix::stream_slice(at, len as usize));
        at += len;
    }
    let d = mix::sha256_hex(hash.finalize());
    CACHE.lock().unwrap().insert(n, d.clone());
    d
}

/// The first `n` bytes of the stream pattern as a streamed request body; with `fail_after`,
/// the body errors once that many bytes are out (the client going away mid-upload).
fn pattern_body(n: u64, fail_after: Option<u64>) -> ReqBody {
    let pieces = futures_util::stream::unfold(0u64, move |at| async move {
        if at >= n {
            return None;
        }
        if fail_after.is_some_and(|f| at >= f) {
            let e: BoxError = "the client went away mid-body".into();
            return Some((Err(e), n));
        }
        let len = (n - at).min(crate::CHUNK as u64);
        Some((
            Ok(Frame::data(Bytes::from(mix::stream_slice(
                at,
                len as usize,
            )))),
            at + len,
        ))
    });
    BodyExt::boxed(StreamBody::new(pieces))
}

/// Resolves on SIGINT or SIGTERM.
pub fn signalled() -> Pin<Box<dyn Future<Output = ()> + Send>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    Box::pin(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

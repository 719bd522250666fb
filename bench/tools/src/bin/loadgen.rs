//! The load tool of bench/run for what wrk cannot do: requests at a fixed rate, 1 GiB
//! streams, and many worker connections on one gateway. Prints one JSON object on stdout.
//!
//! ```sh
//! loadgen rate --url http://127.0.0.1:9000/hello/x --rate 5000 --secs 20 --connections 32
//! loadgen stream --url http://127.0.0.1:9000/upload --upload 1073741824
//! loadgen stream --url http://127.0.0.1:9000/download/1073741824
//! loadgen scale --gateway 127.0.0.1:9000 --pid 1234 --workers 10000 --http-url ...
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame as BodyFrame;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use vyx_core::frame::Frame;
use vyx_core::handshake::{Hello, RouteSpec};

#[derive(Parser)]
#[command(name = "loadgen", about = "bench/run's load tool")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Open-loop requests at a fixed rate; latency counts from when a request was due.
    Rate {
        #[arg(long)]
        url: Uri,
        #[arg(long)]
        rate: f64,
        #[arg(long)]
        secs: f64,
        #[arg(long, default_value_t = 32)]
        connections: usize,
    },
    /// One streamed request: an upload of N bytes (PUT), or a download (GET) read to the end.
    Stream {
        #[arg(long)]
        url: Uri,
        /// Bytes to upload; without it the URL is downloaded.
        #[arg(long)]
        upload: Option<u64>,
    },
    /// Registers many workers on one gateway, then reconnects them at a fixed rate while
    /// requests flow to another worker.
    Scale {
        /// The gateway's address (host:port).
        #[arg(long)]
        gateway: SocketAddr,
        /// The gateway's pid, to read its RSS from /proc.
        #[arg(long)]
        pid: u32,
        #[arg(long, default_value_t = 10_000)]
        workers: usize,
        #[arg(long, default_value_t = 10)]
        routes: usize,
        /// Distinct worker ids: connection i registers as id `i % ids` (the others are its
        /// replicas). Default: one id per connection.
        #[arg(long)]
        ids: Option<usize>,
        /// A URL served by a separate, real worker, loaded during the churn phases.
        #[arg(long)]
        http_url: Uri,
        #[arg(long, default_value_t = 16)]
        http_connections: usize,
        /// Reconnects per second in the churn phase.
        #[arg(long, default_value_t = 1000.0)]
        churn_rate: f64,
        #[arg(long, default_value_t = 5.0)]
        churn_secs: f64,
    },
}

#[tokio::main]
async fn main() {
    let out = match Cli::parse().cmd {
        Cmd::Rate {
            url,
            rate,
            secs,
            connections,
        } => rate_test(url, rate, Duration::from_secs_f64(secs), connections).await,
        Cmd::Stream { url, upload } => stream_test(url, upload).await,
        Cmd::Scale {
            gateway,
            pid,
            workers,
            routes,
            ids,
            http_url,
            http_connections,
            churn_rate,
            churn_secs,
        } => {
            scale_test(
                gateway,
                pid,
                workers,
                Shape {
                    routes,
                    ids: ids.unwrap_or(workers).max(1),
                },
                http_url,
                http_connections,
                churn_rate,
                Duration::from_secs_f64(churn_secs),
            )
            .await
        }
    };
    println!("{out}");
}

type Sender<B> = hyper::client::conn::http1::SendRequest<B>;

async fn connect<B>(url: &Uri) -> Sender<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let authority = url.authority().expect("URL has host:port").as_str();
    let stream = TcpStream::connect(authority)
        .await
        .unwrap_or_else(|e| panic!("connect {authority}: {e}"));
    stream.set_nodelay(true).unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP handshake");
    tokio::spawn(conn);
    sender
}

fn get(url: &Uri) -> Request<Empty<Bytes>> {
    Request::get(url.path_and_query().map_or("/", |p| p.as_str()))
        .header("host", url.authority().unwrap().as_str())
        .body(Empty::new())
        .unwrap()
}

/// One GET on a kept-alive connection, body read to the end; `false` on any failure.
async fn get_once(sender: &mut Sender<Empty<Bytes>>, url: &Uri) -> bool {
    if sender.ready().await.is_err() {
        return false;
    }
    match sender.send_request(get(url)).await {
        Ok(resp) => {
            let ok = resp.status().is_success();
            ok && resp.into_body().collect().await.is_ok()
        }
        Err(_) => false,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn rate_test(url: Uri, rate: f64, secs: Duration, connections: usize) -> serde_json::Value {
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let end = start + secs;
    let per_conn = Duration::from_secs_f64(connections as f64 / rate);
    let mut tasks = Vec::new();
    for i in 0..connections {
        let url = url.clone();
        let offset = Duration::from_secs_f64(i as f64 / rate);
        tasks.push(tokio::spawn(async move {
            let mut sender = connect::<Empty<Bytes>>(&url).await;
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut due = start + offset;
            let mut free_at = tokio::time::Instant::now();
            while due < end {
                tokio::time::sleep_until(due).await;
                // Latency counts from when the request was due if this connection was still
                // busy then (no coordinated omission), else from the actual send: the
                // timer's millisecond granularity is not the server's latency.
                let t0 = if free_at > due {
                    due
                } else {
                    tokio::time::Instant::now()
                };
                if get_once(&mut sender, &url).await {
                    let now = tokio::time::Instant::now();
                    lat.push((now - t0).as_secs_f64() * 1e3);
                    free_at = now;
                } else {
                    errors += 1;
                    sender = connect(&url).await;
                    free_at = tokio::time::Instant::now();
                }
                due += per_conn;
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.expect("rate task");
        all.extend(lat);
        errors += e;
    }
    all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    json!({
        "requests": all.len(),
        "errors": errors,
        "rate": rate,
        "achieved_rps": all.len() as f64 / secs.as_secs_f64(),
        "p50_ms": percentile(&all, 0.50),
        "p99_ms": percentile(&all, 0.99),
        "max_ms": all.last().copied().unwrap_or(f64::NAN),
    })
}

async fn stream_test(url: Uri, upload: Option<u64>) -> serde_json::Value {
    let path = url.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let host = url.authority().unwrap().as_str().to_owned();
    let t0 = Instant::now();
    let (status, received, body) = if let Some(n) = upload {
        let pieces = futures_util::stream::iter(vyx_bench::pieces(n))
            .map(|b| Ok::<_, std::convert::Infallible>(BodyFrame::data(b)));
        let mut sender = connect::<StreamBody<_>>(&url).await;
        let req = Request::builder()
            .method(Method::PUT)
            .uri(path)
            .header("host", host)
            .header("content-type", "application/octet-stream")
            .body(StreamBody::new(pieces))
            .unwrap();
        let resp = sender.send_request(req).await.expect("upload answered");
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.expect("answer read");
        (
            status,
            n,
            String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        )
    } else {
        let mut sender = connect::<Empty<Bytes>>(&url).await;
        let resp = sender
            .send_request(get(&url))
            .await
            .expect("download answered");
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut n = 0u64;
        while let Some(f) = body.frame().await {
            n += f
                .expect("download read")
                .data_ref()
                .map_or(0, |d| d.len() as u64);
        }
        (status, n, String::new())
    };
    let secs = t0.elapsed().as_secs_f64();
    json!({
        "status": status,
        "bytes": received,
        "answer": body,
        "seconds": secs,
        "mib_per_s": received as f64 / secs / (1 << 20) as f64,
    })
}

/// VmRSS and VmHWM of a process, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("gateway alive");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// What the scale test's workers declare.
#[derive(Clone, Copy)]
struct Shape {
    routes: usize,
    ids: usize,
}

/// Registers connection `i` as worker `scale-{i % ids}` with that id's routes; returns the
/// socket once WELCOME arrived.
async fn register(gateway: SocketAddr, conn: usize, shape: Shape) -> Result<Ws, String> {
    let i = conn % shape.ids;
    let id = format!("scale-{i}");
    let mut req = format!("ws://{gateway}/_vyx/register")
        .into_client_request()
        .unwrap();
    let h = req.headers_mut();
    h.insert("sec-websocket-protocol", HeaderValue::from_static("vyx.1"));
    h.insert("x-vyx-worker-id", HeaderValue::from_str(&id).unwrap());
    h.insert("authorization", HeaderValue::from_static("Bearer bench"));
    let stream = TcpStream::connect(gateway)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(req, stream)
        .await
        .map_err(|e| format!("upgrade: {e}"))?;
    let hello = Frame::Hello(Hello {
        protocol: 1,
        worker_id: id,
        // Each connection plays a worker process of its own: one instance's connections
        // would share its 16 slots (spec §6).
        instance: format!("conn-{conn}"),
        sdk: "loadgen".into(),
        max_concurrency: 16,
        routes: (0..shape.routes)
            .map(|r| RouteSpec {
                id: r as u32,
                method: "GET".into(),
                path: format!("/scale/{i}/r{r}/{{name}}"),
                idempotent: false,
            })
            .collect(),
        labels: Default::default(),
        features: Vec::new(),
    });
    ws.send(Message::Binary(hello.encode()))
        .await
        .map_err(|e| format!("send HELLO: {e}"))?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => {
                return match Frame::decode(b, 1 << 20) {
                    Ok(Frame::Welcome(_)) => Ok(ws),
                    other => Err(format!("expected WELCOME, got {other:?}")),
                }
            }
            Some(Ok(Message::Close(f))) => return Err(format!("closed: {f:?}")),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("read: {e}")),
            None => return Err("socket ended".into()),
        }
    }
}

/// Keeps a registered worker alive (reading answers the gateway's pings) until aborted.
fn hold(mut ws: Ws) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} })
}

/// Closed-loop GETs on `connections` keep-alive connections until `stop`; (ok, errors).
async fn http_load(url: &Uri, connections: usize, dur: Duration) -> (u64, u64) {
    let ok = Arc::new(AtomicU64::new(0));
    let err = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + dur;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (url, ok, err) = (url.clone(), ok.clone(), err.clone());
        tasks.push(tokio::spawn(async move {
            let mut sender = connect::<Empty<Bytes>>(&url).await;
            while Instant::now() < end {
                if get_once(&mut sender, &url).await {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    err.fetch_add(1, Ordering::Relaxed);
                    sender = connect(&url).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("load task");
    }
    (ok.load(Ordering::Relaxed), err.load(Ordering::Relaxed))
}

fn median_ms(samples: &[Duration]) -> f64 {
    let mut v: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    percentile(&v, 0.5)
}

#[allow(clippy::too_many_arguments)]
async fn scale_test(
    gateway: SocketAddr,
    pid: u32,
    workers: usize,
    shape: Shape,
    http_url: Uri,
    http_connections: usize,
    churn_rate: f64,
    churn_secs: Duration,
) -> serde_json::Value {
    let (rss_before, _) = rss_kib(pid);
    // One at a time, so each registration's time is its own.
    let mut held = Vec::with_capacity(workers);
    let mut took = Vec::with_capacity(workers);
    let t_all = Instant::now();
    for i in 0..workers {
        let t0 = Instant::now();
        let ws = register(gateway, i, shape)
            .await
            .unwrap_or_else(|e| panic!("worker {i} not registered: {e}"));
        took.push(t0.elapsed());
        held.push(hold(ws));
    }
    let register_secs = t_all.elapsed().as_secs_f64();
    // Let the gateway settle (tasks parked, buffers released) before reading its RSS.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss_after, hwm) = rss_kib(pid);
    let window = |at: usize| {
        let lo = at.saturating_sub(10).min(workers.saturating_sub(20));
        let hi = (lo + 20).min(workers);
        median_ms(&took[lo..hi])
    };
    let first = window(100);
    let last = window(workers);

    // Requests with no churn, then the same load while workers reconnect.
    let (ref_ok, ref_err) = http_load(&http_url, http_connections, churn_secs).await;
    let held = Arc::new(std::sync::Mutex::new(held));
    let reconnects = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let churn = {
        let (held, reconnects, failed) = (held.clone(), reconnects.clone(), failed.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / churn_rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut next = 0usize;
            loop {
                tick.tick().await;
                let i = next % workers;
                next += 1;
                let (held, reconnects, failed) = (held.clone(), reconnects.clone(), failed.clone());
                tokio::spawn(async move {
                    held.lock().unwrap()[i].abort();
                    match register(gateway, i, shape).await {
                        Ok(ws) => {
                            held.lock().unwrap()[i] = hold(ws);
                            reconnects.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        })
    };
    let (churn_ok, churn_err) = http_load(&http_url, http_connections, churn_secs).await;
    churn.abort();
    let secs = churn_secs.as_secs_f64();
    json!({
        "workers": workers,
        "worker_ids": shape.ids,
        "routes_per_worker": shape.routes,
        "register_all_secs": register_secs,
        "register_100th_ms": first,
        "register_last_ms": last,
        "register_ratio": last / first,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "hwm_kib": hwm,
        "rss_per_conn_kib": (rss_after as f64 - rss_before as f64) / workers as f64,
        "ref_rps": ref_ok as f64 / secs,
        "ref_errors": ref_err,
        "churn_rps": churn_ok as f64 / secs,
        "churn_errors": churn_err,
        "reconnects_per_s": reconnects.load(Ordering::Relaxed) as f64 / secs,
        "reconnect_failures": failed.load(Ordering::Relaxed),
    })
}

//! Test harness: an in-process gateway on an ephemeral loopback port, a hand-driven "raw"
//! worker that speaks the protocol frame by frame, and an HTTP client.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use vyx_core::frame::{Data, Frame, Response};
use vyx_core::handshake::{Hello, RouteSpec, Welcome};
use vyx_gateway::{Gateway, GatewayConfig};

/// Upper bound for any single wait in a test: generous, so a busy machine does not flake,
/// but finite, so a bug fails instead of hanging.
pub const WAIT: Duration = Duration::from_secs(20);

/// A gateway in its own runtime on its own thread, so that "kill" can drop every task and
/// socket at once, as a killed process would.
pub struct TestGateway {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    kill: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestGateway {
    pub async fn start() -> TestGateway {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut GatewayConfig)) -> TestGateway {
        let mut config = GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            // Tests that read the access log turn it on; the others keep stdout quiet.
            access_log: vyx_gateway::access_log::AccessLogConfig::off(),
            // As on a 2-core machine whatever this one has: an SDK worker holds 2 connections.
            threads: 2,
            ..GatewayConfig::default()
        };
        tweak(&mut config);
        let shards = config.threads;
        let (addr_tx, addr_rx) = oneshot::channel();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let (kill, kill_rx) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let gateway = Gateway::bind(config).await.expect("bind gateway");
                let _ = addr_tx.send(gateway.local_addr());
                tokio::select! {
                    r = gateway.run(async { let _ = stop_rx.await; }) => r.expect("gateway ran"),
                    _ = kill_rx => {}
                }
            });
            // Waits for the spawned tasks (the accept loops among them) to be dropped, so
            // that the listener is closed once the thread is joined: a restart test binds
            // the same port next.
            rt.shutdown_timeout(WAIT);
        });
        let addr = addr_rx.await.expect("gateway bound");
        note_shards(addr, shards);
        TestGateway {
            addr,
            stop: Some(stop),
            kill: Some(kill),
            thread: Some(thread),
        }
    }

    /// A gateway on a loopback port outside the kernel's ephemeral range, for tests that
    /// kill it and start another on the same address: while it is down, no `:0` bind of a
    /// parallel test and no outgoing connection's source port can take that port.
    pub async fn start_restartable() -> TestGateway {
        let addr = restartable_addr();
        Self::start_with(|c| c.listen = addr).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn join(&mut self) {
        if let Some(thread) = self.thread.take() {
            tokio::time::timeout(WAIT, tokio::task::spawn_blocking(move || thread.join()))
                .await
                .expect("gateway thread ended in time")
                .unwrap()
                .expect("gateway thread did not panic");
        }
    }

    /// Graceful shutdown (as on SIGTERM), waiting for it to finish.
    pub async fn shutdown(mut self) {
        self.begin_shutdown();
        self.join().await;
    }

    /// Starts the graceful shutdown (as on SIGTERM) without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Kills the gateway without draining: every task and socket is dropped at once.
    pub async fn kill(mut self) {
        if let Some(tx) = self.kill.take() {
            let _ = tx.send(());
        }
        self.join().await;
    }
}

/// A free loopback port below the ephemeral range (`ip_local_port_range`).
fn restartable_addr() -> SocketAddr {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let span = low.saturating_sub(1024).clamp(1, 8192);
    // Test binaries run side by side: start each at its own offset.
    let base = (std::process::id() % u32::from(span)) as u16;
    for _ in 0..span {
        let offset = (base + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let addr = SocketAddr::from(([127, 0, 0, 1], low - span + offset));
        if std::net::TcpListener::bind(addr).is_ok() {
            return addr;
        }
    }
    panic!("no free loopback port below {low}");
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(tx) = self.kill.take() {
            let _ = tx.send(());
        }
    }
}

pub type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build_http()
}

/// Sends a request and reads the whole answer.
pub async fn send(
    client: &HttpClient,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> (u16, http::HeaderMap, Bytes) {
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body.into())).unwrap();
    let resp = tokio::time::timeout(WAIT, client.request(req))
        .await
        .expect("response in time")
        .expect("request sent");
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(WAIT, body.collect())
        .await
        .expect("body in time")
        .expect("body read")
        .to_bytes();
    (parts.status.as_u16(), parts.headers, body)
}

pub async fn get(client: &HttpClient, url: &str) -> (u16, Bytes) {
    let (s, _, b) = send(client, "GET", url, &[], Bytes::new()).await;
    (s, b)
}

/// The requests in flight on the gateway's worker connections, as `/_vyx/workers` shows
/// them (summed: a worker holds a connection per shard).
pub async fn in_flight(gw: SocketAddr) -> u64 {
    let (_, body) = get(&client(), &format!("http://{gw}/_vyx/workers")).await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|w| w["in_flight"].as_u64().unwrap())
        .sum()
}

/// Waits (bounded) until the in-flight count is `n`.
pub async fn wait_in_flight(gw: SocketAddr, n: u64, what: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = in_flight(gw).await;
        if now == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: in flight {now}, expected {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of one counter line of `/_vyx/metrics`, 0 if absent.
pub async fn metric(gw: &TestGateway, line_start: &str) -> u64 {
    let (_, body) = get(&client(), &gw.url("/_vyx/metrics")).await;
    let text = String::from_utf8_lossy(&body).into_owned();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0, |v| v.parse().unwrap())
}

/// The shards of the gateways started here, by address: WELCOME asks an SDK worker for one
/// connection per shard.
static SHARDS: std::sync::Mutex<Vec<(SocketAddr, usize)>> = std::sync::Mutex::new(Vec::new());

/// Records that the gateway at `addr` runs `shards` shards (for [`wait_for_workers`]).
pub fn note_shards(addr: SocketAddr, shards: usize) {
    let mut known = SHARDS.lock().unwrap();
    known.retain(|(a, _)| *a != addr);
    known.push((addr, shards));
}

fn shards_of(addr: SocketAddr) -> Option<usize> {
    SHARDS
        .lock()
        .unwrap()
        .iter()
        .find(|(a, _)| *a == addr)
        .map(|(_, n)| *n)
}

/// The worker processes a `/_vyx/workers` listing shows for `worker_id`, each with its
/// connections: an SDK worker holds one per gateway shard, all with its instance name;
/// each `RawWorker` is a process with one.
pub fn processes_of(list: &serde_json::Value, worker_id: &str) -> BTreeMap<String, (usize, bool)> {
    let mut seen = BTreeMap::new();
    for w in list
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["id"] == worker_id)
    {
        let (instance, address) = (
            w["instance"].as_str().unwrap(),
            w["address"].as_str().unwrap(),
        );
        let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
        let key = if instance.is_empty() {
            w["connection_id"].to_string()
        } else {
            format!("{instance} {host}")
        };
        let raw = w["sdk"] == RAW_SDK;
        seen.entry(key).or_insert((0, raw)).0 += 1;
    }
    seen
}

/// Waits until `/_vyx/workers` lists `n` worker processes of `worker_id` (see
/// [`processes_of`]), each with all its connections when the gateway was started here.
pub async fn wait_for_workers(gw_addr: SocketAddr, worker_id: &str, n: usize) {
    let c = client();
    let url = format!("http://{gw_addr}/_vyx/workers");
    let deadline = tokio::time::Instant::now() + WAIT;
    let shards = shards_of(gw_addr).unwrap_or(1);
    loop {
        let (status, body) = get(&c, &url).await;
        assert_eq!(status, 200);
        let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let processes = processes_of(&list, worker_id);
        let whole = processes
            .values()
            .all(|&(conns, raw)| conns >= if raw { 1 } else { shards });
        if processes.len() == n && whole {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {n} worker processes of {worker_id} with {shards} connections each (one for a raw worker), have {processes:?}: {list}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `sdk` a `RawWorker` names in HELLO.
const RAW_SDK: &str = "raw-test";

/// A new instance name, `raw-N`: each `RawWorker` plays a worker process of its own (a
/// process's connections share its slots, spec §6).
fn raw_instance() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    format!("raw-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A worker driven by hand, frame by frame.
pub struct RawWorker {
    pub ws: Ws,
    pub welcome: Welcome,
}

/// Starts an SDK worker and waits until it is connected; the task ends when it stops.
pub async fn start_connected(
    worker: &vyx::Worker,
) -> tokio::task::JoinHandle<Result<(), vyx::Error>> {
    let runner = worker.clone();
    let task = tokio::spawn(async move { runner.start().await });
    let mut state = worker.state();
    tokio::time::timeout(
        WAIT,
        state.wait_for(|s| matches!(s, vyx::ConnectionState::Connected { .. })),
    )
    .await
    .expect("worker connected in time")
    .unwrap();
    task
}

/// An HTTP/2 HEADERS frame on stream 1 (END_STREAM | END_HEADERS) for `GET http://gw/_vyx/health`,
/// its fields literal without indexing: for tests that speak HTTP/2 byte by byte.
pub fn h2_health_request() -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (&b":method"[..], &b"GET"[..]),
        (b":scheme", b"http"),
        (b":authority", b"gw"),
        (b":path", b"/_vyx/health"),
    ] {
        block.push(0);
        block.push(name.len() as u8);
        block.extend_from_slice(name);
        block.push(value.len() as u8);
        block.extend_from_slice(value);
    }
    let mut frame = vec![0, 0, block.len() as u8, 1, 5, 0, 0, 0, 1];
    frame.extend_from_slice(&block);
    frame
}

/// Sends `hello` (raw JSON) after the upgrade; `Ok(())` for WELCOME, `Err(code)` for a close.
pub async fn hello_outcome(
    gw: &TestGateway,
    header_id: &str,
    hello: &serde_json::Value,
) -> Result<(), u16> {
    let mut ws = raw_upgrade(gw.addr, header_id).await;
    let mut msg = vec![0x10, 0, 0, 0, 0, 0];
    msg.extend(serde_json::to_vec(hello).unwrap());
    ws.send(Message::Binary(msg.into())).await.unwrap();
    loop {
        let next = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("an answer to HELLO in time")
            .expect("socket open")
            .expect("read ok");
        match next {
            Message::Binary(b) => {
                return match Frame::decode(b, 1 << 20).expect("valid frame") {
                    Frame::Welcome(_) => Ok(()),
                    Frame::Error(e) => Err(e.code),
                    other => panic!("unexpected {other:?}"),
                }
            }
            Message::Close(f) => return Err(f.map_or(1005, |f| u16::from(f.code))),
            _ => {}
        }
    }
}

/// The address in the first line a `vyx` process prints on stdout, `listening http://ADDR`
/// (`https://` with TLS).
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    let line = line.trim();
    let addr = line.strip_prefix("listening http://");
    addr.or_else(|| line.strip_prefix("listening https://"))?
        .parse()
        .ok()
}

/// A valid HELLO from `id` with `routes` (max_concurrency 8), for tests to send as is or
/// to spoil one field of.
pub fn hello(id: &str, routes: Vec<RouteSpec>) -> Hello {
    Hello {
        protocol: 1,
        worker_id: id.into(),
        instance: "t".into(),
        sdk: RAW_SDK.into(),
        max_concurrency: 8,
        routes,
        labels: Default::default(),
        features: Vec::new(),
    }
}

/// [`hello`] as JSON, for [`hello_outcome`].
pub fn hello_json(id: &str, routes: Vec<RouteSpec>) -> serde_json::Value {
    serde_json::to_value(hello(id, routes)).unwrap()
}

pub fn route(id: u32, method: &str, path: &str) -> RouteSpec {
    RouteSpec {
        id,
        method: method.into(),
        path: path.into(),
        idempotent: false,
    }
}

/// The registration upgrade request of `worker_id`, with the usual headers.
pub fn register_request(
    addr: SocketAddr,
    worker_id: &str,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut req = format!("ws://{addr}/_vyx/register")
        .into_client_request()
        .unwrap();
    let h = req.headers_mut();
    h.insert("sec-websocket-protocol", HeaderValue::from_static("vyx.1"));
    h.insert("x-vyx-worker-id", HeaderValue::from_str(worker_id).unwrap());
    req
}

/// Opens the WebSocket with a bearer token (if any); a refusal comes back as its HTTP
/// status and body.
pub async fn try_upgrade(
    addr: SocketAddr,
    worker_id: &str,
    token: Option<&str>,
) -> Result<Ws, (u16, String)> {
    let mut req = register_request(addr, worker_id);
    if let Some(t) = token {
        req.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
        );
    }
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("upgrade answered in time")
    {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err((
            resp.status().as_u16(),
            String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned(),
        )),
        Err(e) => panic!("upgrade failed without an HTTP answer: {e}"),
    }
}

/// Opens the WebSocket with the usual upgrade headers, without sending anything.
pub async fn raw_upgrade(addr: SocketAddr, worker_id: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(register_request(addr, worker_id))
        .await
        .expect("upgrade");
    ws
}

/// A placeholder until the gateway's WELCOME arrives (or for a worker that never gets one).
pub fn unset_welcome() -> Welcome {
    Welcome {
        protocol: 0,
        gateway: String::new(),
        connection_id: String::new(),
        heartbeat_ms: 0,
        initial_window: 0,
        max_frame_size: 0,
        max_concurrency: 0,
        connections: 0,
        features: Vec::new(),
    }
}

impl RawWorker {
    pub async fn connect(addr: SocketAddr, worker_id: &str, routes: Vec<RouteSpec>) -> RawWorker {
        Self::connect_with_token(addr, worker_id, None, routes).await
    }

    /// [`RawWorker::connect`] with a bearer token on the upgrade request.
    pub async fn connect_with_token(
        addr: SocketAddr,
        worker_id: &str,
        token: Option<&str>,
        routes: Vec<RouteSpec>,
    ) -> RawWorker {
        Self::connect_instance(addr, worker_id, token, &raw_instance(), routes).await
    }

    /// [`RawWorker::connect_with_token`] naming the worker instance in HELLO.
    pub async fn connect_instance(
        addr: SocketAddr,
        worker_id: &str,
        token: Option<&str>,
        instance: &str,
        routes: Vec<RouteSpec>,
    ) -> RawWorker {
        Self::connect_offering(addr, worker_id, token, instance, routes, &[]).await
    }

    /// [`RawWorker::connect`] offering the protocol extensions `features` in HELLO (§2.6);
    /// `welcome.features` says what the gateway granted.
    pub async fn connect_with_features(
        addr: SocketAddr,
        worker_id: &str,
        routes: Vec<RouteSpec>,
        features: &[&str],
    ) -> RawWorker {
        Self::connect_offering(addr, worker_id, None, &raw_instance(), routes, features).await
    }

    async fn connect_offering(
        addr: SocketAddr,
        worker_id: &str,
        token: Option<&str>,
        instance: &str,
        routes: Vec<RouteSpec>,
        features: &[&str],
    ) -> RawWorker {
        let mut ws = match try_upgrade(addr, worker_id, token).await {
            Ok(ws) => ws,
            Err((status, body)) => panic!("{worker_id} refused: {status} {body}"),
        };
        let hello = Frame::Hello(Hello {
            instance: instance.into(),
            max_concurrency: 64,
            features: features.iter().map(|f| f.to_string()).collect(),
            ..hello(worker_id, routes)
        });
        ws.send(Message::Binary(hello.encode())).await.unwrap();
        let mut w = RawWorker {
            ws,
            welcome: unset_welcome(),
        };
        match w.next_frame().await {
            Frame::Welcome(welcome) => w.welcome = welcome,
            other => panic!("expected WELCOME, got {other:?}"),
        }
        w
    }

    /// Reads until the gateway closes; returns the close code and reason.
    pub async fn close_frame(&mut self) -> (u16, String) {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("close in time");
            match msg {
                Some(Ok(Message::Close(Some(f)))) => {
                    return (u16::from(f.code), f.reason.to_string())
                }
                Some(Ok(Message::Close(None))) => return (1005, String::new()),
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("socket error before close: {e}"),
                None => panic!("socket ended without a close frame"),
            }
        }
    }

    pub async fn send(&mut self, frame: Frame) {
        self.ws.send(Message::Binary(frame.encode())).await.unwrap();
    }

    pub async fn send_raw(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::Binary(bytes.into())).await.unwrap();
    }

    /// The next frame (pings and pongs skipped).
    pub async fn next_frame(&mut self) -> Frame {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("frame in time")
                .expect("socket open")
                .expect("read ok");
            match msg {
                Message::Binary(b) => return Frame::decode(b, 1 << 20).expect("valid frame"),
                Message::Close(f) => panic!("closed by gateway: {f:?}"),
                _ => {}
            }
        }
    }

    /// Reads until the gateway closes; returns the close code.
    pub async fn close_code(&mut self) -> u16 {
        self.close_frame().await.0
    }
}

/// A RESPONSE head with a `content-type` (and no other header).
pub fn respond(stream_id: u32, status: u16, end_stream: bool) -> Frame {
    Frame::Response(Response {
        stream_id,
        end_stream,
        status,
        headers: vec![(
            Bytes::from_static(b"content-type"),
            Bytes::from_static(b"text/plain"),
        )],
    })
}

/// A DATA frame.
pub fn data(stream_id: u32, bytes: &'static [u8], end_stream: bool) -> Frame {
    Frame::Data(Data {
        stream_id,
        end_stream,
        data: Bytes::from_static(bytes),
    })
}

/// Answers every REQUEST on `w` with 200 "ok" until the socket closes.
pub fn serve_ok(mut w: RawWorker) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use futures_util::StreamExt;
        while let Some(Ok(msg)) = w.ws.next().await {
            if let Message::Binary(b) = msg {
                if let Ok(Frame::Request(r)) = Frame::decode(b, 1 << 20) {
                    w.send(respond(r.stream_id, 200, false)).await;
                    w.send(data(r.stream_id, b"ok", true)).await;
                }
            }
        }
    })
}

/// The `vyx` binary run by a test, its stderr (the log) collected as it comes.
pub struct LoggedVyx {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl LoggedVyx {
    /// Spawns `cmd` (a `vyx` command, stdout and stderr piped here) and reads the listening
    /// line from its stdout.
    pub async fn spawn(mut cmd: tokio::process::Command) -> LoggedVyx {
        use tokio::io::AsyncBufReadExt;
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = log.clone();
        let stderr = child.stderr.take().unwrap();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(WAIT, stdout.next_line())
            .await
            .expect("the gateway started in time")
            .unwrap()
            .expect("a listening line");
        let addr = listening_addr(&line).expect("listening line");
        LoggedVyx { child, addr, log }
    }

    /// Waits (bounded) until the log holds `needle`.
    pub async fn wait_for_log(&self, needle: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !self.log.lock().unwrap().contains(needle) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {needle:?} in the log:\n{}",
                self.log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Descriptors the process holds, from /proc/<pid>/fd.
    pub fn open_fds(&self) -> usize {
        let pid = self.child.id().expect("running");
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    }
}

/// The gateway's end of its TCP connection to `peer`, from /proc/net/tcp: its state (1 is
/// ESTABLISHED) and the bytes in its send queue; `None` once the socket is gone.
pub fn gateway_end(gw: SocketAddr, peer: SocketAddr) -> Option<(u8, u64)> {
    let port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next().unwrap(), 16).unwrap();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (port(f[1]) == gw.port() && port(f[2]) == peer.port()).then(|| {
            let tx = f[4].split(':').next().unwrap();
            (
                u8::from_str_radix(f[3], 16).unwrap(),
                u64::from_str_radix(tx, 16).unwrap(),
            )
        })
    })
}

/// The head of an HTTP/1 POST to `path` whose body follows chunked: a worker may answer it
/// before the body ends.
pub fn chunked_post(path: &str) -> Vec<u8> {
    format!("POST {path} HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked\r\n\r\n").into_bytes()
}

/// Writes `total` bytes of chunked body in 64 KiB chunks, then the last chunk: the error of
/// the first write that fails.
pub async fn send_chunked<S: tokio::io::AsyncWrite + Unpin>(
    io: &mut S,
    total: usize,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    const CHUNK: usize = 64 << 10;
    let mut chunk = format!("{CHUNK:x}\r\n").into_bytes();
    chunk.resize(chunk.len() + CHUNK, b'x');
    chunk.extend_from_slice(b"\r\n");
    for _ in 0..total / CHUNK {
        io.write_all(&chunk).await?;
    }
    io.write_all(b"0\r\n\r\n").await?;
    io.flush().await
}

/// Sends `total` bytes of chunked body after the gateway has answered, asserting that the
/// gateway took all of it (a lingering close) instead of resetting the writes.
pub async fn send_chunked_past_the_answer<S: tokio::io::AsyncWrite + Unpin>(
    io: &mut S,
    total: usize,
) {
    let sent = tokio::time::timeout(WAIT, send_chunked(io, total))
        .await
        .expect("the body was taken in time");
    assert!(
        sent.is_ok(),
        "the body after the answer was reset: {sent:?}"
    );
}

/// A worker's 200 head announcing `content-length: len`, its body to follow in DATA.
pub fn sized_head(stream_id: u32, len: usize) -> Frame {
    Frame::Response(Response {
        stream_id,
        end_stream: false,
        status: 200,
        headers: vec![(
            Bytes::from_static(b"content-length"),
            Bytes::from(len.to_string()),
        )],
    })
}

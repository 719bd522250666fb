//! The live dashboard (issue 20, item 4): `/_vyx/ui` behind the admin token (a bearer
//! header, or the session cookie its sign-in form sets), and `/_vyx/ui/events`, server-sent
//! events that carry the workers and routes, bounded per client and in clients. The page
//! itself is tested in a real browser by `gateway/tests/browser/`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::*;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use vyx::Request;
use vyx_gateway::auth::Secret;

const ADMIN: &str = "adm1n";
const BEARER: &str = "Bearer adm1n";

async fn gateway(tweak: impl FnOnce(&mut vyx_gateway::GatewayConfig)) -> TestGateway {
    TestGateway::start_with(|c| {
        c.admin_token = Some(Secret::new(ADMIN));
        c.ui.interval = Duration::from_millis(50);
        tweak(c);
    })
    .await
}

/// An open event stream, read event by event.
struct Events {
    body: hyper::body::Incoming,
    buf: BytesMut,
}

impl Events {
    async fn open(gw: SocketAddr, headers: &[(&str, &str)]) -> Result<Events, (u16, String)> {
        let mut req = http::Request::get(format!("http://{gw}/_vyx/ui/events"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = tokio::time::timeout(
            WAIT,
            client().request(req.body(Full::new(Bytes::new())).unwrap()),
        )
        .await
        .expect("head in time")
        .unwrap();
        let status = resp.status().as_u16();
        if status != 200 {
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            return Err((status, String::from_utf8_lossy(&body).into_owned()));
        }
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Ok(Events {
            body: resp.into_body(),
            buf: BytesMut::new(),
        })
    }

    /// The next `snapshot` event's data.
    async fn next(&mut self) -> Value {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let event = self.buf.split_to(end + 2);
                let text = std::str::from_utf8(&event).unwrap();
                if !text.lines().any(|l| l == "event: snapshot") {
                    continue;
                }
                let data = text.lines().find_map(|l| l.strip_prefix("data: "));
                return serde_json::from_str(data.expect("a data line")).unwrap();
            }
            let frame = tokio::time::timeout(WAIT, self.body.frame())
                .await
                .expect("an event in time")
                .expect("the stream goes on")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                self.buf.extend_from_slice(&data);
            }
        }
    }

    /// Reads events until one satisfies `want`.
    async fn until(&mut self, what: &str, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let event = self.next().await;
            if want(&event) {
                return event;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: last event {event}"
            );
        }
    }
}

async fn worker(gw: SocketAddr) -> vyx::Worker {
    let worker = vyx::Worker::builder()
        .connect(format!("ws://{gw}"))
        .id("dash")
        .handle_signals(false)
        .max_concurrency(4)
        .get("/hello/{name}", |_req: Request| async move { "hi" })
        .get("/fail", |_req: Request| async move {
            vyx::Response::text("no").with_status(http::StatusCode::SERVICE_UNAVAILABLE)
        })
        .build()
        .expect("valid worker");
    start_connected(&worker).await;
    worker
}

fn cookie_of(headers: &http::HeaderMap) -> String {
    let set = headers["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_string()
}

#[tokio::test]
async fn the_page_and_its_events_need_the_admin_token_or_the_session_it_signs_in() {
    let gw = gateway(|_| {}).await;
    let c = client();
    let ui = gw.url("/_vyx/ui");
    // Without the token: the sign-in form, and no events.
    let (s, h, body) = send(&c, "GET", &ui, &[], Bytes::new()).await;
    assert_eq!(s, 401);
    let page = String::from_utf8_lossy(&body);
    assert!(page.contains("action=\"/_vyx/ui/login\""), "{page}");
    assert!(!page.contains("EventSource"), "{page}");
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap()
        .starts_with("default-src 'none'"));
    assert_eq!(Events::open(gw.addr, &[]).await.err().unwrap().0, 401);
    let wrong = [("authorization", "Bearer nope")];
    assert_eq!(Events::open(gw.addr, &wrong).await.err().unwrap().0, 403);
    // A wrong token in the form: the form again, no cookie.
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let login = gw.url("/_vyx/ui/login");
    let (s, h, body) = send(&c, "POST", &login, &form, "token=nope").await;
    assert_eq!(s, 403);
    assert!(String::from_utf8_lossy(&body).contains("Invalid admin token"));
    assert!(h.get("set-cookie").is_none());
    // The right one: a session cookie that is not the token, for the dashboard only.
    let (s, h, _) = send(&c, "POST", &login, &form, format!("token={ADMIN}")).await;
    assert_eq!(s, 303);
    assert_eq!(h["location"], "/_vyx/ui");
    let set = h["set-cookie"].to_str().unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/_vyx/ui"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains(ADMIN), "{set}");
    let cookie = cookie_of(&h);
    let (s, h, body) = send(&c, "GET", &ui, &[("cookie", &cookie)], Bytes::new()).await;
    assert_eq!(s, 200);
    assert!(String::from_utf8_lossy(&body).contains("new EventSource(\"/_vyx/ui/events\")"));
    // Inline script and style by their hashes, nothing else from anywhere.
    let csp = h["content-security-policy"].to_str().unwrap();
    assert_eq!(csp.matches("'sha256-").count(), 2, "{csp}");
    assert!(!csp.contains("unsafe") && !csp.contains('*'), "{csp}");
    assert!(Events::open(gw.addr, &[("cookie", &cookie)]).await.is_ok());
    // A bearer header opens both too; a forged cookie opens nothing.
    let bearer = [("authorization", BEARER)];
    assert_eq!(send(&c, "GET", &ui, &bearer, Bytes::new()).await.0, 200);
    assert!(Events::open(gw.addr, &bearer).await.is_ok());
    let (s, h, _) = send(&c, "POST", &ui, &bearer, Bytes::new()).await;
    assert_eq!((s, h["allow"].to_str().unwrap()), (405, "GET, HEAD"));
    let (s, h, _) = send(&c, "GET", &login, &bearer, Bytes::new()).await;
    assert_eq!((s, h["allow"].to_str().unwrap()), (405, "POST"));
    let forged = [("cookie", "vyx_ui=00")];
    assert_eq!(send(&c, "GET", &ui, &forged, Bytes::new()).await.0, 401);
    assert_eq!(Events::open(gw.addr, &forged).await.err().unwrap().0, 401);
}

#[tokio::test]
async fn events_carry_a_worker_that_connects_and_its_routes_counts() {
    let gw = gateway(|_| {}).await;
    let mut events = Events::open(gw.addr, &[("authorization", BEARER)])
        .await
        .unwrap();
    let first = events.next().await;
    assert_eq!(first["workers"], serde_json::json!([]), "{first}");
    let w = worker(gw.addr).await;
    // Its two connections (one per shard) are one worker process: one replica, one capacity.
    let seen = events
        .until("the worker", |e| {
            e["workers"][0]["id"] == "dash" && e["totals"]["connections"] == 2
        })
        .await;
    let replica = &seen["workers"][0]["replicas"][0];
    assert_eq!(replica["max_concurrency"], 4, "{seen}");
    assert_eq!(seen["totals"]["capacity"], 4, "{seen}");
    let hello = seen["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "GET /hello/{name}")
        .unwrap_or_else(|| panic!("no route: {seen}"));
    assert_eq!(hello["served_by"], serde_json::json!(["dash"]));
    assert_eq!(hello["replicas"], 1);
    let c = client();
    for _ in 0..5 {
        assert_eq!(get(&c, &gw.url("/hello/ada")).await.0, 200);
    }
    assert_eq!(get(&c, &gw.url("/fail")).await.0, 503);
    let route = |e: &Value, name: &str| {
        e["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["route"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let counted = events
        .until("the requests", |e| {
            route(e, "GET /hello/{name}")["requests"] == 5 && route(e, "GET /fail")["errors"] == 1
        })
        .await;
    let hello = route(&counted, "GET /hello/{name}");
    assert!(hello["rate"].as_f64().unwrap() > 0.0, "{counted}");
    assert!(hello["p50_ms"].as_f64().unwrap() > 0.0, "{counted}");
    // Gone: its routes lapse (claim grace) instead of vanishing.
    w.stop();
    events
        .until("the lapsing claims", |e| {
            e["workers"] == serde_json::json!([]) && e["lapsing"][0]["id"] == "dash"
        })
        .await;
}

async fn stalled_clients(gw: SocketAddr) -> u64 {
    let (_, _, body) = send(
        &client(),
        "GET",
        &format!("http://{gw}/_vyx/metrics"),
        &[("authorization", BEARER)],
        Bytes::new(),
    )
    .await;
    let text = String::from_utf8_lossy(&body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("vyx_client_errors_total{reason=\"ui_stalled\"} "))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn a_client_that_takes_no_events_is_dropped_at_its_bound() {
    let gw = gateway(|c| {
        c.ui.interval = Duration::from_millis(10);
        c.ui.max_missed = 4;
    })
    .await;
    // Big events (long routes, each listed twice), so the socket buffers fill in a few.
    let long = "x".repeat(400);
    let routes = (0..200)
        .map(|i| route(i, "GET", &format!("/{long}/{i}")))
        .collect();
    let _big = RawWorker::connect(gw.addr, "big", routes).await;
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut tcp = sock.connect(gw.addr).await.unwrap();
    let me = tcp.local_addr().unwrap();
    tcp.write_all(
        format!("GET /_vyx/ui/events HTTP/1.1\r\nhost: gw\r\nauthorization: {BEARER}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    // Never read: the gateway drops it (a reset) once it has missed ui.max_missed updates.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let end = gateway_end(gw.addr, me);
        if stalled_clients(gw.addr).await == 1 && end.is_none_or(|(state, _)| state != 1) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not dropped: {end:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Its place is free: with the default cap, a reader is served.
    let mut events = Events::open(gw.addr, &[("authorization", BEARER)])
        .await
        .unwrap();
    events.next().await;
    drop(tcp);
}

#[tokio::test]
async fn dashboard_clients_past_the_cap_are_refused_until_one_leaves() {
    let gw = gateway(|c| c.ui.clients = 1).await;
    let auth = [("authorization", BEARER)];
    let mut first = Events::open(gw.addr, &auth).await.unwrap();
    first.next().await;
    let (status, why) = Events::open(gw.addr, &auth).await.err().unwrap();
    assert_eq!(status, 503);
    assert!(why.contains("ui.clients"), "{why}");
    drop(first);
    // The slot is given back when the gateway sees the client gone (its next event).
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut again = loop {
        match Events::open(gw.addr, &auth).await {
            Ok(e) => break e,
            Err((503, _)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("refused: {e:?}"),
        }
    };
    again.next().await;
}

#[test]
fn the_bounds_are_the_operator_s_to_set_in_vyx_yaml() {
    use vyx_gateway::file_config::parse;
    let path = std::path::Path::new("/tmp/vyx.yaml");
    let c = parse(path, "ui: {clients: 2, interval: 250ms, max_missed: 4}\n").unwrap();
    assert_eq!(
        (c.ui.clients, c.ui.interval, c.ui.max_missed),
        (2, Duration::from_millis(250), 4)
    );
    let d = parse(path, "listen: 127.0.0.1:9000\n").unwrap();
    assert_eq!((d.ui.clients, d.ui.max_missed), (8, 16));
    for (text, words) in [
        ("ui: {clients: 5000}\n", "1:15: ui.clients: at most 1024"),
        (
            "ui: {interval: 10ms}\n",
            "1:16: ui.interval: between 100ms and 60s",
        ),
        (
            "ui: {max_missed: 0}\n",
            "1:18: ui.max_missed: between 1 and 1024",
        ),
        ("ui: {client: 1}\n", "unknown key `client`"),
    ] {
        let why = parse(path, text).err().unwrap().to_string();
        assert!(why.contains(words), "{text}: {why}");
    }
}

#[tokio::test]
async fn a_shutdown_ends_the_event_streams_instead_of_waiting_on_them() {
    // A drain grace far longer than WAIT: a stream that held the shutdown would fail here.
    let gw = gateway(|c| c.drain_grace = Duration::from_secs(600)).await;
    let mut events = Events::open(gw.addr, &[("authorization", BEARER)])
        .await
        .unwrap();
    events.next().await;
    tokio::time::timeout(WAIT, gw.shutdown())
        .await
        .expect("shut down in time");
    let end = tokio::time::timeout(WAIT, events.body.collect()).await;
    assert!(end.expect("the stream ended").is_ok());
}

//! What an admitted worker declares is bounded (spec/PROTOCOL.md §2.4 rules 3a, 6, 7, §2.5):
//! deep or long route patterns, long methods, instances, sdk names and labels are refused
//! with 4001 naming the field, and the gateway serves the other workers after. Issue 17
//! item 1: a HELLO with a 20,000-segment pattern, or a ROUTES frame, or a client path walking
//! a deep route, overflowed the stack and aborted the whole process.

mod common;

use std::collections::BTreeMap;

use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use vyx_core::frame::{Data, Frame, Response};
use vyx_core::handshake::{Hello, Routes};
use vyx_core::limits::{MAX_PATTERN_LEN, MAX_PATTERN_SEGMENTS};

/// Answers every REQUEST with 200 and `route_id` then `name=<value length>` for each param,
/// until the socket ends.
fn serve(mut w: RawWorker) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use futures_util::StreamExt;
        while let Some(Ok(msg)) = w.ws.next().await {
            let Message::Binary(b) = msg else { continue };
            let Ok(Frame::Request(r)) = Frame::decode(b, 1 << 20) else {
                continue;
            };
            let mut body = r.route_id.to_string();
            for (name, value) in &r.params {
                body += &format!(" {}={}", String::from_utf8_lossy(name), value.len());
            }
            let head = Frame::Response(Response {
                stream_id: r.stream_id,
                end_stream: false,
                status: 200,
                headers: vec![],
            });
            let data = Data::encode_parts(r.stream_id, true, body.as_bytes());
            if w.ws.send(Message::Binary(head.encode())).await.is_err()
                || w.ws.send(Message::Binary(data)).await.is_err()
            {
                return;
            }
        }
    })
}

/// Upgrades as `id` (with `token`, if any), sends `hello` and returns how the gateway closes:
/// the code and the close frame's reason; `(0, "welcomed")` for a WELCOME.
async fn refusal(gw: &TestGateway, id: &str, token: Option<&str>, hello: Hello) -> (u16, String) {
    let mut ws = try_upgrade(gw.addr, id, token).await.unwrap();
    ws.send(Message::Binary(Frame::Hello(hello).encode()))
        .await
        .unwrap();
    let mut w = RawWorker {
        ws,
        welcome: unset_welcome(),
    };
    match w.next_frame().await {
        Frame::Error(_) => w.close_frame().await,
        Frame::Welcome(_) => (0, "welcomed".into()),
        other => panic!("unexpected {other:?}"),
    }
}

/// `/a/a/…/a`, `n` segments.
fn deep(n: usize) -> String {
    "/a".repeat(n)
}

/// A healthy worker beside the hostile ones: `GET /ok` answers 200 before and after.
async fn bystander(gw: &TestGateway) -> tokio::task::JoinHandle<()> {
    let w = RawWorker::connect(gw.addr, "raw:ok", vec![route(1, "GET", "/ok")]).await;
    let task = serve(w);
    assert_eq!(get(&client(), &gw.url("/ok")).await, (200, "1".into()));
    task
}

#[tokio::test]
async fn deep_and_long_patterns_in_hello_are_refused_4001_and_the_gateway_serves_on() {
    let gw = TestGateway::start().await;
    let _ok = bystander(&gw).await;
    let too_long = format!("/{}", "x".repeat(MAX_PATTERN_LEN));
    for (path, why) in [
        // The length is checked first: these are all longer than 4096 bytes.
        (deep(20_000), "is longer than 4096 bytes"),
        ("/".repeat(30_000), "is longer than 4096 bytes"),
        (deep(10_000), "is longer than 4096 bytes"),
        (too_long, "is longer than 4096 bytes"),
        (deep(MAX_PATTERN_SEGMENTS + 1), "has more than 128 segments"),
        (
            "/".repeat(MAX_PATTERN_SEGMENTS + 1),
            "has more than 128 segments",
        ),
    ] {
        let hello = hello(
            "raw:deep",
            vec![route(0, "GET", "/fine"), route(7, "GET", &path)],
        );
        let (code, reason) = refusal(&gw, "raw:deep", None, hello).await;
        assert_eq!(code, 4001, "{} bytes: {reason}", path.len());
        assert!(
            reason.starts_with(&format!("route 7: path {why}")),
            "{reason}"
        );
        assert!(reason.len() <= 123, "{reason}");
    }
    // At the bounds: welcomed.
    let at_bounds = vec![
        route(0, "GET", &deep(MAX_PATTERN_SEGMENTS)),
        route(1, "GET", &"/".repeat(MAX_PATTERN_SEGMENTS)),
        route(2, "GET", &format!("/{}", "x".repeat(MAX_PATTERN_LEN - 1))),
    ];
    let w = RawWorker::connect(gw.addr, "raw:deep", at_bounds).await;
    let _deep = serve(w);
    let c = client();
    assert_eq!(
        get(&c, &gw.url(&deep(MAX_PATTERN_SEGMENTS))).await,
        (200, "0".into())
    );
    assert_eq!(get(&c, &gw.url("/ok")).await, (200, "1".into()));
}

/// `GET target` over a raw HTTP/1.1 connection (the `http` crate cannot build a URI of 64 KiB
/// or more); the whole answer, head and body.
async fn raw_get(gw: &TestGateway, target: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let req = format!("GET {target} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer))
        .await
        .expect("answer in time")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn client_paths_of_100000_and_32000_segments_against_the_deepest_allowed_routes() {
    let gw = TestGateway::start_with(|c| c.max_header = Some(1 << 20)).await;
    let _ok = bystander(&gw).await;
    let below = MAX_PATTERN_SEGMENTS - 1;
    let params: String = (0..below).map(|i| format!("/{{p{i}}}")).collect();
    let routes = vec![
        route(0, "GET", &deep(MAX_PATTERN_SEGMENTS)),
        route(1, "GET", &format!("{}/{{*rest}}", deep(below))),
        route(2, "GET", &format!("{params}/{{last}}")),
        route(3, "GET", &format!("{params}/{{*tail}}")),
    ];
    let w = RawWorker::connect(gw.addr, "raw:deep", routes).await;
    let _deep = serve(w);
    let c = client();
    // Deeper routes are refused: they would stay in the table (the claim grace) for the
    // long paths below to walk.
    let deeper = hello_json("raw:deeper", vec![route(0, "GET", &deep(10_000))]);
    assert_eq!(hello_outcome(&gw, "raw:deeper", &deeper).await, Err(4001));

    // 100,000 segments (200 KB): past what a request target may be (64 KiB, the `http`
    // crate's URI bound), refused before routing.
    let answer = raw_get(&gw, &deep(100_000)).await;
    assert!(answer.starts_with("HTTP/1.1 414"), "{}", &answer[..40]);

    // 32,000 segments: route 0 ends too early, route 1's catch-all takes the rest.
    let long = deep(32_000);
    let rest_len = long.len() - 2 * below - 1;
    assert_eq!(
        get(&c, &gw.url(&long)).await,
        (200, format!("1 rest={rest_len}").into())
    );
    // Not all `a`: the literals dead-end at once, the parameters take it to the bottom, and
    // the search climbs back one level to the catch-all.
    let other = "/b".repeat(32_000);
    let (status, body) = get(&c, &gw.url(&other)).await;
    assert_eq!(status, 200);
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(body.starts_with("3 p0=1 p1=1 "), "{}", &body[..40]);
    assert!(body.ends_with(&format!(" tail={}", other.len() - 2 * below - 1)));
    // 65,000 empty segments: nothing matches.
    assert_eq!(get(&c, &gw.url(&"/".repeat(65_000))).await.0, 404);
    assert_eq!(
        get(&c, &gw.url(&deep(MAX_PATTERN_SEGMENTS))).await,
        (200, "0".into())
    );
    assert_eq!(get(&c, &gw.url("/ok")).await, (200, "1".into()));
}

#[tokio::test]
async fn routes_frames_remove_a_deep_route_and_cannot_add_a_deeper_one() {
    let gw = TestGateway::start().await;
    let _ok = bystander(&gw).await;
    let c = client();
    let deepest = deep(MAX_PATTERN_SEGMENTS);
    let mut w = RawWorker::connect(gw.addr, "raw:deep", vec![route(0, "GET", &deepest)]).await;
    // Removing the deep route prunes its branch of the table.
    w.send(Frame::Routes(Routes {
        routes: vec![route(1, "GET", "/shallow")],
    }))
    .await;
    let _deep = serve(w);
    let deadline = tokio::time::Instant::now() + WAIT;
    while get(&c, &gw.url("/shallow")).await.0 != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ROUTES never applied"
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(get(&c, &gw.url(&deepest)).await.0, 404);

    // A ROUTES frame is bounded like HELLO.
    let mut w = RawWorker::connect(gw.addr, "raw:deeper", vec![route(0, "GET", "/d")]).await;
    w.send(Frame::Routes(Routes {
        routes: vec![route(0, "GET", "/d"), route(1, "GET", &deep(20_000))],
    }))
    .await;
    let (code, reason) = w.close_frame().await;
    assert_eq!(code, 4001, "{reason}");
    assert!(
        reason.starts_with("route 1: path is longer than 4096"),
        "{reason}"
    );
    assert_eq!(get(&c, &gw.url("/shallow")).await, (200, "1".into()));
    assert_eq!(get(&c, &gw.url("/ok")).await, (200, "1".into()));
}

#[tokio::test]
async fn a_vyx_yaml_worker_limited_to_billing_cannot_declare_billing_a_a_a() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("billing.token"), "b-secret\n").unwrap();
    std::fs::write(dir.path().join("ok.token"), "o-secret\n").unwrap();
    let file = dir.path().join("vyx.yaml");
    let yaml = "workers:\n  - id: billing\n    mode: remote\n    token_file: billing.token\n    routes: [/billing]\n  - id: raw:ok\n    mode: remote\n    token_file: ok.token\n";
    std::fs::write(&file, yaml).unwrap();
    let config = vyx_gateway::file_config::load(&file).unwrap();
    let gw = TestGateway::start_with(move |c| {
        *c = vyx_gateway::GatewayConfig {
            listen: c.listen,
            ..config
        }
    })
    .await;
    let w = RawWorker::connect_with_token(
        gw.addr,
        "raw:ok",
        Some("o-secret"),
        vec![route(1, "GET", "/ok")],
    )
    .await;
    let _ok = serve(w);
    let c = client();
    assert_eq!(get(&c, &gw.url("/ok")).await, (200, "1".into()));

    let path = format!("/billing{}", deep(20_000));
    let hello = hello("billing", vec![route(0, "GET", &path)]);
    let (code, reason) = refusal(&gw, "billing", Some("b-secret"), hello).await;
    assert_eq!(code, 4001, "{reason}");
    assert!(
        reason.starts_with("route 0: path is longer than 4096"),
        "{reason}"
    );

    // Inside the prefix and the bounds: welcomed and served.
    let path = format!("/billing{}", deep(MAX_PATTERN_SEGMENTS - 1));
    let w = RawWorker::connect_with_token(
        gw.addr,
        "billing",
        Some("b-secret"),
        vec![route(0, "GET", &path)],
    )
    .await;
    let _billing = serve(w);
    assert_eq!(get(&c, &gw.url(&path)).await, (200, "0".into()));
    assert_eq!(get(&c, &gw.url("/ok")).await, (200, "1".into()));
}

#[tokio::test]
async fn over_long_hello_fields_are_refused_4001_naming_the_field() {
    let gw = TestGateway::start().await;
    let _ok = bystander(&gw).await;
    let base = || hello("raw:fields", vec![route(0, "GET", "/f")]);
    let labels = |n: usize, key: usize, value: usize| -> BTreeMap<String, String> {
        (0..n)
            .map(|i| (format!("{i:0key$}"), "v".repeat(value)))
            .collect()
    };
    let cases = [
        (
            Hello {
                instance: "i".repeat(1 << 19),
                ..base()
            },
            "instance is 524288 bytes; at most 256",
        ),
        (
            Hello {
                sdk: "s".repeat(129),
                ..base()
            },
            "sdk is 129 bytes; at most 128",
        ),
        (
            Hello {
                labels: labels(65, 2, 1),
                ..base()
            },
            "65 labels; at most 64",
        ),
        (
            Hello {
                labels: labels(1, 257, 1),
                ..base()
            },
            "label key \"000",
        ),
        (
            Hello {
                labels: labels(1, 1, 257),
                ..base()
            },
            "label \"0\": value is 257 bytes; at most 256",
        ),
        (
            hello("raw:fields", vec![route(0, &"X".repeat(33), "/f")]),
            "route 0: method is 33 bytes; at most 32",
        ),
        (
            Hello {
                worker_id: "w".repeat(1 << 19),
                ..base()
            },
            "HELLO names worker id \"www",
        ),
        (
            Hello {
                features: (0..17).map(|i| format!("f{i}")).collect(),
                ..base()
            },
            "features lists 17 names; at most 16",
        ),
        (
            Hello {
                features: vec!["f".repeat(1 << 19)],
                ..base()
            },
            "features[0] is 524288 bytes; 1..=32",
        ),
    ];
    for (hello, why) in cases {
        let (code, reason) = refusal(&gw, "raw:fields", None, hello).await;
        assert_eq!(code, 4001, "{reason}");
        assert!(reason.starts_with(why), "{reason}");
        assert!(reason.len() <= 123, "{reason}");
    }
    // At the bounds: welcomed and served.
    let mut ws = try_upgrade(gw.addr, "raw:fields", None).await.unwrap();
    let hello = Hello {
        instance: "i".repeat(256),
        sdk: "s".repeat(128),
        labels: labels(64, 256, 256),
        ..hello(
            "raw:fields",
            vec![route(0, "GET", "/f"), route(1, &"X".repeat(32), "/f")],
        )
    };
    ws.send(Message::Binary(Frame::Hello(hello).encode()))
        .await
        .unwrap();
    let mut w = RawWorker {
        ws,
        welcome: unset_welcome(),
    };
    assert!(matches!(w.next_frame().await, Frame::Welcome(_)));
    let _fields = serve(w);
    assert_eq!(get(&client(), &gw.url("/f")).await, (200, "0".into()));
    assert_eq!(get(&client(), &gw.url("/ok")).await, (200, "1".into()));
}

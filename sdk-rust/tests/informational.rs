//! Interim (1xx) responses (PROTOCOL.md §3.11) from `Request::send_informational`, against
//! the scripted stand-in for the gateway.

use vyx::{HeaderMap, HeaderValue, Request, StatusCode};
use vyx_core::frame::Frame;

mod common;
use common::*;

fn worker(url: &str) -> vyx::Worker {
    vyx::Worker::builder()
        .connect(url)
        .id("rust:early")
        .handle_signals(false)
        .get("/page", |req: Request| async move {
            let mut hints = HeaderMap::new();
            let link = "</app.css>; rel=preload; as=style";
            hints.insert("link", HeaderValue::from_static(link));
            hints.insert("connection", HeaderValue::from_static("close"));
            let mut sent = Vec::new();
            for _ in 0..9 {
                sent.push(req.send_informational(StatusCode::EARLY_HINTS, &hints));
            }
            let refused = req.send_informational(StatusCode::OK, &hints).is_err();
            format!("{sent:?} {refused}")
        })
        .build()
        .unwrap()
}

#[tokio::test]
async fn early_hints_go_before_the_response_when_granted() {
    let (gw, url) = Gateway::bind().await;
    let w = worker(&url);
    let _running = run(&w);
    let (mut conn, hello) = gw.accept().await;
    assert!(hello.features.iter().any(|f| f == "informational"));
    let mut welcome = conn.0.welcome_with(5000, WINDOW);
    welcome.features = vec!["informational".into()];
    conn.0.send(Frame::Welcome(welcome)).await.unwrap();
    conn.request(1, 0, "GET", "/page", &[], &[], true).await;
    for i in 0..8 {
        match timeout(conn.recv()).await {
            Frame::Informational(f) => {
                assert_eq!((f.stream_id, f.status), (1, 103), "interim {i}");
                let names: Vec<&[u8]> = f.headers.iter().map(|(n, _)| &n[..]).collect();
                assert_eq!(names, [&b"link"[..]], "interim {i}: hop-by-hop dropped");
            }
            other => panic!("interim {i}: got {other:?}"),
        }
    }
    let seen = timeout(conn.response(1)).await;
    assert_eq!(seen.status, 200);
    let ok = "Ok(true), ".repeat(8);
    assert_eq!(seen.text(), format!("[{ok}Ok(false)] true"));
}

#[tokio::test]
async fn without_the_grant_nothing_is_sent() {
    let (gw, url) = Gateway::bind().await;
    let w = worker(&url);
    let _running = run(&w);
    let (mut conn, _) = gw.welcome().await;
    let seen = timeout(conn.get(1, 0, "/page", &[])).await;
    assert_eq!(seen.status, 200);
    assert_eq!(
        seen.text(),
        format!("[{}Ok(false)] true", "Ok(false), ".repeat(8))
    );
}

//! Trailers through the gateway (PROTOCOL.md §3.10): a worker's TRAILERS reach HTTP/2 and
//! HTTP/1.1 clients, a client's trailers reach a worker that negotiated them and are
//! counted when dropped for one that did not, and the rules of the frame hold.

mod common;

use std::convert::Infallible;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame as BodyFrame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vyx_core::frame::{Frame, HeaderList, Response, Trailers};

fn fields(pairs: &[(&'static str, &'static str)]) -> HeaderList {
    pairs
        .iter()
        .map(|(n, v)| {
            (
                Bytes::from_static(n.as_bytes()),
                Bytes::from_static(v.as_bytes()),
            )
        })
        .collect()
}

/// Answers every REQUEST with "hello" and the trailers `grpc-status: 0`, `x-checksum: abc`,
/// and a `content-length` the gateway must not pass on as a trailer.
fn serve_with_trailers(mut w: RawWorker) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Frame::Request(r) = w.next_frame().await else {
                continue;
            };
            let id = r.stream_id;
            w.send(Frame::Response(Response {
                stream_id: id,
                end_stream: false,
                status: 200,
                headers: fields(&[
                    ("content-type", "text/plain"),
                    ("trailer", "grpc-status, X-Checksum, content-length"),
                ]),
            }))
            .await;
            w.send(data(id, b"hello", false)).await;
            w.send(Frame::Trailers(Trailers {
                stream_id: id,
                headers: fields(&[
                    ("grpc-status", "0"),
                    ("x-checksum", "abc"),
                    ("content-length", "99"),
                ]),
            }))
            .await;
        }
    })
}

async fn raw_http1(addr: std::net::SocketAddr, request: String) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("answer in time")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_workers_trailers_reach_http2_and_http1_clients() {
    let gw = TestGateway::start().await;
    let w = RawWorker::connect_with_features(
        gw.addr,
        "raw:trailers",
        vec![route(0, "GET", "/t")],
        &["trailers"],
    )
    .await;
    assert_eq!(w.welcome.features, ["trailers"]);
    let _serving = serve_with_trailers(w);

    // HTTP/2: a trailing HEADERS frame, without the field RFC 9110 keeps out of trailers.
    let h2: hyper_util::client::legacy::Client<_, http_body_util::Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let resp = h2
        .get(gw.url("/t").parse().unwrap())
        .await
        .expect("response");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["trailer"], "grpc-status, x-checksum");
    let body = tokio::time::timeout(WAIT, resp.into_body().collect())
        .await
        .unwrap()
        .unwrap();
    let trailers = body.trailers().cloned().expect("trailers");
    assert_eq!(body.to_bytes(), "hello");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["x-checksum"], "abc");
    assert!(trailers.get("content-length").is_none(), "{trailers:?}");

    // HTTP/1.1 with `TE: trailers`: the chunked trailer section, after the last chunk.
    let text = raw_http1(
        gw.addr,
        "GET /t HTTP/1.1\r\nHost: t\r\nTE: trailers\r\nConnection: close\r\n\r\n".into(),
    )
    .await;
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    assert!(head.contains("transfer-encoding: chunked"), "{text}");
    assert!(head.contains("trailer: grpc-status, x-checksum"), "{text}");
    assert_eq!(
        body, "5\r\nhello\r\n0\r\ngrpc-status: 0\r\nx-checksum: abc\r\n\r\n",
        "{text}"
    );

    // HTTP/1.1 without it: the same body, no trailer section (RFC 9110 §6.5.1).
    let text = raw_http1(
        gw.addr,
        "GET /t HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".into(),
    )
    .await;
    let (_, body) = text.split_once("\r\n\r\n").expect("a head");
    assert_eq!(body, "5\r\nhello\r\n0\r\n\r\n", "{text}");
}

/// The REQUEST, then every frame of its stream up to the one that ends the request body.
async fn request_frames(w: &mut RawWorker) -> Vec<Frame> {
    let mut frames = vec![w.next_frame().await];
    let Frame::Request(r) = &frames[0] else {
        panic!("expected REQUEST, got {:?}", frames[0]);
    };
    let (id, mut ended) = (r.stream_id, r.end_stream);
    while !ended {
        let f = w.next_frame().await;
        ended = match &f {
            Frame::Data(d) => d.end_stream,
            Frame::Trailers(_) => true,
            other => panic!("unexpected {other:?}"),
        };
        frames.push(f);
    }
    w.send(respond(id, 200, true)).await;
    frames
}

const CHUNKED_WITH_TRAILERS: &str = "POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
    Transfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n\
    5\r\nhello\r\n0\r\nx-sum: 5\r\ncontent-type: text/evil\r\n\r\n";

#[tokio::test]
async fn a_clients_trailers_reach_a_worker_that_negotiated_them_and_are_counted_otherwise() {
    let gw = TestGateway::start().await;
    let mut with = RawWorker::connect_with_features(
        gw.addr,
        "raw:with",
        vec![route(0, "POST", "/with")],
        &["trailers"],
    )
    .await;
    let mut without =
        RawWorker::connect(gw.addr, "raw:without", vec![route(0, "POST", "/without")]).await;

    // HTTP/1.1 chunked: the body, then TRAILERS without `content-type`.
    let answer = tokio::spawn(raw_http1(
        gw.addr,
        CHUNKED_WITH_TRAILERS.replace("{path}", "/with"),
    ));
    let frames = request_frames(&mut with).await;
    assert!(answer.await.unwrap().starts_with("HTTP/1.1 200"));
    let Frame::Request(r) = &frames[0] else {
        unreachable!()
    };
    assert!(
        r.headers.iter().all(|(n, _)| &n[..] != b"trailer"),
        "trailer is not forwarded: {:?}",
        r.headers
    );
    let body: Vec<u8> = frames
        .iter()
        .filter_map(|f| match f {
            Frame::Data(d) => Some(d.data.to_vec()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(body, b"hello");
    match frames.last().unwrap() {
        Frame::Trailers(t) => assert_eq!(t.headers, fields(&[("x-sum", "5")])),
        other => panic!("expected TRAILERS, got {other:?}"),
    }

    // HTTP/2: the trailing HEADERS frame becomes TRAILERS too.
    let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let mut trailer_map = http::HeaderMap::new();
    trailer_map.insert("x-sum", "7".parse().unwrap());
    let parts: Vec<Result<BodyFrame<Bytes>, Infallible>> = vec![
        Ok(BodyFrame::data(Bytes::from_static(b"seven!!"))),
        Ok(BodyFrame::trailers(trailer_map)),
    ];
    let req = http::Request::post(gw.url("/with"))
        .body(StreamBody::new(futures_util::stream::iter(parts)))
        .unwrap();
    let answer = tokio::spawn(async move { h2.request(req).await.map(|r| r.status()) });
    let frames = request_frames(&mut with).await;
    assert_eq!(answer.await.unwrap().unwrap(), 200);
    match frames.last().unwrap() {
        Frame::Trailers(t) => assert_eq!(t.headers, fields(&[("x-sum", "7")])),
        other => panic!("expected TRAILERS, got {other:?}"),
    }

    // A worker that did not negotiate them: END_STREAM as in v1, and the drop is counted.
    let answer = tokio::spawn(raw_http1(
        gw.addr,
        CHUNKED_WITH_TRAILERS.replace("{path}", "/without"),
    ));
    let frames = request_frames(&mut without).await;
    assert!(answer.await.unwrap().starts_with("HTTP/1.1 200"));
    assert!(matches!(frames.last(), Some(Frame::Data(d)) if d.end_stream));
    let (_, metrics) = get(&client(), &gw.url("/_vyx/metrics")).await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("vyx_request_trailers_dropped_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn trailers_out_of_place_or_too_large_fail_their_stream_only() {
    let gw = TestGateway::start().await;
    let mut w = RawWorker::connect_with_features(
        gw.addr,
        "raw:bad-trailers",
        vec![route(0, "GET", "/early"), route(1, "GET", "/large")],
        &["trailers"],
    )
    .await;
    let c = client();

    // TRAILERS before RESPONSE: RESET protocol_error, 502 (§4.4).
    let early = tokio::spawn({
        let c = c.clone();
        let url = gw.url("/early");
        async move { get(&c, &url).await }
    });
    let Frame::Request(r) = w.next_frame().await else {
        panic!("expected REQUEST")
    };
    w.send(Frame::Trailers(Trailers {
        stream_id: r.stream_id,
        headers: fields(&[("x", "1")]),
    }))
    .await;
    assert!(
        matches!(w.next_frame().await, Frame::Reset(x) if x.stream_id == r.stream_id && x.code == 5)
    );
    assert_eq!(early.await.unwrap().0, 502);

    // One byte over max_trailers_size: RESET protocol_error, the client's response aborted.
    let large = tokio::spawn({
        let c = c.clone();
        let url = gw.url("/large");
        async move {
            let resp = c.get(url.parse().unwrap()).await.unwrap();
            resp.into_body().collect().await.map(|_| ())
        }
    });
    let Frame::Request(r) = w.next_frame().await else {
        panic!("expected REQUEST")
    };
    w.send(respond(r.stream_id, 200, false)).await;
    w.send(data(r.stream_id, b"part", false)).await;
    // 2 (count) + 2 + 1 (name) + 2 + n (value) = max + 1.
    let value = "v".repeat(vyx_core::limits::MAX_TRAILERS_SIZE - 6);
    w.send(Frame::Trailers(Trailers {
        stream_id: r.stream_id,
        headers: vec![(Bytes::from_static(b"x"), Bytes::from(value))],
    }))
    .await;
    assert!(
        matches!(w.next_frame().await, Frame::Reset(x) if x.stream_id == r.stream_id && x.code == 5)
    );
    assert!(
        large.await.unwrap().is_err(),
        "the response must be aborted"
    );

    // The connection serves on.
    let _serving = serve_ok(w);
}

//! Interim (1xx) responses through the gateway (PROTOCOL.md §3.11): a worker's INFORMATIONAL
//! reaches an HTTP/1.1 client as an interim head before the final response, between the
//! right two responses of a pipelined connection; the limit, the 100 the gateway answers
//! itself, HTTP/1.0 and HTTP/2 clients (which get none) and a 1xx after the final head.

mod common;

use bytes::Bytes;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vyx_core::frame::{Frame, HeaderList, Informational, Response};

fn fields(pairs: &[(&str, &str)]) -> HeaderList {
    pairs
        .iter()
        .map(|(n, v)| (Bytes::from(n.to_string()), Bytes::from(v.to_string())))
        .collect()
}

fn interim(stream_id: u32, status: u16, pairs: &[(&str, &str)]) -> Frame {
    Frame::Informational(Informational {
        stream_id,
        status,
        headers: fields(pairs),
    })
}

fn final_response(stream_id: u32, body: &str) -> Vec<Frame> {
    vec![
        Frame::Response(Response {
            stream_id,
            end_stream: false,
            status: 200,
            headers: fields(&[("content-length", &body.len().to_string())]),
        }),
        Frame::Data(vyx_core::frame::Data {
            stream_id,
            end_stream: true,
            data: Bytes::from(body.to_string()),
        }),
    ]
}

async fn worker(gw: &TestGateway, path: &str) -> RawWorker {
    let w = RawWorker::connect_with_features(
        gw.addr,
        "raw:early",
        vec![route(0, "*", path)],
        &["informational"],
    )
    .await;
    assert_eq!(w.welcome.features, ["informational"]);
    w
}

/// The next REQUEST's stream id.
async fn next_request(w: &mut RawWorker) -> u32 {
    loop {
        if let Frame::Request(r) = w.next_frame().await {
            return r.stream_id;
        }
    }
}

/// Everything the gateway writes until it closes the connection.
async fn read_all(mut s: tokio::net::TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("answer in time")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn early_hints_reach_an_http11_client_before_its_response() {
    let gw = TestGateway::start().await;
    let mut w = worker(&gw, "/e").await;
    let mut c = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    c.write_all(b"GET /e HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let id = next_request(&mut w).await;
    // A 100 is dropped (the gateway answers `expect: 100-continue` itself); hop-by-hop
    // fields are removed; each 103 is a head of its own, in order.
    w.send(interim(id, 100, &[("x-n", "0")])).await;
    for n in ["1", "2"] {
        let link = "</style.css>; rel=preload; as=style";
        let pairs = [
            ("link", link),
            ("x-n", n),
            ("connection", "x-hop"),
            ("x-hop", "1"),
        ];
        w.send(interim(id, 103, &pairs)).await;
    }
    for f in final_response(id, "done") {
        w.send(f).await;
    }
    let text = read_all(c).await;
    let mut expected = String::new();
    for n in 1..=2 {
        expected += &format!(
            "HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload; as=style\r\nx-n: {n}\r\n\r\n"
        );
    }
    assert!(text.starts_with(&expected), "{text}");
    let rest = &text[expected.len()..];
    assert!(rest.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(rest.ends_with("\r\n\r\ndone"), "{text}");
    assert!(!rest.contains("x-n"), "{text}");
}

#[tokio::test]
async fn the_ninth_interim_head_of_a_stream_is_ignored() {
    let gw = TestGateway::start().await;
    let mut w = worker(&gw, "/e").await;
    let mut c = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    c.write_all(b"GET /e HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let id = next_request(&mut w).await;
    for n in 1..=9 {
        w.send(interim(id, 103, &[("x-n", &n.to_string())])).await;
    }
    for f in final_response(id, "done") {
        w.send(f).await;
    }
    let text = read_all(c).await;
    assert_eq!(
        text.matches("HTTP/1.1 103 Early Hints\r\n").count(),
        8,
        "{text}"
    );
    assert!(
        text.contains("x-n: 8\r\n") && !text.contains("x-n: 9"),
        "{text}"
    );
    assert!(text.contains("\r\n\r\nHTTP/1.1 200 OK\r\n"), "{text}");
}

/// Request 1 streams its body (past `body_buffer`) and is answered, all of its
/// `content-length`, before the body ends and before the worker ends the stream; the
/// client reads that response, then ends the body and pipelines request 2, whose 103 must
/// come after all of response 1 and before response 2. (The case where hyper still holds
/// response 1's tail when the 103 is queued is reasoned in `interim.rs`, not reproduced.)
///
/// It once hung: hyper drops a response body once it has written the declared length, the
/// gateway took that drop for the client going away and RESET the stream, the request
/// body's pump stopped at the RESET, and with a byte of body unread hyper closed the
/// connection, request 2 unread (`ResponseBody::is_whole`).
#[tokio::test]
async fn a_pipelined_requests_early_hints_come_after_the_response_before_it() {
    let gw = TestGateway::start_with(|c| c.body_buffer = 1024).await;
    let mut w = worker(&gw, "/e").await;
    let c = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut rd, mut wr) = c.into_split();
    let body_len = 4096;
    wr.write_all(
        format!("POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: {body_len}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    wr.write_all(&vec![b'u'; body_len - 1]).await.unwrap();
    let first = next_request(&mut w).await;
    // One initial window's worth: sent without waiting for credit, and the WINDOWs that
    // give it all back say hyper has taken the whole response.
    let big = w.welcome.initial_window as usize;
    w.send(Frame::Response(Response {
        stream_id: first,
        end_stream: false,
        status: 200,
        headers: fields(&[("content-length", &big.to_string())]),
    }))
    .await;
    for _ in 0..4 {
        w.send(Frame::Data(vyx_core::frame::Data {
            stream_id: first,
            end_stream: false,
            data: Bytes::from(vec![b'a'; big / 4]),
        }))
        .await;
    }
    // The whole of response 1 first: hyper has dropped its body by then.
    let mut response1 = Vec::new();
    while !response1.ends_with(b"\r\n\r\n") {
        response1.push(rd.read_u8().await.unwrap());
    }
    let mut body1 = vec![0u8; big];
    tokio::time::timeout(WAIT, rd.read_exact(&mut body1))
        .await
        .expect("response 1 in time")
        .unwrap();
    assert!(response1.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(body1.iter().all(|&b| b == b'a'));
    wr.write_all(b"u").await.unwrap();
    wr.write_all(b"GET /e HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let second = tokio::time::timeout(WAIT, next_request(&mut w))
        .await
        .expect("request 2 reaches the worker");
    assert!(second > first);
    w.send(data(first, b"", true)).await;
    w.send(interim(second, 103, &[("link", "</two.css>; rel=preload")]))
        .await;
    for f in final_response(second, "two") {
        w.send(f).await;
    }
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, rd.read_to_end(&mut out))
        .await
        .expect("answers in time")
        .unwrap();
    let after = String::from_utf8_lossy(&out);
    let hint = "HTTP/1.1 103 Early Hints\r\nlink: </two.css>; rel=preload\r\n\r\n";
    assert!(after.starts_with(hint), "{after}");
    assert!(
        after[hint.len()..].starts_with("HTTP/1.1 200 OK\r\n"),
        "{after}"
    );
    assert!(after.ends_with("\r\n\r\ntwo"), "{after}");
}

#[tokio::test]
async fn http10_and_http2_clients_get_no_interim_response() {
    let gw = TestGateway::start().await;
    let mut w = worker(&gw, "/e").await;
    let mut c = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    c.write_all(b"GET /e HTTP/1.0\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let id = next_request(&mut w).await;
    w.send(interim(id, 103, &[("link", "</a.css>; rel=preload")]))
        .await;
    for f in final_response(id, "ten") {
        w.send(f).await;
    }
    let text = read_all(c).await;
    assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text}");
    assert!(!text.contains(" 103 ") && text.ends_with("ten"), "{text}");

    // HTTP/2: dropped (hyper offers no way to send one, RFC 8297 §2 lets a proxy drop it).
    let h2: hyper_util::client::legacy::Client<_, http_body_util::Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let asked = tokio::spawn(h2.get(gw.url("/e").parse().unwrap()));
    let id = next_request(&mut w).await;
    w.send(interim(id, 103, &[("link", "</a.css>; rel=preload")]))
        .await;
    for f in final_response(id, "two") {
        w.send(f).await;
    }
    let resp = asked.await.unwrap().expect("response");
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn an_interim_head_after_the_response_aborts_the_stream() {
    let gw = TestGateway::start().await;
    let mut w = worker(&gw, "/e").await;
    let mut c = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    c.write_all(b"GET /e HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let id = next_request(&mut w).await;
    w.send(Frame::Response(Response {
        stream_id: id,
        end_stream: false,
        status: 200,
        headers: fields(&[("content-length", "10")]),
    }))
    .await;
    w.send(data(id, b"part", false)).await;
    w.send(interim(id, 103, &[("link", "</late.css>; rel=preload")]))
        .await;
    // §3.11: RESET `protocol_error` to the worker, the client's response cut short.
    let reset = loop {
        if let Frame::Reset(r) = w.next_frame().await {
            break r;
        }
    };
    assert_eq!(reset.stream_id, id);
    assert_eq!(
        vyx_core::error::ResetCode::from_u32(reset.code),
        vyx_core::error::ResetCode::ProtocolError
    );
    let text = read_all(c).await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\npart"), "{text}");
    assert!(!text.contains(" 103 "), "{text}");
}

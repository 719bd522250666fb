//! Upgrades for tower services behind `.service(...)`: axum's own `WebSocketUpgrade` and a
//! plain `hyper::upgrade::on` service, through a real gateway, with a real WebSocket client.

#[path = "../../gateway/tests/common/mod.rs"]
mod gateway;

use axum::extract::ws::{
    CloseFrame as AxumClose, Message as AxumMessage, WebSocket, WebSocketUpgrade,
};
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use gateway::{start_connected, wait_in_flight, TestGateway, WAIT};
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// How each server-side WebSocket ended, for the tests to see.
type Ends = mpsc::UnboundedSender<String>;

/// Echoes every text and binary message; answers `close-me` by closing 4000 itself.
async fn echo(mut socket: WebSocket, ends: Ends) {
    let mut closed = None;
    let end = loop {
        match socket.recv().await {
            Some(Ok(AxumMessage::Text(t))) if t.as_str() == "close-me" => {
                let frame = AxumClose {
                    code: 4000,
                    reason: "as asked".into(),
                };
                let _ = socket.send(AxumMessage::Close(Some(frame))).await;
                break "closed by the server".to_owned();
            }
            Some(Ok(m @ (AxumMessage::Text(_) | AxumMessage::Binary(_)))) => {
                if socket.send(m).await.is_err() {
                    break "send failed".to_owned();
                }
            }
            // Read on: the next read sends tungstenite's answer, then ends.
            Some(Ok(AxumMessage::Close(frame))) => closed = Some(frame.map(|f| f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => match closed {
                Some(code) => break format!("client closed {code:?}"),
                None => break "lost".to_owned(),
            },
        }
    };
    let _ = ends.send(end);
}

fn router(ends: Ends) -> axum::Router {
    axum::Router::new()
        .route(
            "/ws/echo",
            get(move |ws: WebSocketUpgrade| async move {
                ws.max_message_size(4 << 20)
                    .on_upgrade(move |socket| echo(socket, ends))
            }),
        )
        .route(
            "/ws/forbidden",
            get(|_ws: WebSocketUpgrade| async { (StatusCode::FORBIDDEN, "not you") }),
        )
        .route("/plain", get(|| async { "plain" }))
}

/// A gateway and a worker serving `router` under `/{*rest}` with `.service(...)`.
async fn serve(router: axum::Router) -> (TestGateway, vyx::Worker) {
    let gw = TestGateway::start().await;
    let worker = vyx::Worker::builder()
        .connect(format!("ws://{}", gw.addr))
        .id("rust:tower-ws")
        .service("/{*rest}", router)
        .build()
        .unwrap();
    start_connected(&worker).await;
    (gw, worker)
}

async fn next(ws: &mut gateway::Ws) -> Message {
    tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("a message in time")
        .expect("the connection open")
        .expect("a message")
}

async fn ended(ends: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(WAIT, ends.recv())
        .await
        .expect("the server's socket ended in time")
        .unwrap()
}

#[tokio::test]
async fn axum_websocket_upgrade_echoes_text_and_binary_and_the_client_closes() {
    let (tx, mut ends) = mpsc::unbounded_channel();
    let (gw, _worker) = serve(router(tx)).await;
    let (mut ws, res) = tokio_tungstenite::connect_async(format!("ws://{}/ws/echo", gw.addr))
        .await
        .expect("axum's WebSocketUpgrade switched");
    assert_eq!(res.status(), 101);
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("hello"));
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    assert_eq!(next(&mut ws).await, Message::binary(vec![0u8, 1, 2, 255]));
    // The gateway still serves the service's plain routes beside it.
    let (status, body) = gateway::get(&gateway::client(), &gw.url("/plain")).await;
    assert_eq!((status, &body[..]), (200, &b"plain"[..]));

    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    match next(&mut ws).await {
        Message::Close(Some(f)) => assert_eq!(f.code, CloseCode::Normal),
        other => panic!("expected the server's close, got {other:?}"),
    }
    assert_eq!(ended(&mut ends).await, "client closed Some(1000)");
    // The server let go of its socket: the gateway closes the client's connection.
    let end = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("the end in time");
    assert!(
        matches!(end, None | Some(Err(WsError::ConnectionClosed))),
        "{end:?}"
    );
    wait_in_flight(gw.addr, 0, "the closed connection freed its slot").await;
}

/// 1 MiB each way, four times the stream's initial window (256 KiB): it crosses on credit.
#[tokio::test]
async fn a_message_larger_than_the_stream_window_crosses_both_ways() {
    let (tx, _ends) = mpsc::unbounded_channel();
    let (gw, _worker) = serve(router(tx)).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws/echo", gw.addr))
        .await
        .unwrap();
    let big: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::binary(big));
}

#[tokio::test]
async fn the_server_closes_and_the_client_sees_its_close_frame() {
    let (tx, mut ends) = mpsc::unbounded_channel();
    let (gw, _worker) = serve(router(tx)).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws/echo", gw.addr))
        .await
        .unwrap();
    ws.send(Message::text("close-me")).await.unwrap();
    match next(&mut ws).await {
        Message::Close(Some(f)) => {
            assert_eq!((u16::from(f.code), f.reason.as_str()), (4000, "as asked"))
        }
        other => panic!("expected the server's close, got {other:?}"),
    }
    assert_eq!(ended(&mut ends).await, "closed by the server");
    // tungstenite answers the close; then the connection ends.
    let end = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("the end in time");
    assert!(
        matches!(
            end,
            None | Some(Err(WsError::ConnectionClosed | WsError::Protocol(_)))
        ),
        "{end:?}"
    );
    wait_in_flight(gw.addr, 0, "the closed connection freed its slot").await;
}

#[tokio::test]
async fn a_client_that_vanishes_ends_the_servers_socket() {
    let (tx, mut ends) = mpsc::unbounded_channel();
    let (gw, _worker) = serve(router(tx)).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws/echo", gw.addr))
        .await
        .unwrap();
    ws.send(Message::text("here")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("here"));
    drop(ws); // no close frame: the TCP connection just goes
    assert_eq!(ended(&mut ends).await, "lost");
    wait_in_flight(gw.addr, 0, "the lost connection freed its slot").await;
}

#[tokio::test]
async fn a_handler_that_refuses_answers_its_own_status_and_never_switches() {
    let (tx, _ends) = mpsc::unbounded_channel();
    let (gw, _worker) = serve(router(tx)).await;
    match tokio_tungstenite::connect_async(format!("ws://{}/ws/forbidden", gw.addr)).await {
        Err(WsError::Http(res)) => {
            assert_eq!(res.status(), 403);
            assert_eq!(res.body().as_deref(), Some(&b"not you"[..]));
        }
        other => panic!("expected a 403, got {other:?}"),
    }
    wait_in_flight(gw.addr, 0, "the refused upgrade freed its slot").await;
}

/// A hyper-style service, no axum: it takes the connection with `hyper::upgrade::on`,
/// answers 101 itself, and speaks a line protocol of its own.
#[tokio::test]
async fn a_plain_hyper_upgrade_service_gets_its_connection() {
    let service = tower::service_fn(|mut req: http::Request<vyx::Body>| async move {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let mut io = hyper_util::rt::TokioIo::new(on.await.expect("upgraded"));
            let mut buf = [0u8; 64];
            let n = io.read(&mut buf).await.unwrap();
            io.write_all(&[b"you said: ", &buf[..n]].concat())
                .await
                .unwrap();
            io.shutdown().await.unwrap();
        });
        let res = http::Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", "echo")
            .header("connection", "upgrade")
            .body(vyx::Body::empty())
            .unwrap();
        Ok::<_, std::convert::Infallible>(res)
    });
    let gw = TestGateway::start().await;
    let worker = vyx::Worker::builder()
        .connect(format!("ws://{}", gw.addr))
        .id("rust:hyper-upgrade")
        .service("/{*rest}", service)
        .build()
        .unwrap();
    start_connected(&worker).await;

    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(
        b"GET /line HTTP/1.1\r\nhost: gw\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    while !got.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(WAIT, tcp.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 1, "the head: {got:?}");
        got.push(byte[0]);
    }
    let head = String::from_utf8(got).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo\r\n"), "{head}");
    tcp.write_all(b"ping").await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut rest))
        .await
        .expect("the service's answer and its half-close in time")
        .unwrap();
    assert_eq!(rest, b"you said: ping");
    // The service half-closed first; the client's side is still open until it closes.
    tcp.shutdown().await.unwrap();
    wait_in_flight(gw.addr, 0, "both sides ended").await;
}

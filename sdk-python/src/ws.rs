//! WebSocket connections over upgrade streams (PROTOCOL.md §4.5, HOSTS.md §7a), framed here
//! by tungstenite so that Python sees messages, never WebSocket frames.
//!
//! After the host's 101 the stream is a byte pipe (the core's [`Upgraded`]); tungstenite's
//! protocol runs on it as the server. Each operation Python asks for (receive one message,
//! send one, close) is a task on the engine's runtime whose outcome comes back through the
//! hub as [`crate::hub::Item::Ws`], with the token Python gave it: no Rust thread touches the
//! interpreter, and a receive reads one message only when asked, so a slow app holds the
//! client back through the stream's window instead of a queue growing here.

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use vyx_core::session::{Stream, Upgraded};

/// The largest message a WebSocket may receive by default (uvicorn's default too; tungstenite's
/// is 64 MiB). A larger one closes the connection 1009.
pub(crate) const DEFAULT_MAX_MESSAGE: usize = 16 << 20;
/// The largest frame by default (tungstenite's default).
pub(crate) const DEFAULT_MAX_FRAME: usize = 16 << 20;
/// How long a close the app started waits for the client's close before the stream ends
/// anyway (RFC 6455 §7.1.1: the server closes the connection first).
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// What one operation on a WebSocket came to, for Python.
pub(crate) enum WsEvent {
    Text(String),
    Binary(Bytes),
    /// The connection is closed: the close code and reason (1006 and empty when it was lost
    /// without a close frame, 1009 when a message was over the limit).
    Closed(u16, String),
    /// A send or close went out.
    Sent,
    /// A send or close failed: the connection is gone.
    Failed(String),
}

/// One accepted WebSocket: its two halves, each behind its own lock so that a receive
/// waiting for the client never holds up a send.
pub(crate) struct WsConn {
    stream: Stream,
    tx: Mutex<SplitSink<WebSocketStream<Upgraded>, Message>>,
    rx: Mutex<SplitStream<WebSocketStream<Upgraded>>>,
}

impl WsConn {
    /// The WebSocket over `stream`, whose 101 has been sent.
    pub(crate) fn new(stream: Stream, max_message: usize, max_frame: usize) -> WsConn {
        // tungstenite never shuts the pipe down: the end is `WsConn::end`'s to give, after
        // the close handshake.
        let pipe = Upgraded::new(stream.clone());
        let config = WebSocketConfig::default()
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_frame));
        // Builds the protocol state only: nothing is read or written, so it is ready at once.
        let ws = futures_util::FutureExt::now_or_never(WebSocketStream::from_raw_socket(
            pipe,
            Role::Server,
            Some(config),
        ))
        .expect("from_raw_socket does no I/O");
        let (tx, rx) = ws.split();
        WsConn {
            stream,
            tx: Mutex::new(tx),
            rx: Mutex::new(rx),
        }
    }

    /// The next text or binary message; control frames are answered by tungstenite on the way.
    pub(crate) async fn receive(&self) -> WsEvent {
        let mut rx = self.rx.lock().await;
        let outcome = loop {
            match rx.next().await {
                Some(Ok(Message::Text(t))) => return WsEvent::Text(t.as_str().to_owned()),
                Some(Ok(Message::Binary(b))) => return WsEvent::Binary(b),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Close(frame))) => {
                    break frame.map_or((1005, String::new()), |f| {
                        (f.code.into(), f.reason.as_str().to_owned())
                    })
                }
                Some(Err(WsError::Capacity(e))) => {
                    drop(rx);
                    self.send_close(1009, &e.to_string()).await;
                    self.end();
                    return WsEvent::Closed(1009, e.to_string());
                }
                // The client's bytes ended without a close frame: lost, nothing to answer.
                Some(Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake))) => {
                    break (1006, String::new())
                }
                Some(Err(WsError::Protocol(e))) => {
                    drop(rx);
                    self.send_close(1002, &e.to_string()).await;
                    self.end();
                    return WsEvent::Closed(1002, e.to_string());
                }
                Some(Err(WsError::Utf8(e))) => {
                    drop(rx);
                    self.send_close(1007, &e).await;
                    self.end();
                    return WsEvent::Closed(1007, e);
                }
                // Lost: the client vanished, the gateway reset the stream, or it was closed.
                Some(Err(_)) | None => break (1006, String::new()),
            }
        };
        drop(rx);
        // tungstenite queued its answer to the client's close: send it, then end.
        let _ = self.tx.lock().await.close().await;
        self.end();
        WsEvent::Closed(outcome.0, outcome.1)
    }

    pub(crate) async fn send(&self, message: Message) -> WsEvent {
        match self.tx.lock().await.send(message).await {
            Ok(()) => WsEvent::Sent,
            Err(e) => WsEvent::Failed(e.to_string()),
        }
    }

    /// Closes with `code` and `reason`: the close frame, then the client's answer (read by
    /// whoever is receiving, up to [`CLOSE_WAIT`]), then the end of the stream.
    pub(crate) async fn close(&self, code: u16, reason: &str) -> WsEvent {
        let sent = self.send_close(code, reason).await;
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            let mut rx = self.rx.lock().await;
            while let Some(Ok(_)) = rx.next().await {}
        })
        .await;
        self.end();
        sent
    }

    async fn send_close(&self, code: u16, reason: &str) -> WsEvent {
        // A close reason is at most 123 bytes (RFC 6455 §5.5: 125 with the code).
        let mut cut = reason.len().min(123);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason[..cut].into(),
        };
        self.send(Message::Close(Some(frame))).await
    }

    /// Half-closes towards the client: the gateway then closes its connection.
    fn end(&self) {
        if !self.stream.is_done() {
            let _ = self.stream.end();
        }
    }
}

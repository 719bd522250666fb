//! The scripted gateway's moves, shared by the test binaries that drive a worker with it.
// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;
use vyx_core::frame::{self, Frame, Window};
use vyx_core::handshake::Hello;
use vyx_core::ResetCode;
use vyx_scripted_gateway::{Event, ScriptedGateway, Session, WAIT};

pub const WINDOW: u32 = 256 * 1024;

/// The shared scripted gateway, with the moves these tests make.
pub struct Gateway(pub ScriptedGateway);

impl Gateway {
    pub async fn bind() -> (Gateway, String) {
        let gw = ScriptedGateway::bind().await.unwrap();
        let url = gw.url();
        (Gateway(gw), url)
    }

    /// Accepts one worker: the upgrade (answering the subprotocol) and its HELLO.
    pub async fn accept(&self) -> (Conn, Hello) {
        let attempt = self.0.attempt(WAIT).await.unwrap();
        let session = attempt.accept().await.unwrap();
        assert_eq!(session.request_path, "/_vyx/register");
        assert!(session.request_headers.contains_key("x-vyx-worker-id"));
        let hello = session.hello().clone();
        (Conn(session), hello)
    }

    /// Accepts a worker and welcomes it.
    pub async fn welcome(&self) -> (Conn, Hello) {
        self.welcome_with_heartbeat(5000).await
    }

    pub async fn welcome_with_heartbeat(&self, heartbeat_ms: u32) -> (Conn, Hello) {
        let (mut conn, hello) = self.accept().await;
        let mut welcome = conn.0.welcome_with(heartbeat_ms, WINDOW);
        welcome.connection_id = "c-1".into();
        conn.0.send(Frame::Welcome(welcome)).await.unwrap();
        (conn, hello)
    }
}

pub struct Conn(pub Session);

/// A response as the gateway saw it.
#[derive(Debug, Default)]
pub struct Seen {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub head_ended: bool,
    pub body: Vec<u8>,
    pub data_frames: usize,
    pub reset: Option<ResetCode>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

impl Conn {
    pub async fn send(&mut self, frame: Bytes) {
        self.0.send_msg(Message::Binary(frame)).await.unwrap();
    }

    pub async fn recv(&mut self) -> Frame {
        self.0.next_frame().await.unwrap()
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn request(
        &mut self,
        stream_id: u32,
        route_id: u16,
        method: &str,
        target: &str,
        params: &[(&str, &str)],
        headers: &[(&str, &str)],
        end_stream: bool,
    ) {
        let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        let req = frame::Request {
            stream_id,
            end_stream,
            upgrade: false,
            route_id,
            method: b(method),
            target: b(target),
            params: params.iter().map(|(k, v)| (b(k), b(v))).collect(),
            headers: headers.iter().map(|(k, v)| (b(k), b(v))).collect(),
        };
        self.send(req.encode()).await;
    }

    pub async fn get(
        &mut self,
        stream_id: u32,
        route_id: u16,
        target: &str,
        params: &[(&str, &str)],
    ) -> Seen {
        self.request(stream_id, route_id, "GET", target, params, &[], true)
            .await;
        self.response(stream_id).await
    }

    /// Reads one stream's response to its end, granting credit for its DATA.
    pub async fn response(&mut self, stream_id: u32) -> Seen {
        let mut seen = Seen::default();
        loop {
            match self.recv().await {
                Frame::Response(r) => {
                    assert_eq!(r.stream_id, stream_id);
                    seen.status = r.status;
                    seen.headers = r
                        .headers
                        .iter()
                        .map(|(k, v)| {
                            (
                                String::from_utf8(k.to_vec()).unwrap(),
                                String::from_utf8(v.to_vec()).unwrap(),
                            )
                        })
                        .collect();
                    if r.end_stream {
                        seen.head_ended = true;
                        return seen;
                    }
                }
                Frame::Data(d) => {
                    assert_eq!(d.stream_id, stream_id);
                    seen.data_frames += 1;
                    seen.body.extend_from_slice(&d.data);
                    if !d.data.is_empty() {
                        self.send(
                            Window {
                                stream_id,
                                increment: d.data.len() as u32,
                            }
                            .encode(),
                        )
                        .await;
                    }
                    if d.end_stream {
                        return seen;
                    }
                }
                Frame::Reset(r) if r.code == ResetCode::NoError as u32 => {} // body not needed
                Frame::Reset(r) => {
                    assert_eq!(r.stream_id, stream_id);
                    seen.reset = Some(ResetCode::from_u32(r.code));
                    return seen;
                }
                Frame::Window(_) => {}
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    pub async fn close(&mut self, code: u16, reason: &str) {
        let _ = self.0.close(code, reason).await;
    }

    /// Closes as a gateway does once a drain is complete (1000), and checks that the worker
    /// answers with a close frame of its own echoing it, rather than dropping the socket.
    pub async fn close_drained(&mut self) {
        self.close(1000, "drained").await;
        loop {
            match self.0.next_event(WAIT).await.unwrap() {
                Some(Event::Close(code, reason)) => {
                    assert_eq!((code, reason.as_str()), (Some(1000), "drained"));
                    return;
                }
                Some(Event::Frame(_) | Event::Ping | Event::Pong(_)) => {} // sent before our close
                other => panic!("the worker dropped the socket without a close frame: {other:?}"),
            }
        }
    }
}

/// Runs the worker in the background until it stops.
pub fn run(w: &vyx::Worker) -> tokio::task::JoinHandle<Result<(), vyx::Error>> {
    let w = w.clone();
    tokio::spawn(async move { w.start().await })
}

pub async fn timeout<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("timed out")
}

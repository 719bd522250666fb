//! A flood of HTTP/2 frames that each make the HTTP library warn (unsolicited PING acks) is
//! logged once per connection, with a count when the connection ends (issue 14, item 10).
//! Its own test binary: it installs the gateway's log subscriber process-wide.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

const ACKS: usize = 500;

#[tokio::test]
async fn a_flood_of_ping_acks_is_logged_once_per_connection_with_a_count() {
    let log = Capture::default();
    let writer = log.clone();
    tracing::subscriber::set_global_default(vyx_gateway::log_limit::subscriber(
        move || writer.clone(),
        false,
        tracing_subscriber::EnvFilter::new("info"),
        vyx_gateway::log_format::LogFormat::Text,
    ))
    .unwrap();
    let gw = TestGateway::start().await;
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // SETTINGS, empty
    for i in 0..ACKS {
        // PING with the ACK flag, never asked for.
        out.extend_from_slice(&[0, 0, 8, 6, 1, 0, 0, 0, 0]);
        out.extend_from_slice(&(i as u64).to_be_bytes());
    }
    tcp.write_all(&out).await.unwrap();
    // A request after the flood is still served on the connection ...
    tcp.write_all(&h2_health_request()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + WAIT;
    // ... seen as a HEADERS frame (type 1) on stream 1 from the gateway.
    while !has_headers_on_stream_1(&got) {
        let n = tokio::time::timeout_at(deadline, tcp.read(&mut buf))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(n > 0, "connection closed before the answer");
        got.extend_from_slice(&buf[..n]);
    }
    drop(tcp);
    // The count arrives when the gateway closes its side of the connection.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !log.text().contains("repeated") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no summary line: {}",
            log.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = log.text();
    let single: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("recv PING ack") && !l.contains("repeated"))
        .collect();
    assert_eq!(single.len(), 1, "{text}");
    assert!(single[0].contains("http_conn"), "{}", single[0]);
    let summary = text.lines().find(|l| l.contains("repeated")).unwrap();
    assert!(
        summary.contains(&format!("repeated={}", ACKS - 1)),
        "{summary}"
    );
    assert!(summary.contains("peer=127.0.0.1:"), "{summary}");
}

/// Whether `bytes` (the gateway's frames, from the start) hold a HEADERS frame on stream 1.
fn has_headers_on_stream_1(bytes: &[u8]) -> bool {
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
        let kind = bytes[at + 3];
        let stream =
            u32::from_be_bytes([bytes[at + 5], bytes[at + 6], bytes[at + 7], bytes[at + 8]])
                & 0x7fff_ffff;
        if kind == 1 && stream == 1 {
            return true;
        }
        at += 9 + len;
    }
    false
}

//! The request's `tracing` span, alone in its own test binary: tracing caches whether a
//! callsite is enabled globally, and a test registering the same span callsite on another
//! thread while this test installs its subscriber could cache "disabled" for it.

use std::sync::{Arc, Mutex};

use vyx::Request;

mod common;
use common::*;

/// Bytes a test subscriber writes, shared with the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A handler's `tracing` events carry the gateway's request id as a field of the request's
/// span, so the app's subscriber can put it on every line.
#[tokio::test]
async fn handler_logs_carry_the_request_id() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // This test's runtime has one thread: the worker's tasks run on it, under this default.
    let _guard = tracing::subscriber::set_default(subscriber);
    let (gw, url) = Gateway::bind().await;
    let w = vyx::Worker::builder()
        .connect(&url)
        .id("rust:test")
        .handle_signals(false)
        .get("/log", |_req: Request| async {
            tracing::info!("the handler speaks");
            "ok"
        })
        .build()
        .unwrap();
    let running = run(&w);
    let (mut conn, _) = gw.welcome().await;
    conn.request(
        1,
        0,
        "GET",
        "/log",
        &[],
        &[("x-request-id", "req-42")],
        true,
    )
    .await;
    assert_eq!(conn.response(1).await.status, 200);
    w.stop();
    drop(conn);
    let _ = timeout(running).await;
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("the handler speaks"))
        .unwrap_or_else(|| panic!("no handler line in {text}"));
    assert!(line.contains("request_id=req-42"), "{line}");
}

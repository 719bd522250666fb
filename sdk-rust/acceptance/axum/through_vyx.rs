//! Written into a copy of axum's source by `sdk-rust/acceptance/axum-suite` (not part of
//! vyx's build): axum's `test_helpers::spawn_service`, which `TestClient` and the WebSocket
//! tests call, serves the test's service through a vyx Rust worker behind a real `vyx`
//! gateway and answers the gateway's address, so axum's own tests talk to the gateway.

use std::cell::RefCell;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tower::ServiceExt;
use tower_service::Service;

use crate::{body::Body, extract::Request, response::Response};

/// A gateway process and the worker thread serving one test's service.
struct Through {
    gateway: Child,
    /// Dropping it ends the worker.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Drop for Through {
    fn drop(&mut self) {
        let _ = self.gateway.kill();
        let _ = self.gateway.wait();
    }
}

thread_local! {
    // `spawn_service` hands back an address only, so what serves it lives as long as the
    // test's thread: libtest runs each test on a thread of its own, and thread-locals are
    // dropped when it ends, passed or panicked.
    static SERVING: RefCell<Vec<Through>> = const { RefCell::new(Vec::new()) };
}

pub(crate) fn spawn_service<S>(svc: S) -> SocketAddr
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let bin = std::env::var("VYX_BIN")
        .expect("VYX_BIN: the vyx gateway binary (sdk-rust/acceptance/axum-suite sets it)");
    let mut gateway = Command::new(bin)
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("VYX_CONFIG")
        .env_remove("VYX_LISTEN")
        .env(
            "RUST_LOG",
            std::env::var("VYX_GATEWAY_LOG").unwrap_or_else(|_| "error".into()),
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("the vyx gateway starts");
    let mut stdout = BufReader::new(gateway.stdout.take().expect("piped"));
    let mut line = String::new();
    stdout
        .read_line(&mut line)
        .expect("the gateway's first line");
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("listening http://")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("not a listening line: {line:?}"));
    // The gateway prints a line or two more; a closed pipe would fail its writes.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));

    // axum services take axum's body; the worker hands `vyx::Body`.
    let svc = svc.map_request(|req: http::Request<vyx::Body>| req.map(Body::new));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // The worker runs on a runtime of its own (the SDK wants a multi-threaded one; the
    // test's is current-thread), so this function may block until it is registered. Its
    // threads log to the test's subscriber, as a task spawned on the test's runtime would
    // (axum's tests capture the events of their handlers).
    let logs = tracing::dispatcher::get_default(|d| d.clone());
    std::thread::spawn(move || {
        let on_start = logs.clone();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .on_thread_start(move || {
                // For the thread's whole life: its guard would undo it when dropped.
                std::mem::forget(tracing::dispatcher::set_default(&on_start));
            })
            .enable_all()
            .build()
            .expect("a runtime");
        let _logs = tracing::dispatcher::set_default(&logs);
        rt.block_on(async move {
            let worker = vyx::Worker::builder()
                .connect(format!("ws://{addr}"))
                .id("axum-tests")
                .handle_signals(false)
                .service("/{*rest}", svc)
                .build()
                .expect("the worker's configuration");
            let mut states = worker.state();
            let w = worker.clone();
            let run = tokio::spawn(async move { w.start().await });
            let up = states
                .wait_for(|s| matches!(s, vyx::ConnectionState::Connected { .. }))
                .await;
            if up.is_none() {
                eprintln!("the vyx worker stopped: {:?}", run.await);
                return;
            }
            let _ = ready_tx.send(());
            let _ = stop_rx.await;
            run.abort();
        });
    });
    ready_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the vyx worker registered with the gateway");
    SERVING.with(|s| {
        s.borrow_mut().push(Through {
            gateway,
            _stop: stop_tx,
        })
    });
    addr
}

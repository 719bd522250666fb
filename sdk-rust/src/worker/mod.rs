//! [`Worker`]: configuration, routes, and the serve loop.

mod builder;
mod signals;
mod states;

pub use builder::WorkerBuilder;
pub use states::States;

use std::collections::HashMap;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{AbortHandle, JoinSet};
use tracing::{debug, error, info, warn};
use vyx_core::session::{ConnectionState, Engine, EngineError, GatewayState, WorkerConfig};

use crate::error::Error;
use crate::serve::{panic_message, serve, Route};
use signals::{drain_on_signal, Signals};
use states::StateHub;

/// `name/version` sent to the gateway in HELLO.
pub const SDK: &str = concat!("vyx-rust/", env!("CARGO_PKG_VERSION"));

/// How long in-flight requests may take to finish after [`Worker::stop`] or a signal,
/// unless [`WorkerBuilder::drain_timeout`] says otherwise (30 s: vyx-core's default, the
/// same in every SDK).
pub use vyx_core::config::DEFAULT_DRAIN_TIMEOUT;

/// Requests taken from the core in one go.
const BATCH: usize = 64;

type StateCallback = Arc<dyn Fn(&ConnectionState) + Send + Sync>;

/// A worker: it dials the gateway, registers its routes, and serves the requests the
/// gateway sends until it is stopped.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), vyx::Error> {
/// let worker = vyx::Worker::builder()
///     .connect("ws://127.0.0.1:9000")
///     .id("rust:api")
///     .get("/hello/{name}", |req: vyx::Request| async move {
///         vyx::Json(serde_json::json!({ "hello": req.param("name").unwrap_or_default() }))
///     })
///     .build()?;
/// worker.start().await // until SIGTERM or SIGINT, then drains
/// # }
/// ```
///
/// `Worker` is cheap to clone (an `Arc` inside): clones share one worker, so one task can
/// [`start`](Worker::start) it while another [`stop`](Worker::stop)s it or watches its
/// [`state`](Worker::state). A [`WorkerHandle`] does the latter two without holding the
/// routes.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

struct Inner {
    config: WorkerConfig,
    routes: Arc<[Route]>,
    on_state: Option<StateCallback>,
    handle_signals: bool,
    running: AtomicBool,
    control: Arc<Control>,
}

/// What a [`WorkerHandle`] shares with its worker: the engine, which exists from `build`
/// on, and the subscribers of its states.
struct Control {
    engine: Engine,
    states: StateHub,
    drain_timeout: Duration,
}

impl Worker {
    /// A builder; see [`WorkerBuilder`].
    pub fn builder() -> WorkerBuilder {
        WorkerBuilder::new()
    }

    /// Connects to the gateway and serves requests until the worker is stopped.
    ///
    /// Returns `Ok(())` after a graceful stop ([`Worker::stop`], a [`WorkerHandle`], or
    /// SIGTERM/SIGINT unless [`WorkerBuilder::handle_signals`] turned that off), and
    /// [`Error::Refused`] when the gateway refused the worker for good (bad credentials, a
    /// route conflict, ...). Lost connections are retried with backoff and do not end it.
    ///
    /// Each request runs in its own tokio task. Stopping drains: the gateway sends no new
    /// requests, in-flight ones finish (within the drain timeout), then the connection
    /// closes. Handlers still running after that are aborted (their responses could no
    /// longer be delivered). Dropping the future returned by `start` stops the worker the
    /// same way. Must run inside a tokio runtime.
    ///
    /// A worker runs once: `start` after a stop returns `Ok(())` at once (also when
    /// [`Worker::stop`] came before the first `start`), and after a refusal the same error.
    /// Calling `start` while it runs is [`Error::AlreadyStarted`].
    pub async fn start(&self) -> Result<(), Error> {
        let inner = &*self.inner;
        if inner.running.swap(true, Ordering::AcqRel) {
            return Err(Error::AlreadyStarted);
        }
        let _running = ResetOnDrop(&inner.running);
        let control = &inner.control;
        let engine = &control.engine;
        // Signal handlers first, so that a SIGTERM from here on drains instead of killing.
        let signals = if inner.handle_signals {
            Some(Signals::install())
        } else {
            None
        };
        match engine.start() {
            Ok(()) => {}
            // It ran before: a stopped worker stays stopped, a refused one refused.
            Err(EngineError::AlreadyStarted) => return engine.wait().await.map_err(Error::from),
            Err(e) => return Err(e.into()),
        }
        info!(
            worker_id = %inner.config.worker_id,
            gateway = %inner.config.connect.join(","),
            routes = inner.routes.len(),
            sdk = SDK,
            "worker starting"
        );
        if inner.routes.is_empty() {
            warn!("this worker declares no routes: the gateway will send it nothing");
        }

        let stopper = signals.map(|signals| {
            tokio::spawn(drain_on_signal(
                engine.clone(),
                signals,
                control.drain_timeout,
            ))
            .abort_handle()
        });
        let _guard = DrainOnDrop {
            engine: engine.clone(),
            deadline: control.drain_timeout,
            stopper,
        };

        // The dispatch loop runs as a task on the runtime's worker threads. Awaited on the
        // thread that called `start` (`#[tokio::main]`'s, usually), every request crossed
        // two more threads (reader → that thread → handler task): the wake-ups cost more
        // than the handler (bench/RESULTS.md).
        let dispatch = tokio::spawn(dispatch(
            engine.clone(),
            inner.routes.clone(),
            control.clone(),
            inner.on_state.clone(),
        ));
        let _abort_dispatch = AbortOnDrop(dispatch.abort_handle());
        let mut tasks = match dispatch.await {
            Ok(tasks) => tasks,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => JoinSet::new(),
        };

        let result = engine.wait().await;
        if !tasks.is_empty() {
            debug!(
                handlers = tasks.len(),
                "aborting handlers that outlived the connection"
            );
            tasks.shutdown().await;
        }
        result.map_err(Error::from)
    }

    /// Stops gracefully: no new requests, in-flight ones get the drain timeout to finish
    /// (30 s unless [`WorkerBuilder::drain_timeout`] says otherwise). Returns at once;
    /// [`Worker::start`] returns when the worker has stopped. Calling it again does
    /// nothing.
    pub fn stop(&self) {
        self.inner.control.stop(self.inner.control.drain_timeout);
    }

    /// Like [`Worker::stop`], with an explicit deadline for in-flight requests.
    pub fn stop_within(&self, deadline: Duration) {
        self.inner.control.stop(deadline);
    }

    /// The connection state now, and every change after it, none skipped (see
    /// [`States`]). It is [`ConnectionState::Connecting`] until the worker connects, and
    /// [`ConnectionState::Stopped`] or [`ConnectionState::Failed`] at the end.
    pub fn state(&self) -> States {
        self.inner.control.states.subscribe()
    }

    /// Each session's latest state: one per gateway, and per address of a gateway's host
    /// name, and the extra ones a gateway asked for (the same gateway and address).
    /// [`Worker::state`] is their aggregate: `Connected` while at least one session is.
    pub fn gateways(&self) -> Vec<GatewayState> {
        self.inner.control.engine.gateways()
    }

    /// A handle that can stop the worker and watch its state, e.g. from inside a handler.
    pub fn handle(&self) -> WorkerHandle {
        WorkerHandle {
            control: self.inner.control.clone(),
        }
    }

    /// The worker id sent to the gateway.
    pub fn id(&self) -> &str {
        &self.inner.config.worker_id
    }

    /// The engine configuration this worker registers with (routes included).
    pub fn config(&self) -> &WorkerConfig {
        &self.inner.config
    }
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let routes: Vec<String> = self
            .inner
            .routes
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        f.debug_struct("Worker")
            .field("id", &self.inner.config.worker_id)
            .field("connect", &self.inner.config.connect)
            .field("routes", &routes)
            .finish_non_exhaustive()
    }
}

/// Stops a [`Worker`] and watches its state, without holding its routes; cheap to clone.
///
/// ```no_run
/// # async fn demo(worker: vyx::Worker) -> vyx::Result<()> {
/// let handle = worker.handle();
/// tokio::spawn(async move {
///     tokio::time::sleep(std::time::Duration::from_secs(60)).await;
///     handle.stop();
/// });
/// worker.start().await
/// # }
/// ```
#[derive(Clone)]
pub struct WorkerHandle {
    control: Arc<Control>,
}

impl WorkerHandle {
    /// See [`Worker::stop`].
    pub fn stop(&self) {
        self.control.stop(self.control.drain_timeout);
    }

    /// See [`Worker::stop_within`].
    pub fn stop_within(&self, deadline: Duration) {
        self.control.stop(deadline);
    }

    /// See [`Worker::state`].
    pub fn state(&self) -> States {
        self.control.states.subscribe()
    }

    /// See [`Worker::gateways`].
    pub fn gateways(&self) -> Vec<GatewayState> {
        self.control.engine.gateways()
    }
}

impl Control {
    fn stop(&self, deadline: Duration) {
        self.engine.drain(deadline);
    }
}

impl fmt::Debug for WorkerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerHandle")
            .field("state", &self.control.states.lock().current)
            .finish_non_exhaustive()
    }
}

struct ResetOnDrop<'a>(&'a AtomicBool);

impl Drop for ResetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The one pull: takes batches from the engine, hands states to the subscribers and the
/// callback, runs each request in its own task, and aborts the tasks of streams the batch
/// reports reset (nobody would receive their answer). Returns the handlers still running
/// once the engine has ended.
async fn dispatch(
    engine: Engine,
    routes: Arc<[Route]>,
    control: Arc<Control>,
    on_state: Option<StateCallback>,
) -> JoinSet<u64> {
    let mut tasks = JoinSet::new();
    let mut running: HashMap<u64, AbortHandle> = HashMap::new();
    loop {
        tokio::select! {
            batch = engine.next_batch(BATCH) => match batch {
                Some(batch) => {
                    for state in &batch.states {
                        log_state(state);
                        control.states.publish(state);
                        if let Some(callback) = &on_state {
                            if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| callback(state))) {
                                error!(panic = panic_message(&*panic), "on_state callback panicked");
                            }
                        }
                    }
                    for req in batch.requests {
                        let slot = req.slot;
                        running.insert(slot, tasks.spawn(serve(req, routes.clone())));
                    }
                    for reset in batch.resets {
                        if let Some(task) = running.remove(&reset.slot) {
                            debug!(reason = %reset.error, "stream closed before its handler finished; handler cancelled");
                            task.abort();
                        }
                    }
                }
                None => return tasks,
            },
            Some(done) = tasks.join_next(), if !tasks.is_empty() => match done {
                Ok(slot) => {
                    running.remove(&slot);
                }
                Err(e) if e.is_panic() => {
                    // `serve` catches handler panics; this is a panic outside them.
                    error!(panic = panic_message(&*e.into_panic()), "request task panicked");
                }
                Err(_) => {} // aborted: removed when it was
            }
        }
    }
}

/// Aborts a task when dropped (the future of `start` was dropped).
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Stops the engine if `start` ends early (its future dropped), so that it does not go on
/// serving, or reconnecting, in the background.
struct DrainOnDrop {
    engine: Engine,
    deadline: Duration,
    stopper: Option<AbortHandle>,
}

impl Drop for DrainOnDrop {
    fn drop(&mut self) {
        self.engine.drain(self.deadline);
        if let Some(stopper) = &self.stopper {
            stopper.abort();
        }
    }
}

/// vyx-core already logs registration, reconnects, drain and refusal once each; the SDK adds
/// only the end of the worker's life.
fn log_state(state: &ConnectionState) {
    match state {
        ConnectionState::Stopped => info!("worker stopped"),
        other => debug!(state = ?other, "connection state"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Request;

    fn builder() -> WorkerBuilder {
        Worker::builder()
            .connect("ws://127.0.0.1:9")
            .id("rust:test")
            .handle_signals(false)
    }

    #[test]
    fn routes_get_ids_in_declaration_order() {
        let w = builder()
            .get("/a/{x}", |_r: Request| async { "a" })
            .post("/b", |_r: Request| async { "b" })
            .any("/c/{*rest}", |_r: Request| async { "c" })
            .route("OPTIONS", "/d", |_r: Request| async { "d" })
            .head("/a/{x}", |_r: Request| async {})
            .build()
            .unwrap();
        let routes: Vec<_> = w
            .config()
            .routes
            .iter()
            .map(|r| (r.id, r.method.as_str(), r.path.as_str()))
            .collect();
        assert_eq!(
            routes,
            [
                (0, "GET", "/a/{x}"),
                (1, "POST", "/b"),
                (2, "*", "/c/{*rest}"),
                (3, "OPTIONS", "/d"),
                (4, "HEAD", "/a/{x}")
            ]
        );
        assert_eq!(w.config().sdk, SDK);
        assert!(SDK.starts_with("vyx-rust/"));
    }

    #[test]
    fn idempotent_marks_the_route_declared_just_before() {
        let w = builder()
            .idempotent() // no route yet: nothing to mark
            .get("/a", |_r: Request| async { "a" })
            .post("/orders", |_r: Request| async { "o" })
            .idempotent()
            .post("/b", |_r: Request| async { "b" })
            .build()
            .unwrap();
        let marked: Vec<_> = w.config().routes.iter().map(|r| r.idempotent).collect();
        assert_eq!(marked, [false, true, false]);
    }

    #[test]
    fn defaults_are_the_cores() {
        use vyx_core::config;
        let w = builder().build().unwrap();
        assert_eq!(w.config().max_concurrency, config::DEFAULT_MAX_CONCURRENCY);
        assert_eq!(w.config().connect_timeout, config::DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(w.inner.control.drain_timeout, config::DEFAULT_DRAIN_TIMEOUT);
    }

    #[test]
    fn handlers_may_borrow_the_request_across_await() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Request>();
        assert_send_sync::<Worker>();
        assert_send_sync::<WorkerHandle>();
        let _ = builder().get("/{a}", |mut req: Request| async move {
            let a = req.param("a").unwrap_or_default().to_owned();
            let h = req.headers().clone();
            let body = req.text().await?;
            let p = req.params();
            tokio::task::yield_now().await;
            Ok::<_, Error>(format!("{a} {} {body} {}", h.len(), p.len()))
        });
    }

    #[test]
    fn bad_configuration_is_refused_at_build() {
        let err = |b: WorkerBuilder| b.build().unwrap_err().to_string();
        assert!(err(builder().connect("http://x")).contains("ws://"));
        assert!(err(builder().id("bad id")).contains("worker id"));
        assert!(err(builder().max_concurrency(0)).contains("max_concurrency"));
        assert!(err(builder().get("no-slash", |_r: Request| async { "" })).contains("'/'"));
        let twice = builder()
            .get("/x", |_r: Request| async { "" })
            .get("/x", |_r: Request| async { "" });
        assert!(err(twice).contains("twice"));
        assert!(
            err(builder().route("get", "/x", |_r: Request| async { "" })).contains("upper-case")
        );
        assert!(matches!(
            builder().connect("").build(),
            Err(Error::Config(_)) | Ok(_) // Ok when VYX_CONNECT is set in the environment
        ));
    }

    #[tokio::test]
    async fn stop_before_start_returns_at_once() {
        let w = builder()
            .get("/x", |_r: Request| async { "" })
            .build()
            .unwrap();
        w.handle().stop();
        tokio::time::timeout(Duration::from_secs(5), w.start())
            .await
            .expect("start returns")
            .unwrap();
        assert_eq!(*w.state().current(), ConnectionState::Stopped);
        // Stopped stays stopped.
        w.start().await.unwrap();
    }

    #[tokio::test]
    async fn start_twice_is_an_error_and_stop_ends_the_retry_loop() {
        // Port 9 on loopback refuses connections: the worker keeps retrying until stopped.
        let w = builder()
            .get("/x", |_r: Request| async { "" })
            .connect_timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let running = tokio::spawn({
            let w = w.clone();
            async move { w.start().await }
        });
        let mut state = w.state();
        state
            .wait_for(|s| matches!(s, ConnectionState::Reconnecting { .. }))
            .await
            .unwrap();
        assert!(matches!(w.start().await, Err(Error::AlreadyStarted)));
        w.stop();
        tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .expect("start returns after stop")
            .unwrap()
            .unwrap();
        assert_eq!(*w.state().current(), ConnectionState::Stopped);
        // The subscription saw the end too, and ends after it.
        let last = state.wait_for(|s| *s == ConnectionState::Stopped).await;
        assert_eq!(last, Some(ConnectionState::Stopped));
        assert_eq!(state.next().await, None);
    }
}

//! [`Worker`]: configuration, routes, and the serve loop.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tower_service::Service;
use tracing::{debug, error, info, warn};
use vyx_core::handshake::RouteSpec;
use vyx_core::session::{ConnectionState, Engine, EngineError, WorkerConfig};

use crate::body::Body;
use crate::error::{BoxError, Error};
use crate::handler::{self, BoxHandler};
use crate::request::Request;
use crate::response::IntoResponse;
use crate::serve::{panic_message, serve, Route};

/// `name/version` sent to the gateway in HELLO.
pub const SDK: &str = concat!("vyx-rust/", env!("CARGO_PKG_VERSION"));

/// How long in-flight requests may take to finish after [`Worker::stop`] or a signal,
/// unless [`WorkerBuilder::drain_timeout`] says otherwise.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

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

/// Hands every state the engine reports to every [`States`] subscriber.
struct StateHub {
    inner: Mutex<HubInner>,
}

struct HubInner {
    current: ConnectionState,
    subscribers: Vec<mpsc::UnboundedSender<ConnectionState>>,
}

impl StateHub {
    fn new() -> StateHub {
        StateHub {
            inner: Mutex::new(HubInner {
                current: ConnectionState::Connecting,
                subscribers: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, state: &ConnectionState) {
        let mut hub = self.lock();
        hub.current = state.clone();
        hub.subscribers.retain(|s| s.send(state.clone()).is_ok());
        if matches!(
            state,
            ConnectionState::Stopped | ConnectionState::Failed { .. }
        ) {
            // The engine runs once: nothing follows, so the subscriptions end here.
            hub.subscribers.clear();
        }
    }

    fn subscribe(&self) -> States {
        let mut hub = self.lock();
        let (tx, rx) = mpsc::unbounded_channel();
        if !matches!(
            hub.current,
            ConnectionState::Stopped | ConnectionState::Failed { .. }
        ) {
            hub.subscribers.push(tx);
        }
        States {
            current: hub.current.clone(),
            rx,
        }
    }
}

/// The connection states of a [`Worker`], from the moment of subscription on, every one
/// in order: none is skipped however quickly they change. Made by [`Worker::state`].
///
/// ```no_run
/// # async fn demo(worker: vyx::Worker) {
/// use vyx::ConnectionState;
///
/// let mut states = worker.state();
/// tokio::spawn({
///     let worker = worker.clone();
///     async move { worker.start().await }
/// });
/// states
///     .wait_for(|s| matches!(s, ConnectionState::Connected { .. }))
///     .await
///     .expect("connected before the worker stopped");
/// # }
/// ```
#[derive(Debug)]
pub struct States {
    current: ConnectionState,
    rx: mpsc::UnboundedReceiver<ConnectionState>,
}

impl States {
    /// The latest state this subscription has seen (the state at subscription until
    /// [`States::next`] returns another).
    pub fn current(&self) -> &ConnectionState {
        &self.current
    }

    /// The next state change; `None` after the last one ([`ConnectionState::Stopped`] or
    /// [`ConnectionState::Failed`]).
    pub async fn next(&mut self) -> Option<ConnectionState> {
        let state = self.rx.recv().await?;
        self.current = state.clone();
        Some(state)
    }

    /// Waits until a state satisfies `f` and returns it, looking at [`States::current`]
    /// (unless a newer state is already queued: it is stale then) and at every later state
    /// in order; `None` when the worker stopped first. A transition that happened since
    /// the subscription is found even when the worker has moved on from it.
    pub async fn wait_for(
        &mut self,
        mut f: impl FnMut(&ConnectionState) -> bool,
    ) -> Option<ConnectionState> {
        let mut state = match self.rx.try_recv() {
            Ok(newer) => {
                self.current = newer.clone();
                newer
            }
            Err(_) => self.current.clone(),
        };
        loop {
            if f(&state) {
                return Some(state);
            }
            state = self.next().await?;
        }
    }
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
    /// Calling `start` while it runs is [`Error::AlreadyRunning`].
    pub async fn start(&self) -> Result<(), Error> {
        let inner = &*self.inner;
        if inner.running.swap(true, Ordering::AcqRel) {
            return Err(Error::AlreadyRunning);
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
            gateway = %inner.config.connect,
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

/// Configures a [`Worker`]: where the gateway is, who the worker is, and its routes.
///
/// `connect`, `id` and `token` fall back to `VYX_CONNECT`, `VYX_WORKER_ID` and `VYX_TOKEN`
/// (what the gateway sets for the workers it starts in local mode), so the same code runs
/// in both modes.
///
/// Routes use the gateway's pattern syntax: `{name}` for one segment, a trailing
/// `{*rest}` for the rest of the path. They get ids in declaration order; the gateway
/// matches the request and sends the route id and the decoded parameters, so the worker
/// does no routing of its own.
///
/// A handler is any `Fn(vyx::Request) -> impl Future<Output = impl IntoResponse>` that is
/// `Send + Sync + 'static` with a `Send` future: an `async fn`, or a closure returning an
/// `async move` block.
///
/// ```no_run
/// use std::time::Duration;
/// use vyx::{Request, Response, StatusCode};
///
/// async fn echo(req: Request) -> Response {
///     Response::stream(req.into_body())
/// }
///
/// # fn main() -> Result<(), vyx::Error> {
/// let worker = vyx::Worker::builder()
///     .connect("wss://gateway.example.com")
///     .id("rust:api")
///     .token("s3cret")
///     .max_concurrency(256)
///     .drain_timeout(Duration::from_secs(10))
///     .get("/health", |_req: Request| async { "ok" })
///     .post("/echo", echo)
///     .delete("/items/{id}", |_req: Request| async { StatusCode::NO_CONTENT })
///     .on_state(|s| eprintln!("state: {s:?}"))
///     .build()?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until .build() is called"]
pub struct WorkerBuilder {
    connect: Option<String>,
    id: Option<String>,
    token: Option<String>,
    max_concurrency: Option<u32>,
    instance: Option<String>,
    labels: BTreeMap<String, String>,
    connect_timeout: Option<Duration>,
    tls_ca_file: Option<std::path::PathBuf>,
    drain_timeout: Duration,
    handle_signals: bool,
    on_state: Option<StateCallback>,
    routes: Vec<Route>,
}

impl Default for WorkerBuilder {
    fn default() -> WorkerBuilder {
        WorkerBuilder::new()
    }
}

impl WorkerBuilder {
    /// Same as [`Worker::builder`].
    pub fn new() -> WorkerBuilder {
        WorkerBuilder {
            connect: None,
            id: None,
            token: None,
            max_concurrency: None,
            instance: None,
            labels: BTreeMap::new(),
            connect_timeout: None,
            tls_ca_file: None,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            handle_signals: true,
            on_state: None,
            routes: Vec::new(),
        }
    }

    /// The gateway: `ws://host:port`, `wss://host:port`, or a full registration URL
    /// (default path `/_vyx/register`). Else `VYX_CONNECT`.
    pub fn connect(mut self, url: impl Into<String>) -> Self {
        self.connect = Some(url.into());
        self
    }

    /// The worker id: 1 to 128 characters of `A-Z a-z 0-9 . _ : @ / -`. Else
    /// `VYX_WORKER_ID`. Connections with the same id are replicas of one worker.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The token bound to this worker id, sent as `Authorization: Bearer`. Else
    /// `VYX_TOKEN`; none at all is fine for a gateway in dev mode.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Requests served at once on the connection (1..=65535, default 1024); the gateway
    /// sends no more than that and may lower it.
    pub fn max_concurrency(mut self, n: u32) -> Self {
        self.max_concurrency = Some(n);
        self
    }

    /// Names this process among replicas of the same id (default: host, pid and random
    /// bits).
    pub fn instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// A label sent in HELLO, shown by the gateway's admin endpoints.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// How long one dial (TCP, TLS, upgrade) may take; default 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// A PEM file of extra CAs to trust for `wss://` (a gateway behind a private CA); else
    /// `VYX_CA_FILE`. The public web roots are always trusted.
    pub fn tls_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.tls_ca_file = Some(path.into());
        self
    }

    /// How long in-flight requests may take to finish once the worker is stopped; default
    /// 30 s ([`DEFAULT_DRAIN_TIMEOUT`]).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Whether [`Worker::start`] drains on SIGTERM and SIGINT (Ctrl-C on Windows); default
    /// `true`. Turn it off in tests, or when the program handles signals itself (and then
    /// call [`Worker::stop`]). Once tokio handles a signal it does so for the rest of the
    /// process: after `start` returns, SIGINT no longer kills the process by itself.
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.handle_signals = on;
        self
    }

    /// Called on every connection-state change, in order, none skipped (from the task that
    /// takes requests from the engine: keep it short and do not block). [`Worker::state`]
    /// gives the same as a subscription.
    pub fn on_state<F>(mut self, callback: F) -> Self
    where
        F: Fn(&ConnectionState) + Send + Sync + 'static,
    {
        self.on_state = Some(Arc::new(callback));
        self
    }

    /// A route for `method` (an upper-case token such as `GET`, or `*` for any method).
    pub fn route<F, Fut>(self, method: impl AsRef<str>, path: impl Into<String>, handler: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoResponse,
    {
        self.push(method.as_ref(), path.into(), handler::from_fn(handler))
    }

    /// A `GET` route. (Whatever route a `HEAD` request reaches, the worker sends the
    /// response head without the body.)
    pub fn get<F, Fut>(self, path: impl Into<String>, handler: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoResponse,
    {
        self.route("GET", path, handler)
    }

    /// A `POST` route.
    pub fn post<F, Fut>(self, path: impl Into<String>, handler: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoResponse,
    {
        self.route("POST", path, handler)
    }

    /// A `PUT` route.
    pub fn put<F, Fut>(self, path: impl Into<String>, handler: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoResponse,
    {
        self.route("PUT", path, handler)
    }

    /// A `PATCH` route.
    pub fn patch<F, Fut>(self, path: impl Into<String>, handler: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoResponse,
    {
        self.route("PATCH", path, handler)
    }

    /// A `DELETE` route.
    pub fn delete<F, Fut>(self, path: impl Into<String>, handler: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoResponse,
    {
        self.route("DELETE", path, handler)
    }

    /// A route for any method (`*`).
    pub fn any<F, Fut>(self, path: impl Into<String>, handler: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoResponse,
    {
        self.route("*", path, handler)
    }

    /// Serves every method under `path` with a tower service, e.g. an axum `Router`, which
    /// then runs unchanged. The service gets an `http::Request<vyx::Body>` whose URI is the
    /// full original target (no prefix is stripped: declare `/api/{*rest}` here and
    /// `/api/...` routes in the router, or `nest("/api", ...)` there), and the path
    /// parameters as a [`PathParams`](crate::PathParams) extension. It is cloned for each
    /// request, as tower services expect.
    ///
    /// ```no_run
    /// use axum::routing::get;
    ///
    /// # fn main() -> Result<(), vyx::Error> {
    /// let api = axum::Router::new().route("/api/users/{id}", get(|| async { "a user" }));
    /// let worker = vyx::Worker::builder().service("/api/{*rest}", api).build()?;
    /// # Ok(()) }
    /// ```
    pub fn service<S, B>(self, path: impl Into<String>, service: S) -> Self
    where
        S: Service<http::Request<Body>, Response = http::Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.route_service("*", path, service)
    }

    /// Like [`WorkerBuilder::service`], for one method.
    pub fn route_service<S, B>(
        self,
        method: impl AsRef<str>,
        path: impl Into<String>,
        service: S,
    ) -> Self
    where
        S: Service<http::Request<Body>, Response = http::Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.push(method.as_ref(), path.into(), handler::from_service(service))
    }

    fn push(mut self, method: &str, path: String, handler: BoxHandler) -> Self {
        self.routes.push(Route {
            method: method.to_owned(),
            path: path.into(),
            handler,
        });
        self
    }

    /// Checks the configuration (after filling what was not given from the environment)
    /// and builds the worker. Nothing connects until [`Worker::start`].
    ///
    /// Fails with [`Error::Config`] when the gateway address or worker id is missing or
    /// malformed, `max_concurrency` is out of range, or a route is invalid or declared
    /// twice.
    pub fn build(self) -> Result<Worker, Error> {
        let mut config = WorkerConfig::new(
            self.connect.unwrap_or_default(),
            self.id.unwrap_or_default(),
        );
        config.token = self.token;
        config.tls_ca_file = self.tls_ca_file;
        config.apply_env_defaults();
        config.sdk = SDK.to_owned();
        if let Some(n) = self.max_concurrency {
            config.max_concurrency = n;
        }
        if let Some(instance) = self.instance {
            config.instance = instance;
        }
        if let Some(timeout) = self.connect_timeout {
            config.connect_timeout = timeout;
        }
        config.labels = self.labels;
        config.routes = self
            .routes
            .iter()
            .enumerate()
            .map(|(id, r)| RouteSpec {
                id: id as u32, // more than MAX_ROUTES routes are refused by validate()
                method: r.method.clone(),
                path: r.path.to_string(),
            })
            .collect();
        let engine = Engine::new(config.clone())?;
        Ok(Worker {
            inner: Arc::new(Inner {
                config,
                routes: self.routes.into(),
                on_state: self.on_state,
                handle_signals: self.handle_signals,
                running: AtomicBool::new(false),
                control: Arc::new(Control {
                    engine,
                    states: StateHub::new(),
                    drain_timeout: self.drain_timeout,
                }),
            }),
        })
    }
}

impl fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let routes: Vec<String> = self
            .routes
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        f.debug_struct("WorkerBuilder")
            .field("connect", &self.connect)
            .field("id", &self.id)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("max_concurrency", &self.max_concurrency)
            .field("drain_timeout", &self.drain_timeout)
            .field("handle_signals", &self.handle_signals)
            .field("routes", &routes)
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

/// Drains the engine on SIGTERM or SIGINT.
async fn drain_on_signal(engine: Engine, mut signals: Signals, deadline: Duration) {
    let name = signals.recv().await;
    info!(
        signal = name,
        deadline_ms = deadline.as_millis() as u64,
        "signal received; draining"
    );
    engine.drain(deadline);
    loop {
        let name = signals.recv().await;
        warn!(
            signal = name,
            "signal received again; still draining until the deadline"
        );
    }
}

/// SIGTERM and SIGINT, registered when the worker starts.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    #[cfg(unix)]
    fn install() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        let install = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(signal = name, error = %e, "cannot handle signal");
                None
            }
        };
        Signals {
            term: install(SignalKind::terminate(), "SIGTERM"),
            int: install(SignalKind::interrupt(), "SIGINT"),
        }
    }

    #[cfg(not(unix))]
    fn install() -> Signals {
        Signals {}
    }

    #[cfg(unix)]
    async fn recv(&mut self) -> &'static str {
        async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    if s.recv().await.is_none() {
                        std::future::pending::<()>().await
                    }
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = next(&mut self.term) => "SIGTERM",
            _ = next(&mut self.int) => "SIGINT",
        }
    }

    #[cfg(not(unix))]
    async fn recv(&mut self) -> &'static str {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "ctrl-c",
            Err(_) => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                (3, "OPTIONS", "/d")
            ]
        );
        assert_eq!(w.config().sdk, SDK);
        assert!(SDK.starts_with("vyx-rust/"));
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
        assert!(matches!(w.start().await, Err(Error::AlreadyRunning)));
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

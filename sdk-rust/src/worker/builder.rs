//! [`WorkerBuilder`]: where the gateway is, who the worker is, and its routes.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tower_service::Service;
use vyx_core::config::IntoGateways;
use vyx_core::handshake::RouteSpec;
use vyx_core::session::{ConnectionState, Engine, Resolver, WorkerConfig};

use super::states::StateHub;
use super::{Control, Inner, StateCallback, Worker, DEFAULT_DRAIN_TIMEOUT, SDK};
use crate::body::Body;
use crate::error::{BoxError, Error};
use crate::handler::{self, BoxHandler};
use crate::request::Request;
use crate::response::IntoResponse;
use crate::serve::Route;

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
    connect: Option<Vec<String>>,
    id: Option<String>,
    token: Option<String>,
    max_concurrency: Option<u32>,
    instance: Option<String>,
    labels: BTreeMap<String, String>,
    connect_timeout: Option<Duration>,
    ca_file: Option<std::path::PathBuf>,
    resolver: Option<Resolver>,
    resolve_interval: Option<Duration>,
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
            ca_file: None,
            resolver: None,
            resolve_interval: None,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            handle_signals: true,
            on_state: None,
            routes: Vec::new(),
        }
    }

    /// The gateway, or a list of them: each `ws://host:port`, `wss://host:port`, or a full
    /// registration URL (default path `/_vyx/register`). Else `VYX_CONNECT`, a
    /// comma-separated list. The worker holds a session to every gateway, and to every
    /// address a gateway's host name resolves to ([`Worker::gateways`]); to one address, as
    /// many as its gateway asks for (one per gateway shard, so that a request is served on
    /// the core that took it; PROTOCOL.md §9.1).
    ///
    /// ```
    /// let worker = vyx::Worker::builder()
    ///     .connect(["ws://10.0.0.1:9000", "ws://10.0.0.2:9000"])
    ///     .id("rust:api")
    ///     .build()?;
    /// assert_eq!(worker.config().connect.len(), 2);
    /// # Ok::<(), vyx::Error>(())
    /// ```
    pub fn connect(mut self, gateways: impl IntoGateways) -> Self {
        self.connect = Some(gateways.into_gateways());
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
    pub fn ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// How gateway host names become addresses (default: the system's resolver): a
    /// table of your own in tests, or your own discovery. See [`Resolver`].
    pub fn resolver(mut self, resolver: Resolver) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// How often gateway host names are resolved again; default 30 s
    /// ([`vyx_core::config::DEFAULT_RESOLVE_INTERVAL`]). They are also resolved again
    /// whenever a session fails.
    pub fn resolve_interval(mut self, interval: Duration) -> Self {
        self.resolve_interval = Some(interval);
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

    /// A `HEAD` route (without one, a `GET` route of the same path serves `HEAD`).
    pub fn head<F, Fut>(self, path: impl Into<String>, handler: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoResponse,
    {
        self.route("HEAD", path, handler)
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
    /// request, as tower services expect. Upgrades work as behind hyper's own server:
    /// `hyper::upgrade::on`, axum's `WebSocketUpgrade`.
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
            idempotent: false,
        });
        self
    }

    /// Declares the route added just before this call idempotent: repeating one of its
    /// requests is safe, so the gateway may retry it on another replica when the first one
    /// is lost before answering, whatever its method (GET, HEAD, OPTIONS, PUT, DELETE and
    /// TRACE are retried anyway). Without a route before it, it does nothing.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), vyx::Error> {
    /// // A POST keyed by an idempotency key the handler checks.
    /// let worker = vyx::Worker::builder()
    ///     .post("/orders", |_req| async { "created" })
    ///     .idempotent()
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn idempotent(mut self) -> Self {
        if let Some(last) = self.routes.last_mut() {
            last.idempotent = true;
        }
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
        config.tls_ca_file = self.ca_file;
        config.apply_env_defaults();
        config.sdk = SDK.to_owned();
        // What this host serves end to end (§2.6): upgrades (`vyx::upgrade::on`),
        // http-body trailers both ways, `Request::send_informational`.
        config.features = vyx_core::features::Features::UPGRADE
            .union(vyx_core::features::Features::TRAILERS)
            .union(vyx_core::features::Features::INFORMATIONAL);
        if let Some(n) = self.max_concurrency {
            config.max_concurrency = n;
        }
        if let Some(instance) = self.instance {
            config.instance = instance;
        }
        if let Some(timeout) = self.connect_timeout {
            config.connect_timeout = timeout;
        }
        if let Some(resolver) = self.resolver {
            config.resolver = resolver;
        }
        if let Some(interval) = self.resolve_interval {
            config.resolve_interval = interval;
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
                idempotent: r.idempotent,
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

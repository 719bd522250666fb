//! The worker-side session engine, and the host API every SDK drives it with.
//!
//! A host (the Rust SDK, or a Node/Python binding) creates an [`Engine`], declares its
//! routes, starts it on a runtime it names, and then **pulls**: one call,
//! [`Engine::next_batch`], returns the new requests, the streams that were reset, and every
//! connection-state change, in order. The host answers each request through its
//! [`Stream`] handle with synchronous calls ([`Stream::respond`], [`Stream::try_send`],
//! [`Stream::fail`]); the core applies the rules every host must follow and never calls
//! user code. `spec/HOSTS.md` lists a host's duties in the order a binding meets them.
//!
//! ```no_run
//! use vyx_core::session::{Engine, WorkerConfig};
//!
//! # async fn demo() -> Result<(), vyx_core::session::EngineError> {
//! let engine = Engine::new(WorkerConfig::new("ws://127.0.0.1:9000", "rust:api"))?;
//! let hello = engine.add_route("GET", "/hello/{name}")?;
//! engine.start_on(&tokio::runtime::Handle::current())?;
//! while let Some(batch) = engine.next_batch(64).await {
//!     for state in &batch.states {
//!         println!("state: {state:?}");
//!     }
//!     for req in batch.requests {
//!         assert_eq!(req.route_id as u32, hello);
//!         let headers: &[(&str, &str)] = &[("content-type", "text/plain")];
//!         let _ = req.stream.respond(200, headers, b"hi");
//!     }
//!     // batch.resets: streams whose handlers should stop.
//! }
//! # Ok(()) }
//! ```

mod connect;
mod connection;
mod events;
mod gateways;
mod held_wakes;
pub(crate) mod resolve;
mod stream;
mod supervise;
mod tls;
mod upgraded;

pub use connect::{registration_url, ConnectError};
pub use events::{Batch, GatewayState};
pub use held_wakes::{hold_writer_wakes, wake_held_writers};
pub use resolve::{ResolveFuture, Resolver};
pub use stream::{IncomingRequest, Stream, StreamError, StreamReset, TryChunk, TrySend};
pub use upgraded::Upgraded;

pub(crate) use events::{Event, Events, SessionEvents};

use std::sync::{Arc, Mutex as StdMutex, PoisonError};
use std::time::Duration;

use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch, Mutex};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::CloseCode;
use crate::handshake::{self, RouteSpec};
use crate::transport::{ReadAhead, Wire};

pub use crate::config::{WorkerConfig, ENV_CA_FILE, ENV_CONNECT, ENV_TOKEN, ENV_WORKER_ID};

pub(crate) type WsStream =
    WebSocketStream<MaybeTlsStream<Wire<ReadAhead<OwnedReadHalf>, OwnedWriteHalf>>>;

/// Where the engine, or one of its sessions, is. Every change reaches the host, in order,
/// in [`Batch::states`] (the worker) and [`Batch::gateways`] (each session);
/// [`Engine::state`] and [`Engine::gateways`] tell the latest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    Connecting,
    Connected {
        connection_id: String,
    },
    /// Waiting `delay` before attempt number `attempt` (1-based) after `cause`.
    Reconnecting {
        attempt: u32,
        delay: Duration,
        cause: String,
    },
    /// DRAIN sent: finishing in-flight requests.
    Draining,
    Stopped,
    /// Stopped for good: the gateway refused this worker.
    Failed {
        cause: String,
    },
}

/// Why the engine could not start, or stopped by itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("invalid worker configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Refused(#[from] ConnectError),
    #[error("gateway closed the connection: {code}: {reason}")]
    Closed { code: CloseCode, reason: String },
    /// [`Engine::start`] was called outside a tokio runtime: name one with
    /// [`Engine::start_on`].
    #[error("no tokio runtime to start the engine on: call start_on with a runtime handle")]
    NoRuntime,
    /// The engine runs once: it was started already, or routes were added after the start.
    #[error("the engine has started already")]
    AlreadyStarted,
}

/// A worker session, from before its start to its end. Cheap to clone; all clones drive
/// the same engine. Dropping every clone drains it.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

struct Shared {
    /// Until the start: the configuration (routes may still be added) and the queue's
    /// sending side, which the engine's task takes.
    setup: StdMutex<Setup>,
    queue: Mutex<mpsc::UnboundedReceiver<Event>>,
    states: Arc<StdMutex<events::States>>,
    stop: watch::Sender<Option<Duration>>,
    result_tx: watch::Sender<Option<Result<(), EngineError>>>,
    result: watch::Receiver<Option<Result<(), EngineError>>>,
}

struct Setup {
    config: WorkerConfig,
    events: Option<Events>,
    started: bool,
}

impl Engine {
    /// An engine for `config`, not started yet. Checks the configuration.
    pub fn new(config: WorkerConfig) -> Result<Engine, EngineError> {
        config.validate()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let states = Arc::new(StdMutex::new(events::States::new()));
        let (stop, _) = watch::channel(None);
        let (result_tx, result) = watch::channel(None);
        Ok(Engine {
            shared: Arc::new(Shared {
                setup: StdMutex::new(Setup {
                    config,
                    events: Some(Events {
                        tx,
                        states: states.clone(),
                    }),
                    started: false,
                }),
                queue: Mutex::new(rx),
                states,
                stop,
                result_tx,
                result,
            }),
        })
    }

    fn setup(&self) -> std::sync::MutexGuard<'_, Setup> {
        self.shared
            .setup
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Declares a route (`method` upper-case or `*`, `path` a pattern such as
    /// `/users/{id}` or `/files/{*rest}`) and returns its id: requests for it carry
    /// it as [`IncomingRequest::route_id`]. Only before the start.
    pub fn add_route(&self, method: &str, path: &str) -> Result<u32, EngineError> {
        let mut setup = self.setup();
        if setup.started {
            return Err(EngineError::AlreadyStarted);
        }
        let routes = &mut setup.config.routes;
        let id = routes.iter().map(|r| r.id + 1).max().unwrap_or(0);
        routes.push(RouteSpec {
            id,
            method: method.to_owned(),
            path: path.to_owned(),
            idempotent: false,
        });
        if let Err(e) = handshake::validate_routes(routes) {
            routes.pop();
            return Err(EngineError::Config(e.message));
        }
        Ok(id)
    }

    /// Declares route `id` (from [`Engine::add_route`]) idempotent (§3.8): the gateway may
    /// retry its requests on another replica whatever their method. Only before the start.
    pub fn set_idempotent(&self, id: u32) -> Result<(), EngineError> {
        let mut setup = self.setup();
        if setup.started {
            return Err(EngineError::AlreadyStarted);
        }
        match setup.config.routes.iter_mut().find(|r| r.id == id) {
            Some(route) => {
                route.idempotent = true;
                Ok(())
            }
            None => Err(EngineError::Config(format!("no route with id {id}"))),
        }
    }

    /// The configuration, routes included (as the start will send it).
    pub fn config(&self) -> WorkerConfig {
        self.setup().config.clone()
    }

    /// Starts connecting on the runtime of the calling task; [`EngineError::NoRuntime`]
    /// outside one (a binding names its runtime with [`Engine::start_on`]).
    pub fn start(&self) -> Result<(), EngineError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| EngineError::NoRuntime)?;
        self.start_on(&handle)
    }

    /// Starts connecting in the background on `runtime`: dials, registers, serves, and
    /// reconnects with backoff until [`Engine::drain`] or a refusal. Once only
    /// ([`EngineError::AlreadyStarted`]); after a drain asked before the start, it does
    /// nothing (the engine has stopped already).
    pub fn start_on(&self, runtime: &tokio::runtime::Handle) -> Result<(), EngineError> {
        let mut setup = self.setup();
        if setup.started {
            return Err(EngineError::AlreadyStarted);
        }
        let Some(events) = setup.events.take() else {
            return Ok(()); // drained before the start: stopped already
        };
        let config = setup.config.clone();
        let targets = match config.targets() {
            Ok(targets) => targets,
            Err(e) => {
                setup.events = Some(events);
                return Err(e);
            }
        };
        let tls = if targets.iter().any(|t| t.url.starts_with("wss://")) {
            match tls::client_config(config.tls_ca_file.as_deref()) {
                Ok(tls) => Some(tls),
                Err(e) => {
                    setup.events = Some(events);
                    return Err(e);
                }
            }
        } else {
            None
        };
        setup.started = true;
        drop(setup);
        let stop = self.shared.stop.subscribe();
        let result_tx = self.shared.result_tx.clone();
        runtime.spawn(async move {
            let shared = Arc::new(supervise::Shared::new(config, tls));
            let result = gateways::run(shared, targets, &events, stop).await;
            events.end(match &result {
                Ok(()) => ConnectionState::Stopped,
                Err(e) => ConnectionState::Failed {
                    cause: e.to_string(),
                },
            });
            let _ = result_tx.send(Some(result));
            // Dropping `events` closes the queue: the host's pull ends after this state.
        });
        Ok(())
    }

    /// Waits for something to happen and returns all of it (at most `max` requests; the
    /// rest stay for the next call). `None` once the engine has stopped and everything it
    /// queued has been handed out, so a host's pull loop ends by itself. One puller at a
    /// time: concurrent calls take turns.
    pub async fn next_batch(&self, max: usize) -> Option<Batch> {
        let max = max.max(1);
        let mut queue = self.shared.queue.lock().await;
        loop {
            let first = queue.recv().await?;
            let mut batch = Batch::default();
            events::take(first, &mut batch);
            while batch.requests.len() < max {
                match queue.try_recv() {
                    Ok(event) => events::take(event, &mut batch),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                return Some(batch);
            }
        }
    }

    /// The worker's latest state (the host sees every change in [`Batch::states`]):
    /// `Connected` while at least one session is (the worker is ready), `Draining` once
    /// stopping, otherwise the latest state of a session still trying; `Stopped` or
    /// `Failed` when every session has ended.
    pub fn state(&self) -> ConnectionState {
        self.states().worker.clone()
    }

    /// The latest state of each live session, in the order they began (the host sees
    /// every change in [`Batch::gateways`]); the extra sessions a gateway asks for
    /// (PROTOCOL.md §9.1) are entries with the same gateway and address. A session ends when the engine stops, when
    /// its address leaves its gateway's host name, or when its gateway refused the worker.
    ///
    /// ```no_run
    /// # use vyx_core::session::{ConnectionState, Engine, WorkerConfig};
    /// # fn demo() -> Result<(), vyx_core::session::EngineError> {
    /// let engine = Engine::new(WorkerConfig::new(["ws://10.0.0.1:9000", "ws://10.0.0.2:9000"], "rust:api"))?;
    /// let up = engine.gateways().iter()
    ///     .filter(|g| matches!(g.state, ConnectionState::Connected { .. }))
    ///     .count();
    /// # Ok(()) }
    /// ```
    pub fn gateways(&self) -> Vec<events::GatewayState> {
        self.states().gateways()
    }

    fn states(&self) -> std::sync::MutexGuard<'_, events::States> {
        self.shared
            .states
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops gracefully: sends DRAIN, lets in-flight requests finish (at most `deadline`),
    /// then closes and does not reconnect. Returns at once; the pull ends when done. Before
    /// the start, the engine just stops (and its pull ends after `Stopped`).
    pub fn drain(&self, deadline: Duration) {
        let mut setup = self.setup();
        if !setup.started {
            if let Some(events) = setup.events.take() {
                events.end(ConnectionState::Stopped);
                let _ = self.shared.result_tx.send(Some(Ok(())));
            }
        }
        drop(setup);
        self.shared.stop.send_if_modified(|s| {
            if s.is_none() {
                *s = Some(deadline);
                true
            } else {
                false
            }
        });
    }

    /// Waits until the engine has stopped: `Ok` after [`Engine::drain`], `Err` when the
    /// gateway refused the worker for good.
    pub async fn wait(&self) -> Result<(), EngineError> {
        let mut rx = self.shared.result.clone();
        let result = rx.wait_for(Option::is_some).await;
        match result {
            Ok(r) => r.clone().expect("waited for Some"),
            Err(_) => Ok(()),
        }
    }
}

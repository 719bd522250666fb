//! The host's queue: what the engine's tasks queue for the host, in order, and the
//! [`Batch`] one [`Engine::next_batch`](super::Engine::next_batch) makes of it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex as StdMutex, PoisonError};

use tokio::sync::mpsc;

use super::stream::{self, IncomingRequest, StreamError, StreamReset};
use super::ConnectionState;

/// One session's state: the worker holds a session to every gateway it was given, and to
/// every address a gateway's host name resolves to (PROTOCOL.md §9.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayState {
    /// The registration URL, as dialled (its host name is the TLS server name and `Host`).
    pub gateway: String,
    /// The address this session dials; `None` while the host name has not resolved.
    pub address: Option<SocketAddr>,
    pub state: ConnectionState,
}

/// What one [`Engine::next_batch`] returns: everything the host must react to since the
/// previous call.
#[derive(Debug, Default)]
pub struct Batch {
    /// New requests, each with the handle to answer it. A request whose stream died
    /// before it could be handed out is not in here (the core has dealt with it).
    pub requests: Vec<IncomingRequest>,
    /// Streams handed out in this or an earlier batch that can no longer be answered:
    /// reset by the gateway, or lost with the connection. Stop their handlers. A slot may
    /// name a request the host has answered already (the reset crossed the answer).
    pub resets: Vec<StreamReset>,
    /// Every change of the worker's state, in order, none skipped: the aggregate of its
    /// sessions ([`Engine::state`](super::Engine::state) says how it is made).
    pub states: Vec<ConnectionState>,
    /// Every change of one session's state, in order, none skipped (a worker given one
    /// gateway at one address has one session, and these repeat `states`).
    pub gateways: Vec<GatewayState>,
}

impl Batch {
    pub(super) fn is_empty(&self) -> bool {
        self.requests.is_empty()
            && self.resets.is_empty()
            && self.states.is_empty()
            && self.gateways.is_empty()
    }
}

/// What the engine's tasks queue for the host, in order.
pub(crate) enum Event {
    Request(IncomingRequest),
    Reset(Arc<stream::StreamShared>),
    State(ConnectionState),
    Gateway(GatewayState),
}

/// The latest state of the worker and of each live session.
#[derive(Debug)]
pub(crate) struct States {
    pub(super) worker: ConnectionState,
    /// Live sessions by the key [`Events::session`] gave them, in the order they began.
    sessions: BTreeMap<u64, GatewayState>,
    next_key: u64,
    /// The engine is stopping: a draining session makes the worker `Draining` (a session
    /// drained because its address went away does not).
    stopping: bool,
}

impl States {
    pub(super) fn new() -> States {
        States {
            worker: ConnectionState::Connecting,
            sessions: BTreeMap::new(),
            next_key: 0,
            stopping: false,
        }
    }

    pub(super) fn gateways(&self) -> Vec<GatewayState> {
        self.sessions.values().cloned().collect()
    }

    /// The worker's state after `changed`: `Draining` once stopping, else `Connected`
    /// while at least one session is, else the latest of the sessions still trying.
    fn aggregate(&self, changed: &ConnectionState) -> ConnectionState {
        use ConnectionState::*;
        let states = || self.sessions.values().map(|s| &s.state);
        if self.stopping && states().any(|s| *s == Draining) {
            return Draining;
        }
        if let Some(up) = states().find(|s| matches!(s, Connected { .. })) {
            return match &self.worker {
                // Still ready: no new change for the host.
                w @ Connected { .. } => w.clone(),
                _ => up.clone(),
            };
        }
        if matches!(changed, Connecting | Reconnecting { .. }) {
            return changed.clone();
        }
        states()
            .rfind(|s| matches!(s, Connecting | Reconnecting { .. }))
            .cloned()
            .unwrap_or_else(|| self.worker.clone())
    }
}

/// The sending side of the host's queue, with the latest states for [`Engine::state`].
#[derive(Clone)]
pub(crate) struct Events {
    pub(super) tx: mpsc::UnboundedSender<Event>,
    pub(super) states: Arc<StdMutex<States>>,
}

impl Events {
    fn states(&self) -> std::sync::MutexGuard<'_, States> {
        self.states.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The worker's last state (`Stopped` or `Failed`), once every session has ended.
    pub(crate) fn end(&self, state: ConnectionState) {
        let mut states = self.states();
        states.worker = state.clone();
        // Sent under the lock, so that the queue's order is the order of the changes.
        let _ = self.tx.send(Event::State(state));
    }

    /// The engine is stopping: every session drains.
    pub(crate) fn stopping(&self) {
        self.states().stopping = true;
    }

    /// A new session, `Connecting`, for `gateway` at `address`.
    pub(crate) fn session(&self, gateway: &str, address: Option<SocketAddr>) -> SessionEvents {
        let key = {
            let mut states = self.states();
            states.next_key += 1;
            states.next_key
        };
        let session = SessionEvents {
            events: self.clone(),
            key,
            gateway: gateway.to_owned(),
            address,
        };
        session.state(ConnectionState::Connecting);
        session
    }

    /// Queues a request; refuses it (RESET `refused`) when nobody can pull any more.
    pub(crate) fn request(&self, req: IncomingRequest) {
        if let Err(mpsc::error::SendError(Event::Request(req))) = self.tx.send(Event::Request(req))
        {
            req.stream.reset_refused();
        }
    }

    pub(crate) fn reset(&self, stream: Arc<stream::StreamShared>) {
        let _ = self.tx.send(Event::Reset(stream));
    }
}

/// The queue as one session uses it: its state changes are the session's, and the worker's
/// follows from them.
pub(crate) struct SessionEvents {
    events: Events,
    key: u64,
    gateway: String,
    address: Option<SocketAddr>,
}

impl SessionEvents {
    pub(crate) fn state(&self, state: ConnectionState) {
        let mut states = self.events.states();
        let changed = GatewayState {
            gateway: self.gateway.clone(),
            address: self.address,
            state: state.clone(),
        };
        if matches!(
            state,
            ConnectionState::Stopped | ConnectionState::Failed { .. }
        ) {
            states.sessions.remove(&self.key);
        } else {
            states.sessions.insert(self.key, changed.clone());
        }
        let _ = self.events.tx.send(Event::Gateway(changed));
        let worker = states.aggregate(&state);
        if worker != states.worker {
            states.worker = worker.clone();
            let _ = self.events.tx.send(Event::State(worker));
        }
    }

    pub(crate) fn request(&self, req: IncomingRequest) {
        self.events.request(req);
    }

    pub(crate) fn reset(&self, stream: Arc<stream::StreamShared>) {
        self.events.reset(stream);
    }
}

/// Adds one queued event to the batch: requests whose stream died in the queue are
/// dropped (their handle's drop does nothing more), and resets only reported for streams
/// the host has seen.
pub(crate) fn take(event: Event, batch: &mut Batch) {
    match event {
        Event::Request(req) => {
            if req.stream.is_done() {
                return;
            }
            req.stream.mark_delivered();
            batch.requests.push(req);
        }
        Event::Reset(stream) => {
            if stream.delivered.load(std::sync::atomic::Ordering::Acquire) {
                batch.resets.push(StreamReset {
                    slot: stream.slot(),
                    error: stream.send.failure().unwrap_or(StreamError::ConnectionLost),
                });
            }
        }
        Event::State(state) => batch.states.push(state),
        Event::Gateway(state) => batch.gateways.push(state),
    }
}

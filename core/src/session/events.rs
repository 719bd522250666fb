//! The host's queue: what the engine's tasks queue for the host, in order, and the
//! [`Batch`] one [`Engine::next_batch`](super::Engine::next_batch) makes of it.

use std::sync::{Arc, Mutex as StdMutex, PoisonError};

use tokio::sync::mpsc;

use super::stream::{self, IncomingRequest, StreamError, StreamReset};
use super::ConnectionState;

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
    /// Every connection-state change, in order, none skipped.
    pub states: Vec<ConnectionState>,
}

impl Batch {
    pub(super) fn is_empty(&self) -> bool {
        self.requests.is_empty() && self.resets.is_empty() && self.states.is_empty()
    }
}

/// What the engine's tasks queue for the host, in order.
pub(crate) enum Event {
    Request(IncomingRequest),
    Reset(Arc<stream::StreamShared>),
    State(ConnectionState),
}

/// The sending side of the host's queue, with the latest state for [`Engine::state`].
#[derive(Clone)]
pub(crate) struct Events {
    pub(super) tx: mpsc::UnboundedSender<Event>,
    pub(super) current: Arc<StdMutex<ConnectionState>>,
}

impl Events {
    pub(crate) fn state(&self, state: ConnectionState) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = state.clone();
        let _ = self.tx.send(Event::State(state));
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
    }
}

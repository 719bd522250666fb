//! [`States`]: every connection state of a worker, in order, to every subscriber.

use std::sync::{Mutex, PoisonError};

use tokio::sync::mpsc;
use vyx_core::session::ConnectionState;

/// Hands every state the engine reports to every [`States`] subscriber.
pub(crate) struct StateHub {
    inner: Mutex<HubInner>,
}

pub(crate) struct HubInner {
    pub(crate) current: ConnectionState,
    subscribers: Vec<mpsc::UnboundedSender<ConnectionState>>,
}

impl StateHub {
    pub(crate) fn new() -> StateHub {
        StateHub {
            inner: Mutex::new(HubInner {
                current: ConnectionState::Connecting,
                subscribers: Vec::new(),
            }),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, HubInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn publish(&self, state: &ConnectionState) {
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

    pub(crate) fn subscribe(&self) -> States {
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

//! `/_vyx/ui/events`: server-sent events, one snapshot per `ui.interval`.
//!
//! Bounded twice: at most `ui.clients` streams at once (more get a 503), and per stream one
//! update waiting for the client, whatever an update weighs. An update the client has not
//! taken by the next tick (its socket buffers full) is a missed tick: no newer one is made
//! for it, so a slow reader gets fewer, fresher updates; one that misses `ui.max_missed`
//! ticks in a row has stalled and is dropped, its connection reset as for `timeouts.send`.
//! Each stream has its own task, so a stalled client holds up no other.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::debug;

use super::snapshot::Readings;
use crate::body::BodyError;
use crate::conn::Failure;
use crate::response::OnAbort;
use crate::Shared;

/// The dashboard's bounds (`GatewayConfig::ui`).
///
/// ```
/// let mut config = vyx_gateway::GatewayConfig::default();
/// config.ui.clients = 2; // two dashboards at most
/// ```
#[derive(Debug, Clone, Copy)]
pub struct UiLimits {
    /// Event streams open at once; the next one is refused with 503.
    pub clients: usize,
    /// Time between two snapshots.
    pub interval: Duration,
    /// Ticks in a row a client may leave its waiting update untaken before it is dropped.
    pub max_missed: u32,
}

impl Default for UiLimits {
    fn default() -> Self {
        UiLimits {
            clients: 8,
            interval: Duration::from_secs(1),
            max_missed: 16,
        }
    }
}

/// The streams open now, against `ui.clients`.
#[derive(Default)]
pub struct Clients(Arc<AtomicUsize>);

/// One stream's place among [`Clients`], given back when dropped.
pub struct ClientSlot(Arc<AtomicUsize>);

impl Clients {
    pub fn take(&self, cap: usize) -> Option<ClientSlot> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .ok()
            .map(|_| ClientSlot(self.0.clone()))
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a stream's body and its feeding task share.
#[derive(Default)]
struct Link {
    /// The client was dropped at the bound: the body ends with an error, not cleanly.
    stalled: AtomicBool,
    /// How the connection is told (see `response::OnAbort`).
    on_abort: Mutex<Option<OnAbort>>,
}

/// The event stream as hyper pulls it.
pub struct EventBody {
    rx: mpsc::Receiver<Bytes>,
    link: Arc<Link>,
}

impl EventBody {
    /// Starts the stream's task; `slot` is held until it ends.
    pub fn start(shared: Arc<Shared>, slot: ClientSlot) -> EventBody {
        let (tx, rx) = mpsc::channel(1);
        let link = Arc::new(Link::default());
        tokio::spawn(feed(tx, link.clone(), shared, slot));
        EventBody { rx, link }
    }

    /// `hook` runs if the client is dropped at the bound.
    pub fn on_abort(&self, hook: OnAbort) {
        *self.link.on_abort.lock().unwrap() = Some(hook);
    }

    pub fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BodyError>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(None) if self.link.stalled.load(Ordering::Acquire) => {
                Poll::Ready(Some(Err(BodyError(Failure::ConnectionLost(
                    "dashboard client dropped: it took no update for ui.max_missed ticks".into(),
                )))))
            }
            other => other.map(|b| b.map(Ok)),
        }
    }
}

/// Sends a snapshot every `ui.interval` until the client goes, the gateway shuts down (the
/// stream then ends cleanly, so a graceful shutdown does not wait on it) or the client
/// stalls.
async fn feed(tx: mpsc::Sender<Bytes>, link: Arc<Link>, shared: Arc<Shared>, _slot: ClientSlot) {
    let limits = shared.config.ui;
    let mut readings = Readings::default();
    let mut tick = tokio::time::interval(limits.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut first = true;
    let mut missed = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tx.closed() => return,
        }
        if *shared.phase.borrow() == crate::stopping::Phase::Closing {
            return;
        }
        let Ok(permit) = tx.try_reserve() else {
            if tx.is_closed() {
                return;
            }
            missed += 1;
            if missed < limits.max_missed {
                continue;
            }
            link.stalled.store(true, Ordering::Release);
            shared.metrics.client_error("ui_stalled");
            debug!(missed, "dashboard client took no update; dropped");
            let hook = link.on_abort.lock().unwrap().take();
            if let Some(hook) = hook {
                hook();
            }
            return;
        };
        missed = 0;
        let json = readings.next(&shared);
        // The first event also tells the browser how soon to reconnect after a drop.
        let retry = if std::mem::take(&mut first) {
            "retry: 3000\n"
        } else {
            ""
        };
        permit.send(Bytes::from(format!(
            "{retry}event: snapshot\ndata: {json}\n\n"
        )));
    }
}

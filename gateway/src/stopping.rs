//! How a gateway told to stop (SIGTERM) lets its clients go without failing a request:
//! first its readiness fails while it still serves as before (`timeouts.readiness_delay`),
//! HTTP/1 responses carry `Connection: close` and HTTP/2 connections get GOAWAY, so load
//! balancers and clients move to other gateways; then it stops accepting, closes idle
//! connections and finishes what it accepted within `timeouts.drain_grace`.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{watch, Notify};

/// Where the gateway is in its stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Serving,
    /// Told to stop: readiness fails, clients are asked to go; still accepting.
    Leaving,
    /// Not accepting: every connection is shut down gracefully, workers drain.
    Closing,
}

/// Resolves when a client connection should be shut down gracefully: at [`Phase::Closing`],
/// or at [`Phase::Leaving`] once it is HTTP/2 (`is_h2`, whose setting `h2_seen` announces).
/// An HTTP/1 connection is left alone while leaving: shutting it down before its first
/// request would close it unanswered, and its responses carry `Connection: close` instead.
pub async fn go_away(phase: &mut watch::Receiver<Phase>, is_h2: &AtomicBool, h2_seen: &Notify) {
    loop {
        let seen = h2_seen.notified();
        tokio::pin!(seen);
        seen.as_mut().enable();
        let now = *phase.borrow_and_update();
        if now == Phase::Closing || (now == Phase::Leaving && is_h2.load(Ordering::Relaxed)) {
            return;
        }
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() {
                    // The gateway is gone; nothing will ask again.
                    std::future::pending::<()>().await;
                }
            }
            _ = seen => {}
        }
    }
}

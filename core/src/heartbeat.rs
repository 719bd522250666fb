//! The heartbeat (PROTOCOL.md §7): when to ping, and when a silent peer is dead.

use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use crate::limits::HEARTBEAT_MISSES;

/// The heartbeat rule of both sides: ping every interval; a peer from which nothing at all
/// arrived during [`HEARTBEAT_MISSES`] consecutive intervals is dead.
///
/// Silence is counted in ticks, not read off the clock: a tick is a moment this side was
/// running and able to read. When this side itself stalls (CPU starvation, a paused VM, a
/// blocked runtime) the whole stall counts as one interval, and whatever the peer sent
/// meanwhile waits in the socket and is read before the next tick, so a live peer is never
/// condemned for our own stall however the tick and the backlog are ordered.
pub struct Heartbeat {
    ticker: tokio::time::Interval,
    /// Something arrived since the previous tick.
    heard: bool,
    /// Consecutive intervals in which nothing arrived.
    silent_intervals: u32,
    last_recv: Instant,
}

impl Heartbeat {
    pub fn new(interval: Duration) -> Heartbeat {
        let interval = interval.max(Duration::from_millis(1));
        let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
        // A late tick schedules the next one a full interval later: intervals never shrink.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Heartbeat {
            ticker,
            heard: false,
            silent_intervals: 0,
            last_recv: Instant::now(),
        }
    }

    /// Anything arrived from the peer (a frame, a ping, a pong).
    pub fn received(&mut self) {
        self.heard = true;
        self.last_recv = Instant::now();
    }

    /// Waits for the next tick: `Ok` when it is time to ping, `Err(silence)` (the time
    /// since the peer was last heard) when the peer has been silent too long.
    pub async fn tick(&mut self) -> Result<(), Duration> {
        self.ticker.tick().await;
        if std::mem::take(&mut self.heard) {
            self.silent_intervals = 0;
        } else {
            self.silent_intervals += 1;
        }
        if self.silent_intervals >= HEARTBEAT_MISSES {
            Err(self.last_recv.elapsed())
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_millis(100);

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_is_dead_after_three_intervals() {
        let mut hb = Heartbeat::new(INTERVAL);
        let start = Instant::now();
        assert_eq!(hb.tick().await, Ok(()));
        assert_eq!(hb.tick().await, Ok(()));
        let silence = hb.tick().await.expect_err("third silent interval");
        assert_eq!(start.elapsed(), INTERVAL * 3);
        assert_eq!(silence, INTERVAL * 3);
    }

    #[tokio::test(start_paused = true)]
    async fn anything_heard_in_an_interval_keeps_the_peer_alive() {
        let mut hb = Heartbeat::new(INTERVAL);
        for _ in 0..10 {
            assert_eq!(hb.tick().await, Ok(()));
            assert_eq!(hb.tick().await, Ok(()));
            hb.received();
        }
    }

    /// Regression: this side stalls far past the deadline while the peer keeps pinging; on
    /// resuming, the late tick may run before the pings waiting in the socket are read. That
    /// tick used to compare the clock with the last message and declare the peer dead.
    #[tokio::test(start_paused = true)]
    async fn our_own_stall_does_not_condemn_the_peer() {
        let mut hb = Heartbeat::new(INTERVAL);
        hb.received();
        assert_eq!(hb.tick().await, Ok(()));
        // Stalled: no tick and no read for ten intervals.
        tokio::time::advance(INTERVAL * 10).await;
        assert_eq!(hb.tick().await, Ok(()), "the late tick, before the backlog");
        hb.received(); // the pings the peer sent meanwhile
        assert_eq!(hb.tick().await, Ok(()));
        // A peer that really goes silent is still found out, three intervals on.
        assert_eq!(hb.tick().await, Ok(()));
        assert_eq!(hb.tick().await, Ok(()));
        assert!(hb.tick().await.is_err());
    }
}

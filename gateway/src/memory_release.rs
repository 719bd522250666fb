//! Gives memory freed by a burst of requests back to the system once the burst is over
//! (glibc's malloc only).
//!
//! glibc keeps what the gateway frees in its arenas and returns to the system only the top
//! of the main one, so after a burst the gateway's RSS stays near its peak: +8 to +35 % over
//! the soak's baseline, though nothing leaked (bench/NOTES.md, "The allocator").
//! `malloc_trim(0)` gives every arena's free pages back, but it walks each arena holding its
//! lock, so it must not run per request nor under steady load. A task looks at the count of
//! answered requests every [`GatewayConfig::memory_release_interval`] and trims once when an
//! interval saw at most 1/[`DROP`] of the busiest interval since the last trim: when the
//! gateway goes idle or its load drops, never twice without load in between, and at most
//! once per two intervals; [`limit_arenas`] keeps the arenas it walks few. The same idea as
//! Envoy's tcmalloc release rate (`memory_allocator_manager`), jemalloc's background decay
//! and Go's scavenger, run only when load falls. musl's malloc (mallocng) and mimalloc give
//! memory back themselves: no task there.
//!
//! [`GatewayConfig::memory_release_interval`]: crate::GatewayConfig::memory_release_interval

/// Whether this build runs the task (and exports its metrics).
pub(crate) const ACTIVE: bool = cfg!(all(
    target_os = "linux",
    target_env = "gnu",
    not(feature = "mimalloc")
));

/// An interval with at most 1/`DROP` of the busiest interval's requests counts as a drop.
pub const DROP: u64 = 16;

/// When to trim, from the requests answered per interval.
#[cfg_attr(
    not(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc"))),
    allow(dead_code)
)]
#[derive(Debug, Default)]
pub(crate) struct Policy {
    /// Requests in the busiest interval since the last trim.
    peak: u64,
}

impl Policy {
    /// `answered`: requests answered during the interval just over. Whether to trim now.
    pub(crate) fn interval(&mut self, answered: u64) -> bool {
        if self.peak > 0 && answered <= self.peak / DROP {
            self.peak = answered;
            return true;
        }
        self.peak = self.peak.max(answered);
        false
    }
}

/// Caps glibc's malloc at one arena per core (the runtime's worker threads) instead of eight
/// per core: fewer arenas keep fewer freed pages apart that no trim can return
/// (bench/NOTES.md, "Memory given back when load drops"). A `MALLOC_ARENA_MAX` in the
/// environment wins. Call it before any thread starts; a no-op on other allocators.
///
/// ```
/// vyx_gateway::memory_release::limit_arenas();
/// ```
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc")))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        // SAFETY: mallopt only sets a parameter of the allocator.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, cores.min(64) as libc::c_int) };
    }
}

/// Starts the task; it stops when the returned guard is dropped. `None` where the
/// allocator returns memory itself, or with the interval zero.
#[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc")))]
pub(crate) fn start(shared: &std::sync::Arc<crate::Shared>) -> Option<StopOnDrop> {
    use std::sync::atomic::Ordering;
    let every = shared.config.memory_release_interval;
    if every.is_zero() {
        return None;
    }
    let metrics = shared.metrics.clone();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut policy = Policy::default();
        let mut seen = metrics.answered.load(Ordering::Relaxed);
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = metrics.answered.load(Ordering::Relaxed);
            if !policy.interval(now.wrapping_sub(seen)) {
                seen = now;
                continue;
            }
            seen = now;
            // Off the runtime's threads: a trim takes milliseconds on a large heap.
            let took = tokio::task::spawn_blocking(|| {
                let start = std::time::Instant::now();
                // SAFETY: malloc_trim takes the arenas' locks itself; any thread may call it.
                unsafe { libc::malloc_trim(0) };
                start.elapsed()
            })
            .await;
            if let Ok(took) = took {
                metrics.memory_trims.inc();
                metrics.memory_trim_seconds.inc_by(took.as_secs_f64());
                tracing::debug!(
                    took_us = took.as_micros() as u64,
                    "memory given back (malloc_trim)"
                );
            }
        }
    });
    Some(StopOnDrop(task))
}

#[cfg(not(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc"))))]
pub(crate) fn start(_shared: &std::sync::Arc<crate::Shared>) -> Option<StopOnDrop> {
    None
}

/// Aborts the task when dropped (the gateway's `run` holds it).
#[cfg_attr(
    not(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc"))),
    allow(dead_code)
)]
pub(crate) struct StopOnDrop(tokio::task::JoinHandle<()>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_when_load_stops_and_not_again_until_load_returns() {
        let mut p = Policy::default();
        assert!(!p.interval(0), "no load yet: nothing to give back");
        assert!(!p.interval(500));
        assert!(!p.interval(800), "steady load: no trim");
        assert!(p.interval(0), "idle after load");
        assert!(!p.interval(0), "still idle: trimmed already");
        assert!(!p.interval(1));
        assert!(p.interval(0), "any load, then idle");
    }

    #[test]
    fn trims_when_load_drops_to_a_sixteenth() {
        let mut p = Policy::default();
        assert!(!p.interval(1600));
        assert!(!p.interval(101), "above a sixteenth");
        assert!(p.interval(100));
        assert!(!p.interval(100), "the lower load is the new peak");
        assert!(!p.interval(90));
    }
}

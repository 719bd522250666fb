//! The reconnect schedule (spec/PROTOCOL.md, "Reconnect backoff"): an exponential envelope
//! with equal jitter drawn from SplitMix64, so that Rust and Go produce the same delays for
//! the same seed.
//!
//! ```
//! use vyx_core::backoff::Backoff;
//! let mut b = Backoff::with_seed(0);
//! let first = b.next_delay();
//! assert!(first.as_millis() >= 50 && first.as_millis() <= 100);
//! ```

use std::time::Duration;

/// Envelope of the first retry delay.
pub const BASE_MS: u64 = 100;
/// Largest envelope.
pub const CAP_MS: u64 = 10_000;
/// A session that stays up this long after WELCOME resets the schedule.
pub const STABLE_MS: u64 = 10_000;

/// SplitMix64, the jitter source.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// `min(cap, base × 2^attempt)`, saturating.
pub fn envelope_ms(attempt: u32) -> u64 {
    BASE_MS
        .checked_shl(attempt)
        .filter(|v| v >> attempt == BASE_MS)
        .map_or(CAP_MS, |v| v.min(CAP_MS))
}

/// The schedule's state: how many attempts have failed in a row, and the jitter source.
#[derive(Debug, Clone)]
pub struct Backoff {
    attempt: u32,
    rng: SplitMix64,
}

impl Backoff {
    /// A schedule seeded from the process's randomness.
    pub fn new() -> Backoff {
        Backoff::with_seed(random_seed())
    }

    pub fn with_seed(seed: u64) -> Backoff {
        Backoff {
            attempt: 0,
            rng: SplitMix64::new(seed),
        }
    }

    /// The delay before the next attempt; advances the schedule.
    pub fn next_delay(&mut self) -> Duration {
        let ms = self.next_delay_ms();
        Duration::from_millis(ms)
    }

    /// [`Backoff::next_delay`] in whole milliseconds, as in the vectors.
    pub fn next_delay_ms(&mut self) -> u64 {
        let e = envelope_ms(self.attempt);
        let half = e / 2;
        let delay = half + self.rng.next_u64() % (e - half + 1);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Number of consecutive failed attempts so far.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Back to the first envelope, after a session stayed up for [`STABLE_MS`].
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

/// 64 bits that differ between processes and calls, without a dependency: std's
/// `RandomState` is seeded from the OS per process, and the time separates calls.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

//! The connection budget: the open-files limit, the cap on connections (`limits.max_connections`)
//! with a small reserve for `/_vyx/`, and accept errors reported once per episode.
//!
//! Why a reserve: when clients fill the cap (idle sockets, say), a worker must still be able
//! to register and a probe to read `/_vyx/health`, or the gateway cannot recover by itself.
//! So [`RESERVE`] connections past the cap are admitted, but they serve only `/_vyx/` paths
//! (and the registration path), each answer closes them, and they get [`RESERVE_DEADLINE`]
//! in all unless upgraded to a worker WebSocket: an attacker who takes a reserve slot holds
//! it seconds, not the 30 s a normal connection may wait for its head. Past the reserve,
//! connections are accepted and closed at once, which frees the descriptor and tells the
//! client, instead of leaving it in the kernel's backlog.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tracing::{info, warn};

/// Connections admitted past the cap, for `/_vyx/` only.
pub const RESERVE: usize = 32;
/// How long a reserve connection lives unless it becomes a worker connection.
pub const RESERVE_DEADLINE: Duration = Duration::from_secs(5);
/// Reserve connections that may become worker connections (which stay): the rest of the
/// reserve is kept for `/_vyx/health` and the like, however many workers register.
pub const RESERVE_WORKERS: usize = RESERVE / 2;
/// The default cap is never above this (each connection costs buffers, not only a descriptor).
const DEFAULT_CAP_CEILING: usize = 16_384;

/// The open-files limit: raises the soft limit to the hard one and says what they were.
/// Returns the soft limit in force afterwards.
#[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, not everywhere
pub fn raise_nofile_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            warn!(error = %io::Error::last_os_error(), "cannot read the open-files limit");
            return nofile_limit();
        }
        let (soft, hard) = (lim.rlim_cur, lim.rlim_max);
        if soft < hard {
            lim.rlim_cur = hard;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                warn!(soft, hard, error = %io::Error::last_os_error(), "cannot raise the open-files limit");
                return soft as u64;
            }
        }
        info!(
            soft_was = soft as u64,
            hard = hard as u64,
            now = lim.rlim_cur as u64,
            "open-files limit"
        );
        lim.rlim_cur as u64
    }
}

/// The soft open-files limit in force (1024 if it cannot be read).
#[allow(clippy::unnecessary_cast)] // as above
pub fn nofile_limit() -> u64 {
    // SAFETY: as above.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        lim.rlim_cur as u64
    }
}

/// The default `max_connections` for an open-files limit: what is left after the reserve
/// and a margin for everything else the process opens (listeners, local workers' pipes,
/// logs: an eighth, at least 64), at least 16, at most 16,384.
pub fn default_max_connections(nofile: u64) -> usize {
    let nofile = usize::try_from(nofile).unwrap_or(usize::MAX);
    let margin = (nofile / 8).max(64);
    nofile
        .saturating_sub(margin + RESERVE)
        .clamp(16, DEFAULT_CAP_CEILING)
}

/// Counts open connections against the cap.
pub struct ConnLimiter {
    open: AtomicUsize,
    /// Connections in a lingering close (see `lingering`), counted in `open` too.
    lingering: AtomicUsize,
    /// Told when a new connection takes a lingering one's slot: one of them closes.
    linger_cut: Notify,
    /// Worker connections that were admitted on a reserve connection, still open.
    reserve_workers: AtomicUsize,
    cap: usize,
    gauge: Gauge,
    refused: Episode,
}

/// Whether a new connection may be served, and how.
pub enum Admission {
    Normal(ConnSlot),
    /// Past the cap: `/_vyx/` only, for [`RESERVE_DEADLINE`].
    Reserve(ConnSlot),
    Refused,
}

impl ConnLimiter {
    pub fn new(cap: usize, gauge: Gauge) -> ConnLimiter {
        ConnLimiter {
            open: AtomicUsize::new(0),
            lingering: AtomicUsize::new(0),
            linger_cut: Notify::new(),
            reserve_workers: AtomicUsize::new(0),
            cap,
            gauge,
            refused: Episode::new(),
        }
    }

    pub fn admit(self: &Arc<Self>) -> Admission {
        let n = self.open.fetch_add(1, Ordering::AcqRel);
        // At the cap, a connection in a lingering close gives its slot to this one.
        let over = n.saturating_sub(self.cap);
        let takes_lingerer = n >= self.cap && self.lingering.load(Ordering::Acquire) > over;
        if takes_lingerer {
            self.linger_cut.notify_one();
        } else if n >= self.cap + RESERVE {
            self.open.fetch_sub(1, Ordering::AcqRel);
            self.refused.failed(|| {
                warn!(
                    max_connections = self.cap,
                    reserve = RESERVE,
                    "connection limit reached: new connections are closed at once"
                )
            });
            return Admission::Refused;
        }
        self.gauge.inc();
        let slot = ConnSlot(self.clone(), None);
        if n < self.cap || takes_lingerer {
            self.refused.recovered(|count, took| {
                info!(
                    refused = count,
                    over_ms = took.as_millis() as u64,
                    "below the connection limit again"
                )
            });
            Admission::Normal(slot)
        } else {
            Admission::Reserve(slot)
        }
    }
}

impl ConnLimiter {
    /// A reserve connection becomes a worker connection, if fewer than [`RESERVE_WORKERS`]
    /// have: the returned guard is held as long as the worker's connection.
    pub fn take_reserve_worker(self: &Arc<Self>) -> Option<ReserveWorker> {
        let n = self.reserve_workers.fetch_add(1, Ordering::AcqRel);
        if n >= RESERVE_WORKERS {
            self.reserve_workers.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ReserveWorker(self.clone()))
    }
}

impl ConnLimiter {
    /// A connection starts a lingering close, keeping its slot until a new connection
    /// needs it; `None` when the gateway is already past the cap: close at once.
    pub fn start_linger(self: &Arc<Self>) -> Option<Lingerer> {
        if self.open.load(Ordering::Acquire) > self.cap {
            return None;
        }
        self.lingering.fetch_add(1, Ordering::AcqRel);
        Some(Lingerer(self.clone()))
    }
}

/// A connection in a lingering close (see [`ConnLimiter::start_linger`]).
pub struct Lingerer(Arc<ConnLimiter>);

impl Lingerer {
    /// Ready when a new connection takes this one's slot.
    pub async fn cut(&self) {
        self.0.linger_cut.notified().await
    }
}

impl Drop for Lingerer {
    fn drop(&mut self) {
        self.0.lingering.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A worker connection in the reserve (see [`ConnLimiter::take_reserve_worker`]).
pub struct ReserveWorker(Arc<ConnLimiter>);

impl Drop for ReserveWorker {
    fn drop(&mut self) {
        self.0.reserve_workers.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One open connection; freed when dropped (with the socket it travels with). A worker
/// connection's slot also holds its seat on its shard, counted as long as the socket is open.
pub struct ConnSlot(Arc<ConnLimiter>, Option<crate::shards::Seat>);

impl ConnSlot {
    /// Counts the connection on its shard (see `shards`) until the slot is freed.
    pub fn take_seat(&mut self, seat: crate::shards::Seat) {
        self.1 = Some(seat);
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.gauge.dec();
    }
}

/// A socket that holds its connection slot: after an upgrade hyper hands the socket on, and
/// the slot goes with it.
pub struct Counted<S> {
    io: S,
    _slot: ConnSlot,
}

impl<S> Counted<S> {
    pub fn new(io: S, slot: ConnSlot) -> Counted<S> {
        Counted { io, _slot: slot }
    }

    /// The socket and its slot, apart (a worker connection keeps both, see `conn::socket`).
    pub fn into_parts(self) -> (S, ConnSlot) {
        (self.io, self._slot)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The requests open on one client connection, to tell an idle HTTP/2 connection (which
/// hyper never times out) from a busy one.
#[derive(Default)]
pub struct Activity {
    open: AtomicUsize,
    /// When the last request ended (its response body dropped by hyper).
    last_end: Mutex<Option<Instant>>,
}

impl Activity {
    /// A request has started; it ends when the returned guard drops.
    pub fn start(self: &Arc<Self>) -> ActiveRequest {
        self.open.fetch_add(1, Ordering::AcqRel);
        ActiveRequest(self.clone())
    }

    /// How long the connection has had no request open; `None` while one is.
    pub fn idle_for(&self) -> Option<Duration> {
        if self.open.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(
            self.last_end
                .lock()
                .unwrap()
                .map_or(Duration::ZERO, |t| t.elapsed()),
        )
    }
}

/// One open request of an [`Activity`].
pub struct ActiveRequest(Arc<Activity>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        *self.0.last_end.lock().unwrap() = Some(Instant::now());
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request's [`ActiveRequest`] as its response body holds it.
#[allow(dead_code)] // held for its `Drop`, never read
pub enum HeldRequest {
    /// HTTP/1: ends with the body (an abort closes the whole connection).
    Own(ActiveRequest),
    /// HTTP/2: also ended early, from the body's abort hook, when the response is aborted
    /// for `timeouts.send`.
    Shared(Arc<Mutex<Option<ActiveRequest>>>),
}

/// A run of failures of one kind, logged when it starts and summed up when it ends, instead
/// of a line per failure.
pub struct Episode {
    state: Mutex<Option<(Instant, u64)>>,
}

impl Episode {
    pub fn new() -> Episode {
        Episode {
            state: Mutex::new(None),
        }
    }

    /// Counts a failure; `first` runs for the first of a run.
    pub fn failed(&self, first: impl FnOnce()) -> u64 {
        let mut s = self.state.lock().unwrap();
        match &mut *s {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                *s = Some((Instant::now(), 1));
                drop(s);
                first();
                1
            }
        }
    }

    /// Ends a run, if one is going on: `summary` gets its count and length.
    pub fn recovered(&self, summary: impl FnOnce(u64, Duration)) {
        let mut s = self.state.lock().unwrap();
        if let Some((since, n)) = s.take() {
            drop(s);
            summary(n, since.elapsed());
        }
    }

    #[cfg(test)]
    fn active(&self) -> bool {
        self.state.lock().unwrap().is_some()
    }
}

impl Default for Episode {
    fn default() -> Self {
        Episode::new()
    }
}

/// The accept loop's view of accept errors: back off (10 ms doubling to 1 s) and log the
/// first error of a run, the count once a minute while it lasts, and the count when
/// accepting works again.
pub struct AcceptErrors {
    episode: Episode,
    delay: Duration,
    last_report: Instant,
}

/// How often a run of accept failures that goes on is reported.
const ACCEPT_REPORT_EVERY: Duration = Duration::from_secs(60);

impl AcceptErrors {
    pub fn new() -> AcceptErrors {
        AcceptErrors {
            episode: Episode::new(),
            delay: Duration::ZERO,
            last_report: Instant::now(),
        }
    }

    /// How long to wait before accepting again.
    pub fn failed(&mut self, e: &io::Error) -> Duration {
        let n = self.episode.failed(|| {
            warn!(error = %e, "accept failed (out of file descriptors?); backing off, and counting further failures")
        });
        if n == 1 {
            self.last_report = Instant::now();
        } else if self.last_report.elapsed() >= ACCEPT_REPORT_EVERY {
            self.last_report = Instant::now();
            warn!(error = %e, failures = n, "accepts still failing");
        }
        self.delay = (self.delay * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
        self.delay
    }

    pub fn accepted(&mut self) {
        if self.delay.is_zero() {
            return;
        }
        self.delay = Duration::ZERO;
        self.episode.recovered(|n, took| {
            warn!(
                failures = n,
                over_ms = took.as_millis() as u64,
                "accepting again after failed accepts"
            )
        });
    }
}

impl Default for AcceptErrors {
    fn default() -> Self {
        AcceptErrors::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_cap_leaves_room_for_the_reserve_and_the_rest() {
        assert_eq!(default_max_connections(1024), 1024 - 128 - RESERVE);
        assert_eq!(default_max_connections(256), 256 - 64 - RESERVE);
        assert_eq!(default_max_connections(64), 16);
        assert_eq!(default_max_connections(1 << 20), DEFAULT_CAP_CEILING);
    }

    #[test]
    fn past_the_cap_the_reserve_then_refusal() {
        let l = Arc::new(ConnLimiter::new(2, Gauge::default()));
        let mut held = Vec::new();
        for _ in 0..2 {
            assert!(matches!(l.admit(), Admission::Normal(_)));
        }
        // The slots above were dropped at once: the count is back to 0.
        for _ in 0..2 {
            match l.admit() {
                Admission::Normal(s) => held.push(s),
                _ => panic!("under the cap"),
            }
        }
        for _ in 0..RESERVE {
            match l.admit() {
                Admission::Reserve(s) => held.push(s),
                _ => panic!("in the reserve"),
            }
        }
        assert!(matches!(l.admit(), Admission::Refused));
        assert!(l.refused.active());
        // Half the reserve may become workers, no more; a worker leaving frees its place.
        let mut workers: Vec<_> = (0..RESERVE_WORKERS)
            .map(|_| l.take_reserve_worker().expect("room for a reserve worker"))
            .collect();
        assert!(l.take_reserve_worker().is_none());
        workers.pop();
        assert!(l.take_reserve_worker().is_some());
        held.truncate(1);
        assert!(matches!(l.admit(), Admission::Normal(_)));
        assert!(!l.refused.active());
    }

    #[test]
    fn a_lingering_connection_gives_its_slot_to_a_new_one() {
        use futures_util::FutureExt;
        let l = Arc::new(ConnLimiter::new(2, Gauge::default()));
        let Admission::Normal(a) = l.admit() else {
            panic!("under the cap")
        };
        let Admission::Normal(_b) = l.admit() else {
            panic!("under the cap")
        };
        let lingerer = l.start_linger().expect("within the cap");
        let c = {
            let cut = lingerer.cut();
            tokio::pin!(cut);
            assert!(cut.as_mut().now_or_never().is_none());
            // At the cap: the new connection takes the lingering one's slot, which is cut ...
            let Admission::Normal(c) = l.admit() else {
                panic!("a lingering slot is given up")
            };
            assert!(cut.as_mut().now_or_never().is_some());
            c
        };
        // ... once: until it is gone, the next goes to the reserve.
        assert!(matches!(l.admit(), Admission::Reserve(_)));
        // Past the cap, a connection does not start lingering: it closes at once.
        assert!(l.start_linger().is_none());
        drop((a, c, lingerer));
        assert!(l.start_linger().is_some());
    }
}

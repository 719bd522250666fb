//! The gateway's shards: one single-threaded tokio runtime per core, each on a thread of its
//! own (`vyx-shard-N`). Every accepted connection is served entirely on one shard (its hyper
//! connection, request futures, body pumps, and a worker connection's reader and writer):
//! they `tokio::spawn` onto the runtime they run on, so moving the connection moves them all.
//! A request then wakes no other thread unless its worker connection is on another shard,
//! which the replica pick avoids (`registry::reserve_replica`). The work-stealing scheduler
//! this replaces cost ~9 µs a request in futex wakes, context switches and cold caches
//! (bench/NOTES.md, "Shards").
//!
//! Placement: the accept loops hand each socket to the next shard in turn; a plain
//! connection whose first bytes are a worker registration (`GET <register.path>`) then goes
//! to the shard with the fewest worker connections, so that a worker's connections (one per
//! shard, asked for in WELCOME) land on distinct shards.
//!
//! ```
//! # use vyx_gateway::shards::Shards;
//! let shards = Shards::start(2).unwrap();
//! let (tx, rx) = std::sync::mpsc::channel();
//! shards.pool().spawn(1, async move { tx.send(vyx_gateway::shards::current()).unwrap() });
//! assert_eq!(rx.recv().unwrap(), Some(1));
//! ```

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

thread_local! {
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The shard this thread runs, `None` off the shards (the control plane, tests).
pub fn current() -> Option<usize> {
    CURRENT.with(Cell::get)
}

/// The running shards; dropping it stops them (their connections are dropped, as when the
/// process exits) and waits for their threads.
pub struct Shards {
    pool: Pool,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Where connections are put: the shards' runtimes and what each holds. Cheap to clone.
#[derive(Clone)]
pub struct Pool(Arc<PoolInner>);

struct PoolInner {
    handles: Vec<Handle>,
    /// Worker connections on each shard (see [`Seat`]).
    workers: Vec<AtomicUsize>,
    next: AtomicUsize,
}

/// How long a stopping shard waits for its blocking tasks.
const STOP_WAIT: Duration = Duration::from_secs(1);

impl Shards {
    /// Starts `n` shards (at least one), each a current_thread runtime on its own thread.
    pub fn start(n: usize) -> std::io::Result<Shards> {
        let n = n.max(1);
        let (mut handles, mut stops, mut threads) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(rt.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("vyx-shard-{i}"))
                    .spawn(move || {
                        CURRENT.with(|c| c.set(Some(i)));
                        let _ = rt.block_on(stopped);
                        rt.shutdown_timeout(STOP_WAIT);
                    })?,
            );
        }
        let workers = (0..n).map(|_| AtomicUsize::new(0)).collect();
        Ok(Shards {
            pool: Pool(Arc::new(PoolInner {
                handles,
                workers,
                next: AtomicUsize::new(0),
            })),
            stops,
            threads,
        })
    }

    /// The handle connections are placed with.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

impl Drop for Shards {
    fn drop(&mut self) {
        self.stops.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Pool {
    /// How many shards there are.
    pub fn len(&self) -> usize {
        self.0.handles.len()
    }

    /// Never: there is at least one shard.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The tasks alive on all shards (a connection is at least one).
    pub fn alive_tasks(&self) -> usize {
        let tasks = |h: &Handle| h.metrics().num_alive_tasks();
        self.0.handles.iter().map(tasks).sum()
    }

    /// The next shard in turn, for a connection not known to be a worker's.
    pub fn next(&self) -> usize {
        self.0.next.fetch_add(1, Ordering::Relaxed) % self.len()
    }

    /// Runs `task` on shard `shard`.
    pub fn spawn<F>(&self, shard: usize, task: F)
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        drop(self.0.handles[shard].spawn(task));
    }

    /// The shard a worker connection goes to, and its seat there: the one with the fewest
    /// worker connections, `here` among equals (no move).
    pub fn seat_worker(&self, here: usize) -> Seat {
        let load = |i: usize| self.0.workers[i].load(Ordering::Relaxed);
        let shard = (0..self.len())
            .min_by_key(|&i| (load(i), i != here))
            .unwrap_or(here);
        self.0.workers[shard].fetch_add(1, Ordering::Relaxed);
        Seat {
            pool: self.clone(),
            shard,
        }
    }
}

/// A worker connection counted on its shard for as long as its socket is open.
pub struct Seat {
    pool: Pool,
    shard: usize,
}

impl Seat {
    /// The shard the connection is (to be) served on.
    pub fn shard(&self) -> usize {
        self.shard
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.pool.0.workers[self.shard].fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether `head`, a connection's first bytes, is a worker registration on
/// `register_path`: `GET <path>` then a space or a query. Partial heads say no (the
/// connection stays where it is).
pub(crate) fn is_registration(head: &[u8], register_path: &str) -> bool {
    head.strip_prefix(b"GET ")
        .and_then(|rest| rest.strip_prefix(register_path.as_bytes()))
        .is_some_and(|rest| matches!(rest.first(), Some(b' ' | b'?')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registration_is_told_by_its_request_line() {
        assert!(is_registration(
            b"GET /_vyx/register HTTP/1.1\r\n",
            "/_vyx/register"
        ));
        assert!(is_registration(
            b"GET /_vyx/register?x=1 HTTP/1.1",
            "/_vyx/register"
        ));
        assert!(!is_registration(
            b"GET /_vyx/registered HTTP/1.1",
            "/_vyx/register"
        ));
        assert!(!is_registration(
            b"POST /_vyx/register HTTP/1.1",
            "/_vyx/register"
        ));
        assert!(!is_registration(b"GET /_vyx/regis", "/_vyx/register"));
    }

    #[test]
    fn worker_connections_spread_over_the_shards() {
        let shards = Shards::start(3).unwrap();
        let pool = shards.pool();
        let a = pool.seat_worker(1);
        assert_eq!(a.shard(), 1, "equal loads: stays where it is");
        let b = pool.seat_worker(1);
        let c = pool.seat_worker(1);
        let mut seen = [a.shard(), b.shard(), c.shard()];
        seen.sort();
        assert_eq!(seen, [0, 1, 2]);
        drop(b);
        let again = pool.seat_worker(0);
        assert_eq!(
            again.shard(),
            seen.iter()
                .copied()
                .find(|s| ![a.shard(), c.shard()].contains(s))
                .unwrap()
        );
    }

    #[test]
    fn each_shard_runs_its_tasks_on_its_own_thread() {
        let shards = Shards::start(2).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0..2 {
            let tx = tx.clone();
            shards.pool().spawn(i, async move {
                let name = std::thread::current().name().map(str::to_owned);
                tx.send((current(), name)).unwrap();
            });
        }
        let mut got = [rx.recv().unwrap(), rx.recv().unwrap()];
        got.sort();
        assert_eq!(got[0], (Some(0), Some("vyx-shard-0".into())));
        assert_eq!(got[1], (Some(1), Some("vyx-shard-1".into())));
    }
}

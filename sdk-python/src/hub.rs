//! The queue between the engine's tokio side and the asyncio loop, and the socket that wakes
//! the loop. Producers (tokio tasks) push and write one byte when the loop is not already
//! woken; the loop drains the socket and swaps the whole queue out. Neither side waits for
//! the other, and no producer touches the interpreter.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use vyx_core::session::{ConnectionState, EngineError, IncomingRequest};

use crate::ws::WsEvent;

/// One thing the loop must react to.
pub(crate) enum Item {
    Request(IncomingRequest),
    Reset(u64),
    State(ConnectionState),
    /// A readiness wait the loop asked for ended: `writable` tells which one, `error` why
    /// it failed.
    Ready {
        slot: u64,
        writable: bool,
        error: Option<String>,
    },
    /// A WebSocket operation Python started (`ws_receive`, `ws_send`, `ws_close`) ended.
    Ws {
        token: u64,
        event: WsEvent,
    },
    /// The engine has stopped and everything before this was handed out.
    End(Result<(), EngineError>),
}

pub(crate) struct Hub {
    queue: Mutex<Vec<Item>>,
    /// A wake byte is in the socket (or about to be): no need to write another.
    armed: AtomicBool,
    wake_tx: UnixStream,
    wake_rx: UnixStream,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Hubs alive, for the log bridge to wake (logs are rare; every hub drains them).
static HUBS: Mutex<Vec<Weak<Hub>>> = Mutex::new(Vec::new());

impl Hub {
    pub(crate) fn new() -> std::io::Result<Arc<Hub>> {
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let hub = Arc::new(Hub {
            queue: Mutex::new(Vec::new()),
            armed: AtomicBool::new(false),
            wake_tx,
            wake_rx,
        });
        let mut hubs = lock(&HUBS);
        hubs.retain(|h| h.strong_count() > 0);
        hubs.push(Arc::downgrade(&hub));
        Ok(hub)
    }

    /// The descriptor the loop watches for reading.
    pub(crate) fn fileno(&self) -> i32 {
        self.wake_rx.as_raw_fd()
    }

    pub(crate) fn push_all(&self, items: impl IntoIterator<Item = Item>) {
        lock(&self.queue).extend(items);
        self.wake();
    }

    pub(crate) fn push(&self, item: Item) {
        self.push_all(std::iter::once(item));
    }

    /// Writes the wake byte unless one is pending. A full socket means the loop has bytes
    /// to read already, so the error is ignored.
    pub(crate) fn wake(&self) {
        if !self.armed.swap(true, Ordering::AcqRel) {
            let _ = (&self.wake_tx).write(&[1]);
        }
    }

    /// Everything queued, for the loop. Drains the wake bytes first and disarms, so that an
    /// item pushed after the swap writes a new byte.
    pub(crate) fn take(&self) -> Vec<Item> {
        let mut buf = [0u8; 64];
        while matches!((&self.wake_rx).read(&mut buf), Ok(n) if n > 0) {}
        self.armed.store(false, Ordering::Release);
        std::mem::take(&mut *lock(&self.queue))
    }
}

/// Wakes every live hub (a log record is waiting).
pub(crate) fn wake_all() {
    let hubs: Vec<Arc<Hub>> = lock(&HUBS).iter().filter_map(Weak::upgrade).collect();
    for hub in hubs {
        hub.wake();
    }
}

//! The gateway's side of one worker connection, split by concern:
//! - [`handshake`]: the upgraded socket from HELLO to WELCOME, and HELLO/ROUTES policy checks;
//! - [`reader`]: the reader loop (frames from the worker, heartbeat);
//! - [`streams`]: the stream table and each stream's state;
//! - [`flow`]: per-stream flow-control accounting;
//! - [`drain`]: DRAIN and the close once the last stream ends;
//! - [`socket`]: the TCP socket kept aside, to drop a dead connection at once;
//! - [`instance`]: the slots a worker process's connections share.

mod drain;
mod flow;
mod handshake;
mod instance;
mod reader;
mod socket;
mod streams;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, Notify};
use vyx_core::error::ResetCode;
use vyx_core::flow::SendWindow;
use vyx_core::frame::HeaderList;
use vyx_core::handshake::RouteSpec;
use vyx_core::transport::{OutQueue, Outgoing};

use crate::auth::Admission;
use crate::routes::RouteKey;

pub use handshake::serve;
pub use instance::{InstanceIndex, InstanceSlots};
pub use socket::{SocketHandle, SocketIo};
use streams::StreamTable;

/// A connection's routes: declared key → what the worker declared for it.
pub type ConnRoutes = HashMap<RouteKey, ConnRoute>;

/// One route as a connection declared it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnRoute {
    /// The route id the worker gave it.
    pub id: u16,
    /// Declared `idempotent` (§3.8): its requests may be retried whatever their method.
    pub idempotent: bool,
}

/// Why a stream failed, as the proxy maps it to a status.
#[derive(Debug, Clone)]
pub enum Failure {
    Reset(ResetCode, String),
    ConnectionLost(String),
    /// The worker broke the protocol on this stream; the gateway has RESET it
    /// `protocol_error` and logged why.
    Protocol(String),
    /// The connection takes no new streams (draining or closed); try another replica.
    Draining,
    /// The connection's queue had no room for the REQUEST until the deadline: the worker
    /// is not reading (§5). No stream was opened.
    NoRoom,
}

/// The worker's response head.
pub struct ResponseHead {
    pub status: u16,
    pub headers: HeaderList,
    pub end_stream: bool,
}

/// What the proxy gets back when it opens a stream.
pub struct OpenStream {
    pub id: u32,
    pub head: oneshot::Receiver<Result<ResponseHead, Failure>>,
    pub body: mpsc::UnboundedReceiver<Result<Bytes, Failure>>,
    pub send: Arc<SendWindow<Failure>>,
    pub recv_credit: Arc<AtomicI64>,
    /// The worker's TRAILERS (§3.10), set before `body` ends.
    pub trailers: ResponseTrailers,
}

/// Where the reader leaves a response's trailer fields for its body: set once, before
/// the body's channel closes, so whoever sees the end sees the trailers.
pub type ResponseTrailers = Arc<OnceLock<HeaderList>>;

/// One registered worker connection.
pub struct WorkerConn {
    /// Order of arrival, for listings.
    pub serial: u64,
    pub connection_id: String,
    pub worker_id: String,
    pub instance: String,
    pub sdk: String,
    pub addr: SocketAddr,
    pub since: SystemTime,
    pub max_concurrency: usize,
    pub initial_window: u32,
    /// The protocol extensions WELCOME granted this connection (§2.6).
    pub features: vyx_core::features::Features,
    pub routes: ArcSwap<ConnRoutes>,
    admission: Admission,
    /// Request body bytes sent on this connection count here (the gateway's total).
    pub bytes_to_worker: prometheus_client::metrics::counter::Counter,
    /// Streams open or reserved on this connection.
    pub in_flight: AtomicUsize,
    /// Of those, the ones whose request body is still streaming from its client (past
    /// `limits.body_buffer`).
    pub streamed_uploads: AtomicUsize,
    /// The same two counts across this worker process's connections, which
    /// `max_concurrency` and `limits.streamed_upload_slots` cap (see `instance`).
    pub slots: Arc<InstanceSlots>,
    pub draining: AtomicBool,
    closed: AtomicBool,
    queue: Arc<OutQueue>,
    streams: Mutex<StreamTable>,
    slot_freed: Arc<Notify>,
    /// The shard serving this connection (see `shards`); `None` off the shards.
    pub shard: Option<usize>,
}

impl WorkerConn {
    /// WELCOME granted `trailers` (§3.10): TRAILERS may cross this connection both ways.
    pub fn trailers(&self) -> bool {
        self.features
            .contains(vyx_core::features::Features::TRAILERS)
    }

    /// WELCOME granted `informational` (§3.11): the worker may send 1xx heads.
    pub fn informational(&self) -> bool {
        self.features
            .contains(vyx_core::features::Features::INFORMATIONAL)
    }

    pub fn send(&self, out: Outgoing) {
        self.queue.push(out);
    }

    /// The worker process this connection belongs to: equal for the connections that
    /// share their slots (see `instance`), for counting processes rather than connections.
    pub fn process(&self) -> *const InstanceSlots {
        Arc::as_ptr(&self.slots)
    }

    /// Bytes queued for this worker and not yet handed to its socket.
    pub fn queued_bytes(&self) -> usize {
        self.queue.queued_bytes()
    }

    /// A request whose body was streaming from its client has it all sent (or has ended):
    /// its slot no longer counts against `limits.streamed_upload_slots`.
    pub fn streamed_upload_done(&self) {
        self.streamed_uploads.fetch_sub(1, Ordering::AcqRel);
        self.slots.streamed_uploads.fetch_sub(1, Ordering::AcqRel);
        self.slot_freed.notify_waiters();
    }

    /// Gives back a slot reserved by `reserve_replica` that was never used for a stream.
    pub fn release_slot(&self) {
        self.slots_freed(1);
        self.after_stream_end();
    }

    /// `n` streams of this connection ended or were never opened.
    fn slots_freed(&self, n: usize) {
        self.in_flight.fetch_sub(n, Ordering::AcqRel);
        self.slots.in_flight.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Route keys and ids from declared routes.
pub fn conn_routes(routes: &[RouteSpec]) -> ConnRoutes {
    routes
        .iter()
        .map(|r| {
            (
                RouteKey {
                    method: r.method.as_str().into(),
                    path: r.path.as_str().into(),
                },
                ConnRoute {
                    id: r.id as u16, // validated to 0..=65535
                    idempotent: r.idempotent,
                },
            )
        })
        .collect()
}

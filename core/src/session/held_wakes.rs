//! A host thread's frames written with one wake-up of each connection's writer.
//!
//! Every frame a [`Stream`](super::Stream) call queues wakes its connection's writer task.
//! Called from a thread outside the runtime (Node's JS thread), that wake-up is a
//! cross-thread one, an `eventfd` write and a context switch, once per response. A host
//! whose handlers answer many requests in one turn of its event loop calls
//! [`hold_writer_wakes`] before each answer and [`wake_held_writers`] once at the end of
//! the turn: each writer wakes once and writes the turn's frames in one flush.
//!
//! ```no_run
//! # fn demo(requests: Vec<vyx_core::session::IncomingRequest>) {
//! use vyx_core::session::{hold_writer_wakes, wake_held_writers};
//!
//! hold_writer_wakes();
//! for req in requests {
//!     let _ = req.stream.respond(200, &[("content-type", "text/plain")], b"hi");
//! }
//! wake_held_writers(); // nothing is written before this
//! # }
//! ```

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use crate::transport::{OutQueue, Outgoing};

thread_local! {
    /// This thread holds its writers' wake-ups.
    static HOLDING: Cell<bool> = const { Cell::new(false) };
    /// The queues this thread filled while holding (kept allocated between turns).
    static HELD: RefCell<Vec<Arc<OutQueue>>> = const { RefCell::new(Vec::new()) };
}

/// From now until [`wake_held_writers`], frames queued by calls on this thread do not wake
/// their connection's writer: nothing they queue is written before that call, so a host
/// that holds must always call it (Node: in a microtask of the same turn).
pub fn hold_writer_wakes() {
    HOLDING.with(|h| h.set(true));
}

/// Wakes, once each, the writers of the frames queued on this thread since
/// [`hold_writer_wakes`], and stops holding.
pub fn wake_held_writers() {
    HOLDING.with(|h| h.set(false));
    let mut queues = HELD.with(|held| std::mem::take(&mut *held.borrow_mut()));
    for queue in queues.drain(..) {
        queue.wake_writer();
    }
    // Its capacity serves the next turn.
    HELD.with(|held| *held.borrow_mut() = queues);
}

/// Queues `out`, waking the writer now unless this thread holds its wake-ups.
pub(crate) fn push(queue: &Arc<OutQueue>, out: Outgoing) {
    if !HOLDING.with(Cell::get) {
        queue.push(out);
        return;
    }
    if queue.push_unwoken(out) {
        HELD.with(|held| {
            let mut held = held.borrow_mut();
            if !held.iter().any(|q| Arc::ptr_eq(q, queue)) {
                held.push(queue.clone());
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Data;
    use crate::transport::write_loop;
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::WebSocketStream;

    // The runtime has one thread, this test's: each `yield_now` lets the writer run as far
    // as it can, so what it took from the queue is known after it.
    #[tokio::test(flavor = "current_thread")]
    async fn held_frames_wait_for_one_wake_of_their_writer() {
        let (ours, _peer) = tokio::io::duplex(1 << 20);
        let socket = WebSocketStream::from_raw_socket(ours, Role::Client, None).await;
        let (sink, _) = socket.split();
        let queue = OutQueue::new(usize::MAX);
        let writer = tokio::spawn(write_loop(sink, queue.clone()));
        tokio::task::yield_now().await; // the writer waits for a frame

        let frame = || Outgoing::Frame(Data::encode_parts(1, false, b"hi"));
        hold_writer_wakes();
        push(&queue, frame());
        push(&queue, frame());
        tokio::task::yield_now().await;
        assert_eq!(queue.queued_bytes(), 2 * 8, "a held frame woke the writer");

        wake_held_writers();
        tokio::task::yield_now().await;
        assert_eq!(queue.queued_bytes(), 0, "the writer was not woken");

        // Not holding any more: a frame wakes the writer at once.
        push(&queue, frame());
        tokio::task::yield_now().await;
        assert_eq!(queue.queued_bytes(), 0);
        writer.abort();
    }
}

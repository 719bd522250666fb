//! DRAIN: no new streams on a draining connection, and a clean close (1000) once the last
//! open stream has ended.

use std::sync::atomic::Ordering;
use std::time::Duration;

use vyx_core::error::CloseCode;
use vyx_core::frame::Frame;
use vyx_core::handshake::Drain;
use vyx_core::transport::Outgoing;

use super::WorkerConn;

impl WorkerConn {
    /// Wakes requests waiting for a slot, and closes a draining connection with no streams.
    pub(super) fn after_stream_end(&self) {
        self.slot_freed.notify_waiters();
        // A body waiting for queue room on a stream that just ended stops waiting.
        self.queue.wake_senders();
        if self.draining.load(Ordering::Acquire) && self.in_flight.load(Ordering::Acquire) == 0 {
            self.send(Outgoing::Close(CloseCode::Normal, "drained".into()));
        }
    }

    /// Stops new streams on this connection and closes it once the open ones finish.
    pub fn start_drain(&self, reason: &str, deadline: Duration) {
        // Under the stream lock, so that no REQUEST can follow the DRAIN on the socket.
        let table = self.streams.lock().unwrap();
        if self.draining.swap(true, Ordering::AcqRel) {
            return;
        }
        self.send(Outgoing::Frame(
            Frame::Drain(Drain {
                reason: reason.into(),
                deadline_ms: deadline.as_millis() as u64,
            })
            .encode(),
        ));
        drop(table);
        self.after_stream_end();
    }
}

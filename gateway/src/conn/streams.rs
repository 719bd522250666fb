//! The stream table: each stream's channels to the proxy, its windows and the state of its
//! two directions, and how a stream ends (both directions done, RESET, connection lost).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;
use vyx_core::error::ResetCode;
use vyx_core::flow::SendWindow;
use vyx_core::frame::{self, Data, Reset, Trailers};
use vyx_core::transport::Outgoing;

use super::{Failure, OpenStream, ResponseHead, WorkerConn};
use crate::interim::{self, InterimTarget};

pub(super) struct GwStream {
    pub(super) head_tx: Option<oneshot::Sender<Result<ResponseHead, Failure>>>,
    pub(super) body_tx: Option<mpsc::UnboundedSender<Result<Bytes, Failure>>>,
    pub(super) send: Arc<SendWindow<Failure>>,
    pub(super) recv_credit: Arc<AtomicI64>,
    pub(super) request_done: bool,
    pub(super) response_done: bool,
    /// The REQUEST carried flag UPGRADE: only such a stream may be answered 101 (§4.5).
    pub(super) upgrade: bool,
    pub(super) trailers: super::ResponseTrailers,
    /// Where the worker's 1xx heads go, when WELCOME granted `informational` and the
    /// client can take them (§3.11).
    pub(super) interim: Option<InterimTarget>,
    /// INFORMATIONAL frames received; past `max_informational` they are ignored.
    pub(super) informational: u8,
}

pub(super) struct StreamTable {
    /// The next stream id: one more than the highest opened. Ids are 1, 2, 3, ... up to and
    /// including `u32::MAX` (§4.1); past it the connection opens no stream.
    pub(super) next_id: u64,
    pub(super) map: HashMap<u32, GwStream>,
}

impl StreamTable {
    pub(super) fn new() -> StreamTable {
        StreamTable {
            next_id: 1,
            map: HashMap::new(),
        }
    }

    /// Takes the next stream id, and whether it is the last one the id space has.
    fn take_id(&mut self) -> Option<(u32, bool)> {
        let id = u32::try_from(self.next_id).ok()?;
        self.next_id += 1;
        Some((id, id == u32::MAX))
    }
}

impl WorkerConn {
    /// Queues a REQUEST (encoded with stream id 0) under a fresh stream id, once the
    /// connection's queue has room for it (§5: heads count in the bound, so a worker that
    /// stops reading holds requests back rather than filling the gateway's memory); past
    /// `deadline` without room, [`Failure::NoRoom`]. Ids are taken and queued under one
    /// lock, so they reach the socket in increasing order, and a stream exists only once its
    /// REQUEST is queued. The frame is taken only on success: on failure the caller still
    /// has it for another replica.
    pub async fn open_stream(
        &self,
        request: &mut BytesMut,
        end_stream: bool,
        deadline: tokio::time::Instant,
    ) -> Result<OpenStream, Failure> {
        loop {
            let room = self.queue.room_changed();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.try_open_stream(request, end_stream) {
                Err(Failure::NoRoom) => {}
                done => return done,
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                return Err(Failure::NoRoom);
            }
        }
    }

    fn try_open_stream(
        &self,
        request: &mut BytesMut,
        end_stream: bool,
    ) -> Result<OpenStream, Failure> {
        let mut table = self.streams.lock().unwrap();
        if self.closed.load(Ordering::Acquire) || self.draining.load(Ordering::Acquire) {
            return Err(Failure::Draining);
        }
        let Some(id) = u32::try_from(table.next_id).ok() else {
            return Err(Failure::Draining);
        };
        frame::set_stream_id(request, id);
        let upgrade = request[1] & frame::flags::UPGRADE != 0;
        // Under the stream lock, as every REQUEST and DATA is queued.
        let head = std::mem::take(request).freeze();
        if let Err(head) = self.queue.try_push_request(head) {
            *request = BytesMut::from(head);
            return Err(Failure::NoRoom);
        }
        let (taken, last) = table.take_id().expect("the id was free");
        debug_assert_eq!(taken, id);
        let (head_tx, head) = oneshot::channel();
        let (body_tx, body) = mpsc::unbounded_channel();
        let send = Arc::new(SendWindow::new(self.initial_window));
        let recv_credit = Arc::new(AtomicI64::new(self.initial_window as i64));
        let trailers = super::ResponseTrailers::default();
        table.map.insert(
            id,
            GwStream {
                head_tx: Some(head_tx),
                body_tx: Some(body_tx),
                send: send.clone(),
                recv_credit: recv_credit.clone(),
                request_done: end_stream,
                response_done: false,
                upgrade,
                trailers: trailers.clone(),
                interim: self.informational().then(interim::current_target).flatten(),
                informational: 0,
            },
        );
        drop(table);
        if last {
            // §4.1: id 4294967295 used, so DRAIN; the worker reconnects for a fresh space.
            self.start_drain("stream ids exhausted", Duration::from_secs(30));
        }
        Ok(OpenStream {
            id,
            head,
            body,
            send,
            recv_credit,
            trailers,
        })
    }

    /// Queues request-body DATA on stream `id` once the connection's queue has room for it
    /// (§5): a worker that stops reading holds the client's upload back rather than filling
    /// the gateway's memory. `false` when the stream ended meanwhile (nothing is queued).
    pub async fn send_data(&self, id: u32, end_stream: bool, chunk: &[u8]) -> bool {
        self.send_body_frame(id, Data::encode_parts(id, end_stream, chunk))
            .await
    }

    /// Ends the request body with TRAILERS (§3.10), as [`WorkerConn::send_data`] queues
    /// DATA: behind the stream's DATA, within the queue's bound.
    pub async fn send_trailers(&self, trailers: Trailers) -> bool {
        self.send_body_frame(trailers.stream_id, trailers.encode())
            .await
    }

    async fn send_body_frame(&self, id: u32, mut frame: Bytes) -> bool {
        loop {
            let room = self.queue.room_changed();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                // Under the stream lock: no DATA can follow the stream's RESET.
                let table = self.streams.lock().unwrap();
                if !table.map.contains_key(&id) {
                    return false;
                }
                match self.queue.try_push_data(frame) {
                    Ok(()) => return true,
                    Err(back) => frame = back,
                }
            }
            room.await;
        }
    }

    /// The request body has been sent in full (END_STREAM queued).
    pub fn request_sent(&self, id: u32) {
        let mut table = self.streams.lock().unwrap();
        if let Some(s) = table.map.get_mut(&id) {
            s.request_done = true;
            if s.response_done {
                table.map.remove(&id);
                drop(table);
                self.stream_ended();
            }
        }
    }

    /// Abandons a stream the client no longer wants: RESET to the worker, slot freed.
    pub fn cancel_stream(&self, id: u32, code: ResetCode, reason: &str) {
        let removed = self.streams.lock().unwrap().map.remove(&id);
        if let Some(s) = removed {
            s.send.fail(Failure::Reset(code, reason.to_string()));
            self.send(Outgoing::Frame(Reset::new(id, code, reason).encode()));
            self.stream_ended();
        }
    }

    pub(super) fn stream_ended(&self) {
        self.slots_freed(1);
        self.after_stream_end();
    }

    /// Fails every open stream (the connection is gone).
    pub(super) fn fail_all(&self, why: &str) {
        let streams = {
            let mut table = self.streams.lock().unwrap();
            self.closed.store(true, Ordering::Release);
            std::mem::take(&mut table.map)
        };
        let n = streams.len();
        for (_, mut s) in streams {
            let f = Failure::ConnectionLost(why.to_string());
            s.send.fail(f.clone());
            if let Some(tx) = s.head_tx.take() {
                let _ = tx.send(Err(f.clone()));
            }
            if let Some(tx) = s.body_tx.take() {
                let _ = tx.send(Err(f));
            }
        }
        self.slots_freed(n);
        self.slot_freed.notify_waiters();
        self.queue.wake_senders();
    }
}

/// Removes a stream whose both directions are done.
pub(super) fn maybe_finish(conn: &WorkerConn, mut table: MutexGuard<'_, StreamTable>, id: u32) {
    let done = table
        .map
        .get(&id)
        .is_some_and(|s| s.request_done && s.response_done);
    if done {
        table.map.remove(&id);
        drop(table);
        conn.stream_ended();
    }
}

/// Resets a stream the worker got wrong (RESET `protocol_error`), and fails it towards the
/// client; the connection goes on.
pub(super) fn stream_protocol_error(
    conn: &WorkerConn,
    mut table: MutexGuard<'_, StreamTable>,
    id: u32,
    why: &str,
) {
    let Some(s) = table.map.remove(&id) else {
        return;
    };
    drop(table);
    warn!(worker_id = %conn.worker_id, connection = %conn.connection_id, stream = id, reason = why, "stream protocol error; stream reset");
    conn.send(Outgoing::Frame(
        Reset::new(id, ResetCode::ProtocolError, why).encode(),
    ));
    end_stream_with(conn, s, Failure::Protocol(why.to_string()));
}

pub(super) fn end_stream_with(conn: &WorkerConn, mut s: GwStream, f: Failure) {
    s.send.fail(f.clone());
    if let Some(tx) = s.head_tx.take() {
        let _ = tx.send(Err(f.clone()));
    }
    if let Some(tx) = s.body_tx.take() {
        let _ = tx.send(Err(f));
    }
    conn.stream_ended();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_run_to_u32_max_and_stop() {
        let mut t = StreamTable::new();
        assert_eq!(t.take_id(), Some((1, false)));
        assert_eq!(t.take_id(), Some((2, false)));
        t.next_id = u64::from(u32::MAX) - 1;
        assert_eq!(t.take_id(), Some((u32::MAX - 1, false)));
        assert_eq!(
            t.take_id(),
            Some((u32::MAX, true)),
            "the last id is usable (§3.1)"
        );
        assert_eq!(t.take_id(), None);
    }
}

//! The writer task: owns a socket's write half and empties the connection's [`OutQueue`].

use std::sync::Arc;

use std::future::{poll_fn, Future};
use std::task::Poll;

use futures_util::stream::SplitSink;
use futures_util::{Sink, SinkExt};
use tokio::io::AsyncWrite;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::debug;

use super::queue::{Next, OutQueue};
use super::truncate_reason;
use super::wire::FrameWriter;

/// Ends the queue when the writer returns or its task is aborted.
struct EndOnDrop(Arc<OutQueue>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// Owns a socket's write half and writes what `queue` holds. Feeds while there are frames
/// and flushes when none are left, so a burst of frames costs one flush (tungstenite's
/// `send` flushes every message).
///
/// The order is fair (PROTOCOL.md §5): everything that is not DATA (heads, RESET, WINDOW,
/// control frames, pings) goes first, in the order queued; DATA goes round-robin by stream,
/// one frame per stream per turn, so a small answer never waits behind another stream's
/// megabytes. Frames of one stream keep their order; a RESET drops its stream's DATA still
/// queued (the peer would ignore it), except RESET `no_error`, which ends a complete
/// response, and `handler_error`, which ends the body a handler wrote before it failed:
/// they go after that DATA. A close goes after everything queued before it.
pub fn write_loop<S>(
    sink: SplitSink<S, Message>,
    queue: Arc<OutQueue>,
) -> impl std::future::Future<Output = ()>
where
    S: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    write_loop_framed(sink, None::<FrameWriter<tokio::io::Empty>>, queue)
}

/// [`write_loop`], with binary messages framed by `frames` (the worker's plain sockets,
/// [`super::Wire`]) rather than by tungstenite; pings and the close still go through `sink`.
pub fn write_loop_framed<S, W>(
    sink: SplitSink<S, Message>,
    frames: Option<FrameWriter<W>>,
    queue: Arc<OutQueue>,
) -> impl std::future::Future<Output = ()>
where
    S: Sink<Message, Error = tungstenite::Error> + Unpin,
    W: AsyncWrite + Unpin,
{
    // Made before the first poll: a writer aborted before it ever ran ends the queue too.
    let end = EndOnDrop(queue.clone());
    async move {
        let _end = end;
        write_queue(sink, frames, queue).await
    }
}

async fn write_queue<S, W>(
    mut sink: SplitSink<S, Message>,
    frames: Option<FrameWriter<W>>,
    queue: Arc<OutQueue>,
) where
    S: Sink<Message, Error = tungstenite::Error> + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        // Wait for something to write (and, with `frames`, write what tungstenite queued
        // meanwhile: a pong, a close answer).
        let first = loop {
            let notified = queue.queued.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match queue.next() {
                Next::Empty => {
                    let failed = poll_fn(|cx| match &frames {
                        _ if notified.as_mut().poll(cx).is_ready() => Poll::Ready(None),
                        Some(frames) => frames.poll_idle(cx).map(Some),
                        None => Poll::Pending,
                    })
                    .await;
                    if let Some(e) = failed {
                        debug!(error = %e, "write failed");
                        return;
                    }
                }
                next => break next,
            }
        };
        let mut next = first;
        let mut yielded = false;
        loop {
            match (next, &frames) {
                (Next::Message(Message::Binary(frame)), Some(frames)) => {
                    if let Err(e) = send_framed(frames, &[&frame]).await {
                        debug!(error = %e, "write failed");
                        return;
                    }
                }
                (Next::Data(head, payload), frames) => {
                    let sent = match frames {
                        Some(frames) => send_framed(frames, &[&head, &payload]).await,
                        None => {
                            // tungstenite takes a message in one piece: the frame is built.
                            let frame = [&head[..], &payload].concat();
                            sink.feed(Message::Binary(frame.into()))
                                .await
                                .map_err(std::io::Error::other)
                        }
                    };
                    if let Err(e) = sent {
                        debug!(error = %e, "write failed");
                        return;
                    }
                }
                (Next::Message(msg), _) => {
                    if let Err(e) = sink.feed(msg).await {
                        debug!(error = %e, "write failed");
                        return;
                    }
                }
                (Next::Empty, _) if !yielded => {
                    // Let the tasks that are ready run once before the flush: under load
                    // they queue more frames, and one write carries them all.
                    yielded = true;
                    tokio::task::yield_now().await;
                }
                (Next::Empty, _) => break,
                (Next::Finish, _) => {
                    let _ = sink.flush().await;
                    let _ = sink.close().await;
                    return;
                }
                (Next::Close(code, reason), _) => {
                    let frame = CloseFrame {
                        code: WsCloseCode::from(code as u16),
                        reason: truncate_reason(&reason).into(),
                    };
                    if sink.send(Message::Close(Some(frame))).await.is_err() {
                        // The peer closed first: tungstenite refuses a second close frame,
                        // and has queued its answer echoing the peer's code (RFC 6455
                        // §5.5.1). Flushing it completes the closing handshake; returning
                        // without it drops the socket under the peer.
                        let _ = sink.flush().await;
                    }
                    return;
                }
            }
            next = queue.next();
        }
        // With `frames` too: tungstenite flushes the shared buffer (`Wire::poll_flush`).
        if let Err(e) = sink.flush().await {
            debug!(error = %e, "flush failed");
            return;
        }
    }
}

/// Writes the binary message `parts` (concatenated) through `frames`, with a fresh mask.
async fn send_framed<W: AsyncWrite + Unpin>(
    frames: &FrameWriter<W>,
    parts: &[&[u8]],
) -> std::io::Result<()> {
    let mask = rand::random();
    poll_fn(|cx| frames.poll_send_binary(cx, parts, mask)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::CloseCode;
    use crate::frame::{self, Data, Reset, Response};
    use crate::transport::queue::frame_kind;
    use crate::transport::Outgoing;
    use bytes::Bytes;
    use futures_util::StreamExt;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll};
    use std::time::Duration;

    /// A socket that records what is written and never has anything to read.
    #[derive(Clone, Default)]
    struct MemSocket {
        written: Arc<Mutex<Vec<Message>>>,
        flushes: Arc<Mutex<usize>>,
    }

    impl Sink<Message> for MemSocket {
        type Error = tungstenite::Error;
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn start_send(self: Pin<&mut Self>, m: Message) -> Result<(), Self::Error> {
            self.written.lock().unwrap().push(m);
            Ok(())
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            *self.flushes.lock().unwrap() += 1;
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
    }

    impl futures_util::Stream for MemSocket {
        type Item = Result<Message, tungstenite::Error>;
        fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Poll::Pending
        }
    }

    fn data(id: u32, len: usize, end: bool) -> Outgoing {
        Outgoing::Frame(Data::encode_parts(id, end, &vec![id as u8; len]))
    }

    /// Runs the writer over what `queue` puts in its channel before it starts, and returns
    /// the (type, stream id) of every frame written, and a close code if one was.
    async fn written_after(queue: impl FnOnce(&OutQueue)) -> (Vec<(u8, u32)>, usize) {
        let socket = MemSocket::default();
        let (sink, _stream) = socket.clone().split();
        let tx = OutQueue::new(usize::MAX);
        queue(&tx);
        tx.finish();
        write_loop(sink, tx).await;
        let written = socket.written.lock().unwrap();
        let frames = written
            .iter()
            .filter_map(|m| match m {
                Message::Binary(b) => frame_kind(b),
                Message::Close(_) => Some((0xff, 0)),
                _ => None,
            })
            .collect();
        let flushes = *socket.flushes.lock().unwrap();
        (frames, flushes)
    }

    #[tokio::test]
    async fn a_small_answer_is_not_written_behind_another_streams_megabytes() {
        let (frames, flushes) = written_after(|tx| {
            // Stream 1: 1 MiB of DATA queued first.
            for i in 0..16 {
                tx.push(data(1, 64 * 1024, i == 15));
            }
            // Stream 3: its head and a small body, queued after.
            let head = Response {
                stream_id: 3,
                end_stream: false,
                status: 200,
                headers: vec![],
            };
            tx.push(Outgoing::Frame(head.encode()));
            tx.push(data(3, 10, true));
        })
        .await;
        assert_eq!(frames.len(), 18);
        assert_eq!(frames[0], (frame::kind::RESPONSE, 3), "the head goes first");
        let small = frames
            .iter()
            .position(|&f| f == (frame::kind::DATA, 3))
            .unwrap();
        assert!(
            small <= 2,
            "stream 3's DATA waited behind {small} frames: {frames:?}"
        );
        assert_eq!(
            frames
                .iter()
                .filter(|&&f| f == (frame::kind::DATA, 1))
                .count(),
            16
        );
        assert_eq!(flushes, 1, "one burst, one flush");
    }

    #[tokio::test]
    async fn trailers_follow_their_streams_data() {
        // TRAILERS ends a body (§3.10): unlike other frames that are not DATA, it must not
        // overtake the DATA queued before it.
        let (frames, _) = written_after(|tx| {
            tx.push(data(1, 64 * 1024, false));
            tx.push(data(1, 64 * 1024, false));
            let trailers = crate::frame::Trailers {
                stream_id: 1,
                headers: vec![],
            };
            tx.push(Outgoing::Frame(trailers.encode()));
        })
        .await;
        assert_eq!(
            frames,
            [
                (frame::kind::DATA, 1),
                (frame::kind::DATA, 1),
                (frame::kind::TRAILERS, 1)
            ]
        );
    }

    #[tokio::test]
    async fn data_takes_turns_one_frame_per_stream_and_keeps_each_streams_order() {
        let socket = MemSocket::default();
        let (sink, _stream) = socket.clone().split();
        let tx = OutQueue::new(usize::MAX);
        for (i, len) in [1usize, 2, 3].into_iter().enumerate() {
            tx.push(Outgoing::Frame(Data::encode_parts(
                5,
                false,
                &vec![i as u8; len],
            )));
        }
        tx.push(data(7, 1, false));
        tx.push(data(7, 1, true));
        tx.finish();
        write_loop(sink, tx).await;
        let written = socket.written.lock().unwrap();
        let order: Vec<(u32, usize)> = written
            .iter()
            .map(|m| match m {
                Message::Binary(b) => (frame_kind(b).unwrap().1, b.len() - frame::HEADER_LEN),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(order, vec![(5, 1), (7, 1), (5, 2), (7, 1), (5, 3)]);
    }

    #[tokio::test]
    async fn a_reset_no_error_goes_after_its_streams_data() {
        let (frames, _) = written_after(|tx| {
            tx.push(data(13, 100, false));
            tx.push(data(13, 100, true));
            tx.push(Outgoing::Frame(
                Reset::new(13, crate::error::ResetCode::NoError, "").encode(),
            ));
        })
        .await;
        let (d, r) = (frame::kind::DATA, frame::kind::RESET);
        assert_eq!(frames, vec![(d, 13), (d, 13), (r, 13)]);
    }

    #[tokio::test]
    async fn a_reset_handler_error_goes_after_the_data_its_handler_wrote() {
        let (frames, _) = written_after(|tx| {
            tx.push(data(15, 100, false));
            tx.push(data(15, 100, false));
            tx.push(Outgoing::Frame(
                Reset::new(15, crate::error::ResetCode::HandlerError, "raised").encode(),
            ));
        })
        .await;
        let (d, r) = (frame::kind::DATA, frame::kind::RESET);
        assert_eq!(frames, vec![(d, 15), (d, 15), (r, 15)]);
    }

    #[tokio::test]
    async fn a_reset_drops_its_streams_queued_data_and_a_close_goes_last() {
        let (frames, _) = written_after(|tx| {
            for _ in 0..3 {
                tx.push(data(9, 100, false));
            }
            tx.push(data(11, 100, false));
            tx.push(Outgoing::Frame(
                Reset::new(9, crate::error::ResetCode::Cancel, "gone").encode(),
            ));
            tx.push(data(11, 100, true));
            tx.push(Outgoing::Close(CloseCode::Normal, "bye".into()));
            tx.push(data(11, 100, true)); // after the close: never written
        })
        .await;
        assert_eq!(
            frames,
            vec![
                (frame::kind::RESET, 9),
                (frame::kind::DATA, 11),
                (frame::kind::DATA, 11),
                (0xff, 0),
            ]
        );
    }

    fn request(id: u32) -> Outgoing {
        let mut w = crate::frame::RequestWriter::new(id, false, 0, b"POST", b"/up", 64);
        w.begin_headers();
        Outgoing::Frame(w.finish().unwrap().freeze())
    }

    fn request_len() -> usize {
        match request(2) {
            Outgoing::Frame(b) => b.len(),
            _ => unreachable!(),
        }
    }

    fn reset(id: u32) -> Outgoing {
        Outgoing::Frame(Reset::new(id, crate::error::ResetCode::Timeout, "late").encode())
    }

    #[tokio::test]
    async fn a_stream_reset_before_its_request_was_written_never_reaches_the_socket() {
        let (frames, _) = written_after(|tx| {
            tx.push(request(1));
            tx.push(data(1, 100, false));
            tx.push(request(2));
            tx.push(data(2, 100, false));
            tx.push(reset(1));
            assert_eq!(
                tx.queued_bytes(),
                request_len() + 100 + frame::HEADER_LEN,
                "stream 1 is gone from the queue"
            );
        })
        .await;
        let (q, d) = (frame::kind::REQUEST, frame::kind::DATA);
        assert_eq!(frames, vec![(q, 2), (d, 2)]);
    }

    #[tokio::test]
    async fn pings_do_not_pile_up() {
        let socket = MemSocket::default();
        let (sink, _stream) = socket.clone().split();
        let tx = OutQueue::new(usize::MAX);
        for _ in 0..100 {
            tx.push(Outgoing::Ping);
        }
        tx.finish();
        write_loop(sink, tx).await;
        let pings = socket.written.lock().unwrap().len();
        assert_eq!(pings, 1);
    }

    /// A socket whose writes never complete: a peer that stopped reading.
    struct Blocked;

    impl Sink<Message> for Blocked {
        type Error = tungstenite::Error;
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }
        fn start_send(self: Pin<&mut Self>, _: Message) -> Result<(), Self::Error> {
            unreachable!("never ready")
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }
    }

    impl futures_util::Stream for Blocked {
        type Item = Result<Message, tungstenite::Error>;
        fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn data_is_held_to_the_limit_and_dropped_with_its_stream_while_the_socket_is_blocked() {
        let (sink, _stream) = Blocked.split();
        let limit = 4 * (1024 + frame::HEADER_LEN);
        let tx = OutQueue::new(limit);
        let writer = tokio::spawn(write_loop(sink, tx.clone()));
        tx.push(request(1));
        let chunk = |id| Data::encode_parts(id, false, &[0; 1024]);
        // Over the limit: handed back, so the sender waits instead of the queue growing.
        let mut taken = 0;
        while tx.try_push_data(chunk(1)).is_ok() {
            taken += 1;
            assert!(taken <= 4, "DATA past the limit was taken");
        }
        assert!(tx.queued_bytes() <= limit + 64 + frame::HEADER_LEN);
        // The stream dies while the socket is still blocked: its DATA goes, and a sender
        // waiting for room is woken.
        let room = tx.room_changed();
        tokio::pin!(room);
        room.as_mut().enable();
        tx.push(reset(1));
        tokio::time::timeout(Duration::from_secs(5), room)
            .await
            .expect("a waiting sender is woken");
        assert!(tx.try_push_data(chunk(3)).is_ok());
        // Aborting the writer (how a dead connection is dropped) empties the queue for good.
        writer.abort();
        let _ = writer.await;
        assert_eq!(tx.queued_bytes(), 0);
        tx.push(request(5));
        assert_eq!(
            tx.queued_bytes(),
            0,
            "nothing is kept once the writer is gone"
        );
    }

    #[tokio::test]
    async fn request_heads_count_in_the_bound_with_the_data() {
        let (sink, _stream) = Blocked.split();
        let limit = 3 * request_len();
        let tx = OutQueue::new(limit);
        let writer = tokio::spawn(write_loop(sink, tx.clone()));
        let head = |id| match request(id) {
            Outgoing::Frame(b) => b,
            _ => unreachable!(),
        };
        for id in 1..=3 {
            assert!(tx.try_push_request(head(id)).is_ok(), "head {id} fits");
        }
        // The socket is blocked: the next head, and DATA, wait for room.
        assert!(tx.try_push_request(head(4)).is_err());
        assert!(tx
            .try_push_data(Data::encode_parts(1, false, &[0; 16]))
            .is_err());
        assert_eq!(tx.queued_bytes(), limit);
        // A stream reset before its head was written frees the head's room.
        let room = tx.room_changed();
        tokio::pin!(room);
        room.as_mut().enable();
        tx.push(reset(2));
        tokio::time::timeout(Duration::from_secs(5), room)
            .await
            .expect("a waiting sender is woken");
        assert!(tx.try_push_request(head(4)).is_ok());
        writer.abort();
        let _ = writer.await;
    }

    /// The worker's own framing (`Wire`), of encoded frames and of DATA in two parts, over an
    /// in-memory pipe small enough that writes are partial: a tungstenite server (which refuses unmasked frames) reads the messages
    /// whole and in order, gets its ping answered between them, and the close last.
    #[tokio::test]
    async fn frames_the_writer_builds_reach_a_tungstenite_server_whole_with_pongs_between() {
        use crate::transport::{websocket_config, Wire};
        use tokio_tungstenite::tungstenite::protocol::Role;
        use tokio_tungstenite::WebSocketStream;

        let (ours, theirs) = tokio::io::duplex(16 * 1024);
        let (ours_read, ours_write) = tokio::io::split(ours);
        let config = Some(crate::transport::websocket_config());
        let client = WebSocketStream::from_raw_socket(
            Wire::new(ours_read, ours_write),
            Role::Client,
            config,
        )
        .await;
        let frames = client.get_ref().frame_writer();
        let (sink, mut stream) = client.split();
        let queue = OutQueue::new(usize::MAX);
        let writer = tokio::spawn(write_loop_framed(sink, Some(frames), queue.clone()));
        // Reading is what answers pings.
        let reader = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
        let mut server =
            WebSocketStream::from_raw_socket(theirs, Role::Server, Some(websocket_config())).await;
        server
            .send(Message::Ping(b"hb".to_vec().into()))
            .await
            .unwrap();

        let sizes = [0, 1, 119, 120, 65_530, 65_536, 200_000, 3];
        let sent: Vec<Bytes> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let body: Vec<u8> = (0..n).map(|j| (i * 31 + j * 7) as u8).collect();
                Data::encode_parts(i as u32 + 1, false, &body)
            })
            .collect();
        for (i, frame) in sent.iter().enumerate() {
            // Encoded, or as a DATA header and a slice of the payload (as the SDK sends).
            queue.push(match i % 2 {
                0 => Outgoing::Frame(frame.clone()),
                _ => Outgoing::Data {
                    head: frame[..frame::HEADER_LEN].try_into().unwrap(),
                    payload: frame.slice(frame::HEADER_LEN..),
                },
            });
        }
        queue.push(Outgoing::Close(CloseCode::Normal, "bye".into()));
        let (mut got, mut pongs, mut close) = (Vec::new(), 0, None);
        while let Some(msg) = server.next().await {
            match msg.expect("frames as tungstenite reads them") {
                Message::Binary(b) => got.push(b),
                Message::Pong(p) => {
                    assert_eq!(&p[..], b"hb");
                    pongs += 1;
                }
                Message::Close(c) => close = c,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(got, sent, "every message whole, in order");
        assert_eq!(pongs, 1, "the ping was answered");
        let close = close.expect("a close frame");
        assert_eq!((u16::from(close.code), &*close.reason), (1000, "bye"));
        writer.await.unwrap();
        reader.abort();
    }
}

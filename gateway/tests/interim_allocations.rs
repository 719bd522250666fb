//! A request without an interim response pays nothing for the 1xx layer (issue 18 item 3:
//! no lock and no allocation per request): its turn on the connection's sink, the stream's
//! target taken when it opens, and hyper's writes and flushes through `InterimIo`, counted
//! by a global allocator that counts what the test's own thread allocates.

mod thread_allocations;

use std::sync::Arc;

use thread_allocations::allocations;

use tokio::io::AsyncWriteExt;
use vyx_gateway::interim::{self, InterimIo, InterimSink};

#[global_allocator]
static COUNTING: thread_allocations::Counting = thread_allocations::Counting;

#[test]
fn a_request_without_an_interim_response_allocates_nothing_for_it() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let sink = Arc::new(InterimSink::default());
    let mut io = InterimIo::new(tokio::io::sink(), sink.clone());
    let made = rt.block_on(async {
        let mut request = async || {
            let opened = interim::scope(Some(sink.clone()), async {
                interim::current_target().is_some()
            })
            .await;
            sink.finish_request().await;
            assert!(opened, "a stream opened in the request takes its client");
            io.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .unwrap();
            io.flush().await.unwrap();
        };
        // Warm: the runtime allocates once somewhere in its first requests (seen: 1 in the
        // first 1,000 or 10,000, not more), which is not the layer's.
        for _ in 0..1_000 {
            request().await;
        }
        let before = allocations();
        for _ in 0..10_000 {
            request().await;
        }
        allocations() - before
    });
    assert_eq!(made, 0, "{made} allocations for 10,000 requests");
}

//! Duplex requests: bodies whose client waits for the response before it ends them (a gRPC
//! or Connect streaming call), so the gateway must forward them as they come (PROTOCOL.md
//! §3.4).
//!
//! Why by content type: nothing else in a request says its client is waiting. A body
//! without a length is usually an upload that ends by itself, and buffering it keeps a slow
//! client off a worker's slot; a gRPC body buffered until it ends never ends (bidi
//! ping-pong), and one held to the upload clocks is cut while the call is merely quiet. So
//! these types stream at once (within `limits.streamed_upload_slots`), with no minimum
//! rate, and both directions are held to `timeouts.upgrade_idle` instead of
//! `timeouts.body_idle`; the worker's head is due within `timeouts.request` of the
//! request body's end, not of its start (a client-streaming call answers at the end).

use std::future::Future;
use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::HeaderMap;
use tokio::sync::Notify;
use tokio::time::error::Elapsed;

use crate::upload::UploadRules;

/// Whether a request is duplex: a body of no declared `length` whose `content-type` is one
/// whose client may wait for the response before ending it: `application/grpc` (with
/// `+codec` or parameters), and Connect's streaming `application/connect+codec`. gRPC-Web
/// and Connect unary bodies end first, and a body of known length is all known to its
/// client: those are buffered as any other.
///
/// ```
/// # use vyx_gateway::duplex::is_duplex;
/// let mut h = http::HeaderMap::new();
/// h.insert("content-type", "application/grpc+proto".parse().unwrap());
/// assert!(is_duplex(&h, None));
/// assert!(!is_duplex(&h, Some(5)));
/// ```
pub fn is_duplex(headers: &HeaderMap, length: Option<u64>) -> bool {
    length.is_none() && is_duplex_type(headers)
}

fn is_duplex_type(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let ct = ct.trim_start().to_ascii_lowercase();
    if let Some(rest) = ct.strip_prefix("application/grpc") {
        return rest.is_empty() || rest.starts_with(['+', ';', ' ']);
    }
    ct.starts_with("application/connect+")
}

/// The rules a duplex body is held to: no minimum rate, and `idle` (`timeouts.upgrade_idle`)
/// between pieces.
pub fn upload_rules(idle: Duration, max_body: u64) -> UploadRules {
    UploadRules {
        idle,
        min_rate: 0,
        grace: Duration::ZERO,
        max_body,
    }
}

/// Waits for the worker's `head` with no limit while the request body is still coming, then
/// within `timeout` of its end (`body_ended` is notified when the body is sent or failed).
pub async fn head_after_body<F: Future>(
    timeout: Duration,
    body_ended: &Notify,
    head: F,
) -> Result<F::Output, Elapsed> {
    tokio::pin!(head);
    tokio::select! {
        out = &mut head => return Ok(out),
        () = body_ended.notified() => {}
    }
    tokio::time::timeout(timeout, head).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, ct.parse().unwrap());
        h
    }

    #[test]
    fn grpc_and_connect_streaming_types_are_duplex() {
        for ct in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC+json",
            "application/grpc; charset=utf-8",
            "application/connect+proto",
            "application/connect+json",
        ] {
            assert!(is_duplex(&typed(ct), None), "{ct}");
        }
    }

    #[test]
    fn other_types_and_none_are_not() {
        for ct in [
            "application/grpc-web",
            "application/grpc-web+proto",
            "application/grpcx",
            "application/proto",
            "application/json",
            "text/event-stream",
        ] {
            assert!(!is_duplex(&typed(ct), None), "{ct}");
        }
        assert!(!is_duplex(&HeaderMap::new(), None));
        assert!(!is_duplex(&typed("application/grpc"), Some(0)));
    }
}

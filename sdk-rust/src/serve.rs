//! Serving one request: run the route's handler, then hand its response to the core's
//! [`Stream`], catching panics on the way. The host rules (HEAD/204/304 without body,
//! content-length, hop-by-hop headers, the failure answers) are the core's; what is left
//! here is Rust idiom: `IntoResponse`, `http_body` bodies, panics.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use tracing::{debug, error, info_span, warn, Instrument};
use vyx_core::session::{IncomingRequest, Stream, StreamError, TrySend};

use crate::body::Body;
use crate::error::Error;
use crate::handler::BoxHandler;
use crate::request::Request;
use crate::response::Response;
use crate::upgrade::Upgraded;

/// One entry of the dispatch table; its index is the route id sent in HELLO.
pub(crate) struct Route {
    pub(crate) method: String,
    pub(crate) path: Arc<str>,
    pub(crate) handler: BoxHandler,
    /// Declared with [`WorkerBuilder::idempotent`](crate::WorkerBuilder::idempotent).
    pub(crate) idempotent: bool,
}

/// Serves one request pulled from the engine and returns its slot. Never panics: a
/// panicking handler or body fails the stream (500, or a reset once the head is out), and
/// the worker keeps serving. A reset stream is not watched here: the dispatcher aborts the
/// task when the batch reports it.
pub(crate) async fn serve(req: IncomingRequest, routes: Arc<[Route]>) -> u64 {
    let IncomingRequest {
        slot,
        route_id,
        method,
        target,
        params,
        headers,
        upgrade,
        stream,
        ..
    } = req;
    let Some(route) = routes.get(route_id as usize) else {
        // The core answers route ids it was not given; the SDK gives it exactly its table.
        stream.fail("no handler for this route id");
        return slot;
    };
    let mut request = Request::from_incoming(
        method,
        target,
        params,
        headers,
        Body::incoming(stream.clone()),
        Some(route.path.clone()),
    );
    request.set_stream(stream.clone());
    // The handler takes the connection with `vyx::upgrade::on`; it comes once its 101 is out.
    let switched = upgrade.then(|| {
        let (tx, rx) = tokio::sync::oneshot::channel();
        request.set_upgrade(rx);
        tx
    });
    // Logs of the handler (and ours) carry the request's method, route, stream id and the
    // gateway's request id (`x-request-id`, the id its access log and the client see).
    let request_id = request
        .header("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let span = info_span!("request", method = %request.method(), route = %route.path, stream = stream.stream_id(), request_id = %request_id);
    let handler = &route.handler;
    async move {
        match AssertUnwindSafe(handler(request)).catch_unwind().await {
            Ok(res) if res.status() == StatusCode::SWITCHING_PROTOCOLS && switched.is_some() => {
                switch(&stream, res, switched.expect("checked"))
            }
            Ok(res) => send_response(&stream, res).await,
            Err(panic) => {
                error!(
                    panic = panic_message(&*panic),
                    "handler panicked; answering 500"
                );
                stream.fail("handler panicked");
            }
        }
    }
    .instrument(span)
    .await;
    slot
}

/// The handler's 101 to an upgrade request: the head, then the stream is the handler's
/// [`Upgraded`] connection (the response body, if any, is not sent).
fn switch(stream: &Stream, res: Response, to: tokio::sync::oneshot::Sender<Upgraded>) {
    let (status, headers, _) = res.into_parts();
    match stream.send_head(status.as_u16(), &header_pairs(&headers), false) {
        Ok(_) => {
            let _ = to.send(Upgraded::new(stream.clone()));
        }
        Err(e) => debug!(error = %e, "101 not sent"),
    }
}

/// Gives the response to the core: a whole body in one call, else the head and then the
/// body as it comes.
pub(crate) async fn send_response(stream: &Stream, res: Response) {
    let (status, headers, body) = res.into_parts();
    let head = header_pairs(&headers);
    let sent = if let Some(full) = body.as_full() {
        stream
            .respond_bytes(status.as_u16(), &head, full.clone())
            .map(|()| false)
    } else {
        stream.send_head(
            status.as_u16(),
            &head,
            http_body::Body::is_end_stream(&body),
        )
    };
    match sent {
        Ok(true) => send_body(stream, body).await,
        Ok(false) => {}
        Err(StreamError::InvalidHead(why)) => {
            error!(%why, "the handler's response head cannot be sent; answered 500");
        }
        Err(e) => debug!(error = %e, "response not sent"),
    }
}

async fn send_body(stream: &Stream, mut body: Body) {
    loop {
        let frame = match AssertUnwindSafe(body.frame()).catch_unwind().await {
            Ok(frame) => frame,
            Err(panic) => {
                error!(
                    panic = panic_message(&*panic),
                    "response body panicked; resetting the stream"
                );
                stream.fail("response body panicked");
                return;
            }
        };
        let data = match frame {
            None => {
                if let Err(e) = stream.end() {
                    debug!(error = %e, "response end not sent");
                }
                return;
            }
            Some(Err(e)) => {
                match &e {
                    // The request body failed: the client or the connection went away.
                    Error::Body(_) => debug!(error = %e, "response body ended early"),
                    _ => warn!(error = %e, "response body failed; resetting the stream"),
                }
                stream.fail("response body failed");
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(frame) => {
                    // Trailers end the body (§3.10); dropped when not negotiated.
                    let Ok(trailers) = frame.into_trailers() else {
                        continue;
                    };
                    if let Err(e) = stream.end_with_trailers(&[], &header_pairs(&trailers)) {
                        warn!(error = %e, "response trailers not sent");
                    }
                    return;
                }
            },
        };
        let last = http_body::Body::is_end_stream(&body);
        if data.is_empty() && !last {
            continue;
        }
        // The last chunk is not waited for: the core sends its tail as credit comes.
        let written = match stream.try_send_bytes(data, last) {
            Ok(TrySend::Full) if !last => stream.writable().await,
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            debug!(error = %e, "response body not sent");
            return;
        }
        if last {
            return;
        }
    }
}

/// The headers as the byte pairs the core takes, borrowed.
fn header_pairs(headers: &HeaderMap) -> Vec<(&[u8], &[u8])> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()))
        .collect()
}

pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "(non-string panic payload)"
    }
}

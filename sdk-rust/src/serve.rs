//! Serving one request: run the route's handler, then send its response through the
//! core's [`ResponseSender`], catching panics on the way.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt;
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, HeaderName, StatusCode};
use http_body_util::BodyExt;
use tracing::{debug, error, info_span, warn, Instrument};
use vyx_core::frame::HeaderList;
use vyx_core::session::{IncomingRequest, ResponseSender, StreamError};
use vyx_core::ResetCode;

use crate::body::Body;
use crate::error::Error;
use crate::handler::BoxHandler;
use crate::request::Request;
use crate::response::{internal_error, IntoResponse, Response};

/// One entry of the dispatch table; its index is the route id sent in HELLO.
pub(crate) struct Route {
    pub(crate) method: String,
    pub(crate) path: Arc<str>,
    pub(crate) handler: BoxHandler,
}

/// Serves one request pulled from the engine. Never panics: a panicking handler or body
/// becomes a 500 (or a reset once the head is out), and the worker keeps serving.
pub(crate) async fn serve(req: IncomingRequest, routes: Arc<[Route]>) {
    let IncomingRequest {
        route_id,
        method,
        target,
        params,
        headers,
        body,
        response,
    } = req;
    let head_only = &method[..] == b"HEAD";
    let stream = response.stream_id();
    let Some(route) = routes.get(route_id as usize) else {
        let span =
            info_span!("request", method = %String::from_utf8_lossy(&method), route_id, stream);
        warn!(parent: &span, "request for a route id this worker never declared; answering 404");
        let res = (StatusCode::NOT_FOUND, "not found").into_response();
        send_response(response, res, head_only)
            .instrument(span)
            .await;
        return;
    };
    let request = Request::from_incoming(
        method,
        target,
        params,
        headers,
        Body::incoming(body),
        Some(route.path.clone()),
    );
    // Logs of the handler (and ours) carry the request's method, route and stream id.
    let span = info_span!("request", method = %request.method(), route = %route.path, stream);
    let handler = &route.handler;
    async move {
        let handled = AssertUnwindSafe(async move { handler(request).await }).catch_unwind();
        // A client that went away (or a gateway timeout) cancels the handler: nobody would
        // receive its answer.
        let res = tokio::select! {
            res = handled => match res {
                Ok(res) => res,
                Err(panic) => {
                    error!(
                        panic = panic_message(&*panic),
                        "handler panicked; answering 500"
                    );
                    internal_error()
                }
            },
            why = response.closed() => {
                debug!(reason = %why, "stream closed before the handler finished; handler cancelled");
                return;
            }
        };
        send_response(response, res, head_only).await;
    }
    .instrument(span)
    .await
}

/// Sends the head (with END_STREAM when the body is known to be empty), then the body.
pub(crate) async fn send_response(mut sender: ResponseSender, res: Response, head_only: bool) {
    let (status, headers, body) = res.into_parts();
    let no_body_status = status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.is_informational();
    let mut head = header_list(&headers);
    if let Some(full) = body.as_full() {
        if !no_body_status && !headers.contains_key(CONTENT_LENGTH) {
            head.push((
                Bytes::from_static(b"content-length"),
                Bytes::from(full.len().to_string()),
            ));
        }
    }
    let end_stream = head_only || no_body_status || http_body::Body::is_end_stream(&body);
    match sender.send_head(status.as_u16(), head, end_stream) {
        Ok(()) => {}
        Err(StreamError::InvalidHead(why)) => {
            error!(%why, "the handler's response head cannot be sent; answering 500");
            let (status, headers, body) = internal_error().into_parts();
            let body = body.as_full().cloned().unwrap_or_default();
            if sender
                .send_head(status.as_u16(), header_list(&headers), false)
                .is_ok()
            {
                let _ = sender.send_data(body, true).await;
            }
            return;
        }
        Err(e) => {
            debug!(error = %e, "response not sent");
            return;
        }
    }
    if !end_stream {
        send_body(sender, body).await;
    }
}

async fn send_body(mut sender: ResponseSender, mut body: Body) {
    if let Some(full) = body.as_full() {
        // One call: the core splits it into frames of at most 64 KiB.
        if let Err(e) = sender.send_data(full.clone(), true).await {
            debug!(error = %e, "response body not sent");
        }
        return;
    }
    loop {
        let frame = match AssertUnwindSafe(body.frame()).catch_unwind().await {
            Ok(frame) => frame,
            Err(panic) => {
                error!(
                    panic = panic_message(&*panic),
                    "response body panicked; resetting the stream"
                );
                sender.reset(ResetCode::HandlerError, "response body panicked");
                return;
            }
        };
        let data: Bytes = match frame {
            None => {
                if let Err(e) = sender.end().await {
                    debug!(error = %e, "response end not sent");
                }
                return;
            }
            Some(Err(e)) => {
                match &e {
                    // The request body failed: the client or the connection went away.
                    Error::Body(_) => {
                        debug!(error = %e, "response body ended early")
                    }
                    _ => {
                        warn!(error = %e, "response body failed; resetting the stream")
                    }
                }
                sender.reset(ResetCode::HandlerError, "response body failed");
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue, // trailers: the protocol has none
            },
        };
        let last = http_body::Body::is_end_stream(&body);
        if data.is_empty() && !last {
            continue;
        }
        if let Err(e) = sender.send_data(data, last).await {
            debug!(error = %e, "response body not sent");
            return;
        }
        if last {
            return;
        }
    }
}

fn header_list(headers: &HeaderMap) -> HeaderList {
    let mut list = HeaderList::with_capacity(headers.len() + 1);
    list.extend(
        headers
            .iter()
            .map(|(name, value)| (name_bytes(name), Bytes::copy_from_slice(value.as_bytes()))),
    );
    list
}

/// A header name as bytes, without a copy for the names most responses carry.
fn name_bytes(name: &HeaderName) -> Bytes {
    const COMMON: [&str; 8] = [
        "content-type",
        "content-length",
        "cache-control",
        "content-encoding",
        "etag",
        "last-modified",
        "location",
        "set-cookie",
    ];
    match COMMON.iter().find(|c| **c == name.as_str()) {
        Some(c) => Bytes::from_static(c.as_bytes()),
        None => Bytes::copy_from_slice(name.as_str().as_bytes()),
    }
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

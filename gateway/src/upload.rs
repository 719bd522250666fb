//! Reading a client's request body: the rules a slow or broken uploader is held to (no gap
//! longer than `body_idle`, at least `min_body_rate` once the grace period is over), and the
//! buffering of small bodies before the request takes a worker's slot.
//!
//! Why buffer: a slot is what a worker serves with; a client that trickles its body must not
//! hold one. A body up to `limits.body_buffer` (the stream window, 256 KiB) is read whole
//! first, as nginx does, so such a client holds only gateway memory (bounded gateway-wide
//! by `limits.body_buffer_total`). A larger body is streamed once that much has arrived, and
//! then the minimum rate (as Kestrel's 240 B/s after 5 s) bounds how long it can hold a slot.
//! Time spent waiting for the worker's window never counts against the client.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How a client failed its own request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFault {
    /// No body data for `body_idle`.
    Idle,
    /// Slower than `min_body_rate` after the grace period.
    TooSlow,
    /// The framing is broken (a bad chunk size line, say).
    Malformed(String),
    /// The connection or stream ended mid-body.
    Gone(String),
    /// Over `limits.max_body`.
    TooLarge,
}

impl ClientFault {
    /// The `reason` label of the client-error counter.
    pub fn metric(&self) -> &'static str {
        match self {
            ClientFault::Idle => "body_idle",
            ClientFault::TooSlow => "body_too_slow",
            ClientFault::Malformed(_) => "malformed_body",
            ClientFault::Gone(_) => "body_aborted",
            ClientFault::TooLarge => "body_too_large",
        }
    }

    /// What the client is answered when it is still there to hear it.
    pub fn status(&self) -> http::StatusCode {
        match self {
            ClientFault::Idle | ClientFault::TooSlow => http::StatusCode::REQUEST_TIMEOUT,
            ClientFault::TooLarge => http::StatusCode::PAYLOAD_TOO_LARGE,
            ClientFault::Malformed(_) | ClientFault::Gone(_) => http::StatusCode::BAD_REQUEST,
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            ClientFault::Idle => "request body made no progress (timeouts.body_idle)",
            ClientFault::TooSlow => "request body slower than limits.min_body_rate",
            ClientFault::Malformed(_) => "malformed request body",
            ClientFault::Gone(_) => "request body ended early",
            ClientFault::TooLarge => "request body larger than the gateway's limit",
        }
    }

    fn of(e: &hyper::Error) -> ClientFault {
        // hyper reports a bad chunk as an io::Error of kind InvalidData/InvalidInput in the
        // error's sources; anything else (EOF, a RST_STREAM, a dead connection) is the client
        // going away.
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput
                ) {
                    return ClientFault::Malformed(e.to_string());
                }
            }
            source = s.source();
        }
        ClientFault::Gone(e.to_string())
    }
}

/// The limits one upload is held to.
#[derive(Debug, Clone, Copy)]
pub struct UploadRules {
    pub idle: Duration,
    pub min_rate: u64,
    pub grace: Duration,
    pub max_body: u64,
}

/// A client's request body, read under [`UploadRules`].
pub struct Upload {
    body: Incoming,
    rules: UploadRules,
    /// Time spent waiting on the client so far.
    waited: Duration,
    received: u64,
    /// The client's trailer fields, once the body has ended with them.
    trailers: Option<http::HeaderMap>,
}

impl Upload {
    pub fn new(body: Incoming, rules: UploadRules) -> Upload {
        Upload {
            body,
            rules,
            waited: Duration::ZERO,
            received: 0,
            trailers: None,
        }
    }

    /// The trailer fields the body ended with (HTTP/1.1 chunked or HTTP/2), after `next`
    /// gave `None`.
    pub fn take_trailers(&mut self) -> Option<http::HeaderMap> {
        self.trailers.take()
    }

    /// The next piece of body data; `None` at the end (then see [`Upload::take_trailers`]).
    pub async fn next(&mut self) -> Result<Option<Bytes>, ClientFault> {
        loop {
            let rate_limit = self.rate_allowance().saturating_sub(self.waited);
            let limit = rate_limit.min(self.rules.idle);
            let started = tokio::time::Instant::now();
            let frame = tokio::time::timeout(limit, self.body.frame()).await;
            self.waited += started.elapsed();
            let frame = match frame {
                Err(_) if limit == self.rules.idle => return Err(ClientFault::Idle),
                Err(_) => return Err(ClientFault::TooSlow),
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => return Err(ClientFault::of(&e)),
                Ok(Some(Ok(f))) => f,
            };
            let data = match frame.into_data() {
                Ok(data) => data,
                Err(frame) => {
                    self.trailers = frame.into_trailers().ok();
                    continue;
                }
            };
            self.received += data.len() as u64;
            if self.received > self.rules.max_body {
                return Err(ClientFault::TooLarge);
            }
            return Ok(Some(data));
        }
    }

    /// The total time the client may have been waited on, given what it has sent: the grace
    /// period, or longer once it has sent more than `min_rate` × grace.
    fn rate_allowance(&self) -> Duration {
        if self.rules.min_rate == 0 {
            return Duration::MAX;
        }
        let earned = Duration::from_secs_f64(self.received as f64 / self.rules.min_rate as f64);
        earned.max(self.rules.grace)
    }
}

/// The start of a body, read before dispatch, and what is left of it.
#[derive(Default)]
pub struct Buffered {
    pub chunks: Vec<Bytes>,
    /// The rest of the body, still to stream; `None` when `chunks` is all of it.
    pub rest: Option<Upload>,
    /// Holds the bytes of `chunks` against `limits.body_buffer_total` until they are sent.
    pub permit: Option<OwnedSemaphorePermit>,
    /// The body's trailer fields, when `chunks` is all of it and it ended with some.
    pub trailers: Option<http::HeaderMap>,
}

/// Reads up to `limit` bytes of the body before dispatch (fewer when the gateway-wide
/// `budget` runs short: the rest is then streamed).
pub async fn buffer(
    mut upload: Upload,
    limit: u64,
    budget: &Arc<Semaphore>,
) -> Result<Buffered, ClientFault> {
    let mut out = Buffered::default();
    let mut held = 0u64;
    loop {
        if held >= limit {
            out.rest = Some(upload);
            return Ok(out);
        }
        let Some(data) = upload.next().await? else {
            out.trailers = upload.take_trailers();
            return Ok(out);
        };
        held += data.len() as u64;
        let Ok(n) = u32::try_from(data.len()) else {
            out.chunks.push(data);
            out.rest = Some(upload);
            return Ok(out);
        };
        match budget.clone().try_acquire_many_owned(n) {
            Ok(p) => match &mut out.permit {
                Some(all) => all.merge(p),
                None => out.permit = Some(p),
            },
            Err(_) => {
                // The gateway-wide budget is spent: stream this body instead.
                out.chunks.push(data);
                out.rest = Some(upload);
                return Ok(out);
            }
        }
        out.chunks.push(data);
    }
}

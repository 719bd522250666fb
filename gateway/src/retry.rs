//! Safe retries: a request whose stream failed before its response head (its worker
//! connection lost, or its stream RESET `refused`) goes once more to another replica, when
//! repeating it is safe and the gateway still holds all of its body. Nothing reached the
//! client then, so the client sees one answer, the second replica's.
//!
//! Safe means: the stream was refused (§8.4: not processed at all), or the request's method
//! is idempotent (RFC 9110 §9.2.2), or its route was declared `idempotent` (§3.8).

use bytes::{Bytes, BytesMut};
use http::Method;
use tokio::sync::OwnedSemaphorePermit;

use crate::conn::Failure;
use crate::upload::Buffered;

/// What a second attempt sends: the REQUEST frame as first encoded, and the whole body
/// (with its trailers).
pub struct Replay {
    frame: BytesMut,
    chunks: Vec<Bytes>,
    trailers: Option<http::HeaderMap>,
    /// The body's share of `limits.body_buffer_total`, held until the response head (the
    /// first attempt's pump sends clones of the same bytes).
    permit: Option<OwnedSemaphorePermit>,
}

impl Replay {
    /// Keeps what a retry needs when the body is all held (`body.rest` none), taking the
    /// body's permit; `None` for a body still streaming from its client (not replayable).
    pub fn keep(frame: &BytesMut, body: &mut Buffered) -> Option<Replay> {
        if body.rest.is_some() {
            return None;
        }
        Some(Replay {
            frame: frame.clone(),
            chunks: body.chunks.clone(),
            trailers: body.trailers.clone(),
            permit: body.permit.take(),
        })
    }

    /// The frame for the second attempt (its stream and route ids are set when it opens)
    /// and the body to pump.
    pub fn into_parts(self) -> (BytesMut, Buffered) {
        let body = Buffered {
            chunks: self.chunks,
            rest: None,
            permit: self.permit,
            trailers: self.trailers,
        };
        (self.frame, body)
    }
}

/// Why a first attempt failed in a way a retry may repair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The worker connection was lost before the response head.
    ConnectionLost,
    /// The worker RESET the stream `refused` before the response head.
    Refused,
}

impl Reason {
    /// The reason a failure before the head gives, if a retry may repair it.
    pub fn of(failure: &Failure) -> Option<Reason> {
        match failure {
            Failure::ConnectionLost(_) => Some(Reason::ConnectionLost),
            Failure::Reset(vyx_core::error::ResetCode::Refused, _) => Some(Reason::Refused),
            _ => None,
        }
    }

    /// The `reason` label of `vyx_retries_total`.
    pub fn label(self) -> &'static str {
        match self {
            Reason::ConnectionLost => "connection_lost",
            Reason::Refused => "refused",
        }
    }
}

/// What became of a failure a retry could repair: the `outcome` label of
/// `vyx_retries_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Retried; the second replica sent a response head.
    Answered,
    /// Retried; the second attempt failed too (its answer is the client's).
    Failed,
    /// Not retried: no other replica serves the route.
    NoReplica,
    /// Not retried: neither the method nor the route is idempotent, and the stream was
    /// not refused.
    NotIdempotent,
    /// Not retried: the body was streaming from its client (past `limits.body_buffer`).
    BodyNotHeld,
    /// Not retried: `retries.enabled` is off.
    Disabled,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Failed => "failed",
            Outcome::NoReplica => "no_replica",
            Outcome::NotIdempotent => "not_idempotent",
            Outcome::BodyNotHeld => "body_not_held",
            Outcome::Disabled => "disabled",
        }
    }
}

/// Whether a request failed for `reason` may be sent again, or the outcome that says why not.
pub fn allowed(
    reason: Reason,
    method: &Method,
    route_idempotent: bool,
    replay: bool,
    enabled: bool,
) -> Result<(), Outcome> {
    if !enabled {
        Err(Outcome::Disabled)
    } else if !replay {
        Err(Outcome::BodyNotHeld)
    } else if reason == Reason::Refused || route_idempotent || idempotent_method(method) {
        Ok(())
    } else {
        Err(Outcome::NotIdempotent)
    }
}

/// The methods RFC 9110 §9.2.2 defines as idempotent.
pub fn idempotent_method(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_requests_with_their_whole_body_are_retried() {
        let lost = Reason::ConnectionLost;
        assert_eq!(allowed(lost, &Method::GET, false, true, true), Ok(()));
        assert_eq!(allowed(lost, &Method::DELETE, false, true, true), Ok(()));
        assert_eq!(
            allowed(lost, &Method::POST, false, true, true),
            Err(Outcome::NotIdempotent)
        );
        assert_eq!(
            allowed(lost, &Method::PATCH, false, true, true),
            Err(Outcome::NotIdempotent)
        );
        assert_eq!(allowed(lost, &Method::POST, true, true, true), Ok(()));
        assert_eq!(
            allowed(Reason::Refused, &Method::POST, false, true, true),
            Ok(()),
            "a refused stream was not processed (§8.4)"
        );
        assert_eq!(
            allowed(lost, &Method::PUT, false, false, true),
            Err(Outcome::BodyNotHeld)
        );
        assert_eq!(
            allowed(lost, &Method::GET, false, true, false),
            Err(Outcome::Disabled)
        );
    }
}

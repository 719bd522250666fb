//! The SDK's error type.

use http::StatusCode;
use vyx_core::session::{EngineError, StreamError};

use crate::response::{IntoResponse, Response};

/// A boxed error, as carried by [`Error::Other`] and accepted from body streams and tower
/// services.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result<T, vyx::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the SDK.
///
/// A handler may return `Result<T, vyx::Error>`: the error then becomes the response (see
/// the [`IntoResponse`] impl), so `?` works on the request-body readers:
///
/// ```
/// async fn create(mut req: vyx::Request) -> vyx::Result<vyx::Json<serde_json::Value>> {
///     let item: serde_json::Value = req.json().await?; // bad JSON → 400
///     Ok(vyx::Json(item))
/// }
/// ```
///
/// Wrap any other error with [`Error::other`] to answer 500:
///
/// ```
/// async fn load() -> Result<String, std::io::Error> { Ok("data".into()) }
///
/// async fn handler(_req: vyx::Request) -> vyx::Result<String> {
///     load().await.map_err(vyx::Error::other)
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The worker's configuration is invalid (returned by
    /// [`WorkerBuilder::build`](crate::WorkerBuilder::build)).
    #[error("invalid worker configuration: {0}")]
    Config(String),
    /// The gateway refused this worker for good (bad credentials, route conflict, unsupported
    /// protocol, ...): returned by [`Worker::start`](crate::Worker::start).
    #[error(transparent)]
    Refused(EngineError),
    /// [`Worker::start`](crate::Worker::start) was called while the worker was running.
    #[error("the worker has started already and is still running")]
    AlreadyStarted,
    /// The request body could not be read: the client went away, the gateway reset the
    /// stream, or the connection to the gateway was lost.
    #[error("request body: {0}")]
    Body(#[source] StreamError),
    /// The request body is not valid UTF-8 ([`Request::text`](crate::Request::text)).
    #[error("request body is not valid UTF-8: {0}")]
    InvalidUtf8(#[source] std::str::Utf8Error),
    /// The request body is not the JSON expected ([`Request::json`](crate::Request::json)).
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(#[source] serde_json::Error),
    /// Any other error: a failed response-body stream, a tower service error, or an error
    /// of a handler wrapped with [`Error::other`].
    #[error(transparent)]
    Other(BoxError),
}

impl Error {
    /// Wraps any error; as a response it is a 500.
    pub fn other(error: impl Into<BoxError>) -> Error {
        Error::Other(error.into())
    }

    /// The status this error answers with as a response: 400 for a request body that is
    /// not valid UTF-8 or JSON (the client's fault), 500 for everything else.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::InvalidUtf8(_) | Error::InvalidJson(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<EngineError> for Error {
    fn from(e: EngineError) -> Error {
        match e {
            EngineError::Config(msg) => Error::Config(msg),
            other => Error::Refused(other),
        }
    }
}

impl From<StreamError> for Error {
    fn from(e: StreamError) -> Error {
        Error::Body(e)
    }
}

/// 400 with the error's message for [`Error::InvalidUtf8`] and [`Error::InvalidJson`];
/// otherwise 500 with the body `internal error` (the error itself is logged, not sent to
/// the client).
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "handler failed");
            (status, "internal error").into_response()
        } else {
            (status, self.to_string()).into_response()
        }
    }
}

//! Who may register: checked on the upgrade request, before any socket is held.

/// What an admitted worker may do.
#[derive(Debug, Clone, Default)]
pub struct Admission {
    /// Path prefixes the worker may claim; `None` means any.
    pub allowed_prefixes: Option<Vec<String>>,
}

/// Why an upgrade request is refused, as an HTTP status and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("missing credentials: send 'Authorization: Bearer <token>'")]
    MissingToken,
    #[error("invalid token for worker id {0:?}")]
    WrongToken(String),
    #[error("worker id {0:?} is not declared")]
    UnknownWorker(String),
}

impl Rejection {
    pub fn status(&self) -> u16 {
        match self {
            Rejection::MissingToken => 401,
            Rejection::WrongToken(_) | Rejection::UnknownWorker(_) => 403,
        }
    }

    /// The label used in logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::MissingToken => "missing_token",
            Rejection::WrongToken(_) => "wrong_token",
            Rejection::UnknownWorker(_) => "unknown_worker",
        }
    }
}

/// Decides whether a worker id with a token may register.
pub trait Authenticator: Send + Sync + 'static {
    fn admit(&self, worker_id: &str, token: Option<&str>) -> Result<Admission, Rejection>;
}

/// Dev mode: every worker id, with any token or none.
pub struct AcceptAll;

impl Authenticator for AcceptAll {
    fn admit(&self, _worker_id: &str, _token: Option<&str>) -> Result<Admission, Rejection> {
        Ok(Admission::default())
    }
}

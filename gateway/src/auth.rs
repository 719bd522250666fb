//! Who may register: checked on the upgrade request, before any socket is held.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use subtle::ConstantTimeEq;

/// A token: compared in constant time, never printed (its `Debug` says `Secret(..)`).
///
/// ```
/// use vyx_gateway::auth::Secret;
/// let s = Secret::new("s3cret");
/// assert!(s.matches("s3cret") && !s.matches("s3creT"));
/// assert_eq!(format!("{s:?}"), "Secret(..)");
/// ```
#[derive(Clone)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(token: &str) -> Secret {
        Secret(token.into())
    }

    /// 32 random bytes from the OS, hex-encoded: a fresh per-run token.
    pub fn random() -> Secret {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes).expect("the OS random source works");
        Secret(
            bytes
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                .into(),
        )
    }

    /// Constant-time equality (for equal lengths; a length mismatch is not secret).
    pub fn matches(&self, presented: &str) -> bool {
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }

    /// The token itself, to hand to a child process; never for logs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is case-insensitive
/// (RFC 9110 §11.1) and followed by one or more spaces; any other scheme gives `None`.
///
/// ```
/// use vyx_gateway::auth::bearer_token;
/// assert_eq!(bearer_token("Bearer abc"), Some("abc"));
/// assert_eq!(bearer_token("bearer  abc"), Some("abc"));
/// assert_eq!(bearer_token("BEARER abc"), Some("abc"));
/// assert_eq!(bearer_token("Basic abc"), None);
/// assert_eq!(bearer_token("Bearerabc"), None);
/// ```
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(rest.trim_matches(' ')).filter(|t| !t.is_empty())
}

/// What an admitted worker may do.
#[derive(Debug, Clone, Default)]
pub struct Admission {
    /// Path prefixes the worker may claim; `None` means any.
    pub allowed_prefixes: Option<Vec<String>>,
}

/// Why an upgrade request is refused, as an HTTP status and a sentence (never the token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("missing credentials: send 'Authorization: Bearer <token>'")]
    MissingToken,
    #[error("invalid token for worker id {0:?}")]
    WrongToken(String),
    #[error(
        "invalid token for worker id {0:?}: the token presented is bound to a different worker id"
    )]
    TokenOfAnotherId(String),
    #[error("worker id {0:?} is not declared in the gateway's configuration")]
    UnknownWorker(String),
    #[error("worker id {0:?} is a local worker: it registers over loopback only (set allow_remote: true to admit it from other hosts)")]
    NotLocal(String),
    #[error("this gateway runs without vyx.yaml (dev mode) and admits workers from its own host only: declare worker {0:?} with a token in vyx.yaml (see examples/README.md)")]
    RemoteInDevMode(String),
}

impl Rejection {
    pub fn status(&self) -> u16 {
        match self {
            Rejection::MissingToken => 401,
            _ => 403,
        }
    }

    /// The label used in logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::MissingToken => "missing_token",
            Rejection::WrongToken(_) => "wrong_token",
            Rejection::TokenOfAnotherId(_) => "token_of_another_id",
            Rejection::UnknownWorker(_) => "unknown_worker",
            Rejection::NotLocal(_) => "not_local",
            Rejection::RemoteInDevMode(_) => "remote_in_dev_mode",
        }
    }
}

/// Decides whether a worker id with a token, connecting from `peer`, may register.
pub trait Authenticator: Send + Sync + 'static {
    fn admit(
        &self,
        worker_id: &str,
        token: Option<&str>,
        peer: SocketAddr,
    ) -> Result<Admission, Rejection>;

    /// Whether `token` is some worker's token (admin endpoints refuse those by name).
    fn is_worker_token(&self, _token: &str) -> bool {
        false
    }
}

/// Whether a peer is on this host: a loopback address, IPv4-mapped ones included
/// (`::ffff:127.0.0.1` is how a dual-stack `[::]` listener sees an IPv4 loopback peer).
///
/// ```
/// use vyx_gateway::auth::is_loopback_peer;
/// assert!(is_loopback_peer("127.0.0.1".parse().unwrap()));
/// assert!(is_loopback_peer("127.9.9.9".parse().unwrap()));
/// assert!(is_loopback_peer("::1".parse().unwrap()));
/// assert!(is_loopback_peer("::ffff:127.0.0.1".parse().unwrap()));
/// assert!(!is_loopback_peer("10.0.0.5".parse().unwrap()));
/// assert!(!is_loopback_peer("::ffff:10.0.0.5".parse().unwrap()));
/// assert!(!is_loopback_peer("0.0.0.0".parse().unwrap()));
/// assert!(!is_loopback_peer("fe80::1".parse().unwrap()));
/// ```
pub fn is_loopback_peer(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// Dev mode (no vyx.yaml): every worker id, with any token or none, from this host only
/// unless remote workers were let in explicitly (`vyx --insecure-dev-workers`). Without
/// credentials, anyone who can reach the gateway could register `/{*rest}` and take every
/// request, so a gateway listening on the network does not admit the network by default.
pub struct DevMode {
    remote_workers: bool,
    is_local: fn(IpAddr) -> bool,
}

impl DevMode {
    /// `remote_workers`: also admit workers from other hosts (unsafe outside a trusted
    /// network).
    pub fn new(remote_workers: bool) -> DevMode {
        DevMode {
            remote_workers,
            is_local: is_loopback_peer,
        }
    }

    /// The same policy with another test of which peers are on this host; lets a test on
    /// loopback see its own peer as remote.
    pub fn with_local_test(self, is_local: fn(IpAddr) -> bool) -> DevMode {
        DevMode { is_local, ..self }
    }

    /// Whether workers from other hosts are admitted.
    pub fn admits_remote_workers(&self) -> bool {
        self.remote_workers
    }
}

impl Authenticator for DevMode {
    fn admit(
        &self,
        worker_id: &str,
        _: Option<&str>,
        peer: SocketAddr,
    ) -> Result<Admission, Rejection> {
        if self.remote_workers || (self.is_local)(peer.ip()) {
            Ok(Admission::default())
        } else {
            Err(Rejection::RemoteInDevMode(worker_id.into()))
        }
    }
}

/// A worker id declared in `vyx.yaml`.
#[derive(Debug, Clone)]
pub struct DeclaredWorker {
    pub token: Secret,
    /// Path prefixes the id may claim; `None` means any.
    pub routes: Option<Vec<String>>,
    /// A local worker without `allow_remote`: admitted from loopback addresses only.
    pub loopback_only: bool,
}

/// The declared workers and their tokens: each token admits its own id only.
pub struct Credentials {
    workers: HashMap<String, DeclaredWorker>,
    accept_unknown: bool,
}

impl Credentials {
    pub fn new(workers: HashMap<String, DeclaredWorker>, accept_unknown: bool) -> Credentials {
        Credentials {
            workers,
            accept_unknown,
        }
    }
}

impl Authenticator for Credentials {
    fn admit(
        &self,
        worker_id: &str,
        token: Option<&str>,
        peer: SocketAddr,
    ) -> Result<Admission, Rejection> {
        let declared = self.workers.get(worker_id);
        if declared.is_none() && self.accept_unknown {
            return Ok(Admission::default());
        }
        // Missing credentials come first (401), as in PROTOCOL.md §2.2.
        let token = token.ok_or(Rejection::MissingToken)?;
        let declared = declared.ok_or_else(|| Rejection::UnknownWorker(worker_id.into()))?;
        if !declared.token.matches(token) {
            return Err(if self.is_worker_token(token) {
                Rejection::TokenOfAnotherId(worker_id.into())
            } else {
                Rejection::WrongToken(worker_id.into())
            });
        }
        if declared.loopback_only && !is_loopback_peer(peer.ip()) {
            return Err(Rejection::NotLocal(worker_id.into()));
        }
        Ok(Admission {
            allowed_prefixes: declared.routes.clone(),
        })
    }

    fn is_worker_token(&self, token: &str) -> bool {
        // Every entry is compared, so the time taken does not tell which one matched.
        self.workers
            .values()
            .fold(false, |found, w| w.token.matches(token) | found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(s: &str) -> SocketAddr {
        SocketAddr::new(s.parse().unwrap(), 40000)
    }

    #[test]
    fn dev_mode_admits_this_host_only_unless_remote_workers_are_let_in() {
        let dev = DevMode::new(false);
        for local in ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"] {
            assert!(dev.admit("any:id", None, peer(local)).is_ok(), "{local}");
        }
        for remote in [
            "10.0.0.5",
            "192.168.1.2",
            "::ffff:10.0.0.5",
            "2001:db8::1",
            "fe80::1",
        ] {
            let refused = dev
                .admit("any:id", Some("whatever"), peer(remote))
                .unwrap_err();
            assert_eq!(
                refused,
                Rejection::RemoteInDevMode("any:id".into()),
                "{remote}"
            );
            assert_eq!(
                (refused.status(), refused.reason()),
                (403, "remote_in_dev_mode")
            );
        }
        let open = DevMode::new(true);
        assert!(open.admit("any:id", None, peer("10.0.0.5")).is_ok());
    }

    #[test]
    fn a_local_worker_is_admitted_over_ipv4_mapped_loopback_too() {
        let creds = Credentials::new(
            HashMap::from([(
                "w".to_string(),
                DeclaredWorker {
                    token: Secret::new("t"),
                    routes: None,
                    loopback_only: true,
                },
            )]),
            false,
        );
        assert!(creds
            .admit("w", Some("t"), peer("::ffff:127.0.0.1"))
            .is_ok());
        assert_eq!(
            creds
                .admit("w", Some("t"), peer("::ffff:10.0.0.5"))
                .unwrap_err(),
            Rejection::NotLocal("w".into())
        );
    }
}

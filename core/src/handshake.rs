//! The handshake and the JSON control messages, with the validation the gateway applies to
//! HELLO (spec/PROTOCOL.md, "Handshake").

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::error::CloseCode;
use crate::limits::{MAX_CONCURRENCY, MAX_ROUTES, MAX_WORKER_ID_LEN};

/// Protocol version spoken by this crate.
pub const PROTOCOL_VERSION: u32 = 1;
/// WebSocket subprotocol a worker must offer.
pub const SUBPROTOCOL: &str = "vyx.1";
/// Default registration path on the gateway.
pub const REGISTER_PATH: &str = "/_vyx/register";
/// Upgrade-request header naming the worker id.
pub const WORKER_ID_HEADER: &str = "x-vyx-worker-id";

/// One route a worker serves. `method` is an upper-case token or `*` for any method;
/// `path` uses `{name}` parameters and a trailing `{*rest}` catch-all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSpec {
    /// 0..=65535; a wider JSON number parses so that it can be refused with 4001.
    pub id: u32,
    pub method: String,
    pub path: String,
}

/// Worker → gateway, the first frame after the upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    pub worker_id: String,
    #[serde(default)]
    pub instance: String,
    #[serde(default)]
    pub sdk: String,
    pub max_concurrency: u32,
    pub routes: Vec<RouteSpec>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Gateway → worker, the answer to a valid HELLO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub protocol: u32,
    pub gateway: String,
    pub connection_id: String,
    pub heartbeat_ms: u32,
    pub initial_window: u32,
    pub max_frame_size: u32,
    /// The effective cap: the lower of the worker's and the gateway's.
    pub max_concurrency: u32,
}

/// Either way: start no new streams, finish the open ones by the deadline, then close.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drain {
    pub reason: String,
    pub deadline_ms: u64,
}

/// Worker → gateway: the connection's whole new route set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routes {
    pub routes: Vec<RouteSpec>,
}

/// Either way, just before closing with `code`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMessage {
    pub code: u16,
    pub message: String,
}

/// A refused handshake: the close code and a sentence for the peer and the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct HandshakeError {
    pub code: CloseCode,
    pub message: String,
}

impl HandshakeError {
    pub fn new(code: CloseCode, message: impl Into<String>) -> HandshakeError {
        HandshakeError {
            code,
            message: message.into(),
        }
    }
}

/// Whether `id` is a valid worker id: 1..=128 bytes of `[A-Za-z0-9._:@/-]`.
pub fn is_worker_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_WORKER_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:@/-".contains(&b))
}

impl Hello {
    /// Checks a HELLO against the worker id of the upgrade request. Route conflicts and
    /// allow-lists are the gateway's business and are checked after this.
    pub fn validate(&self, header_worker_id: &str) -> Result<(), HandshakeError> {
        if self.protocol != PROTOCOL_VERSION {
            return Err(HandshakeError::new(
                CloseCode::UnsupportedVersion,
                format!(
                    "protocol {} is not supported; this gateway speaks {PROTOCOL_VERSION}",
                    self.protocol
                ),
            ));
        }
        if self.worker_id != header_worker_id {
            return Err(HandshakeError::new(
                CloseCode::BadHello,
                format!(
                    "HELLO names worker id {:?} but the upgrade request named {:?}",
                    self.worker_id, header_worker_id
                ),
            ));
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.max_concurrency) {
            return Err(HandshakeError::new(
                CloseCode::BadHello,
                format!(
                    "max_concurrency {} is outside 1..={MAX_CONCURRENCY}",
                    self.max_concurrency
                ),
            ));
        }
        validate_routes(&self.routes)
    }
}

/// Checks a route set (HELLO or ROUTES): count, unique ids, unique (method, path),
/// method and pattern syntax.
pub fn validate_routes(routes: &[RouteSpec]) -> Result<(), HandshakeError> {
    let bad = |msg: String| Err(HandshakeError::new(CloseCode::BadHello, msg));
    if routes.len() > MAX_ROUTES {
        return bad(format!(
            "{} routes declared; at most {MAX_ROUTES} are allowed",
            routes.len()
        ));
    }
    let mut ids = HashSet::with_capacity(routes.len());
    let mut keys = HashSet::with_capacity(routes.len());
    for r in routes {
        if r.id > u16::MAX as u32 {
            return bad(format!("route id {} is outside 0..=65535", r.id));
        }
        if !ids.insert(r.id) {
            return bad(format!("route id {} is used twice", r.id));
        }
        if !is_route_method(&r.method) {
            return bad(format!(
                "route {}: method {:?} must be an upper-case token or \"*\"",
                r.id, r.method
            ));
        }
        if let Err(why) = check_pattern(&r.path) {
            return bad(format!("route {}: path {:?} {why}", r.id, r.path));
        }
        if !keys.insert((r.method.as_str(), pattern_shape(&r.path))) {
            return bad(format!("route {} {} is declared twice", r.method, r.path));
        }
    }
    Ok(())
}

fn is_route_method(m: &str) -> bool {
    m == "*"
        || (!m.is_empty()
            && m.bytes()
                .all(|b| crate::frame::is_tchar(b) && !b.is_ascii_lowercase()))
}

/// The pattern with parameter names removed: `/a/{id}` and `/a/{key}` are the same route.
fn pattern_shape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push('{');
            }
            '}' => {
                in_param = false;
                out.push('}');
            }
            '*' if in_param => out.push('*'),
            _ if in_param => {}
            c => out.push(c),
        }
    }
    out
}

/// Pattern syntax: starts with '/'; no space, control byte, '?' or '#'; each `{name}`
/// parameter or `{*name}` catch-all fills a whole segment, names are non-empty and unique,
/// and a catch-all comes last.
pub fn check_pattern(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("must start with '/'");
    }
    if path
        .bytes()
        .any(|b| b <= 0x20 || b == 0x7f || b == b'?' || b == b'#')
    {
        return Err("contains a space, control byte, '?' or '#'");
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    let mut names = HashSet::new();
    for (i, seg) in segments.iter().enumerate() {
        let Some(inner) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
            if seg.contains(['{', '}']) {
                return Err("has a parameter that does not fill a whole segment, or a stray brace");
            }
            continue;
        };
        let (catch_all, name) = match inner.strip_prefix('*') {
            Some(rest) => (true, rest),
            None => (false, inner),
        };
        if name.is_empty() || name.contains(['{', '}', '*']) {
            return Err("has an empty or invalid parameter name");
        }
        if catch_all && i != segments.len() - 1 {
            return Err("has a catch-all parameter that is not at the end");
        }
        if !names.insert(name) {
            return Err("uses a parameter name twice");
        }
    }
    Ok(())
}

//! The handshake: its constants, and the validation of HELLO, WELCOME and ROUTES
//! (spec/PROTOCOL.md, "Handshake"). The messages themselves are frames
//! ([`crate::frame::control`]), re-exported here.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

use crate::error::CloseCode;
use crate::features;
pub use crate::frame::json::check_json_strict;
pub use crate::frame::{Drain, ErrorMessage, Hello, RouteSpec, Routes, Welcome};
use crate::limits::{
    MAX_CONCURRENCY, MAX_CONNECTIONS, MAX_FRAME_SIZE, MAX_INSTANCE_LEN, MAX_LABELS, MAX_LABEL_LEN,
    MAX_METHOD_LEN, MAX_ROUTES, MAX_SDK_LEN, MAX_WINDOW, MAX_WORKER_ID_LEN,
};
pub use crate::routing::check_pattern;
use crate::routing::Router;

/// Protocol version spoken by this crate.
pub const PROTOCOL_VERSION: u32 = 1;
/// WebSocket subprotocol a worker must offer.
pub const SUBPROTOCOL: &str = "vyx.1";
/// Default registration path on the gateway.
pub const REGISTER_PATH: &str = "/_vyx/register";
/// Upgrade-request header naming the worker id.
pub const WORKER_ID_HEADER: &str = "x-vyx-worker-id";

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
                    excerpt(&self.worker_id),
                    header_worker_id
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
        validate_hello_fields(&self.instance, &self.sdk, &self.labels)?;
        features::validate_list(&self.features, CloseCode::BadHello)?;
        validate_routes(&self.routes)
    }
}

/// Checks HELLO's informational fields against their bounds (§2.4 rule 3a): the gateway
/// keeps them for the connection's life, and logs and lists them. An SDK runs this on its
/// configuration before dialing.
pub fn validate_hello_fields(
    instance: &str,
    sdk: &str,
    labels: &BTreeMap<String, String>,
) -> Result<(), HandshakeError> {
    let bad = |msg: String| Err(HandshakeError::new(CloseCode::BadHello, msg));
    let too_long = |what: &str, len: usize, max: usize| {
        bad(format!("{what} is {len} bytes; at most {max} are allowed"))
    };
    if instance.len() > MAX_INSTANCE_LEN {
        return too_long("instance", instance.len(), MAX_INSTANCE_LEN);
    }
    if sdk.len() > MAX_SDK_LEN {
        return too_long("sdk", sdk.len(), MAX_SDK_LEN);
    }
    if labels.len() > MAX_LABELS {
        return bad(format!(
            "{} labels; at most {MAX_LABELS} are allowed",
            labels.len()
        ));
    }
    for (k, v) in labels {
        if k.len() > MAX_LABEL_LEN {
            return too_long(
                &format!("label key {:?}", excerpt(k)),
                k.len(),
                MAX_LABEL_LEN,
            );
        }
        if v.len() > MAX_LABEL_LEN {
            return too_long(
                &format!("label {:?}: value", excerpt(k)),
                v.len(),
                MAX_LABEL_LEN,
            );
        }
    }
    Ok(())
}

/// The start of a field a refusal quotes: the message goes back in ERROR and into the log,
/// and the field may be as long as the frame.
fn excerpt(s: &str) -> Cow<'_, str> {
    const KEEP: usize = 64;
    if s.len() <= KEEP {
        return Cow::Borrowed(s);
    }
    let mut end = KEEP;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &s[..end]))
}

impl Welcome {
    /// The worker's check of WELCOME (§2.3 step 6) against the `max_concurrency` its HELLO
    /// asked for and the `features` it offered: `protocol` ≠ 1 → 4002 (stop), any other value
    /// out of range, or a feature the HELLO did not offer → 4005 (retry).
    pub fn validate(
        &self,
        asked_max_concurrency: u32,
        offered_features: &[String],
    ) -> Result<(), HandshakeError> {
        if self.protocol != PROTOCOL_VERSION {
            return Err(HandshakeError::new(
                CloseCode::UnsupportedVersion,
                format!(
                    "gateway speaks protocol {}; this worker speaks {PROTOCOL_VERSION}",
                    self.protocol
                ),
            ));
        }
        let bad = |what: String| {
            Err(HandshakeError::new(
                CloseCode::ProtocolViolation,
                format!("invalid WELCOME: {what}"),
            ))
        };
        if !(1..=MAX_WINDOW).contains(&self.heartbeat_ms) {
            return bad(format!(
                "heartbeat_ms {} is outside 1..={MAX_WINDOW}",
                self.heartbeat_ms
            ));
        }
        if !(1..=MAX_WINDOW).contains(&self.initial_window) {
            return bad(format!(
                "initial_window {} is outside 1..={MAX_WINDOW}",
                self.initial_window
            ));
        }
        if self.max_frame_size as usize != MAX_FRAME_SIZE {
            return bad(format!(
                "max_frame_size {} is not {MAX_FRAME_SIZE}, the only value of protocol 1",
                self.max_frame_size
            ));
        }
        if !(1..=asked_max_concurrency).contains(&self.max_concurrency) {
            return bad(format!(
                "max_concurrency {} is outside 1..={asked_max_concurrency} (the HELLO's)",
                self.max_concurrency
            ));
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.connections) {
            return bad(format!(
                "connections {} is outside 1..={MAX_CONNECTIONS}",
                self.connections
            ));
        }
        features::validate_list(&self.features, CloseCode::ProtocolViolation)
            .map_err(|e| HandshakeError::new(e.code, format!("invalid WELCOME: {}", e.message)))?;
        if let Some(f) = self.features.iter().find(|f| !offered_features.contains(f)) {
            return bad(format!(
                "features lists {f:?}, which the HELLO did not offer"
            ));
        }
        Ok(())
    }
}

/// Checks a route set (HELLO or ROUTES): count, unique ids, method and pattern syntax, and
/// no two routes of one method with the same shape. The last check is the gateway's own
/// route table refusing the insert, so that what passes here always fits the table.
pub fn validate_routes(routes: &[RouteSpec]) -> Result<(), HandshakeError> {
    let bad = |msg: String| Err(HandshakeError::new(CloseCode::BadHello, msg));
    if routes.len() > MAX_ROUTES {
        return bad(format!(
            "{} routes declared; at most {MAX_ROUTES} are allowed",
            routes.len()
        ));
    }
    let mut ids = HashSet::with_capacity(routes.len());
    let mut table = Router::default();
    for r in routes {
        if r.id > u16::MAX as u32 {
            return bad(format!("route id {} is outside 0..=65535", r.id));
        }
        if !ids.insert(r.id) {
            return bad(format!("route id {} is used twice", r.id));
        }
        if r.method.len() > MAX_METHOD_LEN {
            return bad(format!(
                "route {}: method is {} bytes; at most {MAX_METHOD_LEN} are allowed",
                r.id,
                r.method.len()
            ));
        }
        if !is_route_method(&r.method) {
            return bad(format!(
                "route {}: method {:?} must be an upper-case token or \"*\"",
                r.id, r.method
            ));
        }
        if let Err(why) = check_pattern(&r.path) {
            // The reason first: a close frame's reason keeps 123 bytes of it.
            return bad(format!(
                "route {}: path {why}: {:?} ({} bytes)",
                r.id,
                excerpt(&r.path),
                r.path.len()
            ));
        }
        if let Err(c) = table.insert(&r.method, &r.path, ()) {
            return bad(format!("route {}: {c}: declared twice", r.id));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Frame;

    fn hello_frame(json: &str) -> Result<Hello, String> {
        let mut msg = vec![0x10, 0, 0, 0, 0, 0];
        msg.extend_from_slice(json.as_bytes());
        match Frame::decode(msg.into(), crate::limits::MAX_FRAME_SIZE) {
            Ok(Frame::Hello(h)) => Ok(h),
            Ok(other) => Err(format!("decoded as {}", other.name())),
            Err(e) => Err(e.kind().to_string()),
        }
    }

    const BASE: &str = r#""worker_id":"a","max_concurrency":1,"routes":[]"#;

    #[test]
    fn json_edge_cases_follow_section_3_8() {
        let ok = |extra: &str| hello_frame(&format!("{{\"protocol\":1,{BASE}{extra}}}"));
        let h = ok(r#","instance":null,"sdk":null,"labels":null"#).expect("null = absent");
        assert_eq!((h.instance.as_str(), h.labels.len()), ("", 0));
        for bad in [
            r#","protocol":1"#,
            r#","x":{"k":1,"k":2}"#,
            r#","labels":{"a":"1","a":"2"}"#,
            r#","x":"\ud800""#,
            r#","sdk":"\udc00x""#,
        ] {
            assert_eq!(
                ok(bad).unwrap_err(),
                "invalid_control_payload",
                "{bad} must be refused"
            );
        }
        for number in ["-0", "-1", "1.0", "1e0", "18446744073709551616"] {
            let json = format!(r#"{{"protocol":{number},{BASE}}}"#);
            assert_eq!(
                hello_frame(&json).unwrap_err(),
                "invalid_control_payload",
                "{json}"
            );
        }
        let big =
            r#"{"protocol":1,"worker_id":"a","max_concurrency":18446744073709551615,"routes":[]}"#;
        let h = hello_frame(big).expect("a u64 decodes");
        assert_eq!(h.validate("a").unwrap_err().code, CloseCode::BadHello);
    }
}

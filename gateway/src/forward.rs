//! Header rules at the proxy boundary: hop-by-hop stripping, `X-Forwarded-*`, request ids.

use std::net::SocketAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION};

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded either way.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Whether a header must not cross the proxy: a hop-by-hop name, `upgrade`, or a name the
/// `Connection` header lists.
pub fn is_hop_by_hop(name: &str, headers: &HeaderMap) -> bool {
    if HOP_BY_HOP.contains(&name) || name == "upgrade" {
        return true;
    }
    headers.get_all(CONNECTION).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(name)))
            .unwrap_or(false)
    })
}

/// The headers the gateway adds to a proxied request, as (name, value) pairs.
pub struct Forwarded {
    pub for_value: String,
    pub proto: Option<&'static str>,
    pub host: Option<HeaderValue>,
    pub add_host: Option<HeaderValue>,
    pub request_id: Option<HeaderValue>,
}

pub const X_FORWARDED_FOR: &str = "x-forwarded-for";
pub const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
pub const X_FORWARDED_HOST: &str = "x-forwarded-host";
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Works out the forwarding headers for a request from `client`. `request_id` is used when
/// the request does not carry a usable one.
pub fn forwarded(
    headers: &HeaderMap,
    authority: Option<&str>,
    client: SocketAddr,
    request_id: &HeaderValue,
) -> Forwarded {
    let ip = client.ip().to_string();
    let prior: Vec<&str> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let for_value = if prior.is_empty() {
        ip
    } else {
        format!("{}, {ip}", prior.join(", "))
    };
    let host_header = headers.get(http::header::HOST).cloned();
    let add_host = if host_header.is_none() {
        authority.and_then(|a| HeaderValue::from_str(a).ok())
    } else {
        None
    };
    let host = if headers.contains_key(X_FORWARDED_HOST) {
        None
    } else {
        host_header.or_else(|| add_host.clone())
    };
    Forwarded {
        for_value,
        proto: (!headers.contains_key(X_FORWARDED_PROTO)).then_some("http"),
        host,
        add_host,
        request_id: (!headers.contains_key(X_REQUEST_ID)).then(|| request_id.clone()),
    }
}

/// A request id: 16 hex digits, unique per gateway process.
pub fn new_request_id(seq: u64, seed: u64) -> HeaderValue {
    let mut mix =
        vyx_core::backoff::SplitMix64::new(seed ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let v = mix.next_u64();
    HeaderValue::from_str(&format!("{v:016x}")).expect("hex is a valid header value")
}

//! Header rules at the proxy boundary: hop-by-hop stripping, `X-Forwarded-*`, request ids.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::SocketAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, COOKIE};

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded either way; so is every
/// `proxy-*` name (PROTOCOL.md §3.5).
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether a header must not cross the proxy: a hop-by-hop name, a `proxy-*` name, or a
/// name the `Connection` header lists. For every field of one message, use [`HopByHop`].
pub fn is_hop_by_hop(name: &str, headers: &HeaderMap) -> bool {
    HopByHop::of(headers).contains(name)
}

/// The hop-by-hop rule for one message's fields, its `Connection` header looked up once
/// (a lookup per field hashed the name `connection` again for each).
pub struct HopByHop<'a> {
    connection: http::header::GetAll<'a, HeaderValue>,
}

impl<'a> HopByHop<'a> {
    pub fn of(headers: &'a HeaderMap) -> HopByHop<'a> {
        HopByHop {
            connection: headers.get_all(CONNECTION),
        }
    }

    /// Whether `name` (lower-case) must not cross the proxy.
    pub fn contains(&self, name: &str) -> bool {
        if HOP_BY_HOP.contains(&name) || name.starts_with("proxy-") {
            return true;
        }
        self.connection.iter().any(|v| {
            v.to_str()
                .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(name)))
                .unwrap_or(false)
        })
    }
}

/// The forwarding headers the gateway adds to a proxied request. Borrowed from the request
/// where it can be: this runs for every request, and each copy was an allocation.
pub struct Forwarded<'a> {
    /// The client's address as text, for `x-forwarded-for` and this hop's `Forwarded`
    /// element (written once a request).
    pub client: IpText,
    /// A trusted proxy's `x-forwarded-for`, then the client's address.
    joined: Option<String>,
    /// `x-forwarded-proto`; `None` when a trusted proxy's is kept.
    pub proto: Option<&'static str>,
    /// `x-forwarded-host`; `None` when a trusted proxy's is kept or there is no host.
    pub host: Option<&'a [u8]>,
}

impl Forwarded<'_> {
    /// The `X-Forwarded-For` value: the client's address, after any the request carried.
    pub fn for_value(&self) -> &[u8] {
        match &self.joined {
            Some(joined) => joined.as_bytes(),
            None => self.client.as_bytes(),
        }
    }
}

/// An IP address as text, without an allocation (an IPv6 address takes at most 45 bytes).
pub struct IpText {
    buf: [u8; 48],
    len: usize,
}

impl IpText {
    pub fn new(ip: std::net::IpAddr) -> IpText {
        let mut t = IpText {
            buf: [0; 48],
            len: 0,
        };
        match ip {
            // Most clients: four decimals by hand, not through `fmt` (twice the instructions).
            std::net::IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        t.push(b'.');
                    }
                    if octet >= 100 {
                        t.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        t.push(b'0' + octet / 10 % 10);
                    }
                    t.push(b'0' + octet % 10);
                }
            }
            std::net::IpAddr::V6(_) => {
                let _ = write!(t, "{ip}");
            }
        }
        t
    }

    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

pub const FORWARDED: &str = "forwarded";
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";
pub const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
pub const X_FORWARDED_HOST: &str = "x-forwarded-host";
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The headers through which frameworks learn a client's address, scheme, host, port or
/// path prefix from a proxy in front (chi's `RealIP`, Express's `trust proxy`, Rails, Django,
/// Werkzeug's `ProxyFix`, Spring, ASP.NET, Rack, Go's `httputil`): only a trusted proxy may
/// set them. The gateway's own are set after the client's headers (PROTOCOL.md §3.4).
const CLIENT_CLAIMS: [&str; 25] = [
    FORWARDED,
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    // the client's address
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "forwarded-for",
    "x-forwarded",
    "x-original-forwarded-for",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    // the scheme, port, host and path prefix it used
    "x-forwarded-protocol",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "front-end-https",
    "x-url-scheme",
    "x-forwarded-port",
    "x-forwarded-server",
    "x-forwarded-prefix",
];

/// Whether a client's header claims something about the client or its connection that only
/// a proxy in front can know: dropped unless the peer is a trusted proxy (then it is kept,
/// and `x-forwarded-for` extended).
pub fn is_forwarding(name: &str) -> bool {
    CLIENT_CLAIMS.contains(&name)
}

/// Whether a header name is dropped from every peer, trusted or not: a name with `_`. CGI
/// and WSGI (and so Django, Flask, PHP) map `_` and `-` to one key, so `X_Forwarded_For`
/// would pass for `X-Forwarded-For` behind a filter that only knows the dash spelling; nginx
/// and gunicorn drop such names by default too.
pub fn is_underscored(name: &str) -> bool {
    name.as_bytes().contains(&b'_')
}

/// Works out the forwarding headers for a request from `client` for `host` (the effective
/// host, `None` if the request names none), which came in over `scheme` (`http`, `https`).
/// From a `trusted` proxy, its `x-forwarded-for` is extended and its
/// `x-forwarded-proto`/`-host` are kept; from anyone else they are the gateway's alone.
pub fn forwarded<'a>(
    headers: &'a HeaderMap,
    host: Option<&'a [u8]>,
    client: SocketAddr,
    trusted: bool,
    scheme: &'static str,
) -> Forwarded<'a> {
    let ip = IpText::new(client.ip());
    // Untrusted, the client's own are not read at all.
    let prior: Vec<&str> = match trusted {
        true => headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect(),
        false => Vec::new(),
    };
    let joined = (!prior.is_empty()).then(|| {
        let mut joined = prior.join(", ");
        joined.push_str(", ");
        joined.push_str(std::str::from_utf8(ip.as_bytes()).unwrap_or_default());
        joined
    });
    let kept = |name| trusted && headers.contains_key(name);
    Forwarded {
        client: ip,
        joined,
        proto: (!kept(X_FORWARDED_PROTO)).then_some(scheme),
        host: if kept(X_FORWARDED_HOST) { None } else { host },
    }
}

/// This hop's RFC 7239 `Forwarded` element: `for=<client>;proto=<scheme>[;host=<host>]`, the
/// IPv6 node and a host that is not a token quoted (`for="[::1]"`, `host="a.example:8080"`).
/// It goes after any `Forwarded` the request carried, as a header line of its own.
pub fn forwarded_element(
    client: &IpText,
    v6: bool,
    host: Option<&[u8]>,
    scheme: &'static str,
) -> ForwardedElement {
    let mut out = ForwardedElement::new();
    out.extend_from_slice(b"for=");
    if v6 {
        out.extend_from_slice(b"\"[");
        out.extend_from_slice(client.as_bytes());
        out.extend_from_slice(b"]\"");
    } else {
        out.extend_from_slice(client.as_bytes());
    }
    out.extend_from_slice(b";proto=");
    out.extend_from_slice(scheme.as_bytes());
    if let Some(host) = host.filter(|h| !h.is_empty()) {
        out.extend_from_slice(b";host=");
        if host.iter().all(|&b| vyx_core::frame::is_tchar(b)) {
            out.extend_from_slice(host);
        } else {
            out.push(b'"');
            for &b in host {
                if b == b'"' || b == b'\\' {
                    out.push(b'\\');
                }
                out.push(b);
            }
            out.push(b'"');
        }
    }
    out
}

/// A `Forwarded` element, on the stack unless its host is long (it is built for every
/// request).
pub type ForwardedElement = smallvec::SmallVec<[u8; 128]>;

/// This hop's `via` element (RFC 9110 §7.6.3): the protocol the client used and the
/// gateway's pseudonym. It goes after any `via` the request carried, as a header line of its
/// own, so hosts read the client's HTTP version from the last element (spec/HOSTS.md §5).
pub fn via_element(version: http::Version) -> &'static [u8] {
    match version {
        http::Version::HTTP_10 => b"1.0 vyx",
        http::Version::HTTP_2 => b"2 vyx",
        _ => b"1.1 vyx",
    }
}

/// The client's `cookie` fields as the one value the gateway forwards, joined with `"; "`
/// in order (RFC 9113 §8.2.3): an HTTP/2 client may send each cookie-pair as a field of its
/// own, and a worker's framework reads one `Cookie` (WSGI joined them with `,`, and Flask
/// read `a=1,b=2` as one cookie). `None` when there is none.
pub fn joined_cookies(headers: &HeaderMap) -> Option<Cow<'_, [u8]>> {
    let mut crumbs = headers.get_all(COOKIE).iter();
    let first = crumbs.next()?.as_bytes();
    let Some(second) = crumbs.next() else {
        return Some(Cow::Borrowed(first));
    };
    let mut joined = first.to_vec();
    for crumb in std::iter::once(second).chain(crumbs) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(crumb.as_bytes());
    }
    Some(Cow::Owned(joined))
}

/// A worker's response head holds more fields than an `http::HeaderMap` can (24,576
/// names; a frame may carry 65,535): a stream error, not a panic of the request task.
#[derive(Debug)]
pub struct TooManyFields;

/// Copies a worker's response fields into the client's response headers. The codec has
/// validated each name and value, so only the count can fail.
pub fn response_headers(
    fields: vyx_core::frame::HeaderList,
    into: &mut HeaderMap,
) -> Result<(), TooManyFields> {
    into.try_reserve(fields.len() + 1)
        .map_err(|_| TooManyFields)?;
    for (name, value) in fields {
        // Values stay slices of the worker's frame (no copy).
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&name),
            HeaderValue::from_maybe_shared(value),
        ) else {
            continue; // the codec validated both; this cannot fail
        };
        into.try_append(name, value).map_err(|_| TooManyFields)?;
    }
    Ok(())
}

/// Fields a recipient needs before the body, so never trailers (RFC 9110 §6.5.1; net/http's
/// list of disallowed trailers, with the cookies): the gateway removes them from trailers
/// both ways (PROTOCOL.md §3.10), as it removes hop-by-hop and underscored names.
const NOT_TRAILERS: [&str; 16] = [
    "authorization",
    "cache-control",
    "content-encoding",
    "content-length",
    "content-range",
    "content-type",
    "cookie",
    "expect",
    "host",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "set-cookie",
    "www-authenticate",
];

/// Whether `name` (lower-case) may cross the gateway as a trailer field (§3.10).
pub fn is_trailer_field(name: &str) -> bool {
    !(HOP_BY_HOP.contains(&name)
        || name.starts_with("proxy-")
        || is_underscored(name)
        || NOT_TRAILERS.contains(&name))
}

/// A worker's TRAILERS as the client's trailer fields, without the fields §3.10 removes.
pub fn trailer_fields(fields: &vyx_core::frame::HeaderList) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in fields {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_maybe_shared(value.clone()),
        ) else {
            continue; // the codec validated both
        };
        if is_trailer_field(name.as_str()) {
            out.append(name, value);
        }
    }
    out
}

/// A client's trailer fields as the TRAILERS head block (§3.10), without the fields it
/// removes; values the codec would refuse are dropped with them.
pub fn request_trailers(fields: &HeaderMap) -> vyx_core::frame::HeaderList {
    fields
        .iter()
        .filter(|(n, v)| {
            is_trailer_field(n.as_str()) && vyx_core::frame::is_header_value(v.as_bytes())
        })
        .map(|(n, v)| {
            (
                bytes::Bytes::copy_from_slice(n.as_str().as_bytes()),
                bytes::Bytes::copy_from_slice(v.as_bytes()),
            )
        })
        .collect()
}

/// The `trailer` header's names (RFC 9110 §6.6.2) that may be trailers, as one value;
/// `None` when none is left. It announces the trailers on a connection that negotiated
/// them, and HTTP/1.1 sends only the announced ones (hyper's chunked encoder).
pub fn announced_trailers(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut names: Vec<String> = Vec::new();
    for v in headers.get_all(http::header::TRAILER) {
        let Ok(v) = v.to_str() else { continue };
        for n in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let n = n.to_ascii_lowercase();
            if is_trailer_field(&n) && !names.contains(&n) {
                names.push(n);
            }
        }
    }
    HeaderValue::from_str(&names.join(", "))
        .ok()
        .filter(|_| !names.is_empty())
}

/// A request id: 16 hex digits, unique per gateway process.
pub fn new_request_id(seq: u64, seed: u64) -> HeaderValue {
    let mut mix =
        vyx_core::backoff::SplitMix64::new(seed ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let v = mix.next_u64();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    for (i, d) in digits.iter_mut().enumerate() {
        *d = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
    // Owned by its `Bytes`: one allocation, and the clones (the access log's entry, the
    // response's header) share it; a copied slice cost a second one at the first clone.
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(digits))
        .expect("hex is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn trailers_lose_the_fields_rfc_9110_keeps_out_of_them() {
        let f = |n: &'static str, v: &'static str| (Bytes::from(n), Bytes::from(v));
        let fields = vec![
            f("grpc-status", "0"),
            f("content-length", "5"),
            f("set-cookie", "a=1"),
            f("x_forwarded_for", "1.2.3.4"),
            f("connection", "close"),
            f("proxy-x", "1"),
            f("server-timing", "db;dur=5"),
            f("grpc-message", ""),
        ];
        let out = trailer_fields(&fields);
        let names: Vec<&str> = out.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["grpc-status", "server-timing", "grpc-message"]);

        let mut h = HeaderMap::new();
        h.append(
            "trailer",
            HeaderValue::from_static("Grpc-Status, content-type"),
        );
        h.append(
            "trailer",
            HeaderValue::from_static("grpc-message,grpc-status"),
        );
        assert_eq!(announced_trailers(&h).unwrap(), "grpc-status, grpc-message");
        h.insert("trailer", HeaderValue::from_static("content-length"));
        assert_eq!(announced_trailers(&h), None);
    }

    #[test]
    fn the_names_a_connection_header_lists_are_hop_by_hop() {
        let mut h = HeaderMap::new();
        let hop = HopByHop::of(&h);
        assert!(hop.contains("te") && hop.contains("proxy-x") && !hop.contains("x-secret"));
        h.append(CONNECTION, HeaderValue::from_static("close"));
        h.append(CONNECTION, HeaderValue::from_static("keep-alive, X-Secret"));
        let hop = HopByHop::of(&h);
        assert!(hop.contains("x-secret") && hop.contains("close") && !hop.contains("accept"));
        assert!(is_hop_by_hop("x-secret", &h));
    }

    #[test]
    fn ip_text_holds_the_longest_addresses() {
        for ip in [
            "255.255.255.255",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
            "0.0.0.0",
            "10.9.100.199",
            "127.0.0.1",
            "1.20.255.9",
        ] {
            let parsed: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(
                IpText::new(parsed).as_bytes(),
                parsed.to_string().as_bytes()
            );
        }
    }

    #[test]
    fn cookie_crumbs_are_joined_with_a_semicolon_and_a_space() {
        let mut h = HeaderMap::new();
        assert_eq!(joined_cookies(&h), None);
        h.append(COOKIE, HeaderValue::from_static("a=1"));
        assert_eq!(joined_cookies(&h).as_deref(), Some(&b"a=1"[..]));
        h.append(COOKIE, HeaderValue::from_static("b=2"));
        h.append(COOKIE, HeaderValue::from_static("c=3; d=4"));
        assert_eq!(
            joined_cookies(&h).as_deref(),
            Some(&b"a=1; b=2; c=3; d=4"[..])
        );
    }

    #[test]
    fn request_ids_are_16_hex_digits_and_differ() {
        let a = new_request_id(1, 42);
        let b = new_request_id(2, 42);
        assert_ne!(a, b);
        for id in [a, b] {
            let s = id.to_str().unwrap();
            assert_eq!(s.len(), 16);
            assert!(s
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        }
    }

    #[test]
    fn the_forwarded_element_quotes_ipv6_and_non_token_hosts() {
        let v4 = IpText::new("10.1.2.3".parse().unwrap());
        assert_eq!(
            &forwarded_element(&v4, false, Some(b"example.org"), "http")[..],
            b"for=10.1.2.3;proto=http;host=example.org"
        );
        let v6 = IpText::new("::1".parse().unwrap());
        assert_eq!(
            &forwarded_element(&v6, true, Some(b"127.0.0.1:8080"), "http")[..],
            &b"for=\"[::1]\";proto=http;host=\"127.0.0.1:8080\""[..]
        );
        assert_eq!(
            &forwarded_element(&v4, false, None, "https")[..],
            b"for=10.1.2.3;proto=https"
        );
    }

    #[test]
    fn via_names_the_client_s_protocol_as_hosts_read_it() {
        for (version, want) in [
            (http::Version::HTTP_10, (1, 0)),
            (http::Version::HTTP_11, (1, 1)),
            (http::Version::HTTP_2, (2, 0)),
        ] {
            let element = via_element(version);
            let headers = [(&b"via"[..], &b"1.1 proxy"[..]), (&b"via"[..], element)];
            assert_eq!(
                vyx_core::host_rules::http_version(headers),
                want,
                "{version:?}"
            );
        }
    }

    #[test]
    fn a_trusted_proxy_s_headers_are_extended_others_replaced() {
        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.1"));
        h.append(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        let peer = "127.0.0.1:9".parse().unwrap();
        let f = forwarded(&h, Some(b"example.org"), peer, true, "http");
        assert_eq!(f.for_value(), b"10.0.0.1, 127.0.0.1");
        assert_eq!((f.proto, f.host), (None, Some(&b"example.org"[..])));
        let f = forwarded(&h, Some(b"example.org"), peer, false, "https");
        assert_eq!(f.for_value(), b"127.0.0.1");
        assert_eq!(f.proto, Some("https"));
        let empty = HeaderMap::new();
        let f = forwarded(&empty, None, "[::1]:9".parse().unwrap(), true, "http");
        assert_eq!(f.for_value(), b"::1");
        assert_eq!(f.host, None);
    }
}

//! The host rules (spec/HOSTS.md), written once for every SDK: what a worker's answer may
//! hold (lower-case names, no hop-by-hop fields, `content-length`, no body for 204 and
//! 304), and what a host reads off a request's forwarding headers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::Bytes;

use crate::frame::{self, Response};
use crate::limits::MAX_FRAME_SIZE;

pub(crate) const INTERNAL_ERROR: &[u8] = b"internal error";
pub(crate) const INTERNAL_ERROR_HEADERS: &[(&[u8], &[u8])] =
    &[(b"content-type", b"text/plain; charset=utf-8")];

/// Headers a worker must not send (PROTOCOL.md: the gateway's connection to the client is
/// its own), besides `proxy-*` and any header the `connection` header names.
const HOP_BY_HOP: [&[u8]; 6] = [
    b"connection",
    b"keep-alive",
    b"transfer-encoding",
    b"upgrade",
    b"te",
    b"trailer",
];

fn is_hop_by_hop(name: &[u8], listed: &[&[u8]]) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
        || name
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"proxy-"))
        || listed.iter().any(|t| name.eq_ignore_ascii_case(t))
}

/// The names the `connection` headers list (lazily allocated: most heads have none).
fn connection_tokens<N: AsRef<[u8]>, V: AsRef<[u8]>>(headers: &[(N, V)]) -> Vec<&[u8]> {
    let mut tokens = Vec::new();
    for (n, v) in headers {
        if n.as_ref().eq_ignore_ascii_case(b"connection") {
            tokens.extend(
                v.as_ref()
                    .split(|&b| b == b',')
                    .map(<[u8]>::trim_ascii)
                    .filter(|t| !t.is_empty()),
            );
        }
    }
    tokens
}

/// A decimal number without an allocation.
struct Decimal {
    buf: [u8; 20],
    start: usize,
}

impl Decimal {
    fn new(mut n: usize) -> Decimal {
        let mut d = Decimal {
            buf: [0; 20],
            start: 20,
        };
        loop {
            d.start -= 1;
            d.buf[d.start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                return d;
            }
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// Checks a handler's trailer fields (PROTOCOL.md §3.10) and encodes them as TRAILERS:
/// names lower-cased, hop-by-hop names dropped (the gateway removes the rest of what is no
/// trailer). `Err` says why they cannot be sent: a name or value a head could not carry, or
/// more than `MAX_TRAILERS_SIZE` bytes.
pub(crate) fn encode_trailers<N: AsRef<[u8]>, V: AsRef<[u8]>>(
    stream_id: u32,
    fields: &[(N, V)],
) -> Result<Bytes, String> {
    let headers = end_to_end_fields(fields, "trailer")?;
    let t = frame::Trailers { stream_id, headers };
    if t.headers.len() > 65535 || t.payload_len() > crate::limits::MAX_TRAILERS_SIZE {
        return Err(format!(
            "trailers of {} bytes exceed max_trailers_size ({})",
            t.payload_len(),
            crate::limits::MAX_TRAILERS_SIZE
        ));
    }
    Ok(t.encode())
}

/// `fields` with names lower-cased and hop-by-hop names dropped; `Err` names the first field
/// a head could not carry (`what` says which kind: "trailer", "header").
fn end_to_end_fields<N: AsRef<[u8]>, V: AsRef<[u8]>>(
    fields: &[(N, V)],
    what: &str,
) -> Result<frame::HeaderList, String> {
    let listed = connection_tokens(fields);
    let mut headers = Vec::with_capacity(fields.len());
    for (name, value) in fields {
        let (name, value) = (name.as_ref(), value.as_ref());
        if is_hop_by_hop(name, &listed) {
            continue;
        }
        if name.is_empty() || !name.iter().all(|&b| frame::is_tchar(b)) || name.len() > 65535 {
            return Err(format!(
                "{what} name {:?} is not a token",
                String::from_utf8_lossy(name)
            ));
        }
        if !frame::is_header_value(value) || value.len() > 65535 {
            return Err(format!(
                "value of {what} {:?} holds a forbidden byte or is longer than 65535 bytes",
                String::from_utf8_lossy(name)
            ));
        }
        headers.push((
            Bytes::from(name.to_ascii_lowercase()),
            Bytes::copy_from_slice(value),
        ));
    }
    Ok(headers)
}

/// Checks an interim (1xx) response (PROTOCOL.md §3.11) and encodes it as INFORMATIONAL:
/// a status in 100..=199 other than 101, fields as a head's. `Err` says why it cannot be
/// sent.
pub(crate) fn encode_informational<N: AsRef<[u8]>, V: AsRef<[u8]>>(
    stream_id: u32,
    status: u16,
    fields: &[(N, V)],
) -> Result<Bytes, String> {
    if !frame::is_informational_status(status) {
        return Err(format!(
            "status {status} is not an interim response (100..=199 except 101)"
        ));
    }
    let headers = end_to_end_fields(fields, "header")?;
    let i = frame::Informational {
        stream_id,
        status,
        headers,
    };
    let encoded = i.encode();
    if i.headers.len() > 65535 || encoded.len() > MAX_FRAME_SIZE {
        return Err(format!(
            "interim response of {} bytes exceeds the frame size limit",
            encoded.len()
        ));
    }
    Ok(encoded)
}

/// Checks a response head against the protocol and the host rules and encodes it: names
/// lower-cased, hop-by-hop headers dropped, `content-length` added for a whole body unless
/// the host gave one or the status has no body. A 101 answers an upgrade stream only
/// (`upgrade`) and keeps its `upgrade` header (HOSTS.md §7a). `Err` says why the head cannot
/// be sent.
pub(crate) fn encode_head<N: AsRef<[u8]>, V: AsRef<[u8]>>(
    stream_id: u32,
    status: u16,
    headers: &[(N, V)],
    body: Option<&[u8]>,
    end_stream: bool,
    upgrade: bool,
) -> Result<Bytes, String> {
    encode_head_with(stream_id, status, headers, body, end_stream, false, upgrade)
}

/// [`encode_head`]; `announce_trailers` keeps the `trailer` header, which on a connection
/// with `trailers` names the fields the body will end with (PROTOCOL.md §3.10).
pub(crate) fn encode_head_with<N: AsRef<[u8]>, V: AsRef<[u8]>>(
    stream_id: u32,
    status: u16,
    headers: &[(N, V)],
    body: Option<&[u8]>,
    end_stream: bool,
    announce_trailers: bool,
    upgrade: bool,
) -> Result<Bytes, String> {
    let switching = status == 101 && upgrade;
    if !(200..=599).contains(&status) && !switching {
        return Err(format!(
            "status {status} is outside 200..=599 (101 answers an upgrade request only)"
        ));
    }
    let listed = connection_tokens(headers);
    let kept = || {
        headers
            .iter()
            .map(|(n, v)| (n.as_ref(), v.as_ref()))
            .filter(|(n, _)| {
                !is_hop_by_hop(n, &listed)
                    || (announce_trailers && n.eq_ignore_ascii_case(b"trailer"))
                    || (switching && n.eq_ignore_ascii_case(b"upgrade"))
            })
    };
    let mut count = 0usize;
    let mut size = 0usize;
    let mut has_length = false;
    for (name, value) in kept() {
        if name.is_empty() || !name.iter().all(|&b| frame::is_tchar(b)) || name.len() > 65535 {
            return Err(format!(
                "header name {:?} is not a token",
                String::from_utf8_lossy(name)
            ));
        }
        if !frame::is_header_value(value) || value.len() > 65535 {
            return Err(format!(
                "value of header {:?} holds a forbidden byte or is longer than 65535 bytes",
                String::from_utf8_lossy(name)
            ));
        }
        has_length |= name.eq_ignore_ascii_case(b"content-length");
        count += 1;
        size += 4 + name.len() + value.len();
    }
    let length = match body {
        Some(b) if !has_length && status != 204 && status != 304 && !switching => {
            Some(Decimal::new(b.len()))
        }
        _ => None,
    };
    if let Some(l) = &length {
        count += 1;
        size += 4 + b"content-length".len() + l.as_bytes().len();
    }
    if count > u16::MAX as usize {
        return Err(format!("{count} headers; a response carries at most 65535"));
    }
    if frame::HEADER_LEN + 4 + size > MAX_FRAME_SIZE {
        return Err(format!(
            "response head of {} bytes exceeds the {MAX_FRAME_SIZE}-byte frame limit",
            frame::HEADER_LEN + 4 + size
        ));
    }
    let length_header = length
        .as_ref()
        .map(|l| (&b"content-length"[..], l.as_bytes()));
    Ok(Response::encode_parts(
        stream_id,
        end_stream,
        status,
        kept().chain(length_header),
        size,
    ))
}

/// The client's IP address as the gateway saw it: the last element of the last
/// `x-forwarded-for` field, which the gateway appends itself for the peer it accepted
/// (earlier elements come from the client or from proxies before the gateway, and can be
/// forged). An IPv4 or IPv6 address, with or without a port (`192.0.2.1:4711`,
/// `[2001:db8::1]:8080`), or an IPv6 address in brackets; `None` for anything else, with no
/// fall-back to an earlier element (spec/HOSTS.md §5, `spec/vectors/client.json`).
///
/// `headers` are (name, value) pairs in order, as a head block holds them.
///
/// ```
/// use vyx_core::host_rules::client_ip;
/// let headers = [(&b"x-forwarded-for"[..], &b"198.51.100.7, 10.0.0.2"[..])];
/// assert_eq!(client_ip(headers), Some("10.0.0.2".parse().unwrap()));
/// ```
pub fn client_ip<'h>(headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>) -> Option<IpAddr> {
    let e = last_element(headers, b"x-forwarded-for")?;
    let e = std::str::from_utf8(e).ok()?;
    if let Some(rest) = e.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        if !after.is_empty() && !after.strip_prefix(':').is_some_and(is_port) {
            return None;
        }
        return host.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Some((host, port)) = e.split_once(':').filter(|(_, p)| !p.contains(':')) {
        return is_port(port)
            .then(|| host.parse::<Ipv4Addr>().ok().map(IpAddr::V4))
            .flatten();
    }
    e.parse().ok()
}

/// The scheme the client used: `"https"` when the last element of the last
/// `x-forwarded-proto` field is `https` in any case, else `"http"` (spec/HOSTS.md §5).
///
/// ```
/// use vyx_core::host_rules::scheme;
/// assert_eq!(scheme([(&b"x-forwarded-proto"[..], &b"https"[..])]), "https");
/// assert_eq!(scheme([]), "http");
/// ```
pub fn scheme<'h>(headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>) -> &'static str {
    match last_element(headers, b"x-forwarded-proto") {
        Some(e) if e.eq_ignore_ascii_case(b"https") => "https",
        _ => "http",
    }
}

/// The HTTP version the client used, as `(major, minor)`: read from the last element of the
/// last `via` field, which the gateway appends itself naming the protocol it received
/// (`via: 2 vyx`; earlier elements are the client's or other proxies'). The element's
/// first word is the received protocol: an optional `HTTP/` and a version of one digit 1 to 9,
/// optionally `.` and one more digit (`1.0`, `1.1`, `2`, `HTTP/2.0`); an absent or unreadable
/// one gives HTTP/1.1 (spec/HOSTS.md §5, `spec/vectors/client.json`).
///
/// ```
/// use vyx_core::host_rules::http_version;
/// assert_eq!(http_version([(&b"via"[..], &b"1.1 cdn, 2 vyx"[..])]), (2, 0));
/// assert_eq!(http_version([]), (1, 1));
/// ```
pub fn http_version<'h>(headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>) -> (u8, u8) {
    const DEFAULT: (u8, u8) = (1, 1);
    let Some(e) = last_element(headers, b"via") else {
        return DEFAULT;
    };
    let protocol = e
        .split(|&b| b == b' ' || b == b'\t')
        .next()
        .unwrap_or_default();
    let version = protocol.strip_prefix(b"HTTP/").unwrap_or(protocol);
    match *version {
        [major @ b'1'..=b'9'] => (major - b'0', 0),
        [major @ b'1'..=b'9', b'.', minor @ b'0'..=b'9'] => (major - b'0', minor - b'0'),
        _ => DEFAULT,
    }
}

/// The last comma-separated element of the last field `name`, without spaces and tabs.
fn last_element<'h>(
    headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
    name: &[u8],
) -> Option<&'h [u8]> {
    let (_, value) = headers
        .into_iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .last()?;
    let last = value.rsplit(|&b| b == b',').next()?;
    Some(trim_ows(last))
}

fn trim_ows(mut b: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = b {
        b = rest;
    }
    b
}

/// A port as a forwarding element may carry it: 1 to 5 digits (the value is not used).
fn is_port(p: &str) -> bool {
    (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(frame: Bytes) -> frame::Response {
        match frame::Frame::decode(frame, MAX_FRAME_SIZE).unwrap() {
            frame::Frame::Response(r) => r,
            other => panic!("expected RESPONSE, got {other:?}"),
        }
    }

    fn names(r: &frame::Response) -> Vec<String> {
        r.headers
            .iter()
            .map(|(n, _)| String::from_utf8(n.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn hop_by_hop_headers_and_the_names_connection_lists_are_dropped() {
        let headers: &[(&str, &str)] = &[
            ("Connection", "close, X-Private"),
            ("keep-alive", "5"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("proxy-authenticate", "Basic"),
            ("Proxy-Connection", "keep-alive"),
            ("x-private", "1"),
            ("X-Kept", "yes"),
            ("content-type", "text/plain"),
        ];
        let r = decode(encode_head(1, 200, headers, Some(b"hi"), false, false).unwrap());
        assert_eq!(names(&r), ["x-kept", "content-type", "content-length"]);
        assert_eq!(&r.headers[2].1[..], b"2");
    }

    #[test]
    fn trailer_announces_the_trailers_only_where_they_are_carried() {
        let headers: &[(&str, &str)] = &[("Trailer", "grpc-status"), ("te", "trailers")];
        let r = decode(encode_head_with(1, 200, headers, None, false, true, false).unwrap());
        assert_eq!(names(&r), ["trailer"]);
        let r = decode(encode_head_with(1, 200, headers, None, false, false, false).unwrap());
        assert!(names(&r).is_empty());
    }

    #[test]
    fn content_length_is_added_only_where_it_belongs() {
        let none: &[(&str, &str)] = &[];
        let r = decode(encode_head(1, 200, none, Some(b""), true, false).unwrap());
        assert_eq!(
            (names(&r), &r.headers[0].1[..]),
            (vec!["content-length".into()], &b"0"[..])
        );
        assert!(r.end_stream);
        for status in [204, 304] {
            let r = decode(encode_head(1, status, none, Some(b""), true, false).unwrap());
            assert!(r.headers.is_empty(), "{status}");
        }
        let given: &[(&str, &str)] = &[("content-length", "10")];
        let r = decode(encode_head(1, 200, given, Some(b"abc"), false, false).unwrap());
        assert_eq!(r.headers.len(), 1, "the host's own length is kept");
        let r = decode(encode_head(1, 200, none, None, false, false).unwrap());
        assert!(r.headers.is_empty(), "a streamed body gets no length");
        assert_eq!(Decimal::new(1234567).as_bytes(), b"1234567");
    }

    #[test]
    fn a_101_answers_an_upgrade_only_and_keeps_its_upgrade_header() {
        let h: &[(&str, &str)] = &[
            ("upgrade", "websocket"),
            ("connection", "upgrade"),
            ("sec-websocket-accept", "x"),
        ];
        let r = decode(encode_head(1, 101, h, Some(b""), false, true).unwrap());
        assert_eq!(r.status, 101);
        assert_eq!(names(&r), ["upgrade", "sec-websocket-accept"], "no length");
        let err = encode_head(1, 101, h, None, false, false).unwrap_err();
        assert!(err.contains("upgrade request only"), "{err}");
        let r = decode(encode_head(1, 200, h, None, false, true).unwrap());
        assert_eq!(
            names(&r),
            ["sec-websocket-accept"],
            "a refusal drops upgrade"
        );
    }

    #[test]
    fn heads_the_protocol_cannot_carry_are_refused() {
        let none: &[(&str, &str)] = &[];
        assert!(encode_head(1, 199, none, None, false, false).is_err());
        assert!(encode_head(1, 600, none, None, false, false).is_err());
        let bad_name: &[(&str, &str)] = &[("bad name", "x")];
        assert!(encode_head(1, 200, bad_name, None, false, false).is_err());
        let bad_value: &[(&str, &str)] = &[("x", "a\r\nb")];
        assert!(encode_head(1, 200, bad_value, None, false, false).is_err());
        let huge = vec![("x-big".to_string(), "v".repeat(60_000)); 20];
        let err = encode_head(1, 200, &huge, None, false, false).unwrap_err();
        assert!(err.contains("frame limit"), "{err}");
    }
}

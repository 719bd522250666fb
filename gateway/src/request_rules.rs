//! What HTTP requires of a request before a front-line proxy passes it on: one valid Host
//! (RFC 9112 §3.2), and no transfer coding the gateway cannot undo (RFC 9112 §6.1).

use http::header::{HOST, TRANSFER_ENCODING};
use http::{StatusCode, Version};

/// Why a request is refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: &'static str,
    /// The `reason` label of the client-error counter.
    pub metric: &'static str,
}

const fn bad(message: &'static str) -> Refusal {
    Refusal {
        status: StatusCode::BAD_REQUEST,
        message,
        metric: "bad_host",
    }
}

/// Checks the Host rules and the transfer codings.
pub fn check(parts: &http::request::Parts) -> Result<(), Refusal> {
    let mut hosts = parts.headers.get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(bad("more than one Host header"));
    }
    if host.is_none() && parts.version == Version::HTTP_11 {
        return Err(bad("an HTTP/1.1 request needs a Host header"));
    }
    // The authority that names the target: HTTP/2's `:authority`, or an absolute-form
    // target's, wins over `Host`, which is then not checked (RFC 9112 §3.2.2, RFC 9113
    // §8.3.1).
    match parts.uri.authority() {
        Some(a) if !is_host(a.as_str().as_bytes()) => {
            return Err(bad("the request target's authority is not a valid host"))
        }
        Some(_) => {}
        None => {
            if let Some(h) = host {
                if !h.is_empty() && !is_host(h.as_bytes()) {
                    return Err(bad("the Host header is not a valid host[:port]"));
                }
            }
        }
    }
    let mut chunked = 0;
    for value in parts.headers.get_all(TRANSFER_ENCODING) {
        for coding in value.as_bytes().split(|&b| b == b',') {
            if !coding.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err(Refusal {
                    status: StatusCode::NOT_IMPLEMENTED,
                    message: "only the chunked transfer coding is supported",
                    metric: "unsupported_transfer_coding",
                });
            }
            chunked += 1;
        }
    }
    // RFC 9112 §6.1: chunked is applied once. Read once, a body chunked twice would pass
    // its inner chunk lines to the worker as data, where a second parser may frame it.
    if chunked > 1 {
        return Err(Refusal {
            status: StatusCode::BAD_REQUEST,
            message: "the chunked transfer coding is applied more than once",
            metric: "bad_transfer_coding",
        });
    }
    Ok(())
}

/// The host the request is for, as forwarded to the worker in `host`: the target's
/// authority when it has one, else the Host header; `None` when there is neither.
pub fn effective_host(parts: &http::request::Parts) -> Option<&[u8]> {
    match parts.uri.authority() {
        Some(a) => Some(a.as_str().as_bytes()),
        None => parts.headers.get(HOST).map(|h| h.as_bytes()),
    }
}

/// `uri-host [":" port]` (RFC 9110 §7.2): a valid URI authority without userinfo.
fn is_host(v: &[u8]) -> bool {
    // The port, if any, is what follows the last ':' outside an IPv6 literal's brackets.
    let after_host = v.iter().rposition(|&b| b == b']').map_or(0, |i| i + 1);
    let port_ok = match v[after_host..].iter().rposition(|&b| b == b':') {
        Some(i) => v[after_host + i + 1..].iter().all(u8::is_ascii_digit),
        None => true,
    };
    let name_ok = if v.first() == Some(&b'[') {
        // An IP literal: `Authority` checks it (parsing a slice copies it, so only here).
        http::uri::Authority::try_from(v).is_ok_and(|a| !a.host().is_empty())
    } else {
        // A DNS name or IPv4 address. RFC 3986 would allow sub-delims (`,` `;` `!` …) and
        // `%` in a reg-name, but no host has them and `a.example,b.example` is what two
        // Host lines joined by an intermediary look like: which one a worker's framework
        // takes is anyone's guess.
        let name = &v[..after_host + port_start(&v[after_host..])];
        !name.is_empty()
            && name
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    };
    port_ok && name_ok && !v.contains(&b'@') && v.iter().all(|b| b.is_ascii_graphic())
}

/// Where `:port` starts in what follows an IP literal (or in a whole name): its length if none.
fn port_start(v: &[u8]) -> usize {
    v.iter().rposition(|&b| b == b':').unwrap_or(v.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(version: Version, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().version(version).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn host_rules() {
        let ok = |v, uri, h: &[(&str, &str)]| check(&parts(v, uri, h)).is_ok();
        assert!(ok(Version::HTTP_11, "/", &[("host", "a.example")]));
        assert!(ok(Version::HTTP_11, "/", &[("host", "a.example:8080")]));
        assert!(ok(Version::HTTP_11, "/", &[("host", "[::1]:80")]));
        assert!(ok(Version::HTTP_11, "/", &[("host", "")]));
        assert!(ok(Version::HTTP_10, "/", &[]));
        assert!(!ok(Version::HTTP_11, "/", &[]));
        assert!(!ok(
            Version::HTTP_11,
            "/",
            &[("host", "a.example"), ("host", "b.example")]
        ));
        for bad in [
            "a b",
            "user@a.example",
            "a.example:port",
            "a/b",
            "[::1",
            "a.example,b.example",
            "a.example, b.example",
            "a.example;b",
            "a%2e.example",
        ] {
            assert!(!ok(Version::HTTP_11, "/", &[("host", bad)]), "{bad}");
        }
        // The absolute-form target's authority is the host; Host is not looked at.
        let p = parts(
            Version::HTTP_11,
            "http://t.example/x",
            &[("host", "not valid")],
        );
        assert!(check(&p).is_ok());
        assert_eq!(effective_host(&p), Some(&b"t.example"[..]));
        assert!(!ok(
            Version::HTTP_11,
            "http://u@t.example/x",
            &[("host", "t")]
        ));
    }

    #[test]
    fn only_chunked_is_accepted() {
        let te = |v: &str| {
            check(&parts(
                Version::HTTP_11,
                "/",
                &[("host", "h"), ("transfer-encoding", v)],
            ))
        };
        assert!(te("chunked").is_ok());
        assert!(te("Chunked").is_ok());
        for v in ["chunked, chunked", "chunked,Chunked"] {
            assert_eq!(te(v).unwrap_err().status, StatusCode::BAD_REQUEST, "{v}");
        }
        // Two header lines count as one list (RFC 9110 §5.3).
        let two = parts(
            Version::HTTP_11,
            "/",
            &[
                ("host", "h"),
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
        );
        assert_eq!(check(&two).unwrap_err().status, StatusCode::BAD_REQUEST);
        for v in ["gzip, chunked", "identity", "deflate"] {
            assert_eq!(
                te(v).unwrap_err().status,
                StatusCode::NOT_IMPLEMENTED,
                "{v}"
            );
        }
    }
}

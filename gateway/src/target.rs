//! The request target as the gateway routes and frames it. REQUEST carries a target of bytes
//! 0x21–0x7E only (PROTOCOL.md §3.4), but hyper (the `http` crate) accepts raw UTF-8 in a
//! path or query (`GET /caf\xc3\xa9`, `?q=\xc3\xbc`): framed as received, every SDK would
//! refuse the REQUEST. The gateway percent-encodes each byte >= 0x80 instead, as browsers
//! do, before routing: the literal route `/café` matches as `/caf%C3%A9` does, and the
//! application decodes the same UTF-8.

use http::uri::{PathAndQuery, Uri};
use http::StatusCode;

/// Why a target cannot be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unframable {
    pub status: StatusCode,
    pub message: &'static str,
}

/// The URI to route and frame: `None` when `uri` can be used as it is (the usual case,
/// checked in one pass), else a copy whose path and query have every byte >= 0x80
/// percent-encoded (`%XX`, upper-case hex). A byte no target may hold (a space, a control
/// byte, DEL: the `http` crate refuses them today, this keeps the promise if it ever lets
/// one through) → 400; a target that encoding takes past what a URI may hold → 414.
pub fn for_worker(uri: &Uri) -> Result<Option<Uri>, Unframable> {
    let Some(pq) = uri.path_and_query() else {
        return Ok(None);
    };
    let raw = pq.as_str().as_bytes();
    if raw.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
        return Ok(None);
    }
    let high = raw.iter().filter(|&&b| b >= 0x80).count();
    let mut out = String::with_capacity(raw.len() + 2 * high);
    for &b in raw {
        match b {
            0x21..=0x7e => out.push(b as char),
            0x80.. => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 0xf) as usize] as char);
            }
            _ => {
                return Err(Unframable {
                    status: StatusCode::BAD_REQUEST,
                    message: "the request target holds a space or a control byte",
                })
            }
        }
    }
    let pq = PathAndQuery::try_from(out).map_err(|_| Unframable {
        status: StatusCode::URI_TOO_LONG,
        message: "the request target is too long once its non-ASCII bytes are percent-encoded",
    })?;
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(pq);
    // Scheme and authority are the ones `uri` had, and a path starting with '/' goes with
    // any authority: rebuilding cannot fail.
    Ok(Some(
        Uri::from_parts(parts).expect("same parts, ASCII path"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(raw: &[u8]) -> Option<String> {
        let uri = Uri::try_from(raw).expect("http accepts it");
        for_worker(&uri)
            .expect("encodable")
            .map(|u| u.path_and_query().unwrap().as_str().to_owned())
    }

    #[test]
    fn ascii_targets_are_left_alone() {
        assert_eq!(encoded(b"/caf%C3%A9?q=%20"), None);
        assert_eq!(encoded(b"/a/{b}\"c"), None);
    }

    #[test]
    fn bytes_above_0x7f_are_percent_encoded_in_path_and_query() {
        assert_eq!(
            encoded("/café/ü?q=ü&r=%C3".as_bytes()).as_deref(),
            Some("/caf%C3%A9/%C3%BC?q=%C3%BC&r=%C3")
        );
        // An absolute-form target keeps its scheme and authority.
        let uri = Uri::try_from("http://example.com/ü".as_bytes()).unwrap();
        let out = for_worker(&uri).unwrap().unwrap();
        assert_eq!(out.to_string(), "http://example.com/%C3%BC");
    }

    #[test]
    fn a_target_too_long_once_encoded_is_414() {
        let mut raw = b"/".to_vec();
        raw.extend("é".repeat(20_000).bytes()); // 40,001 bytes, 120,001 encoded
        let uri = Uri::try_from(&raw[..]).unwrap();
        assert_eq!(
            for_worker(&uri).unwrap_err().status,
            StatusCode::URI_TOO_LONG
        );
    }
}

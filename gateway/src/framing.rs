//! How the client's response is framed from the worker's head (PROTOCOL.md §3.5): by the
//! DATA the worker sends, checked against its `content-length`, with no body at all for
//! HEAD, 204 and 304.

use bytes::Bytes;

/// What the client's response body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPlan {
    /// No body reaches the client (HEAD, 204, 304, or a RESPONSE with END_STREAM). Any
    /// DATA the worker still sends is not forwarded.
    Empty,
    /// Exactly this many bytes: more DATA is a protocol error, fewer at END_STREAM aborts.
    Exact(u64),
    /// Framed by the worker's END_STREAM (chunked on HTTP/1.1).
    Open,
}

/// The response's framing: its body plan, and the one `content-length` the client gets
/// (`None`: remove every `content-length` the worker sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    pub body: BodyPlan,
    pub content_length: Option<u64>,
}

/// Works out the framing, or why the head cannot be framed (the client gets 502).
pub fn framing(
    status: u16,
    headers: &[(Bytes, Bytes)],
    is_head: bool,
    end_stream: bool,
) -> Result<Framing, String> {
    let declared = content_length(headers)?;
    if status == 204 || status == 304 {
        // RFC 9110 §8.6, §15.3.5: never a body, and no content-length on a 204; a 304's
        // would describe another response, so it is dropped too.
        return Ok(Framing {
            body: BodyPlan::Empty,
            content_length: None,
        });
    }
    if is_head {
        // The length a GET would have had (RFC 9110 §9.3.2); no body.
        return Ok(Framing {
            body: BodyPlan::Empty,
            content_length: declared,
        });
    }
    if end_stream {
        return match declared {
            Some(n) if n > 0 => Err(format!(
                "RESPONSE ends the stream but its content-length is {n}"
            )),
            _ => Ok(Framing {
                body: BodyPlan::Empty,
                content_length: declared,
            }),
        };
    }
    Ok(Framing {
        body: declared.map_or(BodyPlan::Open, BodyPlan::Exact),
        content_length: declared,
    })
}

/// The worker's `content-length`: every field and every comma-separated element must be the
/// same decimal number (RFC 9110 §8.6); `None` when there is none.
fn content_length(headers: &[(Bytes, Bytes)]) -> Result<Option<u64>, String> {
    let mut found: Option<u64> = None;
    for (name, value) in headers {
        if &name[..] != b"content-length" {
            continue;
        }
        for element in value.split(|&b| b == b',') {
            let digits = element.trim_ascii();
            let n = parse_decimal(digits).ok_or_else(|| {
                format!(
                    "invalid content-length {:?}",
                    String::from_utf8_lossy(value)
                )
            })?;
            match found {
                Some(m) if m != n => {
                    return Err(format!("conflicting content-length values {m} and {n}"))
                }
                _ => found = Some(n),
            }
        }
    }
    Ok(found)
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cl(values: &[&'static str]) -> Vec<(Bytes, Bytes)> {
        values
            .iter()
            .map(|v| {
                (
                    Bytes::from_static(b"content-length"),
                    Bytes::from_static(v.as_bytes()),
                )
            })
            .collect()
    }

    #[test]
    fn content_length_must_be_one_decimal_value() {
        assert_eq!(content_length(&cl(&[])), Ok(None));
        assert_eq!(content_length(&cl(&["18"])), Ok(Some(18)));
        assert_eq!(content_length(&cl(&["18", " 18 , 18"])), Ok(Some(18)));
        for bad in [
            &["18", "19"][..],
            &["-1"],
            &["+5"],
            &[""],
            &["1 8"],
            &["0x10"],
            &["99999999999999999999999"],
            &["5,"],
        ] {
            assert!(content_length(&cl(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bodiless_statuses_and_head_have_no_body() {
        let h = cl(&["18"]);
        let empty = |content_length| Framing {
            body: BodyPlan::Empty,
            content_length,
        };
        assert_eq!(framing(204, &h, false, false), Ok(empty(None)));
        assert_eq!(framing(304, &h, false, false), Ok(empty(None)));
        assert_eq!(framing(200, &h, true, false), Ok(empty(Some(18))));
        assert_eq!(framing(200, &h, false, true).map_err(|_| ()), Err(()));
        assert_eq!(framing(200, &cl(&["0"]), false, true), Ok(empty(Some(0))));
        assert_eq!(
            framing(200, &h, false, false).unwrap().body,
            BodyPlan::Exact(18)
        );
        assert_eq!(
            framing(200, &[], false, false).unwrap().body,
            BodyPlan::Open
        );
    }
}

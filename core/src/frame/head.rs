//! The head block shared by REQUEST and RESPONSE: `str16` byte strings (u16 big-endian
//! length, then the bytes) and header lists with lower-case names, order and repeats kept.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::DecodeError;

/// Header fields in wire order: (lower-case name, raw value). Repeats are separate entries.
pub type HeaderList = Vec<(Bytes, Bytes)>;

/// A cursor over a frame payload that reports which frame ran short.
pub(crate) struct Reader {
    buf: Bytes,
    pos: usize,
    frame: &'static str,
}

impl Reader {
    pub(crate) fn new(buf: Bytes, frame: &'static str) -> Reader {
        Reader { buf, pos: 0, frame }
    }

    fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if self.buf.len() - self.pos < n {
            return Err(DecodeError::TruncatedPayload(self.frame));
        }
        let out = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        if self.buf.len() - self.pos < 2 {
            return Err(DecodeError::TruncatedPayload(self.frame));
        }
        let v = u16::from_be_bytes([self.buf[self.pos], self.buf[self.pos + 1]]);
        self.pos += 2;
        Ok(v)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn str16(&mut self) -> Result<Bytes, DecodeError> {
        let n = self.u16()? as usize;
        self.take(n)
    }

    pub(crate) fn rest(&mut self) -> Bytes {
        let out = self.buf.slice(self.pos..);
        self.pos = self.buf.len();
        out
    }

    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.pos != self.buf.len() {
            return Err(DecodeError::TrailingBytes(self.frame));
        }
        Ok(())
    }

    /// Reads a header count and that many (name, value) pairs, validating both.
    pub(crate) fn headers(&mut self) -> Result<HeaderList, DecodeError> {
        let count = self.u16()? as usize;
        // Each entry takes at least 4 bytes: bound the allocation by what can be there.
        let mut out = Vec::with_capacity(count.min((self.buf.len() - self.pos) / 4));
        for _ in 0..count {
            let name = self.str16()?;
            let value = self.str16()?;
            if !is_header_name(&name) {
                return Err(DecodeError::InvalidHeaderName);
            }
            if !is_header_value(&value) {
                return Err(DecodeError::InvalidHeaderValue);
            }
            out.push((name, value));
        }
        Ok(out)
    }
}

/// RFC 9110 `tchar`.
#[inline]
pub fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_'
        | b'`' | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}

/// A method is a non-empty token.
pub fn is_method(m: &[u8]) -> bool {
    !m.is_empty() && m.iter().all(|&b| is_tchar(b))
}

/// A header name is a non-empty token without upper-case letters.
pub fn is_header_name(n: &[u8]) -> bool {
    // A table: every header of every request and response is checked, byte by byte.
    !n.is_empty() && n.iter().all(|&b| HEADER_NAME_BYTES[b as usize])
}

const HEADER_NAME_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = matches!(c,
            b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_'
            | b'`' | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z');
        b += 1;
    }
    t
};

/// A header value is RFC 9110 field-value bytes only: HTAB, 0x20–0x7E and 0x80–0xFF; every
/// other control byte (0x00–0x08, 0x0A–0x1F, 0x7F) is refused.
pub fn is_header_value(v: &[u8]) -> bool {
    v.iter()
        .all(|&b| b == b'\t' || (0x20..=0x7e).contains(&b) || b >= 0x80)
}

/// A target is origin-form: starts with '/', visible ASCII only.
pub fn is_target(t: &[u8]) -> bool {
    t.first() == Some(&b'/') && t.iter().all(|&b| (0x21..=0x7e).contains(&b))
}

#[inline]
pub(crate) fn str16_len(s: &[u8]) -> usize {
    2 + s.len()
}

/// Writes a `str16`. Callers guarantee `s.len() <= u16::MAX` (encoders truncate nothing:
/// the gateway and SDKs refuse longer fields before building a frame).
#[inline]
pub(crate) fn put_str16(buf: &mut BytesMut, s: &[u8]) {
    debug_assert!(
        s.len() <= u16::MAX as usize,
        "str16 longer than 65535 bytes"
    );
    buf.put_u16(s.len() as u16);
    buf.put_slice(s);
}

pub(crate) fn headers_len(headers: &[(Bytes, Bytes)]) -> usize {
    2 + headers
        .iter()
        .map(|(n, v)| str16_len(n) + str16_len(v))
        .sum::<usize>()
}

pub(crate) fn put_headers(buf: &mut BytesMut, headers: &[(Bytes, Bytes)]) {
    buf.put_u16(headers.len() as u16);
    for (n, v) in headers {
        put_str16(buf, n);
        put_str16(buf, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_name_table_is_tchar_without_upper_case() {
        for b in 0..=255u8 {
            assert_eq!(
                is_header_name(&[b]),
                is_tchar(b) && !b.is_ascii_uppercase(),
                "byte {b:#04x}"
            );
        }
        assert!(!is_header_name(b""));
        assert!(is_header_name(b"x-request-id"));
        assert!(!is_header_name(b"X-Request-Id"));
    }
}

//! RESPONSE (0x02): the response head, worker → gateway, once per stream.
//!
//! ```text
//! status u16 | header_count u16 | (name str16, value str16)*
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use super::head::{self, put_headers, put_str16, HeaderList, Reader};
use super::{end_flag, kind, put_header, HEADER_LEN};
use crate::error::DecodeError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub stream_id: u32,
    /// The response has no body.
    pub end_stream: bool,
    /// 101 (only on an UPGRADE stream, PROTOCOL.md §4.5) or 200..=599.
    pub status: u16,
    pub headers: HeaderList,
}

impl Response {
    pub(super) fn decode(
        stream_id: u32,
        end_stream: bool,
        payload: Bytes,
    ) -> Result<Response, DecodeError> {
        let mut r = Reader::new(payload, "RESPONSE");
        let status = r.u16()?;
        // Whether a 101 answers an UPGRADE stream is the receiver's stream rule (§4.5).
        if status != 101 && !(200..=599).contains(&status) {
            return Err(DecodeError::InvalidStatus(status));
        }
        let headers = r.headers()?;
        r.finish()?;
        Ok(Response {
            stream_id,
            end_stream,
            status,
            headers,
        })
    }

    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(HEADER_LEN + 2 + head::headers_len(&self.headers));
        put_header(
            &mut buf,
            kind::RESPONSE,
            end_flag(self.end_stream),
            self.stream_id,
        );
        buf.put_u16(self.status);
        put_headers(&mut buf, &self.headers);
        buf.freeze()
    }

    /// Encodes a RESPONSE straight from borrowed parts, with no intermediate [`Response`]:
    /// a host's hot path. Header names are lower-cased as they are copied. The caller has
    /// checked the fields (tokens and valid values of at most 65535 bytes, at most 65535
    /// headers); `capacity` is the payload size it expects, to allocate once.
    pub fn encode_parts<'a>(
        stream_id: u32,
        end_stream: bool,
        status: u16,
        headers: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
        capacity: usize,
    ) -> Bytes {
        let mut buf = BytesMut::with_capacity(HEADER_LEN + 4 + capacity);
        put_header(&mut buf, kind::RESPONSE, end_flag(end_stream), stream_id);
        buf.put_u16(status);
        let count_pos = buf.len();
        buf.put_u16(0);
        let mut count: u16 = 0;
        for (name, value) in headers {
            let start = buf.len() + 2;
            put_str16(&mut buf, name);
            buf[start..].make_ascii_lowercase();
            put_str16(&mut buf, value);
            count += 1;
        }
        buf[count_pos..count_pos + 2].copy_from_slice(&count.to_be_bytes());
        buf.freeze()
    }
}

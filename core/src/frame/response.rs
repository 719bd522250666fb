//! RESPONSE (0x02): the response head, worker → gateway, once per stream.
//!
//! ```text
//! status u16 | header_count u16 | (name str16, value str16)*
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use super::head::{self, put_headers, HeaderList, Reader};
use super::{end_flag, kind, put_header, HEADER_LEN};
use crate::error::DecodeError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub stream_id: u32,
    /// The response has no body.
    pub end_stream: bool,
    /// 200..=599 (1xx is reserved for a later version).
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
        if !(200..=599).contains(&status) {
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
}

//! INFORMATIONAL (0x05): an interim 1xx response, worker → gateway, before the stream's
//! RESPONSE, on a connection that negotiated the `informational` extension (PROTOCOL.md
//! §3.11). Its payload is a RESPONSE head with a 1xx status; it has no flags.
//!
//! ```text
//! status u16 (100..=199, not 101) | header_count u16 | (name str16, value str16)*
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use super::head::{self, put_headers, HeaderList, Reader};
use super::{kind, put_header, HEADER_LEN};
use crate::error::DecodeError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Informational {
    pub stream_id: u32,
    /// 100..=199 except 101 (an upgrade's 101 is a RESPONSE).
    pub status: u16,
    pub headers: HeaderList,
}

/// Whether `status` may be sent in INFORMATIONAL.
pub fn is_informational_status(status: u16) -> bool {
    (100..=199).contains(&status) && status != 101
}

impl Informational {
    pub(super) fn decode(stream_id: u32, payload: Bytes) -> Result<Informational, DecodeError> {
        let mut r = Reader::new(payload, "INFORMATIONAL");
        let status = r.u16()?;
        if !is_informational_status(status) {
            return Err(DecodeError::InvalidStatus(status));
        }
        let headers = r.headers()?;
        r.finish()?;
        Ok(Informational {
            stream_id,
            status,
            headers,
        })
    }

    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(HEADER_LEN + 2 + head::headers_len(&self.headers));
        put_header(&mut buf, kind::INFORMATIONAL, 0, self.stream_id);
        buf.put_u16(self.status);
        put_headers(&mut buf, &self.headers);
        buf.freeze()
    }
}

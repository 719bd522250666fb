//! RESET (0x03): cancels a stream in both directions. `code u32 | reason UTF-8`.

use bytes::{BufMut, Bytes, BytesMut};

use super::head::Reader;
use super::{kind, put_header, HEADER_LEN};
use crate::error::{DecodeError, ResetCode};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reset {
    pub stream_id: u32,
    /// Raw code; see [`ResetCode::from_u32`].
    pub code: u32,
    pub reason: String,
}

impl Reset {
    pub fn new(stream_id: u32, code: ResetCode, reason: impl Into<String>) -> Reset {
        Reset {
            stream_id,
            code: code as u32,
            reason: reason.into(),
        }
    }

    pub(super) fn decode(stream_id: u32, payload: Bytes) -> Result<Reset, DecodeError> {
        let mut r = Reader::new(payload, "RESET");
        let code = r.u32()?;
        let reason =
            String::from_utf8(r.rest().to_vec()).map_err(|_| DecodeError::InvalidResetReason)?;
        Ok(Reset {
            stream_id,
            code,
            reason,
        })
    }

    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(HEADER_LEN + 4 + self.reason.len());
        put_header(&mut buf, kind::RESET, 0, self.stream_id);
        buf.put_u32(self.code);
        buf.put_slice(self.reason.as_bytes());
        buf.freeze()
    }
}

//! WINDOW (0x08): grants the peer more send credit on a stream. `increment u32`.

use bytes::{BufMut, Bytes, BytesMut};

use super::head::Reader;
use super::{kind, put_header, HEADER_LEN};
use crate::error::DecodeError;
use crate::limits::MAX_WINDOW;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub stream_id: u32,
    /// 1..=2^31-1
    pub increment: u32,
}

impl Window {
    pub(super) fn decode(stream_id: u32, payload: Bytes) -> Result<Window, DecodeError> {
        let mut r = Reader::new(payload, "WINDOW");
        let increment = r.u32()?;
        r.finish()?;
        if increment == 0 || increment > MAX_WINDOW {
            return Err(DecodeError::InvalidWindowIncrement(increment));
        }
        Ok(Window {
            stream_id,
            increment,
        })
    }

    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(HEADER_LEN + 4);
        put_header(&mut buf, kind::WINDOW, 0, self.stream_id);
        buf.put_u32(self.increment);
        buf.freeze()
    }
}

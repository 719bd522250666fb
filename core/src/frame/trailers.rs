//! TRAILERS (0x04): trailer fields, both directions, on a connection that negotiated the
//! `trailers` extension (PROTOCOL.md §3.10). It ends the sender's direction of the stream,
//! as END_STREAM does, so it carries no flags.
//!
//! ```text
//! header_count u16 | (name str16, value str16)*
//! ```

use bytes::{Bytes, BytesMut};

use super::head::{self, put_headers, HeaderList, Reader};
use super::{kind, put_header, HEADER_LEN};
use crate::error::DecodeError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trailers {
    pub stream_id: u32,
    pub headers: HeaderList,
}

impl Trailers {
    pub(super) fn decode(stream_id: u32, payload: Bytes) -> Result<Trailers, DecodeError> {
        let mut r = Reader::new(payload, "TRAILERS");
        let headers = r.headers()?;
        r.finish()?;
        Ok(Trailers { stream_id, headers })
    }

    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(HEADER_LEN + head::headers_len(&self.headers));
        put_header(&mut buf, kind::TRAILERS, 0, self.stream_id);
        put_headers(&mut buf, &self.headers);
        buf.freeze()
    }

    /// The payload's length, the size `limits::MAX_TRAILERS_SIZE` bounds.
    pub fn payload_len(&self) -> usize {
        head::headers_len(&self.headers)
    }
}

//! DATA (0x00): body bytes of one direction of a stream.

use bytes::{BufMut, Bytes, BytesMut};

use super::{end_flag, kind, put_header, HEADER_LEN};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data {
    pub stream_id: u32,
    /// Last frame of this direction of the stream.
    pub end_stream: bool,
    pub data: Bytes,
}

impl Data {
    pub fn encode(&self) -> Bytes {
        Data::encode_parts(self.stream_id, self.end_stream, &self.data)
    }

    /// Encodes a DATA frame without building a [`Data`] first (the hot path).
    pub fn encode_parts(stream_id: u32, end_stream: bool, data: &[u8]) -> Bytes {
        let mut buf = BytesMut::with_capacity(HEADER_LEN + data.len());
        put_header(&mut buf, kind::DATA, end_flag(end_stream), stream_id);
        buf.put_slice(data);
        buf.freeze()
    }
}

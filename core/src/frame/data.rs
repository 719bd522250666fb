//! DATA (0x00): body bytes of one direction of a stream.

use bytes::{BufMut, Bytes, BytesMut};

use super::{end_flag, kind, HEADER_LEN};

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
        buf.put_slice(&Data::header(stream_id, end_stream));
        buf.put_slice(data);
        buf.freeze()
    }

    /// The 6-byte header of a DATA frame: the frame is this followed by its payload.
    ///
    /// ```
    /// use vyx_core::frame::Data;
    /// let head = Data::header(3, true);
    /// assert_eq!([&head[..], b"hi"].concat(), Data::encode_parts(3, true, b"hi"));
    /// ```
    pub fn header(stream_id: u32, end_stream: bool) -> [u8; HEADER_LEN] {
        let [a, b, c, d] = stream_id.to_be_bytes();
        [kind::DATA, end_flag(end_stream), a, b, c, d]
    }
}

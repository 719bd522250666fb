//! REQUEST (0x01): opens a stream, gateway → worker. Carries the matched route and the
//! request head.
//!
//! ```text
//! route_id u16 | method str16 | target str16
//! | param_count u16 | (name str16, value str16)*
//! | header_count u16 | (name str16, value str16)*
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use super::head::{self, put_str16, str16_len, HeaderList, Reader};
use super::{end_flag, kind, put_header, HEADER_LEN};
use crate::error::DecodeError;
use crate::limits::MAX_FRAME_SIZE;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub stream_id: u32,
    /// The request has no body.
    pub end_stream: bool,
    /// Flag UPGRADE: the client asked to switch protocols (PROTOCOL.md §4.5).
    pub upgrade: bool,
    /// The id the worker gave the matched route in HELLO or ROUTES.
    pub route_id: u16,
    pub method: Bytes,
    /// Origin-form request target as the client sent it: path and query, not decoded.
    pub target: Bytes,
    /// Path parameters in pattern order: (name, percent-decoded value).
    pub params: Vec<(Bytes, Bytes)>,
    pub headers: HeaderList,
}

impl Request {
    pub(super) fn decode(
        stream_id: u32,
        end_stream: bool,
        upgrade: bool,
        payload: Bytes,
    ) -> Result<Request, DecodeError> {
        let mut r = Reader::new(payload, "REQUEST");
        let route_id = r.u16()?;
        let method = r.str16()?;
        if !head::is_method(&method) {
            return Err(DecodeError::InvalidMethod);
        }
        let target = r.str16()?;
        if !head::is_target(&target) {
            return Err(DecodeError::InvalidTarget);
        }
        let count = r.u16()? as usize;
        let mut params = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            let name = r.str16()?;
            let value = r.str16()?;
            if name.is_empty() || std::str::from_utf8(&name).is_err() {
                return Err(DecodeError::InvalidParamName);
            }
            params.push((name, value));
        }
        let headers = r.headers()?;
        r.finish()?;
        Ok(Request {
            stream_id,
            end_stream,
            upgrade,
            route_id,
            method,
            target,
            params,
            headers,
        })
    }

    pub fn encode(&self) -> Bytes {
        let mut w = RequestWriter::new(
            self.stream_id,
            self.end_stream,
            self.route_id,
            &self.method,
            &self.target,
            64,
        );
        for (n, v) in &self.params {
            w.param(n, v);
        }
        w.begin_headers();
        for (n, v) in &self.headers {
            w.header(n, v);
        }
        let mut frame = w.finish().expect("a Request built in code fits in a frame");
        if self.upgrade {
            set_upgrade(&mut frame);
        }
        frame.freeze()
    }
}

/// Encodes a REQUEST straight from borrowed parts, with no intermediate [`Request`]: the
/// gateway's hot path. Call [`RequestWriter::param`] for each parameter, then
/// [`RequestWriter::begin_headers`], [`RequestWriter::header`] for each header, then
/// [`RequestWriter::finish`]. The counts are patched in at the end.
///
/// Client input can be longer than the wire allows (a field over 65535 bytes, more than
/// 65535 entries, a frame over [`MAX_FRAME_SIZE`]): `finish` then refuses the request
/// instead of emitting a frame the worker would reject.
pub struct RequestWriter {
    buf: BytesMut,
    count_pos: usize,
    count: usize,
    too_large: bool,
}

/// A request that does not fit in one REQUEST frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("request head does not fit in a frame (a field over 65535 bytes, over 65535 entries, or over {MAX_FRAME_SIZE} bytes in all)")]
pub struct HeadTooLarge;

impl RequestWriter {
    pub fn new(
        stream_id: u32,
        end_stream: bool,
        route_id: u16,
        method: &[u8],
        target: &[u8],
        size_hint: usize,
    ) -> RequestWriter {
        let mut w = RequestWriter {
            buf: BytesMut::with_capacity(
                HEADER_LEN + 2 + str16_len(method) + str16_len(target) + 4 + size_hint,
            ),
            count_pos: 0,
            count: 0,
            too_large: false,
        };
        put_header(&mut w.buf, kind::REQUEST, end_flag(end_stream), stream_id);
        w.buf.put_u16(route_id);
        w.str16(method);
        w.str16(target);
        w.count_pos = w.buf.len();
        w.buf.put_u16(0);
        w
    }

    pub fn param(&mut self, name: &[u8], value: &[u8]) {
        self.str16(name);
        self.str16(value);
        self.count += 1;
    }

    pub fn begin_headers(&mut self) {
        self.patch_count();
        self.count_pos = self.buf.len();
        self.buf.put_u16(0);
    }

    pub fn header(&mut self, name: &[u8], value: &[u8]) {
        self.str16(name);
        self.str16(value);
        self.count += 1;
    }

    /// The encoded frame. Its stream and route ids can still be set with
    /// [`set_stream_id`] and [`set_route_id`].
    pub fn finish(mut self) -> Result<BytesMut, HeadTooLarge> {
        self.patch_count();
        if self.too_large || self.buf.len() > MAX_FRAME_SIZE {
            return Err(HeadTooLarge);
        }
        Ok(self.buf)
    }

    fn str16(&mut self, s: &[u8]) {
        if s.len() > u16::MAX as usize {
            self.too_large = true;
        } else if !self.too_large {
            put_str16(&mut self.buf, s);
        }
    }

    fn patch_count(&mut self) {
        let count = std::mem::take(&mut self.count);
        let Ok(c) = u16::try_from(count) else {
            self.too_large = true;
            return;
        };
        self.buf[self.count_pos..self.count_pos + 2].copy_from_slice(&c.to_be_bytes());
    }
}

/// Sets the route id of an encoded REQUEST: the gateway encodes a request once and names
/// the route with the id the chosen replica gave it.
pub fn set_route_id(request: &mut [u8], route_id: u16) {
    request[HEADER_LEN..HEADER_LEN + 2].copy_from_slice(&route_id.to_be_bytes());
}

/// Sets the UPGRADE flag of an encoded REQUEST: the gateway sets it only for a connection
/// whose WELCOME listed the extension (PROTOCOL.md §4.5).
pub fn set_upgrade(request: &mut [u8]) {
    request[1] |= super::flags::UPGRADE;
}

/// Sets the stream id of an encoded frame: the gateway picks the id at the moment it
/// queues the frame, so that ids reach the socket in increasing order.
pub fn set_stream_id(frame: &mut [u8], stream_id: u32) {
    frame[2..6].copy_from_slice(&stream_id.to_be_bytes());
}

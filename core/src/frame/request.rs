//! REQUEST (0x01): opens a stream, gateway → worker. Carries the matched route and the
//! request head.
//!
//! ```text
//! route_id u16 | method str16 | target str16
//! | param_count u16 | (name str16, value str16)*
//! | header_count u16 | (name str16, value str16)*
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use super::head::{self, put_headers, put_str16, str16_len, HeaderList, Reader};
use super::{end_flag, kind, put_header, HEADER_LEN};
use crate::error::DecodeError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub stream_id: u32,
    /// The request has no body.
    pub end_stream: bool,
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
            route_id,
            method,
            target,
            params,
            headers,
        })
    }

    pub fn encode(&self) -> Bytes {
        let params_len: usize = self
            .params
            .iter()
            .map(|(n, v)| str16_len(n) + str16_len(v))
            .sum();
        let len = HEADER_LEN
            + 2
            + str16_len(&self.method)
            + str16_len(&self.target)
            + 2
            + params_len
            + head::headers_len(&self.headers);
        let mut buf = BytesMut::with_capacity(len);
        put_header(
            &mut buf,
            kind::REQUEST,
            end_flag(self.end_stream),
            self.stream_id,
        );
        buf.put_u16(self.route_id);
        put_str16(&mut buf, &self.method);
        put_str16(&mut buf, &self.target);
        buf.put_u16(self.params.len() as u16);
        for (n, v) in &self.params {
            put_str16(&mut buf, n);
            put_str16(&mut buf, v);
        }
        put_headers(&mut buf, &self.headers);
        buf.freeze()
    }
}

//! The frame codec. One WebSocket binary message is one frame:
//!
//! ```text
//! +--------+--------+--------------------------------+----------------------+
//! | type u8| flags u8|      stream_id u32 (BE)        | payload (to the end) |
//! +--------+--------+--------------------------------+----------------------+
//! ```
//!
//! Each frame type lives in its own module with a `decode` and an `encode`, as in h2.
//! Decoding is zero-copy: byte strings in a decoded frame are slices of the message.
//!
//! ```
//! use bytes::Bytes;
//! use vyx_core::frame::{Data, Frame};
//!
//! let frame = Frame::Data(Data { stream_id: 7, end_stream: true, data: Bytes::from_static(b"hi") });
//! let wire = frame.encode();
//! assert_eq!(&wire[..], b"\x00\x01\x00\x00\x00\x07hi");
//! assert_eq!(Frame::decode(wire, vyx_core::limits::MAX_FRAME_SIZE).unwrap(), frame);
//! ```

pub mod control;
mod data;
mod head;
mod informational;
pub mod json;
mod request;
mod reset;
mod response;
mod trailers;
mod window;

pub use control::{ControlMessage, Drain, ErrorMessage, Hello, RouteSpec, Routes, Welcome};
pub use data::Data;
pub use head::{is_header_name, is_header_value, is_method, is_target, is_tchar, HeaderList};
pub use informational::{is_informational_status, Informational};
pub use request::{set_route_id, set_stream_id, set_upgrade, HeadTooLarge, Request, RequestWriter};
pub use reset::Reset;
pub use response::Response;
pub use trailers::Trailers;
pub use window::Window;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::DecodeError;

/// Length of the fixed frame header.
pub const HEADER_LEN: usize = 6;

/// Frame type bytes.
pub mod kind {
    pub const DATA: u8 = 0x00;
    pub const REQUEST: u8 = 0x01;
    pub const RESPONSE: u8 = 0x02;
    pub const RESET: u8 = 0x03;
    /// Extension `trailers` (PROTOCOL.md §3.10).
    pub const TRAILERS: u8 = 0x04;
    /// Extension `informational` (PROTOCOL.md §3.11).
    pub const INFORMATIONAL: u8 = 0x05;
    pub const WINDOW: u8 = 0x08;
    pub const HELLO: u8 = 0x10;
    pub const WELCOME: u8 = 0x11;
    pub const DRAIN: u8 = 0x12;
    pub const ROUTES: u8 = 0x13;
    pub const ERROR: u8 = 0x14;
}

/// Flag bits.
pub mod flags {
    /// Ends the sender's direction of the stream (DATA, REQUEST, RESPONSE).
    pub const END_STREAM: u8 = 0x01;
    /// REQUEST only, extension `upgrade`: the client asked to switch
    /// protocols; a RESPONSE 101 turns the stream into a byte pipe (PROTOCOL.md §4.5).
    pub const UPGRADE: u8 = 0x02;
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Data(Data),
    Request(Request),
    Response(Response),
    Reset(Reset),
    Trailers(Trailers),
    Informational(Informational),
    Window(Window),
    Hello(Hello),
    Welcome(Welcome),
    Drain(Drain),
    Routes(Routes),
    Error(ErrorMessage),
}

/// A decode error with its scope (PROTOCOL.md §3.2, §8): most errors are the connection's
/// (the receiver closes), but a REQUEST, RESPONSE, TRAILERS or INFORMATIONAL whose 6-byte
/// header is valid and whose head does not decode (a bad target, method, status, header name or value, param name, a
/// truncated or overlong head) is confined to its stream: the receiver RESETs that stream
/// `protocol_error` and the connection goes on. A head has no state shared with other
/// streams (no header compression), so nothing else is lost with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeFailure {
    /// The connection fails: close with [`DecodeError::close_code`].
    Connection(DecodeError),
    /// Only `stream_id` fails: RESET it `protocol_error`. `frame` is the type byte
    /// ([`kind::REQUEST`], [`kind::RESPONSE`], [`kind::TRAILERS`] or
    /// [`kind::INFORMATIONAL`]): received in the wrong direction, or on a connection that did
    /// not negotiate its extension, the frame is still a connection error (§8.2).
    Stream {
        stream_id: u32,
        frame: u8,
        error: DecodeError,
    },
}

impl DecodeFailure {
    /// The error kind, whatever its scope.
    pub fn error(&self) -> &DecodeError {
        match self {
            DecodeFailure::Connection(e) | DecodeFailure::Stream { error: e, .. } => e,
        }
    }

    /// The stream the error is confined to, if it is stream-scoped.
    pub fn stream_id(&self) -> Option<u32> {
        match self {
            DecodeFailure::Connection(_) => None,
            DecodeFailure::Stream { stream_id, .. } => Some(*stream_id),
        }
    }

    pub fn into_error(self) -> DecodeError {
        match self {
            DecodeFailure::Connection(e) | DecodeFailure::Stream { error: e, .. } => e,
        }
    }
}

impl From<DecodeError> for DecodeFailure {
    fn from(e: DecodeError) -> DecodeFailure {
        DecodeFailure::Connection(e)
    }
}

impl Frame {
    /// Decodes one WebSocket message. `max_frame_size` counts the whole message. Every error
    /// is reported as the connection's; [`Frame::decode_scoped`] tells stream errors apart.
    pub fn decode(msg: Bytes, max_frame_size: usize) -> Result<Frame, DecodeError> {
        Frame::decode_scoped(msg, max_frame_size).map_err(DecodeFailure::into_error)
    }

    /// [`Frame::decode`], with the scope of the error: a REQUEST, RESPONSE, TRAILERS or
    /// INFORMATIONAL head that does not decode after a valid frame header is
    /// [`DecodeFailure::Stream`].
    pub fn decode_scoped(msg: Bytes, max_frame_size: usize) -> Result<Frame, DecodeFailure> {
        if msg.len() > max_frame_size {
            return Err(DecodeError::FrameTooLarge {
                size: msg.len(),
                max: max_frame_size,
            }
            .into());
        }
        if msg.len() < HEADER_LEN {
            return Err(DecodeError::TruncatedHeader(msg.len()).into());
        }
        let ty = msg[0];
        let fl = msg[1];
        let stream_id = u32::from_be_bytes([msg[2], msg[3], msg[4], msg[5]]);
        let name = type_name(ty).ok_or(DecodeError::UnknownType(ty))?;
        let allowed = match ty {
            kind::DATA | kind::RESPONSE => flags::END_STREAM,
            kind::REQUEST => flags::END_STREAM | flags::UPGRADE,
            _ => 0,
        };
        if fl & !allowed != 0 {
            return Err(DecodeError::InvalidFlags {
                frame: name,
                flags: fl,
            }
            .into());
        }
        let is_control = ty >= kind::HELLO;
        if is_control && stream_id != 0 {
            return Err(DecodeError::StreamIdNonzero {
                frame: name,
                stream_id,
            }
            .into());
        }
        if !is_control && stream_id == 0 {
            return Err(DecodeError::StreamIdZero(name).into());
        }
        let end_stream = fl & flags::END_STREAM != 0;
        let payload = msg.slice(HEADER_LEN..);
        let stream_error = |error| DecodeFailure::Stream {
            stream_id,
            frame: ty,
            error,
        };
        Ok(match ty {
            kind::DATA => Frame::Data(Data {
                stream_id,
                end_stream,
                data: payload,
            }),
            kind::REQUEST => {
                let upgrade = fl & flags::UPGRADE != 0;
                Frame::Request(
                    Request::decode(stream_id, end_stream, upgrade, payload)
                        .map_err(stream_error)?,
                )
            }
            kind::RESPONSE => Frame::Response(
                Response::decode(stream_id, end_stream, payload).map_err(stream_error)?,
            ),
            kind::TRAILERS => {
                Frame::Trailers(Trailers::decode(stream_id, payload).map_err(stream_error)?)
            }
            kind::INFORMATIONAL => Frame::Informational(
                Informational::decode(stream_id, payload).map_err(stream_error)?,
            ),
            kind::RESET => Frame::Reset(Reset::decode(stream_id, payload)?),
            kind::WINDOW => Frame::Window(Window::decode(stream_id, payload)?),
            kind::HELLO => Frame::Hello(control::decode(&payload)?),
            kind::WELCOME => Frame::Welcome(control::decode(&payload)?),
            kind::DRAIN => Frame::Drain(control::decode(&payload)?),
            kind::ROUTES => Frame::Routes(control::decode(&payload)?),
            kind::ERROR => Frame::Error(control::decode(&payload)?),
            _ => unreachable!("type_name accepted only known types"),
        })
    }

    /// Encodes the frame into one contiguous buffer, ready to be one WebSocket message.
    pub fn encode(&self) -> Bytes {
        match self {
            Frame::Data(f) => f.encode(),
            Frame::Request(f) => f.encode(),
            Frame::Response(f) => f.encode(),
            Frame::Reset(f) => f.encode(),
            Frame::Trailers(f) => f.encode(),
            Frame::Informational(f) => f.encode(),
            Frame::Window(f) => f.encode(),
            Frame::Hello(m) => control::encode(m),
            Frame::Welcome(m) => control::encode(m),
            Frame::Drain(m) => control::encode(m),
            Frame::Routes(m) => control::encode(m),
            Frame::Error(m) => control::encode(m),
        }
    }

    /// The frame's type name, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Frame::Data(_) => "DATA",
            Frame::Request(_) => "REQUEST",
            Frame::Response(_) => "RESPONSE",
            Frame::Reset(_) => "RESET",
            Frame::Trailers(_) => "TRAILERS",
            Frame::Informational(_) => "INFORMATIONAL",
            Frame::Window(_) => "WINDOW",
            Frame::Hello(_) => "HELLO",
            Frame::Welcome(_) => "WELCOME",
            Frame::Drain(_) => "DRAIN",
            Frame::Routes(_) => "ROUTES",
            Frame::Error(_) => "ERROR",
        }
    }
}

/// The name of a known frame type byte.
pub fn type_name(ty: u8) -> Option<&'static str> {
    Some(match ty {
        kind::DATA => "DATA",
        kind::REQUEST => "REQUEST",
        kind::RESPONSE => "RESPONSE",
        kind::RESET => "RESET",
        kind::TRAILERS => "TRAILERS",
        kind::INFORMATIONAL => "INFORMATIONAL",
        kind::WINDOW => "WINDOW",
        kind::HELLO => "HELLO",
        kind::WELCOME => "WELCOME",
        kind::DRAIN => "DRAIN",
        kind::ROUTES => "ROUTES",
        kind::ERROR => "ERROR",
        _ => return None,
    })
}

/// Writes the 6-byte header.
#[inline]
pub(crate) fn put_header(buf: &mut BytesMut, ty: u8, fl: u8, stream_id: u32) {
    buf.put_u8(ty);
    buf.put_u8(fl);
    buf.put_u32(stream_id);
}

#[inline]
pub(crate) fn end_flag(end_stream: bool) -> u8 {
    if end_stream {
        flags::END_STREAM
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_hex(hex: &str) -> Result<Frame, DecodeFailure> {
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        Frame::decode_scoped(Bytes::from(bytes), crate::limits::MAX_FRAME_SIZE)
    }

    #[test]
    fn a_bad_response_head_is_scoped_to_its_stream() {
        // Status 600, an upper-case name, a truncated head, a trailing byte: stream 7 only.
        for hex in [
            "02010000000702580000",
            "02010000000700c800010001410000",
            "020100000007",
            "02010000000700c80000ff",
        ] {
            let err = decode_hex(hex).unwrap_err();
            assert_eq!(err.stream_id(), Some(7), "{hex}: {err:?}");
        }
    }

    #[test]
    fn a_bad_request_head_is_scoped_to_its_stream() {
        // Raw UTF-8 in the target, a method with a space, a control byte in a header value,
        // an empty param name, a head ending inside a field, a trailing byte: stream 9 only.
        let mut bad = Vec::new();
        let req = |target: &[u8], method: &[u8], params: &[(&[u8], &[u8])], value: &[u8]| {
            let mut p = vec![0, 0];
            for s in [method, target] {
                p.extend_from_slice(&(s.len() as u16).to_be_bytes());
                p.extend_from_slice(s);
            }
            p.extend_from_slice(&(params.len() as u16).to_be_bytes());
            for (n, v) in params {
                for s in [n, v] {
                    p.extend_from_slice(&(s.len() as u16).to_be_bytes());
                    p.extend_from_slice(s);
                }
            }
            p.extend_from_slice(&[0, 1, 0, 1, b'x']);
            p.extend_from_slice(&(value.len() as u16).to_be_bytes());
            p.extend_from_slice(value);
            let mut msg = vec![kind::REQUEST, 1, 0, 0, 0, 9];
            msg.extend_from_slice(&p);
            msg
        };
        bad.push(req("/café".as_bytes(), b"GET", &[], b"v"));
        bad.push(req(b"/", b"G T", &[], b"v"));
        bad.push(req(b"/", b"GET", &[], b"a\x01b"));
        bad.push(req(b"/", b"GET", &[(b"", b"v")], b"v"));
        let good = req(b"/", b"GET", &[], b"v");
        assert!(Frame::decode_scoped(Bytes::from(good.clone()), MAX).is_ok());
        bad.push(good[..good.len() - 1].to_vec());
        bad.push([&good[..], &[0]].concat());
        for msg in bad {
            match Frame::decode_scoped(Bytes::from(msg.clone()), MAX).unwrap_err() {
                DecodeFailure::Stream {
                    stream_id: 9,
                    frame: kind::REQUEST,
                    ..
                } => {}
                other => panic!("{msg:02x?}: {other:?}"),
            }
        }
    }

    const MAX: usize = crate::limits::MAX_FRAME_SIZE;

    #[test]
    fn a_bad_trailers_or_informational_head_is_scoped_to_its_stream() {
        for hex in [
            "040000000005000100013a0000",   // TRAILERS with a pseudo-header name
            "04000000000500",               // TRAILERS ending inside its count
            "0400000000050000ff",           // TRAILERS with a trailing byte
            "05000000000500650000",         // INFORMATIONAL 101
            "0500000000050067000100014c00", // INFORMATIONAL 103 with an upper-case name
        ] {
            match decode_hex(hex).unwrap_err() {
                DecodeFailure::Stream {
                    stream_id: 5,
                    frame: kind::TRAILERS | kind::INFORMATIONAL,
                    ..
                } => {}
                other => panic!("{hex}: {other:?}"),
            }
        }
        // Their header checks stay the connection's: no flags, never stream 0.
        for hex in [
            "0401000000050000",
            "0400000000000000",
            "05010000000500670000",
        ] {
            assert_eq!(decode_hex(hex).unwrap_err().stream_id(), None, "{hex}");
        }
    }

    #[test]
    fn header_errors_and_other_frames_stay_connection_errors() {
        for hex in [
            "02040000000700c80000", // RESPONSE with a reserved flag
            "02000000000000c80000", // RESPONSE on stream 0
            "0104000000070000",     // REQUEST with a reserved flag
            "0101000000000000",     // REQUEST on stream 0
            "080000000007000000",   // WINDOW too short
            "00",                   // truncated header
        ] {
            let err = decode_hex(hex).unwrap_err();
            assert_eq!(err.stream_id(), None, "{hex}: {err:?}");
        }
    }
}

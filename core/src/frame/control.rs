//! Control frames (HELLO, WELCOME, DRAIN, ROUTES, ERROR): stream 0, a JSON payload.

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{kind, put_header, HEADER_LEN};
use crate::error::DecodeError;
use crate::handshake::{Drain, ErrorMessage, Hello, Routes, Welcome};

/// A JSON control message and the frame type that carries it.
pub trait ControlMessage: Serialize + DeserializeOwned {
    const TYPE: u8;
    const NAME: &'static str;
}

impl ControlMessage for Hello {
    const TYPE: u8 = kind::HELLO;
    const NAME: &'static str = "HELLO";
}
impl ControlMessage for Welcome {
    const TYPE: u8 = kind::WELCOME;
    const NAME: &'static str = "WELCOME";
}
impl ControlMessage for Drain {
    const TYPE: u8 = kind::DRAIN;
    const NAME: &'static str = "DRAIN";
}
impl ControlMessage for Routes {
    const TYPE: u8 = kind::ROUTES;
    const NAME: &'static str = "ROUTES";
}
impl ControlMessage for ErrorMessage {
    const TYPE: u8 = kind::ERROR;
    const NAME: &'static str = "ERROR";
}

pub(super) fn decode<M: ControlMessage>(payload: &[u8]) -> Result<M, DecodeError> {
    crate::handshake::check_json_strict(payload)
        .and_then(|()| serde_json::from_slice(payload))
        .map_err(|e| DecodeError::InvalidControlPayload {
            frame: M::NAME,
            reason: e.to_string(),
        })
}

pub(super) fn encode<M: ControlMessage>(msg: &M) -> Bytes {
    let mut buf = BytesMut::with_capacity(HEADER_LEN + 128);
    put_header(&mut buf, M::TYPE, 0, 0);
    let mut w = buf.writer();
    serde_json::to_writer(&mut w, msg).expect("control messages always serialize");
    w.into_inner().freeze()
}

//! The frame decoder (`core/src/frame`): any message either decodes or is refused with an
//! error, never a panic; `decode` and `decode_scoped` agree; whatever decodes re-encodes to
//! a message that decodes to the same frame; the size limit counts the whole message; the
//! header is checked in the order of §3.2 (a plain reference names the first failure); and
//! what the codec accepts in a head, the `http` crate the gateway and the Rust SDK build
//! their requests and responses with accepts too (the gateway drops a RESPONSE header that
//! `http` refuses, trusting the codec to have refused it first).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use vyx_core::frame::{DecodeFailure, Frame};
use vyx_core::limits::MAX_FRAME_SIZE;
use vyx_core::DecodeError;

fuzz_target!(|data: &[u8]| {
    let msg = Bytes::copy_from_slice(data);
    let scoped = Frame::decode_scoped(msg.clone(), MAX_FRAME_SIZE);
    let plain = Frame::decode(msg.clone(), MAX_FRAME_SIZE);
    let header_kind = plain
        .as_ref()
        .err()
        .map(DecodeError::kind)
        .filter(|k| HEADER_KINDS.contains(k));
    assert_eq!(header_kind, header_verdict(data), "§3.2 order");
    assert_eq!(
        plain,
        scoped.clone().map_err(DecodeFailure::into_error),
        "decode and decode_scoped disagree"
    );
    match scoped {
        Ok(frame) => {
            let wire = frame.encode();
            let again = Frame::decode(wire.clone(), MAX_FRAME_SIZE).unwrap_or_else(|e| {
                panic!("{frame:?} re-encodes to {wire:02x?}, which fails: {e}")
            });
            assert_eq!(again, frame, "re-encoding changed the frame");
            http_accepts(&frame);
            // Every error a valid message can get is about its size once the limit is below it.
            if !msg.is_empty() {
                assert!(matches!(
                    Frame::decode(msg.clone(), msg.len() - 1),
                    Err(DecodeError::FrameTooLarge { .. })
                ));
            }
        }
        Err(DecodeFailure::Stream {
            stream_id, frame, ..
        }) => {
            // Only a head (REQUEST, RESPONSE, TRAILERS, INFORMATIONAL) with a valid header
            // fails on its stream alone.
            assert!(matches!(
                data[0],
                vyx_core::frame::kind::REQUEST
                    | vyx_core::frame::kind::RESPONSE
                    | vyx_core::frame::kind::TRAILERS
                    | vyx_core::frame::kind::INFORMATIONAL
            ));
            assert_eq!(frame, data[0]);
            assert_ne!(stream_id, 0);
            assert_eq!(
                stream_id,
                u32::from_be_bytes([data[2], data[3], data[4], data[5]])
            );
        }
        Err(DecodeFailure::Connection(e)) => {
            // Errors carry a close code and print; neither may panic.
            let _ = (e.close_code(), e.to_string());
        }
    }
});

/// The error kinds of the 6-byte header (§3.2 steps 2–5).
const HEADER_KINDS: [&str; 5] = [
    "truncated_header",
    "unknown_type",
    "invalid_flags",
    "stream_id_zero",
    "stream_id_nonzero",
];

/// The first header check of §3.2 that `data` fails, if any (written from the spec's table,
/// apart from the decoder).
fn header_verdict(data: &[u8]) -> Option<&'static str> {
    let [ty, fl, a, b, c, d, ..] = *data else {
        return Some("truncated_header");
    };
    let stream_frame = matches!(ty, 0x00..=0x05 | 0x08);
    if !stream_frame && !(0x10..=0x14).contains(&ty) {
        return Some("unknown_type");
    }
    // END_STREAM on DATA, REQUEST and RESPONSE; UPGRADE on REQUEST (§3.1, §4.5).
    let allowed = match ty {
        0x01 => 0x03,
        0x00 | 0x02 => 0x01,
        _ => 0x00,
    };
    if fl & !allowed != 0 {
        return Some("invalid_flags");
    }
    match (stream_frame, u32::from_be_bytes([a, b, c, d]) == 0) {
        (true, true) => Some("stream_id_zero"),
        (false, false) => Some("stream_id_nonzero"),
        _ => None,
    }
}

fn http_accepts(frame: &Frame) {
    let headers = match frame {
        Frame::Request(r) => {
            assert!(
                http::Method::from_bytes(&r.method).is_ok(),
                "method {:?}",
                r.method
            );
            &r.headers
        }
        Frame::Response(r) => {
            assert!(http::StatusCode::from_u16(r.status).is_ok());
            &r.headers
        }
        Frame::Informational(r) => {
            assert!(http::StatusCode::from_u16(r.status).is_ok());
            &r.headers
        }
        Frame::Trailers(t) => &t.headers,
        _ => return,
    };
    for (name, value) in headers {
        assert!(
            http::HeaderName::from_bytes(name).is_ok(),
            "header name {name:?}"
        );
        assert!(
            http::HeaderValue::from_bytes(value).is_ok(),
            "header value {value:?}"
        );
    }
}

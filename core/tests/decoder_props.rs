//! Property tests: the decoder never panics, whatever the bytes, and every frame the
//! encoder can build decodes back to itself.

use bytes::Bytes;
use proptest::prelude::*;
use vyx_core::frame::{Data, Frame, Informational, Request, Reset, Response, Trailers, Window};

const MAX: usize = 64 * 1024;

fn token() -> impl Strategy<Value = Bytes> {
    "[a-z0-9-]{1,20}".prop_map(Bytes::from)
}

fn header_value() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(
        any::<u8>().prop_filter("field-value bytes", |&b| {
            b == b'\t' || (0x20..=0x7e).contains(&b) || b >= 0x80
        }),
        0..64,
    )
    .prop_map(Bytes::from)
}

fn frame() -> impl Strategy<Value = Frame> {
    let id = 1u32..=u32::MAX;
    prop_oneof![
        (
            id.clone(),
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..512)
        )
            .prop_map(|(stream_id, end_stream, d)| Frame::Data(Data {
                stream_id,
                end_stream,
                data: d.into()
            })),
        (
            id.clone(),
            any::<bool>(),
            any::<u16>(),
            "[A-Z]{1,8}",
            "/[a-zA-Z0-9/%?=&._~-]{0,60}",
            proptest::collection::vec(
                (token(), proptest::collection::vec(any::<u8>(), 0..32)),
                0..4
            ),
            proptest::collection::vec((token(), header_value()), 0..8),
        )
            .prop_map(
                |(stream_id, end_stream, route_id, method, target, params, headers)| {
                    Frame::Request(Request {
                        stream_id,
                        end_stream,
                        upgrade: false,
                        route_id,
                        method: method.into(),
                        target: target.into(),
                        params: params.into_iter().map(|(n, v)| (n, v.into())).collect(),
                        headers,
                    })
                }
            ),
        (
            id.clone(),
            any::<bool>(),
            200u16..=599,
            proptest::collection::vec((token(), header_value()), 0..8)
        )
            .prop_map(|(stream_id, end_stream, status, headers)| Frame::Response(
                Response {
                    stream_id,
                    end_stream,
                    status,
                    headers
                }
            )),
        (
            id.clone(),
            proptest::collection::vec((token(), header_value()), 0..8)
        )
            .prop_map(|(stream_id, headers)| Frame::Trailers(Trailers { stream_id, headers })),
        (
            id.clone(),
            (100u16..=199).prop_filter("not 101", |&s| s != 101),
            proptest::collection::vec((token(), header_value()), 0..8)
        )
            .prop_map(
                |(stream_id, status, headers)| Frame::Informational(Informational {
                    stream_id,
                    status,
                    headers
                })
            ),
        (id.clone(), any::<u32>(), "\\PC{0,40}").prop_map(
            |(stream_id, code, reason)| Frame::Reset(Reset {
                stream_id,
                code,
                reason
            })
        ),
        (id, 1u32..=0x7fff_ffff).prop_map(|(stream_id, increment)| Frame::Window(Window {
            stream_id,
            increment
        })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Frame::decode(Bytes::from(data), MAX);
    }

    #[test]
    fn known_header_arbitrary_payload_never_panics(
        ty in prop::sample::select(vec![0x00u8, 0x01, 0x02, 0x03, 0x04, 0x05, 0x08, 0x10, 0x11, 0x12, 0x13, 0x14]),
        flags in 0u8..2,
        stream in 0u32..4,
        payload in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut msg = vec![ty, flags];
        msg.extend_from_slice(&stream.to_be_bytes());
        msg.extend_from_slice(&payload);
        let _ = Frame::decode(Bytes::from(msg), MAX);
    }

    #[test]
    fn encode_then_decode_is_identity(f in frame()) {
        let wire = f.encode();
        prop_assert_eq!(Frame::decode(wire, MAX).unwrap(), f);
    }

    #[test]
    fn truncating_a_valid_frame_gives_an_error_not_a_panic(f in frame(), cut in 0usize..64) {
        let wire = f.encode();
        let cut = cut.min(wire.len());
        let _ = Frame::decode(wire.slice(..wire.len() - cut), MAX);
    }
}

//! The control-frame parsers (`core/src/handshake.rs`, strict control JSON, §3.8): the
//! input is a JSON payload, tried as each control frame. Never a panic; the strict check is
//! stricter than plain JSON; what decodes re-encodes to the same message; HELLO, ROUTES and
//! WELCOME validation (what the gateway and the worker run next) never panic, and a route
//! set that validates fits a route table.
#![no_main]

use bytes::{BufMut, BytesMut};
use libfuzzer_sys::fuzz_target;
use vyx_core::frame::{kind, Frame};
use vyx_core::handshake::{check_json_strict, validate_routes, RouteSpec};
use vyx_core::limits::MAX_FRAME_SIZE;
use vyx_core::routing::Router;

fuzz_target!(|payload: &[u8]| {
    let strict = check_json_strict(payload).is_ok();
    if strict {
        // What passes the strict check is JSON.
        serde_json::from_slice::<serde_json::Value>(payload).expect("strict JSON that is not JSON");
    }
    for ty in [
        kind::HELLO,
        kind::WELCOME,
        kind::DRAIN,
        kind::ROUTES,
        kind::ERROR,
    ] {
        let mut msg = BytesMut::with_capacity(6 + payload.len());
        msg.put_u8(ty);
        msg.put_u8(0);
        msg.put_u32(0);
        msg.put_slice(payload);
        let Ok(frame) = Frame::decode(msg.freeze(), MAX_FRAME_SIZE) else {
            continue;
        };
        assert!(
            strict,
            "{} decoded from a payload the strict check refuses",
            frame.name()
        );
        let again = Frame::decode(frame.encode(), MAX_FRAME_SIZE).expect("re-encoded frame fails");
        assert_eq!(again, frame, "re-encoding changed the message");
        match &frame {
            Frame::Hello(hello) => {
                let own = hello.validate(&hello.worker_id);
                let _ = hello.validate("fuzz:other");
                if own.is_ok() {
                    fits_a_table(&hello.routes);
                }
            }
            Frame::Routes(routes) if validate_routes(&routes.routes).is_ok() => {
                fits_a_table(&routes.routes);
            }
            Frame::Welcome(welcome) => {
                for asked in [1, welcome.max_concurrency, u32::MAX] {
                    let _ = welcome.validate(asked, &[]);
                    let _ = welcome.validate(asked, &welcome.features);
                }
            }
            _ => {}
        }
    }
});

/// A validated route set inserts into a fresh table without a conflict (the gateway relies
/// on it) and every route's pattern is found again by its own shape.
fn fits_a_table(routes: &[RouteSpec]) {
    let mut table = Router::default();
    for r in routes {
        table
            .insert(&r.method, &r.path, r.id)
            .unwrap_or_else(|c| panic!("validated route set conflicts: {c}"));
    }
    for r in routes {
        assert_eq!(table.remove(&r.method, &r.path), Some(r.id));
    }
}

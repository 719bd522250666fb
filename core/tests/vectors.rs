//! Runs every vector in spec/vectors/ against the codec, the HELLO and WELCOME rules, the
//! route matcher, the backoff, and the host rules read off a request (client.json).

use bytes::Bytes;
use serde_json::Value;
use vyx_core::backoff::{envelope_ms, Backoff, SplitMix64, BASE_MS, CAP_MS, STABLE_MS};
use vyx_core::frame::{Data, Frame, Informational, Request, Reset, Response, Trailers, Window};
use vyx_core::handshake::{
    validate_routes, Drain, ErrorMessage, Hello, RouteSpec, Routes, Welcome,
};
use vyx_core::host_rules::{client_ip, http_version, scheme};
use vyx_core::limits::MAX_FRAME_SIZE;
use vyx_core::routing::Router;

fn load(name: &str) -> Value {
    let path = format!("{}/../spec/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn bytes(v: &Value) -> Bytes {
    Bytes::from(unhex(v.as_str().expect("hex string")))
}

fn text(v: &Value) -> Bytes {
    Bytes::from(v.as_str().expect("string").to_string())
}

fn pairs(v: &Value, name: fn(&Value) -> Bytes) -> Vec<(Bytes, Bytes)> {
    v.as_array()
        .expect("list of pairs")
        .iter()
        .map(|p| (name(&p[0]), bytes(&p[1])))
        .collect()
}

/// The frame a vector's "frame" object describes.
fn frame_of(f: &Value) -> Frame {
    let stream_id = f["stream_id"].as_u64().unwrap_or(0) as u32;
    let end_stream = f["end_stream"].as_bool().unwrap_or(false);
    let json = || f["json"].clone();
    match f["type"].as_str().unwrap() {
        "DATA" => Frame::Data(Data {
            stream_id,
            end_stream,
            data: bytes(&f["data"]),
        }),
        "REQUEST" => Frame::Request(Request {
            stream_id,
            end_stream,
            upgrade: f["upgrade"].as_bool().unwrap(),
            route_id: f["route_id"].as_u64().unwrap() as u16,
            method: text(&f["method"]),
            target: text(&f["target"]),
            params: pairs(&f["params"], text),
            headers: pairs(&f["headers"], text),
        }),
        "RESPONSE" => Frame::Response(Response {
            stream_id,
            end_stream,
            status: f["status"].as_u64().unwrap() as u16,
            headers: pairs(&f["headers"], text),
        }),
        "TRAILERS" => Frame::Trailers(Trailers {
            stream_id,
            headers: pairs(&f["headers"], text),
        }),
        "INFORMATIONAL" => Frame::Informational(Informational {
            stream_id,
            status: f["status"].as_u64().unwrap() as u16,
            headers: pairs(&f["headers"], text),
        }),
        "RESET" => Frame::Reset(Reset {
            stream_id,
            code: f["code"].as_u64().unwrap() as u32,
            reason: f["reason"].as_str().unwrap().to_string(),
        }),
        "WINDOW" => Frame::Window(Window {
            stream_id,
            increment: f["increment"].as_u64().unwrap() as u32,
        }),
        "HELLO" => Frame::Hello(serde_json::from_value::<Hello>(json()).unwrap()),
        "WELCOME" => Frame::Welcome(serde_json::from_value::<Welcome>(json()).unwrap()),
        "DRAIN" => Frame::Drain(serde_json::from_value::<Drain>(json()).unwrap()),
        "ROUTES" => Frame::Routes(serde_json::from_value::<Routes>(json()).unwrap()),
        "ERROR" => Frame::Error(serde_json::from_value::<ErrorMessage>(json()).unwrap()),
        other => panic!("unknown frame type {other} in vectors"),
    }
}

#[test]
fn frames_decode_and_encode_byte_exact() {
    let file = load("frames.json");
    let vectors = file["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 30, "expected the full vector set");
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let wire = Bytes::from(unhex(v["hex"].as_str().unwrap()));
        let expected = frame_of(&v["frame"]);
        let decoded = Frame::decode(wire.clone(), MAX_FRAME_SIZE)
            .unwrap_or_else(|e| panic!("{name}: decode failed: {e}"));
        assert_eq!(decoded, expected, "{name}: decoded frame");
        assert_eq!(expected.encode(), wire, "{name}: encoded bytes");
    }
}

#[test]
fn malformed_frames_fail_with_the_named_error() {
    let file = load("malformed.json");
    let max = file["max_frame_size"].as_u64().unwrap() as usize;
    assert_eq!(max, MAX_FRAME_SIZE);
    let vectors = file["vectors"].as_array().unwrap();
    assert!(!vectors.is_empty());
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let wire = Bytes::from(unhex(v["hex"].as_str().unwrap()));
        let err = match Frame::decode(wire, max) {
            Ok(f) => panic!("{name}: decoded as {f:?}, expected an error"),
            Err(e) => e,
        };
        assert_eq!(err.kind(), v["error"].as_str().unwrap(), "{name}: {err}");
        assert_eq!(
            err.close_code() as u16 as u64,
            v["close_code"].as_u64().unwrap(),
            "{name}: close code"
        );
        let scoped = Frame::decode_scoped(Bytes::from(unhex(v["hex"].as_str().unwrap())), max)
            .unwrap_err()
            .stream_id()
            .is_some();
        assert_eq!(scoped, v["stream_error"] == true, "{name}: stream error");
    }
}

#[test]
fn frame_too_large_is_refused_at_the_limit() {
    let mut msg = vec![0u8; MAX_FRAME_SIZE];
    msg[5] = 1; // DATA on stream 1
    assert!(Frame::decode(Bytes::from(msg.clone()), MAX_FRAME_SIZE).is_ok());
    msg.push(0);
    let err = Frame::decode(Bytes::from(msg), MAX_FRAME_SIZE).unwrap_err();
    assert_eq!(err.kind(), "frame_too_large");
    assert_eq!(err.close_code() as u16, 4006);
}

#[test]
fn hello_validation_cases() {
    let file = load("handshake.json");
    for case in file["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let header_id = case["header_worker_id"].as_str().unwrap();
        let hello = match decode_control(0x10, &case["hello"]) {
            Ok(Frame::Hello(h)) => h,
            other => panic!("{name}: HELLO does not decode: {other:?}"),
        };
        let result = hello.validate(header_id);
        match &case["expect"] {
            Value::String(s) if s == "ok" => {
                assert!(result.is_ok(), "{name}: expected ok, got {result:?}")
            }
            expect => {
                let code = expect["close_code"].as_u64().unwrap();
                let err = result.expect_err(name);
                assert_eq!(err.code as u16 as u64, code, "{name}: {}", err.message);
            }
        }
    }
}

/// Decodes `json` as the payload of a control frame of `type_byte`, through the codec.
fn decode_control(type_byte: u8, json: &Value) -> Result<Frame, vyx_core::DecodeError> {
    let mut msg = vec![type_byte, 0, 0, 0, 0, 0];
    msg.extend(serde_json::to_vec(json).unwrap());
    Frame::decode(Bytes::from(msg), MAX_FRAME_SIZE)
}

#[test]
fn welcome_validation_cases() {
    let file = load("handshake.json");
    let cases = file["welcome_cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let asked = case["hello_max_concurrency"].as_u64().unwrap() as u32;
        let offered: Vec<String> = serde_json::from_value(case["hello_features"].clone()).unwrap();
        let welcome = match decode_control(0x11, &case["welcome"]) {
            Ok(Frame::Welcome(w)) => w,
            other => panic!("{name}: WELCOME does not decode: {other:?}"),
        };
        let result = welcome.validate(asked, &offered);
        match &case["expect"] {
            Value::String(s) if s == "ok" => {
                assert!(result.is_ok(), "{name}: expected ok, got {result:?}");
                let connections = case["connections"].as_u64().unwrap();
                assert_eq!(
                    welcome.connections as u64, connections,
                    "{name}: connections"
                );
            }
            expect => {
                let err = result.expect_err(name);
                let code = expect["close_code"].as_u64().unwrap();
                assert_eq!(err.code as u16 as u64, code, "{name}: {}", err.message);
            }
        }
    }
}

#[test]
fn routing_cases() {
    let file = load("routing.json");
    let cases = file["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let routes: Vec<RouteSpec> = serde_json::from_value(case["routes"].clone()).unwrap();
        validate_routes(&routes).unwrap_or_else(|e| panic!("{name}: route set refused: {e}"));
        let mut router = Router::default();
        for r in &routes {
            router.insert(&r.method, &r.path, r.id).unwrap();
        }
        for req in case["requests"].as_array().unwrap() {
            let (method, path) = (
                req["method"].as_str().unwrap(),
                req["path"].as_str().unwrap(),
            );
            let got = router.lookup(method, path).map(|m| {
                let params: Vec<(String, Vec<u8>)> = m
                    .params
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_vec()))
                    .collect();
                (*m.value, params)
            });
            let want = match &req["expect"] {
                Value::Null => None,
                e => Some((
                    e["route_id"].as_u64().unwrap() as u32,
                    e["params"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| {
                            (
                                p[0].as_str().unwrap().to_string(),
                                unhex(p[1].as_str().unwrap()),
                            )
                        })
                        .collect::<Vec<_>>(),
                )),
            };
            assert_eq!(got, want, "{name}: {method} {path}");
            if got.is_none() {
                let allow: Vec<String> = serde_json::from_value(req["allow"].clone()).unwrap();
                assert_eq!(
                    router.allowed_methods(path),
                    allow,
                    "{name}: {method} {path}"
                );
            }
        }
    }
}

#[test]
fn sdk_defaults_match() {
    use vyx_core::config::{
        DEFAULT_CONNECT_TIMEOUT, DEFAULT_DRAIN_TIMEOUT, DEFAULT_MAX_CONCURRENCY,
        DEFAULT_RESOLVE_INTERVAL,
    };
    let file = load("defaults.json");
    let ms = |key: &str| file[key].as_u64().unwrap() as u128;
    assert_eq!(
        file["max_concurrency"].as_u64().unwrap(),
        u64::from(DEFAULT_MAX_CONCURRENCY)
    );
    assert_eq!(
        ms("connect_timeout_ms"),
        DEFAULT_CONNECT_TIMEOUT.as_millis()
    );
    assert_eq!(ms("drain_timeout_ms"), DEFAULT_DRAIN_TIMEOUT.as_millis());
    assert_eq!(
        ms("resolve_interval_ms"),
        DEFAULT_RESOLVE_INTERVAL.as_millis()
    );
}

#[test]
fn backoff_schedule_matches() {
    let file = load("backoff.json");
    assert_eq!(file["base_ms"].as_u64().unwrap(), BASE_MS);
    assert_eq!(file["cap_ms"].as_u64().unwrap(), CAP_MS);
    assert_eq!(file["stable_ms"].as_u64().unwrap(), STABLE_MS);
    for (n, e) in file["envelope_ms"].as_array().unwrap().iter().enumerate() {
        assert_eq!(envelope_ms(n as u32), e.as_u64().unwrap(), "envelope({n})");
    }
    for case in file["splitmix64"].as_array().unwrap() {
        let seed: u64 = case["seed"].as_str().unwrap().parse().unwrap();
        let mut rng = SplitMix64::new(seed);
        for (i, out) in case["outputs"].as_array().unwrap().iter().enumerate() {
            let want: u64 = out.as_str().unwrap().parse().unwrap();
            assert_eq!(rng.next_u64(), want, "seed {seed} output {i}");
        }
    }
    for case in file["delays"].as_array().unwrap() {
        let seed: u64 = case["seed"].as_str().unwrap().parse().unwrap();
        let mut b = Backoff::with_seed(seed);
        for (n, d) in case["delays_ms"].as_array().unwrap().iter().enumerate() {
            assert_eq!(
                b.next_delay_ms(),
                d.as_u64().unwrap(),
                "seed {seed} delay {n}"
            );
        }
    }
    assert_eq!(envelope_ms(200), CAP_MS, "envelope saturates");
}

#[test]
fn client_address_scheme_and_http_version_match() {
    let file = load("client.json");
    for v in file["vectors"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let headers: Vec<(&[u8], &[u8])> = v["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h[0].as_str().unwrap().as_bytes(),
                    h[1].as_str().unwrap().as_bytes(),
                )
            })
            .collect();
        let want: Option<std::net::IpAddr> = v["client_ip"].as_str().map(|s| s.parse().unwrap());
        assert_eq!(client_ip(headers.clone()), want, "{name}: client_ip");
        let version = &v["http_version"];
        assert_eq!(
            http_version(headers.clone()),
            (
                version[0].as_u64().unwrap() as u8,
                version[1].as_u64().unwrap() as u8
            ),
            "{name}: http_version"
        );
        assert_eq!(
            scheme(headers),
            v["scheme"].as_str().unwrap(),
            "{name}: scheme"
        );
    }
}

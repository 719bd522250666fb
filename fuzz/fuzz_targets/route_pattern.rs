//! The route-pattern parser and matcher (`core/src/routing.rs`, §2.5), against a plain
//! reference. The input is text: lines `METHOD PATH`; those before the first empty line are
//! routes, those after it requests (the format `fuzz/seed.py` writes from
//! `spec/vectors/routing.json`). Checked: parsing never panics; a route is refused as a
//! conflict exactly when one of the same method and shape is in; every lookup picks what
//! the spec's precedence picks (the route whose segment kinds, literal < param < catch-all,
//! are least from the left, then its own method, then GET for HEAD, then `*`), with the
//! same decoded parameters; removing every route leaves nothing to find.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vyx_core::routing::{parse_pattern, pattern_shape, Router, Segment};

struct Route<'a> {
    method: &'a str,
    path: &'a str,
    segments: Vec<Segment<'a>>,
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (route_text, request_text) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut table = Router::default();
    let mut routes: Vec<Route> = Vec::new();
    for line in route_text.lines() {
        let (method, path) = line.split_once(' ').unwrap_or(("GET", line));
        let Ok(segments) = parse_pattern(path) else {
            continue;
        };
        let shape = pattern_shape(path);
        assert!(shape.starts_with('/'), "{path} has the shape {shape:?}");
        let taken = routes
            .iter()
            .any(|r| r.method == method && pattern_shape(r.path) == shape);
        match table.insert(method, path, routes.len()) {
            Ok(()) => {
                assert!(!taken, "{method} {path} inserted over a route of its shape");
                routes.push(Route {
                    method,
                    path,
                    segments,
                });
            }
            Err(_) => assert!(taken, "{method} {path} refused without a conflict"),
        }
    }
    for line in request_text.lines().take(64) {
        let (method, path) = line.split_once(' ').unwrap_or(("GET", line));
        let got = table.lookup(method, path).map(|m| {
            (
                *m.value,
                m.params
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_vec()))
                    .collect::<Vec<_>>(),
            )
        });
        let want = reference_lookup(&routes, method, path);
        assert_eq!(got, want, "{method} {path}");
    }
    for r in &routes {
        assert!(
            table.remove(r.method, r.path).is_some(),
            "{} {} not removed",
            r.method,
            r.path
        );
    }
    for line in request_text.lines().take(64) {
        let (method, path) = line.split_once(' ').unwrap_or(("GET", line));
        assert!(
            table.lookup(method, path).is_none(),
            "an empty table matched {path}"
        );
    }
});

/// (name, percent-decoded value) in pattern order.
type Params = Vec<(String, Vec<u8>)>;
/// The index of the route found, and its parameters.
type Found = (usize, Params);

/// Every route tried against the path; the most specific serving `method` wins.
fn reference_lookup(routes: &[Route], method: &str, path: &str) -> Option<Found> {
    let rest = path.strip_prefix('/')?;
    let parts: Vec<&str> = rest.split('/').collect();
    let mut best: Option<(Vec<u8>, u8, Found)> = None;
    for (i, r) in routes.iter().enumerate() {
        let serves = if r.method == method {
            0
        } else if method == "HEAD" && r.method == "GET" {
            1
        } else if r.method == "*" {
            2
        } else {
            continue;
        };
        let Some((ranks, params)) = match_route(&r.segments, &parts) else {
            continue;
        };
        let better = match &best {
            None => true,
            Some((b_ranks, b_serves, _)) => (&ranks, serves) < (b_ranks, *b_serves),
        };
        if better {
            best = Some((ranks, serves, (i, params)));
        }
    }
    best.map(|(_, _, found)| found)
}

/// The segment kinds (0 literal, 1 param, 2 catch-all) and decoded parameters, if the
/// pattern matches the path's segments.
fn match_route(segments: &[Segment], parts: &[&str]) -> Option<(Vec<u8>, Params)> {
    let mut ranks = Vec::new();
    let mut params = Vec::new();
    for (k, seg) in segments.iter().enumerate() {
        let part = *parts.get(k)?;
        match seg {
            Segment::Literal(l) => {
                if decode(part) != l.as_bytes() {
                    return None;
                }
                ranks.push(0);
            }
            Segment::Param(n) => {
                if part.is_empty() {
                    return None;
                }
                params.push((n.to_string(), decode(part)));
                ranks.push(1);
            }
            Segment::CatchAll(n) => {
                let rest = parts[k..].join("/");
                params.push((n.to_string(), decode(&rest)));
                ranks.push(2);
                return Some((ranks, params));
            }
        }
    }
    (segments.len() == parts.len()).then_some((ranks, params))
}

/// Percent-decoding as §3.4 says it, written apart from the core's: `%` and two hex digits
/// are one byte, every other byte (a lone `%`, `+`) stays.
fn decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b.get(i..i + 3) {
            Some([b'%', h, l]) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    out
}

//! The route table (`core/src/routing.rs`) against a naive reference written here from
//! spec/PROTOCOL.md §2.5–§2.5.4: a list of routes, each tried against the whole path. The
//! input is a sequence of operations on one table (insert, remove, look up, clone), so that
//! tables are built, pruned and rebuilt the way ROUTES frames do it, with deep and wide
//! shapes. Checked at every step: the pattern's validity (the §2.5 bounds included), the
//! conflict and the route it names, the value a removal returns, the route and the decoded
//! parameters a lookup picks.
//!
//! Encoding, byte by byte: an opcode (`% 4`: insert, remove, lookup, clone), a method
//! (`% 4`: GET, POST, HEAD, `*`), a segment count, then that many segment codes. A segment
//! code below 0xF0 picks a piece (`% 8`) from the pattern alphabet (insert, remove) or the
//! path alphabet (lookup); 0xF0 and above repeats the segment before it 16 × (code − 0xEF)
//! times, so that a few bytes write a path thousands of segments deep.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vyx_core::routing::Router;

const METHODS: [&str; 4] = ["GET", "POST", "HEAD", "*"];
/// Pattern pieces: `{}` is a parameter named after its position (names are unique), `{*}`
/// a catch-all; `a%2Fb` is a literal that only `a%252Fb` matches.
const PATTERN: [&str; 8] = ["a", "b", "", "{}", "{*}", "café", "a%2Fb", "{"];
/// Request pieces: `%61` decodes to `a`, `caf%C3%A9` to `café`.
const PATH: [&str; 8] = ["a", "b", "", "%61", "caf%C3%A9", "a%252Fb", "a%2Fb", "x"];
/// Bounds of §2.5, written again here rather than taken from the core.
const MAX_LEN: usize = 4096;
const MAX_SEGMENTS: usize = 128;

fuzz_target!(|data: &[u8]| {
    let mut input = data.iter().copied();
    let mut table: Router<usize> = Router::default();
    let mut model = Model::default();
    let mut next_value = 0;
    for _ in 0..256 {
        let (Some(op), Some(m)) = (input.next(), input.next()) else {
            break;
        };
        let method = METHODS[m as usize % 4];
        let pieces = if op % 4 == 2 { &PATH } else { &PATTERN };
        let path = build_path(&mut input, pieces);
        match op % 4 {
            0 => {
                let valid = reference_valid(&path);
                let got = table.insert(method, &path, next_value);
                let Some(segments) = valid else {
                    assert!(got.is_err(), "invalid {path:?} inserted");
                    continue;
                };
                match model.conflict(method, &segments) {
                    Some(existing) => {
                        let e = got.expect_err("inserted over a route of the same shape");
                        assert_eq!(e.existing, existing.path, "{method} {path}");
                    }
                    None => {
                        got.unwrap_or_else(|e| panic!("{method} {path} refused: {e}"));
                        model.routes.push(RefRoute {
                            method: method.into(),
                            path: path.clone(),
                            segments,
                            value: next_value,
                        });
                    }
                }
                next_value += 1;
            }
            1 => {
                let got = table.remove(method, &path);
                let want = reference_valid(&path).and_then(|s| model.remove(method, &s));
                assert_eq!(got, want, "remove {method} {path}");
            }
            2 => {
                let got = table.lookup(method, &path).map(|m| {
                    let params: Vec<(String, Vec<u8>)> = m
                        .params
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_vec()))
                        .collect();
                    (*m.value, params)
                });
                assert_eq!(got, model.lookup(method, &path), "{method} {path}");
            }
            _ => {
                // The gateway's route table copies the router (left-right); the copy must
                // answer the same, and dropping the original must leave it whole.
                let copy = table.clone();
                drop(std::mem::replace(&mut table, copy));
            }
        }
    }
    for r in std::mem::take(&mut model.routes) {
        assert_eq!(
            table.remove(&r.method, &r.path),
            Some(r.value),
            "{}",
            r.path
        );
    }
    assert!(table.lookup("GET", "/a").is_none());
});

/// Reads a segment count and the segments; returns `/seg/seg/…`.
fn build_path(input: &mut impl Iterator<Item = u8>, pieces: &[&str; 8]) -> String {
    let n = input.next().unwrap_or(0);
    let mut segments: Vec<String> = Vec::new();
    for _ in 0..n {
        let Some(code) = input.next() else { break };
        if code >= 0xF0 {
            let last = segments.last().cloned().unwrap_or_default();
            for _ in 0..16 * (code as usize - 0xEF) {
                // A parameter repeated gets a name of its own, so the pattern stays valid.
                let next = if last.starts_with("{p") {
                    format!("{{p{}}}", segments.len())
                } else {
                    last.clone()
                };
                segments.push(next);
            }
            continue;
        }
        let i = segments.len();
        segments.push(match pieces[code as usize % 8] {
            "{}" => format!("{{p{i}}}"),
            "{*}" => "{*rest}".into(),
            other => other.into(),
        });
    }
    let mut out = String::new();
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Literal(String),
    Param(String),
    CatchAll(String),
}

struct RefRoute {
    method: String,
    path: String,
    segments: Vec<Seg>,
    value: usize,
}

#[derive(Default)]
struct Model {
    routes: Vec<RefRoute>,
}

/// §2.5, naively: the bounds, the characters, whole-segment parameters with unique names,
/// a catch-all last only.
fn reference_valid(path: &str) -> Option<Vec<Seg>> {
    let rest = path.strip_prefix('/')?;
    if path.len() > MAX_LEN || path.matches('/').count() > MAX_SEGMENTS {
        return None;
    }
    if path
        .chars()
        .any(|c| c <= ' ' || c == '\u{7f}' || c == '?' || c == '#')
    {
        return None;
    }
    let parts: Vec<&str> = rest.split('/').collect();
    let mut out = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let braced = p.len() >= 2 && p.starts_with('{') && p.ends_with('}');
        if !braced {
            if p.contains('{') || p.contains('}') {
                return None;
            }
            out.push(Seg::Literal(p.to_string()));
            continue;
        }
        let inner = &p[1..p.len() - 1];
        let (catch_all, name) = match inner.strip_prefix('*') {
            Some(n) => (true, n),
            None => (false, inner),
        };
        if name.is_empty() || name.contains(['{', '}', '/', '*']) || names.contains(&name) {
            return None;
        }
        names.push(name);
        if catch_all {
            if i != parts.len() - 1 {
                return None;
            }
            out.push(Seg::CatchAll(name.into()));
        } else {
            out.push(Seg::Param(name.into()));
        }
    }
    Some(out)
}

/// Kinds only: the shape of §2.5 (names removed).
fn shape(segments: &[Seg]) -> Vec<Seg> {
    segments
        .iter()
        .map(|s| match s {
            Seg::Literal(l) => Seg::Literal(l.clone()),
            Seg::Param(_) => Seg::Param(String::new()),
            Seg::CatchAll(_) => Seg::CatchAll(String::new()),
        })
        .collect()
}

impl Model {
    /// §2.5.1: the route of the same method (strings compared, `*` its own) and shape.
    fn position(&self, method: &str, segments: &[Seg]) -> Option<usize> {
        let s = shape(segments);
        self.routes
            .iter()
            .position(|r| r.method == method && shape(&r.segments) == s)
    }

    fn conflict(&self, method: &str, segments: &[Seg]) -> Option<&RefRoute> {
        self.position(method, segments).map(|i| &self.routes[i])
    }

    fn remove(&mut self, method: &str, segments: &[Seg]) -> Option<usize> {
        let i = self.position(method, segments)?;
        Some(self.routes.remove(i).value)
    }

    /// §2.5.2–§2.5.4: every route that matches and serves the method; the most specific by
    /// segment kinds from the left wins, then its own method, GET for HEAD, then `*`.
    fn lookup(&self, method: &str, path: &str) -> Option<(usize, Vec<(String, Vec<u8>)>)> {
        let rest = path.strip_prefix('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        let mut best: Option<(Vec<u8>, u8, usize, Vec<(String, Vec<u8>)>)> = None;
        for r in &self.routes {
            let serves = if r.method == method {
                0
            } else if method == "HEAD" && r.method == "GET" {
                1
            } else if r.method == "*" {
                2
            } else {
                continue;
            };
            let Some((ranks, params)) = matches(&r.segments, &parts) else {
                continue;
            };
            if best
                .as_ref()
                .is_none_or(|(b, bs, _, _)| (&ranks, serves) < (b, *bs))
            {
                best = Some((ranks, serves, r.value, params));
            }
        }
        best.map(|(_, _, v, p)| (v, p))
    }
}

/// Segment kinds (0 literal, 1 parameter, 2 catch-all) and decoded params, if it matches.
fn matches(segments: &[Seg], parts: &[&str]) -> Option<(Vec<u8>, Vec<(String, Vec<u8>)>)> {
    let mut ranks = Vec::new();
    let mut params = Vec::new();
    for (k, seg) in segments.iter().enumerate() {
        let part = *parts.get(k)?;
        match seg {
            Seg::Literal(l) => {
                if decode(part) != l.as_bytes() {
                    return None;
                }
                ranks.push(0);
            }
            Seg::Param(n) => {
                if part.is_empty() {
                    return None;
                }
                params.push((n.clone(), decode(part)));
                ranks.push(1);
            }
            Seg::CatchAll(n) => {
                params.push((n.clone(), decode(&parts[k..].join("/"))));
                ranks.push(2);
                return Some((ranks, params));
            }
        }
    }
    (segments.len() == parts.len()).then_some((ranks, params))
}

/// §2.5.2's percent-decoding: `%` and two hex digits are one byte, anything else stays.
fn decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
        {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

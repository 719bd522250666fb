//! Route patterns and the matcher (spec/PROTOCOL.md §2.5): the syntax a HELLO is checked
//! against, the shape two routes conflict on, and the lookup the gateway does per request.
//! One implementation, so that what the handshake accepts and what the gateway routes can
//! never disagree.
//!
//! The matcher is a segment trie. A request path is split on `/` *before* decoding (so
//! `%2F` never splits a segment); a literal segment is compared with the percent-decoded
//! request segment; a `{param}` takes one non-empty segment; a `{*catchall}` takes the rest
//! of the path after the `/` before it, possibly nothing. The search tries, at every
//! segment, the literal child, then the parameter child, then the catch-all, and stops at
//! the first route whose method fits: that visits routes in exactly the precedence order of
//! the spec (literal > param > catch-all, segment by segment from the left; a method-specific
//! route over `*` at the same shape). A lookup costs one hash probe per literal level, no
//! lock, two small vectors for the parameters, and a copy of a segment only when it holds a
//! `%`; backtracking only happens when a more specific branch dead-ends, which takes route
//! sets built for it. No timing test guards this: the design is the guarantee.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

/// One segment of a parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment<'a> {
    /// Matched byte-for-byte against the percent-decoded request segment.
    Literal(&'a str),
    /// `{name}`: one non-empty segment.
    Param(&'a str),
    /// `{*name}`: the rest of the path, possibly empty; last segment only.
    CatchAll(&'a str),
}

/// Parses a pattern: starts with '/'; no space, control byte, '?' or '#'; each `{name}`
/// parameter or `{*name}` catch-all fills a whole segment, names are non-empty and unique,
/// and a catch-all comes last.
pub fn parse_pattern(path: &str) -> Result<Vec<Segment<'_>>, &'static str> {
    if !path.starts_with('/') {
        return Err("must start with '/'");
    }
    if path
        .bytes()
        .any(|b| b <= 0x20 || b == 0x7f || b == b'?' || b == b'#')
    {
        return Err("contains a space, control byte, '?' or '#'");
    }
    let raw: Vec<&str> = path[1..].split('/').collect();
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, seg) in raw.iter().enumerate() {
        let Some(inner) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
            if seg.contains(['{', '}']) {
                return Err("has a parameter that does not fill a whole segment, or a stray brace");
            }
            out.push(Segment::Literal(seg));
            continue;
        };
        let (catch_all, name) = match inner.strip_prefix('*') {
            Some(rest) => (true, rest),
            None => (false, inner),
        };
        if name.is_empty() || name.contains(['{', '}', '*']) {
            return Err("has an empty or invalid parameter name");
        }
        if catch_all && i != raw.len() - 1 {
            return Err("has a catch-all parameter that is not at the end");
        }
        if !names.insert(name) {
            return Err("uses a parameter name twice");
        }
        out.push(if catch_all {
            Segment::CatchAll(name)
        } else {
            Segment::Param(name)
        });
    }
    Ok(out)
}

/// Whether `path` is a valid pattern (see [`parse_pattern`]).
pub fn check_pattern(path: &str) -> Result<(), &'static str> {
    parse_pattern(path).map(|_| ())
}

/// The pattern with parameter names removed (`/a/{id}` → `/a/{}`, `/f/{*rest}` → `/f/{*}`):
/// two routes of one method with the same shape are the same route. `path` must be valid.
pub fn pattern_shape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for seg in parse_pattern(path).unwrap_or_default() {
        out.push('/');
        match seg {
            Segment::Literal(l) => out.push_str(l),
            Segment::Param(_) => out.push_str("{}"),
            Segment::CatchAll(_) => out.push_str("{*}"),
        }
    }
    out
}

/// Percent-decodes `s`: `%HH` (two hex digits, any case) becomes one byte; anything else,
/// a malformed `%` and `+` included, is kept as it is. Borrows when there is nothing to do.
pub fn percent_decode(s: &str) -> Cow<'_, [u8]> {
    let b = s.as_bytes();
    if !b.contains(&b'%') {
        return Cow::Borrowed(b);
    }
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    Cow::Owned(out)
}

/// A route set with a lookup by method and request path. `T` is what a route leads to.
#[derive(Clone)]
pub struct Router<T> {
    root: Node<T>,
}

impl<T> Default for Router<T> {
    fn default() -> Router<T> {
        Router {
            root: Node::default(),
        }
    }
}

#[derive(Clone)]
struct Node<T> {
    /// Children by literal segment text (as written in the pattern).
    literals: HashMap<Box<str>, Node<T>>,
    param: Option<Box<Node<T>>>,
    /// Routes whose last segment is a catch-all here.
    catch_all: Endpoints<T>,
    /// Routes that end at this node.
    end: Endpoints<T>,
}

impl<T> Default for Node<T> {
    fn default() -> Node<T> {
        Node {
            literals: HashMap::new(),
            param: None,
            catch_all: Endpoints::default(),
            end: Endpoints::default(),
        }
    }
}

impl<T> Node<T> {
    fn is_empty(&self) -> bool {
        self.literals.is_empty()
            && self.param.is_none()
            && self.catch_all.is_empty()
            && self.end.is_empty()
    }
}

/// The routes of one shape, by method; `*` is kept apart.
#[derive(Clone)]
struct Endpoints<T> {
    methods: Vec<(Box<str>, Endpoint<T>)>,
    any: Option<Endpoint<T>>,
}

impl<T> Default for Endpoints<T> {
    fn default() -> Endpoints<T> {
        Endpoints {
            methods: Vec::new(),
            any: None,
        }
    }
}

#[derive(Clone)]
struct Endpoint<T> {
    pattern: Box<str>,
    /// Parameter names in pattern order, the catch-all's last.
    names: Box<[Box<str>]>,
    value: T,
}

impl<T> Endpoints<T> {
    fn is_empty(&self) -> bool {
        self.methods.is_empty() && self.any.is_none()
    }

    fn slot(&mut self, method: &str) -> Option<&mut Endpoint<T>> {
        if method == "*" {
            return self.any.as_mut();
        }
        self.methods
            .iter_mut()
            .find(|(m, _)| &**m == method)
            .map(|(_, e)| e)
    }

    fn get(&self, method: &str) -> Option<&Endpoint<T>> {
        self.methods
            .iter()
            .find(|(m, _)| &**m == method)
            .map(|(_, e)| e)
    }

    /// The route serving `method` here: its own, then (for HEAD) the GET route, then `*`.
    fn serving(&self, method: &str) -> Option<&Endpoint<T>> {
        self.get(method)
            .or_else(|| (method == "HEAD").then(|| self.get("GET")).flatten())
            .or(self.any.as_ref())
    }

    fn remove(&mut self, method: &str) -> Option<Endpoint<T>> {
        if method == "*" {
            return self.any.take();
        }
        let i = self.methods.iter().position(|(m, _)| &**m == method)?;
        Some(self.methods.swap_remove(i).1)
    }
}

/// A route that cannot be inserted: another of the same method and shape is there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{method} {pattern} has the same shape as {method} {existing}")]
pub struct Conflict {
    pub method: String,
    pub pattern: String,
    /// The pattern already in the router, as it was inserted.
    pub existing: String,
}

/// A successful lookup.
#[derive(Debug)]
pub struct Match<'r, 'p, T> {
    pub value: &'r T,
    /// (name, percent-decoded value) in pattern order.
    pub params: Vec<(&'r str, Cow<'p, [u8]>)>,
}

impl<T> Router<T> {
    /// Adds a route. `path` must be a valid pattern ([`check_pattern`]); `method` is an
    /// upper-case token or `*`. Refused when a route of the same method and shape exists.
    pub fn insert(&mut self, method: &str, path: &str, value: T) -> Result<(), Conflict> {
        let segments = parse_pattern(path).map_err(|why| Conflict {
            method: method.to_string(),
            pattern: path.to_string(),
            existing: format!("(invalid pattern: {why})"),
        })?;
        let mut names = Vec::new();
        let mut node = &mut self.root;
        let mut catch_all = false;
        for seg in &segments {
            node = match seg {
                Segment::Literal(l) => node.literals.entry((*l).into()).or_default(),
                Segment::Param(n) => {
                    names.push((*n).into());
                    node.param.get_or_insert_with(Box::default)
                }
                Segment::CatchAll(n) => {
                    names.push((*n).into());
                    catch_all = true;
                    node
                }
            };
        }
        let endpoints = if catch_all {
            &mut node.catch_all
        } else {
            &mut node.end
        };
        if let Some(e) = endpoints.slot(method) {
            return Err(Conflict {
                method: method.to_string(),
                pattern: path.to_string(),
                existing: e.pattern.to_string(),
            });
        }
        let endpoint = Endpoint {
            pattern: path.into(),
            names: names.into_boxed_slice(),
            value,
        };
        if method == "*" {
            endpoints.any = Some(endpoint);
        } else {
            endpoints.methods.push((method.into(), endpoint));
        }
        Ok(())
    }

    /// Removes the route of `method` whose pattern has the shape of `path`; returns its
    /// value. Empty branches are pruned.
    pub fn remove(&mut self, method: &str, path: &str) -> Option<T> {
        let segments = parse_pattern(path).ok()?;
        remove_at(&mut self.root, &segments, method)
    }

    /// The most specific route serving `method` for the raw (still percent-encoded)
    /// request `path`, with its decoded parameters; `None` is a 404.
    pub fn lookup<'r, 'p>(&'r self, method: &str, path: &'p str) -> Option<Match<'r, 'p, T>> {
        let rest = path.strip_prefix('/')?;
        let mut captures = Vec::new();
        let (endpoint, catch_all) = find(&self.root, rest, method, &mut captures)?;
        let mut values: Vec<&'p str> = captures;
        if let Some(r) = catch_all {
            values.push(r);
        }
        let params = endpoint
            .names
            .iter()
            .zip(values)
            .map(|(n, v)| (&**n, percent_decode(v)))
            .collect();
        Some(Match {
            value: &endpoint.value,
            params,
        })
    }
}

fn remove_at<T>(node: &mut Node<T>, segments: &[Segment<'_>], method: &str) -> Option<T> {
    let Some((first, tail)) = segments.split_first() else {
        return node.end.remove(method).map(|e| e.value);
    };
    match first {
        Segment::CatchAll(_) => node.catch_all.remove(method).map(|e| e.value),
        Segment::Literal(l) => {
            let child = node.literals.get_mut(*l)?;
            let out = remove_at(child, tail, method);
            if child.is_empty() {
                node.literals.remove(*l);
            }
            out
        }
        Segment::Param(_) => {
            let child = node.param.as_deref_mut()?;
            let out = remove_at(child, tail, method);
            if child.is_empty() {
                node.param = None;
            }
            out
        }
    }
}

/// Depth-first search in precedence order. `rest` is the path after the `/` that ends the
/// segments matched so far. `captures` holds the raw values of the params on the way down.
fn find<'r, 'p, T>(
    node: &'r Node<T>,
    rest: &'p str,
    method: &str,
    captures: &mut Vec<&'p str>,
) -> Option<(&'r Endpoint<T>, Option<&'p str>)> {
    let (segment, after) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let descend = |child: &'r Node<T>, captures: &mut Vec<&'p str>| match after {
        Some(next) => find(child, next, method, captures),
        None => child.end.serving(method).map(|e| (e, None)),
    };
    if !node.literals.is_empty() {
        let decoded = percent_decode(segment);
        // Literals are UTF-8 (patterns are JSON strings); a segment that is not cannot match.
        if let Ok(text) = std::str::from_utf8(&decoded) {
            if let Some(child) = node.literals.get(text) {
                if let Some(found) = descend(child, captures) {
                    return Some(found);
                }
            }
        }
    }
    if let Some(child) = node.param.as_deref() {
        if !segment.is_empty() {
            captures.push(segment);
            if let Some(found) = descend(child, captures) {
                return Some(found);
            }
            captures.pop();
        }
    }
    node.catch_all.serving(method).map(|e| (e, Some(rest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &str)]) -> Router<usize> {
        let mut r = Router::default();
        for (i, (m, p)) in routes.iter().enumerate() {
            r.insert(m, p, i).unwrap();
        }
        r
    }

    fn hit(r: &Router<usize>, m: &str, p: &str) -> Option<(usize, Vec<(String, String)>)> {
        r.lookup(m, p).map(|found| {
            (
                *found.value,
                found
                    .params
                    .iter()
                    .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v).into_owned()))
                    .collect(),
            )
        })
    }

    #[test]
    fn percent_decoding_keeps_what_is_not_an_escape() {
        assert_eq!(&*percent_decode("a%2Fb"), b"a/b");
        assert_eq!(&*percent_decode("caf%c3%A9"), "café".as_bytes());
        assert_eq!(&*percent_decode("100%"), b"100%");
        assert_eq!(&*percent_decode("%4"), b"%4");
        assert_eq!(&*percent_decode("%zz+%41"), b"%zz+A");
    }

    #[test]
    fn backtracks_from_a_literal_that_dead_ends() {
        let r = router(&[("GET", "/a/b/c"), ("GET", "/a/{x}/d")]);
        assert_eq!(hit(&r, "GET", "/a/b/d").unwrap().0, 1);
        assert_eq!(hit(&r, "GET", "/a/b/c").unwrap().0, 0);
        assert!(hit(&r, "GET", "/a/b/e").is_none());
    }

    #[test]
    fn remove_prunes_and_keeps_the_rest() {
        let mut r = router(&[("GET", "/a/{x}"), ("POST", "/a/{y}"), ("*", "/a/{*r}")]);
        assert_eq!(r.remove("GET", "/a/{other}"), Some(0));
        assert_eq!(hit(&r, "GET", "/a/1").unwrap().0, 2);
        assert_eq!(hit(&r, "POST", "/a/1").unwrap().0, 1);
        assert_eq!(r.remove("POST", "/a/{y}"), Some(1));
        assert!(r.root.literals["a"].param.is_none(), "empty branch pruned");
        assert_eq!(r.remove("POST", "/a/{y}"), None);
    }

    #[test]
    fn same_shape_same_method_conflicts_whatever_the_names() {
        let mut r = router(&[("GET", "/a/{id}")]);
        let e = r.insert("GET", "/a/{key}", 9).unwrap_err();
        assert_eq!(e.existing, "/a/{id}");
        r.insert("*", "/a/{key}", 9).unwrap();
        r.insert("GET", "/a/{*rest}", 10).unwrap();
    }
}

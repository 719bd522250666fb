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
//! route over `*` at the same shape). A lookup costs one binary search of the sorted
//! children per literal level, no lock, three small vectors (the parameters and the
//! search's own stack), and a copy of a segment only when it holds a `%`; backtracking only
//! happens when a more specific branch dead-ends, which takes route sets built for it, and
//! visits each trie node at most once per lookup. No timing test guards this: the design is
//! the guarantee.

use smallvec::{smallvec, SmallVec};
use std::borrow::Cow;
use std::collections::HashSet;

use crate::limits::{MAX_PATTERN_LEN, MAX_PATTERN_SEGMENTS};

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

/// Parses a pattern: starts with '/'; at most [`MAX_PATTERN_LEN`] bytes and
/// [`MAX_PATTERN_SEGMENTS`] segments; no space, control byte, '?' or '#'; each `{name}`
/// parameter or `{*name}` catch-all fills a whole segment, names are non-empty and unique,
/// and a catch-all comes last.
pub fn parse_pattern(path: &str) -> Result<Vec<Segment<'_>>, &'static str> {
    if !path.starts_with('/') {
        return Err("must start with '/'");
    }
    // The bounds come first, so that nothing below works on a longer input. The messages
    // name the limits; a test keeps them equal to the constants.
    if path.len() > MAX_PATTERN_LEN {
        return Err("is longer than 4096 bytes");
    }
    if path.bytes().filter(|&b| b == b'/').count() > MAX_PATTERN_SEGMENTS {
        return Err("has more than 128 segments");
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
///
/// The trie lives in one vector, children named by index: insert, lookup, removal, clone
/// and drop are loops over it (the lookup's backtracking keeps its own stack), so no
/// pattern or path depth ever reaches the call stack, whatever §2.5's bounds are.
#[derive(Clone)]
pub struct Router<T> {
    /// `nodes[ROOT]` is the root; a pruned node is reset and its index kept in `free`.
    nodes: Vec<Node<T>>,
    free: Vec<usize>,
}

const ROOT: usize = 0;

impl<T> Default for Router<T> {
    fn default() -> Router<T> {
        Router {
            nodes: vec![Node::default()],
            free: Vec::new(),
        }
    }
}

/// A trie node, kept small (40 bytes and what its children and routes need): a worker may
/// declare 1,024 routes of 128 segments each, and the gateway holds two copies of the table.
#[derive(Clone)]
struct Node<T> {
    /// Children by literal segment text (as written in the pattern), sorted by text.
    literals: Vec<(Box<str>, u32)>,
    /// The parameter child; 0 for none (the root is nobody's child).
    param: u32,
    /// The routes ending here; most nodes have none.
    ends: Option<Box<Ends<T>>>,
}

#[derive(Clone)]
struct Ends<T> {
    /// Routes whose last segment is a catch-all here.
    catch_all: Endpoints<T>,
    /// Routes that end at this node.
    end: Endpoints<T>,
}

impl<T> Default for Node<T> {
    fn default() -> Node<T> {
        Node {
            literals: Vec::new(),
            param: 0,
            ends: None,
        }
    }
}

impl<T> Node<T> {
    fn is_empty(&self) -> bool {
        self.literals.is_empty() && self.param == 0 && self.ends.is_none()
    }

    fn literal(&self, text: &str) -> Option<usize> {
        let i = self
            .literals
            .binary_search_by(|(k, _)| (**k).cmp(text))
            .ok()?;
        Some(self.literals[i].1 as usize)
    }

    fn param(&self) -> Option<usize> {
        (self.param != 0).then_some(self.param as usize)
    }

    fn end(&self) -> Option<&Endpoints<T>> {
        self.ends.as_deref().map(|e| &e.end)
    }

    fn catch_all(&self) -> Option<&Endpoints<T>> {
        self.ends.as_deref().map(|e| &e.catch_all)
    }

    fn ends_mut(&mut self) -> &mut Ends<T> {
        self.ends.get_or_insert_with(|| {
            Box::new(Ends {
                catch_all: Endpoints::default(),
                end: Endpoints::default(),
            })
        })
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

/// Which child of its parent a node is, on the way down for a removal.
enum Edge<'a> {
    Literal(&'a str),
    Param,
}

/// One level of the lookup's depth-first search: `node` is matched against `segment`, the
/// request segment at its depth; `after` is the path after that segment's `/`, if any.
struct Visit<'p> {
    node: usize,
    rest: &'p str,
    segment: &'p str,
    after: Option<&'p str>,
    /// The next branch to try here.
    step: Step,
    /// Entered through a parameter edge: its value is the last capture, dropped on backtrack.
    captured: bool,
}

/// A lookup's raw param values on the way down: on the stack for the usual few (a lookup
/// runs for every request; its two `Vec`s were two allocations of it).
type Captures<'p> = SmallVec<[&'p str; WALK_INLINE]>;

/// How deep a path's walk goes, and how many params it captures, before either spills to
/// the heap.
const WALK_INLINE: usize = 8;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    Literal,
    Param,
    CatchAll,
}

impl<'p> Visit<'p> {
    fn new(node: usize, rest: &'p str, captured: bool) -> Visit<'p> {
        let (segment, after) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        Visit {
            node,
            rest,
            segment,
            after,
            step: Step::Literal,
            captured,
        }
    }
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
        self.insert_segments(method, path, &segments, value)
    }

    fn insert_segments(
        &mut self,
        method: &str,
        path: &str,
        segments: &[Segment<'_>],
        value: T,
    ) -> Result<(), Conflict> {
        let mut names = Vec::new();
        let mut node = ROOT;
        let mut catch_all = false;
        for seg in segments {
            node = match seg {
                Segment::Literal(l) => {
                    let here = &self.nodes[node];
                    match here.literals.binary_search_by(|(k, _)| (**k).cmp(l)) {
                        Ok(i) => here.literals[i].1 as usize,
                        Err(i) => {
                            let child = self.alloc();
                            let literals = &mut self.nodes[node].literals;
                            literals.reserve_exact(1);
                            literals.insert(i, ((*l).into(), child as u32));
                            child
                        }
                    }
                }
                Segment::Param(n) => {
                    names.push((*n).into());
                    match self.nodes[node].param() {
                        Some(child) => child,
                        None => {
                            let child = self.alloc();
                            self.nodes[node].param = child as u32;
                            child
                        }
                    }
                }
                Segment::CatchAll(n) => {
                    names.push((*n).into());
                    catch_all = true;
                    node
                }
            };
        }
        let ends = self.nodes[node].ends_mut();
        let endpoints = if catch_all {
            &mut ends.catch_all
        } else {
            &mut ends.end
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
            // Exact: most shapes have one method, and `push` would make room for four (the
            // gateway holds two copies of every route, for each of thousands of workers).
            endpoints.methods.reserve_exact(1);
            endpoints.methods.push((method.into(), endpoint));
        }
        Ok(())
    }

    fn alloc(&mut self) -> usize {
        match self.free.pop() {
            Some(i) => i,
            None => {
                // Indices are u32 (smaller nodes); 2^32 nodes is far past any route set.
                assert!(self.nodes.len() < u32::MAX as usize, "route table full");
                self.nodes.push(Node::default());
                self.nodes.len() - 1
            }
        }
    }

    /// Removes the route of `method` whose pattern has the shape of `path`; returns its
    /// value. Empty branches are pruned.
    pub fn remove(&mut self, method: &str, path: &str) -> Option<T> {
        let segments = parse_pattern(path).ok()?;
        self.remove_segments(method, &segments)
    }

    fn remove_segments(&mut self, method: &str, segments: &[Segment<'_>]) -> Option<T> {
        let mut trail = Vec::new();
        let mut node = ROOT;
        let mut catch_all = false;
        for seg in segments {
            let here = &self.nodes[node];
            let (child, edge) = match seg {
                Segment::Literal(l) => (here.literal(l)?, Edge::Literal(l)),
                Segment::Param(_) => (here.param()?, Edge::Param),
                Segment::CatchAll(_) => {
                    catch_all = true;
                    break;
                }
            };
            trail.push((node, edge));
            node = child;
        }
        let target = &mut self.nodes[node];
        let mut out = None;
        if let Some(ends) = target.ends.as_deref_mut() {
            out = if catch_all {
                ends.catch_all.remove(method)
            } else {
                ends.end.remove(method)
            };
            if ends.catch_all.is_empty() && ends.end.is_empty() {
                target.ends = None;
            }
        }
        // Prune from the bottom up while the branch is empty; a pruned node is reset, so
        // that it keeps no memory while it waits on the free list.
        while let Some((parent, edge)) = trail.pop() {
            if !self.nodes[node].is_empty() {
                break;
            }
            self.nodes[node] = Node::default();
            self.free.push(node);
            let up = &mut self.nodes[parent];
            match edge {
                Edge::Literal(l) => {
                    if let Ok(i) = up.literals.binary_search_by(|(k, _)| (**k).cmp(l)) {
                        up.literals.remove(i);
                    }
                }
                Edge::Param => up.param = 0,
            }
            node = parent;
        }
        out.map(|e| e.value)
    }

    /// The most specific route serving `method` for the raw (still percent-encoded)
    /// request `path`, with its decoded parameters; `None` is a 404.
    pub fn lookup<'r, 'p>(&'r self, method: &str, path: &'p str) -> Option<Match<'r, 'p, T>> {
        let rest = path.strip_prefix('/')?;
        let mut captures = Captures::new();
        let (endpoint, catch_all) = self.find(rest, method, &mut captures)?;
        let params = endpoint
            .names
            .iter()
            .zip(captures.into_iter().chain(catch_all))
            .map(|(n, v)| (&**n, percent_decode(v)))
            .collect();
        Some(Match {
            value: &endpoint.value,
            params,
        })
    }

    /// The methods of every route whose pattern matches `path`, whatever the method
    /// (GET implies HEAD, §2.5.4), sorted: what a 405's `Allow` lists when no route serves
    /// the request's method (§2.5.2). `*` routes are not listed (they serve every method).
    pub fn allowed_methods(&self, path: &str) -> Vec<&str> {
        let Some(rest) = path.strip_prefix('/') else {
            return Vec::new();
        };
        let mut methods: Vec<&str> = Vec::new();
        self.walk(rest, &mut Captures::new(), |ends, _| {
            methods.extend(ends.methods.iter().map(|(m, _)| &**m));
            false
        });
        if methods.contains(&"GET") {
            methods.push("HEAD");
        }
        methods.sort_unstable();
        methods.dedup();
        methods
    }

    /// The first route, in precedence order, whose method fits.
    fn find<'r, 'p>(
        &'r self,
        rest: &'p str,
        method: &str,
        captures: &mut Captures<'p>,
    ) -> Option<(&'r Endpoint<T>, Option<&'p str>)> {
        let mut found = None;
        self.walk(rest, captures, |ends, catch_all| {
            found = ends.serving(method).map(|e| (e, catch_all));
            found.is_some()
        });
        found
    }

    /// Depth-first search in precedence order: at each level the literal child, then the
    /// parameter child, then the catch-all. `at` gets the routes of every pattern shape that
    /// matches the whole path (with the catch-all's raw rest, if any) and stops the walk by
    /// returning true; `captures` then holds the raw values of the params on the way down.
    fn walk<'r, 'p>(
        &'r self,
        rest: &'p str,
        captures: &mut Captures<'p>,
        mut at: impl FnMut(&'r Endpoints<T>, Option<&'p str>) -> bool,
    ) {
        let mut stack: SmallVec<[Visit<'p>; WALK_INLINE]> =
            smallvec![Visit::new(ROOT, rest, false)];
        while let Some(top) = stack.last_mut() {
            let node = &self.nodes[top.node];
            match top.step {
                Step::Literal => {
                    top.step = Step::Param;
                    if node.literals.is_empty() {
                        continue;
                    }
                    let decoded = percent_decode(top.segment);
                    // Literals are UTF-8 (patterns are JSON strings); a segment that is not
                    // cannot match.
                    let Ok(text) = std::str::from_utf8(&decoded) else {
                        continue;
                    };
                    let Some(child) = node.literal(text) else {
                        continue;
                    };
                    match top.after {
                        Some(next) => stack.push(Visit::new(child, next, false)),
                        None => {
                            if self.nodes[child].end().is_some_and(|e| at(e, None)) {
                                return;
                            }
                        }
                    }
                }
                Step::Param => {
                    top.step = Step::CatchAll;
                    let Some(child) = node.param().filter(|_| !top.segment.is_empty()) else {
                        continue;
                    };
                    captures.push(top.segment);
                    match top.after {
                        Some(next) => stack.push(Visit::new(child, next, true)),
                        None => {
                            if self.nodes[child].end().is_some_and(|e| at(e, None)) {
                                return;
                            }
                            captures.pop();
                        }
                    }
                }
                Step::CatchAll => {
                    if node.catch_all().is_some_and(|e| at(e, Some(top.rest))) {
                        return;
                    }
                    if top.captured {
                        captures.pop();
                    }
                    stack.pop();
                }
            }
        }
    }
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
        assert!(
            r.nodes[r.nodes[ROOT].literal("a").unwrap()]
                .param()
                .is_none(),
            "empty branch pruned"
        );
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

    #[test]
    fn pattern_bounds_are_the_limits_and_the_messages_name_them() {
        let deep = |n: usize| "/a".repeat(n);
        assert!(check_pattern(&deep(MAX_PATTERN_SEGMENTS)).is_ok());
        let why = check_pattern(&deep(MAX_PATTERN_SEGMENTS + 1)).unwrap_err();
        assert!(why.contains(&MAX_PATTERN_SEGMENTS.to_string()), "{why}");
        assert!(check_pattern(&"/".repeat(MAX_PATTERN_SEGMENTS)).is_ok());
        assert!(check_pattern(&"/".repeat(30_000)).is_err());

        let long = |n: usize| format!("/{}", "x".repeat(n - 1));
        assert!(check_pattern(&long(MAX_PATTERN_LEN)).is_ok());
        let why = check_pattern(&long(MAX_PATTERN_LEN + 1)).unwrap_err();
        assert!(why.contains(&MAX_PATTERN_LEN.to_string()), "{why}");

        let mut r = Router::default();
        assert!(r.insert("GET", &deep(20_000), 0).is_err());
        assert!(r.remove("GET", &deep(20_000)).is_none());
    }

    /// The worst route set a worker may declare (1,024 routes of 128 distinct segments) makes
    /// 131,072 nodes, in each of the gateway's two copies of the table: they stay small.
    #[test]
    fn a_node_is_small() {
        assert!(std::mem::size_of::<Node<std::sync::Arc<()>>>() <= 40);
    }

    /// The trie built directly, 200,000 levels deep (far past the bound, which a HELLO cannot
    /// cross): insert, lookups that match at the bottom and ones that backtrack all the way
    /// up, clone, removal and drop all run in loops. A recursion would overflow the 2 MiB
    /// stack of a test thread long before.
    #[test]
    fn a_trie_far_deeper_than_the_bound_never_reaches_the_call_stack() {
        const DEPTH: usize = 200_000;
        let literals = vec![Segment::Literal("a"); DEPTH];
        let mut params = vec![Segment::Param("p"); DEPTH];
        let mut r = Router::default();
        r.insert_segments("GET", "/deep-literals", &literals, 0)
            .unwrap();
        r.insert_segments("GET", "/deep-params", &params, 1)
            .unwrap();
        r.insert("GET", "/{*rest}", 2).unwrap();
        let err = r
            .insert_segments("GET", "/again", &literals, 9)
            .unwrap_err();
        assert_eq!(err.existing, "/deep-literals");

        let a_path = "/a".repeat(DEPTH);
        assert_eq!(hit(&r, "GET", &a_path).unwrap(), (0, vec![]));
        let b_path = "/b".repeat(DEPTH);
        let (id, got) = hit(&r, "GET", &b_path).unwrap();
        assert_eq!((id, got.len()), (1, DEPTH));
        assert!(got.iter().all(|(n, v)| n == "p" && v == "b"));
        // One segment too many: both chains dead-end at the bottom and the search climbs
        // back to the root's catch-all, its captures all dropped.
        let longer = format!("{a_path}/x");
        assert_eq!(
            hit(&r, "GET", &longer).unwrap(),
            (2, vec![("rest".into(), longer[1..].into())])
        );
        assert!(hit(&r, "POST", &a_path).is_none());

        let mut copy = r.clone();
        drop(r);
        assert_eq!(copy.remove_segments("GET", &literals), Some(0));
        assert_eq!(
            hit(&copy, "GET", &a_path).unwrap().0,
            1,
            "a is a param value"
        );
        params.push(Segment::Param("q"));
        assert_eq!(copy.remove_segments("GET", &params), None);
        params.pop();
        assert_eq!(copy.remove_segments("GET", &params), Some(1));
        assert_eq!(copy.remove("GET", "/{*rest}"), Some(2));
        assert!(copy.nodes[ROOT].is_empty(), "every branch pruned");
        assert_eq!(copy.free.len(), copy.nodes.len() - 1);
        assert!(hit(&copy, "GET", &a_path).is_none());
        // Freed nodes are reused, not leaked.
        copy.insert_segments("GET", "/again", &literals, 3).unwrap();
        assert_eq!(copy.nodes.len(), 2 * DEPTH + 1);
        assert_eq!(hit(&copy, "GET", &a_path).unwrap().0, 3);
    }
}

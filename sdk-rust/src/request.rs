//! [`Request`]: what a handler receives.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::AsHeaderName;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use serde::de::DeserializeOwned;
use vyx_core::frame::HeaderList;

use crate::body::Body;
use crate::error::Error;

/// An HTTP request, as the gateway matched and forwarded it.
///
/// The gateway has already routed it: [`Request::param`] holds the path parameters of the
/// route's pattern, decoded. [`Request::path`] and [`Request::raw_query`] are raw, as the
/// client sent them; [`Request::query`] is the query decoded (the meaning `query` has in
/// every vyx SDK).
///
/// ```
/// async fn product(mut req: vyx::Request) -> vyx::Result<String> {
///     let id = req.param("id").unwrap_or_default().to_owned();
///     let verbose = req.query().any(|(k, v)| k == "verbose" && v == "1");
///     let agent = req.header("user-agent").and_then(|v| v.to_str().ok()).unwrap_or("?").to_owned();
///     let note = req.text().await?; // reading the body borrows `req` mutably
///     Ok(format!("{id} {verbose} {agent} {note}"))
/// }
/// ```
pub struct Request {
    method: Method,
    /// Path and query, raw (visible ASCII: the gateway guarantees it).
    target: String,
    path_len: usize,
    params: PathParams,
    headers: HeaderMap,
    body: Body,
    route: Option<Arc<str>>,
    /// An upgrade request's connection, once its 101 is sent (see [`crate::upgrade`]).
    upgrade: Option<tokio::sync::oneshot::Receiver<crate::upgrade::Upgraded>>,
    /// The stream it came on, for [`Request::send_informational`].
    stream: Option<vyx_core::session::Stream>,
}

impl Request {
    /// Taken by [`crate::upgrade::on`].
    pub(crate) fn take_upgrade(
        &mut self,
    ) -> Option<tokio::sync::oneshot::Receiver<crate::upgrade::Upgraded>> {
        self.upgrade.take()
    }

    pub(crate) fn set_stream(&mut self, stream: vyx_core::session::Stream) {
        self.stream = Some(stream);
    }

    /// Sends an interim (1xx) response now, ahead of the handler's response: 103 Early
    /// Hints, or any 1xx but 101 (PROTOCOL.md §3.11). `Ok(true)` when it went out;
    /// `Ok(false)` when it was dropped, as an interim response may be: the gateway did not
    /// grant `informational`, or 8 were sent already. The gateway forwards them to
    /// HTTP/1.1 clients (not HTTP/1.0 or HTTP/2, and never a 100). A bad status or header is
    /// an error and nothing is sent; the handler goes on. (A tower service has no way to
    /// send one: hyper's services have no server-side 1xx either.)
    ///
    /// ```
    /// async fn page(req: vyx::Request) -> vyx::Result<&'static str> {
    ///     let mut hints = vyx::HeaderMap::new();
    ///     hints.insert("link", vyx::HeaderValue::from_static("</app.css>; rel=preload; as=style"));
    ///     req.send_informational(vyx::StatusCode::EARLY_HINTS, &hints)?;
    ///     Ok("<!doctype html>...")
    /// }
    /// ```
    pub fn send_informational(
        &self,
        status: http::StatusCode,
        headers: &HeaderMap,
    ) -> Result<bool, Error> {
        let Some(stream) = &self.stream else {
            return Ok(false); // a request made in a test, not received
        };
        let fields: Vec<(&[u8], &[u8])> = headers
            .iter()
            .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
            .collect();
        Ok(stream.send_informational(status.as_u16(), &fields)?)
    }

    pub(crate) fn set_upgrade(
        &mut self,
        rx: tokio::sync::oneshot::Receiver<crate::upgrade::Upgraded>,
    ) {
        self.upgrade = Some(rx);
    }

    pub(crate) fn from_incoming(
        method: Bytes,
        target: Bytes,
        params: Vec<(Bytes, Bytes)>,
        headers: HeaderList,
        body: Body,
        route: Option<Arc<str>>,
    ) -> Request {
        let method = Method::from_bytes(&method).unwrap_or_else(|_| {
            // The core accepts only token methods, which `http` accepts too.
            tracing::debug!(method = ?method, "unparsable method");
            Method::GET
        });
        let target = match String::from_utf8(target.into()) {
            Ok(t) => t,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        Request::new(
            method,
            target,
            PathParams::from_raw(params),
            header_map(headers),
            body,
            route,
        )
    }

    fn new(
        method: Method,
        target: String,
        params: PathParams,
        headers: HeaderMap,
        body: Body,
        route: Option<Arc<str>>,
    ) -> Request {
        let path_len = target.find('?').unwrap_or(target.len());
        Request {
            method,
            target,
            path_len,
            params,
            headers,
            body,
            route,
            upgrade: None,
            stream: None,
        }
    }

    /// The request method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The path as the client sent it, not percent-decoded, without the query.
    ///
    /// ```
    /// let req = vyx::Request::from(
    ///     http::Request::get("/a%20b?x=1").body(vyx::Body::empty()).unwrap(),
    /// );
    /// assert_eq!(req.path(), "/a%20b");
    /// assert_eq!(req.raw_query(), Some("x=1"));
    /// ```
    pub fn path(&self) -> &str {
        &self.target[..self.path_len]
    }

    /// The query as the client sent it (without `?`), not decoded; `None` when the target
    /// has no `?`. [`Request::query`] decodes it.
    pub fn raw_query(&self) -> Option<&str> {
        self.target.get(self.path_len + 1..)
    }

    /// Path and query as the client sent them.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The query's `name=value` pairs, decoded with the `application/x-www-form-urlencoded`
    /// rules: `+` is a space, `%XX` is a byte, and byte sequences that are not UTF-8 become
    /// U+FFFD. Empty pieces (`a=1&&b=2`) are skipped; a piece without `=` has an empty
    /// value. Repeated names come out as often as they appear, in order.
    ///
    /// ```
    /// let req = vyx::Request::from(
    ///     http::Request::get("/s?q=caf%C3%A9+au+lait&tag=a&tag=b&flag").body(vyx::Body::empty()).unwrap(),
    /// );
    /// let pairs: Vec<(String, String)> =
    ///     req.query().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    /// assert_eq!(pairs[0], ("q".into(), "café au lait".into()));
    /// assert_eq!(pairs.len(), 4);
    /// assert_eq!(req.query_param("flag").as_deref(), Some(""));
    /// ```
    pub fn query(&self) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> + '_ {
        parse_query(self.raw_query().unwrap_or(""))
    }

    /// The decoded value of the first query pair named `name` (see [`Request::query`]).
    pub fn query_param(&self, name: &str) -> Option<Cow<'_, str>> {
        self.query().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The value of path parameter `name` (`{name}` or `{*name}` in the route's pattern),
    /// percent-decoded by the gateway. A value whose decoded bytes are not UTF-8 is given
    /// lossily (invalid sequences become U+FFFD); [`PathParams::get_raw`] has the bytes.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name)
    }

    /// All path parameters, in pattern order.
    pub fn params(&self) -> &PathParams {
        &self.params
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header<K: AsHeaderName>(&self, name: K) -> Option<&HeaderValue> {
        self.headers.get(name)
    }

    /// All headers. Repeated headers are kept, in the order the gateway sent them.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The client's IP address as the gateway saw it: the last `x-forwarded-for` element,
    /// the one the gateway appended for the peer it accepted (earlier entries come from the
    /// client or proxies before it, and can be forged), read by vyx-core's
    /// [`client_ip`](vyx_core::host_rules::client_ip) as in every SDK. `None` when the
    /// request carries no usable one.
    ///
    /// ```
    /// let req = vyx::Request::from(
    ///     http::Request::get("/")
    ///         .header("x-forwarded-for", "198.51.100.7, 203.0.113.9")
    ///         .body(vyx::Body::empty())
    ///         .unwrap(),
    /// );
    /// assert_eq!(req.client_ip(), Some("203.0.113.9".parse().unwrap()));
    /// ```
    pub fn client_ip(&self) -> Option<IpAddr> {
        client_ip(&self.headers)
    }

    /// The HTTP version the client used, from the gateway's `via` element (the last one), read
    /// by vyx-core's [`http_version`](vyx_core::host_rules::http_version) as in every SDK;
    /// HTTP/1.1 when the request carries no readable one.
    ///
    /// ```
    /// let req = vyx::Request::from(
    ///     http::Request::get("/")
    ///         .header("via", "2 vyx")
    ///         .body(vyx::Body::empty())
    ///         .unwrap(),
    /// );
    /// assert_eq!(req.version(), http::Version::HTTP_2);
    /// ```
    pub fn version(&self) -> http::Version {
        http_version(&self.headers)
    }

    /// The route pattern that matched, e.g. `/hello/{name}` (`None` for a request not built
    /// by the worker).
    pub fn route(&self) -> Option<&str> {
        self.route.as_deref()
    }

    /// Reads the whole body. The bytes are kept, so that a later call (or
    /// [`Request::text`], [`Request::json`], [`Request::into_body`]) sees them again.
    ///
    /// Fails with [`Error::Body`] when the client went away or the connection to the
    /// gateway was lost.
    pub async fn bytes(&mut self) -> Result<Bytes, Error> {
        if let Some(b) = self.body.as_full() {
            return Ok(b.clone());
        }
        let bytes = std::mem::take(&mut self.body).collect_bytes().await?;
        self.body = Body::from(bytes.clone());
        Ok(bytes)
    }

    /// Reads the whole body as UTF-8 text; [`Error::InvalidUtf8`] (a 400 as a response)
    /// when it is not.
    pub async fn text(&mut self) -> Result<String, Error> {
        let bytes = self.bytes().await?;
        match std::str::from_utf8(&bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(Error::InvalidUtf8(e)),
        }
    }

    /// Reads the whole body as JSON; [`Error::InvalidJson`] (a 400 as a response) when it
    /// does not parse as a `T`.
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct NewUser { name: String }
    ///
    /// async fn create(mut req: vyx::Request) -> vyx::Result<String> {
    ///     let user: NewUser = req.json().await?;
    ///     Ok(format!("created {}", user.name))
    /// }
    /// ```
    pub async fn json<T: DeserializeOwned>(&mut self) -> Result<T, Error> {
        let bytes = self.bytes().await?;
        serde_json::from_slice(&bytes).map_err(Error::InvalidJson)
    }

    /// The body, to stream it. Reading it grants the gateway credit to send more.
    pub fn into_body(self) -> Body {
        self.body
    }

    /// Takes the body out, leaving an empty one.
    pub fn take_body(&mut self) -> Body {
        std::mem::take(&mut self.body)
    }

    /// The body, mutably (e.g. to read it as a stream without giving up the request).
    pub fn body_mut(&mut self) -> &mut Body {
        &mut self.body
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("target", &self.target)
            .field("params", &self.params)
            .field("headers", &self.headers)
            .field("body", &self.body)
            .finish()
    }
}

/// Into the request a tower service (e.g. an axum `Router`) takes: the URI is the raw
/// target (path and query), the version the client's ([`Request::version`]), and the path
/// parameters are in the
/// [`PathParams`] extension. With the `axum` feature (on by default), the client's IP
/// ([`Request::client_ip`], port 0: the gateway does not forward it) is there too as axum's
/// `ConnectInfo<SocketAddr>`, so that the `ConnectInfo` extractor works as behind axum's own
/// server.
impl From<Request> for http::Request<Body> {
    fn from(req: Request) -> http::Request<Body> {
        let uri = target_uri(req.target);
        let mut out = http::Request::new(req.body);
        #[cfg(feature = "axum")]
        if let Some(ip) = client_ip(&req.headers) {
            out.extensions_mut()
                .insert(axum::extract::ConnectInfo(std::net::SocketAddr::new(ip, 0)));
        }
        *out.method_mut() = req.method;
        *out.version_mut() = http_version(&req.headers);
        *out.uri_mut() = uri;
        *out.headers_mut() = req.headers;
        out.extensions_mut().insert(req.params);
        out
    }
}

/// From an `http::Request`, e.g. to test a handler without a gateway. Path parameters are
/// taken from a [`PathParams`] extension when there is one.
///
/// ```
/// let req = vyx::Request::from(
///     http::Request::get("/hello/ada")
///         .extension(vyx::PathParams::from_iter([("name", "ada")]))
///         .body(vyx::Body::empty())
///         .unwrap(),
/// );
/// assert_eq!(req.param("name"), Some("ada"));
/// ```
impl From<http::Request<Body>> for Request {
    fn from(req: http::Request<Body>) -> Request {
        let (mut parts, body) = req.into_parts();
        let target = parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str().to_owned())
            .unwrap_or_else(|| "/".to_owned());
        let params = parts.extensions.remove::<PathParams>().unwrap_or_default();
        Request::new(parts.method, target, params, parts.headers, body, None)
    }
}

/// The client's IP by the core's rule (the last `x-forwarded-for` element).
fn client_ip(headers: &HeaderMap) -> Option<IpAddr> {
    let pairs = headers
        .iter()
        .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
    vyx_core::host_rules::client_ip(pairs)
}

/// The client's HTTP version by the core's rule (the last `via` element).
fn http_version(headers: &HeaderMap) -> http::Version {
    let pairs = headers
        .iter()
        .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
    match vyx_core::host_rules::http_version(pairs) {
        (1, 0) => http::Version::HTTP_10,
        (2, _) => http::Version::HTTP_2,
        (3, _) => http::Version::HTTP_3,
        _ => http::Version::HTTP_11,
    }
}

/// The target as a URI. The gateway sends visible ASCII only, but `http` refuses a few of
/// those bytes (`"`, `{`, ...): they are percent-encoded rather than losing the request.
fn target_uri(target: String) -> Uri {
    if let Ok(uri) = Uri::try_from(target.as_str()) {
        return uri;
    }
    const REFUSED: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'<')
        .add(b'>')
        .add(b'\\')
        .add(b'^')
        .add(b'`')
        .add(b'{')
        .add(b'|')
        .add(b'}');
    let encoded = percent_encoding::utf8_percent_encode(&target, REFUSED).to_string();
    Uri::try_from(encoded).unwrap_or_else(|_| Uri::from_static("/"))
}

/// Builds the header map from the frame's header list. Names arrive lower-case and valid,
/// values without CR, LF or NUL (the core checks both); an entry `http` still refuses is
/// dropped with a debug log rather than failing the request. So are the fields past what a
/// `HeaderMap` can hold (24,576 names): a frame may carry 65,535, and `with_capacity` or
/// `append` would panic on them.
pub(crate) fn header_map(list: HeaderList) -> HeaderMap {
    let mut map = HeaderMap::new();
    let _ = map.try_reserve(list.len());
    for (name, value) in list {
        let name = match HeaderName::from_bytes(&name) {
            Ok(n) => n,
            Err(_) => {
                tracing::debug!(name = ?name, "dropping request header with an invalid name");
                continue;
            }
        };
        match HeaderValue::from_maybe_shared(value) {
            Ok(v) => {
                if map.try_append(name, v).is_err() {
                    tracing::warn!("dropping request headers past what a HeaderMap holds");
                    break;
                }
            }
            Err(_) => tracing::debug!(%name, "dropping request header with an invalid value"),
        }
    }
    map
}

/// Path parameters: `(name, value)` pairs in the order of the route's pattern, values
/// percent-decoded by the gateway.
///
/// Also inserted as a request extension for tower services, so an axum handler can take
/// `Extension(params): Extension<vyx::PathParams>`.
///
/// ```
/// let params = vyx::PathParams::from_iter([("user", "ada"), ("rest", "a/b")]);
/// assert_eq!(params.get("rest"), Some("a/b"));
/// assert_eq!(params.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["user", "rest"]);
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PathParams {
    entries: Vec<Param>,
}

#[derive(Clone, PartialEq, Eq)]
struct Param {
    name: String,
    value: String,
    raw: Bytes,
}

impl PathParams {
    fn from_raw(raw: Vec<(Bytes, Bytes)>) -> PathParams {
        PathParams {
            entries: raw
                .into_iter()
                .map(|(name, raw)| Param {
                    name: String::from_utf8_lossy(&name).into_owned(),
                    value: String::from_utf8_lossy(&raw).into_owned(),
                    raw,
                })
                .collect(),
        }
    }

    /// The value of `name`; invalid UTF-8 in the decoded value became U+FFFD.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_str())
    }

    /// The decoded bytes of `name`, exactly as the gateway sent them.
    pub fn get_raw(&self, name: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|p| p.name == name)
            .map(|p| &p.raw[..])
    }

    /// `(name, value)` pairs in pattern order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.entries
            .iter()
            .map(|p| (p.name.as_str(), p.value.as_str()))
    }

    /// The number of parameters.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the route's pattern has no parameters.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for PathParams {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> PathParams {
        PathParams {
            entries: iter
                .into_iter()
                .map(|(k, v)| {
                    let value: String = v.into();
                    Param {
                        name: k.into(),
                        raw: Bytes::from(value.clone()),
                        value,
                    }
                })
                .collect(),
        }
    }
}

impl fmt::Debug for PathParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// `application/x-www-form-urlencoded` parsing of a raw query.
pub(crate) fn parse_query(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    query.split('&').filter(|p| !p.is_empty()).map(|piece| {
        let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
        (decode_form_component(name), decode_form_component(value))
    })
}

fn decode_form_component(s: &str) -> Cow<'_, str> {
    if !s.contains(['+', '%']) {
        return Cow::Borrowed(s);
    }
    let plus_as_space: Vec<u8> = s
        .bytes()
        .map(|b| if b == b'+' { b' ' } else { b })
        .collect();
    let decoded: Vec<u8> = percent_encoding::percent_decode(&plus_as_space).collect();
    match String::from_utf8(decoded) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        parse_query(q)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    fn p(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    /// The core's rule, the same in every SDK (spec/vectors/client.json): the port a proxy
    /// wrote is not the client's, and an element that is not an address gives none.
    #[test]
    fn client_ip_is_the_cores_rule() {
        let ip = |xff: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("x-forwarded-for", xff.parse().unwrap());
            client_ip(&headers)
        };
        assert_eq!(
            ip("[2001:db8::1]:8080"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(ip("192.0.2.1:4711"), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(ip("fe80::1%eth0"), None);
    }

    /// The tower request carries the client's version, so a service that checks it (tonic
    /// asks for HTTP/2) sees the client's, not HTTP/1.1.
    #[test]
    fn the_http_request_carries_the_client_s_version() {
        for (via, want) in [
            (Some("1.1 cdn, 2 vyx"), http::Version::HTTP_2),
            (Some("1.0 vyx"), http::Version::HTTP_10),
            (None, http::Version::HTTP_11),
        ] {
            let mut b = http::Request::get("/");
            if let Some(via) = via {
                b = b.header("via", via);
            }
            let req = Request::from(b.body(Body::empty()).unwrap());
            assert_eq!(http::Request::from(req).version(), want, "{via:?}");
        }
    }

    #[test]
    fn query_decoding_follows_form_rules() {
        assert_eq!(pairs(""), vec![]);
        assert_eq!(pairs("a=1&b=2"), vec![p("a", "1"), p("b", "2")]);
        assert_eq!(pairs("q=a+b%20c"), vec![p("q", "a b c")]);
        assert_eq!(pairs("q=%2B1"), vec![p("q", "+1")]);
        assert_eq!(pairs("na%6De=x"), vec![p("name", "x")]);
        assert_eq!(pairs("a&&b=&=c"), vec![p("a", ""), p("b", ""), p("", "c")]);
        assert_eq!(pairs("k=v=w"), vec![p("k", "v=w")]);
        assert_eq!(pairs("t=1&t=2"), vec![p("t", "1"), p("t", "2")]);
        assert_eq!(pairs("e=caf%C3%A9"), vec![p("e", "café")]);
        // Invalid UTF-8 is replaced; a lone or malformed '%' stays as it is.
        assert_eq!(pairs("x=%FF"), vec![p("x", "\u{FFFD}")]);
        assert_eq!(pairs("x=100%&y=%zz"), vec![p("x", "100%"), p("y", "%zz")]);
    }

    /// spec/vectors/query.json: the pairs every SDK must give, on the worker's own path
    /// (the raw target as the gateway sends it).
    #[test]
    fn query_decoding_passes_the_shared_vectors() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/vectors/query.json");
        let text = std::fs::read_to_string(path).unwrap();
        let file: serde_json::Value = serde_json::from_str(&text).unwrap();
        let vectors = file["vectors"].as_array().unwrap();
        assert!(vectors.len() >= 20, "{} vectors", vectors.len());
        for v in vectors {
            let name = v["name"].as_str().unwrap();
            let query = v["query"].as_str().unwrap();
            let want: Vec<(String, String)> = v["pairs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|pair| p(pair[0].as_str().unwrap(), pair[1].as_str().unwrap()))
                .collect();
            let target = format!("/v?{query}");
            let req = incoming("GET", &target, &[]);
            let got: Vec<(String, String)> = req
                .query()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            assert_eq!(got, want, "vector {name}: {query:?}");
        }
    }

    #[test]
    fn query_is_the_decoded_form_and_raw_query_the_string() {
        let req = incoming("GET", "/s?q=a+b%21&q=2", &[]);
        assert_eq!(req.raw_query(), Some("q=a+b%21&q=2"));
        let decoded: Vec<_> = req.query().map(|(k, v)| p(&k, &v)).collect();
        assert_eq!(decoded, vec![p("q", "a b!"), p("q", "2")]);
        assert_eq!(req.query_param("q").as_deref(), Some("a b!"));
    }

    #[test]
    fn query_decoding_borrows_when_nothing_to_decode() {
        let mut it = parse_query("plain=value");
        let (k, v) = it.next().unwrap();
        assert!(matches!(k, Cow::Borrowed(_)) && matches!(v, Cow::Borrowed(_)));
    }

    fn hl(items: &[(&str, &[u8])]) -> HeaderList {
        items
            .iter()
            .map(|(k, v)| {
                (
                    Bytes::copy_from_slice(k.as_bytes()),
                    Bytes::copy_from_slice(v),
                )
            })
            .collect()
    }

    #[test]
    fn header_map_keeps_repeats_in_order_and_raw_values() {
        let map = header_map(hl(&[
            ("accept", b"text/html"),
            ("x-tag", b"one"),
            ("cookie", b"a=1"),
            ("x-tag", b"two"),
            ("x-raw", b"caf\xe9"),
        ]));
        assert_eq!(map.len(), 5);
        let tags: Vec<_> = map.get_all("x-tag").iter().collect();
        assert_eq!(tags, ["one", "two"]);
        assert_eq!(map.get("X-Raw").unwrap().as_bytes(), b"caf\xe9");
        assert!(map.get("x-raw").unwrap().to_str().is_err());
    }

    #[test]
    fn header_map_holds_what_it_can_of_a_frame_s_65535_fields_without_panicking() {
        let names: Vec<String> = (0..u16::MAX).map(|i| format!("h{i}")).collect();
        let list: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"v"[..])).collect();
        let map = header_map(hl(&list));
        assert!(
            map.len() > 20_000 && map.len() < usize::from(u16::MAX),
            "{}",
            map.len()
        );
        assert_eq!(map["h0"], "v");
    }

    #[test]
    fn header_map_drops_what_http_refuses() {
        let map = header_map(hl(&[("ok", b"1"), ("bad name", b"2"), ("del", b"a\x7fb")]));
        assert_eq!(map.len(), 1);
        assert_eq!(map["ok"], "1");
    }

    fn incoming(method: &str, target: &str, params: &[(&str, &[u8])]) -> Request {
        Request::from_incoming(
            Bytes::copy_from_slice(method.as_bytes()),
            Bytes::copy_from_slice(target.as_bytes()),
            params
                .iter()
                .map(|(k, v)| {
                    (
                        Bytes::copy_from_slice(k.as_bytes()),
                        Bytes::copy_from_slice(v),
                    )
                })
                .collect(),
            hl(&[("content-type", b"text/plain")]),
            Body::from("body"),
            Some("/files/{*rest}".into()),
        )
    }

    #[test]
    fn request_accessors() {
        let req = incoming("GET", "/files/a%20b/c?x=1&y=a+b", &[("rest", b"a b/c")]);
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.path(), "/files/a%20b/c");
        assert_eq!(req.raw_query(), Some("x=1&y=a+b"));
        assert_eq!(req.query_param("y").as_deref(), Some("a b"));
        assert_eq!(req.param("rest"), Some("a b/c"));
        assert_eq!(req.param("nope"), None);
        assert_eq!(req.route(), Some("/files/{*rest}"));
        assert_eq!(req.header("Content-Type").unwrap(), "text/plain");

        let req = incoming("GET", "/plain", &[]);
        assert_eq!(req.raw_query(), None);
        let req = incoming("GET", "/empty?", &[]);
        assert_eq!(req.raw_query(), Some(""));
        assert_eq!(req.path(), "/empty");
    }

    #[test]
    fn non_utf8_params_are_lossy_and_raw_is_kept() {
        let req = incoming("GET", "/u/%FF", &[("id", b"\xff")]);
        assert_eq!(req.param("id"), Some("\u{FFFD}"));
        assert_eq!(req.params().get_raw("id"), Some(&b"\xff"[..]));
    }

    #[tokio::test]
    async fn body_readers_cache_the_bytes() {
        let mut req = incoming("POST", "/x", &[]);
        assert_eq!(req.text().await.unwrap(), "body");
        assert_eq!(req.bytes().await.unwrap(), "body");
        assert!(matches!(
            req.json::<serde_json::Value>().await,
            Err(Error::InvalidJson(_))
        ));
        assert_eq!(req.into_body().collect_bytes().await.unwrap(), "body");
    }

    #[tokio::test]
    async fn text_refuses_invalid_utf8() {
        let mut req = Request::from(
            http::Request::post("/")
                .body(Body::from(&b"\xff\xfe"[..]))
                .unwrap(),
        );
        let err = req.text().await.unwrap_err();
        assert!(matches!(err, Error::InvalidUtf8(_)));
        assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
    }

    #[test]
    fn converts_to_http_request_with_params_extension() {
        let req = incoming("PUT", "/files/a/b?x=1", &[("rest", b"a/b")]);
        let http_req: http::Request<Body> = req.into();
        assert_eq!(http_req.method(), Method::PUT);
        assert_eq!(http_req.uri().path(), "/files/a/b");
        assert_eq!(http_req.uri().query(), Some("x=1"));
        assert_eq!(http_req.headers()["content-type"], "text/plain");
        let params = http_req.extensions().get::<PathParams>().unwrap();
        assert_eq!(params.get("rest"), Some("a/b"));

        let back = Request::from(http_req);
        assert_eq!(back.target(), "/files/a/b?x=1");
        assert_eq!(back.param("rest"), Some("a/b"));
    }

    #[test]
    fn odd_targets_still_make_a_uri() {
        let uri = target_uri("/a{b}|c\"d?q={x}".to_owned());
        assert!(uri.path().starts_with("/a"));
        assert_eq!(target_uri("/ok?x=1".to_owned()), "/ok?x=1");
    }
}

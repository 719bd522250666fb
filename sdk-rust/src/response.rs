//! [`Response`], its builder, and [`IntoResponse`]: what handlers return.

use std::borrow::Cow;
use std::convert::Infallible;
use std::fmt;

use bytes::Bytes;
use futures_util::Stream;
use http::header::{IntoHeaderName, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::Serialize;

use crate::body::Body;
use crate::error::BoxError;

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
const APPLICATION_JSON: &str = "application/json";
const OCTET_STREAM: &str = "application/octet-stream";

/// An HTTP response: status, headers and a [`Body`], full or streamed.
///
/// Handlers rarely build one by hand: anything that implements [`IntoResponse`] will do.
///
/// ```
/// use vyx::{Response, StatusCode};
///
/// let created = Response::builder()
///     .status(StatusCode::CREATED)
///     .header("location", "/items/7")
///     .body("created");
/// let json = Response::json(serde_json::json!({"id": 7}));
/// let text = Response::text("hi").with_status(StatusCode::ACCEPTED);
/// # let _ = (created, json, text);
/// ```
pub struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Body,
}

impl Response {
    /// 200 with this body and no headers.
    pub fn new(body: impl Into<Body>) -> Response {
        Response {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: body.into(),
        }
    }

    /// A builder, to set status and headers before the body.
    pub fn builder() -> ResponseBuilder {
        ResponseBuilder {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            error: None,
        }
    }

    /// 200 with `text/plain; charset=utf-8`.
    pub fn text(text: impl Into<String>) -> Response {
        Response::new(text.into()).with_default_content_type(TEXT_PLAIN)
    }

    /// 200 with `application/octet-stream`.
    pub fn bytes(bytes: impl Into<Bytes>) -> Response {
        Response::new(bytes.into()).with_default_content_type(OCTET_STREAM)
    }

    /// 200 with `application/json`; 500 (logged) if `value` cannot be serialized.
    pub fn json<T: Serialize>(value: T) -> Response {
        match serde_json::to_vec(&value) {
            Ok(v) => Response::new(v).with_default_content_type(APPLICATION_JSON),
            Err(e) => {
                tracing::error!(error = %e, "serializing the JSON response failed");
                internal_error()
            }
        }
    }

    /// 200 with `application/octet-stream` and a body sent chunk by chunk as the stream
    /// yields them, honouring flow control: nothing is buffered. An `Err` item resets
    /// the response mid-way (the client sees a broken response, not a short one).
    ///
    /// ```
    /// use futures_util::StreamExt;
    ///
    /// let lines = futures_util::stream::iter(1..=3)
    ///     .map(|i| Ok::<_, std::io::Error>(bytes::Bytes::from(format!("line {i}\n"))));
    /// let res = vyx::Response::stream(lines).with_header("content-type", "text/plain".parse().unwrap());
    /// # let _ = res;
    /// ```
    pub fn stream<S, E>(stream: S) -> Response
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        Response::new(Body::from_stream(stream)).with_default_content_type(OCTET_STREAM)
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The status, mutably.
    pub fn status_mut(&mut self) -> &mut StatusCode {
        &mut self.status
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The headers, mutably.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.headers
    }

    /// The body.
    pub fn body(&self) -> &Body {
        &self.body
    }

    /// The body, mutably.
    pub fn body_mut(&mut self) -> &mut Body {
        &mut self.body
    }

    /// The body, giving up the rest.
    pub fn into_body(self) -> Body {
        self.body
    }

    /// Status, headers and body.
    pub fn into_parts(self) -> (StatusCode, HeaderMap, Body) {
        (self.status, self.headers, self.body)
    }

    /// The same response with another status.
    pub fn with_status(mut self, status: StatusCode) -> Response {
        self.status = status;
        self
    }

    /// The same response with header `name` set to `value` (replacing earlier values).
    /// Like [`HeaderMap::insert`], a `&'static str` name panics if it is not a valid
    /// header name; use [`Response::builder`] for names only known at run time.
    pub fn with_header(mut self, name: impl IntoHeaderName, value: HeaderValue) -> Response {
        self.headers.insert(name, value);
        self
    }

    fn with_default_content_type(mut self, value: &'static str) -> Response {
        if !self.headers.contains_key(CONTENT_TYPE) {
            self.headers
                .insert(CONTENT_TYPE, HeaderValue::from_static(value));
        }
        self
    }
}

impl Default for Response {
    fn default() -> Response {
        Response::new(Body::empty())
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &self.body)
            .finish()
    }
}

impl From<Response> for http::Response<Body> {
    fn from(res: Response) -> http::Response<Body> {
        let mut out = http::Response::new(res.body);
        *out.status_mut() = res.status;
        *out.headers_mut() = res.headers;
        out
    }
}

pub(crate) fn internal_error() -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}

/// Builds a [`Response`]; see [`Response::builder`].
///
/// Invalid input (a status outside 100..=999, a header name or value `http` refuses) is
/// remembered and reported by [`ResponseBuilder::try_body`]; [`ResponseBuilder::body`]
/// answers 500 instead, and logs why.
#[derive(Debug)]
#[must_use = "a builder does nothing until .body() is called"]
pub struct ResponseBuilder {
    status: StatusCode,
    headers: HeaderMap,
    error: Option<http::Error>,
}

impl ResponseBuilder {
    /// The status; `200` by default. Accepts a [`StatusCode`] or a `u16`.
    pub fn status<S>(mut self, status: S) -> ResponseBuilder
    where
        S: TryInto<StatusCode>,
        S::Error: Into<http::Error>,
    {
        if self.error.is_none() {
            match status.try_into() {
                Ok(s) => self.status = s,
                Err(e) => self.error = Some(e.into()),
            }
        }
        self
    }

    /// Appends a header (a repeated name adds another value).
    pub fn header<K, V>(mut self, name: K, value: V) -> ResponseBuilder
    where
        K: TryInto<HeaderName>,
        K::Error: Into<http::Error>,
        V: TryInto<HeaderValue>,
        V::Error: Into<http::Error>,
    {
        if self.error.is_none() {
            let name = name.try_into().map_err(Into::into);
            let value = value.try_into().map_err(Into::into);
            match name.and_then(|n| value.map(|v| (n, v))) {
                Ok((n, v)) => {
                    self.headers.append(n, v);
                }
                Err(e) => self.error = Some(e),
            }
        }
        self
    }

    /// The headers so far (`None` after an invalid input).
    pub fn headers_mut(&mut self) -> Option<&mut HeaderMap> {
        match self.error {
            None => Some(&mut self.headers),
            Some(_) => None,
        }
    }

    /// Finishes the response with `body`. No content-type is added: set it with
    /// [`ResponseBuilder::header`]. After an invalid status or header, this is a 500 and
    /// the error is logged.
    pub fn body(self, body: impl Into<Body>) -> Response {
        self.try_body(body).unwrap_or_else(|e| {
            tracing::error!(error = %e, "invalid response built");
            internal_error()
        })
    }

    /// Like [`ResponseBuilder::body`], with the first invalid input as an error.
    pub fn try_body(self, body: impl Into<Body>) -> Result<Response, http::Error> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(Response {
                status: self.status,
                headers: self.headers,
                body: body.into(),
            }),
        }
    }
}

/// Anything a handler can return.
///
/// Implemented for [`Response`], text (`&'static str`, `String`, `Cow<'static, str>`:
/// `text/plain; charset=utf-8`), bytes (`Bytes`, `Vec<u8>`, `&'static [u8]`:
/// `application/octet-stream`), [`Json`] (`application/json`), [`StatusCode`] (empty
/// body), `(StatusCode, T)`, `()` (200, empty), [`Body`] (200, no content-type),
/// `http::Response<B>` for any `B: http_body::Body<Data = Bytes>` (what tower services
/// return), `Result<T, E>` where both sides implement it, and [`crate::Error`].
///
/// A default content-type is only added when the response has none.
///
/// ```
/// use vyx::{IntoResponse, StatusCode};
///
/// let res = (StatusCode::NOT_FOUND, "no such user").into_response();
/// assert_eq!(res.status(), 404);
/// assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
/// ```
pub trait IntoResponse {
    /// Converts `self` into a response.
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response {
        Response::new(self).with_default_content_type(TEXT_PLAIN)
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        Response::new(self).with_default_content_type(TEXT_PLAIN)
    }
}

impl IntoResponse for Cow<'static, str> {
    fn into_response(self) -> Response {
        match self {
            Cow::Borrowed(s) => s.into_response(),
            Cow::Owned(s) => s.into_response(),
        }
    }
}

impl IntoResponse for Bytes {
    fn into_response(self) -> Response {
        Response::bytes(self)
    }
}

impl IntoResponse for Vec<u8> {
    fn into_response(self) -> Response {
        Response::bytes(self)
    }
}

impl IntoResponse for &'static [u8] {
    fn into_response(self) -> Response {
        Response::bytes(self)
    }
}

impl IntoResponse for Body {
    fn into_response(self) -> Response {
        Response::new(self)
    }
}

impl IntoResponse for () {
    fn into_response(self) -> Response {
        Response::default()
    }
}

impl IntoResponse for StatusCode {
    fn into_response(self) -> Response {
        Response::default().with_status(self)
    }
}

impl<T: IntoResponse> IntoResponse for (StatusCode, T) {
    fn into_response(self) -> Response {
        self.1.into_response().with_status(self.0)
    }
}

impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(t) => t.into_response(),
            Err(e) => e.into_response(),
        }
    }
}

impl IntoResponse for Infallible {
    fn into_response(self) -> Response {
        match self {}
    }
}

impl<B> IntoResponse for http::Response<B>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    fn into_response(self) -> Response {
        let (parts, body) = self.into_parts();
        Response {
            status: parts.status,
            headers: parts.headers,
            body: Body::new(body),
        }
    }
}

/// A JSON response (`application/json`) from any `Serialize` value.
///
/// ```
/// async fn hello(req: vyx::Request) -> vyx::Json<serde_json::Value> {
///     vyx::Json(serde_json::json!({ "hello": req.param("name").unwrap_or_default() }))
/// }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        Response::json(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    async fn parts(r: impl IntoResponse) -> (StatusCode, HeaderMap, Bytes) {
        let (status, headers, body) = r.into_response().into_parts();
        (status, headers, body.collect_bytes().await.unwrap())
    }

    fn content_type(h: &HeaderMap) -> Option<&str> {
        h.get(CONTENT_TYPE).map(|v| v.to_str().unwrap())
    }

    #[tokio::test]
    async fn strings_are_utf8_text() {
        for r in [
            "hi".into_response(),
            String::from("hi").into_response(),
            Cow::Borrowed("hi").into_response(),
        ] {
            let (s, h, b) = parts(r).await;
            assert_eq!(s, StatusCode::OK);
            assert_eq!(content_type(&h), Some(TEXT_PLAIN));
            assert_eq!(b, "hi");
        }
    }

    #[tokio::test]
    async fn bytes_are_octet_stream() {
        for r in [
            Bytes::from_static(b"\x00\x01").into_response(),
            vec![0u8, 1].into_response(),
            (&b"\x00\x01"[..]).into_response(),
            Response::bytes(vec![0u8, 1]),
        ] {
            let (_, h, b) = parts(r).await;
            assert_eq!(content_type(&h), Some(OCTET_STREAM));
            assert_eq!(b, &b"\x00\x01"[..]);
        }
    }

    #[tokio::test]
    async fn json_is_application_json() {
        let (s, h, b) = parts(Json(serde_json::json!({"a": [1, 2]}))).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(content_type(&h), Some(APPLICATION_JSON));
        assert_eq!(b, r#"{"a":[1,2]}"#);
    }

    #[tokio::test]
    async fn unserializable_json_is_500() {
        let mut map = std::collections::HashMap::new();
        map.insert((1, 2), 3); // tuple keys cannot be JSON object keys
        let (s, _, b) = parts(Json(map)).await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(b, "internal error");
    }

    #[tokio::test]
    async fn status_and_tuples() {
        let (s, h, b) = parts(StatusCode::NO_CONTENT).await;
        assert_eq!((s, h.len(), b.len()), (StatusCode::NO_CONTENT, 0, 0));

        let (s, h, b) = parts((StatusCode::CREATED, Json(1))).await;
        assert_eq!(
            (s, content_type(&h), &b[..]),
            (StatusCode::CREATED, Some(APPLICATION_JSON), &b"1"[..])
        );

        let (s, _, b) = parts(()).await;
        assert_eq!((s, b.len()), (StatusCode::OK, 0));
    }

    #[tokio::test]
    async fn results_use_either_side() {
        let ok: Result<&'static str, StatusCode> = Ok("fine");
        assert_eq!(parts(ok).await.2, "fine");
        let err: Result<&'static str, (StatusCode, String)> =
            Err((StatusCode::CONFLICT, "taken".into()));
        let (s, _, b) = parts(err).await;
        assert_eq!((s, &b[..]), (StatusCode::CONFLICT, &b"taken"[..]));
    }

    #[tokio::test]
    async fn sdk_errors_are_500_or_400() {
        let (s, _, b) = parts(Error::other("db down")).await;
        assert_eq!(
            (s, &b[..]),
            (StatusCode::INTERNAL_SERVER_ERROR, &b"internal error"[..])
        );
        let bad = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let (s, _, b) = parts(Error::InvalidJson(bad)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(std::str::from_utf8(&b).unwrap().contains("not valid JSON"));
    }

    #[tokio::test]
    async fn http_responses_keep_status_headers_and_body() {
        let res = http::Response::builder()
            .status(418)
            .header("x-a", "1")
            .header("x-a", "2")
            .body(http_body_util::Full::new(Bytes::from("teapot")))
            .unwrap();
        let (s, h, b) = parts(res).await;
        assert_eq!(s, StatusCode::IM_A_TEAPOT);
        assert_eq!(h.get_all("x-a").iter().count(), 2);
        assert_eq!(content_type(&h), None);
        assert_eq!(b, "teapot");
    }

    #[tokio::test]
    async fn explicit_content_type_wins() {
        let res = (StatusCode::OK, "<p>hi</p>").into_response();
        assert_eq!(content_type(res.headers()), Some(TEXT_PLAIN));
        let res = Response::builder()
            .header(CONTENT_TYPE, "text/html")
            .body("<p>hi</p>");
        assert_eq!(content_type(res.headers()), Some("text/html"));
        let res = Response::stream(futures_util::stream::empty::<Result<Bytes, Infallible>>())
            .with_header(CONTENT_TYPE, HeaderValue::from_static("text/csv"));
        assert_eq!(content_type(res.headers()), Some("text/csv"));
    }

    #[tokio::test]
    async fn builder_sets_status_and_appends_headers() {
        let res = Response::builder()
            .status(201)
            .header("set-cookie", "a=1")
            .header("set-cookie", "b=2")
            .body("made");
        assert_eq!(res.status(), StatusCode::CREATED);
        assert_eq!(res.headers().get_all("set-cookie").iter().count(), 2);
        assert_eq!(content_type(res.headers()), None);
    }

    #[tokio::test]
    async fn builder_errors_become_500() {
        let b = Response::builder().header("bad header", "x");
        assert!(b.try_body("x").is_err());
        let res = Response::builder().status(1000u16).body("x");
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let res = Response::builder().header("x-ok", "a\nb").body("x");
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[tokio::test]
    async fn streamed_response_yields_chunks() {
        let s = futures_util::stream::iter(["a", "b"].map(|c| Ok::<_, Infallible>(Bytes::from(c))));
        let (s, h, b) = parts(Response::stream(s)).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(content_type(&h), Some(OCTET_STREAM));
        assert_eq!(b, "ab");
    }
}

//! [`Body`]: request and response bodies, streamed.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use vyx_core::session::{Stream as CoreStream, TryChunk};

use crate::error::{BoxError, Error};

type BoxStream = Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send>>;
type BoxHttpBody = Pin<Box<dyn http_body::Body<Data = Bytes, Error = BoxError> + Send>>;
type ReadableFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A streamed body: the body of a [`Request`](crate::Request) (read from the gateway as
/// the handler pulls it) or of a [`Response`](crate::Response).
///
/// It implements both [`http_body::Body`] (`Data = Bytes`, so it plugs into tower, axum
/// and hyper) and [`Stream`]`<Item = Result<Bytes, vyx::Error>>`. Reading a request body
/// grants the gateway flow-control credit; a handler that does not read holds the upload
/// where it is, so memory stays bounded whatever the body size.
///
/// ```
/// use futures_util::StreamExt;
///
/// # async fn demo() -> vyx::Result<()> {
/// let mut body = vyx::Body::from("hello");
/// while let Some(chunk) = body.next().await {
///     let chunk: bytes::Bytes = chunk?;
///     assert_eq!(chunk, "hello");
/// }
/// # Ok(()) }
/// ```
///
/// `Body` is `Send + Sync + Unpin`, so a [`Request`](crate::Request) can be borrowed
/// across `.await` in a handler.
pub struct Body {
    inner: Inner,
}

enum Inner {
    Empty,
    Full(Bytes),
    Incoming(Incoming),
    // The mutexes are never locked while polling (`Mutex::get_mut` needs no lock); they are
    // there so that `Body` is `Sync` although the boxed stream or body need only be `Send`.
    Stream(Mutex<BoxStream>),
    Http(Mutex<BoxHttpBody>),
}

/// A request body read from the core's stream handle, chunk by chunk; a future is made
/// only while no chunk is there yet.
struct Incoming {
    stream: CoreStream,
    waiting: Option<Mutex<ReadableFuture>>,
    /// The request's trailers were handed out (or there were none).
    trailers_taken: bool,
}

/// Trailer fields as an `http` header map (the core checked names and values).
fn header_map(fields: &vyx_core::frame::HeaderList) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, value) in fields {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name),
            http::HeaderValue::from_bytes(value),
        ) {
            map.append(n, v);
        }
    }
    map
}

fn exclusive<T>(m: &mut Mutex<T>) -> &mut T {
    m.get_mut().unwrap_or_else(PoisonError::into_inner)
}

impl Body {
    /// A body with no bytes.
    pub fn empty() -> Body {
        Body {
            inner: Inner::Empty,
        }
    }

    /// Wraps any [`http_body::Body`] with `Bytes` data, e.g. the body of an
    /// `http::Response` produced by a tower service. Trailers are dropped when the body is
    /// sent to the gateway (the protocol has none).
    ///
    /// ```
    /// let body = vyx::Body::new(http_body_util::Full::new(bytes::Bytes::from("hi")));
    /// # let _ = body;
    /// ```
    pub fn new<B>(body: B) -> Body
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let mut slot = Some(body);
        if let Some(body) = (&mut slot as &mut dyn Any).downcast_mut::<Option<Body>>() {
            return body.take().expect("slot is full");
        }
        let body = slot.expect("slot is full").map_err(Into::into);
        Body {
            inner: Inner::Http(Mutex::new(Box::pin(body))),
        }
    }

    /// A body read from a stream of chunks, sent as the chunks come (nothing is
    /// buffered). An `Err` item ends the body as failed: a response is then reset.
    ///
    /// ```
    /// let chunks = futures_util::stream::iter(["a", "b", "c"].map(Ok::<_, std::io::Error>));
    /// let body = vyx::Body::from_stream(chunks);
    /// # let _ = body;
    /// ```
    pub fn from_stream<S, T, E>(stream: S) -> Body
    where
        S: Stream<Item = Result<T, E>> + Send + 'static,
        T: Into<Bytes> + 'static,
        E: Into<BoxError> + 'static,
    {
        let mut slot = Some(stream);
        if let Some(body) = (&mut slot as &mut dyn Any).downcast_mut::<Option<Body>>() {
            return body.take().expect("slot is full");
        }
        let stream = futures_util::StreamExt::map(slot.expect("slot is full"), |item| {
            item.map(Into::into).map_err(Into::into)
        });
        Body {
            inner: Inner::Stream(Mutex::new(Box::pin(stream))),
        }
    }

    pub(crate) fn incoming(stream: CoreStream) -> Body {
        if stream.body_ended() && stream.trailers().is_none() {
            return Body::empty();
        }
        Body {
            inner: Inner::Incoming(Incoming {
                stream,
                waiting: None,
                trailers_taken: false,
            }),
        }
    }

    /// Reads the whole body into one buffer.
    ///
    /// ```
    /// # async fn demo() -> vyx::Result<()> {
    /// let bytes = vyx::Body::from("hello").collect_bytes().await?;
    /// assert_eq!(bytes, "hello");
    /// # Ok(()) }
    /// ```
    pub async fn collect_bytes(mut self) -> Result<Bytes, Error> {
        match std::mem::replace(&mut self.inner, Inner::Empty) {
            Inner::Empty => Ok(Bytes::new()),
            Inner::Full(b) => Ok(b),
            Inner::Incoming(Incoming { stream, .. }) => stream.collect().await.map_err(Error::Body),
            other => {
                self.inner = other;
                let mut first: Option<Bytes> = None;
                let mut buf = BytesMut::new();
                while let Some(chunk) = futures_util::StreamExt::next(&mut self).await {
                    let chunk = chunk?;
                    match &first {
                        None if buf.is_empty() => first = Some(chunk),
                        _ => {
                            if let Some(f) = first.take() {
                                buf.extend_from_slice(&f);
                            }
                            buf.extend_from_slice(&chunk);
                        }
                    }
                }
                Ok(first.unwrap_or_else(|| buf.freeze()))
            }
        }
    }

    /// The whole body if it is already in memory (`None` for a streamed body).
    pub(crate) fn as_full(&self) -> Option<&Bytes> {
        match &self.inner {
            Inner::Full(b) => Some(b),
            _ => None,
        }
    }

    fn poll_frame_inner(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        loop {
            let result = match &mut self.inner {
                Inner::Empty => return Poll::Ready(None),
                Inner::Full(b) => {
                    let b = std::mem::take(b);
                    self.inner = Inner::Empty;
                    if b.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                Inner::Incoming(incoming) => {
                    if let Some(waiting) = &mut incoming.waiting {
                        ready!(exclusive(waiting).as_mut().poll(cx));
                        incoming.waiting = None;
                    }
                    match incoming.stream.try_chunk() {
                        Ok(TryChunk::Data(chunk)) => {
                            return Poll::Ready(Some(Ok(Frame::data(chunk))))
                        }
                        // A body that ended with TRAILERS (§3.10) gives them as its last frame.
                        Ok(TryChunk::End) => match incoming.stream.trailers() {
                            Some(t) if !std::mem::replace(&mut incoming.trailers_taken, true) => {
                                return Poll::Ready(Some(Ok(Frame::trailers(header_map(&t)))))
                            }
                            _ => None,
                        },
                        Err(e) => Some(Err(Error::Body(e))),
                        Ok(TryChunk::Pending) => {
                            let stream = incoming.stream.clone();
                            incoming.waiting =
                                Some(Mutex::new(Box::pin(async move { stream.readable().await })));
                            continue;
                        }
                    }
                }
                Inner::Stream(s) => match ready!(exclusive(s).as_mut().poll_next(cx)) {
                    Some(Ok(chunk)) if chunk.is_empty() => continue,
                    Some(Ok(chunk)) => return Poll::Ready(Some(Ok(Frame::data(chunk)))),
                    Some(Err(e)) => Some(Err(from_box_error(e))),
                    None => None,
                },
                Inner::Http(b) => match ready!(exclusive(b).as_mut().poll_frame(cx)) {
                    Some(Ok(frame)) => return Poll::Ready(Some(Ok(frame))),
                    Some(Err(e)) => Some(Err(from_box_error(e))),
                    None => None,
                },
            };
            // The body ended or failed: it stays ended.
            if !matches!(result, Some(Ok(_))) {
                self.inner = Inner::Empty;
            }
            return Poll::Ready(result);
        }
    }
}

/// Keeps a `vyx::Error` that went through a `BoxError` as it was.
fn from_box_error(e: BoxError) -> Error {
    match e.downcast::<Error>() {
        Ok(e) => *e,
        Err(e) => Error::Other(e),
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.get_mut().poll_frame_inner(cx)
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Empty => true,
            Inner::Full(b) => b.is_empty(),
            Inner::Incoming(i) => {
                i.waiting.is_none()
                    && i.stream.body_ended()
                    && (i.trailers_taken || i.stream.trailers().is_none())
            }
            Inner::Stream(_) => false,
            Inner::Http(b) => b
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Empty => SizeHint::with_exact(0),
            Inner::Full(b) => SizeHint::with_exact(b.len() as u64),
            Inner::Incoming(i) if i.waiting.is_none() && i.stream.body_ended() => {
                SizeHint::with_exact(0)
            }
            Inner::Incoming(_) | Inner::Stream(_) => SizeHint::default(),
            Inner::Http(b) => b.lock().unwrap_or_else(PoisonError::into_inner).size_hint(),
        }
    }
}

impl Stream for Body {
    type Item = Result<Bytes, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            return match ready!(this.poll_frame_inner(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) if data.is_empty() => continue,
                    Ok(data) => Poll::Ready(Some(Ok(data))),
                    Err(_trailers) => continue,
                },
                Some(Err(e)) => Poll::Ready(Some(Err(e))),
                None => Poll::Ready(None),
            };
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.inner {
            Inner::Empty => (0, Some(0)),
            Inner::Full(b) if b.is_empty() => (0, Some(0)),
            Inner::Full(_) => (1, Some(1)),
            _ => (0, None),
        }
    }
}

impl Default for Body {
    fn default() -> Body {
        Body::empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.inner {
            Inner::Empty => "empty",
            Inner::Full(_) => "full",
            Inner::Incoming(_) => "request",
            Inner::Stream(_) => "stream",
            Inner::Http(_) => "http_body",
        };
        let mut d = f.debug_struct("Body");
        d.field("kind", &kind);
        if let Inner::Full(b) = &self.inner {
            d.field("len", &b.len());
        }
        d.finish()
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Body {
        Body {
            inner: Inner::Full(b),
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Body {
        Body::from(Bytes::from(v))
    }
}

impl From<String> for Body {
    fn from(s: String) -> Body {
        Body::from(Bytes::from(s))
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Body {
        Body::from(Bytes::from_static(s.as_bytes()))
    }
}

impl From<&'static [u8]> for Body {
    fn from(s: &'static [u8]) -> Body {
        Body::from(Bytes::from_static(s))
    }
}

impl From<()> for Body {
    fn from(_: ()) -> Body {
        Body::empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use http_body_util::BodyExt;
    use vyx_core::session::StreamError;

    fn assert_send_sync_unpin<T: Send + Sync + Unpin>() {}

    #[test]
    fn body_is_send_sync_unpin() {
        assert_send_sync_unpin::<Body>();
    }

    #[tokio::test]
    async fn full_body_is_one_chunk_then_end() {
        let mut body = Body::from("hello");
        assert!(!http_body::Body::is_end_stream(&body));
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(5));
        assert_eq!(body.next().await.unwrap().unwrap(), "hello");
        assert!(body.next().await.is_none());
        assert!(http_body::Body::is_end_stream(&body));
    }

    #[tokio::test]
    async fn empty_bodies_end_at_once() {
        for body in [Body::empty(), Body::from(""), Body::from(Vec::new())] {
            assert!(http_body::Body::is_end_stream(&body));
            assert_eq!(body.collect_bytes().await.unwrap(), "");
        }
    }

    #[tokio::test]
    async fn stream_body_yields_chunks_and_skips_empty_ones() {
        let chunks = futures_util::stream::iter(vec![
            Ok::<_, std::io::Error>(Bytes::from("a")),
            Ok(Bytes::new()),
            Ok(Bytes::from("bc")),
        ]);
        let body = Body::from_stream(chunks);
        let got: Vec<Bytes> = body.map(|c| c.unwrap()).collect().await;
        assert_eq!(got, vec![Bytes::from("a"), Bytes::from("bc")]);
    }

    #[tokio::test]
    async fn stream_error_is_reported_then_body_ends() {
        let chunks = futures_util::stream::iter(vec![
            Ok(Bytes::from("a")),
            Err(std::io::Error::other("disk on fire")),
            Ok(Bytes::from("never")),
        ]);
        let mut body = Body::from_stream(chunks);
        assert_eq!(body.next().await.unwrap().unwrap(), "a");
        let err = body.next().await.unwrap().unwrap_err();
        assert!(matches!(err, Error::Other(_)));
        assert!(err.to_string().contains("disk on fire"));
        assert!(body.next().await.is_none());
    }

    #[tokio::test]
    async fn vyx_errors_are_not_wrapped_twice() {
        let chunks = futures_util::stream::iter(vec![Err::<Bytes, _>(Error::Body(
            StreamError::ConnectionLost,
        ))]);
        let mut body = Body::from_stream(chunks);
        let err = body.next().await.unwrap().unwrap_err();
        assert!(
            matches!(err, Error::Body(StreamError::ConnectionLost)),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn collect_bytes_joins_chunks() {
        let chunks = futures_util::stream::iter(["ab", "", "cd", "e"].map(Ok::<_, Error>));
        assert_eq!(
            Body::from_stream(chunks).collect_bytes().await.unwrap(),
            "abcde"
        );
        let one = futures_util::stream::iter(["only"].map(Ok::<_, Error>));
        assert_eq!(
            Body::from_stream(one).collect_bytes().await.unwrap(),
            "only"
        );
    }

    #[tokio::test]
    async fn wrapping_a_body_does_not_box_it_again() {
        let body = Body::new(Body::from("x"));
        assert!(body.as_full().is_some());
        let body = Body::from_stream(Body::from("y"));
        assert!(body.as_full().is_some());
    }

    #[tokio::test]
    async fn http_body_passes_through_with_its_size_hint() {
        let full = http_body_util::Full::new(Bytes::from("four"));
        let body = Body::new(full);
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(4));
        let collected = BodyExt::collect(body).await.unwrap().to_bytes();
        assert_eq!(collected, "four");
    }
}

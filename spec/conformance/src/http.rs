//! The HTTP side: a real client, generated bodies of any size streamed without buffering,
//! and SHA-256 over what comes back.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::check::{fail, Outcome};
use crate::procs::WAIT;

pub type Body = BoxBody<Bytes, std::io::Error>;
pub type Client = HyperClient<HttpConnector, Body>;

/// An HTTP/1.1 client; `title_case` writes header names as `X-Mixed-Case` on the wire.
pub fn client_with(title_case: bool) -> Client {
    HyperClient::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .http1_title_case_headers(title_case)
        .build_http()
}

pub fn client() -> Client {
    client_with(false)
}

pub fn empty() -> Body {
    Empty::new().map_err(|e| match e {}).boxed()
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|e| match e {}).boxed()
}

/// A whole answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Outcome<serde_json::Value> {
        serde_json::from_slice(&self.body).map_err(|e| {
            format!(
                "status {} body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Every value of header `name`, in order.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }
}

pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> Outcome<http::Request<Body>> {
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(body)
        .map_err(|e| format!("bad request {method} {url}: {e}"))
}

/// Sends and waits for the response head.
pub async fn head_of(
    client: &Client,
    req: http::Request<Body>,
) -> Outcome<http::Response<hyper::body::Incoming>> {
    head_within(client, req, WAIT).await
}

async fn head_within(
    client: &Client,
    req: http::Request<Body>,
    limit: Duration,
) -> Outcome<http::Response<hyper::body::Incoming>> {
    let what = format!("{} {}", req.method(), req.uri());
    match tokio::time::timeout(limit, client.request(req)).await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) => fail(format!("{what}: {e:?}")),
        Err(_) => fail(format!("{what}: no response head within {limit:?}")),
    }
}

/// Sends a request and reads the whole answer.
pub async fn send(client: &Client, req: http::Request<Body>) -> Outcome<Reply> {
    send_within(client, req, WAIT).await
}

/// Like [`send`], for an exchange (a large upload, say) that may take up to `limit`.
pub async fn send_within(
    client: &Client,
    req: http::Request<Body>,
    limit: Duration,
) -> Outcome<Reply> {
    let what = format!("{} {}", req.method(), req.uri());
    let deadline = Instant::now() + limit;
    let resp = head_within(client, req, limit).await?;
    let (parts, body) = resp.into_parts();
    let body = match tokio::time::timeout_at(deadline, body.collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => return fail(format!("{what}: body: {e}")),
        Err(_) => return fail(format!("{what}: body not complete within {limit:?}")),
    };
    Ok(Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

pub async fn get(client: &Client, url: &str) -> Outcome<Reply> {
    send(client, request("GET", url, &[], empty())?).await
}

/// What a streamed answer was: status, headers, body length and SHA-256.
#[derive(Debug)]
pub struct Hashed {
    pub status: u16,
    pub headers: HeaderMap,
    pub length: u64,
    pub sha256: String,
}

/// Sends a request and hashes the response body as it streams in (nothing is kept).
/// `budget` bounds the whole exchange; each chunk must come within [`WAIT`].
pub async fn send_hashing(
    client: &Client,
    req: http::Request<Body>,
    budget: Duration,
) -> Outcome<Hashed> {
    let what = format!("{} {}", req.method(), req.uri());
    let deadline = Instant::now() + budget;
    let resp = head_within(client, req, budget).await?;
    let (parts, mut body) = resp.into_parts();
    let mut hasher = Sha256::new();
    let mut length = 0u64;
    loop {
        let next = tokio::time::timeout(WAIT.min(deadline - Instant::now()), body.frame()).await;
        match next {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    length += data.len() as u64;
                    hasher.update(&data);
                }
            }
            Ok(Some(Err(e))) => return fail(format!("{what}: body after {length} bytes: {e}")),
            Ok(None) => break,
            Err(_) => return fail(format!("{what}: body stalled after {length} bytes")),
        }
    }
    Ok(Hashed {
        status: parts.status.as_u16(),
        headers: parts.headers,
        length,
        sha256: hex(&hasher.finalize()),
    })
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Pseudo-random bytes repeating with a prime period, so that no two chunks of a
/// generated body at different offsets look alike.
fn noise() -> &'static [u8] {
    static NOISE: OnceLock<Vec<u8>> = OnceLock::new();
    NOISE.get_or_init(|| {
        const PERIOD: usize = 1_048_573; // prime
        let mut rng = vyx_core::backoff::SplitMix64::new(0x76_79_78);
        let mut v = Vec::with_capacity(PERIOD + 8);
        while v.len() < PERIOD {
            v.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        v.truncate(PERIOD);
        v
    })
}

const CHUNK: usize = 64 * 1024;

/// Chunk `offset..offset+len` of the generated body.
fn noise_chunk(offset: u64, len: usize) -> Bytes {
    let noise = noise();
    let mut out = BytesMut::with_capacity(len);
    let mut at = (offset % noise.len() as u64) as usize;
    while out.len() < len {
        let take = (len - out.len()).min(noise.len() - at);
        out.extend_from_slice(&noise[at..at + take]);
        at = (at + take) % noise.len();
    }
    out.freeze()
}

/// A generated body of `size` bytes, produced chunk by chunk as the client sends it.
pub fn generated(size: u64) -> Body {
    let chunks = futures_util::stream::unfold(0u64, move |offset| async move {
        if offset >= size {
            return None;
        }
        let len = (size - offset).min(CHUNK as u64) as usize;
        let frame = http_body::Frame::data(noise_chunk(offset, len));
        Some((Ok::<_, std::io::Error>(frame), offset + len as u64))
    });
    BodyExt::boxed(StreamBody::new(chunks))
}

/// SHA-256 of [`generated`]`(size)`.
pub fn generated_sha256(size: u64) -> String {
    let mut hasher = Sha256::new();
    let mut offset = 0;
    while offset < size {
        let len = (size - offset).min(CHUNK as u64) as usize;
        hasher.update(noise_chunk(offset, len));
        offset += len as u64;
    }
    hex(&hasher.finalize())
}

/// SHA-256 of the contract's `/stream/{n}` body: byte i is `i % 251`.
pub fn pattern_sha256(size: u64) -> String {
    let period: Vec<u8> = (0..251u32).map(|i| i as u8).collect();
    let mut hasher = Sha256::new();
    let mut left = size;
    // 251 × 261 bytes per update keeps the pattern aligned.
    let block: Vec<u8> = period.iter().copied().cycle().take(251 * 261).collect();
    while left >= block.len() as u64 {
        hasher.update(&block);
        left -= block.len() as u64;
    }
    hasher.update(&block[..left as usize]);
    hex(&hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_hash_matches_the_bytes() {
        for n in [0u64, 1, 250, 251, 252, 70_000] {
            let bytes: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            assert_eq!(pattern_sha256(n), sha256(&bytes), "n = {n}");
        }
    }

    #[test]
    fn generated_chunks_differ_and_the_hash_matches() {
        assert_ne!(noise_chunk(0, 100), noise_chunk(CHUNK as u64, 100));
        let n = 3 * CHUNK as u64 + 17;
        let mut all = Vec::new();
        let mut offset = 0;
        while offset < n {
            let len = (n - offset).min(CHUNK as u64) as usize;
            all.extend_from_slice(&noise_chunk(offset, len));
            offset += len as u64;
        }
        assert_eq!(generated_sha256(n), sha256(&all));
    }
}

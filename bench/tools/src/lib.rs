//! What the benchmark contenders serve, shared so that the vyx worker and the plain hyper
//! server answer byte for byte the same:
//!
//! - `GET /hello/{name}` → `{"hello":name,"lang":"rust"}` (the hello example's handler)
//! - `GET /bytes/{size}` → `size` bytes in one body (1 KiB, 64 KiB, 1 MiB rows)
//! - `GET /download/{size}` → `size` bytes streamed in [`CHUNK`]-sized pieces
//! - `PUT /upload` → reads the streamed body, answers `{"received":n}`
//!
//! and, for the mixed load of `vyx-mixload` (bench worker only), the routes of [`mix`].

use bytes::Bytes;

pub mod mix;
pub mod mixload;

/// Largest `/bytes/{size}` served, so a typo cannot make a contender allocate gigabytes.
pub const MAX_BYTES: usize = 16 << 20;

/// Piece size of streamed downloads (and of the load generator's uploads).
pub const CHUNK: usize = 64 << 10;

/// The hello handler's JSON, serialised the way the hello example does it.
pub fn hello_json(name: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "hello": name, "lang": "rust" }))
        .expect("a JSON value serialises")
}

/// `size` bytes of a fixed pattern, or `None` past [`MAX_BYTES`].
pub fn body_of(size: usize) -> Option<Bytes> {
    (size <= MAX_BYTES).then(|| Bytes::from(vec![b'x'; size]))
}

/// One reusable [`CHUNK`] for streamed bodies (cloning `Bytes` copies nothing).
pub fn chunk() -> Bytes {
    Bytes::from(vec![b'x'; CHUNK])
}

/// The pieces of a `size`-byte streamed body.
pub fn pieces(size: u64) -> impl Iterator<Item = Bytes> + Send + 'static {
    let chunk = chunk();
    let full = size / CHUNK as u64;
    let rest = (size % CHUNK as u64) as usize;
    (0..full)
        .map(move |_| chunk.clone())
        .chain((rest > 0).then(|| Bytes::from(vec![b'x'; rest])))
}

/// `{"received":n}`.
pub fn received_json(n: u64) -> Vec<u8> {
    format!("{{\"received\":{n}}}").into_bytes()
}

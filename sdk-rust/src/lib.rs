//! Write [vyx](https://github.com/vyx-dev/vyx) workers in Rust.
//!
//! A worker dials the vyx gateway over one WebSocket, registers its routes, and serves the
//! HTTP requests the gateway sends over that socket, many at once, streaming both ways.
//! The gateway does the routing; the worker just answers.
//!
//! ```no_run
//! use vyx::{Json, Request, Response};
//!
//! async fn echo(req: Request) -> Response {
//!     Response::stream(req.into_body())
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), vyx::Error> {
//!     let worker = vyx::Worker::builder()
//!         .connect("ws://127.0.0.1:9000") // else VYX_CONNECT
//!         .id("rust:api")                  // else VYX_WORKER_ID
//!         .get("/hello/{name}", |req: Request| async move {
//!             Json(serde_json::json!({ "hello": req.param("name").unwrap_or_default() }))
//!         })
//!         .post("/echo", echo)
//!         .build()?;
//!     worker.start().await // serves until SIGTERM/SIGINT, then drains
//! }
//! ```
//!
//! - [`Worker`] / [`WorkerBuilder`]: configuration (falling back to `VYX_CONNECT`,
//!   `VYX_WORKER_ID`, `VYX_TOKEN`), routes, `start`, graceful `stop`, signals, and
//!   connection-state changes ([`Worker::state`], [`WorkerBuilder::on_state`]).
//! - [`Request`]: method, path, the query decoded ([`Request::query`]) and as sent
//!   ([`Request::raw_query`]), path parameters,
//!   headers, and the body as bytes, text, JSON, or a stream ([`Body`]).
//! - [`Response`] and [`IntoResponse`]: what handlers return — text, bytes, [`Json`],
//!   status codes, tuples, `Result`s, streamed bodies, and `http::Response`s.
//! - Tower services (an axum `Router`, say) run unchanged behind
//!   [`WorkerBuilder::service`].
//!
//! Handlers run in their own tokio tasks. A handler that panics answers 500 (or resets its
//! stream once the head is out) and the worker keeps serving. The SDK logs through
//! [`tracing`]; install a subscriber in your binary to see it.
//!
//! The protocol itself (framing, handshake, heartbeat, flow control, reconnect) lives in
//! [`vyx_core`], re-exported here.

#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, missing_docs)]

mod body;
mod error;
mod handler;
mod request;
mod response;
mod serve;
mod service_upgrade;
pub mod upgrade;
mod worker;

pub use body::Body;
pub use error::{BoxError, Error, Result};
pub use request::{PathParams, Request};
pub use response::{IntoResponse, Json, Response, ResponseBuilder};
pub use worker::{States, Worker, WorkerBuilder, WorkerHandle, DEFAULT_DRAIN_TIMEOUT, SDK};

pub use bytes::Bytes;
pub use http::{self, header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
pub use vyx_core;
pub use vyx_core::session::{ConnectionState, GatewayState, Resolver};

// The READMEs' Rust examples are doc tests: whole ones compile (`rust no_run` when they
// would wait for a gateway); fragments are marked `rust ignore`.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct SdkReadme;

#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct TopReadme;

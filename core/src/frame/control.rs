//! Control frames (HELLO, WELCOME, DRAIN, ROUTES, ERROR): stream 0, a JSON payload; the
//! messages and their JSON form (§3.8). What a valid HELLO or WELCOME holds is checked in
//! [`crate::handshake`].

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use super::json::check_json_strict;
use super::{kind, put_header, HEADER_LEN};
use crate::error::DecodeError;

/// One route a worker serves. `method` is an upper-case token or `*` for any method;
/// `path` uses `{name}` parameters and a trailing `{*rest}` catch-all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSpec {
    /// 0..=65535; a wider JSON number parses (as `u32::MAX` when it does not fit) so that it
    /// can be refused with 4001.
    #[serde(deserialize_with = "saturating_u32")]
    pub id: u32,
    pub method: String,
    pub path: String,
    /// The worker declares that repeating a request to this route is safe whatever its
    /// method (§3.8): the gateway may retry it on another replica when its connection dies
    /// before the response head. Absent or `null`: `false`; sent only when `true`.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub idempotent: bool,
}

/// Worker → gateway, the first frame after the upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    #[serde(deserialize_with = "saturating_u32")]
    pub protocol: u32,
    pub worker_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub instance: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub sdk: String,
    #[serde(deserialize_with = "saturating_u32")]
    pub max_concurrency: u32,
    pub routes: Vec<RouteSpec>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    /// The extensions the worker's host can use (§2.6); not sent when empty, so that a HELLO
    /// without extensions is the v1 HELLO byte for byte.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub features: Vec<String>,
}

/// Gateway → worker, the answer to a valid HELLO. Integers that do not fit a `u32` read as
/// `u32::MAX`, which every range refuses (§3.8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    #[serde(deserialize_with = "saturating_u32")]
    pub protocol: u32,
    pub gateway: String,
    pub connection_id: String,
    /// 1..=2^31−1.
    #[serde(deserialize_with = "saturating_u32")]
    pub heartbeat_ms: u32,
    /// 1..=2^31−1.
    #[serde(deserialize_with = "saturating_u32")]
    pub initial_window: u32,
    /// Exactly 1,048,576 in v1.
    #[serde(deserialize_with = "saturating_u32")]
    pub max_frame_size: u32,
    /// The effective cap: the lower of the worker's and the gateway's.
    #[serde(deserialize_with = "saturating_u32")]
    pub max_concurrency: u32,
    /// How many connections the gateway asks this worker to hold to this address, one per
    /// gateway shard (§3.8, §9.1): 1..=64. Absent or `null`: 1; not sent when 1, so that a
    /// WELCOME asking for one is the v1 WELCOME byte for byte.
    #[serde(
        default = "one",
        deserialize_with = "saturating_u32_or_one",
        skip_serializing_if = "is_one"
    )]
    pub connections: u32,
    /// The extensions this connection uses: a subset of HELLO's `features` (§2.6).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub features: Vec<String>,
}

/// Either way: start no new streams, finish the open ones by the deadline, then close.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drain {
    pub reason: String,
    pub deadline_ms: u64,
}

/// Worker → gateway: the connection's whole new route set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routes {
    pub routes: Vec<RouteSpec>,
}

/// Either way, just before closing with `code`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMessage {
    pub code: u16,
    pub message: String,
}

/// A JSON control message and the frame type that carries it.
pub trait ControlMessage: Serialize + DeserializeOwned {
    const TYPE: u8;
    const NAME: &'static str;
}

impl ControlMessage for Hello {
    const TYPE: u8 = kind::HELLO;
    const NAME: &'static str = "HELLO";
}
impl ControlMessage for Welcome {
    const TYPE: u8 = kind::WELCOME;
    const NAME: &'static str = "WELCOME";
}
impl ControlMessage for Drain {
    const TYPE: u8 = kind::DRAIN;
    const NAME: &'static str = "DRAIN";
}
impl ControlMessage for Routes {
    const TYPE: u8 = kind::ROUTES;
    const NAME: &'static str = "ROUTES";
}
impl ControlMessage for ErrorMessage {
    const TYPE: u8 = kind::ERROR;
    const NAME: &'static str = "ERROR";
}

pub(super) fn decode<M: ControlMessage>(payload: &[u8]) -> Result<M, DecodeError> {
    check_json_strict(payload)
        .and_then(|()| serde_json::from_slice(payload))
        .map_err(|e| DecodeError::InvalidControlPayload {
            frame: M::NAME,
            reason: e.to_string(),
        })
}

pub(super) fn encode<M: ControlMessage>(msg: &M) -> Bytes {
    let mut buf = BytesMut::with_capacity(HEADER_LEN + 128);
    put_header(&mut buf, M::TYPE, 0, 0);
    let mut w = buf.writer();
    serde_json::to_writer(&mut w, msg).expect("control messages always serialize");
    w.into_inner().freeze()
}

/// Reads a JSON integer into a `u32` field whose valid range ends below `u32::MAX`: a value
/// that does not fit becomes `u32::MAX`, which the range check then refuses with the close
/// code of the field (4001 in HELLO), not as a decode error (4005). Signs, fractions and
/// exponents are still refused by the `u64` parse.
fn saturating_u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    u64::deserialize(d).map(|v| u32::try_from(v).unwrap_or(u32::MAX))
}

/// [`saturating_u32`] for an optional field whose absence means 1: `null` is absent (§3.8).
fn saturating_u32_or_one<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    Option::<u64>::deserialize(d).map(|v| v.map_or(1, |v| u32::try_from(v).unwrap_or(u32::MAX)))
}

fn one() -> u32 {
    1
}

fn is_one(v: &u32) -> bool {
    *v == 1
}

/// An optional field: `null` is the same as absent (§3.8).
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

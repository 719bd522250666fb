//! The packed form of a [`Batch`], decoded by `lib/batch.js`: one buffer per pull instead of
//! one JS object (and one napi call) per string. Little-endian throughout; a string is a
//! `u32` byte length and its bytes, the length's top bit set when a byte is not ASCII (so JS
//! can take ASCII strings as slices of one string of the whole batch and decode only the
//! others as UTF-8); a slot is an `f64` (exact below 2^53).
//!
//! ```text
//! u32 requests,  each: f64 slot, u32 route_id, str method, str target,
//!                      u32 params  (str name, str value)*, u32 headers (str name, str value)*,
//!                      str client_ip ("" for none), str scheme,
//!                      u8 body (1 when a body follows: it had not ended when packed),
//!                      u8 http_major, u8 http_minor,
//!                      u8 upgrade (1: the client asked to switch protocols)
//! u32 resets,    each: f64 slot, str code, str message
//! u32 states,    each: u8 kind, then per kind: 0 connecting; 1 connected (str id);
//!                      2 reconnecting (u32 attempt, u32 delay_ms, str cause); 3 draining;
//!                      4 stopped; 5 failed (str cause)
//! u32 logs,      each: u8 level (0 error .. 4 trace), str target, str message,
//!                      u32 fields, each: str name, u8 kind, then per kind: 0 str;
//!                      1 f64 (numbers); 2 u8 (a bool)
//! ```
//!
//! Packing also files each request's [`Stream`](vyx_core::session::Stream) under its slot
//! and forgets the streams of the resets, so later calls on them find nothing.

use std::sync::{Mutex, PoisonError};

use tracing::Level;
use vyx_core::host_logs::{Record, Value};
use vyx_core::session::{Batch, ConnectionState};

use crate::{stream_code, Slot, Slots};

pub(crate) fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

/// Marks a string with a byte above 0x7F (frames are at most 1 MiB: the bit is free).
const NOT_ASCII: u32 = 1 << 31;

pub(crate) fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    let len = u32::try_from(s.len())
        .unwrap_or(NOT_ASCII - 1)
        .min(NOT_ASCII - 1);
    let flag = if s.is_ascii() { 0 } else { NOT_ASCII };
    out.extend_from_slice(&(len | flag).to_le_bytes());
    out.extend_from_slice(&s[..len as usize]);
}

pub(crate) fn put_slot(out: &mut Vec<u8>, slot: u64) {
    out.extend_from_slice(&(slot as f64).to_le_bytes());
}

fn put_number(out: &mut Vec<u8>, n: f64) {
    out.push(1);
    out.extend_from_slice(&n.to_le_bytes());
}

/// Packs `batch` and the core's log `records` (see the module doc) and files the batch's
/// streams in `slots`.
pub(crate) fn pack(batch: Batch, records: Vec<Record>, slots: &Slots) -> Vec<u8> {
    let size: usize = batch
        .requests
        .iter()
        .map(|r| {
            112 + r.target.len()
                + r.params
                    .iter()
                    .map(|(n, v)| 8 + n.len() + v.len())
                    .sum::<usize>()
                + r.headers
                    .iter()
                    .map(|(n, v)| 8 + n.len() + v.len())
                    .sum::<usize>()
        })
        .sum();
    let mut out = Vec::with_capacity(size + 16);
    let mut map = Mutex::lock(slots).unwrap_or_else(PoisonError::into_inner);
    put_u32(&mut out, batch.requests.len());
    for req in batch.requests {
        put_slot(&mut out, req.slot);
        put_u32(&mut out, req.route_id.into());
        put_str(&mut out, &req.method);
        put_str(&mut out, &req.target);
        put_u32(&mut out, req.params.len());
        for (name, value) in &req.params {
            put_str(&mut out, name);
            put_str(&mut out, value);
        }
        put_u32(&mut out, req.headers.len());
        for (name, value) in &req.headers {
            put_str(&mut out, name);
            put_str(&mut out, value);
        }
        // The host rules of HOSTS.md §5, read by the core: JS does not parse them.
        let client_ip = req.client_ip().map(|ip| ip.to_string()).unwrap_or_default();
        put_str(&mut out, client_ip.as_bytes());
        put_str(&mut out, req.scheme().as_bytes());
        // Whether REQUEST carried END_STREAM, not whether the body has ended by now: an
        // empty chunked body whose last DATA came in the same batch is still a body.
        out.push(u8::from(req.has_body));
        let (major, minor) = req.http_version();
        out.extend_from_slice(&[major, minor, u8::from(req.upgrade)]);
        map.insert(req.slot, Slot::new(req.stream));
    }
    // After the requests: a reset may name a request of this batch.
    put_u32(&mut out, batch.resets.len());
    for reset in batch.resets {
        map.remove(&reset.slot);
        put_slot(&mut out, reset.slot);
        put_str(&mut out, stream_code(&reset.error).as_bytes());
        put_str(&mut out, reset.error.to_string().as_bytes());
    }
    drop(map);
    put_u32(&mut out, batch.states.len());
    for state in batch.states {
        match state {
            ConnectionState::Connecting => out.push(0),
            ConnectionState::Connected { connection_id } => {
                out.push(1);
                put_str(&mut out, connection_id.as_bytes());
            }
            ConnectionState::Reconnecting {
                attempt,
                delay,
                cause,
            } => {
                out.push(2);
                put_u32(&mut out, attempt as usize);
                put_u32(&mut out, delay.as_millis().try_into().unwrap_or(usize::MAX));
                put_str(&mut out, cause.as_bytes());
            }
            ConnectionState::Draining => out.push(3),
            ConnectionState::Stopped => out.push(4),
            ConnectionState::Failed { cause } => {
                out.push(5);
                put_str(&mut out, cause.as_bytes());
            }
        }
    }
    put_u32(&mut out, records.len());
    for record in records {
        out.push(match record.level {
            Level::ERROR => 0,
            Level::WARN => 1,
            Level::INFO => 2,
            Level::DEBUG => 3,
            Level::TRACE => 4,
        });
        put_str(&mut out, record.target.as_bytes());
        put_str(&mut out, record.message.as_bytes());
        put_u32(&mut out, record.fields.len());
        for (name, value) in &record.fields {
            put_str(&mut out, name.as_bytes());
            match value {
                Value::Str(s) => {
                    out.push(0);
                    put_str(&mut out, s.as_bytes());
                }
                Value::Bool(b) => {
                    out.push(2);
                    out.push(u8::from(*b));
                }
                Value::I64(n) => put_number(&mut out, *n as f64),
                Value::U64(n) => put_number(&mut out, *n as f64),
                Value::F64(n) => put_number(&mut out, *n),
            }
        }
    }
    out
}
